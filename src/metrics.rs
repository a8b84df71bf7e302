//! Renders the exposition from registry snapshots. Metrics are made from the data every time
//! (Prometheus "Writing exporters": create new metrics each time), so images and targets that are
//! gone simply are not rendered.
//!
//! Almost all of the exposition is the per-image families, which change only when a collection
//! (or a CloudWatch query) lands. Their lines are rendered once per change of a target's data,
//! when it lands ([`MetricsRenderer::render_ahead`]) or at the first scrape that needs them,
//! into immutable chunks ([`TargetChunks`]) that every scrape shares; a scrape renders fresh only
//! the family headers, the per-target and self-metrics lines and the `process_*` series, and
//! values the cached `state_age_seconds` prefixes at its own second. [`crate::exposition`]
//! sends the result. [`MetricsRenderer::render_snapshot_as`] is the straightforward render of
//! every line (for `--once`, and the reference the cached path is tested against).
//!
//! The text format is written directly: at 100,000 images (1.4 million samples) building
//! `prometheus` crate metric vectors cost seconds and hundreds of MiB (docs/performance.md).
//! The `prometheus` crate still provides the `process_*` metrics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::calls::{Api, ApiCounters};
use crate::events::{EventResult, EventStats};
use crate::exposition::{write_value, AgeLines, Chunk, Part};
use crate::launches::Launches;
use crate::model::{FastLaunchImage, FastLaunchState, TargetKey};
use crate::registry::{Registry, Snapshot, TargetView};

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

/// Renders `/metrics`.
pub struct MetricsRenderer {
    /// The `process_*` metrics, when enabled.
    process: Option<prometheus::Registry>,
    /// Keeps the AWS call counters from going down (see [`CounterFloor`]).
    floor: Mutex<CounterFloor>,
    /// Every served target's per-image lines, rendered once per change of its data.
    cache: Mutex<HashMap<TargetKey, Arc<TargetChunks>>>,
    /// Whether a scrape asked for OpenMetrics, and for gzip: what rendering ahead prepares.
    asked: Mutex<Asked>,
}

/// What scrapes have asked for so far.
#[derive(Debug, Default, Clone, Copy)]
struct Asked {
    open_metrics: bool,
    gzip: bool,
}

