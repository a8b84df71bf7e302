//! Starts the simulator and the real exporter binary against it, and reads what the exporter serves.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fast_launch_exporter::domain::model::{FastLaunchImage, FastLaunchState};
use fast_launch_exporter::sim::{ReceivedRequest, Simulator, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The base credentials' access key and account.
pub const BASE_KEY: &str = "AKIDBASEEXAMPLE";
pub const BASE_SECRET: &str = "base-secret-never-logged";
pub const BASE_ACCOUNT: &str = "111111111111";
pub const ROLE_ACCOUNT: &str = "222222222222";
pub const ROLE_ARN: &str = "arn:aws:iam::222222222222:role/FastLaunchReader";

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const BIN: &str = env!("CARGO_BIN_EXE_fast-launch-exporter");

/// A simulator with an empty world and the base key.
pub async fn simulator() -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, World::new(BASE_KEY, BASE_ACCOUNT)).unwrap()
}

/// An image in `state` with every field set.
pub fn image(n: u32, state: &str) -> FastLaunchImage {
    FastLaunchImage {
        image_id: format!("ami-{n:017x}"),
        owner_id: BASE_ACCOUNT.to_string(),
        resource_type: "snapshot".to_string(),
        launch_template_id: format!("lt-{n:017x}"),
        launch_template_name: "windows-fast-launch".to_string(),
        launch_template_version: "1".to_string(),
        state: Some(FastLaunchState::from_aws(state)),
        state_transition_reason: "Client.UserInitiated".to_string(),
        state_transition_time: Some(1_795_168_800.123),
        target_resource_count: Some(10),
        max_parallel_launches: Some(6),
    }
}

