//! EventBridge events through SQS, through the real `aws-sdk-sqs` client (awsJson1_0) against the
//! simulator: the event makes the target collect now, events are debounced, bad messages are
//! deleted and counted, and a failing queue is retried while collection goes on. A message is
//! deleted only once the collection it asked for succeeded: a failed collection or a stop
//! leaves it on the queue, and it comes back after the visibility timeout, which the
//! simulator's queue keeps as SQS does.

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
    // Each event is sent once the one before was received: they reach the receiver in separate
    // polls. They wait, in flight, for the collection they asked for.
    for n in 1..=10 {
        sim.world().send_message(
            QUEUE,
            &event(BASE_ACCOUNT, "eu-west-1", &image_id(1), "enabling"),
        );
        wait_until(
            &format!("event {n} received"),
            || sim.world().queue_depth(QUEUE) == (0, n),
            || format!("queue depth {:?}", sim.world().queue_depth(QUEUE)),
        )
        .await;
    }
    // All inside the window the first opened: none of them has been collected for yet, and
    // none deleted.
    let text = exporter.metrics().await;
    assert_eq!(received(&text, "applied"), 10.0);
    assert_eq!(
        describes(&text, "eu-west-1"),
        1.0,
        "the debounce window closed before the tenth event was handled ({DEBOUNCE:?} for ten)"
    );
    assert!(sim.world().deleted_messages().is_empty());
    let text = exporter
        .wait_for_metrics("the collection of the window", |t| {
            describes(t, "eu-west-1") >= 2.0
        })
        .await;
    assert_eq!(describes(&text, "eu-west-1"), 2.0, "{text}");
    // The one collection succeeded: every message that waited for it is deleted.
    wait_until(
        "the ten events deleted",
        || sim.world().deleted_messages().len() == 10,
        || format!("queue depth {:?}", sim.world().queue_depth(QUEUE)),
    )
    .await;
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 0));
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

/// The config of [`config`] with one attempt per call: a throttled collection fails at once.
fn config_one_attempt(debounce: &str) -> String {
    config_quick(debounce).replace(
        "collection: {interval: 1h, timeout: 1s}",
        "collection: {interval: 1h, timeout: 1s, max_attempts: 1}",
    )
}

/// [`config`] with a 1 s collection timeout: the exporter asks every `ReceiveMessage` to hide
/// a message for the debounce plus twice the timeout, so a message not deleted comes back after
/// 3 s.
fn config_quick(debounce: &str) -> String {
    config(debounce).replace(
        "collection: {interval: 1h}",
        "collection: {interval: 1h, timeout: 1s}",
    )
}

/// Image 1 of the base account in us-east-1 goes to `enabling-failed`, and its event is put on
/// the queue; the message's id.
fn image_fails_and_eventbridge_says_so(sim: &Simulator) -> String {
    sim.world().images_mut(BASE_ACCOUNT, "us-east-1")[0] = image(1, "enabling-failed");
    sim.world().send_message(
        QUEUE,
        &event(BASE_ACCOUNT, "us-east-1", &image_id(1), "enabling-failed"),
    )
}

/// The queue's own visibility timeout in the tests that need messages back soon: an hour, so
/// that only the exporter's `VisibilityTimeout` on each receive can bring them back in time.
const QUEUE_VISIBILITY: Duration = Duration::from_secs(3600);

/// How many `action` requests of the base account in `region` the simulator received.
fn received_requests(sim: &Simulator, action: &str, region: &str) -> usize {
    crate::harness::received(sim, action, region)
        .iter()
        .filter(|r| r.account == BASE_ACCOUNT)
        .count()
}

fn receive_count(sim: &Simulator, id: &str) -> u32 {
    sim.world()
        .receive_counts(QUEUE)
        .iter()
        .find(|(m, _)| m == id)
        .map_or(0, |(_, count)| *count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_collection_leaves_its_event_which_is_applied_and_deleted_once_the_throttle_lifts(
) {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world().set_visibility_timeout(QUEUE, QUEUE_VISIBILITY);
    let exporter = Exporter::start(&sim.url(), &config_one_attempt("200ms"), &[]).await;
    exporter.wait_until_ready().await;

    // The account is throttled when the image fails and EventBridge says so.
    sim.world().add_fault(
        Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503)
            .in_account(BASE_ACCOUNT)
            .in_region("us-east-1"),
    );
    let id = image_fails_and_eventbridge_says_so(&sim);
    // The collection fails; the message is not deleted, comes back after its visibility
    // timeout and asks again (which fails again).
    wait_until(
        "the event received a third time",
        || receive_count(&sim, &id) >= 3,
        || format!("{:?}", sim.world().receive_counts(QUEUE)),
    )
    .await;
    assert!(sim.world().deleted_messages().is_empty());
    let text = exporter.metrics().await;
    assert_eq!(state(&text, 1, "enabled"), Some(1.0), "still the old state");
    assert!(received(&text, "applied") >= 2.0);
    assert!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("aws_region", "us-east-1"),
                ("api", "DescribeFastLaunchImages"),
                ("error_code", "RequestLimitExceeded")
            ]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );

    // The throttle lifts: the next delivery's collection succeeds, and the message goes.
    sim.world().clear_faults();
    exporter
        .wait_for_metrics("the new state", |t| {
            state(t, 1, "enabling-failed") == Some(1.0)
        })
        .await;
    wait_until(
        "the event deleted",
        || sim.world().deleted_messages() == [id.clone()],
        || format!("{:?}", sim.world().receive_counts(QUEUE)),
    )
    .await;
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_received_by_an_exporter_that_stops_before_its_collection_comes_back_to_the_next()
{
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world().set_visibility_timeout(QUEUE, QUEUE_VISIBILITY);
    let mut first = Exporter::start(&sim.url(), &config_quick("200ms"), &[]).await;
    first.wait_until_ready().await;
    // The first exporter's collection for the event never ends.
    sim.world().add_fault(
        Fault::hang("DescribeFastLaunchImages")
            .in_account(BASE_ACCOUNT)
            .in_region("us-east-1"),
    );
    let id = image_fails_and_eventbridge_says_so(&sim);
    wait_until(
        "the event's collection under way",
        || received_requests(&sim, "DescribeFastLaunchImages", "us-east-1") == 2,
        || format!("{:?}", sim.world().queue_depth(QUEUE)),
    )
    .await;
    assert_eq!(received(&first.metrics().await, "applied"), 1.0);
    // Stopped (gracefully: shutdown deletes nothing it has not collected for).
    let status = first.stop_with("TERM", DEADLINE).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        sim.world().deleted_messages().is_empty(),
        "lost at the stop"
    );
    assert_eq!(receive_count(&sim, &id), 1);

    // The next exporter gets it once its visibility timeout ran out, collects and deletes it.
    sim.world().clear_faults();
    let second = Exporter::start(&sim.url(), &config_quick("200ms"), &[]).await;
    second.wait_until_ready().await;
    // (Whether its collection is the start-up one or one more depends on when it arrives; it is
    // deleted only once a collection after its receive succeeded.)
    second
        .wait_for_metrics("the event applied by the next exporter", |t| {
            received(t, "applied") == 1.0 && state(t, 1, "enabling-failed") == Some(1.0)
        })
        .await;
    wait_until(
        "the event deleted",
        || sim.world().deleted_messages() == [id.clone()],
        || format!("{:?}", sim.world().receive_counts(QUEUE)),
    )
    .await;
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 0));
}

