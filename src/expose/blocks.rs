//! The served targets in blocks: runs of consecutive targets whose lines are cached, and
//! compressed, together. A chunk per target would be a few hundred bytes at organisation scale
//! (17,000 targets of 3 images): deflate's window would see almost nothing before each, and a
//! scrape would be hundreds of thousands of parts. A block holds about [`AVERAGE_TARGETS`]
//! small targets, or one large one.
//!
//! Where a block starts depends only on the target there (a hash of its key, or its size), so
//! that a target coming or going changes its own block, not every block after it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use crate::targets::TargetView;

/// Small targets per block, on average.
pub(super) const AVERAGE_TARGETS: u64 = 64;
/// At most this many targets in one block (a long run without a start is cut).
const MAX_TARGETS: usize = 4 * AVERAGE_TARGETS as usize;
/// A target with this many images is a block of its own: its lines are large enough to compress
/// well alone, and rendering them again when a neighbour changes would be costly. Small in unit
/// tests, so that the byte-identity test has blocks of one target and of several.
const LARGE_IMAGES: usize = if cfg!(test) { 4 } else { 1024 };

/// The blocks of `targets`, as index ranges that cover them in order.
pub(super) fn blocks(targets: &[&TargetView]) -> Vec<Range<usize>> {
    let large = |t: &TargetView| t.images.as_ref().is_some_and(|i| i.len() >= LARGE_IMAGES);
    let mut blocks = Vec::with_capacity(targets.len() / AVERAGE_TARGETS as usize + 1);
    let mut start = 0;
    for (index, target) in targets.iter().enumerate().skip(1) {
        let starts = large(target)
            || large(targets[index - 1])
            || index - start >= MAX_TARGETS
            || starts_block(target);
        if starts {
            blocks.push(start..index);
            start = index;
        }
    }
    if !targets.is_empty() {
        blocks.push(start..targets.len());
    }
    blocks
}

/// Whether a small target starts a block: one in [`AVERAGE_TARGETS`], by its key.
fn starts_block(target: &TargetView) -> bool {
    let mut hasher = DefaultHasher::new();
    target.key.hash(&mut hasher);
    hasher.finish().is_multiple_of(AVERAGE_TARGETS)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::calls::ApiCounters;
    use crate::domain::model::TargetKey;
    use crate::targets::Health;

    fn target(account: usize, region: usize, images: usize) -> TargetView {
        TargetView {
            key: TargetKey {
                account: format!("arn:aws:iam::{account:012}:role/Reader").into(),
                region: format!("region-{region}").into(),
            },
            account_name: None,
            account_id: Some(format!("{account:012}")),
            apis: &[],
            health: Health::default(),
            images: Some(Arc::new(vec![Default::default(); images])),
            counters: Arc::new(ApiCounters::default()),
            duplicate_of: None,
            cloudwatch: None,
        }
    }

    /// Blocks cover every target once, in order; small targets share blocks of about the
    /// average size; a large target is alone; a target going changes only its own block.
    #[test]
    fn blocks_cover_the_targets_and_are_stable() {
        let views: Vec<TargetView> = (0..1000)
            .flat_map(|a| (0..17).map(move |r| target(a, r, LARGE_IMAGES - 1)))
            .collect();
        let targets: Vec<&TargetView> = views.iter().collect();
        let found = blocks(&targets);
        assert_eq!(found.first().map(|b| b.start), Some(0));
        assert!(found.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(found.last().map(|b| b.end), Some(targets.len()));
        let average = targets.len() / found.len();
        assert!((32..=128).contains(&average), "{average} targets per block");
        assert!(found.iter().all(|b| b.len() <= MAX_TARGETS));

        // Target 5,000 goes: every block but its own is the same run of targets.
        let mut fewer = targets.clone();
        let gone = fewer.remove(5000);
        let keys = |targets: &[&TargetView], blocks: Vec<Range<usize>>| -> Vec<Vec<TargetKey>> {
            blocks
                .into_iter()
                .map(|b| targets[b].iter().map(|t| t.key.clone()).collect())
                .collect()
        };
        let before = keys(&targets, found);
        let after = keys(&fewer, blocks(&fewer));
        let changed: Vec<&Vec<TargetKey>> = before.iter().filter(|b| !after.contains(b)).collect();
        assert!(changed.len() <= 2, "{} blocks changed", changed.len());
        assert!(changed.iter().any(|b| b.contains(&gone.key)));

        let large = target(7, 7, LARGE_IMAGES);
        let mut with_large = targets.clone();
        with_large.insert(300, &large);
        let found = blocks(&with_large);
        assert!(found.contains(&(300..301)));
    }
}
