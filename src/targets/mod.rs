//! Where a target lives. The registry owns everything about each (account, region): its spec, its
//! last good image list, its health, its attempt counters, its resolved account id and its task.
//! Every change to the set of targets (start, reload, and later discovery and sharding) goes
//! through one [`Registry::reconcile`]; scrapes read a [`Snapshot`].
//!
//! Two locks: `state` (a `std` mutex: nothing is awaited while it is held, writers swap a pointer
//! and a few fields, readers clone `Arc`s) and `reconciling` (a tokio mutex that lets one
//! reconcile run at a time, across the awaits that join cancelled tasks).

mod claims;
mod sink;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::claims::{claim_in, release_claim, update_ready};
pub use self::view::{AccountView, CloudWatchView, Health, ReloadStatus, Snapshot, TargetView};
use crate::collect::{self, TargetRun};
use crate::config::CollectionSettings;
use crate::domain::calls::ApiCounters;
use crate::domain::families::MetricsFilter;
use crate::domain::launches::Launches;
use crate::domain::model::{FastLaunchImage, TargetKey, TargetSpec};
use crate::domain::ports::Connect;
use crate::domain::sync::lock;

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

/// Everything the registry knows of one target.
#[derive(Debug)]
struct Target {
    /// Shared with the target's task: one copy per target (17,000 at organisation scale).
    spec: Arc<TargetSpec>,
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
    /// What a scrape sees of it, kept until it changes: built at [`State::epoch`] (cleared when
    /// the target changes; a change that may touch every target moves the epoch).
    view: Option<(u64, Arc<TargetView>)>,
}

impl Target {
    /// A target of `spec` with no data yet.
    fn new(spec: Arc<TargetSpec>) -> Target {
        Target {
            spec,
            health: Health::default(),
            images: None,
            counters: Arc::new(ApiCounters::default()),
            duplicate_of: None,
            logged_owner: None,
            cloudwatch_ok: None,
            launches: Arc::default(),
            view: None,
        }
    }
}

/// A running target task.
#[derive(Debug)]
struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    /// Asks the task to collect now (an event), with the event's time.
    trigger: Arc<collect::Triggers>,
}

/// The registry's state, under one `std` mutex.
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
    claims: BTreeMap<(String, Arc<str>), TargetKey>,
    /// The (account id, region) each target claimed: the reverse of `claims`.
    claimed: BTreeMap<TargetKey, (String, Arc<str>)>,
    /// Targets of the first configuration not yet tried; readiness waits for them only.
    first_pending: Option<BTreeSet<TargetKey>>,
    ready: bool,
    /// Whether the targets are all known (see [`Registry::set_plan_complete`]).
    plan_complete: bool,
    reload: ReloadStatus,
    /// The families served (the configuration's `metrics`), handed to every snapshot.
    metrics: Arc<MetricsFilter>,
    /// Moves when anything a snapshot shows changes: the last snapshot is shared until then.
    generation: u64,
    /// Moves when a change may touch the view of any target (an account id learnt, a claim, a
    /// reconcile): every kept [`Target::view`] is then stale.
    epoch: u64,
    /// The last snapshot, shared by the scrapes until something changes.
    snapshot: Option<view::KeptSnapshot>,
}

impl State {
    /// Something a snapshot shows changed (not a target's view: see [`State::target_changed`]
    /// and [`State::views_changed`]).
    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Target `key` changed: its view is built again.
    fn target_changed(&mut self, key: &TargetKey) {
        if let Some(target) = self.targets.get_mut(key) {
            target.view = None;
        }
        self.changed();
    }

    /// Something that may touch every target's view changed.
    fn views_changed(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.changed();
    }

    /// The account id of target `key`: from its role ARN, or learnt with GetCallerIdentity.
    fn account_id(&self, key: &TargetKey) -> Option<&str> {
        self.account_id_of(key, self.targets.get(key)?)
    }

