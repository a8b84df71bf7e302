//! Demo mode: the normal exporter against the built-in simulator, with a simulated world whose
//! images move through the fast-launch states over minutes, and one region that is throttled now
//! and then. Nothing here talks to AWS.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::aws::Base;
use crate::config::{AccountConfig, CollectionSettings, Config, DEFAULT_SESSION_NAME};
use crate::domain::model::{unix_now, unix_seconds, FastLaunchImage, FastLaunchState};
use crate::domain::model::{CloudWatchSpec, Query, RoleSpec};
use crate::events::state_change_event;
use crate::serve::WebOptions;
use crate::sim::{Fault, FaultKind, Simulator, World};

/// Regions the simulated world uses, in order.
pub const DEMO_REGIONS: [&str; 17] = [
    "us-east-1",
    "eu-west-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
    "us-east-2",
    "us-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-northeast-3",
];
/// The most simulated accounts.
pub const MAX_ACCOUNTS: usize = 1000;
/// Names of the simulated accounts, in order; the first uses the base credentials.
const ACCOUNT_NAMES: [&str; 6] = ["tooling", "prod", "staging", "dev", "sandbox", "shared"];
const DEMO_KEY: &str = "AKIDDEMOEXAMPLE";
const DEMO_SECRET: &str = "demo-secret";
/// The demo's event queue (in the first simulated account).
pub const DEMO_QUEUE: &str =
    "https://sqs.us-east-1.amazonaws.com/111111111111/fast-launch-demo-events";
/// How often the simulated world moves.
/// The demo reads CloudWatch at its finest period, so that launches show within minutes.
pub const DEMO_CLOUDWATCH: CloudWatchSpec = CloudWatchSpec {
    period: Duration::from_secs(60),
    lookback: Duration::from_secs(600),
};
const CHURN_TICK: Duration = Duration::from_secs(2);

/// The knobs of the simulated world.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Accounts (1–1000): the first uses the base credentials, the others are reached by AssumeRole.
    pub accounts: usize,
    /// Regions per account (1–17).
    pub regions: usize,
    /// Images per (account, region).
    pub images: usize,
    /// Share of images that move to their next state on each 2-second tick (0–1).
    pub churn: f64,
    /// Share of transitions that fail (enabling → enabling-failed …) (0–1).
    pub failure_rate: f64,
    /// Share of DescribeFastLaunchImages calls in the last region answered RequestLimitExceeded.
    pub throttle_rate: f64,
    /// Seed of every random choice, so that a run can be repeated.
    pub seed: u64,
    /// The exporter's collection interval.
    pub interval: Duration,
    /// The exporter's `collection.concurrency`.
    pub concurrency: usize,
    /// The exporter's `collection.page_size`.
    pub page_size: i32,
    /// Added to every simulated AWS answer.
    pub latency: Duration,
    /// Up to this much more is added to every answer.
    pub latency_jitter: Duration,
    /// Share of targets (chosen by the seed) whose calls fail now and then.
    pub faulty_targets: f64,
    /// Share of a faulty target's calls that fail.
    pub fault_rate: f64,
    /// How they fail, mixed evenly: names of [`FaultKind::NAMES`].
    pub fault_kinds: Vec<String>,
    /// Whether the exporter reads the simulated CloudWatch (`cloudwatch` on every account).
    pub cloudwatch: bool,
    /// Accounts discovered from a simulated organization, in every enabled region.
    pub organization: bool,
    /// The exporter's shard (`--shard.index`, `--shard.total`).
    pub shard: crate::domain::shard::Shard,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            accounts: 3,
            regions: 3,
            images: 4,
            churn: 0.05,
            failure_rate: 0.2,
            throttle_rate: 0.3,
            seed: 1,
            interval: Duration::from_secs(10),
            concurrency: crate::config::DEFAULT_CONCURRENCY,
            page_size: crate::config::DEFAULT_PAGE_SIZE,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            faulty_targets: 0.0,
            fault_rate: 0.2,
            fault_kinds: FaultKind::NAMES.iter().map(|k| k.to_string()).collect(),
            cloudwatch: true,
            organization: false,
            shard: crate::domain::shard::Shard::default(),
        }
    }
}

