//! Discovery's AWS calls: Organizations (the SDK speaks awsJson1_1 to it) listing accounts, OUs
//! and tags, and `ec2:DescribeRegions` in an account, each with the exporter's retry policy and
//! attempt counting.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::accounting::AttemptCounter;
use super::errors;
use crate::domain::calls::{Api, ApiError, AttemptSink};
use crate::domain::ports::{
    AccountPages, AccountState, BoxFuture, OrgAccount, Organization, RegionList,
};

/// The Organizations client of discovery.
#[derive(Debug)]
pub(crate) struct OrganizationClient {
    pub(crate) client: aws_sdk_organizations::Client,
    pub(crate) counter: AttemptCounter,
}

/// Sends a page's accounts on (the receiver gone: the listing was given up, nothing to do).
fn send_page(out: &AccountPages, accounts: &[aws_sdk_organizations::types::Account]) {
    let _ = out.send(accounts.iter().filter_map(convert).collect());
}

fn convert(account: &aws_sdk_organizations::types::Account) -> Option<OrgAccount> {
    Some(OrgAccount {
        id: account.id()?.to_string(),
        name: account.name().unwrap_or_default().to_string(),
        // `State` replaces the deprecated `Status`; an answer without it counts as not active.
        state: account
            .state()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(AccountState::from_aws),
    })
}

impl OrganizationClient {
    async fn all_accounts(&self, out: &AccountPages) -> Result<(), ApiError> {
        for_each_page!(
            self.counter,
            Api::ListAccounts,
            self.client.list_accounts().into_paginator().send(),
            |page| { send_page(out, page.accounts()) }
        );
        Ok(())
    }

    /// The accounts directly under `parent`.
    async fn accounts_under(&self, parent: &str, out: &AccountPages) -> Result<(), ApiError> {
        let pages = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .into_paginator()
            .send();
        for_each_page!(self.counter, Api::ListAccountsForParent, pages, |page| {
            send_page(out, page.accounts())
        });
        Ok(())
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

    async fn accounts(&self, parents: &[String], out: AccountPages) -> Result<(), ApiError> {
        if parents.is_empty() {
            return self.all_accounts(&out).await;
        }
        // Depth first through the OU tree; an OU listed twice is walked once.
        let mut queue: Vec<String> = parents.to_vec();
        let mut walked = std::collections::BTreeSet::new();
        while let Some(parent) = queue.pop() {
            if !walked.insert(parent.clone()) {
                continue;
            }
            self.accounts_under(&parent, &out).await?;
            queue.extend(self.units_under(&parent).await?);
        }
        Ok(())
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
        pages: AccountPages,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(OrganizationClient::accounts(self, parents, pages))
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

/// `ec2:DescribeRegions` in one account, through the shared EC2 client of its credentials (the
/// role assumed here is the one its targets then use).
#[derive(Debug)]
pub(crate) struct RegionClient {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(super) per_call: super::PerCall,
    pub(crate) counter: AttemptCounter,
    /// Where the AssumeRole attempts of the account's shared credentials are counted.
    pub(crate) sink: Arc<dyn AttemptSink>,
}

impl RegionClient {
    async fn enabled_regions(&self) -> Result<Vec<String>, ApiError> {
        self.counter.start_call();
        let output = self
            .ec2
            .describe_regions()
            .all_regions(true)
            .customize()
            .config_override(self.per_call.ec2(&self.counter))
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
        Box::pin(super::accounting::attributed(
            &self.sink,
            RegionClient::enabled_regions(self),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_organizations::types::{Account, AccountState as SdkState};

    fn account(id: Option<&str>, name: Option<&str>, state: Option<&str>) -> Account {
        Account::builder()
            .set_id(id.map(str::to_string))
            .set_name(name.map(str::to_string))
            .set_state(state.map(SdkState::from))
            .build()
    }

    #[test]
    fn an_account_state_is_parsed_and_an_unknown_one_kept_raw() {
        let state = |raw: &str| {
            convert(&account(Some("222222222222"), Some("two"), Some(raw)))
                .unwrap()
                .state
        };
        assert_eq!(state("ACTIVE"), Some(AccountState::Active));
        for other in ["SUSPENDED", "PENDING_CLOSURE", "CLOSED", "MOVED_AWAY"] {
            assert_eq!(state(other), Some(AccountState::Other(other.to_string())));
        }
    }

    #[test]
    fn an_account_without_an_id_is_dropped_and_one_without_a_name_or_state_kept() {
        assert_eq!(convert(&account(None, Some("x"), Some("ACTIVE"))), None);
        assert_eq!(
            convert(&account(Some("222222222222"), None, None)),
            Some(OrgAccount {
                id: "222222222222".into(),
                name: String::new(),
                state: None,
            })
        );
    }

    #[test]
    fn a_page_is_sent_on_without_the_accounts_that_have_no_id() {
        let (out, mut pages) = tokio::sync::mpsc::unbounded_channel();
        send_page(
            &out,
            &[
                account(Some("222222222222"), Some("two"), Some("ACTIVE")),
                account(None, Some("ghost"), Some("ACTIVE")),
            ],
        );
        let page = pages.try_recv().unwrap();
        let ids: Vec<&str> = page.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["222222222222"]);
        drop(pages);
        // The listing given up: nothing to send to, and no panic.
        send_page(&out, &[account(Some("333333333333"), None, None)]);
    }
}
