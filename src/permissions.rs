//! `check-permissions`: for every target, resolve credentials (AssumeRole where configured) and
//! call DescribeFastLaunchImages with `DryRun=true`, to prove the IAM set-up before rolling out.

use std::fmt::Write;
use std::sync::Arc;

use aws_config::SdkConfig;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::aws::{ApiCounters, AwsError, TargetClient};
use crate::config::{AccountConfig, Config};

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
    /// Whether the target may be collected.
    pub fn allowed(&self) -> bool {
        self.result == "allowed"
    }
}

fn verdict(error: &AwsError) -> &'static str {
    match error.code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => "denied",
        _ => "error",
    }
}

async fn check_target(
    base: SdkConfig,
    account: AccountConfig,
    region: String,
    settings: crate::config::CollectionSettings,
) -> PermissionCheck {
    let client = TargetClient::new(
        &base,
        &account,
        &region,
        &settings,
        Arc::new(ApiCounters::default()),
    );
    let mut check = PermissionCheck {
        account_id: account
            .configured_account_id()
            .unwrap_or_default()
            .to_string(),
        account_name: account.name.clone().unwrap_or_default(),
        region: region.clone(),
        role_arn: account
            .role
            .as_ref()
            .map(|r| r.arn.clone())
            .unwrap_or_default(),
        result: "allowed",
        error_code: String::new(),
        message: String::new(),
    };
    let outcome = async {
        if account.role.is_none() {
            check.account_id = client.caller_account_id().await?;
        }
        client.check_describe_permission().await
    };
    let outcome = match tokio::time::timeout(settings.timeout, outcome).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AwsError {
            api: crate::aws::Api::DescribeFastLaunchImages,
            code: "timeout",
            message: format!(
                "no answer within collection.timeout ({})",
                humantime::format_duration(settings.timeout)
            ),
        }),
    };
    if let Err(error) = outcome {
        check.result = verdict(&error);
        check.error_code = format!("{}: {}", error.api.as_str(), error.code);
        check.message = error.message;
    }
    check
}

/// Checks every target of `config`, `collection.concurrency` at a time, in config order.
pub async fn check_permissions(config: &Config, base: &SdkConfig) -> Vec<PermissionCheck> {
    let semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
    let mut tasks = JoinSet::new();
    for (index, (account, region)) in config.targets().enumerate() {
        let (semaphore, base, account, region, settings) = (
            semaphore.clone(),
            base.clone(),
            account.clone(),
            region.to_string(),
            config.collection.clone(),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            (index, check_target(base, account, region, settings).await)
        });
    }
    let mut checks = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(done) = result {
            checks.push(done);
        }
    }
    checks.sort_by_key(|(index, _)| *index);
    checks.into_iter().map(|(_, check)| check).collect()
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
