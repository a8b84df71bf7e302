//! `check-permissions`: for every target, resolve credentials (AssumeRole where configured) and
//! call DescribeFastLaunchImages with `DryRun=true`, and, where CloudWatch is on, ListMetrics and
//! GetMetricData, to prove the IAM set-up before rolling out.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::table::render_table;
use crate::config::{CollectionSettings, Config};
use crate::discover::{regions_region, Plan, Planner};
use crate::domain::calls::{with_timeout, Api, ApiCounters, ApiError, ErrorCode};
use crate::domain::ids::DEFAULT_REGION;
use crate::domain::model::TargetSpec;
use crate::domain::ports::Connect;
use crate::domain::shard::Shard;

/// The verdict for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCheck {
    /// The account id (from the role ARN or GetCallerIdentity; empty if that failed).
    pub account_id: String,
    /// The account's alias.
    pub account_name: String,
    /// The region.
    pub region: String,
    /// The role assumed, if any.
    pub role_arn: String,
    /// `allowed`, `denied` (UnauthorizedOperation / AccessDenied) or `error`.
    pub result: Verdict,
    /// The failing API and AWS error code, when not allowed.
    pub error_code: String,
    /// AWS's message, when not allowed.
    pub message: String,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every call was allowed.
    Allowed,
    /// A call was refused by IAM (UnauthorizedOperation, AccessDenied).
    Denied,
    /// A call failed otherwise.
    Error,
}

impl Verdict {
    /// The word the table and the JSON show.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Error => "error",
        }
    }
}

impl PermissionCheck {
    fn allowed_blank() -> PermissionCheck {
        PermissionCheck {
            account_id: String::new(),
            account_name: String::new(),
            region: String::new(),
            role_arn: String::new(),
            result: Verdict::Allowed,
            error_code: String::new(),
            message: String::new(),
        }
    }

    /// Whether the target may be collected.
    pub fn allowed(&self) -> bool {
        self.result == Verdict::Allowed
    }
}

async fn check_target(
    connect: Arc<dyn Connect>,
    spec: TargetSpec,
    settings: CollectionSettings,
) -> PermissionCheck {
    let counters = Arc::new(ApiCounters::default());
    let fetch = connect.connect(&spec, settings.max_attempts, counters.clone());
    let probe = connect.probe(&spec, settings.max_attempts, counters.clone());
    let mut check = PermissionCheck {
        account_id: spec.configured_account_id().unwrap_or_default().to_string(),
        account_name: spec.account_name.clone().unwrap_or_default(),
        region: spec.key.region.to_string(),
        role_arn: spec
            .role
            .as_ref()
            .map(|r| r.arn.clone())
            .unwrap_or_default(),
        ..PermissionCheck::allowed_blank()
    };
    let outcome = async {
        if spec.role.is_none() {
            check.account_id = fetch.caller_account_id().await?;
        }
        probe.check_describe_permission().await?;
        if spec.cloudwatch.is_some() {
            probe.check_cloudwatch_permission().await?;
        }
        Ok(())
    };
    // A timeout names the API whose attempt was on the wire: AssumeRole (while loading
    // credentials), GetCallerIdentity or DescribeFastLaunchImages.
    let outcome = timed(
        settings.timeout,
        &counters,
        Api::DescribeFastLaunchImages,
        outcome,
    )
    .await;
    verdict(check, outcome)
}

/// Checks discovery (Organizations, `DescribeRegions` for `regions: all`) and then every
/// target of `shard`, `collection.concurrency` at a time, in config order.
pub async fn check_permissions(
    config: &Config,
    shard: Shard,
    connect: impl Connect + 'static,
) -> Vec<PermissionCheck> {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let home_region = connect
        .home_region()
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let mut checks = Vec::new();
    if let Some(check) = check_organization(config, connect.as_ref(), &home_region).await {
        checks.push(check);
    }
    let planner = Planner::new(connect.clone(), shard, connect.home_region());
    let plan = planner.plan(config).await;
    if let Some(why) = &plan.incomplete {
        // The full listing (OUs, tags) failed, or an account id is unknown: the targets below
        // are not all of them.
        checks.push(PermissionCheck {
            account_name: "discovery".to_string(),
            region: home_region.clone(),
            result: Verdict::Error,
            error_code: "plan: incomplete".to_string(),
            message: why.clone(),
            ..PermissionCheck::allowed_blank()
        });
    }
    let semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
    checks.extend(check_regions(config, &plan, &connect, &home_region, &semaphore).await);
    checks.extend(check_targets(config, plan, &connect, &semaphore).await);
    checks
}

