//! The per-target families: collection health, the collection settings alerts are relative to,
//! and whether CloudWatch answered.

use super::writer::{unix_seconds, Exposition, Kind};
use crate::targets::{Snapshot, TargetView};

/// A per-target gauge: name, help, and its value for a target.
type TargetGauge = (&'static str, &'static str, fn(&TargetView) -> Option<f64>);

/// The per-target families of the served `targets`.
pub(super) fn render_targets(x: &mut Exposition, targets: &[&TargetView], snapshot: &Snapshot) {
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
        x.family(name, Kind::Gauge, help);
        for target in targets {
            if let Some(v) = value(target) {
                let [(a, account), (r, region)] = labels(target);
                x.sample(name, &[(a, &account), (r, &region)], v);
            }
        }
    }

    for (name, help, value) in settings {
        x.family(name, Kind::Gauge, help);
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
            Kind::Gauge,
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
}
