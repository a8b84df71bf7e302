//! The configuration file: YAML types that mirror the file (strict, unknown keys are errors) and the
//! validated [`Config`] the rest of the exporter uses.
//!
//! Every error names the place in the file, quotes the offending value and says what is wrong, e.g.
//! `accounts[1].regions[0]: "us-eest-1" is not a region name`.

mod accounts;
mod discovery;
pub mod duration;
mod events;
mod location;
mod metrics;
mod raw;
pub mod web;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use self::accounts::*;
use self::discovery::*;
use self::duration::Bounds;
use self::events::*;
pub use self::location::Position;
use self::metrics::validate_metrics;
use self::raw::*;

pub use crate::domain::families::MetricsFilter;
use crate::domain::ids::{
    check_account_id, check_region, queue_url_parts, role_account_id, KNOWN_REGIONS,
};
pub use crate::domain::model::{CloudWatchSpec, Filter, Query, QueueSpec, RoleSpec};
use crate::domain::model::{TargetKey, TargetSpec, BASE_ACCOUNT_KEY};

/// A configuration that could not be read or is invalid. The message names the place in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path that was given.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or has the wrong shape (unknown key, wrong type).
    #[error("{0}")]
    Syntax(String),
    /// A value is out of range or malformed. Shown as serde_yaml shows its own errors:
    /// `config.yaml: collection.interval: "5M" is not a duration: … at line 3 column 3`.
    #[error("{}{place}: {message}{}", file_prefix(.file), position_suffix(.at))]
    Invalid {
        /// The file, when the configuration was read from one.
        file: Option<String>,
        /// Where in the file, e.g. `accounts[1].regions[0]`.
        place: String,
        /// What is wrong, quoting the value.
        message: String,
        /// Where the key is written (of a missing key, the entry that lacks it), when the
        /// text is known and has it.
        at: Option<Position>,
    },
}

fn file_prefix(file: &Option<String>) -> String {
    file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

fn position_suffix(at: &Option<Position>) -> String {
    at.map(|at| format!(" at {at}")).unwrap_or_default()
}

fn invalid(place: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: None,
        place: place.into(),
        message: message.into(),
        at: None,
    }
}

