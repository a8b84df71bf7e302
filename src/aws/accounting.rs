//! Counting every AWS attempt a target sends and every one that fails, retried or not.
//!
//! The SDK retries throttled calls itself and returns nothing about the failed attempts, so an
//! interceptor registered on each client reports them to the target's [`AttemptSink`]:
//! `read_before_transmit` runs once per attempt sent and `read_after_attempt` once per attempt
//! with its result (see shared/reference/rust-sdk-notes.md).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_ec2::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use super::errors::{classify_attempt, IncompleteResponse};
use crate::domain::calls::{Api, AttemptSink};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// The sink of the target whose call runs in this task: where the attempts of clients shared
    /// by an account's targets (the STS client behind its role credentials) are counted.
    static CURRENT_SINK: Arc<dyn AttemptSink>;
}

/// Runs `call` with `sink` as the target whose attempts shared clients count.
pub(crate) async fn attributed<T>(
    sink: &Arc<dyn AttemptSink>,
    call: impl std::future::Future<Output = T>,
) -> T {
    CURRENT_SINK.scope(sink.clone(), call).await
}

/// The interceptor put on every client of a target. It also counts the attempts of the call in
/// progress, for the error message (a target's calls are sequential).
#[derive(Debug, Clone)]
pub(crate) struct AttemptCounter {
    /// None: the sink of the target the task works for ([`attributed`]).
    sink: Option<Arc<dyn AttemptSink>>,
    call_attempts: Arc<AtomicU32>,
}

impl AttemptCounter {
    /// Reports into `sink`.
    pub(crate) fn new(sink: Arc<dyn AttemptSink>) -> Self {
        AttemptCounter {
            sink: Some(sink),
            call_attempts: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Reports into the sink of the target the task works for: for a client several targets
    /// share.
    pub(crate) fn attributed() -> Self {
        AttemptCounter {
            sink: None,
            call_attempts: Arc::new(AtomicU32::new(0)),
        }
    }

    fn sink(&self) -> Option<Arc<dyn AttemptSink>> {
        self.sink
            .clone()
            .or_else(|| CURRENT_SINK.try_with(Arc::clone).ok())
    }

    /// Starts counting the attempts of a new call.
    pub(crate) fn start_call(&self) {
        self.call_attempts.store(0, Ordering::Relaxed);
    }

    /// Attempts sent since [`AttemptCounter::start_call`].
    pub(crate) fn call_attempts(&self) -> u32 {
        self.call_attempts.load(Ordering::Relaxed)
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
            self.call_attempts.fetch_add(1, Ordering::Relaxed);
            if let Some(sink) = self.sink() {
                sink.attempt_sent(api);
            }
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
        // EC2 and STS answer in XML (the query protocols); SQS answers JSON, which the SDK's
        // parser refuses when cut short.
        let xml = matches!(
            Api::from_operation(&operation),
            Some(
                Api::DescribeFastLaunchImages
                    | Api::AssumeRole
                    | Api::GetCallerIdentity
                    | Api::DescribeRegions
            )
        );
        if !xml {
            return Ok(());
        }
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
        let failure = match context.output_or_error() {
            Some(Err(error)) => Some(classify_attempt(error)),
            _ => None,
        };
        if let Some(sink) = self.sink() {
            sink.attempt_finished(failure.as_ref());
        }
        Ok(())
    }
}
