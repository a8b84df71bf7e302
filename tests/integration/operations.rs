//! Operating it: reload, check-config, check-permissions, --once, and odd HTTP clients.

use std::process::Stdio;
use std::time::Duration;

use fast_launch_exporter::sim::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

const OTHER_ROLE_ACCOUNT: &str = "333333333333";
const OTHER_ROLE_ARN: &str = "arn:aws:iam::333333333333:role/FastLaunchReader";

fn describes(text: &str, region: &str) -> Option<f64> {
    value(
        text,
        "fast_launch_exporter_aws_requests_total",
        &[("aws_region", region), ("api", "DescribeFastLaunchImages")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_targets_keeps_the_others_and_refuses_bad_files() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
        world.set_images(BASE_ACCOUNT, "ap-south-1", vec![image(3, "enabling")]);
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1h}\nregions: [us-east-1, eu-west-1]\n",
        &["--web.enable-lifecycle"],
    )
    .await;
    exporter
        .wait_for_metrics("both targets", |t| {
            find(t, "aws_ec2_fast_launch_image_info", &[]).len() == 2
        })
        .await;

    // SIGHUP with a valid new file: eu-west-1 goes, ap-south-1 comes, us-east-1 stays untouched.
    std::fs::write(
        exporter.config_path(),
        "collection: {interval: 1h}\nregions: [us-east-1, ap-south-1]\n",
    )
    .unwrap();
    exporter.signal("HUP");
    let text = exporter
        .wait_for_metrics("ap-south-1 collected, eu-west-1 gone", |t| {
            // The request is counted when it is sent; the images land when it is answered.
            describes(t, "ap-south-1") == Some(1.0)
                && success(t, &[("aws_region", "ap-south-1")]) == Some(1.0)
                && describes(t, "eu-west-1").is_none()
        })
        .await;
    assert!(find(
        &text,
        "aws_ec2_fast_launch_image_info",
        &[("aws_region", "eu-west-1")]
    )
    .is_empty());
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("image_id", &image_id(3))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("image_id", &image_id(1))]
        ),
        Some(1.0)
    );
    assert_eq!(
        describes(&text, "us-east-1"),
        Some(1.0),
        "the target that stayed was not collected again"
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    let reloaded_at = value(
        &text,
        "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    // An invalid file is refused over HTTP; the running configuration keeps serving.
    std::fs::write(exporter.config_path(), "regions: [us-eest-1]\n").unwrap();
    let refused = request(
        &exporter.address,
        "POST",
        "/-/reload",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(refused.status, 500);
    assert!(
        refused
            .text()
            .contains(r#"regions[0]: "us-eest-1" is not a region name"#),
        "{}",
        refused.text()
    );
    let text = exporter.metrics().await;
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        Some(reloaded_at)
    );
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 2);
    exporter.wait_for_log("configuration reload refused").await;

    // A valid file again: accepted.
    std::fs::write(
        exporter.config_path(),
        "collection: {interval: 1h}\nregions: [us-east-1]\n",
    )
    .unwrap();
    let accepted = request(
        &exporter.address,
        "POST",
        "/-/reload",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let text = exporter.metrics().await;
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 1);
    assert_eq!(
        request(&exporter.address, "GET", "/-/reload", &[])
            .await
            .status,
        405
    );
}

/// Without `--web.enable-lifecycle` (the default, as Prometheus), `POST` and `PUT /-/reload`
/// answer 403 naming the flag and reload nothing; `SIGHUP` still reloads. With the flag, `POST`
/// reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_http_needs_the_lifecycle_flag_and_sighup_does_not() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
    }
    let one = "collection: {interval: 1h}\nregions: [us-east-1]\n";
    let two = "collection: {interval: 1h}\nregions: [us-east-1, eu-west-1]\n";
    let images = |t: &str| find(t, "aws_ec2_fast_launch_image_info", &[]).len();
    let exporter = Exporter::start(&sim.url(), one, &[]).await;
    exporter
        .wait_for_metrics("us-east-1 collected", |t| images(t) == 1)
        .await;
    std::fs::write(exporter.config_path(), two).unwrap();
    for method in ["POST", "PUT"] {
        let refused = request(
            &exporter.address,
            method,
            "/-/reload",
            &[("Content-Length", "0")],
        )
        .await;
        assert_eq!(refused.status, 403, "{method}: {}", refused.text());
        assert!(
            refused.text().starts_with("Lifecycle API is not enabled")
                && refused.text().contains("--web.enable-lifecycle"),
            "{method}: {}",
            refused.text()
        );
    }
    let text = exporter.metrics().await;
    assert_eq!(images(&text), 1, "a refused request reloaded nothing");
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0),
        "a refused request is no failed reload"
    );
    assert!(!exporter.logs().contains("configuration reloaded"));
    // GET is still the wrong method, whatever the flag.
    let get = request(&exporter.address, "GET", "/-/reload", &[]).await;
    assert_eq!(get.status, 405);

    exporter.signal("HUP");
    exporter
        .wait_for_metrics("eu-west-1 collected after SIGHUP", |t| images(t) == 2)
        .await;

    let enabled = Exporter::start(&sim.url(), one, &["--web.enable-lifecycle"]).await;
    enabled
        .wait_for_metrics("us-east-1 collected", |t| images(t) == 1)
        .await;
    std::fs::write(enabled.config_path(), two).unwrap();
    let accepted = request(
        &enabled.address,
        "POST",
        "/-/reload",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    enabled
        .wait_for_metrics("eu-west-1 collected after POST", |t| images(t) == 2)
        .await;
}

