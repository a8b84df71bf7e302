//! Renders the exposition from the store on each scrape. A scrape only reads memory; metrics are
//! made fresh every time (Prometheus "Writing exporters": create new metrics each time), so images
//! and targets that are gone simply are not rendered.
//!
//! The text format is written directly into one buffer: at 100,000 images (1.4 million samples)
//! building `prometheus` crate metric vectors per scrape cost seconds and hundreds of MiB (see
//! docs/performance.md), while writing the lines costs a fraction of that. The `prometheus` crate
//! still provides the `process_*` metrics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::SystemTime;

use crate::calls::{Api, ApiCounters};
use crate::events::{EventResult, EventStats};
use crate::launches::{ImageLaunches, Launches};
use crate::model::{FastLaunchImage, FastLaunchState};
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
    floor: std::sync::Mutex<CounterFloor>,
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

/// The text exposition being written. Families are written whole, one after another.
struct Exposition {
    out: String,
    format: Format,
}

impl Exposition {
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
        write_value(&mut self.out, value);
        self.out.push('\n');
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

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The three labels every per-image series starts with.
type ImageIds<'a> = [(&'static str, &'a str); 3];
/// Writes one image's samples of a family.
type ImageWriter<'w> = dyn FnMut(&mut Exposition, ImageIds<'_>, &FastLaunchImage) + 'w;
/// A per-image gauge: name, help, and its value for an image at a scrape time.
type ImageGauge = (
    &'static str,
    String,
    fn(&FastLaunchImage, f64) -> Option<f64>,
);
/// A per-image CloudWatch family: name, type, help, and its value for an image.
type LaunchFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ImageLaunches) -> Option<f64>,
);
/// A per-target gauge: name, help, and its value for a target.
type TargetGauge = (&'static str, &'static str, fn(&TargetView) -> Option<f64>);

/// One target's images with the labels they share.
struct ImageGroup<'a> {
    account_id: &'a str,
    region: &'a str,
    images: &'a [FastLaunchImage],
    /// The CloudWatch values, when the target reads CloudWatch.
    launches: Option<&'a Launches>,
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
        }
    }

    /// A renderer without `process_*` metrics (for `--once`).
    pub fn without_process() -> MetricsRenderer {
        MetricsRenderer {
            process: None,
            floor: Default::default(),
        }
    }

    /// The exposition text for the registry as of `now`.
    pub fn render(&self, registry: &Registry, now: SystemTime) -> String {
        self.render_snapshot(&registry.snapshot(now), now)
    }

    /// The exposition of the registry as of `now`, in `format`.
    pub fn render_as(&self, registry: &Registry, now: SystemTime, format: Format) -> String {
        self.render_snapshot_as(&registry.snapshot(now), now, format)
    }

    /// The exposition text of `snapshot`, taken at `now`. Targets that another target already
    /// serves (same account id and region) export nothing.
    pub fn render_snapshot(&self, snapshot: &Snapshot, now: SystemTime) -> String {
        self.render_snapshot_as(snapshot, now, Format::Text)
    }

    /// [`MetricsRenderer::render_snapshot`] in `format`.
    pub fn render_snapshot_as(
        &self,
        snapshot: &Snapshot,
        now: SystemTime,
        format: Format,
    ) -> String {
        let targets: Vec<&TargetView> = snapshot.targets.iter().filter(|t| t.is_served()).collect();
        let accounts = &snapshot.accounts;
        let image_count: usize = targets
            .iter()
            .map(|t| t.images.as_ref().map_or(0, |i| i.len()))
            .sum();
        let mut x = Exposition {
            // About 1.4 KB of text per image with every field set.
            out: String::with_capacity(4096 + image_count * 1500),
            format,
        };
        let groups: Vec<ImageGroup<'_>> = targets
            .iter()
            .filter_map(|t| {
                Some(ImageGroup {
                    account_id: t.account_id.as_deref().unwrap_or(""),
                    region: &t.key.region,
                    images: t.images.as_deref()?,
                    launches: t.cloudwatch.as_ref().map(|c| c.launches.as_ref()),
                })
            })
            .collect();
        render_images(&mut x, &groups, unix_seconds(now));

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
        x.out
    }
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

