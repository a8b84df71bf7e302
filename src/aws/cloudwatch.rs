//! A target's CloudWatch calls: `ListMetrics` to find each image's fast launch metrics (whatever
//! their dimension is named), then `GetMetricData` for all of them, at most 500 queries per call.
//! The SDK speaks Smithy RPC v2 CBOR to CloudWatch.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode};

use super::accounting::AttemptCounter;
use super::errors;
use crate::domain::calls::{Api, ApiError, ErrorCode};
use crate::domain::model::{LaunchMetric, MetricSeries, MetricWindow};

/// GetMetricData's limit of queries per call.
pub(crate) const MAX_QUERIES_PER_CALL: usize = 500;

/// The CloudWatch calls of one target: the process's shared client, called with the target's
/// region, retry partition, credentials and counter.
#[derive(Debug, Clone)]
pub(crate) struct CloudWatchClient {
    pub(crate) client: aws_sdk_cloudwatch::Client,
    pub(super) per_call: super::PerCall,
    pub(crate) counter: AttemptCounter,
}

impl CloudWatchClient {
    /// The datapoints of the fast launch metrics of `image_ids` in `window`. Images CloudWatch
    /// lists no metric for get no series.
    pub(crate) async fn launch_metrics(
        &self,
        image_ids: &[String],
        window: &MetricWindow,
    ) -> Result<Vec<MetricSeries>, ApiError> {
        let wanted: HashSet<&str> = image_ids.iter().map(String::as_str).collect();
        let mut found: BTreeMap<(String, LaunchMetric), Metric> = BTreeMap::new();
        for metric in LaunchMetric::ALL {
            for listed in self.list(metric).await? {
                // The image is whichever dimension carries one of the target's image ids; with
                // several dimension sets for one image, the one with the fewest dimensions is
                // the per-image aggregate.
                let Some(image_id) = listed
                    .dimensions()
                    .iter()
                    .filter_map(|d| d.value())
                    .find(|v| wanted.contains(v))
                else {
                    continue;
                };
                let key = (image_id.to_string(), metric);
                let better = found
                    .get(&key)
                    .is_none_or(|kept| listed.dimensions().len() < kept.dimensions().len());
                if better {
                    found.insert(key, listed);
                }
            }
        }
        // A metric without data for two weeks is not listed, and a new one takes up to 15
        // minutes to be: once any of an image's three metrics shows its dimensions, all three are
        // asked for with them, so that an image's first cold launch is not missed.
        let mut images: BTreeMap<String, Metric> = BTreeMap::new();
        for ((image_id, _), metric) in &found {
            images
                .entry(image_id.clone())
                .or_insert_with(|| metric.clone());
        }
        for (image_id, template) in images {
            for metric in LaunchMetric::ALL {
                found.entry((image_id.clone(), metric)).or_insert_with(|| {
                    Metric::builder()
                        .namespace(LaunchMetric::NAMESPACE)
                        .metric_name(metric.metric_name())
                        .set_dimensions(Some(template.dimensions().to_vec()))
                        .build()
                });
            }
        }
        let queries: Vec<((String, LaunchMetric), MetricDataQuery)> = found
            .into_iter()
            .enumerate()
            .map(|(i, (key, metric))| {
                let stat = MetricStat::builder()
                    .metric(metric)
                    .period(window.period as i32)
                    .stat(key.1.statistic())
                    .build();
                let query = MetricDataQuery::builder()
                    .id(format!("q{i}"))
                    .metric_stat(stat)
                    .return_data(true)
                    .build();
                (key, query)
            })
            .collect();
        let mut series = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(MAX_QUERIES_PER_CALL) {
            let mut points = self.get_data(chunk, window).await?;
            for ((image_id, metric), query) in chunk {
                series.push(MetricSeries {
                    image_id: image_id.clone(),
                    metric: *metric,
                    points: query
                        .id()
                        .and_then(|id| points.remove(id))
                        .unwrap_or_default(),
                });
            }
        }
        Ok(series)
    }

