//! `--web.config.file`: TLS, mutual TLS and basic auth, over real TLS with a test CA.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A test PKI written to a folder: a CA, a server certificate for 127.0.0.1, a client
/// certificate from the CA and one from an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    client: (Vec<CertificateDer<'static>>, Vec<u8>),
    /// From the same CA as `client`, for the SAN `grafana.example.com` only.
    other: (Vec<CertificateDer<'static>>, Vec<u8>),
    stranger: (Vec<CertificateDer<'static>>, Vec<u8>),
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    (params.signed_by(&key, issuer).unwrap(), key)
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (server, server_key) = leaf(
        &ca,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(&ca, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
    let (other, other_key) = leaf(
        &ca,
        &["grafana.example.com"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let other_ca = self::ca();
    let (stranger, stranger_key) = leaf(&other_ca, &["eve"], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_der: ca.der().clone(),
        client: (vec![client.der().clone()], client_key.serialize_der()),
        other: (vec![other.der().clone()], other_key.serialize_der()),
        stranger: (vec![stranger.der().clone()], stranger_key.serialize_der()),
        dir,
    }
}

impl Pki {
    fn web_config(&self, yaml: &str) -> String {
        let path = self.dir.path().join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_basic_auth_accepts_the_right_password_only() {
    let pki = pki();
    let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
    let web = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = Exporter::start(
        &sim.url(),
        "regions: [us-east-1]\n",
        &["--web.config.file", &web],
    )
    .await;
    let address = exporter.address.clone();

    let ok = https_get(
        &address,
        &pki.ca_der,
        None,
        "/metrics",
        &[("Authorization", &basic("prometheus", "s3cret-pass"))],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("fast_launch_exporter_build_info"));
    assert_eq!(ok.header("x-frame-options"), Some("deny"));

    for authorization in [
        Some(basic("prometheus", "wrong-pass")),
        Some(basic("eve", "s3cret-pass")),
        None,
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        let denied = https_get(&address, &pki.ca_der, None, "/metrics", &headers)
            .await
            .unwrap();
        assert_eq!(denied.status, 401, "{authorization:?}");
        assert!(denied
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"));
        assert!(!denied.text().contains("fast_launch"));
    }
    let logs = exporter.logs();
    assert!(logs.contains("basic auth failed"), "{logs}");
    assert!(
        !logs.contains("wrong-pass") && !logs.contains("s3cret-pass"),
        "a password reached the logs"
    );

    // Plain HTTP on the TLS port gets no HTTP answer: the handshake fails and the connection
    // is closed (at most a TLS alert comes back).
    let mut plain = tokio::net::TcpStream::connect(&address).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "plain HTTP on the TLS port: the connection was neither answered nor closed"
    );
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP on the TLS port got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(!String::from_utf8_lossy(&answer).contains("fast_launch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = pki();
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let (_sim, exporter) = with_web_config(&web).await;
    let address = exporter.address.clone();

    let ok = https_get(&address, &pki.ca_der, Some(&pki.client), "/-/healthy", &[])
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let without = https_get(&address, &pki.ca_der, None, "/-/healthy", &[]).await;
    assert!(
        without.is_err(),
        "no client certificate: {:?}",
        without.map(|r| r.status)
    );
    let stranger = https_get(
        &address,
        &pki.ca_der,
        Some(&pki.stranger),
        "/-/healthy",
        &[],
    )
    .await;
    assert!(
        stranger.is_err(),
        "certificate from another CA: {:?}",
        stranger.map(|r| r.status)
    );
    // The server keeps serving good clients afterwards.
    assert_eq!(
        https_get(&address, &pki.ca_der, Some(&pki.client), "/metrics", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    let output = exporter_command("http://127.0.0.1:9")
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn invalid_web_config_files_exit_2_naming_the_key() {
    let pki = pki();
    let cases = [
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n", "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: server.pem\n", "cert_file and key_file are both required"),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file: required"),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  max_version: TLS11\n", "max_version"),
        ("basic_auth_users:\n  prometheus: plain-text-password\n", "basic_auth_users.prometheus: not a bcrypt hash"),
        ("http_server_config:\n  headers:\n    Server: nginx\n", "\"Server\" cannot be set"),
        ("tls_config: {}\n", "unknown field `tls_config`"),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_allowed_sans: [prometheus]\n", "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"),
    ];
    for (yaml, expected) in cases {
        let path = pki.web_config(yaml);
        let (code, stderr) = exit_of(&["--config.file", "/dev/null", "--web.config.file", &path]);
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{yaml}\nwant: {expected}\n got: {stderr}"
        );
        assert!(!stderr.contains("plain-text-password"), "{stderr}");
    }
    // An empty file is a valid web config: plain HTTP, no authentication.
    let empty = pki.web_config("");
    let (code, stderr) = exit_of(&[
        "check-config",
        "--config.file",
        "/dev/null",
        "--web.config.file",
        &empty,
    ]);
    assert_eq!(code, Some(0), "an empty web config file: {stderr}");
}

/// `client_auth_type: VerifyClientCertIfGiven`: a client without a certificate is let in, one
/// with a certificate from the CA too, one with a certificate from another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_cert_if_given_admits_no_certificate_or_a_good_one_and_refuses_a_bad_one() {
    let pki = pki();
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
    );
    let (_sim, exporter) = with_web_config(&web).await;
    let address = exporter.address.clone();

    let without = https_get(&address, &pki.ca_der, None, "/-/healthy", &[]).await;
    assert_eq!(
        without.map(|r| r.status),
        Ok(200),
        "no client certificate is allowed"
    );
    let stranger = https_get(
        &address,
        &pki.ca_der,
        Some(&pki.stranger),
        "/-/healthy",
        &[],
    )
    .await;
    assert!(
        stranger.is_err(),
        "a certificate from another CA is verified and refused: {:?}",
        stranger.map(|r| r.status)
    );
    let good = https_get(&address, &pki.ca_der, Some(&pki.client), "/metrics", &[]).await;
    let good = good.expect("a certificate from the CA");
    assert_eq!(good.status, 200);
    assert!(good.text().contains("fast_launch_exporter_build_info"));
}

/// `tls_server_config.min_version` and `max_version`: a client that cannot speak a version in
/// the range fails the handshake; one that can is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_outside_min_and_max_version_are_refused() {
    static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let pki = pki();
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let (_sim, exporter) = with_web_config(&web).await;
    let address = exporter.address.clone();
    let get = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let (address, ca) = (address.clone(), pki.ca_der.clone());
        async move {
            https_get_speaking(versions, &address, &ca, None, "/-/healthy", &[])
                .await
                .map(|r| r.status)
        }
    };
    let old = get(TLS12).await;
    assert!(
        old.is_err(),
        "min_version TLS13: a TLS 1.2 client got {old:?}"
    );
    assert_eq!(get(TLS13).await, Ok(200));

    // max_version TLS12 (the file is read again for the next connection): the other way round.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  max_version: TLS12\n",
    )
    .unwrap();
    let new = get(TLS13).await;
    assert!(
        new.is_err(),
        "max_version TLS12: a TLS 1.3 client got {new:?}"
    );
    assert_eq!(get(TLS12).await, Ok(200));
}

#[test]
fn shipped_web_config_example_is_valid_with_real_certificates() {
    let pki = pki();
    for (from, to) in [("server.pem", "server.crt"), ("ca.pem", "ca.crt")] {
        std::fs::copy(pki.dir.path().join(from), pki.dir.path().join(to)).unwrap();
    }
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/web-config.example.yml"
    ))
    .unwrap();
    let path = pki.web_config(&example);
    let (code, stderr) = exit_of(&[
        "check-config",
        "--config.file",
        "/dev/null",
        "--web.config.file",
        &path,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let hash = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("prometheus: "))
        .unwrap();
    assert!(
        bcrypt::verify("change-me", hash).unwrap(),
        "the example's hash is of change-me"
    );
}

/// Runs `healthcheck` with `args`: (exit code, stdout + stderr).
async fn healthcheck(args: Vec<String>) -> (Option<i32>, String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .env_clear()
            .arg("healthcheck")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_plain_tls_basic_auth_and_mutual_tls_servers() {
    let sim = simulator().await;
    let plain = Exporter::start(&sim.url(), "regions: [us-east-1]\n", &[]).await;
    let (code, out) = healthcheck(vec![format!("--web.listen-address={}", plain.address)]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("healthy"), "{out}");

    let pki = pki();
    let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
    let basic = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let exporter = Exporter::start(
        &sim.url(),
        "regions: [us-east-1]\n",
        &["--web.config.file", &basic],
    )
    .await;
    let (code, out) = healthcheck(vec![
        format!("--web.listen-address={}", exporter.address),
        format!("--web.config.file={basic}"),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("basic auth"), "{out}");
    drop(exporter);

    let mtls_path = pki.dir.path().join("mtls.yml");
    std::fs::write(
        &mtls_path,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .unwrap();
    let mtls = mtls_path.display().to_string();
    let exporter = Exporter::start(
        &sim.url(),
        "regions: [us-east-1]\n",
        &["--web.config.file", &mtls],
    )
    .await;
    let (code, out) = healthcheck(vec![
        format!("--web.listen-address={}", exporter.address),
        format!("--web.config.file={mtls}"),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("requires a client certificate"), "{out}");
    // Plain HTTP against the TLS server is not healthy: the probe speaks as configured.
    let (code, out) = healthcheck(vec![format!("--web.listen-address={}", exporter.address)]).await;
    assert_eq!(code, Some(1), "{out}");
    drop(exporter);

    // Nothing listening: unhealthy, exit 1.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (code, out) = healthcheck(vec![format!("--web.listen-address={closed}")]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("unhealthy") && out.contains("cannot connect"),
        "{out}"
    );
}

/// The web config is read again while running: a new password and a rotated certificate apply
/// to the next request and connection, and a broken file keeps the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_config_changes_apply_without_restart_and_a_broken_file_keeps_the_last_good_one() {
    let pki = pki();
    let with_hash = |hash: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        )
    };
    let web = pki.web_config(&with_hash(&bcrypt::hash("old-pass", 4).unwrap()));
    let (_sim, exporter) = with_web_config(&web).await;
    let address = exporter.address.clone();
    let healthy = |ca: CertificateDer<'static>, password: &'static str| {
        let address = address.clone();
        async move {
            let auth = basic("prometheus", password);
            https_get(
                &address,
                &ca,
                None,
                "/-/healthy",
                &[("Authorization", &auth)],
            )
            .await
            .map(|r| r.status)
        }
    };
    assert_eq!(healthy(pki.ca_der.clone(), "old-pass").await, Ok(200));

    // A new password: the old one stops working at once.
    std::fs::write(&web, with_hash(&bcrypt::hash("new-pass", 4).unwrap())).unwrap();
    assert_eq!(healthy(pki.ca_der.clone(), "old-pass").await, Ok(401));
    assert_eq!(healthy(pki.ca_der.clone(), "new-pass").await, Ok(200));

    // Certificate rotation: a new CA's certificate and key in the same files.
    let new_ca = ca();
    let (server, key) = leaf(&new_ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(pki.dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(pki.dir.path().join("server.key"), key.serialize_pem()).unwrap();
    assert_eq!(healthy(new_ca.der().clone(), "new-pass").await, Ok(200));
    assert!(healthy(pki.ca_der.clone(), "new-pass").await.is_err());

    // A broken file: the last good configuration stays, and the log says why.
    std::fs::write(&web, "basic_auth_users: [oops\n").unwrap();
    assert_eq!(healthy(new_ca.der().clone(), "new-pass").await, Ok(200));
    assert_eq!(healthy(new_ca.der().clone(), "old-pass").await, Ok(401));
    exporter
        .wait_for_log("web config changed but cannot be used; the last good one stays")
        .await;
}

/// `client_allowed_sans`: a certificate from the CA is refused unless it names an allowed SAN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_allowed_sans_refuses_other_certificates_from_the_ca() {
    let pki = pki();
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [prometheus, 10.0.0.1]\n",
    );
    let (_sim, exporter) = with_web_config(&web).await;
    let address = exporter.address.clone();
    let allowed = https_get(&address, &pki.ca_der, Some(&pki.client), "/-/healthy", &[])
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    let other = https_get(&address, &pki.ca_der, Some(&pki.other), "/-/healthy", &[]).await;
    assert!(
        other.is_err(),
        "a certificate from the CA without an allowed SAN: {:?}",
        other.map(|r| r.status)
    );
    exporter
        .wait_for_log("none of its SANs is in client_allowed_sans")
        .await;
}
