//! Records the git revision for `fast_launch_exporter_build_info` and `--version`.
//! `FLE_GIT_REVISION` in the build environment wins (e.g. a Docker build without `.git`).
//!
//! Cargo reruns this script when a watched file changes. A commit changes the branch's ref file
//! (or `packed-refs`), not `HEAD`, so both are watched along with `HEAD` (a branch switch or a
//! detached checkout). Paths come from `git rev-parse --git-path`, which also finds them in
//! worktrees.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FLE_GIT_REVISION");
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        // The branch's directory, not its file: a branch that lives only in `packed-refs`
        // gets a loose file at its next commit, which a watch on a missing file would miss.
        if let Some((directory, _)) = branch.rsplit_once('/') {
            watched.push(directory.to_string());
        }
    }
    for name in watched {
        // A missing path would make Cargo rerun this script on every build.
        if let Some(path) =
            git(&["rev-parse", "--git-path", &name]).filter(|p| std::path::Path::new(p).exists())
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // Without git (a source tarball), watch nothing more: the revision stays `unknown`.
    println!("cargo:rerun-if-changed=build.rs");
    let revision = std::env::var("FLE_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    println!(
        "cargo:rustc-env=FLE_GIT_REVISION={}",
        revision.unwrap_or_else(|| "unknown".to_string())
    );
}