impl ConfigError {
    /// The error with the position of its place in `text`, the YAML it was validated from.
    fn located_in(self, text: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                file,
                place,
                message,
                at: None,
            } => ConfigError::Invalid {
                at: location::locate(text, &place),
                file,
                place,
                message,
            },
            other => other,
        }
    }

    /// The error as one of the file at `path` (which the message then names).
    fn in_file(self, path: &Path) -> ConfigError {
        match self {
            // serde_yaml's message says where in the file (line, column, key path), not which file.
            ConfigError::Syntax(message) => {
                ConfigError::Syntax(format!("{}: {message}", path.display()))
            }
            ConfigError::Invalid {
                place, message, at, ..
            } => ConfigError::Invalid {
                file: Some(path.display().to_string()),
                place,
                message,
                at,
            },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written.

/// Default time between two collections of a target.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Default bound on one target's collection.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of targets collected at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default `MaxResults`: the largest page the EC2 API allows.
pub const DEFAULT_PAGE_SIZE: i32 = 200;
/// Default attempts per AWS call (the SDK's standard retry mode).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default `events.debounce`.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// Default `events.wait_time`: SQS long polling's maximum.
pub const DEFAULT_WAIT_TIME: Duration = Duration::from_secs(20);
/// Default `cloudwatch.period`.
pub const DEFAULT_CLOUDWATCH_PERIOD: Duration = Duration::from_secs(300);
/// Default `cloudwatch.lookback`.
pub const DEFAULT_CLOUDWATCH_LOOKBACK: Duration = Duration::from_secs(1800);
/// Default session name for AssumeRole.
pub const DEFAULT_SESSION_NAME: &str = "fast-launch-exporter";
/// Filter names that DescribeFastLaunchImages accepts (EC2 API reference).
pub const FILTER_NAMES: [&str; 3] = ["resource-type", "owner-id", "state"];

/// How and when targets are collected.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSettings {
    /// Time between two collections of a target.
    pub interval: Duration,
    /// Bound on one target's whole collection (credentials and every page).
    pub timeout: Duration,
    /// Targets collected at once.
    pub concurrency: usize,
    /// `MaxResults` per page, 1–200.
    pub page_size: i32,
    /// How long a failing target keeps serving its last good data.
    pub max_staleness: Duration,
    /// Attempts per AWS call, retries included.
    pub max_attempts: u32,
    /// Events for one target within this window cause one collection (`events.debounce`).
    pub event_debounce: Duration,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        CollectionSettings {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            page_size: DEFAULT_PAGE_SIZE,
            max_staleness: DEFAULT_INTERVAL * 3,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            event_debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// One AWS account to collect, with its regions and request parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Optional alias, exported as `account_name`.
    pub name: Option<String>,
    /// The role to assume; None means the base credentials.
    pub role: Option<RoleSpec>,
    /// Regions to collect; with `all_regions`, the fallback used until the account's enabled
    /// regions are known (the top-level list, or the environment's region).
    pub regions: Vec<String>,
    /// `regions: all`: every region enabled for the account (`ec2:DescribeRegions`).
    pub all_regions: bool,
    /// `ImageIds` and `Filters` passed through.
    pub query: Query,
    /// Static labels exported on the account info metric.
    pub labels: BTreeMap<String, String>,
    /// The CloudWatch fast launch metrics to read (None: off).
    pub cloudwatch: Option<CloudWatchSpec>,
}

impl AccountConfig {
    /// The account's targets in `regions`, in that order.
    pub fn target_specs(&self, regions: &[String]) -> Vec<TargetSpec> {
        // One string for every target of the account.
        let account: Arc<str> = self.key().into();
        regions
            .iter()
            .map(|region| TargetSpec {
                key: TargetKey {
                    account: account.clone(),
                    region: region.as_str().into(),
                },
                account_name: self.name.clone(),
                role: self.role.clone(),
                query: self.query.clone(),
                labels: self.labels.clone(),
                cloudwatch: self.cloudwatch,
            })
            .collect()
    }

    /// A stable key for the account across reloads: the role ARN, or `base` for the base credentials.
    pub fn key(&self) -> String {
        match &self.role {
            Some(role) => role.arn.clone(),
            None => BASE_ACCOUNT_KEY.to_string(),
        }
    }

    /// The account id when it is known from configuration (from the role ARN).
    pub fn configured_account_id(&self) -> Option<&str> {
        self.role.as_ref().map(|r| r.account_id.as_str())
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Collection schedule and limits.
    pub collection: CollectionSettings,
    /// Accounts; never empty.
    pub accounts: Vec<AccountConfig>,
    /// Things that are valid but look wrong (a region this build does not know), for the log.
    pub warnings: Vec<String>,
    /// The event queue, when `events` is configured.
    pub events: Option<EventsSettings>,
    /// Account discovery from AWS Organizations, when configured.
    pub discovery: Option<OrganizationsDiscovery>,
    /// The top-level settings discovered accounts take: regions (and `regions: all`), query,
    /// CloudWatch.
    pub defaults: AccountDefaults,
    /// The metric families served (`metrics.include`, `metrics.exclude`).
    pub metrics: MetricsFilter,
}

/// What a discovered account takes from the top level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountDefaults {
    /// Top-level `regions` (empty: the environment's region, or none known yet).
    pub regions: Vec<String>,
    /// Top-level `regions: all`.
    pub all_regions: bool,
    /// Top-level `image_ids` and `filters`.
    pub query: Query,
    /// Top-level `cloudwatch`.
    pub cloudwatch: Option<CloudWatchSpec>,
}

/// Label names the exporter sets itself on `fast_launch_exporter_account_info`.
const RESERVED_LABELS: [&str; 2] = ["aws_account_id", "account_name"];

/// Default `discovery.organizations.interval`, and how often `regions: all` lists regions.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(3600);

/// `discovery.organizations`: which accounts of the organization to collect, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationsDiscovery {
    /// The role to call Organizations with (management or delegated administrator account);
    /// None: the base credentials.
    pub role: Option<RoleSpec>,
    /// The member role ARN template; `{account_id}` is replaced by each account's id.
    pub member_role_arn: String,
    /// The member roles' external id.
    pub member_external_id: Option<String>,
    /// OUs whose accounts count, recursively (empty: the whole organization).
    pub organizational_units: Vec<String>,
    /// Account ids never collected.
    pub exclude_accounts: Vec<String>,
    /// Tags an account must carry, all of them.
    pub tags: BTreeMap<String, String>,
    /// Account tags exported as static labels on `fast_launch_exporter_account_info`, by tag
    /// key, with the label name each becomes.
    pub labels_from_tags: Vec<(String, String)>,
    /// How often the organization (and `regions: all`) is listed again.
    pub interval: Duration,
}

impl OrganizationsDiscovery {
    /// The member role of `account_id`.
    pub fn member_role(&self, account_id: &str) -> RoleSpec {
        RoleSpec {
            arn: self.member_role_arn.replace("{account_id}", account_id),
            account_id: account_id.to_string(),
            external_id: self.member_external_id.clone(),
            session_name: DEFAULT_SESSION_NAME.to_string(),
            duration: None,
        }
    }

    /// Whether the account's tags let it be collected.
    pub fn wants_tags(&self, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }

    /// Whether the account tags must be read (a tag filter, or labels from tags).
    pub fn needs_tags(&self) -> bool {
        !self.tags.is_empty() || !self.labels_from_tags.is_empty()
    }
}

/// Where and how fast launch state-change events are received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    /// The queue.
    pub queue: QueueSpec,
    /// Long-poll wait of one `ReceiveMessage`, 1–20 s.
    pub wait_time: Duration,
    /// `MaxNumberOfMessages`, 1–10.
    pub max_messages: i32,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates YAML text. An account without regions (and no top-level `regions`)
    /// keeps an empty region list: [`Config::with_default_region`] fills it from the environment.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?
        };
        Config::try_from(raw).map_err(|e| e.located_in(text))
    }

    /// The configuration of `--config.file` (or the no-file default), with accounts that name no
    /// region given `environment_region`. An error when some account still has no region.
    pub fn load_resolved(
        path: Option<&Path>,
        environment_region: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::without_file()?,
        };
        if config.needs_default_region() {
            config.with_default_region(environment_region)
        } else {
            Ok(config)
        }
    }

    /// The configuration used when no file is given: base credentials, no regions yet. It is
    /// an empty file, validated like any other.
    pub fn without_file() -> Result<Config, ConfigError> {
        Config::try_from(RawConfig::default())
    }

    /// Whether some account (or the accounts discovery will find) has no region and needs the
    /// region the AWS environment names.
    pub fn needs_default_region(&self) -> bool {
        self.accounts.iter().any(|a| a.regions.is_empty())
            || (self.discovery.is_some() && self.defaults.regions.is_empty())
    }

    /// Gives every account without regions the environment's region (for `regions: all`, as the
    /// fallback until the enabled regions are known); an error when there is none.
    pub fn with_default_region(mut self, region: Option<&str>) -> Result<Config, ConfigError> {
        let mut places: Vec<String> = self
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.regions.is_empty())
            .map(|(i, _)| format!("accounts[{i}].regions"))
            .collect();
        if self.discovery.is_some() && self.defaults.regions.is_empty() {
            places.push("regions".to_string());
        }
        let Some(place) = places.first() else {
            return Ok(self);
        };
        let Some(region) = region else {
            return Err(invalid(
                place.clone(),
                "no region configured and none found in the AWS environment (AWS_REGION, \
                 AWS_DEFAULT_REGION, the profile, EC2 instance metadata; --log.level=debug \
                 shows why each gave none): set `regions` in the config file, or AWS_REGION \
                 (`regions: all` needs one to list the enabled regions from)",
            ));
        };
        check_region(region).map_err(|m| invalid("AWS_REGION", m))?;
        if let Some(warning) = unknown_region_warning("AWS_REGION", region) {
            self.warnings.push(warning);
        }
        for account in &mut self.accounts {
            if account.regions.is_empty() {
                account.regions.push(region.to_string());
            }
        }
        if self.discovery.is_some() && self.defaults.regions.is_empty() {
            self.defaults.regions.push(region.to_string());
        }
        Ok(self)
    }

    /// Every (account, region) pair, in config order.
    pub fn targets(&self) -> impl Iterator<Item = (&AccountConfig, &str)> {
        self.accounts
            .iter()
            .flat_map(|a| a.regions.iter().map(move |r| (a, r.as_str())))
    }

    /// The targets of the configured accounts, in config order, each in its configured regions
    /// (for `regions: all`, the fallback list): what the registry reconciles to without
    /// discovery.
    pub fn target_specs(&self) -> Vec<TargetSpec> {
        self.accounts
            .iter()
            .flat_map(|account| account.target_specs(&account.regions))
            .collect()
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut collection = validate_collection(&raw.collection)?;
        let metrics = validate_metrics(raw.metrics)?;
        let events = match raw.events {
            None => None,
            Some(raw_events) => Some(validate_events(raw_events, &mut collection)?),
        };
        let mut warnings = Vec::new();
        let (default_regions, default_all) =
            validate_region_choice("regions", raw.regions, &mut warnings)?;
        let default_image_ids = validate_image_ids("image_ids", raw.image_ids.unwrap_or_default())?;
        let default_filters = validate_filters("filters", raw.filters.unwrap_or_default())?;
        // A `cloudwatch` block turns it on unless it says `enabled: false`.
        let default_cloudwatch = raw
            .cloudwatch
            .map(|mut c| {
                c.enabled.get_or_insert(true);
                c
            })
            .unwrap_or_default();
        // Checked on its own too, so that a mistake there is named there.
        let top_cloudwatch = validate_cloudwatch("cloudwatch", &default_cloudwatch)?;
        let discovery = match raw.discovery {
            None => None,
            Some(RawDiscovery {
                organizations: None,
            }) => {
                return Err(invalid(
                    "discovery",
                    "names no source; add `organizations:` (or leave `discovery` out)",
                ))
            }
            Some(RawDiscovery {
                organizations: Some(org),
            }) => Some(validate_organizations(org)?),
        };

        let raw_accounts = match raw.accounts {
            // With discovery, only the discovered accounts (and those listed).
            None if discovery.is_some() => Vec::new(),
            None => vec![RawAccount {
                name: None,
                role_arn: None,
                external_id: None,
                session_name: None,
                duration: None,
                regions: None,
                image_ids: None,
                filters: None,
                labels: BTreeMap::new(),
                cloudwatch: None,
            }],
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "accounts",
                    if discovery.is_some() {
                        "is empty; leave it out to collect only the discovered accounts"
                    } else {
                        "is empty; leave it out to use the base credentials"
                    },
                ))
            }
            Some(list) => list,
        };

        let mut accounts: Vec<AccountConfig> = Vec::with_capacity(raw_accounts.len());
        for (i, raw_account) in raw_accounts.into_iter().enumerate() {
            let place = format!("accounts[{i}]");
            let cloudwatch = validate_cloudwatch(
                &format!("{place}.cloudwatch"),
                &merge_cloudwatch(&default_cloudwatch, raw_account.cloudwatch.as_ref()),
            )?;
            let mut account = validate_account(
                &place,
                raw_account,
                (&default_regions, default_all),
                &default_image_ids,
                &default_filters,
                &mut warnings,
            )?;
            account.cloudwatch = cloudwatch;
            check_unique(&place, &account, &accounts)?;
            accounts.push(account);
        }
        Ok(Config {
            collection,
            accounts,
            warnings,
            events,
            discovery,
            defaults: AccountDefaults {
                regions: default_regions,
                all_regions: default_all,
                query: Query {
                    image_ids: default_image_ids,
                    filters: default_filters,
                },
                cloudwatch: top_cloudwatch,
            },
            metrics,
        })
    }
}

