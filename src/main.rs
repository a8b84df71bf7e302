//! The `fast-launch-exporter` binary: flags, logging, config, exit codes. Everything else is in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "demo")]
use std::time::Duration;

#[cfg(feature = "demo")]
use clap::Args;
use clap::{Parser, Subcommand};
use fast_launch_exporter::app::{self, ConfigLoader};
use fast_launch_exporter::aws::Base;
use fast_launch_exporter::cli::logging::{self, LogFormat, LogLevel};
use fast_launch_exporter::cli::{self, healthcheck, permissions};
#[cfg(feature = "demo")]
use fast_launch_exporter::config::duration;
use fast_launch_exporter::config::web::WebConfig;
use fast_launch_exporter::config::{Config, ConfigError};
#[cfg(feature = "demo")]
use fast_launch_exporter::demo::{self, DemoOptions};
use fast_launch_exporter::domain::shard::Shard;
use fast_launch_exporter::serve::{raise_open_files_limit, WebOptions};
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
    #[arg(long = "config.file", value_name = "FILE", global = true)]
    config_file: Option<PathBuf>,

    /// Collect every target once, print the metrics to stdout and exit (1 if a target failed).
    #[arg(long = "once")]
    once: bool,

    /// Prometheus exporter-toolkit web configuration (TLS, client certificates, basic auth,
    /// response headers), as used by node_exporter.
    #[arg(long = "web.config.file", value_name = "FILE", global = true)]
    web_config_file: Option<PathBuf>,

    /// The most HTTP connections open at once; more wait in the listen backlog. 0 (the
    /// default): no limit but the file descriptors. Idle and slow connections hold no scrape
    /// back; --web.max-requests caps the work.
    #[arg(
        long = "web.max-connections",
        value_name = "N",
        default_value_t = 0,
        global = true
    )]
    max_connections: usize,

    /// The most /metrics requests served at once; more are answered 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        value_name = "N",
        default_value_t = 40,
        global = true
    )]
    max_requests: usize,

    /// Address to listen on for HTTP (`:9849` listens on every interface); repeat the flag to
    /// listen on several.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":9849",
        action = clap::ArgAction::Append,
        global = true
    )]
    listen_address: Vec<String>,

    /// Let `POST /-/reload` (and `PUT`) reload the configuration, as Prometheus'
    /// --web.enable-lifecycle does; without it they answer 403. SIGHUP always reloads.
    #[arg(long = "web.enable-lifecycle", global = true)]
    enable_lifecycle: bool,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = telemetry_path, global = true)]
    telemetry_path: String,

    /// This replica's shard, 0-based: it collects only the targets that jump-hash to it.
    #[arg(
        long = "shard.index",
        value_name = "N",
        default_value_t = 0,
        global = true
    )]
    shard_index: u32,

    /// The number of shards (replicas) the targets are split over; 1: no sharding.
    #[arg(
        long = "shard.total",
        value_name = "M",
        default_value_t = 1,
        global = true
    )]
    shard_total: u32,

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
    #[cfg(feature = "demo")]
    Demo(DemoFlags),
    /// Serve only the demo's simulated AWS (same --demo.* flags) on --web.listen-address, for a
    /// `demo --demo.simulator URL` in another process (benchmarks measure the exporter alone).
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    Simulate(DemoFlags),
    /// Validate the configuration file, print the resolved targets and exit (0 valid, 2 invalid).
    CheckConfig,
    /// For every target, assume its role and call DescribeFastLaunchImages with DryRun=true;
    /// print the verdicts and exit 1 if any target is not allowed.
    CheckPermissions {
        /// Output format.
        #[arg(long = "output", value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Probe /-/healthy of the exporter running with the same --web.listen-address and
    /// --web.config.file (for Docker/ECS HEALTHCHECK in a shell-less image); exit 0 if healthy,
    /// 1 if not.
    Healthcheck,
}

/// `check-permissions --output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// An aligned text table.
    Table,
    /// A JSON array, for scripts.
    Json,
}

