//! docs/iam.md lists exactly the actions deploy/iam grants, per role and resource policy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value as Json;
use serde_yaml::Value;

use super::read;
use crate::harness::root;

fn iam_dir() -> PathBuf {
    root().join("deploy/iam")
}

/// The actions of a policy statement's `Action`, a string or a list.
fn yaml_actions(action: &Value) -> Vec<String> {
    match action {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(yaml_actions).collect(),
        other => panic!("an Action that is neither a string nor a list: {other:?}"),
    }
}

/// The statements of a YAML policy document, looking through `!If` (both branches count: a
/// template grants what any of its settings grants) and leaving out `AWS::NoValue`.
fn yaml_statements(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| yaml_statements(v, out)),
        Value::Tagged(t) if t.tag == "If" => {
            let items = t.value.as_sequence().expect("!If takes a list");
            yaml_statements(&items[1], out);
            yaml_statements(&items[2], out);
        }
        Value::Tagged(t) if t.tag == "Ref" => {
            assert_eq!(t.value.as_str(), Some("AWS::NoValue"), "{t:?}");
        }
        Value::Mapping(_) => out.push(value.clone()),
        other => panic!("not a statement: {other:?}"),
    }
}

/// The actions a YAML policy document allows.
fn yaml_document_actions(document: &Value) -> BTreeSet<String> {
    let mut statements = Vec::new();
    yaml_statements(&document["Statement"], &mut statements);
    statements
        .iter()
        .filter(|s| s["Effect"].as_str() == Some("Allow"))
        .flat_map(|s| yaml_actions(&s["Action"]))
        .collect()
}

fn json_actions(action: &Json) -> Vec<String> {
    match action {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items.iter().flat_map(json_actions).collect(),
        other => panic!("an Action that is neither a string nor a list: {other}"),
    }
}

/// Everything `deploy/iam` grants, by source: `<template>#<resource>` for a role (its inline
/// policies and the `AWS::IAM::RolePolicy` resources attached to it), a queue policy or an event
/// bus policy; `<file>.json` for a JSON policy that is not a trust policy. Only `Allow`.
fn granted_by_source() -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(iam_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            // A trust policy says who may assume a role, not what the role may do.
            if name.contains("trust-policy") {
                continue;
            }
            let document: Json = serde_json::from_str(&read(&path)).unwrap();
            let actions = document["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["Effect"] == "Allow")
                .flat_map(|s| json_actions(&s["Action"]))
                .collect();
            sources.insert(name, actions);
        } else if name.ends_with(".yaml") {
            let template: Value = serde_yaml::from_str(&read(&path)).unwrap();
            let Some(resources) = template["Resources"].as_mapping() else {
                continue;
            };
            let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (id, resource) in resources {
                let id = id.as_str().unwrap().to_string();
                match resource["Type"].as_str().unwrap() {
                    "AWS::IAM::Role" => {
                        let mut actions = BTreeSet::new();
                        for policy in resource["Properties"]["Policies"]
                            .as_sequence()
                            .into_iter()
                            .flatten()
                        {
                            actions.extend(yaml_document_actions(&policy["PolicyDocument"]));
                        }
                        roles.entry(id).or_default().extend(actions);
                    }
                    "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => {
                        let properties = &resource["Properties"];
                        let role = match &properties["RoleName"] {
                            Value::Tagged(t) if t.tag == "Ref" => {
                                t.value.as_str().unwrap().to_string()
                            }
                            other => panic!("{name}#{id}: attached to {other:?}, not a !Ref"),
                        };
                        roles
                            .entry(role)
                            .or_default()
                            .extend(yaml_document_actions(&properties["PolicyDocument"]));
                    }
                    "AWS::IAM::ManagedPolicy" => {
                        panic!("{name}#{id}: a managed policy; teach this test which role has it")
                    }
                    "AWS::SQS::QueuePolicy" => {
                        sources.insert(
                            format!("{name}#{id}"),
                            yaml_document_actions(&resource["Properties"]["PolicyDocument"]),
                        );
                    }
                    "AWS::Events::EventBus" => {
                        let policy = &resource["Properties"]["Policy"];
                        if !policy.is_null() {
                            sources.insert(format!("{name}#{id}"), yaml_document_actions(policy));
                        }
                    }
                    _ => {}
                }
            }
            for (role, actions) in roles {
                sources.insert(format!("{name}#{role}"), actions);
            }
        }
    }
    sources
}

/// A section of the IAM page's "Every action, per role": its title, its sources and the actions
/// of its table.
struct RoleSection {
    title: String,
    sources: Vec<String>,
    actions: BTreeSet<String>,
}

fn iam_page_sections() -> Vec<RoleSection> {
    let page = read(&root().join("docs/iam.md"));
    let start = page
        .find("\n## Every action, per role\n")
        .expect("docs/iam.md: a section \"## Every action, per role\"");
    let rest = &page[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    let mut sections = Vec::new();
    for chunk in rest[..end].split("\n### ").skip(1) {
        let title = chunk.lines().next().unwrap().to_string();
        let sources_line = chunk
            .lines()
            .find_map(|l| l.strip_prefix("Sources: "))
            .unwrap_or_else(|| panic!("docs/iam.md, {title}: no \"Sources: \" line"));
        let sources = sources_line
            .split(',')
            .map(|s| s.trim().trim_matches('`').to_string())
            .collect();
        let actions = chunk
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(action, _)| action.to_string())
            .filter(|a| a.contains(':'))
            .collect();
        sections.push(RoleSection {
            title,
            sources,
            actions,
        });
    }
    sections
}

#[test]
fn the_iam_page_lists_exactly_the_actions_each_role_is_granted() {
    let granted = granted_by_source();
    let sections = iam_page_sections();
    assert!(sections.len() >= 3, "only {} role sections", sections.len());
    let mut problems = Vec::new();
    let mut claimed = BTreeSet::new();
    for section in &sections {
        if section.actions.is_empty() {
            problems.push(format!("{}: no actions listed", section.title));
        }
        for source in &section.sources {
            if !claimed.insert(source.clone()) {
                problems.push(format!("{source} is claimed by two sections"));
            }
            let Some(actions) = granted.get(source) else {
                problems.push(format!(
                    "{}: source {source} grants nothing in deploy/iam (known: {:?})",
                    section.title,
                    granted.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            let missing: Vec<_> = actions.difference(&section.actions).collect();
            let extra: Vec<_> = section.actions.difference(actions).collect();
            if !missing.is_empty() || !extra.is_empty() {
                problems.push(format!(
                    "{}: {source} grants {missing:?} that the page does not list, and the page \
                     lists {extra:?} that it does not grant",
                    section.title
                ));
            }
        }
    }
    for source in granted.keys() {
        if !claimed.contains(source) {
            problems.push(format!(
                "{source} grants {:?} but no section of docs/iam.md names it as a source",
                granted[source]
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/iam.md and deploy/iam differ:\n{}",
        problems.join("\n")
    );
}
