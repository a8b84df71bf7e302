//! An EC2 fast-launch simulator: a local HTTP endpoint that speaks the AWS wire format for
//! `DescribeFastLaunchImages` (EC2 query protocol) and `AssumeRole` / `GetCallerIdentity` (STS
//! query protocol), so that the real `aws-sdk-ec2` client can be pointed at it through the
//! ordinary endpoint override (`AWS_ENDPOINT_URL`). Tests and demos use it; it never calls AWS.
//!
//! The caller's account comes from the access key id in the SigV4 `Authorization` header (keys
//! issued by its AssumeRole map to the role's account) and the region from the credential scope.
//! Faults (error codes, hangs) can be injected per account, region and action.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::model::{FastLaunchImage, FastLaunchState};

/// The most images one page returns when the request has no `MaxResults`.
const DEFAULT_PAGE: usize = 200;

/// An injected failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The account it applies to (None: all).
    pub account: Option<String>,
    /// The region it applies to (None: all).
    pub region: Option<String>,
    /// The action (`DescribeFastLaunchImages`, `AssumeRole`, `GetCallerIdentity`).
    pub action: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it hits before it is used up (None: all of them).
    pub remaining: Option<u32>,
    /// The share of matching requests it hits, 0.0–1.0 (drawn from the world's seeded generator).
    pub rate: f64,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this AWS error code and HTTP status.
    Error {
        /// AWS error code, e.g. `RequestLimitExceeded`.
        code: String,
        /// HTTP status, e.g. 503.
        status: u16,
    },
    /// Never answer (until the client gives up).
    Hang,
    /// Close the connection without an answer.
    Reset,
    /// Answer 200 with a body that is not XML.
    Malformed,
    /// Answer 200 with the real XML cut in the middle.
    Truncated,
}

/// The simulator closes the connection instead of answering (a [`FaultKind::Reset`]).
#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

impl FaultKind {
    /// Parses a fault name: `throttle`, `unauthorized`, `server-error`, `reset`, `hang`,
    /// `malformed`, `truncated`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        let error = |code: &str, status| FaultKind::Error {
            code: code.to_string(),
            status,
        };
        Some(match name {
            "throttle" => error("RequestLimitExceeded", 503),
            "unauthorized" => error("UnauthorizedOperation", 403),
            "server-error" => error("InternalError", 500),
            "reset" => FaultKind::Reset,
            "hang" => FaultKind::Hang,
            "malformed" => FaultKind::Malformed,
            "truncated" => FaultKind::Truncated,
            _ => return None,
        })
    }

    /// Every name [`FaultKind::from_name`] takes.
    pub const NAMES: [&'static str; 7] = [
        "throttle",
        "unauthorized",
        "server-error",
        "reset",
        "hang",
        "malformed",
        "truncated",
    ];
}

impl Fault {
    /// A fault answering `code` with `status` to `action` everywhere, forever.
    pub fn error(action: &str, code: &str, status: u16) -> Fault {
        Fault {
            account: None,
            region: None,
            action: action.to_string(),
            kind: FaultKind::Error {
                code: code.to_string(),
                status,
            },
            remaining: None,
            rate: 1.0,
        }
    }

    /// A fault that never answers `action`.
    pub fn hang(action: &str) -> Fault {
        Fault {
            account: None,
            region: None,
            action: action.to_string(),
            kind: FaultKind::Hang,
            remaining: None,
            rate: 1.0,
        }
    }

    /// Limits the fault to one account.
    pub fn in_account(mut self, account: &str) -> Fault {
        self.account = Some(account.to_string());
        self
    }

    /// Limits the fault to one region.
    pub fn in_region(mut self, region: &str) -> Fault {
        self.region = Some(region.to_string());
        self
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.remaining = Some(n);
        self
    }

    /// Hits only a share `rate` (0.0–1.0) of the matching requests.
    pub fn with_rate(mut self, rate: f64) -> Fault {
        self.rate = rate;
        self
    }

    fn matches(&self, account: &str, region: &str, action: &str) -> bool {
        self.action == action
            && self.account.as_deref().is_none_or(|a| a == account)
            && self.region.as_deref().is_none_or(|r| r == region)
            && self.remaining != Some(0)
    }
}

/// A request the simulator received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `Action` parameter.
    pub action: String,
    /// The caller's account (empty when the key was unknown).
    pub account: String,
    /// The region from the SigV4 credential scope.
    pub region: String,
    /// The service from the SigV4 credential scope (`ec2` or `sts`).
    pub service: String,
    /// Every form parameter, in order.
    pub params: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The simulated world: images per (account, region), the keys it knows, faults, and a log of
