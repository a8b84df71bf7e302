//! Collection through the real SDK against the simulator: paging, accounts, regions, faults.

use std::time::Duration;

use fast_launch_exporter::domain::model::FastLaunchImage;
use fast_launch_exporter::sim::Fault;

use crate::harness::*;

const FAST: &str = "collection: {interval: 1s, timeout: 1s, page_size: 200}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_with_more_than_three_pages_exports_every_image() {
    let sim = simulator().await;
    let images: Vec<FastLaunchImage> = (1..=7).map(|n| image(n, "enabled")).collect();
    sim.world().set_images(BASE_ACCOUNT, "us-east-1", images);
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1m, page_size: 2}\nregions: [us-east-1]\nimage_ids: []\nfilters: [{name: state, values: [enabled, enabling-failed]}]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 7);
    for n in 1..=7 {
        let id = image_id(n);
        assert_eq!(
            value(
                &text,
                "aws_ec2_fast_launch_image_state",
                &[
                    ("image_id", &id),
                    ("state", "enabled"),
                    ("aws_region", "us-east-1"),
                    ("aws_account_id", BASE_ACCOUNT)
                ]
            ),
            Some(1.0)
        );
    }
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(7.0));

    let world = sim.world();
    let pages: Vec<_> = world
        .received()
        .iter()
        .filter(|r| r.action == "DescribeFastLaunchImages")
        .collect();
    assert_eq!(pages.len(), 4, "7 images in pages of 2");
    assert!(pages.iter().all(|p| p.param("MaxResults") == Some("2")));
    assert!(pages
        .iter()
        .all(|p| p.param("Filter.1.Name") == Some("state")
            && p.param("Filter.1.Value.1") == Some("enabled")
            && p.param("Filter.1.Value.2") == Some("enabling-failed")));
    // The first page is asked for without a token, each later one with the token the page
    // before handed out. Tokens are opaque (AWS's are not page numbers): only their presence
    // and that each is new is asserted, not their text.
    let tokens: Vec<Option<&str>> = pages.iter().map(|p| p.param("NextToken")).collect();
    assert_eq!(tokens[0], None, "{tokens:?}");
    assert!(
        tokens[1..].iter().all(|t| t.is_some_and(|t| !t.is_empty())),
        "{tokens:?}"
    );
    let distinct: std::collections::BTreeSet<&Option<&str>> = tokens.iter().collect();
    assert_eq!(
        distinct.len(),
        tokens.len(),
        "a token sent twice: {tokens:?}"
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "DescribeFastLaunchImages")]
        ),
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_one_by_assume_role_times_two_regions() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabling")]);
        world.set_images(ROLE_ACCOUNT, "us-east-1", vec![image(3, "enabling-failed")]);
        world.set_images(
            ROLE_ACCOUNT,
            "eu-west-1",
            vec![image(4, "disabling"), image(5, "enabled")],
        );
    }
    let config = format!(
        "{FAST}regions: [us-east-1, eu-west-1]\naccounts:\n  - name: tooling\n  - name: prod\n    role_arn: {ROLE_ARN}\n    external_id: ext-id-never-logged\n    session_name: fle-test\n    duration: 1h\n    labels: {{team: windows}}\n"
    );
    let exporter = Exporter::start(&sim.url(), &config, &[]).await;
    // Three collections of every target, so that cached credentials are visible.
    let text = exporter
        .wait_for_metrics("three collections per target", |t| {
            find(
                t,
                "fast_launch_exporter_aws_requests_total",
                &[("api", "DescribeFastLaunchImages")],
            )
            .iter()
            .filter(|s| s.value >= 3.0)
            .count()
                == 4
        })
        .await;
    for (account, region, n, state) in [
        (BASE_ACCOUNT, "us-east-1", 1, "enabled"),
        (BASE_ACCOUNT, "eu-west-1", 2, "enabling"),
        (ROLE_ACCOUNT, "us-east-1", 3, "enabling-failed"),
        (ROLE_ACCOUNT, "eu-west-1", 4, "disabling"),
        (ROLE_ACCOUNT, "eu-west-1", 5, "enabled"),
    ] {
        let id = image_id(n);
        let labels = [
            ("aws_account_id", account),
            ("aws_region", region),
            ("image_id", id.as_str()),
            ("state", state),
        ];
        assert_eq!(
            value(&text, "aws_ec2_fast_launch_image_state", &labels),
            Some(1.0),
            "{labels:?}"
        );
        assert_eq!(
            success(
                &text,
                &[("aws_account_id", account), ("aws_region", region)]
            ),
            Some(1.0)
        );
    }
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 5);
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_account_info",
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("account_name", "prod"),
                ("team", "windows")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_account_info",
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("account_name", "tooling"),
                ("team", "")
            ]
        ),
        Some(1.0)
    );

    let world = sim.world();
    let received = world.received();
    // The role is assumed once for the account (its targets in both regions share the
    // credentials), then the credentials are reused.
    let assumes: Vec<_> = received
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .collect();
    assert_eq!(
        assumes.len(),
        1,
        "one AssumeRole per role account: {assumes:?}"
    );
    for assume in &assumes {
        assert_eq!(assume.param("RoleArn"), Some(ROLE_ARN));
        assert_eq!(assume.param("ExternalId"), Some("ext-id-never-logged"));
        assert_eq!(assume.param("RoleSessionName"), Some("fle-test"));
        assert_eq!(assume.param("DurationSeconds"), Some("3600"));
        assert_eq!(
            assume.account, BASE_ACCOUNT,
            "AssumeRole is called with the base credentials"
        );
    }
    let identity_calls = received
        .iter()
        .filter(|r| r.action == "GetCallerIdentity")
        .count();
    assert_eq!(
        identity_calls, 1,
        "GetCallerIdentity is called once and cached"
    );
    // EC2 calls of the role targets carry the assumed credentials, in the right region.
    for region in ["us-east-1", "eu-west-1"] {
        assert!(received
            .iter()
            .any(|r| r.action == "DescribeFastLaunchImages"
                && r.account == ROLE_ACCOUNT
                && r.region == region));
        assert!(received
            .iter()
            .any(|r| r.action == "DescribeFastLaunchImages"
                && r.account == BASE_ACCOUNT
                && r.region == region));
    }
    // Counted for the target that needed the credentials first.
    let assumed: f64 = find(
        &text,
        "fast_launch_exporter_aws_requests_total",
        &[("aws_account_id", ROLE_ACCOUNT), ("api", "AssumeRole")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert_eq!(assumed, 1.0);
    let logs = exporter.logs();
    for secret in [
        "ext-id-never-logged",
        BASE_SECRET,
        "simulated-secret",
        "simulated-session-token",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!text.contains(secret), "{secret} leaked into the metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_that_disappears_between_collections_leaves_metrics() {
    let sim = simulator().await;
    sim.world().set_images(
        BASE_ACCOUNT,
        "us-east-1",
        vec![image(1, "enabled"), image(2, "enabled")],
    );
    let exporter = Exporter::start(&sim.url(), &format!("{FAST}regions: [us-east-1]\n"), &[]).await;
    let gone = image_id(2);
    exporter
        .wait_for_metrics("both images", |t| {
            find(t, "aws_ec2_fast_launch_image_info", &[]).len() == 2
        })
        .await;
    sim.world()
        .images_mut(BASE_ACCOUNT, "us-east-1")
        .retain(|i| i.image_id != gone);
    let text = exporter
        .wait_for_metrics("image 2 gone", |t| {
            find(t, "aws_ec2_fast_launch_image_info", &[]).len() == 1
        })
        .await;
    assert!(
        !text.contains(&gone),
        "no series of the vanished image remains"
    );
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_absorbed_by_retry_is_counted_and_succeeds() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world()
        .add_fault(Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503).times(2));
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1m, timeout: 50s, max_attempts: 3}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            )
            .is_some()
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(1.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("api", "DescribeFastLaunchImages"),
                ("error_code", "RequestLimitExceeded")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "DescribeFastLaunchImages")]
        ),
        Some(3.0)
    );
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(1.0));
}

