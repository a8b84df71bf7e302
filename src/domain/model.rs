//! The exporter's own types: what DescribeFastLaunchImages returns and what a target is. Plain
//! types only; no SDK types past `aws`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `at` in Unix seconds, with its fraction (0 before the epoch).
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Now, in whole Unix seconds.
pub fn unix_now() -> i64 {
    unix_seconds(SystemTime::now()) as i64
}

/// The fast-launch state of an image, as AWS names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FastLaunchState {
    /// `enabling`
    Enabling,
    /// `enabling-failed`
    EnablingFailed,
    /// `enabled`
    Enabled,
    /// `enabled-failed`
    EnabledFailed,
    /// `disabling`
    Disabling,
    /// `disabling-failed`
    DisablingFailed,
    /// A value AWS added after this exporter was built, kept as AWS wrote it.
    Unknown(String),
}

impl FastLaunchState {
    /// The six states the EC2 API documents, in the order they are exported.
    pub const ALL: [FastLaunchState; 6] = [
        FastLaunchState::Enabling,
        FastLaunchState::EnablingFailed,
        FastLaunchState::Enabled,
        FastLaunchState::EnabledFailed,
        FastLaunchState::Disabling,
        FastLaunchState::DisablingFailed,
    ];

    /// Parses AWS's wire value; anything else is kept as [`FastLaunchState::Unknown`].
    pub fn from_aws(value: &str) -> FastLaunchState {
        FastLaunchState::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or_else(|| FastLaunchState::Unknown(value.to_string()))
    }

    /// AWS's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            FastLaunchState::Enabling => "enabling",
            FastLaunchState::EnablingFailed => "enabling-failed",
            FastLaunchState::Enabled => "enabled",
            FastLaunchState::EnabledFailed => "enabled-failed",
            FastLaunchState::Disabling => "disabling",
            FastLaunchState::DisablingFailed => "disabling-failed",
            FastLaunchState::Unknown(raw) => raw,
        }
    }
}

impl fmt::Display for FastLaunchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image as DescribeFastLaunchImages reports it. Missing text fields are empty strings, as they
/// are exported as empty label values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FastLaunchImage {
    /// `ImageId`.
    pub image_id: String,
    /// `OwnerId`; empty for AMIs shared with you.
    pub owner_id: String,
    /// `ResourceType` (`snapshot` today).
    pub resource_type: String,
    /// `LaunchTemplate.LaunchTemplateId`.
    pub launch_template_id: String,
    /// `LaunchTemplate.LaunchTemplateName`.
    pub launch_template_name: String,
    /// `LaunchTemplate.Version`.
    pub launch_template_version: String,
    /// `State`; None when AWS gave none.
    pub state: Option<FastLaunchState>,
    /// `StateTransitionReason`.
    pub state_transition_reason: String,
    /// `StateTransitionTime` as Unix seconds with milliseconds.
    pub state_transition_time: Option<f64>,
    /// `SnapshotConfiguration.TargetResourceCount`.
    pub target_resource_count: Option<i32>,
    /// `MaxParallelLaunches`.
    pub max_parallel_launches: Option<i32>,
}

/// The account key of the account reached with the base credentials (no role).
pub const BASE_ACCOUNT_KEY: &str = "base";

/// One (account, region) pair. `account` is the config's stable key for the account (role ARN or
/// [`BASE_ACCOUNT_KEY`]), which is known before the account id is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Stable account key from the config. Shared (`Arc<str>`): every target of an account, and
    /// every copy of a key the registry and the caches hold, point at one string.
    pub account: Arc<str>,
    /// AWS region name, shared as `account` is.
    pub region: Arc<str>,
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// One `Filters` entry passed to DescribeFastLaunchImages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `resource-type`, `owner-id` or `state`.
    pub name: String,
    /// Values, OR-ed by AWS.
    pub values: Vec<String>,
}

/// What a target asks DescribeFastLaunchImages for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// `ImageIds` (empty: every image).
    pub image_ids: Vec<String>,
    /// `Filters`, AND-ed by AWS.
    pub filters: Vec<Filter>,
}

/// An IAM role to assume for an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleSpec {
    /// The role's ARN.
    pub arn: String,
    /// The 12-digit account id taken from the ARN.
    pub account_id: String,
    /// Optional external id required by the role's trust policy. Never logged.
    pub external_id: Option<String>,
    /// Role session name.
    pub session_name: String,
    /// Requested session duration (None: the role's default).
    pub duration: Option<Duration>,
}

/// Everything needed to collect one target, in plain types: which account (and how to reach it),
/// which region, what to ask for, and the labels to export with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The account key and region.
    pub key: TargetKey,
    /// The account's alias (`account_name`), if any.
    pub account_name: Option<String>,
    /// The role to assume; None means the base credentials.
    pub role: Option<RoleSpec>,
    /// The request parameters.
    pub query: Query,
    /// Static labels exported on the account info metric.
    pub labels: BTreeMap<String, String>,
    /// The CloudWatch fast launch metrics to read with every collection (None: off).
    pub cloudwatch: Option<CloudWatchSpec>,
}

impl TargetSpec {
    /// The account id when it is known without asking AWS (from the role ARN).
    pub fn configured_account_id(&self) -> Option<&str> {
        self.role.as_ref().map(|r| r.account_id.as_str())
    }

