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
use tracing::{debug, info, warn};

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
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            telemetry_path: "/metrics".to_string(),
            max_connections: 0,
            max_requests: 40,
            web_config: WebConfig::default(),
            web_config_file: None,
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
    /// TLS, basic auth and extra headers.
    pub web_config: LiveWebConfig,
    /// `--web.max-requests`: the `/metrics` requests served at once (None: no limit); one more
    /// is answered 503 at once, as the exporter-toolkit does.
    pub scrapes: Option<Arc<Semaphore>>,
}

impl AppState {
    /// The state of a server with `web`'s options, serving `registry` through `renderer` and
    /// sending reload requests to `reload`.
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
            web_config: LiveWebConfig::new(web.web_config_file.clone(), web.web_config.clone()),
            scrapes: (web.max_requests > 0).then(|| Arc::new(Semaphore::new(web.max_requests))),
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
    let graceful = Arc::new(GracefulShutdown::new());
    let connections = (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections)));
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept(
            listener,
            state.clone(),
            connections.clone(),
            graceful.clone(),
            shutdown.clone(),
        ));
    }
    while accepting.join_next().await.is_some() {}
    info!("HTTP server stopped accepting; draining requests");
    let graceful = Arc::into_inner(graceful).expect("every accept loop has ended");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("some HTTP connections did not finish in time");
    }
}

