//! Releases: the GitHub workflows (schema, pinned actions, least permissions, what a version tag
//! builds and publishes), and one version everywhere: Cargo.toml's version is the chart's, the
//! kustomize base's image tag, the Dockerfile's, the CHANGELOG's newest release, the README's and
//! what `--version` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::harness::{root, tool_available, BIN};
use crate::kubernetes::{base_dir, kubectl_available, render};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REPOSITORY: &str = "https://github.com/fast-launch-exporter/fast-launch-exporter";
const IMAGE: &str = "ghcr.io/fast-launch-exporter/fast-launch-exporter";
const CHART: &str = "deploy/helm/fast-launch-exporter";
const CHART_REPOSITORY: &str = "oci://ghcr.io/fast-launch-exporter/charts";
const TARGETS: [&str; 2] = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn yaml(relative: &str) -> Value {
    serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every file of .github/workflows, sorted.
fn workflow_files() -> Vec<PathBuf> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn workflow(name: &str) -> Value {
    yaml(&format!(".github/workflows/{name}"))
}

fn job<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    let job = &workflow["jobs"][name];
    assert!(job.is_mapping(), "no job {name}");
    job
}

fn steps(job: &Value) -> &[Value] {
    job["steps"].as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// The one step of `job` that uses `action` (owner/name, any ref).
fn step_using<'a>(job: &'a Value, action: &str) -> &'a Value {
    let found: Vec<&Value> = steps(job)
        .iter()
        .filter(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{action}@")))
        })
        .collect();
    assert_eq!(found.len(), 1, "steps using {action}: {found:?}");
    found[0]
}

/// Every `run:` script of `job`, joined.
fn scripts(job: &Value) -> String {
    steps(job)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn mapping(pairs: &[(&str, &str)]) -> Value {
    Value::Mapping(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), Value::from(*v)))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// The workflows

#[test]
fn every_workflow_passes_check_jsonschema_with_the_github_workflow_schema() {
    let test = "every_workflow_passes_check_jsonschema_with_the_github_workflow_schema";
    if !tool_available("check-jsonschema", &["--version"], test) {
        return;
    }
    let files = workflow_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for needed in ["ci.yml", "release.yml"] {
        assert!(names.iter().any(|n| n == needed), "no {needed}: {names:?}");
    }
    for name in &names {
        assert!(
            name.ends_with(".yml") || name.ends_with(".yaml"),
            "not a workflow file: .github/workflows/{name}"
        );
    }
    let check = |files: &[PathBuf]| {
        let out = Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(files)
            .output()
            .expect("check-jsonschema runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), printed)
    };
    let (ok, printed) = check(&files);
    assert!(ok, "check-jsonschema {names:?}:\n{printed}");
    assert!(printed.contains("ok -- validation done"), "{printed}");

    // The schema refuses what GitHub refuses: a job without runs-on, a misspelt key.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  test:\n    step:\n      - run: .ci/run\n",
    )
    .unwrap();
    let (ok, printed) = check(&[broken]);
    assert!(
        !ok,
        "check-jsonschema accepted a broken workflow:\n{printed}"
    );
}

/// Why `uses: <value>  # <comment>` is not pinned, or None when it is: a local path (this
/// repository's own workflow), or an action at a 40-hex commit SHA with its full version
/// (`# vX.Y.Z`) in the comment.
fn pin_problem(value: &str, comment: &str) -> Option<String> {
    if let Some(path) = value.strip_prefix("./") {
        return (!root().join(path).is_file()).then(|| format!("{value}: no such file"));
    }
    if value.starts_with("docker://") {
        return Some(format!("{value}: a container action, not pinned by SHA"));
    }
    let Some((action, reference)) = value.split_once('@') else {
        return Some(format!("{value}: no @ref"));
    };
    if action.split('/').count() < 2 || action.split('/').any(str::is_empty) {
        return Some(format!("{value}: not owner/name"));
    }
    if reference.len() != 40
        || !reference
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Some(format!("{value}: {reference} is not a full commit SHA"));
    }
    let version = comment.strip_prefix("# v").unwrap_or("");
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!(
            "{value}: the comment {comment:?} is not the version (# vX.Y.Z)"
        ));
    }
    None
}

