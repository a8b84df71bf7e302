//! The schedule of one target and what one collection does. Every target is collected once right
//! after it starts (spread by a small jitter), then every `collection.interval`; at most
//! `collection.concurrency` collections run at once (one semaphore shared by every target); a
//! target never overlaps itself (its loop is sequential) and each collection is bounded by
//! `collection.timeout`. The [`Registry`](crate::registry::Registry) starts and stops these loops.
//!
//! What the collector needs from AWS is the [`Connect`] and [`Fetch`] traits below, implemented
//! over the SDK by [`crate::aws::Base`] and by fakes in unit tests.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::calls::{Api, ApiCounters, ApiError, AttemptSink, ErrorCode};
use crate::config::CollectionSettings;
use crate::discovery::{Organization, RegionList};
use crate::events::Queue;
use crate::model::{
    FastLaunchImage, FastLaunchState, MetricSeries, MetricWindow, Query, QueueSpec, RoleSpec,
    TargetKey, TargetSpec,
};
use crate::registry::Registry;

/// The longest start-up jitter; the concurrency limit spreads larger fleets anyway.
pub const MAX_JITTER: Duration = Duration::from_secs(1);

/// A boxed future, for the object-safe [`Fetch`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The AWS calls of one target.
pub trait Fetch: Send + Sync {
    /// The account id of the target's credentials (`sts:GetCallerIdentity`).
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>>;
    /// Every image across every page, or an error if any page failed (never half a list).
    fn fast_launch_images<'a>(
        &'a self,
        query: &'a Query,
        page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>>;
    /// Whether the target may call DescribeFastLaunchImages (a `DryRun` call).
    fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Whether the target may call ListMetrics and GetMetricData (one small call of each).
    fn check_cloudwatch_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
    /// The CloudWatch fast launch datapoints of `image_ids` in `window` (ListMetrics, then
    /// GetMetricData); nothing for images CloudWatch lists no metric for.
    fn launch_metrics<'a>(
        &'a self,
        image_ids: &'a [String],
        window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>>;
}

/// Builds the AWS calls of a target from its spec, and of the event queue, reporting every
/// attempt into `sink`.
pub trait Connect: Send + Sync {
    /// The target's client, with `max_attempts` attempts per call.
    fn connect(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch>;
    /// The event queue's client.
    fn connect_queue(
        &self,
        queue: &QueueSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Queue>;
    /// The AWS environment's region (where Organizations is called), if it names one.
    fn home_region(&self) -> Option<String> {
        None
    }
    /// The Organizations client of discovery: with `role`, or the base credentials; in
    /// `region`.
    fn connect_organization(
        &self,
        _role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization> {
        Arc::new(Unsupported)
    }
    /// The DescribeRegions client of one account (`role`, or the base credentials), in
    /// `region`.
    fn connect_regions(
        &self,
        _role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList> {
        Arc::new(Unsupported)
    }
}

/// What a [`Connect`] without discovery answers (the unit tests' fakes).
struct Unsupported;

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
        _pages: crate::discovery::AccountPages,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Unsupported::error(Api::ListAccounts) })
    }
    fn tags<'a>(
        &'a self,
        _account_id: &'a str,
    ) -> BoxFuture<'a, Result<std::collections::BTreeMap<String, String>, ApiError>> {
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

/// Why a target's collection failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectError {
    /// An AWS call failed (after the SDK's retries).
    #[error("{0}")]
    Aws(#[from] ApiError),
    /// The collection ran past `collection.timeout`; `api` was on the wire.
    #[error("{} timed out: no answer within collection.timeout ({})", .api.map_or("collection", Api::as_str), humantime::format_duration(*.after))]
    Timeout {
        /// The API whose attempt was cut, if one was on the wire.
        api: Option<Api>,
        /// `collection.timeout`.
        after: Duration,
    },
}

impl CollectError {
    /// The API that failed, if known.
    pub fn api(&self) -> Option<Api> {
        match self {
            CollectError::Aws(e) => Some(e.api),
            CollectError::Timeout { api, .. } => *api,
        }
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CollectError::Aws(e) => e.code.clone(),
            CollectError::Timeout { .. } => ErrorCode::Timeout,
        }
    }
}

/// How one collection of a target ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every page arrived: the complete image list.
    Collected(Vec<FastLaunchImage>),
    /// A call failed or the collection timed out.
    Failed(CollectError),
    /// Another target already serves this (account id, region): not collected.
    Duplicate {
        /// The target that serves it.
        owner: TargetKey,
        /// The account id both resolve to.
        account_id: String,
    },
}

