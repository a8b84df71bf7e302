//! Fault injection: for each way AWS can misbehave, the affected target reports it with the right
//! error code, every other target keeps its data, nothing panics, and the target recovers on the
//! first clean cycle.

use fast_launch_exporter::sim::{Fault, FaultKind};

use crate::harness::*;

fn success(text: &str, region: &str) -> Option<f64> {
    value(
        text,
        "fast_launch_exporter_collection_success",
        &[("aws_region", region)],
    )
}

/// eu-west-1 gets `kind` on every DescribeFastLaunchImages call; us-east-1 stays clean.
async fn fault_is_reported_contained_and_recovered(kind: &str, error_code: &str) {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(
            BASE_ACCOUNT,
            "us-east-1",
            vec![image(1, "enabled"), image(2, "enabling")],
        );
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(3, "enabled")]);
        let fault = Fault {
            kind: FaultKind::from_name(kind).unwrap(),
            ..Fault::hang("DescribeFastLaunchImages")
        };
        world.add_fault(fault.in_region("eu-west-1"));
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1s, timeout: 1s, max_attempts: 2}\nregions: [us-east-1, eu-west-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics(&format!("{kind}: the faulty target fails twice"), |t| {
            success(t, "eu-west-1") == Some(0.0) && describes(t, "eu-west-1") >= 4.0
        })
        .await;
    let errors = find(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[("aws_region", "eu-west-1")],
    );
    let codes: Vec<&str> = errors
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| k == "error_code")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    // A throttled, 5xx or reset attempt is retried after the SDK's backoff (up to 1 s with
    // jitter), which can push the collection past its 1 s timeout on a busy machine: then
    // `timeout` is counted too, rightly.
    let expected: &[&str] = if matches!(kind, "throttle" | "server-error" | "reset") {
        &[error_code, "timeout"]
    } else {
        &[error_code]
    };
    assert!(codes.contains(&error_code), "{kind}: {errors:?}");
    assert!(
        codes.iter().all(|c| expected.contains(c)),
        "{kind}: {errors:?}"
    );
    assert!(find(
        &text,
        "aws_ec2_fast_launch_image_info",
        &[("aws_region", "eu-west-1")]
    )
    .is_empty());
    // The clean target is untouched: its data, its success, no errors.
    assert_eq!(success(&text, "us-east-1"), Some(1.0), "{kind}");
    assert_eq!(
        find(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("aws_region", "us-east-1")]
        )
        .len(),
        2
    );
    assert!(find(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[("aws_region", "us-east-1")]
    )
    .is_empty());

    // Not stuck: attempted again on its own schedule, as the clean target is. Both run on the
    // same 1 s interval; by the clean target's third collection from now the faulty one has
    // been attempted again.
    let (before, clean_before) = (describes(&text, "eu-west-1"), describes(&text, "us-east-1"));
    let text = exporter
        .wait_for_metrics(&format!("{kind}: three more clean collections"), |t| {
            describes(t, "us-east-1") >= clean_before + 3.0
        })
        .await;
    assert!(
        describes(&text, "eu-west-1") > before,
        "{kind}: the faulty target was not attempted again while the clean one was collected \
         three times"
    );

    // Recovers on the first clean cycle.
    sim.world().clear_faults();
    let text = exporter
        .wait_for_metrics(&format!("{kind}: recovery"), |t| {
            success(t, "eu-west-1") == Some(1.0)
        })
        .await;
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("image_id", &image_id(3))]
        ),
        Some(1.0)
    );
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_fault() {
    fault_is_reported_contained_and_recovered("throttle", "RequestLimitExceeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_fault() {
    fault_is_reported_contained_and_recovered("unauthorized", "UnauthorizedOperation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_fault() {
    fault_is_reported_contained_and_recovered("server-error", "InternalError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_fault() {
    fault_is_reported_contained_and_recovered("reset", "connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_fault() {
    fault_is_reported_contained_and_recovered("hang", "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_fault() {
    fault_is_reported_contained_and_recovered("malformed", "other").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_xml_fault() {
    fault_is_reported_contained_and_recovered("truncated", "other").await;
}
