//! Kubernetes manifests: every kustomize variant renders and says what it must.
//!
//! The base (`deploy/kubernetes`) and each component under `deploy/kubernetes/components/` are
//! rendered with `kubectl kustomize`, the components through overlays written to a temporary
//! folder as a user would write them (kustomize refuses an overlay inside the base's own folder).
//! The web-auth components are also run: the exporter is started with each component's example
//! web config, and the rendered probes are performed against it as the kubelet would.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::*;

pub(crate) fn base_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// The components, each with its own test below.
const COMPONENTS: &[&str] = &[
    "eks-pod-identity",
    "existing-namespace",
    "grafana-dashboard",
    "kube-prometheus-rbac",
    "kube-prometheus-stack",
    "plain-prometheus",
    "sharded",
    "web-auth-basic",
    "web-auth-mtls",
];

/// Whether kubectl runs here (a missing one fails the test under `CI=true`).
pub(crate) fn kubectl_available(test: &str) -> bool {
    tool_available("kubectl", &["version", "--client"], test)
}

/// `kubectl kustomize dir`, as documents.
pub(crate) fn render(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

/// `to` relative to `from` (both absolute): kustomize takes no absolute resource paths.
pub(crate) fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(to[common..].iter().map(|c| match c {
        Component::Normal(name) => name.to_string_lossy().into_owned(),
        other => panic!("unexpected path component {other:?}"),
    }));
    parts.join("/")
}

/// Renders a user's overlay: the base, `components`, and `extra` kustomization text. `{base}`
/// in `extra` stands for the path of deploy/kubernetes.
fn render_overlay(components: &[&str], extra: &str) -> Vec<Value> {
    let mut text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                    resources:\n  - {base}\ncomponents:\n"
        .to_string();
    for component in components {
        text.push_str(&format!("  - {{base}}/components/{component}\n"));
    }
    text.push_str(extra);
    render_user_overlay(&text, &[])
}

/// Renders a whole overlay `kustomization` (`{base}` = the path of deploy/kubernetes) with
/// `files` next to it.
fn render_user_overlay(kustomization: &str, files: &[(&str, &str)]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let base = relative(&here, &base_dir().canonicalize().unwrap());
    std::fs::write(
        here.join("kustomization.yaml"),
        kustomization.replace("{base}", &base),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(here.join(name), text).unwrap();
    }
    render(&here)
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

pub(crate) fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The exporter's pod: the Deployment's, or the StatefulSet's (the sharded component).
fn pod(docs: &[Value]) -> &Value {
    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect();
    assert_eq!(workloads.len(), 1, "one Deployment or StatefulSet");
    &workloads[0]["spec"]["template"]["spec"]
}

fn container(docs: &[Value]) -> &Value {
    &pod(docs)["containers"][0]
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

pub(crate) fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// A Kubernetes memory quantity in bytes (the suffixes the manifests use).
fn bytes(quantity: &str) -> u64 {
    let units: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().unwrap() * factor;
        }
    }
    quantity.parse().unwrap()
}

const MIB: u64 = 1 << 20;

/// The pod passes Pod Security Admission `restricted` (the checks that apply to its fields), and
/// keeps what the base promises in every variant.
fn assert_restricted(docs: &[Value], variant: &str) {
    let pod = pod(docs);
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], Value::from(true), "{variant}");
    assert!(
        pod_security["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "{variant}: runAsUser"
    );
    assert_eq!(
        pod_security["seccompProfile"]["type"],
        Value::from("RuntimeDefault"),
        "{variant}"
    );
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            pod[field].is_null() || pod[field] == false,
            "{variant}: {field}"
        );
    }
    for volume in seq(&pod["volumes"]) {
        let kinds: Vec<&str> = volume
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str())
            .filter(|k| *k != "name")
            .collect();
        for kind in kinds {
            assert!(
                [
                    "configMap",
                    "secret",
                    "projected",
                    "emptyDir",
                    "downwardAPI",
                    "csi",
                    "ephemeral",
                    "persistentVolumeClaim"
                ]
                .contains(&kind),
                "{variant}: volume type {kind} is not allowed by `restricted`"
            );
        }
    }
    let containers: Vec<&Value> = seq(&pod["containers"])
        .iter()
        .chain(seq(&pod["initContainers"]))
        .collect();
    assert!(!containers.is_empty());
    for container in containers {
        let security = &container["securityContext"];
        assert_eq!(
            security["allowPrivilegeEscalation"],
            Value::from(false),
            "{variant}"
        );
        assert!(
            security["privileged"].is_null() || security["privileged"] == false,
            "{variant}"
        );
        assert_eq!(
            security["capabilities"]["drop"],
            serde_yaml::from_str::<Value>("[ALL]").unwrap(),
            "{variant}"
        );
        assert!(
            seq(&security["capabilities"]["add"]).is_empty(),
            "{variant}: capabilities added"
        );
        assert!(
            security["runAsUser"].is_null() || security["runAsUser"].as_u64() > Some(0),
            "{variant}"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"],
            Value::from(true),
            "{variant}"
        );
        for port in seq(&container["ports"]) {
            assert!(port["hostPort"].is_null(), "{variant}: hostPort");
        }
    }
    assert_eq!(
        pod["nodeSelector"]["kubernetes.io/os"],
        Value::from("linux"),
        "{variant}"
    );
    let resources = &container(docs)["resources"];
    let request = bytes(str_of(&resources["requests"]["memory"], "memory request"));
    let limit = bytes(str_of(&resources["limits"]["memory"], "memory limit"));
    assert!(request <= limit, "{variant}: memory request above limit");
    // The config ConfigMap stays the pod's first volume.
    assert!(pod["volumes"][0]["configMap"]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("fast-launch-exporter-config")));
}