/// What one target's task works with.
pub(crate) struct TargetRun {
    pub(crate) spec: TargetSpec,
    pub(crate) fetch: Arc<dyn Fetch>,
    pub(crate) counters: Arc<ApiCounters>,
}

/// The delay before a target's first collection: up to a tenth of the interval, at most
/// [`MAX_JITTER`], so that a fleet does not start in one burst.
pub fn start_jitter(interval: Duration, draw: f64) -> Duration {
    (interval / 10)
        .min(MAX_JITTER)
        .mul_f64(draw.clamp(0.0, 1.0))
}

/// One target's loop: collect after a jitter, then every interval, and when an event asks
/// (`triggers`: the event's time), until `cancel`. Events within `event_debounce` of the first
/// share one collection; the loop is sequential, so an event's collection never overlaps the
/// scheduled one.
pub(crate) async fn run_target(
    registry: Arc<Registry>,
    run: TargetRun,
    settings: CollectionSettings,
    semaphore: Arc<Semaphore>,
    cancel: CancellationToken,
    mut triggers: mpsc::Receiver<Option<SystemTime>>,
) {
    let jitter = start_jitter(settings.interval, fastrand::f64());
    tokio::select! {
        _ = tokio::time::sleep(jitter) => {}
        _ = cancel.cancelled() => return,
    }
    let mut ticker = tokio::time::interval(settings.interval);
    // A collection that overruns delays the next one rather than bunching them up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // None: the schedule; Some(time): an event (and the time it happened, when known).
        let event: Option<Option<SystemTime>> = tokio::select! {
            _ = ticker.tick() => None,
            Some(first) = triggers.recv() => {
                let mut latest = first;
                let window = tokio::time::sleep(settings.event_debounce);
                tokio::pin!(window);
                loop {
                    tokio::select! {
                        _ = &mut window => break,
                        Some(next) = triggers.recv() => latest = latest.max(next),
                        _ = cancel.cancelled() => return,
                    }
                }
                Some(latest)
            }
            _ = cancel.cancelled() => return,
        };
        let permit = tokio::select! {
            permit = semaphore.acquire() => permit,
            _ = cancel.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        let collected = tokio::select! {
            collected = collect_target(&registry, &run, &settings) => collected,
            _ = cancel.cancelled() => return,
        };
        drop(permit);
        if let Some(happened) = event {
            // The event's collection stands for the tick that fell due meanwhile.
            ticker.reset();
            if let (Some(happened), Some(_)) = (happened, &collected) {
                registry.record_event_lag(
                    SystemTime::now()
                        .duration_since(happened)
                        .unwrap_or_default(),
                );
            }
        }
        if let (Some(image_ids), Some(_)) = (collected, run.spec.cloudwatch) {
            // Under the concurrency bound too, but after the fast launch collection let go of
            // its permit: a slow CloudWatch holds back no other target's collection.
            tokio::select! {
                permit = semaphore.acquire() => {
                    let Ok(_permit) = permit else { return };
                    tokio::select! {
                        _ = collect_launches(&registry, &run, &settings, &image_ids) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}

/// Reads the target's CloudWatch fast launch metrics for `image_ids` (the images just
/// collected) and records them, when the target has CloudWatch on. Bounded by
/// `collection.timeout` on its own: a failure here never touches the fast launch data.
pub(crate) async fn collect_launches(
    registry: &Registry,
    run: &TargetRun,
    settings: &CollectionSettings,
    image_ids: &[String],
) {
    let Some(spec) = run.spec.cloudwatch else {
        return;
    };
    let key = &run.spec.key;
    let span = info_span!("cloudwatch", account = %key.account, region = %key.region);
    async {
        let now = unix_now();
        let window = registry.launch_window(key, &spec, now);
        let result = match tokio::time::timeout(
            settings.timeout,
            run.fetch.launch_metrics(image_ids, &window),
        )
        .await
        {
            Ok(Ok(series)) => Ok(series),
            Ok(Err(error)) => Err(CollectError::Aws(error)),
            Err(_) => Err(CollectError::Timeout {
                api: run.counters.abandon_in_flight(&ErrorCode::Timeout),
                after: settings.timeout,
            }),
        };
        if let Err(error) = &result {
            warn!(
                api = error.api().map_or("", Api::as_str),
                error_code = %error.code(),
                error = %error,
                "CloudWatch query failed; fast launch data unaffected"
            );
        }
        registry.record_launches(key, &spec, now, image_ids, result);
    }
    .instrument(span)
    .await
}

/// Now as Unix seconds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Collects one target once and records the outcome in the registry; the ids of the images
/// when it collected.
pub(crate) async fn collect_target(
    registry: &Registry,
    run: &TargetRun,
    settings: &CollectionSettings,
) -> Option<Vec<String>> {
    let key = &run.spec.key;
    let span = info_span!(
        "collection",
        account = %key.account,
        account_name = run.spec.account_name.as_deref().unwrap_or(""),
        account_id = tracing::field::Empty,
        region = %key.region,
    );
    async {
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(settings.timeout, collect(registry, run, settings)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The cut attempt never reaches the interceptor's after-attempt hook.
                    let api = run.counters.abandon_in_flight(&ErrorCode::Timeout);
                    Outcome::Failed(CollectError::Timeout {
                        api,
                        after: settings.timeout,
                    })
                }
            };
        let duration = started.elapsed();
        match &outcome {
            Outcome::Collected(images) => debug!(
                images = images.len(),
                duration_ms = duration.as_millis() as u64,
                "collection succeeded"
            ),
            Outcome::Failed(error) => warn!(
                api = error.api().map_or("", Api::as_str),
                error_code = %error.code(),
                duration_ms = duration.as_millis() as u64,
                error = %error,
                "collection failed"
            ),
            Outcome::Duplicate { .. } => {}
        }
        let collected = match &outcome {
            Outcome::Collected(images) => Some(images.iter().map(|i| i.image_id.clone()).collect()),
            _ => None,
        };
        registry.record(key, outcome, duration, SystemTime::now());
        collected
    }
    .instrument(span)
    .await
}

async fn collect(registry: &Registry, run: &TargetRun, settings: &CollectionSettings) -> Outcome {
    let account_id = match registry.account_id(&run.spec, run.fetch.as_ref()).await {
        Ok(id) => id,
        Err(error) => return Outcome::Failed(error.into()),
    };
    tracing::Span::current().record("account_id", account_id.as_str());
    if let Err(owner) = registry.claim(&run.spec.key, &account_id) {
        return Outcome::Duplicate { owner, account_id };
    }
    match run
        .fetch
        .fast_launch_images(&run.spec.query, settings.page_size)
        .await
    {
        Ok(images) => Outcome::Collected(check_images(images)),
        Err(error) => Outcome::Failed(error.into()),
    }
}

/// Drops images without an id and repeated ids (a page boundary moving under us), and warns
/// about states this build does not know.
fn check_images(images: Vec<FastLaunchImage>) -> Vec<FastLaunchImage> {
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(images.len());
    for image in images {
        if image.image_id.is_empty() {
            warn!("image without ImageId skipped");
            continue;
        }
        if !seen.insert(image.image_id.clone()) {
            warn!(image_id = %image.image_id, "image listed twice; first kept");
            continue;
        }
        if let Some(FastLaunchState::Unknown(state)) = &image.state {
            warn!(image_id = %image.image_id, state = %state, "unknown fast launch state; exported under its raw name");
        }
        kept.push(image);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_a_tenth_of_the_interval_at_most_one_second() {
        assert_eq!(
            start_jitter(Duration::from_secs(5), 1.0),
            Duration::from_millis(500)
        );
        assert_eq!(start_jitter(Duration::from_secs(300), 1.0), MAX_JITTER);
        assert_eq!(start_jitter(Duration::from_secs(300), 0.0), Duration::ZERO);
    }

    #[test]
    fn images_without_id_or_listed_twice_are_dropped() {
        let image = |id: &str| FastLaunchImage {
            image_id: id.to_string(),
            ..Default::default()
        };
        let kept = check_images(vec![
            image("ami-1"),
            image(""),
            image("ami-1"),
            image("ami-2"),
        ]);
        let ids: Vec<&str> = kept.iter().map(|i| i.image_id.as_str()).collect();
        assert_eq!(ids, ["ami-1", "ami-2"]);
    }

    #[test]
    fn a_timeout_names_the_api_on_the_wire() {
        let error = CollectError::Timeout {
            api: Some(Api::AssumeRole),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            error.to_string(),
            "AssumeRole timed out: no answer within collection.timeout (2s)"
        );
        assert_eq!(error.code().label(), "timeout");
    }
}
