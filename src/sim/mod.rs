//! An EC2 fast-launch simulator: a local HTTP endpoint that speaks the AWS wire format for
//! `DescribeFastLaunchImages` (EC2 query protocol) and `AssumeRole` / `GetCallerIdentity` (STS
//! query protocol), so that the real `aws-sdk-ec2` client can be pointed at it through the
//! ordinary endpoint override (`AWS_ENDPOINT_URL`). Tests and demos use it; it never calls AWS.
//!
//! The caller's account comes from the access key id in the SigV4 `Authorization` header (keys
//! issued by its AssumeRole map to the role's account) and the region from the credential scope.
//! Faults (error codes, hangs, resets, malformed answers) can be injected per account, region and
//! action.
//!
//! One file per concern: `world` (the data and faults), `ec2`, `sts`, `sqs`, `cloudwatch` (over
//! a small `cbor` codec) and `sso` (each service's wire format), `server` (HTTP, routing, faults
//! and latency). `sso` and STS's
//! `AssumeRoleWithWebIdentity` let the tests prove the credential chain's sources.

mod cbor;
mod cloudwatch;
mod ec2;
mod organizations;
mod server;
mod sqs;
mod sso;
mod sts;
mod world;

pub use organizations::{SimOrganization, DEFAULT_REGIONS, OPT_IN_REGIONS};
pub use server::Simulator;
pub use world::{Fault, FaultKind, ReceivedRequest, World};

/// ISO-8601 in UTC with milliseconds, as EC2 writes `stateTransitionTime` and STS `Expiration`.
pub fn iso8601(unix_seconds: f64) -> String {
    let millis = (unix_seconds * 1000.0).round() as i64;
    let (secs, millis) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    )
}

pub(crate) fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The first value of a form or query parameter.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The request id an AWS XML answer carries in its body.
fn body_request_id(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    ["requestId", "RequestID", "RequestId"]
        .iter()
        .find_map(|tag| {
            let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
            let end = start + text[start..].find('<')?;
            Some(&text[start..end])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_milliseconds() {
        assert_eq!(iso8601(1_795_168_800.123), "2026-11-20T10:00:00.123Z");
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(iso8601(4_107_542_399.999), "2100-02-28T23:59:59.999Z");
    }
}
