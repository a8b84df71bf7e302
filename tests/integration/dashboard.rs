//! The Grafana dashboard (deploy/grafana/fast-launch.json) at organisation scale: a real
//! Prometheus scrapes the organisation demo (60 accounts × 17 regions = 1,020 targets) and answers
//! every panel's query with data and a bounded number of series, errors and throttling at 0 for a
//! healthy target, and the template variables' queries; the JSON keeps the variables in every
//! query and the scrape labels out of every table.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::assets::Prometheus;
use crate::harness::*;

/// The most series a graph (time series, stat) may draw: its lines are per state, region, API or
/// quantile, never per target or image, so their number does not grow with the organisation.
const MAX_GRAPH_SERIES: usize = 50;

/// The most rows a table or bar gauge may list: top-N lists (at most 25) and one row per region
/// (17 in the demo).
const MAX_LIST_ROWS: usize = 25;

/// Labels of the scrape (Prometheus, the Prometheus Operator) and of the table format, which no
/// table shows.
const SCRAPE_LABELS: [&str; 9] = [
    "Time",
    "__name__",
    "instance",
    "job",
    "pod",
    "namespace",
    "service",
    "endpoint",
    "container",
];

/// Accounts of the organisation demo, each collected in every one of [`DEMO_REGIONS`] regions.
const DEMO_ACCOUNTS: usize = 60;
/// Regions of the organisation demo: all 17 that AWS enables by default.
const DEMO_REGIONS: usize = 17;

/// How the dashboard counts failing targets (1 - success, per target).
const FAILING_TARGETS: &str =
    "(1 - max by (aws_account_id, aws_region) (fast_launch_exporter_collection_success";

/// The dashboard as JSON.
pub(crate) fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/grafana/fast-launch.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One query of a panel (one of its `targets`).
pub(crate) struct PanelQuery {
    pub title: String,
    /// The panel type: `timeseries`, `stat`, `table`, `bargauge` …
    pub kind: String,
    pub ref_id: String,
    /// The PromQL as written, with Grafana's variables.
    pub expr: String,
    /// Evaluated at one time only (a table, a bar gauge, a stat of the latest value).
    pub instant: bool,
}

impl PanelQuery {
    /// The expression Grafana sends with these variable values (`.*` for "All", a regex such as
    /// `(a|b)` for several).
    pub fn with(&self, account: &str, region: &str, image: &str, rate_interval: &str) -> String {
        self.expr
            .replace("$account", account)
            .replace("$region", region)
            .replace("$image", image)
            .replace("$__rate_interval", rate_interval)
            .replace("$__range", "5m")
            .replace("$__interval", "2s")
    }

    /// The most series the query may answer with.
    fn bound(&self) -> usize {
        match self.kind.as_str() {
            "table" | "bargauge" => MAX_LIST_ROWS,
            _ => MAX_GRAPH_SERIES,
        }
    }

    /// Whether the query counts errors, throttling or failing targets, and so must show 0, not
    /// "No data", where all is healthy. Tables list problems and are empty then instead.
    fn counts_failures(&self) -> bool {
        self.kind != "table"
            && (self.expr.contains("fast_launch_exporter_aws_errors_total")
                || self.expr.contains(FAILING_TARGETS))
    }

    fn name(&self) -> String {
        format!("{:?} {}", self.title, self.ref_id)
    }
}

/// Every query of every panel, in the dashboard's order.
pub(crate) fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            queries.push(PanelQuery {
                title: panel["title"].as_str().unwrap().to_string(),
                kind: panel["type"].as_str().unwrap().to_string(),
                ref_id: target["refId"].as_str().unwrap().to_string(),
                expr: target["expr"].as_str().unwrap().to_string(),
                instant: target["instant"] == true,
            });
        }
    }
    queries
}

