//! Discovery's AWS calls: Organizations (the SDK speaks awsJson1_1 to it) listing accounts, OUs
//! and tags, and `ec2:DescribeRegions` in an account, each with the exporter's retry policy and
//! attempt counting.

use std::collections::BTreeMap;

use super::accounting::AttemptCounter;
use super::errors;
use crate::calls::{Api, ApiError};
use crate::collector::BoxFuture;
use crate::discovery::{OrgAccount, Organization, RegionList};

/// The Organizations client of discovery.
#[derive(Debug)]
pub(crate) struct OrganizationClient {
    pub(crate) client: aws_sdk_organizations::Client,
    pub(crate) counter: AttemptCounter,
}

fn convert(account: &aws_sdk_organizations::types::Account) -> Option<OrgAccount> {
    Some(OrgAccount {
        id: account.id()?.to_string(),
        name: account.name().unwrap_or_default().to_string(),
        // `State` replaces the deprecated `Status`; an answer without it counts as not active.
        state: account
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

impl OrganizationClient {
    async fn all_accounts(&self) -> Result<Vec<OrgAccount>, ApiError> {
        let mut accounts = Vec::new();
        for_each_page!(
            self.counter,
            Api::ListAccounts,
            self.client.list_accounts().into_paginator().send(),
            |page| { accounts.extend(page.accounts().iter().filter_map(convert)) }
        );
        Ok(accounts)
    }

    /// The accounts directly under `parent`.
    async fn accounts_under(&self, parent: &str) -> Result<Vec<OrgAccount>, ApiError> {
        let pages = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .into_paginator()
            .send();
        let mut accounts = Vec::new();
        for_each_page!(self.counter, Api::ListAccountsForParent, pages, |page| {
            accounts.extend(page.accounts().iter().filter_map(convert))
        });
        Ok(accounts)
    }

    /// The OUs directly under `parent`.
    async fn units_under(&self, parent: &str) -> Result<Vec<String>, ApiError> {
        let pages = self
            .client
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .into_paginator()
            .send();
        let mut units = Vec::new();
        for_each_page!(
            self.counter,
            Api::ListOrganizationalUnitsForParent,
            pages,
            |page| {
                units.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|u| u.id().map(str::to_string)),
                )
            }
        );
        Ok(units)
    }

    async fn accounts(&self, parents: &[String]) -> Result<Vec<OrgAccount>, ApiError> {
        if parents.is_empty() {
            return self.all_accounts().await;
        }
        // Depth first through the OU tree; an OU listed twice is walked once.
        let mut queue: Vec<String> = parents.to_vec();
        let mut walked = std::collections::BTreeSet::new();
        let mut accounts = Vec::new();
        while let Some(parent) = queue.pop() {
            if !walked.insert(parent.clone()) {
                continue;
            }
            accounts.extend(self.accounts_under(&parent).await?);
            queue.extend(self.units_under(&parent).await?);
        }
        Ok(accounts)
    }

    async fn tags(&self, account_id: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let pages = self
            .client
            .list_tags_for_resource()
            .resource_id(account_id)
            .into_paginator()
            .send();
        let mut tags = BTreeMap::new();
        for_each_page!(self.counter, Api::ListTagsForResource, pages, |page| {
            tags.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string())),
            )
        });
        Ok(tags)
    }

    async fn check_permission(&self) -> Result<(), ApiError> {
        self.counter.start_call();
        self.client
            .describe_organization()
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(Api::DescribeOrganization, &e, self.counter.call_attempts())
            })?;
        self.counter.start_call();
        self.client
            .list_accounts()
            .max_results(1)
            .send()
            .await
            .map_err(|e| errors::from_sdk(Api::ListAccounts, &e, self.counter.call_attempts()))?;
        Ok(())
    }
}

impl Organization for OrganizationClient {
    fn accounts<'a>(
        &'a self,
        parents: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<OrgAccount>, ApiError>> {
        Box::pin(OrganizationClient::accounts(self, parents))
    }

    fn tags<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>> {
        Box::pin(OrganizationClient::tags(self, account_id))
    }

    fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(OrganizationClient::check_permission(self))
    }
}

/// `ec2:DescribeRegions` in one account.
#[derive(Debug)]
pub(crate) struct RegionClient {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) counter: AttemptCounter,
}

impl RegionClient {
    async fn enabled_regions(&self) -> Result<Vec<String>, ApiError> {
        self.counter.start_call();
        let output = self
            .ec2
            .describe_regions()
            .all_regions(true)
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(Api::DescribeRegions, &e, self.counter.call_attempts())
            })?;
        Ok(output
            .regions()
            .iter()
            // `opt-in-not-required`, `opted-in`; `not-opted-in` regions are not enabled.
            .filter(|r| r.opt_in_status() != Some("not-opted-in"))
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect())
    }
}

impl RegionList for RegionClient {
    fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(RegionClient::enabled_regions(self))
    }
}
