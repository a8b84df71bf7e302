//! The metric families the exporter can serve, by their name in the text format, with the
//! series each has per image or per target: the one list `metrics.include` and
//! `metrics.exclude` are checked against, and the [`MetricsFilter`] they make.
//!
//! The renderer (`expose`) writes the names itself; a unit test there proves this list is
//! exactly what it serves with every feature on, and an integration test that the demo serves it.

use std::collections::BTreeSet;

/// What a family has one series (or a few) for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every image of every served target.
    Image,
    /// Every served target (account, region).
    Target,
    /// Every account.
    Account,
    /// The process: a handful of series, whatever the number of targets.
    Process,
}

/// A family the exporter can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Its name as in the text format (a counter's ends with `_total`; OpenMetrics drops it).
    pub name: &'static str,
    /// What it has series for.
    pub scope: Scope,
    /// Series per image or target (per [`Scope`]) when the target does not read CloudWatch.
    pub series: u32,
    /// Series per image or target when the target reads CloudWatch.
    pub cloudwatch_series: u32,
}

impl Family {
    /// Series per image or target (see [`Family::scope`]), with or without CloudWatch.
    pub fn series(&self, cloudwatch: bool) -> u32 {
        if cloudwatch {
            self.cloudwatch_series
        } else {
            self.series
        }
    }
}

/// A family with as many series with CloudWatch as without.
const fn family(name: &'static str, scope: Scope, series: u32) -> Family {
    Family {
        name,
        scope,
        series,
        cloudwatch_series: series,
    }
}

/// A family only a target that reads CloudWatch has.
const fn cloudwatch_family(name: &'static str, scope: Scope) -> Family {
    Family {
        name,
        scope,
        series: 0,
        cloudwatch_series: 1,
    }
}

/// The series of `aws_ec2_fast_launch_image_state`: one per state the API documents.
const STATES: u32 = 6;

/// Every family the exporter can serve, in the order it writes them. Some are served only with
/// a feature on: the CloudWatch families with `cloudwatch`, the event families with `events`,
/// the discovery families with `discovery.organizations`, `process_*` on Linux and not with
/// `--once`.
pub const FAMILIES: [Family; 39] = [
    family("aws_ec2_fast_launch_image_info", Scope::Image, 1),
    family("aws_ec2_fast_launch_image_state", Scope::Image, STATES),
    family(
        "aws_ec2_fast_launch_image_target_resources",
        Scope::Image,
        1,
    ),
    family(
        "aws_ec2_fast_launch_image_max_parallel_launches",
        Scope::Image,
        1,
    ),
    family(
        "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
        Scope::Image,
        1,
    ),
    family(
        "aws_ec2_fast_launch_image_state_age_seconds",
        Scope::Image,
        1,
    ),
    cloudwatch_family(
        "aws_ec2_fast_launch_image_available_snapshots",
        Scope::Image,
    ),
    cloudwatch_family(
        "aws_ec2_fast_launch_image_fast_launches_total",
        Scope::Image,
    ),
    cloudwatch_family(
        "aws_ec2_fast_launch_image_cold_launches_total",
        Scope::Image,
    ),
    family(
        "aws_ec2_fast_launch_image_state_reason_info",
        Scope::Image,
        1,
    ),
    family("fast_launch_exporter_account_info", Scope::Account, 1),
    family("fast_launch_exporter_collection_success", Scope::Target, 1),
    family(
        "fast_launch_exporter_collection_duration_seconds",
        Scope::Target,
        1,
    ),
    family(
        "fast_launch_exporter_last_success_timestamp_seconds",
        Scope::Target,
        1,
    ),
    family("fast_launch_exporter_images", Scope::Target, 1),
    family(
        "fast_launch_exporter_collection_interval_seconds",
        Scope::Target,
        1,
    ),
    family(
        "fast_launch_exporter_max_staleness_seconds",
        Scope::Target,
        1,
    ),
    cloudwatch_family("fast_launch_exporter_cloudwatch_success", Scope::Target),
    // DescribeFastLaunchImages and AssumeRole (or GetCallerIdentity); with CloudWatch also
    // ListMetrics and GetMetricData.
    Family {
        name: "fast_launch_exporter_aws_requests_total",
        scope: Scope::Target,
        series: 2,
        cloudwatch_series: 4,
    },
    // One per API and error code that failed: none while every call succeeds.
    family("fast_launch_exporter_aws_errors_total", Scope::Target, 0),
    family(
        "fast_launch_exporter_events_received_total",
        Scope::Process,
        3,
    ),
    family(
        "fast_launch_exporter_events_receive_success",
        Scope::Process,
        1,
    ),
    family("fast_launch_exporter_event_lag_seconds", Scope::Process, 1),
    family("fast_launch_exporter_shard_index", Scope::Process, 1),
    family("fast_launch_exporter_shards", Scope::Process, 1),
    family("fast_launch_exporter_targets", Scope::Process, 1),
    family("fast_launch_exporter_discovery_success", Scope::Process, 1),
    family(
        "fast_launch_exporter_discovery_last_success_timestamp_seconds",
        Scope::Process,
        1,
    ),
    family(
        "fast_launch_exporter_discovered_accounts",
        Scope::Process,
        1,
    ),
    family("fast_launch_exporter_build_info", Scope::Process, 1),
    family(
        "fast_launch_exporter_config_last_reload_successful",
        Scope::Process,
        1,
    ),
    family(
        "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
        Scope::Process,
        1,
    ),
    // The prometheus crate's process collector, gathered in the order of their names.
    family("process_cpu_seconds_total", Scope::Process, 1),
    family("process_max_fds", Scope::Process, 1),
    family("process_open_fds", Scope::Process, 1),
    family("process_resident_memory_bytes", Scope::Process, 1),
    family("process_start_time_seconds", Scope::Process, 1),
    family("process_threads", Scope::Process, 1),
    family("process_virtual_memory_bytes", Scope::Process, 1),
];

