//! What the landing page shows, before any HTML: the targets the filters keep, counted by
//! result, their images counted by state, and three lists sorted so that what needs a look
//! comes first (failing targets, images not `enabled`, the other targets), each cut to its
//! first rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::query::{passes, quoted, Filters};
use crate::domain::model::{FastLaunchImage, FastLaunchState};
use crate::targets::TargetView;

/// A target's last result, as the page groups targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The last collection succeeded.
    Ok,
    /// The last collection failed.
    Failed,
    /// No collection has finished yet.
    NotYetCollected,
    /// Another target serves the same (account id, region); this one is not collected.
    Duplicate,
}

impl Outcome {
    /// Every result, in the summary's order.
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::NotYetCollected,
        Outcome::Duplicate,
    ];

    /// The target's result.
    pub(super) fn of(target: &TargetView) -> Outcome {
        match (
            &target.duplicate_of,
            target.health.tried,
            target.health.last_ok,
        ) {
            (Some(_), _, _) => Outcome::Duplicate,
            (None, false, _) => Outcome::NotYetCollected,
            (None, true, true) => Outcome::Ok,
            (None, true, false) => Outcome::Failed,
        }
    }

    /// The value `state=` takes for it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::NotYetCollected => "not-yet-collected",
            Outcome::Duplicate => "duplicate",
        }
    }

    /// How the page says it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::NotYetCollected => "not yet collected",
            Outcome::Duplicate => "not collected (duplicate)",
        }
    }

    /// Its place in the list of other targets: the ones that need a look first.
    fn rank(self) -> u8 {
        match self {
            Outcome::Failed => 0,
            Outcome::NotYetCollected => 1,
            Outcome::Duplicate => 2,
            Outcome::Ok => 3,
        }
    }
}

/// What the page and `state=` call an image's state: AWS's name, or `none` when AWS gave none.
pub(super) fn state_name(image: &FastLaunchImage) -> &str {
    image
        .state
        .as_ref()
        .map_or(NO_STATE, FastLaunchState::as_str)
}

/// The name of the state of an image AWS gave no state.
pub(super) const NO_STATE: &str = "none";

/// Whether the state is a failure (a documented `-failed` state).
pub(super) fn is_failure(state: Option<&FastLaunchState>) -> bool {
    matches!(
        state,
        Some(
            FastLaunchState::EnablingFailed
                | FastLaunchState::EnabledFailed
                | FastLaunchState::DisablingFailed
        )
    )
}

/// An image's place in the image list: failures, then states this exporter does not know, then
/// transitions, then `enabled`.
fn state_rank(state: Option<&FastLaunchState>) -> u8 {
    match state {
        _ if is_failure(state) => 0,
        None | Some(FastLaunchState::Unknown(_)) => 1,
        Some(FastLaunchState::Enabled) => 3,
        Some(_) => 2,
    }
}

/// One list, cut to its first rows.
#[derive(Debug)]
pub(super) struct Listed<T> {
    /// The first rows, in the list's order.
    pub(super) rows: Vec<T>,
    /// How many rows the whole list has.
    pub(super) total: usize,
}

impl<T> Listed<T> {
    fn cut(mut all: Vec<T>, rows: usize) -> Listed<T> {
        let total = all.len();
        all.truncate(rows);
        Listed { rows: all, total }
    }

    /// How many rows were cut.
    pub(super) fn more(&self) -> usize {
        self.total - self.rows.len()
    }
}

/// An image, with the target it was collected from.
pub(super) type ImageRow<'a> = (&'a TargetView, &'a FastLaunchImage);

/// What `state=` chose, split by kind; `None` in [`Overview::chosen`] when it is not given.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Chosen {
    /// Target results.
    pub(super) outcomes: Vec<Outcome>,
    /// Image states.
    pub(super) states: Vec<String>,
}