/// The simulated world's knobs, listed by `demo --help` apart from the general flags.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Demo options")]
struct DemoFlags {
    /// Simulated accounts (1-1000); the first uses the base credentials, the others AssumeRole.
    #[arg(long = "demo.accounts", default_value_t = 3)]
    accounts: usize,
    /// Regions per account (1-17).
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
    /// The exporter's collection interval, 1s to 1d (as collection.interval).
    #[arg(long = "demo.interval", default_value = "10s", value_parser = demo_interval)]
    interval: Duration,
    /// The exporter's collection.concurrency.
    #[arg(long = "demo.concurrency", default_value_t = 16)]
    concurrency: usize,
    /// The exporter's collection.page_size (images per DescribeFastLaunchImages page).
    #[arg(long = "demo.page-size", default_value_t = 200)]
    page_size: i32,
    /// Added to every simulated AWS answer, 0s to 1m.
    #[arg(long = "demo.latency", default_value = "0s", value_parser = demo_latency)]
    latency: Duration,
    /// Up to this much more is added to every answer (uniform, seeded), 0s to 1m.
    #[arg(long = "demo.latency-jitter", default_value = "0s", value_parser = demo_latency)]
    latency_jitter: Duration,
    /// Share of targets (chosen by the seed) whose DescribeFastLaunchImages calls fail now and then (0-1).
    #[arg(long = "demo.faulty-targets", default_value_t = 0.0)]
    faulty_targets: f64,
    /// Share of a faulty target's calls that fail (0-1).
    #[arg(long = "demo.fault-rate", default_value_t = 0.2)]
    fault_rate: f64,
    /// How faulty targets fail, mixed evenly: throttle, unauthorized, server-error, reset, hang, malformed, truncated.
    #[arg(
        long = "demo.fault-kinds",
        value_delimiter = ',',
        default_value = "throttle,unauthorized,server-error,reset,hang,malformed,truncated"
    )]
    fault_kinds: Vec<String>,
    /// Discover the accounts from a simulated AWS Organizations (OUs, tags, suspended accounts)
    /// and collect every enabled region (`regions: all`) instead of listing them.
    #[arg(long = "demo.organization")]
    organization: bool,
    /// Whether the exporter reads the simulated CloudWatch fast launch metrics (true or false).
    #[arg(long = "demo.cloudwatch", default_value_t = true, action = clap::ArgAction::Set)]
    cloudwatch: bool,
    /// The simulated AWS another process serves (`simulate` with the same --demo.* flags)
    /// instead of one in this process.
    #[arg(long = "demo.simulator", hide = true)]
    simulator: Option<String>,
}

#[cfg(feature = "demo")]
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
            concurrency: flags.concurrency,
            page_size: flags.page_size,
            latency: flags.latency,
            latency_jitter: flags.latency_jitter,
            faulty_targets: flags.faulty_targets,
            fault_rate: flags.fault_rate,
            fault_kinds: flags.fault_kinds,
            cloudwatch: flags.cloudwatch,
            organization: flags.organization,
            shard: Shard::default(),
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

/// `--demo.interval`: a Prometheus duration with collection.interval's bounds.
#[cfg(feature = "demo")]
fn demo_interval(text: &str) -> Result<Duration, String> {
    duration::INTERVAL.parse(text)
}

/// `--demo.latency` and `--demo.latency-jitter`: a Prometheus duration, at most a minute.
#[cfg(feature = "demo")]
fn demo_latency(text: &str) -> Result<Duration, String> {
    duration::DEMO_LATENCY.parse(text)
}

fn telemetry_path(path: &str) -> Result<String, String> {
    let reserved = ["/", "/-/healthy", "/-/ready", "/-/reload"];
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

/// Binds every listen address, logging where it listens; exit status 2 if one cannot be.
async fn listen(addresses: &[String], telemetry_path: &str) -> Result<Vec<TcpListener>, ExitCode> {
    raise_open_files_limit();
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        match bind(address).await {
            Ok(listener) => {
                info!(
                    address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    telemetry_path = %telemetry_path,
                    version = VERSION,
                    "listening"
                );
                listeners.push(listener);
            }
            Err(e) => return Err(refuse(format!("cannot listen on {address}: {e}"))),
        }
    }
    Ok(listeners)
}

