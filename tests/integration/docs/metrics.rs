//! docs/metrics.md lists exactly the families the demo serves, with their type, help and series.

use std::collections::{BTreeMap, BTreeSet};

use fast_launch_exporter::domain::families::{Scope, FAMILIES};

use super::read;
use crate::harness::{root, Exporter, EVERY_FAMILY_DEMO};

/// A family as the metrics page documents it.
#[derive(Debug, PartialEq)]
struct DocumentedFamily {
    kind: String,
    help: String,
}

/// The families of docs/metrics.md: a heading "#### `name`", a line starting with the type,
/// and the help text as a quote.
fn documented_families() -> BTreeMap<String, DocumentedFamily> {
    let page = read(&root().join("docs/metrics.md"));
    let mut families = BTreeMap::new();
    for chunk in page.split("\n#### `").skip(1) {
        let name = chunk.split('`').next().unwrap().to_string();
        let mut lines = chunk.lines().skip(1).filter(|l| !l.trim().is_empty());
        let kind = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let help = chunk
            .lines()
            .find_map(|l| l.strip_prefix("> "))
            .unwrap_or_else(|| panic!("docs/metrics.md, {name}: no help quote (\"> …\")"))
            .to_string();
        let previous = families.insert(name.clone(), DocumentedFamily { kind, help });
        assert!(previous.is_none(), "docs/metrics.md documents {name} twice");
    }
    families
}

/// `# HELP` and `# TYPE` of every family in a text exposition.
fn served_families(text: &str) -> BTreeMap<String, DocumentedFamily> {
    let mut help = BTreeMap::new();
    let mut kind = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, text) = rest.split_once(' ').unwrap();
            kind.insert(name.to_string(), text.to_string());
        }
    }
    kind.into_iter()
        .map(|(name, kind)| {
            let help = help.get(&name).cloned().unwrap_or_default();
            (name, DocumentedFamily { kind, help })
        })
        .collect()
}

/// The demo with every feature on (CloudWatch, events, Organizations discovery, the process
/// metrics) serves exactly the families the page documents, with the same type and help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_lists_exactly_the_families_the_demo_serves_with_type_and_help() {
    let documented = documented_families();
    let exporter = Exporter::demo(EVERY_FAMILY_DEMO).await;
    let every: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    let text = exporter
        .wait_for_metrics("every family", |t| {
            let served = served_families(t);
            every.iter().all(|f| served.contains_key(*f))
        })
        .await;
    let served = served_families(&text);
    let mut problems = Vec::new();
    for (name, family) in &served {
        match documented.get(name) {
            None => problems.push(format!("{name} is served but not on the page")),
            Some(doc) if doc != family => problems.push(format!(
                "{name}: the page says {} \"{}\", /metrics says {} \"{}\"",
                doc.kind, doc.help, family.kind, family.help
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        if !served.contains_key(name) {
            problems.push(format!("{name} is on the page but not served"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/metrics.md and /metrics differ:\n{}",
        problems.join("\n")
    );
}

/// The page's table of series per image and per target is the families list
/// (`domain::families`, which `check-config` sums and `metrics.exclude` checks against).
#[test]
fn the_metrics_page_series_per_image_and_target_are_the_families_list() {
    let page = read(&root().join("docs/metrics.md"));
    let start = page
        .find("## Series per image and per target")
        .expect("docs/metrics.md: \"## Series per image and per target\"");
    let rows: BTreeMap<String, (String, u32, u32)> = page[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| family"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let number = |s: &str| s.parse::<u32>().unwrap_or_else(|_| panic!("{l}"));
            (
                cells[0].trim_matches('`').to_string(),
                (cells[1].to_string(), number(cells[2]), number(cells[3])),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, u32, u32)> = FAMILIES
        .iter()
        .map(|f| {
            let scope = match f.scope {
                Scope::Image => "image",
                Scope::Target => "target",
                Scope::Account => "account",
                Scope::Process => "process",
            };
            (
                f.name.to_string(),
                (scope.to_string(), f.series(false), f.series(true)),
            )
        })
        .collect();
    let differ: Vec<String> = expected
        .iter()
        .filter(|(name, want)| rows.get(*name) != Some(want))
        .map(|(name, want)| {
            format!(
                "{name}: the page says {:?}, the list {want:?}",
                rows.get(name)
            )
        })
        .chain(
            rows.keys()
                .filter(|name| !expected.contains_key(*name))
                .map(|name| format!("{name}: on the page, not in the families list")),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "docs/metrics.md series table:\n{}",
        differ.join("\n")
    );
}