    /// One ListMetrics page and one GetMetricData call over the last ten minutes of one
    /// metric (neither API can be dry-run), to prove the IAM permissions.
    pub(crate) async fn check_permission(&self) -> Result<(), ApiError> {
        let metric = LaunchMetric::AvailableSnapshots;
        self.counter.start_call();
        self.client
            .list_metrics()
            .namespace(LaunchMetric::NAMESPACE)
            .metric_name(metric.metric_name())
            .customize()
            .config_override(self.per_call.cloudwatch(&self.counter))
            .send()
            .await
            .map_err(|e| errors::from_sdk(Api::ListMetrics, &e, self.counter.call_attempts()))?;
        let query = MetricDataQuery::builder()
            .id("check")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(LaunchMetric::NAMESPACE)
                            .metric_name(metric.metric_name())
                            .build(),
                    )
                    .period(60)
                    .stat(metric.statistic())
                    .build(),
            )
            .build();
        let now = crate::domain::model::unix_now();
        let window = MetricWindow {
            start: now - 600,
            end: now,
            period: 60,
        };
        self.get_data(&[((String::new(), metric), query)], &window)
            .await
            .map(|_| ())
    }

    /// Every `AWS/EC2` metric named like `metric`, across every page (paged by hand: the SDK's
    /// paginator would drop the per-call settings; like it, a repeated token ends the listing).
    async fn list(&self, metric: LaunchMetric) -> Result<Vec<Metric>, ApiError> {
        let mut metrics = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.counter.start_call();
            let page = self
                .client
                .list_metrics()
                .namespace(LaunchMetric::NAMESPACE)
                .metric_name(metric.metric_name())
                .set_next_token(token.clone())
                .customize()
                .config_override(self.per_call.cloudwatch(&self.counter))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(Api::ListMetrics, &e, self.counter.call_attempts())
                })?;
            metrics.extend(
                page.metrics()
                    .iter()
                    .filter(|m| m.metric_name() == Some(metric.metric_name()))
                    .cloned(),
            );
            match super::next_page(&token, page.next_token()) {
                Some(next) => token = Some(next),
                None => return Ok(metrics),
            }
        }
    }

    /// The datapoints of up to 500 queries, by query id, across every page.
    async fn get_data(
        &self,
        queries: &[((String, LaunchMetric), MetricDataQuery)],
        window: &MetricWindow,
    ) -> Result<HashMap<String, Vec<(i64, f64)>>, ApiError> {
        let mut points: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            self.counter.start_call();
            let page = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.iter().map(|(_, q)| q.clone()).collect()))
                .start_time(DateTime::from_secs(window.start))
                .end_time(DateTime::from_secs(window.end))
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.clone())
                .customize()
                .config_override(self.per_call.cloudwatch(&self.counter))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(Api::GetMetricData, &e, self.counter.call_attempts())
                })?;
            for result in page.metric_data_results() {
                let Some(id) = result.id() else { continue };
                if let Some(status @ (StatusCode::Forbidden | StatusCode::InternalError)) =
                    result.status_code()
                {
                    let message = page
                        .messages()
                        .iter()
                        .chain(result.messages())
                        .find_map(|m| m.value())
                        .unwrap_or("no message")
                        .to_string();
                    return Err(ApiError::new(
                        Api::GetMetricData,
                        ErrorCode::from_aws(Some(status.as_str())),
                        format!("query {id} answered {}: {message}", status.as_str()),
                    ));
                }
                if result.status_code() == Some(&StatusCode::PartialData)
                    && page.next_token().is_none()
                {
                    return Err(ApiError::new(
                        Api::GetMetricData,
                        ErrorCode::Malformed,
                        format!("query {id} answered PartialData without a NextToken"),
                    ));
                }
                if result.timestamps().len() != result.values().len() {
                    return Err(ApiError::new(
                        Api::GetMetricData,
                        ErrorCode::Malformed,
                        format!(
                            "query {id}: {} timestamps but {} values",
                            result.timestamps().len(),
                            result.values().len()
                        ),
                    ));
                }
                points.entry(id.to_string()).or_default().extend(
                    result
                        .timestamps()
                        .iter()
                        .map(DateTime::secs)
                        .zip(result.values().iter().copied()),
                );
            }
            match super::next_page(&token, page.next_token()) {
                Some(next) => token = Some(next),
                None => return Ok(points),
            }
        }
    }
}