/// `PUT /-/reload` reloads as `POST` does (Prometheus takes both): a good file is applied and
/// answered 200, a bad one answered 500 with the problem; other methods get 405 naming the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_reload_is_accepted_like_post() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1h}\nregions: [us-east-1]\n",
        &["--web.enable-lifecycle"],
    )
    .await;
    exporter
        .wait_for_metrics("us-east-1 collected", |t| {
            success(t, &[("aws_region", "us-east-1")]) == Some(1.0)
        })
        .await;
    let put = |address: String| async move {
        request(&address, "PUT", "/-/reload", &[("Content-Length", "0")]).await
    };

    std::fs::write(
        exporter.config_path(),
        "collection: {interval: 1h}\nregions: [us-east-1, eu-west-1]\n",
    )
    .unwrap();
    let accepted = put(exporter.address.clone()).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(accepted.text(), "configuration reloaded\n");
    let text = exporter
        .wait_for_metrics("eu-west-1 added by the reload", |t| {
            success(t, &[("aws_region", "eu-west-1")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("image_id", &image_id(2))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );

    std::fs::write(exporter.config_path(), "regions: [us-eest-1]\n").unwrap();
    let refused = put(exporter.address.clone()).await;
    assert_eq!(refused.status, 500);
    assert!(
        refused
            .text()
            .contains(r#"regions[0]: "us-eest-1" is not a region name"#),
        "{}",
        refused.text()
    );
    let text = exporter.metrics().await;
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 2);

    for method in ["GET", "DELETE", "PATCH"] {
        let other = request(&exporter.address, method, "/-/reload", &[]).await;
        assert_eq!(other.status, 405, "{method}");
        assert_eq!(other.header("allow"), Some("POST, PUT"), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_target_leaves_a_ready_exporter_ready() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world()
        .add_fault(Fault::hang("DescribeFastLaunchImages").in_region("eu-west-1"));
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1h, timeout: 30s}\nregions: [us-east-1]\n",
        &["--web.enable-lifecycle"],
    )
    .await;
    exporter.wait_until_ready().await;
    std::fs::write(
        exporter.config_path(),
        "collection: {interval: 1h, timeout: 30s}\nregions: [us-east-1, eu-west-1]\n",
    )
    .unwrap();
    let reloaded = request(
        &exporter.address,
        "POST",
        "/-/reload",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    // eu-west-1 hangs for 30 s: it is not collected yet, and the exporter stays ready.
    for _ in 0..10 {
        assert_eq!(exporter.get("/-/ready").await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = exporter.get("/").await.text();
    assert!(
        page.contains("\">eu-west-1</a></td><td>not yet collected</td>"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_permissions_names_the_api_that_timed_out() {
    let sim = simulator().await;
    sim.world().add_fault(Fault::hang("AssumeRole"));
    let yaml = format!(
        "collection: {{timeout: 1s}}\nregions: [us-east-1]\naccounts:\n  - role_arn: {ROLE_ARN}\n"
    );
    let url = sim.url();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_command(&url, &["check-permissions"], Some(&yaml)))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("error")
            && stdout.contains("AssumeRole: timeout: no answer within collection.timeout (1s)"),
        "{stdout}"
    );
}

fn run_command(
    simulator_url: &str,
    args: &[&str],
    yaml: Option<&str>,
) -> (Option<i32>, String, String) {
    let file = yaml.map(config_file);
    let mut command = exporter_command(simulator_url);
    command.args(args).stdout(Stdio::piped());
    if let Some(file) = &file {
        command.arg("--config.file").arg(file.path());
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_resolved_targets_or_exits_2() {
    let yaml = format!(
        "regions: [us-east-1, eu-west-1]\nfilters: [{{name: state, values: [enabled]}}]\naccounts:\n  - name: tooling\n  - name: prod\n    role_arn: {ROLE_ARN}\n    regions: [us-west-2]\n    cloudwatch: {{period: 1m}}\n"
    );
    let (code, stdout, stderr) = run_command("http://127.0.0.1:9", &["check-config"], Some(&yaml));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ACCOUNT"), "{stdout}");
    assert!(
        lines[1].starts_with("base credentials (tooling)")
            && lines[1].contains("us-east-1")
            && lines[1].contains("state=enabled")
            && lines[1].contains("  off"),
        "{stdout}"
    );
    assert!(lines[2].contains("eu-west-1"), "{stdout}");
    assert!(
        lines[3].starts_with("222222222222 (prod)")
            && lines[3].contains("us-west-2")
            && lines[3].contains(ROLE_ARN)
            && lines[3].contains("period=1m,lookback=30m"),
        "{stdout}"
    );
    assert!(stdout.contains("3 targets; interval 5m"), "{stdout}");

    let (code, _, stderr) = run_command(
        "http://127.0.0.1:9",
        &["check-config"],
        Some("regions: [moon-1]\n"),
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(r#"regions[0]: "moon-1" is not a region name"#),
        "{stderr}"
    );

    // A well-formed region this build does not know: accepted, with a warning.
    let (code, stdout, stderr) = run_command(
        "http://127.0.0.1:9",
        &["check-config"],
        Some("regions: [xy-central-3]\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("xy-central-3"), "{stdout}");
    assert!(
        stderr.contains(r#"warning: regions[0]: "xy-central-3" is not a region this build knows"#),
        "{stderr}"
    );
}

/// A validation error names the file, the key, the value, what is wrong and the line and column
/// of the key, in one line on stderr (not a log line and a plain line); exit status 2.
#[test]
fn check_config_names_a_bad_duration_with_its_line_once() {
    for (yaml, place, problem, at) in [
        (
            "regions: [us-east-1]\ncollection:\n  timeout: 1m\n  interval: 5M\n",
            "collection.interval",
            r#""5M" is not a duration: "M" is not a unit; the units are ms, s, m, h, d, w and y"#,
            "at line 4 column 3",
        ),
        (
            "regions: [us-east-1]\ncollection: {interval: 100y}\n",
            "collection.interval",
            r#""100y" is too long: the range is 1s to 1d, because an interval of days"#,
            "at line 2 column 14",
        ),
        (
            "regions: [us-east-1]\naccounts:\n  - name: a\n  - role_arn: arn:aws:iam::222222222222:role/R\n    duration: 1w\n",
            "accounts[1].duration",
            r#""1w" is too long: the range is 15m to 12h, because AssumeRole sessions"#,
            "at line 5 column 5",
        ),
    ] {
        let file = config_file(yaml);
        let path = file.path().display().to_string();
        let output = exporter_command("http://127.0.0.1:9")
            .args(["check-config", "--config.file", &path])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(output.stdout.is_empty(), "{yaml}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{yaml}: printed once, got:\n{stderr}");
        let want = format!("fast-launch-exporter: {path}: {place}: {problem}");
        assert!(lines[0].starts_with(&want), "{yaml}\nwant: {want}\n got: {stderr}");
        assert!(lines[0].ends_with(at), "{yaml}\nwant: {at}\n got: {stderr}");
    }
}

/// The flags take the config file's durations and bounds: `--demo.interval 100000000000y` once
/// exported `collection_interval_seconds 3.2e18`.
#[test]
fn duration_flags_take_prometheus_durations_within_bounds() {
    for (flag, value, problem) in [
        (
            "--demo.interval",
            "100000000000y",
            "is not a duration: too long (more than 292 years)",
        ),
        (
            "--demo.interval",
            "5M",
            r#"is not a duration: "M" is not a unit"#,
        ),
        (
            "--demo.interval",
            "2d",
            "is too long: the range is 1s to 1d, because",
        ),
        (
            "--demo.interval",
            "0",
            "is too short: the range is 1s to 1d",
        ),
        (
            "--demo.interval",
            "1.5s",
            "is not a duration: fractions are not taken",
        ),
        (
            "--demo.latency",
            "2m",
            "is too long: the range is 0s to 1m, because",
        ),
        (
            "--demo.latency-jitter",
            "10us",
            r#"is not a duration: "us" is not a unit"#,
        ),
    ] {
        let output = exporter_command("http://127.0.0.1:9")
            .args(["demo", flag, value, "--web.listen-address", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        let want = format!("invalid value '{value}' for '{flag} <");
        assert!(stderr.contains(&want), "{flag} {value}: {stderr}");
        let want = format!("\"{value}\" {problem}");
        assert!(
            stderr.contains(&want),
            "{flag} {value}\nwant: {want}\n got: {stderr}"
        );
    }
}

/// `demo --help` lists the demo's own flags under a heading of their own, after the general
/// ones, and no --demo.* flag among the general ones.
#[test]
fn demo_help_lists_the_demo_flags_apart() {
    let output = exporter_command("http://127.0.0.1:9")
        .args(["demo", "--help"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    let (general, demo) = help
        .split_once("\nDemo options:\n")
        .unwrap_or_else(|| panic!("no Demo options heading:\n{help}"));
    assert!(!general.contains("--demo."), "{help}");
    assert!(general.contains("--web.listen-address"), "{help}");
    for flag in [
        "--demo.accounts",
        "--demo.interval",
        "--demo.latency",
        "--demo.cloudwatch",
    ] {
        assert!(demo.contains(flag), "{flag}:\n{help}");
    }
    assert!(
        !demo.contains("--web.") && !demo.contains("--log."),
        "{help}"
    );
}

/// Outside EC2 with no region anywhere, the SDK's region probe of the instance metadata fails;
/// what the user sees is the exporter's own one-line error, not the probe's three warnings of
/// ~1,500 characters (a `Debug` dump with HTTP headers). `--log.level=debug` still shows them.
#[test]
fn check_config_without_a_region_says_so_in_one_line_without_the_sdk_dump() {
    // A port nothing listens on: the probe is refused at once, and never leaves the machine.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let home = tempfile::tempdir().unwrap();
    let file = config_file("accounts:\n  - name: laptop\n");
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(BIN)
            .env_clear()
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
            .args(["check-config", "--config.file"])
            .arg(file.path())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{stderr}");
    assert!(
        lines[0].starts_with(
            "fast-launch-exporter: accounts[0].regions: no region configured and none found in \
             the AWS environment"
        ) && lines[0].contains("--log.level=debug"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("imds") && !stderr.contains("FailedToLoadToken"),
        "{stderr}"
    );

    // The probe did run and fail: at debug its warning is there.
    let (code, stderr) = run(&["--log.level", "debug"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("aws_config::imds::region")
            && stderr.contains("failed to load region from IMDS"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_permissions_tells_allowed_denied_and_assume_role_denied_apart() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.deny_role(ROLE_ARN);
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "UnauthorizedOperation", 403)
                .in_account(OTHER_ROLE_ACCOUNT),
        );
    }
    let yaml = format!(
        "regions: [us-east-1]\naccounts:\n  - name: tooling\n  - name: prod\n    role_arn: {ROLE_ARN}\n  - name: staging\n    role_arn: {OTHER_ROLE_ARN}\n"
    );
    let url = sim.url();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (url, yaml) = (url.clone(), yaml.clone());
        move || run_command(&url, &["check-permissions"], Some(&yaml))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("ACCOUNT")
            && lines[0].contains("RESULT")
            && lines[0].contains("MESSAGE")
    );
    assert!(
        lines[1].starts_with(&format!("{BASE_ACCOUNT} (tooling)")) && lines[1].contains("allowed"),
        "{stdout}"
    );
    assert!(
        lines[2].contains(ROLE_ARN)
            && lines[2].contains("denied")
            && lines[2].contains("AssumeRole: AccessDenied"),
        "{stdout}"
    );
    assert!(
        lines[3].contains(OTHER_ROLE_ARN)
            && lines[3].contains("denied")
            && lines[3].contains("DescribeFastLaunchImages: UnauthorizedOperation"),
        "{stdout}"
    );
    {
        let world = sim.world();
        let dry_runs = world
            .received()
            .iter()
            .filter(|r| r.param("DryRun") == Some("true"))
            .count();
        assert_eq!(
            dry_runs, 2,
            "one DryRun call per target whose credentials resolved"
        );
    }

    let (code, stdout, _) = tokio::task::spawn_blocking(move || {
        run_command(
            &url,
            &["check-permissions", "--output", "json"],
            Some(&yaml),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1));
    let checks: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let results: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["allowed", "denied", "denied"]);
    assert_eq!(checks[0]["account_id"], BASE_ACCOUNT);
    assert_eq!(checks[2]["region"], "us-east-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_metrics_that_promtool_accepts_and_exits_by_outcome() {
    let sim = simulator().await;
    sim.world().set_images(
        BASE_ACCOUNT,
        "us-east-1",
        vec![image(1, "enabled"), image(2, "enabling-failed")],
    );
    let url = sim.url();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_command(&url, &["--once"], Some("regions: [us-east-1]\n"))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        find(&stdout, "aws_ec2_fast_launch_image_info", &[]).len(),
        2
    );
    assert_eq!(
        value(&stdout, "fast_launch_exporter_collection_success", &[]),
        Some(1.0)
    );
    assert!(
        !stdout.contains("process_"),
        "no process metrics in one-shot output"
    );
    if let Some(complaints) = promtool_check_metrics(&stdout, "once_prints_metrics (promtool part)")
    {
        assert!(complaints.is_empty(), "promtool complained: {complaints}");
    }

    sim.world().add_fault(
        Fault::error("DescribeFastLaunchImages", "UnauthorizedOperation", 403)
            .in_region("eu-west-1"),
    );
    let (code, stdout, _) = tokio::task::spawn_blocking(move || {
        run_command(&url, &["--once"], Some("regions: [us-east-1, eu-west-1]\n"))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "a failed target makes --once exit 1");
    assert_eq!(
        value(
            &stdout,
            "fast_launch_exporter_collection_success",
            &[("aws_region", "eu-west-1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &stdout,
            "fast_launch_exporter_collection_success",
            &[("aws_region", "us-east-1")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_slow_clients_neither_crash_nor_block_scrapes() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = Exporter::start(&sim.url(), "regions: [us-east-1]\n", &[]).await;
    let address = exporter.address.clone();

    // Slowloris: connections that send part of a request line and then nothing.
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(half_request(&address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await);
    }
    // Garbage and oversized requests.
    for raw in [
        b"\x00\x01\x02garbage\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /%%%%\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        )
        .into_bytes(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        // A server that refuses a request early may reset the connection under a long write.
        let _ = stream.write_all(&raw).await;
        let answer = tokio::time::timeout(DEADLINE, answer_or_close(&mut stream))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "odd request {:?} neither answered nor closed",
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                )
            });
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "odd request answered {answer:?}"
        );
    }
    let with_body = request(&address, "GET", "/metrics", &[("Content-Length", "3")]).await;
    assert_eq!(with_body.status, 400);

    // A normal scrape answers while the slow clients hang on: before the header timeout has
    // closed any of them (had it waited for them, they would be gone by the time it answered).
    let scrape = tokio::time::timeout(DEADLINE, exporter.get("/metrics"))
        .await
        .expect("scrape not blocked");
    assert_eq!(scrape.status, 200);
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
    let open = slow.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        open,
        slow.len(),
        "the scrapes were answered only after slow clients were dropped"
    );
    assert!(!exporter.logs().contains("panicked"), "{}", exporter.logs());
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_permissions_checks_cloudwatch_where_it_is_on() {
    let sim = simulator().await;
    sim.world().add_fault(
        Fault::error("GetMetricData", "AccessDenied", 403).in_account(OTHER_ROLE_ACCOUNT),
    );
    // tooling: CloudWatch allowed; prod: CloudWatch off; staging: GetMetricData denied.
    let yaml = format!(
        "regions: [us-east-1]\ncloudwatch: {{enabled: true}}\naccounts:\n  - name: tooling\n  - name: prod\n    role_arn: {ROLE_ARN}\n    cloudwatch: {{enabled: false}}\n  - name: staging\n    role_arn: {OTHER_ROLE_ARN}\n"
    );
    let url = sim.url();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_command(&url, &["check-permissions"], Some(&yaml)))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} line: {stdout}"))
            .to_string()
    };
    assert!(line("tooling").contains("allowed"), "{stdout}");
    assert!(line("prod").contains("allowed"), "{stdout}");
    assert!(
        line("staging").contains("denied")
            && line("staging").contains("GetMetricData: AccessDenied"),
        "{stdout}"
    );
    let cloudwatch_calls: Vec<(String, String)> = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.service == "monitoring")
        .map(|r| (r.account.clone(), r.action.clone()))
        .collect();
    assert!(
        !cloudwatch_calls
            .iter()
            .any(|(account, _)| account == ROLE_ACCOUNT),
        "prod has CloudWatch off: {cloudwatch_calls:?}"
    );
    assert!(cloudwatch_calls.contains(&(BASE_ACCOUNT.to_string(), "ListMetrics".to_string())));
}

/// Reads until the response head is complete or the server closes (or resets) the
/// connection: what came back, empty when nothing did.
async fn answer_or_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return answer,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            return answer;
        }
    }
}
