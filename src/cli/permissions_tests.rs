//! `check_permissions` against fake probes on a paused tokio clock: verdicts, timeouts that name
//! the API on the wire, the order of the checks, and the JSON a script reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::domain::calls::AttemptSink;
use crate::domain::model::{FastLaunchImage, MetricSeries, MetricWindow, Query, RoleSpec};
use crate::domain::ports::{
    AccountPages, AccountState, BoxFuture, Fetch, OrgAccount, Organization, Probe, Queue,
    RegionList, Unsupported,
};
use crate::domain::sync::lock;

const BASE_ID: &str = "111111111111";
const ROLE: &str = "arn:aws:iam::222222222222:role/Reader";
const HOME: &str = "eu-central-1";

/// How a fake call answers.
#[derive(Debug, Clone)]
enum Answer {
    Allow,
    /// Refused with this code (the verdict depends on it).
    Refuse(ErrorCode),
    /// An attempt of this API goes on the wire and never comes back.
    Hang(Api),
    /// Never answers, with no attempt on the wire.
    Stall,
    /// Allowed after this long.
    Slow(Duration),
}

impl Answer {
    async fn give(self, api: Api, sink: &dyn AttemptSink) -> Result<(), ApiError> {
        match self {
            Answer::Hang(on_wire) => {
                sink.attempt_sent(on_wire);
                std::future::pending().await
            }
            Answer::Stall => std::future::pending().await,
            Answer::Slow(delay) => {
                sink.attempt_sent(api);
                tokio::time::sleep(delay).await;
                sink.attempt_finished(None);
                Ok(())
            }
            Answer::Allow => {
                sink.attempt_sent(api);
                sink.attempt_finished(None);
                Ok(())
            }
            Answer::Refuse(code) => {
                sink.attempt_sent(api);
                sink.attempt_finished(Some(&code));
                Err(ApiError::new(api, code, format!("{api:?} refused")))
            }
        }
    }
}

/// What the fake AWS answers, by target key (`<account key>/<region>`) or account key, and
/// what was asked of it.
#[derive(Default)]
struct World {
    describe: BTreeMap<String, Answer>,
    cloudwatch: BTreeMap<String, Answer>,
    caller: Option<Answer>,
    organization: Option<Answer>,
    /// The accounts Organizations lists; None: the listing fails.
    accounts: Option<Vec<OrgAccount>>,
    /// DescribeRegions by account key: how it answers, then the regions it lists.
    regions: BTreeMap<String, (Answer, Vec<String>)>,
    /// Every call, as `API target`, in the order they were made.
    log: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn note(world: &Shared, api: Api, what: &str) {
    lock(world).log.push(format!("{} {what}", api.as_str()));
}

struct FakeFetch {
    world: Shared,
    key: String,
    sink: Arc<dyn AttemptSink>,
}

impl Fetch for FakeFetch {
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move {
            note(&self.world, Api::GetCallerIdentity, &self.key);
            let answer = lock(&self.world).caller.clone().unwrap_or(Answer::Allow);
            answer
                .give(Api::GetCallerIdentity, self.sink.as_ref())
                .await
                .map(|()| BASE_ID.to_string())
        })
    }

    fn fast_launch_images<'a>(
        &'a self,
        _query: &'a Query,
        _page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>> {
        panic!("check-permissions never collects")
    }

    fn launch_metrics<'a>(
        &'a self,
        _image_ids: &'a [String],
        _window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>> {
        panic!("check-permissions never collects")
    }
}

struct FakeProbe {
    world: Shared,
    key: String,
    sink: Arc<dyn AttemptSink>,
}

impl FakeProbe {
    async fn check(
        &self,
        api: Api,
        answers: fn(&World) -> &BTreeMap<String, Answer>,
    ) -> Result<(), ApiError> {
        note(&self.world, api, &self.key);
        let answer = answers(&lock(&self.world))
            .get(&self.key)
            .cloned()
            .unwrap_or(Answer::Allow);
        answer.give(api, self.sink.as_ref()).await
    }
}

impl Probe for FakeProbe {
    fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(self.check(Api::DescribeFastLaunchImages, |w| &w.describe))
    }

    fn check_cloudwatch_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(self.check(Api::ListMetrics, |w| &w.cloudwatch))
    }
}

struct FakeOrganization {
    world: Shared,
    sink: Arc<dyn AttemptSink>,
}

