//! The fast path: EventBridge `EC2 Fast Launch State-change Notification` events, delivered to an
//! SQS queue, make the registry collect the named target now. Polling stays the source of truth:
//! an event only asks for a collection, whose result replaces the target's data by the normal
//! path.
//!
//! The receiver long-polls `ReceiveMessage`, handles every message (applied, ignored or
//! malformed) and only then deletes them with `DeleteMessageBatch`. A failing queue is retried
//! with backoff and shown in metrics; collection goes on by schedule meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::calls::{Api, ApiCounters, ApiError, ErrorCode};
use crate::collector::BoxFuture;
use crate::config::EventsSettings;
use crate::registry::Registry;
use crate::sync::lock;

/// The EventBridge detail-type of a fast launch state change.
pub const DETAIL_TYPE: &str = "EC2 Fast Launch State-change Notification";
/// How much longer than its long-poll wait a `ReceiveMessage` may take before it counts as failed
/// (a connection that died silently), and how long a `DeleteMessageBatch` may take.
const CALL_GRACE: Duration = Duration::from_secs(10);
/// The shortest and longest wait after a failed `ReceiveMessage`.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// One message as the queue gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `MessageId`.
    pub id: String,
    /// `ReceiptHandle`, needed to delete it.
    pub receipt_handle: String,
    /// `Body`.
    pub body: String,
}

/// The queue's two calls, implemented over the SDK in `aws`.
pub trait Queue: Send + Sync {
    /// Long-polls for up to `max_messages` messages, waiting up to `wait`.
    fn receive(
        &self,
        wait: Duration,
        max_messages: i32,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, ApiError>>;
    /// Deletes handled messages (at most 10: one `DeleteMessageBatch`).
    fn delete<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Makes messages visible again at once, for another receiver (at most 10: one
    /// `ChangeMessageVisibilityBatch` with `VisibilityTimeout` 0).
    fn release<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// What the receiver did, for the metrics.
#[derive(Debug, Default)]
pub struct EventStats {
    applied: AtomicU64,
    ignored: AtomicU64,
    malformed: AtomicU64,
    /// 1 after a successful `ReceiveMessage`, 0 after a failed one; None before the first.
    receive_success: Mutex<Option<bool>>,
    /// From the last applied event's `time` to the end of the collection it caused.
    last_lag: Mutex<Option<Duration>>,
    /// The queue's own API counters (`ReceiveMessage`, `DeleteMessageBatch`).
    pub counters: Arc<ApiCounters>,
    /// The queue's account id and region, the labels of its counters.
    pub account_id: String,
    /// See `account_id`.
    pub region: String,
}

/// How one event was handled: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    /// It named a configured target, which collects now.
    Applied,
    /// Another detail-type, or a target this exporter does not collect.
    Ignored,
    /// Not an EventBridge envelope of the expected shape.
    Malformed,
}

impl EventResult {
    /// Every result, in label order.
    pub const ALL: [EventResult; 3] = [
        EventResult::Applied,
        EventResult::Ignored,
        EventResult::Malformed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Applied => "applied",
            EventResult::Ignored => "ignored",
            EventResult::Malformed => "malformed",
        }
    }
}

impl EventStats {
    /// When the `events_received_total` counters started at 0 (OpenMetrics' `_created`).
    pub fn created(&self) -> std::time::SystemTime {
        self.counters.created()
    }

    /// Stats for the queue in `settings`.
    pub fn new(settings: &EventsSettings) -> EventStats {
        EventStats {
            account_id: settings.queue.account_id.clone(),
            region: settings.queue.region.clone(),
            ..EventStats::default()
        }
    }

    fn count(&self, result: EventResult) {
        let counter = match result {
            EventResult::Applied => &self.applied,
            EventResult::Ignored => &self.ignored,
            EventResult::Malformed => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Events handled with `result`.
    pub fn received(&self, result: EventResult) -> u64 {
        match result {
            EventResult::Applied => self.applied.load(Ordering::Relaxed),
            EventResult::Ignored => self.ignored.load(Ordering::Relaxed),
            EventResult::Malformed => self.malformed.load(Ordering::Relaxed),
        }
    }

    /// Whether the last `ReceiveMessage` succeeded (None before the first).
    pub fn receive_success(&self) -> Option<bool> {
        *lock(&self.receive_success)
    }

    /// The lag of the last applied event, once its collection ended.
    pub fn last_lag(&self) -> Option<Duration> {
        *lock(&self.last_lag)
    }

    /// Records the lag of an applied event whose collection just ended.
    pub fn record_lag(&self, lag: Duration) {
        *lock(&self.last_lag) = Some(lag);
    }
}

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
    if envelope.account.len() != 12 || !envelope.account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "account {:?} is not an account id",
            envelope.account
        ));
    }
    crate::config::check_region(&envelope.region)?;
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

