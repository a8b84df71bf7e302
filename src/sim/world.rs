//! The simulated world: images per (account, region), the access keys it knows, injected faults,
//! and the log of requests it received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::domain::model::FastLaunchImage;

/// An injected failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The account it applies to (None: all).
    pub account: Option<String>,
    /// The region it applies to (None: all).
    pub region: Option<String>,
    /// The action (`DescribeFastLaunchImages`, `AssumeRole`, `GetCallerIdentity`).
    pub action: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it hits before it is used up (None: all of them).
    pub remaining: Option<u32>,
    /// The share of matching requests it hits, 0.0–1.0 (drawn from the world's seeded generator).
    pub rate: f64,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this AWS error code and HTTP status.
    Error {
        /// AWS error code, e.g. `RequestLimitExceeded`.
        code: String,
        /// HTTP status, e.g. 503.
        status: u16,
    },
    /// Never answer (until the client gives up).
    Hang,
    /// Close the connection without an answer.
    Reset,
    /// Answer 200 with a body that is not XML.
    Malformed,
    /// Answer 200 with the real XML cut in the middle.
    Truncated,
}

impl FaultKind {
    /// Parses a fault name: `throttle`, `unauthorized`, `server-error`, `reset`, `hang`,
    /// `malformed`, `truncated`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        let error = |code: &str, status| FaultKind::Error {
            code: code.to_string(),
            status,
        };
        Some(match name {
            "throttle" => error("RequestLimitExceeded", 503),
            "unauthorized" => error("UnauthorizedOperation", 403),
            "server-error" => error("InternalError", 500),
            "reset" => FaultKind::Reset,
            "hang" => FaultKind::Hang,
            "malformed" => FaultKind::Malformed,
            "truncated" => FaultKind::Truncated,
            _ => return None,
        })
    }

    /// Every name [`FaultKind::from_name`] takes.
    pub const NAMES: [&'static str; 7] = [
        "throttle",
        "unauthorized",
        "server-error",
        "reset",
        "hang",
        "malformed",
        "truncated",
    ];
}

impl Fault {
    /// A fault answering `code` with `status` to `action` everywhere, forever.
    pub fn error(action: &str, code: &str, status: u16) -> Fault {
        Fault {
            account: None,
            region: None,
            action: action.to_string(),
            kind: FaultKind::Error {
                code: code.to_string(),
                status,
            },
            remaining: None,
            rate: 1.0,
        }
    }

    /// A fault that never answers `action`.
    pub fn hang(action: &str) -> Fault {
        Fault {
            account: None,
            region: None,
            action: action.to_string(),
            kind: FaultKind::Hang,
            remaining: None,
            rate: 1.0,
        }
    }

    /// Limits the fault to one account.
    pub fn in_account(mut self, account: &str) -> Fault {
        self.account = Some(account.to_string());
        self
    }

    /// Limits the fault to one region.
    pub fn in_region(mut self, region: &str) -> Fault {
        self.region = Some(region.to_string());
        self
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.remaining = Some(n);
        self
    }

    /// Hits only a share `rate` (0.0–1.0) of the matching requests.
    pub fn with_rate(mut self, rate: f64) -> Fault {
        self.rate = rate;
        self
    }

    fn matches(&self, account: &str, region: &str, action: &str) -> bool {
        self.action == action
            && self.account.as_deref().is_none_or(|a| a == account)
            && self.region.as_deref().is_none_or(|r| r == region)
            && self.remaining != Some(0)
    }
}

/// A request the simulator received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `Action` parameter.
    pub action: String,
    /// The caller's account (empty when the key was unknown).
    pub account: String,
    /// The region from the SigV4 credential scope.
    pub region: String,
    /// The service from the SigV4 credential scope (`ec2` or `sts`).
    pub service: String,
    /// Every form parameter, in order.
    pub params: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        super::param(&self.params, name)
    }
}

