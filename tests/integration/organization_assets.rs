//! The deploy assets of account discovery from AWS Organizations, `regions: all` and sharding:
//! the org reader role and its policies (deploy/iam), ec2:DescribeRegions in the reader and
//! exporter policies, the sharded kustomize overlay (deploy/kubernetes/sharded) and component
//! (deploy/kubernetes/components/sharded), and their alerts.
//! cfn-lint runs over the new template with every other one (iam.rs).

use std::path::PathBuf;

use serde_yaml::Value;

use crate::harness::*;
use crate::iam::{is_ref, json, json_statement, read, statement, yaml};
use crate::kubernetes::{base_dir, kubectl_available, relative, render};

/// The read-only Organizations actions discovery calls, in the order the policies list them.
const ORGANIZATIONS_ACTIONS: [&str; 6] = [
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListTagsForResource",
    "organizations:DescribeOrganization",
];

/// The Downward API path of a StatefulSet pod's index (Kubernetes ≥ 1.28).
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

fn iam(name: &str) -> PathBuf {
    root().join("deploy/iam").join(name)
}

fn sharded_dir() -> PathBuf {
    base_dir().join("sharded")
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn list(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|s| Value::from(*s)).collect())
}

fn is_get_att(value: &Value, target: &str) -> bool {
    matches!(value, Value::Tagged(t) if t.tag == "GetAtt" && t.value.as_str() == Some(target))
}

/// The only inline policy document of the role resource `role` of `template`.
fn inline_policy<'a>(template: &'a Value, role: &str) -> &'a Value {
    let policies = seq(&template["Resources"][role]["Properties"]["Policies"]);
    assert_eq!(policies.len(), 1, "{role}: one inline policy");
    &policies[0]["PolicyDocument"]
}

// --- IAM -----------------------------------------------------------------------------------