/// requests.
#[derive(Debug, Default)]
pub struct World {
    images: BTreeMap<(String, String), Vec<FastLaunchImage>>,
    keys: HashMap<String, String>,
    key_expiry: HashMap<String, SystemTime>,
    denied_roles: BTreeSet<String>,
    faults: Vec<Fault>,
    received: Vec<ReceivedRequest>,
    issued_keys: u64,
    rng: fastrand::Rng,
    /// How many received requests are kept for inspection (the oldest go first).
    pub max_received: usize,
    /// Added to every answer.
    pub latency: Duration,
    /// Up to this much more is added to every answer, drawn per request.
    pub latency_jitter: Duration,
    /// Lifetime of the credentials AssumeRole issues when the request names none.
    pub default_session: Duration,
}

impl World {
    /// An empty world where `access_key_id` is the base credentials of `account`.
    pub fn new(access_key_id: &str, account: &str) -> World {
        let mut world = World {
            default_session: Duration::from_secs(3600),
            max_received: usize::MAX,
            ..World::default()
        };
        world
            .keys
            .insert(access_key_id.to_string(), account.to_string());
        world
    }

    /// Replaces the images of an (account, region).
    pub fn set_images(&mut self, account: &str, region: &str, images: Vec<FastLaunchImage>) {
        self.images
            .insert((account.to_string(), region.to_string()), images);
    }

    /// The images of an (account, region), to change in place.
    pub fn images_mut(&mut self, account: &str, region: &str) -> &mut Vec<FastLaunchImage> {
        self.images
            .entry((account.to_string(), region.to_string()))
            .or_default()
    }

    /// Makes AssumeRole of `role_arn` answer AccessDenied.
    pub fn deny_role(&mut self, role_arn: &str) {
        self.denied_roles.insert(role_arn.to_string());
    }

    /// Adds a fault.
    pub fn add_fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The requests received so far.
    pub fn received(&self) -> &[ReceivedRequest] {
        &self.received
    }

    /// Seeds the generator that decides which requests a fault with a rate hits.
    pub fn seed(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Every (account, region) that has images, with them.
    pub fn all_images_mut(
        &mut self,
    ) -> impl Iterator<Item = (&(String, String), &mut Vec<FastLaunchImage>)> {
        self.images.iter_mut()
    }

    /// The images of an (account, region).
    pub fn images(&self, account: &str, region: &str) -> &[FastLaunchImage] {
        self.images
            .get(&(account.to_string(), region.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// The first matching fault whose rate draw hits, used up by one.
    fn take_fault(&mut self, account: &str, region: &str, action: &str) -> Option<FaultKind> {
        let rng = &mut self.rng;
        let fault = self
            .faults
            .iter_mut()
            .filter(|f| f.matches(account, region, action))
            .find(|f| f.rate >= 1.0 || rng.f64() < f.rate)?;
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        Some(fault.kind.clone())
    }

    /// The delay added to every answer: `latency` plus up to `latency_jitter`.
    fn delay(&mut self) -> Duration {
        let jitter = self.latency_jitter.mul_f64(self.rng.f64());
        self.latency + jitter
    }
}

/// A running simulator.
pub struct Simulator {
    address: SocketAddr,
    world: Arc<Mutex<World>>,
    task: JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Serves `world` on `listener` in a background task that ends when the simulator is dropped.
    pub fn start(listener: TcpListener, world: World) -> std::io::Result<Simulator> {
        let address = listener.local_addr()?;
        let world = Arc::new(Mutex::new(world));
        let shared = world.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let world = shared.clone();
                let service = service_fn(move |request| {
                    let world = world.clone();
                    async move { handle(&world, request).await }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Simulator {
            address,
            world,
            task,
        })
    }

    /// The endpoint URL, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The world, to change or inspect while it runs.
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("simulator world lock")
    }
}

/// `(access key id, region, service)` from `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`.
fn credential_scope(request: &Request<Incoming>) -> Option<(String, String, String)> {
    let value = request
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let credential = value
        .split([' ', ','])
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, _date, region, service, "aws4_request"] => {
            Some((key.to_string(), region.to_string(), service.to_string()))
        }
        _ => None,
    }
}

async fn handle(
    world: &Mutex<World>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let scope = credential_scope(&request);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(xml_response(
                400,
                ec2_error("MalformedQueryString", "unreadable body"),
            ))
        }
    };
    let (fault, delay, (status, xml)) = answer(world, scope, &body);
    tokio::time::sleep(delay).await;
    match fault {
        Some(FaultKind::Hang) => {
            // Long enough for any client timeout; the connection task is dropped with the runtime.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(xml_response(status, xml))
        }
        Some(FaultKind::Reset) => Err(ConnectionReset),
        Some(FaultKind::Malformed) => Ok(xml_response(200, "this is not <xml".to_string())),
        Some(FaultKind::Truncated) => {
            let mut cut = xml.len() / 2;
            while !xml.is_char_boundary(cut) {
                cut -= 1;
            }
            Ok(xml_response(200, xml[..cut].to_string()))
        }
        _ => Ok(xml_response(status, xml)),
    }
}

