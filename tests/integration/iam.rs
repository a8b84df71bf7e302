//! IAM templates and policies: parse, cfn-lint, and the conditions issue 9 asks for.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn iam_dir() -> PathBuf {
    root().join("deploy/iam")
}

/// Whether `tool` runs here. Outside CI a missing tool skips the test with a message; with
/// `CI=true` it fails, since .ci/run installs it.
pub(crate) fn tool_available(tool: &str, version_args: &[&str], test: &str) -> bool {
    let present = Command::new(tool)
        .args(version_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing but CI=true: .ci/run must install it"
        );
        eprintln!("SKIPPED {test}: {tool} not installed");
    }
    present
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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file; CloudFormation's short forms (`!Sub`, `!Ref`, `!If`, ...) come back as
/// `Value::Tagged`.
fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Json {
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

fn is_ref(value: &Value, name: &str) -> bool {
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
fn statement<'a>(document: &'a Value, sid: &str) -> &'a Value {
    document["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"].as_str() == Some(sid))
        .unwrap_or_else(|| panic!("no statement {sid} in {document:?}"))
}

fn json_statement<'a>(document: &'a Json, sid: &str) -> &'a Json {
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
    assert_eq!(names, ["exporter-role.yaml", "reader-role-stackset.yaml"]);
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
    let account = yaml(&root().join("deploy/kubernetes/serviceaccount.yaml"));
    assert_eq!(
        account["metadata"]["name"], parameters["ServiceAccount"]["Default"],
        "deploy/kubernetes/serviceaccount.yaml"
    );
    let namespace = yaml(&root().join("deploy/kubernetes/namespace.yaml"));
    assert_eq!(
        namespace["metadata"]["name"], parameters["Namespace"]["Default"],
        "deploy/kubernetes/namespace.yaml"
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

#[test]
fn exporter_policy_reads_fast_launch_and_assumes_only_the_reader_role() {
    let template = exporter_role();
    let policies = template["Resources"]["ExporterRole"]["Properties"]["Policies"]
        .as_sequence()
        .unwrap();
    assert_eq!(policies.len(), 1);
    let document = &policies[0]["PolicyDocument"];
    assert_eq!(document["Statement"].as_sequence().unwrap().len(), 3);

    let describe = statement(document, "DescribeFastLaunchInOwnAccount");
    assert_eq!(describe["Action"], "ec2:DescribeFastLaunchImages");
    assert_eq!(describe["Resource"], "*");
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

    // The role reads fast launch state and nothing else.
    let policies = role["Properties"]["Policies"].as_sequence().unwrap();
    assert_eq!(policies.len(), 1);
    let grants = policies[0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["Effect"], "Allow");
    assert_eq!(grants[0]["Action"], "ec2:DescribeFastLaunchImages");
    assert_eq!(grants[0]["Resource"], "*");
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
