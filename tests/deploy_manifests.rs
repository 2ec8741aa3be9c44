//! The deploy/ manifests: every overlay renders with `kubectl kustomize`, every object deserialises into
//! the Kubernetes API types without losing a field (a typo would be silently dropped otherwise), and the
//! CoreDNS drop-in checklist holds.
#![allow(clippy::unwrap_used)]

mod stream_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn render(dir: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/{dir}")])
        .output()
        .expect("kubectl is installed (scripts/test.sh installs it)");
    assert!(output.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    text.split("\n---\n").map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap()).collect()
}

/// Deserialises into `T` and checks that serialising back gives the same object: nothing unknown.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value:#}"));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        numbers_as_f64(&back),
        numbers_as_f64(value),
        "a field did not survive the round trip through the API types"
    );
    object
}

/// Numbers compared by value: the CRD's `minimum: 0` is an f64 in the API types (`0.0`), and kustomize
/// prints it as `0`.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(v.clone(), |f| serde_json::json!(f)),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

fn by_kind(objects: &[Value]) -> BTreeMap<(String, String), Value> {
    objects
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap().to_owned();
            let name = o["metadata"]["name"].as_str().unwrap().to_owned();
            ((kind, name), o.clone())
        })
        .collect()
}

#[test]
fn every_overlay_renders_into_valid_api_objects() {
    for dir in [
        "deploy/base",
        "deploy/overlays/kind",
        "deploy/overlays/node-local",
        "deploy/overlays/kind-multicluster",
        "deploy/crd",
    ] {
        let objects = render(dir);
        assert!(!objects.is_empty(), "{dir}");
        for object in &objects {
            match object["kind"].as_str().unwrap() {
                "Service" => drop(typed::<Service>(object)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
                "Deployment" => drop(typed::<Deployment>(object)),
                "DaemonSet" => drop(typed::<DaemonSet>(object)),
                "ConfigMap" => drop(typed::<ConfigMap>(object)),
                "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
                "ClusterRole" => drop(typed::<ClusterRole>(object)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
                "Role" => drop(typed::<Role>(object)),
                "RoleBinding" => drop(typed::<RoleBinding>(object)),
                "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(object)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(object)),
                other => panic!("{dir}: unexpected kind {other}"),
            }
        }
    }
}

#[test]
fn the_kind_overlay_is_a_coredns_drop_in() {
    let objects = by_kind(&render("deploy/overlays/kind"));
    let get = |kind: &str, name: &str| {
        objects.get(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}"))
    };

    // The Service: kubeadm's address, ports, selector, in kube-system.
    let service: Service = typed(get("Service", "kube-dns"));
    assert_eq!(service.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.selector.unwrap(), BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())]));
    let ports: Vec<(String, i32, String)> =
        spec.ports.unwrap().into_iter().map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap())).collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into()),
            ("metrics".into(), 9153, "TCP".into())
        ]
    );

    // The DNS Deployment: what kubeadm's CoreDNS has.
    let dns: Deployment = typed(get("Deployment", "roster-dns"));
    assert_eq!(dns.metadata.namespace.as_deref(), Some("kube-system"));
    let dns_spec = dns.spec.unwrap();
    assert_eq!(dns_spec.replicas, Some(2));
    let template = dns_spec.template;
    assert_eq!(template.metadata.unwrap().labels.unwrap()["k8s-app"], "kube-dns");
    let pod = template.spec.unwrap();
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-cluster-critical"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    let tolerations: Vec<String> = pod.tolerations.unwrap().into_iter().map(|t| t.key.unwrap()).collect();
    assert_eq!(tolerations, ["CriticalAddonsOnly", "node-role.kubernetes.io/control-plane"]);
    assert!(pod.affinity.unwrap().pod_anti_affinity.is_some());
    let container = &pod.containers[0];
    let http = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        (get.path.clone().unwrap(), serde_json::to_value(&get.port).unwrap())
    };
    assert_eq!(http(&container.liveness_probe), ("/health".to_owned(), Value::from(8080)));
    assert_eq!(http(&container.readiness_probe), ("/ready".to_owned(), Value::from(8181)));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let caps = security.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["NET_BIND_SERVICE"]);
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let resources = container.resources.clone().unwrap();
    assert!(resources.requests.unwrap().contains_key("memory") && resources.limits.unwrap().contains_key("memory"));
    let args = container.args.clone().unwrap();
    for flag in
        ["--listen=0.0.0.0:53", "--health=0.0.0.0:8080", "--ready=0.0.0.0:8181", "--metrics=0.0.0.0:9153", "--forward"]
    {
        assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
    }
    let ports: Vec<(String, i32)> =
        container.ports.clone().unwrap().into_iter().map(|p| (p.name.unwrap(), p.container_port)).collect();
    assert_eq!(ports, [("dns".into(), 53), ("dns-tcp".into(), 53), ("metrics".into(), 9153)]);

    // Least privilege: the DNS replicas get no token and no role; the controller no wildcard.
    let dns_account: ServiceAccount = typed(get("ServiceAccount", "roster-dns"));
    assert_eq!(dns_account.automount_service_account_token, Some(false));
    for (kind, name) in objects.keys().filter(|(k, _)| k.ends_with("Binding")) {
        let subjects = &objects[&(kind.clone(), name.clone())]["subjects"];
        assert!(!subjects.to_string().contains("roster-dns"), "{kind} {name} binds the DNS account");
    }
    let role: ClusterRole = typed(get("ClusterRole", "roster-controller"));
    for rule in role.rules.clone().unwrap() {
        assert!(!rule.verbs.contains(&"*".to_owned()), "wildcard verb in {rule:?}");
        assert!(!rule.resources.unwrap_or_default().contains(&"*".to_owned()), "wildcard resource");
        assert!(!rule.api_groups.unwrap_or_default().contains(&"*".to_owned()), "wildcard group");
    }
    // Exactly the verbs the code calls (grep the Api calls in controller/src and src/main.rs), per
    // group/resource; `delete` on claims and `update` on finalizers serve the
    // OwnerReferencesPermissionEnforcement admission plugin (see the comments in rbac.yaml).
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let leases: Role = typed(get("Role", "roster-controller-leader-election"));
    for rule in role.rules.clone().unwrap().into_iter().chain(leases.rules.unwrap()) {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                granted.entry(format!("{group}/{resource}")).or_default().extend(rule.verbs.iter().cloned());
            }
        }
    }
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("/services", "list watch"),
        ("/namespaces", "list watch"),
        ("discovery.k8s.io/endpointslices", "list watch"),
        ("/pods", "create delete list patch watch"),
        ("/pods/finalizers", "create delete list update watch"),
        ("/persistentvolumeclaims", "create delete list update watch"),
        ("apps/controllerrevisions", "create delete list patch watch"),
        ("apps/statefulsets", "get list watch"),
        ("apps/statefulsets/status", "patch update"),
        ("apps/statefulsets/finalizers", "patch update"),
        ("roster.dev/identitysets", "get list watch"),
        ("roster.dev/identitysets/status", "patch update"),
        ("roster.dev/identitysets/finalizers", "patch update"),
        ("events.k8s.io/events", "create patch"),
        ("coordination.k8s.io/leases", "create get update"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.split(' ').map(str::to_owned).collect()))
    .collect();
    assert_eq!(granted, want, "roster-controller's RBAC is not the verbs its code uses");
    let controller: Deployment = typed(get("Deployment", "roster-controller"));
    let controller_args = controller.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
    assert_eq!(controller_args[0], "controller");
    assert!(objects.contains_key(&("CustomResourceDefinition".to_owned(), "identitysets.roster.dev".to_owned())));
}