/// The simulated world: images per (account, region), the keys it knows, faults, and a log of
/// requests.
#[derive(Debug, Default)]
pub struct World {
    pub(super) images: BTreeMap<(String, String), Vec<FastLaunchImage>>,
    pub(super) keys: HashMap<String, String>,
    pub(super) key_expiry: HashMap<String, SystemTime>,
    pub(super) denied_roles: BTreeSet<String>,
    pub(super) faults: Vec<Fault>,
    pub(super) received: Vec<ReceivedRequest>,
    pub(super) issued_keys: u64,
    pub(super) rng: fastrand::Rng,
    /// SQS queues by URL.
    pub(super) queues: BTreeMap<String, super::sqs::SimQueue>,
    pub(super) issued_receipts: u64,
    /// Message ids deleted from the queues, in order.
    pub(super) deleted: Vec<String>,
    /// CloudWatch metrics (namespace `AWS/EC2`) per (account, region): raw datapoints by
    /// (metric name, dimensions).
    pub(super) metrics: BTreeMap<(String, String), super::cloudwatch::SimMetrics>,
    /// Metrics per ListMetrics page (CloudWatch: 500; 0 means 500).
    pub list_metrics_page_size: usize,
    /// Datapoints per GetMetricData page (CloudWatch: 100,800 by default; 0 means that).
    pub metric_data_page_size: usize,
    /// The organization (AWS Organizations), if any.
    pub organization: Option<super::organizations::SimOrganization>,
    /// Opt-in regions each account has opted in to (DescribeRegions).
    pub opted_in_regions: BTreeMap<String, BTreeSet<String>>,
    /// Metric names ListMetrics leaves out, as CloudWatch does for a metric without data for two
    /// weeks or created in the last 15 minutes; GetMetricData still answers for them.
    pub unlisted_metrics: BTreeSet<String>,
    /// How many received requests are kept for inspection (the oldest go first).
    pub max_received: usize,
    /// Added to every answer.
    pub latency: Duration,
    /// Up to this much more is added to every answer, drawn per request.
    pub latency_jitter: Duration,
    /// Lifetime of the credentials AssumeRole issues when the request names none.
    pub default_session: Duration,
}

impl World {
    /// An empty world where `access_key_id` is the base credentials of `account`.
    pub fn new(access_key_id: &str, account: &str) -> World {
        let mut world = World {
            default_session: Duration::from_secs(3600),
            max_received: usize::MAX,
            ..World::default()
        };
        world
            .keys
            .insert(access_key_id.to_string(), account.to_string());
        world
    }

    /// Replaces the images of an (account, region).
    pub fn set_images(&mut self, account: &str, region: &str, images: Vec<FastLaunchImage>) {
        self.images
            .insert((account.to_string(), region.to_string()), images);
    }

    /// The images of an (account, region), to change in place.
    pub fn images_mut(&mut self, account: &str, region: &str) -> &mut Vec<FastLaunchImage> {
        self.images
            .entry((account.to_string(), region.to_string()))
            .or_default()
    }

