//! docs/operations.md lists exactly the flags `--help` lists, and docs/demo.md exactly the
//! demo's own flags (`demo --help`, under "Demo options").

use std::collections::BTreeSet;
use std::process::Command;

use super::read;
use crate::harness::{root, BIN};

/// The long flags a `--help` text lists in its options sections (after `heading`, up to the next
/// heading, or to the end).
fn help_flags(args: &[&str], heading: &str) -> BTreeSet<String> {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let section = text
        .split_once(&format!("\n{heading}:\n"))
        .unwrap_or_else(|| panic!("`{}` has no {heading:?} heading:\n{text}", args.join(" ")))
        .1;
    section
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .map(str::trim_start)
        // `--flag <ARG>`, or `-h, --help`.
        .filter_map(|line| match line.split_once(", --") {
            Some((short, long)) if short.starts_with('-') && !short.starts_with("--") => Some(long),
            _ => line.strip_prefix("--"),
        })
        .map(|flag| format!("--{}", flag.split([' ', ',', '<']).next().unwrap()))
        .collect()
}

/// The flags the first column of `page`'s tables names (`` `--flag ARG` ``).
fn documented_flags(page: &str, prefix: &str) -> BTreeSet<String> {
    read(&root().join(page))
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" |").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|code| code.starts_with(prefix))
        .map(|code| code.split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_operations_page_lists_exactly_the_flags_help_lists() {
    let help = help_flags(&["--help"], "Options");
    assert!(help.contains("--web.enable-lifecycle"), "{help:?}");
    let documented = documented_flags("docs/operations.md", "--");
    let demo_only: BTreeSet<String> = documented
        .iter()
        .filter(|f| f.starts_with("--demo."))
        .cloned()
        .collect();
    assert!(
        demo_only.is_empty(),
        "demo flags belong in docs/demo.md: {demo_only:?}"
    );
    assert_eq!(
        documented, help,
        "docs/operations.md's flags table against `fast-launch-exporter --help`"
    );
}

#[test]
fn the_demo_page_lists_exactly_the_demo_flags() {
    let help = help_flags(&["demo", "--help"], "Demo options");
    assert!(help.contains("--demo.accounts"), "{help:?}");
    assert_eq!(
        documented_flags("docs/demo.md", "--demo."),
        help,
        "docs/demo.md's flags table against `fast-launch-exporter demo --help`"
    );
}
