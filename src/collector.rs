//! The scheduler: every target is collected once right after start (spread by a small jitter),
//! then every `collection.interval`; at most `collection.concurrency` at once; a target never
//! overlaps itself (its loop is sequential) and each collection is bounded by `collection.timeout`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::aws::{AwsError, TargetClient};
use crate::config::{AccountConfig, CollectionSettings, Config};
use crate::model::{FastLaunchImage, FastLaunchState, TargetKey};
use crate::store::Store;

/// The longest start-up jitter; the concurrency limit spreads larger fleets anyway.
const MAX_JITTER: Duration = Duration::from_secs(1);

/// Why a target's collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// An AWS call failed (after the SDK's retries).
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// The collection ran past `collection.timeout`.
    #[error("collection timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// The account id of an account, resolved once: from the role ARN, or from GetCallerIdentity
/// (called once and cached; retried by the next collection after a failure).
#[derive(Debug)]
struct AccountIdentity {
    key: String,
    id: Mutex<Option<String>>,
}

impl AccountIdentity {
    async fn resolve(&self, client: &TargetClient, store: &Store) -> Result<String, AwsError> {
        let mut id = self.id.lock().await;
        if let Some(id) = id.as_ref() {
            return Ok(id.clone());
        }
        let resolved = client.caller_account_id().await.inspect_err(|error| {
            warn!(
                error = %error,
                "cannot learn the account id of the base credentials; \
                 the account's targets fail until GetCallerIdentity succeeds"
            );
        })?;
        info!(account_id = %resolved, "account id resolved with GetCallerIdentity");
        store.set_account_id(&self.key, &resolved);
        *id = Some(resolved.clone());
        Ok(resolved)
    }
}

/// The shared identity of `account`, made on first use; its targets resolve the id once.
fn identity_for(
    identities: &mut BTreeMap<String, Arc<AccountIdentity>>,
    account: &AccountConfig,
) -> Arc<AccountIdentity> {
    identities
        .entry(account.key())
        .or_insert_with(|| {
            Arc::new(AccountIdentity {
                key: account.key(),
                id: Mutex::new(account.configured_account_id().map(str::to_string)),
            })
        })
        .clone()
}

/// One target with its clients.
#[derive(Debug)]
struct Target {
    key: TargetKey,
    account: AccountConfig,
    identity: Arc<AccountIdentity>,
    client: TargetClient,
}

impl Target {
    /// The target `key` of `account` with its clients, sharing the account's identity and the
    /// store's counters for the key; None if the store has no such target.
    fn build(
        base: &SdkConfig,
        store: &Store,
        identities: &mut BTreeMap<String, Arc<AccountIdentity>>,
        account: &AccountConfig,
        key: TargetKey,
        settings: &CollectionSettings,
    ) -> Option<Target> {
        let counters = store.counters(&key)?;
        Some(Target {
            client: TargetClient::new(base, account, &key.region, settings, counters),
            identity: identity_for(identities, account),
            account: account.clone(),
            key,
        })
    }
}

/// What a target's collection depends on in its account's settings (not its alias or labels,
/// nor the account's other regions).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CollectionInputs {
    role: Option<crate::config::RoleConfig>,
    image_ids: Vec<String>,
    filters: Vec<crate::config::Filter>,
}

impl CollectionInputs {
    fn of(account: &AccountConfig) -> CollectionInputs {
        CollectionInputs {
            role: account.role.clone(),
            image_ids: account.image_ids.clone(),
            filters: account.filters.clone(),
        }
    }
}

