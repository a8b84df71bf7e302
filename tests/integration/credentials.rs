//! Every credential source docs/iam.md lists, through the real credential chain of the lean AWS
//! build (no default features): each run is `--once` against the simulator with only that
//! source's environment, and must collect the account the source's keys belong to.

use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::*;

const WEB_ROLE_ARN: &str = "arn:aws:iam::222222222222:role/WebIdentityReader";
const SSO_START_URL: &str = "https://simulated.awsapps.com/start";

/// The exporter with a clean environment: no keys, IMDS off, the simulator as endpoint.
fn bare_environment(simulator_url: &str, home: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", simulator_url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .args(["--log.level", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// [`bare_environment`] running `--once`.
fn bare_command(simulator_url: &str, home: &std::path::Path) -> Command {
    let mut command = bare_environment(simulator_url, home);
    command.arg("--once");
    command
}

/// Runs `--once` and checks that it collected `account` in us-east-1.
async fn collects(name: &str, mut command: Command, account: &str) {
    let config = config_file("regions: [us-east-1]\n");
    command.arg("--config.file").arg(config.path());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{name}: --once failed\n{stdout}\n{stderr}"
    );
    assert_eq!(
        value(
            &stdout,
            "fast_launch_exporter_collection_success",
            &[("aws_account_id", account), ("aws_region", "us-east-1")]
        ),
        Some(1.0),
        "{name}\n{stdout}"
    );
}

/// A one-route-per-path HTTP server on 127.0.0.1 for the container and instance metadata
/// endpoints; unknown paths answer 404.
async fn metadata_server(routes: Vec<(&'static str, &'static str, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut first = head.split_whitespace();
                let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                let (status, body) = routes
                    .iter()
                    .find(|(m, p, _)| *m == method && *p == path)
                    .map_or((404, String::new()), |(_, _, body)| (200, body.clone()));
                // IMDSv2 token answers carry their TTL; other endpoints ignore the header.
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

fn credentials_json() -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{BASE_KEY}","SecretAccessKey":"{BASE_SECRET}","Token":"simulated-token","Expiration":"2099-01-01T00:00:00Z","LastUpdated":"2026-01-01T00:00:00Z"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_credential_source_works_in_the_lean_build() {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    sim.world()
        .set_images(ROLE_ACCOUNT, "us-east-1", vec![image(2, "enabled")]);
    let home = tempfile::tempdir().unwrap();
    let path = home.path();
    let url = sim.url();

    // Environment variables.
    let mut command = bare_command(&url, path);
    command
        .env("AWS_ACCESS_KEY_ID", BASE_KEY)
        .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET);
    collects("environment", command, BASE_ACCOUNT).await;

    // Shared credentials file, named profile.
    std::fs::write(
        path.join("credentials"),
        format!(
            "[reader]\naws_access_key_id = {BASE_KEY}\naws_secret_access_key = {BASE_SECRET}\n"
        ),
    )
    .unwrap();
    let mut command = bare_command(&url, path);
    command.env("AWS_PROFILE", "reader");
    collects("shared credentials file", command, BASE_ACCOUNT).await;
    std::fs::remove_file(path.join("credentials")).unwrap();

    // credential_process (the `credentials-process` feature).
    std::fs::write(
        path.join("config"),
        format!(
            "[default]\ncredential_process = echo '{{\"Version\": 1, \"AccessKeyId\": \"{BASE_KEY}\", \"SecretAccessKey\": \"{BASE_SECRET}\"}}'\n"
        ),
    )
    .unwrap();
    collects("credential_process", bare_command(&url, path), BASE_ACCOUNT).await;

    // SSO with a cached token (the `sso` feature): the portal answers GetRoleCredentials.
    std::fs::write(
        path.join("config"),
        format!(
            "[default]\nsso_start_url = {SSO_START_URL}\nsso_region = us-east-1\nsso_account_id = {ROLE_ACCOUNT}\nsso_role_name = Reader\n"
        ),
    )
    .unwrap();
    let hash = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf %s '{SSO_START_URL}' | sha1sum | cut -d' ' -f1"
        ))
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
    assert_eq!(
        hash.len(),
        40,
        "sha1sum is needed for the SSO token cache name"
    );
    let cache = path.join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join(format!("{hash}.json")),
        format!(
            r#"{{"accessToken":"simulated-sso-token","expiresAt":"2099-01-01T00:00:00Z","region":"us-east-1","startUrl":"{SSO_START_URL}"}}"#
        ),
    )
    .unwrap();
    collects("SSO", bare_command(&url, path), ROLE_ACCOUNT).await;
    std::fs::remove_file(path.join("config")).unwrap();

    // Web identity (IRSA): AssumeRoleWithWebIdentity with the token file.
    std::fs::write(path.join("token"), "simulated-oidc-token").unwrap();
    let mut command = bare_command(&url, path);
    command
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", path.join("token"))
        .env("AWS_ROLE_ARN", WEB_ROLE_ARN)
        .env("AWS_ROLE_SESSION_NAME", "fast-launch-exporter");
    collects("web identity", command, ROLE_ACCOUNT).await;
    assert!(sim
        .world()
        .received()
        .iter()
        .any(|r| r.action == "AssumeRoleWithWebIdentity"
            && r.param("WebIdentityToken") == Some("simulated-oidc-token")));

    // Container credentials (ECS, EKS Pod Identity) from a full URI on loopback.
    let ecs = metadata_server(vec![("GET", "/credentials", credentials_json())]).await;
    let mut command = bare_command(&url, path);
    command.env(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{ecs}/credentials"),
    );
    collects("container credentials", command, BASE_ACCOUNT).await;

    // IMDSv2: token, role name, role credentials.
    let imds = metadata_server(vec![
        (
            "PUT",
            "/latest/api/token",
            "simulated-imds-token".to_string(),
        ),
        (
            "GET",
            "/latest/meta-data/iam/security-credentials/",
            "FastLaunchInstanceRole".to_string(),
        ),
        (
            "GET",
            "/latest/meta-data/iam/security-credentials/FastLaunchInstanceRole",
            credentials_json(),
        ),
    ])
    .await;
    let mut command = bare_command(&url, path);
    command
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds);
    collects("IMDS", command, BASE_ACCOUNT).await;
}

