//! The deploy assets, checked against the real tools: a real Prometheus scraping the demo with the
//! alert rules loaded and the dashboard's queries evaluated, promtool, kubectl kustomize.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::*;
use crate::iam::yaml;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn alert_rules() -> Vec<Value> {
    let alerts = yaml(&root().join("deploy/prometheus/alerts.yaml"));
    alerts["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    alert_rules()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_json_and_yaml_file_under_deploy_parses() {
    let files = files_under(&root().join("deploy"));
    let mut checked = 0;
    for file in files {
        // Helm templates are Go templates, not YAML: tests/integration/helm.rs renders them.
        if file
            .strip_prefix(root().join("deploy/helm"))
            .is_ok_and(|p| p.components().any(|c| c.as_os_str() == "templates"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        match file.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
            Some("yaml" | "yml") => {
                serde_yaml::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
            _ => continue,
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} files checked");
}

#[test]
fn prometheus_rule_carries_exactly_the_alerts_file() {
    let alerts = yaml(&root().join("deploy/prometheus/alerts.yaml"));
    let rule = yaml(&root().join("deploy/kubernetes/base/prometheusrule.yaml"));
    assert_eq!(rule["kind"], Value::from("PrometheusRule"));
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/kubernetes/base/prometheusrule.yaml differs from alerts.yaml"
    );
}

#[test]
fn every_alert_has_annotations_a_runbook_section_and_rule_tests() {
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let tests = std::fs::read_to_string(root().join("deploy/prometheus/alerts.test.yaml")).unwrap();
    let rules = alert_rules();
    assert!(rules.len() >= 7);
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{name} lacks {key}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let (page, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: {url} has no anchor"));
        assert!(page.ends_with("docs/runbook.md"), "{name}: {url}");
        assert!(
            headings.contains(anchor),
            "{name}: no section #{anchor} in docs/runbook.md"
        );
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} has no promtool test"
        );
    }
    for expected in [
        "FastLaunchImageFailed",
        "FastLaunchImageStuckInTransition",
        "FastLaunchNoPreProvisionedSnapshots",
        "FastLaunchCollectionFailing",
        "FastLaunchDataStale",
        "FastLaunchThrottled",
        "FastLaunchExporterDown",
        "FastLaunchConfigReloadFailed",
        "FastLaunchUnknownState",
        "FastLaunchImageDisappeared",
    ] {
        assert!(alert_names().contains(expected), "{expected}");
    }
    // Labels stay stable (free text only in annotations), and every alert about an account
    // carries its name.
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().unwrap();
        assert!(
            !expr.contains("group_left (reason)") && !expr.contains("reason)"),
            "{name}: reason in labels"
        );
        if expr.contains("aws_account_id") || expr.contains("fast_launch_exporter_collection") {
            assert!(
                expr.contains("group_left (account_name)"),
                "{name}: no account_name join"
            );
        }
    }
}

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_config_rules_and_rule_tests() {
    if !tool_available(
        "promtool",
        &["--version"],
        "promtool_accepts_config_rules_and_rule_tests",
    ) {
        return;
    }
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yaml"]);
    promtool(&["test", "rules", "alerts.test.yaml"]);
}

#[test]
fn kustomize_renders_a_hardened_deployment() {
    if !tool_available(
        "kubectl",
        &["version", "--client"],
        "kustomize_renders_a_hardened_deployment",
    ) {
        return;
    }
    let output = Command::new("kubectl")
        .args(["kustomize", "deploy/kubernetes"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], Value::from(1));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::from(true));
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        Value::from(true)
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        Value::from("/-/healthy")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        Value::from("/-/ready")
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["ports"][0]["containerPort"], Value::from(9849));
    let account = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
    // The ConfigMap's config is a valid exporter config.
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let config = config_map["data"]["config.yaml"].as_str().unwrap();
    fast_launch_exporter::config::Config::from_yaml(config).unwrap();
    let volume_name = pod["volumes"][0]["configMap"]["name"].as_str().unwrap();
    assert_eq!(
        volume_name,
        config_map["metadata"]["name"].as_str().unwrap()
    );
}