#[test]
fn org_reader_role_may_only_read_the_organization() {
    let template = yaml(&iam("org-reader-role.yaml"));
    let resources = template["Resources"].as_mapping().unwrap();
    assert_eq!(resources.len(), 1, "the role and nothing else");
    let role = &template["Resources"]["FastLaunchOrgReaderRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    assert!(is_ref(&role["Properties"]["RoleName"], "OrgReaderRoleName"));
    assert_eq!(
        template["Parameters"]["OrgReaderRoleName"]["Default"],
        "FastLaunchOrgReader"
    );
    assert!(role["Properties"].get("ManagedPolicyArns").is_none());

    // Exactly the six read-only actions, on "*".
    let document = inline_policy(&template, "FastLaunchOrgReaderRole");
    let grants = seq(&document["Statement"]);
    assert_eq!(grants.len(), 1, "{grants:?}");
    let grant = statement(document, "ListOrganizationAccounts");
    assert_eq!(grant["Effect"], "Allow");
    assert_eq!(grant["Action"], list(&ORGANIZATIONS_ACTIONS));
    assert_eq!(grant["Resource"], "*");
    assert!(grant.get("Condition").is_none());

    // Every Organizations API the exporter calls is among them.
    use fast_launch_exporter::domain::calls::Api;
    for api in [
        Api::ListAccounts,
        Api::ListAccountsForParent,
        Api::ListOrganizationalUnitsForParent,
        Api::ListTagsForResource,
        Api::DescribeOrganization,
    ] {
        let action = format!("organizations:{}", api.as_str());
        assert!(ORGANIZATIONS_ACTIONS.contains(&action.as_str()), "{action}");
    }

    // The plain JSON policy (for a role made by hand, or the exporter's own role in the
    // management account) grants the same.
    let plain = json(&iam("org-reader-policy.json"));
    assert_eq!(plain["Statement"].as_array().unwrap().len(), 1);
    let grant = json_statement(&plain, "ListOrganizationAccounts");
    assert_eq!(grant["Effect"], "Allow");
    assert_eq!(grant["Action"], serde_json::json!(ORGANIZATIONS_ACTIONS));
    assert_eq!(grant["Resource"], "*");
}

/// The org reader role is trusted exactly as the member accounts' reader role: the exporter's
/// account root, narrowed by aws:PrincipalArn, optional organization and external id, optional
/// permissions boundary.
#[test]
fn org_reader_role_trusts_the_exporter_role_as_the_reader_role_does() {
    let template = yaml(&iam("org-reader-role.yaml"));
    let stackset = yaml(&iam("reader-role-stackset.yaml"));
    let role = &template["Resources"]["FastLaunchOrgReaderRole"]["Properties"];
    let reader = &stackset["Resources"]["FastLaunchReaderRole"]["Properties"];

    let trust = &role["AssumeRolePolicyDocument"];
    assert_eq!(seq(&trust["Statement"]).len(), 1);
    let trusted = statement(trust, "TrustTheExporterRole");
    assert_eq!(
        trusted,
        statement(&reader["AssumeRolePolicyDocument"], "TrustTheExporterRole")
    );
    assert!(is_ref(
        &trusted["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        "ExporterRoleArn"
    ));
    assert_eq!(
        trusted["Action"],
        list(&["sts:AssumeRole", "sts:TagSession"])
    );

    assert_eq!(role["PermissionsBoundary"], reader["PermissionsBoundary"]);
    assert_eq!(role["MaxSessionDuration"], reader["MaxSessionDuration"]);
    for name in [
        "HasOrganization",
        "HasExternalId",
        "HasStringConditions",
        "HasPermissionsBoundary",
        "PermissionsBoundaryIsArn",
    ] {
        assert_eq!(
            template["Conditions"][name], stackset["Conditions"][name],
            "{name}"
        );
    }
    let parameters = &template["Parameters"];
    for name in ["ExporterRoleArn", "OrganizationId", "ExternalId"] {
        assert_eq!(
            parameters[name]["AllowedPattern"], stackset["Parameters"][name]["AllowedPattern"],
            "{name}"
        );
    }
    assert!(parameters["ExporterRoleArn"].get("Default").is_none());
    assert_eq!(parameters["ExternalId"]["Default"], "");
    assert_eq!(parameters["ExternalId"]["NoEcho"], true);
    assert_eq!(parameters["OrganizationId"]["Default"], "");
    assert_eq!(parameters["PermissionsBoundary"]["Default"], "");

    // The output is what the config's discovery.organizations.role_arn takes.
    let output = &template["Outputs"]["RoleArn"];
    assert!(is_get_att(&output["Value"], "FastLaunchOrgReaderRole.Arn"));
    assert!(
        str_of(&output["Description"], "description").contains("discovery.organizations.role_arn")
    );
}

/// The management account's delegation policy (`aws organizations put-resource-policy`) lets a
/// member account make exactly the discovery calls, read-only.
#[test]
fn organizations_delegation_policy_delegates_the_read_only_calls_to_one_account() {
    let policy = json(&iam("organizations-delegation-policy.json"));
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(
        statement["Principal"],
        serde_json::json!({"AWS": "arn:aws:iam::123456789012:root"})
    );
    assert_eq!(
        statement["Action"],
        serde_json::json!(ORGANIZATIONS_ACTIONS)
    );
    assert_eq!(statement["Resource"], "*");
    for action in ORGANIZATIONS_ACTIONS {
        let name = action.strip_prefix("organizations:").unwrap();
        assert!(
            name.starts_with("List") || name.starts_with("Describe"),
            "{action} is not read-only"
        );
    }
    // The template's header says where it goes.
    let header = read(&iam("org-reader-role.yaml"));
    assert!(header.contains("aws organizations put-resource-policy"));
    assert!(header.contains("organizations-delegation-policy.json"));
}

/// The exporter may assume the org reader role only when its ARN is given: a policy of its own,
/// so the role's inline policy is the same with or without discovery.
#[test]
fn exporter_role_may_assume_the_org_reader_role_when_given() {
    let template = yaml(&iam("exporter-role.yaml"));
    let parameter = &template["Parameters"]["OrgReaderRoleArn"];
    assert_eq!(parameter["Default"], "", "discovery is optional");
    assert!(str_of(&parameter["AllowedPattern"], "pattern").contains(":role/"));
    assert_eq!(
        template["Conditions"]["HasOrgReaderRole"],
        serde_yaml::from_str::<Value>("!Not [!Equals [!Ref OrgReaderRoleArn, \"\"]]").unwrap()
    );
    let policy = &template["Resources"]["ExporterOrgReaderPolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::RolePolicy");
    assert_eq!(policy["Condition"], "HasOrgReaderRole");
    assert!(is_ref(&policy["Properties"]["RoleName"], "ExporterRole"));
    let document = &policy["Properties"]["PolicyDocument"];
    assert_eq!(seq(&document["Statement"]).len(), 1);
    let assume = statement(document, "AssumeOrgReaderRole");
    assert_eq!(assume["Effect"], "Allow");
    assert_eq!(
        assume["Action"],
        list(&["sts:AssumeRole", "sts:TagSession"])
    );
    assert!(is_ref(&assume["Resource"], "OrgReaderRoleArn"));

    // The plain JSON policy names the org template's default role name.
    let plain = json(&iam("exporter-policy.json"));
    let assume = json_statement(&plain, "AssumeOrgReaderRole");
    assert_eq!(
        assume["Action"],
        serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
    );
    let org = yaml(&iam("org-reader-role.yaml"));
    let name = str_of(&org["Parameters"]["OrgReaderRoleName"]["Default"], "name");
    assert!(
        assume["Resource"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!(":role/{name}"))),
        "{assume}"
    );
}

/// `regions: all` calls ec2:DescribeRegions in every account: with the reader role in member
/// accounts, with the exporter's own role in its own account.
#[test]
fn reader_and_exporter_roles_may_list_regions() {
    let assert_describe_regions = |grant: &Value, what: &str| {
        assert_eq!(grant["Effect"], "Allow", "{what}");
        assert_eq!(grant["Action"], "ec2:DescribeRegions", "{what}");
        assert_eq!(grant["Resource"], "*", "{what}");
    };
    let stackset = yaml(&iam("reader-role-stackset.yaml"));
    assert_describe_regions(
        statement(
            inline_policy(&stackset, "FastLaunchReaderRole"),
            "ListRegions",
        ),
        "reader-role-stackset.yaml",
    );
    let exporter = yaml(&iam("exporter-role.yaml"));
    assert_describe_regions(
        statement(
            inline_policy(&exporter, "ExporterRole"),
            "ListRegionsInOwnAccount",
        ),
        "exporter-role.yaml",
    );

    let assert_json = |path: &str, sid: &str| {
        let plain = json(&iam(path));
        let grant = json_statement(&plain, sid);
        assert_eq!(grant["Effect"], "Allow", "{path}");
        assert_eq!(grant["Action"], "ec2:DescribeRegions", "{path}");
        assert_eq!(grant["Resource"], "*", "{path}");
    };
    assert_json("reader-role-policy.json", "ListRegions");
    assert_json("exporter-policy.json", "ListRegionsInOwnAccount");
    assert_eq!(
        format!(
            "ec2:{}",
            fast_launch_exporter::domain::calls::Api::DescribeRegions.as_str()
        ),
        "ec2:DescribeRegions"
    );
}

// --- Kubernetes: the sharded component -------------------------------------------------------

/// Renders a user's overlay, written outside the repository as kustomize requires; `{base}`
/// stands for the path of deploy/kubernetes.
fn render_user_overlay(kustomization: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let base = relative(&here, &base_dir().canonicalize().unwrap());
    std::fs::write(
        here.join("kustomization.yaml"),
        kustomization.replace("{base}", &base),
    )
    .unwrap();
    render(&here)
}

/// The base, the components in order, then the sharded component: a user's overlay.
fn render_sharded(components: &[&str]) -> Vec<Value> {
    let mut text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                    resources:\n  - {base}\ncomponents:\n"
        .to_string();
    for component in components {
        text.push_str(&format!("  - {{base}}/components/{component}\n"));
    }
    text.push_str("  - {base}/components/sharded\n");
    render_user_overlay(&text)
}

fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = all(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

/// Every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let labels = labels.as_mapping().expect("labels");
    selector
        .as_mapping()
        .expect("a selector")
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The value of env var `name` of `container`.
fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    seq(&container["env"])
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name} in {container:?}"))
}