#[test]
fn kubernetes_base_is_restricted_isolated_and_sized() {
    if !kubectl_available("kubernetes_base_is_restricted_isolated_and_sized") {
        return;
    }
    let docs = render(&base_dir());
    assert_restricted(&docs, "base");
    // The exporter never calls the Kubernetes API: no service account token in the pod.
    assert_eq!(
        pod(&docs)["automountServiceAccountToken"],
        Value::from(false)
    );

    // Pod Security Admission on the namespace everything goes into.
    let namespace = one(&docs, "Namespace");
    let name = str_of(&namespace["metadata"]["name"], "namespace name");
    let labels = &namespace["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}").as_str()],
            Value::from("restricted"),
            "{mode}"
        );
    }
    for doc in &docs {
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], Value::from(name), "{doc:?}");
        }
    }

    // Memory: docs/performance.md measures 20 MiB resident idle at 1,000 images and ~27 MiB
    // with collections running; the base is sized for that with headroom for scrapes.
    let resources = &container(&docs)["resources"];
    let request = bytes(str_of(&resources["requests"]["memory"], "request"));
    let limit = bytes(str_of(&resources["limits"]["memory"], "limit"));
    assert!(request >= 32 * MIB, "request {request}");
    assert!(
        limit >= 2 * request,
        "limit {limit} leaves no room for scrapes"
    );
    assert!(
        limit <= 512 * MIB,
        "limit {limit}: the base is for ~1,000 images"
    );

    // NetworkPolicy: it selects the exporter's pod, admits 9849/TCP from the monitoring namespace
    // only, and lets out HTTPS and DNS only.
    let policy = one(&docs, "NetworkPolicy");
    let spec = &policy["spec"];
    let pod_labels = one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    for (key, value) in spec["podSelector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(pod_labels.get(key), Some(value), "podSelector {key:?}");
    }
    let types: BTreeSet<&str> = seq(&spec["policyTypes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, BTreeSet::from(["Ingress", "Egress"]));
    let ingress = seq(&spec["ingress"]);
    assert_eq!(ingress.len(), 1, "one ingress rule");
    let peers = seq(&ingress[0]["from"]);
    assert_eq!(peers.len(), 1, "one ingress peer");
    assert_eq!(
        peers[0],
        serde_yaml::from_str::<Value>(
            "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}"
        )
        .unwrap(),
        "ingress from the monitoring namespace only"
    );
    assert_eq!(
        ingress[0]["ports"],
        serde_yaml::from_str::<Value>("[{port: 9849, protocol: TCP}]").unwrap()
    );
    assert_eq!(
        container(&docs)["ports"][0]["containerPort"],
        Value::from(9849)
    );
    let mut egress_ports = BTreeSet::new();
    for rule in seq(&spec["egress"]) {
        for port in seq(&rule["ports"]) {
            egress_ports.insert((
                port["port"].as_u64().unwrap(),
                str_of(&port["protocol"], "protocol").to_string(),
            ));
        }
        assert!(
            !seq(&rule["ports"]).is_empty(),
            "an egress rule without ports"
        );
    }
    assert_eq!(
        egress_ports,
        BTreeSet::from([
            (53, "TCP".to_string()),
            (53, "UDP".to_string()),
            (443, "TCP".to_string()),
        ])
    );

    // The alerts look for job="fast-launch-exporter": the ServiceMonitor's jobLabel names the
    // Service label that carries it.
    let monitor = one(&docs, "ServiceMonitor");
    let job_label = str_of(&monitor["spec"]["jobLabel"], "jobLabel");
    assert_eq!(
        one(&docs, "Service")["metadata"]["labels"][job_label],
        Value::from("fast-launch-exporter")
    );
}

#[test]
fn kubernetes_every_component_is_a_component_and_keeps_the_pod_restricted() {
    // The folder listing and the kustomization kinds need no tool: checked whether or not
    // kubectl is here.
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(base_dir().join("components")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let listed: BTreeSet<String> = COMPONENTS.iter().map(|c| c.to_string()).collect();
    assert_eq!(found, listed, "every component needs its test here");
    for component in COMPONENTS {
        let text = std::fs::read_to_string(
            base_dir()
                .join("components")
                .join(component)
                .join("kustomization.yaml"),
        )
        .unwrap();
        let kustomization: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            kustomization["kind"],
            Value::from("Component"),
            "{component}"
        );
    }
    if !kubectl_available("kubernetes_every_component_is_a_component_and_keeps_the_pod_restricted")
    {
        return;
    }
    for component in COMPONENTS {
        let docs = render_overlay(&[component], "");
        assert_restricted(&docs, component);
    }
    // All at once, as a user on kube-prometheus-stack with web auth, the dashboard and Pod
    // Identity would have them.
    let docs = render_overlay(
        &[
            "kube-prometheus-stack",
            "web-auth-basic",
            "grafana-dashboard",
            "eks-pod-identity",
        ],
        "",
    );
    assert_restricted(&docs, "combined");
    assert_eq!(
        one(&docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"],
        Value::from("https")
    );
}

#[test]
fn kubernetes_kube_prometheus_stack_component_sets_a_configurable_release_label() {
    if !kubectl_available(
        "kubernetes_kube_prometheus_stack_component_sets_a_configurable_release_label",
    ) {
        return;
    }
    let docs = render_overlay(&["kube-prometheus-stack"], "");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            one(&docs, kind)["metadata"]["labels"]["release"],
            Value::from("kube-prometheus-stack"),
            "{kind}"
        );
    }
    for doc in &docs {
        if !["ServiceMonitor", "PrometheusRule"].contains(&str_of(&doc["kind"], "kind")) {
            assert!(doc["metadata"]["labels"]["release"].is_null(), "{doc:?}");
        }
    }

    // The overlay the README shows: another release name, another Prometheus namespace, a
    // larger fleet, the user's image, config and role.
    let docs = render_user_overlay(
        &readme_overlay(),
        &[(
            "config.yaml",
            "regions: [us-east-1, eu-west-1]\naccounts:\n  - name: tooling\n",
        )],
    );
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            one(&docs, kind)["metadata"]["labels"]["release"],
            Value::from("prom"),
            "{kind}"
        );
    }
    assert_eq!(
        one(&docs, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
            ["matchLabels"]["kubernetes.io/metadata.name"],
        Value::from("observability")
    );
    let container = container(&docs);
    let resources = &container["resources"];
    assert_eq!(resources["requests"]["memory"], Value::from("128Mi"));
    assert_eq!(resources["limits"]["memory"], Value::from("256Mi"));
    assert_eq!(
        container["image"],
        Value::from("123456789012.dkr.ecr.us-east-1.amazonaws.com/fast-launch-exporter:0.2.0")
    );
    assert_eq!(
        one(&docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        Value::from("arn:aws:iam::123456789012:role/fast-launch-exporter")
    );
    let config_map = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("fast-launch-exporter-config"))
        })
        .unwrap();
    let config = str_of(&config_map["data"]["config.yaml"], "config.yaml");
    assert!(
        config.contains("eu-west-1"),
        "the overlay's config replaces the base's"
    );
    fast_launch_exporter::config::Config::from_yaml(config).unwrap();
    assert_eq!(
        pod(&docs)["volumes"][0]["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    assert_eq!(
        named(&docs, "ConfigMap", "fast-launch-exporter-dashboard")["metadata"]["labels"]
            ["grafana_dashboard"],
        Value::from("1")
    );
    assert_restricted(&docs, "README overlay");
}

