//! The only module that talks to the AWS SDK: the base configuration ([`Base`]), a client per
//! target built from a [`TargetSpec`] (credentials by the base chain or AssumeRole), the paginated
//! DescribeFastLaunchImages call, and error classification. Everything it hands out is in the
//! exporter's own types, through the ports `domain` defines ([`Connect`], [`Fetch`], [`Probe`], ...).

/// Runs `$body` for every page of `$pages` (a paginator's stream), counting each page's attempts
/// on `$counter` and returning the exporter's error for `$api` when a page fails.
macro_rules! for_each_page {
    ($counter:expr, $api:expr, $pages:expr, |$page:ident| $body:block) => {{
        let mut pages = $pages;
        loop {
            $counter.start_call();
            let Some(page) = pages.next().await else {
                break;
            };
            let $page =
                page.map_err(|e| super::errors::from_sdk($api, &e, $counter.call_attempts()))?;
            $body
        }
    }};
}

mod accounting;
mod cloudwatch;
mod errors;
mod organizations;
mod sqs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::{
    error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
};
use aws_sdk_ec2::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ec2::config::{Credentials, IdentityCache, Region, SharedIdentityCache};
use aws_sdk_ec2::types::DescribeFastLaunchImagesSuccessItem;
use aws_sdk_ec2::types::{FastLaunchStateCode, Filter as Ec2Filter};

use crate::domain::calls::{Api, ApiError, AttemptSink, ErrorCode};
use crate::domain::model::{
    FastLaunchImage, FastLaunchState, MetricSeries, MetricWindow, Query, QueueSpec, RoleSpec,
    TargetSpec, BASE_ACCOUNT_KEY,
};
use crate::domain::ports::{BoxFuture, Connect, Fetch, Organization, Probe, Queue, RegionList};
use accounting::AttemptCounter;
use cloudwatch::CloudWatchClient;

/// The base AWS configuration every target's calls are made with: region, credentials chain,
/// endpoint. Opaque, so that no SDK type leaves this module.
///
/// One EC2, one CloudWatch and one STS client serve the whole process: an SDK client holds tens of kilobytes of
/// configuration and runtime plugins and takes a fraction of a millisecond to build, so with
/// thousands of targets one client per target costs more memory and CPU than the calls. Each
/// call carries its target's region, retry policy, retry partition, attempt counter and role
/// credentials ([`PerCall`]).
#[derive(Debug, Clone)]
pub struct Base {
    sdk: SdkConfig,
    ec2: aws_sdk_ec2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// GetCallerIdentity and AssumeRole, always with the base credentials.
    sts: aws_sdk_sts::Client,
    /// Role credentials by role (ARN, external id, session name, duration): one provider and
    /// identity cache per account, shared by its targets in every region and by DescribeRegions.
    roles: Arc<std::sync::Mutex<HashMap<RoleSpec, RoleCredentials>>>,
}

/// A role's credentials provider and the identity cache its calls share.
type RoleCredentials = (SharedCredentialsProvider, SharedIdentityCache);

/// What a caller sets on each call of a shared client: its region, retry policy, its own retry
/// partition (so one target's throttling never drains another's retry budget), its role's
/// credentials (None: the base chain) and, per call, its attempt counter.
#[derive(Debug, Clone)]
struct PerCall {
    region: Region,
    retry: RetryConfig,
    partition: RetryPartition,
    role: Option<RoleCredentials>,
}

impl PerCall {
    fn ec2(&self, counter: &AttemptCounter) -> aws_sdk_ec2::config::Builder {
        let mut config = aws_sdk_ec2::config::Builder::default()
            .region(self.region.clone())
            .retry_config(self.retry.clone())
            .retry_partition(self.partition.clone())
            .interceptor(counter.clone());
        if let Some((credentials, cache)) = &self.role {
            config.set_credentials_provider(Some(credentials.clone()));
            config = config.identity_cache(cache.clone());
        }
        config
    }

    fn cloudwatch(&self, counter: &AttemptCounter) -> aws_sdk_cloudwatch::config::Builder {
        let mut config = aws_sdk_cloudwatch::config::Builder::default()
            .region(self.region.clone())
            .retry_config(self.retry.clone())
            .retry_partition(self.partition.clone())
            .interceptor(counter.clone());
        if let Some((credentials, cache)) = &self.role {
            config.set_credentials_provider(Some(credentials.clone()));
            config = config.identity_cache(cache.clone());
        }
        config
    }

