//! IdentitySets beyond the StatefulSet controller on a real control plane (scripts/cluster.sh: Kubernetes
//! 1.36.3, kwok nodes, the host-path provisioner), roster with nothing but deploy/'s ServiceAccount
//! token, driven with kubectl: a broken rollout reverted (`rolloutRecovery: Replace` converges, the
//! default stays frozen as upstream), reserved ordinals and a paused rollout, claims growing ordinal by
//! ordinal through a StorageClass that allows expansion (the test plays the external resizer, as kwok
//! plays the kubelets), and growth refused by one that does not. One cluster; the cases run at once,
//! each in a namespace of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod support;

use std::time::Duration;

use real_support::RealCluster;
use serde_json::Value;
use support::process::{Proc, free_port};

const V1: &str = "registry.k8s.io/nginx-slim:0.8";
const BREAK: &str = r#"[{"op":"add","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready","value":"true"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.9"}]"#;
const REVERT: &str = r#"[{"op":"remove","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.8"}]"#;
const GROW: &str =
    r#"[{"op":"replace","path":"/spec/volumeClaimTemplates/0/spec/resources/requests/storage","value":"2Gi"}]"#;
const EXPANDABLE: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: expandable}\nprovisioner: kubernetes.io/host-path\nallowVolumeExpansion: true\nvolumeBindingMode: Immediate\n";
const WAIT: Duration = Duration::from_secs(60);

/// kubectl in one namespace of the shared cluster.
struct Ns<'a> {
    cluster: &'a RealCluster,
    name: &'static str,
}

impl Ns<'_> {
    fn kubectl(&self, args: &[&str]) -> real_support::Out {
        let mut all = vec!["-n", self.name];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.ok, "[{}] kubectl {args:?}: {}{}", self.name, out.stdout, out.stderr);
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn set(&self) -> Value {
        self.json(&["identityset", "web"])
    }

    fn eventually<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        self.cluster.eventually(&format!("[{}] {what}", self.name), WAIT, f)
    }

    /// The namespace, the headless service and the set `web` (`class`: its claims' StorageClass).
    fn create(&self, replicas: i32, extra: &str, class: Option<&str>) {
        self.cluster.kubectl_ok(&["create", "namespace", self.name]);
        self.eventually("the default ServiceAccount", || {
            self.kubectl(&["get", "serviceaccount", "default"]).ok.then_some(())
        });
        let class = class.map(|c| format!("      storageClassName: {c}\n")).unwrap_or_default();
        let doc = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: nginx}}\nspec:\n  clusterIP: None\n  selector: {{app: nginx}}\n  \
             ports: [{{name: web, port: 80}}]\n---\napiVersion: roster.dev/v1\nkind: IdentitySet\nmetadata: {{name: web}}\nspec:\n  \
             serviceName: nginx\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: nginx}}}}\n  template:\n    \
             metadata: {{labels: {{app: nginx}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      \
             - name: nginx\n        image: {V1}\n        volumeMounts: [{{name: www, mountPath: /www}}]\n  volumeClaimTemplates:\n  \
             - metadata: {{name: www}}\n    spec:\n      accessModes: [ReadWriteOnce]\n{class}      resources: {{requests: {{storage: 1Gi}}}}\n{extra}"
        );
        let out = self.cluster.kubectl_as(&self.cluster.kubeconfig, &["-n", self.name, "apply", "-f", "-"], Some(&doc));
        assert!(out.ok, "{}", out.stderr);
    }

    /// The set has `n` pods, all ready and at the update revision, which is also the current one.
    fn settled(&self, n: i64) {
        self.eventually(&format!("web settled at {n}"), || {
            let s = self.set();
            let st = &s["status"];
            let ok = st["readyReplicas"].as_i64() == Some(n)
                && st["replicas"].as_i64() == Some(n)
                && st["updatedReplicas"].as_i64() == Some(n)
                && st["currentRevision"] == st["updateRevision"]
                && st["observedGeneration"] == s["metadata"]["generation"];
            ok.then_some(())
        });
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", "pod", name, "-o", "json"]);
        out.ok.then(|| serde_json::from_str(&out.stdout).unwrap())
    }

    fn pod_names(&self) -> Vec<String> {
        let v = self.json(&["pods"]);
        let mut names: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The message of the set's condition `type_` while it is True.
    fn condition(&self, type_: &str) -> Option<String> {
        let s = self.set();
        s["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == "True")
            .map(|c| c["message"].as_str().unwrap_or("").to_owned())
    }

    fn claim(&self, name: &str) -> (String, String) {
        let v = self.json(&["pvc", name]);
        let s = |p: &Value| p.as_str().unwrap_or("").to_owned();
        (s(&v["spec"]["resources"]["requests"]["storage"]), s(&v["status"]["capacity"]["storage"]))
    }

    /// Break the template, wait until web-2 is stuck at the broken revision, revert; the broken revision.
    fn break_then_revert(&self) -> String {
        self.settled(3);
        self.ok(&["patch", "identityset", "web", "--type=json", "-p", BREAK]);
        let broken = self.eventually("web-2 stuck at the broken revision", || {
            let p = self.pod("web-2")?;
            let stuck = p["metadata"]["labels"]["roster.dev/test-never-ready"] == "true"
                && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null();
            stuck.then(|| p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().to_owned())
        });
        self.ok(&["patch", "identityset", "web", "--type=json", "-p", REVERT]);
        broken
    }
}

fn revision(p: &Value) -> &str {
    p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("")
}

fn recovers_with_replace(ns: &Ns) {
    ns.create(3, "  rolloutRecovery: Replace\n", None);
    let broken = ns.break_then_revert();
    ns.settled(3);
    assert_ne!(revision(&ns.pod("web-2").unwrap()), broken);
    let message = ns.condition("RolloutRecovery").expect("RolloutRecovery condition");
    assert!(message.contains("web-2"), "{message}");
    let events = ns.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=RecoverRollout",
        "-o",
        "custom-columns=M:.message",
        "--no-headers",
    ]);
    assert!(events.contains("Replace Pod web-2 (revision ") && events.contains("not Ready"), "{events}");
}

