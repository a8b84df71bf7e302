//! SQS in the protocol the Rust SDK speaks to it: awsJson1_0 (`POST /`, `x-amz-target:
//! AmazonSQS.<Op>`, a JSON body; errors as JSON `__type`/`message` plus the
//! `x-amzn-query-error: <code>;Sender` header the client takes the code from — see
//! shared/reference/rust-sdk-notes.md). `ReceiveMessage` long-polls up to `WaitTimeSeconds`.
//!
//! The visibility timeout as the SQS Developer Guide describes it: a received message is
//! invisible for the queue's `VisibilityTimeout` (30 s unless set with
//! [`World::set_visibility_timeout`](super::World::set_visibility_timeout)) or the
//! `VisibilityTimeout` of the `ReceiveMessage`, then visible again with a new receipt handle at
//! its next receive; `ApproximateReceiveCount` counts the receives. `DeleteMessage` with the
//! most recent receipt handle deletes the message even after its timeout ran out; with an older
//! one "the request will still succeed, but the message might not be deleted" (here: it is
//! not); a handle SQS never issued is `ReceiptHandleIsInvalid`. `ChangeMessageVisibility`
//! counts from the call, 0–43,200 s, on a message in flight only (`MessageNotInflight`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{request_id, FaultKind, World};

/// A queue's `VisibilityTimeout` when none is set (SQS's default).
pub(super) const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest visibility timeout: 12 hours.
const MAX_VISIBILITY_TIMEOUT: u64 = 43_200;

/// One message on a simulated queue.
#[derive(Debug)]
pub(super) struct SimMessage {
    pub(super) id: String,
    pub(super) body: String,
    /// `ApproximateReceiveCount`.
    pub(super) receive_count: u32,
    /// The receipt handle of its most recent receive.
    pub(super) receipt: Option<String>,
    /// In flight until then (None: never received, or made visible).
    pub(super) invisible_until: Option<Instant>,
}

impl SimMessage {
    fn in_flight(&self, now: Instant) -> bool {
        self.invisible_until.is_some_and(|until| until > now)
    }
}

/// One simulated queue.
#[derive(Debug)]
pub(super) struct SimQueue {
    /// Not yet deleted, in the order sent.
    pub(super) messages: VecDeque<SimMessage>,
    /// The queue's `VisibilityTimeout`.
    pub(super) visibility_timeout: Duration,
}

impl Default for SimQueue {
    fn default() -> SimQueue {
        SimQueue {
            messages: VecDeque::new(),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
        }
    }
}

impl SimQueue {
    /// Messages (visible, in flight) at `now`.
    pub(super) fn depth(&self, now: Instant) -> (usize, usize) {
        let in_flight = self.messages.iter().filter(|m| m.in_flight(now)).count();
        (self.messages.len() - in_flight, in_flight)
    }

    /// The message a receipt handle was issued for: Err when SQS never issued it; Ok(None)
    /// when the message is gone (deleted) or the handle is not its most recent one.
    fn by_receipt(&mut self, receipt: &str) -> Result<Option<&mut SimMessage>, ()> {
        let id = issued_for(receipt).ok_or(())?;
        Ok(self
            .messages
            .iter_mut()
            .find(|m| m.id == id && m.receipt.as_deref() == Some(receipt)))
    }
}

/// An SQS answer: status, JSON body, and the error code for `x-amzn-query-error`.
pub(super) struct SqsAnswer {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) query_error: Option<String>,
}

impl SqsAnswer {
    fn ok(body: Value) -> SqsAnswer {
        SqsAnswer {
            status: 200,
            body: body.to_string(),
            query_error: None,
        }
    }

    /// An error with SQS's JSON shape; `query_code` is the awsQuery-compatible code the SDK reads
    /// from `x-amzn-query-error` (e.g. `AWS.SimpleQueueService.NonExistentQueue`).
    pub(super) fn error(
        status: u16,
        json_type: &str,
        query_code: &str,
        message: &str,
    ) -> SqsAnswer {
        SqsAnswer {
            status,
            body: json!({"__type": format!("com.amazonaws.sqs#{json_type}"), "message": message})
                .to_string(),
            query_error: Some(format!("{query_code};Sender")),
        }
    }

