//! The registry and the collector on a paused tokio clock, against a fake AWS that records
//! when each call starts and how many run at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::collect::{Outcome, ResultSink};
use crate::domain::calls::{Api, ApiError, AttemptSink, ErrorCode};
use crate::domain::model::{
    CloudWatchSpec, FastLaunchImage, LaunchMetric, MetricSeries, MetricWindow, Query, RoleSpec,
};
use crate::domain::ports::{
    BoxFuture, CollectNow, Fetch, Organization, Probe, Queue, RegionList, Unsupported,
};
use crate::domain::stats::EventStats;
use crate::events::Trigger;

const ROLE_ACCOUNT: &str = "222222222222";
const BASE_ACCOUNT: &str = "111111111111";

#[derive(Default)]
struct FakeState {
    /// How long a DescribeFastLaunchImages call takes, by region (default 100 ms).
    latency: BTreeMap<String, Duration>,
    /// The account id GetCallerIdentity answers.
    caller_account: String,
    caller_calls: usize,
    /// When each collection's call started, by target.
    calls: Vec<(TargetKey, Instant)>,
    running: usize,
    most_running: usize,
    /// How CloudWatch answers: None hangs, Some(false) is denied, Some(true) lists one
    /// available-snapshots series per image.
    cloudwatch: Option<bool>,
    cloudwatch_calls: usize,
}

/// A fake AWS: answers one image per target, named after its region and query.
#[derive(Default)]
struct FakeAws {
    state: Mutex<FakeState>,
}

impl FakeAws {
    fn new() -> Arc<FakeAws> {
        let aws = FakeAws::default();
        lock(&aws.state).caller_account = BASE_ACCOUNT.to_string();
        Arc::new(aws)
    }
    fn set_latency(&self, region: &str, latency: Duration) {
        lock(&self.state)
            .latency
            .insert(region.to_string(), latency);
    }
    fn calls_of(&self, key: &TargetKey, since: Instant) -> Vec<Duration> {
        lock(&self.state)
            .calls
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, at)| *at - since)
            .collect()
    }
    fn running(&self) -> usize {
        lock(&self.state).running
    }
    /// The most calls that ran at once since the last reset.
    fn take_most_running(&self) -> usize {
        let mut state = lock(&self.state);
        let running = state.running;
        std::mem::replace(&mut state.most_running, running)
    }
}

/// Counts a running call until dropped, even when its future is cancelled.
struct Running(Arc<FakeAws>);

impl Running {
    fn start(aws: &Arc<FakeAws>) -> Running {
        let mut state = lock(&aws.state);
        state.running += 1;
        state.most_running = state.most_running.max(state.running);
        Running(aws.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.0.state).running -= 1;
    }
}

struct FakeFetch {
    aws: Arc<FakeAws>,
    key: TargetKey,
    sink: Arc<dyn AttemptSink>,
}

impl Fetch for FakeFetch {
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move {
            self.sink.attempt_sent(Api::GetCallerIdentity);
            let id = {
                let mut state = lock(&self.aws.state);
                state.caller_calls += 1;
                state.caller_account.clone()
            };
            self.sink.attempt_finished(None);
            Ok(id)
        })
    }

    fn fast_launch_images<'a>(
        &'a self,
        query: &'a Query,
        _page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>> {
        Box::pin(async move {
            let latency = {
                let mut state = lock(&self.aws.state);
                state.calls.push((self.key.clone(), Instant::now()));
                state
                    .latency
                    .get(&*self.key.region)
                    .copied()
                    .unwrap_or(Duration::from_millis(100))
            };
            self.sink.attempt_sent(Api::DescribeFastLaunchImages);
            let _running = Running::start(&self.aws);
            tokio::time::sleep(latency).await;
            self.sink.attempt_finished(None);
            Ok(vec![FastLaunchImage {
                image_id: format!("{}:{}", self.key.region, query.image_ids.join(",")),
                ..Default::default()
            }])
        })
    }

    fn launch_metrics<'a>(
        &'a self,
        image_ids: &'a [String],
        window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>> {
        Box::pin(async move {
            let answer = {
                let mut state = lock(&self.aws.state);
                state.cloudwatch_calls += 1;
                state.cloudwatch
            };
            self.sink.attempt_sent(Api::ListMetrics);
            match answer {
                None => std::future::pending().await,
                Some(false) => {
                    let code = ErrorCode::AccessDenied;
                    self.sink.attempt_finished(Some(&code));
                    Err(ApiError::new(Api::ListMetrics, code, "not authorized"))
                }
                Some(true) => {
                    self.sink.attempt_finished(None);
                    Ok(image_ids
                        .iter()
                        .map(|id| MetricSeries {
                            image_id: id.clone(),
                            metric: LaunchMetric::AvailableSnapshots,
                            points: vec![(window.end - 60, 7.0)],
                        })
                        .collect())
                }
            }
        })
    }
}

