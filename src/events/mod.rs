//! The fast path: EventBridge `EC2 Fast Launch State-change Notification` events, delivered to an
//! SQS queue, make the named target collect now (through the [`Trigger`] the registry implements). Polling stays the source of truth:
//! an event only asks for a collection, whose result replaces the target's data by the normal
//! path.
//!
//! The receiver long-polls `ReceiveMessage` and handles every message. An applied one (it asks
//! a target to collect) is deleted with `DeleteMessageBatch` only once that collection
//! succeeded: when it fails, or the target or the process stops first, the message is left on
//! the queue and comes back after the queue's visibility timeout (see `waiting`). Ignored and
//! malformed ones are deleted once handled: nothing would come of them again. A failing queue
//! is retried with backoff and shown in metrics; collection goes on by schedule meanwhile.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::EventsSettings;
use crate::domain::calls::{within, Api};
use crate::domain::ids::{check_account_id, check_region};
use crate::domain::ports::{CollectNow, Queue, QueueMessage};
use crate::domain::shard::Shard;
use crate::domain::stats::{EventResult, EventStats};

mod waiting;

use self::waiting::{Waiting, MAX_WAITING};

/// What an event asks for: that the targets of an account and region collect now (implemented
/// by the registry: the receiver never names it).
pub trait Trigger: Send + Sync {
    /// Asks every served target of (account id, region) to collect now. False when no such
    /// target is collected here.
    fn collect_now(&self, account_id: &str, region: &str, request: CollectNow) -> bool;
}

/// The statistics of the receiver of `settings`' queue in `shard`: the APIs it calls are the
/// ones its request counters are exported for.
pub fn stats(settings: &EventsSettings, shard: Shard) -> EventStats {
    let mut apis = vec![Api::ReceiveMessage, Api::DeleteMessageBatch];
    if shard.is_sharded() {
        // Events for another shard's targets are handed back.
        apis.push(Api::ChangeMessageVisibilityBatch);
    }
    EventStats::new(&settings.queue.account_id, &settings.queue.region, apis)
}

/// The EventBridge detail-type of a fast launch state change.
pub const DETAIL_TYPE: &str = "EC2 Fast Launch State-change Notification";
/// How much longer than its long-poll wait a `ReceiveMessage` may take before it counts as failed
/// (a connection that died silently), and how long a `DeleteMessageBatch` may take.
const CALL_GRACE: Duration = Duration::from_secs(10);
/// The shortest and longest wait after a failed `ReceiveMessage`.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The EventBridge envelope (only the fields used; others are ignored).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    region: String,
    time: String,
    /// Kept raw: other detail-types have other shapes.
    detail: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    image_id: String,
    state: String,
}

/// A fast launch state change for (account, region), at `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The account id the event came from.
    pub account_id: String,
    /// Its region.
    pub region: String,
    /// When EventBridge says it happened.
    pub time: Option<SystemTime>,
    /// The image and its new state (`disabled` included), for the log.
    pub image_id: String,
    /// See `image_id`.
    pub state: String,
}

/// Reads a message body: Some(change) for a fast launch notification, None for another
/// detail-type or source, Err for a body that is not an envelope.
pub fn parse_event(body: &str) -> Result<Option<StateChange>, String> {
    let envelope: Envelope = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if envelope.detail_type != DETAIL_TYPE || envelope.source != "aws.ec2" {
        return Ok(None);
    }
    check_account_id(&envelope.account)
        .map_err(|_| format!("account {:?} is not an account id", envelope.account))?;
    check_region(&envelope.region)?;
    let detail: Detail =
        serde_json::from_value(envelope.detail).map_err(|e| format!("detail: {e}"))?;
    Ok(Some(StateChange {
        account_id: envelope.account,
        region: envelope.region,
        time: humantime::parse_rfc3339_weak(&envelope.time).ok(),
        image_id: detail.image_id,
        state: detail.state,
    }))
}

/// An EventBridge `EC2 Fast Launch State-change Notification`, as EC2 sends it.
pub fn state_change_event(
    account: &str,
    region: &str,
    image: &str,
    state: &str,
    time: &str,
) -> String {
    serde_json::json!({
        "version": "0",
        // EventBridge ids are UUIDs.
        "id": format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u16(..),
            fastrand::u16(..),
            fastrand::u64(..) & 0xffff_ffff_ffff
        ),
        "detail-type": DETAIL_TYPE,
        "source": "aws.ec2",
        "account": account,
        "time": time,
        "region": region,
        "resources": [format!("arn:aws:ec2:{region}::image/{image}")],
        "detail": {
            "imageId": image,
            "resourceType": "snapshot",
            "state": state,
            "stateTransitionReason": "Client.UserInitiated",
        },
    })
    .to_string()
}