/// A counter series of the AWS calls: account id, region, api, error code ("" for requests).
type CallSeries = (String, String, Api, &'static str);

/// The callers that share an account id and region (a target, discovery's DescribeRegions, the
/// event queue, Organizations) add up into one series. When one of them goes while the others
/// stay, the sum would go down, which Prometheus reads as a counter reset; the floor keeps what
/// the series had counted instead (until the series itself goes).
#[derive(Debug, Default)]
struct CounterFloor {
    /// Per series: the value last exported, and what callers that went had counted.
    series: HashMap<CallSeries, (u64, u64)>,
}

impl CounterFloor {
    fn value(&mut self, series: CallSeries, sum: u64) -> u64 {
        let (last, retired) = self.series.entry(series).or_default();
        let mut value = sum + *retired;
        if value < *last {
            *retired += *last - value;
            value = *last;
        }
        *last = value;
        value
    }

    /// Forgets the series not exported this time.
    fn keep_only(&mut self, exported: &std::collections::HashSet<CallSeries>) {
        self.series.retain(|series, _| exported.contains(series));
    }
}

impl Default for MetricsRenderer {
    fn default() -> Self {
        Self::new()
    }
}

/// The exposition being written. Families are written whole, one after another: fresh lines
/// into `out`, cached ones as parts after the fresh lines before them.
struct Exposition {
    out: String,
    format: Format,
    parts: Vec<Part>,
    /// Whether fresh lines are cut into parts of about [`FRESH_PART`] bytes.
    split_fresh: bool,
}

/// The size fresh lines are cut into parts at (see [`Exposition::sample`]); small in unit tests,
/// so that the byte-identity test cuts its fresh lines too.
const FRESH_PART: usize = if cfg!(test) { 512 } else { 256 * 1024 };

impl Exposition {
    fn new(format: Format) -> Exposition {
        Exposition {
            out: String::new(),
            format,
            parts: Vec::new(),
            split_fresh: false,
        }
    }

    /// Ends the fresh lines written so far as a part.
    fn end_fresh(&mut self) {
        if !self.out.is_empty() {
            let fresh = std::mem::take(&mut self.out);
            self.parts.push(Part::Fresh(Bytes::from(fresh)));
        }
    }

    /// Cached lines, next.
    fn cached(&mut self, chunk: &Arc<Chunk>) {
        if !chunk.plain().is_empty() {
            self.end_fresh();
            self.parts.push(Part::Cached(chunk.clone()));
        }
    }

    /// `state_age_seconds` lines valued at `now`, next.
    fn ages(&mut self, lines: &Arc<AgeLines>, now: f64) {
        if !lines.is_empty() {
            self.end_fresh();
            self.parts.push(Part::Ages(lines.clone(), now));
        }
    }

    /// Every part, in order.
    fn into_parts(mut self) -> Vec<Part> {
        self.end_fresh();
        self.parts
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let open_metrics = self.format == Format::OpenMetrics;
        let (name, kind) = match (open_metrics, kind) {
            (true, "counter") => (name.strip_suffix("_total").unwrap_or(name), kind),
            (true, "untyped") => (name, "unknown"),
            _ => (name, kind),
        };
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '"' if open_metrics => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        let _ = write!(self.out, "\n# TYPE {name} {kind}\n");
    }

    /// A counter sample (`name` ends with `_total`), and in OpenMetrics its `_created` sample:
    /// when the counter started at 0, in Unix seconds.
    fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: f64, created: f64) {
        self.sample(name, labels, value);
        if self.format == Format::OpenMetrics {
            let base = name.strip_suffix("_total").unwrap_or(name);
            self.sample(&format!("{base}_created"), labels, created);
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_prefix(name, labels);
        write_value(&mut self.out, value);
        self.out.push('\n');
        // Fresh lines of thousands of targets are megabytes: parts of bounded size, not one
        // growing (and re-allocating) buffer. The straightforward render keeps one buffer.
        if self.split_fresh && self.out.len() >= FRESH_PART {
            self.end_fresh();
        }
    }

    /// A sample's name and labels, and the space before its value.
    fn sample_prefix(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, text);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

fn escape_label_value(out: &mut String, text: &str) {
    if !text.contains(['\\', '"', '\n']) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A per-target gauge: name, help, and its value for a target.
type TargetGauge = (&'static str, &'static str, fn(&TargetView) -> Option<f64>);

/// One target's images with the labels they share.
struct ImageGroup<'a> {
    key: &'a TargetKey,
    account_id: &'a str,
    images: &'a Arc<Vec<FastLaunchImage>>,
    /// The CloudWatch values, when the target reads CloudWatch.
    launches: Option<&'a Arc<Launches>>,
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
            process: Some(process),
            floor: Default::default(),
            cache: Default::default(),
            asked: Default::default(),
        }
    }

    /// A renderer without `process_*` metrics (for `--once`).
    pub fn without_process() -> MetricsRenderer {
        MetricsRenderer {
            process: None,
            floor: Default::default(),
            cache: Default::default(),
            asked: Default::default(),
        }
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
        let body = crate::exposition::collect(self.write(snapshot, now, format, false), false);
        // Written from `&str`s only.
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The exposition of the registry as of `now`, in `format`, as parts for
    /// [`crate::exposition::Stitched`]: the per-image lines come from the cache (rendered now
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
        {
            let mut asked = crate::sync::lock(&self.asked);
            asked.open_metrics |= format == Format::OpenMetrics;
            asked.gzip |= gzip;
        }
        self.exposition_of(&registry.snapshot(now), now, format)
    }

    /// Renders (and, once a scrape asked for gzip, compresses) the cached lines of every
    /// target whose data changed, so that the next scrape finds them ready: called when a
    /// collection lands, off the runtime workers.
    pub fn render_ahead(&self, registry: &Registry) {
        let asked = *crate::sync::lock(&self.asked);
        let snapshot = registry.snapshot(SystemTime::now());
        let targets: Vec<&TargetView> = snapshot.targets.iter().filter(|t| t.is_served()).collect();
        let groups = image_groups(&targets);
        for entry in self.cached(&groups) {
            let mut formats = vec![Format::Text];
            if asked.open_metrics {
                formats.push(Format::OpenMetrics);
            }
            for format in formats {
                for family in ImageFamily::ALL {
                    let chunk = entry.chunk(family, format);
                    if asked.gzip {
                        chunk.compress();
                    }
                }
            }
        }
    }

    /// [`MetricsRenderer::exposition`] of `snapshot`.
    pub fn exposition_of(&self, snapshot: &Snapshot, now: SystemTime, format: Format) -> Vec<Part> {
        self.write(snapshot, now, format, true)
    }

    /// The cache entries of `groups`, in order: kept when their data is the same, new
    /// otherwise; entries of targets no longer served are dropped.
    fn cached(&self, groups: &[ImageGroup<'_>]) -> Vec<Arc<TargetChunks>> {
        let mut cache = crate::sync::lock(&self.cache);
        let entries: Vec<Arc<TargetChunks>> = groups
            .iter()
            .map(|group| {
                let kept = cache
                    .get(group.key)
                    .map(|entry| (entry.kept_for(group), entry));
                let rendered = match kept {
                    Some((Kept::Same, entry)) => return entry.clone(),
                    Some((Kept::ImagesOnly, entry)) => entry.rendered.clone(),
                    Some((Kept::Stale, _)) | None => Arc::default(),
                };
                let entry = Arc::new(TargetChunks::new(group, rendered));
                cache.insert(group.key.clone(), entry.clone());
                entry
            })
            .collect();
        if cache.len() > entries.len() {
            let served: std::collections::HashSet<&TargetKey> =
                groups.iter().map(|g| g.key).collect();
            cache.retain(|key, _| served.contains(key));
        }
        entries
    }

    fn write(
        &self,
        snapshot: &Snapshot,
        now: SystemTime,
        format: Format,
        cached: bool,
    ) -> Vec<Part> {
        let targets: Vec<&TargetView> = snapshot.targets.iter().filter(|t| t.is_served()).collect();
        let accounts = &snapshot.accounts;
        let mut x = Exposition::new(format);
        x.split_fresh = cached;
        if !cached {
            // About 1.4 KB of text per image with every field set.
            let images: usize = targets
                .iter()
                .map(|t| t.images.as_ref().map_or(0, |i| i.len()))
                .sum();
            x.out.reserve(4096 + images * 1500);
        }
        let groups = image_groups(&targets);
        let entries = cached.then(|| self.cached(&groups));
        // Ages in whole seconds: the gzip scrapes of one second share their compressed lines.
        let age_now = unix_seconds(now).floor();
        render_images(&mut x, &groups, entries.as_deref(), age_now);

        let static_label_names = &snapshot.static_label_names;
        x.family(
            "fast_launch_exporter_account_info",
            "gauge",
            "Configured AWS accounts with their name and static labels; value is always 1.",
        );
        for account in accounts {
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
        render_targets(&mut x, &targets, snapshot, &self.floor);
        x.family(
            "fast_launch_exporter_build_info",
            "gauge",
            "Version and git revision of the fast-launch-exporter binary; value is always 1.",
        );
        x.sample(
            "fast_launch_exporter_build_info",
            &[("version", VERSION), ("revision", REVISION)],
            1.0,
        );
        let reload = snapshot.reload;
        x.family(
            "fast_launch_exporter_config_last_reload_successful",
            "gauge",
            "1 if the last configuration reload succeeded, else 0.",
        );
        x.sample(
            "fast_launch_exporter_config_last_reload_successful",
            &[],
            if reload.successful { 1.0 } else { 0.0 },
        );
        x.family(
            "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful configuration load (start-up or reload).",
        );
        x.sample(
            "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
            &[],
            unix_seconds(reload.last_success),
        );
        if let Some(process) = &self.process {
            let mut families = process.gather();
            // The prometheus crate counts whole seconds; client_golang serves the fraction.
            if let Some(seconds) = process_cpu_seconds() {
                for family in families
                    .iter_mut()
                    .filter(|f| f.name() == "process_cpu_seconds_total")
                {
                    for metric in family.mut_metric() {
                        let mut counter = metric.get_counter().clone();
                        counter.set_value(seconds);
                        metric.set_counter(counter);
                    }
                }
            }
            render_process(&mut x, &families);
        }
        if format == Format::OpenMetrics {
            x.out.push_str("# EOF\n");
        }
        x.into_parts()
    }
}

/// The served targets that have images.
fn image_groups<'a>(targets: &[&'a TargetView]) -> Vec<ImageGroup<'a>> {
    targets
        .iter()
        .filter_map(|t| {
            Some(ImageGroup {
                key: &t.key,
                account_id: t.account_id.as_deref().unwrap_or(""),
                images: t.images.as_ref()?,
                launches: t.cloudwatch.as_ref().map(|c| &c.launches),
            })
        })
        .collect()
}