/// An SQS client of the simulator, as the exporter builds one (awsJson1_0).
fn sqs_client(sim: &Simulator) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(sim.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            BASE_KEY,
            BASE_SECRET,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_queue_keeps_the_visibility_timeout_as_sqs_does() {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let sim = simulator().await;
    sim.world()
        .set_visibility_timeout(QUEUE, Duration::from_secs(1));
    let id = sim.world().send_message(QUEUE, "hello");
    let sqs = sqs_client(&sim);
    let receive = |timeout: Option<i32>| {
        sqs.receive_message()
            .queue_url(QUEUE)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .set_visibility_timeout(timeout)
            .send()
    };
    // (receipt handle, ApproximateReceiveCount) of the one message received, if any.
    let one = |output: aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput| {
        let messages = output.messages();
        assert!(messages.len() <= 1);
        messages.first().map(|m| {
            assert_eq!(m.message_id(), Some(id.as_str()));
            let count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .cloned();
            (m.receipt_handle().unwrap().to_string(), count.unwrap())
        })
    };
    let (first, count) = one(receive(None).await.unwrap()).unwrap();
    assert_eq!(count, "1");
    assert_eq!(one(receive(None).await.unwrap()), None, "invisible");
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 1));

    // Visible again at once with a visibility timeout of 0, received with a new handle.
    sqs.change_message_visibility()
        .queue_url(QUEUE)
        .receipt_handle(&first)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let (second, count) = one(receive(None).await.unwrap()).unwrap();
    assert_ne!(second, first);
    assert_eq!(count, "2");
    // A stale handle: the request succeeds, the message is not deleted.
    sqs.delete_message()
        .queue_url(QUEUE)
        .receipt_handle(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 1));

    // Back after the queue's timeout (1 s), now invisible for the receive's own 30 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sim.world().queue_depth(QUEUE), (1, 0));
    let (third, count) = one(receive(Some(30)).await.unwrap()).unwrap();
    assert_eq!(count, "3");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        one(receive(None).await.unwrap()),
        None,
        "the receive's timeout"
    );
    // Not in flight by a stale handle; a timeout past 12 hours refused.
    let error = sqs
        .change_message_visibility()
        .queue_url(QUEUE)
        .receipt_handle(&second)
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some("AWS.SimpleQueueService.MessageNotInflight")
    );
    let error = sqs
        .change_message_visibility()
        .queue_url(QUEUE)
        .receipt_handle(&third)
        .visibility_timeout(43_201)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidParameterValue"));
    // A handle SQS never issued.
    let error = sqs
        .delete_message()
        .queue_url(QUEUE)
        .receipt_handle("made-up")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ReceiptHandleIsInvalid"));

    // The newest handle deletes it; deleting it again succeeds and changes nothing.
    let batch = sqs
        .delete_message_batch()
        .queue_url(QUEUE)
        .entries(
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id("a")
                .receipt_handle(&third)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(batch.failed().is_empty(), "{batch:?}");
    assert_eq!(sim.world().deleted_messages(), std::slice::from_ref(&id));
    assert_eq!(sim.world().queue_depth(QUEUE), (0, 0));
    sqs.delete_message()
        .queue_url(QUEUE)
        .receipt_handle(&third)
        .send()
        .await
        .unwrap();
    // A message whose timeout ran out is no longer in flight.
    sim.world().send_message(QUEUE, "later");
    let output = receive(Some(1)).await.unwrap();
    let handle = output.messages()[0].receipt_handle().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let error = sqs
        .change_message_visibility()
        .queue_url(QUEUE)
        .receipt_handle(&handle)
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some("AWS.SimpleQueueService.MessageNotInflight")
    );
}
