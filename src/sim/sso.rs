//! The IAM Identity Center (SSO) portal's `GetRoleCredentials` (REST-JSON:
//! `GET /federation/credentials?account_id=…&role_name=…` with the `x-amz-sso_bearer_token`
//! header), which the SDK's SSO credential provider calls with a cached access token.

use std::time::{Duration, SystemTime};

use super::{param, World};

/// Credentials for the account the request names, or the portal's error.
pub(super) fn get_role_credentials(
    world: &mut World,
    query: &[(String, String)],
    bearer_token: Option<&str>,
) -> (u16, String) {
    let get = |name: &str| param(query, name);
    if bearer_token.is_none_or(str::is_empty) {
        return (
            401,
            r#"{"message":"Session token not found or invalid"}"#.to_string(),
        );
    }
    let account = get("account_id").unwrap_or_default();
    if crate::domain::ids::check_account_id(account).is_err() || get("role_name").is_none() {
        return (
            400,
            r#"{"message":"account_id and role_name are required"}"#.to_string(),
        );
    }
    world.issued_keys += 1;
    let key = format!("ASIASSO{:08}{account}", world.issued_keys);
    world.keys.insert(key.clone(), account.to_string());
    let expiration = SystemTime::now() + Duration::from_secs(3600);
    world.key_expiry.insert(key.clone(), expiration);
    let millis = expiration
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    (
        200,
        format!(
            r#"{{"roleCredentials":{{"accessKeyId":"{key}","secretAccessKey":"simulated-secret","sessionToken":"simulated-session-token","expiration":{millis}}}}}"#
        ),
    )
}
