//! What to collect: the configured accounts, the accounts AWS Organizations lists
//! (`discovery.organizations`), every enabled region of accounts with `regions: all`, and only
//! this shard's part of it all. The [`Planner`] turns a [`Config`] into target specs for
//! [`Registry::reconcile`](crate::registry::Registry::reconcile), at start, on reload and every
//! discovery interval.
//!
//! A failed listing never drops targets: a failed Organizations listing keeps the last good set
//! of accounts, and a failed `DescribeRegions` keeps the account's last list (or, with none, the
//! fallback regions). What AWS is asked for goes through the [`Organization`] and [`RegionList`]
//! traits, implemented over the SDK by [`crate::aws::Base`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::calls::{Api, ApiCounters, ApiError};
use crate::collector::{BoxFuture, Connect};
use crate::config::{AccountConfig, Config, OrganizationsDiscovery};
use crate::model::TargetSpec;
use crate::shard::Shard;
use crate::sync::lock;

/// How soon a plan that could not resolve something (no account list yet, an unknown account
/// id) is tried again.
pub const RETRY_SOON: Duration = Duration::from_secs(60);

/// An account as Organizations lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    /// The 12-digit id.
    pub id: String,
    /// The account's name.
    pub name: String,
    /// `State` (`ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`); `Status` is deprecated and
    /// not read.
    pub state: String,
}

/// The Organizations calls of discovery.
pub trait Organization: Send + Sync {
    /// The accounts under `parents` (OU or root ids), recursively, or every account of the
    /// organization when `parents` is empty; every page.
    fn accounts<'a>(
        &'a self,
        parents: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<OrgAccount>, ApiError>>;
    /// The tags of an account; every page.
    fn tags<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>>;
    /// Whether the listing calls are allowed (`DescribeOrganization`, one page of `ListAccounts`).
    fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// `ec2:DescribeRegions` in one account.
pub trait RegionList: Send + Sync {
    /// The regions enabled for the account (opt-in status other than `not-opted-in`).
    fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>>;
}

/// Discovery as the metrics show it.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    state: Mutex<DiscoveryState>,
}

/// A snapshot of [`DiscoveryStats`].
#[derive(Debug, Clone, Default)]
pub struct DiscoveryState {
    /// Whether Organizations discovery is configured.
    pub organizations: bool,
    /// Whether the last listing succeeded (None: not tried).
    pub last_ok: Option<bool>,
    /// When a listing last succeeded.
    pub last_success: Option<SystemTime>,
    /// Accounts in the set used now (after the filters).
    pub accounts: usize,
    /// The Organizations caller: (account id, region, counters).
    pub organization_caller: Option<(String, String, Arc<ApiCounters>)>,
    /// The DescribeRegions callers: (account id, region, counters).
    pub region_callers: Vec<(String, String, Arc<ApiCounters>)>,
}

impl DiscoveryStats {
    /// A copy of the current state.
    pub fn state(&self) -> DiscoveryState {
        lock(&self.state).clone()
    }
}

/// The outcome of one plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every account, configured then discovered, with the regions it is collected in.
    pub accounts: Vec<(AccountConfig, Vec<String>)>,
    /// This shard's targets.
    pub specs: Vec<TargetSpec>,
    /// Whether something could not be resolved and the plan should be made again soon.
    pub retry_soon: bool,
    /// Why the plan is incomplete (no account list yet, an unknown account id), if it is.
    pub incomplete: Option<String>,
}

/// An account discovery keeps: id, name, and the labels its tags give.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Discovered {
    id: String,
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct PlanState {
    /// The last good discovered accounts.
    discovered: Option<Vec<Discovered>>,
    /// The last good enabled regions, by account key.
    regions: HashMap<String, Vec<String>>,
    /// The base credentials' account id, once learnt.
    base_account_id: Option<String>,
    organization_counters: Arc<ApiCounters>,
    region_counters: BTreeMap<(String, String), Arc<ApiCounters>>,
}

/// Turns a configuration into this shard's targets (see the module doc).
pub struct Planner {
    connect: Arc<dyn Connect>,
    shard: Shard,
    /// The region Organizations is called in, and DescribeRegions when an account has none.
    home_region: String,
    state: tokio::sync::Mutex<PlanState>,
    stats: Arc<DiscoveryStats>,
}

