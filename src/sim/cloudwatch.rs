//! CloudWatch in the protocol the Rust SDK speaks to it: Smithy RPC v2 CBOR (`POST
//! /service/GraniteServiceVersion20100801/operation/<Op>`, CBOR bodies, `smithy-protocol:
//! rpc-v2-cbor`; errors as a CBOR `__type`/`message` map plus the query-compatible
//! `x-amzn-query-error: <code>;Sender` header — see shared/reference/rust-sdk-notes.md).
//! `ListMetrics` and `GetMetricData` over the world's raw datapoints, aggregated to the period and
//! statistic asked for, both paginated with `NextToken`.

use std::collections::BTreeMap;

use super::cbor::{self, Value};
use super::World;

/// The path prefix of every CloudWatch operation.
pub(super) const PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

/// GetMetricData's limit of queries per call.
const MAX_QUERIES: usize = 500;

/// The namespace every simulated metric is in.
const NAMESPACE: &str = "AWS/EC2";

/// One (account, region)'s metrics: raw datapoints by (metric name, dimensions).
pub(crate) type SimMetrics = BTreeMap<(String, Vec<(String, String)>), Vec<(i64, f64)>>;

/// A CloudWatch answer: status, CBOR body, and the code for `x-amzn-query-error`.
pub(super) struct CloudWatchAnswer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) query_error: Option<String>,
}

impl CloudWatchAnswer {
    fn ok(value: &Value) -> CloudWatchAnswer {
        CloudWatchAnswer {
            status: 200,
            body: cbor::encode(value),
            query_error: None,
        }
    }

    /// An error as RPC v2 CBOR writes it, with CloudWatch's query-compatible code.
    pub(super) fn error(status: u16, code: &str, message: &str) -> CloudWatchAnswer {
        let fault = if status >= 500 { "Receiver" } else { "Sender" };
        CloudWatchAnswer {
            status,
            body: cbor::encode(&Value::map([
                (
                    "__type",
                    Value::text(&format!("com.amazonaws.cloudwatch#{code}")),
                ),
                ("message", Value::text(message)),
            ])),
            query_error: Some(format!("{code};{fault}")),
        }
    }
}

/// What the request log keeps of a CloudWatch request.
pub(super) fn logged_params(action: &str, body: Option<&Value>) -> Vec<(String, String)> {
    let Some(body) = body else {
        return Vec::new();
    };
    let mut params = Vec::new();
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    match action {
        "ListMetrics" => {
            for name in ["Namespace", "MetricName", "NextToken"] {
                if let Some(value) = text(name) {
                    params.push((name.to_string(), value));
                }
            }
        }
        "GetMetricData" => {
            let queries = body
                .get("MetricDataQueries")
                .map_or(0, |q| q.as_array().len());
            params.push(("queries".to_string(), queries.to_string()));
            for name in ["StartTime", "EndTime"] {
                if let Some(at) = body.get(name).and_then(Value::as_epoch_seconds) {
                    params.push((name.to_string(), (at as i64).to_string()));
                }
            }
            if let Some(token) = text("NextToken") {
                params.push(("NextToken".to_string(), token));
            }
        }
        _ => {}
    }
    params
}

/// Answers one CloudWatch operation for `account` in `region`.
pub(super) fn answer(
    world: &World,
    account: &str,
    region: &str,
    action: &str,
    body: Option<&Value>,
) -> CloudWatchAnswer {
    let Some(body) = body else {
        return CloudWatchAnswer::error(400, "SerializationException", "body is not CBOR");
    };
    let empty = SimMetrics::new();
    let metrics = world
        .metrics
        .get(&(account.to_string(), region.to_string()))
        .unwrap_or(&empty);
    match action {
        "ListMetrics" => list_metrics(world, metrics, body),
        "GetMetricData" => get_metric_data(world, metrics, body),
        _ => CloudWatchAnswer::error(
            400,
            "UnknownOperationException",
            &format!("unknown operation {action:?}"),
        ),
    }
}

fn next_token(body: &Value) -> Result<usize, CloudWatchAnswer> {
    match body.get("NextToken").and_then(Value::as_str) {
        None => Ok(0),
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| CloudWatchAnswer::error(400, "InvalidNextToken", "bad NextToken")),
    }
}

fn dimensions_value(dimensions: &[(String, String)]) -> Value {
    Value::Array(
        dimensions
            .iter()
            .map(|(n, v)| Value::map([("Name", Value::text(n)), ("Value", Value::text(v))]))
            .collect(),
    )
}

fn list_metrics(world: &World, metrics: &SimMetrics, body: &Value) -> CloudWatchAnswer {
    let namespace = body.get("Namespace").and_then(Value::as_str);
    let name = body.get("MetricName").and_then(Value::as_str);
    let start = match next_token(body) {
        Ok(n) => n,
        Err(error) => return error,
    };
    let page_size = match world.list_metrics_page_size {
        0 => 500,
        n => n,
    };
    let matching: Vec<&(String, Vec<(String, String)>)> = metrics
        .keys()
        .filter(|_| namespace.is_none_or(|n| n == NAMESPACE))
        .filter(|(metric, _)| name.is_none_or(|n| n == metric))
        .filter(|(metric, _)| !world.unlisted_metrics.contains(metric))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|(metric, dimensions)| {
            Value::map([
                ("Namespace", Value::text(NAMESPACE)),
                ("MetricName", Value::text(metric)),
                ("Dimensions", dimensions_value(dimensions)),
            ])
        })
        .collect();
    let mut answer = vec![("Metrics", Value::Array(page))];
    if start + page_size < matching.len() {
        answer.push((
            "NextToken",
            Value::text(&format!("page-{}", start + page_size)),
        ));
    }
    CloudWatchAnswer::ok(&Value::Map(
        answer
            .into_iter()
            .map(|(k, v)| (Value::text(k), v))
            .collect(),
    ))
}

