//! The STS query protocol for `AssumeRole`, `AssumeRoleWithWebIdentity` (unsigned, as IRSA and
//! the web identity provider call it) and `GetCallerIdentity`: XML answers and STS's
//! `<ErrorResponse>` errors. Both AssumeRole actions issue keys that map to the role's account and
//! expire.

use std::time::{Duration, SystemTime};

use super::{escape_xml, iso8601, param, request_id, World};
use crate::domain::model::unix_seconds;

/// `AssumeRole` (signed by the caller) or `AssumeRoleWithWebIdentity` (unsigned, with a token).
pub(super) fn assume_role(
    world: &mut World,
    action: &str,
    params: &[(String, String)],
) -> (u16, String) {
    let get = |name: &str| param(params, name);
    let arn = get("RoleArn").unwrap_or_default().to_string();
    let Ok(account) = crate::domain::ids::role_account_id(&arn) else {
        return (400, sts_error("ValidationError", "invalid RoleArn"));
    };
    if world.denied_roles.contains(&arn) {
        return (
            403,
            sts_error(
                "AccessDenied",
                &format!("User is not authorized to perform: sts:AssumeRole on resource: {arn}"),
            ),
        );
    }
    if action == "AssumeRoleWithWebIdentity" && get("WebIdentityToken").is_none_or(str::is_empty) {
        return (
            400,
            sts_error("MissingParameter", "WebIdentityToken is required"),
        );
    }
    let session = get("RoleSessionName").unwrap_or("session");
    let lifetime = get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(world.default_session);
    world.issued_keys += 1;
    let key = format!("ASIASIM{:08}{account}", world.issued_keys);
    world.keys.insert(key.clone(), account.clone());
    let expiration = SystemTime::now() + lifetime;
    world.key_expiry.insert(key.clone(), expiration);
    let expiration = iso8601(unix_seconds(expiration).floor());
    let role_name = arn.rsplit('/').next().unwrap_or("role");
    (
        200,
        format!(
            "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
             <AssumedRoleUser><AssumedRoleId>AROASIMULATED:{session}</AssumedRoleId>\
             <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn></AssumedRoleUser>\
             <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>simulated-secret</SecretAccessKey>\
             <SessionToken>simulated-session-token</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
             </{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id(),
            session = escape_xml(session),
            role_name = escape_xml(role_name),
        ),
    )
}

/// The caller's identity: the account its access key belongs to.
pub(super) fn get_caller_identity(account: &str) -> (u16, String) {
    (
        200,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/simulated</Arn>\
             <UserId>AIDASIMULATED</UserId><Account>{account}</Account></GetCallerIdentityResult>\
             <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            request_id()
        ),
    )
}

pub(super) fn sts_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape_xml(code),
        escape_xml(message),
        request_id()
    )
}
