//! The Helm chart (`deploy/helm/fast-launch-exporter`) against the real tools: `helm lint
//! --strict`, `helm template` over the values files a user would write, every rendering validated
//! offline with `kubernetes-validate --strict` at the oldest and the newest Kubernetes version the
//! chart claims, and the renderings compared with the kustomize base and components (whose web-auth
//! probes kubernetes.rs runs against the exporter: the chart's probes are the same objects).
//!
//! The chart keeps its alerts and dashboard in `files/`, byte-for-byte copies of
//! deploy/prometheus/alerts.yaml and deploy/grafana/fast-launch.json; the tests here hold every
//! shipped form to the same content.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::*;
use crate::iam::yaml;
use crate::kubernetes::{
    base_dir, kubectl_available, named, one, relative, render as kustomize, seq, validate_strictly,
};

/// The oldest Kubernetes the chart claims (`kubeVersion` in Chart.yaml: the pod-index label) and
/// the newest that kubernetes-validate has schemas for.
const OLDEST: &str = "1.28.0";
const NEWEST: &str = "1.37.0";
const RELEASE: &str = "fast-launch-exporter";
const NAMESPACE: &str = "fast-launch-exporter";
const REPOSITORY: &str = "ghcr.io/fast-launch-exporter/fast-launch-exporter";

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/fast-launch-exporter")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn value(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// helm with its cache, configuration and data in a temporary folder, and no kubeconfig.
struct Helm {
    home: tempfile::TempDir,
}

impl Helm {
    /// None when helm is missing outside CI (under CI a missing helm fails the test).
    fn new(test: &str) -> Option<Helm> {
        tool_available("helm", &["version", "--short"], test).then(|| Helm {
            home: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self) -> Command {
        let home = self.home.path();
        let mut command = Command::new("helm");
        command
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", home.join("no-kubeconfig"));
        command
    }

    /// `helm install --dry-run=client` of the chart with `values` (as release fast-launch-exporter
    /// in the namespace fast-launch-exporter).
    fn install_dry_run(&self, values: &str) -> std::process::Output {
        let file = self.values_file(values);
        self.command()
            .args(["install", RELEASE])
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE, "--dry-run=client", "-f"])
            .arg(&file)
            .output()
            .unwrap()
    }

    /// `values` written to a file in the helm home, for `-f`.
    fn values_file(&self, values: &str) -> PathBuf {
        let path = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(self.home.path())
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        std::fs::write(&path, values).unwrap();
        path
    }

    /// `helm template` of the chart as release fast-launch-exporter in the namespace
    /// fast-launch-exporter with `values` at Kubernetes `version`.
    fn try_template_at(&self, values: &str, version: &str) -> Result<String, String> {
        let file = self.values_file(values);
        let output = self
            .command()
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE, "--kube-version", version, "-f"])
            .arg(&file)
            .output()
            .unwrap();
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).unwrap())
        } else {
            Err(output_text(&output))
        }
    }

    fn template_at(&self, values: &str, version: &str) -> String {
        self.try_template_at(values, version)
            .unwrap_or_else(|e| panic!("helm template with\n{values}\nfailed: {e}"))
    }

    /// The objects `helm template` renders with `values` (at the newest version).
    fn render(&self, values: &str) -> Vec<Value> {
        documents(&self.template_at(values, NEWEST))
    }
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn workload(docs: &[Value]) -> &Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect();
    assert_eq!(found.len(), 1, "one Deployment or StatefulSet");
    found[0]
}

fn pod(docs: &[Value]) -> &Value {
    &workload(docs)["spec"]["template"]["spec"]
}

fn container(docs: &[Value]) -> &Value {
    let containers = seq(&pod(docs)["containers"]);
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn strings(value: &Value) -> Vec<&str> {
    seq(value).iter().map(|v| v.as_str().unwrap()).collect()
}

/// The container's environment variable `name`.
fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    seq(&container["env"])
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}: {:?}", container["env"]))
}

/// Every `(key, value)` of `subset` is in `of`.
fn assert_labels_include(of: &Value, subset: &Value, what: &str) {
    for (key, expected) in subset.as_mapping().unwrap() {
        assert_eq!(of.get(key), Some(expected), "{what}: {key:?} in {of:?}");
    }
}

/// Renders a kustomize overlay of the base with `components` (as kubernetes.rs does).
fn kustomize_overlay(components: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let base = relative(&here, &base_dir().canonicalize().unwrap());
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n  - {base}\ncomponents:\n"
    );
    for component in components {
        text.push_str(&format!("  - {base}/components/{component}\n"));
    }
    std::fs::write(here.join("kustomization.yaml"), text).unwrap();
    kustomize(&here)
}

/// The first ```yaml block after `marker` in `text`.
fn yaml_block_after(text: &str, marker: &str) -> String {
    let start = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"));
    let rest = &text[start..];
    let open = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let close = rest[open..].find("```").expect("the block closes");
    rest[open..open + close].to_string()
}

/// The values file of the EKS walk-through (docs/getting-started-eks.md), step 2.
fn readme_values() -> String {
    yaml_block_after(
        &read(&root().join("docs/getting-started-eks.md")),
        "## 2. Install the exporter",
    )
}

// --- Values a user would write ---------------------------------------------------------------

const KUBE_PROMETHEUS_STACK: &str = "\
serviceMonitor:
  enabled: true
  additionalLabels: {release: kube-prometheus-stack}
prometheusRule:
  enabled: true
  additionalLabels: {release: kube-prometheus-stack}
grafanaDashboard:
  enabled: true
";

const SHARDED: &str = "sharding: {shards: 4}\n";

/// The web-auth-basic component's setup: its Secrets, its example probe password.
const WEB_AUTH_BASIC: &str = "\
webConfig:
  existingSecret: fast-launch-exporter-web-config
  probeBasicAuth: {username: kubelet-probe, password: change-me-probe}
serviceMonitor:
  enabled: true
  tlsConfig:
    ca: {secret: {name: fast-launch-exporter-scrape, key: ca.crt}}
    serverName: fast-launch-exporter.fast-launch-exporter.svc
  basicAuth:
    username: {name: fast-launch-exporter-scrape, key: username}
    password: {name: fast-launch-exporter-scrape, key: password}
";

/// The web-auth-mtls component's setup.
const WEB_AUTH_MTLS: &str = "\
webConfig:
  existingSecret: fast-launch-exporter-web-config
  probeType: tcpSocket