/// When the first of `counters` started: the `_created` of their shared series.
fn created_of(counters: &[&ApiCounters]) -> f64 {
    counters
        .iter()
        .map(|c| unix_seconds(c.created()))
        .fold(f64::INFINITY, f64::min)
}

/// The `process_*` families (gauges and the CPU counter, whose `_created` is the process start).
fn render_process(x: &mut Exposition, families: &[prometheus::proto::MetricFamily]) {
    use prometheus::proto::MetricType;
    let started = families
        .iter()
        .find(|f| f.name() == "process_start_time_seconds")
        .and_then(|f| f.get_metric().first())
        .map_or(0.0, |m| m.get_gauge().get_value());
    for family in families {
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            // The process collector makes only counters and gauges.
            _ => continue,
        };
        x.family(family.name(), kind, family.help());
        for metric in family.get_metric() {
            let labels: Vec<(&str, &str)> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if kind == "counter" {
                let value = metric.get_counter().get_value();
                x.counter(family.name(), &labels, value, started);
            } else {
                x.sample(family.name(), &labels, metric.get_gauge().get_value());
            }
        }
    }
}

/// User and system CPU time of this process in seconds, with the clock tick's precision
/// (`/proc/self/stat` fields 14 and 15), as client_golang reads it.
fn process_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command, which may hold spaces and parentheses: state is field 3.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf reads a constant of the system; no memory is passed.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (ticks > 0).then(|| (utime + stime) / ticks as f64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The families with one series (or a few) per image, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFamily {
    Info,
    State,
    TargetResources,
    MaxParallelLaunches,
    TransitionTime,
    /// Computed at scrape time: its lines are cached without their values ([`AgeLines`]).
    StateAge,
    AvailableSnapshots,
    FastLaunches,
    ColdLaunches,
    Reason,
}

impl ImageFamily {
    const ALL: [ImageFamily; 10] = [
        ImageFamily::Info,
        ImageFamily::State,
        ImageFamily::TargetResources,
        ImageFamily::MaxParallelLaunches,
        ImageFamily::TransitionTime,
        ImageFamily::StateAge,
        ImageFamily::AvailableSnapshots,
        ImageFamily::FastLaunches,
        ImageFamily::ColdLaunches,
        ImageFamily::Reason,
    ];

    /// The family's name.
    fn name(self) -> &'static str {
        self.header_parts().0
    }

    /// Name, type and help.
    fn header(self) -> (&'static str, &'static str, String) {
        let (name, kind, help) = self.header_parts();
        let help = if self.is_cloudwatch() {
            help.to_string()
        } else {
            format!("{help} {CACHED}")
        };
        (name, kind, help)
    }

    /// Name, type and help without the note on caching.
    fn header_parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ImageFamily::Info => (
                "aws_ec2_fast_launch_image_info",
                "gauge",
                "Fast launch configuration of an image; value is always 1.",
            ),
            ImageFamily::State => (
                "aws_ec2_fast_launch_image_state",
                "gauge",
                "Fast launch state of an image: 1 for the current state, 0 for the others.",
            ),
            ImageFamily::TargetResources => (
                "aws_ec2_fast_launch_image_target_resources",
                "gauge",
                "Pre-provisioned snapshots fast launch keeps for the image (SnapshotConfiguration.TargetResourceCount).",
            ),
            ImageFamily::MaxParallelLaunches => (
                "aws_ec2_fast_launch_image_max_parallel_launches",
                "gauge",
                "Maximum parallel instances launched to pre-provision snapshots (MaxParallelLaunches).",
            ),
            ImageFamily::TransitionTime => (
                "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
                "gauge",
                "Unix time of the image's last fast launch state transition (StateTransitionTime).",
            ),
            ImageFamily::StateAge => (
                "aws_ec2_fast_launch_image_state_age_seconds",
                "gauge",
                "Seconds since the image's last fast launch state transition, computed at scrape time from the cached StateTransitionTime.",
            ),
            ImageFamily::AvailableSnapshots => (
                "aws_ec2_fast_launch_image_available_snapshots",
                "gauge",
                "Pre-provisioned snapshots available for the image: the latest CloudWatch NumberOfAvailableFastLaunchSnapshots (Minimum) within cloudwatch.lookback.",
            ),
            ImageFamily::FastLaunches => (
                "aws_ec2_fast_launch_image_fast_launches_total",
                "counter",
                "Instances launched from a pre-provisioned snapshot: CloudWatch NumberOfInstancesFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            ),
            ImageFamily::ColdLaunches => (
                "aws_ec2_fast_launch_image_cold_launches_total",
                "counter",
                "Instances launched without a pre-provisioned snapshot (cold boots): CloudWatch NumberOfInstancesNotFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            ),
            ImageFamily::Reason => (
                "aws_ec2_fast_launch_image_state_reason_info",
                "gauge",
                "Reason for the image's last state transition (StateTransitionReason, at most 256 characters); value is always 1.",
            ),
        }
    }

    /// Whether the family comes from CloudWatch (written only when some image has its data).
    fn is_cloudwatch(self) -> bool {
        matches!(
            self,
            ImageFamily::AvailableSnapshots | ImageFamily::FastLaunches | ImageFamily::ColdLaunches
        )
    }
}

