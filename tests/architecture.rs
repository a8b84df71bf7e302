//! The layers of `src/`, and the rule that keeps them readable: **every arrow points down**.
//! Each top-level module (a folder, or `app.rs`) may name only the modules listed for it below
//! with `crate::`; peers on one layer never name each other. The allowed arrows form no circle
//! (checked here too), so the modules cannot either. `docs/architecture.md` draws the picture.
//! A test binary of its own: it reads the sources and links nothing, so it runs without the
//! `demo` feature too.
//!
//! ```text
//! demo                      the whole exporter against the simulator (feature `demo`)
//! app    cli                the supervisor; the one-shot commands
//! serve                     HTTP: /metrics, landing page, health, reload, TLS and auth
//! expose                    the exposition, from the registry's snapshots
//! targets                   where a target lives; implements collect's ResultSink, events' Trigger
//! discover  collect  events  aws     peers: never each other (aws: domain only)
//! config                    the configuration file
//! domain                    plain types and ports: imports nothing from the crate
//! sim                       the AWS simulator (feature `demo`): domain only
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import from the crate (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("config", &["domain"]),
    ("aws", &["domain"]),
    ("discover", &["domain", "config"]),
    ("collect", &["domain", "config"]),
    ("events", &["domain", "config"]),
    ("targets", &["domain", "config", "collect", "events"]),
    ("expose", &["domain", "targets"]),
    ("serve", &["domain", "config", "expose", "targets"]),
    (
        "app",
        &[
            "domain", "config", "discover", "events", "expose", "serve", "targets",
        ],
    ),
    ("cli", &["domain", "config", "aws", "discover"]),
    ("sim", &["domain"]),
    (
        "demo",
        &["domain", "config", "aws", "events", "serve", "app", "sim"],
    ),
];

/// `text` without its line comments (doc comments included).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The leading identifier of `text`.
fn identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level items of the use group `text` starts with (`{a::{x, y}, b}` gives `a`, `b`),
/// across lines.
fn group_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(identifier(&item));
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(identifier(&item));
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth >= 1 {
            item.push(c);
        }
    }
    items.into_iter().filter(|i| !i.is_empty()).collect()
}

/// The modules named with `crate::` in `text`, outside comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = code_of(text);
    let mut named = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let part_of_a_longer_name = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let after = &rest[at + "crate::".len()..];
        if !part_of_a_longer_name {
            if after.starts_with('{') {
                named.extend(group_items(after));
            } else {
                let name = identifier(after);
                if !name.is_empty() {
                    named.insert(name);
                }
            }
        }
        rest = after;
    }
    named
}

/// Whether `text`, a module's root file (`app.rs`, `x/mod.rs`), reaches the crate root with
/// `super::` outside its unit tests (where `super` is the module itself).
fn root_uses_super(text: &str) -> bool {
    let before_tests: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect();
    code_of(&before_tests.join("\n")).contains("super::")
}

/// The arrows of `module`'s `text` that the rules forbid, each as `module -> named`.
fn forbidden_arrows(module: &str, text: &str) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let Some(may) = allowed.get(module) else {
        return vec![format!("{module}: not in the layer table")];
    };
    crate_paths(text)
        .into_iter()
        .filter(|named| named != module && !may.contains(&named.as_str()))
        .map(|named| format!("{module} -> {named}"))
        .collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_rule_finds_an_arrow_that_points_up_or_sideways() {
    assert_eq!(
        forbidden_arrows("domain", "use crate::config::Config;"),
        ["domain -> config"]
    );
    assert_eq!(
        forbidden_arrows(
            "collect",
            "let r: crate::targets::Registry;\nuse crate::{events, domain};"
        ),
        ["collect -> events", "collect -> targets"]
    );
    assert_eq!(
        forbidden_arrows(
            "aws",
            "// crate::collect in a comment is no arrow\nuse crate::domain::calls::Api;"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        forbidden_arrows("new_module", ""),
        ["new_module: not in the layer table"]
    );
}

#[test]
fn the_allowed_arrows_form_no_circle() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Kahn's algorithm: a module is placed once everything it may import is placed.
    let mut placed: Vec<&str> = Vec::new();
    while placed.len() < allowed.len() {
        let next = allowed
            .iter()
            .find(|(module, may)| {
                !placed.contains(module) && may.iter().all(|m| placed.contains(m))
            })
            .map(|(module, _)| *module);
        match next {
            Some(module) => placed.push(module),
            None => panic!("the layer table has a circle among {:?}", allowed.keys()),
        }
    }
    for (module, may) in ALLOWED {
        for named in *may {
            assert!(
                allowed.contains_key(named),
                "{module} may import {named}, which is no module"
            );
        }
    }
}

