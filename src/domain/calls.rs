//! What the exporter knows about its AWS calls, in its own types: which API, a bounded error code,
//! a short error for logs and the landing page, and the attempt counters. The `aws` layer writes
//! into an [`AttemptSink`]; the registry and the metrics read [`ApiCounters`] without ever
//! importing `aws`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use crate::domain::sync::lock;

/// The AWS APIs the exporter calls; the `api` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    /// `ec2:DescribeFastLaunchImages`
    DescribeFastLaunchImages,
    /// `sts:AssumeRole`
    AssumeRole,
    /// `sts:GetCallerIdentity`
    GetCallerIdentity,
    /// `sqs:ReceiveMessage` (the event queue)
    ReceiveMessage,
    /// `sqs:DeleteMessageBatch` (the event queue)
    DeleteMessageBatch,
    /// `cloudwatch:ListMetrics`
    ListMetrics,
    /// `cloudwatch:GetMetricData`
    GetMetricData,
    /// `ec2:DescribeRegions` (`regions: all`)
    DescribeRegions,
    /// `organizations:ListAccounts`
    ListAccounts,
    /// `organizations:ListAccountsForParent`
    ListAccountsForParent,
    /// `organizations:ListOrganizationalUnitsForParent`
    ListOrganizationalUnitsForParent,
    /// `organizations:ListTagsForResource`
    ListTagsForResource,
    /// `organizations:DescribeOrganization` (`check-permissions`)
    DescribeOrganization,
    /// `sqs:ChangeMessageVisibilityBatch` (events for another shard's targets)
    ChangeMessageVisibilityBatch,
}

impl Api {
    /// Every API, in label order.
    pub const ALL: [Api; 14] = [
        Api::DescribeFastLaunchImages,
        Api::AssumeRole,
        Api::GetCallerIdentity,
        Api::ReceiveMessage,
        Api::DeleteMessageBatch,
        Api::ListMetrics,
        Api::GetMetricData,
        Api::DescribeRegions,
        Api::ListAccounts,
        Api::ListAccountsForParent,
        Api::ListOrganizationalUnitsForParent,
        Api::ListTagsForResource,
        Api::DescribeOrganization,
        Api::ChangeMessageVisibilityBatch,
    ];

    /// The operation name, as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::DescribeFastLaunchImages => "DescribeFastLaunchImages",
            Api::AssumeRole => "AssumeRole",
            Api::GetCallerIdentity => "GetCallerIdentity",
            Api::ReceiveMessage => "ReceiveMessage",
            Api::DeleteMessageBatch => "DeleteMessageBatch",
            Api::ListMetrics => "ListMetrics",
            Api::GetMetricData => "GetMetricData",
            Api::DescribeRegions => "DescribeRegions",
            Api::ListAccounts => "ListAccounts",
            Api::ListAccountsForParent => "ListAccountsForParent",
            Api::ListOrganizationalUnitsForParent => "ListOrganizationalUnitsForParent",
            Api::ListTagsForResource => "ListTagsForResource",
            Api::DescribeOrganization => "DescribeOrganization",
            Api::ChangeMessageVisibilityBatch => "ChangeMessageVisibilityBatch",
        }
    }

    /// The API of an operation name, if it is one the exporter calls.
    pub fn from_operation(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// Why an AWS call failed: an AWS error code the exporter exports as it is, a failure
        /// without a code (`timeout`, `connection`), or any other code, kept raw for the logs and
        /// exported as `other` so that the `error_code` label stays a small fixed set.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $code, "`")]
                $variant,
            )*
            /// No answer within the time allowed.
            Timeout,
            /// The connection failed or broke before a whole answer arrived.
            Connection,
            /// An answer that is not what the API returns (cut short, not XML, no credentials).
            Malformed,
            /// The base credentials could not be loaded (environment, profile, SSO, web
            /// identity, container or instance credentials).
            Credentials,
            /// Any other AWS error code, as AWS wrote it (None: the answer carried no code).
            Unrecognized(Option<String>),
        }

        impl ErrorCode {
            /// The codes exported under their own name, in label order.
            pub const KNOWN: &'static [&'static str] = &[$($code,)*];

            /// Parses an AWS error code.
            pub fn from_aws(code: Option<&str>) -> ErrorCode {
                match code {
                    $(Some($code) => ErrorCode::$variant,)*
                    other => ErrorCode::Unrecognized(other.map(str::to_string)),
                }
            }

            /// The `error_code` label: the AWS code when it is a known one, else `timeout`,
            /// `connection` or `other`.
            pub fn label(&self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Timeout => "timeout",
                    ErrorCode::Connection => "connection",
                    ErrorCode::Malformed | ErrorCode::Credentials | ErrorCode::Unrecognized(_) => {
                        "other"
                    }
                }
            }

            /// The code as AWS wrote it, for logs (`malformed`, `unknown` where there is none).
            pub fn raw(&self) -> &str {
                match self {
                    ErrorCode::Unrecognized(Some(raw)) => raw,
                    ErrorCode::Unrecognized(None) => "unknown",
                    ErrorCode::Malformed => "malformed",
                    ErrorCode::Credentials => "credentials",
                    other => other.label(),
                }
            }
        }
    };
}

