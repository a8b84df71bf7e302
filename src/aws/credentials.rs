//! Credentials from STS AssumeRole for the shared clients, counted and cached per role.

use super::*;

/// Credentials from STS AssumeRole, with attempts and errors counted on `counter`. The identity
/// cache they come with keeps them until shortly before they expire, so a role is not assumed
/// again on every collection.
#[derive(Debug)]
pub(super) struct AssumeRoleCredentials {
    pub(super) sts: aws_sdk_sts::Client,
    pub(super) per_call: PerCall,
    pub(super) counter: AttemptCounter,
    pub(super) role: RoleSpec,
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