/// Writes one target's lines of an image family.
fn image_lines(x: &mut Exposition, family: ImageFamily, group: &ImageGroup<'_>, now: f64) {
    let name = family.name();
    for image in group.images.iter() {
        let [a, r, i] = [
            ("aws_account_id", group.account_id),
            ("aws_region", &group.key.region),
            ("image_id", image.image_id.as_str()),
        ];
        let gauge = |x: &mut Exposition, value: Option<f64>| {
            if let Some(v) = value {
                x.sample(name, &[a, r, i], v);
            }
        };
        match family {
            ImageFamily::Info => x.sample(
                name,
                &[
                    a,
                    r,
                    i,
                    ("owner_id", &image.owner_id),
                    ("resource_type", &image.resource_type),
                    ("launch_template_id", &image.launch_template_id),
                    ("launch_template_name", &image.launch_template_name),
                    ("launch_template_version", &image.launch_template_version),
                ],
                1.0,
            ),
            ImageFamily::State => {
                for state in &FastLaunchState::ALL {
                    let current = image.state.as_ref() == Some(state);
                    x.sample(
                        name,
                        &[a, r, i, ("state", state.as_str())],
                        if current { 1.0 } else { 0.0 },
                    );
                }
                if let Some(FastLaunchState::Unknown(raw)) = &image.state {
                    x.sample(name, &[a, r, i, ("state", raw)], 1.0);
                }
            }
            ImageFamily::TargetResources => {
                gauge(x, image.target_resource_count.map(f64::from));
            }
            ImageFamily::MaxParallelLaunches => {
                gauge(x, image.max_parallel_launches.map(f64::from));
            }
            ImageFamily::TransitionTime => gauge(x, image.state_transition_time),
            ImageFamily::StateAge => {
                gauge(x, image.state_transition_time.map(|at| (now - at).max(0.0)));
            }
            ImageFamily::AvailableSnapshots
            | ImageFamily::FastLaunches
            | ImageFamily::ColdLaunches => {
                let Some(counted) = group.launches.and_then(|l| l.image(&image.image_id)) else {
                    continue;
                };
                match family {
                    ImageFamily::AvailableSnapshots => gauge(x, counted.available_snapshots),
                    ImageFamily::FastLaunches => {
                        x.counter(
                            name,
                            &[a, r, i],
                            counted.fast_launches,
                            counted.created as f64,
                        );
                    }
                    _ => x.counter(
                        name,
                        &[a, r, i],
                        counted.cold_launches,
                        counted.created as f64,
                    ),
                }
            }
            ImageFamily::Reason => {
                let state = image.state.as_ref().map_or("", FastLaunchState::as_str);
                let reason = &image.state_transition_reason;
                let reason = match reason.char_indices().nth(MAX_REASON_CHARS) {
                    Some((cut, _)) => &reason[..cut],
                    None => reason.as_str(),
                };
                x.sample(name, &[a, r, i, ("state", state), ("reason", reason)], 1.0);
            }
        }
    }
}