    /// Creates an empty SQS queue at `url` (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    pub fn create_queue(&mut self, url: &str) {
        self.queues.entry(url.to_string()).or_default();
    }

    /// Puts a message with `body` on the queue at `url` (created if needed); returns its id.
    pub fn send_message(&mut self, url: &str, body: &str) -> String {
        self.issued_keys += 1;
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.issued_keys, self.issued_keys
        );
        self.queues
            .entry(url.to_string())
            .or_default()
            .messages
            .push_back(super::sqs::SimMessage {
                id: id.clone(),
                body: body.to_string(),
                receive_count: 0,
                receipt: None,
                invisible_until: None,
            });
        id
    }

    /// Sets the `VisibilityTimeout` of the queue at `url` (created if needed): how long a
    /// received message stays invisible (SQS's default, and the simulator's, is 30 s). Applies
    /// to the receives from now on.
    pub fn set_visibility_timeout(&mut self, url: &str, timeout: Duration) {
        self.queues
            .entry(url.to_string())
            .or_default()
            .visibility_timeout = timeout;
    }

    /// Whether a queue exists at `url`.
    pub fn has_queue(&self, url: &str) -> bool {
        self.queues.contains_key(url)
    }

    /// Messages of the queue at `url` now: (visible, in flight: received and still invisible).
    /// Deleted ones are in neither.
    pub fn queue_depth(&self, url: &str) -> (usize, usize) {
        self.queues
            .get(url)
            .map_or((0, 0), |q| q.depth(std::time::Instant::now()))
    }

    /// How many times each message not yet deleted from the queue at `url` was received
    /// (`ApproximateReceiveCount`), by message id, in the order sent.
    pub fn receive_counts(&self, url: &str) -> Vec<(String, u32)> {
        self.queues.get(url).map_or_else(Vec::new, |q| {
            q.messages
                .iter()
                .map(|m| (m.id.clone(), m.receive_count))
                .collect()
        })
    }

    /// The ids of the messages deleted so far.
    pub fn deleted_messages(&self) -> &[String] {
        &self.deleted
    }

    /// Records one CloudWatch datapoint (raw, at one-minute resolution) of `metric_name` in
    /// namespace `AWS/EC2` with `dimensions`, at Unix second `at`. A metric is listed from its
    /// first datapoint on.
    pub fn put_metric(
        &mut self,
        account: &str,
        region: &str,
        metric_name: &str,
        dimensions: &[(&str, &str)],
        at: i64,
        value: f64,
    ) {
        let dimensions: Vec<(String, String)> = dimensions
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.metrics
            .entry((account.to_string(), region.to_string()))
            .or_default()
            .entry((metric_name.to_string(), dimensions))
            .or_default()
            .push((at, value));
    }

    /// Drops the datapoints older than Unix second `before` (metrics stay listed).
    pub fn prune_metrics(&mut self, before: i64) {
        for metrics in self.metrics.values_mut() {
            for points in metrics.values_mut() {
                points.retain(|(at, _)| *at >= before);
            }
        }
    }

    /// Opts `account` in to an opt-in region.
    pub fn opt_in(&mut self, account: &str, region: &str) {
        self.opted_in_regions
            .entry(account.to_string())
            .or_default()
            .insert(region.to_string());
    }

    /// Makes AssumeRole of `role_arn` answer AccessDenied.
    pub fn deny_role(&mut self, role_arn: &str) {
        self.denied_roles.insert(role_arn.to_string());
    }

    /// Adds a fault.
    pub fn add_fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The requests received so far.
    pub fn received(&self) -> &[ReceivedRequest] {
        &self.received
    }

    /// Seeds the generator that decides which requests a fault with a rate hits.
    pub fn seed(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Every (account, region) that has images, with them.
    pub fn all_images_mut(
        &mut self,
    ) -> impl Iterator<Item = (&(String, String), &mut Vec<FastLaunchImage>)> {
        self.images.iter_mut()
    }

    /// The images of an (account, region).
    pub fn images(&self, account: &str, region: &str) -> &[FastLaunchImage] {
        self.images
            .get(&(account.to_string(), region.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Logs a request, keeping at most `max_received` (the oldest go first).
    pub(super) fn log_request(&mut self, request: ReceivedRequest) {
        self.received.push(request);
        let excess = self.received.len().saturating_sub(self.max_received);
        self.received.drain(..excess);
    }

    /// The first matching fault whose rate draw hits, used up by one.
    pub(super) fn take_fault(
        &mut self,
        account: &str,
        region: &str,
        action: &str,
    ) -> Option<FaultKind> {
        let rng = &mut self.rng;
        let fault = self
            .faults
            .iter_mut()
            .filter(|f| f.matches(account, region, action))
            .find(|f| f.rate >= 1.0 || rng.f64() < f.rate)?;
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        Some(fault.kind.clone())
    }

    /// The delay added to every answer: `latency` plus up to `latency_jitter`.
    pub(super) fn delay(&mut self) -> Duration {
        let jitter = self.latency_jitter.mul_f64(self.rng.f64());
        self.latency + jitter
    }
}