/// One query's aggregated datapoints, newest first unless `TimestampAscending`.
fn query_points(
    metrics: &SimMetrics,
    query: &Value,
    start: i64,
    end: i64,
    ascending: bool,
) -> Result<(String, Vec<(i64, f64)>), CloudWatchAnswer> {
    let invalid = |message: &str| CloudWatchAnswer::error(400, "InvalidParameterValue", message);
    let id = query
        .get("Id")
        .and_then(Value::as_str)
        .filter(|id| {
            id.starts_with(|c: char| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .ok_or_else(|| invalid("every query needs an Id of [a-z][a-zA-Z0-9_]*"))?;
    let stat = query
        .get("MetricStat")
        .ok_or_else(|| invalid("only MetricStat queries are simulated"))?;
    let period = stat
        .get("Period")
        .and_then(Value::as_i64)
        .filter(|p| *p >= 60 && p % 60 == 0)
        .ok_or_else(|| invalid("Period must be a multiple of 60"))?;
    let statistic = stat.get("Stat").and_then(Value::as_str).unwrap_or_default();
    let metric = stat
        .get("Metric")
        .ok_or_else(|| invalid("MetricStat.Metric is required"))?;
    let namespace = metric.get("Namespace").and_then(Value::as_str);
    let name = metric.get("MetricName").and_then(Value::as_str);
    let dimensions: Vec<(String, String)> = metric
        .get("Dimensions")
        .map(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| {
            Some((
                d.get("Name")?.as_str()?.to_string(),
                d.get("Value")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let found = (namespace == Some(NAMESPACE))
        .then(|| metrics.get(&(name.unwrap_or_default().to_string(), dimensions)))
        .flatten();
    for (at, value) in found.map_or(&[][..], Vec::as_slice) {
        if *at >= start && *at < end {
            buckets
                .entry(at.div_euclid(period) * period)
                .or_default()
                .push(*value);
        }
    }
    let mut points: Vec<(i64, f64)> = Vec::new();
    for (at, values) in buckets {
        let value = match statistic {
            "Sum" => values.iter().sum(),
            "Minimum" => values.iter().copied().fold(f64::INFINITY, f64::min),
            "Maximum" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "Average" => values.iter().sum::<f64>() / values.len() as f64,
            "SampleCount" => values.len() as f64,
            other => return Err(invalid(&format!("statistic {other:?} is not simulated"))),
        };
        points.push((at, value));
    }
    if !ascending {
        points.reverse();
    }
    Ok((id.to_string(), points))
}

fn get_metric_data(world: &World, metrics: &SimMetrics, body: &Value) -> CloudWatchAnswer {
    let queries = body
        .get("MetricDataQueries")
        .map(Value::as_array)
        .unwrap_or_default();
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        return CloudWatchAnswer::error(
            400,
            "InvalidParameterValue",
            &format!(
                "The collection MetricDataQueries must have between 1 and {MAX_QUERIES} items; it has {}",
                queries.len()
            ),
        );
    }
    let (Some(start), Some(end)) = (
        body.get("StartTime").and_then(Value::as_epoch_seconds),
        body.get("EndTime").and_then(Value::as_epoch_seconds),
    ) else {
        return CloudWatchAnswer::error(
            400,
            "MissingParameter",
            "StartTime and EndTime are required",
        );
    };
    let ascending = body.get("ScanBy").and_then(Value::as_str) == Some("TimestampAscending");
    let skip = match next_token(body) {
        Ok(n) => n,
        Err(error) => return error,
    };
    let page_size = match world.metric_data_page_size {
        0 => 100_800,
        n => n,
    };
    // Every (query, datapoint) in order; a page takes the next `page_size` of them, so one query's
    // datapoints may continue on the next page, as CloudWatch's do.
    let mut all: Vec<(String, i64, f64)> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for query in queries {
        match query_points(metrics, query, start as i64, end as i64, ascending) {
            Ok((id, points)) => {
                all.extend(points.into_iter().map(|(t, v)| (id.clone(), t, v)));
                ids.push(id);
            }
            Err(error) => return error,
        }
    }
    let page = all.iter().skip(skip).take(page_size);
    let mut results: Vec<(String, Vec<Value>, Vec<Value>)> = ids
        .into_iter()
        .map(|id| (id, Vec::new(), Vec::new()))
        .collect();
    for (id, at, value) in page {
        if let Some(result) = results.iter_mut().find(|r| &r.0 == id) {
            result.1.push(Value::timestamp(*at));
            result.2.push(Value::Float(*value));
        }
    }
    let more = skip + page_size < all.len();
    let results: Vec<Value> = results
        .into_iter()
        .map(|(id, timestamps, values)| {
            Value::map([
                ("Id", Value::text(&id)),
                ("Label", Value::text(&id)),
                ("Timestamps", Value::Array(timestamps)),
                ("Values", Value::Array(values)),
                (
                    "StatusCode",
                    Value::text(if more { "PartialData" } else { "Complete" }),
                ),
            ])
        })
        .collect();
    let mut answer = vec![
        (Value::text("MetricDataResults"), Value::Array(results)),
        (Value::text("Messages"), Value::Array(Vec::new())),
    ];
    if more {
        answer.push((
            Value::text("NextToken"),
            Value::text(&format!("page-{}", skip + page_size)),
        ));
    }
    CloudWatchAnswer::ok(&Value::Map(answer))
}