struct FakeConnect(Arc<FakeAws>);

impl Connect for FakeConnect {
    fn connect_queue(
        &self,
        _queue: &crate::domain::model::QueueSpec,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Queue> {
        Arc::new(Unsupported)
    }

    fn probe(
        &self,
        _spec: &TargetSpec,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Probe> {
        Arc::new(Unsupported)
    }

    fn home_region(&self) -> Option<String> {
        None
    }

    fn connect_organization(
        &self,
        _role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization> {
        Arc::new(Unsupported)
    }

    fn connect_regions(
        &self,
        _role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList> {
        Arc::new(Unsupported)
    }

    fn connect(
        &self,
        spec: &TargetSpec,
        _max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch> {
        Arc::new(FakeFetch {
            aws: self.0.clone(),
            key: spec.key.clone(),
            sink,
        })
    }
}

fn settings(interval_secs: u64, concurrency: usize) -> CollectionSettings {
    CollectionSettings {
        interval: Duration::from_secs(interval_secs),
        timeout: Duration::from_secs(interval_secs.min(2)),
        concurrency,
        max_staleness: Duration::from_secs(interval_secs * 3),
        ..CollectionSettings::default()
    }
}

fn base_spec(region: &str) -> TargetSpec {
    TargetSpec {
        key: TargetKey {
            account: "base".into(),
            region: region.into(),
        },
        account_name: None,
        role: None,
        query: Query::default(),
        labels: BTreeMap::new(),
        cloudwatch: None,
    }
}

fn role_spec(region: &str) -> TargetSpec {
    let arn = format!("arn:aws:iam::{ROLE_ACCOUNT}:role/Reader");
    TargetSpec {
        key: TargetKey {
            account: arn.as_str().into(),
            region: region.into(),
        },
        account_name: Some("prod".into()),
        role: Some(RoleSpec {
            arn,
            account_id: ROLE_ACCOUNT.into(),
            external_id: None,
            session_name: "s".into(),
            duration: None,
        }),
        query: Query::default(),
        labels: BTreeMap::new(),
        cloudwatch: None,
    }
}

fn registry(aws: &Arc<FakeAws>) -> Arc<Registry> {
    Registry::new(Arc::new(FakeConnect(aws.clone())), CancellationToken::new())
}

/// The registry's snapshot at `now`, checked against one built from nothing kept.
fn snapshot_at(registry: &Registry, now: SystemTime) -> Arc<Snapshot> {
    let kept = registry.snapshot(now);
    let fresh = registry.snapshot_from_scratch(now);
    let shown = |s: &Snapshot| format!("{:?}", Snapshot { id: 0, ..s.clone() });
    assert_eq!(shown(&kept), shown(&fresh), "kept snapshot differs");
    kept
}

fn view(registry: &Registry, key: &TargetKey) -> Option<TargetView> {
    snapshot_at(registry, SystemTime::now())
        .targets
        .iter()
        .find(|t| &t.key == key)
        .map(|t| TargetView::clone(t))
}

fn image_ids(registry: &Registry, key: &TargetKey) -> Vec<String> {
    view(registry, key)
        .and_then(|t| t.images)
        .map(|images| images.iter().map(|i| i.image_id.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn first_collection_comes_within_the_jitter_then_every_interval() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let start = Instant::now();
    registry
        .reconcile(vec![base_spec("us-east-1")], settings(10, 4))
        .await;
    tokio::time::sleep(Duration::from_secs(35)).await;
    let calls = aws.calls_of(&base_spec("us-east-1").key, start);
    assert_eq!(calls.len(), 4, "{calls:?}");
    let jitter = calls[0];
    assert!(jitter <= MAX_TEST_JITTER, "{calls:?}");
    for (n, at) in calls.iter().enumerate() {
        // The ticker starts after the jitter; the GetCallerIdentity before it takes no time.
        assert_eq!(
            *at,
            jitter + Duration::from_secs(10) * n as u32,
            "{calls:?}"
        );
    }
    assert_eq!(lock(&aws.state).caller_calls, 1, "account id asked once");
    registry.stop().await;
}

/// A tenth of a 10 s interval.
const MAX_TEST_JITTER: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_collection_past_its_timeout_fails_and_counts_the_api_on_the_wire() {
    let aws = FakeAws::new();
    aws.set_latency("eu-west-1", Duration::from_secs(3600));
    let registry = registry(&aws);
    let (slow, fast) = (role_spec("eu-west-1"), role_spec("us-east-1"));
    registry
        .reconcile(vec![slow.clone(), fast.clone()], settings(10, 4))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let slow_view = view(&registry, &slow.key).unwrap();
    assert!(slow_view.health.tried && !slow_view.health.last_ok);
    assert_eq!(
        slow_view.health.last_error.as_deref(),
        Some("DescribeFastLaunchImages timed out: no answer within collection.timeout (2s)")
    );
    assert_eq!(
        slow_view.counters.errors(),
        BTreeMap::from([((Api::DescribeFastLaunchImages, "timeout"), 1)])
    );
    assert_eq!(aws.running(), 0, "the cut call was dropped");
    let fast_view = view(&registry, &fast.key).unwrap();
    assert!(fast_view.health.last_ok, "the other target is untouched");
    assert!(registry.ready(), "a failed target counts as tried");
    registry.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_more_than_concurrency_collections_run_even_during_a_reconcile() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
    ];
    for region in regions {
        aws.set_latency(region, Duration::from_millis(1500));
    }
    let specs: Vec<TargetSpec> = regions.iter().map(|r| role_spec(r)).collect();
    registry.reconcile(specs.clone(), settings(10, 3)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(aws.running(), 3, "three collections in flight");
    // Lower the bound while three collections are on the wire: they are cancelled and
    // joined before any task starts under the new bound.
    let report = registry.reconcile(specs.clone(), settings(10, 1)).await;
    assert_eq!(report.restarted.len(), 6, "{report:?}");
    assert_eq!(aws.running(), 0, "old collections were joined");
    aws.take_most_running();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(aws.take_most_running(), 1);
    // Raise it again: never more than the new bound.
    registry.reconcile(specs, settings(10, 2)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(aws.take_most_running(), 2);
    registry.stop().await;
    assert_eq!(aws.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn reconcile_keeps_unchanged_targets_restarts_changed_ones_and_removes_the_rest() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let start = Instant::now();
    let (kept, changed, removed) = (
        role_spec("us-east-1"),
        role_spec("eu-west-1"),
        role_spec("ap-south-1"),
    );
    registry
        .reconcile(
            vec![kept.clone(), changed.clone(), removed.clone()],
            settings(10, 4),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept_counters = view(&registry, &kept.key).unwrap().counters;
    assert_eq!(kept_counters.requests(Api::DescribeFastLaunchImages), 1);

    let mut new_query = changed.clone();
    new_query.query.image_ids = vec!["ami-00000000000000001".into()];
    let mut relabelled = kept.clone();
    relabelled.account_name = Some("production".into());
    let added = role_spec("us-west-2");
    let report = registry
        .reconcile(
            vec![relabelled, new_query.clone(), added.clone()],
            settings(10, 4),
        )
        .await;
    assert_eq!(report.kept, vec![kept.key.clone()]);
    assert_eq!(report.restarted, vec![changed.key.clone()]);
    assert_eq!(report.removed, vec![removed.key.clone()]);
    assert_eq!(report.added, vec![added.key.clone()]);

    let kept_view = view(&registry, &kept.key).unwrap();
    assert_eq!(kept_view.account_name.as_deref(), Some("production"));
    assert_eq!(image_ids(&registry, &kept.key), ["us-east-1:"], "data kept");
    assert!(
        Arc::ptr_eq(&kept_view.counters, &kept_counters),
        "counters kept"
    );
    assert!(
        view(&registry, &changed.key).unwrap().images.is_none(),
        "old-query data dropped"
    );
    assert!(view(&registry, &removed.key).is_none());

    tokio::time::sleep(Duration::from_secs(20)).await;
    // The kept target stayed on its schedule: no extra collection at the reconcile.
    let kept_calls = aws.calls_of(&kept.key, start);
    assert_eq!(kept_calls.len(), 3, "{kept_calls:?}");
    assert_eq!(kept_calls[1] - kept_calls[0], Duration::from_secs(10));
    assert_eq!(
        image_ids(&registry, &changed.key),
        ["eu-west-1:ami-00000000000000001"]
    );
    assert_eq!(
        aws.calls_of(&removed.key, start).len(),
        1,
        "removed: never again"
    );
    registry.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_cut_by_reconcile_is_joined_and_never_writes_afterwards() {
    let aws = FakeAws::new();
    aws.set_latency("us-east-1", Duration::from_secs(5));
    let registry = registry(&aws);
    let old = role_spec("us-east-1");
    let settings = CollectionSettings {
        timeout: Duration::from_secs(10),
        ..settings(30, 4)
    };
    registry
        .reconcile(vec![old.clone()], settings.clone())
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        aws.running(),
        1,
        "the old query's collection is on the wire"
    );
    let mut new = old.clone();
    new.query.image_ids = vec!["ami-00000000000000002".into()];
    registry
        .reconcile(vec![new.clone()], settings.clone())
        .await;
    assert_eq!(aws.running(), 0, "the old task was cancelled and joined");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        image_ids(&registry, &new.key),
        ["us-east-1:ami-00000000000000002"],
        "only the new query's data"
    );
    registry.reconcile(Vec::new(), settings).await;
    assert_eq!(aws.running(), 0);
    assert!(registry.snapshot(SystemTime::now()).targets.is_empty());
    assert!(lock(&registry.state).tasks.is_empty(), "no task left");
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_the_first_configuration_only_and_then_stays() {
    let aws = FakeAws::new();
    aws.set_latency("eu-west-1", Duration::from_millis(1500));
    let registry = registry(&aws);
    let (first, second) = (role_spec("us-east-1"), role_spec("eu-west-1"));
    registry
        .reconcile(vec![first.clone(), second.clone()], settings(10, 4))
        .await;
    assert!(!registry.ready());
    // Jitter ≤ 1 s, then 100 ms for us-east-1 and 1.5 s for eu-west-1.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let tried = |key: &TargetKey| view(&registry, key).unwrap().health.tried;
    assert!(tried(&first.key) && !tried(&second.key));
    assert!(!registry.ready(), "eu-west-1 not tried yet");
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert!(tried(&second.key));
    assert!(registry.ready());
    // A reload that adds a target that never answers leaves the exporter ready, for good.
    aws.set_latency("ap-south-1", Duration::from_secs(3600));
    let added = role_spec("ap-south-1");
    registry
        .reconcile(vec![first, second, added.clone()], settings(10, 4))
        .await;
    for _ in 0..30 {
        assert!(registry.ready());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!view(&registry, &added.key).unwrap().health.last_ok);
    registry.stop().await;
}

#[tokio::test(start_paused = true)]
async fn base_credentials_in_a_configured_account_give_one_series_set() {
    let aws = FakeAws::new();
    lock(&aws.state).caller_account = ROLE_ACCOUNT.to_string();
    let registry = registry(&aws);
    let start = Instant::now();
    let (base, role, base_only) = (
        base_spec("us-east-1"),
        role_spec("us-east-1"),
        base_spec("eu-west-1"),
    );
    // The base account comes first in the file; the role's id is known at once, so the
    // role serves (222222222222, us-east-1) and base only eu-west-1.
    registry
        .reconcile(
            vec![base.clone(), role.clone(), base_only.clone()],
            settings(10, 4),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let snapshot = snapshot_at(&registry, SystemTime::now());
    let served: Vec<(Option<String>, String)> = snapshot
        .targets
        .iter()
        .filter(|t| t.is_served())
        .map(|t| (t.account_id.clone(), t.key.region.to_string()))
        .collect();
    assert_eq!(
        served,
        [
            (Some(ROLE_ACCOUNT.to_string()), "us-east-1".to_string()),
            (Some(ROLE_ACCOUNT.to_string()), "eu-west-1".to_string()),
        ]
    );
    let duplicate = view(&registry, &base.key).unwrap();
    assert_eq!(duplicate.duplicate_of.as_ref(), Some(&role.key));
    assert!(duplicate.images.is_none());
    assert!(duplicate
        .health
        .last_error
        .unwrap()
        .contains("already collected by arn:aws:iam::222222222222:role/Reader/us-east-1"));
    assert!(aws.calls_of(&base.key, start).is_empty());
    let rows: Vec<(Option<String>, Option<String>)> = snapshot
        .accounts
        .iter()
        .map(|a| (a.account_id.clone(), a.name.clone()))
        .collect();
    assert_eq!(
        rows,
        [(Some(ROLE_ACCOUNT.to_string()), Some("prod".to_string()))],
        "one account_info row, the configured account's"
    );
    assert!(registry.ready());

    // Without the role, base takes over at its next collection.
    registry
        .reconcile(vec![base.clone(), base_only], settings(10, 4))
        .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let view = view(&registry, &base.key).unwrap();
    assert!(view.is_served() && view.health.last_ok, "{view:?}");
    registry.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_collect_now_debounced_and_only_for_served_targets() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let stats = Arc::new(EventStats::default());
    let event = |happened: Option<SystemTime>| CollectNow::new(happened, stats.clone());
    let start = Instant::now();
    let target = role_spec("us-east-1");
    let settings = CollectionSettings {
        event_debounce: Duration::from_secs(2),
        ..settings(3600, 4)
    };
    registry.reconcile(vec![target.clone()], settings).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        aws.calls_of(&target.key, start).len(),
        1,
        "the first collection"
    );
    // Ten events within the window: one collection, 2 s after the first.
    let happened = SystemTime::now();
    for _ in 0..10 {
        assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", event(Some(happened))));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = aws.calls_of(&target.key, start);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1] >= Duration::from_secs(7), "debounced: {calls:?}");
    assert!(stats.last_lag().is_some());
    // Another account or region is not collected here.
    assert!(!registry.collect_now(BASE_ACCOUNT, "us-east-1", event(None)));
    assert!(!registry.collect_now(ROLE_ACCOUNT, "eu-west-1", event(None)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(aws.calls_of(&target.key, start).len(), 2);
    registry.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cloudwatch_failing_or_hanging_never_touches_the_fast_launch_data() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let mut spec = role_spec("us-east-1");
    spec.cloudwatch = Some(CloudWatchSpec {
        period: Duration::from_secs(60),
        lookback: Duration::from_secs(600),
    });
    lock(&aws.state).cloudwatch = Some(true);
    registry
        .reconcile(vec![spec.clone()], settings(10, 4))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cloudwatch = |registry: &Registry| view(registry, &spec.key).unwrap().cloudwatch.unwrap();
    let first = cloudwatch(&registry);
    assert_eq!(first.last_ok, Some(true));
    let image = image_ids(&registry, &spec.key).remove(0);
    assert_eq!(
        first.launches.image(&image).unwrap().available_snapshots,
        Some(7.0)
    );

    // Denied: the fast launch data stays, collection_success stays 1; what is available now
    // is unknown.
    lock(&aws.state).cloudwatch = Some(false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let denied = view(&registry, &spec.key).unwrap();
    assert!(denied.health.last_ok);
    assert_eq!(
        image_ids(&registry, &spec.key),
        std::slice::from_ref(&image)
    );
    let denied_cloudwatch = denied.cloudwatch.unwrap();
    assert_eq!(denied_cloudwatch.last_ok, Some(false));
    assert_eq!(
        denied_cloudwatch
            .launches
            .image(&image)
            .unwrap()
            .available_snapshots,
        None
    );
    assert_eq!(
        denied.counters.errors(),
        BTreeMap::from([((Api::ListMetrics, "AccessDenied"), 1)])
    );

    // Hanging: cut by collection.timeout (2 s) on its own; the next collection still runs.
    lock(&aws.state).cloudwatch = None;
    let calls_before = aws
        .calls_of(&spec.key, Instant::now() - Duration::from_secs(3600))
        .len();
    // Collections at about 21 s and 31 s, each CloudWatch query cut 2 s later.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let hung = view(&registry, &spec.key).unwrap();
    assert!(hung.health.last_ok);
    assert_eq!(hung.cloudwatch.unwrap().last_ok, Some(false));
    assert_eq!(
        hung.counters.errors().get(&(Api::ListMetrics, "timeout")),
        Some(&2)
    );
    let calls_after = aws
        .calls_of(&spec.key, Instant::now() - Duration::from_secs(3600))
        .len();
    assert_eq!(calls_after - calls_before, 2, "the schedule goes on");
    registry.stop().await;
}

/// Scrapes share one snapshot until something it shows changes; then only the changed target's
/// view is built again; images turn stale on time even when nothing else changes.
#[tokio::test(start_paused = true)]
async fn snapshots_are_shared_until_something_changes() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let (east, west) = (base_spec("us-east-1"), base_spec("eu-west-1"));
    registry
        .reconcile(vec![east.clone(), west.clone()], settings(10, 4))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = SystemTime::now();
    let first = registry.snapshot(now);
    let again = registry.snapshot(now);
    assert!(
        Arc::ptr_eq(&first, &again),
        "nothing changed: the same snapshot"
    );

    // A collection of one target lands: a new snapshot, the other target's view is kept.
    registry.record(
        &east.key,
        Outcome::Collected(vec![FastLaunchImage {
            image_id: "ami-new".into(),
            ..FastLaunchImage::default()
        }]),
        Duration::from_millis(5),
        now,
    );
    let after = registry.snapshot(now);
    assert!(!Arc::ptr_eq(&first, &after));
    let position = |key: &TargetKey| after.targets.iter().position(|t| &t.key == key).unwrap();
    let (e, w) = (position(&east.key), position(&west.key));
    assert!(
        Arc::ptr_eq(&after.targets[w], &first.targets[w]),
        "untouched view kept"
    );
    assert!(!Arc::ptr_eq(&after.targets[e], &first.targets[e]));
    snapshot_at(&registry, now);
    assert_eq!(image_ids(&registry, &east.key), ["ami-new"]);

    // Past max_staleness (30 s here) with no collection: the images go, though nothing changed.
    let later = now + Duration::from_secs(31);
    let stale = snapshot_at(&registry, later);
    assert!(
        stale.targets.iter().all(|t| t.images.is_none()),
        "{stale:?}"
    );
    // A reload's outcome is shown too.
    registry.record_reload(false, later);
    assert!(!snapshot_at(&registry, later).reload.successful);
    registry.stop().await;
}

/// A queue message as the receiver would hold it: records what it is told.
#[derive(Debug, Default)]
struct Told(Mutex<Vec<bool>>);

impl crate::domain::ports::Delivery for Told {
    fn collected(&self, succeeded: bool) {
        lock(&self.0).push(succeeded);
    }
}

#[tokio::test(start_paused = true)]
async fn an_events_collection_tells_its_messages_how_it_ended_and_a_removed_target_tells_nothing() {
    let aws = FakeAws::new();
    let registry = registry(&aws);
    let stats = Arc::new(EventStats::default());
    let ask = |told: &Arc<Told>| CollectNow {
        deliveries: vec![told.clone() as Arc<dyn crate::domain::ports::Delivery>],
        ..CollectNow::new(None, stats.clone())
    };
    let target = role_spec("us-east-1");
    let settings = CollectionSettings {
        event_debounce: Duration::from_secs(1),
        ..settings(3600, 4)
    };
    registry
        .reconcile(vec![target.clone()], settings.clone())
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Two messages within one window: both told, once, of the one collection.
    let (first, second) = (Arc::new(Told::default()), Arc::new(Told::default()));
    assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", ask(&first)));
    assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", ask(&second)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*lock(&first.0), [true]);
    assert_eq!(*lock(&second.0), [true]);
    assert_eq!(Arc::strong_count(&first), 1, "let go");

    // Past collection.timeout (2 s here): failed.
    aws.set_latency("us-east-1", Duration::from_secs(5));
    let failed = Arc::new(Told::default());
    assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", ask(&failed)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(*lock(&failed.0), [false]);

    // Removed by a reload while its ask waits: let go untold (the message stays on the queue).
    let waiting = Arc::new(Told::default());
    assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", ask(&waiting)));
    registry.reconcile(Vec::new(), settings).await;
    assert!(lock(&waiting.0).is_empty());
    assert_eq!(Arc::strong_count(&waiting), 1, "let go");
    registry.stop().await;
}