/// The per-image families, each written whole over every target's images: from the cached
/// chunks when `cached` holds one entry per group, else line by line.
fn render_images(
    x: &mut Exposition,
    groups: &[ImageGroup<'_>],
    cached: Option<&[Arc<TargetChunks>]>,
    now: f64,
) {
    let cloudwatch = groups
        .iter()
        .any(|g| g.launches.is_some_and(|l| !l.is_empty()));
    for family in ImageFamily::ALL {
        if family.is_cloudwatch() && !cloudwatch {
            continue;
        }
        let (name, kind, help) = family.header();
        x.family(name, kind, &help);
        for (index, group) in groups.iter().enumerate() {
            match cached.map(|entries| &entries[index]) {
                Some(entry) if family == ImageFamily::StateAge => {
                    x.ages(&entry.rendered().ages, now);
                }
                Some(entry) => {
                    let format = x.format;
                    x.cached(entry.chunk(family, format));
                }
                None => image_lines(x, family, group, now),
            }
        }
    }
}

/// What is cached of one target's images: every per-image family's lines, rendered once for
/// the data they were rendered from (kept here, compared by identity) and shared by every
/// scrape until that data changes. The CloudWatch families are kept apart: they change at every
/// CloudWatch query, the others only when DescribeFastLaunchImages says something new.
pub struct TargetChunks {
    key: TargetKey,
    account_id: String,
    images: Arc<Vec<FastLaunchImage>>,
    launches: Option<Arc<Launches>>,
    /// The families read from DescribeFastLaunchImages; shared with the entry that replaces
    /// this one when only the CloudWatch values changed.
    rendered: Arc<OnceLock<RenderedImages>>,
    /// The CloudWatch families.
    from_cloudwatch: OnceLock<CloudWatchChunks>,
}

/// The empty chunk, shared (a slot of [`RenderedImages::families`] no lines go in).
fn empty_chunk() -> Arc<Chunk> {
    static EMPTY: OnceLock<Arc<Chunk>> = OnceLock::new();
    EMPTY
        .get_or_init(|| Arc::new(Chunk::new(Bytes::new())))
        .clone()
}

/// The rendered lines of [`TargetChunks`] read from DescribeFastLaunchImages.
struct RenderedImages {
    /// One chunk per [`ImageFamily::ALL`] in text format (empty for `StateAge` and the
    /// CloudWatch families).
    families: Vec<Arc<Chunk>>,
    ages: Arc<AgeLines>,
}

/// The rendered CloudWatch families of [`TargetChunks`].
struct CloudWatchChunks {
    /// Available snapshots, fast launches, cold launches, in text format.
    text: [Arc<Chunk>; 3],
    /// The two counter families in OpenMetrics, rendered when an OpenMetrics scrape first asks.
    open_metrics_counters: OnceLock<[Arc<Chunk>; 2]>,
}

/// How a cache entry stands against a target's data now.
enum Kept {
    /// Rendered from this data.
    Same,
    /// Rendered from these images, but other CloudWatch values.
    ImagesOnly,
    /// Rendered from other images or for another account id.
    Stale,
}

impl TargetChunks {
    fn new(group: &ImageGroup<'_>, rendered: Arc<OnceLock<RenderedImages>>) -> TargetChunks {
        TargetChunks {
            key: group.key.clone(),
            account_id: group.account_id.to_string(),
            images: group.images.clone(),
            launches: group.launches.cloned(),
            rendered,
            from_cloudwatch: OnceLock::new(),
        }
    }

    /// Whether these chunks were rendered from `group`'s data.
    fn kept_for(&self, group: &ImageGroup<'_>) -> Kept {
        if !Arc::ptr_eq(&self.images, group.images)
            || self.account_id != group.account_id
            || self.key != *group.key
        {
            return Kept::Stale;
        }
        match (&self.launches, group.launches) {
            (Some(kept), Some(now)) if Arc::ptr_eq(kept, now) => Kept::Same,
            (None, None) => Kept::Same,
            _ => Kept::ImagesOnly,
        }
    }

    fn group(&self) -> ImageGroup<'_> {
        ImageGroup {
            key: &self.key,
            account_id: &self.account_id,
            images: &self.images,
            launches: self.launches.as_ref(),
        }
    }

    /// The chunk of `family` in `format`.
    fn chunk(&self, family: ImageFamily, format: Format) -> &Arc<Chunk> {
        let index = ImageFamily::ALL
            .iter()
            .position(|f| *f == family)
            .expect("every family is in ALL");
        if !family.is_cloudwatch() {
            return &self.rendered().families[index];
        }
        let from_cloudwatch = self.from_cloudwatch.get_or_init(|| CloudWatchChunks {
            text: [
                ImageFamily::AvailableSnapshots,
                ImageFamily::FastLaunches,
                ImageFamily::ColdLaunches,
            ]
            .map(|family| self.render(family, Format::Text)),
            open_metrics_counters: OnceLock::new(),
        });
        let counter = usize::from(family == ImageFamily::ColdLaunches);
        match (format, family) {
            (Format::OpenMetrics, ImageFamily::FastLaunches | ImageFamily::ColdLaunches) => {
                let counters = from_cloudwatch.open_metrics_counters.get_or_init(|| {
                    [ImageFamily::FastLaunches, ImageFamily::ColdLaunches]
                        .map(|family| self.render(family, Format::OpenMetrics))
                });
                &counters[counter]
            }
            (_, ImageFamily::AvailableSnapshots) => &from_cloudwatch.text[0],
            _ => &from_cloudwatch.text[1 + counter],
        }
    }

    /// One family's lines of this target.
    fn render(&self, family: ImageFamily, format: Format) -> Arc<Chunk> {
        let mut x = Exposition::new(format);
        image_lines(&mut x, family, &self.group(), 0.0);
        // Kept until the data changes: without the slack of a buffer grown by doubling (up to
        // half of it, for every chunk).
        x.out.shrink_to_fit();
        Arc::new(Chunk::new(x.out))
    }

    /// The lines read from DescribeFastLaunchImages, rendered by the first caller that needs
    /// them (others wait for it).
    fn rendered(&self) -> &RenderedImages {
        self.rendered.get_or_init(|| {
            let families = ImageFamily::ALL
                .iter()
                .map(|&family| match family {
                    ImageFamily::StateAge => empty_chunk(),
                    family if family.is_cloudwatch() => empty_chunk(),
                    family => self.render(family, Format::Text),
                })
                .collect();
            let mut ages = AgeLines::default();
            let mut prefix = Exposition::new(Format::Text);
            let name = ImageFamily::StateAge.name();
            for image in self.images.iter() {
                if let Some(at) = image.state_transition_time {
                    prefix.out.clear();
                    prefix.sample_prefix(
                        name,
                        &[
                            ("aws_account_id", &self.account_id),
                            ("aws_region", &self.key.region),
                            ("image_id", image.image_id.as_str()),
                        ],
                    );
                    ages.push(&prefix.out, at);
                }
            }
            RenderedImages {
                families,
                ages: Arc::new(ages.shrunk()),
            }
        })
    }
}

