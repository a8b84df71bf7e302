//! `metrics.exclude` and `metrics.include` through the real server: excluded families are absent
//! from every kind of scrape (text, OpenMetrics, gzip), a reload (SIGHUP, `POST /-/reload`)
//! changes them, an invalid filter is refused and the running one stays; and the families the
//! configuration knows are exactly the families the demo serves.

use std::collections::BTreeSet;

use fast_launch_exporter::domain::families::FAMILIES;

use crate::harness::*;

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// The family names of `text` (its `# TYPE` lines).
fn families_of(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// `name` as the exposition in `format` names it (OpenMetrics drops a counter's `_total`).
fn as_exposed(name: &str, open_metrics: bool) -> &str {
    match open_metrics {
        true => name.strip_suffix("_total").unwrap_or(name),
        false => name,
    }
}

/// Scrapes `/metrics` plain and gzipped, in the text format and OpenMetrics, and checks that
/// none of `absent` is in any (no header, no sample) and every one of `present` has its header;
/// returns the text-format body.
async fn scrape_every_way(exporter: &Exporter, absent: &[&str], present: &[&str]) -> String {
    let mut text = String::new();
    for open_metrics in [false, true] {
        for gzip in [false, true] {
            let mut headers = vec![];
            if open_metrics {
                headers.push(("Accept", OPENMETRICS));
            }
            if gzip {
                headers.push(("Accept-Encoding", "gzip"));
            }
            let response = request(&exporter.address, "GET", "/metrics", &headers).await;
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-encoding") == Some("gzip"),
                gzip,
                "gzip {gzip}"
            );
            let body = response.decoded();
            let served = families_of(&body);
            let what = format!("OpenMetrics {open_metrics}, gzip {gzip}");
            for name in absent {
                let name = as_exposed(name, open_metrics);
                assert!(!served.contains(name), "{what}: {name} served");
                assert!(
                    !body.lines().any(|l| l.starts_with(name)),
                    "{what}: a sample of {name}"
                );
            }
            for name in present {
                let name = as_exposed(name, open_metrics);
                assert!(served.contains(name), "{what}: {name} missing");
            }
            assert_eq!(body.ends_with("# EOF\n"), open_metrics, "{what}");
            if !open_metrics && !gzip {
                text = body;
            }
        }
    }
    if let Some(complaints) = promtool_check_metrics(&text, "metrics_exclude") {
        assert!(complaints.trim().is_empty(), "promtool: {complaints}");
    }
    text
}

fn reload_successful(text: &str) -> Option<f64> {
    value(
        text,
        "fast_launch_exporter_config_last_reload_successful",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exclude_drops_families_and_a_reload_changes_them() {
    let sim = simulator().await;
    sim.world().set_images(
        BASE_ACCOUNT,
        "us-east-1",
        vec![image(1, "enabled"), image(2, "enabling-failed")],
    );
    let base = "collection: {interval: 1h}\nregions: [us-east-1]\n";
    let exporter = Exporter::start(
        &sim.url(),
        &format!(
            "{base}metrics:\n  exclude:\n    - aws_ec2_fast_launch_image_info\n    - 'aws_ec2_fast_launch_image_state_(reason_info|transition_timestamp_seconds)'\n    - 'fast_launch_exporter_aws_.*'\n    - process_cpu_seconds_total\n"
        ),
        &["--web.enable-lifecycle"],
    )
    .await;
    exporter
        .wait_for_metrics("us-east-1 collected", |t| {
            find(
                t,
                "aws_ec2_fast_launch_image_state",
                &[("state", "enabled")],
            )
            .len()
                == 2
        })
        .await;
    let excluded = [
        "aws_ec2_fast_launch_image_info",
        "aws_ec2_fast_launch_image_state_reason_info",
        "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
        "fast_launch_exporter_aws_requests_total",
        "fast_launch_exporter_aws_errors_total",
        "process_cpu_seconds_total",
    ];
    let text = scrape_every_way(
        &exporter,
        &excluded,
        &[
            "aws_ec2_fast_launch_image_state",
            "aws_ec2_fast_launch_image_state_age_seconds",
            "fast_launch_exporter_collection_success",
            "process_start_time_seconds",
        ],
    )
    .await;
    assert_eq!(success(&text, &[("aws_region", "us-east-1")]), Some(1.0));

    // SIGHUP with another filter: what was dropped is back, the ages go. The request counter
    // kept counting while it was not served.
    std::fs::write(
        exporter.config_path(),
        format!("{base}metrics:\n  exclude: [aws_ec2_fast_launch_image_state_age_seconds]\n"),
    )
    .unwrap();
    exporter.signal("HUP");
    let text = exporter
        .wait_for_metrics("the new filter", |t| {
            !t.contains("aws_ec2_fast_launch_image_state_age_seconds")
        })
        .await;
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 2);
    assert_eq!(
        find(&text, "aws_ec2_fast_launch_image_state_reason_info", &[]).len(),
        2
    );
    assert_eq!(describes(&text, "us-east-1"), 1.0);
    assert_eq!(reload_successful(&text), Some(1.0));
    scrape_every_way(
        &exporter,
        &["aws_ec2_fast_launch_image_state_age_seconds"],
        &excluded,
    )
    .await;

    // POST /-/reload with an allowlist, then an exclusion within it.
    std::fs::write(
        exporter.config_path(),
        format!(
            "{base}metrics:\n  include: ['aws_ec2_fast_launch_image_.*', fast_launch_exporter_config_last_reload_successful]\n  exclude: [aws_ec2_fast_launch_image_state_reason_info]\n"
        ),
    )
    .unwrap();
    let reload = |exporter: &Exporter| {
        let address = exporter.address.clone();
        async move { request(&address, "POST", "/-/reload", &[("Content-Length", "0")]).await }
    };
    let answer = reload(&exporter).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let text = scrape_every_way(
        &exporter,
        &[
            "aws_ec2_fast_launch_image_state_reason_info",
            "fast_launch_exporter_collection_success",
            "fast_launch_exporter_build_info",
            "fast_launch_exporter_aws_requests_total",
            "process_start_time_seconds",
        ],
        &[
            "aws_ec2_fast_launch_image_info",
            "aws_ec2_fast_launch_image_state_age_seconds",
            "fast_launch_exporter_config_last_reload_successful",
        ],
    )
    .await;
    let served: Vec<String> = families_of(&text).into_iter().collect();
    assert_eq!(served.len(), 7, "{served:?}");

    // An unknown family over HTTP, a bad pattern by SIGHUP: refused, the filter in force stays.
    std::fs::write(
        exporter.config_path(),
        format!("{base}metrics:\n  exclude: [aws_ec2_fast_launch_image_infos]\n"),
    )
    .unwrap();
    let refused = reload(&exporter).await;
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains(
            "metrics.exclude[0]: \"aws_ec2_fast_launch_image_infos\" is not a metric family this exporter serves; the families are: aws_ec2_fast_launch_image_info, "
        ),
        "{}",
        refused.text()
    );
    let text = exporter.metrics().await;
    assert_eq!(reload_successful(&text), Some(0.0));
    assert_eq!(families_of(&text).len(), 7);
    std::fs::write(
        exporter.config_path(),
        format!("{base}metrics:\n  exclude: ['aws_ec2_fast_launch_image_(']\n"),
    )
    .unwrap();
    exporter.signal("HUP");
    wait_until(
        "the refused SIGHUP logged",
        || {
            let logs = exporter.logs();
            logs.contains("configuration reload refused")
                && logs.contains("is not a valid regular expression")
        },
        || exporter.logs(),
    )
    .await;
    let text = exporter.metrics().await;
    assert_eq!(families_of(&text).len(), 7);
    assert!(!text.contains("aws_ec2_fast_launch_image_state_reason_info"));
}

