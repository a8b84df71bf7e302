//! The receiver loop against a fake queue and a fake trigger, on a paused tokio clock: what is
//! counted, deleted (an applied message only once its collection succeeded) and handed back,
//! the backoff after failed receives, and shutdown.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::domain::calls::{ApiError, ErrorCode};
use crate::domain::model::QueueSpec;
use crate::domain::ports::BoxFuture;
use crate::domain::sync::lock;

const ACCOUNT: &str = "111111111111";
const OTHER_ACCOUNT: &str = "222222222222";
/// The `time` of every event here, in Unix seconds.
const EVENT_TIME: &str = "2026-11-29T10:00:00Z";
const EVENT_SECONDS: u64 = 1_795_946_400;
const WAIT: Duration = Duration::from_secs(20);

/// How one `ReceiveMessage` answers.
#[derive(Debug, Clone)]
enum Receive {
    Messages(Vec<QueueMessage>),
    Fails,
    Hangs,
    /// Fails after five seconds.
    SlowlyFails,
    /// A long poll with nothing in the queue: the whole wait, then no message.
    Idle,
}

struct QueueState {
    start: Instant,
    /// The answers of the next receives, in order; then `then` for every one after.
    script: VecDeque<Receive>,
    then: Receive,
    /// When each receive was called (since `start`), with its wait and max messages.
    receives: Vec<(Duration, Duration, i32)>,
    /// Every delete and release, in order, with the message ids of its batch.
    calls: Vec<(&'static str, Vec<String>)>,
    /// The receipt handles of every delete, in order.
    deleted_handles: Vec<String>,
    delete_hangs: bool,
}

struct FakeQueue(Mutex<QueueState>);

impl FakeQueue {
    fn new(script: Vec<Receive>, then: Receive) -> Arc<FakeQueue> {
        Arc::new(FakeQueue(Mutex::new(QueueState {
            start: Instant::now(),
            script: script.into(),
            then,
            receives: Vec::new(),
            calls: Vec::new(),
            deleted_handles: Vec::new(),
            delete_hangs: false,
        })))
    }

    /// When each receive was called, in whole seconds since the start.
    fn receive_times(&self) -> Vec<u64> {
        lock(&self.0)
            .receives
            .iter()
            .map(|(at, _, _)| at.as_secs())
            .collect()
    }

    fn calls(&self) -> Vec<(&'static str, Vec<String>)> {
        lock(&self.0).calls.clone()
    }

    fn batches(&self, kind: &str) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, ids)| ids)
            .collect()
    }

    fn record(&self, kind: &'static str, messages: &[QueueMessage]) {
        let ids = messages.iter().map(|m| m.id.clone()).collect();
        lock(&self.0).calls.push((kind, ids));
    }
}

impl Queue for FakeQueue {
    fn receive(
        &self,
        wait: Duration,
        max_messages: i32,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, ApiError>> {
        Box::pin(async move {
            let answer = {
                let mut state = lock(&self.0);
                let at = state.start.elapsed();
                state.receives.push((at, wait, max_messages));
                let then = state.then.clone();
                state.script.pop_front().unwrap_or(then)
            };
            match answer {
                Receive::Messages(messages) => Ok(messages),
                Receive::Fails => Err(ApiError::new(
                    Api::ReceiveMessage,
                    ErrorCode::AccessDenied,
                    "not authorized",
                )),
                Receive::Hangs => std::future::pending().await,
                Receive::SlowlyFails => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Err(ApiError::new(
                        Api::ReceiveMessage,
                        ErrorCode::Connection,
                        "connection reset",
                    ))
                }
                Receive::Idle => {
                    tokio::time::sleep(wait).await;
                    Ok(Vec::new())
                }
            }
        })
    }

    fn delete<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.record("delete", messages);
            lock(&self.0)
                .deleted_handles
                .extend(messages.iter().map(|m| m.receipt_handle.clone()));
            if lock(&self.0).delete_hangs {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.record("release", messages);
            Ok(())
        })
    }
}

