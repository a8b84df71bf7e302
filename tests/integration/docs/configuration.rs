//! docs/configuration.md documents every key the parser accepts and config/example.yaml uses.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::{prose_lines, read};
use crate::harness::root;

/// The braced structs of `src/config/raw.rs` (the serde mirror of the file): name → its fields
/// as (key as written in YAML, Rust type).
fn raw_structs() -> BTreeMap<String, Vec<(String, String)>> {
    let source = read(&root().join("src/config/raw.rs"));
    let mut structs = BTreeMap::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let mut rename: Option<String> = None;
    for line in source.lines() {
        let line = line.trim();
        if let Some((name, fields)) = current.as_mut() {
            if line == "}" {
                structs.insert(name.clone(), std::mem::take(fields));
                current = None;
            } else if let Some(at) = line.find("rename = \"") {
                let value = &line[at + 10..];
                rename = Some(value[..value.find('"').unwrap()].to_string());
            } else if let Some(field) = line.strip_prefix("pub(super) ") {
                let (key, ty) = field.split_once(':').expect("field: type");
                let key = rename.take().unwrap_or_else(|| key.trim().to_string());
                fields.push((key, ty.trim().trim_end_matches(',').to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("pub(super) struct ") {
            if let Some(name) = rest.strip_suffix(" {") {
                current = Some((name.to_string(), Vec::new()));
            }
        }
    }
    assert!(
        structs.contains_key("RawConfig"),
        "src/config/raw.rs: no `pub(super) struct RawConfig {{`"
    );
    structs
}

/// Every key the parser accepts, as dotted paths (`accounts[].role_arn`), and the paths that
/// hold further keys. A struct used in several places (`filters`, `cloudwatch`) is spelt out
/// where it is used closest to the top, and is one key elsewhere (`accounts[].filters`).
fn parser_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let structs = raw_structs();
    // Where each struct is first reached, breadth first.
    let mut expand_at: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = vec![(String::new(), "RawConfig".to_string())];
    let mut index = 0;
    while index < queue.len() {
        let (path, name) = queue[index].clone();
        index += 1;
        for (key, ty) in &structs[&name] {
            let child = field_path(&path, key, ty);
            if let Some(inner) = struct_in(ty, &structs) {
                if !expand_at.contains_key(&inner) {
                    expand_at.insert(inner.clone(), child.clone());
                    queue.push((child, inner));
                }
            }
        }
    }
    let mut leaves = BTreeSet::new();
    let mut inner_nodes = BTreeSet::new();
    for (path, name) in &queue {
        if !path.is_empty() {
            inner_nodes.insert(path.trim_end_matches("[]").to_string());
        }
        for (key, ty) in &structs[name] {
            let child = field_path(path, key, ty);
            match struct_in(ty, &structs) {
                Some(inner) if expand_at[&inner] == child => {}
                _ => {
                    leaves.insert(child.trim_end_matches("[]").to_string());
                }
            }
        }
    }
    (leaves, inner_nodes)
}

fn field_path(parent: &str, key: &str, ty: &str) -> String {
    let list = if ty.contains("Vec<") { "[]" } else { "" };
    if parent.is_empty() {
        format!("{key}{list}")
    } else {
        format!("{parent}.{key}{list}")
    }
}

/// The struct of `raw.rs` a field's type holds (`Option<Vec<RawAccount>>` → `RawAccount`).
fn struct_in(ty: &str, structs: &BTreeMap<String, Vec<(String, String)>>) -> Option<String> {
    ty.split(|c: char| !c.is_alphanumeric() && c != '_')
        .find(|word| structs.contains_key(*word))
        .map(str::to_string)
}

/// The keys of docs/configuration.md: the first cell of every table row written `| \`key\` |`
/// whose header is "key".
fn documented_keys() -> BTreeSet<String> {
    let page = read(&root().join("docs/configuration.md"));
    let mut keys = BTreeSet::new();
    let mut in_key_table = false;
    for (_, line) in prose_lines(&page) {
        if line.starts_with("| key |") {
            in_key_table = true;
        } else if !line.starts_with('|') {
            in_key_table = false;
        } else if in_key_table {
            if let Some(rest) = line.strip_prefix("| `") {
                let key = rest.split('`').next().unwrap().to_string();
                assert!(
                    keys.insert(key.clone()),
                    "docs/configuration.md: {key} twice"
                );
            }
        }
    }
    keys
}

/// config/example.yaml with its commented-out sections (a `# key:` line at the left margin and
/// the `#   ` lines under it) uncommented.
fn example_with_every_section() -> String {
    let text = read(&root().join("config/example.yaml"));
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let body = line.strip_prefix("# ");
        let opens = body.is_some_and(|b| {
            let key = b.split(':').next().unwrap();
            b.contains(':')
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && b[key.len() + 1..].trim().is_empty()
        });
        if opens {
            in_block = true;
            out.push_str(body.unwrap());
        } else if in_block && line.starts_with("#  ") {
            out.push_str(&line[2..]);
        } else {
            in_block = false;
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Every key path of a YAML document (`accounts[].role_arn`), mappings and lists walked.
fn yaml_keys(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().expect("a string key");
                let child_path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(child_path.clone());
                yaml_keys(child, &child_path, out);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                yaml_keys(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_configuration_page_documents_every_key_the_parser_and_the_example_have() {
    let (leaves, inner_nodes) = parser_keys();
    assert!(
        leaves.len() >= 30,
        "only {} keys found in raw.rs",
        leaves.len()
    );
    let documented = documented_keys();
    let undocumented: Vec<_> = leaves.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "the parser (src/config/raw.rs) accepts keys docs/configuration.md does not document: \
         {undocumented:?}"
    );
    let unknown: Vec<_> = documented
        .iter()
        .filter(|k| !leaves.contains(*k) && !inner_nodes.contains(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the parser does not accept: {unknown:?}"
    );

    // The example, with its commented sections, is a valid file, and every key in it is
    // documented (or sits inside a documented map, as `labels.team`).
    let example = example_with_every_section();
    fast_launch_exporter::config::Config::from_yaml(&example)
        .unwrap_or_else(|e| panic!("config/example.yaml, sections uncommented: {e}\n{example}"));
    let value: Value = serde_yaml::from_str(&example).unwrap();
    let mut keys = BTreeSet::new();
    yaml_keys(&value, "", &mut keys);
    for section in ["events", "discovery.organizations", "metrics.exclude"] {
        assert!(
            keys.contains(section),
            "config/example.yaml: the section {section} was not found (commented out as \
             `# {section}:`?)"
        );
    }
    let strip = |k: &str| k.trim_end_matches("[]").to_string();
    let missing: Vec<_> = keys
        .iter()
        .map(|k| strip(k))
        .filter(|k| {
            !documented.contains(k)
                && !k.rsplit_once('.').is_some_and(|(parent, _)| {
                    leaves.contains(parent) && documented.contains(parent)
                })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config/example.yaml has keys docs/configuration.md does not document: {missing:?}"
    );
}