/// The per-image families, each written whole over every target's images.
fn render_images(x: &mut Exposition, groups: &[ImageGroup<'_>], now: f64) {
    let each = |x: &mut Exposition, f: &mut ImageWriter<'_>| {
        for group in groups {
            for image in group.images {
                let ids = [
                    ("aws_account_id", group.account_id),
                    ("aws_region", group.region),
                    ("image_id", image.image_id.as_str()),
                ];
                f(x, ids, image);
            }
        }
    };

    const INFO: &str = "aws_ec2_fast_launch_image_info";
    x.family(
        INFO,
        "gauge",
        &format!("Fast launch configuration of an image; value is always 1. {CACHED}"),
    );
    each(x, &mut |x, [a, r, i], image| {
        x.sample(
            INFO,
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
        )
    });

    const STATE: &str = "aws_ec2_fast_launch_image_state";
    x.family(
        STATE,
        "gauge",
        &format!(
            "Fast launch state of an image: 1 for the current state, 0 for the others. {CACHED}"
        ),
    );
    each(x, &mut |x, [a, r, i], image| {
        for state in &FastLaunchState::ALL {
            let current = image.state.as_ref() == Some(state);
            x.sample(
                STATE,
                &[a, r, i, ("state", state.as_str())],
                if current { 1.0 } else { 0.0 },
            );
        }
        if let Some(FastLaunchState::Unknown(raw)) = &image.state {
            x.sample(STATE, &[a, r, i, ("state", raw)], 1.0);
        }
    });

    let gauges: [ImageGauge; 4] = [
        (
            "aws_ec2_fast_launch_image_target_resources",
            format!("Pre-provisioned snapshots fast launch keeps for the image (SnapshotConfiguration.TargetResourceCount). {CACHED}"),
            |image, _| image.target_resource_count.map(f64::from),
        ),
        (
            "aws_ec2_fast_launch_image_max_parallel_launches",
            format!("Maximum parallel instances launched to pre-provision snapshots (MaxParallelLaunches). {CACHED}"),
            |image, _| image.max_parallel_launches.map(f64::from),
        ),
        (
            "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
            format!("Unix time of the image's last fast launch state transition (StateTransitionTime). {CACHED}"),
            |image, _| image.state_transition_time,
        ),
        (
            "aws_ec2_fast_launch_image_state_age_seconds",
            format!("Seconds since the image's last fast launch state transition, computed at scrape time from the cached StateTransitionTime. {CACHED}"),
            |image, now| image.state_transition_time.map(|at| (now - at).max(0.0)),
        ),
    ];
    for (name, help, value) in &gauges {
        x.family(name, "gauge", help);
        each(x, &mut |x, ids, image| {
            if let Some(v) = value(image, now) {
                x.sample(name, &ids, v);
            }
        });
    }

    render_launches(x, groups);

    const REASON: &str = "aws_ec2_fast_launch_image_state_reason_info";
    x.family(REASON, "gauge", &format!("Reason for the image's last state transition (StateTransitionReason, at most 256 characters); value is always 1. {CACHED}"));
    each(x, &mut |x, [a, r, i], image| {
        let state = image.state.as_ref().map_or("", FastLaunchState::as_str);
        let reason = &image.state_transition_reason;
        let reason = match reason.char_indices().nth(MAX_REASON_CHARS) {
            Some((cut, _)) => &reason[..cut],
            None => reason.as_str(),
        };
        x.sample(
            REASON,
            &[a, r, i, ("state", state), ("reason", reason)],
            1.0,
        );
    });
}

/// The per-image CloudWatch families, for the images CloudWatch has data for.
fn render_launches(x: &mut Exposition, groups: &[ImageGroup<'_>]) {
    if groups
        .iter()
        .all(|g| g.launches.is_none_or(Launches::is_empty))
    {
        return;
    }
    let families: [LaunchFamily; 3] = [
        (
            "aws_ec2_fast_launch_image_available_snapshots",
            "gauge",
            "Pre-provisioned snapshots available for the image: the latest CloudWatch NumberOfAvailableFastLaunchSnapshots (Minimum) within cloudwatch.lookback.",
            |l| l.available_snapshots,
        ),
        (
            "aws_ec2_fast_launch_image_fast_launches_total",
            "counter",
            "Instances launched from a pre-provisioned snapshot: CloudWatch NumberOfInstancesFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            |l| Some(l.fast_launches),
        ),
        (
            "aws_ec2_fast_launch_image_cold_launches_total",
            "counter",
            "Instances launched without a pre-provisioned snapshot (cold boots): CloudWatch NumberOfInstancesNotFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            |l| Some(l.cold_launches),
        ),
    ];
    for (name, kind, help, value) in families {
        x.family(name, kind, help);
        for group in groups {
            let Some(launches) = group.launches else {
                continue;
            };
            for image in group.images {
                let Some(counted) = launches.image(&image.image_id) else {
                    continue;
                };
                let Some(v) = value(counted) else {
                    continue;
                };
                let labels = [
                    ("aws_account_id", group.account_id),
                    ("aws_region", group.region),
                    ("image_id", image.image_id.as_str()),
                ];
                if kind == "counter" {
                    x.counter(name, &labels, v, counted.created as f64);
                } else {
                    x.sample(name, &labels, v);
                }
            }
        }
    }
}

/// The per-target families.
fn render_targets(
    x: &mut Exposition,
    targets: &[&TargetView],
    snapshot: &Snapshot,
    floor: &std::sync::Mutex<CounterFloor>,
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
}
