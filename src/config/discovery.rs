//! `discovery.organizations`: which accounts of the organization to collect, and how.

use super::raw::*;
use super::*;

/// A label name made of a tag key: every character outside `[a-zA-Z0-9_]` becomes `_`, and a
/// leading digit gets a `_` before it (`cost-center` → `cost_center`).
pub fn label_name_of_tag(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        name.insert(0, '_');
    }
    name
}

pub(super) fn validate_organizations(
    raw: RawOrganizations,
) -> Result<OrganizationsDiscovery, ConfigError> {
    const PLACE: &str = "discovery.organizations";
    let role = match raw.role_arn {
        None => {
            if raw.external_id.is_some() {
                return Err(invalid(
                    format!("{PLACE}.external_id"),
                    "is set but role_arn is not; it only applies to AssumeRole",
                ));
            }
            None
        }
        Some(arn) => {
            let account_id =
                role_account_id(&arn).map_err(|m| invalid(format!("{PLACE}.role_arn"), m))?;
            if let Some(external_id) = &raw.external_id {
                check_external_id(&format!("{PLACE}.external_id"), external_id)?;
            }
            Some(RoleSpec {
                arn,
                account_id,
                external_id: raw.external_id,
                session_name: DEFAULT_SESSION_NAME.to_string(),
                duration: None,
            })
        }
    };
    let Some(template) = raw.member_role_arn else {
        return Err(invalid(
            format!("{PLACE}.member_role_arn"),
            "is required: the role to assume in each account, e.g. \
             \"arn:aws:iam::{account_id}:role/FastLaunchReader\"",
        ));
    };
    if !template.contains("{account_id}") {
        return Err(invalid(
            format!("{PLACE}.member_role_arn"),
            format!("{template:?} must contain {{account_id}}"),
        ));
    }
    role_account_id(&template.replace("{account_id}", "123456789012"))
        .map_err(|m| invalid(format!("{PLACE}.member_role_arn"), m))?;
    if let Some(external_id) = &raw.member_external_id {
        check_external_id(&format!("{PLACE}.member_external_id"), external_id)?;
    }
    for (i, ou) in raw.organizational_units.iter().enumerate() {
        // OU ids: ou-<4-32 root chars>-<8-32 chars>; a root id (r-xxxx) is accepted too.
        let ok = (ou.starts_with("ou-") || ou.starts_with("r-"))
            && ou.len() <= 68
            && ou[2..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(invalid(
                format!("{PLACE}.organizational_units[{i}]"),
                format!("{ou:?} is not an OU id (ou-xxxx-xxxxxxxx) or root id (r-xxxx)"),
            ));
        }
    }
    for (i, id) in raw.exclude_accounts.iter().enumerate() {
        check_account_id(id).map_err(|m| invalid(format!("{PLACE}.exclude_accounts[{i}]"), m))?;
    }
    let mut labels_from_tags = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, key) in raw.labels_from_tags.iter().enumerate() {
        let name = label_name_of_tag(key);
        if RESERVED_LABELS.contains(&name.as_str()) || name.starts_with("__") {
            return Err(invalid(
                format!("{PLACE}.labels_from_tags[{i}]"),
                format!("{key:?} becomes the label {name:?}, which the exporter uses itself"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(
                format!("{PLACE}.labels_from_tags[{i}]"),
                format!("{key:?} becomes the label {name:?}, as an earlier tag does"),
            ));
        }
        labels_from_tags.push((key.clone(), name));
    }
    let interval = match &raw.interval {
        None => DEFAULT_DISCOVERY_INTERVAL,
        Some(text) => {
            // Any positive duration; short ones are for tests and demos (every discovery lists
            // the whole organization).
            parse_duration(
                &format!("{PLACE}.interval"),
                text,
                &duration::DISCOVERY_INTERVAL,
            )?
        }
    };
    let mut tags = BTreeMap::new();
    for (key, value) in raw.tags {
        let text = match value {
            serde_yaml::Value::String(text) => text,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => {
                return Err(invalid(
                    format!("{PLACE}.tags.{key}"),
                    format!("{other:?} is not a tag value (a string)"),
                ))
            }
        };
        tags.insert(key, text);
    }
    Ok(OrganizationsDiscovery {
        role,
        member_role_arn: template,
        member_external_id: raw.member_external_id,
        organizational_units: raw.organizational_units,
        exclude_accounts: raw.exclude_accounts,
        tags,
        labels_from_tags,
        interval,
    })
}