impl DemoOptions {
    fn check(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("--demo.{name}: {v} must be between 0 and 1"))
            }
        };
        if !(1..=MAX_ACCOUNTS).contains(&self.accounts) {
            return Err(format!(
                "--demo.accounts: {} must be between 1 and {MAX_ACCOUNTS}",
                self.accounts
            ));
        }
        if !(1..=DEMO_REGIONS.len()).contains(&self.regions) {
            return Err(format!(
                "--demo.regions: {} must be between 1 and {}",
                self.regions,
                DEMO_REGIONS.len()
            ));
        }
        if self.images * self.accounts * self.regions > 1_000_000 {
            return Err("--demo.images × accounts × regions must be at most 1,000,000".to_string());
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err(format!(
                "--demo.concurrency: {} must be between 1 and 1024",
                self.concurrency
            ));
        }
        if !(1..=200).contains(&self.page_size) {
            return Err(format!(
                "--demo.page-size: {} must be between 1 and 200",
                self.page_size
            ));
        }
        share("faulty-targets", self.faulty_targets)?;
        share("fault-rate", self.fault_rate)?;
        if let Some(kind) = self
            .fault_kinds
            .iter()
            .find(|k| FaultKind::from_name(k).is_none())
        {
            return Err(format!(
                "--demo.fault-kinds: {kind:?} is not one of {}",
                FaultKind::NAMES.join(", ")
            ));
        }
        let interval = crate::config::duration::format(self.interval);
        crate::config::duration::INTERVAL
            .check(&interval, self.interval)
            .map_err(|e| format!("--demo.interval: {e}"))?;
        for (flag, latency) in [
            ("latency", self.latency),
            ("latency-jitter", self.latency_jitter),
        ] {
            let text = crate::config::duration::format(latency);
            crate::config::duration::DEMO_LATENCY
                .check(&text, latency)
                .map_err(|e| format!("--demo.{flag}: {e}"))?;
        }
        share("churn", self.churn)?;
        share("failure-rate", self.failure_rate)?;
        share("throttle-rate", self.throttle_rate)
    }
}

/// The 12-digit id of simulated account `index` (111111111111, 222222222222, … then 100000000009 …).
pub fn demo_account_id(index: usize) -> String {
    if index < 9 {
        format!("{}", (index as u64 + 1) * 111_111_111_111)
    } else {
        format!("{}", 100_000_000_000 + index as u64)
    }
}

fn account_name(index: usize) -> String {
    ACCOUNT_NAMES
        .get(index)
        .map_or_else(|| format!("account-{index}"), |name| name.to_string())
}

/// The id of image `n` of (account, region): distinct across the world.
pub fn demo_image_id(account: usize, region: usize, n: usize) -> String {
    format!("ami-{:03x}{:01x}{:013x}", account, region, n)
}

/// The image that stays `enabled` with its snapshots used up for the whole run: its launches
/// are cold, a fixed example for the CloudWatch alerts.
pub fn pinned_starved_image() -> (String, &'static str, String) {
    (demo_account_id(0), DEMO_REGIONS[0], demo_image_id(0, 0, 1))
}

/// The demo's CloudWatch: every minute each `enabled` image launches a few instances, each taking
/// a pre-provisioned snapshot while there is one (a fast launch) or booting cold; the pool gains
/// one snapshot a minute up to the image's target. The starved image launches more than that.
#[derive(Debug, Default)]
pub struct DemoCloudWatch {
    pools: BTreeMap<String, i32>,
    /// Minutes before this Unix second are published.
    published_until: i64,
}

/// Minutes of CloudWatch history the demo starts with, and keeps.
const CLOUDWATCH_HISTORY_MINUTES: i64 = 15;

impl DemoCloudWatch {
    /// Publishes every minute that ended before `now` (Unix seconds) and is not published yet
    /// (at most the history kept), and forgets older datapoints.
    pub fn publish(&mut self, world: &mut World, rng: &mut fastrand::Rng, now: i64) {
        let until = now.div_euclid(60) * 60;
        let from = self
            .published_until
            .max(until - CLOUDWATCH_HISTORY_MINUTES * 60);
        let starved = pinned_starved_image().2;
        let mut enabled: Vec<(String, String, String, i32)> = Vec::new();
        for ((account, region), images) in world.all_images_mut() {
            for image in images.iter() {
                if image.state == Some(FastLaunchState::Enabled) {
                    enabled.push((
                        account.clone(),
                        region.clone(),
                        image.image_id.clone(),
                        image.target_resource_count.unwrap_or(5),
                    ));
                }
            }
        }
        for minute in (from..until).step_by(60) {
            for (account, region, image_id, target) in &enabled {
                let is_starved = *image_id == starved;
                let pool = self.pools.entry(image_id.clone()).or_insert(if is_starved {
                    0
                } else {
                    *target
                });
                let launches = if is_starved { 3 } else { rng.i32(0..=2) };
                let fast = launches.min(*pool);
                *pool -= fast;
                let cold = launches - fast;
                let dimensions = [("ImageId", image_id.as_str())];
                let put = |world: &mut World, name: &str, value: i32| {
                    world.put_metric(account, region, name, &dimensions, minute, f64::from(value));
                };
                put(world, "NumberOfAvailableFastLaunchSnapshots", *pool);
                put(world, "NumberOfInstancesFastLaunched", fast);
                put(world, "NumberOfInstancesNotFastLaunched", cold);
                *pool = (*pool + 1).min(*target);
            }
        }
        self.published_until = until;
        world.prune_metrics(until - CLOUDWATCH_HISTORY_MINUTES * 60);
    }
}