/// The per-target families.
fn render_targets(
    x: &mut Exposition,
    targets: &[&TargetView],
    snapshot: &Snapshot,
    floor: &Mutex<CounterFloor>,
) {
    let labels = |t: &TargetView| -> [(&'static str, String); 2] {
        [
            ("aws_account_id", t.account_id.clone().unwrap_or_default()),
            ("aws_region", t.key.region.clone()),
        ]
    };
    let gauges: [TargetGauge; 4] = [
        (
            "fast_launch_exporter_collection_success",
            "1 if the last collection of the target (account, region) succeeded, else 0.",
            |t| {
                t.health
                    .tried
                    .then_some(if t.health.last_ok { 1.0 } else { 0.0 })
            },
        ),
        (
            "fast_launch_exporter_collection_duration_seconds",
            "Duration of the target's last collection, in seconds.",
            |t| t.health.last_duration.map(|d| d.as_secs_f64()),
        ),
        (
            "fast_launch_exporter_last_success_timestamp_seconds",
            "Unix time when the target's last successful collection ended.",
            |t| t.health.last_success.map(unix_seconds),
        ),
        (
            "fast_launch_exporter_images",
            "Images in the data now served for the target.",
            |t| Some(t.images.as_ref().map_or(0, |i| i.len()) as f64),
        ),
    ];
    let settings: [(&str, &str, f64); 2] = [
        (
            "fast_launch_exporter_collection_interval_seconds",
            "The target's collection.interval, in seconds (for alerts relative to it).",
            snapshot.interval.as_secs_f64(),
        ),
        (
            "fast_launch_exporter_max_staleness_seconds",
            "The target's collection.max_staleness, in seconds: its image series are dropped when its last success is older.",
            snapshot.max_staleness.as_secs_f64(),
        ),
    ];
    for (name, help, value) in gauges {
        x.family(name, "gauge", help);
        for target in targets {
            if let Some(v) = value(target) {
                let [(a, account), (r, region)] = labels(target);
                x.sample(name, &[(a, &account), (r, &region)], v);
            }
        }
    }

    for (name, help, value) in settings {
        x.family(name, "gauge", help);
        for target in targets {
            let [(a, account), (r, region)] = labels(target);
            x.sample(name, &[(a, &account), (r, &region)], value);
        }
    }

    const CLOUDWATCH: &str = "fast_launch_exporter_cloudwatch_success";
    let cloudwatch: Vec<(&TargetView, bool)> = targets
        .iter()
        .filter_map(|t| Some((*t, t.cloudwatch.as_ref()?.last_ok?)))
        .collect();
    if !cloudwatch.is_empty() {
        x.family(
            CLOUDWATCH,
            "gauge",
            "1 if the target's last CloudWatch query (ListMetrics, GetMetricData) succeeded, else 0. Its failures never touch the fast launch data.",
        );
        for (target, ok) in cloudwatch {
            let [(a, account), (r, region)] = labels(target);
            x.sample(
                CLOUDWATCH,
                &[(a, &account), (r, &region)],
                if ok { 1.0 } else { 0.0 },
            );
        }
    }

    // Everything that calls AWS: the targets, and the event queue (under its own account id
    // and region).
    let mut callers: Vec<(String, String, Vec<Api>, &ApiCounters)> = targets
        .iter()
        .map(|t| {
            let identity_api = if t.assumes_role {
                Api::AssumeRole
            } else {
                Api::GetCallerIdentity
            };
            let [(_, account), (_, region)] = labels(t);
            let mut apis = vec![Api::DescribeFastLaunchImages, identity_api];
            if t.cloudwatch.is_some() {
                apis.extend([Api::ListMetrics, Api::GetMetricData]);
            }
            (account, region, apis, t.counters.as_ref())
        })
        .collect();
    if let Some(events) = &snapshot.events {
        let mut apis = vec![Api::ReceiveMessage, Api::DeleteMessageBatch];
        if snapshot.shard.is_sharded() {
            apis.push(Api::ChangeMessageVisibilityBatch);
        }
        callers.push((
            events.account_id.clone(),
            events.region.clone(),
            apis,
            events.counters.as_ref(),
        ));
    }

    let discovery = &snapshot.discovery;
    if let Some((account, region, counters)) = &discovery.organization_caller {
        let apis = vec![
            Api::ListAccounts,
            Api::ListAccountsForParent,
            Api::ListOrganizationalUnitsForParent,
            Api::ListTagsForResource,
        ];
        callers.push((account.clone(), region.clone(), apis, counters.as_ref()));
    }
    for (account, region, counters) in &discovery.region_callers {
        callers.push((
            account.clone(),
            region.clone(),
            vec![Api::DescribeRegions],
            counters.as_ref(),
        ));
    }

    // Callers in one account and region (a target, discovery's DescribeRegions, the queue,
    // Organizations) are one series set: their counts add up. A role assumed for the queue,
    // Organizations or DescribeRegions shows as AssumeRole once it was.
    let mut merged: Vec<(String, String, Vec<Api>, Vec<&ApiCounters>)> = Vec::new();
    let mut index_of: HashMap<(String, String), usize> = HashMap::new();
    let own = targets.len();
    for (index, (account, region, mut apis, counters)) in callers.into_iter().enumerate() {
        if index >= own && counters.requests(Api::AssumeRole) > 0 {
            apis.push(Api::AssumeRole);
        }
        match index_of.get(&(account.clone(), region.clone())) {
            Some(&i) => {
                let (_, _, kept_apis, kept_counters) = &mut merged[i];
                for api in apis {
                    if !kept_apis.contains(&api) {
                        kept_apis.push(api);
                    }
                }
                kept_counters.push(counters);
            }
            None => {
                index_of.insert((account.clone(), region.clone()), merged.len());
                merged.push((account, region, apis, vec![counters]));
            }
        }
    }
    let callers = merged;

    const REQUESTS: &str = "fast_launch_exporter_aws_requests_total";
    x.family(
        REQUESTS,
        "counter",
        "AWS API attempts sent for the target, retries included.",
    );
    let mut floor = crate::sync::lock(floor);
    let mut exported = std::collections::HashSet::new();
    for (account, region, apis, counters) in &callers {
        for api in apis {
            let series = (account.clone(), region.clone(), *api, "");
            let sum = counters.iter().map(|c| c.requests(*api)).sum::<u64>();
            let value = floor.value(series.clone(), sum);
            exported.insert(series);
            x.counter(
                REQUESTS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                ],
                value as f64,
                created_of(counters),
            );
        }
    }
    const ERRORS: &str = "fast_launch_exporter_aws_errors_total";
    x.family(
        ERRORS,
        "counter",
        "Failed AWS API attempts for the target, retried or not, by AWS error code (or timeout, connection, other).",
    );
    for (account, region, apis, counters) in &callers {
        let mut errors: BTreeMap<(Api, &'static str), u64> = BTreeMap::new();
        for ((api, code), count) in counters.iter().flat_map(|c| c.errors()) {
            *errors.entry((api, code)).or_default() += count;
        }
        for ((api, code), count) in errors {
            // Only the APIs the caller exports requests for (see `callers`).
            if !apis.contains(&api) {
                continue;
            }
            let series = (account.clone(), region.clone(), api, code);
            exported.insert(series.clone());
            x.counter(
                ERRORS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                    ("error_code", code),
                ],
                floor.value(series, count) as f64,
                created_of(counters),
            );
        }
    }
    floor.keep_only(&exported);
    drop(floor);

    if let Some(events) = &snapshot.events {
        render_events(x, events);
    }
    render_scale(x, targets.len(), snapshot);
}

