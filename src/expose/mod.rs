//! Renders the exposition from registry snapshots. Metrics are made from the data every time
//! (Prometheus "Writing exporters": create new metrics each time), so images and targets that are
//! gone simply are not rendered.
//!
//! Almost all of the exposition is the per-image families, which change only when a collection
//! (or a CloudWatch query) lands, and the per-target families and AWS call counters, which
//! change at every collection. Targets are taken in blocks ([`blocks`]: about 64 small targets,
//! or one large one); a block's lines are rendered once per change of its data, when it lands
//! ([`MetricsRenderer::render_ahead`]) or at the first scrape that needs them, into immutable
//! chunks ([`BlockChunks`], [`stamped::Stamped`]) that every scrape shares, compressed once
//! per block (large enough units for deflate's window). A scrape renders fresh only the family
//! headers, the accounts and self-metrics lines and the `process_*` series, and values the
//! cached `state_age_seconds` prefixes at its own second. [`crate::expose::body`]
//! sends the result. [`MetricsRenderer::render_snapshot_as`] is the straightforward render of
//! every line (for `--once`, and the reference the cached path is tested against).
//!
//! The text format is written directly: at 100,000 images (1.4 million samples) building
//! `prometheus` crate metric vectors cost seconds and hundreds of MiB (docs/performance.md).
//! The `prometheus` crate still provides the `process_*` metrics.

mod blocks;
mod cache;
mod calls;
mod fast_hash;
#[cfg(test)]
mod filter_tests;
mod images;
mod layout;
mod own;
mod stamped;
mod targets;
mod writer;

pub mod body;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use self::blocks::blocks;
use self::body::Part;
use self::cache::{BlockChunks, Kept};
use self::calls::CounterFloor;
use self::images::{image_blocks, render_images, ImageGroup, Images};
use self::layout::{served_targets, Layout};
use self::stamped::StampedCache;
use self::targets::render_targets;
use self::writer::{unix_seconds, Exposition, Kind};
use crate::domain::calls::Caller;
use crate::domain::families::MetricsFilter;
use crate::domain::model::TargetKey;
use crate::domain::shard::Shard;
use crate::domain::stats::{DiscoveryStats, EventStats};
use crate::domain::sync::lock;
use crate::targets::{Registry, Snapshot, TargetView};

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0: counter families named without `_total`, a `_created` sample after
    /// each counter sample, `unknown` for untyped, `"` escaped in HELP, and `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Longest `reason` label value, in characters.
pub const MAX_REASON_CHARS: usize = 256;

const CACHED: &str =
    "Cached from the last successful DescribeFastLaunchImages collection, not read at scrape time.";

/// The version and git revision this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision, set by build.rs (`unknown` outside a git checkout).
pub const REVISION: &str = env!("FLE_GIT_REVISION");

/// What the exposition shows besides the targets: this process's shard, discovery and the
/// event receiver. The supervisor hands them over; the registry never holds them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// This process's shard.
    pub shard: Shard,
    /// Discovery's statistics.
    pub discovery: Option<Arc<DiscoveryStats>>,
}

/// Renders `/metrics`.
pub struct MetricsRenderer {
    /// What is shown besides the targets.
    sources: Sources,
    /// The event receiver's statistics, once it runs (see [`MetricsRenderer::show_events`]).
    events: OnceLock<Arc<EventStats>>,
    /// The `process_*` metrics, when enabled.
    process: Option<prometheus::Registry>,
    /// Keeps the AWS call counters from going down (see [`CounterFloor`]).
    floor: Mutex<CounterFloor>,
    /// Every block's per-image lines, rendered once per change of its data, by the block's
    /// first target with images.
    cache: Mutex<HashMap<TargetKey, Arc<BlockChunks>>>,
    /// Every block's per-target lines, rendered once per change of its targets' health.
    target_lines: StampedCache,
    /// What the last scrape worked out from its snapshot, for the next scrape of the same.
    layout: Mutex<Option<Arc<Layout>>>,
    /// Every block's AWS call counter lines, rendered once per change of its counters.
    call_lines: StampedCache,
    /// Whether a scrape asked for OpenMetrics, and for gzip: what rendering ahead prepares.
    asked: Mutex<Asked>,
    /// The snapshot rendering ahead last prepared every cached line of, and for what.
    prepared: Mutex<Option<(u64, Asked)>>,
}

