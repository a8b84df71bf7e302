//! The planner against a fake AWS: Organizations pages, tags, DescribeRegions and
//! GetCallerIdentity answered from a script, on a paused tokio clock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::time::Instant;

use super::*;
use crate::domain::calls::{AttemptSink, ErrorCode};
use crate::domain::model::{FastLaunchImage, MetricSeries, MetricWindow, Query, RoleSpec};
use crate::domain::ports::{AccountPages, BoxFuture, Fetch, Probe, Queue, RegionList, Unsupported};
use crate::domain::sync::lock;

const MEMBER_ROLE: &str = "arn:aws:iam::{account_id}:role/Reader";
const BASE_ID: &str = "111111111111";

/// How the fake answers a call: at once, or after a delay, or never.
#[derive(Clone)]
enum Answer<T> {
    Now(Result<T, ApiError>),
    Hangs,
}

impl<T: Clone> Answer<T> {
    async fn give(self) -> Result<T, ApiError> {
        match self {
            Answer::Now(result) => result,
            Answer::Hangs => std::future::pending().await,
        }
    }
}

/// What the fake AWS answers, and what it was asked.
struct World {
    /// GetCallerIdentity of the base credentials.
    caller: Answer<String>,
    caller_calls: usize,
    /// The pages ListAccounts sends, then how the listing ends.
    pages: Vec<Vec<OrgAccount>>,
    listing_ends: Answer<()>,
    /// The parents each listing was asked for.
    listings: Vec<Vec<String>>,
    /// The region of each Organizations client.
    organization_regions: Vec<String>,
    /// Tags by account id (absent: none).
    tags: BTreeMap<String, Result<BTreeMap<String, String>, ApiError>>,
    tag_calls: Vec<String>,
    /// DescribeRegions by account key (role ARN, or `base`); absent: fails.
    regions: BTreeMap<String, Answer<Vec<String>>>,
    /// (account key, region) of each DescribeRegions call.
    region_calls: Vec<(String, String)>,
}

impl Default for World {
    fn default() -> Self {
        World {
            caller: Answer::Now(Ok(BASE_ID.to_string())),
            caller_calls: 0,
            pages: Vec::new(),
            listing_ends: Answer::Now(Ok(())),
            listings: Vec::new(),
            organization_regions: Vec::new(),
            tags: BTreeMap::new(),
            tag_calls: Vec::new(),
            regions: BTreeMap::new(),
            region_calls: Vec::new(),
        }
    }
}

type Shared = Arc<Mutex<World>>;

fn denied(api: Api) -> ApiError {
    ApiError::new(api, ErrorCode::AccessDenied, "not authorized")
}

fn account(id: &str, name: &str, state: Option<&str>) -> OrgAccount {
    OrgAccount {
        id: id.to_string(),
        name: name.to_string(),
        state: state.map(AccountState::from_aws),
    }
}

fn active(id: &str) -> OrgAccount {
    account(id, &format!("acct-{}", &id[..1]), Some("ACTIVE"))
}

fn role_key(role: Option<&RoleSpec>) -> String {
    role.map_or("base".to_string(), |r| r.arn.clone())
}

struct FakeConnect(Shared);

struct FakeOrganization(Shared);

impl Organization for FakeOrganization {
    fn accounts<'a>(
        &'a self,
        parents: &'a [String],
        pages: AccountPages,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let (sent, ends) = {
                let mut world = lock(&self.0);
                world.listings.push(parents.to_vec());
                (world.pages.clone(), world.listing_ends.clone())
            };
            for page in sent {
                let _ = pages.send(page);
                tokio::task::yield_now().await;
            }
            ends.give().await
        })
    }

    fn tags<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>> {
        Box::pin(async move {
            let mut world = lock(&self.0);
            world.tag_calls.push(account_id.to_string());
            world
                .tags
                .get(account_id)
                .cloned()
                .unwrap_or_else(|| Ok(BTreeMap::new()))
        })
    }

    fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
}

struct FakeRegions {
    world: Shared,
    key: String,
}

impl RegionList for FakeRegions {
    fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let answer = lock(&self.world)
                .regions
                .get(&self.key)
                .cloned()
                .unwrap_or_else(|| Answer::Now(Err(denied(Api::DescribeRegions))));
            answer.give().await
        })
    }
}