/// The overlay of docs/kubernetes.md's Kustomize section, as the page shows it, with `{base}` for
/// the path of deploy/kubernetes.
fn readme_overlay() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kubernetes.md"))
            .expect("docs/kubernetes.md");
    let start = readme
        .find("# kustomization.yaml, next to your config.yaml\n")
        .expect("the README's overlay");
    let text = &readme[start..];
    let end = text.find("```").expect("the end of the README's overlay");
    text[..end].replace("../fast-launch-exporter/deploy/kubernetes", "{base}")
}

/// The README's overlay with `components` added to its `components:`, before or after the
/// README's own.
fn readme_overlay_with(components: &[&str], first: bool) -> String {
    let overlay = readme_overlay();
    let list = overlay.find("components:\n").expect("components:") + "components:\n".len();
    let listed: usize = overlay[list..]
        .lines()
        .take_while(|line| line.starts_with("  - "))
        .map(|line| line.len() + 1)
        .sum();
    let at = if first { list } else { list + listed };
    let added: String = components
        .iter()
        .map(|c| format!("  - {{base}}/components/{c}\n"))
        .collect();
    format!("{}{added}{}", &overlay[..at], &overlay[at..])
}

#[test]
fn kubernetes_components_reach_the_workload_whatever_their_order() {
    if !kubectl_available("kubernetes_components_reach_the_workload_whatever_their_order") {
        return;
    }
    let config = ("config.yaml", "regions: [us-east-1]\n");
    for (order, components) in [
        ("sharded first", ["sharded", "web-auth-basic"]),
        ("web-auth-basic first", ["web-auth-basic", "sharded"]),
    ] {
        for first in [true, false] {
            let variant = format!("{order}, {}", if first { "before" } else { "after" });
            let docs = render_user_overlay(&readme_overlay_with(&components, first), &[config]);
            assert!(
                kinds(&docs).contains("StatefulSet"),
                "{variant}: the sharded component made a StatefulSet"
            );
            assert!(!kinds(&docs).contains("Deployment"), "{variant}");
            // The README overlay's own memory patch.
            let resources = &container(&docs)["resources"];
            assert_eq!(
                resources["requests"]["memory"],
                Value::from("128Mi"),
                "{variant}"
            );
            assert_eq!(
                resources["limits"]["memory"],
                Value::from("256Mi"),
                "{variant}"
            );
            // The web config and the probes of web-auth-basic.
            assert_web_config_mounted(&docs, &variant);
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(
                    container(&docs)[probe]["httpGet"]["scheme"],
                    Value::from("HTTPS"),
                    "{variant}: {probe}"
                );
            }
            assert_https_scrape(&docs, &variant);
            // The shard flags of the sharded component.
            let args: Vec<&str> = seq(&container(&docs)["args"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                args.contains(&"--shard.total=$(SHARD_TOTAL)"),
                "{variant}: {args:?}"
            );
            assert_restricted(&docs, &variant);
        }
    }
}

