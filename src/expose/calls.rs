//! `fast_launch_exporter_aws_requests_total` and `aws_errors_total`: every part of the exporter
//! that calls AWS registers itself as a [`Caller`] (a target, the event queue, Organizations,
//! DescribeRegions) with the APIs it calls; callers in one account and region add up.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::writer::{unix_seconds, Exposition, Kind};
use crate::domain::calls::{Api, ApiCounters, Caller};
use crate::domain::sync::lock;

/// A counter series of the AWS calls: account id, region, api, error code ("" for requests).
pub(super) type CallSeries = (String, String, Api, &'static str);

/// The callers that share an account id and region (a target, discovery's DescribeRegions, the
/// event queue, Organizations) add up into one series. When one of them goes while the others
/// stay, the sum would go down, which Prometheus reads as a counter reset; the floor keeps what
/// the series had counted instead (until the series itself goes).
#[derive(Debug, Default)]
pub(super) struct CounterFloor {
    /// Per series: the value last exported, and what callers that went had counted.
    series: HashMap<CallSeries, (u64, u64)>,
}

impl CounterFloor {
    pub(super) fn value(&mut self, series: CallSeries, sum: u64) -> u64 {
        let (last, retired) = self.series.entry(series).or_default();
        let mut value = sum + *retired;
        if value < *last {
            *retired += *last - value;
            value = *last;
        }
        *last = value;
        value
    }

    /// Forgets the series not exported this time.
    pub(super) fn keep_only(&mut self, exported: &HashSet<CallSeries>) {
        self.series.retain(|series, _| exported.contains(series));
    }
}

/// When the first of `counters` started: the `_created` of their shared series.
fn created_of(counters: &[&ApiCounters]) -> f64 {
    counters
        .iter()
        .map(|c| unix_seconds(c.created()))
        .fold(f64::INFINITY, f64::min)
}

/// A caller of AWS as the families read it, borrowed from a target's view or a [`Caller`].
pub(super) struct CallerRef<'a> {
    pub(super) account_id: &'a str,
    pub(super) region: &'a str,
    pub(super) apis: &'a [Api],
    pub(super) counters: &'a ApiCounters,
}

impl<'a> From<&'a Caller> for CallerRef<'a> {
    fn from(caller: &'a Caller) -> CallerRef<'a> {
        CallerRef {
            account_id: &caller.account_id,
            region: &caller.region,
            apis: &caller.apis,
            counters: &caller.counters,
        }
    }
}

/// Callers that share an account id and region, merged: their APIs and their counters.
struct Merged<'a> {
    account_id: &'a str,
    region: &'a str,
    apis: Cow<'a, [Api]>,
    counters: Vec<&'a ApiCounters>,
}

/// Callers in one account and region (a target, discovery's DescribeRegions, the queue,
/// Organizations) are one series set: their counts add up. A role assumed for the queue,
/// Organizations or DescribeRegions shows as AssumeRole once it was. `targets` come first, then
/// `others`.
fn merge<'a>(targets: Vec<CallerRef<'a>>, others: &'a [Caller]) -> Vec<Merged<'a>> {
    let own = targets.len();
    let mut merged: Vec<Merged<'a>> = Vec::with_capacity(own + others.len());
    let mut index_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(own);
    let callers = targets
        .into_iter()
        .chain(others.iter().map(CallerRef::from));
    for (index, caller) in callers.enumerate() {
        let mut apis = Cow::Borrowed(caller.apis);
        if index >= own && caller.counters.requests(Api::AssumeRole) > 0 {
            apis.to_mut().push(Api::AssumeRole);
        }
        let key = (caller.account_id, caller.region);
        match index_of.get(&key) {
            Some(&i) => {
                let kept = &mut merged[i];
                for api in apis.iter() {
                    if !kept.apis.contains(api) {
                        kept.apis.to_mut().push(*api);
                    }
                }
                kept.counters.push(caller.counters);
            }
            None => {
                index_of.insert(key, merged.len());
                merged.push(Merged {
                    account_id: key.0,
                    region: key.1,
                    apis,
                    counters: vec![caller.counters],
                });
            }
        }
    }
    merged
}

/// The requests and errors families of `targets` and the `others` callers; `floor` keeps
/// their counters from going down.
pub(super) fn render_calls(
    x: &mut Exposition,
    targets: Vec<CallerRef<'_>>,
    others: &[Caller],
    floor: &Mutex<CounterFloor>,
) {
    let callers = merge(targets, others);
    const REQUESTS: &str = "fast_launch_exporter_aws_requests_total";
    x.family(
        REQUESTS,
        Kind::Counter,
        "AWS API attempts sent, retries included, by the account id and region they were made in (a target, the event queue, Organizations discovery, DescribeRegions).",
    );
    let mut floor = lock(floor);
    let mut exported = HashSet::new();
    for caller in &callers {
        let (account, region) = (caller.account_id, caller.region);
        for api in caller.apis.iter() {
            let series = (account.to_string(), region.to_string(), *api, "");
            let sum = caller
                .counters
                .iter()
                .map(|c| c.requests(*api))
                .sum::<u64>();
            let value = floor.value(series.clone(), sum);
            exported.insert(series);
            x.counter(
                REQUESTS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                ],
                value as f64,
                created_of(&caller.counters),
            );
        }
    }
    const ERRORS: &str = "fast_launch_exporter_aws_errors_total";
    x.family(
        ERRORS,
        Kind::Counter,
        "Failed AWS API attempts, retried or not, by the account id and region they were made in and by AWS error code (or timeout, connection, other).",
    );
    for caller in &callers {
        let (account, region) = (caller.account_id, caller.region);
        let mut errors: BTreeMap<(Api, &'static str), u64> = BTreeMap::new();
        for ((api, code), count) in caller.counters.iter().flat_map(|c| c.errors()) {
            *errors.entry((api, code)).or_default() += count;
        }
        for ((api, code), count) in errors {
            // Only the APIs the caller exports requests for.
            if !caller.apis.contains(&api) {
                continue;
            }
            let series = (account.to_string(), region.to_string(), api, code);
            exported.insert(series.clone());
            x.counter(
                ERRORS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                    ("error_code", code),
                ],
                floor.value(series, count) as f64,
                created_of(&caller.counters),
            );
        }
    }
    floor.keep_only(&exported);
}
