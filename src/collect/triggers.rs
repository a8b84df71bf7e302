//! The collections events ask of one target: one slot, not a queue. Asks that arrive before the
//! target takes them merge into one (the latest event time), as the debounce would merge them
//! anyway, and the queue messages waiting for either wait for that one collection. A slot costs
//! a few dozen bytes where a channel's first block of 32 messages cost 800 bytes a target
//! (13.6 MB at 17,000 targets).

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::domain::ports::CollectNow;
use crate::domain::sync::lock;

/// One target's pending ask to collect now.
#[derive(Debug, Default)]
pub struct Triggers {
    slot: Mutex<Option<CollectNow>>,
    notify: Notify,
}

impl Triggers {
    /// Asks the target to collect now: merged with an ask it has not taken yet.
    pub fn fire(&self, ask: CollectNow) {
        {
            let mut slot = lock(&self.slot);
            match &mut *slot {
                Some(pending) => pending.merge(ask),
                None => *slot = Some(ask),
            }
        }
        self.notify.notify_one();
    }

    /// The next ask (waits for one).
    pub(super) async fn next(&self) -> CollectNow {
        loop {
            if let Some(ask) = lock(&self.slot).take() {
                return ask;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::domain::stats::EventStats;

    fn ask(seconds: u64) -> CollectNow {
        CollectNow::new(
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)),
            Arc::new(EventStats::new("111111111111", "us-east-1", Vec::new())),
        )
    }

    /// Asks not yet taken merge into one with the latest time; a later ask wakes a waiter.
    #[tokio::test]
    async fn asks_merge_until_taken_and_wake_the_target() {
        let triggers = Arc::new(Triggers::default());
        triggers.fire(ask(5));
        triggers.fire(ask(9));
        triggers.fire(ask(7));
        let taken = triggers.next().await;
        assert_eq!(taken.happened, ask(9).happened);
        let waiting = tokio::spawn({
            let triggers = triggers.clone();
            async move { triggers.next().await.happened }
        });
        tokio::task::yield_now().await;
        triggers.fire(ask(11));
        let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(woken, ask(11).happened);
    }
}
