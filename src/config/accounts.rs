//! One account entry: its role, regions, query, CloudWatch and labels.

use super::raw::*;
use super::*;

/// `regions`: a list (checked), or `all`; absent is an empty list.
pub(super) fn validate_region_choice(
    place: &str,
    raw: Option<RawRegions>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<String>, bool), ConfigError> {
    match raw {
        None => Ok((Vec::new(), false)),
        Some(RawRegions::List(list)) => Ok((validate_regions(place, list, warnings)?, false)),
        Some(RawRegions::Word(word)) if word == "all" => Ok((Vec::new(), true)),
        Some(RawRegions::Word(word)) => Err(invalid(
            place,
            format!("{word:?} is neither a list of regions nor `all`"),
        )),
    }
}

/// An account's `cloudwatch` over the top-level one, key by key.
pub(super) fn merge_cloudwatch(
    top: &RawCloudWatch,
    account: Option<&RawCloudWatch>,
) -> RawCloudWatch {
    let Some(account) = account else {
        return top.clone();
    };
    RawCloudWatch {
        // An account block with no `enabled` is on unless the top level turned it off.
        enabled: account.enabled.or(top.enabled).or(Some(true)),
        period: account.period.clone().or_else(|| top.period.clone()),
        lookback: account.lookback.clone().or_else(|| top.lookback.clone()),
    }
}

/// A `cloudwatch` block: off when absent or `enabled: false`; `period` whole minutes (CloudWatch
/// keeps fast launch metrics at one-minute resolution at best); `lookback` at least one period
/// and at most a day.
pub(super) fn validate_cloudwatch(
    place: &str,
    raw: &RawCloudWatch,
) -> Result<Option<CloudWatchSpec>, ConfigError> {
    let present = raw.enabled.is_some() || raw.period.is_some() || raw.lookback.is_some();
    let period = match &raw.period {
        None => DEFAULT_CLOUDWATCH_PERIOD,
        Some(text) => {
            let place = format!("{place}.period");
            let d = duration::parse(text)
                .map_err(|e| invalid(&place, format!("{text:?} is not a duration: {e}")))?;
            if d.as_secs() % 60 != 0 || d.subsec_nanos() != 0 {
                return Err(invalid(
                    place,
                    format!("{text:?} must be whole minutes, from 1m to 1h"),
                ));
            }
            duration::CLOUDWATCH_PERIOD
                .check(text, d)
                .map_err(|m| invalid(place, m))?;
            d
        }
    };
    let lookback = match &raw.lookback {
        None => DEFAULT_CLOUDWATCH_LOOKBACK.max(period),
        Some(text) => {
            let place = format!("{place}.lookback");
            let d = parse_duration(&place, text, &duration::CLOUDWATCH_LOOKBACK)?;
            if d < period {
                return Err(invalid(
                    place,
                    format!(
                        "{text:?} must be at least the period ({})",
                        duration::format(period)
                    ),
                ));
            }
            d
        }
    };
    Ok((present && raw.enabled != Some(false)).then_some(CloudWatchSpec { period, lookback }))
}

/// ExternalId: 2–1224 characters of `[\w+=,.@:/-]` per the STS AssumeRole API reference; the
/// value itself is secret-ish and never quoted back.
pub(super) fn check_external_id(place: &str, external_id: &str) -> Result<(), ConfigError> {
    let ok = (2..=1224).contains(&external_id.len())
        && external_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            place,
            "must be 2 to 1224 characters of letters, digits and +=,.@:/-_ (value not shown)",
        ))
    }
}

/// A warning for a well-formed region name this build does not know.
pub(super) fn unknown_region_warning(place: &str, region: &str) -> Option<String> {
    (!KNOWN_REGIONS.contains(&region)).then(|| {
        format!(
            "{place}: {region:?} is not a region this build knows; \
             it is used as given, but check it for a typo"
        )
    })
}

pub(super) fn validate_regions(
    place: &str,
    regions: Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, region) in regions.iter().enumerate() {
        check_region(region).map_err(|m| invalid(format!("{place}[{i}]"), m))?;
        if let Some(warning) = unknown_region_warning(&format!("{place}[{i}]"), region) {
            warnings.push(warning);
        }
        if !seen.insert(region.as_str()) {
            return Err(invalid(
                format!("{place}[{i}]"),
                format!("{region:?} is listed twice"),
            ));
        }
    }
    Ok(regions)
}

pub(super) fn validate_image_ids(
    place: &str,
    ids: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    for (i, id) in ids.iter().enumerate() {
        let hex = id.strip_prefix("ami-").unwrap_or("");
        let ok = (8..=17).contains(&hex.len())
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !ok {
            return Err(invalid(
                format!("{place}[{i}]"),
                format!("{id:?} is not an AMI id (ami- followed by 8 or 17 hex digits)"),
            ));
        }
    }
    Ok(ids)
}

