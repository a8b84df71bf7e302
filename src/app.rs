//! The supervisor: builds the exporter's parts, plans the targets and reconciles them (at start,
//! every discovery interval and on reload), and stops everything on shutdown. One
//! [`Supervisor::replan`] is the only way targets change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::discover::Planner;
use crate::domain::ports::Connect;
use crate::domain::shard::Shard;
use crate::expose::{MetricsRenderer, Sources};
use crate::serve::{AppState, ReloadRequest, WebOptions};
use crate::targets::{ReconcileReport, Registry};

/// How long rendering ahead waits after a change, so that a burst of collections landing
/// together (every target's first collection, an interval's cycle) is rendered once.
const RENDER_AHEAD_DELAY: Duration = Duration::from_secs(1);

/// Re-reads the configuration for a reload (`SIGHUP`, `POST /-/reload`).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Renders the exposition's cached lines when collections land, so that scrapes find them
/// ready (the scrape renders what is still missing itself), until `shutdown`.
async fn render_ahead(state: Arc<AppState>, shutdown: CancellationToken) {
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

/// Plans the targets and hands them to the registry: the sequence plan -> mark complete ->
/// reconcile, and when to plan again.
struct Supervisor {
    planner: Planner,
    registry: Arc<Registry>,
    /// When discovery asks to plan again (None: only on reload).
    next_plan: Option<Instant>,
    /// The events settings the receiver started with: it keeps them until a restart.
    startup_events: Option<crate::config::EventsSettings>,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Plans `config` and reconciles the registry to it; None when shutdown came first.
    async fn replan(&mut self, config: &Config) -> Option<(usize, ReconcileReport)> {
        // What is served applies at once; a scrape never needs the plan for it.
        self.registry.set_metrics_filter(config.metrics.clone());
        let plan = tokio::select! {
            plan = self.planner.plan(config) => plan,
            _ = self.shutdown.cancelled() => return None,
        };
        self.next_plan = Planner::next_plan_in(config, &plan).map(|after| Instant::now() + after);
        self.registry.set_plan_complete(plan.incomplete.is_none());
        let targets = plan.specs.len();
        let report = self
            .registry
            .reconcile(plan.specs, config.collection.clone())
            .await;
        Some((targets, report))
    }

    /// Waits until discovery asks to plan again.
    async fn replan_due(&self) {
        match self.next_plan {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Reads the configuration again and, when it is valid, replans with it. `Ok(None)`:
    /// shutdown came first.
    async fn reload(&mut self, loader: &ConfigLoader) -> Result<Option<Config>, ConfigError> {
        let new = loader()?;
        log_warnings(&new);
        // The receiver runs with the start-up queue; debounce is a collection setting and
        // applies now.
        if new.events != self.startup_events {
            warn!("the events queue settings changed: they take effect at the next restart (events.debounce applies now)");
        }
        let Some((targets, report)) = self.replan(&new).await else {
            return Ok(None);
        };
        info!(
            targets,
            added = report.added.len(),
            restarted = report.restarted.len(),
            removed = report.removed.len(),
            "configuration reloaded"
        );
        Ok(Some(new))
    }
}

/// Runs the exporter until `shutdown` is cancelled: collects every target of `config` that
/// belongs to `shard` with clients made by `connect` (an [`crate::aws::Base`]) and serves HTTP
/// on `listeners`. With a `loader`, `SIGHUP` and `POST /-/reload` re-read the configuration: a
/// valid one is reconciled (targets that stay keep their data), an invalid one is refused and
/// the running one stays. Returns once every target task has been joined and in-flight HTTP
/// requests have finished.
pub async fn run(
    config: Config,
    shard: Shard,
    connect: impl Connect + 'static,
    listeners: Vec<TcpListener>,
    web: WebOptions,
    loader: Option<ConfigLoader>,
    shutdown: CancellationToken,
) {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let registry = Registry::new(connect.clone(), shutdown.clone());
    let planner = Planner::new(connect.clone(), shard, connect.home_region());
    let sources = Sources {
        shard,
        discovery: Some(planner.stats()),
    };
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(AppState::new(
        registry.clone(),
        MetricsRenderer::new().with_sources(sources),
        reload_tx.clone(),
        &web,
    ));
    let rendering = tokio::spawn(render_ahead(state.clone(), shutdown.clone()));
    let server = tokio::spawn(crate::serve::serve(
        listeners,
        state.clone(),
        web.max_connections,
        shutdown.clone(),
    ));
    let sighup = tokio::spawn(forward_sighup(reload_tx, shutdown.clone()));
    log_warnings(&config);
    let mut supervisor = Supervisor {
        planner,
        registry: registry.clone(),
        next_plan: None,
        startup_events: config.events.clone(),
        shutdown: shutdown.clone(),
    };
    supervisor.replan(&config).await;
    // After the first reconcile, so that events waiting at start-up find their targets; the
    // receiver's families are shown from then on.
    let receiver = config.events.clone().map(|events| {
        let stats = Arc::new(crate::events::stats(&events, shard));
        state.renderer.show_events(stats.clone());
        let queue = connect.connect_queue(
            &events.queue,
            config.collection.max_attempts,
            stats.counters.clone(),
        );
        tokio::spawn(crate::events::run_receiver(
            queue,
            events,
            shard,
            registry.clone(),
            stats,
            shutdown.clone(),
        ))
    });
    let mut config = config;
    loop {
        tokio::select! {
            _ = supervisor.replan_due() => {
                let Some((_, report)) = supervisor.replan(&config).await else { break };
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
                    Some(loader) => match supervisor.reload(loader).await {
                        Ok(None) => break,
                        Ok(Some(new)) => {
                            config = new;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                registry.record_reload(result.is_ok(), SystemTime::now());
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

/// Collects every target of `config` in `shard` once and returns the exposition text (without
/// `process_*` metrics, which mean nothing after the process exits) and whether every target
/// succeeded. For `--once`: cron, the node_exporter textfile collector, debugging.
pub async fn collect_once(
    config: &Config,
    shard: Shard,
    connect: impl Connect + 'static,
) -> (String, bool) {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let registry = Registry::new(connect.clone(), CancellationToken::new());
    registry.set_metrics_filter(config.metrics.clone());
    log_warnings(config);
    let planner = Planner::new(connect.clone(), shard, connect.home_region());
    let plan = planner.plan(config).await;
    if let Some(why) = &plan.incomplete {
        error!(reason = %why, "not every target is known; the output is incomplete");
    }
    let complete = plan.incomplete.is_none();
    registry
        .collect_once(plan.specs, config.collection.clone())
        .await;
    let renderer = MetricsRenderer::without_process().with_sources(Sources {
        shard,
        discovery: Some(planner.stats()),
    });
    let text = renderer.render(&registry, SystemTime::now());
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