/// The web-config Secret's mount, and the `--web.config.file` argument pointing into it.
fn assert_web_config_mounted(docs: &[Value], variant: &str) {
    let container = container(docs);
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let file = args
        .iter()
        .find_map(|a| a.strip_prefix("--web.config.file="))
        .unwrap_or_else(|| panic!("{variant}: no --web.config.file in {args:?}"));
    assert!(args.contains(&"--config.file=/etc/fast-launch-exporter/config.yaml"));
    let volume = seq(&pod(docs)["volumes"])
        .iter()
        .find(|v| v["secret"]["secretName"] == "fast-launch-exporter-web-config")
        .unwrap_or_else(|| panic!("{variant}: no web-config Secret volume"));
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap_or_else(|| panic!("{variant}: the Secret volume is not mounted"));
    assert_eq!(mount["readOnly"], Value::from(true));
    let mount_path = str_of(&mount["mountPath"], "mountPath");
    assert_eq!(
        Path::new(file),
        Path::new(mount_path).join("web-config.yml"),
        "{variant}: --web.config.file outside the Secret's mount"
    );
    // Not inside the config ConfigMap's read-only mount.
    assert!(!mount_path.starts_with("/etc/fast-launch-exporter/"));
}

/// What the ServiceMonitor's TLS settings name: the scrape Secret, and the Service's DNS name.
fn assert_https_scrape(docs: &[Value], variant: &str) -> Value {
    let endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0].clone();
    assert_eq!(endpoint["scheme"], Value::from("https"), "{variant}");
    let tls = &endpoint["tlsConfig"];
    assert_eq!(
        tls["ca"]["secret"],
        serde_yaml::from_str::<Value>("{name: fast-launch-exporter-scrape, key: ca.crt}").unwrap(),
        "{variant}"
    );
    assert!(tls["insecureSkipVerify"].is_null() || tls["insecureSkipVerify"] == false);
    let service = one(docs, "Service");
    assert_eq!(
        tls["serverName"],
        Value::from(format!(
            "{}.{}.svc",
            str_of(&service["metadata"]["name"], "service"),
            str_of(&service["metadata"]["namespace"], "namespace")
        )),
        "{variant}"
    );
    endpoint
}

