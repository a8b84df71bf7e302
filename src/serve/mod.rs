//! The HTTP server: `/metrics` (or the configured telemetry path), `/`, `/-/healthy`, `/-/ready`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod deadline;
mod landing;
mod routes;
mod threads;

use self::deadline::WriteDeadline;
use self::routes::respond;
use self::threads::{Accepted, Worker};
use crate::config::web::{AuthOutcome, LiveWebConfig, WebConfig};
use crate::expose::body::Stitched;
use crate::expose::{Format, MetricsRenderer};
use crate::targets::Registry;

/// A reload request; the answer says whether the new configuration was taken.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Where and how the HTTP server serves.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The path metrics are served on (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// The most connections open at once, 0 for no limit (`--web.max-connections`).
    pub max_connections: usize,
    /// The most `/metrics` requests served at once, 0 for no limit (`--web.max-requests`).
    pub max_requests: usize,
    /// TLS, basic auth and headers (`--web.config.file`).
    pub web_config: WebConfig,
    /// The file `web_config` was read from, watched for changes.
    pub web_config_file: Option<std::path::PathBuf>,
    /// Whether `POST`/`PUT /-/reload` reload the configuration (`--web.enable-lifecycle`);
    /// off, they answer 403, as Prometheus does. `SIGHUP` reloads either way.
    pub enable_lifecycle: bool,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            telemetry_path: "/metrics".to_string(),
            max_connections: 0,
            max_requests: 40,
            web_config: WebConfig::default(),
            web_config_file: None,
            enable_lifecycle: false,
        }
    }
}

