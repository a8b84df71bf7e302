//! `check-permissions`: for every target, resolve credentials (AssumeRole where configured) and
//! call DescribeFastLaunchImages with `DryRun=true`, and, where CloudWatch is on, ListMetrics and
//! GetMetricData, to prove the IAM set-up before rolling out.

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::calls::{Api, ApiCounters, ApiError, ErrorCode};
use crate::collector::Connect;
use crate::config::{CollectionSettings, Config};
use crate::discovery::Planner;
use crate::model::TargetSpec;

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
    pub result: &'static str,
    /// The failing API and AWS error code, when not allowed.
    pub error_code: String,
    /// AWS's message, when not allowed.
    pub message: String,
}

impl PermissionCheck {
    fn allowed_blank() -> PermissionCheck {
        PermissionCheck {
            account_id: String::new(),
            account_name: String::new(),
            region: String::new(),
            role_arn: String::new(),
            result: "allowed",
            error_code: String::new(),
            message: String::new(),
        }
    }

    /// Whether the target may be collected.
    pub fn allowed(&self) -> bool {
        self.result == "allowed"
    }
}

async fn check_target(
    connect: Arc<dyn Connect>,
    spec: TargetSpec,
    settings: CollectionSettings,
) -> PermissionCheck {
    let counters = Arc::new(ApiCounters::default());
    let client = connect.connect(&spec, settings.max_attempts, counters.clone());
    let mut check = PermissionCheck {
        account_id: spec.configured_account_id().unwrap_or_default().to_string(),
        account_name: spec.account_name.clone().unwrap_or_default(),
        region: spec.key.region.clone(),
        role_arn: spec
            .role
            .as_ref()
            .map(|r| r.arn.clone())
            .unwrap_or_default(),
        ..PermissionCheck::allowed_blank()
    };
    let outcome = async {
        if spec.role.is_none() {
            check.account_id = client.caller_account_id().await?;
        }
        client.check_describe_permission().await?;
        if spec.cloudwatch.is_some() {
            client.check_cloudwatch_permission().await?;
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
/// target of this shard, `collection.concurrency` at a time, in config order.
pub async fn check_permissions(
    config: &Config,
    connect: impl Connect + 'static,
) -> Vec<PermissionCheck> {
    let connect: Arc<dyn Connect> = Arc::new(connect);
    let mut checks = Vec::new();
    let home_region = connect
        .home_region()
        .unwrap_or_else(|| "us-east-1".to_string());
    if let Some(discovery) = &config.discovery {
        let counters = Arc::new(ApiCounters::default());
        let organization = connect.connect_organization(
            discovery.role.as_ref(),
            &home_region,
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
        checks.push(verdict(
            PermissionCheck {
                account_id: discovery
                    .role
                    .as_ref()
                    .map(|r| r.account_id.clone())
                    .unwrap_or_default(),
                account_name: "organizations".to_string(),
                region: home_region.clone(),
                role_arn: discovery
                    .role
                    .as_ref()
                    .map(|r| r.arn.clone())
                    .unwrap_or_default(),
                ..PermissionCheck::allowed_blank()
            },
            outcome,
        ));
    }
    let planner = Planner::new(connect.clone(), config.shard, connect.home_region());
    let plan = planner.plan(config).await;
    if let Some(why) = &plan.incomplete {
        // The full listing (OUs, tags) failed, or an account id is unknown: the targets below
        // are not all of them.
        checks.push(PermissionCheck {
            account_name: "discovery".to_string(),
            region: home_region.clone(),
            result: "error",
            error_code: "plan: incomplete".to_string(),
            message: why.clone(),
            ..PermissionCheck::allowed_blank()
        });
    }
    let semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
    let mut tasks = JoinSet::new();
    for (index, (account, _)) in plan.accounts.iter().enumerate() {
        if !account.all_regions {
            continue;
        }
        let counters = Arc::new(ApiCounters::default());
        let region = account
            .regions
            .first()
            .cloned()
            .unwrap_or_else(|| home_region.clone());
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
    checks.extend(region_checks.into_iter().map(|(_, check)| check));

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
    checks.extend(target_checks.into_iter().map(|(_, check)| check));
    checks
}

/// `call` bounded by `timeout`; a timeout names the API on the wire (else `api`).
async fn timed(
    timeout: std::time::Duration,
    counters: &ApiCounters,
    api: Api,
    call: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), ApiError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ApiError::new(
            counters
                .abandon_in_flight(&ErrorCode::Timeout)
                .unwrap_or(api),
            ErrorCode::Timeout,
            format!(
                "no answer within collection.timeout ({})",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

/// `check` with the outcome written in.
fn verdict(mut check: PermissionCheck, outcome: Result<(), ApiError>) -> PermissionCheck {
    if let Err(error) = outcome {
        check.result = if error.code.is_denied() {
            "denied"
        } else {
            "error"
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
                c.result.to_string(),
                message,
            ]
        })
        .collect();
    render_table(&["ACCOUNT", "REGION", "ROLE", "RESULT", "MESSAGE"], &rows)
}

/// Renders rows under headers with columns padded to their widest cell.
pub fn render_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
