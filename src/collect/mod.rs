//! The schedule of one target and what one collection does. Every target is collected once right
//! after it starts (spread by a small jitter), then every `collection.interval`; at most
//! `collection.concurrency` collections run at once (one semaphore shared by every target); a
//! target never overlaps itself (its loop is sequential) and each collection is bounded by
//! `collection.timeout`. The registry (`targets`) starts and stops these loops.
//!
//! A collection asks AWS through the [`Fetch`] port and reports through the [`ResultSink`]
//! defined here, which the registry implements: the loop never names the registry.

mod triggers;

pub use self::triggers::Triggers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::config::CollectionSettings;
use crate::domain::calls::{with_timeout, Api, ApiCounters, ApiError, ErrorCode, TimedOut};
use crate::domain::model::{
    unix_now, CloudWatchSpec, FastLaunchImage, FastLaunchState, MetricSeries, MetricWindow,
    TargetKey, TargetSpec,
};
use crate::domain::ports::{BoxFuture, CollectNow, Fetch};

/// The longest start-up jitter; the concurrency limit spreads larger fleets anyway.
pub const MAX_JITTER: Duration = Duration::from_secs(1);

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

impl From<TimedOut> for CollectError {
    fn from(timed_out: TimedOut) -> CollectError {
        CollectError::Timeout {
            api: timed_out.api,
            after: timed_out.after,
        }
    }
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
pub struct TargetRun {
    /// The target (shared with the registry: one copy per target).
    pub spec: Arc<TargetSpec>,
    /// Its AWS calls.
    pub fetch: Arc<dyn Fetch>,
    /// Its attempt counters (the ones `fetch` reports into).
    pub counters: Arc<ApiCounters>,
}

/// Where a collection's results go, and what it asks of the target's home (implemented by the
/// registry: the collection loop never names it).
pub trait ResultSink: Send + Sync {
    /// The account id of the target: from its role ARN, or learnt once per account with
    /// GetCallerIdentity through `fetch`.
    fn account_id<'a>(
        &'a self,
        spec: &'a TargetSpec,
        fetch: &'a dyn Fetch,
    ) -> BoxFuture<'a, Result<String, ApiError>>;
    /// Claims (account id, region) for `key`: Ok if it serves them, or the key of the target
    /// that already does.
    fn claim(&self, key: &TargetKey, account_id: &str) -> Result<(), TargetKey>;
    /// Records how a collection of `key` ended.
    fn record(&self, key: &TargetKey, outcome: Outcome, duration: Duration, finished: SystemTime);
    /// The CloudWatch range a query of `key` at `now` (Unix seconds) asks for.
    fn launch_window(&self, key: &TargetKey, spec: &CloudWatchSpec, now: i64) -> MetricWindow;
    /// Records how a CloudWatch query of `key` at `now` for `image_ids` ended.
    fn record_launches(
        &self,
        key: &TargetKey,
        spec: &CloudWatchSpec,
        now: i64,
        image_ids: &[String],
        result: Result<Vec<MetricSeries>, CollectError>,
    );
}

/// The APIs a collection of `spec` calls: the `api` label values of its request counters.
pub fn apis(spec: &TargetSpec) -> &'static [Api] {
    use Api::{
        AssumeRole, DescribeFastLaunchImages, GetCallerIdentity, GetMetricData, ListMetrics,
    };
    match (spec.role.is_some(), spec.cloudwatch.is_some()) {
        (true, false) => &[DescribeFastLaunchImages, AssumeRole],
        (false, false) => &[DescribeFastLaunchImages, GetCallerIdentity],
        (true, true) => &[
            DescribeFastLaunchImages,
            AssumeRole,
            ListMetrics,
            GetMetricData,
        ],
        (false, true) => &[
            DescribeFastLaunchImages,
            GetCallerIdentity,
            ListMetrics,
            GetMetricData,
        ],
    }
}

/// The delay before a target's first collection: up to a tenth of the interval, at most
/// [`MAX_JITTER`], so that a fleet does not start in one burst.
pub fn start_jitter(interval: Duration, draw: f64) -> Duration {
    (interval / 10)
        .min(MAX_JITTER)
        .mul_f64(draw.clamp(0.0, 1.0))
}

/// Waits for the next reason to collect: the schedule (None) or an event (Some), whose
/// requests within `debounce` of the first are merged into one (the latest time wins, the
/// messages of all of them wait for it). None of both when `cancel` came first.
async fn next_cause(
    ticker: &mut tokio::time::Interval,
    triggers: &Triggers,
    debounce: Duration,
    cancel: &CancellationToken,
) -> Option<Option<CollectNow>> {
    tokio::select! {
        _ = ticker.tick() => Some(None),
        mut latest = triggers.next() => {
            let window = tokio::time::sleep(debounce);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    next = triggers.next() => latest.merge(next),
                    _ = cancel.cancelled() => return None,
                }
            }
            Some(Some(latest))
        }
        _ = cancel.cancelled() => None,
    }
}