/// The image that stays in `enabling-failed` for the whole run, as a fixed example for alerts.
pub fn pinned_failed_image() -> (String, &'static str, String) {
    (demo_account_id(0), DEMO_REGIONS[0], demo_image_id(0, 0, 0))
}

fn reason_for(state: &FastLaunchState, rng: &mut fastrand::Rng) -> String {
    match state {
        FastLaunchState::EnablingFailed => [
            "Client.InvalidLaunchTemplate: the launch template does not exist",
            "Server.InsufficientInstanceCapacity: insufficient capacity for the instance type",
            "Client.UnauthorizedOperation: the service-linked role cannot launch instances",
        ][rng.usize(..3)]
        .to_string(),
        FastLaunchState::EnabledFailed => {
            "Client.ResourceLimitExceeded: snapshot limit reached while replenishing".to_string()
        }
        FastLaunchState::DisablingFailed => {
            "Server.InternalError: snapshots could not be cleaned up".to_string()
        }
        _ => "Client.UserInitiated".to_string(),
    }
}

fn new_image(
    account: usize,
    region: usize,
    n: usize,
    state: FastLaunchState,
    now: f64,
    rng: &mut fastrand::Rng,
) -> FastLaunchImage {
    FastLaunchImage {
        image_id: demo_image_id(account, region, n),
        owner_id: demo_account_id(account),
        resource_type: "snapshot".to_string(),
        launch_template_id: format!("lt-{:017x}", account * 1000 + region * 100 + n % 3),
        launch_template_name: format!("windows-fast-launch-{}", n % 3),
        launch_template_version: format!("{}", 1 + n % 4),
        state_transition_reason: reason_for(&state, rng),
        state: Some(state),
        // Spread the last transitions over the past day.
        state_transition_time: Some(now - rng.f64() * 86_400.0),
        target_resource_count: Some([5, 10, 10, 20][n % 4]),
        max_parallel_launches: Some(6),
    }
}

/// Builds the simulated world: one image per target starts in each state in turn, and image 0 of
/// the first target is pinned in `enabling-failed`.
pub fn build_world(options: &DemoOptions) -> World {
    let mut world = World::new(DEMO_KEY, &demo_account_id(0));
    world.seed(options.seed);
    world.create_queue(DEMO_QUEUE);
    world.max_received = 1_000;
    world.latency = options.latency;
    world.latency_jitter = options.latency_jitter;
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let now = unix_seconds(SystemTime::now());
    for account in 0..options.accounts {
        for (region, name) in DEMO_REGIONS.iter().enumerate().take(options.regions) {
            let images = (0..options.images)
                .map(|n| {
                    let state = if (account, region, n) == (0, 0, 0) {
                        FastLaunchState::EnablingFailed
                    } else if (account, region, n) == (0, 0, 1) {
                        FastLaunchState::Enabled
                    } else {
                        // Mostly healthy, with every state represented.
                        match rng.usize(..10) {
                            0 => FastLaunchState::Enabling,
                            1 => FastLaunchState::Disabling,
                            2 => FastLaunchState::EnablingFailed,
                            _ => FastLaunchState::Enabled,
                        }
                    };
                    new_image(account, region, n, state, now, &mut rng)
                })
                .collect();
            world.set_images(&demo_account_id(account), name, images);
        }
    }
    if options.organization {
        world.organization = Some(demo_organization(options));
    }
    let kinds: Vec<FaultKind> = options
        .fault_kinds
        .iter()
        .filter_map(|k| FaultKind::from_name(k))
        .collect();
    for (account, region) in faulty_targets(options) {
        for kind in &kinds {
            world.add_fault(Fault {
                account: Some(demo_account_id(account)),
                region: Some(DEMO_REGIONS[region].to_string()),
                action: "DescribeFastLaunchImages".to_string(),
                kind: kind.clone(),
                remaining: None,
                rate: options.fault_rate / kinds.len() as f64,
            });
        }
    }
    if options.throttle_rate > 0.0 {
        let throttled = DEMO_REGIONS[options.regions - 1];
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503)
                .in_region(throttled)
                .with_rate(options.throttle_rate),
        );
    }
    world
}