serviceMonitor:
  enabled: true
  tlsConfig:
    ca: {secret: {name: fast-launch-exporter-scrape, key: ca.crt}}
    cert: {secret: {name: fast-launch-exporter-scrape, key: tls.crt}}
    keySecret: {name: fast-launch-exporter-scrape, key: tls.key}
    serverName: fast-launch-exporter.fast-launch-exporter.svc
";

const IRSA: &str = "\
serviceAccount:
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/fast-launch-exporter
";

const EXISTING_CONFIG: &str = "existingConfigMap: my-fast-launch-config\n";

/// Every knob at once, sharded, as a large installation might have it.
const EVERYTHING: &str = "\
image:
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  pullPolicy: Always
imagePullSecrets: [{name: my-registry}]
config: |
  # as a string, comments kept
  regions: all
  accounts:
    - name: tooling
logLevel: debug
extraArgs: [--web.max-requests=80]
extraEnv:
  - {name: AWS_STS_REGIONAL_ENDPOINTS, value: regional}
sharding: {shards: 3}
webConfig:
  existingSecret: web
  key: web.yml
  tls: false
  probeBasicAuth: {username: probe, password: secret}
serviceAccount:
  create: false
  name: shared-exporter
automountServiceAccountToken: true
service:
  annotations: {example.com/owner: platform}
  labels: {team: platform}
resources:
  requests: {cpu: 50m, memory: 512Mi}
  limits: {cpu: '2', memory: 1Gi}
tolerations:
  - {key: dedicated, operator: Equal, value: monitoring, effect: NoSchedule}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {app.kubernetes.io/name: fast-launch-exporter}
priorityClassName: system-cluster-critical
podLabels: {team: platform}
podAnnotations: {example.com/scraped: 'true'}
networkPolicy:
  ingressFrom:
    - ipBlock: {cidr: 10.0.0.0/8}
  extraEgress:
    - to: [{ipBlock: {cidr: 169.254.170.23/32}}]
      ports: [{port: 80, protocol: TCP}]
podDisruptionBudget:
  enabled: true
  minAvailable: 2
serviceMonitor:
  enabled: true
  namespace: monitoring
  additionalLabels: {release: prom}
  interval: 30s
  scrapeTimeout: 20s
  relabelings:
    - {sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: node}
  metricRelabelings:
    - {sourceLabels: [__name__], regex: process_.*, action: drop}
prometheusRule:
  enabled: true
  namespace: monitoring
  additionalLabels: {release: prom}
  runbookBaseUrl: https://runbooks.example.com/fast-launch
  disabledAlerts: [FastLaunchThrottled]
grafanaDashboard:
  enabled: true
  namespace: grafana
  folder: Fleet
  additionalLabels: {team: platform}
";

/// (case, values, the kinds it renders).
fn matrix() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let base = vec![
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ];
    let with = |extra: &[&'static str]| {
        let mut kinds = base.clone();
        kinds.extend(extra);
        kinds.sort();
        kinds
    };
    vec![
        ("defaults", String::new(), base.clone()),
        (
            "kube-prometheus-stack",
            KUBE_PROMETHEUS_STACK.to_string(),
            with(&["ConfigMap", "PrometheusRule", "ServiceMonitor"]),
        ),
        (
            "readme-eks-kube-prometheus-stack",
            readme_values(),
            with(&["ConfigMap", "PrometheusRule", "ServiceMonitor"]),
        ),
        (
            "chart-readme",
            yaml_block_after(
                &read(&chart_dir().join("README.md")),
                "A `values.yaml` for EKS",
            ),
            with(&["ConfigMap", "PrometheusRule", "ServiceMonitor"]),
        ),
        (
            "sharded",
            SHARDED.to_string(),
            vec![
                "ConfigMap",
                "NetworkPolicy",
                "Service",
                "ServiceAccount",
                "StatefulSet",
            ],
        ),
        (
            "web-auth-basic",
            WEB_AUTH_BASIC.to_string(),
            with(&["ServiceMonitor"]),
        ),
        (
            "web-auth-mtls",
            WEB_AUTH_MTLS.to_string(),
            with(&["ServiceMonitor"]),
        ),
        ("irsa", IRSA.to_string(), base.clone()),
        (
            "existing-config",
            EXISTING_CONFIG.to_string(),
            vec!["Deployment", "NetworkPolicy", "Service", "ServiceAccount"],
        ),
        (
            "everything",
            EVERYTHING.to_string(),
            vec![
                "ConfigMap",
                "ConfigMap",
                "NetworkPolicy",
                "PodDisruptionBudget",
                "PrometheusRule",
                "Service",
                "ServiceMonitor",
                "StatefulSet",
            ],
        ),
    ]
}

// --- Tests ------------------------------------------------------------------------------------

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_every_user_values_file() {
    let Some(helm) =
        Helm::new("helm_lint_strict_passes_with_the_defaults_and_every_user_values_file")
    else {
        return;
    };
    for (case, values, _) in matrix() {
        let file = helm.values_file(&values);
        let output = helm
            .command()
            .args(["lint", "--strict", "--namespace", NAMESPACE])
            .arg(chart_dir())
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        let text = output_text(&output);
        assert!(
            output.status.success(),
            "{case}: helm lint --strict\n{text}"
        );
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{case}: {text}"
        );
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "{case}: {text}"
        );
    }
}

