//! What a scrape sees of the targets: a [`Snapshot`] of views, taken in one short lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Registry, State, Target};
use crate::domain::calls::{Api, ApiCounters};
use crate::domain::families::MetricsFilter;
use crate::domain::launches::Launches;
use crate::domain::model::{FastLaunchImage, TargetKey};
use crate::domain::sync::lock;

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
    /// The APIs its collections call.
    pub apis: &'static [Api],
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

/// Everything a scrape renders, as of one instant. A clone is another snapshot (its
/// [`Snapshot::id`] is 0): what was worked out from the original is not kept for it.
#[derive(Debug)]
pub struct Snapshot {
    /// Which snapshot this is: the registry numbers those it hands out from 1, so that what is
    /// worked out from one can be kept for the next scrape of the same; 0 for one built
    /// elsewhere (never kept).
    pub id: u64,
    /// One per account id (the first account configured with it), in config order.
    pub accounts: Vec<AccountView>,
    /// Every target, in config order, duplicates included (see [`TargetView::is_served`]).
    pub targets: Vec<Arc<TargetView>>,
    /// The union of static label names over all accounts, sorted.
    pub static_label_names: Vec<String>,
    /// The last reload.
    pub reload: ReloadStatus,
    /// `collection.interval` and `collection.max_staleness`, exported per target so that
    /// alerts can be relative to them (zero before the first reconcile).
    pub interval: Duration,
    /// See `interval`.
    pub max_staleness: Duration,
    /// The families served (the configuration's `metrics`).
    pub metrics: Arc<MetricsFilter>,
}

impl Clone for Snapshot {
    fn clone(&self) -> Snapshot {
        Snapshot {
            id: 0,
            accounts: self.accounts.clone(),
            targets: self.targets.clone(),
            static_label_names: self.static_label_names.clone(),
            reload: self.reload,
            interval: self.interval,
            max_staleness: self.max_staleness,
            metrics: self.metrics.clone(),
        }
    }
}

/// The last snapshot and how long it stays true.
#[derive(Debug)]
pub(super) struct KeptSnapshot {
    /// The [`State::generation`] it was taken at.
    generation: u64,
    /// The first instant when images it serves turn stale (None: it serves none): until then, a
    /// snapshot of the same generation is the same. (A `now` a little before the one it was
    /// taken at, read by a racing scrape before it took the lock, gets it too: it can only hide
    /// images that were fresh a few milliseconds longer.)
    fresh_until: Option<SystemTime>,
    snapshot: Arc<Snapshot>,
}

/// Numbers the snapshots a registry hands out (see [`Snapshot::id`]).
static TAKEN: AtomicU64 = AtomicU64::new(1);

impl Registry {
    /// The targets and accounts as of `now`, with stale image lists left out. Scrapes share it
    /// until something it shows changes; a target's view is built again only when it changed.
    pub fn snapshot(&self, now: SystemTime) -> Arc<Snapshot> {
        if let Some(kept) = self.kept_snapshot(now) {
            return kept;
        }
        self.take_snapshot(now)
    }

    /// The snapshot as of `now` if one is kept: never builds one (which, at 17,000 targets,
    /// takes milliseconds under the lock collections report to).
    pub fn kept_snapshot(&self, now: SystemTime) -> Option<Arc<Snapshot>> {
        kept_in(&lock(&self.state), now)
    }

    /// A new snapshot as of `now`, kept for the next scrapes (or the one another scrape just
    /// took).
    fn take_snapshot(&self, now: SystemTime) -> Arc<Snapshot> {
        let mut guard = lock(&self.state);
        if let Some(kept) = kept_in(&guard, now) {
            return kept;
        }
        let state = &mut *guard;
        let max_staleness = state
            .settings
            .as_ref()
            .map_or(Duration::MAX, |s| s.max_staleness);
        let mut fresh_until: Option<SystemTime> = None;
        // Sized up front: grown by doubling, the views of 17,000 targets would take twice their
        // room while they are copied.
        let mut targets: Vec<Arc<TargetView>> = Vec::with_capacity(state.order.len());
        for key in &state.order {
            let Some(target) = state.targets.get(key) else {
                continue;
            };
            let view = match &target.view {
                Some((epoch, view)) if *epoch == state.epoch => view.clone(),
                _ => {
                    let view = Arc::new(view_of(state, key, target));
                    if let Some(target) = state.targets.get_mut(key) {
                        target.view = Some((state.epoch, view.clone()));
                    }
                    view
                }
            };
            // The images are served while fresh: the view keeps them, the snapshot drops them.
            let view = match (view.images.is_some(), view.health.last_success) {
                (true, Some(at)) if is_fresh(Some(at), now, max_staleness) => {
                    if let Some(until) = at.checked_add(max_staleness) {
                        fresh_until = Some(fresh_until.map_or(until, |f| f.min(until)));
                    }
                    view
                }
                (true, _) => Arc::new(TargetView {
                    images: None,
                    ..(*view).clone()
                }),
                (false, _) => view,
            };
            targets.push(view);
        }
        let (accounts, static_label_names) = account_rows(state, &targets);
        let snapshot = Arc::new(Snapshot {
            id: TAKEN.fetch_add(1, Ordering::Relaxed),
            accounts,
            targets,
            static_label_names,
            reload: state.reload,
            interval: state
                .settings
                .as_ref()
                .map_or(Duration::ZERO, |s| s.interval),
            max_staleness: state
                .settings
                .as_ref()
                .map_or(Duration::ZERO, |s| s.max_staleness),
            metrics: state.metrics.clone(),
        });
        state.snapshot = Some(KeptSnapshot {
            generation: state.generation,
            fresh_until,
            snapshot: snapshot.clone(),
        });
        snapshot
    }
}

