//! Turns SDK errors into the exporter's [`ApiError`]: the AWS error code as a bounded
//! [`ErrorCode`], AWS's message and request id, and nothing else (no raw bodies, no `Debug` dumps).

use std::error::Error;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_smithy_runtime_api::client::interceptors::context::Error as ErasedError;
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;

use crate::domain::calls::{Api, ApiError, ErrorCode};

/// The longest message kept from a failure without an AWS message (a chain of transport errors).
const MAX_MESSAGE_CHARS: usize = 300;

/// The exporter's error for a failed call of `api` that took `attempts` attempts.
pub(crate) fn from_sdk<E, R>(api: Api, error: &SdkError<E, R>, attempts: u32) -> ApiError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: fmt::Debug + 'static,
{
    // A denied AssumeRole surfaces as a dispatch failure of the EC2 call whose source chain
    // holds our AssumeRole error (rust-sdk-notes.md): report it as the AssumeRole failure.
    if let Some(inner) = find_in_chain::<ApiError>(error) {
        return inner.clone();
    }
    let (code, message, request_id) = match error {
        SdkError::ServiceError(e) => {
            let meta = e.err().meta();
            // The SDK takes the request id from the `x-amzn-requestid` header; EC2 and STS also
            // write it in the error body (`<RequestID>`, `<RequestId>`), read when the header is
            // missing.
            let request_id = meta
                .request_id()
                .map(str::to_string)
                .or_else(|| raw_body(e.raw()).and_then(body_request_id));
            (
                ErrorCode::from_aws(meta.code()),
                meta.message().unwrap_or_default().to_string(),
                request_id,
            )
        }
        SdkError::TimeoutError(_) => (ErrorCode::Timeout, source_chain(error), None),
        SdkError::DispatchFailure(e) if e.is_timeout() => {
            (ErrorCode::Timeout, source_chain(error), None)
        }
        SdkError::DispatchFailure(e) if e.is_io() || is_connection_error(error) => {
            (ErrorCode::Connection, source_chain(error), None)
        }
        _ if find_in_chain::<IncompleteResponse>(error).is_some() => {
            (ErrorCode::Malformed, source_chain(error), None)
        }
        SdkError::ResponseError(_) => (ErrorCode::Malformed, source_chain(error), None),
        _ if find_in_chain::<CredentialsError>(error).is_some() => {
            (ErrorCode::Credentials, source_chain(error), None)
        }
        _ => (ErrorCode::Unrecognized(None), source_chain(error), None),
    };
    ApiError {
        api,
        code,
        message,
        request_id,
        attempts,
    }
}

/// The body of a raw HTTP response, when the SDK kept it in memory.
fn raw_body<R: fmt::Debug + 'static>(raw: &R) -> Option<&[u8]> {
    (raw as &dyn std::any::Any)
        .downcast_ref::<aws_smithy_runtime_api::http::Response>()
        .and_then(|r| r.body().bytes())
}

/// The request id an AWS XML error body carries (`<RequestID>` in EC2's, `<RequestId>` in STS's).
fn body_request_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    ["RequestID", "RequestId", "requestId"]
        .iter()
        .find_map(|tag| {
            let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
            let end = start + text[start..].find('<')?;
            let id = text[start..end].trim();
            // A request id is short and plain; anything else is not one.
            (!id.is_empty()
                && id.len() <= 128
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .then(|| id.to_string())
        })
}

/// The error code of one failed attempt, as the interceptor sees it.
pub(crate) fn classify_attempt(error: &OrchestratorError<ErasedError>) -> ErrorCode {
    if let Some(operation_error) = error.as_operation_error() {
        ErrorCode::from_aws(operation_error_code(operation_error))
    } else if error.is_timeout_error() {
        ErrorCode::Timeout
    } else if let Some(connector) = error.as_connector_error() {
        if connector.is_timeout() {
            ErrorCode::Timeout
        } else if connector.is_io() || is_connection_error(connector) {
            ErrorCode::Connection
        } else {
            ErrorCode::Unrecognized(None)
        }
    } else if error.is_response_error() {
        ErrorCode::Malformed
    } else {
        ErrorCode::Unrecognized(None)
    }
}

