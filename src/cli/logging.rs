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
///
/// The region probe of the EC2 instance metadata (`aws_config::imds::region`) logs only at
/// `--log.level=debug`: off EC2 it fails by design, and its warning is a `Debug` dump of the
/// SDK error with HTTP headers, about 1,500 characters, three times. When no region is found
/// the exporter says so itself, in one line that points to `--log.level=debug`.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = filter(level);
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

/// Which targets log at which level, for `--log.level`.
fn filter(level: LogLevel) -> tracing_subscriber::filter::Targets {
    let level = LevelFilter::from(level);
    let debug = level == LevelFilter::DEBUG;
    let sdk_level = if debug { level } else { LevelFilter::WARN };
    let region_probe_level = if debug { level } else { LevelFilter::OFF };
    tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("aws_config::imds::region", region_probe_level)
        .with_target("aws_config", sdk_level)
        .with_target("aws_smithy_runtime", sdk_level)
        .with_target("aws_smithy_runtime_api", sdk_level)
        .with_target("aws_sdk_ec2", sdk_level)
        .with_target("aws_sdk_sts", sdk_level)
        .with_target("hyper", sdk_level)
        .with_target("hyper_util", sdk_level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_region_probe_logs_only_at_debug_and_the_rest_of_the_sdk_from_warn() {
        let info = filter(LogLevel::Info);
        assert!(!info.would_enable("aws_config::imds::region", &Level::WARN));
        assert!(!info.would_enable("aws_config::imds::region", &Level::ERROR));
        assert!(info.would_enable("aws_config::imds::credentials", &Level::WARN));
        assert!(!info.would_enable("aws_config::imds::credentials", &Level::INFO));
        assert!(info.would_enable("fast_launch_exporter", &Level::INFO));
        let debug = filter(LogLevel::Debug);
        assert!(debug.would_enable("aws_config::imds::region", &Level::WARN));
        assert!(debug.would_enable("aws_config::imds::region", &Level::DEBUG));
    }
}