/// The value of `--flag=` in the container's args, with `$(VAR)` resolved from its env.
fn flag(container: &Value, flag: &str) -> String {
    let prefix = format!("{flag}=");
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .map(|a| str_of(a, "arg"))
        .filter(|a| a.starts_with(&prefix))
        .collect();
    assert_eq!(args.len(), 1, "{flag} once in {:?}", container["args"]);
    let value = &args[0][prefix.len()..];
    match value.strip_prefix("$(").and_then(|v| v.strip_suffix(')')) {
        Some(var) => str_of(&env(container, var)["value"], var).to_string(),
        None => value.to_string(),
    }
}

fn replicas(statefulset: &Value) -> u64 {
    statefulset["spec"]["replicas"].as_u64().expect("replicas")
}

/// The pod spec without what sharding adds: the SHARD_* env vars and the --shard.* args.
fn without_sharding(pod: &Value) -> Value {
    let mut pod = pod.clone();
    let container = &mut pod["containers"][0];
    if let Some(env) = container["env"].as_sequence_mut() {
        env.retain(|e| !e["name"].as_str().unwrap_or_default().starts_with("SHARD_"));
    }
    if let Some(args) = container["args"].as_sequence_mut() {
        args.retain(|a| !a.as_str().unwrap_or_default().starts_with("--shard."));
    }
    pod
}