fn component_file(component: &str, file: &str) -> PathBuf {
    base_dir().join("components").join(component).join(file)
}

#[test]
fn kubernetes_web_auth_basic_mounts_the_secret_and_probes_over_https_with_a_header() {
    if !kubectl_available(
        "kubernetes_web_auth_basic_mounts_the_secret_and_probes_over_https_with_a_header",
    ) {
        return;
    }
    let docs = render_overlay(&["web-auth-basic"], "");
    assert_web_config_mounted(&docs, "web-auth-basic");
    let container = container(&docs);
    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["scheme"], Value::from("HTTPS"), "{probe}");
        assert_eq!(get["path"], Value::from(path), "{probe}");
        assert_eq!(get["port"], Value::from("http-metrics"), "{probe}");
        let headers = seq(&get["httpHeaders"]);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0]["name"], Value::from("Authorization"));
        let value = str_of(&headers[0]["value"], "header");
        // The header's user and password are a user of the example web config.
        let (user, password) = decode_basic(value);
        let web: Value = serde_yaml::from_str(
            &std::fs::read_to_string(component_file("web-auth-basic", "web-config.example.yml"))
                .unwrap(),
        )
        .unwrap();
        let hash = str_of(
            &web["basic_auth_users"][user.as_str()],
            "the probe user's hash",
        );
        assert!(
            bcrypt::verify(&password, hash).unwrap(),
            "{probe}: wrong password"
        );
        assert_ne!(user, "prometheus", "the probe has its own user");
    }
    let endpoint = assert_https_scrape(&docs, "web-auth-basic");
    assert_eq!(
        endpoint["basicAuth"],
        serde_yaml::from_str::<Value>(
            "{username: {name: fast-launch-exporter-scrape, key: username},\
              password: {name: fast-launch-exporter-scrape, key: password}}"
        )
        .unwrap()
    );
}

fn decode_basic(header: &str) -> (String, String) {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ").expect("Basic scheme");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let text = String::from_utf8(decoded).unwrap();
    let (user, password) = text.split_once(':').unwrap();
    (user.to_string(), password.to_string())
}

#[test]
fn kubernetes_web_auth_mtls_mounts_the_secret_and_probes_tcp() {
    if !kubectl_available("kubernetes_web_auth_mtls_mounts_the_secret_and_probes_tcp") {
        return;
    }
    let docs = render_overlay(&["web-auth-mtls"], "");
    assert_web_config_mounted(&docs, "web-auth-mtls");
    let container = container(&docs);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["tcpSocket"]["port"],
            Value::from("http-metrics"),
            "{probe}"
        );
        assert!(container[probe]["httpGet"].is_null(), "{probe}");
    }
    let endpoint = assert_https_scrape(&docs, "web-auth-mtls");
    let tls = &endpoint["tlsConfig"];
    assert_eq!(
        tls["cert"]["secret"],
        serde_yaml::from_str::<Value>("{name: fast-launch-exporter-scrape, key: tls.crt}").unwrap()
    );
    assert_eq!(
        tls["keySecret"],
        serde_yaml::from_str::<Value>("{name: fast-launch-exporter-scrape, key: tls.key}").unwrap()
    );
    assert!(endpoint["basicAuth"].is_null());
    let web: Value = serde_yaml::from_str(
        &std::fs::read_to_string(component_file("web-auth-mtls", "web-config.example.yml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        web["tls_server_config"]["client_auth_type"],
        Value::from("RequireAndVerifyClientCert")
    );
}

// --- The web-auth probes against the real exporter -------------------------------------------

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The component's example web config in a folder with the files it names: tls.crt and tls.key
/// for 127.0.0.1 from a test CA, and client-ca.crt (that CA) when the config asks for one.
fn web_config_folder(component: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("client-ca.crt"), ca.pem()).unwrap();
    std::fs::copy(
        component_file(component, "web-config.example.yml"),
        dir.path().join("web-config.yml"),
    )
    .unwrap();
    dir
}