/// The log lines of failed collections of `region`.
fn failures_in(logs: &str, region: &str) -> Vec<String> {
    let place = format!("region={region}");
    logs.lines()
        .filter(|l| l.contains("collection failed") && l.split(' ').any(|f| f == place))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_unauthorized_fails_its_target_and_leaves_others_untouched() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "UnauthorizedOperation", 403)
                .in_region("eu-west-1"),
        );
    }
    // Three attempts allowed: a retry of the 403 would have room to happen.
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1s, timeout: 1s, page_size: 200, max_attempts: 3}\nregions: [us-east-1, eu-west-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("both targets tried twice", |t| {
            find(
                t,
                "fast_launch_exporter_aws_errors_total",
                &[("aws_region", "eu-west-1")],
            )
            .iter()
            .any(|s| s.value >= 2.0)
                && success(
                    t,
                    &[
                        ("aws_account_id", BASE_ACCOUNT),
                        ("aws_region", "us-east-1"),
                    ],
                ) == Some(1.0)
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "eu-west-1")
            ]
        ),
        Some(0.0)
    );
    assert!(find(
        &text,
        "aws_ec2_fast_launch_image_info",
        &[("aws_region", "eu-west-1")]
    )
    .is_empty());
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("aws_region", "us-east-1"), ("image_id", &image_id(1))]
        ),
        Some(1.0)
    );
    assert!(find(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[("aws_region", "us-east-1")]
    )
    .is_empty());
    let errors = find(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[
            ("aws_region", "eu-west-1"),
            ("api", "DescribeFastLaunchImages"),
            ("error_code", "UnauthorizedOperation"),
        ],
    );
    assert_eq!(errors.len(), 1);
    // Not retried: the simulator received one request per failed collection. Between a
    // collection's request and its log line the two differ by one; once the line is logged
    // they agree until the next collection, a second later. Retried, they never would.
    wait_until(
        "one eu-west-1 request per failed collection, twice",
        || {
            let failed = failures_in(&exporter.logs(), "eu-west-1").len();
            failed >= 2 && received(&sim, "DescribeFastLaunchImages", "eu-west-1").len() == failed
        },
        || {
            format!(
                "{} requests received, {} failures logged\n{}",
                received(&sim, "DescribeFastLaunchImages", "eu-west-1").len(),
                failures_in(&exporter.logs(), "eu-west-1").len(),
                exporter.logs()
            )
        },
    )
    .await;
    for line in failures_in(&exporter.logs(), "eu-west-1") {
        assert!(line.contains(", 1 attempt)"), "{line}");
    }
    // The landing page shows the AWS message.
    let page = exporter.get("/").await.text();
    assert!(page.contains("UnauthorizedOperation"), "{page}");
    // One readable log line per failed collection: API, code, message, request id, attempts;
    // no SDK Debug dump.
    let logs = exporter.logs();
    let failed = logs
        .lines()
        .find(|l| l.contains("collection failed"))
        .unwrap_or_else(|| panic!("no failure logged: {logs}"));
    // The code and AWS's message (whatever its words), then the request id.
    let message = failed
        .split_once("DescribeFastLaunchImages failed: UnauthorizedOperation: ")
        .and_then(|(_, rest)| rest.split_once(" (request id "))
        .map(|(message, _)| message);
    assert!(
        message.is_some_and(|m| !m.trim().is_empty())
            && failed.contains(", 1 attempt)")
            && failed.contains("error_code=UnauthorizedOperation"),
        "{failed}"
    );
    assert!(failed.len() < 600, "{} characters: {failed}", failed.len());
    assert!(
        !failed.contains("ErrorMetadata") && !failed.contains("<Response>"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_credentials_and_a_role_in_the_same_account_give_one_series_set() {
    // The base credentials belong to the account the role is in.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = fast_launch_exporter::sim::Simulator::start(
        listener,
        fast_launch_exporter::sim::World::new(BASE_KEY, ROLE_ACCOUNT),
    )
    .unwrap();
    sim.world()
        .set_images(ROLE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = Exporter::start(
        &sim.url(),
        &format!(
            "collection: {{interval: 1h}}\nregions: [us-east-1]\naccounts:\n  - name: tooling\n  - name: prod\n    role_arn: {ROLE_ARN}\n"
        ),
        &[],
    )
    .await;
    // GetCallerIdentity of the base credentials names the role's account: from then on one
    // series set, the role's.
    let text = exporter
        .wait_for_metrics("the role collected and base known as a duplicate", |t| {
            success(
                t,
                &[
                    ("aws_account_id", ROLE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
                && find(t, "fast_launch_exporter_account_info", &[]).len() == 1
                && exporter.logs().contains("another target already serves")
        })
        .await;
    assert_eq!(
        find(&text, "fast_launch_exporter_collection_success", &[]).len(),
        1
    );
    assert_eq!(find(&text, "aws_ec2_fast_launch_image_info", &[]).len(), 1);
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_account_info",
            &[("aws_account_id", ROLE_ACCOUNT), ("account_name", "prod")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "DescribeFastLaunchImages")]
        ),
        Some(1.0)
    );
    if let Some(complaints) = promtool_check_metrics(&text, "one_series_set") {
        assert!(complaints.trim().is_empty(), "{complaints}");
    }
    let describes = sim
        .world()
        .received()
        .iter()
        .filter(|r| r.action == "DescribeFastLaunchImages")
        .count();
    assert_eq!(describes, 1, "the duplicate target is not collected");
    let page = exporter.get("/").await.text();
    assert!(page.contains("not collected (duplicate)"), "{page}");
    assert!(page.contains("is already collected by"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_assume_role_counts_the_sts_error_and_fails_only_that_account() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.deny_role(ROLE_ARN);
    }
    let config = format!(
        "{FAST}regions: [us-east-1]\naccounts:\n  - name: base\n  - role_arn: {ROLE_ARN}\n"
    );
    let exporter = Exporter::start(&sim.url(), &config, &[]).await;
    let text = exporter
        .wait_for_metrics("both targets tried", |t| {
            success(
                t,
                &[
                    ("aws_account_id", ROLE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            )
            .is_some()
                && success(
                    t,
                    &[
                        ("aws_account_id", BASE_ACCOUNT),
                        ("aws_region", "us-east-1"),
                    ],
                )
                .is_some()
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("api", "AssumeRole"),
                ("error_code", "AccessDenied")
            ]
        )
        .unwrap()
            >= 1.0
    );
    // No EC2 request went out for the role target, so none is counted as failed.
    assert!(find(
        &text,
        "fast_launch_exporter_aws_errors_total",
        &[
            ("aws_account_id", ROLE_ACCOUNT),
            ("api", "DescribeFastLaunchImages")
        ]
    )
    .is_empty());
    exporter.wait_for_log("AccessDenied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_target_hits_its_timeout_without_delaying_others() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
        world.add_fault(Fault::hang("DescribeFastLaunchImages").in_region("eu-west-1"));
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 2s, timeout: 1s, concurrency: 1}\nregions: [us-east-1, eu-west-1]\n",
        &[],
    )
    .await;
    let text = exporter
        // Three timeouts take about five seconds: by then the healthy target has had three
        // ticks, and at least two of them have finished even if each waited for the permit.
        .wait_for_metrics("hanging target timed out three times", |t| {
            value(
                t,
                "fast_launch_exporter_aws_errors_total",
                &[("aws_region", "eu-west-1"), ("error_code", "timeout")],
            )
            .is_some_and(|v| v >= 3.0)
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "eu-west-1")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(1.0)
    );
    // Ended by the 1 s timeout (the simulator never answers): it lasted the timeout at least,
    // and the collection counted a timeout rather than waiting on.
    let hung = value(
        &text,
        "fast_launch_exporter_collection_duration_seconds",
        &[("aws_region", "eu-west-1")],
    )
    .unwrap();
    assert!(hung >= 1.0, "ended before its 1s timeout: {hung}");
    assert!(
        failures_in(&exporter.logs(), "eu-west-1")
            .iter()
            .all(|l| l.contains("error_code=timeout")),
        "{}",
        exporter.logs()
    );
    // Even with concurrency 1 the healthy target keeps being collected every interval.
    let healthy = value(
        &text,
        "fast_launch_exporter_aws_requests_total",
        &[
            ("aws_region", "us-east-1"),
            ("api", "DescribeFastLaunchImages"),
        ],
    )
    .unwrap();
    assert!(healthy >= 2.0, "healthy target collected {healthy} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_good_data_is_kept_then_dropped_after_max_staleness() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1s, timeout: 1s, max_staleness: 4s}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    exporter
        .wait_for_metrics("first success", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    sim.world().add_fault(Fault::error(
        "DescribeFastLaunchImages",
        "InternalError",
        500,
    ));
    let text = exporter
        .wait_for_metrics("a failure", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(0.0)
        })
        .await;
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_info",
            &[("image_id", &image_id(1))]
        ),
        Some(1.0),
        "last good data kept"
    );
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(1.0));
    assert!(value(
        &text,
        "fast_launch_exporter_last_success_timestamp_seconds",
        &[]
    )
    .is_some());
    let text = exporter
        .wait_for_metrics("data dropped", |t| {
            find(t, "aws_ec2_fast_launch_image_info", &[]).is_empty()
        })
        .await;
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(0.0));
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(0.0)
    );
    sim.world().clear_faults();
    exporter
        .wait_for_metrics("recovery", |t| {
            find(t, "aws_ec2_fast_launch_image_info", &[]).len() == 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_state_is_exported_under_its_raw_name() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "paused")]);
    let exporter = Exporter::start(&sim.url(), &format!("{FAST}regions: [us-east-1]\n"), &[]).await;
    let text = exporter
        .wait_for_metrics("first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    let states = find(&text, "aws_ec2_fast_launch_image_state", &[]);
    assert_eq!(states.len(), 7, "six documented states plus the raw one");
    for state in [
        "enabling",
        "enabling-failed",
        "enabled",
        "enabled-failed",
        "disabling",
        "disabling-failed",
    ] {
        assert_eq!(
            value(
                &text,
                "aws_ec2_fast_launch_image_state",
                &[("state", state)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("state", "paused")]
        ),
        Some(1.0)
    );
    exporter.wait_for_log("unknown fast launch state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_optional_fields_give_empty_labels_and_absent_gauges() {
    let sim = simulator().await;
    let bare = FastLaunchImage {
        image_id: image_id(9),
        ..FastLaunchImage::default()
    };
    let mut long_reason = image(1, "enabling-failed");
    long_reason.state_transition_reason = "x".repeat(300);
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![bare, long_reason]);
    let exporter = Exporter::start(&sim.url(), &format!("{FAST}regions: [us-east-1]\n"), &[]).await;
    let text = exporter
        .wait_for_metrics("first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    let id = image_id(9);
    let info = find(
        &text,
        "aws_ec2_fast_launch_image_info",
        &[("image_id", &id)],
    );
    assert_eq!(info.len(), 1);
    for label in [
        "owner_id",
        "resource_type",
        "launch_template_id",
        "launch_template_name",
        "launch_template_version",
    ] {
        assert!(
            info[0]
                .labels
                .iter()
                .any(|(k, v)| k == label && v.is_empty()),
            "{label} empty: {:?}",
            info[0]
        );
    }
    for absent in [
        "aws_ec2_fast_launch_image_target_resources",
        "aws_ec2_fast_launch_image_max_parallel_launches",
        "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
        "aws_ec2_fast_launch_image_state_age_seconds",
    ] {
        assert!(
            find(&text, absent, &[("image_id", &id)]).is_empty(),
            "{absent}"
        );
    }
    assert_eq!(
        find(
            &text,
            "aws_ec2_fast_launch_image_state",
            &[("image_id", &id)]
        )
        .iter()
        .map(|s| s.value)
        .sum::<f64>(),
        0.0
    );

    let full = image_id(1);
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_target_resources",
            &[("image_id", &full)]
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_max_parallel_launches",
            &[("image_id", &full)]
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &text,
            "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
            &[("image_id", &full)]
        ),
        Some(1_795_168_800.123)
    );
    let reason = find(
        &text,
        "aws_ec2_fast_launch_image_state_reason_info",
        &[("image_id", &full), ("state", "enabling-failed")],
    );
    let reason = &reason[0]
        .labels
        .iter()
        .find(|(k, _)| k == "reason")
        .unwrap()
        .1;
    assert_eq!(reason.chars().count(), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_age_grows_between_collections() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabling")]);
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1h}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    let first = value(&text, "aws_ec2_fast_launch_image_state_age_seconds", &[]).unwrap();
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = unix_now();
    let later = value(
        &exporter.metrics().await,
        "aws_ec2_fast_launch_image_state_age_seconds",
        &[],
    )
    .unwrap();
    let after = unix_now();
    assert!(
        later - first >= 1.0,
        "age grows at scrape time: {first} then {later}"
    );
    // Valued at the scrape's second: between the ages at the whole second before it and the
    // moment after it (to the millisecond the exposition keeps).
    let transition = 1_795_168_800.123;
    assert!(
        before.floor() - transition - 0.001 <= later && later <= after - transition + 0.001,
        "age {later} not between {} and {}",
        before.floor() - transition,
        after - transition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_credentials_are_refreshed_before_they_expire() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(ROLE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        // Short sessions, to see a renewal within the test: the SDK's cache renews 10-15 s
        // before expiry, so these are renewed 3-8 s after they are issued; the simulator refuses
        // expired ones with ExpiredToken. AWS never issues sessions this short (DurationSeconds
        // is at least 900): the simulator's knob compresses time, it says nothing about AWS.
        world.default_session = Duration::from_secs(18);
    }
    let config = format!("{FAST}regions: [us-east-1]\naccounts:\n  - role_arn: {ROLE_ARN}\n");
    let exporter = Exporter::start(&sim.url(), &config, &[]).await;
    let text = exporter
        .wait_for_metrics("a second AssumeRole", |t| {
            value(
                t,
                "fast_launch_exporter_aws_requests_total",
                &[("api", "AssumeRole")],
            )
            .is_some_and(|v| v >= 2.0)
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", ROLE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(1.0)
    );
    assert!(
        find(&text, "fast_launch_exporter_aws_errors_total", &[]).is_empty(),
        "renewed before any call failed"
    );
    let assumes = value(
        &text,
        "fast_launch_exporter_aws_requests_total",
        &[("api", "AssumeRole")],
    )
    .unwrap();
    let describes = value(
        &text,
        "fast_launch_exporter_aws_requests_total",
        &[("api", "DescribeFastLaunchImages")],
    )
    .unwrap();
    assert!(
        describes > assumes,
        "credentials reused between renewals: {assumes} AssumeRole, {describes} Describe"
    );
    // The short sessions are the simulator's doing: the exporter asks for no duration (none is
    // configured), let alone one below AWS's minimum.
    let world = sim.world();
    let assumes: Vec<_> = world
        .received()
        .iter()
        .filter(|r| r.action == "AssumeRole")
        .collect();
    assert!(assumes.len() >= 2, "{assumes:?}");
    for assume in assumes {
        assert_eq!(assume.param("DurationSeconds"), None, "{assume:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_get_caller_identity_is_retried_on_the_next_cycle() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.add_fault(Fault::error("GetCallerIdentity", "AccessDenied", 403).times(1));
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1s, timeout: 1s, max_attempts: 1}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("recovery", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    // The failed attempt is counted, and moves to the account id once it is known.
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("api", "GetCallerIdentity"),
                ("error_code", "AccessDenied")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_requests_total",
            &[("api", "GetCallerIdentity")]
        ),
        Some(2.0)
    );
    assert!(find(
        &text,
        "fast_launch_exporter_collection_success",
        &[("aws_account_id", "")]
    )
    .is_empty());
    exporter
        .wait_for_log("error=\"GetCallerIdentity failed: AccessDenied: ")
        .await;
}

/// The image ids a collection exported.
fn exported_ids(text: &str) -> std::collections::BTreeSet<String> {
    find(text, "aws_ec2_fast_launch_image_info", &[])
        .iter()
        .filter_map(|s| s.labels.iter().find(|(k, _)| k == "image_id"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// A collection whose later page fails publishes none of it: the whole image list of the last
/// good collection stays exported (not the failed collection's first page, not a mix), and
/// `collection_success` says 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_page_failing_keeps_the_last_good_image_list() {
    let sim = simulator().await;
    sim.world().set_images(
        BASE_ACCOUNT,
        "us-east-1",
        (1..=3).map(|n| image(n, "enabled")).collect(),
    );
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 6s, timeout: 5s, page_size: 2, max_attempts: 1}\nregions: [us-east-1]\n",
        &[],
    )
    .await;
    let first = exporter
        .wait_for_metrics("the first collection", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(1.0)
        })
        .await;
    let old = exported_ids(&first);
    assert_eq!(
        old,
        (1..=3)
            .map(image_id)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let succeeded_at = value(
        &first,
        "fast_launch_exporter_last_success_timestamp_seconds",
        &[],
    );
    let pages_before = received(&sim, "DescribeFastLaunchImages", "us-east-1").len();
    assert_eq!(pages_before, 2, "three images in pages of two");

    // The next collection would see other images: 4 and 5 on its first page, 6 on its second.
    // Every answer now takes 1.5 s, so that a fault can be put in between the two pages.
    {
        let mut world = sim.world();
        world.set_images(
            BASE_ACCOUNT,
            "us-east-1",
            (4..=6).map(|n| image(n, "enabled")).collect(),
        );
        world.latency = Duration::from_millis(1500);
    }
    wait_until(
        "the next collection's first page at the simulator",
        || received(&sim, "DescribeFastLaunchImages", "us-east-1").len() > pages_before,
        || exporter.logs(),
    )
    .await;
    {
        // Under the world's lock: the first page's answer is already decided (no fault), the
        // second page is not here yet, so the fault hits exactly the second page.
        let mut world = sim.world();
        let pages: Vec<_> = world
            .received()
            .iter()
            .filter(|r| r.action == "DescribeFastLaunchImages")
            .cloned()
            .collect();
        assert_eq!(
            pages.len(),
            pages_before + 1,
            "the second page came within the 1.5 s the first page's answer took to arrive"
        );
        assert_eq!(pages[pages_before].param("NextToken"), None, "a first page");
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "UnauthorizedOperation", 403).times(1),
        );
    }
    let text = exporter
        .wait_for_metrics("the collection that failed on its second page", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            ) == Some(0.0)
        })
        .await;
    let pages = received(&sim, "DescribeFastLaunchImages", "us-east-1");
    assert!(
        pages[pages_before + 1].param("NextToken").is_some(),
        "the failure was on a later page: {pages:?}"
    );
    assert_eq!(
        exported_ids(&text),
        old,
        "the last good list, whole, and nothing of the failed collection"
    );
    assert_eq!(value(&text, "fast_launch_exporter_images", &[]), Some(3.0));
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_last_success_timestamp_seconds",
            &[]
        ),
        succeeded_at
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_aws_errors_total",
            &[
                ("api", "DescribeFastLaunchImages"),
                ("error_code", "UnauthorizedOperation")
            ]
        ),
        Some(1.0)
    );
}

