//! Every interface the outside world implements for the exporter: the AWS calls of a target, of
//! the event queue, of Organizations and of DescribeRegions, and the [`Connect`] that builds them.
//! `aws` implements them over the SDK; unit tests implement them with fakes. Everything above
//! `domain` talks to AWS through these traits only.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::calls::{ApiError, AttemptSink};
use super::model::{
    FastLaunchImage, MetricSeries, MetricWindow, Query, QueueSpec, RoleSpec, TargetSpec,
};
use super::stats::EventStats;

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The AWS calls of one target's collections.
pub trait Fetch: Send + Sync {
    /// The account id of the target's credentials (`sts:GetCallerIdentity`).
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>>;
    /// Every image across every page, or an error if any page failed (never half a list).
    fn fast_launch_images<'a>(
        &'a self,
        query: &'a Query,
        page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>>;
    /// The CloudWatch fast launch datapoints of `image_ids` in `window` (ListMetrics, then
    /// GetMetricData); nothing for images CloudWatch lists no metric for.
    fn launch_metrics<'a>(
        &'a self,
        image_ids: &'a [String],
        window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>>;
}

/// The calls `check-permissions` makes for one target, apart from the collections' [`Fetch`]:
/// a probe is never part of a collection.
pub trait Probe: Send + Sync {
    /// Whether the target may call DescribeFastLaunchImages (a `DryRun` call).
    fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Whether the target may call ListMetrics and GetMetricData (one small call of each).
    fn check_cloudwatch_permission(&self) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// Builds the AWS calls of a target from its spec, of the event queue and of discovery,
/// reporting every attempt into `sink`.
pub trait Connect: Send + Sync {
    /// The target's client, with `max_attempts` attempts per call.
    fn connect(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch>;
    /// The target's permission probe, with `max_attempts` attempts per call.
    fn probe(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Probe>;
    /// The event queue's client.
    fn connect_queue(
        &self,
        queue: &QueueSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Queue>;
    /// The AWS environment's region (where Organizations is called), if it names one.
    fn home_region(&self) -> Option<String>;
    /// The Organizations client of discovery: with `role`, or the base credentials; in
    /// `region`.
    fn connect_organization(
        &self,
        role: Option<&RoleSpec>,
        region: &str,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization>;
    /// The DescribeRegions client of one account (`role`, or the base credentials), in
    /// `region`.
    fn connect_regions(
        &self,
        role: Option<&RoleSpec>,
        region: &str,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList>;
}

/// An event's request that a target collect now.
#[derive(Debug, Clone)]
pub struct CollectNow {
    /// When the event happened, when it said.
    pub happened: Option<SystemTime>,
    /// Where the lag from `happened` to the end of the collection is recorded.
    pub stats: Arc<EventStats>,
    /// The queue messages waiting for this collection, told how it ended. Dropped untold (the
    /// target stopped first), they are left on the queue.
    pub deliveries: Vec<Arc<dyn Delivery>>,
}

impl CollectNow {
    /// A request for the collection of an event that happened at `happened`, with no message
    /// waiting for it.
    pub fn new(happened: Option<SystemTime>, stats: Arc<EventStats>) -> CollectNow {
        CollectNow {
            happened,
            stats,
            deliveries: Vec::new(),
        }
    }

    /// Merges a later request into this one: one collection serves both (the latest time wins,
    /// every waiting message waits for it).
    pub fn merge(&mut self, later: CollectNow) {
        self.happened = self.happened.max(later.happened);
        self.deliveries.extend(later.deliveries);
    }

    /// Tells every waiting message how its collection ended.
    pub fn settle(self, succeeded: bool) {
        for delivery in self.deliveries {
            delivery.collected(succeeded);
        }
    }
}

/// A received queue message waiting for the collection it asked for (implemented by the event
/// receiver, which deletes it from the queue once that collection succeeded).
pub trait Delivery: Send + Sync + std::fmt::Debug {
    /// How one collection it asked for ended: the fast launch images were read, or not.
    fn collected(&self, succeeded: bool);
}

/// One message as the queue gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `MessageId`.
    pub id: String,
    /// `ReceiptHandle`, needed to delete it.
    pub receipt_handle: String,
    /// `Body`.
    pub body: String,
}

/// The event queue's calls, implemented over the SDK in `aws`.
pub trait Queue: Send + Sync {
    /// Long-polls for up to `max_messages` messages, waiting up to `wait`.
    fn receive(
        &self,
        wait: Duration,
        max_messages: i32,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, ApiError>>;
    /// Deletes handled messages (at most 10: one `DeleteMessageBatch`).
    fn delete<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Makes messages visible again at once, for another receiver (at most 10: one
    /// `ChangeMessageVisibilityBatch` with `VisibilityTimeout` 0).
    fn release<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// An account as Organizations lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    /// The 12-digit id.
    pub id: String,
    /// The account's name.
    pub name: String,
    /// `State`; `Status` is deprecated and not read. None when the answer carried none.
    pub state: Option<AccountState>,
}

/// An account's `State` in Organizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    /// `ACTIVE`: the only state whose accounts are collected.
    Active,
    /// `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`, or a state added later, as AWS wrote it.
    Other(String),
}

impl AccountState {
    /// Parses AWS's value.
    pub fn from_aws(value: &str) -> AccountState {
        match value {
            "ACTIVE" => AccountState::Active,
            other => AccountState::Other(other.to_string()),
        }
    }
}

/// The Organizations calls of discovery.
pub trait Organization: Send + Sync {
    /// The accounts under `parents` (OU or root ids), recursively, or every account of the
    /// organization when `parents` is empty; every page, each sent to `pages` as it arrives (so
    /// that the accounts' tags can be asked for while the listing goes on).
    fn accounts<'a>(
        &'a self,
        parents: &'a [String],
        pages: AccountPages,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// The tags of an account; every page.
    fn tags<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>>;
    /// Whether the listing calls are allowed (`DescribeOrganization`, one page of `ListAccounts`).
    fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// Where [`Organization::accounts`] sends each page of accounts.
pub type AccountPages = tokio::sync::mpsc::UnboundedSender<Vec<OrgAccount>>;

/// `ec2:DescribeRegions` in one account.
pub trait RegionList: Send + Sync {
    /// The regions enabled for the account (opt-in status other than `not-opted-in`).
    fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>>;
}

#[cfg(test)]
pub use unsupported::Unsupported;

/// A port that answers nothing, for unit tests' fakes.
#[cfg(test)]
mod unsupported {
    use super::*;
    use crate::domain::calls::{Api, ErrorCode};

    /// What a unit test's fake [`Connect`] gives for what the test does not reach: every call
    /// fails naming its API.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Unsupported;

    impl Unsupported {
        fn error<T>(api: Api) -> Result<T, ApiError> {
            Err(ApiError::new(
                api,
                ErrorCode::Unrecognized(None),
                "not supported by this connection",
            ))
        }
    }

    impl Organization for Unsupported {
        fn accounts<'a>(
            &'a self,
            _parents: &'a [String],
            _pages: AccountPages,
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::ListAccounts) })
        }
        fn tags<'a>(
            &'a self,
            _account_id: &'a str,
        ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>> {
            Box::pin(async { Unsupported::error(Api::ListTagsForResource) })
        }
        fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::DescribeOrganization) })
        }
    }

    impl RegionList for Unsupported {
        fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
            Box::pin(async { Unsupported::error(Api::DescribeRegions) })
        }
    }

    impl Probe for Unsupported {
        fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::DescribeFastLaunchImages) })
        }
        fn check_cloudwatch_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::ListMetrics) })
        }
    }

    impl Queue for Unsupported {
        fn receive(
            &self,
            _wait: Duration,
            _max_messages: i32,
        ) -> BoxFuture<'_, Result<Vec<QueueMessage>, ApiError>> {
            Box::pin(async { Unsupported::error(Api::ReceiveMessage) })
        }
        fn delete<'a>(
            &'a self,
            _messages: &'a [QueueMessage],
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::DeleteMessageBatch) })
        }
        fn release<'a>(
            &'a self,
            _messages: &'a [QueueMessage],
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { Unsupported::error(Api::ChangeMessageVisibilityBatch) })
        }
    }
}