    /// Whether a change from `self` to `other` changes what a collection does (credentials or
    /// query), as opposed to only the labels it is exported with.
    pub fn collects_like(&self, other: &TargetSpec) -> bool {
        self.key == other.key
            && self.role == other.role
            && self.query == other.query
            && self.cloudwatch == other.cloudwatch
    }
}

/// How a target reads the CloudWatch fast launch metrics (`cloudwatch` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudWatchSpec {
    /// The CloudWatch period asked for: whole minutes, at least one.
    pub period: Duration,
    /// How far back to look for the latest `NumberOfAvailableFastLaunchSnapshots` datapoint.
    pub lookback: Duration,
}

/// The fast launch metrics EC2 publishes in CloudWatch (namespace `AWS/EC2`), per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LaunchMetric {
    /// `NumberOfAvailableFastLaunchSnapshots`, read as its Minimum.
    AvailableSnapshots,
    /// `NumberOfInstancesFastLaunched`, read as its Sum.
    FastLaunched,
    /// `NumberOfInstancesNotFastLaunched` (no pre-provisioned snapshot was ready), read as its Sum.
    NotFastLaunched,
}

impl LaunchMetric {
    /// The three metrics.
    pub const ALL: [LaunchMetric; 3] = [
        LaunchMetric::AvailableSnapshots,
        LaunchMetric::FastLaunched,
        LaunchMetric::NotFastLaunched,
    ];

    /// The namespace all three are published in.
    pub const NAMESPACE: &'static str = "AWS/EC2";

    /// The metric's CloudWatch name.
    pub fn metric_name(self) -> &'static str {
        match self {
            LaunchMetric::AvailableSnapshots => "NumberOfAvailableFastLaunchSnapshots",
            LaunchMetric::FastLaunched => "NumberOfInstancesFastLaunched",
            LaunchMetric::NotFastLaunched => "NumberOfInstancesNotFastLaunched",
        }
    }

    /// The statistic asked for: the lowest snapshot count in a period, the launches in it.
    pub fn statistic(self) -> &'static str {
        match self {
            LaunchMetric::AvailableSnapshots => "Minimum",
            LaunchMetric::FastLaunched | LaunchMetric::NotFastLaunched => "Sum",
        }
    }
}

/// What one target asks CloudWatch for: the images, and the time range and period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricWindow {
    /// Start of the range, Unix seconds (a multiple of the period).
    pub start: i64,
    /// End of the range, Unix seconds.
    pub end: i64,
    /// The period, seconds.
    pub period: i64,
}

/// The datapoints of one metric of one image, in no particular order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// The image the metric's dimensions name.
    pub image_id: String,
    /// Which of the three metrics.
    pub metric: LaunchMetric,
    /// (period start in Unix seconds, value).
    pub points: Vec<(i64, f64)>,
}

/// The SQS queue EventBridge delivers fast launch state-change events to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue URL, as SQS names it (`QueueUrl`).
    pub url: String,
    /// The queue's region, from its URL.
    pub region: String,
    /// The account that owns the queue, from its URL.
    pub account_id: String,
    /// A role to assume to read the queue (None: the base credentials).
    pub role: Option<RoleSpec>,
    /// How long a received message stays hidden from other receives (`VisibilityTimeout` of
    /// `ReceiveMessage`): a message is deleted only after the collection it asks for succeeded,
    /// so it must outlast the debounce, the wait for a collection slot and the collection; a
    /// message whose collection failed comes back after it. See [`QueueSpec::visibility_for`].
    pub visibility: Duration,
}

impl QueueSpec {
    /// The visibility timeout for collections of `timeout` after a debounce of `debounce`: both,
    /// plus `timeout` again for the wait for a collection slot, in whole seconds, within SQS's
    /// 12 hours.
    pub fn visibility_for(debounce: Duration, timeout: Duration) -> Duration {
        let wanted = debounce + timeout * 2;
        let seconds = wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0);
        Duration::from_secs(seconds.clamp(1, 12 * 3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debounce, the collection and as long again for a slot, in whole seconds, within SQS's
    /// 0 to 12 hours.
    #[test]
    fn queue_visibility_outlasts_the_collection_a_message_waits_for() {
        let visibility = |debounce_ms, timeout_s| {
            QueueSpec::visibility_for(
                Duration::from_millis(debounce_ms),
                Duration::from_secs(timeout_s),
            )
        };
        assert_eq!(visibility(2_000, 60), Duration::from_secs(122));
        assert_eq!(visibility(200, 1), Duration::from_secs(3));
        assert_eq!(visibility(300_000, 3_600), Duration::from_secs(7_500));
        assert_eq!(visibility(0, 0), Duration::from_secs(1));
        assert_eq!(visibility(0, 86_400), Duration::from_secs(43_200));
    }

    #[test]
    fn known_states_round_trip_and_unknown_keeps_raw_name() {
        for state in FastLaunchState::ALL {
            assert_eq!(FastLaunchState::from_aws(state.as_str()), state);
        }
        let paused = FastLaunchState::from_aws("paused");
        assert_eq!(paused, FastLaunchState::Unknown("paused".into()));
        assert_eq!(paused.as_str(), "paused");
    }
}
