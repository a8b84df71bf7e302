//! What CloudWatch says about one target's launches, turned into Prometheus series: the latest
//! available-snapshot count per image, and two counters (fast and cold launches) that add each
//! CloudWatch period's Sum exactly once.
//!
//! A period `[t, t + P)` is counted only once it ended at least one period ago (`t + 2P <= now`),
//! so that a datapoint CloudWatch publishes a little late is still counted; everything counted
//! moves `counted_until` forward, so no period is counted twice. An image's counters start at 0
//! when CloudWatch first lists one of its metrics, counting the periods from then on, so that
//! `increase()` sees the first launches. Plain data, no clock and no AWS: the collector passes
//! `now` and the datapoints.

use std::collections::{BTreeMap, HashSet};

use crate::domain::model::{CloudWatchSpec, LaunchMetric, MetricSeries, MetricWindow};

/// The furthest back a query reaches for periods not yet counted (after a long CloudWatch
/// outage, older periods are skipped rather than asked for in one huge query).
pub const MAX_CATCH_UP_SECS: i64 = 24 * 3600;

/// One image's CloudWatch values.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLaunches {
    /// The latest `NumberOfAvailableFastLaunchSnapshots` (Minimum) within the lookback.
    pub available_snapshots: Option<f64>,
    /// Sum of `NumberOfInstancesFastLaunched` over the counted periods.
    pub fast_launches: f64,
    /// Sum of `NumberOfInstancesNotFastLaunched` over the counted periods.
    pub cold_launches: f64,
    /// Periods starting before this Unix second are counted (or were before the image was seen).
    counted_until: i64,
    /// When the counters started at 0 (the image first seen), Unix seconds: OpenMetrics'
    /// `_created`.
    pub created: i64,
}

/// The CloudWatch values of one target's images, by image id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Launches {
    images: BTreeMap<String, ImageLaunches>,
}

/// The start of the latest period that may be counted at `now` ends at this second: periods
/// starting before it ended at least one period ago.
fn countable_until(now: i64, period: i64) -> i64 {
    (now - period).div_euclid(period) * period
}

impl Launches {
    /// The values of `image_id`, if CloudWatch has data for it.
    pub fn image(&self, image_id: &str) -> Option<&ImageLaunches> {
        self.images.get(image_id)
    }

    /// How many images have CloudWatch data.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether no image has CloudWatch data.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The same counters without the available-snapshot values: after a failed query, nothing
    /// says what is available now (an old value would keep an alert firing on stale data).
    pub fn without_available(&self) -> Launches {
        let mut launches = self.clone();
        for image in launches.images.values_mut() {
            image.available_snapshots = None;
        }
        launches
    }

    /// The range to ask for at `now` (Unix seconds): back to the lookback, and back to the
    /// oldest period not yet counted (at most [`MAX_CATCH_UP_SECS`]), on period boundaries.
    pub fn window(&self, spec: &CloudWatchSpec, now: i64) -> MetricWindow {
        let period = spec.period.as_secs().max(60) as i64;
        let lookback = spec.lookback.as_secs() as i64;
        let oldest_uncounted = self
            .images
            .values()
            .map(|i| i.counted_until)
            .min()
            .unwrap_or(now);
        let start = (now - lookback)
            .min(oldest_uncounted)
            .max(now - MAX_CATCH_UP_SECS.max(lookback));
        MetricWindow {
            start: start.div_euclid(period) * period,
            end: now,
            period,
        }
    }