/// The family named `name` (as in the text format).
pub fn find_family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Which families are served: every one but those excluded (`metrics.include` and
/// `metrics.exclude`, resolved against [`FAMILIES`] when the configuration is read). The
/// default serves everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsFilter {
    /// Names from [`FAMILIES`].
    excluded: BTreeSet<&'static str>,
}

impl MetricsFilter {
    /// Serves every family but the `excluded` ones.
    pub fn excluding(excluded: impl IntoIterator<Item = &'static Family>) -> MetricsFilter {
        MetricsFilter {
            excluded: excluded.into_iter().map(|f| f.name).collect(),
        }
    }

    /// Whether the family `name` (as in the text format) is served. A name not in
    /// [`FAMILIES`] is.
    pub fn serves(&self, name: &str) -> bool {
        !self.excluded.contains(name)
    }

    /// Whether every family is served.
    pub fn serves_all(&self) -> bool {
        self.excluded.is_empty()
    }

    /// The excluded families, in the order they are served.
    pub fn excluded(&self) -> impl Iterator<Item = &'static Family> + '_ {
        FAMILIES.iter().filter(|f| !self.serves(f.name))
    }

    /// Series per image or per target (`scope`): (served, without the filter).
    pub fn series(&self, scope: Scope, cloudwatch: bool) -> (u32, u32) {
        FAMILIES
            .iter()
            .filter(|f| f.scope == scope)
            .fold((0, 0), |(served, all), f| {
                let n = f.series(cloudwatch);
                (served + if self.serves(f.name) { n } else { 0 }, all + n)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_unique_and_valid_metric_names() {
        let names: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FAMILIES.len());
        for name in names {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(
            find_family("aws_ec2_fast_launch_image_state").map(|f| f.series(false)),
            Some(6)
        );
        assert!(find_family("aws_ec2_fast_launch_image").is_none());
    }

    /// Series per image: 12 (info, 6 states, target resources, max parallel launches,
    /// transition time, age, reason), 15 with CloudWatch; per target 8 (six gauges, two
    /// request counters), 11 with CloudWatch (its success, two more request counters).
    #[test]
    fn series_per_image_and_per_target_are_counted_from_the_families() {
        let all = MetricsFilter::default();
        assert!(all.serves_all());
        assert_eq!(all.series(Scope::Image, false), (12, 12));
        assert_eq!(all.series(Scope::Image, true), (15, 15));
        assert_eq!(all.series(Scope::Target, false), (8, 8));
        assert_eq!(all.series(Scope::Target, true), (11, 11));

        let names = [
            "aws_ec2_fast_launch_image_state_reason_info",
            "aws_ec2_fast_launch_image_info",
            "fast_launch_exporter_aws_requests_total",
        ];
        let filter = MetricsFilter::excluding(names.map(|n| find_family(n).unwrap()));
        assert!(!filter.serves("aws_ec2_fast_launch_image_info"));
        assert!(filter.serves("aws_ec2_fast_launch_image_state"));
        assert!(filter.serves("not_a_family_we_know"));
        // In the order they are served.
        let excluded: Vec<&str> = filter.excluded().map(|f| f.name).collect();
        assert_eq!(excluded, [names[1], names[0], names[2]]);
        assert_eq!(filter.series(Scope::Image, true), (13, 15));
        assert_eq!(filter.series(Scope::Target, false), (6, 8));
        assert_eq!(filter.series(Scope::Target, true), (7, 11));
    }
}