    /// [`State::account_id`] of a target already at hand.
    fn account_id_of<'a>(&'a self, key: &TargetKey, target: &'a Target) -> Option<&'a str> {
        target
            .spec
            .configured_account_id()
            .or_else(|| self.resolved_ids.get(&*key.account).map(String::as_str))
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
                metrics: Arc::default(),
                generation: 0,
                epoch: 0,
                snapshot: None,
            }),
            reconciling: tokio::sync::Mutex::new(()),
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
            let targets: Vec<(Arc<TargetSpec>, Arc<ApiCounters>)> = state
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
                collect::collect_cycle(registry.as_ref(), &run, &settings, &semaphore).await;
            });
        }
        while collections.join_next().await.is_some() {}
    }

    fn target_run(
        &self,
        spec: Arc<TargetSpec>,
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
        let (wanted, order) = desired(specs);

        // 1. Stop the tasks that must go or restart, and wait for them.
        let stopping = self.stop_changed(&wanted, &settings);
        for task in stopping {
            // A task only ends by its token; a panic inside it is reported, not propagated.
            if let Err(error) = task.handle.await {
                warn!(error = %error, "a target task ended abnormally");
            }
        }

        // 2. Change the data, then start the tasks that are missing.
        let mut report = ReconcileReport::default();
        let mut state = lock(&self.state);
        // Specs, order, claims and data may all change here.
        state.views_changed();
        take_settings(&mut state, &settings);
        report.removed = remove_unwanted(&mut state, &wanted);
        let to_start = update_wanted(&mut state, &wanted, &order, &mut report);
        state.order = order;
        claim_configured(&mut state);
        match &mut state.first_pending {
            None => state.first_pending = Some(wanted.keys().cloned().collect()),
            Some(pending) => pending.retain(|key| wanted.contains_key(key)),
        }
        update_ready(&mut state);
        let semaphore = state.semaphore.clone();
        let starting: Vec<(TargetKey, Arc<TargetSpec>, Arc<ApiCounters>)> = to_start
            .into_iter()
            .filter(|_| start_tasks)
            .map(|key| {
                let target = &state.targets[&key];
                (key, target.spec.clone(), target.counters.clone())
            })
            .collect();
        drop(state);
        self.start_tasks(starting, &settings, semaphore);
        self.changes.send_replace(());
        report
    }

    /// Cancels the tasks of targets that go or must restart (their spec or the settings
    /// changed, or the owner they duplicate goes) and hands them over to be joined.
    fn stop_changed(
        &self,
        wanted: &BTreeMap<TargetKey, Arc<TargetSpec>>,
        settings: &CollectionSettings,
    ) -> Vec<Task> {
        let mut state = lock(&self.state);
        let settings_changed = state.settings.as_ref() != Some(settings);
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
    }

    /// Starts the tasks of `starting`. Building SDK clients takes a while for many targets: not
    /// under the lock scrapes take.
    fn start_tasks(
        self: &Arc<Self>,
        starting: Vec<(TargetKey, Arc<TargetSpec>, Arc<ApiCounters>)>,
        settings: &CollectionSettings,
        semaphore: Arc<Semaphore>,
    ) {
        let mut tasks = Vec::with_capacity(starting.len());
        for (key, spec, counters) in starting {
            let run = self.target_run(spec, counters, settings);
            let cancel = self.shutdown.child_token();
            let trigger = Arc::new(collect::Triggers::default());
            let handle = tokio::spawn(collect::run_target(
                self.clone(),
                run,
                settings.clone(),
                semaphore.clone(),
                cancel.clone(),
                trigger.clone(),
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

    /// Serves the families `filter` lets through from the next snapshot on (the
    /// configuration's `metrics`, at start and on reload). The same filter again changes
    /// nothing, so that what was rendered for it stays valid.
    pub fn set_metrics_filter(&self, filter: MetricsFilter) {
        let mut state = lock(&self.state);
        if *state.metrics != filter {
            state.metrics = Arc::new(filter);
            state.changed();
            drop(state);
            self.changes.send_replace(());
        }
    }

    /// Records the outcome of a reload attempt.
    pub fn record_reload(&self, successful: bool, at: SystemTime) {
        let mut state = lock(&self.state);
        state.reload.successful = successful;
        if successful {
            state.reload.last_success = at;
        }
        state.changed();
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
}

/// The wanted specs by key, and their keys in order (the first of a repeated key wins).
fn desired(specs: Vec<TargetSpec>) -> (BTreeMap<TargetKey, Arc<TargetSpec>>, Vec<TargetKey>) {
    let mut wanted: BTreeMap<TargetKey, Arc<TargetSpec>> = BTreeMap::new();
    let mut order = Vec::with_capacity(specs.len());
    for spec in specs {
        if !wanted.contains_key(&spec.key) {
            order.push(spec.key.clone());
            wanted.insert(spec.key.clone(), Arc::new(spec));
        }
    }
    (wanted, order)
}

/// Takes `settings`: a new concurrency gets a new semaphore.
fn take_settings(state: &mut State, settings: &CollectionSettings) {
    if state.settings.as_ref() == Some(settings) {
        return;
    }
    if state.settings.as_ref().map(|s| s.concurrency) != Some(settings.concurrency) {
        state.semaphore = Arc::new(Semaphore::new(settings.concurrency));
    }
    state.settings = Some(settings.clone());
}

/// Removes the targets not wanted (their tasks are already stopped); their keys.
fn remove_unwanted(
    state: &mut State,
    wanted: &BTreeMap<TargetKey, Arc<TargetSpec>>,
) -> Vec<TargetKey> {
    let removed: Vec<TargetKey> = state
        .targets
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .cloned()
        .collect();
    for key in &removed {
        state.targets.remove(key);
        release_claim(state, key);
    }
    let accounts: BTreeSet<&str> = wanted.keys().map(|k| &*k.account).collect();
    state
        .resolved_ids
        .retain(|account, _| accounts.contains(account.as_str()));
    removed
}

/// Adds the new targets and updates the kept ones (a changed query or credentials drops the
/// old data); the keys whose task must start.
fn update_wanted(
    state: &mut State,
    wanted: &BTreeMap<TargetKey, Arc<TargetSpec>>,
    order: &[TargetKey],
    report: &mut ReconcileReport,
) -> Vec<TargetKey> {
    let mut to_start = Vec::new();
    for key in order {
        let spec = wanted[key].clone();
        let running = state.tasks.contains_key(key);
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
                if running {
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
                state.targets.insert(key.clone(), Target::new(spec));
                report.added.push(key.clone());
                to_start.push(key.clone());
            }
        }
    }
    to_start
}

/// Targets whose account id is configured claim their (account id, region) now, before any
/// base-credentials target can learn its id: the first claim wins.
fn claim_configured(state: &mut State) {
    for key in &state.order.clone() {
        let configured = state.targets[key]
            .spec
            .configured_account_id()
            .map(str::to_string);
        if let Some(id) = configured {
            let _ = claim_in(state, key, &id);
        }
    }
}