impl Organization for FakeOrganization {
    fn accounts<'a>(
        &'a self,
        _parents: &'a [String],
        pages: AccountPages,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            note(&self.world, Api::ListAccounts, "organization");
            let accounts = lock(&self.world).accounts.clone();
            match accounts {
                Some(accounts) => {
                    let _ = pages.send(accounts);
                    Ok(())
                }
                None => Err(ApiError::new(
                    Api::ListAccounts,
                    ErrorCode::AccessDeniedException,
                    "listing refused",
                )),
            }
        })
    }

    fn tags<'a>(
        &'a self,
        _account_id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, ApiError>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }

    fn check_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            note(&self.world, Api::DescribeOrganization, "organization");
            let answer = lock(&self.world)
                .organization
                .clone()
                .unwrap_or(Answer::Allow);
            answer
                .give(Api::DescribeOrganization, self.sink.as_ref())
                .await
        })
    }
}

struct FakeRegions {
    world: Shared,
    key: String,
    sink: Arc<dyn AttemptSink>,
}

impl RegionList for FakeRegions {
    fn enabled_regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            note(&self.world, Api::DescribeRegions, &self.key);
            let (answer, regions) = lock(&self.world)
                .regions
                .get(&self.key)
                .cloned()
                .unwrap_or((Answer::Allow, vec!["us-west-2".to_string()]));
            answer
                .give(Api::DescribeRegions, self.sink.as_ref())
                .await
                .map(|()| regions)
        })
    }
}

struct FakeConnect(Shared);