/// Sharding and discovery.
fn render_scale(x: &mut Exposition, own_targets: usize, snapshot: &Snapshot) {
    let shard = snapshot.shard;
    let gauges: [(&str, &str, f64); 3] = [
        (
            "fast_launch_exporter_shard_index",
            "This replica's shard (--shard.index); 0 without sharding.",
            f64::from(shard.index),
        ),
        (
            "fast_launch_exporter_shards",
            "The number of shards the targets are split over (--shard.total); 1 without sharding.",
            f64::from(shard.total),
        ),
        (
            "fast_launch_exporter_targets",
            "Targets (account, region) this process owns and collects.",
            own_targets as f64,
        ),
    ];
    for (name, help, value) in gauges {
        x.family(name, "gauge", help);
        x.sample(name, &[], value);
    }
    let discovery = &snapshot.discovery;
    if !discovery.organizations {
        return;
    }
    let source = [("source", "organizations")];
    if let Some(ok) = discovery.last_ok {
        const SUCCESS: &str = "fast_launch_exporter_discovery_success";
        x.family(
            SUCCESS,
            "gauge",
            "1 if the last account discovery succeeded, else 0 (the last good set of accounts stays).",
        );
        x.sample(SUCCESS, &source, if ok { 1.0 } else { 0.0 });
    }
    const LAST: &str = "fast_launch_exporter_discovery_last_success_timestamp_seconds";
    x.family(
        LAST,
        "gauge",
        "Unix time of the last successful account discovery; 0 before the first.",
    );
    x.sample(
        LAST,
        &source,
        discovery.last_success.map_or(0.0, unix_seconds),
    );
    const ACCOUNTS: &str = "fast_launch_exporter_discovered_accounts";
    x.family(
        ACCOUNTS,
        "gauge",
        "Accounts in the discovered set used now (ACTIVE, not excluded, with the tags asked for).",
    );
    x.sample(ACCOUNTS, &source, discovery.accounts as f64);
}

