//! The landing page rendered from hand-made views: order, escaping, the cut, the filters.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::html::{age, escape, page, thousands, Page};
use super::overview::{Outcome, Overview};
use super::query::Filters;
use crate::domain::calls::ApiCounters;
use crate::domain::model::{unix_seconds, FastLaunchImage, FastLaunchState, TargetKey};
use crate::targets::{Health, TargetView};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn target(name: &str, id: &str, region: &str, outcome: Outcome) -> TargetView {
    let health = match outcome {
        Outcome::Ok => Health {
            tried: true,
            last_ok: true,
            last_success: Some(now() - Duration::from_secs(30)),
            ..Health::default()
        },
        Outcome::Failed => Health {
            tried: true,
            last_ok: false,
            last_error: Some("DescribeFastLaunchImages failed: UnauthorizedOperation".into()),
            ..Health::default()
        },
        Outcome::NotYetCollected | Outcome::Duplicate => Health::default(),
    };
    TargetView {
        key: TargetKey {
            account: format!("arn:aws:iam::{id}:role/Reader").into(),
            region: region.into(),
        },
        account_name: Some(name.to_string()),
        account_id: Some(id.to_string()),
        apis: &[],
        health,
        images: None,
        counters: Arc::new(ApiCounters::default()),
        duplicate_of: (outcome == Outcome::Duplicate).then(|| TargetKey {
            account: "base".into(),
            region: region.into(),
        }),
        cloudwatch: None,
    }
}

fn image(n: u32, state: FastLaunchState, hours_ago: u64, reason: &str) -> FastLaunchImage {
    FastLaunchImage {
        image_id: format!("ami-{n:017x}"),
        state: Some(state),
        state_transition_reason: reason.to_string(),
        state_transition_time: Some(unix_seconds(now()) - (hours_ago * 3_600) as f64),
        ..FastLaunchImage::default()
    }
}

fn render(targets: &[TargetView], query: &str, rows: usize) -> String {
    let filters = Filters::parse(Some(query));
    let targets: Vec<Arc<TargetView>> = targets.iter().cloned().map(Arc::new).collect();
    let overview = Overview::build(&targets, &filters, rows);
    page(&Page {
        overview: &overview,
        filters: &filters,
        telemetry_path: "/metrics",
        now: now(),
        rows,
    })
}

/// A small world: an ok target with images in three states, a failing one, one not collected
/// yet and a duplicate; the names and texts from outside try to inject markup.
fn world() -> Vec<TargetView> {
    let mut ok = target("prod", "222222222222", "us-east-1", Outcome::Ok);
    ok.images = Some(Arc::new(vec![
        image(1, FastLaunchState::Enabled, 50, "Client.UserInitiated"),
        image(2, FastLaunchState::Enabling, 1, "Client.UserInitiated"),
        image(
            3,
            FastLaunchState::EnablingFailed,
            2,
            "<script>alert(1)</script>",
        ),
        image(4, FastLaunchState::Unknown("paused".into()), 3, ""),
    ]));
    let mut failing = target(
        "<b>evil</b>\"'&",
        "333333333333",
        "eu-west-1",
        Outcome::Failed,
    );
    failing.health.last_error = Some("<img src=x onerror=alert(1)>".into());
    failing.health.last_success = Some(now() - Duration::from_secs(3 * 3_600 + 120));
    vec![
        ok,
        failing,
        target("dev", "444444444444", "eu-west-1", Outcome::NotYetCollected),
        target("copy", "222222222222", "us-east-1", Outcome::Duplicate),
    ]
}

#[test]
fn the_summary_comes_first_then_failures_then_images_not_enabled_then_the_rest() {
    let html = render(&world(), "", 100);
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {html}"))
    };
    assert!(at("id=\"summary\"") < at("id=\"failing\""));
    assert!(at("id=\"failing\"") < at("id=\"images\""));
    assert!(at("id=\"images\"") < at("id=\"targets\""));
    assert!(html.contains("<meta name=\"viewport\""), "{html}");
    assert!(html.contains("href=\"/metrics\"") && html.contains("href=\"/-/ready\""));
    assert!(html.contains(&format!("Version {}", crate::expose::VERSION)));
    // Counts: one per result; images by state, the six documented and the one AWS added.
    for (result, count) in [
        ("ok", 1),
        ("failed", 1),
        ("not-yet-collected", 1),
        ("duplicate", 1),
    ] {
        assert!(
            html.contains(&format!("data-result=\"{result}\"")),
            "{result}"
        );
        let row = &html[at(&format!("data-result=\"{result}\""))..];
        assert!(row.contains(&format!("data-count=\"{count}\"")), "{result}");
    }
    for state in [
        "enabling",
        "enabling-failed",
        "enabled",
        "enabled-failed",
        "disabling",
        "disabling-failed",
        "paused",
    ] {
        assert!(html.contains(&format!("data-state=\"{state}\"")), "{state}");
    }
    // Images not enabled: the failure first, then the unknown state, then the transition.
    let images = &html[at("id=\"images\"")..at("id=\"targets\"")];
    assert!(!images.contains("ami-00000000000000001"), "{images}");
    let failed = images.find("ami-00000000000000003").unwrap();
    let paused = images.find("ami-00000000000000004").unwrap();
    let enabling = images.find("ami-00000000000000002").unwrap();
    assert!(failed < paused && paused < enabling, "{images}");
    assert!(images.contains("2h 0m<br>"), "{images}");
    // The failing target: since when, and its error.
    let failing = &html[at("id=\"failing\"")..at("id=\"images\"")];
    assert!(failing.contains("3h 2m ago"), "{failing}");
    // The rest: not yet collected first, then the duplicate, then ok.
    let rest = &html[at("id=\"targets\"")..];
    let dev = rest.find(">dev<").unwrap();
    let copy = rest.find(">copy<").unwrap();
    let prod = rest.find(">prod<").unwrap();
    assert!(dev < copy && copy < prod, "{rest}");
    assert!(
        rest.contains("<td>not collected (duplicate)</td>"),
        "{rest}"
    );
}