/// The Deployments' and the DaemonSet's arguments are ones roster accepts (`--check-args` parses and
/// checks them without starting anything).
#[test]
fn deployment_arguments_parse() {
    let mut objects: Vec<Value> =
        ["deploy/overlays/kind", "deploy/overlays/kind-multicluster"].into_iter().flat_map(render).collect();
    objects.extend(render("deploy/overlays/node-local").into_iter().filter(|o| o["kind"] == "DaemonSet"));
    // The mounted Secrets, as `roster certs` makes them (--check-args reads and parses them).
    let creds = stream_support::Creds::new();
    let mut checked = 0;
    for object in &objects {
        let pod = match object["kind"].as_str().unwrap() {
            "Deployment" => typed::<Deployment>(object).spec.unwrap().template.spec.unwrap(),
            "DaemonSet" => typed::<DaemonSet>(object).spec.unwrap().template.spec.unwrap(),
            _ => continue,
        };
        checked += 1;
        let args = pod.containers[0].args.clone().unwrap();
        let secret = if args[0] == "controller" { &creds.server } else { &creds.client };
        // Service-link variables are expanded by the kubelet; stand in plausible values.
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("$(ROSTER_CONTROLLER_SERVICE_HOST)", "10.96.0.20")
                    .replace("$(ROSTER_CONTROLLER_SERVICE_PORT)", "8053")
                    .replace("$(HOST_IP)", "10.0.0.5")
                    .replace("/etc/roster/stream", secret.to_str().unwrap())
            })
            .collect();
        let output = Command::new(env!("CARGO_BIN_EXE_roster")).args(&args).arg("--check-args").output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(checked, 5, "two Deployments in each kind overlay and the DaemonSet");
}

