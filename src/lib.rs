//! # fast-launch-exporter
//!
//! A Prometheus exporter for AWS EC2 Windows *fast launch*. It pages `DescribeFastLaunchImages`
//! for every configured account (reached by STS AssumeRole) and region on a schedule, and serves
//! the result as gauges on `/metrics`.
//!
//! The data flows through one module per step:
//!
//! ```text
//! config     YAML file -> validated Config (accounts, regions, filters, durations)
//! aws        the only module that uses the SDK: client per target, AssumeRole, paging, error codes
//! collector  schedule: interval, jitter, concurrency, timeout, no overlap
//! store      latest complete image list per target, staleness
//! metrics    renders the exposition from the store on each scrape
//! http       hyper server: /metrics, /, /-/healthy, /-/ready
//! simulator  an EC2 + STS endpoint speaking the AWS wire format, for tests and demos
//! demo       the exporter against the simulator, with a world that changes over minutes
//! ```
//!
//! `main.rs` only parses flags, sets up logging, loads the config and calls [`run`].

pub mod aws;
pub mod collector;
pub mod config;
pub mod demo;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod permissions;
pub mod simulator;
pub mod store;
pub mod web_config;

use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use aws::load_base_config;
pub use config::{Config, ConfigError};

/// Where and how the HTTP server serves.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The path metrics are served on (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// The most connections served at once (`--web.max-connections`).
    pub max_connections: usize,
    /// TLS, basic auth and headers (`--web.config.file`).
    pub web_config: web_config::WebConfig,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            telemetry_path: "/metrics".to_string(),
            max_connections: 64,
            web_config: web_config::WebConfig::default(),
        }
    }
}

/// Re-reads the configuration for a reload (`SIGHUP`, `POST /-/reload`).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// A reload request; the answer says whether the new configuration was taken.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Runs the exporter until `shutdown` is cancelled: collects every target of `config` with
/// clients built on `base` and serves HTTP on `listener`. With a `loader`, `SIGHUP` and
/// `POST /-/reload` re-read the configuration: a valid one takes effect (targets that stay keep
/// their data), an invalid one is refused and the running one stays. Returns once the
/// collectors have stopped and in-flight HTTP requests have finished.
pub async fn run(
    config: Config,
    base: SdkConfig,
    listener: TcpListener,
    web: WebOptions,
    loader: Option<ConfigLoader>,
    shutdown: CancellationToken,
) {
    let store = Arc::new(store::Store::new(&config));
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(http::AppState {
        store: store.clone(),
        renderer: metrics::MetricsRenderer::new(),
        telemetry_path: web.telemetry_path.clone(),
        reload: reload_tx.clone(),
        web_config: web.web_config.clone(),
    });
    let server = tokio::spawn(http::serve(
        listener,
        state,
        web.max_connections,
        shutdown.clone(),
    ));
    let sighup = tokio::spawn(forward_sighup(reload_tx, shutdown.clone()));
    let mut collector = collector::Collector::new(base, store.clone(), shutdown.clone());
    collector.apply(&config);
    loop {
        tokio::select! {
            request = reload_rx.recv() => {
                let Some(respond) = request else { break };
                let result = match &loader {
                    None => Ok(()),
                    Some(load) => load().map(|new| {
                        store.apply_config(&new);
                        collector.apply(&new);
                        info!(targets = new.targets().count(), "configuration reloaded");
                    }),
                };
                store.record_reload(result.is_ok(), std::time::SystemTime::now());
                let result = result.map_err(|e| {
                    error!(error = %e, "configuration reload refused; the running configuration stays");
                    e.to_string()
                });
                let _ = respond.send(result);
            }
            _ = shutdown.cancelled() => break,
        }
    }
    collector.stop().await;
    let _ = sighup.await;
    let _ = server.await;
}

/// Collects every target of `config` once and returns the exposition text (without `process_*`
/// metrics, which mean nothing after the process exits) and whether every target succeeded.
/// For `--once`: cron, the node_exporter textfile collector, debugging.
pub async fn collect_once(config: &Config, base: &SdkConfig) -> (String, bool) {
    let store = Arc::new(store::Store::new(config));
    collector::collect_once(config, base, store.clone()).await;
    let now = std::time::SystemTime::now();
    let text = metrics::MetricsRenderer::without_process().render(&store, now);
    let (_, targets) = store.snapshot(now);
    (text, targets.iter().all(|t| t.last_ok))
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
