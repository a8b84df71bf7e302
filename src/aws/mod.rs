//! The only module that talks to the AWS SDK: the base configuration ([`Base`]), one EC2, STS and
//! CloudWatch client for the process, called per target with its region, credentials (the base
//! chain or AssumeRole), retry partition and counters; DescribeFastLaunchImages paged by hand;
//! error classification. Everything it hands out is in the
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
                page.map_err(|e| crate::aws::errors::from_sdk($api, &e, $counter.call_attempts()))?;
            $body
        }
    }};
}

mod accounting;
mod cloudwatch;
mod credentials;
mod ec2;
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
use credentials::AssumeRoleCredentials;
use ec2::{next_page, TargetClient};

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
        let region = Region::new(spec.key.region.to_string());
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
