//! The HTTP surface, the metric contract, promtool, flags, bad config files and shutdown.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use fast_launch_exporter::sim::Fault;

use crate::harness::*;

/// Every metric family of the contract (process_* aside).
const CONTRACT: [&str; 22] = [
    "aws_ec2_fast_launch_image_info",
    "aws_ec2_fast_launch_image_max_parallel_launches",
    "aws_ec2_fast_launch_image_state",
    "aws_ec2_fast_launch_image_state_age_seconds",
    "aws_ec2_fast_launch_image_state_reason_info",
    "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
    "aws_ec2_fast_launch_image_target_resources",
    "fast_launch_exporter_account_info",
    "fast_launch_exporter_aws_errors_total",
    "fast_launch_exporter_aws_requests_total",
    "fast_launch_exporter_build_info",
    "fast_launch_exporter_collection_duration_seconds",
    "fast_launch_exporter_collection_interval_seconds",
    "fast_launch_exporter_collection_success",
    "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
    "fast_launch_exporter_config_last_reload_successful",
    "fast_launch_exporter_images",
    "fast_launch_exporter_last_success_timestamp_seconds",
    "fast_launch_exporter_max_staleness_seconds",
    "fast_launch_exporter_shard_index",
    "fast_launch_exporter_shards",
    "fast_launch_exporter_targets",
];