#[test]
fn every_user_values_file_renders_and_validates_strictly_at_the_oldest_and_newest_kubernetes() {
    let test =
        "every_user_values_file_renders_and_validates_strictly_at_the_oldest_and_newest_kubernetes";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    if !tool_available("kubernetes-validate", &["--version"], test) {
        return;
    }
    let chart: Value = yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(
        chart["kubeVersion"],
        Value::from(format!(">={OLDEST}-0")),
        "the oldest version validated here is the one Chart.yaml claims"
    );
    let folder = tempfile::tempdir().unwrap();
    for version in [OLDEST, NEWEST] {
        let mut files = Vec::new();
        let mut core_objects = 0;
        for (case, values, expected_kinds) in matrix() {
            let rendered = helm.template_at(&values, version);
            let docs = documents(&rendered);
            assert_eq!(kinds(&docs), expected_kinds, "{case} at {version}");
            // Whatever the values, the pod stays as hardened as the base's.
            assert_eq!(
                pod(&docs)["securityContext"],
                value(
                    "{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532,\
                      seccompProfile: {type: RuntimeDefault}}"
                ),
                "{case}"
            );
            assert_eq!(
                container(&docs)["securityContext"],
                value(
                    "{allowPrivilegeEscalation: false, privileged: false,\
                      readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: {drop: [ALL]}}"
                ),
                "{case}"
            );
            assert_eq!(
                pod(&docs)["nodeSelector"],
                value("{kubernetes.io/os: linux}"),
                "{case}"
            );
            for doc in &docs {
                let expected_namespace = match doc["kind"].as_str() {
                    Some("ServiceMonitor" | "PrometheusRule") if case == "everything" => {
                        "monitoring"
                    }
                    Some("ConfigMap")
                        if case == "everything"
                            && doc["metadata"]["name"] == "fast-launch-exporter-dashboard" =>
                    {
                        "grafana"
                    }
                    _ => NAMESPACE,
                };
                assert_eq!(
                    doc["metadata"]["namespace"],
                    Value::from(expected_namespace),
                    "{case}: {:?}",
                    doc["metadata"]
                );
            }
            core_objects += docs
                .iter()
                .filter(|d| !d["apiVersion"].as_str().unwrap().contains("coreos.com"))
                .count();
            let file = folder.path().join(format!("{case}-{version}.yaml"));
            std::fs::write(&file, rendered).unwrap();
            files.push(file);
        }
        validate_strictly(&files, core_objects, version);
    }
}

#[test]
fn the_chart_refuses_kubernetes_older_than_the_pod_index_label() {
    let Some(helm) = Helm::new("the_chart_refuses_kubernetes_older_than_the_pod_index_label")
    else {
        return;
    };
    let error = helm.try_template_at("", "1.27.9").unwrap_err();
    assert!(
        error.contains("chart requires kubeVersion: >=1.28.0-0"),
        "{error}"
    );
    helm.template_at("", OLDEST);
}

#[test]
fn the_default_rendering_equals_the_kustomize_base_in_args_probes_security_resources_and_ports() {
    let test =
        "the_default_rendering_equals_the_kustomize_base_in_args_probes_security_resources_and_ports";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    if !kubectl_available(test) {
        return;
    }
    let chart = helm.render("");
    let base = kustomize(&base_dir());
    let (ours, theirs) = (container(&chart), container(&base));
    for field in [
        "args",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "resources",
        "ports",
        "volumeMounts",
        "env",
    ] {
        assert_eq!(ours[field], theirs[field], "container {field}");
    }
    for field in ["securityContext", "nodeSelector"] {
        assert_eq!(pod(&chart)[field], pod(&base)[field], "pod {field}");
    }
    assert_eq!(workload(&chart)["kind"], Value::from("Deployment"));
    for field in ["replicas", "strategy"] {
        assert_eq!(
            workload(&chart)["spec"][field],
            workload(&base)["spec"][field],
            "{field}"
        );
    }
    assert_eq!(
        one(&chart, "Service")["spec"]["ports"],
        one(&base, "Service")["spec"]["ports"]
    );
    let (ours, theirs) = (
        &one(&chart, "NetworkPolicy")["spec"],
        &one(&base, "NetworkPolicy")["spec"],
    );
    for field in ["policyTypes", "ingress", "egress"] {
        assert_eq!(ours[field], theirs[field], "NetworkPolicy {field}");
    }
    // The chart's default image is the released one, at the chart's appVersion.
    assert_eq!(
        container(&chart)["image"],
        Value::from(format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION")))
    );
    // No configuration: the exporter's defaults (nothing for Helm to merge into a user's).
    let config_map = named(&chart, "ConfigMap", "fast-launch-exporter-config");
    assert_eq!(config_map["data"]["config.yaml"], Value::from("{}\n"));
    assert_eq!(
        pod(&chart)["volumes"],
        value("[{name: config, configMap: {name: fast-launch-exporter-config}}]")
    );
    // Deliberately not the base's: the exporter never calls the Kubernetes API.
    assert_eq!(
        pod(&chart)["automountServiceAccountToken"],
        Value::from(false)
    );
    let selector = &workload(&chart)["spec"]["selector"]["matchLabels"];
    assert_labels_include(
        &workload(&chart)["spec"]["template"]["metadata"]["labels"],
        selector,
        "pod labels",
    );
    assert_eq!(one(&chart, "Service")["spec"]["selector"], *selector);
    assert_eq!(
        one(&chart, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        *selector
    );
}

#[test]
fn sharded_renders_a_parallel_statefulset_of_4_that_takes_its_shard_from_the_pod_index_label() {
    let test =
        "sharded_renders_a_parallel_statefulset_of_4_that_takes_its_shard_from_the_pod_index_label";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    let docs = helm.render(SHARDED);
    let set = one(&docs, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], Value::from(4));
    assert_eq!(set["spec"]["podManagementPolicy"], Value::from("Parallel"));
    assert!(set["spec"]["strategy"].is_null());
    let service = one(&docs, "Service");
    assert_eq!(service["spec"]["clusterIP"], Value::from("None"));
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    let container = container(&docs);
    assert_eq!(
        *env(container, "SHARD_INDEX"),
        value(
            "{name: SHARD_INDEX, valueFrom: {fieldRef: \
              {fieldPath: \"metadata.labels['apps.kubernetes.io/pod-index']\"}}}"
        )
    );
    assert_eq!(
        *env(container, "SHARD_TOTAL"),
        value("{name: SHARD_TOTAL, value: '4'}")
    );
    assert_eq!(
        strings(&container["args"]),
        [
            "--config.file=/etc/fast-launch-exporter/config.yaml",
            "--web.listen-address=:9849",
            "--log.format=json",
            "--shard.index=$(SHARD_INDEX)",
            "--shard.total=$(SHARD_TOTAL)",
        ]
    );
    // One shard is the Deployment; no shard at all is refused.
    assert_eq!(
        workload(&helm.render("sharding: {shards: 1}\n"))["kind"],
        Value::from("Deployment")
    );
    let error = helm
        .try_template_at("sharding: {shards: 0}\n", NEWEST)
        .unwrap_err();
    assert!(error.contains("/sharding/shards"), "{error}");
    let error = helm
        .try_template_at(
            "sharding: {shards: 2}\nservice: {type: LoadBalancer}\n",
            NEWEST,
        )
        .unwrap_err();
    assert!(error.contains("headless ClusterIP Service"), "{error}");

    // The same pod changes as the kustomize component `sharded`.
    if !kubectl_available(test) {
        return;
    }
    let overlay = kustomize(&base_dir().join("sharded"));
    let theirs = &one(&overlay, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], theirs["args"]);
    assert_eq!(env(container, "SHARD_INDEX"), env(theirs, "SHARD_INDEX"));
    assert_eq!(
        set["spec"]["podManagementPolicy"],
        one(&overlay, "StatefulSet")["spec"]["podManagementPolicy"]
    );
}

