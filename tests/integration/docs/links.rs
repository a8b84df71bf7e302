//! Every relative link and `#anchor` of every Markdown file resolves, by GitHub's anchor rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{prose_lines, read, relative};
use crate::harness::root;

/// Every Markdown file of the repository (`.git` and build output left out).
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root(), &mut files);
    files.sort();
    files
}

/// `line` without its inline code spans (a `](x)` inside backticks is no link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links and images of one line: `[text](target)`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading's text: lower case; letters, digits, `-` and `_` kept, spaces
/// made `-`, everything else dropped. Inline code marks and link syntax go first.
fn slug(heading: &str) -> String {
    let mut text = without_code_spans_keep_text(heading);
    // [text](target) -> text
    while let (Some(open), Some(mid)) = (text.find('['), text.find("](")) {
        let Some(close) = text[mid..].find(')').map(|c| mid + c) else {
            break;
        };
        if open > mid {
            break;
        }
        text = format!(
            "{}{}{}",
            &text[..open],
            &text[open + 1..mid],
            &text[close + 1..]
        );
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `line` with the backticks of code spans removed but their text kept (headings show it).
fn without_code_spans_keep_text(line: &str) -> String {
    line.replace('`', "")
}

/// The anchors of a Markdown file, as GitHub makes them: one per heading, a repeated one with
/// `-1`, `-2` … after it.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes + 1..]);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

#[test]
fn github_anchor_slugs_follow_githubs_rules() {
    assert_eq!(slug("The exporter's role"), "the-exporters-role");
    assert_eq!(slug("`discovery.organizations`"), "discoveryorganizations");
    assert_eq!(
        slug("Organisations: discovery, `regions: all`, sharding"),
        "organisations-discovery-regions-all-sharding"
    );
    assert_eq!(slug("kube-prometheus (jsonnet)"), "kube-prometheus-jsonnet");
    assert_eq!(slug("2. Install the exporter"), "2-install-the-exporter");
    assert_eq!(slug("max_staleness"), "max_staleness");
    let text = "# A\n## Same\n```sh\n# not a heading\n```\n## Same\n";
    assert_eq!(
        anchors(text),
        ["a", "same", "same-1"].map(String::from).into()
    );
}

#[test]
fn every_relative_link_and_anchor_in_the_markdown_resolves() {
    let files = markdown_files();
    assert!(
        files.len() >= 10,
        "only {} Markdown files found",
        files.len()
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = read(file);
        for (line_number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                let at = format!("{}:{line_number}: ({target})", relative(file));
                if !resolved.exists() {
                    broken.push(format!("{at}: no file {}", relative(&resolved)));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if resolved.extension().and_then(|e| e.to_str()) != Some("md") {
                        broken.push(format!("{at}: an anchor into a file that is not Markdown"));
                    } else if !anchors(&read(&resolved)).contains(anchor) {
                        broken.push(format!(
                            "{at}: no heading makes #{anchor} in {}",
                            relative(&resolved)
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