/// An account's name and account id are its own: `account` (at `place`) repeats none of
/// `earlier`'s, and at most one account goes without a role.
fn check_unique(
    place: &str,
    account: &AccountConfig,
    earlier_accounts: &[AccountConfig],
) -> Result<(), ConfigError> {
    for (j, earlier) in earlier_accounts.iter().enumerate() {
        if account.name.is_some() && account.name == earlier.name {
            return Err(invalid(
                format!("{place}.name"),
                format!(
                    "{:?} is already used by accounts[{j}]",
                    account.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        match (
            account.configured_account_id(),
            earlier.configured_account_id(),
        ) {
            (Some(a), Some(b)) if a == b => {
                return Err(invalid(
                    format!("{place}.role_arn"),
                    format!("account {a} is already configured by accounts[{j}]"),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    format!("{place}.role_arn"),
                    format!(
                        "missing; accounts[{j}] already uses the base credentials \
                         (only one account may go without role_arn)"
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The duration at `place`, within `bounds` (see [`duration`]).
fn parse_duration(place: &str, text: &str, bounds: &Bounds) -> Result<Duration, ConfigError> {
    bounds.parse(text).map_err(|m| invalid(place, m))
}

fn validate_collection(raw: &RawCollection) -> Result<CollectionSettings, ConfigError> {
    let mut settings = CollectionSettings::default();
    if let Some(text) = &raw.interval {
        settings.interval = parse_duration("collection.interval", text, &duration::INTERVAL)?;
    }
    if let Some(text) = &raw.timeout {
        settings.timeout = parse_duration("collection.timeout", text, &duration::TIMEOUT)?;
    } else {
        settings.timeout = settings.timeout.min(settings.interval);
    }
    if settings.timeout > settings.interval {
        return Err(invalid(
            "collection.timeout",
            format!(
                "{:?} is longer than collection.interval ({})",
                raw.timeout.as_deref().unwrap_or_default(),
                duration::format(settings.interval)
            ),
        ));
    }
    if let Some(n) = raw.concurrency {
        if !(1..=1024).contains(&n) {
            return Err(invalid(
                "collection.concurrency",
                format!("\"{n}\" must be between 1 and 1024"),
            ));
        }
        settings.concurrency = n as usize;
    }
    if let Some(n) = raw.page_size {
        // MaxResults: 0–200 per the EC2 API reference; 0 would page forever without images.
        if !(1..=200).contains(&n) {
            return Err(invalid(
                "collection.page_size",
                format!("\"{n}\" must be between 1 and 200 (the MaxResults range of DescribeFastLaunchImages)"),
            ));
        }
        settings.page_size = n as i32;
    }
    settings.max_staleness = match &raw.max_staleness {
        Some(text) => parse_duration("collection.max_staleness", text, &duration::MAX_STALENESS)?,
        None => settings.interval * 3,
    };
    if let Some(n) = raw.max_attempts {
        if !(1..=10).contains(&n) {
            return Err(invalid(
                "collection.max_attempts",
                format!("\"{n}\" must be between 1 and 10"),
            ));
        }
        settings.max_attempts = n as u32;
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(yaml: &str) -> String {
        Config::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn full_example_parses_with_overrides_and_defaults() {
        let config = Config::from_yaml(
            r#"
collection: {interval: 1m, timeout: 20s, concurrency: 4, page_size: 50, max_attempts: 2}
regions: [us-east-1, eu-west-1]
filters: [{name: state, values: [enabled]}]
accounts:
  - name: prod
    role_arn: arn:aws:iam::111111111111:role/Reader
    external_id: abc-123
    regions: [us-west-2]
    labels: {team: windows}
  - name: base
"#,
        )
        .unwrap();
        assert_eq!(config.collection.interval, Duration::from_secs(60));
        assert_eq!(config.collection.max_staleness, Duration::from_secs(180));
        assert_eq!(config.collection.page_size, 50);
        let prod = &config.accounts[0];
        assert_eq!(prod.role.as_ref().unwrap().account_id, "111111111111");
        assert_eq!(
            prod.role.as_ref().unwrap().session_name,
            DEFAULT_SESSION_NAME
        );
        assert_eq!(prod.regions, vec!["us-west-2"]);
        assert_eq!(prod.query.filters[0].values, vec!["enabled"]);
        assert_eq!(config.accounts[1].regions, vec!["us-east-1", "eu-west-1"]);
        assert_eq!(config.targets().count(), 3);
        let label_names: BTreeSet<&String> = config
            .accounts
            .iter()
            .flat_map(|a| a.labels.keys())
            .collect();
        assert_eq!(label_names.into_iter().collect::<Vec<_>>(), vec!["team"]);
    }

    #[test]
    fn region_names_are_checked_by_shape_and_direction() {
        for ok in [
            "us-east-1",
            "ap-southeast-4",
            "us-gov-west-1",
            "il-central-1",
            "us-isob-east-1",
            "eusc-de-east-1",
        ] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for known in KNOWN_REGIONS {
            assert!(check_region(known).is_ok(), "{known}");
        }
        for bad in [
            "us-eest-1",
            "u-east-1",
            "us-east-100",
            "useast1",
            "US-EAST-1",
            "us-east-",
            "us-east-1a",
            "",
        ] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_well_formed_region_this_build_does_not_know_is_taken_with_a_warning() {
        let config = Config::from_yaml("regions: [us-east-1, xy-central-9]").unwrap();
        assert_eq!(config.accounts[0].regions, ["us-east-1", "xy-central-9"]);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0]
                .starts_with("regions[1]: \"xy-central-9\" is not a region this build knows"),
            "{:?}",
            config.warnings
        );
        assert!(Config::from_yaml("regions: [us-east-1]")
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn target_specs_carry_every_collection_input_in_config_order() {
        let config = Config::from_yaml(
            "regions: [us-east-1, eu-west-1]\naccounts:\n  - name: base\n  - role_arn: arn:aws:iam::222222222222:role/R\n    external_id: ext-1\n    regions: [ap-south-1]\n    image_ids: [ami-0123456789abcdef0]\n    labels: {team: w}\n",
        )
        .unwrap();
        let specs = config.target_specs();
        let keys: Vec<String> = specs.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "base/us-east-1",
                "base/eu-west-1",
                "arn:aws:iam::222222222222:role/R/ap-south-1"
            ]
        );
        assert_eq!(specs[0].account_name.as_deref(), Some("base"));
        assert_eq!(specs[2].configured_account_id(), Some("222222222222"));
        assert_eq!(
            specs[2].role.as_ref().unwrap().external_id.as_deref(),
            Some("ext-1")
        );
        assert_eq!(specs[2].query.image_ids, ["ami-0123456789abcdef0"]);
        assert_eq!(specs[2].labels["team"], "w");
    }

    #[test]
    fn cloudwatch_is_off_by_default_and_accounts_override_it_key_by_key() {
        let off = Config::from_yaml("regions: [us-east-1]\n").unwrap();
        assert_eq!(off.accounts[0].cloudwatch, None);
        let block = Config::from_yaml("regions: [us-east-1]\ncloudwatch: {}\n").unwrap();
        assert!(
            block.accounts[0].cloudwatch.is_some(),
            "a block turns it on"
        );
        let config = Config::from_yaml(
            "regions: [us-east-1]\ncloudwatch: {enabled: true, period: 1m}\naccounts:\n  - name: a\n  - name: b\n    role_arn: arn:aws:iam::222222222222:role/R\n    cloudwatch: {lookback: 2h}\n  - name: c\n    role_arn: arn:aws:iam::333333333333:role/R\n    cloudwatch: {enabled: false}\n",
        )
        .unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(
            config.accounts[0].cloudwatch,
            Some(CloudWatchSpec {
                period: minute,
                lookback: DEFAULT_CLOUDWATCH_LOOKBACK
            })
        );
        assert_eq!(
            config.accounts[1].cloudwatch,
            Some(CloudWatchSpec {
                period: minute,
                lookback: Duration::from_secs(7200)
            })
        );
        assert_eq!(config.accounts[2].cloudwatch, None);
        assert_eq!(
            config.target_specs()[1].cloudwatch,
            config.accounts[1].cloudwatch
        );
        // Only one account turns it on.
        let one = Config::from_yaml(
            "regions: [us-east-1]\naccounts:\n  - name: a\n  - name: b\n    role_arn: arn:aws:iam::222222222222:role/R\n    cloudwatch: {}\n",
        )
        .unwrap();
        assert_eq!(one.accounts[0].cloudwatch, None);
        assert!(one.accounts[1].cloudwatch.is_some());
    }

    #[test]
    fn cloudwatch_periods_are_whole_minutes_and_the_lookback_covers_one() {
        for (yaml, place, words) in [
            (
                "cloudwatch: {period: 30s}",
                "cloudwatch.period",
                "whole minutes",
            ),
            (
                "cloudwatch: {period: 90s}",
                "cloudwatch.period",
                "whole minutes",
            ),
            (
                "cloudwatch: {period: 5m, lookback: 1m}",
                "cloudwatch.lookback",
                "at least the period",
            ),
            (
                "cloudwatch: {lookback: 2d}",
                "cloudwatch.lookback",
                "the range is 1m to 1d",
            ),
            (
                "cloudwatch: {period: soon}",
                "cloudwatch.period",
                "not a duration",
            ),
            ("cloudwatch: {enable: true}", "unknown field `enable`", ""),
            (
                "accounts:\n  - cloudwatch: {period: 10s}",
                "accounts[0].cloudwatch.period",
                "whole minutes",
            ),
        ] {
            let err = Config::from_yaml(&format!("regions: [us-east-1]\n{yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(place) && err.contains(words), "{yaml}: {err}");
        }
    }

    #[test]
    fn discovery_and_regions_all_are_read_and_checked() {
        let config = Config::from_yaml(
            "regions: all\ndiscovery:\n  organizations:\n    member_role_arn: \"arn:aws:iam::{account_id}:role/R\"\n    tags: {fast-launch: true, tier: 1}\n    labels_from_tags: [cost-center, 9lives]\n",
        )
        .unwrap();
        assert!(config.accounts.is_empty(), "discovered accounts only");
        assert!(config.defaults.all_regions);
        let discovery = config.discovery.as_ref().unwrap();
        assert_eq!(discovery.tags["fast-launch"], "true");
        assert_eq!(discovery.tags["tier"], "1");
        assert_eq!(
            discovery.labels_from_tags,
            [
                ("cost-center".to_string(), "cost_center".to_string()),
                ("9lives".to_string(), "_9lives".to_string())
            ]
        );
        assert_eq!(
            discovery.member_role("123456789012").arn,
            "arn:aws:iam::123456789012:role/R"
        );
        assert!(config.needs_default_region());
        let filled = config.with_default_region(Some("eu-west-1")).unwrap();
        assert_eq!(filled.defaults.regions, ["eu-west-1"]);
        for (yaml, words) in [
            ("discovery: {organizations: {}}", "member_role_arn: is required"),
            ("discovery: {organizations: {member_role_arn: \"arn:aws:iam::123456789012:role/R\"}}", "must contain {account_id}"),
            ("discovery: {}", "names no source"),
            ("regions: some", "neither a list of regions nor `all`"),
            ("discovery: {organizations: {member_role_arn: \"arn:aws:iam::{account_id}:role/R\", labels_from_tags: [account-name]}}", "which the exporter uses itself"),
            ("discovery: {organizations: {member_role_arn: \"arn:aws:iam::{account_id}:role/R\"}}\naccounts: []", "only the discovered accounts"),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(words), "{yaml}: {err}");
        }
    }

    #[test]
    fn events_take_the_queue_region_and_account_from_its_url() {
        let config = Config::from_yaml(
            "regions: [us-east-1]\nevents:\n  queue_url: https://sqs.eu-west-1.amazonaws.com/999999999999/fast-launch-events\n  debounce: 3s\n  wait_time: 5s\n",
        )
        .unwrap();
        let events = config.events.unwrap();
        assert_eq!(events.queue.region, "eu-west-1");
        assert_eq!(events.queue.account_id, "999999999999");
        assert_eq!(events.wait_time, Duration::from_secs(5));
        assert_eq!(events.max_messages, 10);
        assert_eq!(config.collection.event_debounce, Duration::from_secs(3));
        for (yaml, expected) in [
            ("events: {queue_url: 'https://example.com/q'}", "events.queue_url: \"https://example.com/q\" is not an SQS queue URL"),
            ("events: {queue_url: 'https://sqs.us-east-1.amazonaws.com/999999999999/q', wait_time: 30s}", "events.wait_time: \"30s\" is too long: the range is 1s to 20s, because SQS long polling"),
            ("events: {queue_url: 'https://sqs.us-east-1.amazonaws.com/999999999999/q', wait_time: 1500ms}", "events.wait_time: \"1500ms\" must be whole seconds between 1s and 20s"),
            ("events: {queue_url: 'https://sqs.us-east-1.amazonaws.com/999999999999/q', max_messages: 11}", "events.max_messages: \"11\" must be between 1 and 10"),
            ("events: {queue_url: 'https://sqs.us-east-1.amazonaws.com/999999999999/q', external_id: abc}", "events.external_id: is set but role_arn is not"),
            ("events: {queue_url: 'https://sqs.us-east-1.amazonaws.com/999999999999/q', colour: red}", "unknown field `colour`"),
        ] {
            let message = error_of(yaml);
            assert!(message.contains(expected), "{yaml}\n got: {message}");
        }
        assert_eq!(
            queue_url_parts("https://eu-west-1.queue.amazonaws.com/999999999999/q").unwrap(),
            ("eu-west-1".to_string(), "999999999999".to_string())
        );
    }

    #[test]
    fn misspelled_region_is_named_with_its_place() {
        let yaml = "accounts:\n  - role_arn: arn:aws:iam::111111111111:role/R\n  - role_arn: arn:aws:iam::222222222222:role/R\n    regions: [us-eest-1]\n";
        assert_eq!(
            error_of(yaml),
            r#"accounts[1].regions[0]: "us-eest-1" is not a region name at line 4 column 15"#
        );
    }

    #[test]
    fn each_rule_has_its_message() {
        let cases = [
            ("collection: {interval: 5 minutes please}", "collection.interval: \"5 minutes please\" is not a duration"),
            ("collection: {interval: 0s}", "collection.interval: \"0s\" is too short: the range is 1s to 1d"),
            ("collection: {interval: 5M}", "collection.interval: \"5M\" is not a duration: \"M\" is not a unit"),
            ("collection: {interval: 2d}", "collection.interval: \"2d\" is too long: the range is 1s to 1d, because"),
            ("collection: {interval: 1m, timeout: 2m}", "collection.timeout: \"2m\" is longer than collection.interval (1m)"),
            ("collection: {page_size: 500}", "collection.page_size: \"500\" must be between 1 and 200"),
            ("collection: {concurrency: 0}", "collection.concurrency: \"0\" must be between 1 and 1024"),
            ("collection: {max_attempts: 0}", "collection.max_attempts: \"0\" must be between 1 and 10"),
            ("image_ids: [ami-xyz]", "image_ids[0]: \"ami-xyz\" is not an AMI id"),
            ("filters: [{name: colour, values: [red]}]", "filters[0].name: \"colour\" is not a DescribeFastLaunchImages filter"),
            ("filters: [{name: state, values: []}]", "filters[0].values: is empty"),
            ("regions: [us-east-1, us-east-1]", "regions[1]: \"us-east-1\" is listed twice"),
            ("accounts: []", "accounts: is empty"),
            ("accounts: [{role_arn: 'arn:aws:iam::12:role/x'}]", "accounts[0].role_arn: \"arn:aws:iam::12:role/x\" is not an IAM role ARN"),
            ("accounts: [{external_id: abc}]", "accounts[0].external_id: is set but role_arn is not"),
            ("accounts: [{role_arn: 'arn:aws:iam::111111111111:role/x', duration: 1m}]", "accounts[0].duration: \"1m\" is too short: the range is 15m to 12h"),
            ("accounts: [{role_arn: 'arn:aws:iam::111111111111:role/x', session_name: 'a b'}]", "accounts[0].session_name: \"a b\" must be 2 to 64"),
            ("accounts: [{labels: {'bad-name': x}}]", "accounts[0].labels: \"bad-name\" is not a Prometheus label name"),
            ("accounts: [{labels: {aws_account_id: x}}]", "accounts[0].labels: \"aws_account_id\" is reserved"),
            ("accounts: [{name: a}, {name: b}]", "accounts[1].role_arn: missing; accounts[0] already uses the base credentials"),
            ("accounts: [{name: a, role_arn: 'arn:aws:iam::111111111111:role/x'}, {name: a, role_arn: 'arn:aws:iam::222222222222:role/x'}]", "accounts[1].name: \"a\" is already used by accounts[0]"),
            ("accounts: [{role_arn: 'arn:aws:iam::111111111111:role/x'}, {role_arn: 'arn:aws:iam::111111111111:role/y'}]", "accounts[1].role_arn: account 111111111111 is already configured by accounts[0]"),
            ("accounts: [{regions: []}]", "accounts[0].regions: is empty"),
        ];
        for (yaml, expected) in cases {
            let message = error_of(yaml);
            assert!(
                message.starts_with(expected),
                "{yaml}\n got: {message}\nwant: {expected}"
            );
        }
    }

    /// Every duration key: Prometheus' syntax, and the bounds that key takes, as errors that
    /// name the key, the range and why.
    #[test]
    fn every_duration_key_takes_prometheus_durations_within_its_bounds() {
        const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/999999999999/q";
        const ROLE: &str = "arn:aws:iam::111111111111:role/x";
        const ORG: &str =
            "discovery: {organizations: {member_role_arn: 'arn:aws:iam::{account_id}:role/R'";
        let ok: &[String] = &[
            "collection: {interval: 1h30m, timeout: 1h, max_staleness: 1w}".into(),
            "collection: {interval: 1d, timeout: 1s, max_staleness: 1s}".into(),
            "collection: {interval: 1s, timeout: 1s}".into(),
            format!("events: {{queue_url: {QUEUE}, debounce: 5m, wait_time: 20s}}"),
            format!("events: {{queue_url: {QUEUE}, debounce: 1ms, wait_time: 1s}}"),
            format!("{ORG}, interval: 1d}}}}"),
            "cloudwatch: {period: 1h, lookback: 1d}".into(),
            format!("accounts: [{{role_arn: '{ROLE}', duration: 12h}}]"),
            format!("accounts: [{{role_arn: '{ROLE}', duration: 15m}}]"),
        ];
        for yaml in ok {
            Config::from_yaml(&format!("regions: [us-east-1]\n{yaml}\n"))
                .unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
        let bad: &[(String, &str)] = &[
            ("collection: {interval: 5M}".into(), "collection.interval: \"5M\" is not a duration: \"M\" is not a unit"),
            ("collection: {interval: 100y}".into(), "collection.interval: \"100y\" is too long: the range is 1s to 1d, because"),
            ("collection: {interval: 1000000y}".into(), "collection.interval: \"1000000y\" is not a duration: too long"),
            ("collection: {interval: 1.5h}".into(), "collection.interval: \"1.5h\" is not a duration: fractions are not taken"),
            ("collection: {interval: 1m30s1m}".into(), "collection.interval: \"1m30s1m\" is not a duration: write whole numbers"),
            ("collection: {interval: 90us}".into(), "collection.interval: \"90us\" is not a duration: \"us\" is not a unit"),
            ("collection: {interval: 25h}".into(), "collection.interval: \"25h\" is too long: the range is 1s to 1d"),
            ("collection: {interval: 999ms}".into(), "collection.interval: \"999ms\" is too short: the range is 1s to 1d"),
            ("collection: {interval: '0'}".into(), "collection.interval: \"0\" is too short"),
            ("collection: {timeout: 500ms}".into(), "collection.timeout: \"500ms\" is too short: the range is 1s to 1h"),
            ("collection: {interval: 1d, timeout: 2h}".into(), "collection.timeout: \"2h\" is too long: the range is 1s to 1h, because"),
            ("collection: {max_staleness: 8d}".into(), "collection.max_staleness: \"8d\" is too long: the range is 1s to 1w, because"),
            ("collection: {max_staleness: 0s}".into(), "collection.max_staleness: \"0s\" is too short"),
            (format!("events: {{queue_url: {QUEUE}, debounce: 0s}}"), "events.debounce: \"0s\" must be longer than zero (at most 5m)"),
            (format!("events: {{queue_url: {QUEUE}, debounce: 6m}}"), "events.debounce: \"6m\" is too long: the range is 1ms to 5m, because"),
            (format!("collection: {{interval: 1m}}\nevents: {{queue_url: {QUEUE}, debounce: 2m}}"), "events.debounce: \"2m\" is longer than collection.interval (1m)"),
            (format!("events: {{queue_url: {QUEUE}, wait_time: 0s}}"), "events.wait_time: \"0s\" is too short: the range is 1s to 20s"),
            (format!("{ORG}, interval: 2d}}}}"), "discovery.organizations.interval: \"2d\" is too long: the range is 1s to 1d, because"),
            (format!("{ORG}, interval: 1M}}}}"), "discovery.organizations.interval: \"1M\" is not a duration"),
            ("cloudwatch: {period: 2h}".into(), "cloudwatch.period: \"2h\" is too long: the range is 1m to 1h"),
            ("cloudwatch: {period: 0s}".into(), "cloudwatch.period: \"0s\" is too short: the range is 1m to 1h"),
            ("cloudwatch: {period: 1M}".into(), "cloudwatch.period: \"1M\" is not a duration"),
            ("cloudwatch: {lookback: 1w}".into(), "cloudwatch.lookback: \"1w\" is too long: the range is 1m to 1d"),
            (format!("accounts: [{{role_arn: '{ROLE}', duration: 13h}}]"), "accounts[0].duration: \"13h\" is too long: the range is 15m to 12h, because AssumeRole"),
            (format!("accounts: [{{role_arn: '{ROLE}', duration: 1h30}}]"), "accounts[0].duration: \"1h30\" is not a duration: \"30\" has no unit"),
        ];
        for (yaml, expected) in bad {
            let message = error_of(&format!("regions: [us-east-1]\n{yaml}\n"));
            assert!(
                message.starts_with(expected),
                "{yaml}\n got: {message}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let message = error_of("collection:\n  intervall: 5m\n");
        assert!(message.contains("unknown field `intervall`"), "{message}");
        assert!(message.contains("collection"), "{message}");
        let message = error_of("accounts:\n  - rolearn: x\n");
        assert!(message.contains("accounts[0]"), "{message}");
        assert!(message.contains("unknown field `rolearn`"), "{message}");
    }

    #[test]
    fn external_id_is_never_quoted_back() {
        let message = error_of("accounts: [{role_arn: 'arn:aws:iam::111111111111:role/x', external_id: 'sécret value'}]");
        assert!(!message.contains("sécret"), "{message}");
    }

    #[test]
    fn missing_region_is_taken_from_the_environment_or_refused() {
        let config = Config::without_file().unwrap();
        assert!(config.needs_default_region());
        assert_eq!(config.accounts.len(), 1);
        assert!(config.accounts[0].role.is_none() && config.accounts[0].regions.is_empty());
        assert_eq!(config.collection, CollectionSettings::default());
        let filled = config
            .clone()
            .with_default_region(Some("eu-west-1"))
            .unwrap();
        assert_eq!(filled.accounts[0].regions, vec!["eu-west-1"]);
        let err = config.with_default_region(None).unwrap_err().to_string();
        assert!(err.contains("no region configured"), "{err}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn shipped_example_config_is_valid() {
        let config = Config::from_yaml(include_str!("../../config/example.yaml")).unwrap();
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.targets().count(), 3);
        assert_eq!(config.accounts[0].cloudwatch, None);
        assert!(config.accounts[1].cloudwatch.is_some());
    }
}
