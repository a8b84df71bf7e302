//! The one-shot commands: `check-config`, `check-permissions`, `healthcheck`, and logging set-up.

pub mod healthcheck;
pub mod logging;
pub mod permissions;
pub mod table;

use std::sync::Arc;

use crate::aws::Base;
use crate::config::{duration, Config};
use crate::discover::Planner;
use crate::domain::families::{MetricsFilter, Scope, FAMILIES};
use crate::domain::model::TargetSpec;
use crate::domain::ports::Connect;
use crate::domain::shard::Shard;
use table::render_table;

/// The targets `check-config` lists: the configured ones, or, when discovery, `regions: all`
/// or a shard of a base account needs AWS to tell them, the plan's. A warning names what an
/// incomplete plan left out.
pub async fn resolved_targets(config: &Config, shard: Shard) -> Vec<TargetSpec> {
    let asks_aws = config.discovery.is_some()
        || config.accounts.iter().any(|a| a.all_regions)
        || shard.is_sharded();
    if !asks_aws {
        return config.target_specs();
    }
    let base = Base::from_environment().await;
    let home = base.region();
    let connect: Arc<dyn Connect> = Arc::new(base);
    let plan = Planner::new(connect, shard, home).plan(config).await;
    if let Some(why) = &plan.incomplete {
        eprintln!("fast-launch-exporter: warning: the list is incomplete: {why}");
    }
    plan.specs
}