#[test]
fn text_from_outside_is_escaped_everywhere() {
    let html = render(
        &world(),
        "account=%3Cscript%3E&region=%22onmouseover%3D&colour=%3Ci%3E",
        100,
    );
    for raw in ["<script>", "<b>evil", "<img", "\"onmouseover", "<i>", "'&"] {
        assert!(!html.contains(raw), "{raw} unescaped: {html}");
    }
    let html = render(&world(), "", 100);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;b&gt;evil&lt;/b&gt;&quot;&#39;&amp;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
}

#[test]
fn a_long_list_is_cut_with_a_line_saying_how_many_more() {
    let targets: Vec<TargetView> = (0..250)
        .map(|n| {
            target(
                &format!("account-{n}"),
                &format!("{n:012}"),
                "us-east-1",
                Outcome::Failed,
            )
        })
        .collect();
    let html = render(&targets, "", 100);
    assert_eq!(html.matches("UnauthorizedOperation").count(), 100);
    assert!(
        html.contains(
            "<p class=\"more\">150 more failing targets not shown (the first 100 of 250 are)"
        ),
        "{html}"
    );
    // A list within its cut has no such line.
    assert!(!render(&targets, "", 250).contains("class=\"more\""));
}

#[test]
fn filters_narrow_the_lists_and_a_value_that_names_nothing_says_so() {
    let targets = world();
    // Region: the failing target and the one not collected yet are in eu-west-1.
    let html = render(&targets, "region=EU-West-1", 100);
    assert!(html.contains("Failing targets (1)"), "{html}");
    assert!(
        html.contains("Other targets (1)") && html.contains(">dev<"),
        "{html}"
    );
    assert!(html.contains("Images not enabled (0)"), "{html}");
    assert!(
        html.contains("<option selected>eu-west-1</option>"),
        "{html}"
    );
    // Account by name, in any case, or by id.
    for query in ["account=PROD", "account=222222222222"] {
        let html = render(&targets, query, 100);
        assert!(html.contains("Failing targets (0)"), "{query}: {html}");
        assert!(html.contains("Images not enabled (3)"), "{query}: {html}");
    }
    // state= a target result lists only those targets; an image state only those images.
    let html = render(&targets, "state=failed", 100);
    assert!(html.contains("id=\"failing\"") && !html.contains("id=\"images\""));
    assert!(!html.contains("id=\"targets\""), "{html}");
    let html = render(&targets, "state=enabled&state=paused", 100);
    assert!(!html.contains("id=\"failing\"") && !html.contains("id=\"targets\""));
    assert!(
        html.contains("Images in state enabled, paused (2)"),
        "{html}"
    );
    let html = render(&targets, "state=ok&state=duplicate", 100);
    assert!(
        html.contains("Targets: ok, not collected (duplicate) (2)"),
        "{html}"
    );
    // Values that name nothing: a message each, and nothing listed for them.
    let html = render(&targets, "state=enabeld&account=nobody&region=mars-1", 100);
    assert!(html.contains("id=\"problems\""), "{html}");
    assert!(html.contains("state=&quot;enabeld&quot;: neither a target result"));
    assert!(html.contains("account=&quot;nobody&quot;: no account here"));
    assert!(html.contains("region=&quot;mars-1&quot;: no target here"));
    assert!(html.contains("0 targets in 0 accounts"), "{html}");
    // The links keep the other filters.
    let html = render(&targets, "region=us-east-1", 100);
    assert!(
        html.contains("href=\"?region=us-east-1&amp;state=failed\""),
        "{html}"
    );
}

#[test]
fn ages_and_counts_read_well() {
    assert_eq!(age(Duration::from_secs(42)), "42s");
    assert_eq!(age(Duration::from_secs(12 * 60 + 5)), "12m 5s");
    assert_eq!(age(Duration::from_secs(3 * 3_600 + 150)), "3h 2m");
    assert_eq!(
        age(Duration::from_secs(5 * 86_400 + 4 * 3_600 + 9)),
        "5d 4h"
    );
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(17_000), "17,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

#[test]
fn failing_targets_that_never_succeeded_come_before_older_successes() {
    let mut recent = target("recent", "555555555555", "us-east-1", Outcome::Failed);
    recent.health.last_success = Some(now() - Duration::from_secs(60));
    let mut old = target("old", "666666666666", "us-east-1", Outcome::Failed);
    old.health.last_success = Some(now() - Duration::from_secs(86_400));
    let never = target("never", "777777777777", "us-east-1", Outcome::Failed);
    let targets = [recent, old, never].map(Arc::new);
    let overview = Overview::build(&targets, &Filters::default(), 100);
    let names: Vec<&str> = overview
        .failing
        .as_ref()
        .unwrap()
        .rows
        .iter()
        .filter_map(|t| t.account_name.as_deref())
        .collect();
    assert_eq!(names, ["never", "old", "recent"]);
}

/// A state AWS adds, written in capitals, is found by `state=` (which is lowercased).
#[test]
fn a_new_state_in_capitals_is_found_by_the_filter() {
    let mut paused = target("prod", "111111111111", "us-east-1", Outcome::Ok);
    paused.images = Some(Arc::new(vec![image(
        1,
        FastLaunchState::Unknown("Paused".into()),
        2,
        "Server.Paused",
    )]));
    let html = render(&[paused], "state=Paused", 100);
    assert!(!html.contains("neither a target result"), "{html}");
    assert!(html.contains("ami-00000000000000001"), "{html}");
}
