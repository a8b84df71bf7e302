//! AWS Organizations in the protocol the Rust SDK speaks to it: awsJson1_1 (`POST /`,
//! `x-amz-target: AWSOrganizationsV20161128.<Op>`, JSON bodies, timestamps as epoch seconds;
//! errors as JSON `__type`/`Message` with the `X-Amzn-Errortype` header, which the client reads
//! first — see shared/reference/rust-sdk-notes.md). The organization has a root, OUs, accounts in
//! any `State`, tags and paging; only the management account and delegated administrators may
//! list it. Also `ec2:DescribeRegions` with per-account opt-in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{escape_xml, param, request_id, World};

/// The regions every account has (opt-in not required): the 17 commercial regions of before
/// March 2019.
pub const DEFAULT_REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "sa-east-1",
];

/// Regions an account must opt in to.
pub const OPT_IN_REGIONS: [&str; 6] = [
    "af-south-1",
    "ap-east-1",
    "eu-south-1",
    "me-south-1",
    "il-central-1",
    "ap-southeast-4",
];

/// One account of the organization.
#[derive(Debug, Clone)]
pub struct SimAccount {
    /// 12 digits.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// `State`: `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`.
    pub state: String,
    /// The OU or root it sits in.
    pub parent: String,
}

/// A simulated organization.
#[derive(Debug, Clone)]
pub struct SimOrganization {
    /// `o-...`.
    pub id: String,
    /// The root's id, `r-...`.
    pub root: String,
    /// The management account.
    pub management: String,
    /// Member accounts allowed to list the organization (delegated administrators).
    pub delegated: BTreeSet<String>,
    /// OUs: (id, parent id).
    pub units: Vec<(String, String)>,
    /// Every account, the management account included.
    pub accounts: Vec<SimAccount>,
    /// Tags by account id.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// Results per page (Organizations allows up to 20).
    pub page_size: usize,
}

impl SimOrganization {
    /// An organization whose management account is `management`, in the root.
    pub fn new(management: &str) -> SimOrganization {
        SimOrganization {
            id: "o-a1b2c3d4e5".to_string(),
            root: "r-a1b2".to_string(),
            management: management.to_string(),
            delegated: BTreeSet::new(),
            units: Vec::new(),
            accounts: vec![SimAccount {
                id: management.to_string(),
                name: "management".to_string(),
                state: "ACTIVE".to_string(),
                parent: "r-a1b2".to_string(),
            }],
            tags: BTreeMap::new(),
            page_size: 20,
        }
    }

    /// Adds an OU under `parent` (the root or another OU).
    pub fn add_unit(&mut self, id: &str, parent: &str) {
        self.units.push((id.to_string(), parent.to_string()));
    }

    /// Adds an account under `parent` in `state`.
    pub fn add_account(&mut self, id: &str, name: &str, parent: &str, state: &str) {
        self.accounts.push(SimAccount {
            id: id.to_string(),
            name: name.to_string(),
            state: state.to_string(),
            parent: parent.to_string(),
        });
    }

    /// Tags an account.
    pub fn tag(&mut self, account: &str, key: &str, value: &str) {
        self.tags
            .entry(account.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    fn parent_exists(&self, id: &str) -> bool {
        id == self.root || self.units.iter().any(|(u, _)| u == id)
    }
}

/// An Organizations answer: status, JSON body, and the error type for `X-Amzn-Errortype`.
pub(super) struct JsonAnswer {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) error_type: Option<String>,
}

impl JsonAnswer {
    fn ok(body: Value) -> JsonAnswer {
        JsonAnswer {
            status: 200,
            body: body.to_string(),
            error_type: None,
        }
    }

    pub(super) fn error(status: u16, code: &str, message: &str) -> JsonAnswer {
        JsonAnswer {
            status,
            body: json!({"__type": code, "Message": message}).to_string(),
            error_type: Some(code.to_string()),
        }
    }
}

fn account_json(org: &SimOrganization, account: &SimAccount) -> Value {
    // `Status` is deprecated but still sent; `State` is what the exporter reads.
    let status = match account.state.as_str() {
        "ACTIVE" => "ACTIVE",
        "PENDING_CLOSURE" | "CLOSED" => "PENDING_CLOSURE",
        _ => "SUSPENDED",
    };
    json!({
        "Id": account.id,
        "Arn": format!("arn:aws:organizations::{}:account/{}/{}", org.management, org.id, account.id),
        "Email": format!("aws+{}@example.com", account.id),
        "Name": account.name,
        "Status": status,
        "State": account.state,
        "JoinedMethod": "CREATED",
        "JoinedTimestamp": 1_700_000_000.0,
    })
}

/// One page of `items` after the request's `NextToken`, with the next token.
fn page<T: Clone>(
    items: &[T],
    body: &Value,
    default_size: usize,
) -> Result<(Vec<T>, Option<String>), JsonAnswer> {
    let start = match body.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| JsonAnswer::error(400, "InvalidInputException", "bad NextToken"))?,
    };
    let size = match body.get("MaxResults").and_then(Value::as_u64) {
        None => default_size,
        Some(n) if (1..=20).contains(&n) => (n as usize).min(default_size),
        Some(_) => {
            return Err(JsonAnswer::error(
                400,
                "InvalidInputException",
                "MaxResults must be between 1 and 20",
            ))
        }
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    Ok((items.get(start..end).unwrap_or_default().to_vec(), next))
}