/// Each target's calls have their own attempts (`max_attempts`) and their own SDK retry
/// partition: a target throttled on every attempt uses up its three attempts and fails, while
/// another target throttled at the same time retries within its own three and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_targets_throttling_does_not_use_up_another_targets_attempts() {
    let sim = simulator().await;
    {
        let mut world = sim.world();
        world.set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
        world.set_images(BASE_ACCOUNT, "eu-west-1", vec![image(2, "enabled")]);
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503)
                .in_region("us-east-1"),
        );
        world.add_fault(
            Fault::error("DescribeFastLaunchImages", "RequestLimitExceeded", 503)
                .in_region("eu-west-1")
                .times(2),
        );
    }
    let exporter = Exporter::start(
        &sim.url(),
        "collection: {interval: 1h, timeout: 30s, max_attempts: 3}\nregions: [us-east-1, eu-west-1]\n",
        &[],
    )
    .await;
    let text = exporter
        .wait_for_metrics("both targets collected once", |t| {
            success(
                t,
                &[
                    ("aws_account_id", BASE_ACCOUNT),
                    ("aws_region", "us-east-1"),
                ],
            )
            .is_some()
                && success(
                    t,
                    &[
                        ("aws_account_id", BASE_ACCOUNT),
                        ("aws_region", "eu-west-1"),
                    ],
                )
                .is_some()
        })
        .await;
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "us-east-1")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        success(
            &text,
            &[
                ("aws_account_id", BASE_ACCOUNT),
                ("aws_region", "eu-west-1")
            ]
        ),
        Some(1.0),
        "{}",
        exporter.logs()
    );
    for (region, attempts, throttled) in [("us-east-1", 3, 3.0), ("eu-west-1", 3, 2.0)] {
        assert_eq!(
            received(&sim, "DescribeFastLaunchImages", region).len(),
            attempts,
            "{region}: attempts the simulator received"
        );
        assert_eq!(
            value(
                &text,
                "fast_launch_exporter_aws_requests_total",
                &[("aws_region", region), ("api", "DescribeFastLaunchImages")]
            ),
            Some(attempts as f64),
            "{region}"
        );
        assert_eq!(
            value(
                &text,
                "fast_launch_exporter_aws_errors_total",
                &[
                    ("aws_region", region),
                    ("error_code", "RequestLimitExceeded")
                ]
            ),
            Some(throttled),
            "{region}"
        );
    }
    let failed = failures_in(&exporter.logs(), "us-east-1");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains(", 3 attempts)"), "{}", failed[0]);
    assert!(failures_in(&exporter.logs(), "eu-west-1").is_empty());
}
