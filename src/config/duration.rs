//! Durations as Prometheus writes them, for the config file and the flags alike: an integer and
//! a unit, `ms`, `s`, `m`, `h`, `d`, `w` (7d) or `y` (365d), several from the largest unit down
//! (`1h30m`), or a bare `0`. This is Prometheus' `model.ParseDuration` (prometheus/common,
//! `model/time.go`), whose regular expression is
//! `^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$`:
//! no fractions, no `M` (so `5M` is not five months), no `us` or `ns`, and a value past what a
//! signed 64-bit count of nanoseconds holds (about 292 years) is an error, as it is there.
//!
//! Every key and flag also has [`Bounds`]: a range that makes sense for it and why, so that an
//! interval of days is refused with a message that says what to write instead.

use std::fmt;
use std::time::Duration;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// The largest duration Prometheus takes: `1<<63 - 1` nanoseconds, in milliseconds.
const MAX_MILLIS: u64 = (i64::MAX as u64) / 1_000_000;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty text.
    #[error("empty; write e.g. 30s, 5m or 1h30m")]
    Empty,
    /// A unit Prometheus does not know (`M`, `us`, `min`, …), or a number without one.
    #[error("{0}; the units are ms, s, m, h, d, w and y (e.g. 30s, 5m, 1h30m)")]
    Unit(String),
    /// Not digits and units, or units out of order (`1m1h`, `1.5h`, `-5m`).
    #[error("write whole numbers with units from the largest down, e.g. 30s, 5m or 1h30m")]
    Shape,
    /// A unit Go's durations do not have (`d`, `M`), or a number without one.
    #[error("{0}; the units of Go durations are ns, us, ms, s, m and h (e.g. 500ms, 1m, 1h30m)")]
    GoUnit(String),
    /// A fraction (`1.5h`).
    #[error("fractions are not taken; write e.g. 1h30m for 1.5h")]
    Fraction,
    /// More than Prometheus' largest duration (about 292 years).
    #[error("too long (more than 292 years)")]
    Overflow,
}

/// Parses `text` as Prometheus' `model.ParseDuration` does.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    // The index in UNITS after the last unit used: units go from the largest down, once each.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(DurationError::Shape);
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.len()
            - after
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .len();
        let (unit, after) = after.split_at(letters);
        if unit.starts_with('.') {
            return Err(DurationError::Fraction);
        }
        if unit.is_empty() {
            return Err(DurationError::Unit(format!("{number:?} has no unit")));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationError::Unit(format!("{unit:?} is not a unit")));
        };
        if index < next_unit {
            return Err(DurationError::Shape);
        }
        next_unit = index + 1;
        // Digits only, so parsing fails only when the number is past u64.
        let value: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        millis = value
            .checked_mul(UNITS[index].1)
            .and_then(|part| millis.checked_add(part))
            .filter(|total| *total <= MAX_MILLIS)
            .ok_or(DurationError::Overflow)?;
        rest = after;
    }
    Ok(Duration::from_millis(millis))
}

/// Parses `text` as Go's `time.ParseDuration` does, for the exporter-toolkit web config file
/// (`rate_limit.interval` is a Go `time.Duration` there, so node_exporter's file reads the same
/// here): decimal numbers with a unit each, `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, in any
/// order (`1.5h`, `1h30m`, `300ms`), or `0`. Negative durations, which Go takes, are refused:
/// nothing here waits a negative time.
pub fn parse_go(text: &str) -> Result<Duration, DurationError> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    // Go refuses a sign alone, and negative durations make no sense here.
    if rest.is_empty() || rest.starts_with('-') {
        return Err(DurationError::Shape);
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len =
                    after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(DurationError::Shape);
        }
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c != '.' && !c.is_ascii_digit())
                .len();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::GoUnit(format!(
                "{:?} has no unit",
                &rest[..rest.len() - after.len()]
            )));
        }
        let Some((_, length)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::GoUnit(format!("{unit:?} is not a unit")));
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::Overflow)?
        };
        // Digits past the 18th of a fraction are below a nanosecond of any unit: dropped.
        let fraction = &fraction[..fraction.len().min(18)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| DurationError::Overflow)?
        };
        nanos = whole
            .checked_mul(*length)
            .and_then(|n| n.checked_add(fraction * length / scale))
            .and_then(|n| nanos.checked_add(n))
            .filter(|n| *n <= i64::MAX as u128)
            .ok_or(DurationError::Overflow)?;
        rest = after;
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// A duration as Prometheus prints one (`model.Duration.String`): `1h30m`, `2d`, `0s`; what
/// [`parse`] reads back. Below a millisecond is dropped.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis().min(u128::from(u64::MAX)) as u64;
    if millis == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (name, length) in UNITS {
        if millis >= length {
            text.push_str(&format!("{}{name}", millis / length));
            millis %= length;
        }
    }
    text
}