/// Raises the soft limit of open files to the hard limit, as Go programs such as node_exporter
/// do at start: every idle or slow HTTP connection holds a descriptor, and the common soft
/// limit of 1,024 would cap them long before memory does.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                    tracing::debug!("cannot raise the open files limit");
                }
            }
        }
    }
}

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (line and headers) accepted; scrapes send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long a connection may make no progress sending a response before it is closed: a client
/// that stops reading would otherwise keep its response (and its `--web.max-requests` permit)
/// forever.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers read.
pub struct AppState {
    /// The targets and their data.
    pub registry: Arc<Registry>,
    /// Renders `/metrics`.
    pub renderer: MetricsRenderer,
    /// Where metrics are served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// Where `POST /-/reload` sends its request.
    pub reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` may reload.
    pub enable_lifecycle: bool,
    /// TLS, basic auth and extra headers.
    pub web_config: LiveWebConfig,
    /// `--web.max-requests`: the `/metrics` requests served at once (None: no limit); one more
    /// is answered 503 at once, as the exporter-toolkit does.
    pub scrapes: Option<Arc<Semaphore>>,
    /// The main runtime, whose blocking pool renders, checks passwords and builds the landing
    /// page for every HTTP thread (a pool of their own each would multiply the threads).
    pub blocking: tokio::runtime::Handle,
    /// The renders (a snapshot of every target, megabytes at 17,000) run at once: one per core.
    /// They are CPU work, so more at once are no faster, and each would hold its own snapshot.
    pub renders: Semaphore,
}

impl AppState {
    /// The state of a server with `web`'s options, serving `registry` through `renderer` and
    /// sending reload requests to `reload`. Made on the main runtime, whose blocking pool the
    /// server then uses.
    pub fn new(
        registry: Arc<Registry>,
        renderer: MetricsRenderer,
        reload: tokio::sync::mpsc::Sender<ReloadRequest>,
        web: &WebOptions,
    ) -> AppState {
        AppState {
            registry,
            renderer,
            telemetry_path: web.telemetry_path.clone(),
            reload,
            enable_lifecycle: web.enable_lifecycle,
            web_config: LiveWebConfig::new(web.web_config_file.clone(), web.web_config.clone()),
            scrapes: (web.max_requests > 0).then(|| Arc::new(Semaphore::new(web.max_requests))),
            blocking: tokio::runtime::Handle::current(),
            renders: Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A whole body in memory.
fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

/// Serves HTTP on every listener until `shutdown` is cancelled, then stops accepting and lets
/// in-flight requests finish (up to a few seconds).
///
/// One loop accepts on every listener and hands each connection to the HTTP thread with the
/// fewest open ([`threads`]: one single-threaded runtime per core); a thread that cannot be
/// started leaves its share to the others, and if none starts, the caller's runtime serves.
///
/// Connections are not what is capped: an idle or slow connection costs a task and a small
/// buffer, and holds back no scrape (the header timeout closes it). The work is capped instead:
/// `--web.max-requests` concurrent `/metrics` requests (see [`AppState::scrapes`]), and
/// `max_connections` open connections only when set (0: no cap but the file descriptors).
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<AppState>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let count = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        match Worker::start(index, state.clone()).await {
            Ok(worker) => workers.push(worker),
            Err(error) => warn!(error = %error, "cannot start an HTTP thread; the others serve"),
        }
    }
    if workers.is_empty() {
        workers.push(Worker::here(state.clone()));
    }
    let connections = (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections)));
    accept(&listeners, &workers, connections, &shutdown).await;
    drop(listeners);
    info!("HTTP server stopped accepting; draining requests");
    // Every worker told first, so that they drain at the same time.
    let drained: Vec<_> = workers.into_iter().map(Worker::close).collect();
    for done in drained {
        let _ = done.await;
    }
}

/// The next connection on any of `listeners`, asking them from `first` on (so that a flood on
/// one listener does not always go before the others).
async fn accept_any(
    listeners: &[TcpListener],
    first: usize,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    std::future::poll_fn(|cx| {
        for i in 0..listeners.len() {
            let listener = &listeners[(first % listeners.len() + i) % listeners.len()];
            if let std::task::Poll::Ready(accepted) = listener.poll_accept(cx) {
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Accepts connections on `listeners` until `shutdown` and hands each to the worker with the
/// fewest open (ties in turn). One loop for every listener, so that the `--web.max-connections`
/// permit it holds while it waits serves whichever listener a client comes to.
async fn accept(
    listeners: &[TcpListener],
    workers: &[Worker],
    connections: Option<Arc<Semaphore>>,
    shutdown: &CancellationToken,
) {
    let mut turn = 0;
    loop {
        // At the cap (when set), new connections wait in the kernel's backlog until one closes.
        let permit = match &connections {
            None => None,
            Some(connections) => tokio::select! {
                permit = connections.clone().acquire_owned() => match permit {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            },
        };
        let (stream, peer) = tokio::select! {
            accepted = accept_any(listeners, turn) => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // As Go's net/http does: a response's last small write (the end of a chunked body)
        // must not wait for the client's delayed ACK of the write before it.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(peer = %peer, error = %error, "TCP_NODELAY could not be set");
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                warn!(peer = %peer, error = %error, "cannot hand a connection to an HTTP thread");
                continue;
            }
        };
        turn = turn.wrapping_add(1);
        let open: Vec<usize> = workers.iter().map(Worker::open).collect();
        let chosen = fewest_open(&open, turn).map(|index| &workers[index]);
        let accepted = Accepted {
            stream,
            peer,
            permit,
        };
        if !chosen.is_some_and(|worker| worker.hand(accepted)) {
            warn!(peer = %peer, "an HTTP thread has stopped; connection closed");
        }
    }
}

/// The worker with the fewest connections `open`; of several, the first from `turn` on, so that
/// connections of idle workers go to each in turn.
fn fewest_open(open: &[usize], turn: usize) -> Option<usize> {
    (0..open.len())
        .map(|i| (turn % open.len() + i) % open.len())
        .min_by_key(|&index| open[index])
}

/// One accepted connection, served after the TLS handshake when TLS is on.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    state: Arc<AppState>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let stream = WriteDeadline::new(stream);
    match state.web_config.current().tls.clone() {
        None => serve_connection(stream, state, watcher, peer).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, state, watcher, peer).await,
                Ok(Err(error)) => debug!(peer = %peer, error = %error, "TLS handshake failed"),
                Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
            }
        }
    }
}

/// How many tasks a runtime (an HTTP thread's, or the main one) runs between checks for I/O
/// events (tokio's default is 61): a new connection (a health probe) or an AWS answer is
/// noticed only at such a check while tasks keep the runtime busy, and an `epoll_wait` that
/// returns at once costs about a microsecond.
pub const EVENT_INTERVAL: u32 = 8;

/// Serves HTTP/1.1 on one accepted (and, with TLS, handshaken) connection.
async fn serve_connection<S>(
    stream: S,
    state: Arc<AppState>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(&state, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        debug!(peer = %peer, error = %error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::routes::{accepts_gzip, negotiate};
    use super::*;

    fn request_with(encoding: &str) -> Request<()> {
        Request::builder()
            .header(header::ACCEPT_ENCODING, encoding)
            .body(())
            .unwrap()
    }

    #[test]
    fn a_connection_goes_to_the_worker_with_the_fewest_open_ties_in_turn() {
        assert_eq!(fewest_open(&[3, 1], 0), Some(1));
        assert_eq!(fewest_open(&[0, 5, 0], 1), Some(2));
        assert_eq!(fewest_open(&[2, 2, 2], 0), Some(0));
        assert_eq!(fewest_open(&[2, 2, 2], 1), Some(1));
        assert_eq!(fewest_open(&[2, 2, 2], 2), Some(2));
        assert_eq!(fewest_open(&[], 0), None);
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&request_with("gzip")));
        assert!(accepts_gzip(&request_with("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(&request_with("gzip;q=0")));
        assert!(!accepts_gzip(&request_with("br")));
        assert!(!accepts_gzip(&Request::new(())));
    }

    #[test]
    fn openmetrics_only_when_preferred() {
        let with = |accept: &str| {
            negotiate(
                &Request::builder()
                    .header(header::ACCEPT, accept)
                    .body(())
                    .unwrap(),
            )
        };
        // Prometheus 2.x's default.
        assert_eq!(
            with("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            with("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
            Format::Text
        );
        assert_eq!(with("*/*"), Format::Text);
        assert_eq!(with("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(negotiate(&Request::new(())), Format::Text);
    }
}