/// An HTTPS GET that trusts `ca` and presents no client certificate, as the kubelet's probe
/// (which does not even verify the server). Err when the connection or handshake fails.
async fn kubelet_https_get(
    address: &str,
    ca: &CertificateDer<'static>,
    path: &str,
    headers: &[(String, String)],
) -> Result<Response, String> {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    https_get(address, ca, None, path, &headers).await
}

/// The probe's headers as the kubelet sends them.
fn probe_headers(probe: &Value) -> Vec<(String, String)> {
    seq(&probe["httpGet"]["httpHeaders"])
        .iter()
        .map(|h| {
            (
                str_of(&h["name"], "name").to_string(),
                str_of(&h["value"], "value").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_web_auth_probes_pass_against_the_exporter_with_the_example_web_configs() {
    if !kubectl_available(
        "kubernetes_web_auth_probes_pass_against_the_exporter_with_the_example_web_configs",
    ) {
        return;
    }
    let ca = ca();
    let ca_der = ca.der().clone();

    // Basic auth: both httpGet probes, performed as rendered, answer 200; without the header 401.
    let docs = render_overlay(&["web-auth-basic"], "");
    let container = container(&docs).clone();
    let folder = web_config_folder("web-auth-basic", &ca);
    let web = folder.path().join("web-config.yml");
    let exporter = Exporter::demo(&["--web.config.file", web.to_str().unwrap()]).await;
    let liveness = &container["livenessProbe"];
    let healthy = kubelet_https_get(
        &exporter.address,
        &ca_der,
        str_of(&liveness["httpGet"]["path"], "path"),
        &probe_headers(liveness),
    )
    .await
    .unwrap();
    assert_eq!(healthy.status, 200, "liveness: {}", healthy.text());
    let readiness = &container["readinessProbe"];
    let started = Instant::now();
    loop {
        let ready = kubelet_https_get(
            &exporter.address,
            &ca_der,
            str_of(&readiness["httpGet"]["path"], "path"),
            &probe_headers(readiness),
        )
        .await
        .unwrap();
        if ready.status == 200 {
            break;
        }
        assert_eq!(ready.status, 503, "readiness: {}", ready.text());
        assert!(started.elapsed() < DEADLINE, "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let without = kubelet_https_get(&exporter.address, &ca_der, "/-/healthy", &[])
        .await
        .unwrap();
    assert_eq!(without.status, 401, "the probe's header is what gets it in");
    drop(exporter);

    // Client certificates required: the tcpSocket probe connects; an HTTPS probe without a
    // client certificate (all the kubelet could do) fails, which is why the component uses TCP.
    let folder = web_config_folder("web-auth-mtls", &ca);
    let web = folder.path().join("web-config.yml");
    let exporter = Exporter::demo(&["--web.config.file", web.to_str().unwrap()]).await;
    let tcp = tokio::net::TcpStream::connect(&exporter.address).await;
    assert!(tcp.is_ok(), "tcpSocket probe: {tcp:?}");
    drop(tcp);
    let refused = kubelet_https_get(&exporter.address, &ca_der, "/-/healthy", &[]).await;
    if let Ok(response) = refused {
        assert_ne!(
            response.status, 200,
            "an HTTPS probe without a client certificate got in"
        );
    }
}

#[test]
fn kubernetes_grafana_dashboard_component_holds_the_dashboard_for_the_sidecar() {
    // Needs no tool: checked whether or not kubectl is here.
    let canonical = std::fs::read(root().join("deploy/grafana/fast-launch.json")).unwrap();
    let copy = std::fs::read(component_file("grafana-dashboard", "fast-launch.json")).unwrap();
    assert!(
        copy == canonical,
        "deploy/kubernetes/components/grafana-dashboard/fast-launch.json differs from \
         deploy/grafana/fast-launch.json: copy it again"
    );
    if !kubectl_available(
        "kubernetes_grafana_dashboard_component_holds_the_dashboard_for_the_sidecar",
    ) {
        return;
    }
    let docs = render_overlay(&["grafana-dashboard"], "");
    let map = named(&docs, "ConfigMap", "fast-launch-exporter-dashboard");
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard"],
        Value::from("1")
    );
    assert_eq!(
        map["metadata"]["namespace"],
        one(&docs, "Deployment")["metadata"]["namespace"]
    );
    let data = map["data"].as_mapping().unwrap();
    assert_eq!(data.len(), 1, "one dashboard");
    let json = str_of(&map["data"]["fast-launch.json"], "dashboard");
    assert!(
        json.as_bytes() == canonical.as_slice(),
        "the ConfigMap's dashboard differs from deploy/grafana/fast-launch.json"
    );
    let dashboard: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    // The exporter's own config ConfigMap is still the one the pod mounts.
    assert!(pod(&docs)["volumes"][0]["configMap"]["name"]
        .as_str()
        .unwrap()
        .starts_with("fast-launch-exporter-config"));
}

#[test]
fn kubernetes_eks_pod_identity_component_drops_the_irsa_annotation() {
    if !kubectl_available("kubernetes_eks_pod_identity_component_drops_the_irsa_annotation") {
        return;
    }
    let docs = render_overlay(&["eks-pod-identity"], "");
    let account = one(&docs, "ServiceAccount");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_null(),
        "{account:?}"
    );
    assert_eq!(
        pod(&docs)["serviceAccountName"],
        account["metadata"]["name"]
    );
    // The agent on the node is reachable despite the base's egress policy.
    let policy = named(
        &docs,
        "NetworkPolicy",
        "fast-launch-exporter-pod-identity-agent",
    );
    let pod_labels = one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    for (key, value) in policy["spec"]["podSelector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(pod_labels.get(key), Some(value));
    }
    let rule = &policy["spec"]["egress"][0];
    let cidrs: BTreeSet<&str> = seq(&rule["to"])
        .iter()
        .filter_map(|p| p["ipBlock"]["cidr"].as_str())
        .collect();
    assert!(cidrs.contains("169.254.170.23/32"), "{cidrs:?}");
    assert_eq!(
        rule["ports"],
        serde_yaml::from_str::<Value>("[{port: 80, protocol: TCP}]").unwrap()
    );
    // The documented association names the same namespace and service account.
    let text =
        std::fs::read_to_string(component_file("eks-pod-identity", "kustomization.yaml")).unwrap();
    assert!(text.contains("aws eks create-pod-identity-association"));
    for expected in [
        format!(
            "--namespace {}",
            str_of(&account["metadata"]["namespace"], "namespace")
        ),
        format!(
            "--service-account {}",
            str_of(&account["metadata"]["name"], "name")
        ),
    ] {
        assert!(text.contains(&expected), "{expected}");
    }
}

#[test]
fn kubernetes_kube_prometheus_rbac_component_lets_prometheus_k8s_discover_the_exporter() {
    if !kubectl_available(
        "kubernetes_kube_prometheus_rbac_component_lets_prometheus_k8s_discover_the_exporter",
    ) {
        return;
    }
    let docs = render_overlay(&["kube-prometheus-rbac"], "");
    let namespace = one(&docs, "Deployment")["metadata"]["namespace"].clone();
    let role = one(&docs, "Role");
    let binding = one(&docs, "RoleBinding");
    assert_eq!(role["metadata"]["namespace"], namespace);
    assert_eq!(binding["metadata"]["namespace"], namespace);
    let mut granted = BTreeSet::new();
    for rule in seq(&role["rules"]) {
        let verbs: BTreeSet<&str> = seq(&rule["verbs"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if ["get", "list", "watch"].iter().all(|v| verbs.contains(v)) {
            for resource in seq(&rule["resources"]) {
                granted.insert(str_of(resource, "resource").to_string());
            }
        }
    }
    for resource in ["services", "endpoints", "pods", "endpointslices"] {
        assert!(granted.contains(resource), "{resource}: {granted:?}");
    }
    assert_eq!(binding["roleRef"]["kind"], Value::from("Role"));
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_yaml::from_str::<Value>(
            "[{kind: ServiceAccount, name: prometheus-k8s, namespace: monitoring}]"
        )
        .unwrap()
    );
}

#[test]
fn kubernetes_plain_prometheus_component_drops_the_operator_kinds_and_its_job_matches() {
    if !kubectl_available(
        "kubernetes_plain_prometheus_component_drops_the_operator_kinds_and_its_job_matches",
    ) {
        return;
    }
    let docs = render_overlay(&["plain-prometheus"], "");
    let kinds = kinds(&docs);
    assert!(!kinds.contains("ServiceMonitor") && !kinds.contains("PrometheusRule"));
    for kind in ["Deployment", "Service", "NetworkPolicy", "ConfigMap"] {
        assert!(kinds.contains(kind), "{kind}");
    }
    let scrape: Value = serde_yaml::from_str(
        &std::fs::read_to_string(component_file("plain-prometheus", "prometheus-scrape.yaml"))
            .unwrap(),
    )
    .unwrap();
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["job_name"], Value::from("fast-launch-exporter"));
    let service = one(&docs, "Service");
    let sd = &job["kubernetes_sd_configs"][0];
    assert_eq!(sd["role"], Value::from("endpointslice"));
    assert_eq!(
        sd["namespaces"]["names"],
        Value::Sequence(vec![service["metadata"]["namespace"].clone()])
    );
    let keep = seq(&job["relabel_configs"])
        .iter()
        .find(|r| r["action"] == "keep")
        .unwrap();
    assert_eq!(
        keep["source_labels"],
        serde_yaml::from_str::<Value>(
            "[__meta_kubernetes_service_name, __meta_kubernetes_endpointslice_port_name,\
              __meta_kubernetes_endpointslice_endpoint_conditions_ready]"
        )
        .unwrap()
    );
    assert_eq!(
        keep["regex"],
        Value::from(format!(
            "{};{};true",
            str_of(&service["metadata"]["name"], "service"),
            str_of(&service["spec"]["ports"][0]["name"], "port")
        ))
    );
}

#[test]
fn kubernetes_existing_namespace_component_leaves_the_namespace_alone() {
    if !kubectl_available("kubernetes_existing_namespace_component_leaves_the_namespace_alone") {
        return;
    }
    // Without it, an overlay's `namespace: monitoring` would rename the base's Namespace and
    // put `restricted` on monitoring.
    let docs = render_overlay(&[], "namespace: monitoring\n");
    assert_eq!(
        one(&docs, "Namespace")["metadata"]["name"],
        Value::from("monitoring")
    );
    let docs = render_overlay(&["existing-namespace"], "namespace: monitoring\n");
    assert!(!kinds(&docs).contains("Namespace"));
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["namespace"],
            Value::from("monitoring"),
            "{doc:?}"
        );
    }
    assert_restricted(&docs, "existing-namespace");
}

/// Every shipped kustomize form (the base, each component over it, the sharded overlay, the
/// README's overlay with sharded and web-auth-basic) validates against the Kubernetes API schemas
/// with `kubernetes-validate --strict`, at the oldest Kubernetes the deploy files claim (1.28:
/// the sharded pods' pod-index label) and the newest it knows. The Prometheus Operator's kinds
/// have no schema there; their tests above check them.
#[test]
fn kubernetes_every_shipped_form_validates_strictly_at_the_oldest_and_newest_kubernetes() {
    let test =
        "kubernetes_every_shipped_form_validates_strictly_at_the_oldest_and_newest_kubernetes";
    if !kubectl_available(test) || !tool_available("kubernetes-validate", &["--version"], test) {
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let mut forms: Vec<(String, Vec<Value>)> = vec![("base".to_string(), render(&base_dir()))];
    for component in COMPONENTS {
        forms.push((component.to_string(), render_overlay(&[component], "")));
    }
    forms.push((
        "sharded overlay".to_string(),
        render(&base_dir().join("sharded")),
    ));
    forms.push((
        "README overlay with sharded and web-auth-basic".to_string(),
        render_user_overlay(
            &readme_overlay_with(&["sharded", "web-auth-basic"], false),
            &[("config.yaml", "regions: [us-east-1]\n")],
        ),
    ));
    let mut files = Vec::new();
    let mut core_objects = 0;
    for (index, (form, docs)) in forms.iter().enumerate() {
        let text: Vec<String> = docs
            .iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect();
        core_objects += docs
            .iter()
            .filter(|d| {
                !d["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("coreos.com")
            })
            .count();
        let file = folder.path().join(format!("{index}.yaml"));
        std::fs::write(&file, text.join("---\n")).unwrap();
        assert!(!docs.is_empty(), "{form}");
        files.push(file);
    }
    for version in ["1.28.0", "1.37.0"] {
        validate_strictly(&files, core_objects, version);
    }
}

/// Runs `kubernetes-validate --strict` at Kubernetes `version` on `files`: every object passes,
/// `core_objects` of them against a schema; only the Prometheus Operator's kinds have none.
pub(crate) fn validate_strictly(files: &[PathBuf], core_objects: usize, version: &str) {
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate --strict -k {version}:\n{text}"
    );
    assert!(!text.contains("ERROR"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("WARN ")) {
        assert!(
            line.contains("Couldn't find schema for kind PrometheusRule")
                || line.contains("Couldn't find schema for kind ServiceMonitor"),
            "{line}"
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
            .count(),
        core_objects,
        "every Kubernetes object validated at {version}:\n{text}"
    );
}