    /// STS is always called with the base credentials.
    fn sts(&self, counter: &AttemptCounter) -> aws_sdk_sts::config::Builder {
        aws_sdk_sts::config::Builder::default()
            .region(self.region.clone())
            .retry_config(self.retry.clone())
            .retry_partition(self.partition.clone())
            .interceptor(counter.clone())
    }
}

impl Base {
    fn new(sdk: SdkConfig) -> Base {
        Base {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
            sdk,
            roles: Arc::default(),
        }
    }

    /// The standard chain: environment, shared config and profile, SSO, web identity (IRSA),
    /// ECS and EKS Pod Identity, IMDS, `credential_process`; honours `AWS_ENDPOINT_URL*` and
    /// `AWS_REGION`.
    pub async fn from_environment() -> Base {
        Base::new(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(shared_https_client())
                .load()
                .await,
        )
    }

    /// A fixed endpoint, region and static credentials: for the demo and tests against the
    /// simulator, the same override `AWS_ENDPOINT_URL` gives.
    pub async fn with_endpoint(
        endpoint_url: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Base {
        Base::new(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(shared_https_client())
                .region(Region::new(region.to_string()))
                .credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key,
                    None,
                    None,
                    "static",
                ))
                .endpoint_url(endpoint_url)
                .load()
                .await,
        )
    }

    /// The credentials of `role`, shared by every target of its account: the role is assumed
    /// once per account (by whichever target, or DescribeRegions, needs it first, and counted
    /// for that caller: [`accounting::attributed`]), not once per region. Built on first use,
    /// calling STS in `region`.
    fn role_credentials(
        &self,
        role: &RoleSpec,
        region: &Region,
        retry: &RetryConfig,
    ) -> RoleCredentials {
        let mut roles = crate::domain::sync::lock(&self.roles);
        roles
            .entry(role.clone())
            .or_insert_with(|| {
                self.assume_role(
                    role,
                    region,
                    retry,
                    format!("fast-launch-sts-{}", role.arn),
                    AttemptCounter::attributed(),
                )
            })
            .clone()
    }

    /// AssumeRole credentials for `role`, counted on `counter`, with their own identity cache.
    /// The lazy cache renews credentials shortly before they expire (10 s plus jitter by
    /// default); it is checked before every attempt, so each page is signed with credentials
    /// that are still valid.
    fn assume_role(
        &self,
        role: &RoleSpec,
        region: &Region,
        retry: &RetryConfig,
        partition: String,
        counter: AttemptCounter,
    ) -> RoleCredentials {
        (
            SharedCredentialsProvider::new(AssumeRoleCredentials {
                sts: self.sts.clone(),
                per_call: PerCall {
                    region: region.clone(),
                    retry: retry.clone(),
                    partition: RetryPartition::new(partition),
                    role: None,
                },
                counter,
                role: role.clone(),
            }),
            IdentityCache::lazy().build(),
        )
    }

    /// The region the environment names (`AWS_REGION`, the profile), if any.
    pub fn region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.as_ref().to_string())
    }
}

/// The HTTPS client every SDK client of the process shares: hyper 1 with rustls on aws-lc, the
/// native roots and the environment's proxy settings, as the SDK's default client, but one
/// connection pool and one root store for all targets instead of one per client (with thousands
/// of targets, per-client pools exhaust file descriptors and memory).
fn shared_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