struct FakeFetch(Shared);

impl Fetch for FakeFetch {
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move {
            let answer = {
                let mut world = lock(&self.0);
                world.caller_calls += 1;
                world.caller.clone()
            };
            answer.give().await
        })
    }

    fn fast_launch_images<'a>(
        &'a self,
        _query: &'a Query,
        _page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>> {
        Box::pin(async { Err(denied(Api::DescribeFastLaunchImages)) })
    }

    fn launch_metrics<'a>(
        &'a self,
        _image_ids: &'a [String],
        _window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>> {
        Box::pin(async { Err(denied(Api::ListMetrics)) })
    }
}

impl Connect for FakeConnect {
    fn connect(
        &self,
        _spec: &TargetSpec,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch> {
        Arc::new(FakeFetch(self.0.clone()))
    }

    fn probe(
        &self,
        _spec: &TargetSpec,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Probe> {
        Arc::new(Unsupported)
    }

    fn connect_queue(
        &self,
        _queue: &crate::domain::model::QueueSpec,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Queue> {
        Arc::new(Unsupported)
    }

    fn home_region(&self) -> Option<String> {
        Some("eu-central-1".to_string())
    }

    fn connect_organization(
        &self,
        _role: Option<&RoleSpec>,
        region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization> {
        lock(&self.0).organization_regions.push(region.to_string());
        Arc::new(FakeOrganization(self.0.clone()))
    }

    fn connect_regions(
        &self,
        role: Option<&RoleSpec>,
        region: &str,
        _max_attempts: u32,
        _sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList> {
        let key = role_key(role);
        lock(&self.0)
            .region_calls
            .push((key.clone(), region.to_string()));
        Arc::new(FakeRegions {
            world: self.0.clone(),
            key,
        })
    }
}

fn world() -> Shared {
    Arc::new(Mutex::new(World::default()))
}

fn planner(world: &Shared, shard: Shard) -> Planner {
    Planner::new(
        Arc::new(FakeConnect(world.clone())),
        shard,
        Some("eu-central-1".to_string()),
    )
}

/// A configuration from YAML; accounts without regions get `eu-west-1`.
fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml)
        .unwrap()
        .with_default_region(Some("eu-west-1"))
        .unwrap()
}

/// Discovery of the whole organization in `regions`, with `extra` lines under
/// `organizations:`.
fn discovery_config(regions: &str, extra: &str) -> Config {
    config(&format!(
        "regions: {regions}\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n{extra}"
    ))
}

fn keys(plan: &Plan) -> Vec<String> {
    plan.specs.iter().map(|s| s.key.to_string()).collect()
}

fn member(id: &str) -> String {
    MEMBER_ROLE.replace("{account_id}", id)
}

#[tokio::test(start_paused = true)]
async fn a_failed_organizations_listing_keeps_the_last_good_set_of_accounts() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222")], vec![active("333333333333")]];
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "");

    let first = planner.plan(&config).await;
    let expected = [
        format!("{}/us-east-1", member("222222222222")),
        format!("{}/us-east-1", member("333333333333")),
    ];
    assert_eq!(keys(&first), expected);
    assert_eq!(
        (first.retry_soon, first.incomplete.as_deref()),
        (false, None)
    );
    assert_eq!(planner.stats().state().last_ok, Some(true));
    assert_eq!(planner.stats().state().accounts, 2);

    // The second listing fails after one page: the two accounts stay.
    {
        let mut world = lock(&world);
        world.pages = vec![vec![active("222222222222")]];
        world.listing_ends = Answer::Now(Err(denied(Api::ListAccounts)));
    }
    let second = planner.plan(&config).await;
    assert_eq!(keys(&second), expected);
    assert_eq!(
        (second.retry_soon, second.incomplete.as_deref()),
        (false, None)
    );
    let stats = planner.stats().state();
    assert_eq!((stats.last_ok, stats.accounts), (Some(false), 2));

    // Organizations is called in the home region, for the whole organization, every plan.
    let world = lock(&world);
    assert_eq!(world.organization_regions, ["eu-central-1", "eu-central-1"]);
    assert_eq!(world.listings, [Vec::<String>::new(), Vec::new()]);
}

#[tokio::test(start_paused = true)]
async fn a_listing_that_never_succeeded_leaves_the_plan_incomplete_and_retried_soon() {
    let world = world();
    lock(&world).listing_ends = Answer::Now(Err(denied(Api::ListAccounts)));
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "");
    let plan = planner.plan(&config).await;
    assert!(plan.specs.is_empty());
    assert!(plan.retry_soon);
    assert_eq!(
        plan.incomplete.as_deref(),
        Some("the organization has not been listed yet")
    );
    assert_eq!(Planner::next_plan_in(&config, &plan), Some(RETRY_SOON));
}