/// Receives events until `shutdown`. A message whose event asks a target to collect is deleted
/// once that collection succeeded (by a second task, so that a long poll does not hold the
/// delete back); the others are deleted once handled; events for another shard's targets are
/// handed back to the queue for it.
pub async fn run_receiver(
    queue: Arc<dyn Queue>,
    settings: EventsSettings,
    shard: Shard,
    trigger: Arc<dyn Trigger>,
    stats: Arc<EventStats>,
    shutdown: CancellationToken,
) {
    info!(queue = %settings.queue.url, "receiving fast launch events");
    let (to_delete, deletes) = mpsc::unbounded_channel();
    let handler = Handler {
        shard,
        trigger,
        stats,
        waiting: Waiting::new(to_delete.clone()),
        logged_kinds: Default::default(),
    };
    tokio::join!(
        receive(queue.as_ref(), &settings, handler, to_delete, &shutdown),
        delete_in_batches(queue.as_ref(), deletes, &shutdown),
    );
}

/// The receiving half of [`run_receiver`]: long-polls, handles, hands back, and sends what is
/// handled to `to_delete`.
async fn receive(
    queue: &dyn Queue,
    settings: &EventsSettings,
    mut handler: Handler,
    to_delete: mpsc::UnboundedSender<QueueMessage>,
    shutdown: &CancellationToken,
) {
    let mut backoff = BACKOFF.0;
    let waited = format!(
        "no answer within the long-poll wait plus {}s",
        CALL_GRACE.as_secs()
    );
    loop {
        if handler.waiting.still_waiting() >= MAX_WAITING {
            warn!(
                waiting = MAX_WAITING,
                "events wait for their collections; receiving paused until fewer do"
            );
            tokio::select! {
                _ = handler.waiting.fewer_than(MAX_WAITING) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        let receive = within(
            settings.wait_time + CALL_GRACE,
            Api::ReceiveMessage,
            &waited,
            queue.receive(settings.wait_time, settings.max_messages),
        );
        let received = tokio::select! {
            received = receive => received,
            _ = shutdown.cancelled() => return,
        };
        let messages = match received {
            Ok(messages) => {
                handler.stats.record_receive(true);
                backoff = BACKOFF.0;
                messages
            }
            Err(error) => {
                handler.stats.record_receive(false);
                warn!(error = %error, retry_in_s = backoff.as_secs(), "cannot receive events; collection goes on by schedule");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let (handled, others) = handler.sort(messages);
        for message in handled {
            // The other half stops only at shutdown, when this one does.
            let _ = to_delete.send(message);
        }
        tokio::select! {
            _ = send_back(queue, &others) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The deleting half of [`run_receiver`]: deletes the messages sent to it, up to 10 a call
/// (as many as are waiting), until `shutdown`. What is not deleted by then comes back to the
/// next receiver.
async fn delete_in_batches(
    queue: &dyn Queue,
    mut deletes: mpsc::UnboundedReceiver<QueueMessage>,
    shutdown: &CancellationToken,
) {
    let mut batch = Vec::with_capacity(10);
    loop {
        let first = tokio::select! {
            message = deletes.recv() => message,
            _ = shutdown.cancelled() => return,
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < 10 {
            match deletes.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        tokio::select! {
            _ = delete(queue, &batch) => {}
            _ = shutdown.cancelled() => return,
        }
        batch.clear();
    }
}

/// Handles received messages: each one is applied, ignored or malformed, or left for another
/// shard.
struct Handler {
    shard: Shard,
    trigger: Arc<dyn Trigger>,
    stats: Arc<EventStats>,
    /// The applied messages waiting for their collections.
    waiting: Waiting,
    /// What was logged once already (per kind of ignored or malformed message).
    logged_kinds: std::collections::BTreeSet<String>,
}

impl Handler {
    /// Handles `messages`: (the ones to delete now, the ones for another shard's targets). An
    /// applied message is in neither: it waits for its collection.
    fn sort(&mut self, messages: Vec<QueueMessage>) -> (Vec<QueueMessage>, Vec<QueueMessage>) {
        let mut handled: Vec<QueueMessage> = Vec::with_capacity(messages.len());
        let mut others: Vec<QueueMessage> = Vec::new();
        for message in messages {
            let result = match parse_event(&message.body) {
                Ok(Some(change)) if !self.shard.owns(&change.account_id, &change.region) => {
                    debug!(account_id = %change.account_id, region = %change.region, "event for another shard's target; left on the queue for it");
                    others.push(message);
                    continue;
                }
                Ok(Some(change)) => {
                    let result = self.apply(&change, &message);
                    self.stats.count(result);
                    if result != EventResult::Applied {
                        handled.push(message);
                    }
                    continue;
                }
                Ok(None) => {
                    if self.logged_kinds.insert("other".to_string()) {
                        debug!("event of another detail-type or source; ignored");
                    }
                    EventResult::Ignored
                }
                Err(reason) => {
                    if self.logged_kinds.insert("malformed".to_string()) {
                        debug!(message_id = %message.id, reason = %reason, "malformed event deleted");
                    }
                    EventResult::Malformed
                }
            };
            self.stats.count(result);
            handled.push(message);
        }
        (handled, others)
    }

    /// Asks the targets `change` names to collect now, with `message` waiting for that
    /// collection. A message received again while it still waits asks nothing more: the
    /// collection it waits for is still to come.
    fn apply(&mut self, change: &StateChange, message: &QueueMessage) -> EventResult {
        if self.waiting.received_again(message) {
            debug!(message_id = %message.id, "event received again while its collection is still to come");
            return EventResult::Applied;
        }
        let held = self.waiting.hold(message);
        let request = CollectNow {
            happened: change.time,
            stats: self.stats.clone(),
            deliveries: vec![held],
        };
        if self
            .trigger
            .collect_now(&change.account_id, &change.region, request)
        {
            debug!(account_id = %change.account_id, region = %change.region, image_id = %change.image_id, state = %change.state, "event: collecting now");
            return EventResult::Applied;
        }
        if self
            .logged_kinds
            .insert(format!("target {}/{}", change.account_id, change.region))
        {
            debug!(account_id = %change.account_id, region = %change.region, "event for a target this exporter does not collect; ignored");
        }
        EventResult::Ignored
    }
}

/// Hands `messages` back to the queue for the other shards, 10 at a time.
async fn send_back(queue: &dyn Queue, messages: &[QueueMessage]) {
    let waited = format!("no answer within {}s", CALL_GRACE.as_secs());
    for batch in messages.chunks(10) {
        let released = within(
            CALL_GRACE,
            Api::ChangeMessageVisibilityBatch,
            &waited,
            queue.release(batch),
        );
        if let Err(error) = released.await {
            warn!(error = %error, "cannot hand events back for the other shards; they come back after the queue's visibility timeout");
        }
    }
}

/// Deletes `messages` (at most 10). A failed delete means they come back and are handled
/// again, which only costs one more collection.
async fn delete(queue: &dyn Queue, messages: &[QueueMessage]) {
    let waited = format!("no answer within {}s", CALL_GRACE.as_secs());
    let deleted = within(
        CALL_GRACE,
        Api::DeleteMessageBatch,
        &waited,
        queue.delete(messages),
    );
    if let Err(error) = deleted.await {
        warn!(error = %error, "cannot delete handled events; they will be received again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(detail_type: &str, account: &str) -> String {
        let event = state_change_event(
            account,
            "us-east-1",
            "ami-0123456789abcdef0",
            "enabling-failed",
            "2026-11-29T10:00:00Z",
        );
        event.replace(DETAIL_TYPE, detail_type)
    }

    #[test]
    fn fast_launch_notifications_are_read_and_others_ignored_or_refused() {
        let change = parse_event(&envelope(DETAIL_TYPE, "111111111111"))
            .unwrap()
            .unwrap();
        assert_eq!(change.account_id, "111111111111");
        assert_eq!(change.region, "us-east-1");
        assert_eq!(
            change.time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_946_400))
        );
        assert_eq!(
            parse_event(&envelope(
                "EC2 Instance State-change Notification",
                "111111111111"
            ))
            .unwrap(),
            None
        );
        assert!(parse_event("not json").is_err());
        assert!(parse_event(r#"{"detail-type":"x"}"#).is_err());
        assert!(parse_event(&envelope(DETAIL_TYPE, "12")).is_err());
    }
}

#[cfg(test)]
mod receiver_tests;
