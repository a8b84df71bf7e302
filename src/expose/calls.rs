//! `fast_launch_exporter_aws_requests_total` and `aws_errors_total`: every part of the exporter
//! that calls AWS registers itself as a [`Caller`] (a target, the event queue, Organizations,
//! DescribeRegions) with the APIs it calls; callers in one account and region add up.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::body::Chunk;
use super::fast_hash::{FastHasher, FastMap, FastSet};
use super::stamped::StampedCache;
use super::writer::{unix_seconds, Exposition, Kind};
use super::Format;
use crate::domain::calls::{Api, ApiCounters, Caller};
use crate::domain::model::TargetKey;
use crate::domain::sync::lock;

/// A counter series of the AWS calls: account id, region, api, error code ("" for requests).
pub(super) type CallSeriesRef<'a> = (&'a str, &'a str, Api, &'static str);

/// The callers that share an account id and region (a target, discovery's DescribeRegions, the
/// event queue, Organizations) add up into one series. When one of them goes while the others
/// stay, the sum would go down, which Prometheus reads as a counter reset; the floor keeps what
/// the series had counted instead (until the series itself goes). The same holds when a caller
/// is replaced by another with fewer counts (a duplicate target takes over from the one that
/// went, a target's key changes but not its account id and region).
#[derive(Debug, Default)]
pub(super) struct CounterFloor {
    /// Per account id, per (region, api, error code): the value last exported, and what
    /// callers that went had counted.
    series: FastMap<String, Vec<(FloorKey, Floor)>>,
    /// The callers [`CounterFloor::keep_only`] last kept, as a hash of who they were: the same
    /// callers again need no pass over every series.
    kept_for: Option<u64>,
}

/// A series of one account id in [`CounterFloor`]: region, api, error code.
type FloorKey = (String, Api, &'static str);
/// The value last exported, and what callers that went had counted.
type Floor = (u64, u64);

impl CounterFloor {
    /// The value of `series` whose callers count `sum` between them. Looked up without
    /// building a key: a series is stored once, when it first appears.
    pub(super) fn value(&mut self, series: CallSeriesRef<'_>, sum: u64) -> u64 {
        let (account, region, api, code) = series;
        let same =
            |(key, _): &(FloorKey, (u64, u64))| key.0 == region && key.1 == api && key.2 == code;
        let found = self
            .series
            .get(account)
            .and_then(|list| list.iter().position(same));
        let list = match found {
            Some(_) => self.series.get_mut(account).expect("found above"),
            None => {
                let list = self.series.entry(account.to_string()).or_default();
                list.push(((region.to_string(), api, code), (0, 0)));
                list
            }
        };
        let index = found.unwrap_or(list.len() - 1);
        let (last, retired) = &mut list[index].1;
        let mut value = sum + *retired;
        if value < *last {
            *retired += *last - value;
            value = *last;
        }
        *last = value;
        value
    }

    /// Forgets the series of account ids and regions no caller has any more.
    pub(super) fn keep_only(&mut self, callers: &FastSet<(&str, &str)>) {
        for (account, list) in self.series.iter_mut() {
            list.retain(|((region, ..), _)| callers.contains(&(account.as_str(), region.as_str())));
        }
        self.series.retain(|_, list| !list.is_empty());
    }
}

/// When the first of `counters` started: the `_created` of their shared series.
fn created_of<'c>(counters: impl Iterator<Item = &'c ApiCounters>) -> f64 {
    counters
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
    /// The index of the first target among the callers (None: no target).
    target: Option<usize>,
    account_id: &'a str,
    region: &'a str,
    apis: Cow<'a, [Api]>,
    /// The first caller's counters, and those of the others (most series have one caller:
    /// no allocation for them).
    first: &'a ApiCounters,
    more: Vec<&'a ApiCounters>,
}

impl<'a> Merged<'a> {
    /// The counters of every caller merged here.
    fn counters(&self) -> impl Iterator<Item = &'a ApiCounters> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied())
    }
}

/// Callers in one account and region (a target, discovery's DescribeRegions, the queue,
/// Organizations) are one series set: their counts add up. A role assumed for the queue,
/// Organizations or DescribeRegions shows as AssumeRole once it was. `targets` come first, then
/// `others`.
fn merge<'a>(targets: Vec<CallerRef<'a>>, others: &'a [Caller]) -> Vec<Merged<'a>> {
    let own = targets.len();
    let mut merged: Vec<Merged<'a>> = Vec::with_capacity(own + others.len());
    let mut index_of: FastMap<(&str, &str), usize> =
        FastMap::with_capacity_and_hasher(own, Default::default());
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
                kept.more.push(caller.counters);
            }
            None => {
                index_of.insert(key, merged.len());
                merged.push(Merged {
                    target: (index < own).then_some(index),
                    account_id: key.0,
                    region: key.1,
                    apis,
                    first: caller.counters,
                    more: Vec::new(),
                });
            }
        }
    }
    merged
}

const REQUESTS: &str = "fast_launch_exporter_aws_requests_total";
const ERRORS: &str = "fast_launch_exporter_aws_errors_total";