#[tokio::test(start_paused = true)]
async fn a_hung_listing_is_cut_at_the_discovery_interval_and_keeps_the_last_set() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222")]];
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "    interval: 5m\n");
    assert_eq!(keys(&planner.plan(&config).await).len(), 1);

    lock(&world).listing_ends = Answer::Hangs;
    let start = Instant::now();
    let plan = planner.plan(&config).await;
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    assert_eq!(
        keys(&plan),
        [format!("{}/us-east-1", member("222222222222"))]
    );
    assert_eq!(planner.stats().state().last_ok, Some(false));
}

#[tokio::test(start_paused = true)]
async fn accounts_not_active_excluded_or_listed_twice_are_dropped() {
    let world = world();
    lock(&world).pages = vec![
        vec![
            account("222222222222", "two", Some("ACTIVE")),
            account("333333333333", "three", Some("SUSPENDED")),
            account("444444444444", "four", Some("PENDING_CLOSURE")),
            account("555555555555", "five", None),
            account("666666666666", "six", Some("ACTIVE")),
        ],
        vec![account("222222222222", "two again", Some("ACTIVE"))],
    ];
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "    exclude_accounts: [\"666666666666\"]\n");
    let plan = planner.plan(&config).await;
    assert_eq!(
        keys(&plan),
        [format!("{}/us-east-1", member("222222222222"))]
    );
    assert_eq!(plan.specs[0].account_name.as_deref(), Some("two"));
    assert_eq!(
        plan.specs[0].role.as_ref().unwrap().account_id,
        "222222222222"
    );
    assert_eq!(planner.stats().state().accounts, 1);
}

#[tokio::test(start_paused = true)]
async fn accounts_listed_without_any_state_fail_the_listing_rather_than_drop_everything() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222")]];
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "");
    assert_eq!(planner.plan(&config).await.specs.len(), 1);

    lock(&world).pages = vec![vec![
        account("222222222222", "two", None),
        account("333333333333", "three", None),
    ]];
    let plan = planner.plan(&config).await;
    assert_eq!(
        keys(&plan),
        [format!("{}/us-east-1", member("222222222222"))]
    );
    assert_eq!(planner.stats().state().last_ok, Some(false));
}

#[tokio::test(start_paused = true)]
async fn an_explicit_account_wins_over_the_same_account_discovered() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222"), active("333333333333")]];
    let planner = planner(&world, Shard::default());
    let config = config(&format!(
        "regions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\naccounts:\n  - name: mine\n    role_arn: arn:aws:iam::222222222222:role/Mine\n    regions: [ap-south-1]\n"
    ));
    let plan = planner.plan(&config).await;
    assert_eq!(
        keys(&plan),
        [
            "arn:aws:iam::222222222222:role/Mine/ap-south-1".to_string(),
            format!("{}/us-east-1", member("333333333333")),
        ]
    );
    assert_eq!(plan.specs[0].account_name.as_deref(), Some("mine"));
}

#[tokio::test(start_paused = true)]
async fn tags_filter_accounts_and_become_labels() {
    let world = world();
    {
        let mut world = lock(&world);
        world.pages = vec![vec![
            active("222222222222"),
            active("333333333333"),
            active("444444444444"),
        ]];
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        world.tags.insert(
            "222222222222".into(),
            Ok(tags(&[("fast-launch", "true"), ("cost-center", "42")])),
        );
        world
            .tags
            .insert("333333333333".into(), Ok(tags(&[("fast-launch", "false")])));
    }
    let planner = planner(&world, Shard::default());
    let config = discovery_config(
        "[us-east-1]",
        "    tags: {fast-launch: true}\n    labels_from_tags: [cost-center, team]\n",
    );
    let plan = planner.plan(&config).await;
    assert_eq!(
        keys(&plan),
        [format!("{}/us-east-1", member("222222222222"))]
    );
    assert_eq!(
        plan.specs[0].labels,
        BTreeMap::from([
            ("cost_center".to_string(), "42".to_string()),
            ("team".to_string(), String::new()),
        ])
    );
    let mut asked = lock(&world).tag_calls.clone();
    asked.sort();
    assert_eq!(asked, ["222222222222", "333333333333", "444444444444"]);
}