impl Base {
    /// The client of one target: its region, its retry partition (its own retry budget), and
    /// its role's credentials when it assumes one.
    fn target_client(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> TargetClient {
        let retry = RetryConfig::standard().with_max_attempts(max_attempts);
        let region = Region::new(spec.key.region.clone());
        let role = spec
            .role
            .as_ref()
            .map(|role| self.role_credentials(role, &region, &retry));
        let per_call = PerCall {
            region,
            retry,
            partition: RetryPartition::new(format!("fast-launch-{}", spec.key)),
            role,
        };
        TargetClient::new(self, spec, per_call, sink)
    }
}

impl Connect for Base {
    fn connect_queue(
        &self,
        queue: &QueueSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Queue> {
        Arc::new(sqs::QueueClient::new(self, queue, max_attempts, sink))
    }

    fn connect(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Fetch> {
        Arc::new(self.target_client(spec, max_attempts, sink))
    }

    fn probe(
        &self,
        spec: &TargetSpec,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Probe> {
        Arc::new(self.target_client(spec, max_attempts, sink))
    }

    fn home_region(&self) -> Option<String> {
        self.region()
    }

    fn connect_organization(
        &self,
        role: Option<&RoleSpec>,
        region: &str,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn Organization> {
        let region = Region::new(region.to_string());
        let retry = RetryConfig::standard().with_max_attempts(max_attempts);
        let counter = AttemptCounter::new(sink);
        let mut config = aws_sdk_organizations::config::Builder::from(&self.sdk)
            .region(region.clone())
            .retry_config(retry.clone())
            .retry_partition(RetryPartition::new("fast-launch-organizations"))
            .interceptor(counter.clone());
        if let Some(role) = role {
            let (credentials, cache) = self.assume_role(
                role,
                &region,
                &retry,
                "fast-launch-organizations-sts".to_string(),
                counter.clone(),
            );
            config.set_credentials_provider(Some(credentials));
            config = config.identity_cache(cache);
        }
        Arc::new(organizations::OrganizationClient {
            client: aws_sdk_organizations::Client::from_conf(config.build()),
            counter,
        })
    }

    fn connect_regions(
        &self,
        role: Option<&RoleSpec>,
        region: &str,
        max_attempts: u32,
        sink: Arc<dyn AttemptSink>,
    ) -> Arc<dyn RegionList> {
        let region = Region::new(region.to_string());
        let retry = RetryConfig::standard().with_max_attempts(max_attempts);
        let partition = format!(
            "fast-launch-regions-{}",
            role.map_or(BASE_ACCOUNT_KEY, |r| r.account_id.as_str())
        );
        Arc::new(organizations::RegionClient {
            ec2: self.ec2.clone(),
            per_call: PerCall {
                role: role.map(|role| self.role_credentials(role, &region, &retry)),
                region,
                retry,
                partition: RetryPartition::new(partition),
            },
            counter: AttemptCounter::new(sink.clone()),
            sink,
        })
    }
}

/// Credentials from STS AssumeRole, with attempts and errors counted on `counter`. The identity
/// cache they come with keeps them until shortly before they expire, so a role is not assumed
/// again on every collection.
#[derive(Debug)]
struct AssumeRoleCredentials {
    sts: aws_sdk_sts::Client,
    per_call: PerCall,
    counter: AttemptCounter,
    role: RoleSpec,
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
        self.counter.start_call();
        let output = request
            .customize()
            .config_override(self.per_call.sts(&self.counter))
            .send()
            .await
            .map_err(|e| {
                let mut error = errors::from_sdk(Api::AssumeRole, &e, self.counter.call_attempts());
                error.message = format!("{}: {}", self.role.arn, error.message);
                CredentialsError::provider_error(error)
            })?;
        let Some(credentials) = output.credentials() else {
            return Err(CredentialsError::provider_error(ApiError::new(
                Api::AssumeRole,
                ErrorCode::Malformed,
                format!("{}: AssumeRole returned no credentials", self.role.arn),
            )));
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

/// The token of the next page when paging by hand (the SDK's paginators drop per-call settings):
/// None when there is none, or when the answer repeats the token just sent (as the paginators
/// stop).
fn next_page(sent: &Option<String>, answered: Option<&str>) -> Option<String> {
    answered
        .filter(|t| !t.is_empty() && Some(*t) != sent.as_deref())
        .map(str::to_string)
}

/// The AWS calls of one target (account, region): the process's shared clients, called with
/// the target's region, retry partition, credentials and counters.
#[derive(Debug, Clone)]
struct TargetClient {
    ec2: aws_sdk_ec2::Client,
    /// For GetCallerIdentity: base-credentials targets only (a role's account id is known).
    sts: Option<aws_sdk_sts::Client>,
    per_call: PerCall,
    /// Present when the target reads the CloudWatch fast launch metrics.
    cloudwatch: Option<CloudWatchClient>,
    ec2_counter: AttemptCounter,
    sts_counter: AttemptCounter,
    /// Where the attempts of the account's shared role credentials are counted while this
    /// target calls.
    sink: Arc<dyn AttemptSink>,
}

impl TargetClient {
    /// The target's calls, CloudWatch's too when the spec reads it (with the same role
    /// credentials as EC2, its own retry partition).
    fn new(
        base: &Base,
        spec: &TargetSpec,
        per_call: PerCall,
        sink: Arc<dyn AttemptSink>,
    ) -> TargetClient {
        let cloudwatch = spec.cloudwatch.map(|_| CloudWatchClient {
            client: base.cloudwatch.clone(),
            per_call: PerCall {
                partition: RetryPartition::new(format!("fast-launch-{}-cloudwatch", spec.key)),
                ..per_call.clone()
            },
            counter: AttemptCounter::new(sink.clone()),
        });
        TargetClient {
            ec2: base.ec2.clone(),
            sts: per_call.role.is_none().then(|| base.sts.clone()),
            per_call,
            cloudwatch,
            ec2_counter: AttemptCounter::new(sink.clone()),
            sts_counter: AttemptCounter::new(sink.clone()),
            sink,
        }
    }

    async fn caller_account_id(&self) -> Result<String, ApiError> {
        let Some(sts) = &self.sts else {
            return Err(ApiError::new(
                Api::GetCallerIdentity,
                ErrorCode::Unrecognized(None),
                "a role's account id is taken from its ARN",
            ));
        };
        self.sts_counter.start_call();
        let output = sts
            .get_caller_identity()
            .customize()
            .config_override(self.per_call.sts(&self.sts_counter))
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(Api::GetCallerIdentity, &e, self.sts_counter.call_attempts())
            })?;
        output.account().map(str::to_string).ok_or_else(|| {
            ApiError::new(
                Api::GetCallerIdentity,
                ErrorCode::Malformed,
                "GetCallerIdentity returned no account",
            )
        })
    }

    async fn check_describe_permission(&self) -> Result<(), ApiError> {
        self.ec2_counter.start_call();
        let result = self
            .ec2
            .describe_fast_launch_images()
            .dry_run(true)
            .customize()
            .config_override(self.per_call.ec2(&self.ec2_counter))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = errors::from_sdk(
                    Api::DescribeFastLaunchImages,
                    &e,
                    self.ec2_counter.call_attempts(),
                );
                // DryRun answers DryRunOperation when the call would have been allowed.
                if error.code == ErrorCode::DryRunOperation
                    && error.api == Api::DescribeFastLaunchImages
                {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn fast_launch_images(
        &self,
        query: &Query,
        page_size: i32,
    ) -> Result<Vec<FastLaunchImage>, ApiError> {
        let filters: Vec<Ec2Filter> = query
            .filters
            .iter()
            .map(|f| {
                Ec2Filter::builder()
                    .name(&f.name)
                    .set_values(Some(f.values.clone()))
                    .build()
            })
            .collect();
        // Page by page with the target's settings on each call (the SDK's paginator would
        // drop them); like the paginator, a token repeated stops the listing.
        let mut images = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.ec2_counter.start_call();
            let page = self
                .ec2
                .describe_fast_launch_images()
                .max_results(page_size)
                .set_image_ids((!query.image_ids.is_empty()).then(|| query.image_ids.clone()))
                .set_filters((!filters.is_empty()).then(|| filters.clone()))
                .set_next_token(token.clone())
                .customize()
                .config_override(self.per_call.ec2(&self.ec2_counter))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(
                        Api::DescribeFastLaunchImages,
                        &e,
                        self.ec2_counter.call_attempts(),
                    )
                })?;
            let next = next_page(&token, page.next_token());
            images.extend(
                page.fast_launch_images
                    .unwrap_or_default()
                    .into_iter()
                    .map(convert_image),
            );
            match next {
                Some(next) => token = Some(next),
                None => return Ok(images),
            }
        }
    }
}

impl Fetch for TargetClient {
    fn caller_account_id(&self) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(TargetClient::caller_account_id(self))
    }

    fn fast_launch_images<'a>(
        &'a self,
        query: &'a Query,
        page_size: i32,
    ) -> BoxFuture<'a, Result<Vec<FastLaunchImage>, ApiError>> {
        Box::pin(accounting::attributed(
            &self.sink,
            TargetClient::fast_launch_images(self, query, page_size),
        ))
    }

