//! Organisation scale through the real `aws-sdk-organizations` (awsJson1_1) and `aws-sdk-ec2`
//! (DescribeRegions) clients against the simulator: account discovery by OU, state, exclusion and
//! tags, a failed discovery that keeps the last good set, `regions: all` with per-account opt-in
//! and its fallback, and three shards that split an organization exactly.

use std::collections::BTreeSet;

use fast_launch_exporter::domain::shard::Shard;
use fast_launch_exporter::sim::{Fault, SimOrganization, Simulator, DEFAULT_REGIONS};

use crate::harness::*;

const MEMBER_ROLE: &str = "arn:aws:iam::{account_id}:role/FastLaunchReader";

/// (aws_account_id, aws_region) of every target the exporter reports on.
fn targets(text: &str) -> BTreeSet<(String, String)> {
    find(text, "fast_launch_exporter_collection_success", &[])
        .into_iter()
        .map(|s| {
            let get = |name: &str| {
                s.labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("aws_account_id"), get("aws_region"))
        })
        .collect()
}

fn accounts(text: &str) -> BTreeSet<String> {
    targets(text).into_iter().map(|(a, _)| a).collect()
}

fn organization() -> SimOrganization {
    let mut org = SimOrganization::new(BASE_ACCOUNT);
    org.page_size = 2;
    org.add_unit("ou-a1b2-aaaaaaaa", "r-a1b2");
    org.add_unit("ou-a1b2-bbbbbbbb", "ou-a1b2-aaaaaaaa");
    org.add_unit("ou-a1b2-cccccccc", "r-a1b2");
    for (id, name, unit, state) in [
        ("222222222222", "prod", "ou-a1b2-aaaaaaaa", "ACTIVE"),
        ("333333333333", "staging", "ou-a1b2-bbbbbbbb", "ACTIVE"),
        ("444444444444", "closing", "ou-a1b2-bbbbbbbb", "SUSPENDED"),
        ("555555555555", "other-ou", "ou-a1b2-cccccccc", "ACTIVE"),
        ("666666666666", "untagged", "ou-a1b2-aaaaaaaa", "ACTIVE"),
        ("777777777777", "excluded", "ou-a1b2-aaaaaaaa", "ACTIVE"),
    ] {
        org.add_account(id, name, unit, state);
        if id != "666666666666" {
            org.tag(id, "fast-launch", "enabled");
            org.tag(id, "team", &format!("team-{name}"));
            org.tag(id, "cost-center", "cc-7");
        }
    }
    org
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_collects_what_the_organization_says_and_keeps_the_last_set_when_it_fails() {
    let sim = simulator().await;
    sim.world().organization = Some(organization());
    for account in ["222222222222", "333333333333", "888888888888"] {
        sim.world()
            .set_images(account, "us-east-1", vec![image(1, "enabled")]);
    }
    let yaml = format!(
        "collection: {{interval: 2s}}\nregions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n    organizational_units: [ou-a1b2-aaaaaaaa]\n    exclude_accounts: [\"777777777777\"]\n    tags: {{fast-launch: enabled}}\n    labels_from_tags: [team, cost-center]\n    interval: 2s\naccounts:\n  - name: prod-explicit\n    role_arn: arn:aws:iam::222222222222:role/Explicit\n    labels: {{owner: me}}\n"
    );
    let exporter = Exporter::start(&sim.url(), &yaml, &[]).await;
    exporter.wait_until_ready().await;
    let text = exporter
        .wait_for_metrics("the discovered accounts collected", |t| {
            accounts(t) == BTreeSet::from(["222222222222".into(), "333333333333".into()])
                && value(
                    t,
                    "fast_launch_exporter_collection_success",
                    &[("aws_account_id", "333333333333")],
                ) == Some(1.0)
        })
        .await;
    // The OU's accounts, recursively; not SUSPENDED, not excluded, not untagged, not in another
    // OU; and the base credentials' own (management) account only if discovery finds it.
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_discovered_accounts",
            &[("source", "organizations")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_discovery_success",
            &[("source", "organizations")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "fast_launch_exporter_discovery_last_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.7e9
    );
    let info = find(
        &text,
        "fast_launch_exporter_account_info",
        &[("aws_account_id", "333333333333")],
    );
    assert_eq!(info.len(), 1, "{text}");
    let labels = &info[0].labels;
    for expected in [
        ("account_name", "staging"),
        ("team", "team-staging"),
        ("cost_center", "cc-7"),
    ] {
        assert!(
            labels
                .iter()
                .any(|(k, v)| k == expected.0 && v == expected.1),
            "{expected:?} in {labels:?}"
        );
    }
    let explicit = find(
        &text,
        "fast_launch_exporter_account_info",
        &[("aws_account_id", "222222222222")],
    );
    assert_eq!(explicit.len(), 1, "{text}");
    assert!(explicit[0]
        .labels
        .iter()
        .any(|(k, v)| k == "account_name" && v == "prod-explicit"));
    assert!(explicit[0]
        .labels
        .iter()
        .any(|(k, v)| k == "owner" && v == "me"));
    // Paged to the end (two per page), counted under the organization's caller.
    assert!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "ListAccountsForParent")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "ListTagsForResource")]
        )
        .unwrap()
            >= 4.0
    );
    let roles: BTreeSet<String> = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .filter_map(|r| r.param("RoleArn").map(str::to_string))
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            // The explicit entry for the same account wins over the discovered one.
            "arn:aws:iam::222222222222:role/Explicit".to_string(),
            "arn:aws:iam::333333333333:role/FastLaunchReader".to_string()
        ])
    );

    // Organizations denies: the last good set stays, and says so.
    sim.world().add_fault(Fault::error(
        "ListAccountsForParent",
        "AccessDeniedException",
        400,
    ));
    exporter
        .wait_for_metrics("discovery failing", |t| {
            value(
                t,
                "fast_launch_exporter_discovery_success",
                &[("source", "organizations")],
            ) == Some(0.0)
        })
        .await;
    // A second failed round too: the set was kept, not merely not yet replaced.
    let text = exporter
        .wait_for_metrics("two failed rounds", |t| {
            value(
                t,
                "fast_launch_exporter_aws_errors_total",
                &[
                    ("api", "ListAccountsForParent"),
                    ("error_code", "AccessDeniedException"),
                ],
            )
            .is_some_and(|n| n >= 2.0)
        })
        .await;
    assert_eq!(accounts(&text).len(), 2, "{text}");
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("aws_account_id", "222222222222"), ("state", "enabled")]
        ),
        Some(1.0)
    );
    assert!(value(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[
            ("api", "ListAccountsForParent"),
            ("error_code", "AccessDeniedException")
        ]
    )
    .is_some());
    assert!(exporter
        .logs()
        .contains("the last good set of accounts stays"));

    // Healed: an account that joins starts, an account that is suspended stops.
    {
        let mut world = sim.world();
        world.clear_faults();
        let org = world.organization.as_mut().unwrap();
        org.add_account("888888888888", "new", "ou-a1b2-bbbbbbbb", "ACTIVE");
        org.tag("888888888888", "fast-launch", "enabled");
        org.accounts
            .iter_mut()
            .find(|a| a.id == "333333333333")
            .unwrap()
            .state = "SUSPENDED".into();
    }
    exporter
        .wait_for_metrics("the new set", |t| {
            accounts(t) == BTreeSet::from(["222222222222".into(), "888888888888".into()])
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_all_lists_each_accounts_enabled_regions_and_falls_back_when_it_cannot() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.opt_in(ROLE_ACCOUNT, "af-south-1");
        world.set_images(ROLE_ACCOUNT, "af-south-1", vec![image(1, "enabled")]);
        world.add_fault(
            Fault::error("DescribeRegions", "UnauthorizedOperation", 403)
                .in_account("333333333333"),
        );
    }
    let yaml = format!(
        "collection: {{interval: 1h}}\nregions: all\naccounts:\n  - name: base\n  - name: prod\n    role_arn: {ROLE_ARN}\n  - name: denied\n    role_arn: arn:aws:iam::333333333333:role/FastLaunchReader\n"
    );
    let exporter = Exporter::start(&sim.url(), &yaml, &[]).await;
    exporter.wait_until_ready().await;
    let text = exporter.metrics().await;
    let all = targets(&text);
    let of = |account: &str| -> BTreeSet<String> {
        all.iter()
            .filter(|(a, _)| a == account)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let defaults: BTreeSet<String> = DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        of(BASE_ACCOUNT),
        defaults,
        "every region enabled for the account"
    );
    let mut opted = defaults.clone();
    opted.insert("af-south-1".into());
    assert_eq!(of(ROLE_ACCOUNT), opted, "opt-in differs per account");
    assert_eq!(
        of("333333333333"),
        BTreeSet::from(["us-east-1".to_string()]),
        "no list: the environment's region"
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("aws_region", "af-south-1"), ("state", "enabled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("aws_account_id", ROLE_ACCOUNT), ("api", "DescribeRegions")]
        ),
        Some(1.0)
    );
    assert!(exporter
        .logs()
        .contains("cannot list the enabled regions; collecting the fallback regions"));
    // base: every default region; prod: those and its opt-in region; denied: the fallback.
    assert_eq!(
        value(&text, "fast_launch_exporter_targets", &[]),
        Some((2 * DEFAULT_REGIONS.len() + 1 + 1) as f64)
    );
    // DescribeRegions and the account's targets in every region share the role's credentials:
    // each role is assumed once, and every AssumeRole sent is counted in the metrics.
    let assumed: Vec<String> = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .filter_map(|r| r.param("RoleArn").map(str::to_string))
        .collect();
    assert_eq!(assumed.len(), 2, "{assumed:?}");
    assert_eq!(
        assumed.iter().collect::<BTreeSet<_>>().len(),
        2,
        "{assumed:?}"
    );
    let counted: f64 = find(
        &text,
        "fast_launch_exporter_aws_requests_total",
        &[("api", "AssumeRole")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert_eq!(counted, 2.0, "{text}");
}

/// Starts one exporter per shard, each against its own copy of the same world.
async fn shard(index: u32, total: u32, yaml: &str) -> (Simulator, Exporter) {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        let mut org = SimOrganization::new(BASE_ACCOUNT);
        for n in 0..20u64 {
            let id = format!("{}", 200_000_000_000 + n);
            org.add_account(&id, &format!("account-{n}"), "r-a1b2", "ACTIVE");
        }
        world.organization = Some(org);
    }
    let args = [
        "--shard.index".to_string(),
        index.to_string(),
        "--shard.total".to_string(),
        total.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&sim.url(), yaml, &args).await;
    (sim, exporter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_split_the_organization_exactly_and_assume_only_their_own_roles() {
    let yaml = format!(
        "collection: {{interval: 1h}}\nregions: [us-east-1, eu-west-1, ap-southeast-2]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n"
    );
    let mut union: BTreeSet<(String, String)> = BTreeSet::new();
    let mut total = 0;
    for index in 0..3 {
        let (sim, exporter) = shard(index, 3, &yaml).await;
        exporter.wait_until_ready().await;
        let text = exporter.metrics().await;
        assert_eq!(
            value(&text, "fast_launch_exporter_shard_index", &[]),
            Some(f64::from(index))
        );
        assert_eq!(value(&text, "fast_launch_exporter_shards", &[]), Some(3.0));
        let own = targets(&text);
        assert_eq!(
            value(&text, "fast_launch_exporter_targets", &[]),
            Some(own.len() as f64)
        );
        for (account, region) in &own {
            assert_eq!(
                fast_launch_exporter::domain::shard::Shard::of(account, region, 3),
                index,
                "{account}/{region}"
            );
        }
        // Roles are assumed only in accounts with a target of this shard; targets are collected
        // only here.
        let own_accounts: BTreeSet<&String> = own.iter().map(|(a, _)| a).collect();
        let world = sim.world();
        for request in world.received() {
            if request.action == "AssumeRole" {
                let arn = request.param("RoleArn").unwrap_or_default();
                assert!(
                    own_accounts.iter().any(|a| arn.contains(a.as_str())),
                    "{arn}"
                );
            }
            if request.action == "DescribeFastLaunchImages" {
                assert!(own.contains(&(request.account.clone(), request.region.clone())));
            }
        }
        total += own.len();
        union.extend(own);
    }
    // 21 accounts (20 members and the management account) × 3 regions, each exactly once.
    assert_eq!(union.len(), 63);
    assert_eq!(total, 63, "no target in two shards");
}

fn run(sim_url: &str, args: &[&str], yaml: &str) -> (Option<i32>, String) {
    let file = config_file(yaml);
    let output = exporter_command(sim_url)
        .args(args)
        .arg("--config.file")
        .arg(file.path())
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_lists_the_discovered_targets_and_check_permissions_checks_discovery() {
    let sim = simulator().await;
    sim.world().organization = Some(organization());
    sim.world().add_fault(
        Fault::error("DescribeRegions", "UnauthorizedOperation", 403).in_account("333333333333"),
    );
    let yaml = format!(
        "regions: all\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n    organizational_units: [ou-a1b2-bbbbbbbb]\n"
    );
    let url = sim.url();
    let (code, out) = {
        let (url, yaml) = (url.clone(), yaml.clone());
        tokio::task::spawn_blocking(move || run(&url, &["check-config"], &yaml))
            .await
            .unwrap()
    };
    assert_eq!(code, Some(0), "{out}");
    // ou-b holds 333 (active; DescribeRegions denied: the environment's region) and 444
    // (suspended).
    assert!(out.contains("333333333333 (staging)  us-east-1"), "{out}");
    assert!(!out.contains("444444444444"), "{out}");
    assert!(out.contains("1 target;"), "{out}");

    let (code, out) = tokio::task::spawn_blocking(move || run(&url, &["check-permissions"], &yaml))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line: {out}"))
            .to_string()
    };
    assert!(line("organizations").contains("allowed"), "{out}");
    assert!(
        line("all (DescribeRegions)").contains("denied")
            && line("all (DescribeRegions)").contains("DescribeRegions: UnauthorizedOperation"),
        "{out}"
    );
    assert!(
        line("333333333333 (staging)  us-east-1").contains("allowed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_discovers_its_organization_in_every_enabled_region() {
    let exporter = Exporter::demo(&[
        "--demo.organization",
        "--demo.accounts",
        "5",
        "--demo.regions",
        "2",
        "--demo.cloudwatch",
        "false",
    ])
    .await;
    exporter.wait_until_ready().await;
    // Five accounts, none opted in to a region: each in every default region.
    let expected = 5 * DEFAULT_REGIONS.len();
    let text = exporter
        .wait_for_metrics("every discovered target collected", |t| {
            value(t, "fast_launch_exporter_targets", &[]) == Some(expected as f64)
                && find(t, "fast_launch_exporter_collection_success", &[]).len() == expected
        })
        .await;
    // Five tagged active accounts; the suspended, closing and untagged ones are left out.
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_discovered_accounts",
            &[("source", "organizations")]
        ),
        Some(5.0)
    );
    assert_eq!(
        find(&text, "fast_launch_exporter_account_info", &[]).len(),
        5
    );
    assert!(!find(
        &text,
        "fast_launch_exporter_account_info",
        &[("team", "data")]
    )
    .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_organization_is_listed_once() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.organization = Some(organization());
        world.set_images("222222222222", "us-east-1", vec![image(1, "enabled")]);
        world.add_fault(Fault::error(
            "ListAccounts",
            "TooManyRequestsException",
            400,
        ));
    }
    let yaml = format!(
        "collection: {{interval: 1h}}\nregions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n    interval: 1s\n"
    );
    let exporter = Exporter::start(&sim.url(), &yaml, &[]).await;
    exporter
        .wait_for_metrics("discovery failing twice", |t| {
            value(t, "fast_launch_exporter_discovery_success", &[]) == Some(0.0)
                && value(
                    t,
                    "fast_launch_exporter_aws_errors_total",
                    &[
                        ("api", "ListAccounts"),
                        ("error_code", "TooManyRequestsException"),
                    ],
                )
                .is_some_and(|n| n >= 2.0)
        })
        .await;
    assert_eq!(
        exporter.get("/-/ready").await.status,
        503,
        "nothing known yet"
    );
    sim.world().clear_faults();
    exporter.wait_until_ready().await;
    let text = exporter.metrics().await;
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_collection_success",
            &[("aws_account_id", "222222222222")]
        ),
        Some(1.0),
        "ready once the listed accounts were collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_on_one_queue_each_apply_their_own_events_and_hand_back_the_others() {
    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/fast-launch-events";
    const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
    let sim = simulator().await;
    sim.world().create_queue(QUEUE);
    // Four accounts, chosen so that each shard owns at least two of the eight targets: the
    // shard that receives the events (all eight in one ReceiveMessage, below) then always holds
    // some of the other's.
    let owned_by = |accounts: &[String], shard: u32| -> usize {
        accounts
            .iter()
            .flat_map(|a| REGIONS.iter().map(move |r| (a, *r)))
            .filter(|(a, r)| Shard::of(a, r, 2) == shard)
            .count()
    };
    let accounts: Vec<String> = (0..)
        .map(|start: u64| -> Vec<String> {
            (start..start + 4)
                .map(|n| format!("{}", 300_000_000_000 + n))
                .collect()
        })
        .find(|accounts| owned_by(accounts, 0) >= 2 && owned_by(accounts, 1) >= 2)
        .unwrap();
    let mut yaml = format!(
        "collection: {{interval: 1h}}\nregions: [us-east-1, eu-west-1]\nevents:\n  queue_url: {QUEUE}\n  wait_time: 1s\n  debounce: 100ms\naccounts:\n"
    );
    for account in &accounts {
        yaml.push_str(&format!(
            "  - role_arn: arn:aws:iam::{account}:role/FastLaunchReader\n"
        ));
    }
    let shards = [
        Exporter::start(
            &sim.url(),
            &yaml,
            &["--shard.index", "0", "--shard.total", "2"],
        )
        .await,
        Exporter::start(
            &sim.url(),
            &yaml,
            &["--shard.index", "1", "--shard.total", "2"],
        )
        .await,
    ];
    for exporter in &shards {
        exporter.wait_until_ready().await;
    }
    let describes = |account: &str, region: &str| {
        sim.world()
            .received()
            .iter()
            .filter(|r| {
                r.action == "DescribeFastLaunchImages" && r.account == account && r.region == region
            })
            .count()
    };
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    for account in &accounts {
        for region in REGIONS {
            assert_eq!(
                describes(account, region),
                1,
                "one shard collected {account}/{region}"
            );
        }
    }
    // All eight at once (one lock of the world): the first ReceiveMessage, of whichever shard,
    // takes them all, its own and the other's.
    {
        let mut world = sim.world();
        for account in &accounts {
            for region in REGIONS {
                world.send_message(
                    QUEUE,
                    &fast_launch_exporter::events::state_change_event(
                        account,
                        region,
                        "ami-0123456789abcdef0",
                        "enabling-failed",
                        &time,
                    ),
                );
            }
        }
    }
    // Every target collected again by the event, by its own shard, whichever shard received it.
    for account in &accounts {
        for region in REGIONS {
            wait_until(
                &format!("{account}/{region} collected by its event"),
                || describes(account, region) >= 2,
                || format!("{:?}", sim.world().queue_depth(QUEUE)),
            )
            .await;
        }
    }
    wait_until(
        "every event deleted",
        || sim.world().deleted_messages().len() == 8,
        || format!("{:?}", sim.world().deleted_messages()),
    )
    .await;
    for (index, exporter) in shards.iter().enumerate() {
        let text = exporter.metrics().await;
        let count = |result: &str| {
            value(
                &text,
                "fast_launch_exporter_events_received_total",
                &[("result", result)],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(
            count("applied"),
            owned_by(&accounts, index as u32) as f64,
            "shard {index} applies exactly the events of its own targets"
        );
        assert_eq!(
            count("ignored"),
            0.0,
            "shard {index}: handed back, not ignored"
        );
    }
    // The receiving shard handed the other's events back (visibility 0) for it to take.
    let handed_back = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "ChangeMessageVisibilityBatch")
        .count();
    assert!(handed_back >= 1, "no event was handed back");
    assert!(
        shards
            .iter()
            .any(|e| e.logs().contains("left on the queue for it")),
        "no shard received the other's events"
    );
    assert_eq!(sim.world().deleted_messages().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_permissions_reports_a_listing_that_fails_past_its_first_call() {
    let sim = simulator().await;
    sim.world().organization = Some(organization());
    sim.world().add_fault(Fault::error(
        "ListTagsForResource",
        "AccessDeniedException",
        400,
    ));
    let yaml = format!(
        "regions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n    tags: {{fast-launch: enabled}}\n"
    );
    let url = sim.url();
    let (code, out) = tokio::task::spawn_blocking(move || run(&url, &["check-permissions"], &yaml))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("discovery"))
        .unwrap_or_else(|| panic!("no discovery line: {out}"));
    assert!(
        line.contains("error") && line.contains("the organization has not been listed yet"),
        "{out}"
    );
}

/// `member_external_id` is sent as AssumeRole's `ExternalId` for every discovered account (and
/// only for them: an explicit account without one sends none), and never reaches the logs or
/// the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_external_id_reaches_assume_role_of_every_discovered_account() {
    const EXTERNAL_ID: &str = "member-ext-never-logged";
    const EXPLICIT: &str = "arn:aws:iam::555555555555:role/Explicit";
    let sim = simulator().await;
    sim.world().organization = Some(organization());
    let yaml = format!(
        "collection: {{interval: 1h}}\nregions: [us-east-1]\ndiscovery:\n  organizations:\n    member_role_arn: \"{MEMBER_ROLE}\"\n    member_external_id: {EXTERNAL_ID}\n    organizational_units: [ou-a1b2-aaaaaaaa]\n    exclude_accounts: [\"777777777777\"]\n    tags: {{fast-launch: enabled}}\naccounts:\n  - name: explicit\n    role_arn: {EXPLICIT}\n"
    );
    let exporter = Exporter::start(&sim.url(), &yaml, &[]).await;
    exporter.wait_until_ready().await;
    let text = exporter.metrics().await;
    assert_eq!(
        accounts(&text),
        BTreeSet::from([
            "222222222222".to_string(),
            "333333333333".to_string(),
            "555555555555".to_string()
        ]),
        "{text}"
    );
    let assumed: Vec<(String, Option<String>)> = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .map(|r| {
            (
                r.param("RoleArn").unwrap_or_default().to_string(),
                r.param("ExternalId").map(str::to_string),
            )
        })
        .collect();
    for account in ["222222222222", "333333333333"] {
        let role = format!("arn:aws:iam::{account}:role/FastLaunchReader");
        let sent: Vec<&Option<String>> = assumed
            .iter()
            .filter(|(arn, _)| *arn == role)
            .map(|(_, id)| id)
            .collect();
        assert!(!sent.is_empty(), "{role} not assumed: {assumed:?}");
        assert!(
            sent.iter().all(|id| id.as_deref() == Some(EXTERNAL_ID)),
            "{role}: {assumed:?}"
        );
    }
    assert!(
        assumed
            .iter()
            .any(|(arn, id)| arn == EXPLICIT && id.is_none()),
        "the explicit account has no external id: {assumed:?}"
    );
    for account in ["222222222222", "333333333333", "555555555555"] {
        assert_eq!(
            value(
                &text,
                "fast_launch_exporter_collection_success",
                &[("aws_account_id", account)]
            ),
            Some(1.0),
            "{account}"
        );
    }
    assert!(
        !exporter.logs().contains(EXTERNAL_ID),
        "the external id was logged"
    );
    assert!(
        !text.contains(EXTERNAL_ID),
        "the external id is in the metrics"
    );
}

/// `regions: all`: once an account's enabled regions are known, a DescribeRegions that fails
/// later (here on a reload, which plans again) keeps that list; the fallback region is only
/// for an account never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_all_keeps_its_last_region_list_after_a_failed_describe_regions() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.opt_in(ROLE_ACCOUNT, "af-south-1");
        world.set_images(ROLE_ACCOUNT, "af-south-1", vec![image(1, "enabled")]);
    }
    let yaml = format!(
        "collection: {{interval: 1h}}\nregions: all\naccounts:\n  - name: prod\n    role_arn: {ROLE_ARN}\n"
    );
    let exporter = Exporter::start(&sim.url(), &yaml, &["--web.enable-lifecycle"]).await;
    exporter.wait_until_ready().await;
    let mut listed: BTreeSet<(String, String)> = DEFAULT_REGIONS
        .iter()
        .map(|r| (ROLE_ACCOUNT.to_string(), r.to_string()))
        .collect();
    listed.insert((ROLE_ACCOUNT.to_string(), "af-south-1".to_string()));
    assert_eq!(targets(&exporter.metrics().await), listed);
    let describe_regions = || {
        sim.world()
            .received()
            .iter()
            .filter(|r| r.action == "DescribeRegions" && r.account == ROLE_ACCOUNT)
            .count()
    };
    assert_eq!(describe_regions(), 1);

    sim.world().add_fault(
        Fault::error("DescribeRegions", "UnauthorizedOperation", 403).in_account(ROLE_ACCOUNT),
    );
    let reloaded = request(
        &exporter.address,
        "POST",
        "/-/reload",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(describe_regions(), 2, "the reload listed the regions again");
    let text = exporter.metrics().await;
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("api", "DescribeRegions"),
                ("error_code", "UnauthorizedOperation")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(targets(&text), listed, "the last list stays");
    assert_eq!(
        value(&text, "fast_launch_exporter_targets", &[]),
        Some(listed.len() as f64)
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("aws_region", "af-south-1"), ("state", "enabled")]
        ),
        Some(1.0)
    );
    exporter
        .wait_for_log("cannot list the enabled regions; the last list stays")
        .await;
}
