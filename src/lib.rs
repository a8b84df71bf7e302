//! # fast-launch-exporter
//!
//! A Prometheus exporter for AWS EC2 Windows *fast launch*. It pages `DescribeFastLaunchImages`
//! for every configured account (reached by STS AssumeRole) and region on a schedule, and serves
//! the result as gauges on `/metrics`.
//!
//! The data flows through one module per step:
//!
//! ```text
//! config     YAML file -> validated Config -> Vec<TargetSpec> + collection settings
//! model      plain types: TargetSpec, TargetKey, FastLaunchImage, FastLaunchState
//! calls      Api, bounded ErrorCode, ApiError, the AttemptSink trait and ApiCounters
//! aws        the only module that uses the SDK: Base, client per TargetSpec, AssumeRole, paging
//! registry   where a target lives: spec, data, health, counters, account id, task; reconcile()
//! collector  one target's schedule and collection: interval, jitter, concurrency, timeout
//! metrics    renders the exposition from registry snapshots, per-image lines cached per change
//! exposition the exposition as shared chunks and fresh parts; the body that sends them (gzip)
//! http       hyper server: /metrics, /, /-/healthy, /-/ready, /-/reload
//! simulator  EC2 + STS endpoints speaking the AWS wire format, for tests and demos
//! demo       the exporter against the simulator, with a world that changes over minutes
//! ```
//!
//! `main.rs` only parses flags, sets up logging, loads the config and calls [`run`].

pub mod aws;
pub mod calls;
pub mod collector;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod events;
pub mod exposition;
pub mod healthcheck;
pub mod http;
pub mod launches;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod permissions;
pub mod registry;
pub mod shard;
pub mod simulator;
pub mod sync;
pub mod web_config;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use aws::Base;
use collector::Connect;
pub use config::{Config, ConfigError};
use registry::Registry;

/// How long rendering ahead waits after a change, so that a burst of collections landing
/// together (every target's first collection, an interval's cycle) is rendered once.
const RENDER_AHEAD_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Renders the exposition's cached lines when collections land, so that scrapes find them
/// ready (the scrape renders what is still missing itself), until `shutdown`.
async fn render_ahead(state: Arc<http::AppState>, shutdown: CancellationToken) {
    let mut changes = state.registry.changes();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RENDER_AHEAD_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
        changes.borrow_and_update();
        let shared = state.clone();
        // Milliseconds per thousand images: on the blocking pool.
        let _ = tokio::task::spawn_blocking(move || shared.renderer.render_ahead(&shared.registry))
            .await;
    }
}

/// Where and how the HTTP server serves.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The path metrics are served on (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// The most connections open at once, 0 for no limit (`--web.max-connections`).
    pub max_connections: usize,
    /// The most `/metrics` requests served at once, 0 for no limit (`--web.max-requests`).
    pub max_requests: usize,
    /// TLS, basic auth and headers (`--web.config.file`).
    pub web_config: web_config::WebConfig,
    /// The file `web_config` was read from, watched for changes.
    pub web_config_file: Option<std::path::PathBuf>,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            telemetry_path: "/metrics".to_string(),
            max_connections: 0,
            max_requests: 40,
            web_config: web_config::WebConfig::default(),
            web_config_file: None,
        }
    }
}

/// Raises the soft limit of open files to the hard limit, as Go programs such as node_exporter
/// do at start: every idle or slow HTTP connection holds a descriptor, and the common soft
/// limit of 1,024 would cap them long before memory does.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                    tracing::debug!("cannot raise the open files limit");
                }
            }
        }
    }
}