/// The demo's organization: account 0 manages it; the others sit in one OU per hundred
/// accounts under a `workloads` OU, tagged `fast-launch: enabled` and with a `team`; two more
/// accounts are suspended and one is untagged, so discovery has something to leave out.
pub fn demo_organization(options: &DemoOptions) -> crate::sim::SimOrganization {
    let mut org = crate::sim::SimOrganization::new(&demo_account_id(0));
    org.add_unit("ou-demo-workloads", "r-a1b2");
    org.tag(&demo_account_id(0), "fast-launch", "enabled");
    org.tag(&demo_account_id(0), "team", "platform");
    for index in 1..options.accounts {
        let unit = format!("ou-demo-{:08}", index / 100);
        if !org.units.iter().any(|(id, _)| *id == unit) {
            org.add_unit(&unit, "ou-demo-workloads");
        }
        let id = demo_account_id(index);
        org.add_account(&id, &account_name(index), &unit, "ACTIVE");
        org.tag(&id, "fast-launch", "enabled");
        org.tag(&id, "team", ["windows", "data", "web"][index % 3]);
    }
    for (id, state) in [
        ("999999999901", "SUSPENDED"),
        ("999999999902", "PENDING_CLOSURE"),
    ] {
        org.add_account(id, "leaving", "ou-demo-workloads", state);
        org.tag(id, "fast-launch", "enabled");
    }
    org.add_account("999999999903", "untagged", "ou-demo-workloads", "ACTIVE");
    org
}

/// The (account, region) indexes of the targets that get faults: a seeded share of all targets.
pub fn faulty_targets(options: &DemoOptions) -> Vec<(usize, usize)> {
    let mut rng = fastrand::Rng::with_seed(options.seed.wrapping_add(7));
    let mut chosen = Vec::new();
    for account in 0..options.accounts {
        for region in 0..options.regions {
            if rng.f64() < options.faulty_targets {
                chosen.push((account, region));
            }
        }
    }
    chosen
}

/// Moves every image with probability `churn` to its next state; a disabled image leaves the
/// list and a new one starts enabling in its place.
pub fn churn(
    world: &mut World,
    options: &DemoOptions,
    rng: &mut fastrand::Rng,
    next_id: &mut usize,
) {
    let now = unix_seconds(SystemTime::now());
    let pinned = [pinned_failed_image().2, pinned_starved_image().2];
    let mut replacements: BTreeMap<(String, String), usize> = BTreeMap::new();
    // (account, region, image, new state): each becomes an EventBridge event on the demo queue.
    let mut changes: Vec<(String, String, String, String)> = Vec::new();
    for (key, images) in world.all_images_mut() {
        images.retain_mut(|image| {
            if pinned.contains(&image.image_id) || rng.f64() >= options.churn {
                return true;
            }
            let fails = rng.f64() < options.failure_rate;
            let next = match image.state.clone().unwrap_or(FastLaunchState::Enabled) {
                FastLaunchState::Enabling if fails => FastLaunchState::EnablingFailed,
                FastLaunchState::Enabling => FastLaunchState::Enabled,
                FastLaunchState::Enabled if fails => FastLaunchState::EnabledFailed,
                FastLaunchState::Enabled => FastLaunchState::Disabling,
                FastLaunchState::Disabling if fails => FastLaunchState::DisablingFailed,
                FastLaunchState::Disabling => {
                    *replacements.entry(key.clone()).or_default() += 1;
                    changes.push((
                        key.0.clone(),
                        key.1.clone(),
                        image.image_id.clone(),
                        "disabled".to_string(),
                    ));
                    return false;
                }
                FastLaunchState::EnablingFailed => FastLaunchState::Enabling,
                FastLaunchState::EnabledFailed => FastLaunchState::Enabled,
                FastLaunchState::DisablingFailed | FastLaunchState::Unknown(_) => {
                    FastLaunchState::Disabling
                }
            };
            image.state_transition_reason = reason_for(&next, rng);
            changes.push((
                key.0.clone(),
                key.1.clone(),
                image.image_id.clone(),
                next.as_str().to_string(),
            ));
            image.state = Some(next);
            image.state_transition_time = Some(now);
            true
        });
    }
    for ((account_id, region), count) in replacements {
        let account = (0..options.accounts)
            .find(|a| demo_account_id(*a) == account_id)
            .unwrap_or(0);
        let region_index = DEMO_REGIONS.iter().position(|r| *r == region).unwrap_or(0);
        for _ in 0..count {
            *next_id += 1;
            let mut image = new_image(
                account,
                region_index,
                *next_id,
                FastLaunchState::Enabling,
                now,
                rng,
            );
            image.state_transition_time = Some(now);
            changes.push((
                account_id.clone(),
                region.clone(),
                image.image_id.clone(),
                "enabling".to_string(),
            ));
            world.images_mut(&account_id, &region).push(image);
        }
    }
    if world.has_queue(DEMO_QUEUE) {
        let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        for (account, region, image, state) in changes {
            world.send_message(
                DEMO_QUEUE,
                &state_change_event(&account, &region, &image, &state, &time),
            );
        }
    }
}