#[cfg(test)]
impl Registry {
    /// [`Registry::snapshot`] built from nothing kept, to check what is kept against.
    pub(super) fn snapshot_from_scratch(&self, now: SystemTime) -> Arc<Snapshot> {
        lock(&self.state).views_changed();
        self.snapshot(now)
    }
}

/// The snapshot `state` keeps, if it is still true at `now`.
fn kept_in(state: &State, now: SystemTime) -> Option<Arc<Snapshot>> {
    let kept = state.snapshot.as_ref()?;
    let fresh = kept.fresh_until.is_none_or(|until| now <= until);
    (kept.generation == state.generation && fresh).then(|| kept.snapshot.clone())
}

/// What a scrape sees of target `key`, its images unfiltered.
fn view_of(state: &State, key: &TargetKey, target: &Target) -> TargetView {
    let account_id = state.account_id_of(key, target);
    // Its id is known but another target holds the claim: a duplicate even before its own
    // next collection says so.
    let served_by_other = || {
        state
            .claims
            .get(&(account_id?.to_string(), key.region.clone()))
            .filter(|owner| *owner != key)
            .cloned()
    };
    TargetView {
        key: key.clone(),
        account_name: target.spec.account_name.clone(),
        account_id: account_id.map(str::to_string),
        apis: crate::collect::apis(&target.spec),
        health: target.health.clone(),
        images: target.images.clone(),
        counters: target.counters.clone(),
        duplicate_of: target.duplicate_of.clone().or_else(served_by_other),
        cloudwatch: target.spec.cloudwatch.map(|_| CloudWatchView {
            last_ok: target.cloudwatch_ok,
            launches: target.launches.clone(),
        }),
    }
}

/// One `account_info` row per account id, and the static label names (the union over the
/// accounts). An account whose id is configured (a role) wins over one that learnt the same id
/// (base credentials), then the first in config order; rows keep config order. An account none
/// of whose targets is served has no row.
fn account_rows(state: &State, targets: &[Arc<TargetView>]) -> (Vec<AccountView>, Vec<String>) {
    // One pass over the targets (this runs on every scrape): per account, in config order,
    // its first target and whether any of its targets is served.
    let mut per_account: Vec<(&TargetView, bool)> = Vec::with_capacity(targets.len() / 8);
    let mut position: HashMap<&str, usize> = HashMap::new();
    for target in targets {
        match position.get(&*target.key.account) {
            Some(&i) => per_account[i].1 |= target.is_served(),
            None => {
                position.insert(&target.key.account, per_account.len());
                per_account.push((target, target.is_served()));
            }
        }
    }
    // Static labels are an account's: the union over the accounts' first targets.
    let static_label_names: BTreeSet<&str> = per_account
        .iter()
        .flat_map(|(first, _)| state.targets[&first.key].spec.labels.keys())
        .map(String::as_str)
        .collect();
    let static_label_names: Vec<String> =
        static_label_names.into_iter().map(str::to_string).collect();
    let candidates: Vec<(bool, AccountView)> = per_account
        .into_iter()
        .filter(|(_, served)| *served)
        .map(|(first, _)| {
            let spec = &state.targets[&first.key].spec;
            (
                spec.configured_account_id().is_some(),
                AccountView {
                    key: first.key.account.to_string(),
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
    (accounts, static_label_names)
}

/// Whether data whose last success was at `last_success` is still served at `now`.
pub(super) fn is_fresh(
    last_success: Option<SystemTime>,
    now: SystemTime,
    max_staleness: Duration,
) -> bool {
    match last_success {
        None => false,
        Some(at) => now.duration_since(at).unwrap_or_default() <= max_staleness,
    }
}