error_codes! {
    AccessDenied => "AccessDenied",
    AccessDeniedException => "AccessDeniedException",
    AuthFailure => "AuthFailure",
    Blocked => "Blocked",
    DryRunOperation => "DryRunOperation",
    ExpiredToken => "ExpiredToken",
    ExpiredTokenException => "ExpiredTokenException",
    IncompleteSignature => "IncompleteSignature",
    InternalError => "InternalError",
    InternalFailure => "InternalFailure",
    InvalidAmiIdMalformed => "InvalidAMIID.Malformed",
    InvalidAmiIdNotFound => "InvalidAMIID.NotFound",
    InvalidAction => "InvalidAction",
    InvalidClientTokenId => "InvalidClientTokenId",
    InvalidParameter => "InvalidParameter",
    InvalidParameterCombination => "InvalidParameterCombination",
    InvalidParameterValue => "InvalidParameterValue",
    InvalidAddress => "InvalidAddress",
    InvalidNextToken => "InvalidNextToken",
    OrganizationsNotInUse => "AWSOrganizationsNotInUseException",
    TooManyRequestsException => "TooManyRequestsException",
    ParentNotFoundException => "ParentNotFoundException",
    // SQS is query-compatible: the SDK reports the awsQuery code of x-amzn-query-error.
    NonExistentQueue => "AWS.SimpleQueueService.NonExistentQueue",
    OverLimit => "OverLimit",
    RequestThrottled => "RequestThrottled",
    KmsAccessDenied => "KMS.AccessDeniedException",
    MissingParameter => "MissingParameter",
    OptInRequired => "OptInRequired",
    RegionDisabledException => "RegionDisabledException",
    RequestExpired => "RequestExpired",
    RequestLimitExceeded => "RequestLimitExceeded",
    ServiceUnavailable => "ServiceUnavailable",
    SignatureDoesNotMatch => "SignatureDoesNotMatch",
    Throttling => "Throttling",
    ThrottlingException => "ThrottlingException",
    UnauthorizedOperation => "UnauthorizedOperation",
    Unavailable => "Unavailable",
    UnsupportedOperation => "UnsupportedOperation",
}

impl ErrorCode {
    /// Whether the code says the caller is not allowed (IAM), as opposed to a failure.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            ErrorCode::UnauthorizedOperation
                | ErrorCode::AccessDenied
                | ErrorCode::AccessDeniedException
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw())
    }
}

/// A failed AWS call, reduced to one readable line: the API, the error code, AWS's message, the
/// request id and the attempts it took. Never holds credentials or raw response bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The API that failed.
    pub api: Api,
    /// Why.
    pub code: ErrorCode,
    /// AWS's message, or a short description of a failure without one.
    pub message: String,
    /// AWS's request id, when the answer carried one.
    pub request_id: Option<String>,
    /// Attempts sent for the failed call, retries included (0 when unknown).
    pub attempts: u32,
}

impl ApiError {
    /// An error without a request id or attempt count.
    pub fn new(api: Api, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            api,
            code,
            message: message.into(),
            request_id: None,
            attempts: 0,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.api.as_str(), self.code.raw())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        let mut extra = Vec::new();
        if let Some(id) = &self.request_id {
            extra.push(format!("request id {id}"));
        }
        match self.attempts {
            0 => {}
            1 => extra.push("1 attempt".to_string()),
            n => extra.push(format!("{n} attempts")),
        }
        if !extra.is_empty() {
            write!(f, " ({})", extra.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A call cut by its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The API whose attempt was on the wire when the call was cut, if one was.
    pub api: Option<Api>,
    /// The time limit.
    pub after: std::time::Duration,
}

/// `call` bounded by `limit`. A call cut by it never sees its attempt end (the AWS layer's
/// after-attempt hook does not run), so the attempt on the wire is counted here as failed with
/// `timeout`, in `counters`, and named in the error.
pub async fn with_timeout<T>(
    limit: std::time::Duration,
    counters: &ApiCounters,
    call: impl std::future::Future<Output = T>,
) -> Result<T, TimedOut> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| TimedOut {
            api: counters.abandon_in_flight(&ErrorCode::Timeout),
            after: limit,
        })
}

/// `call` bounded by `limit`; past it, a `timeout` error of `api` with `message`. For calls whose attempts are not counted on one target's
/// counters (the event queue, discovery); see [`with_timeout`] for those that are.
pub async fn within<T>(
    limit: std::time::Duration,
    api: Api,
    message: &str,
    call: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(ApiError::new(api, ErrorCode::Timeout, message)))
}

/// Where the AWS layer reports every attempt it sends and how each one ended. Defined here, on the
/// inside, so that the code serving scrapes never depends on the SDK.
pub trait AttemptSink: Send + Sync + fmt::Debug {
    /// An attempt of `api` is about to go on the wire.
    fn attempt_sent(&self, api: Api);
    /// The attempt on the wire ended; `failure` is its error code when it failed.
    fn attempt_finished(&self, failure: Option<&ErrorCode>);
}

