//! The web server's limits through the real binary: idle and slow connections hold back no
//! scrape, `--web.max-requests`, the web config's `rate_limit` (before authentication), cached
//! basic auth checks, several `--web.listen-address` (with a connection cap too), and
//! `process_cpu_seconds_total` with its fraction.

use std::time::{Duration, Instant};

use fast_launch_exporter::sim::Simulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

async fn one_image_exporter(extra_args: &[&str]) -> (Simulator, Exporter) {
    let sim = simulator().await;
    sim.world()
        .set_images(BASE_ACCOUNT, "us-east-1", vec![image(1, "enabled")]);
    let exporter = Exporter::start(&sim.url(), "regions: [us-east-1]\n", extra_args).await;
    exporter.wait_until_ready().await;
    (sim, exporter)
}

/// Before, 64 connections that sent half a request kept every scrape out for up to 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_connections_hold_back_no_scrape() {
    // As the exporter does for itself, so that this process can hold the sockets.
    fast_launch_exporter::serve::raise_open_files_limit();
    let (_sim, exporter) = one_image_exporter(&[]).await;
    let mut slow = Vec::new();
    for i in 0..1000 {
        // Nothing, part of a request line, or headers that never end.
        let part: &[u8] = match i % 3 {
            0 => b"",
            1 => b"GET /metr",
            _ => b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        };
        slow.push(half_request(&exporter.address, part).await);
    }
    for path in ["/metrics", "/-/healthy", "/metrics"] {
        let response = tokio::time::timeout(DEADLINE, exporter.get(path))
            .await
            .unwrap_or_else(|_| panic!("{path} not answered with 1,000 slow connections open"));
        assert_eq!(response.status, 200, "{path}");
        // The old server kept every scrape out until the 10 s header timeout had closed slow
        // connections; here each answer comes while all of them are still open. (How fast:
        // docs/performance.md "Scrapes under 1,000 slow connections", measured about 60 ms.)
        let closed = slow.iter().filter(|s| !still_open(s)).count();
        assert_eq!(
            closed, 0,
            "{path} was answered only after {closed} slow connections were closed"
        );
    }
    drop(slow);
    assert!(!exporter.logs().contains("panicked"), "{}", exporter.logs());
}

/// `--web.max-requests 1`: while one scrape's body is still being sent (its client reads
/// nothing), another is answered 503; the permit comes back when the server gives up on that
/// client (30 s without progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_answers_503_while_the_cap_is_taken() {
    // About 30 MB of text: more than the loopback socket buffers hold, so the first scrape's
    // body stays unsent while its client reads nothing.
    let exporter = Exporter::demo(&[
        "--demo.accounts",
        "100",
        "--demo.regions",
        "10",
        "--demo.images",
        "20",
        "--demo.latency",
        "1ms",
        "--demo.cloudwatch",
        "false",
        "--web.max-requests",
        "1",
    ])
    .await;
    exporter.wait_until_ready().await;
    // A scrape that got the permit (its answer starts with 200) and whose client then reads
    // nothing more.
    let deadline = Instant::now() + DEADLINE;
    let mut stuck = loop {
        let mut stream = TcpStream::connect(&exporter.address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut head))
            .await
            .expect("a scrape's answer begins")
            .unwrap();
        if &head == b"HTTP/1.1 200" {
            break stream;
        }
        assert!(Instant::now() < deadline, "no scrape got the permit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let busy = wait_for_status(&exporter, "/metrics", 503).await;
    assert!(
        busy.text().contains("--web.max-requests"),
        "{}",
        busy.text()
    );
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
    // The stuck client, still connected, reads nothing: after 30 s without progress its
    // connection is closed and the permit comes back.
    wait_for_status(&exporter, "/metrics", 200).await;
    // The permit came back because the server gave up on the stuck client, not before: its
    // connection is closed, with the response cut short (a whole one would end in the last
    // chunk; a connection still open would not end at all).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stuck.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the permit came back while the stuck client was still connected"
    );
    if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        assert!(
            head.contains("transfer-encoding: chunked"),
            "a streamed scrape: {head}"
        );
    }
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "the stuck client's response was sent whole ({} bytes) before the permit came back",
        rest.len()
    );
}