impl Planner {
    /// A planner for `shard` whose AWS calls go through `connect`; `home_region` is the AWS
    /// environment's region (Organizations is called there).
    pub fn new(connect: Arc<dyn Connect>, shard: Shard, home_region: Option<String>) -> Planner {
        Planner {
            connect,
            shard,
            home_region: home_region.unwrap_or_else(|| "us-east-1".to_string()),
            state: tokio::sync::Mutex::new(PlanState::default()),
            stats: Arc::new(DiscoveryStats::default()),
        }
    }

    /// The statistics the metrics show.
    pub fn stats(&self) -> Arc<DiscoveryStats> {
        self.stats.clone()
    }

    /// How long until the next plan: the discovery interval (also for `regions: all`), or
    /// [`RETRY_SOON`] when the last plan left something unresolved; None when nothing changes
    /// by itself.
    pub fn next_plan_in(config: &Config, plan: &Plan) -> Option<Duration> {
        let interval = config
            .discovery
            .as_ref()
            .map_or(crate::config::DEFAULT_DISCOVERY_INTERVAL, |d| d.interval);
        let moving = config.discovery.is_some()
            || config.defaults.all_regions
            || config.accounts.iter().any(|a| a.all_regions);
        if plan.retry_soon {
            Some(RETRY_SOON.min(interval))
        } else {
            moving.then_some(interval)
        }
    }

