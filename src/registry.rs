//! Where a target lives. The registry owns everything about each (account, region): its spec, its
//! last good image list, its health, its attempt counters, its resolved account id and its task.
//! Every change to the set of targets (start, reload, and later discovery and sharding) goes
//! through one [`Registry::reconcile`]; scrapes read a [`Snapshot`].
//!
//! Two locks: `state` (a `std` mutex: nothing is awaited while it is held, writers swap a pointer
//! and a few fields, readers clone `Arc`s) and `reconciling` (a tokio mutex that lets one
//! reconcile run at a time, across the awaits that join cancelled tasks).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::calls::{ApiCounters, ApiError};
use crate::collector::CollectError;
use crate::collector::{self, Connect, Fetch, Outcome, TargetRun};
use crate::config::CollectionSettings;
use crate::discovery::{DiscoveryState, DiscoveryStats};
use crate::events::EventStats;
use crate::launches::Launches;
use crate::model::{
    CloudWatchSpec, FastLaunchImage, MetricSeries, MetricWindow, TargetKey, TargetSpec,
};
use crate::shard::Shard;
use crate::sync::lock;

/// How a target's collections have gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Whether a collection has finished at least once.
    pub tried: bool,
    /// Whether the last collection succeeded.
    pub last_ok: bool,
    /// How long the last collection took.
    pub last_duration: Option<Duration>,
    /// When the last successful collection ended.
    pub last_success: Option<SystemTime>,
    /// The last error, one line.
    pub last_error: Option<String>,
}

/// The state of one target as a scrape sees it.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// Which target.
    pub key: TargetKey,
    /// The account's alias.
    pub account_name: Option<String>,
    /// The account's id, once known.
    pub account_id: Option<String>,
    /// Whether the account is reached by AssumeRole (which APIs it calls).
    pub assumes_role: bool,
    /// How its collections have gone.
    pub health: Health,
    /// The images served now: the last good list, unless older than `max_staleness`.
    pub images: Option<Arc<Vec<FastLaunchImage>>>,
    /// Attempt and error counters.
    pub counters: Arc<ApiCounters>,
    /// Set when another target already serves the same (account id, region): this one is not
    /// collected and exports nothing.
    pub duplicate_of: Option<TargetKey>,
    /// The CloudWatch state when the target reads CloudWatch (None: off).
    pub cloudwatch: Option<CloudWatchView>,
}

/// A target's CloudWatch fast launch metrics as a scrape sees them.
#[derive(Debug, Clone)]
pub struct CloudWatchView {
    /// Whether the last CloudWatch query succeeded (None: not asked yet).
    pub last_ok: Option<bool>,
    /// The values per image, from the last successful query.
    pub launches: Arc<Launches>,
}

impl TargetView {
    /// Whether the target's series are exported (it is not a duplicate).
    pub fn is_served(&self) -> bool {
        self.duplicate_of.is_none()
    }
}

/// One account as `fast_launch_exporter_account_info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The config's stable key (role ARN or `base`).
    pub key: String,
    /// The 12-digit account id, once known.
    pub account_id: Option<String>,
    /// The alias.
    pub name: Option<String>,
    /// Static labels.
    pub labels: BTreeMap<String, String>,
}

/// The outcome of the last configuration reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Whether the last reload attempt succeeded.
    pub successful: bool,
    /// When the configuration was last loaded successfully (start-up counts).
    pub last_success: SystemTime,
}

/// Everything a scrape renders, as of one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One per account id (the first account configured with it), in config order.
    pub accounts: Vec<AccountView>,
    /// Every target, in config order, duplicates included (see [`TargetView::is_served`]).
    pub targets: Vec<TargetView>,
    /// The union of static label names over all accounts, sorted.
    pub static_label_names: Vec<String>,
    /// The last reload.
    pub reload: ReloadStatus,
    /// `collection.interval` and `collection.max_staleness`, exported per target so that
    /// alerts can be relative to them (zero before the first reconcile).
    pub interval: Duration,
    /// See `interval`.
    pub max_staleness: Duration,
    /// The event receiver's statistics, when events are configured.
    pub events: Option<Arc<EventStats>>,
    /// This process's shard.
    pub shard: Shard,
    /// Discovery as it stands.
    pub discovery: DiscoveryState,
}

