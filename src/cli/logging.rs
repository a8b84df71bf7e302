//! Logging set-up for the binary: `--log.level` and `--log.format` (logfmt or json), to stderr.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `--log.format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, as the Prometheus exporters log.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `--log.level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-request details.
    Debug,
    /// Collections and lifecycle.
    Info,
    /// Failures that the exporter recovers from.
    Warn,
    /// Only errors.
    Error,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> LevelFilter {
        match level {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Installs the global subscriber. The SDK crates that log per request (`aws_config`, the
/// smithy runtime, `aws_sdk_ec2`, `aws_sdk_sts`) and hyper log at `warn` and above only unless
/// `--log.level=debug`; the SQS, CloudWatch and Organizations crates follow `--log.level`.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = LevelFilter::from(level);
    let sdk_level = if level == LevelFilter::DEBUG {
        level
    } else {
        LevelFilter::WARN
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("aws_config", sdk_level)
        .with_target("aws_smithy_runtime", sdk_level)
        .with_target("aws_smithy_runtime_api", sdk_level)
        .with_target("aws_sdk_ec2", sdk_level)
        .with_target("aws_sdk_sts", sdk_level)
        .with_target("hyper", sdk_level)
        .with_target("hyper_util", sdk_level);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