#[test]
fn web_auth_mounts_the_secret_probes_over_https_like_the_components_and_scrapes_https() {
    let test = "web_auth_mounts_the_secret_probes_over_https_like_the_components_and_scrapes_https";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    let basic_docs = helm.render(WEB_AUTH_BASIC);
    let container_basic = container(&basic_docs);
    assert_eq!(
        strings(&container_basic["args"]).last(),
        Some(&"--web.config.file=/etc/fast-launch-exporter-web/web-config.yml")
    );
    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
    ] {
        let get = &container_basic[probe]["httpGet"];
        assert_eq!(get["scheme"], Value::from("HTTPS"), "{probe}");
        assert_eq!(get["path"], Value::from(path), "{probe}");
        assert_eq!(
            get["httpHeaders"],
            value(&format!(
                "[{{name: Authorization, value: '{}'}}]",
                basic("kubelet-probe", "change-me-probe")
            )),
            "{probe}"
        );
    }
    let endpoint = &one(&basic_docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], Value::from("https"));
    let given: Value = value(WEB_AUTH_BASIC);
    assert_eq!(endpoint["tlsConfig"], given["serviceMonitor"]["tlsConfig"]);
    assert_eq!(endpoint["basicAuth"], given["serviceMonitor"]["basicAuth"]);

    let mtls = helm.render(WEB_AUTH_MTLS);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container(&mtls)[probe]["tcpSocket"],
            value("{port: http-metrics}"),
            "{probe}"
        );
        assert!(container(&mtls)[probe]["httpGet"].is_null(), "{probe}");
    }
    let endpoint = &one(&mtls, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], Value::from("https"));
    assert_eq!(
        endpoint["tlsConfig"],
        value(WEB_AUTH_MTLS)["serviceMonitor"]["tlsConfig"]
    );
    assert!(endpoint["basicAuth"].is_null());

    // Basic auth over plain HTTP: the header without the scheme, and an http scrape.
    let plain = helm.render(
        "webConfig: {existingSecret: web, tls: false, probeBasicAuth: {username: p, password: q}}\n\
         serviceMonitor: {enabled: true}\n",
    );
    let get = &container(&plain)["livenessProbe"]["httpGet"];
    assert!(get["scheme"].is_null(), "{get:?}");
    assert_eq!(get["httpHeaders"][0]["value"], Value::from(basic("p", "q")));
    assert_eq!(
        one(&plain, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"],
        Value::from("http")
    );

    // The same mount, args and probes as the kustomize components, whose probes kubernetes.rs
    // performs against the exporter with the components' example web configs.
    if !kubectl_available(test) {
        return;
    }
    for (component, docs) in [("web-auth-basic", &basic_docs), ("web-auth-mtls", &mtls)] {
        let theirs = kustomize_overlay(&[component]);
        let (ours_c, theirs_c) = (container(docs), container(&theirs));
        for field in [
            "args",
            "livenessProbe",
            "readinessProbe",
            "volumeMounts",
            "securityContext",
        ] {
            assert_eq!(ours_c[field], theirs_c[field], "{component}: {field}");
        }
        assert_eq!(
            pod(docs)["volumes"][1],
            pod(&theirs)["volumes"][1],
            "{component}: the web-config volume"
        );
        let (ours_e, theirs_e) = (
            &one(docs, "ServiceMonitor")["spec"]["endpoints"][0],
            &one(&theirs, "ServiceMonitor")["spec"]["endpoints"][0],
        );
        for field in ["scheme", "tlsConfig", "basicAuth", "port", "path"] {
            assert_eq!(
                ours_e[field], theirs_e[field],
                "{component}: endpoint {field}"
            );
        }
    }
}

#[test]
fn a_misspelt_value_key_fails_helm_template_and_helm_install() {
    let Some(helm) = Helm::new("a_misspelt_value_key_fails_helm_template_and_helm_install") else {
        return;
    };
    for (values, complaint) in [
        (
            "serviceMonitr: {}\n",
            "additional properties 'serviceMonitr' not allowed",
        ),
        (
            "serviceMonitor: {enabeld: true}\n",
            "additional properties 'enabeld' not allowed",
        ),
        (
            "resources: {limits: {memroy: 1Gi}}\n",
            "additional properties 'memroy' not allowed",
        ),
        (
            "webConfig: {probeBasicAuth: {user: x}}\n",
            "additional properties 'user' not allowed",
        ),
    ] {
        let error = helm.try_template_at(values, NEWEST).unwrap_err();
        assert!(error.contains(complaint), "helm template {values}: {error}");
        let output = helm.install_dry_run(values);
        assert!(!output.status.success(), "helm install {values}");
        assert!(
            output_text(&output).contains(complaint),
            "helm install {values}: {}",
            output_text(&output)
        );
    }
    // The same key spelt right renders.
    helm.template_at("serviceMonitor: {enabled: true}\n", NEWEST);
}

#[test]
fn the_schema_refuses_unknown_keys_at_every_level_it_defines_and_defines_every_value() {
    // Needs no tool.
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).unwrap();
    fn walk(schema: &serde_json::Value, path: &str, levels: &mut usize) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            *levels += 1;
            assert_eq!(
                schema.get("additionalProperties"),
                Some(&serde_json::Value::Bool(false)),
                "{path}: additionalProperties must be false"
            );
            for (key, child) in properties {
                walk(child, &format!("{path}.{key}"), levels);
            }
        }
    }
    let mut levels = 0;
    walk(&schema, "", &mut levels);
    assert!(levels >= 12, "{levels} levels");
    // Every key of values.yaml is in the schema, down to the levels the schema defines.
    let values = yaml(&chart_dir().join("values.yaml"));
    for path in value_paths(&values, &schema) {
        let mut node = &schema;
        for key in path.split('.') {
            node = node["properties"]
                .get(key)
                .unwrap_or_else(|| panic!("{path}: not in values.schema.json"));
        }
    }
}