    /// The values after one successful CloudWatch query at `now`, for the target's current
    /// images (`image_ids`; others are dropped) and the series found for them.
    pub fn advanced(
        &self,
        spec: &CloudWatchSpec,
        now: i64,
        image_ids: &[String],
        series: &[MetricSeries],
    ) -> Launches {
        let period = spec.period.as_secs().max(60) as i64;
        let lookback_start = now - spec.lookback.as_secs() as i64;
        let until = countable_until(now, period);
        let current: HashSet<&str> = image_ids.iter().map(String::as_str).collect();
        let listed: HashSet<&str> = series.iter().map(|s| s.image_id.as_str()).collect();
        let mut images: BTreeMap<String, ImageLaunches> = BTreeMap::new();
        for id in image_ids {
            if images.contains_key(id) {
                continue;
            }
            let known = self.images.get(id);
            if known.is_none() && !listed.contains(id.as_str()) {
                continue;
            }
            images.insert(
                id.clone(),
                match known {
                    Some(known) => ImageLaunches {
                        // Only a datapoint of this query says what is available now.
                        available_snapshots: None,
                        ..known.clone()
                    },
                    // First seen: start at 0 and count the periods from now on.
                    None => ImageLaunches {
                        available_snapshots: None,
                        fast_launches: 0.0,
                        cold_launches: 0.0,
                        counted_until: until,
                        created: now,
                    },
                },
            );
        }
        for s in series {
            if !current.contains(s.image_id.as_str()) {
                continue;
            }
            let Some(image) = images.get_mut(&s.image_id) else {
                continue;
            };
            match s.metric {
                LaunchMetric::AvailableSnapshots => {
                    image.available_snapshots = s
                        .points
                        .iter()
                        .filter(|(t, v)| *t >= lookback_start && v.is_finite())
                        .max_by_key(|(t, _)| *t)
                        .map(|(_, v)| *v);
                }
                LaunchMetric::FastLaunched | LaunchMetric::NotFastLaunched => {
                    let from = image.counted_until;
                    // A period appears once per series; a repeated timestamp (pages overlapping)
                    // is counted once.
                    let mut seen = HashSet::new();
                    let added: f64 = s
                        .points
                        .iter()
                        .filter(|(t, v)| {
                            *t >= from
                                && *t < until
                                && *v >= 0.0
                                && v.is_finite()
                                && seen.insert(*t)
                        })
                        .map(|(_, v)| v)
                        .sum();
                    if s.metric == LaunchMetric::FastLaunched {
                        image.fast_launches += added;
                    } else {
                        image.cold_launches += added;
                    }
                }
            }
        }
        for image in images.values_mut() {
            image.counted_until = image.counted_until.max(until);
        }
        Launches { images }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const P: i64 = 300;

    fn spec() -> CloudWatchSpec {
        CloudWatchSpec {
            period: Duration::from_secs(P as u64),
            lookback: Duration::from_secs(1800),
        }
    }

    fn series(image: &str, metric: LaunchMetric, points: &[(i64, f64)]) -> MetricSeries {
        MetricSeries {
            image_id: image.to_string(),
            metric,
            points: points.to_vec(),
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // A time inside a period: 10_000 periods after the epoch, plus 100 s.
    const T0: i64 = 10_000 * P + 100;

    #[test]
    fn a_first_seen_image_starts_at_zero_and_counts_each_ended_period_once() {
        let cold = |points: &[(i64, f64)]| {
            vec![
                series("ami-1", LaunchMetric::NotFastLaunched, points),
                series(
                    "ami-1",
                    LaunchMetric::AvailableSnapshots,
                    &[(T0 - 100, 4.0)],
                ),
            ]
        };
        // History before the image was first seen is not counted.
        let history = [(T0 - 100 - 3 * P, 7.0), (T0 - 100 - 2 * P, 1.0)];
        let first = Launches::default().advanced(&spec(), T0, &ids(&["ami-1"]), &cold(&history));
        let image = first.image("ami-1").unwrap();
        assert_eq!(image.cold_launches, 0.0);
        assert_eq!(image.available_snapshots, Some(4.0));

        // The period that was running at T0 gets 2 launches; it ends at T0 - 100 + P and may be
        // counted from one period after that.
        let running = T0 - 100;
        let mut points = history.to_vec();
        points.push((running, 2.0));
        let early = first.advanced(
            &spec(),
            running + 2 * P - 1,
            &ids(&["ami-1"]),
            &cold(&points),
        );
        assert_eq!(early.image("ami-1").unwrap().cold_launches, 0.0);
        let counted = early.advanced(&spec(), running + 2 * P, &ids(&["ami-1"]), &cold(&points));
        assert_eq!(counted.image("ami-1").unwrap().cold_launches, 2.0);
        // Asked again (a later query returns the same periods): not counted twice.
        let again = counted.advanced(
            &spec(),
            running + 2 * P + 60,
            &ids(&["ami-1"]),
            &cold(&points),
        );
        assert_eq!(again.image("ami-1").unwrap().cold_launches, 2.0);
    }

    #[test]
    fn a_late_datapoint_within_a_period_of_its_end_is_counted() {
        let first = Launches::default().advanced(
            &spec(),
            T0,
            &ids(&["ami-1"]),
            &[series("ami-1", LaunchMetric::FastLaunched, &[])],
        );
        let running = T0 - 100;
        // At the end of the period, CloudWatch has nothing yet for it.
        let at_end = first.advanced(
            &spec(),
            running + P + 10,
            &ids(&["ami-1"]),
            &[series("ami-1", LaunchMetric::FastLaunched, &[])],
        );
        assert_eq!(at_end.image("ami-1").unwrap().fast_launches, 0.0);
        // The datapoint lands late; the next query after the period's grace counts it.
        let late = at_end.advanced(
            &spec(),
            running + 2 * P + 10,
            &ids(&["ami-1"]),
            &[series(
                "ami-1",
                LaunchMetric::FastLaunched,
                &[(running, 5.0)],
            )],
        );
        let image = late.image("ami-1").unwrap();
        assert_eq!(image.fast_launches, 5.0);
        assert_eq!(image.cold_launches, 0.0);
    }

    #[test]
    fn images_without_data_have_no_values_and_gone_images_are_dropped() {
        let first = Launches::default().advanced(
            &spec(),
            T0,
            &ids(&["ami-1", "ami-2"]),
            &[series("ami-1", LaunchMetric::FastLaunched, &[])],
        );
        assert!(first.image("ami-1").is_some());
        assert!(
            first.image("ami-2").is_none(),
            "no CloudWatch data, no series"
        );
        let later = first.advanced(&spec(), T0 + P, &ids(&["ami-2"]), &[]);
        assert!(later.is_empty());
    }

    #[test]
    fn available_snapshots_is_the_latest_point_within_the_lookback() {
        let points = [
            (T0 - 100 - 2 * P, 1.0),
            (T0 - 100 - P, 3.0),
            (T0 - 100 - 10 * P, 9.0),
        ];
        let launches = Launches::default().advanced(
            &spec(),
            T0,
            &ids(&["ami-1"]),
            &[series("ami-1", LaunchMetric::AvailableSnapshots, &points)],
        );
        assert_eq!(
            launches.image("ami-1").unwrap().available_snapshots,
            Some(3.0)
        );
        let stale = Launches::default().advanced(
            &spec(),
            T0,
            &ids(&["ami-1"]),
            &[series(
                "ami-1",
                LaunchMetric::AvailableSnapshots,
                &[(T0 - 100 - 10 * P, 9.0)],
            )],
        );
        assert_eq!(stale.image("ami-1").unwrap().available_snapshots, None);
    }

    #[test]
    fn the_window_reaches_back_to_the_oldest_uncounted_period_on_period_boundaries() {
        let launches = Launches::default().advanced(
            &spec(),
            T0,
            &ids(&["ami-1"]),
            &[series("ami-1", LaunchMetric::FastLaunched, &[])],
        );
        let window = launches.window(&spec(), T0 + 3 * 3600);
        assert_eq!(window.start, countable_until(T0, P));
        assert_eq!(window.start % P, 0);
        assert_eq!(window.end, T0 + 3 * 3600);
        let far = launches.window(&spec(), T0 + 3 * 86_400);
        assert_eq!(
            far.start,
            (T0 + 3 * 86_400 - MAX_CATCH_UP_SECS).div_euclid(P) * P
        );
        let fresh = Launches::default().window(&spec(), T0);
        assert_eq!(fresh.start, (T0 - 1800).div_euclid(P) * P);
    }
}