/// Polls `path` until it answers `status` (at most 60 s).
async fn wait_for_status(exporter: &Exporter, path: &str, status: u16) -> Response {
    let started = Instant::now();
    loop {
        let response = exporter.get(path).await;
        if response.status == status {
            return response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{path} never answered {status}; last {}",
            response.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rate_limit` answers 429 beyond its burst, before authentication (no bcrypt check spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_before_authentication() {
    let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "rate_limit:\n  interval: 1m\n  burst: 2\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    // Not waiting for readiness: polling /-/ready would spend the tokens.
    let (_sim, exporter) = with_web_config(web.to_str().unwrap()).await;
    let auth = basic("prometheus", "s3cret-pass");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            request(
                &exporter.address,
                "GET",
                "/-/healthy",
                &[("Authorization", &auth)],
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    // Refused before authentication: no credentials gives 429, not 401.
    let anonymous = exporter.get("/-/healthy").await;
    assert_eq!(anonymous.status, 429);
}

/// A successful bcrypt check is remembered: the same user and password skip it; a wrong
/// password pays it in full, every time. Shown by order rather than by a timing threshold:
/// while one wrong password's check runs, five requests with the cached right password are
/// answered one after the other. Paying a check each, they would take five times as long as
/// it; a cached wrong password would be answered before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_basic_auth_checks_are_cached_and_wrong_passwords_are_not() {
    // Cost 10: each check takes tens to hundreds of milliseconds.
    let hash = bcrypt::hash("s3cret-pass", 10).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    let (_sim, exporter) = with_web_config(web.to_str().unwrap()).await;
    let healthy = |password: &'static str| {
        let address = exporter.address.clone();
        async move {
            let auth = basic("prometheus", password);
            let status = request(&address, "GET", "/-/healthy", &[("Authorization", &auth)])
                .await
                .status;
            (status, Instant::now())
        }
    };
    // Each pays a full check once; the right one is remembered from then on.
    assert_eq!(healthy("s3cret-pass").await.0, 200);
    assert_eq!(healthy("wrong-pass").await.0, 401);

    let wrong = tokio::spawn(healthy("wrong-pass"));
    for _ in 0..5 {
        assert_eq!(healthy("s3cret-pass").await.0, 200);
    }
    let cached_done = Instant::now();
    let (status, wrong_done) = wrong.await.unwrap();
    assert_eq!(status, 401);
    assert!(
        cached_done < wrong_done,
        "five cached checks should be answered while one wrong password is still being \
         checked; the wrong password was answered {:?} earlier",
        cached_done - wrong_done
    );
}

/// The addresses the exporter logged it listens on.
fn listening(exporter: &Exporter) -> Vec<String> {
    exporter
        .logs()
        .lines()
        .filter(|l| l.contains("message=listening"))
        .filter_map(|l| l.split_once("address=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches('"').to_string())
        .collect()
}

/// A repeated `--web.listen-address` serves on each address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listen_address_serves() {
    let (_sim, exporter) = one_image_exporter(&["--web.listen-address", "127.0.0.1:0"]).await;
    let addresses = listening(&exporter);
    assert_eq!(addresses.len(), 2, "{}", exporter.logs());
    assert_ne!(addresses[0], addresses[1]);
    for address in &addresses {
        let response = request(address, "GET", "/metrics", &[]).await;
        assert_eq!(response.status, 200, "{address}");
        assert!(response.text().contains("aws_ec2_fast_launch_image_state"));
    }
}

/// With `--web.max-connections 1` and two addresses, a client of either address is served
/// while no other connection is open: the one permit is not held by a wait on the other address
/// (every HTTP thread waits on all addresses at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_allowed_serves_every_listen_address() {
    // A client the permit never reaches waits in the kernel's backlog forever: bounded here.
    tokio::time::timeout(Duration::from_secs(60), async {
        let (_sim, exporter) = one_image_exporter(&[
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.max-connections",
            "1",
        ])
        .await;
        let addresses = listening(&exporter);
        assert_eq!(addresses.len(), 2, "{}", exporter.logs());
        for round in 0..4 {
            for address in &addresses {
                let response = tokio::time::timeout(
                    Duration::from_secs(10),
                    request(address, "GET", "/-/healthy", &[]),
                )
                .await
                .unwrap_or_else(|_| panic!("{address} not served in round {round}"));
                assert_eq!(response.status, 200, "{address}");
            }
        }
    })
    .await
    .expect("a client of one of the addresses was never served");
}

/// `process_cpu_seconds_total` has a fraction (to the microsecond), not whole seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_cpu_seconds_has_a_fraction() {
    let (_sim, exporter) = one_image_exporter(&[]).await;
    let started = Instant::now();
    loop {
        let text = exporter.metrics().await;
        let seconds = value(&text, "process_cpu_seconds_total", &[]).expect("the process metric");
        // Whole seconds would read 0 for the first second of CPU time.
        if seconds > 0.0 {
            assert!(seconds < 1.0 || seconds.fract() != 0.0, "{seconds}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "process_cpu_seconds_total stayed 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