impl Connect for FakeConnect {
    fn connect(
        &self,
        spec: &TargetSpec,
        _max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch> {
        Arc::new(FakeFetch {
            world: self.0.clone(),
            key: spec.key.to_string(),
            sink,
        })
    }

    fn probe(
        &self,
        spec: &TargetSpec,
        _max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Probe> {
        Arc::new(FakeProbe {
            world: self.0.clone(),
            key: spec.key.to_string(),
            sink,
        })
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
        Some(HOME.to_string())
    }

    fn connect_organization(
        &self,
        _role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization> {
        Arc::new(FakeOrganization {
            world: self.0.clone(),
            sink,
        })
    }

    fn connect_regions(
        &self,
        role: Option<&RoleSpec>,
        _region: &str,
        _max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList> {
        Arc::new(FakeRegions {
            world: self.0.clone(),
            key: role.map_or("base".to_string(), |r| r.arn.clone()),
            sink,
        })
    }
}

fn world() -> Shared {
    Arc::new(Mutex::new(World::default()))
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml)
        .unwrap()
        .with_default_region(Some("eu-west-1"))
        .unwrap()
}

async fn check(world: &Shared, config: &Config) -> Vec<PermissionCheck> {
    check_permissions(config, Shard::default(), FakeConnect(world.clone())).await
}

fn refused(code: ErrorCode) -> Answer {
    Answer::Refuse(code)
}

/// (account, region, result, error code) of each check, for short assertions.
fn summary(checks: &[PermissionCheck]) -> Vec<(String, String, Verdict, String)> {
    checks
        .iter()
        .map(|c| {
            let account = if c.account_name.is_empty() {
                c.account_id.clone()
            } else {
                c.account_name.clone()
            };
            (account, c.region.clone(), c.result, c.error_code.clone())
        })
        .collect()
}

fn row(
    account: &str,
    region: &str,
    result: Verdict,
    code: &str,
) -> (String, String, Verdict, String) {
    (account.into(), region.into(), result, code.into())
}

#[tokio::test(start_paused = true)]
async fn each_target_is_allowed_denied_or_an_error_as_its_probe_answers() {
    let world = world();
    {
        let mut world = lock(&world);
        world.describe.insert(
            format!("{ROLE}/eu-west-1"),
            refused(ErrorCode::UnauthorizedOperation),
        );
        world.describe.insert(
            format!("{ROLE}/ap-south-1"),
            refused(ErrorCode::RequestLimitExceeded),
        );
        world.describe.insert(
            format!("{ROLE}/us-west-2"),
            refused(ErrorCode::Unrecognized(Some("OddError".into()))),
        );
    }
    let config = config(&format!(
        "accounts:\n  - name: prod\n    role_arn: {ROLE}\n    regions: [us-east-1, eu-west-1, ap-south-1, us-west-2]\n"
    ));
    let checks = check(&world, &config).await;
    let expected = |region: &str, result: Verdict, code: &str, message: &str| PermissionCheck {
        account_id: "222222222222".into(),
        account_name: "prod".into(),
        region: region.into(),
        role_arn: ROLE.into(),
        result,
        error_code: code.into(),
        message: message.into(),
    };
    assert_eq!(
        checks,
        [
            expected("us-east-1", Verdict::Allowed, "", ""),
            expected(
                "eu-west-1",
                Verdict::Denied,
                "DescribeFastLaunchImages: UnauthorizedOperation",
                "DescribeFastLaunchImages refused"
            ),
            expected(
                "ap-south-1",
                Verdict::Error,
                "DescribeFastLaunchImages: RequestLimitExceeded",
                "DescribeFastLaunchImages refused"
            ),
            expected(
                "us-west-2",
                Verdict::Error,
                "DescribeFastLaunchImages: OddError",
                "DescribeFastLaunchImages refused"
            ),
        ]
    );
    assert_eq!(
        checks
            .iter()
            .map(PermissionCheck::allowed)
            .collect::<Vec<_>>(),
        [true, false, false, false]
    );
}

#[tokio::test(start_paused = true)]
async fn the_base_account_is_named_by_its_caller_identity_or_denied_there() {
    let world = world();
    let config = config("regions: [us-east-1]\n");
    let checks = check(&world, &config).await;
    assert_eq!(
        checks,
        [PermissionCheck {
            account_id: BASE_ID.into(),
            account_name: String::new(),
            region: "us-east-1".into(),
            role_arn: String::new(),
            result: Verdict::Allowed,
            error_code: String::new(),
            message: String::new(),
        }]
    );

    let world = self::world();
    lock(&world).caller = Some(refused(ErrorCode::AccessDenied));
    let checks = check(&world, &config).await;
    assert_eq!(
        summary(&checks),
        [row(
            "",
            "us-east-1",
            Verdict::Denied,
            "GetCallerIdentity: AccessDenied"
        )]
    );
    assert_eq!(
        lock(&world).log,
        ["GetCallerIdentity base/us-east-1"],
        "DescribeFastLaunchImages is not tried after a failed GetCallerIdentity"
    );
}

#[tokio::test(start_paused = true)]
async fn cloudwatch_is_checked_only_where_it_is_on_and_after_describe() {
    let world = world();
    let denied = format!("{ROLE}/eu-west-1");
    {
        let mut world = lock(&world);
        world.cloudwatch.insert(
            format!("{ROLE}/us-east-1"),
            refused(ErrorCode::AccessDenied),
        );
        world
            .describe
            .insert(denied.clone(), refused(ErrorCode::UnauthorizedOperation));
    }
    let config = config(&format!(
        "regions: [ap-south-1]\naccounts:\n  - name: plain\n  - name: prod\n    role_arn: {ROLE}\n    regions: [us-east-1, eu-west-1]\n    cloudwatch: {{}}\n"
    ));
    let checks = check(&world, &config).await;
    assert_eq!(
        summary(&checks),
        [
            row("plain", "ap-south-1", Verdict::Allowed, ""),
            row(
                "prod",
                "us-east-1",
                Verdict::Denied,
                "ListMetrics: AccessDenied"
            ),
            row(
                "prod",
                "eu-west-1",
                Verdict::Denied,
                "DescribeFastLaunchImages: UnauthorizedOperation"
            ),
        ]
    );
    let log = lock(&world).log.clone();
    let mut probes: Vec<&String> = log
        .iter()
        .filter(|l| !l.starts_with("GetCallerIdentity"))
        .collect();
    probes.sort();
    assert_eq!(
        probes,
        [
            "DescribeFastLaunchImages arn:aws:iam::222222222222:role/Reader/eu-west-1",
            "DescribeFastLaunchImages arn:aws:iam::222222222222:role/Reader/us-east-1",
            "DescribeFastLaunchImages base/ap-south-1",
            "ListMetrics arn:aws:iam::222222222222:role/Reader/us-east-1",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_is_cut_by_collection_timeout_and_names_the_api_on_the_wire() {
    let world = world();
    {
        let mut world = lock(&world);
        world
            .describe
            .insert(format!("{ROLE}/us-east-1"), Answer::Hang(Api::AssumeRole));
        world
            .describe
            .insert(format!("{ROLE}/eu-west-1"), Answer::Stall);
        world.cloudwatch.insert(
            format!("{ROLE}/ap-south-1"),
            Answer::Hang(Api::GetMetricData),
        );
        world.organization = Some(Answer::Stall);
        world.accounts = Some(Vec::new());
        world.regions.insert(
            "arn:aws:iam::333333333333:role/R".into(),
            (Answer::Hang(Api::AssumeRole), vec!["us-east-1".into()]),
        );
    }
    let config = config(&format!(
        "collection: {{timeout: 5s}}\nregions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"arn:aws:iam::{{account_id}}:role/R\"\n    interval: 30s\naccounts:\n  - name: prod\n    role_arn: {ROLE}\n    regions: [us-east-1, eu-west-1, ap-south-1]\n    cloudwatch: {{}}\n  - name: all\n    role_arn: arn:aws:iam::333333333333:role/R\n    regions: all\n"
    ));
    let start = Instant::now();
    let checks = check(&world, &config).await;
    let message = "no answer within collection.timeout (5s)";
    let timeouts: Vec<(String, String, Verdict, String, String)> = checks
        .iter()
        .filter(|c| !c.allowed())
        .map(|c| {
            (
                c.account_name.clone(),
                c.region.clone(),
                c.result,
                c.error_code.clone(),
                c.message.clone(),
            )
        })
        .collect();
    let cut = |account: &str, region: &str, code: &str| {
        (
            account.to_string(),
            region.to_string(),
            Verdict::Error,
            code.to_string(),
            message.to_string(),
        )
    };
    assert_eq!(
        timeouts,
        [
            // Nothing on the wire: the check's own API.
            cut("organizations", HOME, "DescribeOrganization: timeout"),
            cut("all", "all (DescribeRegions)", "AssumeRole: timeout"),
            cut("prod", "us-east-1", "AssumeRole: timeout"),
            cut("prod", "eu-west-1", "DescribeFastLaunchImages: timeout"),
            cut("prod", "ap-south-1", "GetMetricData: timeout"),
        ]
    );
    // One after the other, each cut after 5 s: the organization check, the plan's
    // DescribeRegions, the region checks, the targets (side by side).
    assert_eq!(start.elapsed(), Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn checks_come_as_organization_regions_then_targets_in_plan_order() {
    let world = world();
    let other = "arn:aws:iam::555555555555:role/Reader";
    {
        let mut world = lock(&world);
        world.accounts = Some(vec![
            OrgAccount {
                id: "333333333333".into(),
                name: "three".into(),
                state: Some(AccountState::Active),
            },
            OrgAccount {
                id: "444444444444".into(),
                name: "four".into(),
                state: Some(AccountState::Active),
            },
        ]);
        // The first region check answers last.
        world.regions.insert(
            ROLE.into(),
            (
                Answer::Slow(Duration::from_secs(3)),
                vec!["ap-south-1".into(), "us-west-2".into()],
            ),
        );
        world.regions.insert(
            other.into(),
            (
                Answer::Slow(Duration::from_secs(1)),
                vec!["sa-east-1".into()],
            ),
        );
        // Earlier targets answer later.
        let slow = [
            ("base/us-east-1", 9),
            ("base/eu-west-1", 8),
            ("arn:aws:iam::222222222222:role/Reader/ap-south-1", 7),
            ("arn:aws:iam::222222222222:role/Reader/us-west-2", 6),
            ("arn:aws:iam::555555555555:role/Reader/sa-east-1", 5),
            ("arn:aws:iam::333333333333:role/R/us-east-1", 4),
            ("arn:aws:iam::333333333333:role/R/eu-west-1", 3),
            ("arn:aws:iam::444444444444:role/R/us-east-1", 2),
            ("arn:aws:iam::444444444444:role/R/eu-west-1", 1),
        ];
        for (key, secs) in slow {
            world
                .describe
                .insert(key.into(), Answer::Slow(Duration::from_secs(secs)));
        }
    }
    let config = config(&format!(
        "regions: [us-east-1, eu-west-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"arn:aws:iam::{{account_id}}:role/R\"\naccounts:\n  - name: base\n  - name: prod\n    role_arn: {ROLE}\n    regions: all\n  - name: other\n    role_arn: {other}\n    regions: all\n"
    ));
    let checks = check(&world, &config).await;
    let allowed = |account: &str, region: &str| row(account, region, Verdict::Allowed, "");
    assert_eq!(
        summary(&checks),
        [
            allowed("organizations", HOME),
            allowed("prod", "all (DescribeRegions)"),
            allowed("other", "all (DescribeRegions)"),
            allowed("base", "us-east-1"),
            allowed("base", "eu-west-1"),
            allowed("prod", "ap-south-1"),
            allowed("prod", "us-west-2"),
            allowed("other", "sa-east-1"),
            allowed("three", "us-east-1"),
            allowed("three", "eu-west-1"),
            allowed("four", "us-east-1"),
            allowed("four", "eu-west-1"),
        ]
    );
    assert_eq!(
        checks[3].account_id, BASE_ID,
        "the base account's id is asked for"
    );
    assert_eq!(checks[8].role_arn, "arn:aws:iam::333333333333:role/R");
}

#[tokio::test(start_paused = true)]
async fn an_incomplete_plan_is_an_error_row_between_the_organization_and_the_targets() {
    let world = world();
    lock(&world).organization = Some(refused(ErrorCode::AccessDeniedException));
    let config = config(&format!(
        "regions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"arn:aws:iam::{{account_id}}:role/R\"\naccounts:\n  - name: prod\n    role_arn: {ROLE}\n"
    ));
    let checks = check(&world, &config).await;
    assert_eq!(
        summary(&checks),
        [
            row(
                "organizations",
                HOME,
                Verdict::Denied,
                "DescribeOrganization: AccessDeniedException"
            ),
            row("discovery", HOME, Verdict::Error, "plan: incomplete"),
            row("prod", "us-east-1", Verdict::Allowed, ""),
        ]
    );
    assert_eq!(
        checks[1].message,
        "the organization has not been listed yet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shard_checks_only_its_own_targets() {
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
    ];
    let config = config(&format!(
        "accounts:\n  - role_arn: {ROLE}\n    regions: [{}]\n",
        regions.join(", ")
    ));
    for index in 0..2 {
        let shard = Shard::new(index, 2).unwrap();
        let checks = check_permissions(&config, shard, FakeConnect(world())).await;
        let checked: Vec<&str> = checks.iter().map(|c| c.region.as_str()).collect();
        let owned: Vec<&str> = regions
            .into_iter()
            .filter(|r| shard.owns("222222222222", r))
            .collect();
        assert!(!owned.is_empty() && owned.len() < regions.len());
        assert_eq!(checked, owned, "shard {shard}");
    }
}

#[test]
fn a_check_serializes_with_its_field_names_and_the_verdict_words() {
    let mut check = PermissionCheck {
        account_id: "222222222222".into(),
        account_name: "prod".into(),
        region: "us-east-1".into(),
        role_arn: ROLE.into(),
        result: Verdict::Allowed,
        error_code: String::new(),
        message: String::new(),
    };
    assert_eq!(
        serde_json::to_value(&check).unwrap(),
        serde_json::json!({
            "account_id": "222222222222",
            "account_name": "prod",
            "region": "us-east-1",
            "role_arn": ROLE,
            "result": "allowed",
            "error_code": "",
            "message": "",
        })
    );
    for (verdict, word) in [
        (Verdict::Allowed, "allowed"),
        (Verdict::Denied, "denied"),
        (Verdict::Error, "error"),
    ] {
        check.result = verdict;
        assert_eq!(serde_json::to_value(&check).unwrap()["result"], word);
        assert_eq!(verdict.as_str(), word, "the table says the same word");
    }
}

#[test]
fn the_table_shows_the_account_its_name_and_the_failure_on_one_line() {
    let checks = [
        PermissionCheck {
            account_id: "222222222222".into(),
            account_name: "prod".into(),
            region: "us-east-1".into(),
            role_arn: ROLE.into(),
            result: Verdict::Denied,
            error_code: "DescribeFastLaunchImages: UnauthorizedOperation".into(),
            message: "not\nallowed".into(),
        },
        PermissionCheck {
            account_id: BASE_ID.into(),
            account_name: String::new(),
            region: "eu-west-1".into(),
            role_arn: String::new(),
            result: Verdict::Allowed,
            error_code: String::new(),
            message: String::new(),
        },
    ];
    assert_eq!(
        table(&checks),
        "ACCOUNT              REGION     ROLE                                   RESULT   MESSAGE\n\
         222222222222 (prod)  us-east-1  arn:aws:iam::222222222222:role/Reader  denied   DescribeFastLaunchImages: UnauthorizedOperation: not allowed\n\
         111111111111         eu-west-1                                         allowed\n"
    );
}
