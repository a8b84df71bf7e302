//! The per-target families: collection health, the collection settings alerts are relative to,
//! and whether CloudWatch answered. Their lines change at every collection: they are cached by
//! block (see [`super::blocks`] and [`super::stamped`]) and rendered again when a collection in
//! the block landed.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::body::Chunk;
use super::fast_hash::FastHasher;
use super::stamped::{Stamped, StampedCache};
use super::writer::{unix_seconds, Exposition, Kind};
use super::Format;
use crate::targets::{Snapshot, TargetView};

/// A per-target gauge: name, help, and its value for a target and the settings.
type TargetGauge = (
    &'static str,
    &'static str,
    fn(&TargetView, &Settings) -> Option<f64>,
);

/// The collection settings every target exports.
struct Settings {
    interval: Duration,
    max_staleness: Duration,
}

const CLOUDWATCH: &str = "fast_launch_exporter_cloudwatch_success";

/// The per-target families, in the order they are written.
const FAMILIES: [TargetGauge; 7] = [
    (
        "fast_launch_exporter_collection_success",
        "1 if the last collection of the target (account, region) succeeded, else 0.",
        |t, _| {
            t.health
                .tried
                .then_some(if t.health.last_ok { 1.0 } else { 0.0 })
        },
    ),
    (
        "fast_launch_exporter_collection_duration_seconds",
        "Duration of the target's last collection, in seconds.",
        |t, _| t.health.last_duration.map(|d| d.as_secs_f64()),
    ),
    (
        "fast_launch_exporter_last_success_timestamp_seconds",
        "Unix time when the target's last successful collection ended.",
        |t, _| t.health.last_success.map(unix_seconds),
    ),
    (
        "fast_launch_exporter_images",
        "Images in the data now served for the target.",
        |t, _| Some(t.images.as_ref().map_or(0, |i| i.len()) as f64),
    ),
    (
        "fast_launch_exporter_collection_interval_seconds",
        "The target's collection.interval, in seconds (for alerts relative to it).",
        |_, s| Some(s.interval.as_secs_f64()),
    ),
    (
        "fast_launch_exporter_max_staleness_seconds",
        "The target's collection.max_staleness, in seconds: its image series are dropped when its last success is older.",
        |_, s| Some(s.max_staleness.as_secs_f64()),
    ),
    (
        CLOUDWATCH,
        "1 if the target's last CloudWatch query (ListMetrics, GetMetricData) succeeded, else 0. Its failures never touch the fast launch data.",
        |t, _| Some(if t.cloudwatch.as_ref()?.last_ok? { 1.0 } else { 0.0 }),
    ),
];

/// The collection settings of `snapshot`.
fn settings(snapshot: &Snapshot) -> Settings {
    Settings {
        interval: snapshot.interval,
        max_staleness: snapshot.max_staleness,
    }
}

/// The families of [`FAMILIES`] that `snapshot` serves (`metrics.exclude`): the others are not
/// rendered into the cache either.
fn served(snapshot: &Snapshot) -> [bool; FAMILIES.len()] {
    FAMILIES.map(|(name, ..)| snapshot.metrics.serves(name))
}

/// The entries of `cache` for the per-target lines of the served `targets` of `snapshot`, one
/// per block: kept when the block shows the same values.
pub(super) fn target_entries(
    cache: &StampedCache,
    targets: &[&TargetView],
    blocks: &[Range<usize>],
    snapshot: &Snapshot,
) -> Vec<Arc<Stamped>> {
    let (settings, served) = (settings(snapshot), served(snapshot));
    cache.entries(blocks.iter().map(|block| {
        let block = &targets[block.clone()];
        (&block[0].key, stamp(block, &settings, &served))
    }))
}

/// The per-target families of the served `targets`, in `blocks`: from the cache `entries`
/// (see [`target_entries`]) when given, else line by line.
pub(super) fn render_targets(
    x: &mut Exposition,
    targets: &[&TargetView],
    blocks: &[Range<usize>],
    snapshot: &Snapshot,
    entries: Option<&[Arc<Stamped>]>,
) {
    let (settings, served) = (settings(snapshot), served(snapshot));
    let format = x.format;
    let chunks: Option<Vec<&[Arc<Chunk>]>> = entries.map(|entries| {
        entries
            .iter()
            .zip(blocks)
            .map(|(entry, block)| {
                entry.chunks(format, || {
                    render_block(&targets[block.clone()], &settings, &served, format)
                })
            })
            .collect()
    });
    for (index, (name, help, value)) in FAMILIES.into_iter().enumerate() {
        // Written only when some target reads CloudWatch.
        if name == CLOUDWATCH && !targets.iter().any(|t| value(t, &settings).is_some()) {
            continue;
        }
        x.family(name, Kind::Gauge, help);
        match &chunks {
            Some(chunks) => {
                for block in chunks {
                    x.cached(&block[index]);
                }
            }
            None => {
                for target in targets {
                    gauge_line(x, name, target, value(target, &settings));
                }
            }
        }
    }
}

/// One chunk per family of the targets of one block (empty for a family not `served`).
fn render_block(
    targets: &[&TargetView],
    settings: &Settings,
    served: &[bool],
    format: Format,
) -> Vec<Arc<Chunk>> {
    FAMILIES
        .iter()
        .zip(served)
        .map(|((name, _, value), served)| {
            let mut lines = Exposition::new(format);
            for target in targets.iter().filter(|_| *served) {
                gauge_line(&mut lines, name, target, value(target, settings));
            }
            lines.out.shrink_to_fit();
            Arc::new(Chunk::new(lines.out))
        })
        .collect()
}

fn gauge_line(x: &mut Exposition, name: &str, target: &TargetView, value: Option<f64>) {
    if let Some(v) = value {
        let account = target.account_id.as_deref().unwrap_or("");
        x.sample(
            name,
            &[
                ("aws_account_id", account),
                ("aws_region", &target.key.region),
            ],
            v,
        );
    }
}

/// A hash of every value the `served` families show of a block's targets.
fn stamp(targets: &[&TargetView], settings: &Settings, served: &[bool]) -> u64 {
    // Fast, and as unlikely as SipHash to give two states one stamp (see `fast_hash`).
    let mut hasher = FastHasher::default();
    served.hash(&mut hasher);
    settings.interval.hash(&mut hasher);
    settings.max_staleness.hash(&mut hasher);
    for target in targets {
        target.key.hash(&mut hasher);
        target.account_id.hash(&mut hasher);
        let health = &target.health;
        (health.tried, health.last_ok).hash(&mut hasher);
        health.last_duration.hash(&mut hasher);
        health.last_success.hash(&mut hasher);
        target.images.as_ref().map(|i| i.len()).hash(&mut hasher);
        target
            .cloudwatch
            .as_ref()
            .map(|c| c.last_ok)
            .hash(&mut hasher);
    }
    hasher.finish()
}
