//! What the event receiver and discovery did, as the metrics show it. Written by `events` and
//! `discover`, read by `expose`; the supervisor hands them from one to the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::calls::{Api, ApiCounters, Caller};
use super::sync::lock;

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
    /// The APIs the receiver calls.
    pub apis: Vec<Api>,
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

    /// Stats for the queue of `account_id` in `region`, read with `apis`.
    pub fn new(account_id: &str, region: &str, apis: Vec<Api>) -> EventStats {
        EventStats {
            account_id: account_id.to_string(),
            region: region.to_string(),
            apis,
            ..EventStats::default()
        }
    }

    /// The receiver as a caller of AWS.
    pub fn caller(&self) -> Caller {
        Caller {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            apis: self.apis.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Counts one event handled with `result`.
    pub fn count(&self, result: EventResult) {
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

    /// Records how the last `ReceiveMessage` ended.
    pub fn record_receive(&self, successful: bool) {
        *lock(&self.receive_success) = Some(successful);
    }

    /// Records the lag of an applied event whose collection just ended.
    pub fn record_lag(&self, lag: Duration) {
        *lock(&self.last_lag) = Some(lag);
    }
}

/// Discovery as the metrics show it.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    state: Mutex<DiscoveryState>,
}

/// A snapshot of [`DiscoveryStats`].
#[derive(Debug, Clone, Default)]
pub struct DiscoveryState {
    /// Whether Organizations discovery is configured.
    pub organizations: bool,
    /// Whether the last listing succeeded (None: not tried).
    pub last_ok: Option<bool>,
    /// When a listing last succeeded.
    pub last_success: Option<SystemTime>,
    /// Accounts in the set used now (after the filters).
    pub accounts: usize,
    /// The Organizations caller.
    pub organization_caller: Option<Caller>,
    /// The DescribeRegions callers.
    pub region_callers: Vec<Caller>,
}

impl DiscoveryStats {
    /// A copy of the current state.
    pub fn state(&self) -> DiscoveryState {
        lock(&self.state).clone()
    }

    /// The state, to change (a short critical section: nothing is awaited under it).
    pub fn update(&self) -> std::sync::MutexGuard<'_, DiscoveryState> {
        lock(&self.state)
    }
}
