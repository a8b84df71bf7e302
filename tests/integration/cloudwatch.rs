//! CloudWatch fast launch metrics through the real `aws-sdk-cloudwatch` client (Smithy RPC v2
//! CBOR) against the simulator: the values, counters that count each period once (a late
//! datapoint included), images without data, batching at 500 queries per GetMetricData, and a
//! denied CloudWatch that leaves the fast launch data served.

use std::time::{Duration, Instant, SystemTime};

use fast_launch_exporter::sim::{Fault, Simulator};

use crate::harness::*;

const AVAILABLE: &str = "NumberOfAvailableFastLaunchSnapshots";
const FAST: &str = "NumberOfInstancesFastLaunched";
const COLD: &str = "NumberOfInstancesNotFastLaunched";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn image_value(text: &str, name: &str, image: u32) -> Option<f64> {
    value(text, name, &[("image_id", &image_id(image))])
}

fn config(region_account: &str) -> String {
    let account = match region_account {
        "role" => format!("accounts:\n  - role_arn: {ROLE_ARN}\n"),
        _ => String::new(),
    };
    format!(
        "collection: {{interval: 5s}}\nregions: [us-east-1]\ncloudwatch:\n  enabled: true\n  period: 1m\n  lookback: 10m\n{account}"
    )
}

fn gets(sim: &Simulator, action: &str) -> Vec<Vec<(String, String)>> {
    sim.world()
        .received()
        .iter()
        .filter(|r| r.action == action)
        .map(|r| r.params.clone())
        .collect()
}

