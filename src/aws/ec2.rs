//! One target's calls: DescribeFastLaunchImages paged by hand, GetCallerIdentity, the DryRun
//! probe, and CloudWatch, on the process's shared clients with the target's per-call settings.

use super::*;

/// The token of the next page when paging by hand (the SDK's paginators drop per-call settings):
/// None when there is none, or when the answer repeats the token just sent (as the paginators
/// stop).
pub(super) fn next_page(sent: &Option<String>, answered: Option<&str>) -> Option<String> {
    answered
        .filter(|t| !t.is_empty() && Some(*t) != sent.as_deref())
        .map(str::to_string)
}

/// The AWS calls of one target (account, region): the process's shared clients, called with
/// the target's region, retry partition, credentials and counters.
#[derive(Debug, Clone)]
pub(super) struct TargetClient {
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
    pub(super) fn new(
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