    /// Lists the organization and the regions as `config` asks, and returns this shard's
    /// targets.
    pub async fn plan(&self, config: &Config) -> Plan {
        let mut state = self.state.lock().await;
        let mut retry_soon = false;
        let mut incomplete: Option<String> = None;
        let max_attempts = config.collection.max_attempts;

        // The base credentials' account id: needed to tell the base account from a discovered
        // one, and to shard it.
        let base = config.accounts.iter().find(|a| a.role.is_none());
        if let Some(base) = base {
            if state.base_account_id.is_none()
                && (self.shard.is_sharded() || config.discovery.is_some())
            {
                let asked = tokio::time::timeout(
                    config.collection.timeout,
                    self.base_account_id(base, max_attempts),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        Api::GetCallerIdentity,
                        crate::calls::ErrorCode::Timeout,
                        "no answer within collection.timeout",
                    ))
                });
                match asked {
                    Ok(id) => state.base_account_id = Some(id),
                    Err(error) => {
                        warn!(error = %error, "cannot learn the base credentials' account id; trying again soon");
                        retry_soon = true;
                        incomplete = Some(format!(
                            "the base credentials' account id is unknown: {error}"
                        ));
                    }
                }
            }
        }

        let mut accounts: Vec<AccountConfig> = config.accounts.clone();
        if let Some(discovery) = &config.discovery {
            let found = self.discover(discovery, config, &mut state).await;
            if found.is_none() && state.discovered.is_none() {
                retry_soon = true;
                incomplete = Some("the organization has not been listed yet".to_string());
            }
            let explicit: BTreeSet<String> = config
                .accounts
                .iter()
                .filter_map(|a| {
                    a.configured_account_id().map(str::to_string).or_else(|| {
                        a.role
                            .is_none()
                            .then(|| state.base_account_id.clone())
                            .flatten()
                    })
                })
                .collect();
            for Discovered { id, name, labels } in state.discovered.iter().flatten() {
                if explicit.contains(id) {
                    continue;
                }
                accounts.push(AccountConfig {
                    name: Some(name.clone()).filter(|n| !n.is_empty()),
                    role: Some(discovery.member_role(id)),
                    regions: config.defaults.regions.clone(),
                    all_regions: config.defaults.all_regions,
                    query: config.defaults.query.clone(),
                    labels: labels.clone(),
                    cloudwatch: config.defaults.cloudwatch,
                });
            }
        }

        let regions = self.regions(&accounts, config, &mut state).await;
        let mut plan_accounts = Vec::with_capacity(accounts.len());
        let mut specs = Vec::new();
        for (account, regions) in accounts.into_iter().zip(regions) {
            let id = account
                .configured_account_id()
                .map(str::to_string)
                .or_else(|| state.base_account_id.clone());
            for spec in account.target_specs(&regions) {
                match &id {
                    Some(id) if self.shard.owns(id, &spec.key.region) => specs.push(spec),
                    Some(_) => {}
                    None if !self.shard.is_sharded() => specs.push(spec),
                    None => retry_soon = true,
                }
            }
            plan_accounts.push((account, regions));
        }
        let region_callers = state
            .region_counters
            .iter()
            .map(|((id, region), counters)| (id.clone(), region.clone(), counters.clone()))
            .collect();
        {
            let mut stats = lock(&self.stats.state);
            stats.region_callers = region_callers;
            stats.organizations = config.discovery.is_some();
        }
        Plan {
            accounts: plan_accounts,
            specs,
            retry_soon,
            incomplete,
        }
    }

    async fn base_account_id(
        &self,
        base: &AccountConfig,
        max_attempts: u32,
    ) -> Result<String, ApiError> {
        let region = base
            .regions
            .first()
            .cloned()
            .unwrap_or_else(|| self.home_region.clone());
        let spec = base
            .target_specs(&[region])
            .pop()
            .expect("one region gives one target");
        self.connect
            .connect(&spec, max_attempts, Arc::new(ApiCounters::default()))
            .caller_account_id()
            .await
    }

    /// Lists the organization's accounts that count; keeps the last good set on failure.
    async fn discover(
        &self,
        discovery: &OrganizationsDiscovery,
        config: &Config,
        state: &mut PlanState,
    ) -> Option<usize> {
        let counters = state.organization_counters.clone();
        let organization = self.connect.connect_organization(
            discovery.role.as_ref(),
            &self.home_region,
            config.collection.max_attempts,
            counters.clone(),
        );
        let caller_id = discovery
            .role
            .as_ref()
            .map(|r| r.account_id.clone())
            .or_else(|| state.base_account_id.clone())
            .unwrap_or_default();
        lock(&self.stats.state).organization_caller =
            Some((caller_id, self.home_region.clone(), counters));
        // Bounded, so that a hung call never holds up reloads and shutdown: the discovery
        // interval, and at least collection.timeout.
        let limit = discovery.interval.max(config.collection.timeout);
        let result = tokio::time::timeout(
            limit,
            list_accounts(organization, discovery, config.collection.concurrency),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                Api::ListAccounts,
                crate::calls::ErrorCode::Timeout,
                format!(
                    "the organization was not listed within {}",
                    humantime::format_duration(limit)
                ),
            ))
        });
        let now = SystemTime::now();
        let mut stats = lock(&self.stats.state);
        match result {
            Ok(found) => {
                if state.discovered.as_ref() != Some(&found) {
                    info!(accounts = found.len(), "organization listed");
                }
                stats.last_ok = Some(true);
                stats.last_success = Some(now);
                stats.accounts = found.len();
                let count = found.len();
                state.discovered = Some(found);
                Some(count)
            }
            Err(error) => {
                warn!(
                    api = error.api.as_str(),
                    error_code = %error.code,
                    error = %error,
                    kept_accounts = state.discovered.as_ref().map_or(0, Vec::len),
                    "organization listing failed; the last good set of accounts stays"
                );
                stats.last_ok = Some(false);
                None
            }
        }
    }

    /// The regions of each account: its configured list, or for `regions: all` the enabled
    /// regions (DescribeRegions in the account, concurrently), the last list on failure, or the
    /// fallback list.
    async fn regions(
        &self,
        accounts: &[AccountConfig],
        config: &Config,
        state: &mut PlanState,
    ) -> Vec<Vec<String>> {
        let semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
        let mut calls = JoinSet::new();
        for (index, account) in accounts.iter().enumerate() {
            if !account.all_regions {
                continue;
            }
            let region = account
                .regions
                .first()
                .cloned()
                .unwrap_or_else(|| self.home_region.clone());
            let account_id = account
                .configured_account_id()
                .map(str::to_string)
                .or_else(|| state.base_account_id.clone())
                .unwrap_or_default();
            let counters = state
                .region_counters
                .entry((account_id, region.clone()))
                .or_default()
                .clone();
            let list = self.connect.connect_regions(
                account.role.as_ref(),
                &region,
                config.collection.max_attempts,
                counters,
            );
            let (semaphore, timeout) = (semaphore.clone(), config.collection.timeout);
            calls.spawn(async move {
                let _permit = semaphore.acquire().await;
                let result = match tokio::time::timeout(timeout, list.enabled_regions()).await {
                    Ok(result) => result,
                    Err(_) => Err(ApiError::new(
                        Api::DescribeRegions,
                        crate::calls::ErrorCode::Timeout,
                        "no answer within collection.timeout",
                    )),
                };
                (index, result)
            });
        }
        let mut listed: HashMap<usize, Result<Vec<String>, ApiError>> = HashMap::new();
        while let Some(done) = calls.join_next().await {
            if let Ok((index, result)) = done {
                listed.insert(index, result);
            }
        }
        accounts
            .iter()
            .enumerate()
            .map(|(index, account)| {
                if !account.all_regions {
                    return account.regions.clone();
                }
                let key = account.key();
                match listed.remove(&index) {
                    Some(Ok(regions)) if !regions.is_empty() => {
                        state.regions.insert(key, regions.clone());
                        regions
                    }
                    other => {
                        let error = match other {
                            Some(Err(error)) => error.to_string(),
                            _ => "DescribeRegions listed no region".to_string(),
                        };
                        match state.regions.get(&key) {
                            Some(last) => {
                                warn!(account = %key, error = %error, "cannot list the enabled regions; the last list stays");
                                last.clone()
                            }
                            None => {
                                warn!(account = %key, error = %error, fallback = ?account.regions, "cannot list the enabled regions; collecting the fallback regions");
                                account.regions.clone()
                            }
                        }
                    }
                }
            })
            .collect()
    }
}