/// Polls `/metrics` up to `limit` (CloudWatch periods are whole minutes).
async fn wait_long(
    exporter: &Exporter,
    what: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let text = exporter.metrics().await;
        if done(&text) {
            return text;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}\n--- metrics ---\n{text}\n--- logs ---\n{}",
            exporter.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_counters_count_each_period_once_including_a_late_datapoint() {
    let sim = simulator().await;
    let region = "us-east-1";
    sim.world().set_images(
        BASE_ACCOUNT,
        region,
        vec![
            image(1, "enabled"),
            image(2, "enabled"),
            image(3, "enabled"),
        ],
    );
    let now = unix_now();
    let minute = now.div_euclid(60) * 60;
    {
        let mut world = sim.world();
        let (one, two) = (image_id(1), image_id(2));
        // Image 1 under the dimension AWS documents; image 2 under another name: the exporter
        // finds each image by its id, whatever the dimension is called.
        for (dimension, id) in [("ImageId", one.as_str()), ("FastLaunchImage", two.as_str())] {
            let dims = [(dimension, id)];
            world.put_metric(BASE_ACCOUNT, region, AVAILABLE, &dims, minute - 120, 5.0);
            world.put_metric(BASE_ACCOUNT, region, AVAILABLE, &dims, minute - 60, 3.0);
            world.put_metric(BASE_ACCOUNT, region, AVAILABLE, &dims, minute - 50, 4.0);
            // Launches before the exporter first saw the image are not counted.
            world.put_metric(BASE_ACCOUNT, region, COLD, &dims, minute - 240, 7.0);
            world.put_metric(BASE_ACCOUNT, region, FAST, &dims, minute - 240, 9.0);
        }
        // The cold-launch metric is not listed yet (CloudWatch lists a new metric only after up
        // to 15 minutes, and none without data for two weeks): it is asked for anyway, with the
        // dimensions the image's other metrics show.
        world.unlisted_metrics.insert(COLD.to_string());
        // Another image's metric, not one of the target's.
        world.put_metric(
            BASE_ACCOUNT,
            region,
            COLD,
            &[("ImageId", "ami-0notconfigured0")],
            minute - 60,
            1.0,
        );
    }
    let exporter = Exporter::start(&sim.url(), &config("base"), &[]).await;
    exporter.wait_until_ready().await;
    let text = exporter
        .wait_for_metrics("the first CloudWatch query", |t| {
            value(t, "fast_launch_exporter_cloudwatch_success", &[]) == Some(1.0)
        })
        .await;
    for n in [1, 2] {
        assert_eq!(
            image_value(&text, "aws_ec2_fast_launch_image_available_snapshots", n),
            Some(3.0),
            "the Minimum of the latest period\n{text}"
        );
        assert_eq!(
            image_value(&text, "aws_ec2_fast_launch_image_cold_launches_total", n),
            Some(0.0)
        );
        assert_eq!(
            image_value(&text, "aws_ec2_fast_launch_image_fast_launches_total", n),
            Some(0.0)
        );
    }
    for name in [
        "aws_ec2_fast_launch_image_available_snapshots",
        "aws_ec2_fast_launch_image_cold_launches_total",
    ] {
        assert_eq!(
            image_value(&text, name, 3),
            None,
            "image 3 has no CloudWatch data"
        );
        assert!(find(&text, name, &[("image_id", "ami-0notconfigured0")]).is_empty());
    }
    assert!(text.contains("# TYPE aws_ec2_fast_launch_image_cold_launches_total counter"));

    // Launches happen in the minute that was running at start-up. CloudWatch publishes them
    // only after that minute ended and at least one more query saw nothing for it: late.
    let launched = now.div_euclid(60) * 60;
    let ended = launched + 60;
    while unix_now() < ended + 7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = exporter.metrics().await;
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_cold_launches_total", 1),
        Some(0.0)
    );
    {
        let mut world = sim.world();
        let dims = [("ImageId", image_id(1))];
        let dims: Vec<(&str, &str)> = dims.iter().map(|(n, v)| (*n, v.as_str())).collect();
        world.put_metric(BASE_ACCOUNT, region, COLD, &dims, launched + 10, 2.0);
        world.put_metric(BASE_ACCOUNT, region, COLD, &dims, launched + 40, 1.0);
        world.put_metric(BASE_ACCOUNT, region, FAST, &dims, launched + 10, 4.0);
    }
    let text = wait_long(
        &exporter,
        "the late period counted",
        Duration::from_secs(150),
        |t| image_value(t, "aws_ec2_fast_launch_image_cold_launches_total", 1) == Some(3.0),
    )
    .await;
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_fast_launches_total", 1),
        Some(4.0)
    );
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_cold_launches_total", 2),
        Some(0.0)
    );

    // Later queries return the same period again: it is not counted twice.
    let queries = gets(&sim, "GetMetricData").len();
    wait_until(
        "two more GetMetricData",
        || gets(&sim, "GetMetricData").len() >= queries + 2,
        || exporter.logs(),
    )
    .await;
    let text = exporter.metrics().await;
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_cold_launches_total", 1),
        Some(3.0)
    );
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_fast_launches_total", 1),
        Some(4.0)
    );

    // One GetMetricData per collection with every image's queries (three per image with data),
    // never one per image; three ListMetrics (one per metric name).
    let data_calls = gets(&sim, "GetMetricData");
    let list_calls = gets(&sim, "ListMetrics");
    assert_eq!(list_calls.len(), 3 * data_calls.len(), "{list_calls:?}");
    for params in &data_calls {
        assert!(
            params.contains(&("queries".to_string(), "6".to_string())),
            "{params:?}"
        );
    }
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "GetMetricData")]
        ),
        Some(data_calls.len() as f64)
    );
    if let Some(complaints) = promtool_check_metrics(&text, "cloudwatch metrics") {
        assert!(complaints.trim().is_empty(), "{complaints}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_metrics_take_two_get_metric_data_calls_across_pages() {
    let sim = simulator().await;
    let region = "us-east-1";
    let images: Vec<_> = (1..=200).map(|n| image(n, "enabled")).collect();
    sim.world().set_images(BASE_ACCOUNT, region, images);
    let minute = unix_now().div_euclid(60) * 60;
    {
        let mut world = sim.world();
        world.list_metrics_page_size = 64;
        world.metric_data_page_size = 150;
        for n in 1..=200u32 {
            let id = image_id(n);
            for metric in [AVAILABLE, FAST, COLD] {
                world.put_metric(
                    BASE_ACCOUNT,
                    region,
                    metric,
                    &[("ImageId", &id)],
                    minute - 60,
                    f64::from(n),
                );
            }
        }
    }
    let exporter = Exporter::start(&sim.url(), &config("base"), &[]).await;
    let text = exporter
        .wait_for_metrics("the first CloudWatch query", |t| {
            value(t, "fast_launch_exporter_cloudwatch_success", &[]) == Some(1.0)
        })
        .await;
    // The latest of each image's three datapoints, whichever page it came on.
    for n in [1, 77, 200] {
        assert_eq!(
            image_value(&text, "aws_ec2_fast_launch_image_available_snapshots", n),
            Some(f64::from(n))
        );
    }
    assert_eq!(
        find(&text, "aws_ec2_fast_launch_image_available_snapshots", &[]).len(),
        200
    );
    // The first collection only: 600 queries in calls of at most 500, each call paged.
    let first: Vec<usize> = gets(&sim, "GetMetricData")
        .iter()
        .filter(|p| !p.iter().any(|(k, _)| k == "NextToken"))
        .filter_map(|p| {
            p.iter()
                .find(|(k, _)| k == "queries")
                .and_then(|(_, v)| v.parse().ok())
        })
        .take(2)
        .collect();
    assert_eq!(first, [500, 100]);
    let lists = gets(&sim, "ListMetrics");
    assert!(
        lists
            .iter()
            .any(|p| p.iter().any(|(k, _)| k == "NextToken")),
        "ListMetrics was paged: {lists:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_denied_leaves_the_fast_launch_data_served_then_heals() {
    let sim = simulator().await;
    sim.world()
        .set_images(ROLE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let minute = unix_now().div_euclid(60) * 60;
    sim.world().put_metric(
        ROLE_ACCOUNT,
        "us-east-1",
        AVAILABLE,
        &[("ImageId", &image_id(1))],
        minute - 60,
        6.0,
    );
    sim.world()
        .add_fault(Fault::error("ListMetrics", "AccessDenied", 403).in_account(ROLE_ACCOUNT));
    let exporter = Exporter::start(&sim.url(), &config("role"), &[]).await;
    exporter.wait_until_ready().await;
    let text = exporter
        .wait_for_metrics("CloudWatch denied", |t| {
            value(t, "fast_launch_exporter_cloudwatch_success", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(
        value(&text, "fast_launch_exporter_collection_success", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("state", "enabled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[("api", "ListMetrics"), ("error_code", "AccessDenied")]
        )
        .map(|v| v >= 1.0),
        Some(true),
        "{text}"
    );
    assert!(find(&text, "aws_ec2_fast_launch_image_available_snapshots", &[]).is_empty());
    exporter.wait_for_log("CloudWatch query failed").await;

    sim.world().clear_faults();
    let text = exporter
        .wait_for_metrics("CloudWatch healed", |t| {
            value(t, "fast_launch_exporter_cloudwatch_success", &[]) == Some(1.0)
        })
        .await;
    assert_eq!(
        image_value(&text, "aws_ec2_fast_launch_image_available_snapshots", 1),
        Some(6.0)
    );
    // EC2 and CloudWatch share the role's credentials: assumed once.
    let assumed = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .count();
    assert_eq!(assumed, 1);
}