/// Re-reads the configuration for a reload (`SIGHUP`, `POST /-/reload`).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// A reload request; the answer says whether the new configuration was taken.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Runs the exporter until `shutdown` is cancelled: collects every target of `config` with
/// clients made by `connect` (an [`aws::Base`]) and serves HTTP on `listeners`. With a `loader`,
/// `SIGHUP` and `POST /-/reload` re-read the configuration: a valid one is reconciled (targets
/// that stay keep their data), an invalid one is refused and the running one stays. Returns once
/// every target task has been joined and in-flight HTTP requests have finished.
pub async fn run(
    config: Config,
    connect: impl Connect + 'static,
    listeners: Vec<TcpListener>,
    web: WebOptions,
    loader: Option<ConfigLoader>,
    shutdown: CancellationToken,
) {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let registry = Registry::new(connect.clone(), shutdown.clone());
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(http::AppState {
        registry: registry.clone(),
        renderer: metrics::MetricsRenderer::new(),
        telemetry_path: web.telemetry_path.clone(),
        reload: reload_tx.clone(),
        web_config: web_config::LiveWebConfig::new(
            web.web_config_file.clone(),
            web.web_config.clone(),
        ),
        scrapes: (web.max_requests > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(web.max_requests))),
    });
    let rendering = tokio::spawn(render_ahead(state.clone(), shutdown.clone()));
    let server = tokio::spawn(http::serve(
        listeners,
        state,
        web.max_connections,
        shutdown.clone(),
    ));
    let sighup = tokio::spawn(forward_sighup(reload_tx, shutdown.clone()));
    log_warnings(&config);
    let planner = discovery::Planner::new(connect.clone(), config.shard, connect.home_region());
    registry.set_discovery(config.shard, Some(planner.stats()));
    let plan = tokio::select! {
        plan = planner.plan(&config) => Some(plan),
        _ = shutdown.cancelled() => None,
    };
    let mut next_plan = None;
    if let Some(plan) = plan {
        next_plan = discovery::Planner::next_plan_in(&config, &plan)
            .map(|after| tokio::time::Instant::now() + after);
        registry.set_plan_complete(plan.incomplete.is_none());
        registry
            .reconcile(plan.specs, config.collection.clone())
            .await;
    }
    let startup_events = config.events.clone();
    let mut config = config;
    // After the first reconcile, so that events waiting at start-up find their targets.
    let receiver = config.events.clone().map(|events| {
        let stats = Arc::new(events::EventStats::new(&events));
        registry.set_event_stats(Some(stats.clone()));
        let queue = connect.connect_queue(
            &events.queue,
            config.collection.max_attempts,
            stats.counters.clone(),
        );
        tokio::spawn(events::run_receiver(
            queue,
            events,
            registry.clone(),
            stats,
            shutdown.clone(),
        ))
    });
    loop {
        let replan = async {
            match next_plan {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = replan => {
                let plan = tokio::select! {
                    plan = planner.plan(&config) => plan,
                    _ = shutdown.cancelled() => break,
                };
                next_plan = discovery::Planner::next_plan_in(&config, &plan)
                    .map(|after| tokio::time::Instant::now() + after);
                registry.set_plan_complete(plan.incomplete.is_none());
                let report = registry.reconcile(plan.specs, config.collection.clone()).await;
                if !report.added.is_empty() || !report.removed.is_empty() {
                    info!(
                        added = report.added.len(),
                        removed = report.removed.len(),
                        "targets changed by discovery"
                    );
                }
            }
            request = reload_rx.recv() => {
                let Some(respond) = request else { break };
                let result = match &loader {
                    None => Ok(()),
                    Some(load) => match load() {
                        Ok(new) => {
                            log_warnings(&new);
                            // The receiver runs with the start-up queue; debounce is a collection
                            // setting and applies now.
                            if new.events != startup_events {
                                warn!("the events queue settings changed: they take effect at the next restart (events.debounce applies now)");
                            }
                            let plan = tokio::select! {
                                plan = planner.plan(&new) => plan,
                                _ = shutdown.cancelled() => break,
                            };
                            next_plan = discovery::Planner::next_plan_in(&new, &plan)
                                .map(|after| tokio::time::Instant::now() + after);
                            registry.set_plan_complete(plan.incomplete.is_none());
                            let targets = plan.specs.len();
                            let report = registry
                                .reconcile(plan.specs, new.collection.clone())
                                .await;
                            config = new;
                            info!(
                                targets,
                                added = report.added.len(),
                                restarted = report.restarted.len(),
                                removed = report.removed.len(),
                                "configuration reloaded"
                            );
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                registry.record_reload(result.is_ok(), std::time::SystemTime::now());
                let result = result.map_err(|e| {
                    error!(error = %e, "configuration reload refused; the running configuration stays");
                    e.to_string()
                });
                let _ = respond.send(result);
            }
            _ = shutdown.cancelled() => break,
        }
    }
    registry.stop().await;
    if let Some(receiver) = receiver {
        let _ = receiver.await;
    }
    let _ = sighup.await;
    let _ = rendering.await;
    let _ = server.await;
}

/// Logs what the configuration accepted but that looks wrong.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        warn!(warning = %warning, "configuration");
    }
}

/// Collects every target of `config` once and returns the exposition text (without `process_*`
/// metrics, which mean nothing after the process exits) and whether every target succeeded.
/// For `--once`: cron, the node_exporter textfile collector, debugging.
pub async fn collect_once(config: &Config, connect: impl Connect + 'static) -> (String, bool) {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let registry = Registry::new(connect.clone(), CancellationToken::new());
    log_warnings(config);
    let planner = discovery::Planner::new(connect.clone(), config.shard, connect.home_region());
    registry.set_discovery(config.shard, Some(planner.stats()));
    let plan = planner.plan(config).await;
    if let Some(why) = &plan.incomplete {
        error!(reason = %why, "not every target is known; the output is incomplete");
    }
    let complete = plan.incomplete.is_none();
    registry
        .collect_once(plan.specs, config.collection.clone())
        .await;
    let text =
        metrics::MetricsRenderer::without_process().render(&registry, std::time::SystemTime::now());
    (text, complete && registry.all_succeeded())
}

/// Turns `SIGHUP` into reload requests.
async fn forward_sighup(
    reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        }
    };
    loop {
        tokio::select! {
            Some(()) = hangups.recv() => {
                info!(signal = "SIGHUP", "reloading configuration");
                let (respond, _answer) = tokio::sync::oneshot::channel();
                if reload.send(respond).await.is_err() {
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