/// Every account that counts: `ACTIVE`, not excluded, carrying the tags; with its labels.
async fn list_accounts(
    organization: Arc<dyn Organization>,
    discovery: &OrganizationsDiscovery,
    concurrency: usize,
) -> Result<Vec<Discovered>, ApiError> {
    let listed = organization
        .accounts(&discovery.organizational_units)
        .await?;
    // `State` replaced the deprecated `Status` in 2025; an answer that lists accounts but names
    // no state for any of them is not one to drop every account on.
    if !listed.is_empty() && listed.iter().all(|a| a.state.is_empty()) {
        return Err(ApiError::new(
            Api::ListAccounts,
            crate::calls::ErrorCode::Malformed,
            "accounts listed without their State",
        ));
    }
    let mut seen = BTreeSet::new();
    let active: Vec<OrgAccount> = listed
        .into_iter()
        .filter(|a| a.state == "ACTIVE")
        .filter(|a| !discovery.exclude_accounts.contains(&a.id))
        .filter(|a| seen.insert(a.id.clone()))
        .collect();
    if !discovery.needs_tags() {
        return Ok(active
            .into_iter()
            .map(|a| Discovered {
                id: a.id,
                name: a.name,
                labels: BTreeMap::new(),
            })
            .collect());
    }
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut calls = JoinSet::new();
    for (index, account) in active.iter().enumerate() {
        let (organization, semaphore, id) =
            (organization.clone(), semaphore.clone(), account.id.clone());
        calls.spawn(async move {
            let _permit = semaphore.acquire().await;
            (index, organization.tags(&id).await)
        });
    }
    let mut tags: HashMap<usize, BTreeMap<String, String>> = HashMap::new();
    while let Some(done) = calls.join_next().await {
        if let Ok((index, result)) = done {
            // One account's tags failing fails the listing: a partial set would drop accounts.
            tags.insert(index, result?);
        }
    }
    Ok(active
        .into_iter()
        .enumerate()
        .filter_map(|(index, account)| {
            let account_tags = tags.remove(&index).unwrap_or_default();
            if !discovery.wants_tags(&account_tags) {
                return None;
            }
            let labels = discovery
                .labels_from_tags
                .iter()
                .map(|(key, label)| {
                    (
                        label.clone(),
                        account_tags.get(key).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            Some(Discovered {
                id: account.id,
                name: account.name,
                labels,
            })
        })
        .collect())
}
