//! The simulator's HTTP server: tells EC2 from STS by the SigV4 credential scope, finds the
//! caller's account from its access key, applies faults and latency, and answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::cbor;
use super::cloudwatch::{self, CloudWatchAnswer};
use super::ec2::{describe_fast_launch_images, ec2_error};
use super::organizations::{self, JsonAnswer};
use super::sqs::{self, SqsAnswer};
use super::sso::get_role_credentials;
use super::sts::{assume_role, get_caller_identity, sts_error};
use super::{FaultKind, ReceivedRequest, World};
use crate::domain::sync::lock;

/// The simulator closes the connection instead of answering (a [`FaultKind::Reset`]).
#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

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
        lock(&self.world)
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
    if request.uri().path() == "/federation/credentials" {
        let query: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let bearer = request
            .headers()
            .get("x-amz-sso_bearer_token")
            .and_then(|v| v.to_str().ok());
        let (status, json) = get_role_credentials(&mut lock(world), &query, bearer);
        let mut response = xml_response(status, json);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let scope = credential_scope(&request);
    if let Some(action) = request
        .uri()
        .path()
        .strip_prefix(super::cloudwatch::PATH_PREFIX)
        .map(str::to_string)
    {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        return cloudwatch_request(world, scope, &action, body.ok()).await;
    }
    if let Some(action) = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AWSOrganizationsV20161128."))
        .map(str::to_string)
    {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        return organizations_request(world, scope, &action, body.ok()).await;
    }
    if let Some(action) = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSQS."))
        .map(str::to_string)
    {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        return Ok(sqs_request(world, scope, &action, body.ok()).await);
    }
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

/// What a fault leaves of an answer (CloudWatch, Organizations): a hang answers only after an
/// hour, a reset closes the connection, a malformed answer is `garbage`, a truncated one is cut
/// in half.
async fn with_fault(
    fault: Option<FaultKind>,
    status: u16,
    body: Vec<u8>,
    garbage: &[u8],
) -> Result<(u16, Vec<u8>), ConnectionReset> {
    match fault {
        Some(FaultKind::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok((status, body))
        }
        Some(FaultKind::Reset) => Err(ConnectionReset),
        Some(FaultKind::Malformed) => Ok((200, garbage.to_vec())),
        Some(FaultKind::Truncated) => Ok((200, body[..body.len() / 2].to_vec())),
        _ => Ok((status, body)),
    }
}

/// Answers one CloudWatch request (RPC v2 CBOR).
async fn cloudwatch_request(
    world: &Mutex<World>,
    scope: Option<(String, String, String)>,
    action: &str,
    body: Option<Bytes>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let decoded = body.as_deref().and_then(|b| cbor::decode(b).ok());
    let (fault, delay, answer) = {
        let mut world = lock(world);
        let (key, region, _) = scope.clone().unwrap_or_default();
        let account = world.keys.get(&key).cloned().unwrap_or_default();
        let expired = world
            .key_expiry
            .get(&key)
            .is_some_and(|at| *at <= SystemTime::now());
        world.log_request(ReceivedRequest {
            action: action.to_string(),
            account: account.clone(),
            region: region.clone(),
            service: "monitoring".to_string(),
            params: cloudwatch::logged_params(action, decoded.as_ref()),
        });
        let fault = world.take_fault(&account, &region, action);
        let answer = if let Some(FaultKind::Error { code, status }) = &fault {
            CloudWatchAnswer::error(*status, code, &format!("simulated {code}"))
        } else if scope.is_none() {
            CloudWatchAnswer::error(403, "MissingAuthenticationToken", "request is not signed")
        } else if expired {
            CloudWatchAnswer::error(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            )
        } else if account.is_empty() {
            CloudWatchAnswer::error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        } else {
            cloudwatch::answer(&world, &account, &region, action, decoded.as_ref())
        };
        (fault, world.delay(), answer)
    };
    tokio::time::sleep(delay).await;
    let (status, body) = with_fault(fault, answer.status, answer.body, b"this is not CBOR").await?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/cbor"),
    );
    headers.insert(
        "smithy-protocol",
        hyper::header::HeaderValue::from_static("rpc-v2-cbor"),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&crate::sim::request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(code) = answer
        .query_error
        .filter(|_| status != 200)
        .and_then(|c| hyper::header::HeaderValue::from_str(&c).ok())
    {
        headers.insert("x-amzn-query-error", code);
    }
    Ok(response)
}

/// Answers one Organizations request (awsJson1_1).
async fn organizations_request(
    world: &Mutex<World>,
    scope: Option<(String, String, String)>,
    action: &str,
    body: Option<Bytes>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let json: serde_json::Value = body
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let (fault, delay, answer) = {
        let mut world = lock(world);
        let (key, region, _) = scope.clone().unwrap_or_default();
        let account = world.keys.get(&key).cloned().unwrap_or_default();
        world.log_request(ReceivedRequest {
            action: action.to_string(),
            account: account.clone(),
            region: region.clone(),
            service: "organizations".to_string(),
            params: ["ParentId", "ResourceId", "NextToken"]
                .iter()
                .filter_map(|k| Some((k.to_string(), json.get(*k)?.as_str()?.to_string())))
                .collect(),
        });
        let fault = world.take_fault(&account, &region, action);
        let answer = if let Some(FaultKind::Error { code, status }) = &fault {
            JsonAnswer::error(*status, code, &format!("simulated {code}"))
        } else if scope.is_none() || account.is_empty() {
            JsonAnswer::error(
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        } else {
            organizations::answer(&world, &account, action, &json)
        };
        (fault, world.delay(), answer)
    };
    tokio::time::sleep(delay).await;
    let (status, body) = with_fault(
        fault,
        answer.status,
        answer.body.into_bytes(),
        b"this is not JSON",
    )
    .await?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&crate::sim::request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(kind) = answer
        .error_type
        .filter(|_| status != 200)
        .and_then(|t| hyper::header::HeaderValue::from_str(&format!("{t}:")).ok())
    {
        headers.insert("x-amzn-errortype", kind);
    }
    Ok(response)
}

/// Answers one SQS request (awsJson1_0). `ReceiveMessage` waits up to `WaitTimeSeconds` for a
/// message, as SQS long polling does.
async fn sqs_request(
    world: &Mutex<World>,
    scope: Option<(String, String, String)>,
    action: &str,
    body: Option<Bytes>,
) -> Response<Full<Bytes>> {
    let json: serde_json::Value = body
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let started = std::time::Instant::now();
    let wait = Duration::from_secs(
        json.get("WaitTimeSeconds")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
            .min(20),
    );
    let (fault, delay) = {
        let mut world = lock(world);
        let (key, region, _) = scope.clone().unwrap_or_default();
        let account = world.keys.get(&key).cloned().unwrap_or_default();
        world.log_request(ReceivedRequest {
            action: action.to_string(),
            account: account.clone(),
            region: region.clone(),
            service: "sqs".to_string(),
            params: Vec::new(),
        });
        (world.take_fault(&account, &region, action), world.delay())
    };
    tokio::time::sleep(delay).await;
    if matches!(fault, Some(FaultKind::Hang)) {
        // Never answer (a connection that died silently); dropped with the runtime.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let answer = loop {
        let answer = {
            let mut world = lock(world);
            if scope.is_none() {
                SqsAnswer::error(
                    403,
                    "MissingAuthenticationToken",
                    "MissingAuthenticationToken",
                    "request is not signed",
                )
            } else {
                sqs::answer(&mut world, action, &json, fault.as_ref())
            }
        };
        let empty_receive = action == "ReceiveMessage"
            && answer.status == 200
            && !answer.body.contains("\"Messages\"");
        if !empty_receive || started.elapsed() >= wait {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&crate::sim::request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(code) = answer
        .query_error
        .and_then(|c| hyper::header::HeaderValue::from_str(&c).ok())
    {
        headers.insert("x-amzn-query-error", code);
    }
    response
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
    if action == "AssumeRoleWithWebIdentity" {
        // Unsigned by design: the web identity token is the credential.
        let mut world = lock(world);
        world.log_request(ReceivedRequest {
            action: action.clone(),
            account: String::new(),
            region: String::new(),
            service: "sts".to_string(),
            params: params.clone(),
        });
        return (
            None,
            Duration::ZERO,
            assume_role(&mut world, &action, &params),
        );
    }
    let Some((key, region, service)) = scope else {
        let body = ec2_error("MissingAuthenticationToken", "request is not signed");
        return (None, Duration::ZERO, (403, body));
    };
    let mut world = lock(world);
    let world = &mut *world;
    let account = world.keys.get(&key).cloned().unwrap_or_default();
    let expired = world
        .key_expiry
        .get(&key)
        .is_some_and(|at| *at <= SystemTime::now());
    world.log_request(ReceivedRequest {
        action: action.clone(),
        account: account.clone(),
        region: region.clone(),
        service: service.clone(),
        params: params.clone(),
    });
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
            ("ec2", "DescribeFastLaunchImages") => {
                describe_fast_launch_images(world, &account, &region, &params)
            }
            ("sts", "AssumeRole") => assume_role(world, &action, &params),
            ("sts", "GetCallerIdentity") => get_caller_identity(&account),
            ("ec2", "DescribeRegions") => organizations::describe_regions(world, &account, &params),
            _ => error(400, "InvalidAction", &format!("unknown action {action:?}")),
        }
    };
    (fault, delay, reply)
}

/// An answer with AWS's headers: the content type and `x-amzn-requestid`, carrying the request
/// id the body names (EC2's `<requestId>`/`<RequestID>`, STS's `<RequestId>`).
fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let request_id = crate::sim::body_request_id(body.as_bytes())
        .and_then(|id| hyper::header::HeaderValue::from_str(id).ok());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Some(id) = request_id {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    response
}
