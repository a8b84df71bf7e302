//! Renders the exposition from the store on each scrape. A scrape only reads memory; metrics are
//! made fresh every time (Prometheus "Writing exporters": create new metrics each time), so images
//! and targets that are gone simply are not rendered.

use std::time::SystemTime;

use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::aws::Api;
use crate::model::FastLaunchState;
use crate::store::{Store, TargetView};

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Longest `reason` label value, in characters.
pub const MAX_REASON_CHARS: usize = 256;

const IMAGE_LABELS: [&str; 3] = ["aws_account_id", "aws_region", "image_id"];
const TARGET_LABELS: [&str; 2] = ["aws_account_id", "aws_region"];
const CACHED: &str =
    "Cached from the last successful DescribeFastLaunchImages collection, not read at scrape time.";

/// The version and git revision this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision, set by build.rs (`unknown` outside a git checkout).
pub const REVISION: &str = env!("FLE_GIT_REVISION");

/// Renders `/metrics`.
pub struct MetricsRenderer {
    /// Metrics that live as long as the process: build info and `process_*`.
    process: Registry,
}

impl Default for MetricsRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRenderer {
    /// A renderer with the process collector and build info registered.
    pub fn new() -> MetricsRenderer {
        let renderer = MetricsRenderer::without_process();
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            renderer
                .process
                .register(Box::new(collector))
                .expect("process collector registers once");
        }
        renderer
    }

    /// A renderer with build info but no `process_*` metrics.
    pub fn without_process() -> MetricsRenderer {
        let process = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "fast_launch_exporter_build_info",
                "Version and git revision of the fast-launch-exporter binary; value is always 1.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        register(&process, &build_info);
        MetricsRenderer { process }
    }

    /// The exposition text for the store as of `now`.
    pub fn render(&self, store: &Store, now: SystemTime) -> String {
        let registry = Registry::new();
        let (accounts, targets) = store.snapshot(now);

        let static_label_names = store.static_label_names();
        let mut account_labels: Vec<String> = vec!["aws_account_id".into(), "account_name".into()];
        account_labels.extend(static_label_names.iter().cloned());
        let account_label_refs: Vec<&str> = account_labels.iter().map(String::as_str).collect();
        let account_info = gauge_vec(
            &registry,
            "fast_launch_exporter_account_info",
            "Configured AWS accounts with their name and static labels; value is always 1.",
            &account_label_refs,
        );
        for account in &accounts {
            let mut values: Vec<&str> = vec![
                account.account_id.as_deref().unwrap_or(""),
                account.name.as_deref().unwrap_or(""),
            ];
            values.extend(
                static_label_names
                    .iter()
                    .map(|n| account.labels.get(n).map(String::as_str).unwrap_or("")),
            );
            account_info.with_label_values(&values).set(1.0);
        }

        let reload = store.reload_status();
        gauge(
            &registry,
            "fast_launch_exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded, else 0.",
            if reload.successful { 1.0 } else { 0.0 },
        );
        gauge(
            &registry,
            "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or reload).",
            unix_seconds(reload.last_success),
        );

        let images = ImageMetrics::new(&registry);
        let target_metrics = TargetMetrics::new(&registry);
        for target in &targets {
            target_metrics.observe(target);
            if let Some(list) = &target.images {
                let account_id = target.account_id.as_deref().unwrap_or("");
                for image in list.iter() {
                    images.observe(account_id, &target.key.region, image, now);
                }
            }
        }

        let mut families = registry.gather();
        families.extend(self.process.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("text exposition is UTF-8")
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: &C) {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
}

fn gauge(registry: &Registry, name: &str, help: &str, value: f64) {
    let gauge = prometheus::Gauge::with_opts(Opts::new(name, help)).expect("valid metric");
    gauge.set(value);
    register(registry, &gauge);
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let gauge = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, &gauge);
    gauge
}

struct ImageMetrics {
    info: GaugeVec,
    state: GaugeVec,
    target_resources: GaugeVec,
    max_parallel_launches: GaugeVec,
    transition_timestamp: GaugeVec,
    state_age: GaugeVec,
    reason_info: GaugeVec,
}