pub(super) fn validate_filters(
    place: &str,
    filters: Vec<RawFilter>,
) -> Result<Vec<Filter>, ConfigError> {
    filters
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            if !FILTER_NAMES.contains(&f.name.as_str()) {
                return Err(invalid(
                    format!("{place}[{i}].name"),
                    format!(
                        "{:?} is not a DescribeFastLaunchImages filter (one of {})",
                        f.name,
                        FILTER_NAMES.join(", ")
                    ),
                ));
            }
            if f.values.is_empty() {
                return Err(invalid(
                    format!("{place}[{i}].values"),
                    "is empty; a filter needs at least one value",
                ));
            }
            Ok(Filter {
                name: f.name,
                values: f.values,
            })
        })
        .collect()
}

pub(super) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

pub(super) fn validate_account(
    place: &str,
    raw: RawAccount,
    (default_regions, default_all): (&[String], bool),
    default_image_ids: &[String],
    default_filters: &[Filter],
    warnings: &mut Vec<String>,
) -> Result<AccountConfig, ConfigError> {
    if let Some(name) = &raw.name {
        if name.trim().is_empty() {
            return Err(invalid(format!("{place}.name"), "is empty"));
        }
    }
    let role = validate_role(
        place,
        raw.role_arn,
        raw.external_id,
        raw.session_name,
        raw.duration,
    )?;
    let (regions, all_regions) = match raw.regions {
        Some(RawRegions::List(list)) if list.is_empty() => {
            return Err(invalid(
                format!("{place}.regions"),
                "is empty; leave it out to use the top-level regions",
            ))
        }
        // `all`: the top-level list (or the environment's region) until the enabled regions are known.
        Some(word @ RawRegions::Word(_)) => {
            let (_, all) =
                validate_region_choice(&format!("{place}.regions"), Some(word), warnings)?;
            (default_regions.to_vec(), all)
        }
        Some(RawRegions::List(list)) => (
            validate_regions(&format!("{place}.regions"), list, warnings)?,
            false,
        ),
        None => (default_regions.to_vec(), default_all),
    };
    let image_ids = match raw.image_ids {
        Some(list) => validate_image_ids(&format!("{place}.image_ids"), list)?,
        None => default_image_ids.to_vec(),
    };
    let filters = match raw.filters {
        Some(list) => validate_filters(&format!("{place}.filters"), list)?,
        None => default_filters.to_vec(),
    };
    for key in raw.labels.keys() {
        if !is_label_name(key) {
            return Err(invalid(
                format!("{place}.labels"),
                format!("{key:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            ));
        }
        if RESERVED_LABELS.contains(&key.as_str()) || key.starts_with("__") {
            return Err(invalid(
                format!("{place}.labels"),
                format!("{key:?} is reserved by the exporter"),
            ));
        }
    }
    Ok(AccountConfig {
        name: raw.name,
        role,
        regions,
        query: Query { image_ids, filters },
        labels: raw.labels,
        cloudwatch: None,
        all_regions,
    })
}

/// The role of an account entry at `place`: None without `role_arn` (then the AssumeRole keys
/// must be absent too).
fn validate_role(
    place: &str,
    role_arn: Option<String>,
    external_id: Option<String>,
    session_name: Option<String>,
    duration: Option<String>,
) -> Result<Option<RoleSpec>, ConfigError> {
    Ok(match role_arn {
        None => {
            for (key, present) in [
                ("external_id", external_id.is_some()),
                ("session_name", session_name.is_some()),
                ("duration", duration.is_some()),
            ] {
                if present {
                    return Err(invalid(
                        format!("{place}.{key}"),
                        "is set but role_arn is not; it only applies to AssumeRole",
                    ));
                }
            }
            None
        }
        Some(arn) => {
            let account_id =
                role_account_id(&arn).map_err(|m| invalid(format!("{place}.role_arn"), m))?;
            if let Some(external_id) = &external_id {
                check_external_id(&format!("{place}.external_id"), external_id)?;
            }
            let session_name = session_name.unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
            // RoleSessionName: 2–64 characters of [\w+=,.@-] per the STS API reference.
            let ok = (2..=64).contains(&session_name.len())
                && session_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c));
            if !ok {
                return Err(invalid(
                    format!("{place}.session_name"),
                    format!("{session_name:?} must be 2 to 64 characters of letters, digits and +=,.@-_"),
                ));
            }
            let duration = match &duration {
                None => None,
                Some(text) => {
                    let place = format!("{place}.duration");
                    let d = parse_duration(&place, text, &duration::ROLE_SESSION)?;
                    Some(d)
                }
            };
            Some(RoleSpec {
                arn,
                account_id,
                external_id,
                session_name,
                duration,
            })
        }
    })
}