    fn from_entry(error: EntryError) -> SqsAnswer {
        let (json_type, query_code, message) = error.parts();
        SqsAnswer::error(400, json_type, query_code, message)
    }
}

/// Why one receipt handle was refused, alone or in a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EntryError {
    /// Never issued.
    InvalidReceipt,
    /// `ChangeMessageVisibility` of a message not in flight (or by a handle not its latest).
    NotInFlight,
    /// `VisibilityTimeout` outside 0–43,200.
    InvalidTimeout,
}

impl EntryError {
    /// (JSON `__type`, query-compatible code, message).
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            EntryError::InvalidReceipt => (
                "ReceiptHandleIsInvalid",
                "ReceiptHandleIsInvalid",
                "The input receipt handle is invalid.",
            ),
            EntryError::NotInFlight => (
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                "The message referred to isn't in flight.",
            ),
            EntryError::InvalidTimeout => (
                "InvalidParameterValue",
                "InvalidParameterValue",
                "VisibilityTimeout must be between 0 and 43200 seconds.",
            ),
        }
    }
}

/// A `VisibilityTimeout` parameter: None when absent, Err when outside 0–43,200 s.
fn visibility_parameter(value: &Value) -> Result<Option<Duration>, EntryError> {
    match value.get("VisibilityTimeout") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_VISIBILITY_TIMEOUT)
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or(EntryError::InvalidTimeout),
    }
}

/// Whether a `ReceiveMessage` asked for `ApproximateReceiveCount` (by name or `All`, in
/// `MessageSystemAttributeNames` or the older `AttributeNames`).
fn wants_receive_count(body: &Value) -> bool {
    ["MessageSystemAttributeNames", "AttributeNames"]
        .iter()
        .filter_map(|key| body.get(*key).and_then(Value::as_array))
        .flatten()
        .any(|name| matches!(name.as_str(), Some("All" | "ApproximateReceiveCount")))
}

/// Receives up to `max` visible messages of the queue at `url`, each invisible for `timeout`
/// (the queue's when None): None when there is no such queue.
pub(super) fn take_messages(
    world: &mut World,
    url: &str,
    max: usize,
    timeout: Option<Duration>,
    with_receive_count: bool,
) -> Option<Vec<Value>> {
    let queue = world.queues.get_mut(url)?;
    let now = Instant::now();
    let until = now + timeout.unwrap_or(queue.visibility_timeout);
    let mut messages = Vec::new();
    for message in queue.messages.iter_mut().filter(|m| !m.in_flight(now)) {
        if messages.len() == max {
            break;
        }
        world.issued_receipts += 1;
        let receipt = format!("receipt-{}-{}", world.issued_receipts, message.id);
        message.receive_count += 1;
        message.receipt = Some(receipt.clone());
        message.invisible_until = Some(until);
        let mut answer = json!({
            "MessageId": message.id,
            "ReceiptHandle": receipt,
            "MD5OfBody": format!("{:x}", md5_stub(&message.body)),
            "Body": message.body,
        });
        if with_receive_count {
            answer["Attributes"] =
                json!({ "ApproximateReceiveCount": message.receive_count.to_string() });
        }
        messages.push(answer);
    }
    Some(messages)
}

/// A stand-in for MD5OfBody: the SDK passes it through without checking it.
fn md5_stub(body: &str) -> u128 {
    body.bytes()
        .fold(0u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b)))
}

/// Deletes the message of `receipt`: Ok also for a stale handle or a message already deleted
/// (which deletes nothing), as SQS answers them.
/// The message id a receipt handle of the simulator's shape (`receipt-<n>-<id>`, see
/// [`take_messages`]) was issued for; None for a handle it never issues. Read from the handle, not
/// remembered: a long demo would otherwise keep every handle it ever issued.
fn issued_for(receipt: &str) -> Option<&str> {
    let (number, id) = receipt.strip_prefix("receipt-")?.split_once('-')?;
    let issued = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    (issued && !id.is_empty()).then_some(id)
}

