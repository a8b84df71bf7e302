//! What to collect: the configured accounts, the accounts AWS Organizations lists
//! (`discovery.organizations`), every enabled region of accounts with `regions: all`, and only
//! this shard's part of it all. The [`Planner`] turns a [`Config`] into target specs for
//! `Registry::reconcile` (in `targets`), at start, on reload and every
//! discovery interval.
//!
//! A failed listing never drops targets: a failed Organizations listing keeps the last good set
//! of accounts, and a failed `DescribeRegions` keeps the account's last list (or, with none, the
//! fallback regions). What AWS is asked for goes through the [`Organization`] and [`RegionList`]
//! traits, implemented over the SDK in `aws`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{AccountConfig, Config, OrganizationsDiscovery};
use crate::domain::calls::{within, Api, ApiCounters, ApiError, Caller};
use crate::domain::ids::DEFAULT_REGION;
use crate::domain::model::TargetSpec;
use crate::domain::ports::{AccountState, Connect, OrgAccount, Organization};
use crate::domain::shard::Shard;
use crate::domain::stats::DiscoveryStats;

/// How soon a plan that could not resolve something (no account list yet, an unknown account
/// id) is tried again.
pub const RETRY_SOON: Duration = Duration::from_secs(60);

/// Where `DescribeRegions` is asked for an account with `regions: all`: its first configured
/// region, else `home_region`.
pub fn regions_region(account: &AccountConfig, home_region: &str) -> String {
    account
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| home_region.to_string())
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
            home_region: home_region.unwrap_or_else(|| DEFAULT_REGION.to_string()),
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

    /// Learns the base credentials' account id once, when discovery or sharding needs it (to
    /// tell the base account from a discovered one, and to shard it). Why the plan is
    /// incomplete when it cannot.
    async fn learn_base_account_id(
        &self,
        config: &Config,
        state: &mut PlanState,
    ) -> Option<String> {
        // The base credentials' account id: needed to tell the base account from a discovered
        // one, and to shard it.
        let base = config.accounts.iter().find(|a| a.role.is_none());
        if let Some(base) = base {
            if state.base_account_id.is_none()
                && (self.shard.is_sharded() || config.discovery.is_some())
            {
                let asked = within(
                    config.collection.timeout,
                    Api::GetCallerIdentity,
                    "no answer within collection.timeout",
                    self.base_account_id(base, config.collection.max_attempts),
                )
                .await;
                match asked {
                    Ok(id) => state.base_account_id = Some(id),
                    Err(error) => {
                        warn!(error = %error, "cannot learn the base credentials' account id; trying again soon");
                        return Some(format!(
                            "the base credentials' account id is unknown: {error}"
                        ));
                    }
                }
            }
        }
        None
    }

    /// Lists the organization and the regions as `config` asks, and returns this shard's
    /// targets.
    pub async fn plan(&self, config: &Config) -> Plan {
        let mut state = self.state.lock().await;
        let mut retry_soon = false;
        let mut incomplete: Option<String> = None;

        if let Some(why) = self.learn_base_account_id(config, &mut state).await {
            retry_soon = true;
            incomplete = Some(why);
        }

        let mut accounts: Vec<AccountConfig> = config.accounts.clone();
        let mut region_calls = RegionCalls::new(config.collection.concurrency);
        if let Some(discovery) = &config.discovery {
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
            let found = self
                .discover(discovery, config, &mut state, &explicit, &mut region_calls)
                .await;
            if found.is_none() && state.discovered.is_none() {
                retry_soon = true;
                incomplete = Some("the organization has not been listed yet".to_string());
            }
            for account in state.discovered.iter().flatten() {
                if !explicit.contains(&account.id) {
                    accounts.push(discovered_account(discovery, config, account));
                }
            }
        }

        let regions = self
            .regions(&accounts, config, &mut state, region_calls)
            .await;
        // The DescribeRegions series of accounts no longer listed (or no longer `regions: all`)
        // go, as their targets' series do.
        let listing: BTreeSet<(String, String)> = accounts
            .iter()
            .filter(|a| a.all_regions)
            .map(|a| {
                let id = a
                    .configured_account_id()
                    .map(str::to_string)
                    .or_else(|| state.base_account_id.clone())
                    .unwrap_or_default();
                (id, self.regions_region(a))
            })
            .collect();
        state.region_counters.retain(|key, _| listing.contains(key));
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
            .map(|((id, region), counters)| Caller {
                account_id: id.clone(),
                region: region.clone(),
                apis: vec![Api::DescribeRegions],
                counters: counters.clone(),
            })
            .collect();
        {
            let mut stats = self.stats.update();
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
    /// Each account found that no explicit account names has its DescribeRegions started at
    /// once (with `regions: all`), while the listing goes on.
    async fn discover(
        &self,
        discovery: &OrganizationsDiscovery,
        config: &Config,
        state: &mut PlanState,
        explicit: &BTreeSet<String>,
        region_calls: &mut RegionCalls,
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
        self.stats.update().organization_caller = Some(Caller {
            account_id: caller_id,
            region: self.home_region.clone(),
            apis: vec![
                Api::ListAccounts,
                Api::ListAccountsForParent,
                Api::ListOrganizationalUnitsForParent,
                Api::ListTagsForResource,
            ],
            counters,
        });
        // Bounded, so that a hung call never holds up reloads and shutdown: the discovery
        // interval, and at least collection.timeout.
        let limit = discovery.interval.max(config.collection.timeout);
        let base_account_id = state.base_account_id.clone();
        let region_counters = &mut state.region_counters;
        let semaphore = region_calls.semaphore.clone();
        let mut found = |account: &Discovered| {
            if !explicit.contains(&account.id) {
                self.start_regions(
                    &discovered_account(discovery, config, account),
                    config,
                    base_account_id.as_deref(),
                    region_counters,
                    region_calls,
                );
            }
        };
        let result = within(
            limit,
            Api::ListAccounts,
            &format!(
                "the organization was not listed within {}",
                humantime::format_duration(limit)
            ),
            list_accounts(organization, discovery, semaphore, &mut found),
        )
        .await;
        let now = SystemTime::now();
        let mut stats = self.stats.update();
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

    /// Where DescribeRegions is called for `account`: its first configured region (the
    /// fallback list), else the home region.
    fn regions_region(&self, account: &AccountConfig) -> String {
        regions_region(account, &self.home_region)
    }

    /// Starts the DescribeRegions call of `account` if it has `regions: all` and its call was
    /// not started yet: in the account's first configured region (or the home region), under
    /// the discovery's concurrency bound, bounded by `collection.timeout`.
    fn start_regions(
        &self,
        account: &AccountConfig,
        config: &Config,
        base_account_id: Option<&str>,
        counters: &mut BTreeMap<(String, String), Arc<ApiCounters>>,
        calls: &mut RegionCalls,
    ) {
        let key = account.key();
        if !account.all_regions || calls.calls.contains_key(&key) {
            return;
        }
        let region = self.regions_region(account);
        let account_id = account
            .configured_account_id()
            .or(base_account_id)
            .unwrap_or_default()
            .to_string();
        let counters = counters
            .entry((account_id, region.clone()))
            .or_default()
            .clone();
        let list = self.connect.connect_regions(
            account.role.as_ref(),
            &region,
            config.collection.max_attempts,
            counters,
        );
        let (semaphore, timeout) = (calls.semaphore.clone(), config.collection.timeout);
        let call = tokio::spawn(async move {
            let _permit = semaphore.acquire().await;
            within(
                timeout,
                Api::DescribeRegions,
                "no answer within collection.timeout",
                list.enabled_regions(),
            )
            .await
        });
        calls.calls.insert(key, call);
    }

    /// The regions of each account: its configured list, or for `regions: all` the enabled
    /// regions (DescribeRegions in the account, concurrently, the calls started during
    /// discovery included), the last list on failure, or the fallback list.
    async fn regions(
        &self,
        accounts: &[AccountConfig],
        config: &Config,
        state: &mut PlanState,
        mut calls: RegionCalls,
    ) -> Vec<Vec<String>> {
        for account in accounts {
            self.start_regions(
                account,
                config,
                state.base_account_id.as_deref(),
                &mut state.region_counters,
                &mut calls,
            );
        }
        let mut listed: HashMap<usize, Result<Vec<String>, ApiError>> = HashMap::new();
        for (index, account) in accounts.iter().enumerate() {
            if let Some(call) = calls.calls.remove(&account.key()) {
                let result = call.await.unwrap_or_else(|error| {
                    Err(ApiError::new(
                        Api::DescribeRegions,
                        crate::domain::calls::ErrorCode::Unrecognized(None),
                        format!("the DescribeRegions task ended abnormally: {error}"),
                    ))
                });
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

/// DescribeRegions calls under way, by account key. Calls no longer needed (an account that
/// left while its call ran) are stopped when the plan drops them.
struct RegionCalls {
    /// The concurrency bound of discovery's calls (tags and DescribeRegions).
    semaphore: Arc<Semaphore>,
    calls: HashMap<String, tokio::task::JoinHandle<Result<Vec<String>, ApiError>>>,
}

impl RegionCalls {
    fn new(concurrency: usize) -> RegionCalls {
        RegionCalls {
            semaphore: Arc::new(Semaphore::new(concurrency.max(1))),
            calls: HashMap::new(),
        }
    }
}

impl Drop for RegionCalls {
    fn drop(&mut self) {
        for call in self.calls.values() {
            call.abort();
        }
    }
}

/// The account configuration of a discovered account: the member role, the top-level
/// defaults, and the labels its tags give.
fn discovered_account(
    discovery: &OrganizationsDiscovery,
    config: &Config,
    account: &Discovered,
) -> AccountConfig {
    AccountConfig {
        name: Some(account.name.clone()).filter(|n| !n.is_empty()),
        role: Some(discovery.member_role(&account.id)),
        regions: config.defaults.regions.clone(),
        all_regions: config.defaults.all_regions,
        query: config.defaults.query.clone(),
        labels: account.labels.clone(),
        cloudwatch: config.defaults.cloudwatch,
    }
}

/// A tag call that ended abnormally fails the listing, as a failed call does.
fn tag_task_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        Api::ListTagsForResource,
        crate::domain::calls::ErrorCode::Unrecognized(None),
        format!("the ListTagsForResource task ended abnormally: {error}"),
    )
}

/// Lists the organization's accounts that count (active, not excluded, carrying the tags),
/// each handed to `found` as soon as it is known: while the listing goes on, so that its
/// regions can be asked for at once. The tags of each page's accounts are asked for while the
/// next page is listed. One account's tags failing fails the listing (a partial set would drop
/// accounts).
async fn list_accounts(
    organization: Arc<dyn Organization>,
    discovery: &OrganizationsDiscovery,
    semaphore: Arc<Semaphore>,
    found: &mut (dyn FnMut(&Discovered) + Send),
) -> Result<Vec<Discovered>, ApiError> {
    let (pages, mut arriving) = tokio::sync::mpsc::unbounded_channel();
    let listing = organization.accounts(&discovery.organizational_units, pages);
    tokio::pin!(listing);
    let mut listed = None;
    let (mut any, mut any_state) = (false, false);
    let mut seen = BTreeSet::new();
    // The accounts that count, in listing order (None: not yet known, or not carrying the tags).
    let mut accounts: Vec<Option<Discovered>> = Vec::new();
    let mut tag_calls = JoinSet::new();
    let mut decide = |index: usize,
                      account: OrgAccount,
                      tags: &BTreeMap<String, String>,
                      accounts: &mut Vec<Option<Discovered>>| {
        if !discovery.wants_tags(tags) {
            return;
        }
        let labels = discovery
            .labels_from_tags
            .iter()
            .map(|(key, label)| (label.clone(), tags.get(key).cloned().unwrap_or_default()))
            .collect();
        let account = Discovered {
            id: account.id,
            name: account.name,
            labels,
        };
        found(&account);
        accounts[index] = Some(account);
    };
    loop {
        tokio::select! {
            result = &mut listing, if listed.is_none() => listed = Some(result),
            Some(done) = tag_calls.join_next(), if !tag_calls.is_empty() => {
                let (index, account, tags) = done.map_err(tag_task_failed)?;
                decide(index, account, &tags?, &mut accounts);
            }
            page = arriving.recv() => {
                // None: the listing ended and every page was read.
                let Some(page) = page else { break };
                for account in page {
                    any = true;
                    any_state |= account.state.is_some();
                    if account.state != Some(AccountState::Active)
                        || discovery.exclude_accounts.contains(&account.id)
                        || !seen.insert(account.id.clone())
                    {
                        continue;
                    }
                    let index = accounts.len();
                    accounts.push(None);
                    if discovery.needs_tags() {
                        let (organization, semaphore) = (organization.clone(), semaphore.clone());
                        tag_calls.spawn(async move {
                            let _permit = semaphore.acquire().await;
                            let tags = organization.tags(&account.id).await;
                            (index, account, tags)
                        });
                    } else {
                        decide(index, account, &BTreeMap::new(), &mut accounts);
                    }
                }
            }
        }
    }
    // A failed listing stops the tag calls (dropping the JoinSet aborts them).
    if let Some(Err(error)) = listed {
        return Err(error);
    }
    // `State` replaced the deprecated `Status` in 2025; an answer that lists accounts but names
    // no state for any of them is not one to drop every account on.
    if any && !any_state {
        return Err(ApiError::new(
            Api::ListAccounts,
            crate::domain::calls::ErrorCode::Malformed,
            "accounts listed without their State",
        ));
    }
    while let Some(done) = tag_calls.join_next().await {
        let (index, account, tags) = done.map_err(tag_task_failed)?;
        decide(index, account, &tags?, &mut accounts);
    }
    Ok(accounts.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests;