fn with_token(mut value: Value, next: Option<String>) -> Value {
    if let (Some(next), Some(map)) = (next, value.as_object_mut()) {
        map.insert("NextToken".to_string(), Value::String(next));
    }
    value
}

/// Answers one Organizations operation for the caller `account`.
pub(super) fn answer(world: &World, account: &str, action: &str, body: &Value) -> JsonAnswer {
    let Some(org) = &world.organization else {
        return JsonAnswer::error(
            400,
            "AWSOrganizationsNotInUseException",
            "Your account is not a member of an organization.",
        );
    };
    if !org.accounts.iter().any(|a| a.id == account) {
        return JsonAnswer::error(
            400,
            "AWSOrganizationsNotInUseException",
            "Your account is not a member of an organization.",
        );
    }
    if account != org.management && !org.delegated.contains(account) {
        return JsonAnswer::error(
            400,
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        );
    }
    let parent = || body.get("ParentId").and_then(Value::as_str).unwrap_or("");
    let result = match action {
        "DescribeOrganization" => Ok(json!({"Organization": {
            "Id": org.id,
            "Arn": format!("arn:aws:organizations::{}:organization/{}", org.management, org.id),
            "FeatureSet": "ALL",
            "MasterAccountArn": format!("arn:aws:organizations::{0}:account/{1}/{0}", org.management, org.id),
            "MasterAccountId": org.management,
            "MasterAccountEmail": format!("aws+{}@example.com", org.management),
        }})),
        "ListAccounts" => page(&org.accounts, body, org.page_size).map(|(accounts, next)| {
            let list: Vec<Value> = accounts.iter().map(|a| account_json(org, a)).collect();
            with_token(json!({"Accounts": list}), next)
        }),
        "ListAccountsForParent" if !org.parent_exists(parent()) => Err(JsonAnswer::error(
            400,
            "ParentNotFoundException",
            "We can't find a root or OU with the ParentId that you specified.",
        )),
        "ListAccountsForParent" => {
            let under: Vec<SimAccount> = org
                .accounts
                .iter()
                .filter(|a| a.parent == parent())
                .cloned()
                .collect();
            page(&under, body, org.page_size).map(|(accounts, next)| {
                let list: Vec<Value> = accounts.iter().map(|a| account_json(org, a)).collect();
                with_token(json!({"Accounts": list}), next)
            })
        }
        "ListOrganizationalUnitsForParent" if !org.parent_exists(parent()) => {
            Err(JsonAnswer::error(
                400,
                "ParentNotFoundException",
                "We can't find a root or OU with the ParentId that you specified.",
            ))
        }
        "ListOrganizationalUnitsForParent" => {
            let under: Vec<String> = org
                .units
                .iter()
                .filter(|(_, p)| p == parent())
                .map(|(id, _)| id.clone())
                .collect();
            page(&under, body, org.page_size).map(|(units, next)| {
                let list: Vec<Value> = units
                    .iter()
                    .map(|id| {
                        json!({
                            "Id": id,
                            "Arn": format!("arn:aws:organizations::{}:ou/{}/{id}", org.management, org.id),
                            "Name": id,
                        })
                    })
                    .collect();
                with_token(json!({"OrganizationalUnits": list}), next)
            })
        }
        "ListTagsForResource" => {
            let id = body.get("ResourceId").and_then(Value::as_str).unwrap_or("");
            if !org.accounts.iter().any(|a| a.id == id) {
                Err(JsonAnswer::error(
                    400,
                    "TargetNotFoundException",
                    "We can't find a resource with the ResourceId that you specified.",
                ))
            } else {
                let tags: Vec<(String, String)> = org
                    .tags
                    .get(id)
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                page(&tags, body, org.page_size).map(|(tags, next)| {
                    let list: Vec<Value> = tags
                        .iter()
                        .map(|(k, v)| json!({"Key": k, "Value": v}))
                        .collect();
                    with_token(json!({"Tags": list}), next)
                })
            }
        }
        other => Err(JsonAnswer::error(
            400,
            "UnknownOperationException",
            &format!("unknown operation {other:?}"),
        )),
    };
    match result {
        Ok(value) => JsonAnswer::ok(value),
        Err(error) => error,
    }
}

/// `DescribeRegions` for `account`: every region with its opt-in status (with `AllRegions=true`),
/// else the enabled ones.
pub(super) fn describe_regions(
    world: &World,
    account: &str,
    params: &[(String, String)],
) -> (u16, String) {
    let all = param(params, "AllRegions") == Some("true");
    let opted: BTreeSet<&str> = world
        .opted_in_regions
        .get(account)
        .map(|r| r.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut items = String::new();
    let regions = DEFAULT_REGIONS
        .iter()
        .map(|r| (*r, "opt-in-not-required"))
        .chain(OPT_IN_REGIONS.iter().map(|r| {
            (
                *r,
                if opted.contains(r) {
                    "opted-in"
                } else {
                    "not-opted-in"
                },
            )
        }));
    for (region, status) in regions {
        if !all && status == "not-opted-in" {
            continue;
        }
        items.push_str(&format!(
            "<item><regionName>{}</regionName><regionEndpoint>ec2.{}.amazonaws.com</regionEndpoint><optInStatus>{status}</optInStatus></item>",
            escape_xml(region),
            escape_xml(region)
        ));
    }
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{}</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>",
            request_id()
        ),
    )
}