fn stays_frozen_by_default(ns: &Ns) {
    ns.create(3, "", None);
    let broken = ns.break_then_revert();
    std::thread::sleep(Duration::from_secs(5));
    let p = ns.pod("web-2").unwrap();
    assert_eq!(revision(&p), broken, "upstream's freeze: the stuck pod stays");
    assert!(ns.condition("RolloutRecovery").is_none());
    ns.ok(&["delete", "pod", "web-2", "--wait=false"]);
    ns.settled(3);
}

fn reserved_and_paused(ns: &Ns) {
    ns.create(3, "  reserveOrdinals: [1]\n", None);
    ns.settled(3);
    assert_eq!(ns.pod_names(), ["web-0", "web-2", "web-3"]);
    let old = ns.set()["status"]["updateRevision"].as_str().unwrap().to_owned();
    ns.ok(&[
        "patch",
        "identityset",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"paused":true}}}}"#,
    ]);
    let image = r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.9"}]"#;
    ns.ok(&["patch", "identityset", "web", "--type=json", "-p", image]);
    let paused = ns.eventually("RolloutPaused", || ns.condition("RolloutPaused"));
    assert!(paused.contains("0 of 3"), "{paused}");
    std::thread::sleep(Duration::from_secs(3));
    for n in ["web-0", "web-2", "web-3"] {
        assert_eq!(revision(&ns.pod(n).unwrap()), old, "{n} was replaced while paused");
    }
    let wide = ns.ok(&["get", "identityset", "web", "-o", "wide"]);
    assert!(wide.contains("PAUSED") && wide.contains("true") && wide.contains("[1]"), "{wide}");
    ns.ok(&[
        "patch",
        "identityset",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"paused":false}}}}"#,
    ]);
    ns.settled(3);
    assert_eq!(ns.pod_names(), ["web-0", "web-2", "web-3"]);
    ns.eventually("RolloutPaused gone", || ns.condition("RolloutPaused").is_none().then_some(()));
}

fn claims_grow_ordinal_by_ordinal(ns: &Ns) {
    ns.create(3, "  volumeClaimUpdatePolicy: InPlace\n", Some("expandable"));
    ns.settled(3);
    ns.ok(&["patch", "identityset", "web", "--type=json", "-p", GROW]);
    for i in 0..3 {
        let name = format!("www-web-{i}");
        ns.eventually(&format!("{name} asked for 2Gi"), || (ns.claim(&name).0 == "2Gi").then_some(()));
        // roster waits for this claim's capacity before it touches the next one.
        std::thread::sleep(Duration::from_secs(3));
        for later in i + 1..3 {
            assert_eq!(ns.claim(&format!("www-web-{later}")).0, "1Gi", "www-web-{later} grew before {name}");
        }
        let resizing = ns.condition("VolumeClaimsResizing").unwrap_or_default();
        assert!(resizing.contains(&name), "{resizing}");
        // The host-path volume has no resizer: the test plays the external one.
        ns.ok(&[
            "patch",
            "pvc",
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"capacity":{"storage":"2Gi"}}}"#,
        ]);
    }
    ns.eventually("status.volumeClaims complete", || {
        let s = ns.set();
        let vc = &s["status"]["volumeClaims"][0];
        (vc["resized"] == 3 && vc["claims"] == 3 && vc["storage"] == "2Gi").then_some(())
    });
    ns.eventually("VolumeClaimsResizing gone", || ns.condition("VolumeClaimsResizing").is_none().then_some(()));
}