/// What a reconcile changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Targets that were new.
    pub added: Vec<TargetKey>,
    /// Targets restarted because their credentials, query or the collection settings changed.
    pub restarted: Vec<TargetKey>,
    /// Targets removed, their tasks joined and their series gone.
    pub removed: Vec<TargetKey>,
    /// Targets kept untouched (data, counters and schedule).
    pub kept: Vec<TargetKey>,
}

#[derive(Debug)]
struct Target {
    spec: TargetSpec,
    health: Health,
    images: Option<Arc<Vec<FastLaunchImage>>>,
    counters: Arc<ApiCounters>,
    duplicate_of: Option<TargetKey>,
    /// The owner last named in the log, so that a duplicate is logged once, not every interval.
    logged_owner: Option<TargetKey>,
    /// Whether the last CloudWatch query succeeded (None: not asked yet).
    cloudwatch_ok: Option<bool>,
    /// The CloudWatch values, from the last successful query.
    launches: Arc<Launches>,
}

/// A running target task.
#[derive(Debug)]
struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    /// Asks the task to collect now (an event), with the event's time.
    trigger: mpsc::Sender<Option<SystemTime>>,
}

#[derive(Debug)]
struct State {
    /// Targets by key; `order` keeps the config order.
    targets: BTreeMap<TargetKey, Target>,
    order: Vec<TargetKey>,
    tasks: BTreeMap<TargetKey, Task>,
    settings: Option<CollectionSettings>,
    semaphore: Arc<Semaphore>,
    /// Account ids learnt from GetCallerIdentity, by account key.
    resolved_ids: BTreeMap<String, String>,
    /// Which target serves each (account id, region): the first to claim it.
    claims: BTreeMap<(String, String), TargetKey>,
    /// The (account id, region) each target claimed: the reverse of `claims`.
    claimed: BTreeMap<TargetKey, (String, String)>,
    /// Targets of the first configuration not yet tried; readiness waits for them only.
    first_pending: Option<BTreeSet<TargetKey>>,
    ready: bool,
    /// Whether the targets are all known (see [`Registry::set_plan_complete`]).
    plan_complete: bool,
    reload: ReloadStatus,
}

impl State {
    /// The account id of target `key`: from its role ARN, or learnt with GetCallerIdentity.
    fn account_id(&self, key: &TargetKey) -> Option<&str> {
        let target = self.targets.get(key)?;
        target
            .spec
            .configured_account_id()
            .or_else(|| self.resolved_ids.get(&key.account).map(String::as_str))
    }

    /// The other target that serves the (account id, region) of `key`, if any.
    fn served_by_other(&self, key: &TargetKey) -> Option<&TargetKey> {
        let id = self.account_id(key)?;
        self.claims
            .get(&(id.to_string(), key.region.clone()))
            .filter(|owner| *owner != key)
    }
}

/// The targets of the exporter, their data and their tasks.
pub struct Registry {
    connect: Arc<dyn Connect>,
    shutdown: CancellationToken,
    state: Mutex<State>,
    reconciling: tokio::sync::Mutex<()>,
    /// The event receiver's statistics, when events are configured.
    events: Mutex<Option<Arc<EventStats>>>,
    /// This process's shard and discovery's statistics.
    discovery: Mutex<(Shard, Option<Arc<DiscoveryStats>>)>,

