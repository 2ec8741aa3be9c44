//! roster against a real control plane (scripts/cluster.sh: etcd, kube-apiserver with RBAC and Node
//! authorizers, kube-controller-manager with its own controllers, kube-scheduler, kwok nodes): deploy/
//! applied with server-side apply and strict validation, roster with nothing but its ServiceAccount's
//! token, EndpointSlices written by the real EndpointSlice controller, dig over UDP and TCP against two
//! DNS replicas, an API server restart and an etcd compaction. These tests fail, not skip, when the
//! cluster cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod stream_support;
mod support;

use std::time::Duration;

use real_support::RealCluster;
use support::process::{Proc, dig, free_port, short};

/// deploy/overlays/kind rendered by kubectl's kustomize.
fn rendered_deploy(cluster: &RealCluster) -> String {
    cluster.kubectl_ok(&["kustomize", &format!("{}/deploy/overlays/kind", real_support::ROOT)])
}

/// Applies deploy/ (server-side, strict field validation) and waits for the CRD to be served.
fn apply_deploy(cluster: &RealCluster) {
    let yaml = rendered_deploy(cluster);
    let out = cluster.kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=roster-test", "--validate=strict", "-f", "-"],
        Some(&yaml),
    );
    assert!(out.ok, "deploy/overlays/kind does not apply: {}{}", out.stdout, out.stderr);
    cluster.wait_for_crd("identitysets.roster.dev");
}

/// Fails when roster's log shows the API server refusing it something (an RBAC denial).
fn assert_no_denials(log: &str) {
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("forbidden") || l.contains("Forbidden")).collect();
    assert!(denied.is_empty(), "roster was refused by the API server:\n{}", denied.join("\n"));
}

const WORKLOAD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 8080, targetPort: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.8
        ports: [{name: web, containerPort: 80}]
"#;

fn pod_ip(cluster: &RealCluster, name: &str) -> Option<String> {
    let out = cluster.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]);
    (out.ok && !out.stdout.is_empty()).then(|| out.stdout.trim().to_owned())
}

fn cluster_ip(cluster: &RealCluster, service: &str) -> String {
    cluster.kubectl_ok(&["get", "service", service, "-o", "jsonpath={.spec.clusterIP}"]).trim().to_owned()
}

/// Every replica answers `name A` with exactly `want`, over UDP and over TCP.
fn all_answer(replicas: &[u16], name: &str, want: &[String]) -> bool {
    replicas
        .iter()
        .all(|&port| short(port, name, "A") == want && sorted(&dig(port, &[name, "A", "+short", "+tcp"])) == want)
}

fn sorted(text: &str) -> Vec<String> {
    support::process::sorted_lines(text)
}

fn rcode(port: u16, name: &str) -> String {
    support::process::status(port, name)
}

#[test]
fn deploy_applies_unchanged_to_a_real_api_server() {
    let cluster = RealCluster::up(&[]);
    apply_deploy(&cluster);
    // Applying the same manifests again is a no-op, not a conflict.
    apply_deploy(&cluster);
    let explain = cluster.explain("identitysets.spec");
    assert!(explain.contains("volumeClaimTemplates") && explain.contains("replicas"), "{explain}");
    let crd = roster_crd_yaml();
    let out = cluster.kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=roster-crd", "--force-conflicts", "--validate=strict", "-f", "-"],
        Some(&crd),
    );
    assert!(out.ok, "`roster crd` is refused: {}", out.stderr);

    // The node-local overlay applies over it (strict), and its DaemonSet puts a replica on every node;
    // the kube-dns Service never selects those host-network pods.
    let node_local = cluster.kubectl_ok(&["kustomize", &format!("{}/deploy/overlays/node-local", real_support::ROOT)]);
    let out = cluster.kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=roster-test", "--validate=strict", "-f", "-"],
        Some(&node_local),
    );
    assert!(out.ok, "deploy/overlays/node-local does not apply: {}{}", out.stdout, out.stderr);
    cluster.kubectl_ok(&["-n", "kube-system", "rollout", "status", "daemonset/roster-node-dns", "--timeout=60s"]);
    let nodes = cluster.kubectl_ok(&["get", "nodes", "-o", "name"]).lines().count();
    let pods = cluster.kubectl_ok(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=roster-node-dns", "-o", "name"]);
    assert_eq!(pods.lines().count(), nodes, "one replica per node: {pods}");
    let endpoints = cluster.kubectl_ok(&[
        "-n",
        "kube-system",
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=kube-dns",
        "-o",
        "jsonpath={.items[*].endpoints[*].targetRef.name}",
    ]);
    assert!(!endpoints.contains("roster-node-dns"), "kube-dns selects a node-local replica: {endpoints}");
}