#[test]
fn dockerfile_builds_what_the_readme_runs_and_runs_as_non_root() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("EXPOSE 9849"));
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-bookworm AS build"));
    assert!(dockerfile.contains("FROM gcr.io/distroless/"));
    assert!(dockerfile.contains("cargo build --release --locked --bin fast-launch-exporter"));
    // The builder is pinned to the crate's rust-version.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "Dockerfile's RUST_VERSION differs from rust-version {rust_version}"
    );
    // Dependencies are cached across builds; the binary probes itself; OCI labels.
    assert!(
        dockerfile.contains("--mount=type=cache,id=fast-launch-exporter-target,target=/src/target")
    );
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/fast-launch-exporter", "healthcheck"]"#));
    for label in ["source", "version", "revision", "licenses"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    // The default command has no config file: base credentials in AWS_REGION.
    assert!(
        !dockerfile.lines().any(|l| l.starts_with("CMD ")),
        "no default CMD with a config file"
    );
    assert!(!dockerfile.contains("COPY config/example.yaml"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("/etc/fast-launch-exporter/config.yaml"),
        "README documents where to mount a config file"
    );
}

/// The PromQL of every dashboard panel, with Grafana's variables replaced for a direct query.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard = crate::dashboard::dashboard();
    let queries = crate::dashboard::panel_queries(&dashboard)
        .into_iter()
        // Grafana's "All" (allValue) for every variable, and $__rate_interval as 4 × the 15 s
        // scrape interval.
        .map(|q| (q.title.clone(), q.with(".*", ".*", ".*", "1m")))
        .collect();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "account", "region", "image"]);
    let account = &variables[1];
    assert!(
        account["regex"].as_str().unwrap().contains("account_name"),
        "the account variable shows names: {account}"
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert!(
                panel["fieldConfig"]["defaults"]["unit"].is_string(),
                "panel {} has no unit",
                panel["title"]
            );
        }
    }
    queries
}

