//! Documentation that cannot drift: every relative link and anchor of the Markdown resolves; the
//! IAM page lists exactly what the templates and JSON policies grant, per role; the metrics page
//! lists exactly the families the demo serves, with their type and help, and the series the
//! families list counts; the configuration page documents every key the parser accepts and the
//! example uses; the operations and demo pages list exactly the flags `--help` lists; and the
//! README's commands run as written (against nothing but loopback).

mod configuration;
mod flags;
mod iam;
mod links;
mod metrics;
mod readme;

use std::path::Path;

use crate::harness::root;

pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of `text` outside fenced code blocks, with their line numbers (from 1).
pub(super) fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((n + 1, line));
        }
    }
    lines
}
