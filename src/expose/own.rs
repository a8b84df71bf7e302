//! The exporter's own families: sharding and discovery, the event receiver, the build, the
//! last reload and the `process_*` metrics.

use super::writer::{unix_seconds, Exposition, Kind};
use super::{REVISION, VERSION};
use crate::domain::shard::Shard;
use crate::domain::stats::{DiscoveryState, EventResult, EventStats};
use crate::targets::ReloadStatus;

/// Sharding and discovery.
pub(super) fn render_scale(
    x: &mut Exposition,
    own_targets: usize,
    shard: Shard,
    discovery: &DiscoveryState,
) {
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
        x.family(name, Kind::Gauge, help);
        x.sample(name, &[], value);
    }
    if !discovery.organizations {
        return;
    }
    let source = [("source", "organizations")];
    if let Some(ok) = discovery.last_ok {
        const SUCCESS: &str = "fast_launch_exporter_discovery_success";
        x.family(
            SUCCESS,
            Kind::Gauge,
            "1 if the last account discovery succeeded, else 0 (the last good set of accounts stays).",
        );
        x.sample(SUCCESS, &source, if ok { 1.0 } else { 0.0 });
    }
    const LAST: &str = "fast_launch_exporter_discovery_last_success_timestamp_seconds";
    x.family(
        LAST,
        Kind::Gauge,
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
        Kind::Gauge,
        "Accounts in the discovered set used now (ACTIVE, not excluded, with the tags asked for).",
    );
    x.sample(ACCOUNTS, &source, discovery.accounts as f64);
}

/// The event receiver's families.
pub(super) fn render_events(x: &mut Exposition, events: &EventStats) {
    const RECEIVED: &str = "fast_launch_exporter_events_received_total";
    x.family(
        RECEIVED,
        Kind::Counter,
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
        Kind::Gauge,
        "1 if the last ReceiveMessage on the event queue succeeded, else 0.",
    );
    if let Some(ok) = events.receive_success() {
        x.sample(SUCCESS, &[], if ok { 1.0 } else { 0.0 });
    }
    const LAG: &str = "fast_launch_exporter_event_lag_seconds";
    x.family(
        LAG,
        Kind::Gauge,
        "Seconds from the last applied event's time to the end of the collection it caused.",
    );
    if let Some(lag) = events.last_lag() {
        x.sample(LAG, &[], lag.as_secs_f64());
    }
}

/// `build_info` and the last reload.
pub(super) fn render_build_and_reload(x: &mut Exposition, reload: ReloadStatus) {
    x.family(
        "fast_launch_exporter_build_info",
        Kind::Gauge,
        "Version and git revision of the fast-launch-exporter binary; value is always 1.",
    );
    x.sample(
        "fast_launch_exporter_build_info",
        &[("version", VERSION), ("revision", REVISION)],
        1.0,
    );
    x.family(
        "fast_launch_exporter_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last configuration reload succeeded, else 0.",
    );
    x.sample(
        "fast_launch_exporter_config_last_reload_successful",
        &[],
        if reload.successful { 1.0 } else { 0.0 },
    );
    x.family(
        "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last successful configuration load (start-up or reload).",
    );
    x.sample(
        "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
        &[],
        unix_seconds(reload.last_success),
    );
}

/// The `process_*` families of `process` (gauges and the CPU counter, whose `_created` is the
/// process start).
pub(super) fn render_process(x: &mut Exposition, process: &prometheus::Registry) {
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
    use prometheus::proto::MetricType;
    let started = families
        .iter()
        .find(|f| f.name() == "process_start_time_seconds")
        .and_then(|f| f.get_metric().first())
        .map_or(0.0, |m| m.get_gauge().get_value());
    for family in &families {
        let kind = match family.get_field_type() {
            MetricType::COUNTER => Kind::Counter,
            MetricType::GAUGE => Kind::Gauge,
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
            if kind == Kind::Counter {
                let value = metric.get_counter().get_value();
                x.counter(family.name(), &labels, value, started);
            } else {
                x.sample(family.name(), &labels, metric.get_gauge().get_value());
            }
        }
    }
}

/// User and system CPU time of this process in seconds, to the microsecond (`getrusage`): one
/// system call, where reading `/proc/self/stat` again (the process collector just did, for the
/// other families) costs an open, a read and a close per scrape.
fn process_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage writes the struct passed, nothing else; all-zero is a valid rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_SELF is always valid.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