/// The selectors of the exporter's metrics in `expr`: (metric, what is between the braces).
fn selectors(expr: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["aws_ec2_fast_launch_", "fast_launch_exporter_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let metric = &tail[..end];
        let after = &tail[end..];
        let braces = after
            .strip_prefix('{')
            .and_then(|b| b.split_once('}'))
            .map_or("", |(inside, _)| inside);
        found.push((metric, braces));
        rest = &tail[end..];
    }
    found
}

#[test]
fn every_dashboard_query_filters_by_account_region_and_image() {
    let queries = panel_queries(&dashboard());
    assert!(queries.len() >= 30, "{} queries", queries.len());
    for query in &queries {
        let selectors = selectors(&query.expr);
        assert!(
            !selectors.is_empty(),
            "{} reads no exporter metric",
            query.name()
        );
        for (metric, inside) in selectors {
            // The account names, joined on the account id, are filtered by the other side.
            if metric == "fast_launch_exporter_account_info" {
                continue;
            }
            for filter in [r#"aws_account_id=~"$account""#, r#"aws_region=~"$region""#] {
                assert!(
                    inside.contains(filter),
                    "{}: {metric} is not filtered by {filter}: {}",
                    query.name(),
                    query.expr
                );
            }
            if metric.starts_with("aws_ec2_fast_launch_image_") {
                assert!(
                    inside.contains(r#"image_id=~"$image""#),
                    "{}: {metric} is not filtered by $image: {}",
                    query.name(),
                    query.expr
                );
            }
        }
    }
}

#[test]
fn dashboard_tables_are_instant_and_hide_the_scrape_labels() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "fast-launch-exporter");
    assert_eq!(dashboard["title"], "EC2 Windows fast launch");
    let tables: Vec<&Value> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "table")
        .collect();
    assert!(tables.len() >= 5, "{} tables", tables.len());
    for table in tables {
        let title = &table["title"];
        for target in table["targets"].as_array().unwrap() {
            assert_eq!(target["format"], "table", "{title}: {target}");
            assert_eq!(target["instant"], true, "{title}: {target}");
        }
        let organize = table["transformations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == "organize")
            .unwrap_or_else(|| panic!("{title} has no organize transformation"));
        for label in SCRAPE_LABELS {
            assert_eq!(
                organize["options"]["excludeByName"][label], true,
                "{title} shows {label}"
            );
        }
        // Every value column has a name.
        let renamed = organize["options"]["renameByName"].as_object().unwrap();
        for target in table["targets"].as_array().unwrap() {
            let column = if table["targets"].as_array().unwrap().len() == 1 {
                "Value".to_string()
            } else {
                format!("Value #{}", target["refId"].as_str().unwrap())
            };
            assert!(renamed.contains_key(&column), "{title}: {column} unnamed");
        }
    }
}

/// An instant query at Unix time `time`.
async fn query_at(prometheus: &Prometheus, promql: &str, time: f64) -> Value {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", promql)
        .append_pair("time", &format!("{time:.3}"))
        .finish();
    prometheus.api(&format!("/api/v1/query?{query}")).await
}

/// A range query over the `seconds` before `end`, one point per scrape interval.
async fn query_range(prometheus: &Prometheus, promql: &str, end: f64, seconds: f64) -> Value {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", promql)
        .append_pair("start", &format!("{:.3}", end - seconds))
        .append_pair("end", &format!("{end:.3}"))
        .append_pair("step", "2")
        .finish();
    prometheus
        .api(&format!("/api/v1/query_range?{query}"))
        .await
}

