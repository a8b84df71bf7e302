//! `--web.config.file`: the Prometheus exporter-toolkit web configuration format, so that the
//! file an operator uses for node_exporter works here too: TLS (through rustls), client
//! certificates, basic auth with bcrypt hashes, and extra response headers.
//!
//! Relative file paths in the file are taken relative to the file's own folder, as the
//! exporter-toolkit does.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::warn;

/// An invalid web configuration file; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {message}")]
pub struct WebConfigError {
    path: String,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    rate_limit: Option<RawRateLimit>,
}

/// `rate_limit`: at most `burst` requests at once, refilled one per `interval` (Go durations).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<String>,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility with node_exporter's files; rustls picks its own safe suites
    // and curves, so these are ignored with a warning.
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Response headers the exporter-toolkit lets a web config set.
const SETTABLE_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The validated web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS settings, when `tls_server_config` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name to bcrypt hash.
    users: BTreeMap<String, String>,
    /// A hash of no real password, checked when the user is unknown so that a wrong user name
    /// takes as long as a wrong password.
    dummy_hash: String,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `rate_limit`, shared by every connection.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// Digests of (user, hash, password) that bcrypt accepted.
    accepted: Arc<Mutex<HashSet<[u8; 32]>>>,
    /// The certificate, key and CA files the configuration read.
    files: Vec<PathBuf>,
}

/// The most successful checks [`WebConfig::authenticate`] remembers.
const AUTH_CACHE_SIZE: usize = 256;

/// A token bucket over all requests, as the exporter-toolkit's `rate_limit` (Go's
/// `rate.NewLimiter(rate.Every(interval), burst)`): `burst` tokens, one more every `interval`.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: f64,
    /// Tokens left, and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst: f64::from(burst),
            bucket: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = crate::domain::sync::lock(&self.bucket);
        let (tokens, since) = *bucket;
        let refilled = now.saturating_duration_since(since).as_secs_f64()
            / self.interval.as_secs_f64().max(f64::MIN_POSITIVE);
        let tokens = (tokens + refilled).min(self.burst);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            true
        } else {
            *bucket = (tokens, now);
            false
        }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No basic auth configured, or the right user and password.
    Allowed,
    /// No or malformed `Authorization` header.
    Missing,
    /// A user name that is not configured or a wrong password (the user name, for the log).
    Denied(String),
}