/// A real Prometheus on a free port, with its data in a temporary folder. Killed when dropped.
pub(crate) struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(exporter_address: &str) -> Prometheus {
        let config = format!(
            "global: {{scrape_interval: 15s, evaluation_interval: 15s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: fast-launch-exporter\n    static_configs: [{{targets: ['{exporter_address}']}}]\n",
            root().join("deploy/prometheus/alerts.yaml").display()
        );
        Prometheus::with_config(&config).await
    }

    /// Starts Prometheus with `config` as its prometheus.yml and waits until it is ready.
    pub(crate) async fn with_config(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(stream) = tokio::net::TcpStream::connect(&prometheus.address).await {
                drop(stream);
                if request(&prometheus.address, "GET", "/-/ready", &[])
                    .await
                    .status
                    == 200
                {
                    break;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "prometheus never became ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    /// GET `path` of the HTTP API, as JSON.
    pub(crate) async fn api(&self, path: &str) -> serde_json::Value {
        let response = request(&self.address, "GET", path, &[]).await;
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", response.text()))
    }

    /// An instant query at the current time.
    pub(crate) async fn query(&self, promql: &str) -> serde_json::Value {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        self.api(&format!("/api/v1/query?{query}")).await
    }
}

/// Waits until `check` returns None (done) or the deadline passes; the last Some(reason) is reported.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            None => return,
            Some(reason) if started.elapsed() > limit => panic!("{what}: {reason}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_demo_loads_the_alerts_and_answers_every_dashboard_query() {
    if !tool_available(
        "prometheus",
        &["--version"],
        "real_prometheus_scrapes_the_demo",
    ) {
        return;
    }
    let exporter = Exporter::demo(&[
        "--demo.interval",
        "1s",
        "--demo.throttle-rate",
        "0.5",
        "--demo.churn",
        "0.2",
    ])
    .await;
    let prometheus = Prometheus::start(&exporter.address).await;
    // Prometheus scrapes every 15 s, as in production: rate windows need two scrapes.
    let limit = Duration::from_secs(120);

    eventually("target up", limit, || async {
        let result = prometheus.query("up{job=\"fast-launch-exporter\"}").await;
        (result["data"]["result"][0]["value"][1] != "1").then(|| result.to_string())
    })
    .await;

    let (account, region, image) = fast_launch_exporter::demo::pinned_failed_image();
    eventually("failed image state", limit, || async {
        let promql = format!(
            "aws_ec2_fast_launch_image_state{{aws_account_id=\"{account}\",aws_region=\"{region}\",image_id=\"{image}\",state=\"enabling-failed\"}}"
        );
        let result = prometheus.query(&promql).await;
        (result["data"]["result"][0]["value"][1] != "1").then(|| result.to_string())
    })
    .await;

    let expected_alerts = alert_names();
    eventually(
        "every rule loaded and healthy, failed-state alert pending or firing",
        limit,
        || async {
            let rules = prometheus.api("/api/v1/rules").await;
            let mut seen = BTreeSet::new();
            let no_rules = Vec::new();
            for group in rules["data"]["groups"].as_array().unwrap_or(&no_rules) {
                for rule in group["rules"].as_array().unwrap_or(&no_rules) {
                    let name = rule["name"].as_str().unwrap_or_default().to_string();
                    if rule["health"] != "ok" {
                        return Some(format!(
                            "{name} health {}: {}",
                            rule["health"], rule["lastError"]
                        ));
                    }
                    if name == "FastLaunchImageFailed" {
                        let alerts = rule["alerts"].as_array().unwrap_or(&no_rules);
                        // Stable labels (account_name joined, no reason); the reason in
                        // the description.
                        let named = alerts.iter().any(|a| {
                            a["labels"]["image_id"] == image.as_str()
                                && (a["state"] == "pending" || a["state"] == "firing")
                                && a["labels"]["account_name"] == "tooling"
                                && a["labels"]["reason"].is_null()
                                && a["annotations"]["description"].as_str().is_some_and(|d| {
                                    d.contains("Reason: ") && !d.contains("Reason: unknown")
                                })
                        });
                        if !named {
                            return Some(format!(
                                "FastLaunchImageFailed not pending for {image}: {alerts:?}"
                            ));
                        }
                    }
                    seen.insert(name);
                }
            }
            (seen != expected_alerts).then(|| format!("rules loaded: {seen:?}: {rules}"))
        },
    )
    .await;

    // The CloudWatch alerts, on the demo's starved image (enabled, snapshots used up, every
    // launch cold): SnapshotsLow pending (it needs 30 minutes to fire), ColdLaunches firing once
    // a counted minute made the counter grow (a minute's period is counted one minute after it
    // ended).
    let (_, _, starved) = fast_launch_exporter::demo::pinned_starved_image();
    eventually(
        "FastLaunchSnapshotsLow pending and FastLaunchColdLaunches firing for the starved image",
        Duration::from_secs(240),
        || async {
            let alerts = prometheus.api("/api/v1/alerts").await;
            let no_alerts = Vec::new();
            let list = alerts["data"]["alerts"].as_array().unwrap_or(&no_alerts);
            let has = |name: &str, states: &[&str]| {
                list.iter().any(|a| {
                    a["labels"]["alertname"] == name
                        && a["labels"]["image_id"] == starved.as_str()
                        && a["labels"]["account_name"] == "tooling"
                        && states.iter().any(|s| a["state"] == *s)
                })
            };
            let low = has("FastLaunchSnapshotsLow", &["pending", "firing"]);
            let cold = has("FastLaunchColdLaunches", &["firing"]);
            (!(low && cold)).then(|| format!("low {low}, cold {cold}: {alerts}"))
        },
    )
    .await;

    let queries = dashboard_queries();
    assert!(queries.len() >= 12, "{} dashboard queries", queries.len());
    for (title, promql) in queries {
        eventually(&format!("dashboard panel {title:?}"), limit, || async {
            let result = prometheus.query(&promql).await;
            if result["status"] != "success" {
                return Some(format!("{promql}: {result}"));
            }
            let empty = result["data"]["result"]
                .as_array()
                .is_none_or(Vec::is_empty);
            empty.then(|| format!("{promql} returned no data"))
        })
        .await;
    }
}

/// A proxy in front of `upstream` that records each response's content type and encoding, and
/// rewrites each request's `Accept` header to `accept` when given (a Prometheus too old for
/// `scrape_protocols` asks for OpenMetrics first).
async fn recording_proxy(
    upstream: String,
    accept: Option<&'static str>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let record = record.clone();
            tokio::spawn(async move {
                // One request per connection: ask the exporter to close after answering.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut rewritten = String::new();
                for line in head.split("\r\n").filter(|l| !l.is_empty()) {
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if (accept.is_none() || name != "accept") && name != "connection" {
                        rewritten.push_str(line);
                        rewritten.push_str("\r\n");
                    }
                }
                if let Some(accept) = accept {
                    rewritten.push_str(&format!("Accept: {accept}\r\n"));
                }
                rewritten.push_str("Connection: close\r\n\r\n");
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                server.write_all(rewritten.as_bytes()).await.unwrap();
                let mut response = Vec::new();
                server.read_to_end(&mut response).await.unwrap();
                let end = response
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(0);
                let headers = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                let value = |name: &str| {
                    headers
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                        .unwrap_or("")
                        .to_string()
                };
                record.lock().unwrap().push(format!(
                    "{} {}",
                    value("content-type"),
                    value("content-encoding")
                ));
                let _ = client.write_all(&response).await;
            });
        }
    });
    (address, seen)
}

