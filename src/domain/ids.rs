//! AWS identifiers as the exporter reads them: account ids, region names, role ARNs and queue
//! URLs. Checked here once, for the configuration, the event messages and the simulator.

/// The region used when nothing names one: where Organizations and STS answer for the `aws`
/// partition, and where `regions: all` asks `DescribeRegions` of an account without regions.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Checks that `id` is an AWS account id: 12 digits.
pub fn check_account_id(id: &str) -> Result<(), String> {
    if id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{id:?} is not a 12-digit account id"))
    }
}

/// Region directions used in AWS region names (`us-east-1`, `ap-southeast-4`, `il-central-1` ...).
const REGION_DIRECTIONS: [&str; 9] = [
    "east",
    "west",
    "north",
    "south",
    "central",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
];

/// Regions this build knows (AWS's list when it was written). A well-formed name outside it is
/// accepted with a warning: AWS opens new regions after a release.
pub const KNOWN_REGIONS: [&str; 42] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eusc-de-east-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-west-1",
    "us-west-2",
];

/// Checks the shape of an AWS region name: `<area>[-<partition or country>]-<direction>-<number>`,
/// e.g. `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `eusc-de-east-1`. A misspelt direction
/// (`us-eest-1`) is refused.
pub fn check_region(region: &str) -> Result<(), String> {
    let letters = |part: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&part.len()) && part.chars().all(|c| c.is_ascii_lowercase())
    };
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = match parts.as_slice() {
        [area, middle @ .., direction, number] => {
            letters(area, 2..=4)
                && middle.len() <= 1
                && middle.iter().all(|m| letters(m, 2..=4))
                && REGION_DIRECTIONS.contains(direction)
                && !number.is_empty()
                && number.len() <= 2
                && number.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(format!("{region:?} is not a region name"))
    }
}

/// Returns the account id of an IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<name>`).
pub fn role_account_id(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && check_account_id(account).is_ok()
                && resource.len() > "role/".len()
                && resource.starts_with("role/") =>
        {
            Ok(account.to_string())
        }
        _ => Err(format!(
            "{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/Name)"
        )),
    }
}

/// The region and owner account of an SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<name>`
/// (also `.amazonaws.com.cn`, and the legacy `https://<region>.queue.amazonaws.com/...`).
pub fn queue_url_parts(url: &str) -> Result<(String, String), String> {
    let bad = || {
        format!(
            "{url:?} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account id>/<queue name>)"
        )
    };
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    if parts.next().is_some_and(|p| !p.is_empty()) || name.is_empty() {
        return Err(bad());
    }
    check_account_id(account).map_err(|_| bad())?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once('.'))
        .map(|(region, _)| region)
        .or_else(|| host.split_once(".queue.").map(|(region, _)| region))
        .ok_or_else(bad)?;
    check_region(region).map_err(|_| bad())?;
    Ok((region.to_string(), account.to_string()))
}