impl WebConfig {
    /// Reads and validates a web configuration file.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let error = |message: String| WebConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| error(e.to_string()))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = WebConfig::default();
        for (user, hash) in raw.basic_auth_users {
            // A bcrypt hash: $2a$/$2b$/$2y$, cost, 53 characters of salt and hash.
            if !(hash.len() == 60 && hash.starts_with("$2") && bcrypt::verify("", &hash).is_ok()) {
                return Err(error(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                )));
            }
            config.users.insert(user, hash);
        }
        config.dummy_hash = dummy_hash(&config.users);
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(true) {
                warn!(
                    "web config: http_server_config.http2 is ignored; the exporter serves HTTP/1.1"
                );
            }
            for (name, value) in http.headers {
                let Some(allowed) = SETTABLE_HEADERS
                    .iter()
                    .find(|h| h.eq_ignore_ascii_case(&name))
                else {
                    return Err(error(format!(
                        "http_server_config.headers: {name:?} cannot be set (one of {})",
                        SETTABLE_HEADERS.join(", ")
                    )));
                };
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    error(format!(
                        "http_server_config.headers.{name}: {value:?} is not a valid header value"
                    ))
                })?;
                config
                    .headers
                    .push((HeaderName::from_static(static_lowercase(allowed)), value));
            }
        }
        if let Some(tls) = raw.tls_server_config {
            config.files = [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
                .into_iter()
                .flatten()
                .map(|file| resolve(base, file))
                .collect();
            config.tls = Some(Arc::new(tls_config(&tls, base).map_err(error)?));
        }
        if let Some(limit) = raw.rate_limit {
            let interval = match limit.interval.as_deref() {
                None => Duration::ZERO,
                Some(text) => super::duration::parse_go(text)
                    .map_err(|e| format!("{text:?} is not a duration: {e}"))
                    .and_then(|interval| {
                        super::duration::RATE_LIMIT_INTERVAL
                            .check(text, interval)
                            .map(|()| interval)
                    })
                    .map_err(|message| error(format!("rate_limit.interval: {message}")))?,
            };
            // As Go's limiter: no interval means no limit; a burst of 0 refuses everything.
            if !interval.is_zero() {
                let burst = limit.burst.unwrap_or(0);
                if burst == 0 {
                    return Err(error(
                        "rate_limit.burst: must be at least 1 (0 would refuse every request)"
                            .to_string(),
                    ));
                }
                config.rate_limit = Some(Arc::new(RateLimiter::new(interval, burst)));
            }
        }
        Ok(config)
    }

    /// Whether requests must carry basic auth.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header value. bcrypt is slow on purpose: call this off the
    /// async threads (`spawn_blocking`).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> AuthOutcome {
        if self.users.is_empty() {
            return AuthOutcome::Allowed;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return AuthOutcome::Missing;
        };
        let known = self
            .users
            .iter()
            .find(|(name, _)| bool::from(name.as_bytes().ct_eq(user.as_bytes())));
        let hash = known.map_or(self.dummy_hash.as_str(), |(_, hash)| hash.as_str());
        // A check bcrypt accepted before is not repeated (the exporter-toolkit caches them
        // too); anything else, a wrong password or an unknown user, pays a full bcrypt check.
        let digest = auth_digest(&user, hash, &password);
        if known.is_some() && crate::domain::sync::lock(&self.accepted).contains(&digest) {
            return AuthOutcome::Allowed;
        }
        let password_ok = bcrypt::verify(&password, hash).unwrap_or(false);
        if known.is_some() && password_ok {
            let mut accepted = crate::domain::sync::lock(&self.accepted);
            if accepted.len() >= AUTH_CACHE_SIZE {
                accepted.clear();
            }
            accepted.insert(digest);
            AuthOutcome::Allowed
        } else {
            AuthOutcome::Denied(user)
        }
    }
}

/// A digest of each file's content (None: unreadable), as a change detector: modification
/// times can repeat within a clock tick, and the files are small.
type Stamp = Vec<Option<u64>>;

fn stamp(files: impl IntoIterator<Item = PathBuf>) -> Stamp {
    use std::hash::{Hash, Hasher};
    files
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(file).ok()?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            Some(hasher.finish())
        })
        .collect()
}

/// The web configuration as it is now. With a file, it is read again when the file, or a
/// certificate, key or CA file it names, changes: checked on every new connection and request,
/// as the exporter-toolkit reads its file again for each, so that certificate rotation and user
/// changes need no restart. A file that no longer loads keeps the last good configuration, and
/// the log says why (once per change).
pub struct LiveWebConfig {
    path: Option<PathBuf>,
    state: Mutex<LiveState>,
}

struct LiveState {
    /// The stamp the current configuration was read at.
    stamp: Stamp,
    config: Arc<WebConfig>,
    /// The stamp of the last change that failed to load, not to be tried again.
    failed: Option<Stamp>,
}

impl LiveWebConfig {
    /// `config`, read from `path` (None: no file, nothing to watch).
    pub fn new(path: Option<PathBuf>, config: WebConfig) -> LiveWebConfig {
        let stamp = match &path {
            Some(path) => stamp(std::iter::once(path.clone()).chain(config.files.clone())),
            None => Vec::new(),
        };
        LiveWebConfig {
            path,
            state: Mutex::new(LiveState {
                stamp,
                config: Arc::new(config),
                failed: None,
            }),
        }
    }

