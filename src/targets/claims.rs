//! Which target serves each (account id, region): the first to claim it. Two targets that
//! reach one account (a role and the base credentials, say) must not export the same series.

use std::collections::BTreeSet;

use super::State;
use crate::domain::model::TargetKey;

/// Claims (account id, region) for `key`: Ok if it serves them, or the key of the target that
/// already does.
pub(super) fn claim_in(
    state: &mut State,
    key: &TargetKey,
    account_id: &str,
) -> Result<(), TargetKey> {
    let claim = (account_id.to_string(), key.region.clone());
    match state.claims.get(&claim) {
        Some(owner) if owner != key => {
            let owner = owner.clone();
            let target = state.targets.get_mut(key);
            if let Some(target) = target.filter(|t| t.duplicate_of.as_ref() != Some(&owner)) {
                target.duplicate_of = Some(owner.clone());
                state.target_changed(key);
            }
            Err(owner)
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
            // Whether another target is a duplicate of this one may have changed.
            state.views_changed();
            Ok(())
        }
    }
}

/// Gives up the (account id, region) `key` holds, if any.
pub(super) fn release_claim(state: &mut State, key: &TargetKey) {
    if let Some(claim) = state.claimed.remove(key) {
        if state.claims.get(&claim) == Some(key) {
            state.claims.remove(&claim);
        }
        state.views_changed();
    }
}

/// Marks the exporter ready once the first complete plan's targets have all been tried.
pub(super) fn update_ready(state: &mut State) {
    if !state.ready {
        state.ready =
            state.plan_complete && state.first_pending.as_ref().is_some_and(BTreeSet::is_empty);
    }
}