/// One part of the exporter that calls AWS under one account id and region (the event queue,
/// Organizations discovery, DescribeRegions; a target is one too, read from its view), with the
/// APIs it calls: its requests and errors are exported under that account id and region, for
/// those APIs.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account id the calls are made in.
    pub account_id: String,
    /// The region the calls are made in.
    pub region: String,
    /// The APIs it calls.
    pub apis: Vec<Api>,
    /// Its attempt counters.
    pub counters: std::sync::Arc<ApiCounters>,
}

/// Requests and errors of one target, by API and error code label.
#[derive(Debug)]
pub struct ApiCounters {
    /// When the counters started at 0: OpenMetrics' `_created`.
    created: std::time::SystemTime,
    requests: [AtomicU64; Api::ALL.len()],
    errors: Mutex<BTreeMap<(Api, &'static str), u64>>,
    /// The API whose attempt is on the wire now (index + 1; 0 = none). A target's calls are
    /// sequential, so one slot suffices; a collection cut by its timeout reads it.
    in_flight: AtomicU8,
    /// Counts every change of the counters: a renderer that kept their lines knows from it
    /// whether they are still current.
    changes: AtomicU64,
}

impl Default for ApiCounters {
    fn default() -> Self {
        ApiCounters {
            created: std::time::SystemTime::now(),
            requests: Default::default(),
            errors: Default::default(),
            in_flight: Default::default(),
            changes: Default::default(),
        }
    }
}

impl ApiCounters {
    /// When the counters started at 0.
    pub fn created(&self) -> std::time::SystemTime {
        self.created
    }

    /// Attempts sent for `api`.
    pub fn requests(&self, api: Api) -> u64 {
        self.requests[api.index()].load(Ordering::Relaxed)
    }

    /// How many times the counters changed: equal values, equal counters.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Failed attempts by (api, error code label).
    pub fn errors(&self) -> BTreeMap<(Api, &'static str), u64> {
        lock(&self.errors).clone()
    }

    /// Counts one failed attempt.
    pub fn count_error(&self, api: Api, code: &ErrorCode) {
        *lock(&self.errors).entry((api, code.label())).or_default() += 1;
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Takes the API of the attempt on the wire, if any (it will not finish by itself).
    pub fn take_in_flight(&self) -> Option<Api> {
        match self.in_flight.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Api::ALL.get(n as usize - 1).copied(),
        }
    }

    /// Counts the attempt on the wire, if any, as failed with `code` (a collection cut by its
    /// timeout never sees the attempt end). Returns its API.
    pub fn abandon_in_flight(&self, code: &ErrorCode) -> Option<Api> {
        let api = self.take_in_flight()?;
        self.count_error(api, code);
        Some(api)
    }
}

impl AttemptSink for ApiCounters {
    fn attempt_sent(&self, api: Api) {
        self.requests[api.index()].fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
        self.in_flight
            .store(api.index() as u8 + 1, Ordering::Relaxed);
    }

    fn attempt_finished(&self, failure: Option<&ErrorCode>) {
        // An attempt that failed before it was sent (e.g. AssumeRole failed while loading
        // credentials) sent nothing to this API: it is counted under the API that failed.
        let Some(api) = self.take_in_flight() else {
            return;
        };
        if let Some(code) = failure {
            self.count_error(api, code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_stay_a_bounded_set_but_keep_the_raw_code() {
        let throttled = ErrorCode::from_aws(Some("RequestLimitExceeded"));
        assert_eq!(throttled, ErrorCode::RequestLimitExceeded);
        assert_eq!(throttled.label(), "RequestLimitExceeded");
        let odd = ErrorCode::from_aws(Some("Something <script>"));
        assert_eq!(odd.label(), "other");
        assert_eq!(odd.raw(), "Something <script>");
        assert_eq!(ErrorCode::from_aws(None).label(), "other");
        for known in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::from_aws(Some(known)).label(), *known);
        }
    }

    #[test]
    fn attempts_are_counted_and_the_in_flight_one_is_taken_once() {
        let counters = ApiCounters::default();
        counters.attempt_sent(Api::AssumeRole);
        assert_eq!(counters.requests(Api::AssumeRole), 1);
        assert_eq!(
            counters.abandon_in_flight(&ErrorCode::Timeout),
            Some(Api::AssumeRole)
        );
        assert_eq!(counters.take_in_flight(), None);
        counters.attempt_finished(Some(&ErrorCode::Connection));
        assert_eq!(
            counters.errors(),
            BTreeMap::from([((Api::AssumeRole, "timeout"), 1)])
        );
    }

    #[test]
    fn an_error_reads_as_one_line() {
        let error = ApiError {
            api: Api::DescribeFastLaunchImages,
            code: ErrorCode::RequestLimitExceeded,
            message: "Request limit exceeded.".into(),
            request_id: Some("abc-123".into()),
            attempts: 3,
        };
        assert_eq!(
            error.to_string(),
            "DescribeFastLaunchImages failed: RequestLimitExceeded: Request limit exceeded. \
             (request id abc-123, 3 attempts)"
        );
    }
}