#[tokio::test(start_paused = true)]
async fn one_account_whose_tags_fail_fails_the_listing_and_the_last_set_stays() {
    let world = world();
    {
        let mut world = lock(&world);
        world.pages = vec![vec![active("222222222222"), active("333333333333")]];
        for id in ["222222222222", "333333333333"] {
            world.tags.insert(
                id.into(),
                Ok(BTreeMap::from([("team".to_string(), "w".to_string())])),
            );
        }
    }
    let planner = planner(&world, Shard::default());
    let config = discovery_config("[us-east-1]", "    labels_from_tags: [team]\n");
    assert_eq!(planner.plan(&config).await.specs.len(), 2);

    lock(&world)
        .tags
        .insert("333333333333".into(), Err(denied(Api::ListTagsForResource)));
    let plan = planner.plan(&config).await;
    assert_eq!(plan.specs.len(), 2, "{:?}", keys(&plan));
    assert_eq!(plan.specs[1].labels["team"], "w");
    assert_eq!(planner.stats().state().last_ok, Some(false));
}

#[tokio::test(start_paused = true)]
async fn the_organizational_units_are_the_parents_listed() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222")]];
    let planner = planner(&world, Shard::default());
    let config = discovery_config(
        "[us-east-1]",
        "    organizational_units: [ou-ab12-11111111, r-ab12]\n",
    );
    assert_eq!(planner.plan(&config).await.specs.len(), 1);
    assert_eq!(lock(&world).listings, [["ou-ab12-11111111", "r-ab12"]]);
}

