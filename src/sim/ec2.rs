//! The EC2 query protocol for `DescribeFastLaunchImages`: form parameters in, XML out, errors in
//! EC2's `<Response><Errors>` shape (shared/reference/aws-wire-format.md).

use std::collections::BTreeMap;

use super::{escape_xml, iso8601, param, request_id, World};
use crate::domain::model::{FastLaunchImage, FastLaunchState};

/// The most images one page returns when the request has no `MaxResults`.
const DEFAULT_PAGE: usize = 200;

pub(super) fn describe_fast_launch_images(
    world: &World,
    account: &str,
    region: &str,
    params: &[(String, String)],
) -> (u16, String) {
    let get = |name: &str| param(params, name);
    if get("DryRun") == Some("true") {
        return (
            412,
            ec2_error(
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            ),
        );
    }
    let page_size = match get("MaxResults").map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if n <= 200 => n.max(1),
        Some(_) => {
            return (
                400,
                ec2_error(
                    "InvalidParameterValue",
                    "MaxResults must be between 0 and 200",
                ),
            )
        }
    };
    let start = match get("NextToken") {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return (400, ec2_error("InvalidParameterValue", "invalid NextToken")),
        },
    };
    let image_ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("ImageId."))
        .map(|(_, v)| v.as_str())
        .collect();
    let filters = parse_filters(params);
    let empty = Vec::new();
    let all = world
        .images
        .get(&(account.to_string(), region.to_string()))
        .unwrap_or(&empty);
    let selected: Vec<&FastLaunchImage> = all
        .iter()
        .filter(|image| image_ids.is_empty() || image_ids.contains(&image.image_id.as_str()))
        .filter(|image| {
            filters.iter().all(|(name, values)| {
                let value = match name.as_str() {
                    "state" => image
                        .state
                        .as_ref()
                        .map(FastLaunchState::as_str)
                        .unwrap_or(""),
                    "owner-id" => image.owner_id.as_str(),
                    "resource-type" => image.resource_type.as_str(),
                    _ => return false,
                };
                values.iter().any(|v| v == value)
            })
        })
        .collect();
    let end = (start + page_size).min(selected.len());
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeFastLaunchImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">",
    );
    xml.push_str(&format!(
        "<requestId>{}</requestId><fastLaunchImageSet>",
        request_id()
    ));
    for image in selected.get(start..end).unwrap_or_default() {
        xml.push_str(&image_xml(image));
    }
    xml.push_str("</fastLaunchImageSet>");
    if end < selected.len() {
        xml.push_str(&format!("<nextToken>page-{end}</nextToken>"));
    }
    xml.push_str("</DescribeFastLaunchImagesResponse>");
    (200, xml)
}

/// `Filter.N.Name` / `Filter.N.Value.M` into (name, values), in N order.
fn parse_filters(params: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut filters: BTreeMap<u32, (String, Vec<String>)> = BTreeMap::new();
    for (key, value) in params {
        let Some(rest) = key.strip_prefix("Filter.") else {
            continue;
        };
        let mut parts = rest.splitn(2, '.');
        let Some(n) = parts.next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let entry = filters.entry(n).or_default();
        match parts.next() {
            Some("Name") => entry.0 = value.clone(),
            Some(v) if v.starts_with("Value.") => entry.1.push(value.clone()),
            _ => {}
        }
    }
    filters.into_values().collect()
}

fn element(name: &str, value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("<{name}>{}</{name}>", escape_xml(value))
    }
}

fn image_xml(image: &FastLaunchImage) -> String {
    let mut xml = String::from("<item>");
    xml.push_str(&element("imageId", &image.image_id));
    xml.push_str(&element("resourceType", &image.resource_type));
    if let Some(count) = image.target_resource_count {
        xml.push_str(&format!(
            "<snapshotConfiguration><targetResourceCount>{count}</targetResourceCount></snapshotConfiguration>"
        ));
    }
    let template = [
        element("launchTemplateId", &image.launch_template_id),
        element("launchTemplateName", &image.launch_template_name),
        element("version", &image.launch_template_version),
    ]
    .concat();
    if !template.is_empty() {
        xml.push_str(&format!("<launchTemplate>{template}</launchTemplate>"));
    }
    if let Some(limit) = image.max_parallel_launches {
        xml.push_str(&format!(
            "<maxParallelLaunches>{limit}</maxParallelLaunches>"
        ));
    }
    xml.push_str(&element("ownerId", &image.owner_id));
    if let Some(state) = &image.state {
        xml.push_str(&element("state", state.as_str()));
    }
    xml.push_str(&element(
        "stateTransitionReason",
        &image.state_transition_reason,
    ));
    if let Some(at) = image.state_transition_time {
        xml.push_str(&element("stateTransitionTime", &iso8601(at)));
    }
    xml.push_str("</item>");
    xml
}

pub(super) fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape_xml(code),
        escape_xml(message),
        request_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_grouped_by_index() {
        let params = vec![
            ("Filter.1.Name".to_string(), "state".to_string()),
            ("Filter.1.Value.1".to_string(), "enabled".to_string()),
            ("Filter.1.Value.2".to_string(), "enabling".to_string()),
            ("Filter.2.Name".to_string(), "owner-id".to_string()),
            ("Filter.2.Value.1".to_string(), "111".to_string()),
        ];
        assert_eq!(
            parse_filters(&params),
            vec![
                (
                    "state".to_string(),
                    vec!["enabled".to_string(), "enabling".to_string()]
                ),
                ("owner-id".to_string(), vec!["111".to_string()]),
            ]
        );
    }
}