fn delete_one(
    queue: &mut SimQueue,
    deleted: &mut Vec<String>,
    receipt: &str,
) -> Result<(), EntryError> {
    let id = match queue.by_receipt(receipt) {
        Err(()) => return Err(EntryError::InvalidReceipt),
        Ok(None) => return Ok(()),
        Ok(Some(message)) => message.id.clone(),
    };
    queue.messages.retain(|m| m.id != id);
    deleted.push(id);
    Ok(())
}

/// Makes the message of `receipt` invisible for `timeout` from now (visible at once for 0).
fn change_visibility(queue: &mut SimQueue, receipt: &str, entry: &Value) -> Result<(), EntryError> {
    let timeout = visibility_parameter(entry)?.ok_or(EntryError::InvalidTimeout)?;
    let now = Instant::now();
    let message = queue
        .by_receipt(receipt)
        .map_err(|()| EntryError::InvalidReceipt)?
        .filter(|m| m.in_flight(now))
        .ok_or(EntryError::NotInFlight)?;
    message.invisible_until = (!timeout.is_zero()).then_some(now + timeout);
    Ok(())
}

/// The answer to an SQS action other than the waiting part of `ReceiveMessage`.
pub(super) fn answer(
    world: &mut World,
    action: &str,
    body: &Value,
    fault: Option<&FaultKind>,
) -> SqsAnswer {
    if let Some(FaultKind::Error { code, status }) = fault {
        return SqsAnswer::error(*status, code, code, &format!("simulated {code}"));
    }
    let Some(url) = body.get("QueueUrl").and_then(Value::as_str) else {
        return SqsAnswer::error(
            400,
            "MissingParameter",
            "MissingParameter",
            "The request must contain the parameter QueueUrl.",
        );
    };
    if !world.queues.contains_key(url) {
        return SqsAnswer::error(
            400,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        );
    }
    let receipt = body
        .get("ReceiptHandle")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match action {
        "ReceiveMessage" => {
            let max = body
                .get("MaxNumberOfMessages")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 10) as usize;
            let timeout = match visibility_parameter(body) {
                Ok(timeout) => timeout,
                Err(error) => return SqsAnswer::from_entry(error),
            };
            let messages = take_messages(world, url, max, timeout, wants_receive_count(body))
                .unwrap_or_default();
            if messages.is_empty() {
                SqsAnswer::ok(json!({}))
            } else {
                SqsAnswer::ok(json!({ "Messages": messages }))
            }
        }
        "DeleteMessage" => {
            let queue = world.queues.get_mut(url).expect("checked above");
            match delete_one(queue, &mut world.deleted, receipt) {
                Ok(()) => SqsAnswer::ok(json!({})),
                Err(error) => SqsAnswer::from_entry(error),
            }
        }
        "DeleteMessageBatch" => {
            let queue = world.queues.get_mut(url).expect("checked above");
            let deleted = &mut world.deleted;
            batch(body, |receipt, _| delete_one(queue, deleted, receipt))
        }
        "ChangeMessageVisibility" => {
            let queue = world.queues.get_mut(url).expect("checked above");
            match change_visibility(queue, receipt, body) {
                Ok(()) => SqsAnswer::ok(json!({})),
                Err(error) => SqsAnswer::from_entry(error),
            }
        }
        "ChangeMessageVisibilityBatch" => {
            let queue = world.queues.get_mut(url).expect("checked above");
            batch(body, |receipt, entry| {
                change_visibility(queue, receipt, entry)
            })
        }
        other => SqsAnswer::error(
            400,
            "InvalidAction",
            "InvalidAction",
            &format!("unsupported action {other} ({})", request_id()),
        ),
    }
}

/// A batch action's answer: `apply` each entry by its receipt handle.
fn batch(body: &Value, mut apply: impl FnMut(&str, &Value) -> Result<(), EntryError>) -> SqsAnswer {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in body
        .get("Entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = entry.get("Id").and_then(Value::as_str).unwrap_or_default();
        let receipt = entry
            .get("ReceiptHandle")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match apply(receipt, entry) {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(error) => {
                let (_, code, message) = error.parts();
                failed.push(json!({
                    "Id": id,
                    "SenderFault": true,
                    "Code": code,
                    "Message": message,
                }));
            }
        }
    }
    SqsAnswer::ok(json!({ "Successful": successful, "Failed": failed }))
}
