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
pub mod simulator;
pub mod store;

use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use aws::load_base_config;
pub use config::{Config, ConfigError};

/// Where and how the HTTP server serves.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The path metrics are served on (`--web.telemetry-path`).
    pub telemetry_path: String,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            telemetry_path: "/metrics".to_string(),
        }
    }
}

/// Runs the exporter until `shutdown` is cancelled: collects every target of `config` with
/// clients built on `base` and serves HTTP on `listener`. Returns once the collectors have
/// stopped and in-flight HTTP requests have finished.
pub async fn run(
    config: Config,
    base: SdkConfig,
    listener: TcpListener,
    web: WebOptions,
    shutdown: CancellationToken,
) {
    let store = Arc::new(store::Store::new(&config));
    let state = Arc::new(http::AppState {
        store: store.clone(),
        renderer: metrics::MetricsRenderer::new(),
        telemetry_path: web.telemetry_path,
    });
    tokio::join!(
        collector::run(&config, &base, store, shutdown.clone()),
        http::serve(listener, state, shutdown),
    );
}