    /// The configuration to serve with, read again first if a file changed.
    pub fn current(&self) -> Arc<WebConfig> {
        let Some(path) = &self.path else {
            return crate::domain::sync::lock(&self.state).config.clone();
        };
        let (files, kept) = {
            let state = crate::domain::sync::lock(&self.state);
            (state.config.files.clone(), state.config.clone())
        };
        let now = stamp(std::iter::once(path.clone()).chain(files.clone()));
        {
            let state = crate::domain::sync::lock(&self.state);
            if state.stamp == now || state.failed.as_ref() == Some(&now) {
                return state.config.clone();
            }
        }
        // Read outside the lock: parsing checks every bcrypt hash.
        let loaded = WebConfig::load(path);
        let mut state = crate::domain::sync::lock(&self.state);
        match loaded {
            Ok(config) => {
                tracing::info!(file = %path.display(), "web config changed; now serving with it");
                // The stamp read before loading, so that a write during the load is seen next
                // time; read again only when the file names other files now.
                state.stamp = if config.files == files {
                    now
                } else {
                    stamp(std::iter::once(path.clone()).chain(config.files.clone()))
                };
                state.config = Arc::new(config);
                state.failed = None;
                state.config.clone()
            }
            Err(error) => {
                warn!(error = %error, "web config changed but cannot be used; the last good one stays");
                state.failed = Some(now);
                kept
            }
        }
    }
}

/// SHA-256 of the user, the hash and the password, length-prefixed: the cache never holds a
/// password.
fn auth_digest(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [user, hash, password] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

/// A bcrypt hash with the cost of the configured users' (cost is digits 4–5 of `$2b$10$…`).
fn dummy_hash(users: &BTreeMap<String, String>) -> String {
    let Some(hash) = users.values().next() else {
        return String::new();
    };
    let cost = hash
        .get(4..6)
        .and_then(|c| c.parse().ok())
        .unwrap_or(bcrypt::DEFAULT_COST);
    bcrypt::hash("not a password", cost).unwrap_or_default()
}

fn static_lowercase(header: &str) -> &'static str {
    match header {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

/// `Basic base64(user:password)` into (user, password).
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn tls_version(place: &str, value: &str) -> Result<u8, String> {
    match value {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(format!(
            "tls_server_config.{place}: {other:?} is not one of TLS10, TLS11, TLS12, TLS13"
        )),
    }
}

/// `client_allowed_sans`: a client certificate the CA verified must also name one of these in
/// its subject alternative names, as DNS name, IP address or URI (compared as written, as the
/// exporter-toolkit does; e-mail SANs are not read).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    fn names_an_allowed_san(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        let names: Vec<&str> = cert
            .valid_dns_names()
            .chain(cert.valid_uri_names())
            .collect();
        self.allowed.iter().any(|allowed| {
            names.contains(&allowed.as_str())
                || allowed.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                    cert.verify_is_valid_for_subject_name(&rustls_pki_types::ServerName::IpAddress(
                        ip.into(),
                    ))
                    .is_ok()
                })
        })
    }
}

impl rustls::server::danger::ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names_an_allowed_san(end_entity) {
            Ok(verified)
        } else {
            warn!(allowed = ?self.allowed, "client certificate refused: none of its SANs is in client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn tls_config(raw: &RawTls, base: &Path) -> Result<rustls::ServerConfig, String> {
    let (Some(cert_file), Some(key_file)) = (&raw.cert_file, &raw.key_file) else {
        return Err("tls_server_config: cert_file and key_file are both required".to_string());
    };
    let cert_path = resolve(base, cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("tls_server_config.cert_file: {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file: {}: no certificate",
            cert_path.display()
        ));
    }
    let key_path = resolve(base, key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("tls_server_config.key_file: {}: {e}", key_path.display()))?;

    let versions = protocol_versions(raw)?;
    if raw.cipher_suites.as_ref().is_some_and(|c| !c.is_empty())
        || raw
            .curve_preferences
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        || raw.prefer_server_cipher_suites.is_some()
    {
        warn!("web config: cipher_suites, curve_preferences and prefer_server_cipher_suites are ignored; rustls uses its own safe defaults");
    }
    let allowed_sans: Vec<String> = raw.client_allowed_sans.clone().unwrap_or_default();
    let auth_type_given = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    if !allowed_sans.is_empty() && auth_type_given != "RequireAndVerifyClientCert" {
        return Err(format!(
            "tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert (not {auth_type_given})"
        ));
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                client_roots(raw, base, auth_type)?,
                provider,
            );
            let verifier = if auth_type == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            if allowed_sans.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(AllowedSans {
                    inner: verifier,
                    allowed: allowed_sans.clone(),
                }))
            }
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type: {auth_type} (certificates not verified) is not supported; \
                 use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            ))
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: {other:?} is not one of NoClientCert, \
                 VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA roots client certificates are verified against (`client_ca_file`, required with
/// `auth_type`).
fn client_roots(
    raw: &RawTls,
    base: &Path,
    auth_type: &str,
) -> Result<Arc<rustls::RootCertStore>, String> {
    let Some(ca_file) = &raw.client_ca_file else {
        return Err(format!(
            "tls_server_config.client_ca_file: required with client_auth_type {auth_type}"
        ));
    };
    let ca_path = resolve(base, ca_file);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca_path).map_err(|e| {
        format!(
            "tls_server_config.client_ca_file: {}: {e}",
            ca_path.display()
        )
    })? {
        let cert = cert.map_err(|e| {
            format!(
                "tls_server_config.client_ca_file: {}: {e}",
                ca_path.display()
            )
        })?;
        roots.add(cert).map_err(|e| {
            format!(
                "tls_server_config.client_ca_file: {}: {e}",
                ca_path.display()
            )
        })?;
    }
    Ok(Arc::new(roots))
}