/// A trigger that knows some (account id, region) pairs and records every request.
struct FakeTrigger {
    known: BTreeSet<(String, String)>,
    /// The requests whose collections have not ended yet.
    requests: Mutex<Vec<(String, String, CollectNow)>>,
    /// Every (account id, region) asked, in order.
    asked: Mutex<Vec<(String, String)>>,
}

impl FakeTrigger {
    fn knowing(targets: &[(&str, &str)]) -> Arc<FakeTrigger> {
        Arc::new(FakeTrigger {
            known: targets
                .iter()
                .map(|(a, r)| (a.to_string(), r.to_string()))
                .collect(),
            requests: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
        })
    }

    /// Ends the collections asked for so far: `succeeded` or not.
    fn collected(&self, succeeded: bool) {
        let requests = std::mem::take(&mut *lock(&self.requests));
        for (_, _, request) in requests {
            request.settle(succeeded);
        }
    }

    fn asked(&self) -> Vec<(String, String)> {
        lock(&self.asked).clone()
    }
}

impl Trigger for FakeTrigger {
    fn collect_now(&self, account_id: &str, region: &str, request: CollectNow) -> bool {
        lock(&self.asked).push((account_id.to_string(), region.to_string()));
        lock(&self.requests).push((account_id.to_string(), region.to_string(), request));
        self.known
            .contains(&(account_id.to_string(), region.to_string()))
    }
}

fn settings() -> EventsSettings {
    EventsSettings {
        queue: QueueSpec {
            url: "https://sqs.eu-west-1.amazonaws.com/999999999999/fast-launch-events".into(),
            region: "eu-west-1".into(),
            account_id: "999999999999".into(),
            role: None,
            visibility: Duration::from_secs(122),
        },
        wait_time: WAIT,
        max_messages: 7,
    }
}

fn message(id: &str, body: String) -> QueueMessage {
    QueueMessage {
        id: id.to_string(),
        receipt_handle: format!("receipt-{id}"),
        body,
    }
}

fn event(account: &str, region: &str) -> String {
    state_change_event(
        account,
        region,
        "ami-0123456789abcdef0",
        "enabled",
        EVENT_TIME,
    )
}

struct Running {
    stats: Arc<EventStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Cancels the receiver and checks it ended at once, without the clock moving.
    async fn stop_at_once(self) {
        let cancelled = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .expect("the receiver stops at shutdown")
            .unwrap();
        assert_eq!(cancelled.elapsed(), Duration::ZERO);
    }
}

fn start(queue: &Arc<FakeQueue>, trigger: &Arc<FakeTrigger>, shard: Shard) -> Running {
    let stats = Arc::new(stats(&settings(), shard));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_receiver(
        queue.clone(),
        settings(),
        shard,
        trigger.clone(),
        stats.clone(),
        shutdown.clone(),
    ));
    Running {
        stats,
        shutdown,
        task,
    }
}

fn counts(stats: &EventStats) -> [u64; 3] {
    EventResult::ALL.map(|result| stats.received(result))
}