/// Receives events until `shutdown`: every message is handled, then deleted.
pub async fn run_receiver(
    queue: Arc<dyn Queue>,
    settings: EventsSettings,
    registry: Arc<Registry>,
    stats: Arc<EventStats>,
    shutdown: CancellationToken,
) {
    info!(queue = %settings.queue.url, "receiving fast launch events");
    let mut backoff = BACKOFF.0;
    let mut logged_kinds = std::collections::BTreeSet::new();
    loop {
        let receive = tokio::time::timeout(
            settings.wait_time + CALL_GRACE,
            queue.receive(settings.wait_time, settings.max_messages),
        );
        let received = tokio::select! {
            received = receive => received.unwrap_or_else(|_| Err(ApiError::new(
                Api::ReceiveMessage,
                ErrorCode::Timeout,
                format!("no answer within the long-poll wait plus {}s", CALL_GRACE.as_secs()),
            ))),
            _ = shutdown.cancelled() => return,
        };
        let messages = match received {
            Ok(messages) => {
                *lock(&stats.receive_success) = Some(true);
                backoff = BACKOFF.0;
                messages
            }
            Err(error) => {
                *lock(&stats.receive_success) = Some(false);
                warn!(error = %error, retry_in_s = backoff.as_secs(), "cannot receive events; collection goes on by schedule");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let shard = registry.shard();
        // Events for another shard's targets go back on the queue for that shard (which
        // applies or ignores, then deletes them); the rest are handled here and deleted.
        let mut handled: Vec<QueueMessage> = Vec::with_capacity(messages.len());
        let mut others: Vec<QueueMessage> = Vec::new();
        for message in &messages {
            let result = match parse_event(&message.body) {
                Ok(Some(change)) if !shard.owns(&change.account_id, &change.region) => {
                    debug!(account_id = %change.account_id, region = %change.region, "event for another shard's target; left on the queue for it");
                    others.push(message.clone());
                    continue;
                }
                Ok(Some(change)) => {
                    if registry.collect_now(&change.account_id, &change.region, change.time) {
                        debug!(account_id = %change.account_id, region = %change.region, image_id = %change.image_id, state = %change.state, "event: collecting now");
                        EventResult::Applied
                    } else {
                        if logged_kinds
                            .insert(format!("target {}/{}", change.account_id, change.region))
                        {
                            debug!(account_id = %change.account_id, region = %change.region, "event for a target this exporter does not collect; ignored");
                        }
                        EventResult::Ignored
                    }
                }
                Ok(None) => {
                    if logged_kinds.insert("other".to_string()) {
                        debug!("event of another detail-type or source; ignored");
                    }
                    EventResult::Ignored
                }
                Err(reason) => {
                    if logged_kinds.insert("malformed".to_string()) {
                        debug!(message_id = %message.id, reason = %reason, "malformed event deleted");
                    }
                    EventResult::Malformed
                }
            };
            stats.count(result);
            handled.push(message.clone());
        }
        for batch in others.chunks(10) {
            let release = tokio::time::timeout(CALL_GRACE, queue.release(batch));
            let released = tokio::select! {
                released = release => released.unwrap_or_else(|_| Err(ApiError::new(
                    Api::ChangeMessageVisibilityBatch,
                    ErrorCode::Timeout,
                    format!("no answer within {}s", CALL_GRACE.as_secs()),
                ))),
                _ = shutdown.cancelled() => return,
            };
            if let Err(error) = released {
                warn!(error = %error, "cannot hand events back for the other shards; they come back after the queue's visibility timeout");
            }
        }
        // Handled, so deleted; a failed delete means they come back and are handled again,
        // which only costs one more collection.
        for batch in handled.chunks(10) {
            let delete = tokio::time::timeout(CALL_GRACE, queue.delete(batch));
            let deleted = tokio::select! {
                deleted = delete => deleted.unwrap_or_else(|_| Err(ApiError::new(
                    Api::DeleteMessageBatch,
                    ErrorCode::Timeout,
                    format!("no answer within {}s", CALL_GRACE.as_secs()),
                ))),
                _ = shutdown.cancelled() => return,
            };
            if let Err(error) = deleted {
                warn!(error = %error, "cannot delete handled events; they will be received again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(detail_type: &str, account: &str) -> String {
        format!(
            r#"{{"version":"0","id":"e1","detail-type":"{detail_type}","source":"aws.ec2","account":"{account}","time":"2026-11-29T10:00:00Z","region":"us-east-1","resources":[],"detail":{{"imageId":"ami-0123456789abcdef0","resourceType":"snapshot","state":"enabling-failed","stateTransitionReason":"x"}}}}"#
        )
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