/// `--once` prints without the excluded families too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_leaves_out_the_excluded_families() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let file = config_file(
        "regions: [us-east-1]\nmetrics: {exclude: ['aws_ec2_fast_launch_image_(info|state_reason_info)']}\n",
    );
    let mut command = exporter_command(&sim.url());
    command
        .arg("--once")
        .arg("--config.file")
        .arg(file.path())
        .stdout(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        !stdout.contains("aws_ec2_fast_launch_image_info"),
        "{stdout}"
    );
    assert!(!stdout.contains("aws_ec2_fast_launch_image_state_reason_info"));
    assert_eq!(
        find(&stdout, "aws_ec2_fast_launch_image_state", &[]).len(),
        6
    );
}

/// check-config names the excluded families and what they save, and refuses a bad entry.
#[test]
fn check_config_shows_what_metrics_exclude_leaves_served() {
    let file = config_file(
        "regions: [us-east-1]\ncloudwatch: {}\nmetrics:\n  exclude: [aws_ec2_fast_launch_image_info, aws_ec2_fast_launch_image_state_reason_info, 'fast_launch_exporter_aws_.*']\n",
    );
    let output = exporter_command("http://127.0.0.1:9")
        .arg("check-config")
        .arg("--config.file")
        .arg(file.path())
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "metrics: {} of {} families served; excluded: aws_ec2_fast_launch_image_info, aws_ec2_fast_launch_image_state_reason_info, fast_launch_exporter_aws_requests_total, fast_launch_exporter_aws_errors_total\n",
            FAMILIES.len() - 4,
            FAMILIES.len()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "with CloudWatch: 13 of 15 series per image (2 saved), 7 of 11 per target (4 saved), besides the AWS error counters\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("without CloudWatch"), "{stdout}");

    let file = config_file(
        "regions: [us-east-1]\nmetrics: {exclude: [fast_launch_exporter_aws_requests]}\n",
    );
    let output = exporter_command("http://127.0.0.1:9")
        .arg("check-config")
        .arg("--config.file")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metrics.exclude[0]: \"fast_launch_exporter_aws_requests\" is not a metric family this exporter serves (names are as in the text format: \"fast_launch_exporter_aws_requests_total\")"),
        "{stderr}"
    );
}

/// The one list of families the configuration checks names against is what the demo serves
/// with every feature on: CloudWatch, events, Organizations discovery, the process metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_families_metrics_exclude_knows_are_the_families_the_demo_serves() {
    let exporter = Exporter::demo(EVERY_FAMILY_DEMO).await;
    let known: BTreeSet<String> = FAMILIES.iter().map(|f| f.name.to_string()).collect();
    exporter
        .wait_for_metrics("every family", |t| families_of(t) == known)
        .await;
}