/// The AWS error code carried by an operation error of one of the APIs we call.
fn operation_error_code(error: &ErasedError) -> Option<&str> {
    use aws_sdk_ec2::operation::describe_fast_launch_images::DescribeFastLaunchImagesError;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
    if let Some(e) = error.downcast_ref::<DescribeFastLaunchImagesError>() {
        return e.code();
    }
    if let Some(e) = error.downcast_ref::<AssumeRoleError>() {
        return e.code();
    }
    if let Some(e) = error.downcast_ref::<GetCallerIdentityError>() {
        return e.code();
    }
    if let Some(e) =
        error.downcast_ref::<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>()
    {
        return e.code();
    }
    if let Some(e) = error
        .downcast_ref::<aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError>()
    {
        return e.code();
    }
    if let Some(e) = error.downcast_ref::<
        aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchError,
    >() {
        return e.code();
    }
    if let Some(e) =
        error.downcast_ref::<aws_sdk_cloudwatch::operation::list_metrics::ListMetricsError>()
    {
        return e.code();
    }
    if let Some(e) =
        error.downcast_ref::<aws_sdk_ec2::operation::describe_regions::DescribeRegionsError>()
    {
        return e.code();
    }
    {
        use aws_sdk_organizations::operation as org;
        if let Some(e) = error.downcast_ref::<org::list_accounts::ListAccountsError>() {
            return e.code();
        }
        if let Some(e) =
            error.downcast_ref::<org::list_accounts_for_parent::ListAccountsForParentError>()
        {
            return e.code();
        }
        if let Some(e) = error.downcast_ref::<
            org::list_organizational_units_for_parent::ListOrganizationalUnitsForParentError,
        >() {
            return e.code();
        }
        if let Some(e) =
            error.downcast_ref::<org::list_tags_for_resource::ListTagsForResourceError>()
        {
            return e.code();
        }
        if let Some(e) =
            error.downcast_ref::<org::describe_organization::DescribeOrganizationError>()
        {
            return e.code();
        }
    }
    if let Some(e) =
        error.downcast_ref::<aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError>()
    {
        return e.code();
    }
    None
}

/// A successful answer whose body was cut short or is not the operation's XML.
#[derive(Debug)]
pub(crate) struct IncompleteResponse {
    pub(crate) operation: String,
}

impl fmt::Display for IncompleteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} answer is incomplete or malformed (no closing </{}Response>)",
            self.operation, self.operation
        )
    }
}

impl Error for IncompleteResponse {}

fn find_in_chain<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Whether an error's source chain shows a broken connection: an I/O error, or hyper seeing the
/// connection closed before a whole answer arrived.
fn is_connection_error(error: &(dyn Error + 'static)) -> bool {
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

/// The `Display` texts of an error's causes, joined on `: `, repeats left out, cut to
/// [`MAX_MESSAGE_CHARS`]. The top level (`dispatch failure`, `response error` …) says little and
/// is left out when it has causes.
fn source_chain(error: &(dyn Error + 'static)) -> String {
    // The SDK's wrappers say only which kind of failure it was; the code already says that.
    const WRAPPERS: [&str; 6] = [
        "io error",
        "other",
        "timeout",
        "user error",
        "dispatch failure",
        "response error",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty()
            && !WRAPPERS.contains(&text.as_str())
            && !parts.iter().any(|p| p.contains(&text))
        {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    let joined = parts.join(": ").replace(['\n', '\r'], " ");
    match joined.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_read_from_ec2_and_sts_error_bodies() {
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors><RequestID>a1b2-c3</RequestID></Response>";
        assert_eq!(body_request_id(ec2).as_deref(), Some("a1b2-c3"));
        let sts = b"<ErrorResponse><Error><Code>AccessDenied</Code></Error><RequestId>x-9</RequestId></ErrorResponse>";
        assert_eq!(body_request_id(sts).as_deref(), Some("x-9"));
        assert_eq!(body_request_id(b"<RequestID><script></RequestID>"), None);
        assert_eq!(body_request_id(b"not xml"), None);
    }

    #[test]
    fn a_transport_failure_reads_as_its_causes() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        );
        let error: SdkError<
            aws_sdk_ec2::operation::describe_fast_launch_images::DescribeFastLaunchImagesError,
            (),
        > = SdkError::dispatch_failure(aws_smithy_runtime_api::client::result::ConnectorError::io(
            Box::new(io),
        ));
        let converted = from_sdk(Api::DescribeFastLaunchImages, &error, 3);
        assert_eq!(converted.code, ErrorCode::Connection);
        assert_eq!(
            converted.to_string(),
            "DescribeFastLaunchImages failed: connection: connection reset by peer (3 attempts)"
        );
    }
}