#[tokio::test(start_paused = true)]
async fn each_message_is_applied_ignored_or_malformed_counted_and_then_deleted() {
    let messages = vec![
        message("applied", event(ACCOUNT, "us-east-1")),
        message("not-here", event(OTHER_ACCOUNT, "us-east-1")),
        message(
            "other-type",
            event(ACCOUNT, "us-east-1")
                .replace(DETAIL_TYPE, "EC2 Instance State-change Notification"),
        ),
        message("not-json", "hello".into()),
        message("bad-account", event("12", "us-east-1")),
    ];
    let queue = FakeQueue::new(vec![Receive::Messages(messages)], Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, "us-east-1")]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        counts(&running.stats),
        [1, 2, 2],
        "applied, ignored, malformed"
    );
    assert_eq!(
        trigger.asked(),
        [
            (ACCOUNT.to_string(), "us-east-1".to_string()),
            (OTHER_ACCOUNT.to_string(), "us-east-1".to_string()),
        ]
    );
    let (_, _, request) = lock(&trigger.requests).remove(0);
    assert_eq!(
        request.happened,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(EVENT_SECONDS))
    );
    assert!(Arc::ptr_eq(&request.stats, &running.stats));
    assert_eq!(
        queue.calls(),
        [(
            "delete",
            ["not-here", "other-type", "not-json", "bad-account"]
                .map(String::from)
                .to_vec()
        )],
        "every message that asks no collection deleted, nothing handed back"
    );
    // The applied one, once the collection it asked for succeeded.
    request.settle(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(queue.batches("delete")[1], ["applied"]);
    // The long poll asks with the configured wait and batch size, then polls on.
    assert_eq!(lock(&queue.0).receives[0].1, WAIT);
    assert_eq!(lock(&queue.0).receives[0].2, 7);
    assert_eq!(running.stats.receive_success(), Some(true));
    running.stop_at_once().await;
}

/// A region whose (ACCOUNT, region) target `shard` owns, or does not.
fn region_where(shard: Shard, owned: bool) -> &'static str {
    [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-central-1",
        "ap-south-1",
    ]
    .into_iter()
    .find(|region| shard.owns(ACCOUNT, region) == owned)
    .expect("eight regions fall on both sides")
}

#[tokio::test(start_paused = true)]
async fn messages_for_another_shards_targets_are_handed_back_and_not_deleted() {
    let shard = Shard::new(1, 2).unwrap();
    let (mine, theirs) = (region_where(shard, true), region_where(shard, false));
    let messages = vec![
        message("theirs-1", event(ACCOUNT, theirs)),
        message("mine", event(ACCOUNT, mine)),
        message("theirs-2", event(ACCOUNT, theirs)),
        message("malformed", "{}".into()),
    ];
    let queue = FakeQueue::new(vec![Receive::Messages(messages)], Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, mine), (ACCOUNT, theirs)]);
    let running = start(&queue, &trigger, shard);
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.collected(true);
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        queue.batches("release"),
        [["theirs-1", "theirs-2"]],
        "handed back at once"
    );
    assert_eq!(
        queue.batches("delete"),
        [vec!["malformed"], vec!["mine"]],
        "the malformed one at once, mine once collected"
    );
    assert_eq!(
        trigger.asked(),
        [(ACCOUNT.to_string(), mine.to_string())],
        "the other shard's targets are not asked for here"
    );
    assert_eq!(
        counts(&running.stats),
        [1, 0, 1],
        "handed back: not counted"
    );
    assert_eq!(
        running.stats.apis,
        [
            Api::ReceiveMessage,
            Api::DeleteMessageBatch,
            Api::ChangeMessageVisibilityBatch
        ]
    );
    running.stop_at_once().await;
}