/// The series of a successful answer; panics on an error (a query that does not parse or
/// fails does not get better by waiting).
fn series<'a>(answer: &'a Value, what: &str) -> &'a [Value] {
    assert_eq!(answer["status"], "success", "{what}: {answer}");
    answer["data"]["result"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The time of the latest scrape that succeeded, once that scrape held every target and two
/// more before it did (rates over 30 s need two samples). A scrape of the debug build can
/// outlast the scrape timeout on a loaded machine; a failed scrape marks every series stale, so
/// queries are evaluated at a scrape that succeeded rather than at "now".
async fn last_full_scrape(prometheus: &Prometheus, targets: usize) -> Result<f64, String> {
    let answer = prometheus
        .query(r#"up{job="fast-launch-exporter"}[30s]"#)
        .await;
    let samples = answer["data"]["result"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let good: Vec<f64> = samples
        .iter()
        .filter(|s| s[1] == "1")
        .filter_map(|s| s[0].as_f64())
        .collect();
    let Some(&time) = good.last() else {
        return Err(format!("no successful scrape yet: {answer}"));
    };
    let count = query_at(
        prometheus,
        "count(fast_launch_exporter_collection_success)",
        time,
    )
    .await;
    let collected: usize = count["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if collected < targets || good.len() < 3 {
        return Err(format!(
            "{collected} of {targets} targets collected, {} good scrapes in 30 s",
            good.len()
        ));
    }
    Ok(time)
}

/// Checks the answer of `query` at `time`: Err(reason) when it has no data yet; panics when it
/// failed, holds more series than its bound, or shows an account id without its name.
async fn check_panel(prometheus: &Prometheus, query: &PanelQuery, time: f64) -> Result<(), String> {
    let promql = query.with(".*", ".*", ".*", "30s");
    let answer = query_at(prometheus, &promql, time).await;
    let result = series(&answer, &query.name());
    assert!(
        result.len() <= query.bound(),
        "{} answers with {} series, more than {}: {promql}",
        query.name(),
        result.len(),
        query.bound()
    );
    for one in result {
        let labels = &one["metric"];
        assert!(
            labels["aws_account_id"].is_null() || labels["account_name"].is_string(),
            "{} shows an account id without its name: {labels}",
            query.name()
        );
    }
    if !query.instant {
        // A graph over time: as few lines over a range as at one instant.
        let answer = query_range(prometheus, &promql, time, 20.0).await;
        let lines = series(&answer, &query.name()).len();
        assert!(
            lines <= query.bound(),
            "{} draws {lines} lines over 20 s, more than {}: {promql}",
            query.name(),
            query.bound()
        );
    }
    if result.is_empty() {
        return Err(format!("{} returned no data: {promql}", query.name()));
    }
    Ok(())
}

/// A target whose last collection succeeded and that never had an AWS error, at `time`:
/// (account id, region).
async fn healthy_target(prometheus: &Prometheus, time: f64) -> (String, String) {
    let answer = query_at(
        prometheus,
        "(max by (aws_account_id, aws_region) (fast_launch_exporter_collection_success) == 1) \
         unless on (aws_account_id, aws_region) fast_launch_exporter_aws_errors_total",
        time,
    )
    .await;
    let found = series(&answer, "healthy targets");
    let first = found
        .first()
        .unwrap_or_else(|| panic!("no healthy target: {answer}"));
    let label = |name: &str| first["metric"][name].as_str().unwrap().to_string();
    (label("aws_account_id"), label("aws_region"))
}

/// The text Grafana matches a `query_result` variable's regex against, one line per series:
/// `name{label="value",…} value timestamp` (labels in the order Prometheus gives them, sorted).
fn query_result_text(one: &Value) -> String {
    let labels = one["metric"].as_object().unwrap();
    let name = labels["__name__"].as_str().unwrap();
    let pairs: Vec<String> = labels
        .iter()
        .filter(|(key, _)| *key != "__name__")
        .map(|(key, value)| format!("{key}=\"{}\"", value.as_str().unwrap()))
        .collect();
    format!(
        "{name}{{{}}} {} {}",
        pairs.join(","),
        one["value"][1].as_str().unwrap(),
        one["value"][0]
    )
}

/// Runs the template variables' queries as Grafana does, with every variable at "All".
async fn check_variables(prometheus: &Prometheus, dashboard: &Value, time: f64) {
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "account", "region", "image"]);
    let definition = |name: &str| -> String {
        let variable = variables.iter().find(|v| v["name"] == name).unwrap();
        variable["definition"]
            .as_str()
            .unwrap()
            .replace("$account", ".*")
            .replace("$region", ".*")
    };

    // account: query_result(...) and a regex that takes the name as the text, the id as value.
    let account = variables.iter().find(|v| v["name"] == "account").unwrap();
    let promql = definition("account")
        .strip_prefix("query_result(")
        .and_then(|d| d.strip_suffix(')'))
        .expect("the account variable is a query_result")
        .to_string();
    let answer = query_at(prometheus, &promql, time).await;
    let pattern = account["regex"].as_str().unwrap();
    let pattern = pattern
        .strip_prefix('/')
        .and_then(|p| p.rsplit_once('/'))
        .map_or(pattern, |(inside, _flags)| inside);
    let regex = regex_lite::Regex::new(pattern).unwrap();
    let mut accounts = std::collections::BTreeMap::new();
    for one in series(&answer, "account variable") {
        let text = query_result_text(one);
        let captures = regex
            .captures(&text)
            .unwrap_or_else(|| panic!("the account regex misses {text}"));
        let value = captures.name("value").unwrap().as_str().to_string();
        let shown = captures
            .name("text")
            .map_or(value.clone(), |t| t.as_str().to_string());
        accounts.insert(value, shown);
    }
    assert_eq!(accounts.len(), DEMO_ACCOUNTS, "{accounts:?}");
    assert_eq!(accounts["111111111111"], "tooling", "{accounts:?}");
    assert!(
        accounts
            .iter()
            .all(|(id, name)| id.len() == 12 && name != id),
        "every demo account shows its name: {accounts:?}"
    );

    // region and image: label_values(selector, label), through the label values API.
    for (name, at_least) in [
        ("region", DEMO_REGIONS),
        ("image", DEMO_ACCOUNTS * DEMO_REGIONS),
    ] {
        let definition = definition(name);
        let (selector, label) = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .and_then(|d| d.rsplit_once(", "))
            .unwrap_or_else(|| panic!("{name} is not label_values(selector, label)"));
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("match[]", selector)
            .append_pair("start", &format!("{:.3}", time - 60.0))
            .append_pair("end", &format!("{time:.3}"))
            .finish();
        let answer = prometheus
            .api(&format!("/api/v1/label/{label}/values?{query}"))
            .await;
        assert_eq!(answer["status"], "success", "{name}: {answer}");
        let values = answer["data"].as_array().unwrap();
        assert!(
            values.len() >= at_least,
            "the {name} variable lists {} values, fewer than {at_least}",
            values.len()
        );
        if name == "region" {
            assert_eq!(values.len(), DEMO_REGIONS, "{answer}");
        }
    }
}

/// The organisation demo and a Prometheus scraping it every 2 s: 60 accounts discovered from the
/// simulated AWS Organizations, each in all 17 regions (1,020 targets), 2 images each; a share
/// of the targets failing now and then and the last region throttled, so that the error panels
/// have data.
async fn organisation_demo() -> (Exporter, Prometheus) {
    let accounts = DEMO_ACCOUNTS.to_string();
    let regions = DEMO_REGIONS.to_string();
    let exporter = Exporter::demo(&[
        "--demo.organization",
        "--demo.accounts",
        &accounts,
        "--demo.regions",
        &regions,
        "--demo.images",
        "2",
        "--demo.latency",
        "0s",
        // Collections of 1,020 targets every 10 s keep the exporter's share of the CPU small;
        // the counters still move within the 30 s windows.
        "--demo.interval",
        "10s",
        "--demo.faulty-targets",
        "0.05",
        "--demo.fault-rate",
        "0.5",
        "--demo.fault-kinds",
        "unauthorized,server-error,throttle",
        "--demo.throttle-rate",
        "0.3",
    ])
    .await;
    // Every 2 s: a debug build serves the 1,020 targets' ~40,000 series in 0.3-2 s on a loaded
    // machine, more than a 1 s scrape timeout allows.
    let prometheus = Prometheus::with_config(&format!(
        "global: {{scrape_interval: 2s, scrape_timeout: 2s}}\n\
         scrape_configs:\n  - job_name: fast-launch-exporter\n    static_configs: [{{targets: ['{}']}}]\n",
        exporter.address
    ))
    .await;
    (exporter, prometheus)
}

/// Waits until every query has answered with data at a scrape that held every target, and
/// returns the time of that scrape. Each query is retried, at the latest such scrape, until the
/// demo has what it shows (failures, throttling, CloudWatch counters); an error, too many series
/// or an account id without its name fail at once.
async fn wait_for_every_panel(
    prometheus: &Prometheus,
    exporter: &Exporter,
    queries: &[PanelQuery],
) -> f64 {
    let started = Instant::now();
    let mut waiting: Vec<&PanelQuery> = queries.iter().collect();
    loop {
        let mut reasons = Vec::new();
        match last_full_scrape(prometheus, DEMO_ACCOUNTS * DEMO_REGIONS).await {
            Ok(time) => {
                let mut still = Vec::new();
                for query in waiting {
                    if let Err(reason) = check_panel(prometheus, query, time).await {
                        reasons.push(reason);
                        still.push(query);
                    }
                }
                if still.is_empty() {
                    return time;
                }
                waiting = still;
            }
            Err(reason) => reasons.push(reason),
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "after {:?}: {}\n--- exporter logs (tail) ---\n{}",
            started.elapsed(),
            reasons.join("\n"),
            tail(&exporter.logs(), 30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The queries of errors, throttling and failing targets answer 0, not "No data", for a
/// healthy target at `time`.
async fn check_zero_when_healthy(prometheus: &Prometheus, queries: &[PanelQuery], time: f64) {
    let (account, region) = healthy_target(prometheus, time).await;
    let counting: Vec<&PanelQuery> = queries.iter().filter(|q| q.counts_failures()).collect();
    assert!(counting.len() >= 5, "{} error queries", counting.len());
    for query in counting {
        let promql = query.with(&account, &region, ".*", "30s");
        let answer = query_at(prometheus, &promql, time).await;
        let result = series(&answer, &query.name());
        assert!(
            !result.is_empty(),
            "{} shows no data for the healthy {account} {region}: {promql}",
            query.name()
        );
        for one in result {
            assert_eq!(
                one["value"][1],
                "0",
                "{} for the healthy {account} {region}: {promql}",
                query.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_answers_an_organisation_of_a_thousand_targets_with_few_series() {
    const TEST: &str =
        "every_dashboard_panel_answers_an_organisation_of_a_thousand_targets_with_few_series";
    if !tool_available("prometheus", &["--version"], TEST) {
        return;
    }
    let started = Instant::now();
    let (exporter, prometheus) = organisation_demo().await;
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);

    let time = wait_for_every_panel(&prometheus, &exporter, &queries).await;
    check_zero_when_healthy(&prometheus, &queries, time).await;
    // Several values of a variable, as Grafana writes them (a regex alternation), parse.
    for query in &queries {
        let promql = query.with(
            "(111111111111|222222222222)",
            "(us-east-1|eu-west-1)",
            "(ami-00000000000000000|ami-00000000000000001)",
            "30s",
        );
        series(&query_at(&prometheus, &promql, time).await, &query.name());
    }
    check_variables(&prometheus, &dashboard, time).await;
    eprintln!(
        "{TEST}: {} queries of {} panels checked in {:?}",
        queries.len(),
        dashboard["panels"].as_array().unwrap().len(),
        started.elapsed()
    );
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
