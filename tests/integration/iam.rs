//! IAM templates and policies: parse, cfn-lint, and the conditions issues 9 and 10 ask for.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{root, tool_available};

use serde_json::Value as Json;
use serde_yaml::Value;

fn iam_dir() -> PathBuf {
    root().join("deploy/iam")
}

fn files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(iam_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file; CloudFormation's short forms (`!Sub`, `!Ref`, `!If`, ...) come back as
/// `Value::Tagged`.
pub(crate) fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn json(path: &Path) -> Json {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CloudFormation templates: the YAML files with `AWSTemplateFormatVersion`.
fn templates() -> Vec<PathBuf> {
    files(&["yaml", "yml"])
        .into_iter()
        .filter(|p| yaml(p).get("AWSTemplateFormatVersion").is_some())
        .collect()
}

fn exporter_role() -> Value {
    yaml(&iam_dir().join("exporter-role.yaml"))
}

fn stackset() -> Value {
    yaml(&iam_dir().join("reader-role-stackset.yaml"))
}

/// The value under a short-form tag, e.g. `tagged(v, "Sub")` for `!Sub ...`.
fn tagged<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(t) if t.tag == tag => &t.value,
        other => panic!("expected !{tag}, found {other:?}"),
    }
}

/// `!If [condition, then, else]` → (condition, then, else).
fn if_branches(value: &Value) -> (&str, &Value, &Value) {
    let items = tagged(value, "If").as_sequence().expect("!If takes a list");
    assert_eq!(items.len(), 3, "!If takes three items: {items:?}");
    (items[0].as_str().unwrap(), &items[1], &items[2])
}

pub(crate) fn is_ref(value: &Value, name: &str) -> bool {
    matches!(value, Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some(name))
}

fn is_no_value(value: &Value) -> bool {
    is_ref(value, "AWS::NoValue")
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, found {value:?}"))
}

/// The statement with this `Sid` of a YAML policy document.
pub(crate) fn statement<'a>(document: &'a Value, sid: &str) -> &'a Value {
    document["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"].as_str() == Some(sid))
        .unwrap_or_else(|| panic!("no statement {sid} in {document:?}"))
}

pub(crate) fn json_statement<'a>(document: &'a Json, sid: &str) -> &'a Json {
    document["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {document}"))
}

/// Every string in `value`, tags looked through, for the scans below.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// `!Sub` strings that hold a JSON document (policies whose condition keys must be computed).
fn sub_json_documents(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Tagged(t) if t.tag == "Sub" => {
            if let Some(s) = t.value.as_str().filter(|s| s.trim_start().starts_with('{')) {
                out.push(s.to_string());
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| sub_json_documents(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| sub_json_documents(v, out)),
        Value::Tagged(t) => sub_json_documents(&t.value, out),
        _ => {}
    }
}

#[test]
fn every_iam_file_parses() {
    let json_files = files(&["json"]);
    for file in &json_files {
        let document = json(file);
        assert_eq!(document["Version"], "2012-10-17", "{}", file.display());
        assert!(document["Statement"].is_array(), "{}", file.display());
    }
    let yaml_files = files(&["yaml", "yml"]);
    for file in &yaml_files {
        yaml(file);
    }
    assert!(json_files.len() >= 5, "JSON policies: {json_files:?}");
    let names: Vec<_> = templates()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "events-member-stackset.yaml",
            "events-queue.yaml",
            "exporter-role.yaml",
            "org-reader-role.yaml",
            "reader-role-stackset.yaml"
        ]
    );
    assert_eq!(yaml_files.len(), names.len(), "YAML that is no template");
}

/// cfn-lint checks a JSON string only once it can resolve it, and then not its syntax: parse
/// every policy written as a `!Sub` JSON string here (`${Name}` placeholders sit inside strings).
#[test]
fn policies_written_as_json_strings_are_valid_json() {
    let mut documents = Vec::new();
    for template in templates() {
        sub_json_documents(&yaml(&template), &mut documents);
    }
    assert!(
        !documents.is_empty(),
        "the IRSA trust policy is a !Sub JSON string"
    );
    for document in documents {
        let parsed: Json = serde_json::from_str(&document)
            .unwrap_or_else(|e| panic!("{e} in a !Sub JSON document:\n{document}"));
        assert_eq!(parsed["Version"], "2012-10-17");
    }
}