/// Organizations discovery's check (`DescribeOrganization`, one page of `ListAccounts`).
async fn check_organization(
    config: &Config,
    connect: &dyn Connect,
    home_region: &str,
) -> Option<PermissionCheck> {
    let discovery = config.discovery.as_ref()?;
    let counters = Arc::new(ApiCounters::default());
    let organization = connect.connect_organization(
        discovery.role.as_ref(),
        home_region,
        config.collection.max_attempts,
        counters.clone(),
    );
    let outcome = timed(
        config.collection.timeout,
        &counters,
        Api::DescribeOrganization,
        organization.check_permission(),
    )
    .await;
    Some(verdict(
        PermissionCheck {
            account_id: discovery
                .role
                .as_ref()
                .map(|r| r.account_id.clone())
                .unwrap_or_default(),
            account_name: "organizations".to_string(),
            region: home_region.to_string(),
            role_arn: discovery
                .role
                .as_ref()
                .map(|r| r.arn.clone())
                .unwrap_or_default(),
            ..PermissionCheck::allowed_blank()
        },
        outcome,
    ))
}

/// The `DescribeRegions` check of every account with `regions: all`, in config order.
async fn check_regions(
    config: &Config,
    plan: &Plan,
    connect: &Arc<dyn Connect>,
    home_region: &str,
    semaphore: &Arc<Semaphore>,
) -> Vec<PermissionCheck> {
    let mut tasks = JoinSet::new();
    for (index, (account, _)) in plan.accounts.iter().enumerate() {
        if !account.all_regions {
            continue;
        }
        let counters = Arc::new(ApiCounters::default());
        let region = regions_region(account, home_region);
        let list = connect.connect_regions(
            account.role.as_ref(),
            &region,
            config.collection.max_attempts,
            counters.clone(),
        );
        let blank = PermissionCheck {
            account_id: account
                .configured_account_id()
                .unwrap_or_default()
                .to_string(),
            account_name: account.name.clone().unwrap_or_default(),
            region: "all (DescribeRegions)".to_string(),
            role_arn: account
                .role
                .as_ref()
                .map(|r| r.arn.clone())
                .unwrap_or_default(),
            ..PermissionCheck::allowed_blank()
        };
        let (semaphore, timeout) = (semaphore.clone(), config.collection.timeout);
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            let outcome = timed(timeout, &counters, Api::DescribeRegions, async {
                list.enabled_regions().await.map(|_| ())
            })
            .await;
            (index, verdict(blank, outcome))
        });
    }
    let mut region_checks = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(done) = result {
            region_checks.push(done);
        }
    }
    region_checks.sort_by_key(|(index, _)| *index);
    region_checks.into_iter().map(|(_, check)| check).collect()
}

/// Every target's check, in plan order.
async fn check_targets(
    config: &Config,
    plan: Plan,
    connect: &Arc<dyn Connect>,
    semaphore: &Arc<Semaphore>,
) -> Vec<PermissionCheck> {
    let mut tasks = JoinSet::new();
    for (index, spec) in plan.specs.into_iter().enumerate() {
        let (semaphore, connect, settings) = (
            semaphore.clone(),
            connect.clone(),
            config.collection.clone(),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            (index, check_target(connect, spec, settings).await)
        });
    }
    let mut target_checks = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(done) = result {
            target_checks.push(done);
        }
    }
    target_checks.sort_by_key(|(index, _)| *index);
    target_checks.into_iter().map(|(_, check)| check).collect()
}

/// `call` bounded by `timeout`; a timeout names the API on the wire (else `api`).
async fn timed(
    timeout: std::time::Duration,
    counters: &ApiCounters,
    api: Api,
    call: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), ApiError> {
    with_timeout(timeout, counters, call)
        .await
        .unwrap_or_else(|timed_out| {
            Err(ApiError::new(
                timed_out.api.unwrap_or(api),
                ErrorCode::Timeout,
                format!(
                    "no answer within collection.timeout ({})",
                    humantime::format_duration(timeout)
                ),
            ))
        })
}

/// `check` with the outcome written in.
fn verdict(mut check: PermissionCheck, outcome: Result<(), ApiError>) -> PermissionCheck {
    if let Err(error) = outcome {
        check.result = if error.code.is_denied() {
            Verdict::Denied
        } else {
            Verdict::Error
        };
        check.error_code = format!("{}: {}", error.api.as_str(), error.code.raw());
        check.message = error.message;
    }
    check
}

/// A plain-text table of the checks.
pub fn table(checks: &[PermissionCheck]) -> String {
    let rows: Vec<[String; 5]> = checks
        .iter()
        .map(|c| {
            let account = if c.account_name.is_empty() {
                c.account_id.clone()
            } else {
                format!("{} ({})", c.account_id, c.account_name)
            };
            let message = if c.error_code.is_empty() {
                String::new()
            } else {
                format!("{}: {}", c.error_code, c.message.replace('\n', " "))
            };
            [
                account,
                c.region.clone(),
                c.role_arn.clone(),
                c.result.as_str().to_string(),
                message,
            ]
        })
        .collect();
    render_table(&["ACCOUNT", "REGION", "ROLE", "RESULT", "MESSAGE"], &rows)
}

#[cfg(test)]
#[path = "permissions_tests.rs"]
mod tests;