#[tokio::test(start_paused = true)]
async fn without_tag_filters_or_labels_no_tags_are_asked_for() {
    let world = world();
    lock(&world).pages = vec![vec![active("222222222222")]];
    let planner = planner(&world, Shard::default());
    planner.plan(&discovery_config("[us-east-1]", "")).await;
    assert!(lock(&world).tag_calls.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_describe_regions_keeps_the_accounts_last_region_list() {
    let world = world();
    let role = "arn:aws:iam::222222222222:role/R";
    let planner = planner(&world, Shard::default());
    let config = config(&format!(
        "accounts:\n  - role_arn: {role}\n    regions: all\n"
    ));
    let regions_of = |plan: &Plan| plan.accounts[0].1.clone();

    // Never listed: the fallback regions (the environment's region).
    let first = planner.plan(&config).await;
    assert_eq!(regions_of(&first), ["eu-west-1"]);
    assert_eq!(keys(&first), [format!("{role}/eu-west-1")]);
    assert!(!first.retry_soon);

    lock(&world).regions.insert(
        role.to_string(),
        Answer::Now(Ok(vec!["us-east-1".into(), "us-west-2".into()])),
    );
    let listed = planner.plan(&config).await;
    assert_eq!(regions_of(&listed), ["us-east-1", "us-west-2"]);
    assert_eq!(
        keys(&listed),
        [format!("{role}/us-east-1"), format!("{role}/us-west-2")]
    );

    // Failing, listing nothing, or hanging past collection.timeout: the last list stays.
    for (answer, took) in [
        (
            Answer::Now(Err(denied(Api::DescribeRegions))),
            Duration::ZERO,
        ),
        (Answer::Now(Ok(Vec::new())), Duration::ZERO),
        (Answer::Hangs, config.collection.timeout),
    ] {
        lock(&world).regions.insert(role.to_string(), answer);
        let start = Instant::now();
        let kept = planner.plan(&config).await;
        assert_eq!(regions_of(&kept), ["us-east-1", "us-west-2"]);
        assert_eq!(start.elapsed(), took);
    }
    // Asked each time in the account's first configured region (its fallback list).
    let calls = lock(&world).region_calls.clone();
    assert_eq!(calls.len(), 5);
    assert!(
        calls
            .iter()
            .all(|(key, region)| key == role && region == "eu-west-1"),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn discovered_accounts_with_regions_all_list_their_own_regions() {
    let world = world();
    {
        let mut world = lock(&world);
        world.pages = vec![vec![active("222222222222"), active("333333333333")]];
        world.regions.insert(
            member("222222222222"),
            Answer::Now(Ok(vec!["ap-south-1".into()])),
        );
    }
    let planner = planner(&world, Shard::default());
    let config = discovery_config("all", "");
    let plan = planner.plan(&config).await;
    assert_eq!(
        keys(&plan),
        [
            format!("{}/ap-south-1", member("222222222222")),
            // Its DescribeRegions failed and it has no last list: the top-level fallback.
            format!("{}/eu-west-1", member("333333333333")),
        ]
    );
    let mut calls = lock(&world).region_calls.clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            (member("222222222222"), "eu-west-1".to_string()),
            (member("333333333333"), "eu-west-1".to_string()),
        ],
        "one call per account"
    );
    let callers: Vec<(String, String)> = planner
        .stats()
        .state()
        .region_callers
        .iter()
        .map(|c| (c.account_id.clone(), c.region.clone()))
        .collect();
    assert_eq!(
        callers,
        [
            ("222222222222".to_string(), "eu-west-1".to_string()),
            ("333333333333".to_string(), "eu-west-1".to_string()),
        ]
    );
}

/// Ten discovered accounts in three regions: thirty targets to share out.
fn sharded_world() -> (Shared, Config, Vec<(String, String)>) {
    let world = world();
    let ids: Vec<String> = (2..=9)
        .map(|d| d.to_string().repeat(12))
        .chain(["123456789012".to_string(), "210987654321".to_string()])
        .collect();
    lock(&world).pages = vec![ids.iter().map(|id| active(id)).collect()];
    let regions = ["us-east-1", "eu-west-1", "ap-south-1"];
    let config = discovery_config("[us-east-1, eu-west-1, ap-south-1]", "");
    let all = ids
        .iter()
        .flat_map(|id| regions.iter().map(move |r| (id.clone(), r.to_string())))
        .collect();
    (world, config, all)
}

#[tokio::test(start_paused = true)]
async fn a_shard_keeps_only_the_targets_it_owns() {
    let (world, config, all) = sharded_world();
    let mut seen = Vec::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let plan = planner(&world, shard).plan(&config).await;
        let expected: Vec<String> = all
            .iter()
            .filter(|(id, region)| shard.owns(id, region))
            .map(|(id, region)| format!("{}/{region}", member(id)))
            .collect();
        assert!(!expected.is_empty() && expected.len() < all.len());
        assert_eq!(keys(&plan), expected, "shard {shard}");
        assert_eq!(plan.accounts.len(), 10, "every account is in the plan");
        seen.extend(keys(&plan));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), all.len(), "every target in exactly one shard");
}

