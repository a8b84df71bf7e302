//! The messages that wait for the collections they asked for. A message is deleted only after
//! its collection succeeded: until then it stays in flight on the queue, and when that
//! collection fails, or the target stops, or the process does, it is simply not deleted and SQS
//! delivers it again after the queue's visibility timeout (up to the redrive policy's
//! `maxReceiveCount`, after which it goes to the dead-letter queue).
//!
//! The receiver keeps a [`Waiting`] list of the messages by id; a target holds each of its
//! messages (a [`WaitingMessage`], behind the [`Delivery`] port) in its pending ask until the
//! collection ends. The message owes its delete to the last one who lets it go: when it drops,
//! it is deleted if a collection succeeded for it and none failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, Notify};
use tracing::debug;

use crate::domain::ports::{Delivery, QueueMessage};
use crate::domain::sync::lock;

/// At most this many messages wait for their collections; the receiver stops receiving until
/// fewer do. A few hundred bytes each (the id and receipt handle): about 5 MB at most, and far
/// under SQS's 120,000 messages in flight per standard queue.
pub(super) const MAX_WAITING: usize = 10_000;

/// What every waiting message shares with the receiver.
#[derive(Debug)]
struct Shared {
    /// Where the messages whose collection succeeded go to be deleted.
    to_delete: mpsc::UnboundedSender<QueueMessage>,
    /// Woken when a message stops waiting.
    settled: Notify,
}

/// A message that waits for the collection it asked for.
#[derive(Debug)]
pub(super) struct WaitingMessage {
    id: String,
    /// The receipt handle of its most recent receive: SQS deletes only by that one.
    receipt_handle: Mutex<String>,
    succeeded: AtomicBool,
    failed: AtomicBool,
    shared: Arc<Shared>,
}

impl Delivery for WaitingMessage {
    fn collected(&self, succeeded: bool) {
        if succeeded {
            self.succeeded.store(true, Ordering::Relaxed);
        } else {
            self.failed.store(true, Ordering::Relaxed);
            debug!(message_id = %self.id, "the event's collection failed; its message is left on the queue to come back after the visibility timeout");
        }
    }
}

impl Drop for WaitingMessage {
    fn drop(&mut self) {
        if self.succeeded.load(Ordering::Relaxed) && !self.failed.load(Ordering::Relaxed) {
            let receipt_handle = std::mem::take(&mut *lock(&self.receipt_handle));
            // A closed channel: the receiver stopped; the message comes back to the next one.
            let _ = self.shared.to_delete.send(QueueMessage {
                id: std::mem::take(&mut self.id),
                receipt_handle,
                body: String::new(),
            });
        }
        self.shared.settled.notify_one();
    }
}

/// The messages waiting for their collections, by message id.
#[derive(Debug)]
pub(super) struct Waiting {
    by_id: HashMap<String, Weak<WaitingMessage>>,
    shared: Arc<Shared>,
}

impl Waiting {
    /// An empty list whose messages, once their collection succeeded, are sent to `to_delete`.
    pub(super) fn new(to_delete: mpsc::UnboundedSender<QueueMessage>) -> Waiting {
        Waiting {
            by_id: HashMap::new(),
            shared: Arc::new(Shared {
                to_delete,
                settled: Notify::new(),
            }),
        }
    }

    /// A message now waiting for a collection: the target's hold on it.
    pub(super) fn hold(&mut self, message: &QueueMessage) -> Arc<WaitingMessage> {
        let waiting = Arc::new(WaitingMessage {
            id: message.id.clone(),
            receipt_handle: Mutex::new(message.receipt_handle.clone()),
            succeeded: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            shared: self.shared.clone(),
        });
        self.by_id
            .insert(message.id.clone(), Arc::downgrade(&waiting));
        waiting
    }

