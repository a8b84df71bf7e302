//! The only module that talks to the AWS SDK: a client per target, credentials (base chain and
//! AssumeRole), the paginated DescribeFastLaunchImages call, and error classification. Everything
//! it returns is in the exporter's own types.

pub mod accounting;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_sdk_ec2::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ec2::config::{Credentials, IdentityCache, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::DescribeFastLaunchImagesSuccessItem;
use aws_sdk_ec2::types::{FastLaunchStateCode, Filter as Ec2Filter};

use crate::config::{AccountConfig, CollectionSettings, Filter, RoleConfig};
use crate::model::{FastLaunchImage, FastLaunchState};
pub use accounting::{Api, ApiCounters};

/// Loads the base AWS configuration from the standard chain: environment, shared config and
/// profile, SSO, web identity (IRSA), ECS and IMDS, honouring `AWS_ENDPOINT_URL*` and `AWS_REGION`.
pub async fn load_base_config() -> SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A failed AWS call, reduced to what the exporter reports: which API, a bounded error code for
/// metrics, and the full message for logs and the landing page (never containing credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The API that failed.
    pub api: Api,
    /// The AWS error code, or `timeout`, `connection` or `other`.
    pub code: &'static str,
    /// A human-readable description.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({}): {}",
            self.api.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    fn from_sdk<E, R>(api: Api, error: &SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        let message = DisplayErrorContext(error).to_string();
        // A denied AssumeRole surfaces as a dispatch failure of the EC2 call whose source chain
        // holds our AssumeRole error (rust-sdk-notes.md): report it as the AssumeRole failure.
        if let Some(inner) = find_in_chain::<AwsError>(error) {
            return inner.clone();
        }
        let code = match error {
            SdkError::ServiceError(e) => accounting::bounded_error_code(e.err().code()),
            SdkError::TimeoutError(_) => "timeout",
            SdkError::DispatchFailure(e) if e.is_timeout() => "timeout",
            SdkError::DispatchFailure(e) if e.is_io() => "connection",
            SdkError::DispatchFailure(_) if accounting::is_connection_error(error) => "connection",
            _ => "other",
        };
        AwsError { api, code, message }
    }
}

fn find_in_chain<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Credentials from STS AssumeRole, made with the target's own STS client so that its attempts
/// and errors are counted for the target. The EC2 client's identity cache keeps them until
/// shortly before they expire, so a role is not assumed again on every collection.
#[derive(Debug)]
struct AssumeRoleCredentials {
    sts: aws_sdk_sts::Client,
    role: RoleConfig,
}

impl AssumeRoleCredentials {
    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let mut request = self
            .sts
            .assume_role()
            .role_arn(&self.role.arn)
            .role_session_name(&self.role.session_name);
        if let Some(external_id) = &self.role.external_id {
            request = request.external_id(external_id);
        }
        if let Some(duration) = self.role.duration {
            request = request.duration_seconds(duration.as_secs() as i32);
        }
        let output = request.send().await.map_err(|e| {
            let mut error = AwsError::from_sdk(Api::AssumeRole, &e);
            error.message = format!("{}: {}", self.role.arn, error.message);
            CredentialsError::provider_error(error)
        })?;
        let Some(credentials) = output.credentials() else {
            return Err(CredentialsError::provider_error(AwsError {
                api: Api::AssumeRole,
                code: "other",
                message: format!("{}: AssumeRole returned no credentials", self.role.arn),
            }));
        };
        let expiry = SystemTime::try_from(*credentials.expiration()).ok();
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            expiry,
            "AssumeRole",
        ))
    }
}

impl ProvideCredentials for AssumeRoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// The AWS clients of one target (account, region), with their attempt counters.
#[derive(Debug, Clone)]
pub struct TargetClient {
    ec2: aws_sdk_ec2::Client,
    sts: aws_sdk_sts::Client,
    counters: Arc<ApiCounters>,
}

