//! What a scrape derives from its snapshot alone: which targets are served, their blocks, and
//! the cache entries of their per-image and per-target lines. The registry hands every scrape
//! the same snapshot until something in it changes, so this is worked out once per snapshot,
//! not once per scrape (at 17,000 targets, hashing every key into blocks and looking every
//! block up was a fifth of a scrape's CPU).

use std::ops::Range;
use std::sync::Arc;

use super::blocks::blocks;
use super::cache::BlockChunks;
use super::images::image_blocks;
use super::stamped::Stamped;
use super::targets::target_entries;
use super::MetricsRenderer;
use crate::domain::sync::lock;
use crate::targets::{Snapshot, TargetView};

/// See the module documentation.
pub(super) struct Layout {
    /// The [`Snapshot::id`] it was worked out for.
    snapshot: u64,
    /// The served targets, as indices in the snapshot's targets.
    served: Vec<usize>,
    /// The blocks of the served targets.
    pub(super) blocks: Vec<Range<usize>>,
    /// The cache entries of the blocks that have images, in order.
    pub(super) images: Vec<Arc<BlockChunks>>,
    /// Whether some target has CloudWatch values.
    pub(super) cloudwatch: bool,
    /// The cache entries of the per-target lines, one per block.
    pub(super) targets: Vec<Arc<Stamped>>,
}

impl Layout {
    /// The served targets of `snapshot` (the one this layout is of).
    pub(super) fn served<'s>(&self, snapshot: &'s Snapshot) -> Vec<&'s TargetView> {
        targets_at(snapshot, &self.served)
    }
}

/// The served targets of `snapshot`, as indices.
fn served_indices(snapshot: &Snapshot) -> Vec<usize> {
    (0..snapshot.targets.len())
        .filter(|&index| snapshot.targets[index].is_served())
        .collect()
}

/// The targets of `snapshot` at `indices`.
fn targets_at<'s>(snapshot: &'s Snapshot, indices: &[usize]) -> Vec<&'s TargetView> {
    indices
        .iter()
        .map(|&index| snapshot.targets[index].as_ref())
        .collect()
}

/// The served targets of `snapshot` (those another target does not already serve).
pub(super) fn served_targets(snapshot: &Snapshot) -> Vec<&TargetView> {
    targets_at(snapshot, &served_indices(snapshot))
}

impl MetricsRenderer {
    /// The layout of `snapshot`: kept from the last scrape of the same snapshot, or worked out
    /// now (and kept, unless the snapshot did not come from a registry).
    pub(super) fn layout(&self, snapshot: &Snapshot) -> Arc<Layout> {
        if let Some(kept) = lock(&self.layout)
            .as_ref()
            .filter(|kept| snapshot.id != 0 && kept.snapshot == snapshot.id)
        {
            return kept.clone();
        }
        let served = served_indices(snapshot);
        let targets = targets_at(snapshot, &served);
        let blocks = blocks(&targets);
        let groups = image_blocks(&targets, &blocks);
        let layout = Arc::new(Layout {
            snapshot: snapshot.id,
            images: self.cached(&groups, &snapshot.metrics),
            cloudwatch: groups
                .iter()
                .flatten()
                .any(|g| g.launches.is_some_and(|l| !l.is_empty())),
            targets: target_entries(&self.target_lines, &targets, &blocks, snapshot),
            served,
            blocks,
        });
        if snapshot.id != 0 {
            *lock(&self.layout) = Some(layout.clone());
        }
        layout
    }
}