/// Says why the program cannot start, once, as one plain line on stderr (not a log line too:
/// logfmt would quote the message's quotes, and the process ends here), and gives exit status 2.
fn refuse(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("fast-launch-exporter: {why}");
    ExitCode::from(EXIT_CONFIG)
}

fn config_error(e: ConfigError) -> ExitCode {
    refuse(e)
}

/// The configuration file (or the no-file default), read and validated; exit status 2 if
/// invalid.
fn read_config(flags: &Flags) -> Result<Config, ExitCode> {
    match flags.config_file.as_deref() {
        Some(path) => Config::load(path).map_err(config_error),
        None => Config::without_file().map_err(config_error),
    }
}

/// The shard of `--shard.index` and `--shard.total`; exit status 2 if out of range.
fn shard(flags: &Flags) -> Result<Shard, ExitCode> {
    Shard::new(flags.shard_index, flags.shard_total).map_err(refuse)
}

/// Gives accounts without regions the region of the AWS environment (`base`, loaded here if
/// not given and needed); exit status 2 if there is none.
async fn with_environment_region(config: Config, base: Option<&Base>) -> Result<Config, ExitCode> {
    if !config.needs_default_region() {
        return Ok(config);
    }
    let region = match base {
        Some(base) => base.region(),
        None => Base::from_environment().await.region(),
    };
    config
        .with_default_region(region.as_deref())
        .map_err(config_error)
}

