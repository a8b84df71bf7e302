//! EventBridge events through SQS, through the real `aws-sdk-sqs` client (awsJson1_0) against the
//! simulator: the event makes the target collect now, events are debounced, bad messages are
//! deleted and counted, and a failing queue is retried while collection goes on.

use std::time::{Duration, Instant};

use fast_launch_exporter::sim::{Fault, Simulator};

use crate::harness::*;

const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/fast-launch-events";

/// A state-change event of now, as EC2 sends it.
fn event(account: &str, region: &str, image: &str, state: &str) -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    fast_launch_exporter::events::state_change_event(account, region, image, state, &now)
}

fn config(debounce: &str) -> String {
    format!(
        "collection: {{interval: 1h}}\nregions: [us-east-1, eu-west-1]\nevents:\n  queue_url: {QUEUE}\n  wait_time: 2s\n  debounce: {debounce}\n"
    )
}

fn state(text: &str, image: u32, state: &str) -> Option<f64> {
    value(
        text,
        "aws_ec2_fast_launch_image_state",
        &[("image_id", &image_id(image)), ("state", state)],
    )
}

fn received(text: &str, result: &str) -> f64 {
    value(
        text,
        "fast_launch_exporter_events_received_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

async fn started(sim: &Simulator, debounce: &str) -> Exporter {
    sim.world().create_queue(QUEUE);
    let exporter = Exporter::start(&sim.url(), &config(debounce), &[]).await;
    exporter.wait_until_ready().await;
    exporter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_puts_the_new_state_on_metrics_without_waiting_for_the_hourly_interval() {
    let sim = simulator().await;
    sim.world().set_images(
        BASE_ACCOUNT,
        "us-east-1",
        vec![image(1, "enabled"), image(2, "enabled")],
    );
    let exporter = started(&sim, "500ms").await;
    let text = exporter.metrics().await;
    assert_eq!(state(&text, 1, "enabled"), Some(1.0));
    assert_eq!(describes(&text, "us-east-1"), 1.0);

    // Image 1 fails; EventBridge says so.
    sim.world().images_mut(BASE_ACCOUNT, "us-east-1")[0] = image(1, "enabling-failed");
    // Before the event's `time` is taken, so that the lag can be bounded by what the test saw.
    let sent = Instant::now();
    sim.world().send_message(
        QUEUE,
        &event(BASE_ACCOUNT, "us-east-1", &image_id(1), "enabling-failed"),
    );
    // The interval is an hour: the new state can only come from the collection the event
    // caused.
    let text = exporter
        .wait_for_metrics("the new state", |t| {
            state(t, 1, "enabling-failed") == Some(1.0)
        })
        .await;
    let since_sent = sent.elapsed().as_secs_f64();
    assert_eq!(
        describes(&text, "us-east-1"),
        2.0,
        "one collection, by the event"
    );
    assert_eq!(
        describes(&text, "eu-west-1"),
        1.0,
        "the other region is not collected"
    );
    assert_eq!(received(&text, "applied"), 1.0);
    assert_eq!(
        value(&text, "fast_launch_exporter_events_receive_success", &[]),
        Some(1.0)
    );
    // From the event's time (whole milliseconds) to the end of its collection: no longer than
    // the test has been waiting since it made the event.
    let lag = value(&text, "fast_launch_exporter_event_lag_seconds", &[]).unwrap();
    assert!(
        lag >= 0.0 && lag <= since_sent + 0.01,
        "lag {lag}, event sent {since_sent}s before"
    );
    // The queue's own calls, under its account id and region.
    assert!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[
                ("aws_account_id", "111111111111"),
                ("aws_region", "us-east-1"),
                ("api", "ReceiveMessage")
            ]
        )
        .unwrap()
            >= 1.0
    );
    // Handled, then deleted.
    let deadline = Instant::now() + DEADLINE;
    while sim.world().queue_depth(QUEUE) != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            sim.world().queue_depth(QUEUE)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Disabled: the image leaves the API's list, and /metrics.
    sim.world().images_mut(BASE_ACCOUNT, "us-east-1").remove(1);
    sim.world().send_message(
        QUEUE,
        &event(BASE_ACCOUNT, "us-east-1", &image_id(2), "disabled"),
    );
    exporter
        .wait_for_metrics("image 2 gone", |t| {
            find(
                t,
                "aws_ec2_fast_launch_image_info",
                &[("image_id", &image_id(2))],
            )
            .is_empty()
        })
        .await;
    if let Some(complaints) = promtool_check_metrics(&exporter.metrics().await, "events") {
        assert!(complaints.trim().is_empty(), "{complaints}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_within_the_debounce_window_share_one_collection() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "eu-west-1", vec![image(1, "enabled")]);
    const DEBOUNCE: Duration = Duration::from_secs(5);
    let exporter = started(&sim, "5s").await;
    assert_eq!(describes(&exporter.metrics().await, "eu-west-1"), 1.0);
    // Each event is sent once the one before was handled and deleted: they reach the receiver
    // in separate polls.
    for n in 1..=10 {
        sim.world().send_message(
            QUEUE,
            &event(BASE_ACCOUNT, "eu-west-1", &image_id(1), "enabling"),
        );
        wait_until(
            &format!("event {n} handled and deleted"),
            || sim.world().deleted_messages().len() == n,
            || format!("queue depth {:?}", sim.world().queue_depth(QUEUE)),
        )
        .await;
    }
    // All inside the window the first opened: none of them has been collected for yet.
    let text = exporter.metrics().await;
    assert_eq!(received(&text, "applied"), 10.0);
    assert_eq!(
        describes(&text, "eu-west-1"),
        1.0,
        "the debounce window closed before the tenth event was handled ({DEBOUNCE:?} for ten)"
    );
    let text = exporter
        .wait_for_metrics("the collection of the window", |t| {
            describes(t, "eu-west-1") >= 2.0
        })
        .await;
    assert_eq!(describes(&text, "eu-west-1"), 2.0, "{text}");
    // Nothing more comes of them: no second window opens. (A wait for something not to
    // happen: one window and a second more.)
    tokio::time::sleep(DEBOUNCE + Duration::from_secs(1)).await;
    assert_eq!(describes(&exporter.metrics().await, "eu-west-1"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_events_are_deleted_and_counted_and_the_receiver_lives() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = started(&sim, "200ms").await;
    {
        let mut world = sim.world();
        world.send_message(QUEUE, "this is not json");
        world.send_message(QUEUE, r#"{"detail-type": 7}"#);
        world.send_message(
            QUEUE,
            r#"{"version":"0","id":"i1","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"111111111111","time":"2026-11-29T10:00:00Z","region":"us-east-1","resources":[],"detail":{"instance-id":"i-0123456789abcdef0","state":"running"}}"#,
        );
        world.send_message(
            QUEUE,
            &event("999999999999", "us-east-1", &image_id(1), "enabling"),
        );
    }
    let text = exporter
        .wait_for_metrics("four events handled", |t| {
            received(t, "malformed") == 2.0 && received(t, "ignored") == 2.0
        })
        .await;
    assert_eq!(received(&text, "applied"), 0.0);
    assert_eq!(describes(&text, "us-east-1"), 1.0, "no collection for them");
    let deadline = Instant::now() + DEADLINE;
    while sim.world().deleted_messages().len() < 4 {
        assert!(Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 0));
    // Still receiving.
    sim.world().images_mut(BASE_ACCOUNT, "us-east-1")[0] = image(1, "enabled-failed");
    sim.world().send_message(
        QUEUE,
        &event(BASE_ACCOUNT, "us-east-1", &image_id(1), "enabled-failed"),
    );
    exporter
        .wait_for_metrics("a good event after bad ones", |t| {
            state(t, 1, "enabled-failed") == Some(1.0)
        })
        .await;
    assert!(!exporter.logs().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_queue_is_retried_and_shown_while_collection_goes_on() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world()
        .add_fault(Fault::error("ReceiveMessage", "AccessDenied", 403));
    sim.world().create_queue(QUEUE);
    let exporter = Exporter::start(&sim.url(), &config("200ms"), &[]).await;
    let text = exporter
        .wait_for_metrics("receive failed", |t| {
            value(t, "fast_launch_exporter_events_receive_success", &[]) == Some(0.0)
        })
        .await;
    assert!(value(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[
            ("aws_account_id", "111111111111"),
            ("aws_region", "us-east-1"),
            ("api", "ReceiveMessage"),
            ("error_code", "AccessDenied")
        ]
    )
    .is_some());
    exporter.wait_until_ready().await;
    assert_eq!(
        value(
            &exporter.metrics().await,
            "fast_launch_exporter_collection_success",
            &[("aws_region", "us-east-1")]
        ),
        Some(1.0),
        "collection goes on"
    );
    // Healed: the next retry (backoff 1 s, 2 s, 4 s …) succeeds and events flow again.
    sim.world().clear_faults();
    exporter
        .wait_for_metrics("receive healed", |t| {
            value(t, "fast_launch_exporter_events_receive_success", &[]) == Some(1.0)
        })
        .await;
    sim.world().images_mut(BASE_ACCOUNT, "us-east-1")[0] = image(1, "disabling");
    sim.world().send_message(
        QUEUE,
        &event(BASE_ACCOUNT, "us-east-1", &image_id(1), "disabling"),
    );
    exporter
        .wait_for_metrics("event after healing", |t| {
            state(t, 1, "disabling") == Some(1.0)
        })
        .await;
    exporter.wait_for_log("cannot receive events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_named_and_a_hung_one_times_out() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    // No queue at the URL: SQS's query-compatible code, as the SDK reports it.
    let exporter = Exporter::start(
        &sim.url(),
        &format!(
            "collection: {{interval: 1h}}\nregions: [us-east-1]\nevents:\n  queue_url: {QUEUE}\n  wait_time: 1s\n"
        ),
        &[],
    )
    .await;
    exporter
        .wait_for_metrics("the missing queue named", |t| {
            value(
                t,
                "fast_launch_exporter_aws_errors_total",
                &[
                    ("api", "ReceiveMessage"),
                    ("error_code", "AWS.SimpleQueueService.NonExistentQueue"),
                ],
            )
            .is_some()
                && value(t, "fast_launch_exporter_events_receive_success", &[]) == Some(0.0)
        })
        .await;
    drop(exporter);

    // A queue that never answers: the receive gives up after the wait plus a grace period
    // and counts as failed, rather than waiting forever.
    sim.world().create_queue(QUEUE);
    sim.world().add_fault(Fault::hang("ReceiveMessage"));
    let exporter = Exporter::start(
        &sim.url(),
        &format!(
            "collection: {{interval: 1h}}\nregions: [us-east-1]\nevents:\n  queue_url: {QUEUE}\n  wait_time: 1s\n"
        ),
        &[],
    )
    .await;
    exporter
        .wait_for_metrics("the hung receive given up", |t| {
            value(t, "fast_launch_exporter_events_receive_success", &[]) == Some(0.0)
        })
        .await;
    exporter
        .wait_for_log("ReceiveMessage failed: timeout")
        .await;
    assert_eq!(
        value(
            &exporter.metrics().await,
            "fast_launch_exporter_collection_success",
            &[("aws_region", "us-east-1")]
        ),
        Some(1.0),
        "collection goes on"
    );
}