/// What the page shows.
#[derive(Debug)]
pub(super) struct Overview<'a> {
    /// Targets the account and region filters keep, per result (in [`Outcome::ALL`]'s order).
    pub(super) outcomes: [usize; 4],
    /// Accounts and regions among them.
    pub(super) accounts: usize,
    /// See `accounts`.
    pub(super) regions: usize,
    /// Their images per state: the six documented states (0 included), then any other by name.
    pub(super) image_states: Vec<(String, usize)>,
    /// The regions of all targets, sorted: the filter form's choices.
    pub(super) all_regions: Vec<String>,
    /// What `state=` chose (None: not given: failing targets, images not enabled, the rest).
    pub(super) chosen: Option<Chosen>,
    /// Failing targets, longest failing first (never succeeded, then the oldest last success).
    pub(super) failing: Option<Listed<&'a TargetView>>,
    /// Images not `enabled` (or in the chosen states): failures first, longest in state first.
    pub(super) images: Option<Listed<ImageRow<'a>>>,
    /// The other targets (or those of the chosen results): not yet collected, duplicates, ok.
    pub(super) others: Option<Listed<&'a TargetView>>,
    /// Filter values that name nothing here.
    pub(super) problems: Vec<String>,
}

/// Whether `target`'s account has the id or name `value` (names without regard to ASCII case).
fn is_account(target: &TargetView, value: &str) -> bool {
    target.account_id.as_deref() == Some(value)
        || target
            .account_name
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(value))
}

impl<'a> Overview<'a> {
    /// The page's content for `targets` (a snapshot's) under `filters`, each list cut to `rows`.
    pub(super) fn build(
        targets: &'a [Arc<TargetView>],
        filters: &Filters,
        rows: usize,
    ) -> Overview<'a> {
        let mut problems = unknown_names(targets, filters);
        let scope: Vec<(&TargetView, Outcome)> = targets
            .iter()
            .map(AsRef::as_ref)
            .filter(|t| passes(&filters.accounts, |v| is_account(t, v)))
            .filter(|t| passes(&filters.regions, |v| &*t.key.region == v))
            .map(|t| (t, Outcome::of(t)))
            .collect();
        let mut outcomes = [0; 4];
        let mut per_state: BTreeMap<&str, usize> = BTreeMap::new();
        for (target, outcome) in &scope {
            outcomes[Outcome::ALL.iter().position(|o| o == outcome).unwrap_or(0)] += 1;
            for image in target.images.iter().flat_map(|i| i.iter()) {
                *per_state.entry(state_name(image)).or_default() += 1;
            }
        }
        let mut image_states: Vec<(String, usize)> = FastLaunchState::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
                    per_state.remove(s.as_str()).unwrap_or(0),
                )
            })
            .collect();
        image_states.extend(per_state.into_iter().map(|(s, n)| (s.to_string(), n)));
        let chosen = filters
            .states
            .as_ref()
            .map(|values| choose(values, targets, &mut problems));
        let Lists {
            failing,
            images,
            others,
        } = lists(&scope, chosen.as_ref(), rows);
        Overview {
            outcomes,
            accounts: distinct(scope.iter().map(|(t, _)| &*t.key.account)),
            regions: distinct(scope.iter().map(|(t, _)| &*t.key.region)),
            image_states,
            all_regions: targets
                .iter()
                .map(|t| t.key.region.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            chosen,
            failing,
            images,
            others,
            problems,
        }
    }

    /// All targets the account and region filters keep.
    pub(super) fn targets(&self) -> usize {
        self.outcomes.iter().sum()
    }

    /// All their images.
    pub(super) fn image_count(&self) -> usize {
        self.image_states.iter().map(|(_, n)| n).sum()
    }
}

fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.collect::<BTreeSet<_>>().len()
}

/// A message for each account or region value no target has: a typo shows as one, not as an
/// empty page without a word.
fn unknown_names(targets: &[Arc<TargetView>], filters: &Filters) -> Vec<String> {
    let mut problems = Vec::new();
    for value in filters.accounts.iter().flatten() {
        if !targets.iter().any(|t| is_account(t, value)) {
            problems.push(format!(
                "account={}: no account here has that id or name.",
                quoted(value)
            ));
        }
    }
    for value in filters.regions.iter().flatten() {
        if !targets.iter().any(|t| *t.key.region == **value) {
            problems.push(format!(
                "region={}: no target here is in that region.",
                quoted(value)
            ));
        }
    }
    problems
}

