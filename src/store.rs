//! The latest result of every target, swapped in whole on success, and read by scrapes.
//!
//! A `std` lock is used because nothing is awaited while it is held: writers swap a pointer and a
//! few fields, readers clone `Arc`s.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::aws::ApiCounters;
use crate::config::Config;
use crate::model::{FastLaunchImage, TargetKey};

/// What is known about one configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The config's stable key (role ARN or `base`).
    pub key: String,
    /// The 12-digit account id, once known.
    pub account_id: Option<String>,
    /// The alias from the config.
    pub name: Option<String>,
    /// Whether the account is reached by AssumeRole.
    pub assumes_role: bool,
    /// Static labels from the config.
    pub labels: BTreeMap<String, String>,
}

/// The state of one target as a scrape sees it.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// Which target.
    pub key: TargetKey,
    /// The account's id, once known.
    pub account_id: Option<String>,
    /// Whether the account is reached by AssumeRole (which APIs it calls).
    pub assumes_role: bool,
    /// Whether a collection has finished at least once.
    pub tried: bool,
    /// Whether the last collection succeeded.
    pub last_ok: bool,
    /// How long the last collection took.
    pub last_duration: Option<Duration>,
    /// When the last successful collection ended.
    pub last_success: Option<SystemTime>,
    /// The last error, for the landing page.
    pub last_error: Option<String>,
    /// The images served now: the last good list, unless older than `max_staleness`.
    pub images: Option<Arc<Vec<FastLaunchImage>>>,
    /// Attempt and error counters.
    pub counters: Arc<ApiCounters>,
}

#[derive(Debug)]
struct TargetEntry {
    assumes_role: bool,
    tried: bool,
    last_ok: bool,
    last_duration: Option<Duration>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    images: Option<Arc<Vec<FastLaunchImage>>>,
    counters: Arc<ApiCounters>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: BTreeMap<String, AccountView>,
    targets: BTreeMap<TargetKey, TargetEntry>,
    max_staleness: Duration,
    static_label_names: Vec<String>,
    reload: ReloadStatus,
}

/// The outcome of the last configuration reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Whether the last reload attempt succeeded.
    pub successful: bool,
    /// When the configuration was last loaded successfully (start-up counts).
    pub last_success: SystemTime,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            successful: true,
            last_success: SystemTime::now(),
        }
    }
}

/// The latest snapshot per target.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
}

impl Store {
    /// A store with an empty entry for every target of `config`.
    pub fn new(config: &Config) -> Store {
        let store = Store::default();
        store.apply_config(config);
        store
    }

    /// Makes the store match `config`: targets that stay keep their data and counters, removed
    /// ones are dropped, new ones start empty. Account ids learnt earlier are kept.
    pub fn apply_config(&self, config: &Config) {
        let mut inner = self.inner.write().expect("store lock");
        let mut accounts = BTreeMap::new();
        for account in &config.accounts {
            let known_id = inner
                .accounts
                .get(&account.key())
                .and_then(|a| a.account_id.clone());
            accounts.insert(
                account.key(),
                AccountView {
                    key: account.key(),
                    account_id: account
                        .configured_account_id()
                        .map(str::to_string)
                        .or(known_id),
                    name: account.name.clone(),
                    assumes_role: account.role.is_some(),
                    labels: account.labels.clone(),
                },
            );
        }
        let mut targets = BTreeMap::new();
        for (account, region) in config.targets() {
            let key = TargetKey {
                account: account.key(),
                region: region.to_string(),
            };
            let entry = inner.targets.remove(&key).unwrap_or_else(|| TargetEntry {
                assumes_role: account.role.is_some(),
                tried: false,
                last_ok: false,
                last_duration: None,
                last_success: None,
                last_error: None,
                images: None,
                counters: Arc::new(ApiCounters::default()),
            });
            targets.insert(key, entry);
        }
        inner.accounts = accounts;
        inner.targets = targets;
        inner.max_staleness = config.collection.max_staleness;
        inner.static_label_names = config.static_label_names();
    }

    /// Records the outcome of a reload attempt.
    pub fn record_reload(&self, successful: bool, at: SystemTime) {
        let mut inner = self.inner.write().expect("store lock");
        inner.reload.successful = successful;
        if successful {
            inner.reload.last_success = at;
        }
    }

    /// The outcome of the last reload.
    pub fn reload_status(&self) -> ReloadStatus {
        self.inner.read().expect("store lock").reload
    }

    /// The union of static label names over all accounts.
    pub fn static_label_names(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("store lock")
            .static_label_names
            .clone()
    }

    /// The counters of a target (shared with its AWS clients).
    pub fn counters(&self, key: &TargetKey) -> Option<Arc<ApiCounters>> {
        let inner = self.inner.read().expect("store lock");
        inner.targets.get(key).map(|t| t.counters.clone())
    }

    /// Records an account id learnt from GetCallerIdentity.
    pub fn set_account_id(&self, account_key: &str, account_id: &str) {
        let mut inner = self.inner.write().expect("store lock");
        if let Some(account) = inner.accounts.get_mut(account_key) {
            account.account_id = Some(account_id.to_string());
        }
    }