/// The exporter configuration for the simulated world.
pub fn demo_config(options: &DemoOptions) -> Config {
    let regions: Vec<String> = DEMO_REGIONS
        .iter()
        .take(options.regions)
        .map(|r| r.to_string())
        .collect();
    let accounts = (0..options.accounts)
        .map(|index| AccountConfig {
            name: Some(account_name(index)),
            role: (index > 0).then(|| RoleSpec {
                arn: format!(
                    "arn:aws:iam::{}:role/FastLaunchReader",
                    demo_account_id(index)
                ),
                account_id: demo_account_id(index),
                external_id: Some("demo-external-id".to_string()),
                session_name: DEFAULT_SESSION_NAME.to_string(),
                duration: None,
            }),
            regions: regions.clone(),
            query: Query::default(),
            labels: BTreeMap::from([("environment".to_string(), account_name(index))]),
            cloudwatch: options.cloudwatch.then_some(DEMO_CLOUDWATCH),
            all_regions: false,
        })
        .collect();
    let discovery = options
        .organization
        .then(|| crate::config::OrganizationsDiscovery {
            role: None,
            member_role_arn: "arn:aws:iam::{account_id}:role/FastLaunchReader".to_string(),
            member_external_id: Some("demo-external-id".to_string()),
            organizational_units: Vec::new(),
            exclude_accounts: Vec::new(),
            tags: BTreeMap::from([("fast-launch".to_string(), "enabled".to_string())]),
            labels_from_tags: vec![("team".to_string(), "team".to_string())],
            interval: Duration::from_secs(60),
        });
    // With the organization, only the base account is listed; discovery finds the rest (the
    // base account's explicit entry wins over its discovered one).
    let mut accounts: Vec<AccountConfig> = accounts;
    if options.organization {
        accounts.truncate(1);
        accounts[0].all_regions = true;
    }
    Config {
        collection: CollectionSettings {
            interval: options.interval,
            timeout: options.interval,
            max_staleness: options.interval * 3,
            concurrency: options.concurrency,
            page_size: options.page_size,
            ..CollectionSettings::default()
        },
        accounts,
        warnings: Vec::new(),
        discovery,
        defaults: crate::config::AccountDefaults {
            regions,
            all_regions: options.organization,
            query: Query::default(),
            cloudwatch: options.cloudwatch.then_some(DEMO_CLOUDWATCH),
        },
        events: Some(crate::config::EventsSettings {
            queue: crate::domain::model::QueueSpec {
                url: DEMO_QUEUE.to_string(),
                region: DEMO_REGIONS[0].to_string(),
                account_id: demo_account_id(0),
                role: None,
                visibility: crate::domain::model::QueueSpec::visibility_for(
                    CollectionSettings::default().event_debounce,
                    options.interval,
                ),
            },
            wait_time: crate::config::DEFAULT_WAIT_TIME,
            max_messages: 10,
        }),
        metrics: crate::config::MetricsFilter::default(),
    }
}