/// The leaf key paths of `values`: a mapping is descended into where the schema defines its keys
/// (`properties`); elsewhere (free-form maps, Kubernetes objects, lists) the key is a leaf.
fn value_paths(values: &Value, schema: &serde_json::Value) -> Vec<String> {
    fn walk(values: &Value, schema: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        let properties = schema.get("properties").and_then(|p| p.as_object());
        match (values.as_mapping(), properties) {
            (Some(mapping), Some(properties)) => {
                for (key, child) in mapping {
                    let key = key.as_str().unwrap();
                    let path = if prefix.is_empty() {
                        key.to_string()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    let child_schema = properties
                        .get(key)
                        .unwrap_or_else(|| panic!("{path}: not in values.schema.json"));
                    walk(child, child_schema, &path, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(values, schema, "", &mut out);
    out
}

#[test]
fn the_chart_readme_values_table_lists_every_value_and_no_other() {
    // Needs no tool.
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).unwrap();
    let values = yaml(&chart_dir().join("values.yaml"));
    let paths: BTreeSet<String> = value_paths(&values, &schema).into_iter().collect();
    assert!(paths.len() >= 60, "{} values", paths.len());
    let readme = read(&chart_dir().join("README.md"));
    let table = readme
        .split_once("| key | default | description |")
        .expect("the values table")
        .1;
    let rows: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let mut listed = BTreeSet::new();
    for row in &rows {
        let key = row
            .split('|')
            .nth(1)
            .unwrap()
            .trim()
            .trim_matches('`')
            .to_string();
        let columns = row.split(" | ").count();
        assert_eq!(columns, 3, "{row}: key, default, description");
        assert!(listed.insert(key.clone()), "{key} listed twice");
    }
    let missing: Vec<&String> = paths.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&paths).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "values.yaml and the README table differ: missing from the table {missing:?}, \
         not in values.yaml {stale:?}"
    );
    // The table's order is values.yaml's.
    let order: Vec<String> = value_paths(&values, &schema);
    let listed_order: Vec<String> = rows
        .iter()
        .map(|r| {
            r.split('|')
                .nth(1)
                .unwrap()
                .trim()
                .trim_matches('`')
                .to_string()
        })
        .collect();
    assert_eq!(listed_order, order);
}

#[test]
fn the_chart_version_app_version_and_install_commands_follow_the_crate_version() {
    // Needs no tool.
    let version = env!("CARGO_PKG_VERSION");
    let chart = yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(chart["name"], Value::from("fast-launch-exporter"));
    assert_eq!(chart["version"], Value::from(version));
    assert_eq!(chart["appVersion"], Value::from(version));
    let values = yaml(&chart_dir().join("values.yaml"));
    assert_eq!(values["image"]["repository"], Value::from(REPOSITORY));
    assert_eq!(values["image"]["tag"], Value::from(""));
    let install =
        "helm install fast-launch-exporter oci://ghcr.io/fast-launch-exporter/charts/fast-launch-exporter";
    for readme in [root().join("README.md"), chart_dir().join("README.md")] {
        let text = read(&readme).replace("\\\n", " ");
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(&format!("{install} --version {version} ")),
            "{}: the OCI install command at version {version}",
            readme.display()
        );
        assert!(
            text.contains("helm install fast-launch-exporter deploy/helm/fast-launch-exporter"),
            "{}: the install from a checkout",
            readme.display()
        );
    }
}

#[test]
fn the_chart_alerts_and_dashboard_are_the_bytes_of_every_shipped_copy() {
    // Needs no tool: the chart's files/ against deploy/prometheus, deploy/grafana, the kustomize
    // base's PrometheusRule and the grafana-dashboard component.
    let alerts = std::fs::read(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    assert!(
        std::fs::read(chart_dir().join("files/alerts.yaml")).unwrap() == alerts,
        "deploy/helm/fast-launch-exporter/files/alerts.yaml differs from \
         deploy/prometheus/alerts.yaml: copy it again"
    );
    let dashboard = std::fs::read(root().join("deploy/grafana/fast-launch.json")).unwrap();
    for copy in [
        chart_dir().join("files/fast-launch.json"),
        base_dir().join("components/grafana-dashboard/fast-launch.json"),
    ] {
        assert!(
            std::fs::read(&copy).unwrap() == dashboard,
            "{} differs from deploy/grafana/fast-launch.json: copy it again",
            copy.display()
        );
    }
    let chart_alerts = yaml(&chart_dir().join("files/alerts.yaml"));
    let rule = yaml(&base_dir().join("base/prometheusrule.yaml"));
    assert_eq!(rule["spec"]["groups"], chart_alerts["groups"]);
}

/// alerts.yaml's groups without `disabled` and with every runbook_url on `base`.
fn expected_groups(disabled: &[&str], base: &str) -> Value {
    let mut alerts = yaml(&root().join("deploy/prometheus/alerts.yaml"));
    let groups = alerts["groups"].as_sequence_mut().unwrap();
    for group in groups.iter_mut() {
        let rules = group["rules"].as_sequence_mut().unwrap();
        rules.retain(|r| !disabled.contains(&r["alert"].as_str().unwrap()));
        for rule in rules.iter_mut() {
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            let anchor = url.split_once('#').unwrap().1.to_string();
            rule["annotations"]["runbook_url"] = Value::from(format!("{base}#{anchor}"));
        }
    }
    alerts["groups"].clone()
}

#[test]
fn the_prometheus_rule_carries_the_alerts_file_with_the_runbook_base_and_without_disabled_alerts() {
    let test =
        "the_prometheus_rule_carries_the_alerts_file_with_the_runbook_base_and_without_disabled_alerts";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    let alerts = yaml(&root().join("deploy/prometheus/alerts.yaml"));
    let docs = helm.render("prometheusRule: {enabled: true}\n");
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    assert_eq!(
        rule["spec"]["groups"],
        expected_groups(
            &[],
            "https://github.com/fast-launch-exporter/fast-launch-exporter/blob/main/docs/runbook.md"
        )
    );

    let docs = helm.render(
        "prometheusRule:\n  enabled: true\n  runbookBaseUrl: https://runbooks.example.com/fast-launch\n  \
         disabledAlerts: [FastLaunchThrottled, FastLaunchShardMissing]\n",
    );
    let groups = &one(&docs, "PrometheusRule")["spec"]["groups"];
    assert_eq!(
        *groups,
        expected_groups(
            &["FastLaunchThrottled", "FastLaunchShardMissing"],
            "https://runbooks.example.com/fast-launch"
        )
    );
    let names: Vec<&str> = seq(&groups[0]["rules"])
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        seq(&alerts["groups"][0]["rules"]).len() - 2,
        "{names:?}"
    );
    assert!(!names.contains(&"FastLaunchThrottled"));
    assert_eq!(
        groups[0]["rules"][0]["annotations"]["runbook_url"],
        Value::from("https://runbooks.example.com/fast-launch#fastlaunchimagefailed")
    );

    let error = helm
        .try_template_at(
            "prometheusRule: {enabled: true, disabledAlerts: [FastLaunchThrotled]}\n",
            NEWEST,
        )
        .unwrap_err();
    assert!(
        error.contains("prometheusRule.disabledAlerts: there is no alert \"FastLaunchThrotled\""),
        "{error}"
    );
}

#[test]
fn the_dashboard_configmap_holds_the_dashboard_bytes_for_the_grafana_sidecar() {
    let Some(helm) =
        Helm::new("the_dashboard_configmap_holds_the_dashboard_bytes_for_the_grafana_sidecar")
    else {
        return;
    };
    let dashboard = read(&root().join("deploy/grafana/fast-launch.json"));
    let docs = helm.render("grafanaDashboard: {enabled: true}\n");
    let map = named(&docs, "ConfigMap", "fast-launch-exporter-dashboard");
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard"],
        Value::from("1")
    );
    assert_eq!(
        map["metadata"]["annotations"],
        value("{grafana_folder: AWS}")
    );
    assert_eq!(map["metadata"]["namespace"], Value::from(NAMESPACE));
    let data = map["data"].as_mapping().unwrap();
    assert_eq!(data.len(), 1, "one dashboard");
    assert!(
        map["data"]["fast-launch.json"].as_str() == Some(dashboard.as_str()),
        "the ConfigMap's dashboard differs from deploy/grafana/fast-launch.json"
    );

    let docs = helm.render(
        "grafanaDashboard: {enabled: true, namespace: grafana, folder: Fleet, \
         additionalLabels: {team: platform}}\n",
    );
    let map = named(&docs, "ConfigMap", "fast-launch-exporter-dashboard");
    assert_eq!(map["metadata"]["namespace"], Value::from("grafana"));
    assert_eq!(
        map["metadata"]["annotations"],
        value("{grafana_folder: Fleet}")
    );
    assert_eq!(map["metadata"]["labels"]["team"], Value::from("platform"));
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard"],
        Value::from("1")
    );
}