    /// Replaces a target's images with a complete new list.
    pub fn record_success(
        &self,
        key: &TargetKey,
        images: Vec<FastLaunchImage>,
        duration: Duration,
        finished: SystemTime,
    ) {
        let mut inner = self.inner.write().expect("store lock");
        if let Some(target) = inner.targets.get_mut(key) {
            target.tried = true;
            target.last_ok = true;
            target.last_duration = Some(duration);
            target.last_success = Some(finished);
            target.last_error = None;
            target.images = Some(Arc::new(images));
        }
    }

    /// Records a failed collection: the last good images stay until they are `max_staleness` old.
    pub fn record_failure(
        &self,
        key: &TargetKey,
        error: String,
        duration: Duration,
        finished: SystemTime,
    ) {
        let mut inner = self.inner.write().expect("store lock");
        let max_staleness = inner.max_staleness;
        if let Some(target) = inner.targets.get_mut(key) {
            target.tried = true;
            target.last_ok = false;
            target.last_duration = Some(duration);
            target.last_error = Some(error);
            if !is_fresh(target.last_success, finished, max_staleness) {
                target.images = None;
            }
        }
    }

    /// Whether every target has finished a collection at least once.
    pub fn all_tried(&self) -> bool {
        let inner = self.inner.read().expect("store lock");
        inner.targets.values().all(|t| t.tried)
    }

    /// The accounts and targets as of `now`, with stale image lists left out.
    pub fn snapshot(&self, now: SystemTime) -> (Vec<AccountView>, Vec<TargetView>) {
        let inner = self.inner.read().expect("store lock");
        let accounts: Vec<AccountView> = inner.accounts.values().cloned().collect();
        let targets = inner
            .targets
            .iter()
            .map(|(key, t)| TargetView {
                key: key.clone(),
                account_id: inner
                    .accounts
                    .get(&key.account)
                    .and_then(|a| a.account_id.clone()),
                assumes_role: t.assumes_role,
                tried: t.tried,
                last_ok: t.last_ok,
                last_duration: t.last_duration,
                last_success: t.last_success,
                last_error: t.last_error.clone(),
                images: t
                    .images
                    .clone()
                    .filter(|_| is_fresh(t.last_success, now, inner.max_staleness)),
                counters: t.counters.clone(),
            })
            .collect();
        (accounts, targets)
    }
}

fn is_fresh(last_success: Option<SystemTime>, now: SystemTime, max_staleness: Duration) -> bool {
    match last_success {
        None => false,
        Some(at) => now.duration_since(at).unwrap_or_default() <= max_staleness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> FastLaunchImage {
        FastLaunchImage {
            image_id: id.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn failure_keeps_last_good_images_until_max_staleness() {
        let config = Config::from_yaml(
            "regions: [us-east-1]\ncollection: {interval: 10s, max_staleness: 30s}",
        )
        .unwrap();
        let store = Store::new(&config);
        let key = TargetKey {
            account: "base".into(),
            region: "us-east-1".into(),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!store.all_tried());
        store.record_success(&key, vec![image("ami-1")], Duration::from_secs(1), t0);
        assert!(store.all_tried());
        let t1 = t0 + Duration::from_secs(20);
        store.record_failure(&key, "boom".into(), Duration::from_secs(1), t1);
        let (_, targets) = store.snapshot(t1);
        assert!(!targets[0].last_ok);
        assert_eq!(targets[0].images.as_ref().unwrap().len(), 1);
        let (_, targets) = store.snapshot(t0 + Duration::from_secs(31));
        assert!(targets[0].images.is_none());
        store.record_failure(
            &key,
            "boom".into(),
            Duration::from_secs(1),
            t0 + Duration::from_secs(40),
        );
        let (_, targets) = store.snapshot(t0 + Duration::from_secs(40));
        assert!(targets[0].images.is_none());
    }

    #[test]
    fn applying_a_config_keeps_the_data_of_targets_that_stay() {
        let store = Store::new(&Config::from_yaml("regions: [us-east-1, eu-west-1]").unwrap());
        let stays = TargetKey {
            account: "base".into(),
            region: "us-east-1".into(),
        };
        let now = SystemTime::now();
        store.record_success(&stays, vec![image("ami-1")], Duration::from_secs(1), now);
        store.set_account_id("base", "111111111111");
        store.apply_config(&Config::from_yaml("regions: [us-east-1, ap-south-1]").unwrap());
        let (accounts, targets) = store.snapshot(now);
        let regions: Vec<&str> = targets.iter().map(|t| t.key.region.as_str()).collect();
        assert_eq!(regions, ["ap-south-1", "us-east-1"]);
        assert_eq!(targets[1].images.as_ref().unwrap().len(), 1);
        assert!(!targets[0].tried);
        assert_eq!(accounts[0].account_id.as_deref(), Some("111111111111"));
    }
}