#[tokio::test(start_paused = true)]
async fn a_sharded_base_account_is_placed_by_the_id_its_credentials_answer() {
    let world = world();
    let config = config("regions: [us-east-1, eu-west-1, ap-south-1, us-west-2]\n");
    let mut placed = Vec::new();
    for index in 0..2 {
        let shard = Shard::new(index, 2).unwrap();
        let plan = planner(&world, shard).plan(&config).await;
        let expected: Vec<String> = ["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"]
            .into_iter()
            .filter(|region| shard.owns(BASE_ID, region))
            .map(|region| format!("base/{region}"))
            .collect();
        assert_eq!(keys(&plan), expected);
        assert_eq!((plan.retry_soon, plan.incomplete), (false, None));
        placed.extend(expected);
    }
    assert_eq!(placed.len(), 4);
    assert_eq!(lock(&world).caller_calls, 2, "once per planner");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_base_account_id_makes_a_sharded_plan_incomplete_and_retried_soon() {
    let world = world();
    lock(&world).caller = Answer::Now(Err(denied(Api::GetCallerIdentity)));
    let config = config(
        "regions: [us-east-1]\naccounts:\n  - name: base\n  - role_arn: arn:aws:iam::222222222222:role/R\n",
    );
    let shard = Shard::new(0, 2).unwrap();
    let planner = planner(&world, shard);
    let plan = planner.plan(&config).await;
    assert!(plan.retry_soon);
    assert_eq!(
        plan.incomplete.as_deref(),
        Some(
            "the base credentials' account id is unknown: \
             GetCallerIdentity failed: AccessDenied: not authorized"
        )
    );
    // The base account's targets wait for its id; the role's are placed by theirs.
    let role_target = "arn:aws:iam::222222222222:role/R/us-east-1".to_string();
    let expected: Vec<String> = shard
        .owns("222222222222", "us-east-1")
        .then_some(role_target)
        .into_iter()
        .collect();
    assert_eq!(keys(&plan), expected);
    assert_eq!(Planner::next_plan_in(&config, &plan), Some(RETRY_SOON));

    // A hung call is cut by collection.timeout.
    lock(&world).caller = Answer::Hangs;
    let start = Instant::now();
    let hung = planner.plan(&config).await;
    assert_eq!(start.elapsed(), config.collection.timeout);
    assert_eq!(
        hung.incomplete.as_deref(),
        Some(
            "the base credentials' account id is unknown: \
             GetCallerIdentity failed: timeout: no answer within collection.timeout"
        )
    );

    // Once it answers, the plan is complete and the id is not asked for again.
    lock(&world).caller = Answer::Now(Ok(BASE_ID.to_string()));
    let complete = planner.plan(&config).await;
    assert_eq!((complete.retry_soon, complete.incomplete), (false, None));
    assert_eq!(
        complete.specs.iter().any(|s| &*s.key.account == "base"),
        shard.owns(BASE_ID, "us-east-1")
    );
    planner.plan(&config).await;
    assert_eq!(lock(&world).caller_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn without_sharding_or_discovery_the_base_account_id_is_never_asked_for() {
    let world = world();
    lock(&world).caller = Answer::Now(Err(denied(Api::GetCallerIdentity)));
    let planner = planner(&world, Shard::default());
    let plan = planner
        .plan(&config("regions: [us-east-1, eu-west-1]\n"))
        .await;
    assert_eq!(keys(&plan), ["base/us-east-1", "base/eu-west-1"]);
    assert_eq!((plan.retry_soon, plan.incomplete), (false, None));
    assert_eq!(lock(&world).caller_calls, 0);
}

fn plan_with(retry_soon: bool) -> Plan {
    Plan {
        accounts: Vec::new(),
        specs: Vec::new(),
        retry_soon,
        incomplete: None,
    }
}

#[test]
fn next_plan_in_follows_discovery_regions_all_and_retries() {
    let fixed = config("regions: [us-east-1]\n");
    assert_eq!(Planner::next_plan_in(&fixed, &plan_with(false)), None);
    assert_eq!(
        Planner::next_plan_in(&fixed, &plan_with(true)),
        Some(Duration::from_secs(60))
    );

    let all = config("regions: all\n");
    assert_eq!(
        Planner::next_plan_in(&all, &plan_with(false)),
        Some(Duration::from_secs(3600))
    );
    let one_all = config(
        "regions: [us-east-1]\naccounts:\n  - name: a\n  - role_arn: arn:aws:iam::222222222222:role/R\n    regions: all\n",
    );
    assert_eq!(
        Planner::next_plan_in(&one_all, &plan_with(false)),
        Some(Duration::from_secs(3600))
    );

    let ten_minutes = discovery_config("[us-east-1]", "    interval: 10m\n");
    assert_eq!(
        Planner::next_plan_in(&ten_minutes, &plan_with(false)),
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        Planner::next_plan_in(&ten_minutes, &plan_with(true)),
        Some(Duration::from_secs(60))
    );
    // A retry never waits longer than the interval itself.
    let thirty_seconds = discovery_config("[us-east-1]", "    interval: 30s\n");
    assert_eq!(
        Planner::next_plan_in(&thirty_seconds, &plan_with(true)),
        Some(Duration::from_secs(30))
    );
}

#[test]
fn describe_regions_is_asked_in_the_first_configured_region_else_the_home_region() {
    let config = config(
        "accounts:\n  - regions: [ap-south-1, us-east-1]\n  - role_arn: arn:aws:iam::222222222222:role/R\n    regions: all\n",
    );
    assert_eq!(
        regions_region(&config.accounts[0], "eu-central-1"),
        "ap-south-1"
    );
    let mut none = config.accounts[1].clone();
    none.regions.clear();
    assert_eq!(regions_region(&none, "eu-central-1"), "eu-central-1");
}