/// The multicluster component adds exactly list and watch on ServiceImports, for the controller's
/// account only, and passes the same zone to the controller and the replicas.
#[test]
fn the_multicluster_component_adds_only_service_import_watches() {
    let plain = by_kind(&render("deploy/overlays/kind"));
    let objects = by_kind(&render("deploy/overlays/kind-multicluster"));
    let added: Vec<&(String, String)> = objects.keys().filter(|key| !plain.contains_key(*key)).collect();
    assert_eq!(
        added,
        [
            &("ClusterRole".to_owned(), "roster-controller-multicluster".to_owned()),
            &("ClusterRoleBinding".to_owned(), "roster-controller-multicluster".to_owned()),
        ]
    );
    let role: ClusterRole = typed(&objects[added[0]]);
    let rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| (r.api_groups.unwrap_or_default(), r.resources.unwrap_or_default(), r.verbs))
        .collect();
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        [(strings(&["multicluster.x-k8s.io"]), strings(&["serviceimports"]), strings(&["list", "watch"]))]
    );
    let binding: ClusterRoleBinding = typed(&objects[added[1]]);
    let subjects: Vec<String> = binding.subjects.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(subjects, ["roster-controller"]);
    for name in ["roster-controller", "roster-dns"] {
        let deployment: Deployment = typed(&objects[&("Deployment".to_owned(), name.to_owned())]);
        let args = deployment.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        assert!(args.contains(&"--multicluster-zone=clusterset.local".to_owned()), "{name}: {args:?}");
    }
}

#[test]
fn kind_config_skips_coredns_and_the_dockerfile_is_multi_stage_non_root() {
    let config = std::fs::read_to_string(format!("{ROOT}/deploy/overlays/kind/kind-config.yaml")).unwrap();
    let config: Value = serde_saphyr::from_str(&config).unwrap();
    assert_eq!(config["kind"], "Cluster");
    let patch = config["nodes"][0]["kubeadmConfigPatches"][0].as_str().unwrap();
    let patch: Value = serde_saphyr::from_str(patch).unwrap();
    assert_eq!(patch["kind"], "InitConfiguration");
    assert_eq!(patch["skipPhases"], serde_json::json!(["addon/coredns"]));

    let dockerfile = std::fs::read_to_string(format!("{ROOT}/deploy/Dockerfile")).unwrap();
    let stages = dockerfile.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage");
    let last_from = dockerfile.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
    assert!(last_from.contains("distroless") || last_from.contains("scratch"), "{last_from}");
    assert!(dockerfile.contains("USER 65532"), "non-root");
    assert!(dockerfile.contains("cap_net_bind_service"), "binds :53 without root");
}

