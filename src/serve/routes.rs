//! The routes: authentication, `/metrics` (content negotiation, gzip, the request limit), `/`,
//! `/-/healthy`, `/-/ready`, `/-/reload`, and the configured response headers.

use super::landing::landing_page;
use super::*;

/// Authenticates, routes, and adds the configured headers.
pub(super) async fn respond(state: &Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
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
        let outcome = state
            .blocking
            .spawn_blocking(move || shared.authenticate(authorization.as_deref()))
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
        if !state.enable_lifecycle {
            return text(StatusCode::FORBIDDEN, LIFECYCLE_OFF);
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
    // Both snapshot every target (megabytes at 17,000): they share --web.max-requests.
    let permit = if path == state.telemetry_path || path == "/" {
        const BUSY: &str =
            "503 too many concurrent scrapes (--web.max-requests); try again later\n";
        match &state.scrapes {
            None => None,
            Some(scrapes) => match scrapes.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, BUSY),
            },
        }
    } else {
        None
    };
    if path == state.telemetry_path {
        return metrics(state, &request, permit).await;
    }
    match path {
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.registry.ready() => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: not every target of the configuration has been collected yet\n",
        ),
        // hyper sends no body for HEAD: nothing rendered.
        _ if request.method() == Method::HEAD => html(String::new()),
        _ => {
            // Counting and sorting every target (milliseconds at 17,000) on the blocking pool,
            // as the metrics are rendered: no runtime worker waits for it.
            let shared = Arc::clone(state);
            let query = request.uri().query().map(str::to_string);
            let render = state.renders.acquire().await;
            let page = state.blocking.spawn_blocking(move || {
                let page = landing_page(&shared, query.as_deref());
                drop(permit);
                page
            });
            let page = page.await;
            drop(render);
            match page {
                Ok(page) => html(page),
                Err(error) => {
                    warn!(error = %error, "rendering the landing page failed");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 rendering the landing page failed\n",
                    )
                }
            }
        }
    }
}

/// `GET`/`HEAD` of the telemetry path, holding `permit` (of `--web.max-requests`) until the
/// body is sent.
async fn metrics(
    state: &Arc<AppState>,
    request: &Request<Incoming>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response<Body> {
    let format = negotiate(request);
    let gzip = accepts_gzip(request);
    if request.method() == Method::HEAD {
        // hyper sends no body for HEAD: the headers a GET gets, nothing rendered.
        return metrics_response(Stitched::new(Vec::new(), false, permit), format, gzip);
    }
    // The parts are mostly cached chunks, but a target whose data changed is rendered
    // again, and gzip compresses chunks not compressed yet: milliseconds to seconds for a
    // large target, on the blocking pool so that no runtime worker (probes, other
    // connections) waits for it. Sending compresses only the fresh lines, a piece at a time.
    let render = state.renders.acquire().await;
    let now = SystemTime::now();
    let kept = state.registry.kept_snapshot(now);
    if let Some(snapshot) = kept.filter(|s| state.renderer.prepared(s, format, gzip)) {
        // Every cached line is ready: the fresh lines around them cost less than the hop.
        let parts = state.renderer.scrape(&snapshot, now, format, gzip);
        drop(render);
        return metrics_response(Stitched::new(parts, gzip, permit), format, gzip);
    }
    let shared = Arc::clone(state);
    let body = state
        .blocking
        .spawn_blocking(move || {
            let parts = shared
                .renderer
                .exposition(&shared.registry, now, format, gzip);
            Stitched::new(parts, gzip, permit)
        })
        .await;
    drop(render);
    match body {
        Ok(body) => metrics_response(body, format, gzip),
        Err(error) => {
            warn!(error = %error, "rendering the metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 rendering the metrics failed\n",
            )
        }
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

/// The answer to `POST /-/reload` without `--web.enable-lifecycle` (Prometheus answers
/// "Lifecycle API is not enabled."), naming the flag and the way that needs none.
const LIFECYCLE_OFF: &str = "Lifecycle API is not enabled: start the exporter with \
     --web.enable-lifecycle to reload with POST /-/reload, or send it SIGHUP\n";

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
pub(super) fn negotiate<B>(request: &Request<B>) -> Format {
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
pub(super) fn accepts_gzip<B>(request: &Request<B>) -> bool {
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