/// One target's loop: collect after a jitter, then every interval, and when an event asks
/// (`triggers`), until `cancel`. Events within `event_debounce` of the first share one
/// collection; the loop is sequential, so an event's collection never overlaps the scheduled
/// one. The queue messages of an event's collection are told how its fast launch part ended
/// (deleted when it succeeded); cancelled first, they are dropped untold and left on the queue.
pub async fn run_target(
    sink: Arc<dyn ResultSink>,
    run: TargetRun,
    settings: CollectionSettings,
    semaphore: Arc<Semaphore>,
    cancel: CancellationToken,
    triggers: Arc<Triggers>,
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
        let Some(event) =
            next_cause(&mut ticker, &triggers, settings.event_debounce, &cancel).await
        else {
            return;
        };
        let cycle = async {
            let collected =
                collect_fast_launch(sink.as_ref(), &run, &settings, &semaphore, event.as_ref())
                    .await;
            if let Some(event) = event {
                event.settle(collected.is_some());
                // The event's collection stands for the tick that fell due meanwhile.
                ticker.reset();
            }
            if let Some(image_ids) = collected {
                collect_cloudwatch(sink.as_ref(), &run, &settings, &semaphore, &image_ids).await;
            }
        };
        // Boxed: the collection's state lives only while it runs, so that 17,000 idle targets
        // do not each hold room for it.
        tokio::select! {
            _ = Box::pin(cycle) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// One collection cycle of a target: [`collect_fast_launch`], then [`collect_cloudwatch`] when
/// it collected. For `--once`; the schedule runs the two itself, to reset its ticker between.
pub async fn collect_cycle(
    sink: &dyn ResultSink,
    run: &TargetRun,
    settings: &CollectionSettings,
    semaphore: &Semaphore,
) {
    if let Some(image_ids) = collect_fast_launch(sink, run, settings, semaphore, None).await {
        collect_cloudwatch(sink, run, settings, semaphore, &image_ids).await;
    }
}

/// The fast launch collection of a target under a permit of `semaphore`; the ids of the images
/// when it collected. `event` is the event that caused it, whose lag is recorded when the
/// collection succeeded.
async fn collect_fast_launch(
    sink: &dyn ResultSink,
    run: &TargetRun,
    settings: &CollectionSettings,
    semaphore: &Semaphore,
    event: Option<&CollectNow>,
) -> Option<Vec<String>> {
    let collected = {
        let _permit = semaphore.acquire().await.ok()?;
        collect_target(sink, run, settings).await
    }?;
    if let Some(CollectNow {
        happened: Some(happened),
        stats,
        ..
    }) = event
    {
        stats.record_lag(
            SystemTime::now()
                .duration_since(*happened)
                .unwrap_or_default(),
        );
    }
    Some(collected)
}

/// The CloudWatch query of a target that just collected `image_ids`, when it reads CloudWatch:
/// under a permit of its own, so that a slow CloudWatch holds back no other target's
/// collection.
async fn collect_cloudwatch(
    sink: &dyn ResultSink,
    run: &TargetRun,
    settings: &CollectionSettings,
    semaphore: &Semaphore,
    image_ids: &[String],
) {
    if run.spec.cloudwatch.is_none() {
        return;
    }
    let Ok(_permit) = semaphore.acquire().await else {
        return;
    };
    collect_launches(sink, run, settings, image_ids).await;
}

/// Reads the target's CloudWatch fast launch metrics for `image_ids` (the images just
/// collected) and records them, when the target has CloudWatch on. Bounded by
/// `collection.timeout` on its own: a failure here never touches the fast launch data.
async fn collect_launches(
    sink: &dyn ResultSink,
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
        let window = sink.launch_window(key, &spec, now);
        let result = with_timeout(
            settings.timeout,
            &run.counters,
            run.fetch.launch_metrics(image_ids, &window),
        )
        .await
        .map_err(CollectError::from)
        .and_then(|answer| answer.map_err(CollectError::Aws));
        if let Err(error) = &result {
            warn!(
                api = error.api().map_or("", Api::as_str),
                error_code = %error.code(),
                error = %error,
                "CloudWatch query failed; fast launch data unaffected"
            );
        }
        sink.record_launches(key, &spec, now, image_ids, result);
    }
    .instrument(span)
    .await
}

/// Collects one target once and records the outcome in the sink; the ids of the images
/// when it collected.
async fn collect_target(
    sink: &dyn ResultSink,
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
        let outcome = with_timeout(
            settings.timeout,
            &run.counters,
            collect(sink, run, settings),
        )
        .await
        .unwrap_or_else(|timed_out| Outcome::Failed(timed_out.into()));
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
        sink.record(key, outcome, duration, SystemTime::now());
        collected
    }
    .instrument(span)
    .await
}

async fn collect(sink: &dyn ResultSink, run: &TargetRun, settings: &CollectionSettings) -> Outcome {
    let account_id = match sink.account_id(&run.spec, run.fetch.as_ref()).await {
        Ok(id) => id,
        Err(error) => return Outcome::Failed(error.into()),
    };
    tracing::Span::current().record("account_id", account_id.as_str());
    if let Err(owner) = sink.claim(&run.spec.key, &account_id) {
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