#[test]
fn a_label_in_common_labels_and_additional_labels_is_written_once_with_the_specific_value() {
    let Some(helm) = Helm::new(
        "a_label_in_common_labels_and_additional_labels_is_written_once_with_the_specific_value",
    ) else {
        return;
    };
    // serde_yaml refuses a mapping with a key twice: parsing is the first assertion.
    let docs = helm.render(
        "commonLabels: {release: common, team: platform}\n\
         serviceMonitor: {enabled: true, additionalLabels: {release: monitor}}\n\
         prometheusRule: {enabled: true}\n\
         grafanaDashboard: {enabled: true, additionalLabels: {grafana_dashboard: \"1\"}}\n",
    );
    let labels = |kind: &str| one(&docs, kind)["metadata"]["labels"].clone();
    assert_eq!(labels("ServiceMonitor")["release"], Value::from("monitor"));
    assert_eq!(labels("PrometheusRule")["release"], Value::from("common"));
    assert_eq!(labels("Service")["team"], Value::from("platform"));
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    assert_eq!(
        dashboard["metadata"]["labels"]["release"],
        Value::from("common")
    );
}

#[test]
fn kube_prometheus_stack_selects_the_servicemonitor_and_rule_by_the_release_label_of_the_readme() {
    let test =
        "kube_prometheus_stack_selects_the_servicemonitor_and_rule_by_the_release_label_of_the_readme";
    let Some(helm) = Helm::new(test) else {
        return;
    };
    let docs = helm.render(&readme_values());
    // kube-prometheus-stack's Prometheus, installed as `kube-prometheus-stack` with its defaults,
    // selects ServiceMonitors and PrometheusRules by this label.
    let selector = value("{release: kube-prometheus-stack}");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_labels_include(&one(&docs, kind)["metadata"]["labels"], &selector, kind);
    }
    // The ServiceMonitor finds the Service and names the job the alerts look for.
    let monitor = &one(&docs, "ServiceMonitor")["spec"];
    let service = one(&docs, "Service");
    assert_labels_include(
        &service["metadata"]["labels"],
        &monitor["selector"]["matchLabels"],
        "the ServiceMonitor's selector",
    );
    assert_eq!(
        monitor["namespaceSelector"],
        value(&format!("{{matchNames: [{NAMESPACE}]}}"))
    );
    let job_label = monitor["jobLabel"].as_str().unwrap();
    assert_eq!(
        service["metadata"]["labels"][job_label],
        Value::from("fast-launch-exporter")
    );
    let endpoint = &monitor["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], Value::from("/metrics"));
    assert_eq!(endpoint["scheme"], Value::from("http"));
    assert_eq!(endpoint["interval"], Value::from("1m"));
    assert_eq!(endpoint["scrapeTimeout"], Value::from("10s"));
    // The endpoint keys are ServiceMonitor endpoint fields (no CRD schema is validated offline).
    let known: BTreeSet<&str> = [
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "tlsConfig",
        "basicAuth",
        "relabelings",
        "metricRelabelings",
    ]
    .into();
    for key in endpoint.as_mapping().unwrap().keys() {
        assert!(known.contains(key.as_str().unwrap()), "{key:?}");
    }
    // The README's IRSA role, on the pod's ServiceAccount.
    let account = one(&docs, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        Value::from("arn:aws:iam::123456789012:role/fast-launch-exporter")
    );
    assert_eq!(
        pod(&docs)["serviceAccountName"],
        account["metadata"]["name"]
    );
    // Prometheus in `monitoring` (kube-prometheus-stack's usual namespace) is let in.
    assert_eq!(
        one(&docs, "NetworkPolicy")["spec"]["ingress"][0]["from"],
        value("[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]")
    );
    // The README's config is the exporter's config file.
    let config = named(&docs, "ConfigMap", "fast-launch-exporter-config");
    assert_eq!(
        value(config["data"]["config.yaml"].as_str().unwrap()),
        value(&readme_values())["config"]
    );
}