/// `kubectl kustomize deploy/kubernetes/sharded`, as shipped.
#[test]
fn sharded_overlay_renders_a_statefulset_with_one_shard_per_replica() {
    if !kubectl_available("sharded_overlay_renders_a_statefulset_with_one_shard_per_replica") {
        return;
    }
    let kustomization = yaml(&sharded_dir().join("kustomization.yaml"));
    assert_eq!(kustomization["kind"], "Kustomization");
    let component = yaml(&base_dir().join("components/sharded/kustomization.yaml"));
    assert_eq!(component["kind"], "Component");
    // The overlay is the base plus the component, as a user's overlay would put them.
    let docs = render(&sharded_dir());
    assert_eq!(docs, render_sharded(&[]));

    assert!(
        all(&docs, "Deployment").is_empty(),
        "the Deployment is gone"
    );
    let statefulset = one(&docs, "StatefulSet");
    let spec = &statefulset["spec"];
    assert_eq!(replicas(statefulset), 3);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert!(selects(
        &spec["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));

    // The shard: the index from the pod-index label, the count equal to replicas.
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        env(container, "SHARD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        POD_INDEX_FIELD
    );
    assert!(seq(&container["args"]).contains(&Value::from("--shard.index=$(SHARD_INDEX)")));
    let total: u64 = flag(container, "--shard.total").parse().unwrap();
    assert_eq!(
        total,
        replicas(statefulset),
        "--shard.total must equal replicas"
    );

    // The governing Service is the base's, headless, and still what the ServiceMonitor scrapes.
    let service = one(&docs, "Service");
    assert_eq!(spec["serviceName"], service["metadata"]["name"]);
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert!(selects(
        &service["spec"]["selector"],
        &spec["template"]["metadata"]["labels"]
    ));
    let monitor = one(&docs, "ServiceMonitor");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let policy = one(&docs, "NetworkPolicy");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));

    // The base's hardened pod, unchanged but for the shard.
    let base = render(&base_dir());
    let deployment = one(&base, "Deployment");
    assert_eq!(
        without_sharding(&spec["template"]["spec"]),
        deployment["spec"]["template"]["spec"],
        "the StatefulSet's pod differs from the base's"
    );
    assert_eq!(
        spec["template"]["metadata"],
        deployment["spec"]["template"]["metadata"]
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        list(&["ALL"])
    );
}

/// Listed after them, the component keeps what the components before it did to the Deployment
/// (`kubernetes.rs` renders both orders).
#[test]
fn sharded_component_keeps_the_components_listed_before_it() {
    if !kubectl_available("sharded_component_keeps_the_components_listed_before_it") {
        return;
    }
    let docs = render_sharded(&["web-auth-basic", "kube-prometheus-stack"]);
    assert!(all(&docs, "Deployment").is_empty());
    let statefulset = one(&docs, "StatefulSet");
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with("--web.config.file=")),
        "{args:?}"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(
        flag(container, "--shard.total"),
        replicas(statefulset).to_string()
    );
    assert_eq!(
        one(&docs, "ServiceMonitor")["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let readme = read(&sharded_dir().join("README.md"));
    assert!(
        readme.contains("in any order")
            && readme.contains("{group: apps, name: fast-launch-exporter}"),
        "the README says the order does not matter and how to write a workload patch"
    );
}

/// The README's scaling overlay, rendered as written: replicas and --shard.total move together.
#[test]
fn sharded_readme_scaling_overlay_changes_replicas_and_shard_total_together() {
    if !kubectl_available(
        "sharded_readme_scaling_overlay_changes_replicas_and_shard_total_together",
    ) {
        return;
    }
    let readme = read(&sharded_dir().join("README.md"));
    let scaling = &readme[readme.find("## Scaling").expect("a Scaling section")..];
    let block = scaling
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in Scaling");
    let overlay = block.replace("../fast-launch-exporter/deploy/kubernetes", "{base}");
    let docs = render_user_overlay(&overlay);
    let statefulset = one(&docs, "StatefulSet");
    assert_eq!(replicas(statefulset), 5);
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    // A string, as Kubernetes requires of an env value.
    assert_eq!(env(container, "SHARD_TOTAL")["value"], Value::from("5"));
    assert_eq!(flag(container, "--shard.total"), "5");

    // What it needs and what watches it.
    for needle in [
        "1.28",
        "apps.kubernetes.io/pod-index",
        "FastLaunchShardsDisagree",
        "FastLaunchShardMissing",
    ] {
        assert!(readme.contains(needle), "README.md: {needle}");
    }
}

// --- Alerts ----------------------------------------------------------------------------------

/// The sharding and discovery alerts exist, and FastLaunchShardMissing counts distinct indexes,
/// so that a duplicated index does not hide a missing one.
#[test]
fn sharding_and_discovery_alerts_are_defined() {
    let alerts = yaml(&root().join("deploy/prometheus/alerts.yaml"));
    let rules: Vec<&Value> = seq(&alerts["groups"])
        .iter()
        .flat_map(|g| seq(&g["rules"]))
        .collect();
    let expr = |name: &str| -> String {
        let rule = rules
            .iter()
            .find(|r| r["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}"));
        str_of(&rule["expr"], "expr").to_string()
    };
    let missing = expr("FastLaunchShardMissing");
    assert!(missing.contains("count_values"), "{missing}");
    assert!(missing.contains("fast_launch_exporter_shards"), "{missing}");
    let disagree = expr("FastLaunchShardsDisagree");
    assert!(
        disagree.contains("max by") && disagree.contains("min by"),
        "{disagree}"
    );
    let discovery = expr("FastLaunchDiscoveryFailing");
    assert!(
        discovery.contains("fast_launch_exporter_discovery_success"),
        "{discovery}"
    );
}