impl ImageMetrics {
    fn new(registry: &Registry) -> ImageMetrics {
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            IMAGE_LABELS.iter().chain(extra.iter()).copied().collect()
        };
        ImageMetrics {
            info: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_info",
                &format!("Fast launch configuration of an image; value is always 1. {CACHED}"),
                &with(&["owner_id", "resource_type", "launch_template_id", "launch_template_name", "launch_template_version"]),
            ),
            state: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_state",
                &format!("Fast launch state of an image: 1 for the current state, 0 for the others. {CACHED}"),
                &with(&["state"]),
            ),
            target_resources: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_target_resources",
                &format!("Pre-provisioned snapshots fast launch keeps for the image (SnapshotConfiguration.TargetResourceCount). {CACHED}"),
                &IMAGE_LABELS,
            ),
            max_parallel_launches: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_max_parallel_launches",
                &format!("Maximum parallel instances launched to pre-provision snapshots (MaxParallelLaunches). {CACHED}"),
                &IMAGE_LABELS,
            ),
            transition_timestamp: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
                &format!("Unix time of the image's last fast launch state transition (StateTransitionTime). {CACHED}"),
                &IMAGE_LABELS,
            ),
            state_age: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_state_age_seconds",
                &format!("Seconds since the image's last fast launch state transition, computed at scrape time from the cached StateTransitionTime. {CACHED}"),
                &IMAGE_LABELS,
            ),
            reason_info: gauge_vec(
                registry,
                "aws_ec2_fast_launch_image_state_reason_info",
                &format!("Reason for the image's last state transition (StateTransitionReason, at most 256 characters); value is always 1. {CACHED}"),
                &with(&["state", "reason"]),
            ),
        }
    }

    fn observe(
        &self,
        account_id: &str,
        region: &str,
        image: &crate::model::FastLaunchImage,
        now: SystemTime,
    ) {
        let ids = [account_id, region, image.image_id.as_str()];
        let labels = |extra: &[&str]| -> Vec<String> {
            ids.iter()
                .chain(extra.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let set = |gauge: &GaugeVec, extra: &[&str], value: f64| {
            let values = labels(extra);
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            gauge.with_label_values(&refs).set(value);
        };
        set(
            &self.info,
            &[
                &image.owner_id,
                &image.resource_type,
                &image.launch_template_id,
                &image.launch_template_name,
                &image.launch_template_version,
            ],
            1.0,
        );
        for state in FastLaunchState::ALL {
            let current = image.state.as_ref() == Some(&state);
            set(
                &self.state,
                &[state.as_str()],
                if current { 1.0 } else { 0.0 },
            );
        }
        if let Some(FastLaunchState::Unknown(raw)) = &image.state {
            set(&self.state, &[raw], 1.0);
        }
        if let Some(count) = image.target_resource_count {
            set(&self.target_resources, &[], f64::from(count));
        }
        if let Some(limit) = image.max_parallel_launches {
            set(&self.max_parallel_launches, &[], f64::from(limit));
        }
        if let Some(at) = image.state_transition_time {
            set(&self.transition_timestamp, &[], at);
            set(&self.state_age, &[], (unix_seconds(now) - at).max(0.0));
        }
        let state = image
            .state
            .as_ref()
            .map(FastLaunchState::as_str)
            .unwrap_or("");
        let reason: String = image
            .state_transition_reason
            .chars()
            .take(MAX_REASON_CHARS)
            .collect();
        set(&self.reason_info, &[state, &reason], 1.0);
    }
}

struct TargetMetrics {
    success: GaugeVec,
    duration: GaugeVec,
    last_success: GaugeVec,
    images: GaugeVec,
    requests: IntCounterVec,
    errors: IntCounterVec,
}

impl TargetMetrics {
    fn new(registry: &Registry) -> TargetMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(registry, &counter);
            counter
        };
        TargetMetrics {
            success: gauge_vec(
                registry,
                "fast_launch_exporter_collection_success",
                "1 if the last collection of the target (account, region) succeeded, else 0.",
                &TARGET_LABELS,
            ),
            duration: gauge_vec(
                registry,
                "fast_launch_exporter_collection_duration_seconds",
                "Duration of the target's last collection, in seconds.",
                &TARGET_LABELS,
            ),
            last_success: gauge_vec(
                registry,
                "fast_launch_exporter_last_success_timestamp_seconds",
                "Unix time when the target's last successful collection ended.",
                &TARGET_LABELS,
            ),
            images: gauge_vec(
                registry,
                "fast_launch_exporter_images",
                "Images in the data now served for the target.",
                &TARGET_LABELS,
            ),
            requests: counter(
                "fast_launch_exporter_aws_requests_total",
                "AWS API attempts sent for the target, retries included.",
                &["aws_account_id", "aws_region", "api"],
            ),
            errors: counter(
                "fast_launch_exporter_aws_errors_total",
                "Failed AWS API attempts for the target, retried or not, by AWS error code (or timeout, connection, other).",
                &["aws_account_id", "aws_region", "api", "error_code"],
            ),
        }
    }

    fn observe(&self, target: &TargetView) {
        let account_id = target.account_id.as_deref().unwrap_or("");
        let labels = [account_id, target.key.region.as_str()];
        if target.tried {
            self.success
                .with_label_values(&labels)
                .set(if target.last_ok { 1.0 } else { 0.0 });
        }
        if let Some(duration) = target.last_duration {
            self.duration
                .with_label_values(&labels)
                .set(duration.as_secs_f64());
        }
        if let Some(at) = target.last_success {
            self.last_success
                .with_label_values(&labels)
                .set(unix_seconds(at));
        }
        self.images
            .with_label_values(&labels)
            .set(target.images.as_ref().map_or(0, |i| i.len()) as f64);
        let identity_api = if target.assumes_role {
            Api::AssumeRole
        } else {
            Api::GetCallerIdentity
        };
        for api in [Api::DescribeFastLaunchImages, identity_api] {
            self.requests
                .with_label_values(&[labels[0], labels[1], api.as_str()])
                .inc_by(target.counters.requests(api));
        }
        for ((api, code), count) in target.counters.errors() {
            self.errors
                .with_label_values(&[labels[0], labels[1], api.as_str(), code])
                .inc_by(count);
        }
    }
}