#[test]
fn irsa_annotates_the_service_account_and_the_pod_mounts_no_kubernetes_api_token() {
    let Some(helm) =
        Helm::new("irsa_annotates_the_service_account_and_the_pod_mounts_no_kubernetes_api_token")
    else {
        return;
    };
    let docs = helm.render(IRSA);
    let account = one(&docs, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"],
        value(
            "{eks.amazonaws.com/role-arn: 'arn:aws:iam::123456789012:role/fast-launch-exporter'}"
        )
    );
    assert_eq!(
        account["metadata"]["name"],
        Value::from("fast-launch-exporter")
    );
    assert_eq!(
        pod(&docs)["serviceAccountName"],
        Value::from("fast-launch-exporter")
    );
    assert_eq!(account["automountServiceAccountToken"], Value::from(false));
    assert_eq!(
        pod(&docs)["automountServiceAccountToken"],
        Value::from(false)
    );
    // No annotation by default (EKS Pod Identity), and an existing account by name.
    assert!(one(&helm.render(""), "ServiceAccount")["metadata"]["annotations"].is_null());
    let docs = helm.render("serviceAccount: {create: false, name: shared}\n");
    assert!(!kinds(&docs).contains(&"ServiceAccount".to_string()));
    assert_eq!(pod(&docs)["serviceAccountName"], Value::from("shared"));
    let error = helm
        .try_template_at("serviceAccount: {create: false}\n", NEWEST)
        .unwrap_err();
    assert!(error.contains("serviceAccount.name"), "{error}");
}

#[test]
fn config_renders_the_config_file_and_a_change_rolls_the_pods_while_an_existing_one_is_mounted() {
    let Some(helm) = Helm::new(
        "config_renders_the_config_file_and_a_change_rolls_the_pods_while_an_existing_one_is_mounted",
    ) else {
        return;
    };
    let checksum = |docs: &[Value]| {
        workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = helm.render("config: {regions: [eu-west-1], accounts: [{name: a}]}\n");
    let same = helm.render("config: {regions: [eu-west-1], accounts: [{name: a}]}\n");
    let changed = helm.render("config: {regions: [eu-west-2], accounts: [{name: a}]}\n");
    assert_eq!(checksum(&first).len(), 64);
    assert_eq!(checksum(&first), checksum(&same));
    assert_ne!(checksum(&first), checksum(&changed));
    let map = named(&first, "ConfigMap", "fast-launch-exporter-config");
    assert_eq!(
        value(map["data"]["config.yaml"].as_str().unwrap()),
        value("{regions: [eu-west-1], accounts: [{name: a}]}")
    );
    // A string is the file as written.
    let text = "# mine\nregions: all\n";
    let docs = helm.render("config: |\n  # mine\n  regions: all\n");
    assert_eq!(
        named(&docs, "ConfigMap", "fast-launch-exporter-config")["data"]["config.yaml"],
        Value::from(text)
    );

    let docs = helm.render(EXISTING_CONFIG);
    assert!(!kinds(&docs).contains(&"ConfigMap".to_string()));
    assert_eq!(
        pod(&docs)["volumes"][0],
        value("{name: config, configMap: {name: my-fast-launch-config}}")
    );
    assert!(workload(&docs)["spec"]["template"]["metadata"]["annotations"].is_null());
    assert_eq!(
        strings(&container(&docs)["args"])[0],
        "--config.file=/etc/fast-launch-exporter/config.yaml"
    );
}

#[test]
fn every_other_value_lands_where_kubernetes_and_the_operator_read_it() {
    let Some(helm) = Helm::new("every_other_value_lands_where_kubernetes_and_the_operator_read_it")
    else {
        return;
    };
    let given = value(EVERYTHING);
    let docs = helm.render(EVERYTHING);
    let set = one(&docs, "StatefulSet");
    let pod = pod(&docs);
    let container = container(&docs);
    assert_eq!(
        container["image"],
        Value::from(format!(
            "{REPOSITORY}@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ))
    );
    assert_eq!(container["imagePullPolicy"], Value::from("Always"));
    assert_eq!(pod["imagePullSecrets"], given["imagePullSecrets"]);
    assert_eq!(
        strings(&container["args"]),
        [
            "--config.file=/etc/fast-launch-exporter/config.yaml",
            "--web.listen-address=:9849",
            "--log.format=json",
            "--log.level=debug",
            "--web.config.file=/etc/fast-launch-exporter-web/web.yml",
            "--shard.index=$(SHARD_INDEX)",
            "--shard.total=$(SHARD_TOTAL)",
            "--web.max-requests=80",
        ]
    );
    let names: Vec<&str> = seq(&container["env"])
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AWS_REGION",
            "SHARD_INDEX",
            "SHARD_TOTAL",
            "AWS_STS_REGIONAL_ENDPOINTS"
        ]
    );
    assert_eq!(
        *env(container, "SHARD_TOTAL"),
        value("{name: SHARD_TOTAL, value: '3'}")
    );
    assert_eq!(set["spec"]["replicas"], Value::from(3));
    assert_eq!(container["resources"], given["resources"]);
    for field in [
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
    ] {
        assert_eq!(pod[field], given[field], "{field}");
    }
    assert_eq!(pod["serviceAccountName"], Value::from("shared-exporter"));
    assert_eq!(pod["automountServiceAccountToken"], Value::from(true));
    let template = &set["spec"]["template"]["metadata"];
    assert_eq!(template["labels"]["team"], Value::from("platform"));
    assert_eq!(
        template["annotations"]["example.com/scraped"],
        Value::from("true")
    );
    assert_eq!(
        template["annotations"]["checksum/config"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        named(&docs, "ConfigMap", "fast-launch-exporter-config")["data"]["config.yaml"],
        given["config"]
    );
    assert_eq!(
        pod["volumes"][1],
        value("{name: web-config, secret: {secretName: web, defaultMode: 288}}")
    );
    let service = one(&docs, "Service");
    assert_eq!(
        service["metadata"]["labels"]["team"],
        Value::from("platform")
    );
    assert_eq!(
        service["metadata"]["annotations"],
        value("{example.com/owner: platform}")
    );
    let policy = &one(&docs, "NetworkPolicy")["spec"];
    assert_eq!(
        policy["ingress"][0]["from"],
        given["networkPolicy"]["ingressFrom"]
    );
    assert_eq!(
        seq(&policy["egress"]).last().unwrap(),
        &given["networkPolicy"]["extraEgress"][0]
    );
    assert_eq!(seq(&policy["egress"]).len(), 3);
    let budget = &one(&docs, "PodDisruptionBudget")["spec"];
    assert_eq!(budget["minAvailable"], Value::from(2));
    assert!(budget["maxUnavailable"].is_null());
    assert_eq!(
        budget["selector"]["matchLabels"],
        set["spec"]["selector"]["matchLabels"]
    );
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["namespace"], Value::from("monitoring"));
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        Value::from("prom")
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        value(&format!("{{matchNames: [{NAMESPACE}]}}"))
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["scheme"],
        Value::from("http"),
        "webConfig.tls is false"
    );
    assert_eq!(endpoint["interval"], Value::from("30s"));
    assert_eq!(endpoint["scrapeTimeout"], Value::from("20s"));
    assert_eq!(
        endpoint["relabelings"],
        given["serviceMonitor"]["relabelings"]
    );
    assert_eq!(
        endpoint["metricRelabelings"],
        given["serviceMonitor"]["metricRelabelings"]
    );
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], Value::from("prom"));
    assert_eq!(
        rule["spec"]["groups"],
        expected_groups(
            &["FastLaunchThrottled"],
            "https://runbooks.example.com/fast-launch"
        )
    );
    // The default budget, when enabled: maxUnavailable 1.
    let budget = helm.render("podDisruptionBudget: {enabled: true}\n");
    assert_eq!(
        one(&budget, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        Value::from(1)
    );
    assert!(one(&budget, "PodDisruptionBudget")["spec"]["minAvailable"].is_null());
}