/// The `image_id` label of image `n`.
pub fn image_id(n: u32) -> String {
    format!("ami-{n:017x}")
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `DescribeFastLaunchImages` attempts sent for `region` (0 before the first).
pub fn describes(text: &str, region: &str) -> f64 {
    value(
        text,
        "fast_launch_exporter_aws_requests_total",
        &[("aws_region", region), ("api", "DescribeFastLaunchImages")],
    )
    .unwrap_or(0.0)
}

/// A simulator (no images) and an exporter collecting its base account in us-east-1, serving
/// with the web config file `web` (not waited for: readiness probes would spend rate limits).
pub async fn with_web_config(web: &str) -> (Simulator, Exporter) {
    let sim = simulator().await;
    let exporter = Exporter::start(
        &sim.url(),
        "regions: [us-east-1]\n",
        &["--web.config.file", web],
    )
    .await;
    (sim, exporter)
}

/// An `Authorization` header value for HTTP basic auth.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// GET over TLS trusting `ca`, optionally presenting a client certificate. Err when the
/// connection or handshake fails.
pub async fn https_get(
    address: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
    client: Option<&(Vec<rustls::pki_types::CertificateDer<'static>>, Vec<u8>)>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    https_get_speaking(rustls::DEFAULT_VERSIONS, address, ca, client, path, headers).await
}

/// [`https_get`] from a client that offers only the TLS `versions` given.
pub async fn https_get_speaking(
    versions: &[&'static rustls::SupportedProtocolVersion],
    address: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
    client: Option<&(Vec<rustls::pki_types::CertificateDer<'static>>, Vec<u8>)>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain.clone(),
                rustls::pki_types::PrivateKeyDer::try_from(key.clone()).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // TLS 1.3 reports a rejected client certificate only when the client reads.
    match tls.read_to_end(&mut raw).await {
        Ok(_) => {}
        // A server that closes without close_notify after a whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    parse_response(&raw).ok_or_else(|| "no HTTP response".to_string())
}

/// The environment the exporter runs with: only these variables, so nothing on the machine
/// (profiles, IMDS) takes part.
pub fn exporter_command(simulator_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", BASE_KEY)
        .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", simulator_url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running exporter process. Killed when dropped.
pub struct Exporter {
    child: Child,
    pub address: String,
    logs: Arc<Mutex<String>>,
    _config: Option<tempfile::NamedTempFile>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `yaml` to a temporary file.
pub fn config_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, yaml.as_bytes()).unwrap();
    file
}

impl Exporter {
    /// Starts the exporter with `yaml` as its config file against `simulator_url`.
    pub async fn start(simulator_url: &str, yaml: &str, extra_args: &[&str]) -> Exporter {
        let config = config_file(yaml);
        let mut command = exporter_command(simulator_url);
        command
            .arg("--config.file")
            .arg(config.path())
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.level",
                "debug",
            ])
            .args(extra_args);
        Exporter::spawn(command, Some(config)).await
    }

    /// Starts `command` (stderr piped) and waits until it logs where it listens.
    pub async fn spawn(mut command: Command, config: Option<tempfile::NamedTempFile>) -> Exporter {
        let mut child = command.spawn().expect("exporter starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let started = Instant::now();
        let address = loop {
            if let Some(address) = find_listen_address(&logs.lock().unwrap()) {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exporter exited with {status}: {}", logs.lock().unwrap());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "exporter never listened: {}",
                logs.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Exporter {
            child,
            address,
            logs,
            _config: config,
        }
    }

    /// Starts `fast-launch-exporter demo` on a free port with the given extra flags.
    pub async fn demo(args: &[&str]) -> Exporter {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .args(["demo", "--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Exporter::spawn(command, None).await
    }

    /// The exporter's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the exporter was started with.
    pub fn config_path(&self) -> &Path {
        self._config
            .as_ref()
            .expect("started with a config file")
            .path()
    }

    /// Sends a signal (`HUP`, `TERM` …) to the exporter.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Everything the exporter logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the exporter has logged `needle`: its stderr is read by another thread, so
    /// a line written just before an answer may reach [`Self::logs`] just after it.
    pub async fn wait_for_log(&self, needle: &str) {
        wait_until(
            &format!("the log line {needle:?}"),
            || self.logs().contains(needle),
            || self.logs(),
        )
        .await;
    }

    /// Sends the signal `name` (`TERM`, `INT`) and waits for the exit status, at most `limit`.
    pub async fn stop_with(&mut self, name: &str, limit: Duration) -> Option<ExitStatus> {
        self.signal(name);
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// GET `path`: (status, headers, body).
    pub async fn get(&self, path: &str) -> Response {
        request(&self.address, "GET", path, &[]).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    }

    /// Polls `/-/ready` until it answers 200; fails the test after [`DEADLINE`].
    pub async fn wait_until_ready(&self) {
        let started = Instant::now();
        while self.get("/-/ready").await.status != 200 {
            assert!(
                started.elapsed() < DEADLINE,
                "never ready\n--- logs ---\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/metrics` until `done` holds for its text; fails the test after [`DEADLINE`].
    pub async fn wait_for_metrics(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}\n--- metrics ---\n{text}\n--- logs ---\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The demo's flags for a small organisation with every feature on (CloudWatch, events,
/// Organizations discovery, the process metrics): every family is served.
pub const EVERY_FAMILY_DEMO: &[&str] = &[
    "--demo.organization",
    "--demo.accounts",
    "2",
    "--demo.regions",
    "1",
];

/// Polls `done` until it holds; fails the test after [`DEADLINE`], naming `what` and what
/// `state` says then.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {}",
            state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The requests the simulator received for `action` in `region`.
pub fn received(sim: &Simulator, action: &str, region: &str) -> Vec<ReceivedRequest> {
    sim.world()
        .received()
        .iter()
        .filter(|r| r.action == action && r.region == region)
        .cloned()
        .collect()
}

/// Whether the server side of `stream` is still open: no answer, no close, no reset. Looks
/// without waiting or consuming anything (a non-blocking peek).
pub fn still_open(stream: &std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Opens a TCP connection to `address` and sends `part` of a request, never the rest; the
/// stream is handed back as a std one, for [`still_open`].
pub async fn half_request(address: &str, part: &[u8]) -> std::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(part).await.unwrap();
    stream.into_std().unwrap()
}

fn find_listen_address(logs: &str) -> Option<String> {
    logs.lines()
        .filter(|l| l.contains("listening"))
        .find_map(|l| {
            // logfmt: address=127.0.0.1:1234; json: "address":"127.0.0.1:1234"
            let rest = l
                .split_once("address=")
                .or_else(|| l.split_once("\"address\":"))?
                .1;
            let end = rest
                .trim_start_matches('"')
                .find(|c: char| c == '"' || c.is_whitespace() || c == ',')
                .unwrap_or(rest.len());
            Some(rest.trim_start_matches('"')[..end].to_string())
        })
}

/// Whether the value of `CI` makes a missing tool fail the test rather than skip it: any value
/// but empty, `false` or `0` (CI services set `true`, `1`, `yes` …; .ci/run sets `true`).
pub fn ci_means_fail(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !v.is_empty() && !v.eq_ignore_ascii_case("false") && v != "0"
    })
}

/// Whether this run is in CI (see [`ci_means_fail`]).
pub fn in_ci() -> bool {
    ci_means_fail(std::env::var("CI").ok().as_deref())
}

#[test]
fn ci_means_fail_for_any_value_but_empty_false_and_zero() {
    for value in ["true", "TRUE", "1", "yes", "on", "github-actions"] {
        assert!(ci_means_fail(Some(value)), "{value}");
    }
    for value in [
        None,
        Some(""),
        Some(" "),
        Some("false"),
        Some("False"),
        Some("0"),
    ] {
        assert!(!ci_means_fail(value), "{value:?}");
    }
}

/// Whether `tool` runs here. Outside CI a missing tool skips the test with a message; in CI
/// ([`in_ci`]) it fails, since .ci/run installs it.
pub fn tool_available(tool: &str, version_args: &[&str], test: &str) -> bool {
    let present = Command::new(tool)
        .args(version_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            !in_ci(),
            "{tool} is missing but CI is set: .ci/run must install it"
        );
        eprintln!("SKIPPED {test}: {tool} not installed");
    }
    present
}

/// Runs `promtool check metrics` on `text`: Some(complaints) (empty when clean), or None when
/// promtool is not installed outside CI (in CI, [`in_ci`], a missing promtool fails the test).
pub fn promtool_check_metrics(text: &str, test: &str) -> Option<String> {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            !in_ci(),
            "promtool is missing but CI is set: .ci/run must install Debian's prometheus package"
        );
        eprintln!("SKIPPED {test}: promtool not installed");
        return None;
    }
    let file = config_file(text);
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "promtool check metrics < {}",
            file.path().display()
        ))
        .output()
        .unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool failed: {complaints}");
    Some(complaints)
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body, gunzipped when the response says it is gzip.
    pub fn decoded(&self) -> String {
        if self.header("content-encoding") == Some("gzip") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut text)
                .unwrap();
            text
        } else {
            self.text()
        }
    }
}

/// A plain HTTP/1.1 request with `Connection: close`.
pub async fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw).expect("an HTTP response")
}

/// Parses a whole HTTP/1.1 response (status, headers, body; chunked bodies decoded).
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v): &(String, String)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Some(Response {
        status,
        body: if chunked { dechunk(&body) } else { body },
        headers,
    })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the samples of a text exposition (comments skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Sample {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => panic!("bad sample line {line:?}"),
    };
    let mut labels = Vec::new();
    let mut rest = rest;
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next().expect("label block closes");
            match c {
                '}' => {
                    end = i;
                    break;
                }
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next().expect("label value closes");
                        match c {
                            '\\' => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => panic!("dangling escape"),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                ',' => {}
                other => key.push(other),
            }
        }
        rest = &body[end + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().expect("sample value");
    assert!(
        fields.next().is_none(),
        "sample carries a timestamp: {line:?}"
    );
    Sample {
        name: name.to_string(),
        labels,
        value: value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    }
}

/// The samples of `name` whose labels include every pair of `labels`.
pub fn find(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .collect()
}

/// `fast_launch_exporter_collection_success` of the target the labels pick.
pub fn success(text: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(text, "fast_launch_exporter_collection_success", labels)
}

/// The value of the one sample of `name` matching `labels`, if there is exactly one.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(text, name, labels);
    match found.as_slice() {
        [one] => Some(one.value),
        [] => None,
        many => panic!(
            "{} samples of {name} match {labels:?}: {many:?}",
            many.len()
        ),
    }
}