/// Prints the resolved targets as a table, with the collection settings.
pub fn print_targets(config: &Config, shard: Shard, specs: &[TargetSpec]) {
    let rows: Vec<[String; 6]> = specs
        .iter()
        .map(|spec| {
            let role = spec.role.as_ref();
            let query = &spec.query;
            let filters = query
                .filters
                .iter()
                .map(|f| format!("{}={}", f.name, f.values.join(",")))
                .chain(
                    (!query.image_ids.is_empty())
                        .then(|| format!("image-ids={}", query.image_ids.join(","))),
                )
                .collect::<Vec<_>>()
                .join(" ");
            [
                match (role, &spec.account_name) {
                    (Some(r), Some(name)) => format!("{} ({name})", r.account_id),
                    (Some(r), None) => r.account_id.clone(),
                    (None, Some(name)) => format!("base credentials ({name})"),
                    (None, None) => "base credentials".to_string(),
                },
                spec.key.region.to_string(),
                role.map(|r| r.arn.clone())
                    .unwrap_or_else(|| "-".to_string()),
                if filters.is_empty() {
                    "-".to_string()
                } else {
                    filters
                },
                spec.cloudwatch.map_or_else(
                    || "off".to_string(),
                    |c| {
                        format!(
                            "period={},lookback={}",
                            duration::format(c.period),
                            duration::format(c.lookback)
                        )
                    },
                ),
                spec.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &[
                "ACCOUNT",
                "REGION",
                "ROLE",
                "FILTERS",
                "CLOUDWATCH",
                "LABELS"
            ],
            &rows
        )
    );
    let c = &config.collection;
    if shard.is_sharded() {
        println!("shard {shard}: only this shard's targets are listed");
    }
    println!(
        "{} target{}; interval {}, timeout {}, concurrency {}, page size {}, max staleness {}, max attempts {}",
        specs.len(),
        if specs.len() == 1 { "" } else { "s" },
        duration::format(c.interval),
        duration::format(c.timeout),
        c.concurrency,
        c.page_size,
        duration::format(c.max_staleness),
        c.max_attempts
    );
    println!("{}", events_summary(config));
    let cloudwatch: Vec<bool> = specs.iter().map(|s| s.cloudwatch.is_some()).collect();
    for line in metrics_summary(&config.metrics, &cloudwatch) {
        println!("{line}");
    }
}

/// The `events` line of `check-config`: the queue, whose credentials read it, and how.
pub fn events_summary(config: &Config) -> String {
    let Some(events) = &config.events else {
        return "events: off (targets are collected every interval only)".to_string();
    };
    let queue = &events.queue;
    let name = queue.url.rsplit('/').next().unwrap_or_default();
    let credentials = match &queue.role {
        Some(role) => format!("role {}", role.arn),
        None => "the base credentials".to_string(),
    };
    format!(
        "events: queue {name} in {} (account {}) read with {credentials}; wait time {}, up to {} \
         messages a receive, debounce {}",
        queue.region,
        queue.account_id,
        duration::format(events.wait_time),
        events.max_messages,
        duration::format(config.collection.event_debounce),
    )
}

/// What `metrics` leaves served, for targets that read CloudWatch or not (`cloudwatch`, one
/// per target): the families excluded, and the series per image and per target with and
/// without them.
pub fn metrics_summary(filter: &MetricsFilter, cloudwatch: &[bool]) -> Vec<String> {
    let excluded: Vec<&str> = filter.excluded().map(|f| f.name).collect();
    let mut lines = vec![if excluded.is_empty() {
        format!("metrics: all {} families served", FAMILIES.len())
    } else {
        format!(
            "metrics: {} of {} families served; excluded: {}",
            FAMILIES.len() - excluded.len(),
            FAMILIES.len(),
            excluded.join(", ")
        )
    }];
    let mut modes: Vec<bool> = Vec::new();
    for with in [false, true] {
        if (cloudwatch.is_empty() && !with) || cloudwatch.contains(&with) {
            modes.push(with);
        }
    }
    for with in modes {
        let count = |scope: Scope, per: &str| -> String {
            match filter.series(scope, with) {
                (served, all) if served == all => format!("{all} {per}"),
                (served, all) => format!("{served} of {all} {per} ({} saved)", all - served),
            }
        };
        lines.push(format!(
            "{} CloudWatch: {}, {}, besides the AWS error counters",
            if with { "with" } else { "without" },
            count(Scope::Image, "series per image"),
            count(Scope::Target, "per target"),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::families::find_family;

    #[test]
    fn the_metrics_summary_names_the_excluded_families_and_the_series_saved() {
        let all = MetricsFilter::default();
        assert_eq!(
            metrics_summary(&all, &[false, false]),
            [
                "metrics: all 39 families served",
                "without CloudWatch: 12 series per image, 8 per target, besides the AWS error counters"
            ]
        );
        let filter = MetricsFilter::excluding(
            [
                "aws_ec2_fast_launch_image_info",
                "aws_ec2_fast_launch_image_state_reason_info",
                "fast_launch_exporter_aws_requests_total",
            ]
            .map(|n| find_family(n).unwrap()),
        );
        assert_eq!(
            metrics_summary(&filter, &[true, false]),
            [
                "metrics: 36 of 39 families served; excluded: aws_ec2_fast_launch_image_info, aws_ec2_fast_launch_image_state_reason_info, fast_launch_exporter_aws_requests_total",
                "without CloudWatch: 10 of 12 series per image (2 saved), 6 of 8 per target (2 saved), besides the AWS error counters",
                "with CloudWatch: 13 of 15 series per image (2 saved), 7 of 11 per target (4 saved), besides the AWS error counters",
            ]
        );
        assert_eq!(metrics_summary(&filter, &[true]).len(), 2);
    }

    #[test]
    fn the_events_summary_names_the_queue_its_credentials_and_timings() {
        let off = Config::from_yaml("regions: [us-east-1]\n").unwrap();
        assert_eq!(
            events_summary(&off),
            "events: off (targets are collected every interval only)"
        );
        let base = Config::from_yaml(
            "regions: [us-east-1]\nevents:\n  queue_url: https://sqs.eu-west-1.amazonaws.com/999999999999/fast-launch-events\n",
        )
        .unwrap();
        assert_eq!(
            events_summary(&base),
            "events: queue fast-launch-events in eu-west-1 (account 999999999999) read with the \
             base credentials; wait time 20s, up to 10 messages a receive, debounce 2s"
        );
        let role = Config::from_yaml(
            "regions: [us-east-1]\nevents:\n  queue_url: https://sqs.us-east-1.amazonaws.com/999999999999/q\n  role_arn: arn:aws:iam::999999999999:role/Events\n  wait_time: 5s\n  max_messages: 3\n  debounce: 1m30s\n",
        )
        .unwrap();
        assert_eq!(
            events_summary(&role),
            "events: queue q in us-east-1 (account 999999999999) read with role \
             arn:aws:iam::999999999999:role/Events; wait time 5s, up to 3 messages a receive, \
             debounce 1m30s"
        );
    }
}