    /// Takes the new receipt handle of a message received again while it still waits (its
    /// visibility timeout ran out first): true when it does, and its collection, still to come,
    /// serves this receive too.
    pub(super) fn received_again(&self, message: &QueueMessage) -> bool {
        let Some(waiting) = self.by_id.get(&message.id).and_then(Weak::upgrade) else {
            return false;
        };
        *lock(&waiting.receipt_handle) = message.receipt_handle.clone();
        true
    }

    /// Forgets the messages that stopped waiting; how many still wait.
    pub(super) fn still_waiting(&mut self) -> usize {
        self.by_id.retain(|_, waiting| waiting.strong_count() > 0);
        self.by_id.len()
    }

    /// Waits until fewer than `max` messages wait.
    pub(super) async fn fewer_than(&mut self, max: usize) {
        let shared = self.shared.clone();
        loop {
            let settled = shared.settled.notified();
            if self.still_waiting() < max {
                return;
            }
            settled.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, receipt: &str) -> QueueMessage {
        QueueMessage {
            id: id.to_string(),
            receipt_handle: receipt.to_string(),
            body: "{}".to_string(),
        }
    }

    fn channel() -> (Waiting, mpsc::UnboundedReceiver<QueueMessage>) {
        let (to_delete, deleted) = mpsc::unbounded_channel();
        (Waiting::new(to_delete), deleted)
    }

    fn ids(deleted: &mut mpsc::UnboundedReceiver<QueueMessage>) -> Vec<(String, String)> {
        std::iter::from_fn(|| deleted.try_recv().ok())
            .map(|m| (m.id, m.receipt_handle))
            .collect()
    }

    #[test]
    fn a_message_is_deleted_once_its_collection_succeeded_and_let_go() {
        let (mut waiting, mut deleted) = channel();
        let held = waiting.hold(&message("m1", "r1"));
        held.collected(true);
        assert!(ids(&mut deleted).is_empty(), "deleted when let go");
        drop(held);
        assert_eq!(ids(&mut deleted), [("m1".into(), "r1".into())]);
        assert_eq!(waiting.still_waiting(), 0);
    }

    #[test]
    fn a_failed_or_abandoned_collection_leaves_the_message() {
        let (mut waiting, mut deleted) = channel();
        let failed = waiting.hold(&message("m1", "r1"));
        failed.collected(false);
        drop(failed);
        // The target stopped before its collection: never told.
        drop(waiting.hold(&message("m2", "r2")));
        // Asked twice, one failed: the failure wins (the message comes back and asks again).
        let twice = waiting.hold(&message("m3", "r3"));
        let other = twice.clone();
        twice.collected(true);
        other.collected(false);
        drop((twice, other));
        assert!(ids(&mut deleted).is_empty());
        assert_eq!(waiting.still_waiting(), 0);
    }

    #[test]
    fn a_message_received_again_while_waiting_is_deleted_by_its_newest_receipt_handle() {
        let (mut waiting, mut deleted) = channel();
        let held = waiting.hold(&message("m1", "r1"));
        assert!(waiting.received_again(&message("m1", "r2")));
        assert!(!waiting.received_again(&message("m2", "r9")));
        assert_eq!(waiting.still_waiting(), 1);
        held.collected(true);
        drop(held);
        assert_eq!(ids(&mut deleted), [("m1".into(), "r2".into())]);
        // Gone: a later receive of it asks anew.
        assert!(!waiting.received_again(&message("m1", "r3")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_receiver_waits_until_fewer_than_the_maximum_wait() {
        let (mut waiting, _deleted) = channel();
        let held: Vec<_> = (0..3)
            .map(|i| waiting.hold(&message(&format!("m{i}"), "r")))
            .collect();
        let wait = tokio::time::timeout(std::time::Duration::from_secs(1), waiting.fewer_than(3));
        assert!(wait.await.is_err(), "three wait");
        let mut held = held;
        let released = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            held.pop();
            held
        });
        waiting.fewer_than(3).await;
        assert_eq!(waiting.still_waiting(), 2);
        drop(released.await);
    }
}
