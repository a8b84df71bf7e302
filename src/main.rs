//! The `fast-launch-exporter` binary: flags, logging, config, exit codes. Everything else is in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fast_launch_exporter::demo::{self, DemoOptions};
use fast_launch_exporter::logging::{self, LogFormat, LogLevel};
use fast_launch_exporter::{load_base_config, run, Config, WebOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Exit status for bad configuration or flags (as clap uses for bad flags).
const EXIT_CONFIG: u8 = 2;

/// Prometheus exporter for AWS EC2 Windows fast launch: pages DescribeFastLaunchImages for every
/// configured account and region and serves the result on /metrics.
#[derive(Debug, Parser)]
#[command(name = "fast-launch-exporter", version = VERSION, about, long_about = None)]
struct Flags {
    #[command(subcommand)]
    command: Option<Command>,

    /// Path to the YAML configuration file. Without it: base credentials, AWS_REGION's region.
    #[arg(long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// Address to listen on for HTTP (`:9849` listens on every interface).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":9849",
        global = true
    )]
    listen_address: String,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = telemetry_path, global = true)]
    telemetry_path: String,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: LogLevel,

    /// Output format of log messages.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exporter against a built-in EC2 fast-launch simulator (no AWS, no credentials):
    /// accounts x regions of images that change state over minutes, one region throttled now and then.
    Demo(DemoFlags),
}

/// The simulated world's knobs.
#[derive(Debug, Args)]
struct DemoFlags {
    /// Simulated accounts (1-6); the first uses the base credentials, the others AssumeRole.
    #[arg(long = "demo.accounts", default_value_t = 3)]
    accounts: usize,
    /// Regions per account (1-8).
    #[arg(long = "demo.regions", default_value_t = 3)]
    regions: usize,
    /// Images per (account, region).
    #[arg(long = "demo.images", default_value_t = 4)]
    images: usize,
    /// Share of images that move to their next state every 2 seconds (0-1).
    #[arg(long = "demo.churn", default_value_t = 0.05)]
    churn: f64,
    /// Share of state transitions that fail, e.g. enabling -> enabling-failed (0-1).
    #[arg(long = "demo.failure-rate", default_value_t = 0.2)]
    failure_rate: f64,
    /// Share of DescribeFastLaunchImages calls in the last region answered RequestLimitExceeded (0-1).
    #[arg(long = "demo.throttle-rate", default_value_t = 0.3)]
    throttle_rate: f64,
    /// Seed of every random choice, to repeat a run.
    #[arg(long = "demo.seed", default_value_t = 1)]
    seed: u64,
    /// The exporter's collection interval.
    #[arg(long = "demo.interval", default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

impl From<DemoFlags> for DemoOptions {
    fn from(flags: DemoFlags) -> DemoOptions {
        DemoOptions {
            accounts: flags.accounts,
            regions: flags.regions,
            images: flags.images,
            churn: flags.churn,
            failure_rate: flags.failure_rate,
            throttle_rate: flags.throttle_rate,
            seed: flags.seed,
            interval: flags.interval,
        }
    }
}

/// `--version` text: the crate version and the git revision build.rs recorded.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("FLE_GIT_REVISION"),
    ")"
);

fn telemetry_path(path: &str) -> Result<String, String> {
    let reserved = ["/", "/-/healthy", "/-/ready"];
    if !path.starts_with('/') || reserved.contains(&path) {
        return Err(format!(
            "{path:?} must start with / and not be one of {}",
            reserved.join(", ")
        ));
    }
    Ok(path.to_string())
}

/// Binds `:port` on every interface (IPv6 and IPv4 where the host has IPv6), else `host:port`.
async fn bind(address: &str) -> std::io::Result<TcpListener> {
    match address.strip_prefix(':') {
        Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        },
        None => TcpListener::bind(address).await,
    }
}

async fn run_demo(options: DemoOptions, address: &str, telemetry_path: String) -> ExitCode {
    let listener = match bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fast-launch-exporter: cannot listen on {address}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    info!(
        address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        telemetry_path = %telemetry_path,
        version = VERSION,
        "listening"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let web = WebOptions { telemetry_path };
    match demo::run(options, listener, web, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fast-launch-exporter: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutting down"),
        _ = terminate => info!(signal = "SIGTERM", "shutting down"),
    }
    token.cancel();
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    logging::init(flags.log_level, flags.log_format);
    if let Some(Command::Demo(demo_flags)) = flags.command {
        return run_demo(
            demo_flags.into(),
            &flags.listen_address,
            flags.telemetry_path,
        )
        .await;
    }

    let config = match &flags.config_file {
        Some(path) => Config::load(path),
        None => Ok(Config::without_file()),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            error!(error = %e, "invalid configuration");
            eprintln!("fast-launch-exporter: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let base = load_base_config().await;
    let config = if config.needs_default_region() {
        config.with_default_region(base.region().map(|r| r.as_ref()))
    } else {
        Ok(config)
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            error!(error = %e, "invalid configuration");
            eprintln!("fast-launch-exporter: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let listener = match bind(&flags.listen_address).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(address = %flags.listen_address, error = %e, "cannot listen");
            eprintln!(
                "fast-launch-exporter: cannot listen on {}: {e}",
                flags.listen_address
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(
        address = %address,
        telemetry_path = %flags.telemetry_path,
        targets = config.targets().count(),
        version = VERSION,
        "listening"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let web = WebOptions {
        telemetry_path: flags.telemetry_path,
    };
    run(config, base, listener, web, shutdown).await;
    info!("stopped");
    ExitCode::SUCCESS
}
