//! How collections and events reach a target: the registry is the collection loop's
//! [`ResultSink`] and the event receiver's [`Trigger`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::claims::{claim_in, update_ready};
use super::view::{is_fresh, Health};
use super::Registry;
use crate::collect::{CollectError, Outcome, ResultSink};
use crate::domain::calls::ApiError;
use crate::domain::launches::Launches;
use crate::domain::model::{CloudWatchSpec, MetricSeries, MetricWindow, TargetKey, TargetSpec};
use crate::domain::ports::{BoxFuture, CollectNow, Fetch};
use crate::domain::sync::lock;
use crate::events::Trigger;

impl Registry {
    /// The account id of a target: from its role ARN, or learnt once per account with
    /// GetCallerIdentity (retried by the next collection after a failure).
    async fn resolve_account_id(
        &self,
        spec: &TargetSpec,
        fetch: &dyn Fetch,
    ) -> Result<String, ApiError> {
        if let Some(id) = spec.configured_account_id() {
            return Ok(id.to_string());
        }
        let account = &spec.key.account;
        let gate = lock(&self.identity_gates)
            .entry(account.to_string())
            .or_default()
            .clone();
        let _gate = gate.lock().await;
        if let Some(id) = lock(&self.state).resolved_ids.get(&**account) {
            return Ok(id.clone());
        }
        // A failure is logged once, as the collection's failure; the next collection retries.
        let id = fetch.caller_account_id().await?;
        info!(account_id = %id, "account id resolved with GetCallerIdentity");
        let mut state = lock(&self.state);
        state.resolved_ids.insert(account.to_string(), id.clone());
        state.views_changed();
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
}

impl ResultSink for Registry {
    fn account_id<'a>(
        &'a self,
        spec: &'a TargetSpec,
        fetch: &'a dyn Fetch,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(self.resolve_account_id(spec, fetch))
    }

    /// Claims (account id, region) for `key`: Ok if it serves them, or the key of the target
    /// that already does.
    fn claim(&self, key: &TargetKey, account_id: &str) -> Result<(), TargetKey> {
        claim_in(&mut lock(&self.state), key, account_id)
    }

    /// Records how a collection of `key` ended. Ignored for a target no longer registered.
    fn record(&self, key: &TargetKey, outcome: Outcome, duration: Duration, finished: SystemTime) {
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
        state.target_changed(key);
        if let Some(pending) = &mut state.first_pending {
            pending.remove(key);
        }
        update_ready(&mut state);
        drop(state);
        self.changes.send_replace(());
    }

    /// The CloudWatch range a query of target `key` at `now` (Unix seconds) asks for.
    fn launch_window(&self, key: &TargetKey, spec: &CloudWatchSpec, now: i64) -> MetricWindow {
        let state = lock(&self.state);
        match state.targets.get(key) {
            Some(target) => target.launches.window(spec, now),
            None => Launches::default().window(spec, now),
        }
    }

    /// Records how a CloudWatch query of `key` at `now` for `image_ids` ended. A failure keeps the
    /// last values (and never touches the fast launch data).
    fn record_launches(
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
        state.target_changed(key);
        drop(state);
        self.changes.send_replace(());
    }
}

impl Trigger for Registry {
    fn collect_now(&self, account_id: &str, region: &str, request: CollectNow) -> bool {
        let state = lock(&self.state);
        let mut asked = false;
        for key in state.order.iter().filter(|k| &*k.region == region) {
            if state.account_id(key) != Some(account_id) || state.served_by_other(key).is_some() {
                continue;
            }
            // A task that ended (it panicked) would hold the request's messages until a reload.
            if let Some(task) = state.tasks.get(key).filter(|t| !t.handle.is_finished()) {
                task.trigger.fire(request.clone());
                asked = true;
            }
        }
        asked
    }
}
