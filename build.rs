//! Records the git revision for `fast_launch_exporter_build_info` and `--version`.
//! `FLE_GIT_REVISION` in the build environment wins (e.g. a Docker build without `.git`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FLE_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let revision = std::env::var("FLE_GIT_REVISION").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    });
    println!(
        "cargo:rustc-env=FLE_GIT_REVISION={}",
        revision
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    );
}
