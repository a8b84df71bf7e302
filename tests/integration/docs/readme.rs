//! The README's commands run as written, against nothing but loopback.

use std::process::{Command, Stdio};

use super::read;
use crate::harness::{config_file, exporter_command, root, Exporter, BIN};

/// What the README's shell lines are, and whether this test runs them.
enum ReadmeCommand {
    /// `fast-launch-exporter …` or `cargo run --release -- …`: run here, its arguments.
    Run(Vec<String>),
    /// Anything else, with why it is not run.
    Skip(&'static str),
}

fn classify(line: &str) -> ReadmeCommand {
    if let Some(args) = line
        .strip_prefix("cargo run --release -- ")
        .or_else(|| line.strip_prefix("fast-launch-exporter "))
    {
        return ReadmeCommand::Run(args.split_whitespace().map(String::from).collect());
    }
    let skipped: [(&str, &'static str); 4] = [
        ("cargo test", "the tests themselves"),
        (
            "helm install ",
            "needs a cluster (helm.rs checks the chart and this command's version)",
        ),
        (
            "docker run ",
            "needs Docker (assets.rs checks the Dockerfile)",
        ),
        ("docker build ", "needs Docker"),
    ];
    for (prefix, why) in skipped {
        if line.starts_with(prefix) {
            return ReadmeCommand::Skip(why);
        }
    }
    panic!("README: a command this test does not know, run it or say why not here: {line}");
}

/// The commands of the README's `sh` blocks: comments dropped, continued lines joined.
fn readme_commands() -> Vec<String> {
    let readme = read(&root().join("README.md"));
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.trim_start() == "```sh" {
            in_sh = true;
            continue;
        }
        if in_sh && line.trim_start().starts_with("```") {
            in_sh = false;
            continue;
        }
        if !in_sh || line.trim_start().starts_with('#') {
            continue;
        }
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            continue;
        }
        pending.push_str(line);
        let command = std::mem::take(&mut pending);
        if !command.trim().is_empty() {
            commands.push(command.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    commands
}

/// Every `fast-launch-exporter` and `cargo run` line of the README runs as written, from the
/// repository root, with the built binary: one-shot commands must exit 0, and the exporter
/// (the demo, or a real run whose AWS endpoint is a closed loopback port) must start serving.
/// Serving commands get `--web.listen-address 127.0.0.1:0` added, so that nothing else on the
/// machine is in the way; the README's own flags stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_commands_run_as_written() {
    let commands = readme_commands();
    let mut ran = 0;
    for command in &commands {
        let args = match classify(command) {
            ReadmeCommand::Run(args) => args,
            ReadmeCommand::Skip(why) => {
                eprintln!("README: not run here ({why}): {command}");
                continue;
            }
        };
        let one_shot = ["check-config", "--help", "--version", "help"]
            .iter()
            .any(|a| args.first().map(String::as_str) == Some(*a));
        let mut process = if args.first().map(String::as_str) == Some("demo") {
            let mut process = Command::new(BIN);
            process
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            process
        } else {
            // Credentials that reach nothing: the endpoint is a closed port.
            exporter_command("http://127.0.0.1:9")
        };
        process.current_dir(root()).args(&args);
        if one_shot {
            let output = process.output().unwrap();
            assert!(
                output.status.success(),
                "README: `{command}` exited {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            process.args(["--web.listen-address", "127.0.0.1:0"]);
            process.stderr(Stdio::piped());
            let exporter = Exporter::spawn(process, None).await;
            let response = exporter.get("/-/healthy").await;
            assert_eq!(response.status, 200, "README: `{command}`: /-/healthy");
            if args.first().map(String::as_str) == Some("demo") {
                exporter
                    .wait_for_metrics("the demo's images", |t| {
                        t.contains("aws_ec2_fast_launch_image_state{")
                    })
                    .await;
            }
        }
        ran += 1;
    }
    assert!(ran >= 3, "only {ran} README commands run: {commands:?}");

    // The configuration the README shows is valid as written.
    let readme = read(&root().join("README.md"));
    let start = readme
        .find("## A minimal configuration")
        .expect("README: ## A minimal configuration");
    let block = &readme[start..];
    let open = block.find("```yaml\n").expect("a yaml block") + 8;
    let close = block[open..].find("```").unwrap();
    let file = config_file(&block[open..open + close]);
    let output = exporter_command("http://127.0.0.1:9")
        .args(["check-config", "--config.file"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "README's minimal configuration: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