    fn launch_metrics<'a>(
        &'a self,
        image_ids: &'a [String],
        window: &'a MetricWindow,
    ) -> BoxFuture<'a, Result<Vec<MetricSeries>, ApiError>> {
        Box::pin(accounting::attributed(&self.sink, async move {
            match &self.cloudwatch {
                Some(cloudwatch) => cloudwatch.launch_metrics(image_ids, window).await,
                None => Ok(Vec::new()),
            }
        }))
    }
}

impl Probe for TargetClient {
    fn check_describe_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(accounting::attributed(
            &self.sink,
            TargetClient::check_describe_permission(self),
        ))
    }

    fn check_cloudwatch_permission(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(accounting::attributed(&self.sink, async move {
            match &self.cloudwatch {
                Some(cloudwatch) => cloudwatch.check_permission().await,
                None => Ok(()),
            }
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::primitives::DateTime;
    use aws_sdk_ec2::types::{
        FastLaunchLaunchTemplateSpecificationResponse, FastLaunchResourceType,
        FastLaunchSnapshotConfigurationResponse,
    };

    #[test]
    fn paging_goes_on_with_a_new_token_and_ends_on_none_an_empty_or_a_repeated_one() {
        let first: Option<String> = None;
        assert_eq!(next_page(&first, Some("t1")).as_deref(), Some("t1"));
        assert_eq!(next_page(&first, None), None);
        assert_eq!(next_page(&first, Some("")), None);
        let sent = Some("t1".to_string());
        assert_eq!(next_page(&sent, Some("t2")).as_deref(), Some("t2"));
        assert_eq!(next_page(&sent, Some("t1")), None, "the token just sent");
        assert_eq!(next_page(&sent, Some("")), None);
        assert_eq!(next_page(&sent, None), None);
    }

    #[test]
    fn an_image_is_converted_field_by_field() {
        let item = DescribeFastLaunchImagesSuccessItem::builder()
            .image_id("ami-0123456789abcdef0")
            .owner_id("111111111111")
            .resource_type(FastLaunchResourceType::Snapshot)
            .launch_template(
                FastLaunchLaunchTemplateSpecificationResponse::builder()
                    .launch_template_id("lt-0abcdef1234567890")
                    .launch_template_name("windows")
                    .version("3")
                    .build(),
            )
            .state(FastLaunchStateCode::EnablingFailed)
            .state_transition_reason("Client.UserInitiated")
            .state_transition_time(DateTime::from_secs_and_nanos(1_700_000_000, 123_987_654))
            .snapshot_configuration(
                FastLaunchSnapshotConfigurationResponse::builder()
                    .target_resource_count(10)
                    .build(),
            )
            .max_parallel_launches(6)
            .build();
        assert_eq!(
            convert_image(item),
            FastLaunchImage {
                image_id: "ami-0123456789abcdef0".into(),
                owner_id: "111111111111".into(),
                resource_type: "snapshot".into(),
                launch_template_id: "lt-0abcdef1234567890".into(),
                launch_template_name: "windows".into(),
                launch_template_version: "3".into(),
                state: Some(FastLaunchState::EnablingFailed),
                state_transition_reason: "Client.UserInitiated".into(),
                // Milliseconds kept, the rest cut.
                state_transition_time: Some(1_700_000_000.123),
                target_resource_count: Some(10),
                max_parallel_launches: Some(6),
            }
        );
    }

    #[test]
    fn missing_fields_become_empty_strings_or_none() {
        assert_eq!(
            convert_image(DescribeFastLaunchImagesSuccessItem::builder().build()),
            FastLaunchImage::default()
        );
        // A launch template without a version, a snapshot configuration without a count.
        let item = DescribeFastLaunchImagesSuccessItem::builder()
            .launch_template(
                FastLaunchLaunchTemplateSpecificationResponse::builder()
                    .launch_template_name("windows")
                    .build(),
            )
            .snapshot_configuration(FastLaunchSnapshotConfigurationResponse::builder().build())
            .build();
        let image = convert_image(item);
        assert_eq!(
            (
                image.launch_template_id.as_str(),
                image.launch_template_name.as_str(),
                image.launch_template_version.as_str(),
                image.target_resource_count
            ),
            ("", "windows", "", None)
        );
    }

    #[test]
    fn a_state_this_build_does_not_know_is_kept_as_aws_wrote_it() {
        let item = DescribeFastLaunchImagesSuccessItem::builder()
            .state(FastLaunchStateCode::from("paused"))
            .resource_type(FastLaunchResourceType::from("volume"))
            .build();
        let image = convert_image(item);
        assert_eq!(image.state, Some(FastLaunchState::Unknown("paused".into())));
        assert_eq!(image.resource_type, "volume");
    }
}