/// The validated configuration and the base AWS configuration it runs on. The file is read
/// first, so that a bad file fails fast without touching the AWS credential chain.
async fn config_and_base(flags: &Flags) -> Result<(Config, Base), ExitCode> {
    let config = read_config(flags)?;
    let base = Base::from_environment().await;
    let config = with_environment_region(config, Some(&base)).await?;
    Ok((config, base))
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

/// glibc gives threads that allocate at the same time arenas of their own, up to eight per
/// core, and memory freed into one arena is not reused by another: at organisation scale (17,000
/// targets) that held tens of MiB (docs/performance.md). Two arenas serve the runtime's workers,
/// the HTTP threads and the blocking pool. `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES`) in the
/// environment wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    let tuned = |name| std::env::var_os(name).is_some();
    if !tuned("MALLOC_ARENA_MAX") && !tuned("GLIBC_TUNABLES") {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(fast_launch_exporter::serve::EVENT_INTERVAL)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(exporter_main()),
        Err(error) => {
            eprintln!("fast-launch-exporter: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn exporter_main() -> ExitCode {
    let flags = Flags::parse();
    logging::init(flags.log_level, flags.log_format);
    let outcome = match &flags.command {
        Some(Command::Healthcheck) => run_healthcheck(&flags).await,
        #[cfg(feature = "demo")]
        Some(Command::Demo(demo_flags)) => run_demo(&flags, demo_flags).await,
        #[cfg(feature = "demo")]
        Some(Command::Simulate(demo_flags)) => run_simulator(&flags, demo_flags).await,
        Some(Command::CheckConfig) => check_config(&flags).await,
        Some(Command::CheckPermissions { output }) => check_permissions(&flags, *output).await,
        None => run_exporter(&flags).await,
    };
    outcome.unwrap_or_else(|code| code)
}

/// The HTTP server's options from the flags; exit status 2 if the web config is invalid.
fn web_options(flags: &Flags) -> Result<WebOptions, ExitCode> {
    let web_config = match &flags.web_config_file {
        None => WebConfig::default(),
        Some(path) => WebConfig::load(path).map_err(refuse)?,
    };
    Ok(WebOptions {
        telemetry_path: flags.telemetry_path.clone(),
        max_connections: flags.max_connections,
        max_requests: flags.max_requests,
        web_config,
        web_config_file: flags.web_config_file.clone(),
        enable_lifecycle: flags.enable_lifecycle,
    })
}

/// `healthcheck`: probes `/-/healthy` of the exporter on the first listen address.
async fn run_healthcheck(flags: &Flags) -> Result<ExitCode, ExitCode> {
    let web = web_options(flags)?;
    let address = healthcheck::probe_address(&flags.listen_address[0]);
    Ok(match healthcheck::probe(&address, &web.web_config).await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("fast-launch-exporter: unhealthy: {message}");
            ExitCode::FAILURE
        }
    })
}

/// `demo`: the exporter against the built-in simulator.
#[cfg(feature = "demo")]
async fn run_demo(flags: &Flags, demo_flags: &DemoFlags) -> Result<ExitCode, ExitCode> {
    let web = web_options(flags)?;
    let listeners = listen(&flags.listen_address, &web.telemetry_path).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let mut options: DemoOptions = demo_flags.clone().into();
    options.shard = shard(flags)?;
    let simulator = demo_flags.simulator.clone();
    Ok(
        match demo::run(options, simulator, listeners, web, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fast-launch-exporter: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    )
}

/// `simulate`: the demo's simulated AWS alone, on the first --web.listen-address.
#[cfg(feature = "demo")]
async fn run_simulator(flags: &Flags, demo_flags: &DemoFlags) -> Result<ExitCode, ExitCode> {
    let listener = bind(&flags.listen_address[0]).await.map_err(|e| {
        eprintln!(
            "fast-launch-exporter: cannot listen on {}: {e}",
            flags.listen_address[0]
        );
        ExitCode::FAILURE
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    Ok(
        match demo::simulate(demo_flags.clone().into(), listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fast-launch-exporter: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    )
}

/// `check-config`: validates the file and prints the resolved targets.
async fn check_config(flags: &Flags) -> Result<ExitCode, ExitCode> {
    // Every command reads the web config first, so that a bad one fails the same everywhere.
    web_options(flags)?;
    let shard = shard(flags)?;
    let config = read_config(flags)?;
    let config = with_environment_region(config, None).await?;
    for warning in &config.warnings {
        eprintln!("fast-launch-exporter: warning: {warning}");
    }
    let specs = cli::resolved_targets(&config, shard).await;
    cli::print_targets(&config, shard, &specs);
    Ok(ExitCode::SUCCESS)
}

/// `check-permissions`: proves the IAM set-up of every target.
async fn check_permissions(flags: &Flags, output: OutputFormat) -> Result<ExitCode, ExitCode> {
    web_options(flags)?;
    let shard = shard(flags)?;
    let (config, base) = config_and_base(flags).await?;
    let checks = permissions::check_permissions(&config, shard, base).await;
    match output {
        OutputFormat::Table => print!("{}", permissions::table(&checks)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        ),
    }
    Ok(if checks.iter().all(|c| c.allowed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The exporter: `--once`, or collect and serve until SIGTERM or SIGINT.
async fn run_exporter(flags: &Flags) -> Result<ExitCode, ExitCode> {
    let web = web_options(flags)?;
    let shard = shard(flags)?;
    let (config, base) = config_and_base(flags).await?;
    if flags.once {
        let (text, all_ok) = app::collect_once(&config, shard, base).await;
        print!("{text}");
        return Ok(if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let listeners = listen(&flags.listen_address, &web.telemetry_path).await?;
    info!(
        configured_targets = config.targets().count(),
        discovery = config.discovery.is_some(),
        shard = %shard,
        "starting collection"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let loader: Option<ConfigLoader> = {
        let region = base.region();
        flags.config_file.clone().map(|path| -> ConfigLoader {
            Box::new(move || Config::load_resolved(Some(&path), region.as_deref()))
        })
    };
    app::run(config, shard, base, listeners, web, loader, shutdown).await;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}