/// Runs the simulator on a loopback port and the normal exporter against it until `shutdown`;
/// with `simulator`, against the simulator another process serves ([`simulate`], started with
/// the same options), so that the exporter's own memory and CPU show apart from the world's.
pub async fn run(
    options: DemoOptions,
    simulator: Option<String>,
    listeners: Vec<TcpListener>,
    web: WebOptions,
    shutdown: CancellationToken,
) -> Result<(), String> {
    options.check()?;
    let in_process = match simulator {
        Some(_) => None,
        None => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot start the simulator: {e}"))?;
            Some(start_simulator(&options, listener)?)
        }
    };
    let url = match (&in_process, simulator) {
        (Some(simulator), _) => simulator.url(),
        (None, Some(url)) => url,
        (None, None) => unreachable!("one of the two is set"),
    };
    // The ordinary endpoint override, as AWS_ENDPOINT_URL would set it, with static credentials.
    let base = Base::with_endpoint(&url, DEMO_REGIONS[0], DEMO_KEY, DEMO_SECRET).await;
    let address = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (account, region, image) = pinned_failed_image();
    info!(
        metrics = %format!("http://{address}{}", web.telemetry_path),
        targets = %format!("http://{address}/"),
        failed_image = %format!("{image} in {account}/{region}"),
        "demo: open these to watch the metrics change"
    );
    let world = async {
        if let Some(simulator) = &in_process {
            move_world(simulator, &options, &shutdown).await;
        }
    };
    tokio::join!(
        crate::app::run(
            demo_config(&options),
            options.shard,
            base,
            listeners,
            web,
            None,
            shutdown.clone()
        ),
        world
    );
    Ok(())
}

/// Serves the simulated world of `options` on `listener` until `shutdown`, for a `demo
/// --demo.simulator URL` in another process.
pub async fn simulate(
    options: DemoOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), String> {
    options.check()?;
    let simulator = start_simulator(&options, listener)?;
    move_world(&simulator, &options, &shutdown).await;
    Ok(())
}

/// The simulator of `options`' world, serving on `listener`.
fn start_simulator(options: &DemoOptions, listener: TcpListener) -> Result<Simulator, String> {
    let simulator = Simulator::start(listener, build_world(options))
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    info!(
        simulator = %simulator.url(),
        accounts = options.accounts,
        regions = options.regions,
        images_per_target = options.images,
        throttled_region = DEMO_REGIONS[options.regions - 1],
        "demo: simulated EC2 fast launch world started"
    );
    Ok(simulator)
}

/// Moves the world (churn, CloudWatch launches) every tick until `shutdown`.
async fn move_world(simulator: &Simulator, options: &DemoOptions, shutdown: &CancellationToken) {
    let mut rng = fastrand::Rng::with_seed(options.seed.wrapping_add(1));
    let mut next_id = options.images;
    let mut cloudwatch = DemoCloudWatch::default();
    let mut ticker = tokio::time::interval(CHURN_TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let mut world = simulator.world();
                churn(&mut world, options, &mut rng, &mut next_id);
                if options.cloudwatch {
                    cloudwatch.publish(&mut world, &mut rng, unix_now());
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_world_is_deterministic_and_keeps_its_pinned_failure() {
        let options = DemoOptions {
            churn: 1.0,
            ..DemoOptions::default()
        };
        let mut a = build_world(&options);
        let mut b = build_world(&options);
        let (account, region, image) = pinned_failed_image();
        for _ in 0..20 {
            for (world, seed) in [(&mut a, 7), (&mut b, 7)] {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut next = options.images;
                churn(world, &options, &mut rng, &mut next);
            }
        }
        let states = |w: &World| -> Vec<Option<FastLaunchState>> {
            w.images(&demo_account_id(1), "eu-west-1")
                .iter()
                .map(|i| i.state.clone())
                .collect()
        };
        assert_eq!(states(&a), states(&b));
        let pinned = a
            .images(&account, region)
            .iter()
            .find(|i| i.image_id == image)
            .unwrap();
        assert_eq!(pinned.state, Some(FastLaunchState::EnablingFailed));
    }

    #[test]
    fn demo_config_has_one_base_account_and_the_rest_by_assume_role() {
        let config = demo_config(&DemoOptions::default());
        assert_eq!(config.targets().count(), 9);
        assert!(config.accounts[0].role.is_none());
        assert!(config.accounts[1..].iter().all(|a| a.role.is_some()));
        assert!(DemoOptions {
            churn: 2.0,
            ..DemoOptions::default()
        }
        .check()
        .is_err());
    }
}