/// A real Prometheus scrapes the exporter in OpenMetrics (its default) and, through a proxy
/// that asks for text 0.0.4, in the text format: both gzipped, both ingested to the same
/// series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_openmetrics_and_text_alike() {
    if !tool_available(
        "prometheus",
        &["--version"],
        "real_prometheus_scrapes_openmetrics_and_text_alike",
    ) {
        return;
    }
    let exporter = Exporter::demo(&[
        "--demo.interval",
        "1h",
        "--demo.churn",
        "0",
        "--demo.throttle-rate",
        "0",
    ])
    .await;
    exporter.wait_until_ready().await;
    // Prometheus's own Accept header through one, text 0.0.4 forced through the other.
    let (direct, seen_direct) = recording_proxy(exporter.address.clone(), None).await;
    let (proxy, seen) =
        recording_proxy(exporter.address.clone(), Some("text/plain;version=0.0.4")).await;
    let config = format!(
        "global: {{scrape_interval: 2s}}\n\
         scrape_configs:\n\
         \x20 - job_name: openmetrics\n    static_configs: [{{targets: ['{direct}']}}]\n\
         \x20 - job_name: text\n    static_configs: [{{targets: ['{proxy}']}}]\n"
    );
    let prometheus = Prometheus::with_config(&config).await;
    let value = |result: &serde_json::Value, job: &str| -> Option<String> {
        result["data"]["result"]
            .as_array()?
            .iter()
            .find(|r| r["metric"]["job"] == job)
            .and_then(|r| r["value"][1].as_str())
            .map(str::to_string)
    };
    for promql in [
        "up",
        "count by (job) (aws_ec2_fast_launch_image_state)",
        "count by (job) (fast_launch_exporter_aws_requests_total)",
        "sum by (job) (fast_launch_exporter_aws_requests_total)",
        "count by (job) (process_cpu_seconds_total)",
        "count by (job) ({__name__=~\"aws_ec2_fast_launch_image_(info|state|state_age_seconds|state_reason_info)\"})",
    ] {
        eventually(promql, Duration::from_secs(60), || async {
            let result = prometheus.query(promql).await;
            let (om, text) = (value(&result, "openmetrics"), value(&result, "text"));
            match (&om, &text) {
                (Some(a), Some(b)) if a == b && a != "0" => None,
                _ => Some(format!("openmetrics {om:?}, text {text:?}: {result}")),
            }
        })
        .await;
    }
    let up = prometheus.query("up").await;
    assert_eq!(value(&up, "text").as_deref(), Some("1"));
    for (seen, expected) in [
        (seen, "text/plain; version=0.0.4; charset=utf-8 gzip"),
        (
            seen_direct,
            "application/openmetrics-text; version=1.0.0; charset=utf-8 gzip",
        ),
    ] {
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|s| s == expected), "{seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_metrics_change_within_a_minute() {
    let exporter = Exporter::demo(&["--demo.interval", "2s"]).await;
    let current_states = |text: &str| -> BTreeSet<(String, String)> {
        find(text, "aws_ec2_fast_launch_image_state", &[])
            .into_iter()
            .filter(|s| s.value == 1.0)
            .map(|s| {
                let label =
                    |name: &str| s.labels.iter().find(|(k, _)| k == name).unwrap().1.clone();
                (label("image_id"), label("state"))
            })
            .collect()
    };
    let first = exporter
        .wait_for_metrics("demo images", |t| current_states(t).len() >= 30)
        .await;
    let first = current_states(&first);
    let started = Instant::now();
    loop {
        let now = current_states(&exporter.metrics().await);
        if now != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no state changed in a minute"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let logs = exporter.logs();
    assert!(logs.contains("demo: open these"), "{logs}");
}

#[test]
fn the_runbook_base_is_set_in_one_place_for_every_alert() {
    if !tool_available(
        "kubectl",
        &["version", "--client"],
        "the_runbook_base_is_set_in_one_place_for_every_alert",
    ) {
        return;
    }
    // A copy of the base with only the `runbook_base` line changed.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("deploy/kubernetes/base")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let kustomization = copy.path().join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("- runbook_base="))
        .expect("runbook_base in kustomization.yaml");
    let changed = text.replace(
        line,
        "      - runbook_base=https://wiki.example.com/fast-launch",
    );
    std::fs::write(&kustomization, changed).unwrap();
    let output = Command::new("kubectl")
        .args(["kustomize"])
        .arg(copy.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    let urls: Vec<&str> = rendered
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    assert_eq!(urls.len(), alert_names().len(), "{rendered}");
    for url in urls {
        assert!(
            url.starts_with("https://wiki.example.com/fast-launch#fastlaunch"),
            "{url}"
        );
    }
    assert!(
        !rendered.contains("fast-launch-exporter-runbook"),
        "the settings ConfigMap is local-config, not applied"
    );
}
