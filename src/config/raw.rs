//! The YAML file as serde reads it: every key, nothing checked yet (unknown keys refused).

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) collection: RawCollection,
    pub(super) regions: Option<RawRegions>,
    pub(super) image_ids: Option<Vec<String>>,
    pub(super) filters: Option<Vec<RawFilter>>,
    pub(super) accounts: Option<Vec<RawAccount>>,
    pub(super) events: Option<RawEvents>,
    pub(super) cloudwatch: Option<RawCloudWatch>,
    pub(super) discovery: Option<RawDiscovery>,
    pub(super) metrics: Option<RawMetrics>,
}

/// `metrics`: the families served. Entries are family names or regular expressions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(default)]
    pub(super) include: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
}

/// `regions`: a list, or the word `all` (every region enabled for the account).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRegions {
    List(Vec<String>),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) organizations: Option<RawOrganizations>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrganizations {
    pub(super) role_arn: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) member_role_arn: Option<String>,
    pub(super) member_external_id: Option<String>,
    #[serde(default)]
    pub(super) organizational_units: Vec<String>,
    #[serde(default)]
    pub(super) exclude_accounts: Vec<String>,
    /// Values may be written unquoted (`fast-launch: true`): any scalar, compared as text.
    #[serde(default)]
    pub(super) tags: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub(super) labels_from_tags: Vec<String>,
    pub(super) interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloudWatch {
    pub(super) enabled: Option<bool>,
    pub(super) period: Option<String>,
    pub(super) lookback: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) queue_url: String,
    pub(super) role_arn: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) wait_time: Option<String>,
    pub(super) max_messages: Option<u64>,
    pub(super) debounce: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollection {
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) concurrency: Option<u64>,
    pub(super) page_size: Option<i64>,
    pub(super) max_staleness: Option<String>,
    pub(super) max_attempts: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) name: String,
    pub(super) values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) name: Option<String>,
    pub(super) role_arn: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) session_name: Option<String>,
    pub(super) duration: Option<String>,
    pub(super) regions: Option<RawRegions>,
    pub(super) image_ids: Option<Vec<String>>,
    pub(super) filters: Option<Vec<RawFilter>>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) cloudwatch: Option<RawCloudWatch>,
}

// ---------------------------------------------------------------------------------------------
// The validated model.