/// A running exporter with two targets, one of which has been throttled once.
async fn busy_exporter() -> (fast_launch_exporter::sim::Simulator, Exporter) {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(
            BASE_ACCOUNT,
            "us-east-1",
            vec![image(1, "enabled"), image(2, "enabling-failed")],
        );
        world.set_images(
            ROLE_ACCOUNT,
            "us-east-1",
            vec![image(3, "disabling-failed")],
        );
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503)
                .in_account(ROLE_ACCOUNT)
                .times(1),
        );
    }
    let config = format!(
        "collection: {{interval: 1m}}\nregions: [us-east-1]\naccounts:\n  - name: base\n  - name: prod\n    role_arn: {ROLE_ARN}\n    labels: {{team: windows, env: prod}}\n"
    );
    let exporter = Exporter::start(&sim.url(), &config, &[]).await;
    exporter
        .wait_for_metrics("both targets", |t| {
            find(t, "fast_launch_exporter_collection_success", &[])
                .iter()
                .filter(|s| s.value == 1.0)
                .count()
                == 2
        })
        .await;
    (sim, exporter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exactly_the_contract_with_help_and_no_timestamps() {
    let (_sim, exporter) = busy_exporter().await;
    let response = exporter.get("/metrics").await;
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text();
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !name.starts_with("process_"))
        .collect();
    assert_eq!(families, CONTRACT.into_iter().collect::<BTreeSet<_>>());
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    // The settings alerts are relative to, per target: interval 1m, max_staleness 3 × interval.
    for (name, expected) in [
        ("fast_launch_exporter_collection_interval_seconds", 60.0),
        ("fast_launch_exporter_max_staleness_seconds", 180.0),
    ] {
        let found = find(&text, name, &[("aws_region", "us-east-1")]);
        assert_eq!(found.len(), 2, "{name}: one per target\n{text}");
        assert!(found.iter().all(|s| s.value == expected), "{found:?}");
    }
    for line in text
        .lines()
        .filter(|l| l.starts_with("# HELP aws_ec2_fast_launch_image_"))
    {
        assert!(
            line.contains("Cached"),
            "HELP says values are cached: {line}"
        );
    }
    // samples() also asserts that no sample carries a timestamp.
    for sample in samples(&text)
        .iter()
        .filter(|s| s.name.starts_with("aws_ec2_fast_launch_image_"))
    {
        let names: Vec<&str> = sample
            .labels
            .iter()
            .map(|(k, _)| k.as_str())
            .take(3)
            .collect();
        assert_eq!(
            names,
            ["aws_account_id", "aws_region", "image_id"],
            "{sample:?}"
        );
    }
    let build = find(
        &text,
        "fast_launch_exporter_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build.len(), 1);
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("error_code", "RequestLimitExceeded")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_account_info",
            &[
                ("account_name", "prod"),
                ("env", "prod"),
                ("team", "windows")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_passes() {
    let (_sim, exporter) = busy_exporter().await;
    let text = exporter.metrics().await;
    let Some(complaints) = promtool_check_metrics(&text, "promtool_check_metrics_passes") else {
        return;
    };
    assert!(
        complaints.trim().is_empty(),
        "promtool complained: {complaints}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer_as_documented() {
    let (_sim, exporter) = busy_exporter().await;
    let address = exporter.address.clone();

    let gzipped = request(
        &address,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip, deflate")],
    )
    .await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert!(gzipped
        .decoded()
        .contains("aws_ec2_fast_launch_image_state{"));

    // HEAD: a GET's headers, no body.
    let head = request(&address, "HEAD", "/metrics", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());

    let healthy = exporter.get("/-/healthy").await;
    assert_eq!(healthy.status, 200);
    let ready = exporter.get("/-/ready").await;
    assert_eq!(ready.status, 200);

    let landing = exporter.get("/").await;
    assert_eq!(landing.status, 200);
    assert!(landing
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let page = landing.text();
    assert!(page.contains("href=\"/metrics\""), "{page}");
    // The account by name and id, linked to the page filtered to it; the region likewise.
    assert!(
        page.contains(&format!(
            "<a href=\"?account={ROLE_ACCOUNT}\">prod</a> <span class=\"id\">{ROLE_ACCOUNT}</span>"
        )) && page.contains(">us-east-1</a>"),
        "{page}"
    );

    assert_eq!(exporter.get("/nope").await.status, 404);
    assert_eq!(exporter.get("/metrics/extra").await.status, 404);
    let post = request(&address, "POST", "/metrics", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        request(&address, "DELETE", "/-/healthy", &[]).await.status,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_until_every_target_was_tried() {
    let sim = simulator().await;
    sim.world()
        .add_fault(Fault::hang("DescribeFastLaunchImages").in_region("eu-west-1"));
    // eu-west-1 hangs until its timeout, long enough that the probes below come first.
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1m, timeout: 15s}\nregions: [us-east-1, eu-west-1]\n",
        &[],
    )
    .await;
    let success = |text: &str, region: &str| {
        value(
            text,
            "fast_launch_exporter_collection_success",
            &[("aws_region", region)],
        )
    };
    exporter
        .wait_for_metrics("us-east-1 collected", |t| {
            success(t, "us-east-1") == Some(1.0)
        })
        .await;
    assert_eq!(
        exporter.get("/-/ready").await.status,
        503,
        "eu-west-1 still hangs"
    );
    assert_eq!(
        success(&exporter.metrics().await, "eu-west-1"),
        None,
        "eu-west-1 was still untried when readiness said 503"
    );
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
    exporter.wait_until_ready().await;
    // Tried is what counts, not succeeded: the hang ended in its timeout.
    assert_eq!(success(&exporter.metrics().await, "eu-west-1"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_path_flag_moves_metrics() {
    let sim = simulator().await;
    let exporter = Exporter::start(
        &sim.url(),
        "regions: [us-east-1]\n",
        &[
            "--web.telemetry-path",
            "/fast-launch",
            "--log.format",
            "json",
        ],
    )
    .await;
    let response = exporter.get("/fast-launch").await;
    assert_eq!(response.status, 200);
    assert!(response.text().contains("fast_launch_exporter_build_info"));
    assert_eq!(exporter.get("/metrics").await.status, 404);
    let logs = exporter.logs();
    assert!(
        logs.lines().next().unwrap().starts_with('{'),
        "json logs: {logs}"
    );
}

/// Sends `signal` (`TERM`, `INT`) while a collection hangs in flight, and expects the exporter
/// to cancel it and exit 0, long before the collection's own 50 s timeout would end it.
async fn signal_stops_the_exporter_cleanly(signal: &str) {
    let sim = simulator().await;
    sim.world()
        .add_fault(Fault::hang("DescribeFastLaunchImages"));
    let mut exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1m, timeout: 50s}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    // The first collection starts after a jitter of up to a second: wait until its request
    // is at the simulator, hanging.
    wait_until(
        "the collection's request in flight",
        || !received(&sim, "DescribeFastLaunchImages", "us-east-1").is_empty(),
        || exporter.logs(),
    )
    .await;
    // DEADLINE (30 s) is below the collection's 50 s timeout: an exit within it is the
    // shutdown's doing.
    let status = exporter.stop_with(signal, DEADLINE).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {DEADLINE:?} after SIG{signal}: {}",
            exporter.logs()
        )
    });
    assert!(
        status.success(),
        "exit status {status}: {}",
        exporter.logs()
    );
    let logs = exporter.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("shutting down") && l.contains(&format!("signal=SIG{signal}"))),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_exporter_with_status_zero() {
    signal_stops_the_exporter_cleanly("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_exporter_with_status_zero_like_sigterm() {
    signal_stops_the_exporter_cleanly("INT").await;
}

/// Runs the exporter with a config file and returns (exit code, stderr).
fn run_with_config(yaml: Option<&str>, env_region: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = yaml.map(|yaml| {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    });
    let mut command = exporter_command("http://127.0.0.1:9");
    command.env_remove("AWS_REGION");
    if let Some(region) = env_region {
        command.env("AWS_REGION", region);
    }
    if let Some(file) = &file {
        command.arg("--config.file").arg(file);
    }
    command.args(["--web.listen-address", "127.0.0.1:0"]);
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = format!("still running after {DEADLINE:?}; its log:\n");
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr);
            return (None, stderr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_config_files_exit_2_naming_the_problem() {
    let cases = [
        ("accounts:\n  - role_arn: arn:aws:iam::111111111111:role/R\n  - role_arn: arn:aws:iam::222222222222:role/R\n    regions: [us-eest-1]\n", r#"accounts[1].regions[0]: "us-eest-1" is not a region name"#),
        ("collection:\n  interval: soon\n", r#"collection.interval: "soon" is not a duration"#),
        ("collection:\n  page_size: 201\nregions: [us-east-1]\n", r#"collection.page_size: "201" must be between 1 and 200"#),
        ("regions: [us-east-1]\ncolection: {}\n", "unknown field `colection`"),
        ("regions: [us-east-1]\nfilters: [{name: owner, values: [self]}]\n", r#"filters[0].name: "owner" is not a DescribeFastLaunchImages filter"#),
        ("regions: [us-east-1\n", "config.yaml: did not find expected ',' or ']' at line 2 column 1"),
    ];
    for (yaml, expected) in cases {
        let (code, stderr) = run_with_config(Some(yaml), Some("us-east-1"));
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{yaml}\nwant: {expected}\n got: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (code, stderr) = run_with_config(None, None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no region configured"), "{stderr}");
    let missing = exporter_command("http://127.0.0.1:9")
        .args(["--config.file", "/nonexistent/config.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("cannot read config file /nonexistent/config.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_config_file_uses_the_environment_region() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "eu-central-1", vec![image(1, "enabled")]);
    let mut command = exporter_command(&sim.url());
    command
        .env("AWS_REGION", "eu-central-1")
        .args(["--web.listen-address", "127.0.0.1:0"]);
    let exporter = Exporter::spawn(command, None).await;
    exporter
        .wait_for_metrics("eu-central-1 collected", |text| {
            value(
                text,
                "fast_launch_exporter_collection_success",
                &[
                    ("aws_region", "eu-central-1"),
                    ("aws_account_id", BASE_ACCOUNT),
                ],
            ) == Some(1.0)
        })
        .await;
}

#[test]
fn help_and_version_describe_the_flags() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config.file",
        "--web.listen-address",
        "--web.telemetry-path",
        "--log.level",
        "--log.format",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let bad = Command::new(BIN)
        .args(["--log.level", "loud"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Prometheus's default `Accept` gets OpenMetrics 1.0.0, valid for the `prometheus_client`
/// OpenMetrics parser (strict: families, `_total`/`_created`, escaping, `# EOF`); a plain scrape
/// gets text 0.0.4 as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_when_the_scraper_prefers_it() {
    const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let exporter = Exporter::demo(&["--demo.accounts", "2", "--demo.regions", "2"]).await;
    exporter.wait_until_ready().await;
    // Every counter family present: AWS calls with errors (the demo throttles), events,
    // CloudWatch launches.
    exporter
        .wait_for_metrics("launch counters", |t| {
            t.contains("aws_ec2_fast_launch_image_cold_launches_total{")
                && t.contains("fast_launch_exporter_aws_errors_total{")
        })
        .await;
    let response = request(&exporter.address, "GET", "/metrics", &[("Accept", ACCEPT)]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = response.text();
    assert!(
        text.ends_with("# EOF\n"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    for line in [
        "# TYPE fast_launch_exporter_aws_requests counter",
        "# TYPE aws_ec2_fast_launch_image_cold_launches counter",
        "# TYPE fast_launch_exporter_events_received counter",
        "# TYPE process_cpu_seconds counter",
    ] {
        assert!(text.contains(line), "{line}");
    }
    for created in [
        "fast_launch_exporter_aws_requests_created{",
        "aws_ec2_fast_launch_image_cold_launches_created{",
        "fast_launch_exporter_events_received_created{",
        "process_cpu_seconds_created ",
    ] {
        assert!(text.contains(created), "{created}");
    }
    if tool_available(
        "python3",
        &["-c", "import prometheus_client.openmetrics.parser"],
        "openmetrics_when_the_scraper_prefers_it",
    ) {
        let stdout = pipe(
            "python3",
            &[
                "-c",
                "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nprint(len(list(parse(sys.stdin.read()))))",
            ],
            text.as_bytes(),
            "the OpenMetrics parser refused the exposition",
        );
        let families: usize = String::from_utf8_lossy(&stdout).trim().parse().unwrap();
        assert!(families > 20, "{families} families");
    }
    // A plain scrape: text 0.0.4, counters as they were.
    let plain = exporter.get("/metrics").await;
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let plain = plain.text();
    assert!(!plain.contains("# EOF") && !plain.contains("_created"));
    assert!(plain.contains("# TYPE fast_launch_exporter_aws_requests_total counter"));
}

/// The exposition without the series valued at scrape time (ages, process).
fn without_scrape_time_series(text: &str) -> String {
    text.lines()
        .filter(|l| {
            !l.starts_with("aws_ec2_fast_launch_image_state_age_seconds{")
                && !l.starts_with("process_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Pipes `input` through `program args` and returns what it wrote; a failure is reported as
/// `refusal` with the program's stderr.
fn pipe(program: &str, args: &[&str], input: &[u8], refusal: &str) -> Vec<u8> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{refusal}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A gzip scrape is one valid gzip member stitched from cached chunks: Python's gzip (zlib)
/// and curl --compressed decode it to the plain exposition, in both formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_scrapes_decode_with_python_gzip_and_curl() {
    const TEST: &str = "gzip_scrapes_decode_with_python_gzip_and_curl";
    let exporter = Exporter::demo(&[
        "--demo.accounts",
        "2",
        "--demo.regions",
        "3",
        "--demo.images",
        "400",
        "--demo.churn",
        "0",
        "--demo.throttle-rate",
        "0",
        "--demo.interval",
        "1h",
    ])
    .await;
    exporter.wait_until_ready().await;
    // The CloudWatch counters too: the only cached lines that differ between the formats.
    exporter
        .wait_for_metrics("launch counters", |t| {
            t.contains("aws_ec2_fast_launch_image_cold_launches_total{")
        })
        .await;
    let python = tool_available("python3", &["--version"], TEST);
    let curl = tool_available("curl", &["--version"], TEST);
    let url = format!("http://{}/metrics", exporter.address);
    for accept in ["text/plain", "application/openmetrics-text;version=1.0.0"] {
        let plain = request(&exporter.address, "GET", "/metrics", &[("Accept", accept)]).await;
        assert_eq!(plain.header("content-encoding"), None);
        let plain = plain.text();
        assert!(plain.len() > 2_000_000, "{} bytes", plain.len());
        assert_eq!(
            plain.matches("aws_ec2_fast_launch_image_info{").count(),
            2400
        );
        let expected = without_scrape_time_series(&plain);
        if accept.starts_with("application/openmetrics-text") {
            assert!(expected.contains("aws_ec2_fast_launch_image_cold_launches_created{"));
        }

        let gzipped = request(
            &exporter.address,
            "GET",
            "/metrics",
            &[("Accept", accept), ("Accept-Encoding", "gzip")],
        )
        .await;
        assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
        assert!(gzipped.body.len() * 5 < plain.len(), "compressed");
        assert_eq!(without_scrape_time_series(&gzipped.decoded()), expected);
        if python {
            let script = "import gzip, sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))";
            let decoded = pipe(
                "python3",
                &["-c", script],
                &gzipped.body,
                "Python's gzip refused the body",
            );
            let decoded = String::from_utf8(decoded).unwrap();
            assert_eq!(without_scrape_time_series(&decoded), expected, "{accept}");
        }
        if curl {
            let decoded = pipe(
                "curl",
                &[
                    "-sS",
                    "--fail",
                    "--compressed",
                    "-H",
                    &format!("Accept: {accept}"),
                    &url,
                ],
                b"",
                "curl --compressed failed",
            );
            let decoded = String::from_utf8(decoded).unwrap();
            assert_eq!(without_scrape_time_series(&decoded), expected, "{accept}");
        }
    }
}
