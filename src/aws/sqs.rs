//! The event queue's client: `ReceiveMessage`, `DeleteMessageBatch` and
//! `ChangeMessageVisibilityBatch` (the SDK speaks awsJson1_0 to SQS), with the same retry,
//! attempt counting and AssumeRole as a target's clients.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ec2::config::Region;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};

use super::accounting::AttemptCounter;
use super::errors;
use crate::domain::calls::{Api, ApiError, AttemptSink, ErrorCode};
use crate::domain::model::QueueSpec;
use crate::domain::ports::{BoxFuture, Queue, QueueMessage};

/// The SQS client of the event queue.
#[derive(Debug)]
pub(crate) struct QueueClient {
    sqs: aws_sdk_sqs::Client,
    url: String,
    /// `VisibilityTimeout` of every `ReceiveMessage` (see [`QueueSpec::visibility`]).
    visibility: Duration,
    counter: AttemptCounter,
}

impl QueueClient {
    pub(crate) fn new(
        base: &super::Base,
        queue: &QueueSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> QueueClient {
        let region = Region::new(queue.region.clone());
        let retry = RetryConfig::standard().with_max_attempts(max_attempts);
        let counter = AttemptCounter::new(sink);
        let mut config = aws_sdk_sqs::config::Builder::from(&base.sdk)
            .region(region.clone())
            .retry_config(retry.clone())
            .retry_partition(RetryPartition::new("fast-launch-events"))
            .interceptor(counter.clone());
        if let Some(role) = &queue.role {
            let (credentials, cache) = base.assume_role(
                role,
                &region,
                &retry,
                "fast-launch-events-sts".to_string(),
                counter.clone(),
            );
            config.set_credentials_provider(Some(credentials));
            config = config.identity_cache(cache);
        }
        QueueClient {
            sqs: aws_sdk_sqs::Client::from_conf(config.build()),
            url: queue.url.clone(),
            visibility: queue.visibility,
            counter,
        }
    }

    async fn receive(
        &self,
        wait: Duration,
        max_messages: i32,
    ) -> Result<Vec<QueueMessage>, ApiError> {
        self.counter.start_call();
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(self.visibility.as_secs() as i32)
            .max_number_of_messages(max_messages)
            .send()
            .await
            .map_err(|e| errors::from_sdk(Api::ReceiveMessage, &e, self.counter.call_attempts()))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                Some(QueueMessage {
                    id: m.message_id()?.to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    async fn delete(&self, messages: &[QueueMessage]) -> Result<(), ApiError> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                // Batch entry ids: up to 80 of [A-Za-z0-9_-], unique in the batch.
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(&m.receipt_handle)
                    .build()
                    .ok()
            })
            .collect();
        self.counter.start_call();
        let output = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(Api::DeleteMessageBatch, &e, self.counter.call_attempts())
            })?;
        batch_result(
            Api::DeleteMessageBatch,
            output.failed(),
            messages.len(),
            "deleted",
        )
    }

    async fn release(&self, messages: &[QueueMessage]) -> Result<(), ApiError> {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(&m.receipt_handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        self.counter.start_call();
        let output = self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(
                    Api::ChangeMessageVisibilityBatch,
                    &e,
                    self.counter.call_attempts(),
                )
            })?;
        batch_result(
            Api::ChangeMessageVisibilityBatch,
            output.failed(),
            messages.len(),
            "handed back",
        )
    }
}

impl Queue for QueueClient {
    fn release<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(QueueClient::release(self, messages))
    }

    fn receive(
        &self,
        wait: Duration,
        max_messages: i32,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, ApiError>> {
        Box::pin(QueueClient::receive(self, wait, max_messages))
    }

    fn delete<'a>(&'a self, messages: &'a [QueueMessage]) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(QueueClient::delete(self, messages))
    }
}

/// Ok when no entry of a batch call failed; else the first failure, and how many.
fn batch_result(
    api: Api,
    failed: &[BatchResultErrorEntry],
    total: usize,
    what: &str,
) -> Result<(), ApiError> {
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::new(
            api,
            ErrorCode::from_aws(Some(first.code())),
            format!(
                "{} of {total} messages not {what}: {}",
                failed.len(),
                first.message().unwrap_or_default()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str, code: &str, message: Option<&str>) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .set_message(message.map(str::to_string))
            .sender_fault(true)
            .build()
            .unwrap()
    }

    #[test]
    fn a_batch_without_failures_is_ok() {
        assert_eq!(
            batch_result(Api::DeleteMessageBatch, &[], 10, "deleted"),
            Ok(())
        );
    }

    #[test]
    fn a_batch_with_failures_names_the_first_and_how_many() {
        let failed = [
            failure(
                "m1",
                "ReceiptHandleIsInvalid",
                Some("The receipt handle is invalid."),
            ),
            failure("m4", "AccessDenied", Some("other")),
        ];
        assert_eq!(
            batch_result(Api::DeleteMessageBatch, &failed, 7, "deleted"),
            Err(ApiError::new(
                Api::DeleteMessageBatch,
                ErrorCode::Unrecognized(Some("ReceiptHandleIsInvalid".into())),
                "2 of 7 messages not deleted: The receipt handle is invalid.",
            ))
        );
        let denied = [failure("m0", "AccessDenied", None)];
        assert_eq!(
            batch_result(Api::ChangeMessageVisibilityBatch, &denied, 3, "handed back"),
            Err(ApiError::new(
                Api::ChangeMessageVisibilityBatch,
                ErrorCode::AccessDenied,
                "1 of 3 messages not handed back: ",
            ))
        );
    }
}