    /// One gate per account key, so that the targets of one account ask GetCallerIdentity once.
    identity_gates: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Told when what a scrape renders may have changed (a collection or CloudWatch query
    /// landed, targets changed), so that the renderer can render ahead of the next scrape.
    changes: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry whose targets connect to AWS through `connect`; cancelling `shutdown`
    /// stops every task (then [`Registry::stop`] joins them).
    pub fn new(connect: Arc<dyn Connect>, shutdown: CancellationToken) -> Arc<Registry> {
        Arc::new(Registry {
            connect,
            shutdown,
            state: Mutex::new(State {
                targets: BTreeMap::new(),
                order: Vec::new(),
                tasks: BTreeMap::new(),
                settings: None,
                semaphore: Arc::new(Semaphore::new(1)),
                resolved_ids: BTreeMap::new(),
                claims: BTreeMap::new(),
                claimed: BTreeMap::new(),
                first_pending: None,
                ready: false,
                plan_complete: true,
                reload: ReloadStatus {
                    successful: true,
                    last_success: SystemTime::now(),
                },
            }),
            reconciling: tokio::sync::Mutex::new(()),
            events: Mutex::new(None),
            discovery: Mutex::new((Shard::default(), None)),

            identity_gates: Mutex::new(BTreeMap::new()),
            changes: tokio::sync::watch::Sender::new(()),
        })
    }

    /// Tells when what a scrape renders may have changed.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Makes the running targets match `specs` (keys must be unique; the first of a repeated
    /// key wins) collected with `settings`:
    /// - a new key starts;
    /// - a key whose credentials and query are unchanged, under unchanged settings, keeps its
    ///   data, counters and schedule (a changed alias or label is simply taken);
    /// - a key whose credentials or query changed restarts with no data (its old data came from
    ///   the old query); a change of settings restarts every task, keeping its data;
    /// - a key not in `specs` is removed.
    ///
    /// The tasks of removed and restarted targets are cancelled and joined before their series
    /// change, so no old task writes anything after this returns; new tasks start only after, so
    /// no more than `collection.concurrency` collections ever run.
    pub async fn reconcile(
        self: &Arc<Self>,
        specs: Vec<TargetSpec>,
        settings: CollectionSettings,
    ) -> ReconcileReport {
        self.converge(specs, settings, true).await
    }

    /// Registers `specs` and collects each once, `collection.concurrency` at a time, without
    /// starting schedules. For `--once`.
    pub async fn collect_once(
        self: &Arc<Self>,
        specs: Vec<TargetSpec>,
        settings: CollectionSettings,
    ) {
        self.converge(specs, settings.clone(), false).await;
        let (targets, semaphore) = {
            let state = lock(&self.state);
            let targets: Vec<(TargetSpec, Arc<ApiCounters>)> = state
                .order
                .iter()
                .map(|key| {
                    let target = &state.targets[key];
                    (target.spec.clone(), target.counters.clone())
                })
                .collect();
            (targets, state.semaphore.clone())
        };
        let runs: Vec<TargetRun> = targets
            .into_iter()
            .map(|(spec, counters)| self.target_run(spec, counters, &settings))
            .collect();
        let mut collections = JoinSet::new();
        for run in runs {
            let (registry, settings, semaphore) =
                (self.clone(), settings.clone(), semaphore.clone());
            collections.spawn(async move {
                let Ok(_permit) = semaphore.acquire().await else {
                    return;
                };
                if let Some(image_ids) = collector::collect_target(&registry, &run, &settings).await
                {
                    collector::collect_launches(&registry, &run, &settings, &image_ids).await;
                }
            });
        }
        while collections.join_next().await.is_some() {}
    }

    fn target_run(
        &self,
        spec: TargetSpec,
        counters: Arc<ApiCounters>,
        settings: &CollectionSettings,
    ) -> TargetRun {
        // A cancelled task may have left an attempt marked as on the wire.
        counters.take_in_flight();
        TargetRun {
            fetch: self
                .connect
                .connect(&spec, settings.max_attempts, counters.clone()),
            spec,
            counters,
        }
    }

    async fn converge(
        self: &Arc<Self>,
        specs: Vec<TargetSpec>,
        settings: CollectionSettings,
        start_tasks: bool,
    ) -> ReconcileReport {
        let _one_at_a_time = self.reconciling.lock().await;
        let mut wanted: BTreeMap<TargetKey, TargetSpec> = BTreeMap::new();
        let mut order = Vec::with_capacity(specs.len());
        for spec in specs {
            if !wanted.contains_key(&spec.key) {
                order.push(spec.key.clone());
                wanted.insert(spec.key.clone(), spec);
            }
        }

        // 1. Stop the tasks that must go or restart, and wait for them.
        let mut report = ReconcileReport::default();
        let stopping: Vec<Task> = {
            let mut state = lock(&self.state);
            let settings_changed = state.settings.as_ref() != Some(&settings);
            let mut stopping = Vec::new();
            let keys: Vec<TargetKey> = state.tasks.keys().cloned().collect();
            for key in keys {
                let target = state.targets.get(&key);
                // A duplicate whose owner goes restarts, to take over at once.
                let owner_leaves = target
                    .and_then(|t| t.duplicate_of.as_ref())
                    .is_some_and(|owner| !wanted.contains_key(owner));
                let stays_unchanged = !settings_changed
                    && !owner_leaves
                    && !state.tasks[&key].handle.is_finished()
                    && wanted
                        .get(&key)
                        .is_some_and(|spec| target.is_some_and(|t| t.spec.collects_like(spec)));
                if !stays_unchanged {
                    if let Some(task) = state.tasks.remove(&key) {
                        task.cancel.cancel();
                        stopping.push(task);
                    }
                }
            }
            stopping
        };
        for task in stopping {
            // A task only ends by its token; a panic inside it is reported, not propagated.
            if let Err(error) = task.handle.await {
                warn!(error = %error, "a target task ended abnormally");
            }
        }

        // 2. Change the data, then start the tasks that are missing.
        let mut state = lock(&self.state);
        let settings_changed = state.settings.as_ref() != Some(&settings);
        if settings_changed {
            if state.settings.as_ref().map(|s| s.concurrency) != Some(settings.concurrency) {
                state.semaphore = Arc::new(Semaphore::new(settings.concurrency));
            }
            state.settings = Some(settings.clone());
        }
        let removed: Vec<TargetKey> = state
            .targets
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        for key in &removed {
            state.targets.remove(key);
            release_claim(&mut state, key);
        }
        report.removed = removed;
        let accounts: BTreeSet<&str> = wanted.keys().map(|k| k.account.as_str()).collect();
        state
            .resolved_ids
            .retain(|account, _| accounts.contains(account.as_str()));
        let mut to_start = Vec::new();
        for key in &order {
            let spec = wanted[key].clone();
            match state.targets.get_mut(key) {
                Some(target) if target.spec.collects_like(&spec) => {
                    target.spec = spec;
                    if target
                        .duplicate_of
                        .as_ref()
                        .is_some_and(|owner| !wanted.contains_key(owner))
                    {
                        // Its owner left: it starts afresh rather than show the old verdict.
                        target.duplicate_of = None;
                        target.health = Health::default();
                    }
                    if state.tasks.contains_key(key) {
                        report.kept.push(key.clone());
                    } else {
                        report.restarted.push(key.clone());
                        to_start.push(key.clone());
                    }
                }
                Some(target) => {
                    // New credentials or query: the old data answers another question.
                    target.spec = spec;
                    target.images = None;
                    target.health = Health::default();
                    target.duplicate_of = None;
                    target.cloudwatch_ok = None;
                    target.launches = Arc::default();
                    report.restarted.push(key.clone());
                    to_start.push(key.clone());
                }
                None => {
                    state.targets.insert(
                        key.clone(),
                        Target {
                            spec,
                            health: Health::default(),
                            images: None,
                            counters: Arc::new(ApiCounters::default()),
                            duplicate_of: None,
                            logged_owner: None,
                            cloudwatch_ok: None,
                            launches: Arc::default(),
                        },
                    );
                    report.added.push(key.clone());
                    to_start.push(key.clone());
                }
            }
        }
        state.order = order;
        // Targets whose account id is configured claim their (account id, region) now, before
        // any base-credentials target can learn its id: the first claim wins.
        for key in &state.order.clone() {
            let configured = state.targets[key]
                .spec
                .configured_account_id()
                .map(str::to_string);
            if let Some(id) = configured {
                let _ = claim_in(&mut state, key, &id);
            }
        }
        match &mut state.first_pending {
            None => state.first_pending = Some(wanted.keys().cloned().collect()),
            Some(pending) => pending.retain(|key| wanted.contains_key(key)),
        }
        update_ready(&mut state);
        let semaphore = state.semaphore.clone();
        let starting: Vec<(TargetKey, TargetSpec, Arc<ApiCounters>)> = to_start
            .into_iter()
            .filter(|_| start_tasks)
            .map(|key| {
                let target = &state.targets[&key];
                (key, target.spec.clone(), target.counters.clone())
            })
            .collect();
        drop(state);
        // Building SDK clients takes a while for many targets: not under the lock scrapes take.
        let mut tasks = Vec::with_capacity(starting.len());
        for (key, spec, counters) in starting {
            let run = self.target_run(spec, counters, &settings);
            let cancel = self.shutdown.child_token();
            // A few pending events are plenty: they are debounced into one collection anyway.
            let (trigger, triggers) = mpsc::channel(16);
            let handle = tokio::spawn(collector::run_target(
                self.clone(),
                run,
                settings.clone(),
                semaphore.clone(),
                cancel.clone(),
                triggers,
            ));
            tasks.push((
                key,
                Task {
                    cancel,
                    handle,
                    trigger,
                },
            ));
        }
        lock(&self.state).tasks.extend(tasks);
        self.changes.send_replace(());
        report
    }

    /// Stops every task and waits for them (after `shutdown` was cancelled, or to stop early).
    pub async fn stop(&self) {
        let _one_at_a_time = self.reconciling.lock().await;
        let tasks: Vec<Task> = std::mem::take(&mut lock(&self.state).tasks)
            .into_values()
            .collect();
        for task in &tasks {
            task.cancel.cancel();
        }
        for task in tasks {
            let _ = task.handle.await;
        }
    }

    /// The account id of a target: from its role ARN, or learnt once per account with
    /// GetCallerIdentity (retried by the next collection after a failure).
    pub(crate) async fn account_id(
        &self,
        spec: &TargetSpec,
        fetch: &dyn Fetch,
    ) -> Result<String, ApiError> {
        if let Some(id) = spec.configured_account_id() {
            return Ok(id.to_string());
        }
        let account = &spec.key.account;
        let gate = lock(&self.identity_gates)
            .entry(account.clone())
            .or_default()
            .clone();
        let _gate = gate.lock().await;
        if let Some(id) = lock(&self.state).resolved_ids.get(account) {
            return Ok(id.clone());
        }
        // A failure is logged once, as the collection's failure; the next collection retries.
        let id = fetch.caller_account_id().await?;
        info!(account_id = %id, "account id resolved with GetCallerIdentity");
        let mut state = lock(&self.state);
        state.resolved_ids.insert(account.clone(), id.clone());
        // Every target of the account claims its (id, region) now, so that none of them is
        // served under an id another target already serves until its own next collection.
        let keys: Vec<TargetKey> = state
            .order
            .iter()
            .filter(|k| &k.account == account)
            .cloned()
            .collect();
        for key in keys {
            let _ = claim_in(&mut state, &key, &id);
        }
        Ok(id)
    }

    /// Claims (account id, region) for `key`: Ok if it serves them, or the key of the target
    /// that already does.
    pub(crate) fn claim(&self, key: &TargetKey, account_id: &str) -> Result<(), TargetKey> {
        claim_in(&mut lock(&self.state), key, account_id)
    }

    /// Records how a collection of `key` ended. Ignored for a target no longer registered.
    pub(crate) fn record(
        &self,
        key: &TargetKey,
        outcome: Outcome,
        duration: Duration,
        finished: SystemTime,
    ) {
        let mut state = lock(&self.state);
        let max_staleness = state
            .settings
            .as_ref()
            .map_or(Duration::MAX, |s| s.max_staleness);
        let Some(target) = state.targets.get_mut(key) else {
            return;
        };
        match outcome {
            Outcome::Collected(images) => {
                target.duplicate_of = None;
                target.logged_owner = None;
                target.health = Health {
                    tried: true,
                    last_ok: true,
                    last_duration: Some(duration),
                    last_success: Some(finished),
                    last_error: None,
                };
                // The same list keeps its Arc: what was rendered from it stays valid.
                if target.images.as_deref() != Some(&images) {
                    target.images = Some(Arc::new(images));
                }
            }
            Outcome::Failed(error) => {
                target.health.tried = true;
                target.health.last_ok = false;
                target.health.last_duration = Some(duration);
                target.health.last_error = Some(error.to_string());
                if !is_fresh(target.health.last_success, finished, max_staleness) {
                    target.images = None;
                }
            }
            Outcome::Duplicate { owner, account_id } => {
                if target.logged_owner.as_ref() != Some(&owner) {
                    warn!(
                        target = %key,
                        served_by = %owner,
                        account_id = %account_id,
                        "not collected: another target already serves this account and region"
                    );
                }
                target.health = Health {
                    tried: true,
                    last_error: Some(format!(
                        "not collected: account {account_id} in {} is already collected by {owner}",
                        key.region
                    )),
                    ..Health::default()
                };
                target.images = None;
                target.logged_owner = Some(owner.clone());
                target.duplicate_of = Some(owner);
            }
        }
        if let Some(pending) = &mut state.first_pending {
            pending.remove(key);
        }
        update_ready(&mut state);
        drop(state);
        self.changes.send_replace(());
    }

    /// The CloudWatch range a query of target `key` at `now` (Unix seconds) asks for.
    pub(crate) fn launch_window(
        &self,
        key: &TargetKey,
        spec: &CloudWatchSpec,
        now: i64,
    ) -> MetricWindow {
        let state = lock(&self.state);
        match state.targets.get(key) {
            Some(target) => target.launches.window(spec, now),
            None => Launches::default().window(spec, now),
        }
    }

    /// Records how a CloudWatch query of `key` at `now` for `image_ids` ended. A failure keeps the
    /// last values (and never touches the fast launch data).
    pub(crate) fn record_launches(
        &self,
        key: &TargetKey,
        spec: &CloudWatchSpec,
        now: i64,
        image_ids: &[String],
        result: Result<Vec<MetricSeries>, CollectError>,
    ) {
        let mut state = lock(&self.state);
        let Some(target) = state.targets.get_mut(key) else {
            return;
        };
        let (launches, ok) = match result {
            Ok(series) => (
                target.launches.advanced(spec, now, image_ids, &series),
                true,
            ),
            Err(_) => (target.launches.without_available(), false),
        };
        // Unchanged values keep their Arc: what was rendered from them stays valid.
        if *target.launches != launches {
            target.launches = Arc::new(launches);
        }
        target.cloudwatch_ok = Some(ok);
        drop(state);
        self.changes.send_replace(());
    }

    /// Asks every served target of (account id, region) to collect now; `time` is when the
    /// event happened. False when no such target is collected here.
    pub fn collect_now(&self, account_id: &str, region: &str, time: Option<SystemTime>) -> bool {
        let state = lock(&self.state);
        let mut asked = false;
        for key in state.order.iter().filter(|k| k.region == region) {
            if state.account_id(key) != Some(account_id) || state.served_by_other(key).is_some() {
                continue;
            }
            if let Some(task) = state.tasks.get(key) {
                // A full channel already holds events that will cause a collection.
                let _ = task.trigger.try_send(time);
                asked = true;
            }
        }
        asked
    }

    /// Records whether the last plan resolved everything; once it has, readiness no longer
    /// waits for it.
    /// Call before reconciling the plan's targets. Until a plan is complete, the exporter is
    /// not ready; the first complete plan's targets are the ones readiness waits for.
    pub fn set_plan_complete(&self, complete: bool) {
        let mut state = lock(&self.state);
        if state.ready {
            return;
        }
        if complete && !state.plan_complete {
            state.first_pending = None;
        }
        state.plan_complete = complete;
    }

    /// This process's shard.
    pub fn shard(&self) -> Shard {
        lock(&self.discovery).0
    }

    /// Shares this process's shard and discovery's statistics with the scrapes.
    pub fn set_discovery(&self, shard: Shard, stats: Option<Arc<DiscoveryStats>>) {
        *lock(&self.discovery) = (shard, stats);
    }

    /// Shares the event receiver's statistics with the scrapes.
    pub fn set_event_stats(&self, stats: Option<Arc<EventStats>>) {
        *lock(&self.events) = stats;
    }

    /// Records the lag of an applied event whose collection just ended.
    pub(crate) fn record_event_lag(&self, lag: Duration) {
        if let Some(stats) = lock(&self.events).as_ref() {
            stats.record_lag(lag);
        }
    }

    /// Records the outcome of a reload attempt.
    pub fn record_reload(&self, successful: bool, at: SystemTime) {
        let mut state = lock(&self.state);
        state.reload.successful = successful;
        if successful {
            state.reload.last_success = at;
        }
    }

    /// Whether every target of the first configuration has been tried. Once true, it stays true:
    /// targets added later do not make a ready exporter unready.
    pub fn ready(&self) -> bool {
        lock(&self.state).ready
    }

    /// Whether every registered target has been tried (for `--once`: all succeeded).
    pub fn all_succeeded(&self) -> bool {
        lock(&self.state)
            .targets
            .values()
            .all(|t| t.health.last_ok || t.duplicate_of.is_some())
    }

    /// The targets and accounts as of `now`, with stale image lists left out.
    pub fn snapshot(&self, now: SystemTime) -> Snapshot {
        let state = lock(&self.state);
        let max_staleness = state
            .settings
            .as_ref()
            .map_or(Duration::MAX, |s| s.max_staleness);
        let targets: Vec<TargetView> = state
            .order
            .iter()
            .filter_map(|key| {
                let t = state.targets.get(key)?;
                Some(TargetView {
                    key: key.clone(),
                    account_name: t.spec.account_name.clone(),
                    account_id: state.account_id(key).map(str::to_string),
                    assumes_role: t.spec.role.is_some(),
                    health: t.health.clone(),
                    images: t
                        .images
                        .clone()
                        .filter(|_| is_fresh(t.health.last_success, now, max_staleness)),
                    counters: t.counters.clone(),
                    // Its id is known but another target holds the claim: a duplicate even
                    // before its own next collection says so.
                    duplicate_of: t
                        .duplicate_of
                        .clone()
                        .or_else(|| state.served_by_other(key).cloned()),
                    cloudwatch: t.spec.cloudwatch.map(|_| CloudWatchView {
                        last_ok: t.cloudwatch_ok,
                        launches: t.launches.clone(),
                    }),
                })
            })
            .collect();
        // One account_info row per account id. An account whose id is configured (a role) wins
        // over one that learnt the same id (base credentials), then the first in config order;
        // rows keep config order. An account none of whose targets is served has no row.
        // One pass over the targets (this runs on every scrape): per account, in config order,
        // its first target and whether any of its targets is served.
        let mut per_account: Vec<(&TargetView, bool)> = Vec::new();
        let mut position: HashMap<&str, usize> = HashMap::new();
        for target in &targets {
            match position.get(target.key.account.as_str()) {
                Some(&i) => per_account[i].1 |= target.is_served(),
                None => {
                    position.insert(&target.key.account, per_account.len());
                    per_account.push((target, target.is_served()));
                }
            }
        }
        let candidates: Vec<(bool, AccountView)> = per_account
            .into_iter()
            .filter(|(_, served)| *served)
            .map(|(first, _)| {
                let spec = &state.targets[&first.key].spec;
                (
                    spec.configured_account_id().is_some(),
                    AccountView {
                        key: first.key.account.clone(),
                        account_id: first.account_id.clone(),
                        name: first.account_name.clone(),
                        labels: spec.labels.clone(),
                    },
                )
            })
            .collect();
        let configured_ids: HashSet<&str> = candidates
            .iter()
            .filter(|(configured, _)| *configured)
            .filter_map(|(_, a)| a.account_id.as_deref())
            .collect();
        let mut emitted_ids: HashSet<String> = HashSet::new();
        let mut accounts: Vec<AccountView> = Vec::new();
        for (configured, account) in &candidates {
            if let Some(id) = &account.account_id {
                // Config validation allows one configured account per id, so a configured
                // candidate is never beaten by another configured one.
                let beaten = !configured && configured_ids.contains(id.as_str());
                if beaten || !emitted_ids.insert(id.clone()) {
                    continue;
                }
            }
            accounts.push(account.clone());
        }
        let (shard, discovery) = {
            let discovery = lock(&self.discovery);
            (
                discovery.0,
                discovery
                    .1
                    .as_ref()
                    .map(|stats| stats.state())
                    .unwrap_or_default(),
            )
        };
        let static_label_names: BTreeSet<String> = state
            .targets
            .values()
            .flat_map(|t| t.spec.labels.keys().cloned())
            .collect();
        Snapshot {
            accounts,
            targets,
            static_label_names: static_label_names.into_iter().collect(),
            reload: state.reload,
            interval: state
                .settings
                .as_ref()
                .map_or(Duration::ZERO, |s| s.interval),
            max_staleness: state
                .settings
                .as_ref()
                .map_or(Duration::ZERO, |s| s.max_staleness),
            events: lock(&self.events).clone(),
            shard,
            discovery,
        }
    }
}

fn claim_in(state: &mut State, key: &TargetKey, account_id: &str) -> Result<(), TargetKey> {
    let claim = (account_id.to_string(), key.region.clone());
    match state.claims.get(&claim) {
        Some(owner) if owner != key => {
            if let Some(target) = state.targets.get_mut(key) {
                target.duplicate_of = Some(owner.clone());
            }
            Err(owner.clone())
        }
        Some(_) => Ok(()),
        None => {
            // A target that claims a new (id, region) gives up any other it held.
            release_claim(state, key);
            state.claims.insert(claim.clone(), key.clone());
            state.claimed.insert(key.clone(), claim);
            if let Some(target) = state.targets.get_mut(key) {
                target.duplicate_of = None;
            }
            Ok(())
        }
    }
}

/// Gives up the (account id, region) `key` holds, if any.
fn release_claim(state: &mut State, key: &TargetKey) {
    if let Some(claim) = state.claimed.remove(key) {
        if state.claims.get(&claim) == Some(key) {
            state.claims.remove(&claim);
        }
    }
}

fn update_ready(state: &mut State) {
    if !state.ready {
        state.ready =
            state.plan_complete && state.first_pending.as_ref().is_some_and(BTreeSet::is_empty);
    }
}

fn is_fresh(last_success: Option<SystemTime>, now: SystemTime, max_staleness: Duration) -> bool {
    match last_success {
        None => false,
        Some(at) => now.duration_since(at).unwrap_or_default() <= max_staleness,
    }
}

#[cfg(test)]
mod tests {
    //! The registry and the collector on a paused tokio clock, against a fake AWS that records
    //! when each call starts and how many run at once.