/// Decides the answer to one request: the fault drawn for it, the delay, and the status and
/// body (for a hang, reset, malformed or truncated answer, the one it would otherwise have had).
fn answer(
    world: &Mutex<World>,
    scope: Option<(String, String, String)>,
    body: &[u8],
) -> (Option<FaultKind>, Duration, (u16, String)) {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let Some((key, region, service)) = scope else {
        let body = ec2_error("MissingAuthenticationToken", "request is not signed");
        return (None, Duration::ZERO, (403, body));
    };
    let mut world = world.lock().expect("simulator world lock");
    let world = &mut *world;
    let account = world.keys.get(&key).cloned().unwrap_or_default();
    let expired = world
        .key_expiry
        .get(&key)
        .is_some_and(|at| *at <= SystemTime::now());
    world.received.push(ReceivedRequest {
        action: action.clone(),
        account: account.clone(),
        region: region.clone(),
        service: service.clone(),
        params: params.clone(),
    });
    let excess = world.received.len().saturating_sub(world.max_received);
    world.received.drain(..excess);
    let fault = world.take_fault(&account, &region, &action);
    let delay = world.delay();
    let sts = service == "sts";
    let error = |status: u16, code: &str, message: &str| {
        let body = if sts {
            sts_error(code, message)
        } else {
            ec2_error(code, message)
        };
        (status, body)
    };
    let reply = if let Some(FaultKind::Error { code, status }) = &fault {
        error(*status, code, &format!("simulated {code}"))
    } else if expired {
        let message = "The security token included in the request is expired";
        if sts {
            error(403, "ExpiredToken", message)
        } else {
            error(400, "ExpiredToken", message)
        }
    } else if account.is_empty() {
        if sts {
            error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        } else {
            error(
                401,
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            )
        }
    } else {
        match (service.as_str(), action.as_str()) {
            ("ec2", "DescribeFastLaunchImages") => describe_fast_launch_images(world, &account, &region, &params),
            ("sts", "AssumeRole") => assume_role(world, &params),
            ("sts", "GetCallerIdentity") => (
                200,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/simulated</Arn>\
                     <UserId>AIDASIMULATED</UserId><Account>{account}</Account></GetCallerIdentityResult>\
                     <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                    request_id()
                ),
            ),
            _ => error(400, "InvalidAction", &format!("unknown action {action:?}")),
        }
    };
    (fault, delay, reply)
}

fn describe_fast_launch_images(
    world: &World,
    account: &str,
    region: &str,
    params: &[(String, String)],
) -> (u16, String) {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("DryRun") == Some("true") {
        return (
            412,
            ec2_error(
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            ),
        );
    }
    let page_size = match get("MaxResults").map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if n <= 200 => n.max(1),
        Some(_) => {
            return (
                400,
                ec2_error(
                    "InvalidParameterValue",
                    "MaxResults must be between 0 and 200",
                ),
            )
        }
    };
    let start = match get("NextToken") {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return (400, ec2_error("InvalidParameterValue", "invalid NextToken")),
        },
    };
    let image_ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("ImageId."))
        .map(|(_, v)| v.as_str())
        .collect();
    let filters = parse_filters(params);
    let empty = Vec::new();
    let all = world
        .images
        .get(&(account.to_string(), region.to_string()))
        .unwrap_or(&empty);
    let selected: Vec<&FastLaunchImage> = all
        .iter()
        .filter(|image| image_ids.is_empty() || image_ids.contains(&image.image_id.as_str()))
        .filter(|image| {
            filters.iter().all(|(name, values)| {
                let value = match name.as_str() {
                    "state" => image
                        .state
                        .as_ref()
                        .map(FastLaunchState::as_str)
                        .unwrap_or(""),
                    "owner-id" => image.owner_id.as_str(),
                    "resource-type" => image.resource_type.as_str(),
                    _ => return false,
                };
                values.iter().any(|v| v == value)
            })
        })
        .collect();
    let end = (start + page_size).min(selected.len());
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeFastLaunchImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">",
    );
    xml.push_str(&format!(
        "<requestId>{}</requestId><fastLaunchImageSet>",
        request_id()
    ));
    for image in selected.get(start..end).unwrap_or_default() {
        xml.push_str(&image_xml(image));
    }
    xml.push_str("</fastLaunchImageSet>");
    if end < selected.len() {
        xml.push_str(&format!("<nextToken>page-{end}</nextToken>"));
    }
    xml.push_str("</DescribeFastLaunchImagesResponse>");
    (200, xml)
}