/// The TLS versions between `min_version` and `max_version` that rustls speaks (1.2, 1.3).
fn protocol_versions(
    raw: &RawTls,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = tls_version("min_version", raw.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version("max_version", raw.max_version.as_deref().unwrap_or("TLS13"))?;
    if max < 12 {
        return Err(
            "tls_server_config.max_version: rustls speaks TLS 1.2 and 1.3 only".to_string(),
        );
    }
    if min < 12 {
        warn!("web config: min_version below TLS12 is raised to TLS12 (rustls speaks TLS 1.2 and 1.3 only)");
    }
    if min > max {
        return Err("tls_server_config: min_version is above max_version".to_string());
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    #[test]
    fn rate_limit_intervals_are_go_durations_up_to_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        let load = |interval: &str| {
            std::fs::write(
                &path,
                format!("rate_limit: {{interval: '{interval}', burst: 2}}\n"),
            )
            .unwrap();
            WebConfig::load(&path).map(|c| c.rate_limit.is_some())
        };
        for ok in ["1m", "1.5s", "500ms", "1h", "1m30s"] {
            assert!(load(ok).unwrap(), "{ok}");
        }
        assert!(!load("0").unwrap(), "0 is no limit, as in Go");
        for (bad, words) in [
            (
                "5M",
                r#"rate_limit.interval: "5M" is not a duration: "M" is not a unit"#,
            ),
            (
                "1d",
                r#"rate_limit.interval: "1d" is not a duration: "d" is not a unit"#,
            ),
            ("-1s", r#"rate_limit.interval: "-1s" is not a duration"#),
            (
                "2h",
                r#"rate_limit.interval: "2h" is too long: the range is 0s to 1h"#,
            ),
        ] {
            let message = load(bad).unwrap_err().to_string();
            assert!(message.contains(words), "{bad}: {message}");
        }
    }

    #[test]
    fn basic_auth_allows_only_the_right_password() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = BTreeMap::from([("prometheus".to_string(), hash)]);
        let config = WebConfig {
            dummy_hash: dummy_hash(&users),
            users,
            ..WebConfig::default()
        };
        assert_eq!(
            config.authenticate(Some(&basic("prometheus", "s3cret"))),
            AuthOutcome::Allowed
        );
        assert_eq!(
            config.authenticate(Some(&basic("prometheus", "wrong"))),
            AuthOutcome::Denied("prometheus".into())
        );
        assert_eq!(
            config.authenticate(Some(&basic("eve", "s3cret"))),
            AuthOutcome::Denied("eve".into())
        );
        assert_eq!(config.authenticate(None), AuthOutcome::Missing);
        assert_eq!(
            config.authenticate(Some(b"Bearer abc")),
            AuthOutcome::Missing
        );
        assert_eq!(
            config.authenticate(Some(b"Basic !!!")),
            AuthOutcome::Missing
        );
    }
}