#[test]
fn the_pin_check_refuses_tags_short_shas_and_missing_versions() {
    let sha = "11d5960a326750d5838078e36cf38b85af677262";
    assert_eq!(
        pin_problem(&format!("actions/checkout@{sha}"), "# v4.4.0"),
        None
    );
    assert_eq!(pin_problem("./.github/workflows/ci.yml", ""), None);
    for (value, comment) in [
        ("actions/checkout@v4", "# v4.4.0"),
        ("actions/checkout@v4.4.0", ""),
        ("actions/checkout@11d5960", "# v4.4.0"),
        (
            "actions/checkout@11D5960A326750D5838078E36CF38B85AF677262",
            "# v4.4.0",
        ),
        ("actions/checkout", "# v4.4.0"),
        (
            "checkout@11d5960a326750d5838078e36cf38b85af677262",
            "# v4.4.0",
        ),
        (
            "actions/checkout@11d5960a326750d5838078e36cf38b85af677262",
            "",
        ),
        (
            "actions/checkout@11d5960a326750d5838078e36cf38b85af677262",
            "# v4",
        ),
        (
            "actions/checkout@11d5960a326750d5838078e36cf38b85af677262",
            "# latest",
        ),
        ("docker://alpine:3.20", ""),
        ("./.github/workflows/missing.yml", ""),
    ] {
        assert!(
            pin_problem(value, comment).is_some(),
            "{value} {comment} passed"
        );
    }
}

/// Every `uses:` line of a workflow: (line number, value, comment).
fn uses_lines(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim_start();
            let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
            let rest = line.strip_prefix("uses:")?;
            let (value, comment) = match rest.find(" #") {
                Some(at) => (&rest[..at], rest[at..].trim()),
                None => (rest, ""),
            };
            Some((
                i + 1,
                value.trim().trim_matches(['"', '\'']).to_string(),
                comment.to_string(),
            ))
        })
        .collect()
}

/// Every `uses` of a parsed workflow: jobs calling a workflow, and steps.
fn uses_values(workflow: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (_, job) in workflow["jobs"].as_mapping().unwrap() {
        found.extend(job["uses"].as_str().map(str::to_string));
        found.extend(
            steps(job)
                .iter()
                .filter_map(|s| s["uses"].as_str().map(str::to_string)),
        );
    }
    found
}

#[test]
fn every_action_is_pinned_to_a_full_commit_sha_with_its_version_in_a_comment() {
    let mut pins: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut actions = 0;
    for file in workflow_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let lines = uses_lines(&text);
        // The same uses as YAML sees them: none hides in a form the line scan misses.
        let parsed: Value = serde_yaml::from_str(&text).unwrap();
        let mut from_lines: Vec<String> = lines.iter().map(|(_, v, _)| v.clone()).collect();
        let mut from_yaml = uses_values(&parsed);
        from_lines.sort();
        from_yaml.sort();
        assert_eq!(from_lines, from_yaml, "{name}: uses lines and YAML differ");
        for (line, value, comment) in lines {
            if let Some(problem) = pin_problem(&value, &comment) {
                panic!("{name}:{line}: {problem}");
            }
            if let Some((action, sha)) = value.split_once('@') {
                actions += 1;
                pins.entry(action.to_string())
                    .or_default()
                    .insert((sha.to_string(), comment));
            }
        }
    }
    assert!(actions >= 10, "only {actions} pinned actions found");
    // One action, one pin, in every workflow.
    for (action, versions) in &pins {
        assert_eq!(
            versions.len(),
            1,
            "{action} is pinned differently: {versions:?}"
        );
    }
}