#[test]
fn every_arrow_in_src_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut forbidden = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name");
        // main.rs is the binary (it names the library as `fast_launch_exporter::`); lib.rs only
        // lists the modules.
        if first == "main.rs" || first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs");
        seen_modules.insert(module.to_string());
        let text = std::fs::read_to_string(file).expect("a source file");
        for arrow in forbidden_arrows(module, &text) {
            forbidden.push(format!("{}: {arrow}", relative.display()));
        }
        assert!(
            !text.contains("super::super"),
            "{}: reaches out of its folder with super::super; name the module with crate::",
            relative.display()
        );
        let is_root = relative.components().count() == 1 || relative.ends_with("mod.rs");
        assert!(
            !(is_root && root_uses_super(&text)),
            "{}: a module's root reaches the crate root with super::; name the module with crate::",
            relative.display()
        );
    }
    assert!(
        forbidden.is_empty(),
        "arrows that point up or sideways (see the table in tests/architecture.rs):\n{}",
        forbidden.join("\n")
    );
    let table: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        seen_modules, table,
        "every module of src/ is in the layer table, and no other"
    );
}

#[test]
fn lib_rs_lists_the_modules_and_nothing_else() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    for line in lib.lines() {
        let line = line.trim();
        let allowed = line.is_empty()
            || line.starts_with("//")
            || line.starts_with("pub mod ")
            || line.starts_with("#[cfg(feature");
        assert!(
            allowed,
            "src/lib.rs holds more than the module list: {line:?}"
        );
    }
}

/// What in `text` (the file `relative`) passes the limits: more than 800 lines before its
/// `#[cfg(test)]`, or a function of more than 120 lines.
fn too_long(relative: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    // The code ends where an inline test module starts (`#[cfg(test)]` then `mod tests {`); a
    // `#[cfg(test)] mod tests;` naming a file of its own ends nothing.
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].starts_with("#[cfg(test)]")
                && lines.get(i + 1).is_some_and(|next| {
                    next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{')
                })
        })
        .unwrap_or(lines.len());
    let code = &lines[..end];
    if code.len() > 800 {
        found.push(format!("{relative}: {} lines before its tests", code.len()));
    }
    // A function starts at a line `fn name(` (any visibility) and ends at the first line that
    // closes at its indentation.
    // (start, name, indentation, whether its body has opened): a multi-line signature that
    // ends with `;` before any `{` is a declaration (a trait's), not a function.
    let mut open: Option<(usize, String, usize, bool)> = None;
    for (index, line) in code.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some((start, name, at, body)) = &mut open {
            if !*body {
                if trimmed.trim_end().ends_with(';') {
                    open = None;
                    continue;
                }
                *body = trimmed.trim_end().ends_with('{');
            }
            if indent == *at && trimmed.starts_with('}') {
                let length = index - *start + 1;
                if length > 120 {
                    found.push(format!("{relative}: fn {name} is {length} lines"));
                }
                open = None;
            }
            continue;
        }
        let signature = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("async ")
            .trim_start_matches("const ");
        if let Some(rest) = signature.strip_prefix("fn ") {
            if !trimmed.ends_with(';') {
                let name = rest
                    .split(['(', '<'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let body = trimmed.trim_end().ends_with('{');
                open = Some((index, name, indent, body));
            }
        }
    }
    found
}

#[test]
fn the_size_rule_finds_a_long_function_and_a_long_file() {
    let body = "    let x = 1;\n".repeat(119);
    let long_fn = format!("pub async fn long(a: u8) -> u8 {{\n{body}}}\n");
    assert_eq!(too_long("x.rs", &long_fn), ["x.rs: fn long is 121 lines"]);
    let short_fn = format!("fn short() {{\n{}}}\n", "    let x = 1;\n".repeat(118));
    assert_eq!(too_long("x.rs", &short_fn), Vec::<String>::new());
    let long_file = "// a line\n".repeat(801);
    assert_eq!(
        too_long("y.rs", &long_file),
        ["y.rs: 801 lines before its tests"]
    );
    let tested = format!(
        "{}#[cfg(test)]\nmod tests {{\n{}}}\n",
        "// a line\n".repeat(10),
        "// test\n".repeat(900)
    );
    assert_eq!(too_long("z.rs", &tested), Vec::<String>::new());
    let declared = format!(
        "trait T {{\n    fn call<'a>(\n        &'a self,\n    ) -> u8;\n{}}}\n",
        "    // more\n".repeat(200)
    );
    assert_eq!(too_long("v.rs", &declared), Vec::<String>::new());
    let outside = format!("#[cfg(test)]\nmod tests;\n{}", "// a line\n".repeat(801));
    assert_eq!(
        too_long("w.rs", &outside),
        ["w.rs: 803 lines before its tests"]
    );
}

#[test]
fn no_source_file_passes_800_lines_before_its_tests_nor_a_function_120() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&src)
            .expect("under src/")
            .display()
            .to_string();
        // A file of unit tests alone (`mod tests;` points at it) counts as tests.
        if relative.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file");
        found.extend(too_long(&relative, &text));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
