//! Counting every AWS attempt a target sends and every one that fails, retried or not.
//!
//! The SDK retries throttled calls itself and returns nothing about the failed attempts, so an
//! interceptor registered on each client counts them: `read_before_transmit` runs once per attempt
//! sent and `read_after_attempt` once per attempt with its result (see shared/reference/rust-sdk-notes.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::describe_fast_launch_images::DescribeFastLaunchImagesError;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
use aws_smithy_runtime_api::client::interceptors::context::Error as ErasedError;
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The AWS APIs the exporter calls; the `api` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    /// `ec2:DescribeFastLaunchImages`
    DescribeFastLaunchImages,
    /// `sts:AssumeRole`
    AssumeRole,
    /// `sts:GetCallerIdentity`
    GetCallerIdentity,
}

impl Api {
    /// Every API, in label order.
    pub const ALL: [Api; 3] = [
        Api::DescribeFastLaunchImages,
        Api::AssumeRole,
        Api::GetCallerIdentity,
    ];

    /// The operation name, as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::DescribeFastLaunchImages => "DescribeFastLaunchImages",
            Api::AssumeRole => "AssumeRole",
            Api::GetCallerIdentity => "GetCallerIdentity",
        }
    }

    fn from_operation(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// AWS error codes exported as they are; any other code becomes `other`, so that the
/// `error_code` label stays a small fixed set whatever a server answers.
const KNOWN_ERROR_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "Blocked",
    "DryRunOperation",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InternalError",
    "InternalFailure",
    "InvalidAMIID.Malformed",
    "InvalidAMIID.NotFound",
    "InvalidAction",
    "InvalidClientTokenId",
    "InvalidParameter",
    "InvalidParameterCombination",
    "InvalidParameterValue",
    "MissingParameter",
    "OptInRequired",
    "RegionDisabledException",
    "RequestExpired",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "Throttling",
    "ThrottlingException",
    "UnauthorizedOperation",
    "Unavailable",
    "UnsupportedOperation",
];

/// Maps an AWS error code onto the bounded label set.
pub fn bounded_error_code(code: Option<&str>) -> &'static str {
    code.and_then(|c| KNOWN_ERROR_CODES.iter().find(|k| **k == c).copied())
        .unwrap_or("other")
}

/// Requests and errors of one target, by API and error code. Shared by the target's clients'
/// interceptors and read by the metrics renderer.
#[derive(Debug, Default)]
pub struct ApiCounters {
    requests: [AtomicU64; 3],
    errors: Mutex<BTreeMap<(Api, &'static str), u64>>,
    /// The API whose attempt is on the wire now (index + 1; 0 = none). A target's calls are
    /// sequential, so one slot suffices; a collection cut by its timeout reads it.
    in_flight: AtomicU8,
}

impl ApiCounters {
    /// Attempts sent for `api`.
    pub fn requests(&self, api: Api) -> u64 {
        self.requests[api.index()].load(Ordering::Relaxed)
    }

    /// Failed attempts by (api, error code).
    pub fn errors(&self) -> BTreeMap<(Api, &'static str), u64> {
        self.errors.lock().expect("counter lock").clone()
    }

    /// Counts one failed attempt.
    pub fn count_error(&self, api: Api, code: &'static str) {
        *self
            .errors
            .lock()
            .expect("counter lock")
            .entry((api, code))
            .or_default() += 1;
    }

    fn attempt_sent(&self, api: Api) {
        self.requests[api.index()].fetch_add(1, Ordering::Relaxed);
        self.in_flight
            .store(api.index() as u8 + 1, Ordering::Relaxed);
    }

    /// Takes the API of the attempt on the wire, if any.
    pub fn take_in_flight(&self) -> Option<Api> {
        match self.in_flight.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Api::ALL.get(n as usize - 1).copied(),
        }
    }
}

/// The interceptor put on every client of a target.
#[derive(Debug, Clone)]
pub struct AttemptCounter {
    counters: Arc<ApiCounters>,
}

impl AttemptCounter {
    /// Counts into `counters`.
    pub fn new(counters: Arc<ApiCounters>) -> Self {
        AttemptCounter { counters }
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "FastLaunchExporterAttemptCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(api) = cfg
            .load::<Metadata>()
            .and_then(|m| Api::from_operation(m.name()))
        {
            self.counters.attempt_sent(api);
        }
        Ok(())
    }

    /// Refuses a successful answer whose XML does not end with the operation's closing tag:
    /// the SDK's parser accepts a body cut short and returns what it read, which would publish
    /// half a list as a success.
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if !response.status().is_success() {
            return Ok(());
        }
        let Some(operation) = cfg.load::<Metadata>().map(|m| m.name().to_string()) else {
            return Ok(());
        };
        let Some(body) = response.body().bytes() else {
            return Ok(());
        };
        let closing = format!("</{operation}Response>");
        if body.trim_ascii_end().ends_with(closing.as_bytes()) {
            Ok(())
        } else {
            Err(Box::new(IncompleteResponse { operation }))
        }
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // An attempt that failed before it was sent (e.g. AssumeRole failed while loading
        // credentials) sent nothing to this API: it is counted under the API that failed.
        let Some(api) = self.counters.take_in_flight() else {
            return Ok(());
        };
        if let Some(Err(error)) = context.output_or_error() {
            self.counters
                .count_error(api, classify_attempt_error(error));
        }
        Ok(())
    }
}

/// A successful answer whose body was cut short or is not the operation's XML.
#[derive(Debug)]
pub struct IncompleteResponse {
    operation: String,
}

impl std::fmt::Display for IncompleteResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answer is incomplete or malformed (no closing </{}Response>)",
            self.operation, self.operation
        )
    }
}

impl std::error::Error for IncompleteResponse {}

/// Whether an error's source chain shows a broken connection: an I/O error, or hyper seeing the
/// connection closed before a whole answer arrived.
pub fn is_connection_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The AWS error code carried by an operation error of one of the APIs we call.
fn operation_error_code(error: &ErasedError) -> Option<&str> {
    if let Some(e) = error.downcast_ref::<DescribeFastLaunchImagesError>() {
        return e.code();
    }
    if let Some(e) = error.downcast_ref::<AssumeRoleError>() {
        return e.code();
    }
    if let Some(e) = error.downcast_ref::<GetCallerIdentityError>() {
        return e.code();
    }
    None
}

fn classify_attempt_error(error: &OrchestratorError<ErasedError>) -> &'static str {
    if let Some(operation_error) = error.as_operation_error() {
        bounded_error_code(operation_error_code(operation_error))
    } else if error.is_timeout_error() {
        "timeout"
    } else if let Some(connector) = error.as_connector_error() {
        if connector.is_timeout() {
            "timeout"
        } else if connector.is_io() || is_connection_error(connector) {
            "connection"
        } else {
            "other"
        }
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_stay_a_bounded_set() {
        assert_eq!(
            bounded_error_code(Some("RequestLimitExceeded")),
            "RequestLimitExceeded"
        );
        assert_eq!(bounded_error_code(Some("Something <script>")), "other");
        assert_eq!(bounded_error_code(None), "other");
    }

    #[test]
    fn in_flight_api_is_taken_once() {
        let counters = ApiCounters::default();
        counters.attempt_sent(Api::AssumeRole);
        assert_eq!(counters.requests(Api::AssumeRole), 1);
        assert_eq!(counters.take_in_flight(), Some(Api::AssumeRole));
        assert_eq!(counters.take_in_flight(), None);
    }
}