/// Accepts connections on one listener until `shutdown`.
async fn accept(
    listener: TcpListener,
    state: Arc<AppState>,
    connections: Option<Arc<Semaphore>>,
    graceful: Arc<GracefulShutdown>,
    shutdown: CancellationToken,
) {
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
            accepted = listener.accept() => match accepted {
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
        let stream = WriteDeadline {
            inner: stream,
            stalled: None,
        };
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

/// A connection whose writes fail once they have made no progress for
/// [`WRITE_STALL_TIMEOUT`]; reads (an idle keep-alive connection) are not limited here.
struct WriteDeadline<S> {
    inner: S,
    /// Since when writes have been blocked.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// What a write returned, with the deadline applied: progress clears it, Pending starts it.
    fn progress<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if poll.is_pending() {
            return self.stall(cx);
        }
        self.stalled = None;
        poll
    }

    /// After a write returned Pending: Pending until the deadline, then an error.
    fn stall<T>(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<T>> {
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of the response for 30 s",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// Authenticates, routes, and adds the configured headers.
async fn respond(state: &Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let web = state.web_config.current();
    // Before authentication, so that a flood costs no bcrypt check.
    let limited = web.rate_limit.as_ref().is_some_and(|limit| !limit.allow());
    let mut response = if limited {
        text(StatusCode::TOO_MANY_REQUESTS, "429 too many requests\n")
    } else if web.requires_auth() {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let shared = Arc::clone(&web);
        // bcrypt takes tens of milliseconds on purpose: keep it off the async threads.
        let outcome =
            tokio::task::spawn_blocking(move || shared.authenticate(authorization.as_deref()))
                .await
                .unwrap_or(AuthOutcome::Missing);
        match outcome {
            AuthOutcome::Allowed => handle(state, request).await,
            AuthOutcome::Missing => unauthorized(),
            AuthOutcome::Denied(user) => {
                // The user name only; the password is never logged.
                warn!(user = %user, path = %request.uri().path(), "basic auth failed");
                unauthorized()
            }
        }
    } else {
        handle(state, request).await
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn unauthorized() -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"fast-launch-exporter\""),
    );
    response
}

async fn handle(state: &Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    if path == "/-/reload" {
        if request.method() != Method::POST && request.method() != Method::PUT {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
            return response;
        }
        return reload(state).await;
    }
    let known = path == state.telemetry_path || matches!(path, "/" | "/-/healthy" | "/-/ready");
    if !known {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if has_body(&request) {
        return text(
            StatusCode::BAD_REQUEST,
            "400 bad request: GET takes no body\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == state.telemetry_path {
        const BUSY: &str =
            "503 too many concurrent scrapes (--web.max-requests); try again later\n";
        let permit = match &state.scrapes {
            None => None,
            Some(scrapes) => match scrapes.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, BUSY),
            },
        };
        let format = negotiate(&request);
        let gzip = accepts_gzip(&request);
        if request.method() == Method::HEAD {
            // hyper sends no body for HEAD: the headers a GET gets, nothing rendered.
            return metrics_response(Stitched::new(Vec::new(), false, permit), format, gzip);
        }
        // The parts are mostly cached chunks, but a target whose data changed is rendered
        // again, and gzip compresses chunks not compressed yet: milliseconds to seconds for a
        // large target, on the blocking pool so that no runtime worker (probes, other
        // connections) waits for it. Sending compresses only the fresh lines, a piece at a time.
        let shared = Arc::clone(state);
        let body = tokio::task::spawn_blocking(move || {
            let parts =
                shared
                    .renderer
                    .exposition(&shared.registry, SystemTime::now(), format, gzip);
            Stitched::new(parts, gzip, permit)
        })
        .await;
        return match body {
            Ok(body) => metrics_response(body, format, gzip),
            Err(error) => {
                warn!(error = %error, "rendering the metrics failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 rendering the metrics failed\n",
                )
            }
        };
    }
    match path {
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.registry.ready() => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: not every target of the configuration has been collected yet\n",
        ),
        _ => html(landing_page(state)),
    }
}

/// Whether a request announces a body (GET and HEAD take none).
fn has_body<B>(request: &Request<B>) -> bool {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    length || request.headers().contains_key(header::TRANSFER_ENCODING)
}

async fn reload(state: &AppState) -> Response<Body> {
    let (respond, answer) = tokio::sync::oneshot::channel();
    if state.reload.send(respond).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match answer.await {
        Ok(Ok(())) => text(StatusCode::OK, "configuration reloaded\n"),
        Ok(Err(message)) => {
            let mut response = Response::new(full(Bytes::from(format!(
                "failed to reload config: {message}\n"
            ))));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn html(body: String) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// OpenMetrics when the request's `Accept` prefers `application/openmetrics-text` (any version:
/// 1.0.0 is served) to the text format, as Prometheus's default scrape does; else text 0.0.4.
fn negotiate<B>(request: &Request<B>) -> Format {
    let (mut open_metrics, mut text) = (0.0f32, 0.0f32);
    for item in request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => open_metrics = open_metrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if open_metrics > 0.0 && open_metrics >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Whether the request's `Accept-Encoding` allows gzip (a `q=0` refuses it).
fn accepts_gzip<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn metrics_response(
    body: Stitched<Option<tokio::sync::OwnedSemaphorePermit>>,
    format: Format,
    encoded: bool,
) -> Response<Body> {
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if encoded {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn landing_page(state: &AppState) -> String {
    let snapshot = state.registry.snapshot(SystemTime::now());
    let mut rows = String::new();
    for target in &snapshot.targets {
        let account_label = match (target.account_id.as_deref(), target.account_name.as_deref()) {
            (Some(id), Some(name)) => format!("{id} ({name})"),
            (Some(id), None) => id.to_string(),
            (None, Some(name)) => format!("unknown ({name})"),
            (None, None) => "unknown".to_string(),
        };
        let result = match (
            &target.duplicate_of,
            target.health.tried,
            target.health.last_ok,
        ) {
            (Some(_), _, _) => "not collected (duplicate)",
            (None, false, _) => "not yet collected",
            (None, true, true) => "ok",
            (None, true, false) => "failed",
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&account_label),
            escape(&target.key.region),
            result,
            target.images.as_ref().map_or(0, |i| i.len()),
            escape(target.health.last_error.as_deref().unwrap_or("")),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Fast Launch Exporter</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head>\n\
         <body><h1>Fast Launch Exporter</h1>\n\
         <p>Prometheus exporter for AWS EC2 Windows fast launch (DescribeFastLaunchImages).</p>\n\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\n\
         <table><tr><th>Account</th><th>Region</th><th>Last result</th><th>Images</th><th>Last error</th></tr>\n\
         {rows}</table>\n<p>Version {version} ({revision})</p></body></html>\n",
        path = escape(&state.telemetry_path),
        version = crate::expose::VERSION,
        revision = crate::expose::REVISION,
    )
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