fn growth_refused_and_changes_reported(ns: &Ns) {
    ns.create(2, "  volumeClaimUpdatePolicy: InPlace\n", None);
    ns.settled(2);
    ns.ok(&["patch", "identityset", "web", "--type=json", "-p", GROW]);
    let failed = ns.eventually("VolumeClaimResizeFailed", || ns.condition("VolumeClaimResizeFailed"));
    assert!(failed.contains("www-web-0") && failed.contains("must support resize"), "{failed}");
    assert!(!failed.contains("www-web-1"), "{failed}");
    assert_eq!(ns.claim("www-web-0").0, "1Gi");
    ns.ok(&[
        "patch",
        "identityset",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"volumeClaimUpdatePolicy":"OnClaimDelete"}}"#,
    ]);
    ns.ok(&[
        "patch",
        "identityset",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/volumeClaimTemplates/0/spec/accessModes","value":["ReadWriteMany"]}]"#,
    ]);
    let changed = ns.eventually("VolumeClaimTemplateChanged", || {
        let m = ns.condition("VolumeClaimTemplateChanged")?;
        (m.contains("accessModes") && ns.condition("VolumeClaimResizeFailed").is_none()).then_some(m)
    });
    assert!(changed.contains("storage 2Gi") && changed.contains("www-web-0, www-web-1"), "{changed}");
}

#[test]
fn identitysets_beyond_statefulsets_on_a_real_control_plane() {
    let started = std::time::Instant::now();
    let cluster = RealCluster::up(&["--nodes", "1"]);
    let yaml = cluster.kubectl_ok(&["kustomize", &format!("{}/deploy/overlays/kind", real_support::ROOT)]);
    let out = cluster.kubectl_as(&cluster.kubeconfig, &["apply", "--server-side", "-f", "-"], Some(&yaml));
    assert!(out.ok, "{}", out.stderr);
    cluster.apply(EXPANDABLE);
    cluster.wait_for_crd("identitysets.roster.dev");
    // `kubectl explain` describes every field beyond StatefulSets.
    for (field, says) in [
        ("identitysets.spec.reserveOrdinals", "OpenKruise"),
        ("identitysets.spec.rolloutRecovery", "kubernetes/kubernetes#67250"),
        ("identitysets.spec.volumeClaimUpdatePolicy", "InPlace"),
        ("identitysets.spec.updateStrategy.rollingUpdate.paused", "RolloutPaused"),
    ] {
        let text = cluster.explain(field);
        assert!(text.contains(says), "kubectl explain {field}:\n{text}");
    }
    let token = cluster.token_kubeconfig("kube-system", "roster-controller");
    let roster = Proc::roster(&[
        "local",
        "--kubeconfig",
        token.to_str().unwrap(),
        "--dns",
        &format!("127.0.0.1:{}", free_port()),
        "--stream",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    cluster.eventually("roster local to start", WAIT, || roster.log().contains("roster local is up").then_some(()));

    let cases: [(&'static str, Case); 5] = [
        ("recover", recovers_with_replace),
        ("freeze", stays_frozen_by_default),
        ("reserved-paused", reserved_and_paused),
        ("grow", claims_grow_ordinal_by_ordinal),
        ("refused", growth_refused_and_changes_reported),
    ];
    let failed: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, case)| {
                let ns = Ns { cluster: &cluster, name };
                (*name, scope.spawn(move || case(&ns)))
            })
            .collect();
        handles.into_iter().filter_map(|(n, h)| h.join().is_err().then(|| n.to_owned())).collect()
    });
    let log = roster.log();
    let denied: Vec<&str> =
        log.lines().filter(|l| l.contains("forbidden") && !l.contains("must support resize")).collect();
    assert!(failed.is_empty(), "cases failed: {failed:?}\nroster's log:\n{}", tail(&log));
    assert!(denied.is_empty(), "roster was refused by the API server:\n{}", denied.join("\n"));
    eprintln!("real_identity_beyond: {:?}", started.elapsed());
}

/// One case: runs in its own namespace of the shared cluster.
type Case = fn(&Ns);

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
