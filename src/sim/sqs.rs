//! SQS in the protocol the Rust SDK speaks to it: awsJson1_0 (`POST /`, `x-amz-target:
//! AmazonSQS.<Op>`, a JSON body; errors as JSON `__type`/`message` plus the
//! `x-amzn-query-error: <code>;Sender` header the client takes the code from — see
//! shared/reference/rust-sdk-notes.md). `ReceiveMessage` long-polls up to `WaitTimeSeconds`; a
//! received message stays invisible until deleted (no visibility timeout: the tests delete or
//! lose nothing by accident).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use super::{request_id, FaultKind, World};

/// One simulated queue.
#[derive(Debug, Default)]
pub(super) struct SimQueue {
    pub(super) visible: VecDeque<(String, String)>,
    pub(super) in_flight: BTreeMap<String, (String, String)>,
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
}

/// Takes up to `max` visible messages of the queue at `url`: None when there is no such queue.
pub(super) fn take_messages(world: &mut World, url: &str, max: usize) -> Option<Vec<Value>> {
    let queue = world.queues.get_mut(url)?;
    let mut messages = Vec::new();
    while messages.len() < max {
        let Some((id, body)) = queue.visible.pop_front() else {
            break;
        };
        world.issued_receipts += 1;
        let receipt = format!("receipt-{}-{id}", world.issued_receipts);
        messages.push(json!({
            "MessageId": id,
            "ReceiptHandle": receipt,
            "MD5OfBody": format!("{:x}", md5_stub(&body)),
            "Body": body,
        }));
        queue.in_flight.insert(receipt, (id, body));
    }
    Some(messages)
}

/// A stand-in for MD5OfBody: the SDK passes it through without checking it.
fn md5_stub(body: &str) -> u128 {
    body.bytes()
        .fold(0u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b)))
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
    match action {
        "ReceiveMessage" => {
            let max = body
                .get("MaxNumberOfMessages")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 10) as usize;
            let messages = take_messages(world, url, max).unwrap_or_default();
            if messages.is_empty() {
                SqsAnswer::ok(json!({}))
            } else {
                SqsAnswer::ok(json!({ "Messages": messages }))
            }
        }
        "DeleteMessageBatch" => {
            let queue = world.queues.get_mut(url).expect("checked above");
            let deleted = &mut world.deleted;
            batch(body, |receipt, _| {
                let (message_id, _) = queue.in_flight.remove(receipt)?;
                deleted.push(message_id);
                Some(())
            })
        }
        "ChangeMessageVisibilityBatch" => {
            // VisibilityTimeout 0: the message is visible again at once (any other timeout keeps
            // it in flight, as the simulator has no visibility clock).
            let queue = world.queues.get_mut(url).expect("checked above");
            batch(body, |receipt, entry| {
                if entry.get("VisibilityTimeout").and_then(Value::as_i64) == Some(0) {
                    let message = queue.in_flight.remove(receipt)?;
                    queue.visible.push_back(message);
                    Some(())
                } else {
                    queue.in_flight.contains_key(receipt).then_some(())
                }
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

/// A batch action's answer: `apply` each entry by its receipt handle; None means the handle is
/// not one in flight.
fn batch(body: &Value, mut apply: impl FnMut(&str, &Value) -> Option<()>) -> SqsAnswer {
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
            Some(()) => successful.push(json!({ "Id": id })),
            None => failed.push(json!({
                "Id": id,
                "SenderFault": true,
                "Code": "ReceiptHandleIsInvalid",
                "Message": "The receipt handle is not valid.",
            })),
        }
    }
    SqsAnswer::ok(json!({ "Successful": successful, "Failed": failed }))
}