/// The requests and errors families of `targets` and the `others` callers; `floor` keeps
/// their counters from going down. The targets' lines come from `cache` by block (the first
/// target's key and the targets' range) when it is given: a block's lines are rendered again
/// when a counter in it moved.
pub(super) fn render_calls(
    x: &mut Exposition,
    targets: Vec<CallerRef<'_>>,
    others: &[Caller],
    floor: &Mutex<CounterFloor>,
    blocks: &[(&TargetKey, Range<usize>)],
    cache: Option<&StampedCache>,
) {
    let callers = merge(targets, others);
    {
        let mut floor = lock(floor);
        let who = composition(&callers);
        if !floor.series.is_empty() && floor.kept_for != Some(who) {
            floor.keep_only(&callers.iter().map(|c| (c.account_id, c.region)).collect());
            floor.kept_for = Some(who);
        }
    }
    // The merged callers of each block (in target order), then those of no target.
    let mut by_block: Vec<&[Merged<'_>]> = Vec::with_capacity(blocks.len());
    let mut rest: &[Merged<'_>] = &callers;
    for (_, range) in blocks {
        let inside = rest
            .iter()
            .take_while(|c| c.target.is_some_and(|t| t < range.end))
            .count();
        let (block, after) = rest.split_at(inside);
        by_block.push(block);
        rest = after;
    }
    let format = x.format;
    // Excluded families (`metrics.exclude`) are not rendered into the cache either.
    let served = [x.serves(REQUESTS), x.serves(ERRORS)];
    let entries = cache.map(|cache| {
        cache.entries(
            blocks
                .iter()
                .zip(&by_block)
                .map(|((key, _), callers)| (*key, stamp(callers, served))),
        )
    });
    let chunks: Option<Vec<&[Arc<Chunk>]>> = entries.as_ref().map(|entries| {
        entries
            .iter()
            .zip(&by_block)
            .map(|(entry, callers)| {
                entry.chunks(format, || render_block(callers, floor, served, format))
            })
            .collect()
    });
    x.family(
        REQUESTS,
        Kind::Counter,
        "AWS API attempts sent, retries included, by the account id and region they were made in (a target, the event queue, Organizations discovery, DescribeRegions).",
    );
    match &chunks {
        Some(chunks) => chunks.iter().for_each(|c| x.cached(&c[0])),
        None => write_requests(x, &callers[..callers.len() - rest.len()], floor),
    }
    write_requests(x, rest, floor);
    x.family(
        ERRORS,
        Kind::Counter,
        "Failed AWS API attempts, retried or not, by the account id and region they were made in and by AWS error code (or timeout, connection, other).",
    );
    match &chunks {
        Some(chunks) => chunks.iter().for_each(|c| x.cached(&c[1])),
        None => write_errors(x, &callers[..callers.len() - rest.len()], floor),
    }
    write_errors(x, rest, floor);
}

/// Who `callers` are: a hash of their account ids and regions.
fn composition(callers: &[Merged<'_>]) -> u64 {
    let mut hasher = FastHasher::default();
    for caller in callers {
        (caller.account_id, caller.region).hash(&mut hasher);
    }
    hasher.finish()
}

/// The requests and the errors chunk of one block's callers.
fn render_block(
    callers: &[Merged<'_>],
    floor: &Mutex<CounterFloor>,
    [requests_served, errors_served]: [bool; 2],
    format: Format,
) -> Vec<Arc<Chunk>> {
    let mut requests = Exposition::new(format);
    if requests_served {
        write_requests(&mut requests, callers, floor);
    }
    let mut errors = Exposition::new(format);
    if errors_served {
        write_errors(&mut errors, callers, floor);
    }
    [requests, errors]
        .into_iter()
        .map(|mut lines| {
            lines.out.shrink_to_fit();
            Arc::new(Chunk::new(lines.out))
        })
        .collect()
}

/// A hash of everything the lines of `callers` show: which callers (their counters' identity
/// and start) and how often their counters changed.
fn stamp(callers: &[Merged<'_>], served: [bool; 2]) -> u64 {
    // Fast, and as unlikely as SipHash to give two states one stamp (see `fast_hash`).
    let mut hasher = FastHasher::default();
    served.hash(&mut hasher);
    for caller in callers {
        (caller.account_id, caller.region).hash(&mut hasher);
        caller.apis.hash(&mut hasher);
        for counters in caller.counters() {
            std::ptr::hash(counters, &mut hasher);
            counters.created().hash(&mut hasher);
            counters.changes().hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn write_requests(x: &mut Exposition, callers: &[Merged<'_>], floor: &Mutex<CounterFloor>) {
    let mut floor = lock(floor);
    for caller in callers {
        let (account, region) = (caller.account_id, caller.region);
        for api in caller.apis.iter() {
            let series = (account, region, *api, "");
            let sum = caller.counters().map(|c| c.requests(*api)).sum::<u64>();
            x.counter(
                REQUESTS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                ],
                floor.value(series, sum) as f64,
                created_of(caller.counters()),
            );
        }
    }
}

fn write_errors(x: &mut Exposition, callers: &[Merged<'_>], floor: &Mutex<CounterFloor>) {
    let mut floor = lock(floor);
    for caller in callers {
        let (account, region) = (caller.account_id, caller.region);
        let mut errors: BTreeMap<(Api, &'static str), u64> = BTreeMap::new();
        for ((api, code), count) in caller.counters().flat_map(|c| c.errors()) {
            *errors.entry((api, code)).or_default() += count;
        }
        for ((api, code), count) in errors {
            // Only the APIs the caller exports requests for.
            if !caller.apis.contains(&api) {
                continue;
            }
            let series = (account, region, api, code);
            x.counter(
                ERRORS,
                &[
                    ("aws_account_id", account),
                    ("aws_region", region),
                    ("api", api.as_str()),
                    ("error_code", code),
                ],
                floor.value(series, count) as f64,
                created_of(caller.counters()),
            );
        }
    }
}