    use super::*;
    use crate::calls::{Api, AttemptSink, ErrorCode};
    use crate::collector::BoxFuture;
    use crate::model::{LaunchMetric, Query, RoleSpec};
    use tokio::time::Instant;

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
                        .get(&self.key.region)
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

        fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
            Box::pin(async { Ok(()) })
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

    /// A queue that never has a message.
    struct EmptyQueue;

    impl crate::events::Queue for EmptyQueue {
        fn receive(
            &self,
            wait: Duration,
            _max_messages: i32,
        ) -> BoxFuture<'_, Result<Vec<crate::events::QueueMessage>, ApiError>> {
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Ok(Vec::new())
            })
        }

        fn release<'a>(
            &'a self,
            _messages: &'a [crate::events::QueueMessage],
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { Ok(()) })
        }

        fn delete<'a>(
            &'a self,
            _messages: &'a [crate::events::QueueMessage],
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { Ok(()) })
        }
    }

    impl Connect for FakeConnect {
        fn connect_queue(
            &self,
            _queue: &crate::model::QueueSpec,
            _max_attempts: u32,
            _sink: Arc<dyn AttemptSink>,
        ) -> Arc<dyn crate::events::Queue> {
            Arc::new(EmptyQueue)
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
                account: arn.clone(),
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

    fn view(registry: &Registry, key: &TargetKey) -> Option<TargetView> {
        registry
            .snapshot(SystemTime::now())
            .targets
            .into_iter()
            .find(|t| &t.key == key)
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
        let snapshot = registry.snapshot(SystemTime::now());
        let served: Vec<(Option<String>, String)> = snapshot
            .targets
            .iter()
            .filter(|t| t.is_served())
            .map(|t| (t.account_id.clone(), t.key.region.clone()))
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
        registry.set_event_stats(Some(stats.clone()));
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
            assert!(registry.collect_now(ROLE_ACCOUNT, "us-east-1", Some(happened)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let calls = aws.calls_of(&target.key, start);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[1] >= Duration::from_secs(7), "debounced: {calls:?}");
        assert!(stats.last_lag().is_some());
        // Another account or region is not collected here.
        assert!(!registry.collect_now(BASE_ACCOUNT, "us-east-1", None));
        assert!(!registry.collect_now(ROLE_ACCOUNT, "eu-west-1", None));
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
        let cloudwatch =
            |registry: &Registry| view(registry, &spec.key).unwrap().cloudwatch.unwrap();
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
}
