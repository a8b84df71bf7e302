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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod deadline;
mod landing;
mod routes;

use self::deadline::WriteDeadline;
use self::routes::respond;
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
/// Connections are served by one single-threaded runtime per core, each accepting from every
/// listener, as nginx's workers do: a connection stays on the thread that accepted it, so a
/// scrape's writes never hop between threads (on two cores, the hops of a work-stealing
/// runtime made a 2 MB scrape 1.5 times slower), and the collectors' work on the main
/// runtime never delays them. A thread that cannot be started leaves its share to the caller's
/// runtime.
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
    let server = Server {
        state,
        connections: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections))),
        shutdown,
    };
    let listeners: Vec<std::net::TcpListener> = listeners
        .into_iter()
        .filter_map(|listener| match listener.into_std() {
            Ok(listener) => Some(listener),
            Err(error) => {
                error!(error = %error, "cannot hand a listener to the HTTP threads; not serving on it");
                None
            }
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut running = Vec::with_capacity(threads);
    for index in 0..threads {
        let started = match server.start_thread(index, &listeners) {
            Ok((start, done)) => match start.await {
                Ok(Ok(())) => Ok(done),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(std::io::Error::other("the thread ended before its runtime")),
            },
            Err(error) => Err(error),
        };
        match started {
            Ok(done) => running.push(done),
            Err(error) => warn!(error = %error, "cannot start an HTTP thread; the others serve"),
        }
    }
    if running.is_empty() {
        server.serve_here(listeners).await;
        return;
    }
    drop(listeners);
    for done in running {
        let _ = done.await;
    }
    info!("HTTP server stopped");
}

/// Whether an HTTP thread's runtime started.
type Started = tokio::sync::oneshot::Receiver<std::io::Result<()>>;

/// What every HTTP thread shares.
#[derive(Clone)]
struct Server {
    state: Arc<AppState>,
    connections: Option<Arc<Semaphore>>,
    shutdown: CancellationToken,
}

/// How many tasks a runtime (an HTTP thread's, or the main one) runs between checks for I/O
/// events (tokio's default is 61): a new connection (a health probe) or an AWS answer is
/// noticed only at such a check while tasks keep the runtime busy, and an `epoll_wait` that
/// returns at once costs about a microsecond.
pub const EVENT_INTERVAL: u32 = 8;

impl Server {
    /// Starts an HTTP thread serving its own handles of `listeners`. The first answer says
    /// whether its runtime started; the second comes when it has stopped.
    fn start_thread(
        &self,
        index: usize,
        listeners: &[std::net::TcpListener],
    ) -> std::io::Result<(Started, tokio::sync::oneshot::Receiver<()>)> {
        let own = listeners
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<std::io::Result<Vec<_>>>()?;
        let (started, start) = tokio::sync::oneshot::channel();
        let (stopped, done) = tokio::sync::oneshot::channel();
        let server = self.clone();
        // The runtime is built on the thread: one built here would be dropped here, inside the
        // caller's runtime (which tokio refuses), if the thread could not be started.
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .event_interval(EVENT_INTERVAL)
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = started.send(Ok(()));
                        runtime.block_on(server.serve_here(own));
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
                let _ = stopped.send(());
            })?;
        Ok((start, done))
    }

    /// Accepts on `listeners` from this runtime until shutdown, then drains its connections.
    async fn serve_here(self, listeners: Vec<std::net::TcpListener>) {
        let listeners: Vec<TcpListener> = listeners
            .into_iter()
            .filter_map(|listener| match TcpListener::from_std(listener) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    warn!(error = %error, "cannot accept on a listener");
                    None
                }
            })
            .collect();
        let graceful = GracefulShutdown::new();
        if !listeners.is_empty() {
            accept(&listeners, self, &graceful).await;
        }
        debug!("HTTP thread stopped accepting; draining requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("some HTTP connections did not finish in time");
        }
    }
}

/// The next connection on any of `listeners`.
async fn accept_any(
    listeners: &[TcpListener],
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    std::future::poll_fn(|cx| {
        for listener in listeners {
            if let std::task::Poll::Ready(accepted) = listener.poll_accept(cx) {
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Accepts connections on `listeners` until `shutdown`: one loop for all of them, so that a
/// `--web.max-connections` permit it holds while it waits serves whichever listener a client
/// comes to.
async fn accept(listeners: &[TcpListener], server: Server, graceful: &GracefulShutdown) {
    let Server {
        state,
        connections,
        shutdown,
    } = server;
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
            accepted = accept_any(listeners) => match accepted {
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
        let stream = WriteDeadline::new(stream);
        let watcher = graceful.watcher();
        let state = state.clone();
        tokio::spawn(async move {
            match state.web_config.current().tls.clone() {
                None => serve_connection(stream, state, watcher, peer).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, state, watcher, peer).await,
                        Ok(Err(error)) => {
                            debug!(peer = %peer, error = %error, "TLS handshake failed")
                        }
                        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

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