/// `Filter.N.Name` / `Filter.N.Value.M` into (name, values), in N order.
fn parse_filters(params: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut filters: BTreeMap<u32, (String, Vec<String>)> = BTreeMap::new();
    for (key, value) in params {
        let Some(rest) = key.strip_prefix("Filter.") else {
            continue;
        };
        let mut parts = rest.splitn(2, '.');
        let Some(n) = parts.next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let entry = filters.entry(n).or_default();
        match parts.next() {
            Some("Name") => entry.0 = value.clone(),
            Some(v) if v.starts_with("Value.") => entry.1.push(value.clone()),
            _ => {}
        }
    }
    filters.into_values().collect()
}

fn element(name: &str, value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("<{name}>{}</{name}>", escape_xml(value))
    }
}

fn image_xml(image: &FastLaunchImage) -> String {
    let mut xml = String::from("<item>");
    xml.push_str(&element("imageId", &image.image_id));
    xml.push_str(&element("resourceType", &image.resource_type));
    if let Some(count) = image.target_resource_count {
        xml.push_str(&format!(
            "<snapshotConfiguration><targetResourceCount>{count}</targetResourceCount></snapshotConfiguration>"
        ));
    }
    let template = [
        element("launchTemplateId", &image.launch_template_id),
        element("launchTemplateName", &image.launch_template_name),
        element("version", &image.launch_template_version),
    ]
    .concat();
    if !template.is_empty() {
        xml.push_str(&format!("<launchTemplate>{template}</launchTemplate>"));
    }
    if let Some(limit) = image.max_parallel_launches {
        xml.push_str(&format!(
            "<maxParallelLaunches>{limit}</maxParallelLaunches>"
        ));
    }
    xml.push_str(&element("ownerId", &image.owner_id));
    if let Some(state) = &image.state {
        xml.push_str(&element("state", state.as_str()));
    }
    xml.push_str(&element(
        "stateTransitionReason",
        &image.state_transition_reason,
    ));
    if let Some(at) = image.state_transition_time {
        xml.push_str(&element("stateTransitionTime", &iso8601(at)));
    }
    xml.push_str("</item>");
    xml
}

fn assume_role(world: &mut World, params: &[(String, String)]) -> (u16, String) {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let arn = get("RoleArn").unwrap_or_default().to_string();
    let Ok(account) = crate::config::role_account_id(&arn) else {
        return (400, sts_error("ValidationError", "invalid RoleArn"));
    };
    if world.denied_roles.contains(&arn) {
        return (
            403,
            sts_error(
                "AccessDenied",
                &format!("User is not authorized to perform: sts:AssumeRole on resource: {arn}"),
            ),
        );
    }
    let session = get("RoleSessionName").unwrap_or("session");
    let lifetime = get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(world.default_session);
    world.issued_keys += 1;
    let key = format!("ASIASIM{:08}{account}", world.issued_keys);
    world.keys.insert(key.clone(), account.clone());
    let expiration = SystemTime::now() + lifetime;
    world.key_expiry.insert(key.clone(), expiration);
    let expiration = iso8601(
        expiration
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as f64,
    );
    let role_name = arn.rsplit('/').next().unwrap_or("role");
    (
        200,
        format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
             <AssumedRoleUser><AssumedRoleId>AROASIMULATED:{session}</AssumedRoleId>\
             <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn></AssumedRoleUser>\
             <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>simulated-secret</SecretAccessKey>\
             <SessionToken>simulated-session-token</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
             </AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
            request_id(),
            session = escape_xml(session),
            role_name = escape_xml(role_name),
        ),
    )
}

/// ISO-8601 with milliseconds, as EC2 writes `stateTransitionTime`.
pub fn iso8601(unix_seconds: f64) -> String {
    let millis = (unix_seconds * 1000.0).round() as i64;
    DateTime::from_millis(millis)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    )
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape_xml(code),
        escape_xml(message),
        request_id()
    )
}

fn sts_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape_xml(code),
        escape_xml(message),
        request_id()
    )
}

fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_milliseconds() {
        assert_eq!(iso8601(1_795_168_800.123), "2026-11-20T10:00:00.123Z");
    }

    #[test]
    fn filters_are_grouped_by_index() {
        let params = vec![
            ("Filter.1.Name".to_string(), "state".to_string()),
            ("Filter.1.Value.1".to_string(), "enabled".to_string()),
            ("Filter.1.Value.2".to_string(), "enabling".to_string()),
            ("Filter.2.Name".to_string(), "owner-id".to_string()),
            ("Filter.2.Value.1".to_string(), "111".to_string()),
        ];
        assert_eq!(
            parse_filters(&params),
            vec![
                (
                    "state".to_string(),
                    vec!["enabled".to_string(), "enabling".to_string()]
                ),
                ("owner-id".to_string(), vec!["111".to_string()]),
            ]
        );
    }
}