/// A target's running task and what it was started with.
#[derive(Debug)]
struct RunningTarget {
    inputs: CollectionInputs,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs one task per target and changes the set of tasks when the configuration changes.
#[derive(Debug)]
pub struct Collector {
    base: SdkConfig,
    store: Arc<Store>,
    shutdown: CancellationToken,
    settings: Option<CollectionSettings>,
    semaphore: Arc<Semaphore>,
    identities: BTreeMap<String, Arc<AccountIdentity>>,
    running: BTreeMap<TargetKey, RunningTarget>,
}

impl Collector {
    /// A collector with no targets yet; `shutdown` stops every task it starts.
    pub fn new(base: SdkConfig, store: Arc<Store>, shutdown: CancellationToken) -> Collector {
        Collector {
            base,
            store,
            shutdown,
            settings: None,
            semaphore: Arc::new(Semaphore::new(1)),
            identities: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    /// Starts, stops and restarts target tasks so that they match `config`. A target whose
    /// account settings and collection settings are unchanged keeps running untouched; the store
    /// must already match `config` ([`Store::apply_config`]).
    pub fn apply(&mut self, config: &Config) {
        if self.settings.as_ref() != Some(&config.collection) {
            // New limits or schedule: every task restarts with them.
            self.settings = Some(config.collection.clone());
            self.semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
            for (_, running) in std::mem::take(&mut self.running) {
                running.cancel.cancel();
            }
        }
        let settings = config.collection.clone();
        let mut wanted = BTreeMap::new();
        for (account, region) in config.targets() {
            let key = TargetKey {
                account: account.key(),
                region: region.to_string(),
            };
            wanted.insert(key, account.clone());
        }
        self.running.retain(|key, running| {
            let keep = wanted
                .get(key)
                .is_some_and(|account| CollectionInputs::of(account) == running.inputs);
            if !keep {
                running.cancel.cancel();
            }
            keep
        });
        self.identities
            .retain(|key, _| config.accounts.iter().any(|a| &a.key() == key));
        for (key, account) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let Some(target) = Target::build(
                &self.base,
                &self.store,
                &mut self.identities,
                &account,
                key.clone(),
                &settings,
            ) else {
                continue;
            };
            let cancel = self.shutdown.child_token();
            let task = tokio::spawn(target_loop(
                target,
                settings.clone(),
                self.semaphore.clone(),
                self.store.clone(),
                cancel.clone(),
            ));
            self.running.insert(
                key,
                RunningTarget {
                    inputs: CollectionInputs::of(&account),
                    cancel,
                    task,
                },
            );
        }
    }

    /// Stops every target task and waits for them.
    pub async fn stop(self) {
        for running in self.running.values() {
            running.cancel.cancel();
        }
        for (_, running) in self.running {
            let _ = running.task.await;
        }
    }
}

/// Collects every target of `config` once (bounded by `collection.timeout`, at most
/// `collection.concurrency` at a time) into `store`. For `--once`.
pub async fn collect_once(config: &Config, base: &SdkConfig, store: Arc<Store>) {
    let semaphore = Arc::new(Semaphore::new(config.collection.concurrency));
    let mut identities: BTreeMap<String, Arc<AccountIdentity>> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    for (account, region) in config.targets() {
        let key = TargetKey {
            account: account.key(),
            region: region.to_string(),
        };
        let Some(target) = Target::build(
            base,
            &store,
            &mut identities,
            account,
            key,
            &config.collection,
        ) else {
            continue;
        };
        let (semaphore, store, settings) =
            (semaphore.clone(), store.clone(), config.collection.clone());
        tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire().await else {
                return;
            };
            collect_target(&target, &settings, &store).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn target_loop(
    target: Target,
    settings: CollectionSettings,
    semaphore: Arc<Semaphore>,
    store: Arc<Store>,
    shutdown: CancellationToken,
) {
    let jitter = (settings.interval / 10)
        .min(MAX_JITTER)
        .mul_f64(fastrand::f64());
    tokio::select! {
        _ = tokio::time::sleep(jitter) => {}
        _ = shutdown.cancelled() => return,
    }
    let mut ticker = tokio::time::interval(settings.interval);
    // A collection that overruns delays the next one rather than bunching them up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let permit = tokio::select! {
            permit = semaphore.acquire() => permit,
            _ = shutdown.cancelled() => return,
        };
        let Ok(_permit) = permit else { return };
        tokio::select! {
            _ = collect_target(&target, &settings, &store) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Collects one target once and records the result in the store.
async fn collect_target(target: &Target, settings: &CollectionSettings, store: &Store) {
    let account_name = target.account.name.as_deref().unwrap_or("");
    let span = info_span!(
        "collection",
        account = %target.key.account,
        account_name,
        account_id = tracing::field::Empty,
        region = %target.key.region,
    );
    async {
        let started = Instant::now();
        let result = match tokio::time::timeout(settings.timeout, fetch(target, settings, store)).await {
            Ok(result) => result,
            Err(_) => {
                // The cancelled attempt never reaches the interceptor's after-attempt hook.
                if let Some(api) = target.client.counters().take_in_flight() {
                    target.client.counters().count_error(api, "timeout");
                }
                Err(CollectError::Timeout(settings.timeout))
            }
        };
        let duration = started.elapsed();
        match result {
            Ok(images) => {
                debug!(images = images.len(), duration_ms = duration.as_millis() as u64, "collection succeeded");
                store.record_success(&target.key, images, duration, SystemTime::now());
            }
            Err(error) => {
                warn!(error = %error, duration_ms = duration.as_millis() as u64, "collection failed");
                store.record_failure(&target.key, error.to_string(), duration, SystemTime::now());
            }
        }
    }
    .instrument(span)
    .await
}

async fn fetch(
    target: &Target,
    settings: &CollectionSettings,
    store: &Store,
) -> Result<Vec<FastLaunchImage>, CollectError> {
    let account_id = target.identity.resolve(&target.client, store).await?;
    tracing::Span::current().record("account_id", account_id.as_str());
    let images = target
        .client
        .describe_fast_launch_images(
            settings.page_size,
            &target.account.image_ids,
            &target.account.filters,
        )
        .await?;
    Ok(check_images(images))
}

/// Drops images without an id and repeated ids (a page boundary moving under us), and warns
/// about states this build does not know.
fn check_images(images: Vec<FastLaunchImage>) -> Vec<FastLaunchImage> {
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(images.len());
    for image in images {
        if image.image_id.is_empty() {
            warn!("image without ImageId skipped");
            continue;
        }
        if !seen.insert(image.image_id.clone()) {
            warn!(image_id = %image.image_id, "image listed twice; first kept");
            continue;
        }
        if let Some(FastLaunchState::Unknown(state)) = &image.state {
            warn!(image_id = %image.image_id, state = %state, "unknown fast launch state; exported under its raw name");
        }
        kept.push(image);
    }
    kept
}
