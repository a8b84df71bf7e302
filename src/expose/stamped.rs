//! Lines of one block kept with a stamp of the data they were rendered from (a hash of every
//! value they show): the per-target families and the AWS call counters change at every
//! collection, so a block's lines are rendered again when a collection in it landed or a
//! counter in it moved, and shared by every scrape in between.

use std::sync::{Arc, Mutex, OnceLock};

use super::body::Chunk;
use super::fast_hash::FastMap;
use super::Format;
use crate::domain::model::TargetKey;
use crate::domain::sync::lock;

/// One block's lines of several families, per format, for one stamp.
pub(super) struct Stamped {
    stamp: u64,
    /// Per format (text, OpenMetrics): one chunk per family, rendered by the first scrape that
    /// needs them (others wait for it).
    chunks: [OnceLock<Vec<Arc<Chunk>>>; 2],
}

impl Stamped {
    /// The chunks in `format`, rendered by `render` if they are not yet.
    pub(super) fn chunks(
        &self,
        format: Format,
        render: impl FnOnce() -> Vec<Arc<Chunk>>,
    ) -> &[Arc<Chunk>] {
        let index = usize::from(format == Format::OpenMetrics);
        self.chunks[index].get_or_init(render)
    }
}

/// The [`Stamped`] lines of every block, by the block's first target.
#[derive(Default)]
pub(super) struct StampedCache {
    entries: Mutex<FastMap<TargetKey, Arc<Stamped>>>,
}

impl StampedCache {
    /// The entries of the blocks `(first target, stamp)`, in order: kept when the stamp is the
    /// same, new (not yet rendered) otherwise; entries of blocks that are gone are dropped.
    pub(super) fn entries<'k>(
        &self,
        blocks: impl ExactSizeIterator<Item = (&'k TargetKey, u64)>,
    ) -> Vec<Arc<Stamped>> {
        let mut cache = lock(&self.entries);
        let mut kept = Vec::with_capacity(blocks.len());
        for (key, stamp) in blocks {
            let entry = match cache.get(key) {
                Some(entry) if entry.stamp == stamp => entry.clone(),
                _ => {
                    let entry = Arc::new(Stamped {
                        stamp,
                        chunks: Default::default(),
                    });
                    cache.insert(key.clone(), entry.clone());
                    entry
                }
            };
            kept.push(entry);
        }
        if cache.len() > kept.len() {
            cache.retain(|_, entry| kept.iter().any(|k| Arc::ptr_eq(k, entry)));
        }
        kept
    }
}