/// The event receiver's families.
fn render_events(x: &mut Exposition, events: &EventStats) {
    const RECEIVED: &str = "fast_launch_exporter_events_received_total";
    x.family(
        RECEIVED,
        "counter",
        "Fast launch events received from the queue, by how they were handled: applied (a target collected now), ignored (another detail-type or a target not collected here) or malformed.",
    );
    for result in EventResult::ALL {
        x.counter(
            RECEIVED,
            &[("result", result.as_str())],
            events.received(result) as f64,
            unix_seconds(events.created()),
        );
    }
    const SUCCESS: &str = "fast_launch_exporter_events_receive_success";
    x.family(
        SUCCESS,
        "gauge",
        "1 if the last ReceiveMessage on the event queue succeeded, else 0.",
    );
    if let Some(ok) = events.receive_success() {
        x.sample(SUCCESS, &[], if ok { 1.0 } else { 0.0 });
    }
    const LAG: &str = "fast_launch_exporter_event_lag_seconds";
    x.family(
        LAG,
        "gauge",
        "Seconds from the last applied event's time to the end of the collection it caused.",
    );
    if let Some(lag) = events.last_lag() {
        x.sample(LAG, &[], lag.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller of a shared series leaving does not make the series go down; the series going
    /// away forgets it.
    #[test]
    fn shared_call_counters_never_go_down() {
        let mut floor = CounterFloor::default();
        let series: CallSeries = ("1".into(), "us-east-1".into(), Api::AssumeRole, "");
        // A target (4) and DescribeRegions (6) in one account and region.
        assert_eq!(floor.value(series.clone(), 10), 10);
        // DescribeRegions goes: the target alone has 4, and then 5.
        assert_eq!(floor.value(series.clone(), 4), 10);
        assert_eq!(floor.value(series.clone(), 5), 11);
        floor.keep_only(&std::collections::HashSet::new());
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
    fn snapshot(now: SystemTime) -> Snapshot {
        use crate::model::{CloudWatchSpec, LaunchMetric, MetricSeries};
        use crate::registry::{AccountView, CloudWatchView, Health, ReloadStatus};
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
            assumes_role: account != "base",
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
        watched.cloudwatch = Some(CloudWatchView {
            last_ok: Some(true),
            launches: Arc::new(launches),
        });
        let mut duplicate = target("dup", "111111111111", "us-east-1", Some(images(0, 4)));
        duplicate.duplicate_of = Some(watched.key.clone());
        Snapshot {
            accounts: vec![AccountView {
                key: "base".into(),
                account_id: Some("111111111111".into()),
                name: Some("prod".into()),
                labels: BTreeMap::new(),
            }],
            targets: vec![
                watched,
                target("base", "111111111111", "eu-west-1", Some(odd)),
                duplicate,
                target("base", "111111111111", "ap-south-1", None),
                target("base", "111111111111", "us-west-2", Some(images(200, 3))),
            ],
            static_label_names: Vec::new(),
            reload: ReloadStatus {
                successful: true,
                last_success: now,
            },
            interval: std::time::Duration::from_secs(300),
            max_staleness: std::time::Duration::from_secs(900),
            events: None,
            shard: Default::default(),
            discovery: Default::default(),
        }
    }

    fn gunzip(bytes: &[u8]) -> String {
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
            assert!(cut > 3, "{cut} cuts of fresh lines");
            let plain = crate::exposition::collect(parts.clone(), false);
            assert_eq!(String::from_utf8(plain).unwrap(), reference, "{format:?}");
            let gzipped = crate::exposition::collect(parts, true);
            assert_eq!(gunzip(&gzipped), reference, "{format:?} gzip");
        }

        // A second scrape, later: the same chunks, fresh ages.
        // Kept alive, so that a new chunk cannot take an old one's address.
        let first_parts = renderer.exposition_of(&snapshot, now, Format::Text);
        let first = chunk_pointers(&first_parts);
        let later = now + std::time::Duration::from_secs(61);
        let parts = renderer.exposition_of(&snapshot, later, Format::Text);
        assert_eq!(chunk_pointers(&parts), first);
        let text = String::from_utf8(crate::exposition::collect(parts, false)).unwrap();
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
        snapshot.targets[1].images = Some(Arc::new(changed));
        snapshot.targets.pop();
        let parts = renderer.exposition_of(&snapshot, later, Format::Text);
        let now_pointers = chunk_pointers(&parts);
        assert_eq!(now_pointers[0], first[0], "us-east-1's info chunk is kept");
        assert_ne!(now_pointers[1], first[1], "eu-west-1's info chunk is new");
        assert_eq!(crate::sync::lock(&renderer.cache).len(), 2);
        for gzip in [false, true] {
            let body = crate::exposition::collect(parts.clone(), gzip);
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
        let spec = crate::model::CloudWatchSpec {
            period: std::time::Duration::from_secs(300),
            lookback: std::time::Duration::from_secs(3600),
        };
        let ids: Vec<String> = snapshot.targets[0]
            .images
            .iter()
            .flat_map(|images| images.iter().map(|i| i.image_id.clone()))
            .collect();
        let cloudwatch = snapshot.targets[0].cloudwatch.as_mut().unwrap();
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
        let text = String::from_utf8(crate::exposition::collect(after, false)).unwrap();
        assert_eq!(
            text,
            renderer.render_snapshot_as(&snapshot, later, Format::OpenMetrics)
        );

        snapshot.targets[0].account_id = Some("999999999999".into());
        let moved = renderer.exposition_of(&snapshot, later, Format::Text);
        assert!(chunks_of(&moved, info).is_empty());
        assert_eq!(
            gunzip(&crate::exposition::collect(moved, true)),
            renderer.render_snapshot_as(&snapshot, later, Format::Text)
        );
        drop(before);
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
        let text = String::from_utf8(crate::exposition::collect(parts, false)).unwrap();
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        let reference = renderer.render_snapshot_as(&snapshot, now, Format::Text);
        assert_eq!(without_process(&text), without_process(&reference));
    }
}