#[test]
fn workflows_are_read_only_and_widen_permissions_only_in_the_jobs_that_publish() {
    let read_only = mapping(&[("contents", "read")]);
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let workflow: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            workflow["permissions"], read_only,
            "{name}: top-level permissions"
        );
        // The only secret is the job's own token.
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("secrets.") {
            assert!(
                text[at..].starts_with("secrets.GITHUB_TOKEN"),
                "{name}: {}",
                &text[at..text.len().min(at + 40)]
            );
        }
    }
    let ci = workflow("ci.yml");
    for (job_name, job) in ci["jobs"].as_mapping().unwrap() {
        assert!(job["permissions"].is_null(), "ci.yml {job_name:?} widens");
    }

    let release = workflow("release.yml");
    let publish = mapping(&[("contents", "read"), ("packages", "write")]);
    let expected: BTreeMap<&str, Value> = [
        ("version", Value::Null),
        ("test", Value::Null),
        ("binaries", Value::Null),
        ("image", publish.clone()),
        ("image-index", publish.clone()),
        ("chart", publish),
        ("release", mapping(&[("contents", "write")])),
    ]
    .into_iter()
    .collect();
    let jobs = release["jobs"].as_mapping().unwrap();
    let names: BTreeSet<&str> = jobs.keys().map(|k| string(k, "job name")).collect();
    assert_eq!(names, expected.keys().copied().collect());
    for (name, permissions) in &expected {
        assert_eq!(
            &job(&release, name)["permissions"],
            permissions,
            "release.yml {name}"
        );
    }
    // The widened jobs are the ones that log in to ghcr.io, and the one that creates the release.
    for name in &names {
        let job = job(&release, name);
        let logs_in = steps(job).iter().any(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/login-action@"))
        }) || scripts(job).contains("helm registry login ghcr.io");
        assert_eq!(
            logs_in,
            job["permissions"]["packages"] == "write",
            "release.yml {name}: packages: write exactly where it pushes"
        );
        assert_eq!(
            scripts(job).contains("gh release create"),
            job["permissions"]["contents"] == "write",
            "release.yml {name}: contents: write exactly where it releases"
        );
    }
}

#[test]
fn ci_workflow_runs_ci_run_on_pull_requests_and_pushes_to_main() {
    let ci = workflow("ci.yml");
    let triggers: Vec<&str> = ci["on"]
        .as_mapping()
        .expect("ci.yml: on is a mapping")
        .keys()
        .map(|k| string(k, "trigger"))
        .collect();
    assert_eq!(triggers, ["pull_request", "push", "workflow_call"]);
    assert_eq!(strings(&ci["on"]["push"]["branches"]), ["main"]);
    assert!(ci["on"]["pull_request"].is_null(), "every pull request");
    let jobs = ci["jobs"].as_mapping().unwrap();
    assert_eq!(jobs.len(), 1, "ci.yml: one job");
    let test = job(&ci, "test");
    assert_eq!(test["runs-on"], "ubuntu-24.04");
    let run: Vec<&Value> = steps(test)
        .iter()
        .filter(|s| s["run"] == ".ci/run")
        .collect();
    assert_eq!(run.len(), 1, "ci.yml: one step runs .ci/run");
    assert_eq!(run[0]["env"]["CI"], "true");
    // The toolchain is the crate's rust-version, with the components .ci/run needs.
    let scripts = scripts(test);
    assert!(scripts.contains("/^rust-version = /"), "{scripts}");
    assert!(scripts.contains("--component rustfmt,clippy"), "{scripts}");
}