/// Splits the `state=` values into target results and image states; a value that is neither
/// (nor a state some image has now) gets a message and matches nothing.
fn choose(values: &[String], targets: &[Arc<TargetView>], problems: &mut Vec<String>) -> Chosen {
    let mut chosen = Chosen::default();
    for value in values {
        if let Some(outcome) = Outcome::ALL.into_iter().find(|o| o.name() == value) {
            chosen.outcomes.push(outcome);
            continue;
        }
        let known = FastLaunchState::ALL.iter().any(|s| s.as_str() == value)
            || targets
                .iter()
                .flat_map(|t| t.images.iter().flat_map(|i| i.iter()))
                // `state=` is lowercased; a state AWS adds may not be.
                .any(|image| state_name(image).eq_ignore_ascii_case(value));
        if known {
            chosen.states.push(value.clone());
        } else {
            let results: Vec<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
            let states: Vec<&str> = FastLaunchState::ALL.iter().map(|s| s.as_str()).collect();
            problems.push(format!(
                "state={}: neither a target result ({}) nor an image state ({}).",
                quoted(value),
                results.join(", "),
                states.join(", ")
            ));
        }
    }
    chosen
}

/// The three lists of [`Overview`]; a list `state=` leaves out is None.
struct Lists<'a> {
    failing: Option<Listed<&'a TargetView>>,
    images: Option<Listed<ImageRow<'a>>>,
    others: Option<Listed<&'a TargetView>>,
}

/// The lists over `scope`, as `chosen` asks (None: failing targets, images not enabled, the
/// rest of the targets).
fn lists<'a>(
    scope: &[(&'a TargetView, Outcome)],
    chosen: Option<&Chosen>,
    rows: usize,
) -> Lists<'a> {
    let wants = |outcome: Outcome| chosen.is_none_or(|c| c.outcomes.contains(&outcome));
    let failing = wants(Outcome::Failed).then(|| {
        let mut failing: Vec<&TargetView> = scope
            .iter()
            .filter(|(_, o)| *o == Outcome::Failed)
            .map(|(t, _)| *t)
            .collect();
        // Never succeeded (None) first, then the oldest last success.
        failing.sort_by_key(|t| t.health.last_success);
        Listed::cut(failing, rows)
    });
    let other_outcomes: Vec<Outcome> = Outcome::ALL
        .into_iter()
        .filter(|o| *o != Outcome::Failed && wants(*o))
        .collect();
    let others = (!other_outcomes.is_empty()).then(|| {
        let mut others: Vec<(&TargetView, Outcome)> = scope
            .iter()
            .filter(|(_, o)| other_outcomes.contains(o))
            .copied()
            .collect();
        others.sort_by_key(|(_, o)| o.rank());
        Listed::cut(others.into_iter().map(|(t, _)| t).collect(), rows)
    });
    let image_wanted = |image: &FastLaunchImage| match chosen {
        None => image.state != Some(FastLaunchState::Enabled),
        Some(c) => c
            .states
            .iter()
            .any(|s| s.eq_ignore_ascii_case(state_name(image))),
    };
    let images = chosen.is_none_or(|c| !c.states.is_empty()).then(|| {
        let mut images: Vec<ImageRow> = scope
            .iter()
            .flat_map(|(t, _)| t.images.iter().flat_map(|i| i.iter()).map(move |i| (*t, i)))
            .filter(|(_, image)| image_wanted(image))
            .collect();
        // Failures first; within a state, the longest in it first (no time given: last).
        images.sort_by(|(_, a), (_, b)| {
            state_rank(a.state.as_ref())
                .cmp(&state_rank(b.state.as_ref()))
                .then_with(|| {
                    let at = |i: &FastLaunchImage| i.state_transition_time.unwrap_or(f64::MAX);
                    at(a).total_cmp(&at(b))
                })
        });
        Listed::cut(images, rows)
    });
    Lists {
        failing,
        images,
        others,
    }
}