#[test]
fn the_receiver_names_change_message_visibility_only_when_sharded() {
    assert_eq!(
        stats(&settings(), Shard::default()).apis,
        [Api::ReceiveMessage, Api::DeleteMessageBatch]
    );
    let sharded = stats(&settings(), Shard::new(0, 3).unwrap());
    assert_eq!(
        (sharded.account_id.as_str(), sharded.region.as_str()),
        ("999999999999", "eu-west-1")
    );
    assert_eq!(sharded.apis.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn messages_are_deleted_and_handed_back_ten_at_a_time() {
    let shard = Shard::new(0, 2).unwrap();
    let (mine, theirs) = (region_where(shard, true), region_where(shard, false));
    let mut messages: Vec<QueueMessage> = (0..23)
        .map(|i| message(&format!("m{i}"), event(ACCOUNT, mine)))
        .collect();
    messages.extend((0..12).map(|i| message(&format!("t{i}"), event(ACCOUNT, theirs))));
    let queue = FakeQueue::new(vec![Receive::Messages(messages)], Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, mine)]);
    let running = start(&queue, &trigger, shard);
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.collected(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sizes = |kind: &str| -> Vec<usize> { queue.batches(kind).iter().map(Vec::len).collect() };
    assert_eq!(sizes("delete"), [10, 10, 3]);
    assert_eq!(sizes("release"), [10, 2]);
    assert_eq!(queue.batches("delete")[2], ["m20", "m21", "m22"]);
    assert_eq!(counts(&running.stats), [23, 0, 0]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_receive_backs_off_doubling_from_one_second_up_to_a_minute() {
    let queue = FakeQueue::new(Vec::new(), Receive::Fails);
    let trigger = FakeTrigger::knowing(&[]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(250)).await;
    // Waits of 1, 2, 4, 8, 16, 32, then 60, 60, 60 s.
    assert_eq!(
        queue.receive_times(),
        [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]
    );
    assert_eq!(running.stats.receive_success(), Some(false));
    assert!(queue.calls().is_empty());
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn the_backoff_starts_again_at_one_second_after_a_successful_receive() {
    let script = vec![
        Receive::Fails,
        Receive::Fails,
        Receive::Fails,
        Receive::Messages(Vec::new()),
        Receive::Fails,
        Receive::Fails,
    ];
    let queue = FakeQueue::new(script, Receive::Hangs);
    let trigger = FakeTrigger::knowing(&[]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(queue.receive_times(), [0, 1, 3, 7, 7, 8, 10]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn receive_success_follows_the_last_receive() {
    let script = vec![Receive::Fails, Receive::Idle, Receive::SlowlyFails];
    let queue = FakeQueue::new(script, Receive::Hangs);
    let running = start(&queue, &FakeTrigger::knowing(&[]), Shard::default());
    assert_eq!(running.stats.receive_success(), None, "before the first");
    // 0 s: fails; 1 s: a 20 s long poll; 21 s: fails 5 s later; 27 s: hangs.
    let at =
        |millis: u64| tokio::time::sleep_until(queue_start(&queue) + Duration::from_millis(millis));
    at(500).await;
    assert_eq!(running.stats.receive_success(), Some(false));
    at(20_500).await;
    assert_eq!(
        running.stats.receive_success(),
        Some(false),
        "still polling"
    );
    at(21_500).await;
    assert_eq!(running.stats.receive_success(), Some(true));
    at(26_500).await;
    assert_eq!(running.stats.receive_success(), Some(false));
    assert_eq!(queue.receive_times(), [0, 1, 21]);
    at(28_000).await;
    assert_eq!(queue.receive_times(), [0, 1, 21, 27]);
    running.stop_at_once().await;
}

fn queue_start(queue: &FakeQueue) -> Instant {
    lock(&queue.0).start
}

#[tokio::test(start_paused = true)]
async fn a_receive_that_never_answers_fails_after_the_wait_plus_ten_seconds() {
    let queue = FakeQueue::new(vec![Receive::Hangs], Receive::Hangs);
    let trigger = FakeTrigger::knowing(&[]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(running.stats.receive_success(), None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(running.stats.receive_success(), Some(false));
    // Cut at 30 s, then one second of backoff.
    assert_eq!(queue.receive_times(), [0, 31]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_receiver_during_a_long_poll() {
    let queue = FakeQueue::new(Vec::new(), Receive::Hangs);
    let running = start(&queue, &FakeTrigger::knowing(&[]), Shard::default());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queue.receive_times(), [0]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_receiver_during_a_backoff() {
    let queue = FakeQueue::new(Vec::new(), Receive::Fails);
    let running = start(&queue, &FakeTrigger::knowing(&[]), Shard::default());
    // Calls at 0, 1, 3, 7, 15, 31, 63; at 70 s the 60 s wait is under way.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!(queue.receive_times().len(), 7);
    running.stop_at_once().await;
    assert_eq!(queue.receive_times().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_receiver_during_a_delete() {
    let messages = vec![message("m", event(ACCOUNT, "us-east-1"))];
    let queue = FakeQueue::new(vec![Receive::Messages(messages)], Receive::Hangs);
    lock(&queue.0).delete_hangs = true;
    let running = start(&queue, &FakeTrigger::knowing(&[]), Shard::default());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queue.batches("delete"), [["m"]], "still on the wire");
    assert_eq!(queue.receive_times(), [0, 0], "receiving goes on meanwhile");
    running.stop_at_once().await;
}

/// `message` as SQS delivers it again after its visibility timeout: a new receipt handle.
fn redelivered(message: &QueueMessage) -> QueueMessage {
    QueueMessage {
        receipt_handle: format!("receipt-{}-2", message.id),
        ..message.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_collection_failed_is_left_on_the_queue_and_asks_again_when_it_comes_back()
{
    let first = message("m", event(ACCOUNT, "us-east-1"));
    // SQS delivers it again after the visibility timeout, with a new receipt handle.
    let again = redelivered(&first);
    let script = vec![
        Receive::Messages(vec![first]),
        Receive::Idle,
        Receive::Messages(vec![again]),
    ];
    let queue = FakeQueue::new(script, Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, "us-east-1")]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.collected(false);
    // Past the idle long poll: received again.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(queue.calls().is_empty(), "not deleted: {:?}", queue.calls());
    assert_eq!(trigger.asked().len(), 2, "asked again");
    trigger.collected(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(queue.batches("delete"), [["m"]]);
    let deleted = lock(&queue.0).deleted_handles.clone();
    assert_eq!(deleted, ["receipt-m-2"], "by its newest receipt handle");
    assert_eq!(counts(&running.stats), [2, 0, 0]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_received_again_while_it_waits_asks_nothing_more_and_is_deleted_by_its_new_handle(
) {
    let first = message("m", event(ACCOUNT, "us-east-1"));
    let again = redelivered(&first);
    let script = vec![
        Receive::Messages(vec![first]),
        Receive::Messages(vec![again]),
    ];
    let queue = FakeQueue::new(script, Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, "us-east-1")]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(trigger.asked().len(), 1, "one collection for both receives");
    trigger.collected(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lock(&queue.0).deleted_handles, ["receipt-m-2"]);
    assert_eq!(counts(&running.stats), [2, 0, 0]);
    running.stop_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn messages_still_waiting_at_shutdown_are_not_deleted() {
    let messages = vec![message("m", event(ACCOUNT, "us-east-1"))];
    let queue = FakeQueue::new(vec![Receive::Messages(messages)], Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, "us-east-1")]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.stop_at_once().await;
    // The collection ends after the receiver stopped: the message comes back to the next one.
    trigger.collected(true);
    tokio::task::yield_now().await;
    assert!(queue.calls().is_empty(), "{:?}", queue.calls());
}

#[tokio::test(start_paused = true)]
async fn receiving_pauses_while_the_most_messages_wait_for_their_collections() {
    let batch = |n: usize| {
        Receive::Messages(
            (0..10)
                .map(|i| message(&format!("m{n}-{i}"), event(ACCOUNT, "us-east-1")))
                .collect(),
        )
    };
    let batches = MAX_WAITING / 10;
    let queue = FakeQueue::new((0..batches).map(batch).collect(), Receive::Idle);
    let trigger = FakeTrigger::knowing(&[(ACCOUNT, "us-east-1")]);
    let running = start(&queue, &trigger, Shard::default());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(queue.receive_times().len(), batches, "paused");
    trigger.collected(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(queue.receive_times().len(), batches + 1, "receiving again");
    assert_eq!(queue.batches("delete").len(), batches);
    running.stop_at_once().await;
}