fn roster_crd_yaml() -> String {
    let out = std::process::Command::new(support::process::ROSTER).arg("crd").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// kwok pods → EndpointSlices of the real EndpointSlice controller → `roster controller` (only its
/// ServiceAccount token) → two `roster dns` replicas; through a kube-apiserver restart and an etcd
/// compaction that makes every watch resume with 410 Gone.
#[test]
fn the_pipeline_follows_a_real_cluster_with_least_privilege() {
    let cluster = RealCluster::up(&[]);
    apply_deploy(&cluster);
    let token = cluster.token_kubeconfig("kube-system", "roster-controller");
    wait_for_rbac(&cluster, &token);
    let stream = free_port();
    // The record stream is mutual TLS: material from `roster certs`.
    let creds = stream_support::Creds::new();
    let server_tls = creds.server_args();
    let client_tls = creds.client_args();
    let listen = format!("127.0.0.1:{stream}");
    let controller = Proc::roster(
        &[&["controller", "--kubeconfig", token.to_str().unwrap(), "--listen", &listen][..], &as_strs(&server_tls)]
            .concat(),
    );
    let replicas = [free_port(), free_port()];
    let url = format!("https://127.0.0.1:{stream}");
    let dns: Vec<Proc> = replicas
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            Proc::roster(&[&["dns", "--controller", &url, "--listen", &listen][..], &as_strs(&client_tls)].concat())
        })
        .collect();
    let logs = || format!("{}\n-----\n{}\n-----\n{}", controller.log(), dns[0].log(), cluster.logs());
    let ready = cluster.eventually("the controller's watches to sync", Duration::from_secs(60), || {
        Some(stream_support::curl(stream, "/readyz", &creds.client, false, 5)).filter(|(code, _)| *code == 200)
    });
    drop(ready);

    cluster.apply(WORKLOAD);
    cluster.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    let ips: Vec<String> = (0..3).map(|i| pod_ip(&cluster, &format!("web-{i}")).unwrap()).collect();
    for ip in &ips {
        assert!(ip.starts_with("10.244."), "kwok gives pod IPs from 10.244.0.0/16: {ip}");
    }
    let mut all = ips.clone();
    all.sort();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("web-{i}.nginx.default.svc.cluster.local");
        cluster.eventually(&format!("{name} on both replicas"), Duration::from_secs(30), || {
            all_answer(&replicas, &name, std::slice::from_ref(ip)).then_some(())
        });
    }
    cluster.eventually("the headless service", Duration::from_secs(30), || {
        all_answer(&replicas, "nginx.default.svc.cluster.local", &all).then_some(())
    });
    let front = cluster_ip(&cluster, "front");
    assert!(all_answer(&replicas, "front.default.svc.cluster.local", std::slice::from_ref(&front)), "{}", logs());
    let srv = sorted(&dig(replicas[0], &["_web._tcp.nginx.default.svc.cluster.local", "SRV", "+short"]));
    assert_eq!(srv.len(), 3, "{srv:?}");

    // Scaled down: the removed pod's name is NXDOMAIN on every replica.
    cluster.kubectl_ok(&["scale", "statefulset/web", "--replicas=2"]);
    cluster.eventually("web-2 gone from DNS", Duration::from_secs(60), || {
        replicas.iter().all(|&p| rcode(p, "web-2.nginx.default.svc.cluster.local") == "NXDOMAIN").then_some(())
    });

    // The API server goes away and comes back: the controller's watches resume, nothing is lost.
    // Until a restarted API server's authorizer has synced its RBAC caches it refuses even allowed
    // requests: denials are checked outside the restarts.
    assert_no_denials(&controller.log());
    cluster.restart("kube-apiserver");
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: after-restart}\nspec:\n  ports: [{name: http, port: 80}]\n",
    );
    let after = cluster_ip(&cluster, "after-restart");
    cluster.eventually("a service created after the restart", Duration::from_secs(60), || {
        all_answer(&replicas, "after-restart.default.svc.cluster.local", std::slice::from_ref(&after)).then_some(())
    });

    // History compacted, then the API server restarted: every watch resumes from a compacted
    // resourceVersion, gets 410 Gone and lists again.
    for i in 0..20 {
        cluster.kubectl_ok(&["annotate", "service", "front", &format!("churn={i}"), "--overwrite"]);
    }
    cluster.kubectl_ok(&["delete", "service", "after-restart"]);
    cluster.compact();
    cluster.restart("kube-apiserver");
    cluster.kubectl_ok(&["scale", "statefulset/web", "--replicas=1"]);
    cluster.eventually("after the compaction, web-1 NXDOMAIN and after-restart gone", Duration::from_secs(60), || {
        replicas
            .iter()
            .all(|&p| {
                rcode(p, "web-1.nginx.default.svc.cluster.local") == "NXDOMAIN"
                    && rcode(p, "after-restart.default.svc.cluster.local") == "NXDOMAIN"
            })
            .then_some(())
    });
    assert!(all_answer(&replicas, "web-0.nginx.default.svc.cluster.local", &ips[..1]), "{}", logs());
    assert!(all_answer(&replicas, "front.default.svc.cluster.local", std::slice::from_ref(&front)), "{}", logs());
    let settled = controller.log().len();
    cluster.kubectl_ok(&["annotate", "service", "front", "settled=yes"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_no_denials(&controller.log()[settled..]);
}

/// Waits until the API server authorizes what the ServiceAccount's RBAC allows (a fresh binding
/// reaches the authorizer's cache within moments).
fn wait_for_rbac(cluster: &RealCluster, token: &std::path::Path) {
    cluster.eventually("RBAC for roster-controller", Duration::from_secs(30), || {
        let out = cluster.kubectl_as(token, &["auth", "can-i", "watch", "endpointslices.discovery.k8s.io", "-A"], None);
        (out.stdout.trim() == "yes").then_some(())
    });
}

/// What roster must do with its ServiceAccount alone, in namespace `ns`: run a StatefulSet and an
/// IdentitySet with claims to Ready (pods, claims, revisions, status, Events) and publish them in DNS.
/// `Err` says what did not happen.
fn least_privilege_smoke(cluster: &RealCluster, ns: &str) -> Result<(), String> {
    cluster.kubectl_ok(&["create", "namespace", ns]);
    cluster.eventually("the default ServiceAccount", Duration::from_secs(30), || {
        cluster.kubectl(&["get", "serviceaccount", "default", "-n", ns]).ok.then_some(())
    });
    // A fresh candidate must not wait out the previous one's Lease.
    let _ =
        cluster.kubectl(&["delete", "lease", "-n", "kube-system", "roster-identity-controller", "--ignore-not-found"]);
    let token = cluster.token_kubeconfig("kube-system", "roster-controller");
    let dns = free_port();
    let roster = Proc::roster(&[
        "local",
        "--kubeconfig",
        token.to_str().unwrap(),
        "--manage-statefulsets",
        "--dns",
        &format!("127.0.0.1:{dns}"),
        "--stream",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let statefulset = WORKLOAD_WITH_CLAIMS.split("---\n").nth(1).unwrap();
    let identityset = statefulset
        .replace("kind: StatefulSet", "kind: IdentitySet")
        .replace("apps/v1", "roster.dev/v1")
        .replace("metadata: {name: web}", "metadata: {name: idweb}")
        .replace("{app: nginx}", "{app: idweb}");
    let sets = format!("{WORKLOAD_WITH_CLAIMS}---\n{identityset}");
    let out = cluster.kubectl_as(&cluster.kubeconfig, &["apply", "-n", ns, "-f", "-"], Some(&sets));
    assert!(out.ok, "{}", out.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let mut missing = String::from("nothing checked");
    while std::time::Instant::now() < deadline {
        let log = roster.log();
        if let Some(line) = log.lines().find(|l| l.contains("forbidden") || l.contains("Forbidden")) {
            return Err(format!("refused: {line}"));
        }
        missing = smoke_missing(cluster, ns, dns);
        if missing.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(missing)
}

/// What the smoke workload still lacks; empty when everything is there.
fn smoke_missing(cluster: &RealCluster, ns: &str, dns: u16) -> String {
    let ready = |resource: &str| {
        cluster.kubectl(&["get", resource, "-n", ns, "-o", "jsonpath={.status.readyReplicas}"]).stdout.trim().to_owned()
    };
    if ready("statefulset/web") != "2" {
        return "StatefulSet web not 2/2 ready".into();
    }
    if ready("identityset/idweb") != "2" {
        return "IdentitySet idweb not 2/2 ready".into();
    }
    let claims = cluster.kubectl(&["get", "pvc", "-n", ns, "-o", "name"]).stdout;
    for claim in ["www-web-0", "www-web-1", "www-idweb-0", "www-idweb-1"] {
        if !claims.contains(claim) {
            return format!("claim {claim} missing");
        }
    }
    let events = cluster.kubectl(&["get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}"]).stdout;
    if !events.contains("SuccessfulCreate") {
        return "no SuccessfulCreate Event".into();
    }
    let ip = pod_ip_in(cluster, ns, "web-1").unwrap_or_default();
    if ip.is_empty() || short(dns, &format!("web-1.nginx.{ns}.svc.cluster.local"), "A") != [ip] {
        return "web-1 not in DNS".into();
    }
    String::new()
}

fn pod_ip_in(cluster: &RealCluster, ns: &str, name: &str) -> Option<String> {
    let out = cluster.kubectl(&["get", "pod", name, "-n", ns, "-o", "jsonpath={.status.podIP}"]);
    (out.ok && !out.stdout.is_empty()).then(|| out.stdout.trim().to_owned())
}

const WORKLOAD_WITH_CLAIMS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: registry.k8s.io/nginx-slim:0.8}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// Every rule of deploy/'s ClusterRole and leader-election Role is needed: with any one removed, roster
/// (with only its ServiceAccount) can no longer do its job, and with all of them it can.
#[test]
fn every_rule_of_roster_controller_rbac_is_needed() {
    let cluster = RealCluster::up(&["--without-statefulset-controller"]);
    apply_deploy(&cluster);
    least_privilege_smoke(&cluster, "full").unwrap_or_else(|e| panic!("with every rule: {e}\n{}", cluster.logs()));
    let mut unneeded = Vec::new();
    for (kind, name, namespace) in
        [("clusterrole", "roster-controller", None), ("role", "roster-controller-leader-election", Some("kube-system"))]
    {
        let mut get = vec!["get", kind, name];
        if let Some(ns) = namespace {
            get.extend(["-n", ns]);
        }
        let original = cluster.get_json(&get);
        let rules = original["rules"].as_array().unwrap().clone();
        for (i, rule) in rules.iter().enumerate() {
            let mut cut = original.clone();
            cut["rules"].as_array_mut().unwrap().remove(i);
            cut["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            let out = cluster.kubectl_as(&cluster.kubeconfig, &["replace", "-f", "-"], Some(&cut.to_string()));
            assert!(out.ok, "{}", out.stderr);
            let ns = format!("{}-{i}", if namespace.is_some() { "role" } else { "clusterrole" });
            match least_privilege_smoke(&cluster, &ns) {
                Ok(()) => unneeded.push(format!("{kind} {name}: {rule}")),
                Err(why) => eprintln!("without {rule}: {why}"),
            }
            let mut back = original.clone();
            back["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            let out = cluster.kubectl_as(&cluster.kubeconfig, &["replace", "-f", "-"], Some(&back.to_string()));
            assert!(out.ok, "{}", out.stderr);
        }
    }
    assert!(unneeded.is_empty(), "rules roster works without:\n{}", unneeded.join("\n"));
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