impl TargetClient {
    /// Builds the clients: the SDK's standard retry mode with `max_attempts`, a retry partition of
    /// the target's own (so one target's throttling never drains another's retry budget), and
    /// AssumeRole credentials when the account has a role.
    pub fn new(
        base: &SdkConfig,
        account: &AccountConfig,
        region: &str,
        settings: &CollectionSettings,
        counters: Arc<ApiCounters>,
    ) -> TargetClient {
        let partition = format!("fast-launch-{}-{}", account.key(), region);
        let retry = RetryConfig::standard().with_max_attempts(settings.max_attempts);
        let sts_config = aws_sdk_sts::config::Builder::from(base)
            .region(Region::new(region.to_string()))
            .retry_config(retry.clone())
            .retry_partition(RetryPartition::new(format!("{partition}-sts")))
            .interceptor(accounting::AttemptCounter::new(counters.clone()))
            .build();
        let sts = aws_sdk_sts::Client::from_conf(sts_config);
        let mut ec2_config = aws_sdk_ec2::config::Builder::from(base)
            .region(Region::new(region.to_string()))
            .retry_config(retry)
            .retry_partition(RetryPartition::new(partition))
            .interceptor(accounting::AttemptCounter::new(counters.clone()));
        if let Some(role) = &account.role {
            ec2_config = ec2_config
                .credentials_provider(AssumeRoleCredentials {
                    sts: sts.clone(),
                    role: role.clone(),
                })
                // The lazy cache renews credentials shortly before they expire (10 s plus
                // jitter by default); it is checked before every attempt, so each page is signed
                // with credentials that are still valid.
                .identity_cache(IdentityCache::lazy().build());
        }
        TargetClient {
            ec2: aws_sdk_ec2::Client::from_conf(ec2_config.build()),
            sts,
            counters,
        }
    }

    /// The target's attempt counters.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// The account id of the base credentials, from `sts:GetCallerIdentity`.
    pub async fn caller_account_id(&self) -> Result<String, AwsError> {
        let output = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Api::GetCallerIdentity, &e))?;
        output
            .account()
            .map(str::to_string)
            .ok_or_else(|| AwsError {
                api: Api::GetCallerIdentity,
                code: "other",
                message: "GetCallerIdentity returned no account".to_string(),
            })
    }

    /// Whether this target may call DescribeFastLaunchImages: a `DryRun` call answered
    /// `DryRunOperation` means allowed; anything else (e.g. `UnauthorizedOperation`) is the error.
    pub async fn check_describe_permission(&self) -> Result<(), AwsError> {
        match self
            .ec2
            .describe_fast_launch_images()
            .dry_run(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = AwsError::from_sdk(Api::DescribeFastLaunchImages, &e);
                if error.code == "DryRunOperation" && error.api == Api::DescribeFastLaunchImages {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Every image across every page, or an error if any page failed (never half a list).
    pub async fn describe_fast_launch_images(
        &self,
        page_size: i32,
        image_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<FastLaunchImage>, AwsError> {
        let filters: Vec<Ec2Filter> = filters
            .iter()
            .map(|f| {
                Ec2Filter::builder()
                    .name(&f.name)
                    .set_values(Some(f.values.clone()))
                    .build()
            })
            .collect();
        let mut request = self
            .ec2
            .describe_fast_launch_images()
            .max_results(page_size);
        if !image_ids.is_empty() {
            request = request.set_image_ids(Some(image_ids.to_vec()));
        }
        if !filters.is_empty() {
            request = request.set_filters(Some(filters));
        }
        let mut items = request.into_paginator().items().send();
        let mut images = Vec::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(|e| AwsError::from_sdk(Api::DescribeFastLaunchImages, &e))?;
            images.push(convert_image(item));
        }
        Ok(images)
    }
}

/// Converts one SDK item into the exporter's type (the one place SDK shapes are read).
fn convert_image(item: DescribeFastLaunchImagesSuccessItem) -> FastLaunchImage {
    let text = |s: Option<&str>| s.unwrap_or_default().to_string();
    let template = item.launch_template();
    FastLaunchImage {
        image_id: text(item.image_id()),
        owner_id: text(item.owner_id()),
        resource_type: text(item.resource_type().map(|r| r.as_str())),
        launch_template_id: text(template.and_then(|t| t.launch_template_id())),
        launch_template_name: text(template.and_then(|t| t.launch_template_name())),
        launch_template_version: text(template.and_then(|t| t.version())),
        state: item
            .state()
            .map(|s: &FastLaunchStateCode| FastLaunchState::from_aws(s.as_str())),
        state_transition_reason: text(item.state_transition_reason()),
        state_transition_time: item
            .state_transition_time()
            .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos() / 1_000_000) / 1000.0),
        target_resource_count: item
            .snapshot_configuration()
            .and_then(|s| s.target_resource_count()),
        max_parallel_launches: item.max_parallel_launches(),
    }
}
