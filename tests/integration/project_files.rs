//! Project files: LICENSE, CHANGELOG, SECURITY, and the systemd unit (systemd-analyze verify).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{root, tool_available};

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

const UNIT: &str = "deploy/systemd/fast-launch-exporter.service";
const EXEC_START: &str = "/usr/local/bin/fast-launch-exporter --config.file=/etc/fast-launch-exporter/config.yaml --web.listen-address=:9849";

/// The unit as shipped, with ExecStart pointing at the binary this test run built: `verify`
/// checks that the command exists and is executable. Written under its own name in a temporary
/// directory.
fn unit_for_this_build() -> (tempfile::TempDir, PathBuf) {
    let text = read(UNIT);
    let installed = "ExecStart=/usr/local/bin/fast-launch-exporter ";
    assert_eq!(text.matches(installed).count(), 1, "{UNIT}: one ExecStart");
    let built = format!("ExecStart={} ", env!("CARGO_BIN_EXE_fast-launch-exporter"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fast-launch-exporter.service");
    std::fs::write(&path, text.replace(installed, &built)).unwrap();
    (dir, path)
}

/// `Key=value` lines of the unit, comments and section headers left out.
fn directives() -> Vec<(String, String)> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (key, value) = l.split_once('=').unwrap_or_else(|| panic!("{UNIT}: {l}"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn values(key: &str) -> Vec<String> {
    directives()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

fn value(key: &str) -> String {
    let values = values(key);
    assert_eq!(values.len(), 1, "{UNIT}: {key} set {} times", values.len());
    values.into_iter().next().unwrap()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let test = "systemd_unit_passes_systemd_analyze_verify";
    if !tool_available("systemd-analyze", &["--version"], test) {
        return;
    }
    let (_dir, unit) = unit_for_this_build();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && printed.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{printed}",
        out.status
    );
}

/// `systemd-analyze security` rates the sandbox; 2.0 and below is "OK" (the scale is 0–10, the
/// threshold is given in tenths).
#[test]
fn systemd_unit_exposure_is_low() {
    if !tool_available(
        "systemd-analyze",
        &["--version"],
        "systemd_unit_exposure_is_low",
    ) {
        return;
    }
    let (_dir, unit) = unit_for_this_build();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "systemd-analyze security {UNIT}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_is_hardened_and_runs_the_documented_command() {
    let exec_start = value("ExecStart");
    assert!(
        exec_start.starts_with(EXEC_START),
        "{UNIT}: ExecStart={exec_start}"
    );
    // Extra flags from the optional environment file.
    assert_eq!(exec_start, format!("{EXEC_START} $ARGS"));
    assert_eq!(
        value("EnvironmentFile"),
        "-/etc/default/fast-launch-exporter"
    );
    for (key, expected) in [
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ReadOnlyPaths", "/etc/fast-launch-exporter"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(value(key), expected, "{UNIT}: {key}");
    }
    assert_eq!(
        values("SystemCallFilter"),
        ["@system-service", "~@privileged @resources"]
    );
    // The process_* metrics read /proc/stat, which ProcSubset=pid would hide.
    assert!(values("ProcSubset").is_empty());
}

#[test]
fn license_is_the_apache_2_0_text() {
    let license = read("LICENSE");
    let words: Vec<&str> = license.split_whitespace().collect();
    assert_eq!(
        words[..6],
        ["Apache", "License", "Version", "2.0,", "January", "2004"]
    );
    for needle in [
        "http://www.apache.org/licenses/",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "1. Definitions.",
        "2. Grant of Copyright License.",
        "3. Grant of Patent License.",
        "4. Redistribution.",
        "5. Submission of Contributions.",
        "6. Trademarks.",
        "7. Disclaimer of Warranty.",
        "8. Limitation of Liability.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
        "http://www.apache.org/licenses/LICENSE-2.0",
    ] {
        assert!(license.contains(needle), "LICENSE lacks {needle:?}");
    }
    // The text published at apache.org/licenses/LICENSE-2.0.txt has 1581 words.
    assert_eq!(
        words.len(),
        1581,
        "LICENSE is not the verbatim Apache-2.0 text"
    );
    assert!(read("Cargo.toml").contains("license = \"Apache-2.0\""));
}

#[test]
fn changelog_follows_keep_a_changelog() {
    let changelog = read("CHANGELOG.md");
    assert!(changelog.starts_with("# Changelog\n"));
    assert!(changelog.contains("https://keepachangelog.com/en/1.1.0/"));
    let releases: Vec<&str> = changelog.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(releases[0], "## [Unreleased]");
    // The version Cargo.toml builds has its section, with an ISO date.
    let version = env!("CARGO_PKG_VERSION");
    let release = releases
        .iter()
        .find(|l| l.starts_with(&format!("## [{version}] - ")))
        .unwrap_or_else(|| panic!("no section for {version}: {releases:?}"));
    let date = release.rsplit(' ').next().unwrap();
    assert!(
        date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }),
        "{release}"
    );
    for heading in changelog.lines().filter(|l| l.starts_with("### ")) {
        assert!(
            [
                "### Added",
                "### Changed",
                "### Deprecated",
                "### Removed",
                "### Fixed",
                "### Security"
            ]
            .contains(&heading),
            "not a Keep a Changelog heading: {heading}"
        );
    }
}

#[test]
fn security_policy_says_how_to_report_and_what_is_protected() {
    let security = read("SECURITY.md");
    for heading in [
        "# Security policy",
        "## Supported versions",
        "## Reporting a vulnerability",
        "## What the exporter protects",
        "## What it does not protect",
    ] {
        assert!(
            security.lines().any(|l| l == heading),
            "SECURITY.md lacks {heading:?}"
        );
    }
    for needle in [
        "privately",
        "external id",
        "--web.config.file",
        "No AWS calls at scrape time",
        "ec2:DescribeFastLaunchImages",
    ] {
        assert!(security.contains(needle), "SECURITY.md lacks {needle:?}");
    }
}