/// Runs the release workflow's version step (its script, as written) for `tag`: Ok(its
/// outputs) or Err(what it printed).
fn run_version_step(tag: &str) -> Result<String, String> {
    let release = workflow("release.yml");
    let step = steps(job(&release, "version"))
        .iter()
        .find(|s| s["id"] == "cargo")
        .expect("version: step cargo");
    let script = string(&step["run"], "version script");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    std::fs::write(&output, "").unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(root())
        .env("GITHUB_REF_NAME", tag)
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("GITHUB_OUTPUT", &output)
        .output()
        .expect("bash runs");
    if out.status.success() {
        Ok(std::fs::read_to_string(&output).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[test]
fn release_workflow_runs_on_version_tags_and_first_checks_the_tag_against_cargo_toml() {
    let release = workflow("release.yml");
    let triggers: Vec<&str> = release["on"]
        .as_mapping()
        .expect("release.yml: on is a mapping")
        .keys()
        .map(|k| string(k, "trigger"))
        .collect();
    assert_eq!(triggers, ["push"]);
    let push = release["on"]["push"].as_mapping().unwrap();
    assert_eq!(push.len(), 1, "tags only: {push:?}");
    assert_eq!(strings(&release["on"]["push"]["tags"]), ["v*.*.*"]);

    // The version job: Cargo.toml's version and rust-version, and the tag must be v<version>.
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert_eq!(
        run_version_step(&format!("v{VERSION}")).unwrap(),
        format!("version={VERSION}\nrust-version={rust_version}\nrevision=0123456789ab\n")
    );
    for wrong in [
        VERSION.to_string(),
        format!("v{VERSION}.1"),
        format!("v{VERSION}-rc.1"),
        "v999.0.0".to_string(),
    ] {
        let printed = run_version_step(&wrong).expect_err(&wrong);
        assert!(
            printed.contains(&format!("tag {wrong} is not v{VERSION}")),
            "{printed}"
        );
    }

    // Everything waits for the version check; nothing is pushed before the tests pass; the
    // release is created last.
    let needs = |name: &str| -> Vec<String> {
        strings(&job(&release, name)["needs"])
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    assert!(needs("version").is_empty());
    for name in [
        "test",
        "binaries",
        "image",
        "image-index",
        "chart",
        "release",
    ] {
        assert!(needs(name).contains(&"version".to_string()), "{name}");
    }
    assert_eq!(needs("image"), ["version", "test"]);
    assert_eq!(needs("image-index"), ["version", "image"]);
    assert_eq!(needs("chart"), ["version", "image-index"]);
    assert_eq!(
        needs("release"),
        ["version", "binaries", "image-index", "chart"]
    );
    assert_eq!(job(&release, "test")["uses"], "./.github/workflows/ci.yml");
}

#[test]
fn release_workflow_builds_both_architectures_and_both_platforms() {
    let release = workflow("release.yml");
    assert_eq!(release["env"]["IMAGE"], IMAGE);
    assert_eq!(release["env"]["CHART"], CHART);
    assert_eq!(release["env"]["CHART_REPOSITORY"], CHART_REPOSITORY);

    // Binaries: each target on its own native runner, in the Dockerfile's builder image.
    let binaries = job(&release, "binaries");
    let expected: Value = serde_yaml::from_str(&format!(
        "- {{target: {}, runner: ubuntu-24.04}}\n- {{target: {}, runner: ubuntu-24.04-arm}}\n",
        TARGETS[0], TARGETS[1]
    ))
    .unwrap();
    assert_eq!(binaries["strategy"]["matrix"]["include"], expected);
    assert_eq!(binaries["runs-on"], "${{ matrix.runner }}");
    assert_eq!(
        binaries["container"]["image"],
        "rust:${{ needs.version.outputs.rust-version }}-bookworm"
    );
    let built = scripts(binaries);
    for needle in [
        r#"cargo build --release --locked --bin fast-launch-exporter --target "$TARGET""#,
        r#"name="fast-launch-exporter-$VERSION-$TARGET""#,
        r#"sha256sum "$name.tar.gz" > "$name.tar.gz.sha256""#,
        "GLIBC_2.34",
    ] {
        assert!(built.contains(needle), "binaries lack {needle}:\n{built}");
    }
    assert_eq!(
        strings(&binaries["env"]["TARGET"]),
        ["${{ matrix.target }}"]
    );
    let upload = step_using(binaries, "actions/upload-artifact");
    assert_eq!(
        upload["with"]["path"],
        "dist/*.tar.gz\ndist/*.tar.gz.sha256\n"
    );

    // The image: each platform on its own native runner, with an SBOM and max provenance.
    let image = job(&release, "image");
    let expected: Value = serde_yaml::from_str(
        "- {platform: linux/amd64, arch: amd64, runner: ubuntu-24.04}\n\
         - {platform: linux/arm64, arch: arm64, runner: ubuntu-24.04-arm}\n",
    )
    .unwrap();
    assert_eq!(image["strategy"]["matrix"]["include"], expected);
    assert_eq!(image["runs-on"], "${{ matrix.runner }}");
    let build = &step_using(image, "docker/build-push-action")["with"];
    assert_eq!(build["context"], ".");
    assert_eq!(build["platforms"], "${{ matrix.platform }}");
    assert_eq!(build["sbom"], Value::Bool(true));
    assert_eq!(build["provenance"], "mode=max");
    assert_eq!(
        build["outputs"],
        "type=image,name=${{ env.IMAGE }},push-by-digest=true,name-canonical=true,push=true"
    );
    assert_eq!(
        build["build-args"],
        "VERSION=${{ needs.version.outputs.version }}\n\
         FLE_GIT_REVISION=${{ needs.version.outputs.revision }}\n"
    );
    let dockerfile = read("Dockerfile");
    for arg in ["ARG VERSION=", "ARG FLE_GIT_REVISION="] {
        assert!(dockerfile.contains(arg), "Dockerfile lacks {arg}");
    }

    // One index for both platforms, tagged X.Y.Z and X.Y.
    let index = job(&release, "image-index");
    let meta = step_using(index, "docker/metadata-action");
    assert_eq!(meta["with"]["images"], "${{ env.IMAGE }}");
    assert_eq!(meta["with"]["flavor"], "latest=false");
    assert_eq!(
        meta["with"]["tags"],
        "type=semver,pattern={{version}}\ntype=semver,pattern={{major}}.{{minor}}\n"
    );
    let created = scripts(index);
    for needle in [
        r#"docker buildx imagetools create "${args[@]}" "${sources[@]}""#,
        r#"sort == ["linux/amd64", "linux/arm64"]"#,
    ] {
        assert!(created.contains(needle), "image-index lacks {needle}");
    }

    // The chart, with a pinned helm.
    let chart = job(&release, "chart");
    let helm = &step_using(chart, "azure/setup-helm")["with"]["version"];
    let helm = string(helm, "helm version");
    let parts: Vec<&str> = helm.trim_start_matches('v').split('.').collect();
    assert!(
        helm.starts_with('v')
            && parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "helm is not pinned to a version: {helm}"
    );
    let pushed = scripts(chart);
    for needle in [
        r#"helm package "$CHART" --destination dist"#,
        r#"helm push "dist/fast-launch-exporter-$VERSION.tgz" "$CHART_REPOSITORY""#,
    ] {
        assert!(pushed.contains(needle), "chart lacks {needle}:\n{pushed}");
    }

    // The release: the tar.gz and their sha256 for both targets, and the chart.
    let released = scripts(job(&release, "release"));
    for needle in [
        r#"gh release create "$GITHUB_REF_NAME" --repo "$GITHUB_REPOSITORY" --verify-tag"#,
        r#"dist/*.tar.gz dist/*.tar.gz.sha256 "dist/fast-launch-exporter-$VERSION.tgz""#,
        "for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do",
        r#"sha256sum -c "fast-launch-exporter-$VERSION-$target.tar.gz.sha256""#,
    ] {
        assert!(
            released.contains(needle),
            "release lacks {needle}:\n{released}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One version everywhere

#[test]
fn cargo_toml_names_the_repository() {
    let manifest = read("Cargo.toml");
    for (key, value) in [
        ("repository", REPOSITORY.to_string()),
        ("homepage", REPOSITORY.to_string()),
        ("documentation", format!("{REPOSITORY}#readme")),
    ] {
        let line = format!("{key} = \"{value}\"");
        assert_eq!(
            manifest.lines().filter(|l| *l == line).count(),
            1,
            "Cargo.toml lacks {line}"
        );
    }
    assert_eq!(env!("CARGO_PKG_REPOSITORY"), REPOSITORY);
}

#[test]
fn helm_chart_version_and_app_version_are_the_cargo_version() {
    let path = format!("{CHART}/Chart.yaml");
    assert!(
        root().join(&path).is_file(),
        "{path} is missing: the chart must ship with version and appVersion {VERSION}"
    );
    let chart = yaml(&path);
    assert_eq!(chart["name"], "fast-launch-exporter");
    assert_eq!(string(&chart["version"], "version"), VERSION, "{path}");
    assert_eq!(
        string(&chart["appVersion"], "appVersion"),
        VERSION,
        "{path}"
    );
    let values = read(&format!("{CHART}/values.yaml"));
    assert!(values.contains(IMAGE), "{CHART}/values.yaml: not {IMAGE}");
}

#[test]
fn kustomize_base_runs_the_released_image_at_the_cargo_version() {
    let base = yaml("deploy/kubernetes/base/kustomization.yaml");
    let expected: Value = serde_yaml::from_str(&format!(
        "- name: fast-launch-exporter\n  newName: {IMAGE}\n  newTag: \"{VERSION}\"\n"
    ))
    .unwrap();
    assert_eq!(base["images"], expected);
    if !kubectl_available("kustomize_base_runs_the_released_image_at_the_cargo_version") {
        return;
    }
    let images: Vec<String> = render(&base_dir())
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|c| string(&c["image"], "image").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(images, [format!("{IMAGE}:{VERSION}")]);
}

#[test]
fn dockerfile_version_default_is_the_cargo_version() {
    let dockerfile = read("Dockerfile");
    let defaults: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("ARG VERSION"))
        .collect();
    assert_eq!(defaults, [format!("ARG VERSION={VERSION}")]);
    assert!(dockerfile.contains(r#"org.opencontainers.image.version="${VERSION}""#));
    assert!(dockerfile.contains(&format!(
        r#"org.opencontainers.image.source="{REPOSITORY}""#
    )));
}

#[test]
fn changelog_newest_release_is_the_cargo_version() {
    let changelog = read("CHANGELOG.md");
    let headings: Vec<&str> = changelog.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(headings[0], "## [Unreleased]");
    let newest = headings.get(1).expect("no release under Unreleased");
    assert!(
        newest.starts_with(&format!("## [{VERSION}] - ")),
        "the newest release is {newest:?}, Cargo.toml says {VERSION}"
    );
}

#[test]
fn binary_prints_the_cargo_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    let printed = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("fast-launch-exporter {VERSION} (revision ");
    assert!(
        printed.starts_with(&prefix) && printed.ends_with(")\n") && printed.lines().count() == 1,
        "{printed:?}"
    );
}

/// `x.y.z` at the start of `text` (digits and dots, three parts), if any.
fn version_at(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let candidate = text[..end].trim_end_matches('.');
    let parts: Vec<&str> = candidate.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then_some(candidate)
}

/// The text files under `dir` (recursively).
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text_files(&path, out);
        } else if std::fs::read_to_string(&path).is_ok() {
            out.push(path);
        }
    }
}

#[test]
fn readme_docs_and_deploy_name_the_released_artifacts_at_the_cargo_version() {
    let mut files = vec![root().join("README.md"), root().join("Dockerfile")];
    text_files(&root().join("docs"), &mut files);
    text_files(&root().join("deploy"), &mut files);
    let minor = VERSION.rsplit_once('.').unwrap().0;
    let mut seen = 0;
    for file in &files {
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("fast-launch-exporter:latest") && !text.contains("newTag: latest"),
            "{name} deploys an unversioned image"
        );
        // The image at X.Y.Z or X.Y, the archives and kustomize tags at X.Y.Z.
        for (at, _) in text.match_indices(&format!("{IMAGE}:")) {
            let tag: String = text[at + IMAGE.len() + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let tag = tag.trim_end_matches('.');
            // A placeholder (`:<tag>`) is no version; `:latest` is refused above.
            if !tag.is_empty() {
                assert!(tag == VERSION || tag == minor, "{name}: {IMAGE}:{tag}");
                seen += 1;
            }
        }
        for marker in ["fast-launch-exporter-", "newTag: \"", "V="] {
            for (at, _) in text.match_indices(marker) {
                if let Some(found) = version_at(&text[at + marker.len()..]) {
                    assert_eq!(found, VERSION, "{name}: {marker}{found}");
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 8, "only {seen} versioned names found");

    // Where the image and the binaries come from, and that building them is optional.
    let readme = read("docs/install.md");
    let section = |heading: &str| -> &str {
        let start = readme
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("docs/install.md: no {heading}"));
        let rest = &readme[start + heading.len() + 2..];
        // Up to the next heading (a `#` line in a code block is a shell comment).
        let end = ["\n## ", "\n### "]
            .iter()
            .filter_map(|h| rest.find(h))
            .min()
            .unwrap_or(rest.len());
        &rest[..end]
    };
    let deploying = section("## Released artifacts");
    for needle in [
        format!("`{IMAGE}:{VERSION}`"),
        format!("`{CHART_REPOSITORY}/fast-launch-exporter`, version `{VERSION}`"),
        format!("`fast-launch-exporter-{VERSION}-{}.tar.gz`", TARGETS[0]),
        format!("`fast-launch-exporter-{VERSION}-{}.tar.gz`", TARGETS[1]),
        "`linux/amd64` and `linux/arm64`".to_string(),
        "is optional".to_string(),
    ] {
        assert!(
            deploying.contains(&needle),
            "docs/install.md Released artifacts lacks {needle}"
        );
    }
    let docker = section("## Docker");
    for needle in [
        format!("IMAGE={IMAGE}:{VERSION}\n"),
        "Building your own is optional".to_string(),
        format!("--build-arg VERSION={VERSION}"),
    ] {
        assert!(
            docker.contains(&needle),
            "docs/install.md Docker lacks {needle}"
        );
    }
}