/// Base credentials that expire are renewed from their source, and collection goes on past
/// the first credentials' expiry (which the simulator refuses with ExpiredToken): here web
/// identity, whose AssumeRoleWithWebIdentity the simulator answers with short sessions.
///
/// AWS issues no session shorter than 900 s (DurationSeconds' minimum); the simulator's
/// `default_session` compresses time so that an expiry falls within the test. What is
/// asserted is the renewal, not that AWS would hand out such sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_base_credentials_are_renewed_and_collection_goes_on_past_their_expiry() {
    const SESSION: std::time::Duration = std::time::Duration::from_secs(16);
    let sim = simulator().await;
    sim.world()
        .set_images(ROLE_ACCOUNT, "us-east-1", vec![image(2, "enabled")]);
    sim.world().default_session = SESSION;
    let home = tempfile::tempdir().unwrap();
    let path = home.path();
    std::fs::write(path.join("token"), "simulated-oidc-token").unwrap();
    let config = config_file("collection: {interval: 1s, timeout: 1s}\nregions: [us-east-1]\n");
    let mut command = bare_environment(&sim.url(), path);
    command
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", path.join("token"))
        .env("AWS_ROLE_ARN", WEB_ROLE_ARN)
        .env("AWS_ROLE_SESSION_NAME", "fast-launch-exporter")
        .args(["--web.listen-address", "127.0.0.1:0", "--config.file"])
        .arg(config.path())
        .stdout(Stdio::null());
    let exporter = Exporter::spawn(command, Some(config)).await;
    let issued = || {
        sim.world()
            .received()
            .iter()
            .filter(|r| r.action == "AssumeRoleWithWebIdentity")
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until(
        "the first credentials",
        || !issued().is_empty(),
        || exporter.logs(),
    )
    .await;
    // Seen after they were issued: their expiry is before this plus the session.
    let first_expired_by = std::time::SystemTime::now() + SESSION;
    let first = issued();
    assert_eq!(
        first[0].param("DurationSeconds"),
        None,
        "the session length is the simulator's, not asked for"
    );
    let expired_by = first_expired_by
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let text = exporter
        .wait_for_metrics("a collection after the first credentials expired", |t| {
            value(
                t,
                "fast_launch_exporter_last_success_timestamp_seconds",
                &[("aws_account_id", ROLE_ACCOUNT)],
            )
            .is_some_and(|at| at > expired_by)
        })
        .await;
    assert!(
        issued().len() >= 2,
        "renewed from the token file: {:?}",
        issued()
    );
    assert_eq!(
        value(
            &text,
            "fast_launch_exporter_collection_success",
            &[("aws_account_id", ROLE_ACCOUNT)]
        ),
        Some(1.0)
    );
    // Renewed ahead of expiry: no call went out with expired credentials.
    assert!(
        find(&text, "fast_launch_exporter_aws_errors_total", &[]).is_empty(),
        "{text}"
    );
}