#[test]
fn cfn_lint_passes_on_every_template() {
    if !tool_available(
        "cfn-lint",
        &["--version"],
        "cfn_lint_passes_on_every_template",
    ) {
        return;
    }
    let templates = templates();
    assert!(!templates.is_empty());
    for template in templates {
        let out = Command::new("cfn-lint")
            .arg(&template)
            .output()
            .expect("cfn-lint runs");
        assert!(
            out.status.success(),
            "cfn-lint {}: {}\n{}{}",
            template.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Kubernetes service account the IRSA condition and the pod identity association name must
/// be the one deploy/kubernetes creates.
#[test]
fn exporter_role_trusts_irsa_for_the_exporters_service_account() {
    let template = exporter_role();
    let parameters = &template["Parameters"];
    assert_eq!(
        parameters["TrustMode"]["AllowedValues"],
        serde_yaml::from_str::<Value>("[IRSA, PodIdentity, EC2]").unwrap()
    );
    assert_eq!(parameters["Namespace"]["Default"], "fast-launch-exporter");
    assert_eq!(
        parameters["ServiceAccount"]["Default"],
        "fast-launch-exporter"
    );
    let account = yaml(&root().join("deploy/kubernetes/base/serviceaccount.yaml"));
    assert_eq!(
        account["metadata"]["name"], parameters["ServiceAccount"]["Default"],
        "deploy/kubernetes/base/serviceaccount.yaml"
    );
    let namespace = yaml(&root().join("deploy/kubernetes/base/namespace.yaml"));
    assert_eq!(
        namespace["metadata"]["name"], parameters["Namespace"]["Default"],
        "deploy/kubernetes/base/namespace.yaml"
    );
    // The issuer without its scheme: that is how IAM names the provider and its condition keys.
    let provider_pattern = str_of(&parameters["OidcProvider"]["AllowedPattern"]);
    assert!(!provider_pattern.contains("https"), "{provider_pattern}");
    assert!(template["Rules"]["IrsaNeedsTheOidcProvider"].is_mapping());

    let role = &template["Resources"]["ExporterRole"]["Properties"];
    let (condition, irsa, _) = if_branches(&role["AssumeRolePolicyDocument"]);
    assert_eq!(condition, "IsIrsa");
    let irsa: Json = serde_json::from_str(str_of(tagged(irsa, "Sub"))).unwrap();
    let statement = json_statement(&irsa, "IrsaServiceAccount");
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/${OidcProvider}"
    );
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let equals = statement["Condition"]["StringEquals"].as_object().unwrap();
    assert_eq!(
        equals["${OidcProvider}:sub"],
        "system:serviceaccount:${Namespace}:${ServiceAccount}"
    );
    assert_eq!(equals["${OidcProvider}:aud"], "sts.amazonaws.com");
    assert_eq!(equals.len(), 2, "{equals:?}");
}

#[test]
fn exporter_role_trusts_eks_pod_identity_and_ec2() {
    let template = exporter_role();
    let role = &template["Resources"]["ExporterRole"]["Properties"];
    let (_, _, otherwise) = if_branches(&role["AssumeRolePolicyDocument"]);
    let (condition, pod_identity, ec2) = if_branches(otherwise);
    assert_eq!(condition, "IsPodIdentity");
    let statement = statement(pod_identity, "EksPodIdentity");
    assert_eq!(statement["Principal"]["Service"], "pods.eks.amazonaws.com");
    assert_eq!(
        statement["Action"],
        serde_yaml::from_str::<Value>("[sts:AssumeRole, sts:TagSession]").unwrap()
    );
    assert!(statement.get("Condition").is_none());

    let ec2 = &ec2["Statement"][0];
    assert_eq!(ec2["Principal"]["Service"], "ec2.amazonaws.com");
    assert_eq!(ec2["Action"], "sts:AssumeRole");
    let profile = &template["Resources"]["ExporterInstanceProfile"];
    assert_eq!(profile["Condition"], "IsEc2");
    assert!(is_ref(&profile["Properties"]["Roles"][0], "ExporterRole"));

    let association = &template["Resources"]["ExporterPodIdentityAssociation"];
    assert_eq!(association["Type"], "AWS::EKS::PodIdentityAssociation");
    assert_eq!(association["Condition"], "CreatePodIdentityAssociation");
    assert!(is_ref(&association["Properties"]["Namespace"], "Namespace"));
    assert!(is_ref(
        &association["Properties"]["ServiceAccount"],
        "ServiceAccount"
    ));
}

/// A statement that allows exactly `cloudwatch:ListMetrics` and `cloudwatch:GetMetricData`
/// (neither supports resource-level permissions, so on `*`).
fn assert_cloudwatch_read_only(statement: &Value) {
    assert_eq!(statement["Effect"], "Allow");
    let actions: Vec<&str> = statement["Action"]
        .as_sequence()
        .expect("a list of actions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        actions,
        ["cloudwatch:ListMetrics", "cloudwatch:GetMetricData"]
    );
    assert_eq!(statement["Resource"], "*");
}

#[test]
fn exporter_policy_reads_fast_launch_and_assumes_only_the_reader_role() {
    let template = exporter_role();
    let policies = template["Resources"]["ExporterRole"]["Properties"]["Policies"]
        .as_sequence()
        .unwrap();
    assert_eq!(policies.len(), 1);
    let document = &policies[0]["PolicyDocument"];
    assert_eq!(document["Statement"].as_sequence().unwrap().len(), 5);

    let describe = statement(document, "DescribeFastLaunchInOwnAccount");
    assert_eq!(describe["Action"], "ec2:DescribeFastLaunchImages");
    assert_eq!(describe["Resource"], "*");
    let metrics = statement(document, "ReadFastLaunchMetricsInOwnAccount");
    assert_cloudwatch_read_only(metrics);
    let identity = statement(document, "LearnOwnAccountId");
    assert_eq!(identity["Action"], "sts:GetCallerIdentity");

    let assume = statement(document, "AssumeReaderRoles");
    // TagSession: Pod Identity's transitive session tags reach the chained AssumeRole.
    assert_eq!(
        assume["Action"],
        serde_yaml::from_str::<Value>("[sts:AssumeRole, sts:TagSession]").unwrap()
    );
    assert_eq!(
        str_of(tagged(&assume["Resource"], "Sub")),
        "arn:${AWS::Partition}:iam::*:role/${ReaderRoleName}"
    );
    // aws:ResourceOrgID only when an organization id is given.
    let (condition, with_org, without) = if_branches(&assume["Condition"]);
    assert_eq!(condition, "HasOrganization");
    assert!(is_ref(
        &with_org["StringEquals"]["aws:ResourceOrgID"],
        "OrganizationId"
    ));
    assert!(is_no_value(without));
    assert_eq!(template["Parameters"]["OrganizationId"]["Default"], "");

    // The plain JSON policy says the same for the default role name.
    let plain = json(&iam_dir().join("exporter-policy.json"));
    assert_eq!(
        json_statement(&plain, "AssumeReaderRoles")["Resource"],
        "arn:aws:iam::*:role/FastLaunchReader"
    );
    assert_eq!(
        json_statement(&plain, "DescribeFastLaunchInOwnAccount")["Action"],
        "ec2:DescribeFastLaunchImages"
    );
}

#[test]
fn stackset_trusts_the_exporter_account_with_a_principal_arn_condition() {
    let template = stackset();
    let role = &template["Resources"]["FastLaunchReaderRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"];
    let statement = statement(trust, "TrustTheExporterRole");
    assert_eq!(
        statement["Action"],
        serde_yaml::from_str::<Value>("[sts:AssumeRole, sts:TagSession]").unwrap()
    );

    // The principal is the exporter's account root, in this stack's partition ...
    let principal = tagged(&statement["Principal"]["AWS"], "Sub")
        .as_sequence()
        .unwrap();
    assert_eq!(
        principal[0],
        "arn:${AWS::Partition}:iam::${ExporterAccountId}:root"
    );
    let account = tagged(&principal[1]["ExporterAccountId"], "Select")
        .as_sequence()
        .unwrap();
    assert_eq!(account[0], Value::from(4));
    let split = tagged(&account[1], "Split").as_sequence().unwrap();
    assert_eq!(split[0], ":");
    assert!(is_ref(&split[1], "ExporterRoleArn"));

    // ... and the exporter role is named by aws:PrincipalArn, so a recreated role is trusted.
    let condition = &statement["Condition"];
    assert!(is_ref(
        &condition["ArnEquals"]["aws:PrincipalArn"],
        "ExporterRoleArn"
    ));

    // aws:PrincipalOrgID and sts:ExternalId only when given; no empty StringEquals.
    let (name, equals, neither) = if_branches(&condition["StringEquals"]);
    assert_eq!(name, "HasStringConditions");
    assert!(is_no_value(neither));
    let (name, org, none) = if_branches(&equals["aws:PrincipalOrgID"]);
    assert_eq!(name, "HasOrganization");
    assert!(is_ref(org, "OrganizationId") && is_no_value(none));
    let (name, external_id, none) = if_branches(&equals["sts:ExternalId"]);
    assert_eq!(name, "HasExternalId");
    assert!(is_ref(external_id, "ExternalId") && is_no_value(none));

    let parameters = &template["Parameters"];
    assert_eq!(parameters["OrganizationId"]["Default"], "");
    assert_eq!(parameters["ExternalId"]["Default"], "");
    assert_eq!(parameters["ExternalId"]["NoEcho"], true);
    let conditions = &template["Conditions"];
    let either = tagged(&conditions["HasStringConditions"], "Or");
    assert_eq!(
        either,
        &serde_yaml::from_str::<Value>("[!Condition HasOrganization, !Condition HasExternalId]")
            .unwrap()
    );

    // The role reads fast launch state and its CloudWatch metrics, nothing else.
    let policies = role["Properties"]["Policies"].as_sequence().unwrap();
    assert_eq!(policies.len(), 1);
    let grants = policies[0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(grants.len(), 3);
    assert_eq!(grants[0]["Effect"], "Allow");
    assert_eq!(grants[0]["Action"], "ec2:DescribeFastLaunchImages");
    assert_eq!(grants[0]["Resource"], "*");
    assert_cloudwatch_read_only(&grants[1]);
    assert_eq!(grants[2]["Action"], "ec2:DescribeRegions");
    assert!(is_ref(&role["Properties"]["RoleName"], "ReaderRoleName"));

    // The JSON trust policy for hand-made roles has the same shape.
    let plain = json(&iam_dir().join("reader-role-trust-policy.json"));
    let statement = json_statement(&plain, "TrustTheExporterRole");
    assert_eq!(
        statement["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );
    let condition = &statement["Condition"];
    assert_eq!(
        condition["ArnEquals"]["aws:PrincipalArn"],
        "arn:aws:iam::123456789012:role/fast-launch-exporter"
    );
    assert!(condition["StringEquals"]["aws:PrincipalOrgID"].is_string());
    assert!(condition["StringEquals"]["sts:ExternalId"].is_string());
    let policy = json(&iam_dir().join("reader-role-policy.json"));
    assert_eq!(
        policy["Statement"][0]["Action"],
        "ec2:DescribeFastLaunchImages"
    );
}

/// No ARN in a template names a partition: GovCloud and China take the same templates.
#[test]
fn templates_are_partition_agnostic() {
    for path in templates() {
        let template = yaml(&path);
        let mut texts = Vec::new();
        strings(&template["Resources"], &mut texts);
        strings(&template["Outputs"], &mut texts);
        strings(&template["Conditions"], &mut texts);
        let arns: Vec<_> = texts.iter().filter(|s| s.contains("arn:")).collect();
        assert!(!arns.is_empty(), "{}", path.display());
        for arn in arns {
            assert!(
                !arn.contains("arn:aws") && arn.contains("arn:${AWS::Partition}:"),
                "{}: ARN without ${{AWS::Partition}}: {arn}",
                path.display()
            );
        }
    }
}

/// One reader role name for both templates: the exporter may assume exactly the role the
/// StackSet creates. Same for the permissions boundary parameter.
#[test]
fn reader_role_name_and_permissions_boundary_parameters_are_shared() {
    let exporter = exporter_role();
    let stackset = stackset();
    let name = &exporter["Parameters"]["ReaderRoleName"];
    assert_eq!(name["Default"], "FastLaunchReader");
    assert_eq!(
        name["Type"],
        stackset["Parameters"]["ReaderRoleName"]["Type"]
    );
    assert_eq!(
        name["Default"],
        stackset["Parameters"]["ReaderRoleName"]["Default"]
    );
    assert_eq!(
        name["AllowedPattern"],
        stackset["Parameters"]["ReaderRoleName"]["AllowedPattern"]
    );
    for template in [&exporter, &stackset] {
        let boundary = &template["Parameters"]["PermissionsBoundary"];
        assert_eq!(boundary["Type"], "String");
        assert_eq!(boundary["Default"], "", "the boundary is optional");
        // A policy ARN is used as is, a name is resolved in the stack's account and partition.
        let resources = template["Resources"].as_mapping().unwrap();
        let roles: Vec<_> = resources
            .values()
            .filter(|r| r["Type"] == "AWS::IAM::Role")
            .collect();
        assert_eq!(roles.len(), 1);
        let (name, given, none) = if_branches(&roles[0]["Properties"]["PermissionsBoundary"]);
        assert_eq!(name, "HasPermissionsBoundary");
        assert!(is_no_value(none));
        let (name, arn, policy_name) = if_branches(given);
        assert_eq!(name, "PermissionsBoundaryIsArn");
        assert!(is_ref(arn, "PermissionsBoundary"));
        assert_eq!(
            str_of(tagged(policy_name, "Sub")),
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${PermissionsBoundary}"
        );
        let conditions = &template["Conditions"];
        assert!(matches!(
            conditions["HasPermissionsBoundary"],
            Value::Tagged(_)
        ));
        assert!(matches!(
            conditions["PermissionsBoundaryIsArn"],
            Value::Tagged(_)
        ));
    }
}

/// The JSON trust policies, for roles made by hand or with other tools, say what the template says.
#[test]
fn json_trust_policies_for_irsa_and_pod_identity() {
    let irsa = json(&iam_dir().join("exporter-trust-policy-irsa.json"));
    let statement = json_statement(&irsa, "IrsaServiceAccount");
    let federated = statement["Principal"]["Federated"].as_str().unwrap();
    let provider = federated.split_once(":oidc-provider/").unwrap().1;
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let equals = &statement["Condition"]["StringEquals"];
    assert_eq!(
        equals[format!("{provider}:sub")],
        "system:serviceaccount:fast-launch-exporter:fast-launch-exporter"
    );
    assert_eq!(equals[format!("{provider}:aud")], "sts.amazonaws.com");

    let pod = json(&iam_dir().join("exporter-trust-policy-pod-identity.json"));
    let statement = json_statement(&pod, "EksPodIdentity");
    assert_eq!(statement["Principal"]["Service"], "pods.eks.amazonaws.com");
    assert_eq!(
        statement["Action"],
        serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
    );
}

// Issue 10, events: the monitoring account's bus, rule and queue (events-queue.yaml), the member
// accounts' forwarding rule (events-member-stackset.yaml), the exporter's queue permissions.

fn events_queue() -> Value {
    yaml(&iam_dir().join("events-queue.yaml"))
}

fn events_member() -> Value {
    yaml(&iam_dir().join("events-member-stackset.yaml"))
}

fn is_get_att(value: &Value, target: &str) -> bool {
    matches!(value, Value::Tagged(t) if t.tag == "GetAtt" && t.value.as_str() == Some(target))
}

fn list(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|s| Value::from(*s)).collect())
}

/// The queue actions the exporter needs: one per API it calls on the queue (DeleteMessageBatch
/// is authorized by sqs:DeleteMessage), and GetQueueAttributes.
const QUEUE_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

/// A statement of a document whose statements may be `!If [condition, statement, AWS::NoValue]`:
/// the condition (None for a plain statement) and the statement.
fn maybe_conditional_statement<'a>(document: &'a Value, sid: &str) -> (Option<&'a str>, &'a Value) {
    for item in document["Statement"].as_sequence().unwrap() {
        if matches!(item, Value::Tagged(t) if t.tag == "If") {
            let (condition, then, otherwise) = if_branches(item);
            assert!(
                is_no_value(otherwise),
                "{sid}: the else branch adds nothing"
            );
            if then["Sid"].as_str() == Some(sid) {
                return (Some(condition), then);
            }
        } else if item["Sid"].as_str() == Some(sid) {
            return (None, item);
        }
    }
    panic!("no statement {sid} in {document:?}")
}

/// The event pattern is exactly the notification the exporter handles: nothing narrower (every
/// state, `disabled` included, matters), nothing wider.
fn assert_fast_launch_pattern(rule: &Value, name: &str) {
    assert_eq!(rule["Type"], "AWS::Events::Rule", "{name}");
    assert_eq!(rule["Properties"]["State"], "ENABLED", "{name}");
    let pattern = &rule["Properties"]["EventPattern"];
    assert_eq!(pattern["source"], list(&["aws.ec2"]), "{name}");
    assert_eq!(
        pattern["detail-type"],
        list(&[fast_launch_exporter::events::DETAIL_TYPE]),
        "{name}"
    );
    assert_eq!(
        fast_launch_exporter::events::DETAIL_TYPE,
        "EC2 Fast Launch State-change Notification"
    );
    assert_eq!(
        pattern.as_mapping().unwrap().len(),
        2,
        "{name}: {pattern:?}"
    );
}

#[test]
fn events_rules_match_the_fast_launch_notification() {
    let queue = events_queue();
    let resources = &queue["Resources"];

    // The organization's events, forwarded to the custom bus, go to the queue.
    let rule = &resources["FastLaunchRule"];
    assert_fast_launch_pattern(rule, "FastLaunchRule");
    assert!(is_ref(&rule["Properties"]["EventBusName"], "EventBus"));
    let targets = rule["Properties"]["Targets"].as_sequence().unwrap();
    assert_eq!(targets.len(), 1);
    assert!(is_get_att(&targets[0]["Arn"], "Queue.Arn"));
    assert!(
        targets[0].get("RoleArn").is_none(),
        "SQS takes a queue policy"
    );

    // The monitoring account's own events reach its default bus only.
    let own = &resources["OwnAccountRule"];
    assert_fast_launch_pattern(own, "OwnAccountRule");
    assert_eq!(own["Condition"], "HasOwnAccountRule");
    assert_eq!(own["Properties"]["EventBusName"], "default");
    assert!(is_get_att(
        &own["Properties"]["Targets"][0]["Arn"],
        "Queue.Arn"
    ));
    assert_eq!(queue["Parameters"]["OwnAccountEvents"]["Default"], "true");

    // Each member account's default bus forwards to the central bus, through a role.
    let member = events_member();
    let forward = &member["Resources"]["ForwardRule"];
    assert_fast_launch_pattern(forward, "ForwardRule");
    assert_eq!(forward["Properties"]["EventBusName"], "default");
    assert!(is_ref(&forward["Properties"]["Name"], "ForwardRuleName"));
    let targets = forward["Properties"]["Targets"].as_sequence().unwrap();
    assert_eq!(targets.len(), 1);
    assert!(is_ref(&targets[0]["Arn"], "CentralEventBusArn"));
    assert!(is_get_att(&targets[0]["RoleArn"], "ForwardRole.Arn"));
}

#[test]
fn events_queue_admits_eventbridge_only_for_its_rules() {
    let template = events_queue();
    let policy = &template["Resources"]["QueuePolicy"];
    assert_eq!(policy["Type"], "AWS::SQS::QueuePolicy");
    let queues = policy["Properties"]["Queues"].as_sequence().unwrap();
    assert_eq!(queues.len(), 1);
    assert!(is_ref(&queues[0], "Queue"));
    let document = &policy["Properties"]["PolicyDocument"];

    let (condition, send) =
        maybe_conditional_statement(document, "EventBridgeSendsFastLaunchEvents");
    assert_eq!(condition, None);
    assert_eq!(send["Effect"], "Allow");
    assert_eq!(
        send["Principal"],
        serde_yaml::from_str::<Value>("{Service: events.amazonaws.com}").unwrap()
    );
    assert_eq!(send["Action"], "sqs:SendMessage");
    assert!(is_get_att(&send["Resource"], "Queue.Arn"));
    // Only for this stack's rules: the organization's rule and, when made, the own-account rule.
    let conditions = send["Condition"].as_mapping().unwrap();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    let arn_equals = send["Condition"]["ArnEquals"].as_mapping().unwrap();
    assert_eq!(arn_equals.len(), 1, "{arn_equals:?}");
    let sources = send["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_sequence()
        .unwrap();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(is_get_att(&sources[0], "FastLaunchRule.Arn"));
    let (name, own, none) = if_branches(&sources[1]);
    assert_eq!(name, "HasOwnAccountRule");
    assert!(is_get_att(own, "OwnAccountRule.Arn") && is_no_value(none));

    // An exporter in another account: its account, narrowed to its role by aws:PrincipalArn, may
    // do exactly what the exporter's own policy allows.
    let (condition, read) = maybe_conditional_statement(document, "ExporterReceivesEvents");
    assert_eq!(condition, Some("HasExporterRole"));
    assert_eq!(read["Action"], list(&QUEUE_ACTIONS));
    assert!(is_get_att(&read["Resource"], "Queue.Arn"));
    assert!(is_ref(
        &read["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        "ExporterRoleArn"
    ));
    assert_eq!(template["Parameters"]["ExporterRoleArn"]["Default"], "");

    let (condition, tls) = maybe_conditional_statement(document, "DenyInsecureTransport");
    assert_eq!(condition, None);
    assert_eq!(tls["Effect"], "Deny");
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");

    // No Allow to anyone.
    for item in document["Statement"].as_sequence().unwrap() {
        let statement = match item {
            Value::Tagged(_) => if_branches(item).1,
            plain => plain,
        };
        if statement["Effect"] == "Allow" {
            assert_ne!(statement["Principal"], "*", "{statement:?}");
        }
    }
}

#[test]
fn events_queue_has_a_dead_letter_queue_and_sse() {
    let template = events_queue();
    let resources = &template["Resources"];
    let queue = &resources["Queue"]["Properties"];
    let dlq = &resources["DeadLetterQueue"]["Properties"];
    assert_eq!(resources["Queue"]["Type"], "AWS::SQS::Queue");
    assert_eq!(resources["DeadLetterQueue"]["Type"], "AWS::SQS::Queue");

    let redrive = &queue["RedrivePolicy"];
    assert!(is_get_att(
        &redrive["deadLetterTargetArn"],
        "DeadLetterQueue.Arn"
    ));
    // Retries are bounded by a parameter (sharded exporters raise it: each hand-back counts).
    assert_eq!(
        str_of(tagged(&redrive["maxReceiveCount"], "Ref")),
        "MaxReceiveCount"
    );
    let parameter = &template["Parameters"]["MaxReceiveCount"];
    let max_receive = parameter["Default"].as_u64().unwrap();
    assert!(
        (2..=10).contains(&max_receive),
        "maxReceiveCount {max_receive}"
    );
    // SQS takes 1 to 1,000.
    assert_eq!(parameter["MinValue"].as_u64(), Some(1));
    assert_eq!(parameter["MaxValue"].as_u64(), Some(1000));
    // The dead-letter queue takes messages from this queue only (its ARN from its name).
    let allow = &dlq["RedriveAllowPolicy"];
    assert_eq!(allow["redrivePermission"], "byQueue");
    assert_eq!(
        str_of(tagged(&allow["sourceQueueArns"][0], "Sub")),
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${QueueName}"
    );
    assert!(is_ref(&queue["QueueName"], "QueueName"));
    assert_eq!(str_of(tagged(&dlq["QueueName"], "Sub")), "${QueueName}-dlq");

    // SSE with SQS-managed keys (EventBridge needs no KMS key policy), on both queues.
    for properties in [queue, dlq] {
        assert_eq!(properties["SqsManagedSseEnabled"], true);
        assert!(properties.get("KmsMasterKeyId").is_none());
    }
    assert_eq!(queue["ReceiveMessageWaitTimeSeconds"], 20);
    let retention = queue["MessageRetentionPeriod"].as_u64().unwrap();
    let dlq_retention = dlq["MessageRetentionPeriod"].as_u64().unwrap();
    assert!((3600..=1_209_600).contains(&retention), "{retention}");
    assert!(dlq_retention >= retention && dlq_retention <= 1_209_600);
    // A message is deleted once its collection succeeded: the visibility timeout outlasts the
    // default debounce window plus the default collection timeout, or every event would come
    // back once before its delete.
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    let collection = fast_launch_exporter::config::DEFAULT_DEBOUNCE
        + fast_launch_exporter::config::DEFAULT_TIMEOUT;
    assert!(
        visibility > collection.as_secs(),
        "VisibilityTimeout {visibility} s, a collection up to {collection:?}"
    );

    // The outputs the README and the other templates name.
    let outputs = &template["Outputs"];
    assert!(is_ref(&outputs["QueueUrl"]["Value"], "Queue"));
    assert!(is_get_att(&outputs["QueueArn"]["Value"], "Queue.Arn"));
    assert!(is_get_att(&outputs["EventBusArn"]["Value"], "EventBus.Arn"));

    // The default queue name is the one of the JSON policy's placeholder ARN and the docs.
    let name = str_of(&template["Parameters"]["QueueName"]["Default"]);
    assert_eq!(name, "fast-launch-events");
    let plain = json(&iam_dir().join("exporter-policy.json"));
    let arn = json_statement(&plain, "ReceiveFastLaunchEvents")["Resource"]
        .as_str()
        .unwrap();
    assert_eq!(arn.rsplit(':').next(), Some(name));
}

#[test]
fn events_bus_admits_the_organization_by_principal_org_id() {
    let template = events_queue();
    let bus = &template["Resources"]["EventBus"];
    assert_eq!(bus["Type"], "AWS::Events::EventBus");
    assert!(is_ref(&bus["Properties"]["Name"], "EventBusName"));
    let policy = &bus["Properties"]["Policy"];
    let bus_arn =
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}";

    let (condition, org) = maybe_conditional_statement(policy, "OrganizationPutsEvents");
    assert_eq!(condition, Some("HasOrganization"));
    assert_eq!(org["Effect"], "Allow");
    assert_eq!(org["Principal"], "*");
    assert_eq!(org["Action"], "events:PutEvents");
    assert_eq!(str_of(tagged(&org["Resource"], "Sub")), bus_arn);
    let equals = org["Condition"]["StringEquals"].as_mapping().unwrap();
    assert_eq!(equals.len(), 1);
    assert!(is_ref(
        &org["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
        "OrganizationId"
    ));
    assert_eq!(org["Condition"].as_mapping().unwrap().len(), 1);

    // Or named accounts.
    let (condition, accounts) = maybe_conditional_statement(policy, "AccountsPutEvents");
    assert_eq!(condition, Some("HasSourceAccounts"));
    assert!(is_ref(&accounts["Principal"]["AWS"], "SourceAccountIds"));
    assert_eq!(accounts["Action"], "events:PutEvents");
    assert_eq!(str_of(tagged(&accounts["Resource"], "Sub")), bus_arn);

    // One of the two is required; the organization id has the exporter template's format.
    assert!(template["Rules"]["SomeoneMaySendEvents"]["Assertions"].is_sequence());
    let parameters = &template["Parameters"];
    assert_eq!(parameters["OrganizationId"]["Default"], "");
    assert_eq!(parameters["SourceAccountIds"]["Type"], "CommaDelimitedList");
    assert_eq!(
        parameters["OrganizationId"]["AllowedPattern"],
        exporter_role()["Parameters"]["OrganizationId"]["AllowedPattern"]
    );
}

#[test]
fn member_rule_forwards_through_a_role_allowed_only_put_events_on_the_central_bus() {
    let template = events_member();
    let resources = template["Resources"].as_mapping().unwrap();
    let types: Vec<_> = resources.values().map(|r| str_of(&r["Type"])).collect();
    assert_eq!(types, ["AWS::IAM::Role", "AWS::Events::Rule"]);
    // The central bus is the point of the stack: required.
    let bus = &template["Parameters"]["CentralEventBusArn"];
    assert!(bus.get("Default").is_none());
    assert!(str_of(&bus["AllowedPattern"]).contains(":events:"));

    let role = &template["Resources"]["ForwardRole"]["Properties"];
    let trust = role["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(trust.len(), 1);
    assert_eq!(
        trust[0]["Principal"],
        serde_yaml::from_str::<Value>("{Service: events.amazonaws.com}").unwrap()
    );
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    // Only for this stack's rule on this account's default bus, in this region.
    assert!(is_ref(
        &trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        "AWS::AccountId"
    ));
    assert_eq!(
        str_of(tagged(
            &trust[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            "Sub"
        )),
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${ForwardRuleName}"
    );

    let policies = role["Policies"].as_sequence().unwrap();
    assert_eq!(policies.len(), 1);
    let grants = policies[0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["Effect"], "Allow");
    assert_eq!(grants[0]["Action"], "events:PutEvents");
    assert!(is_ref(&grants[0]["Resource"], "CentralEventBusArn"));
    assert!(role.get("ManagedPolicyArns").is_none());

    // The permissions boundary works as in the reader StackSet.
    let reader = stackset();
    assert_eq!(
        role["PermissionsBoundary"],
        reader["Resources"]["FastLaunchReaderRole"]["Properties"]["PermissionsBoundary"]
    );
    for name in ["HasPermissionsBoundary", "PermissionsBoundaryIsArn"] {
        assert_eq!(template["Conditions"][name], reader["Conditions"][name]);
    }
    assert_eq!(template["Parameters"]["PermissionsBoundary"]["Default"], "");
}

/// Fast launch events are regional, IAM is global: the member part is its own StackSet, deployed
/// in every region collected, with no named IAM resource; the reader role StackSet, whose role
/// has a fixed name, stays single-region and makes no rule.
#[test]
fn events_member_part_is_a_separate_regional_stackset() {
    let member = events_member();
    for (name, resource) in member["Resources"].as_mapping().unwrap() {
        let properties = &resource["Properties"];
        for key in [
            "RoleName",
            "ManagedPolicyName",
            "InstanceProfileName",
            "UserName",
            "GroupName",
        ] {
            assert!(
                properties.get(key).is_none(),
                "{name:?}.{key}: a fixed IAM name clashes between the regions' stacks"
            );
        }
    }
    let reader = stackset();
    assert!(is_ref(
        &reader["Resources"]["FastLaunchReaderRole"]["Properties"]["RoleName"],
        "ReaderRoleName"
    ));
    for resource in reader["Resources"].as_mapping().unwrap().values() {
        assert!(
            !str_of(&resource["Type"]).starts_with("AWS::Events::"),
            "the reader StackSet is deployed in one region"
        );
    }
    let header = read(&iam_dir().join("events-member-stackset.yaml"));
    assert!(
        header.contains("every region"),
        "the header says where to deploy"
    );
}

#[test]
fn exporter_may_receive_and_delete_on_the_events_queue_only() {
    let template = exporter_role();
    let parameter = &template["Parameters"]["EventsQueueArn"];
    assert_eq!(parameter["Default"], "", "events are optional");
    assert!(str_of(&parameter["AllowedPattern"]).contains(":sqs:"));
    assert_eq!(
        template["Conditions"]["HasEventsQueue"],
        serde_yaml::from_str::<Value>("!Not [!Equals [!Ref EventsQueueArn, \"\"]]").unwrap()
    );

    let policy = &template["Resources"]["ExporterEventsQueuePolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::RolePolicy");
    assert_eq!(policy["Condition"], "HasEventsQueue");
    assert!(is_ref(&policy["Properties"]["RoleName"], "ExporterRole"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    let receive = statement(
        &policy["Properties"]["PolicyDocument"],
        "ReceiveFastLaunchEvents",
    );
    assert_eq!(receive["Effect"], "Allow");
    assert_eq!(receive["Action"], list(&QUEUE_ACTIONS));
    assert!(is_ref(&receive["Resource"], "EventsQueueArn"));
    assert!(receive.get("Condition").is_none());

    // Every queue API the exporter calls is covered by one of them.
    use fast_launch_exporter::domain::calls::Api;
    for (api, action) in [
        (Api::ReceiveMessage, "sqs:ReceiveMessage"),
        (Api::DeleteMessageBatch, "sqs:DeleteMessage"),
        (
            Api::ChangeMessageVisibilityBatch,
            "sqs:ChangeMessageVisibility",
        ),
    ] {
        assert!(QUEUE_ACTIONS.contains(&action), "{}", api.as_str());
    }

    // Nothing else in the template grants SQS.
    let mut texts = Vec::new();
    strings(&template["Resources"]["ExporterRole"], &mut texts);
    assert!(
        texts.iter().all(|s| !s.starts_with("sqs:")),
        "SQS only in ExporterEventsQueuePolicy"
    );

    // The plain JSON policy: the same statement, on a placeholder queue, and no other SQS grant.
    let plain = json(&iam_dir().join("exporter-policy.json"));
    let receive = json_statement(&plain, "ReceiveFastLaunchEvents");
    assert_eq!(receive["Effect"], "Allow");
    assert_eq!(receive["Action"], serde_json::json!(QUEUE_ACTIONS));
    assert_eq!(
        receive["Resource"],
        "arn:aws:sqs:us-east-1:999999999999:fast-launch-events"
    );
    let sqs_statements = plain["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.to_string().contains("sqs:"))
        .count();
    assert_eq!(sqs_statements, 1);
}