#[test]
fn the_install_notes_say_how_to_port_forward_and_see_the_landing_page_and_metrics() {
    let Some(helm) =
        Helm::new("the_install_notes_say_how_to_port_forward_and_see_the_landing_page_and_metrics")
    else {
        return;
    };
    let notes = |values: &str| {
        let output = helm.install_dry_run(values);
        let text = output_text(&output);
        assert!(output.status.success(), "{text}");
        text.split_once("NOTES:\n").expect("notes").1.to_string()
    };
    let text = notes(&readme_values());
    for expected in [
        "kubectl -n fast-launch-exporter rollout status deployment/fast-launch-exporter",
        "kubectl -n fast-launch-exporter port-forward svc/fast-launch-exporter 9849:9849",
        "http://localhost:9849/\n",
        "http://localhost:9849/metrics\n",
        "`release: kube-prometheus-stack`",
        "up{job=\"fast-launch-exporter\"}",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    let text = notes(&format!("{SHARDED}{WEB_AUTH_BASIC}"));
    for expected in [
        "rollout status statefulset/fast-launch-exporter",
        "https://localhost:9849/metrics\n",
        "(4 shards)",
        "not set: set commonLabels.release",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn the_rendered_config_files_pass_the_exporters_check_config() {
    let Some(helm) = Helm::new("the_rendered_config_files_pass_the_exporters_check_config") else {
        return;
    };
    // Cases without discovery, `regions: all` or sharding, which check-config would ask AWS about.
    for (case, targets) in [
        ("defaults", 1),
        ("readme-eks-kube-prometheus-stack", 1),
        ("chart-readme", 4),
        ("web-auth-basic", 1),
        ("irsa", 1),
    ] {
        let values = matrix()
            .into_iter()
            .find(|(name, _, _)| *name == case)
            .unwrap()
            .1;
        let docs = helm.render(&values);
        let config = named(&docs, "ConfigMap", "fast-launch-exporter-config")["data"]
            ["config.yaml"]
            .as_str()
            .unwrap();
        let file = config_file(config);
        let region = env(container(&docs), "AWS_REGION")["value"]
            .as_str()
            .unwrap()
            .to_string();
        let output = Command::new(BIN)
            .env_clear()
            .env("AWS_REGION", region)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            )
            .arg("check-config")
            .arg("--config.file")
            .arg(file.path())
            .output()
            .unwrap();
        let text = output_text(&output);
        assert!(
            output.status.success(),
            "{case}: check-config\n{config}\n{text}"
        );
        assert!(
            text.contains(&format!(
                "\n{targets} target{}; interval 5m",
                if targets == 1 { "" } else { "s" }
            )),
            "{case}: {text}"
        );
    }
}

#[test]
fn the_packaged_chart_holds_the_alerts_and_dashboard_and_renders_as_the_folder_does() {
    let Some(helm) = Helm::new(
        "the_packaged_chart_holds_the_alerts_and_dashboard_and_renders_as_the_folder_does",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = helm
        .command()
        .arg("package")
        .arg(chart_dir())
        .arg("--destination")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    let version = env!("CARGO_PKG_VERSION");
    let package = out
        .path()
        .join(format!("fast-launch-exporter-{version}.tgz"));
    assert!(package.is_file(), "{}", output_text(&output));
    // What the release pushes to the OCI registry renders exactly as the folder.
    let values = format!("{KUBE_PROMETHEUS_STACK}{SHARDED}");
    let file = helm.values_file(&values);
    let output = helm
        .command()
        .args(["template", RELEASE])
        .arg(&package)
        .args(["--namespace", NAMESPACE, "--kube-version", NEWEST, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    let packaged = documents(&String::from_utf8(output.stdout).unwrap());
    let folder = helm.render(&values);
    assert_eq!(packaged, folder);
    let dashboard = read(&root().join("deploy/grafana/fast-launch.json"));
    assert_eq!(
        named(&packaged, "ConfigMap", "fast-launch-exporter-dashboard")["data"]["fast-launch.json"],
        Value::from(dashboard)
    );
    assert_eq!(
        one(&packaged, "PrometheusRule")["spec"]["groups"],
        yaml(&root().join("deploy/prometheus/alerts.yaml"))["groups"]
    );
}