/// The range a key or flag takes, and why it stops there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The shortest value taken.
    pub min: Duration,
    /// The longest value taken.
    pub max: Duration,
    /// Why longer values are refused, for the message.
    pub why_max: &'static str,
}

impl Bounds {
    /// `text` parsed and within the bounds; the message quotes it and says the range and why.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let duration = parse(text).map_err(|e| format!("{text:?} is not a duration: {e}"))?;
        self.check(text, duration)?;
        Ok(duration)
    }

    /// Whether `duration` (written `text`) is within the bounds.
    pub fn check(&self, text: &str, duration: Duration) -> Result<(), String> {
        if duration < self.min {
            return Err(if self.min == ABOVE_ZERO {
                format!(
                    "{text:?} must be longer than zero (at most {})",
                    format(self.max)
                )
            } else {
                format!("{text:?} is too short: the range is {self}")
            });
        }
        if duration > self.max {
            return Err(format!(
                "{text:?} is too long: the range is {self}, because {}",
                self.why_max
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", format(self.min), format(self.max))
    }
}

const fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Anything above zero: the shortest duration written is 1ms.
const ABOVE_ZERO: Duration = Duration::from_millis(1);

/// `collection.interval` and `--demo.interval`.
pub const INTERVAL: Bounds = Bounds {
    min: seconds(1),
    max: seconds(24 * 3600),
    why_max: "an interval of days leaves the metrics days old and is more likely a typo \
              (events make collections prompt with a long interval)",
};

/// `collection.timeout` (also at most the interval).
pub const TIMEOUT: Bounds = Bounds {
    min: seconds(1),
    max: seconds(3600),
    why_max: "a collection of one target (credentials and every page) that takes longer is stuck",
};

/// `collection.max_staleness`.
pub const MAX_STALENESS: Bounds = Bounds {
    min: seconds(1),
    max: seconds(7 * 24 * 3600),
    why_max: "data older than a week no longer tells the state of the images",
};

/// `events.debounce` (also at most the interval).
pub const DEBOUNCE: Bounds = Bounds {
    min: ABOVE_ZERO,
    max: seconds(300),
    why_max: "events exist to make collections prompt and a longer window delays each one",
};

/// `events.wait_time`: SQS long polling, `WaitTimeSeconds` 0–20 per the SQS API reference (0
/// would poll in a busy loop).
pub const WAIT_TIME: Bounds = Bounds {
    min: seconds(1),
    max: seconds(20),
    why_max: "SQS long polling waits 20s at most (WaitTimeSeconds)",
};

/// `discovery.organizations.interval`; short ones are for tests and demos.
pub const DISCOVERY_INTERVAL: Bounds = Bounds {
    min: seconds(1),
    max: seconds(24 * 3600),
    why_max: "accounts that join the organization would wait days to be collected",
};

/// `cloudwatch.period` (also whole minutes): CloudWatch keeps fast launch metrics at one-minute
/// resolution at best.
pub const CLOUDWATCH_PERIOD: Bounds = Bounds {
    min: seconds(60),
    max: seconds(3600),
    why_max: "a longer period hides the launches of the last hour in one data point",
};

/// `cloudwatch.lookback` (also at least the period).
pub const CLOUDWATCH_LOOKBACK: Bounds = Bounds {
    min: seconds(60),
    max: seconds(24 * 3600),
    why_max: "every collection would read more than a day of data points",
};

/// `accounts[].duration`: `DurationSeconds` 900–43200 per the STS AssumeRole API reference.
pub const ROLE_SESSION: Bounds = Bounds {
    min: seconds(900),
    max: seconds(43200),
    why_max: "AssumeRole sessions last 12h at most (DurationSeconds)",
};

/// The web config's `rate_limit.interval` (Go durations; 0 turns the limit off).
pub const RATE_LIMIT_INTERVAL: Bounds = Bounds {
    min: Duration::ZERO,
    max: seconds(3600),
    why_max: "a request refilled less often than once an hour locks Prometheus out for hours",
};

/// `--demo.latency` and `--demo.latency-jitter` (zero allowed).
pub const DEMO_LATENCY: Bounds = Bounds {
    min: Duration::ZERO,
    max: seconds(60),
    why_max: "a slower simulated answer is a hang (see --demo.fault-kinds hang)",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration page's table of ranges says what the bounds are: a row per key or
    /// flag, `<min> to <max>` as `format` writes them (the lookback's minimum is the period).
    #[test]
    fn the_configuration_page_gives_every_range() {
        let page = include_str!("../../docs/configuration.md");
        let row = |key: &str| {
            let cell = format!("| `{key}`");
            page.lines()
                .find(|l| l.starts_with(&cell) && l.contains(" to "))
                .unwrap_or_else(|| panic!("no row for {key} in docs/configuration.md"))
        };
        for (key, bounds) in [
            ("collection.interval", &INTERVAL),
            ("collection.timeout", &TIMEOUT),
            ("collection.max_staleness", &MAX_STALENESS),
            ("events.debounce", &DEBOUNCE),
            ("events.wait_time", &WAIT_TIME),
            ("discovery.organizations.interval", &DISCOVERY_INTERVAL),
            ("cloudwatch.period", &CLOUDWATCH_PERIOD),
            ("cloudwatch.lookback", &CLOUDWATCH_LOOKBACK),
            ("accounts[].duration", &ROLE_SESSION),
            ("--demo.latency", &DEMO_LATENCY),
        ] {
            let line = row(key);
            let max = format!(" to {} ", format(bounds.max));
            let max_end = format!(" to {},", format(bounds.max));
            assert!(
                line.contains(&max) || line.contains(&max_end),
                "{key}: {line}"
            );
            if key != "cloudwatch.lookback" {
                let min = format!("{} to ", format(bounds.min));
                assert!(line.contains(&min), "{key}: {line}");
            }
        }
        // `--demo.interval` shares the interval's row.
        assert!(row("collection.interval").contains("`--demo.interval`"));
    }

    const S: u64 = 1000;

    #[test]
    fn prometheus_durations_parse_and_everything_else_is_refused() {
        let good: &[(&str, u64)] = &[
            ("0", 0),
            ("0s", 0),
            ("0ms", 0),
            ("1ms", 1),
            ("1500ms", 1500),
            ("30s", 30 * S),
            ("5m", 300 * S),
            ("1h", 3600 * S),
            ("1h30m", 5400 * S),
            ("1h0m", 3600 * S),
            ("2d", 2 * 86_400 * S),
            ("1w", 7 * 86_400 * S),
            ("1y", 365 * 86_400 * S),
            (
                "1y2w3d4h5m6s7ms",
                ((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * S + 7,
            ),
            ("90s", 90 * S),
            ("120m", 7200 * S),
            ("0010s", 10 * S),
            ("292y", 292 * 365 * 86_400 * S),
        ];
        for (text, millis) in good {
            assert_eq!(parse(text), Ok(Duration::from_millis(*millis)), "{text}");
        }
        let bad: &[(&str, DurationError)] = &[
            ("", DurationError::Empty),
            ("5M", DurationError::Unit("\"M\" is not a unit".into())),
            ("1us", DurationError::Unit("\"us\" is not a unit".into())),
            ("1ns", DurationError::Unit("\"ns\" is not a unit".into())),
            ("5min", DurationError::Unit("\"min\" is not a unit".into())),
            ("5 m", DurationError::Unit("\" m\" is not a unit".into())),
            ("1H", DurationError::Unit("\"H\" is not a unit".into())),
            ("60", DurationError::Unit("\"60\" has no unit".into())),
            ("1h30", DurationError::Unit("\"30\" has no unit".into())),
            ("1.5h", DurationError::Fraction),
            ("0.5s", DurationError::Fraction),
            ("m", DurationError::Shape),
            ("-5m", DurationError::Shape),
            (" 5m", DurationError::Shape),
            ("1m1h", DurationError::Shape),
            ("1s1s", DurationError::Shape),
            ("1ms1s", DurationError::Shape),
            ("1m1y", DurationError::Shape),
            ("293y", DurationError::Overflow),
            ("100000000000y", DurationError::Overflow),
            ("99999999999999999999s", DurationError::Overflow),
            ("292y53w", DurationError::Overflow),
        ];
        for (text, error) in bad {
            assert_eq!(parse(text).as_ref(), Err(error), "{text}");
        }
    }

    #[test]
    fn go_durations_parse_for_the_web_config() {
        let good: &[(&str, u64)] = &[
            ("0", 0),
            ("1m", 60_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("30m1h", 5_400_000_000_000),
            ("300ms", 300_000_000),
            ("+2s", 2_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("10us", 10_000),
            ("10\u{b5}s", 10_000),
            ("7ns", 7),
            ("2562047h", 2_562_047 * 3_600_000_000_000),
        ];
        for (text, nanos) in good {
            assert_eq!(parse_go(text), Ok(Duration::from_nanos(*nanos)), "{text}");
        }
        for text in ["", "+", "-1s", "1", "1h30", ".s", "s", "1 s", "2562048h"] {
            assert!(parse_go(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_go("5M").unwrap_err().to_string(),
            "\"M\" is not a unit; the units of Go durations are ns, us, ms, s, m and h \
             (e.g. 500ms, 1m, 1h30m)"
        );
        assert_eq!(
            parse_go("1d").unwrap_err(),
            DurationError::GoUnit("\"d\" is not a unit".into())
        );
        assert_eq!(
            parse_go("1h30").unwrap_err(),
            DurationError::GoUnit("\"30\" has no unit".into())
        );
    }

    #[test]
    fn formatted_durations_read_back_the_same() {
        for (millis, text) in [
            (0, "0s"),
            (1, "1ms"),
            (1500, "1s500ms"),
            (90 * S, "1m30s"),
            (3600 * S, "1h"),
            (5400 * S, "1h30m"),
            (86_400 * S, "1d"),
            (8 * 86_400 * S, "1w1d"),
            (366 * 86_400 * S, "1y1d"),
        ] {
            let duration = Duration::from_millis(millis);
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration));
        }
    }

    #[test]
    fn bounds_name_the_range_and_why() {
        assert_eq!(INTERVAL.parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(INTERVAL.parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            INTERVAL.parse("2d").unwrap_err(),
            "\"2d\" is too long: the range is 1s to 1d, because an interval of days leaves the \
             metrics days old and is more likely a typo (events make collections prompt with a \
             long interval)"
        );
        assert_eq!(
            INTERVAL.parse("500ms").unwrap_err(),
            "\"500ms\" is too short: the range is 1s to 1d"
        );
        assert_eq!(
            DEBOUNCE.parse("0s").unwrap_err(),
            "\"0s\" must be longer than zero (at most 5m)"
        );
        assert_eq!(DEMO_LATENCY.parse("0"), Ok(Duration::ZERO));
        assert_eq!(
            INTERVAL.parse("5M").unwrap_err(),
            "\"5M\" is not a duration: \"M\" is not a unit; the units are ms, s, m, h, d, w and y \
             (e.g. 30s, 5m, 1h30m)"
        );
        assert_eq!(
            INTERVAL.parse("100000000000y").unwrap_err(),
            "\"100000000000y\" is not a duration: too long (more than 292 years)"
        );
    }
}