/// The record stream is private and authentic: both Deployments mount their own Secret of `roster certs`
/// and pass it; the replicas verify the Service's name; NetworkPolicies fence both.
#[test]
fn the_stream_is_mutual_tls_and_fenced() {
    let objects = by_kind(&render("deploy/overlays/kind"));
    let get = |kind: &str, name: &str| objects.get(&(kind.to_owned(), name.to_owned())).unwrap().clone();
    for (name, secret) in [("roster-controller", "roster-stream-server"), ("roster-dns", "roster-stream-client")] {
        let deployment: Deployment = typed(&get("Deployment", name));
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(volume.secret.as_ref().unwrap().secret_name.as_deref(), Some(secret), "{name}");
        let container = &pod.containers[0];
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/roster/stream", Some(true)));
        let args = container.args.clone().unwrap();
        for flag in [
            "--tls-cert=/etc/roster/stream/tls.crt",
            "--tls-key=/etc/roster/stream/tls.key",
            "--tls-ca=/etc/roster/stream/ca.crt",
        ] {
            assert!(args.iter().any(|a| a == flag), "{name}: {flag} missing from {args:?}");
        }
        if name == "roster-dns" {
            assert!(args.iter().any(|a| a.starts_with("--controller=https://")), "{args:?}");
            assert!(args.iter().any(|a| a == "--tls-server-name=roster-controller.kube-system.svc"), "{args:?}");
        } else {
            let probe = container.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
        }
    }

    let controller: NetworkPolicy = typed(&get("NetworkPolicy", "roster-controller"));
    let spec = controller.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    let from = serde_json::to_value(&ingress[0].from).unwrap();
    assert_eq!(from, serde_json::json!([{"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]));
    let ports = serde_json::to_value(&ingress[0].ports).unwrap();
    assert_eq!(ports, serde_json::json!([{"protocol": "TCP", "port": 8053}]));

    let dns: NetworkPolicy = typed(&get("NetworkPolicy", "roster-dns"));
    let spec = dns.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    let ingress = serde_json::to_value(spec.ingress.unwrap()).unwrap();
    for port in [53, 8080, 8181, 9153] {
        assert!(ingress.to_string().contains(&format!("\"port\":{port}")), "{ingress}");
    }
    let egress = serde_json::to_value(spec.egress.unwrap()).unwrap();
    assert!(egress[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "controller");
    assert_eq!(egress[0]["ports"], serde_json::json!([{"protocol": "TCP", "port": 8053}]));
}

/// The node-local overlay: the base unchanged (the kube-dns Service and its Deployment are the
/// fallback) plus a DaemonSet that puts a replica on every node at NodeLocal DNSCache's link-local
/// address, set up by a root init container, served by a non-root replica following the record stream.
#[test]
fn the_node_local_overlay_runs_a_stream_fed_replica_on_every_node() {
    const ADDRESS: &str = "169.254.20.10";
    let base = by_kind(&render("deploy/base"));
    let objects = by_kind(&render("deploy/overlays/node-local"));
    let get = |kind: &str, name: &str| {
        objects.get(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}")).clone()
    };

    // The fallback: kube-dns and its replicas exactly as in the base.
    for (kind, name) in [("Service", "kube-dns"), ("Deployment", "roster-dns"), ("Deployment", "roster-controller")] {
        assert_eq!(get(kind, name), base[&(kind.to_owned(), name.to_owned())], "{kind} {name} changed");
    }
    let kube_dns: Service = typed(&get("Service", "kube-dns"));
    let kube_dns_selector = kube_dns.spec.unwrap().selector.unwrap();

    let daemonset: DaemonSet = typed(&get("DaemonSet", "roster-node-dns"));
    assert_eq!(daemonset.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = daemonset.spec.unwrap();
    let strategy = spec.update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let max_unavailable = serde_json::to_value(strategy.rolling_update.unwrap().max_unavailable).unwrap();
    assert_eq!(max_unavailable, Value::from("10%"));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert!(
        kube_dns_selector.iter().any(|(k, v)| labels.get(k) != Some(v)),
        "the kube-dns Service would select the host-network replicas: {labels:?}"
    );
    let pod: PodSpec = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"), "the node's resolvers, not the cluster's");
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    assert_eq!(pod.service_account_name.as_deref(), Some("roster-dns"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    // Every node, whatever its taints: one toleration with operator Exists and no key or effect.
    let tolerations = serde_json::to_value(pod.tolerations.clone().unwrap()).unwrap();
    assert_eq!(tolerations, serde_json::json!([{"operator": "Exists"}]));

    // The init container: root with NET_ADMIN runs the overlay's script from its ConfigMap.
    let setup: &Container = &pod.init_containers.as_ref().unwrap()[0];
    let env: BTreeMap<String, String> =
        setup.env.clone().unwrap().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect();
    assert_eq!(env["NODE_DNS_ADDRESS"], ADDRESS);
    let setup_security = setup.security_context.clone().unwrap();
    assert_eq!(setup_security.run_as_user, Some(0));
    let setup_caps = setup_security.capabilities.unwrap();
    assert_eq!(setup_caps.drop.unwrap(), ["ALL"]);
    assert!(setup_caps.add.unwrap().contains(&"NET_ADMIN".to_owned()));
    let command = setup.command.clone().unwrap();
    let script_path = command.last().unwrap();
    let mount = setup.volume_mounts.as_ref().unwrap().iter().find(|m| script_path.starts_with(&m.mount_path)).unwrap();
    let volumes = pod.volumes.clone().unwrap();
    let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
    let config_map_name = volume.config_map.as_ref().unwrap().name.clone();
    let config_map: ConfigMap = typed(&get("ConfigMap", &config_map_name));
    let file = script_path.rsplit('/').next().unwrap();
    let script = &config_map.data.unwrap()[file];
    let on_disk = std::fs::read_to_string(format!("{ROOT}/deploy/overlays/node-local/{file}")).unwrap();
    assert_eq!(script, &on_disk, "the ConfigMap carries deploy/overlays/node-local/{file}");
    for rule in [
        "rule raw PREROUTING -d \"$address/32\" -p \"$proto\" --dport 53 -j NOTRACK",
        "rule raw OUTPUT -s \"$address/32\" -p \"$proto\" --sport 53 -j NOTRACK",
        "ip link add \"$device\" type dummy",
    ] {
        assert!(script.contains(rule), "node-setup.sh lacks `{rule}`");
    }
    let lock = volumes.iter().find(|v| v.name == "xtables-lock").unwrap();
    assert_eq!(lock.host_path.as_ref().unwrap().path, "/run/xtables.lock", "shares kube-proxy's lock");

    // The replica: non-root, only NET_BIND_SERVICE, listening on the link-local address alone.
    let dns = &pod.containers[0];
    let security = dns.security_context.clone().unwrap();
    assert_eq!((security.run_as_non_root, security.read_only_root_filesystem), (Some(true), Some(true)));
    let caps = security.capabilities.unwrap();
    assert_eq!((caps.drop.unwrap(), caps.add.unwrap()), (vec!["ALL".to_owned()], vec!["NET_BIND_SERVICE".to_owned()]));
    let args = dns.args.clone().unwrap();
    let flag = |name: &str| {
        args.iter().find_map(|a| a.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in {args:?}"))
    };
    assert_eq!(flag("--listen"), format!("{ADDRESS}:53"));
    let port_of = |addr: &str| addr.rsplit(':').next().unwrap().parse::<i32>().unwrap();
    for probe in ["--health", "--ready"] {
        assert!(flag(probe).starts_with(&format!("{ADDRESS}:")), "{probe} off the link-local address");
    }
    assert!(flag("--metrics").starts_with("$(HOST_IP):"), "metrics on the node's address for scraping");
    assert!(args.iter().any(|a| a == "--forward"), "names outside the cluster go to the node's resolvers");
    // Host network: ports distinct from the Deployment's probe/metrics ports, and from each other.
    let deployment_ports = [8080, 8181, 9153, 53];
    let ports: BTreeSet<i32> = ["--health", "--ready", "--metrics"].iter().map(|f| port_of(flag(f))).collect();
    assert_eq!(ports.len(), 3);
    assert!(ports.iter().all(|p| !deployment_ports.contains(p)), "{ports:?} clash with the Deployment's");
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.as_ref().unwrap().http_get.clone().unwrap();
        (get.host.unwrap(), get.path.unwrap(), serde_json::to_value(get.port).unwrap())
    };
    assert_eq!(
        probe(&dns.liveness_probe),
        (ADDRESS.to_owned(), "/health".to_owned(), Value::from(port_of(flag("--health"))))
    );
    assert_eq!(
        probe(&dns.readiness_probe),
        (ADDRESS.to_owned(), "/ready".to_owned(), Value::from(port_of(flag("--ready"))))
    );
    // The record stream: the client Secret, mutual TLS, the controller's Service name verified.
    let stream = volumes.iter().find(|v| v.name == "stream-tls").unwrap();
    assert_eq!(stream.secret.as_ref().unwrap().secret_name.as_deref(), Some("roster-stream-client"));
    let mounted = dns.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "stream-tls").unwrap();
    assert_eq!((mounted.mount_path.as_str(), mounted.read_only), ("/etc/roster/stream", Some(true)));
    assert!(flag("--controller").starts_with("https://"));
    assert_eq!(flag("--tls-server-name"), "roster-controller.kube-system.svc");
    for file in ["--tls-cert", "--tls-key", "--tls-ca"] {
        assert!(flag(file).starts_with("/etc/roster/stream/"), "{file}");
    }

    // The controller takes the stream's port from the nodes' addresses too (a podSelector cannot match
    // host-network pods); its other rule is the base's.
    let policy: NetworkPolicy = typed(&get("NetworkPolicy", "roster-controller"));
    let ingress = serde_json::to_value(policy.spec.unwrap().ingress.unwrap()).unwrap();
    assert_eq!(
        ingress[0],
        serde_json::to_value(
            &base[&("NetworkPolicy".to_owned(), "roster-controller".to_owned())]["spec"]["ingress"][0]
        )
        .unwrap()
    );
    assert_eq!(ingress[1], serde_json::json!({"ports": [{"protocol": "TCP", "port": 8053}]}));
}