/// Why the exposition is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every line for this call (`--once`, the reference of the tests).
    Straight,
    /// For a scrape: cached blocks, fresh lines around them.
    Scrape,
    /// Ahead of the next scrape, to fill the caches: the `process_*` series (read from `/proc`)
    /// are left out.
    Ahead,
}

/// What scrapes have asked for so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Asked {
    open_metrics: bool,
    gzip: bool,
}

impl Default for MetricsRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRenderer {
    /// A renderer with the `process_*` metrics.
    pub fn new() -> MetricsRenderer {
        let process = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            process
                .register(Box::new(collector))
                .expect("process collector registers once");
        }
        MetricsRenderer {
            sources: Sources::default(),
            events: OnceLock::new(),
            process: Some(process),
            floor: Default::default(),
            cache: Default::default(),
            target_lines: Default::default(),
            layout: Default::default(),
            call_lines: Default::default(),
            asked: Default::default(),
            prepared: Default::default(),
        }
    }

    /// A renderer without `process_*` metrics (for `--once`).
    pub fn without_process() -> MetricsRenderer {
        MetricsRenderer {
            sources: Sources::default(),
            events: OnceLock::new(),
            process: None,
            floor: Default::default(),
            cache: Default::default(),
            target_lines: Default::default(),
            layout: Default::default(),
            call_lines: Default::default(),
            asked: Default::default(),
            prepared: Default::default(),
        }
    }

    /// The renderer showing `sources` besides the targets.
    pub fn with_sources(mut self, sources: Sources) -> MetricsRenderer {
        self.sources = sources;
        self
    }

    /// Shows the event receiver's families from now on (the receiver starts after the first
    /// plan). A second call changes nothing.
    pub fn show_events(&self, stats: Arc<EventStats>) {
        let _ = self.events.set(stats);
    }

    /// The exposition text for the registry as of `now`.
    pub fn render(&self, registry: &Registry, now: SystemTime) -> String {
        self.render_snapshot(&registry.snapshot(now), now)
    }

    /// The exposition text of `snapshot`, taken at `now`. Targets that another target already
    /// serves (same account id and region) export nothing.
    pub fn render_snapshot(&self, snapshot: &Snapshot, now: SystemTime) -> String {
        self.render_snapshot_as(snapshot, now, Format::Text)
    }

    /// [`MetricsRenderer::render_snapshot`] in `format`: every line written for this call, the
    /// straightforward render (`--once`, and the reference the cached path is tested against).
    pub fn render_snapshot_as(
        &self,
        snapshot: &Snapshot,
        now: SystemTime,
        format: Format,
    ) -> String {
        let body =
            crate::expose::body::collect(self.write(snapshot, now, format, Pass::Straight), false);
        // Written from `&str`s only.
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The exposition of the registry as of `now`, in `format`, as parts for
    /// [`crate::expose::body::Stitched`]: the per-image lines come from the cache (rendered now
    /// for a target whose data changed since [`MetricsRenderer::render_ahead`] last ran), the
    /// rest is rendered fresh. `gzip` says whether it will be compressed (so that rendering
    /// ahead compresses too from then on).
    pub fn exposition(
        &self,
        registry: &Registry,
        now: SystemTime,
        format: Format,
        gzip: bool,
    ) -> Vec<Part> {
        self.scrape(&registry.snapshot(now), now, format, gzip)
    }

    /// [`MetricsRenderer::exposition`] of `snapshot`.
    pub fn scrape(
        &self,
        snapshot: &Snapshot,
        now: SystemTime,
        format: Format,
        gzip: bool,
    ) -> Vec<Part> {
        {
            let mut asked = lock(&self.asked);
            asked.open_metrics |= format == Format::OpenMetrics;
            asked.gzip |= gzip;
        }
        self.exposition_of(snapshot, now, format)
    }

    /// Whether rendering ahead prepared every cached line of `snapshot` in `format` (and
    /// compressed them, for `gzip`): a scrape of it then only writes the fresh lines around
    /// them, which costs less than handing the render to another thread.
    pub fn prepared(&self, snapshot: &Snapshot, format: Format, gzip: bool) -> bool {
        match *lock(&self.prepared) {
            Some((id, asked)) => {
                snapshot.id != 0
                    && id == snapshot.id
                    && (format == Format::Text || asked.open_metrics)
                    && (!gzip || asked.gzip)
            }
            None => false,
        }
    }

    /// Renders (and, once a scrape asked for gzip, compresses) the cached lines of every
    /// block whose data changed, so that the next scrape finds them ready: called when a
    /// collection lands, off the runtime workers.
    pub fn render_ahead(&self, registry: &Registry) {
        let asked = *lock(&self.asked);
        let now = SystemTime::now();
        let snapshot = registry.snapshot(now);
        let mut formats = vec![Format::Text];
        if asked.open_metrics {
            formats.push(Format::OpenMetrics);
        }
        for format in formats {
            for part in self.write(&snapshot, now, format, Pass::Ahead) {
                if let (Part::Cached(chunk), true) = (part, asked.gzip) {
                    chunk.compress();
                }
            }
        }
        *lock(&self.prepared) = Some((snapshot.id, asked));
    }

    /// [`MetricsRenderer::exposition`] of `snapshot`.
    pub fn exposition_of(&self, snapshot: &Snapshot, now: SystemTime, format: Format) -> Vec<Part> {
        self.write(snapshot, now, format, Pass::Scrape)
    }

    /// The cache entries of the image `blocks`, in order: kept when their data is the same,
    /// new otherwise; entries of blocks that are gone are dropped.
    fn cached(
        &self,
        blocks: &[Vec<ImageGroup<'_>>],
        filter: &Arc<MetricsFilter>,
    ) -> Vec<Arc<BlockChunks>> {
        let mut cache = lock(&self.cache);
        let entries: Vec<Arc<BlockChunks>> = blocks
            .iter()
            .map(|groups| {
                let key = groups[0].key;
                let kept = cache
                    .get(key)
                    .map(|entry| (entry.kept_for(groups, filter), entry));
                let rendered = match kept {
                    Some((Kept::Same, entry)) => return entry.clone(),
                    Some((Kept::ImagesOnly, entry)) => entry.rendered.clone(),
                    Some((Kept::Stale, _)) | None => Arc::default(),
                };
                let entry = Arc::new(BlockChunks::new(groups, rendered, filter));
                cache.insert(key.clone(), entry.clone());
                entry
            })
            .collect();
        if cache.len() > entries.len() {
            let served: std::collections::HashSet<&TargetKey> =
                blocks.iter().map(|groups| groups[0].key).collect();
            cache.retain(|key, _| served.contains(key));
        }
        entries
    }

    fn write(&self, snapshot: &Snapshot, now: SystemTime, format: Format, pass: Pass) -> Vec<Part> {
        let cached = pass != Pass::Straight;
        // Worked out once per snapshot for the caches; the straight render works out nothing.
        let layout = cached.then(|| self.layout(snapshot));
        let targets: Vec<&TargetView> = match &layout {
            Some(layout) => layout.served(snapshot),
            None => served_targets(snapshot),
        };
        let mut x = Exposition::new(format);
        x.split_fresh = cached;
        x.filter = Some(snapshot.metrics.clone());
        if !cached {
            // About 1.4 KB of text per image with every field set.
            let images: usize = targets
                .iter()
                .map(|t| t.images.as_ref().map_or(0, |i| i.len()))
                .sum();
            x.out.reserve(4096 + images * 1500);
        }
        // Ages in whole seconds: the gzip scrapes of one second share their compressed lines.
        let age_now = unix_seconds(now).floor();
        match &layout {
            Some(layout) => {
                let images = Images::Cached {
                    entries: &layout.images,
                    cloudwatch: layout.cloudwatch,
                };
                render_images(&mut x, images, age_now);
                render_accounts(&mut x, snapshot);
                let entries = Some(layout.targets.as_slice());
                render_targets(&mut x, &targets, &layout.blocks, snapshot, entries);
                self.render_sources(&mut x, &targets, &layout.blocks, cached);
            }
            None => {
                let blocks = blocks(&targets);
                let image_blocks = image_blocks(&targets, &blocks);
                render_images(&mut x, Images::Lines(&image_blocks), age_now);
                render_accounts(&mut x, snapshot);
                render_targets(&mut x, &targets, &blocks, snapshot, None);
                self.render_sources(&mut x, &targets, &blocks, cached);
            }
        }
        own::render_build_and_reload(&mut x, snapshot.reload);
        // Rendering ahead only fills the caches: nothing it writes is sent.
        if let (Some(process), false) = (&self.process, pass == Pass::Ahead) {
            own::render_process(&mut x, process);
        }
        if format == Format::OpenMetrics {
            x.out.push_str("# EOF\n");
        }
        x.into_parts()
    }

    /// The AWS call counters of the targets and of the sources, the event receiver's families,
    /// sharding and discovery.
    fn render_sources(
        &self,
        x: &mut Exposition,
        targets: &[&TargetView],
        blocks: &[std::ops::Range<usize>],
        cached: bool,
    ) {
        let target_callers: Vec<calls::CallerRef<'_>> = targets
            .iter()
            .map(|t| calls::CallerRef {
                account_id: t.account_id.as_deref().unwrap_or(""),
                region: &t.key.region,
                apis: t.apis,
                counters: &t.counters,
            })
            .collect();
        let discovery = self
            .sources
            .discovery
            .as_ref()
            .map(|stats| stats.state())
            .unwrap_or_default();
        let mut others: Vec<Caller> = self.events.get().iter().map(|e| e.caller()).collect();
        others.extend(discovery.organization_caller.clone());
        others.extend(discovery.region_callers.iter().cloned());
        let blocks: Vec<(&TargetKey, std::ops::Range<usize>)> = blocks
            .iter()
            .map(|block| (&targets[block.start].key, block.clone()))
            .collect();
        let cache = cached.then_some(&self.call_lines);
        calls::render_calls(x, target_callers, &others, &self.floor, &blocks, cache);
        if let Some(events) = self.events.get() {
            own::render_events(x, events);
        }
        own::render_scale(x, targets.len(), self.sources.shard, &discovery);
    }
}

/// `fast_launch_exporter_account_info`: one row per account.
fn render_accounts(x: &mut Exposition, snapshot: &Snapshot) {
    let static_label_names = &snapshot.static_label_names;
    x.family(
        "fast_launch_exporter_account_info",
        Kind::Gauge,
        "Configured AWS accounts with their name and static labels; value is always 1.",
    );
    for account in &snapshot.accounts {
        let mut labels: Vec<(&str, &str)> = vec![
            (
                "aws_account_id",
                account.account_id.as_deref().unwrap_or(""),
            ),
            ("account_name", account.name.as_deref().unwrap_or("")),
        ];
        labels.extend(static_label_names.iter().map(|name| {
            (
                name.as_str(),
                account.labels.get(name).map_or("", String::as_str),
            )
        }));
        x.sample("fast_launch_exporter_account_info", &labels, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::body::{write_value, Chunk};
    use super::calls::CallSeriesRef;
    use super::writer::escape_label_value;
    use super::*;
    use crate::domain::calls::{Api, ApiCounters};
    use crate::domain::launches::Launches;
    use crate::domain::model::{FastLaunchImage, FastLaunchState};

    /// A caller of a shared series leaving does not make the series go down; the series going
    /// away forgets it.
    #[test]
    fn shared_call_counters_never_go_down() {
        let mut floor = CounterFloor::default();
        let series: CallSeriesRef = ("1", "us-east-1", Api::AssumeRole, "");
        // A target (4) and DescribeRegions (6) in one account and region.
        assert_eq!(floor.value(series, 10), 10);
        // DescribeRegions goes: the target alone has 4, and then 5.
        assert_eq!(floor.value(series, 4), 10);
        assert_eq!(floor.value(series, 5), 11);
        // Another series of the account is its own.
        assert_eq!(
            floor.value(("1", "us-east-1", Api::AssumeRole, "Throttling"), 2),
            2
        );
        // The target is replaced by a duplicate that counted 1: still no reset.
        floor.keep_only(&[("1", "us-east-1")].into_iter().collect());
        assert_eq!(floor.value(series, 1), 11);
        assert_eq!(floor.value(series, 3), 13);
        // The series goes, and comes back: a new series.
        floor.keep_only(&Default::default());
        assert_eq!(floor.value(series, 5), 5);
    }

    #[test]
    fn values_and_label_values_are_written_in_the_text_format() {
        let mut out = String::new();
        for v in [1.0, 0.0, 1_795_168_800.123, 0.5, f64::NAN, f64::INFINITY] {
            write_value(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "1 0 1795168800.123 0.5 NaN +Inf ");
        let mut out = String::new();
        escape_label_value(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }

    /// A snapshot of three served targets (one reads CloudWatch, one has an unknown state and
    /// label values to escape, one has no images yet) and a duplicate, at `now`.
    pub(super) fn snapshot(now: SystemTime) -> Snapshot {
        use crate::domain::model::{CloudWatchSpec, LaunchMetric, MetricSeries};
        use crate::targets::{AccountView, CloudWatchView, Health, ReloadStatus};
        let image = |n: usize, state: FastLaunchState| FastLaunchImage {
            image_id: format!("ami-{n:017x}"),
            owner_id: "111111111111".into(),
            resource_type: "snapshot".into(),
            launch_template_id: format!("lt-{n:017x}"),
            launch_template_name: format!("fast \"launch\" \\ {n}\nnext"),
            launch_template_version: "3".into(),
            state: Some(state),
            state_transition_reason: "Client.UserInitiated".into(),
            state_transition_time: (!n.is_multiple_of(3)).then_some(1_795_000_000.5 + n as f64),
            target_resource_count: Some(10),
            max_parallel_launches: n.is_multiple_of(2).then_some(6),
        };
        let images = |from: usize, count: usize| -> Vec<FastLaunchImage> {
            (from..from + count)
                .map(|n| image(n, FastLaunchState::ALL[n % 6].clone()))
                .collect()
        };
        let mut odd = images(100, 5);
        odd[1].state = Some(FastLaunchState::Unknown("paused".into()));
        let spec = CloudWatchSpec {
            period: std::time::Duration::from_secs(300),
            lookback: std::time::Duration::from_secs(3600),
        };
        let t0 = 1_795_000_200;
        let ids: Vec<String> = images(0, 4).into_iter().map(|i| i.image_id).collect();
        let series: Vec<MetricSeries> = ids[..3]
            .iter()
            .flat_map(|id| {
                LaunchMetric::ALL.map(|metric| MetricSeries {
                    image_id: id.clone(),
                    metric,
                    points: vec![(t0 - 600, 2.0), (t0 + 300, 3.0)],
                })
            })
            .collect();
        let launches = Launches::default()
            .advanced(&spec, t0, &ids, &series)
            .advanced(&spec, t0 + 1200, &ids, &series);
        let target = |account: &str, id: &str, region: &str, list: Option<Vec<_>>| TargetView {
            key: TargetKey {
                account: account.into(),
                region: region.into(),
            },
            account_name: Some("prod".into()),
            account_id: Some(id.into()),
            apis: if account == "base" {
                &[Api::DescribeFastLaunchImages, Api::GetCallerIdentity]
            } else {
                &[Api::DescribeFastLaunchImages, Api::AssumeRole]
            },
            health: Health {
                tried: true,
                last_ok: list.is_some(),
                last_duration: Some(std::time::Duration::from_millis(120)),
                last_success: Some(now),
                last_error: None,
            },
            images: list.map(Arc::new),
            counters: Arc::new(ApiCounters::default()),
            duplicate_of: None,
            cloudwatch: None,
        };
        let mut watched = target("base", "111111111111", "us-east-1", Some(images(0, 4)));
        watched.apis = &[
            Api::DescribeFastLaunchImages,
            Api::GetCallerIdentity,
            Api::ListMetrics,
            Api::GetMetricData,
        ];
        watched.cloudwatch = Some(CloudWatchView {
            last_ok: Some(true),
            launches: Arc::new(launches),
        });
        let mut duplicate = target("dup", "111111111111", "us-east-1", Some(images(0, 4)));
        duplicate.duplicate_of = Some(watched.key.clone());
        Snapshot {
            id: 1,
            accounts: vec![AccountView {
                key: "base".into(),
                account_id: Some("111111111111".into()),
                name: Some("prod".into()),
                labels: BTreeMap::new(),
            }],
            targets: [
                watched,
                target("base", "111111111111", "eu-west-1", Some(odd)),
                duplicate,
                target("base", "111111111111", "ap-south-1", None),
                target("base", "111111111111", "us-west-2", Some(images(200, 3))),
            ]
            .map(Arc::new)
            .into(),
            static_label_names: Vec::new(),
            reload: ReloadStatus {
                successful: true,
                last_success: now,
            },
            interval: std::time::Duration::from_secs(300),
            max_staleness: std::time::Duration::from_secs(900),
            metrics: Arc::default(),
        }
    }

    /// Target `index` of `snapshot`, to change: the snapshot is then another one, as a
    /// registry would hand out (what was worked out from the old one is not kept for it).
    pub(super) fn target_mut(snapshot: &mut Snapshot, index: usize) -> &mut TargetView {
        snapshot.id += 1;
        Arc::make_mut(&mut snapshot.targets[index])
    }

    pub(super) fn gunzip(bytes: &[u8]) -> String {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .expect("a valid gzip member");
        out
    }

    fn chunk_pointers(parts: &[Part]) -> Vec<*const Chunk> {
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Cached(chunk) => Some(Arc::as_ptr(chunk)),
                _ => None,
            })
            .collect()
    }

    /// A scrape renders on its own worker only for the snapshot rendering ahead prepared, in a
    /// format and encoding it prepared; a snapshot not from a registry never counts.
    #[test]
    fn prepared_only_for_the_snapshot_format_and_encoding_rendered_ahead() {
        let renderer = MetricsRenderer::without_process();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_100_000);
        let mut snapshot = snapshot(now);
        assert!(
            !renderer.prepared(&snapshot, Format::Text, false),
            "nothing yet"
        );
        let text_only = Asked::default();
        *lock(&renderer.prepared) = Some((snapshot.id, text_only));
        assert!(renderer.prepared(&snapshot, Format::Text, false));
        assert!(!renderer.prepared(&snapshot, Format::OpenMetrics, false));
        assert!(!renderer.prepared(&snapshot, Format::Text, true));
        let both = Asked {
            open_metrics: true,
            gzip: true,
        };
        *lock(&renderer.prepared) = Some((snapshot.id, both));
        assert!(renderer.prepared(&snapshot, Format::OpenMetrics, true));
        assert!(
            !renderer.prepared(&snapshot.clone(), Format::Text, false),
            "a clone"
        );
        target_mut(&mut snapshot, 0);
        assert!(
            !renderer.prepared(&snapshot, Format::Text, false),
            "another snapshot"
        );
    }

    /// The cached, stitched exposition is byte for byte the straightforward render, plain and
    /// gzipped, in both formats, before and after a target's data changes; only the changed
    /// target's lines are rendered again.
    #[test]
    fn stitched_exposition_is_the_full_render_byte_for_byte() {
        let renderer = MetricsRenderer::without_process();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_100_000);
        let mut snapshot = snapshot(now);
        for format in [Format::Text, Format::OpenMetrics] {
            let reference = renderer.render_snapshot_as(&snapshot, now, format);
            assert!(reference.contains("aws_ec2_fast_launch_image_state_age_seconds{"));
            assert!(reference.contains("aws_ec2_fast_launch_image_cold_launches"));
            assert!(reference.contains("state=\"paused\"} 1\n"));
            let parts = renderer.exposition_of(&snapshot, now, format);
            assert!(chunk_pointers(&parts).len() > 10, "served from chunks");
            // Fresh lines cut into parts (FRESH_PART is 512 bytes in tests).
            let cut = parts
                .windows(2)
                .filter(|w| matches!(w, [Part::Fresh(_), Part::Fresh(_)]))
                .count();
            assert!(cut > 0, "{cut} cuts of fresh lines");
            let plain = crate::expose::body::collect(parts.clone(), false);
            assert_eq!(String::from_utf8(plain).unwrap(), reference, "{format:?}");
            let gzipped = crate::expose::body::collect(parts, true);
            assert_eq!(gunzip(&gzipped), reference, "{format:?} gzip");
        }

        // A second scrape, later: the same chunks, fresh ages.
        // Kept alive, so that a new chunk cannot take an old one's address.
        let first_parts = renderer.exposition_of(&snapshot, now, Format::Text);
        let first = chunk_pointers(&first_parts);
        let later = now + std::time::Duration::from_secs(61);
        let parts = renderer.exposition_of(&snapshot, later, Format::Text);
        assert_eq!(chunk_pointers(&parts), first);
        let text = String::from_utf8(crate::expose::body::collect(parts, false)).unwrap();
        assert_eq!(
            text,
            renderer.render_snapshot_as(&snapshot, later, Format::Text)
        );
        assert_ne!(
            text,
            renderer.render_snapshot_as(&snapshot, now, Format::Text)
        );

        // eu-west-1's images change and us-west-2 goes: its chunks go, eu-west-1's are new,
        // us-east-1's stay.
        let mut changed = snapshot.targets[1].images.as_deref().unwrap().clone();
        changed[0].state = Some(FastLaunchState::EnabledFailed);
        target_mut(&mut snapshot, 1).images = Some(Arc::new(changed));
        snapshot.targets.pop();
        let parts = renderer.exposition_of(&snapshot, later, Format::Text);
        let now_pointers = chunk_pointers(&parts);
        assert_eq!(now_pointers[0], first[0], "us-east-1's info chunk is kept");
        assert_ne!(now_pointers[1], first[1], "eu-west-1's info chunk is new");
        assert_eq!(lock(&renderer.cache).len(), 2);
        for gzip in [false, true] {
            let body = crate::expose::body::collect(parts.clone(), gzip);
            let text = if gzip {
                gunzip(&body)
            } else {
                String::from_utf8(body).unwrap()
            };
            assert_eq!(
                text,
                renderer.render_snapshot_as(&snapshot, later, Format::Text)
            );
        }

        // New CloudWatch values for us-east-1: its CloudWatch chunks are new, its image chunks
        // stay; then a new account id: everything of it is new.
        let chunks_of = |parts: &[Part], needle: &str| -> Vec<*const Chunk> {
            parts
                .iter()
                .filter_map(|p| match p {
                    Part::Cached(c) if std::str::from_utf8(c.plain()).unwrap().contains(needle) => {
                        Some(Arc::as_ptr(c))
                    }
                    _ => None,
                })
                .collect()
        };
        let before = renderer.exposition_of(&snapshot, later, Format::OpenMetrics);
        let spec = crate::domain::model::CloudWatchSpec {
            period: std::time::Duration::from_secs(300),
            lookback: std::time::Duration::from_secs(3600),
        };
        let ids: Vec<String> = snapshot.targets[0]
            .images
            .iter()
            .flat_map(|images| images.iter().map(|i| i.image_id.clone()))
            .collect();
        let cloudwatch = target_mut(&mut snapshot, 0).cloudwatch.as_mut().unwrap();
        let launches = cloudwatch.launches.without_available();
        let launches = launches.advanced(&spec, 1_795_003_000, &ids, &[]);
        cloudwatch.launches = Arc::new(launches);
        let after = renderer.exposition_of(&snapshot, later, Format::OpenMetrics);
        let info = "aws_ec2_fast_launch_image_info{aws_account_id=\"111111111111\",aws_region=\"us-east-1\"";
        let counters = "aws_ec2_fast_launch_image_cold_launches_created{";
        assert_eq!(chunks_of(&after, info).len(), 1);
        assert_eq!(chunks_of(&after, info), chunks_of(&before, info));
        assert_eq!(chunks_of(&before, counters).len(), 1);
        assert_eq!(chunks_of(&after, counters).len(), 1);
        assert_ne!(chunks_of(&after, counters), chunks_of(&before, counters));
        let text = String::from_utf8(crate::expose::body::collect(after, false)).unwrap();
        assert_eq!(
            text,
            renderer.render_snapshot_as(&snapshot, later, Format::OpenMetrics)
        );

        target_mut(&mut snapshot, 0).account_id = Some("999999999999".into());
        let moved = renderer.exposition_of(&snapshot, later, Format::Text);
        assert!(chunks_of(&moved, info).is_empty());
        assert_eq!(
            gunzip(&crate::expose::body::collect(moved, true)),
            renderer.render_snapshot_as(&snapshot, later, Format::Text)
        );
        drop(before);
    }

    /// The per-target and the call counter lines are cached by block too: a scrape after a
    /// counter moved or a collection landed renders only that block's lines again, and the
    /// stitched exposition stays the full render byte for byte.
    #[test]
    fn target_and_call_lines_are_rendered_again_only_when_they_change() {
        let renderer = MetricsRenderer::without_process();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_100_000);
        let mut snapshot = snapshot(now);
        let chunks_of = |parts: &[Part], needle: &str| -> Vec<*const Chunk> {
            parts
                .iter()
                .filter_map(|p| match p {
                    Part::Cached(c)
                        if std::str::from_utf8(c.plain()).unwrap().starts_with(needle) =>
                    {
                        Some(Arc::as_ptr(c))
                    }
                    _ => None,
                })
                .collect()
        };
        let requests = "fast_launch_exporter_aws_requests_total{";
        let success = "fast_launch_exporter_collection_success{";
        let first = renderer.exposition_of(&snapshot, now, Format::Text);
        assert!(chunks_of(&first, requests).len() > 1, "one chunk per block");
        assert!(chunks_of(&first, success).len() > 1, "one chunk per block");
        let again = renderer.exposition_of(&snapshot, now, Format::Text);
        assert_eq!(chunks_of(&again, requests), chunks_of(&first, requests));
        assert_eq!(chunks_of(&again, success), chunks_of(&first, success));

        // eu-west-1 calls AWS once more and fails its collection: its block's lines are new, the
        // others are the same.
        use crate::domain::calls::AttemptSink;
        snapshot.targets[1]
            .counters
            .attempt_sent(Api::DescribeFastLaunchImages);
        target_mut(&mut snapshot, 1).health.last_ok = false;
        let later = renderer.exposition_of(&snapshot, now, Format::Text);
        for needle in [requests, success] {
            let (before, after) = (chunks_of(&first, needle), chunks_of(&later, needle));
            assert_eq!(before.len(), after.len());
            let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            assert_eq!(changed, 1, "{needle}");
        }
        for format in [Format::Text, Format::OpenMetrics] {
            let parts = renderer.exposition_of(&snapshot, now, format);
            assert_eq!(
                String::from_utf8(crate::expose::body::collect(parts, false)).unwrap(),
                renderer.render_snapshot_as(&snapshot, now, format)
            );
        }
        drop(first);
    }

    /// A caller that is no target (the event queue) merged into a target's series: the cached
    /// path is the full render, before and after it calls AWS.
    #[test]
    fn merged_callers_are_cached_with_their_target() {
        use crate::domain::calls::AttemptSink;
        use crate::domain::stats::EventStats;
        let renderer = MetricsRenderer::without_process();
        let events = Arc::new(EventStats::new(
            "111111111111",
            "us-east-1",
            vec![Api::ReceiveMessage],
        ));
        renderer.show_events(events.clone());
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_100_000);
        let snapshot = snapshot(now);
        let merged = "fast_launch_exporter_aws_requests_total{aws_account_id=\"111111111111\",aws_region=\"us-east-1\",api=\"ReceiveMessage\"} ";
        for count in ["0\n", "1\n"] {
            for format in [Format::Text, Format::OpenMetrics] {
                let parts = renderer.exposition_of(&snapshot, now, format);
                let text = String::from_utf8(crate::expose::body::collect(parts, false)).unwrap();
                assert_eq!(text, renderer.render_snapshot_as(&snapshot, now, format));
                assert!(text.contains(&format!("{merged}{count}")), "{text}");
            }
            events.caller().counters.attempt_sent(Api::ReceiveMessage);
        }
    }

    /// With the process metrics on, the two paths differ only in the process series' values.
    #[test]
    fn stitched_exposition_has_the_process_families() {
        let renderer = MetricsRenderer::new();
        let now = SystemTime::now();
        let snapshot = snapshot(now);
        let without_process = |text: &str| -> String {
            text.lines()
                .filter(|l| !l.starts_with("process_"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let parts = renderer.exposition_of(&snapshot, now, Format::Text);
        let text = String::from_utf8(crate::expose::body::collect(parts, false)).unwrap();
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        let reference = renderer.render_snapshot_as(&snapshot, now, Format::Text);
        assert_eq!(without_process(&text), without_process(&reference));
    }
}
