//! End-to-end: the real kubectl binary against the stand-in.

mod common;

use std::time::Duration;

use common::{eventually, kubectl, kubectl_ok, kubectl_stdin, start};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const HEADLESS: &str = r"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: seeds
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: seeds
  labels: {app: web}
spec:
  hostname: web-0
  subdomain: web
  containers:
  - name: main
    image: nginx:1.27
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: seeds
  labels: {app: web}
spec:
  hostname: web-1
  subdomain: web
  containers:
  - name: main
    image: nginx:1.27
    ports: [{name: http, containerPort: 8080}]
";

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed JSON ({e}): {s}"))
}

async fn get_json(sim: &roster_sim::SimHandle, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    json(&kubectl_ok(sim, &all).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_and_run_show_pod_ips_in_wide_output() {
    let sim = start().await;
    // `kubectl create namespace` posts protobuf
    let out = kubectl_ok(&sim, &["create", "namespace", "demo"]).await;
    assert!(out.contains("namespace/demo created"), "{out}");
    let out = kubectl_ok(&sim, &["run", "hello", "--image=busybox:1.36", "-n", "demo", "--", "sleep", "3600"]).await;
    assert!(out.contains("pod/hello created"), "{out}");
    let out = kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod/hello", "-n", "demo", "--timeout=20s"]).await;
    assert!(out.contains("condition met"), "{out}");
    let wide = kubectl_ok(&sim, &["get", "pods", "-n", "demo", "-o", "wide"]).await;
    let line = wide.lines().find(|l| l.starts_with("hello")).unwrap_or_default();
    assert!(line.contains("Running") && line.contains("10.244.") && line.contains("sim-node-0"), "{wide}");
    assert!(wide.lines().next().unwrap_or_default().contains("IP"), "{wide}");
    let ns = get_json(&sim, &["get", "ns", "demo"]).await;
    assert_eq!(ns["status"]["phase"], "Active");
    // more typed (protobuf) creates: bytes come out base64, int-or-string ports survive
    kubectl_ok(&sim, &["create", "secret", "generic", "s", "-n", "demo", "--from-literal=a=b"]).await;
    assert_eq!(get_json(&sim, &["get", "secret", "s", "-n", "demo"]).await["data"]["a"], "Yg==");
    kubectl_ok(&sim, &["create", "configmap", "c", "-n", "demo", "--from-literal=k=v"]).await;
    assert_eq!(get_json(&sim, &["get", "cm", "c", "-n", "demo"]).await["data"]["k"], "v");
    kubectl_ok(&sim, &["create", "service", "clusterip", "svc", "-n", "demo", "--tcp=80:http"]).await;
    let svc = get_json(&sim, &["get", "svc", "svc", "-n", "demo"]).await;
    assert_eq!(
        (svc["spec"]["ports"][0]["port"].as_i64(), svc["spec"]["ports"][0]["targetPort"].as_str()),
        (Some(80), Some("http"))
    );
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")), "{svc}");
    // a recreated pod gets a new IP
    let first_ip = get_json(&sim, &["get", "pod", "hello", "-n", "demo"]).await["status"]["podIP"].clone();
    kubectl_ok(&sim, &["delete", "pod", "hello", "-n", "demo", "--wait=true"]).await;
    kubectl_ok(&sim, &["run", "hello", "--image=busybox:1.36", "-n", "demo"]).await;
    kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod/hello", "-n", "demo", "--timeout=20s"]).await;
    let second_ip = get_json(&sim, &["get", "pod", "hello", "-n", "demo"]).await["status"]["podIP"].clone();
    assert_ne!(first_ip, second_ip);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_f_headless_service_with_hostname_subdomain_pods() {
    let sim = start().await;
    kubectl_ok(&sim, &["create", "ns", "seeds"]).await;
    let out = kubectl_stdin(&sim, &["create", "-f", "-"], Some(HEADLESS)).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("service/web created") && out.stdout.contains("pod/web-1 created"), "{}", out.stdout);
    let slices = eventually("a slice with both ready endpoints", Duration::from_secs(20), || {
        let v = common::kubectl_sync(&sim)
            .args(["get", "endpointslices", "-n", "seeds", "-l", "kubernetes.io/service-name=web", "-o", "json"])
            .output()
            .ok()?;
        let list: Value = serde_json::from_slice(&v.stdout).ok()?;
        let eps = list["items"][0]["endpoints"].as_array()?.clone();
        let ready = eps.iter().filter(|e| e["conditions"]["ready"] == true).count();
        (ready == 2).then_some(list)
    })
    .await;
    let slice = &slices["items"][0];
    assert_eq!(slice["ports"][0]["port"], 8080, "named targetPort resolves to the container port");
    assert_eq!(slice["ports"][0]["name"], "http");
    let hostnames: Vec<&str> =
        slice["endpoints"].as_array().into_iter().flatten().filter_map(|e| e["hostname"].as_str()).collect();
    assert_eq!(hostnames, ["web-0", "web-1"]);
    assert_eq!(slice["endpoints"][0]["targetRef"]["name"], "web-0");
    assert_eq!(slice["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    let svc = get_json(&sim, &["get", "svc", "web", "-n", "seeds"]).await;
    assert_eq!(svc["spec"]["clusterIP"], "None");
    let dup = kubectl_stdin(&sim, &["create", "-f", "-"], Some(HEADLESS)).await;
    assert!(!dup.ok && dup.stderr.contains("AlreadyExists"), "{}", dup.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_without_validate_false_creates_then_updates() {
    let sim = start().await;
    kubectl_ok(&sim, &["create", "ns", "seeds"]).await;
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(HEADLESS)).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("pod/web-0 created"), "{}", out.stdout);
    let updated =
        HEADLESS.replace("nginx:1.27", "nginx:1.28").replace("labels: {app: web}", "labels: {app: web, rev: two}");
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(&updated)).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("pod/web-0 configured") && out.stdout.contains("service/web unchanged"),
        "{}",
        out.stdout
    );
    let pod = get_json(&sim, &["get", "pod", "web-0", "-n", "seeds"]).await;
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.28");
    assert_eq!(pod["metadata"]["labels"]["rev"], "two");
    assert_eq!(pod["metadata"]["generation"], 2);
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["containerPort"], 8080, "strategic merge kept the list item");
    // `kubectl diff` previews through a dry-run patch and changes nothing
    let next = updated.replace("nginx:1.28", "nginx:1.29");
    let diff = kubectl_stdin(&sim, &["diff", "-f", "-"], Some(&next)).await;
    assert!(
        diff.stdout.contains("+  - image: nginx:1.29") || diff.stdout.contains("image: nginx:1.29"),
        "{}{}",
        diff.stdout,
        diff.stderr
    );
    let pod = get_json(&sim, &["get", "pod", "web-0", "-n", "seeds"]).await;
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.28");
    // a cluster-scoped kind applies the same way
    let sc = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: example.com/x\n";
    assert!(kubectl_stdin(&sim, &["apply", "-f", "-"], Some(sc)).await.ok);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_w_streams_changes() {
    let sim = start().await;
    let mut child = tokio::process::Command::new(common::kubectl_bin())
        .args(["get", "pods", "-n", "default", "-w", "--request-timeout=30s"])
        .env("KUBECONFIG", sim.kubeconfig_path())
        .env("KUBECACHEDIR", common::cache_dir(&sim))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl get -w starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    tokio::time::sleep(Duration::from_millis(700)).await;
    kubectl_ok(&sim, &["run", "watched", "--image=nginx"]).await;
    let mut seen = Vec::new();
    let got_running = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let running = line.starts_with("watched") && line.contains("Running");
            seen.push(line);
            if running {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got_running, "saw: {seen:?}");
    kubectl_ok(&sim, &["delete", "pod", "watched", "--wait=false"]).await;
    let got_terminating = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("watched") && line.contains("Terminating") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got_terminating);
    let _ = child.kill().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_follow_readiness_and_deletion() {
    let sim = start().await;
    kubectl_ok(&sim, &["create", "ns", "seeds"]).await;
    assert!(kubectl_stdin(&sim, &["apply", "-f", "-"], Some(HEADLESS)).await.ok);
    let ready_of = |pod: &'static str| {
        let sim = &sim;
        move || -> Option<(bool, bool, bool)> {
            let out =
                common::kubectl_sync(sim).args(["get", "endpointslices", "-n", "seeds", "-o", "json"]).output().ok()?;
            let list: Value = serde_json::from_slice(&out.stdout).ok()?;
            let eps = list["items"][0]["endpoints"].as_array()?.clone();
            let e = eps.iter().find(|e| e["targetRef"]["name"] == pod)?;
            let c = &e["conditions"];
            Some((c["ready"] == true, c["serving"] == true, c["terminating"] == true))
        }
    };
    let f = ready_of("web-0");
    eventually("web-0 ready", Duration::from_secs(20), || f().filter(|c| *c == (true, true, false))).await;
    kubectl_ok(&sim, &["annotate", "pod", "web-0", "-n", "seeds", "sim.roster.dev/ready=false"]).await;
    let f = ready_of("web-0");
    eventually("web-0 not ready", Duration::from_secs(20), || f().filter(|c| *c == (false, false, false))).await;
    let pods = kubectl_ok(&sim, &["get", "pod", "web-0", "-n", "seeds"]).await;
    assert!(pods.contains("0/1"), "{pods}");
    kubectl_ok(&sim, &["annotate", "pod", "web-0", "-n", "seeds", "sim.roster.dev/ready-"]).await;
    let f = ready_of("web-0");
    eventually("web-0 ready again", Duration::from_secs(20), || f().filter(|c| *c == (true, true, false))).await;
    // graceful deletion: terminating (not ready) first, then gone
    kubectl_ok(&sim, &["delete", "pod", "web-1", "-n", "seeds", "--wait=false", "--grace-period=3"]).await;
    let f = ready_of("web-1");
    eventually("web-1 terminating", Duration::from_secs(20), || f().filter(|c| c.2 && !c.0)).await;
    let f = ready_of("web-1");
    eventually("web-1 gone from the slice", Duration::from_secs(20), || f().is_none().then_some(())).await;
    sim.shutdown().await;
}

const STS: &str = r"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres:16
        env: [{name: A, value: '1'}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_patch_set_image_label_annotate_delete() {
    let sim = start().await;
    assert!(kubectl_stdin(&sim, &["apply", "-f", "-"], Some(STS)).await.ok);
    let sts = get_json(&sim, &["get", "sts", "db"]).await;
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Retain");
    assert!(kubectl_ok(&sim, &["scale", "statefulset", "db", "--replicas=3"]).await.contains("scaled"));
    assert_eq!(get_json(&sim, &["get", "sts", "db"]).await["spec"]["replicas"], 3);
    kubectl_ok(&sim, &["set", "image", "statefulset/db", "db=postgres:17"]).await;
    kubectl_ok(&sim, &["patch", "sts", "db", "--type=merge", "-p", r#"{"spec":{"minReadySeconds":5}}"#]).await;
    kubectl_ok(
        &sim,
        &[
            "patch",
            "sts",
            "db",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"B","value":"2"}}]"#,
        ],
    )
    .await;
    kubectl_ok(
        &sim,
        &[
            "patch",
            "sts",
            "db",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"db","env":[{"name":"A","value":"9"}]}]}}}}"#,
        ],
    )
    .await;
    kubectl_ok(&sim, &["label", "sts", "db", "tier=data"]).await;
    kubectl_ok(&sim, &["annotate", "sts", "db", "owner=team"]).await;
    let sts = get_json(&sim, &["get", "sts", "db"]).await;
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "postgres:17");
    assert_eq!(c["env"], serde_json::json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]));
    assert_eq!(sts["spec"]["minReadySeconds"], 5);
    assert_eq!(sts["metadata"]["labels"]["tier"], "data");
    assert_eq!(sts["metadata"]["annotations"]["owner"], "team");
    assert_eq!(sts["metadata"]["generation"], 6, "five spec changes; label/annotate do not count");
    let jp = kubectl_ok(&sim, &["get", "sts", "db", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(jp, "3");
    let described = kubectl_ok(&sim, &["describe", "sts", "db"]).await;
    assert!(described.contains("postgres:17"), "{described}");
    assert!(kubectl_ok(&sim, &["delete", "sts", "db"]).await.contains("deleted"));
    let gone = kubectl(&sim, &["get", "sts", "db"]).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{}", gone.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_real_reasons() {
    let sim = start().await;
    let out = kubectl(&sim, &["get", "pod", "nope"]).await;
    assert!(out.stderr.contains(r#"pods "nope" not found"#), "{}", out.stderr);
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n";
    let out = kubectl_stdin(&sim, &["create", "-f", "-"], Some(bad)).await;
    assert!(!out.ok && out.stderr.contains("is invalid") && out.stderr.contains("RFC 1123"), "{}", out.stderr);
    let out = kubectl(&sim, &["create", "ns", "demo"]).await;
    assert!(out.ok);
    let out = kubectl(&sim, &["create", "ns", "demo"]).await;
    assert!(!out.ok && out.stderr.contains("AlreadyExists"), "{}", out.stderr);
    let out = kubectl(&sim, &["run", "x", "--image=nginx", "-n", "missing"]).await;
    assert!(!out.ok && out.stderr.contains(r#"namespaces "missing" not found"#), "{}", out.stderr);
    let resources = kubectl_ok(&sim, &["api-resources"]).await;
    for short in ["po ", "svc ", "sts ", "pvc ", "ns ", "ep "] {
        assert!(resources.contains(short), "missing short name {short}: {resources}");
    }
    let all = kubectl_ok(&sim, &["get", "all", "-A"]).await;
    assert!(all.contains("service/kubernetes"), "{all}");
    // typed protobuf review, answered allowed
    assert_eq!(kubectl_ok(&sim, &["auth", "can-i", "create", "pods"]).await.trim(), "yes");
    kubectl_ok(&sim, &["run", "x", "--image=nginx"]).await;
    // exec itself is tests/local_exec.rs's (it needs root); its request checks are the API server's
    let exec = kubectl(&sim, &["exec", "x", "-c", "nope", "--", "hostname"]).await;
    assert!(!exec.ok && exec.stderr.contains("container nope is not valid for pod x"), "{}", exec.stderr);
    sim.shutdown().await;
}

const CRD: &str = r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rostersets.roster.dev
spec:
  group: roster.dev
  scope: Namespaced
  names: {plural: rostersets, singular: rosterset, kind: RosterSet, shortNames: [rset], categories: [all]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
";

const CR: &str = r"
apiVersion: roster.dev/v1alpha1
kind: RosterSet
metadata: {name: one, namespace: default}
spec: {replicas: 2, serviceName: one}
status: {replicas: 99}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_served_with_status_and_scale() {
    let sim = start().await;
    assert!(kubectl_stdin(&sim, &["apply", "-f", "-"], Some(CRD)).await.ok);
    kubectl_ok(&sim, &["wait", "--for=condition=established", "crd/rostersets.roster.dev", "--timeout=10s"]).await;
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(CR)).await;
    assert!(out.ok, "{}", out.stderr);
    let cr = get_json(&sim, &["get", "rset", "one"]).await;
    assert!(cr.get("status").is_none(), "status is dropped on create when a status subresource exists");
    let table = kubectl_ok(&sim, &["get", "rosterset"]).await;
    assert!(table.contains("REPLICAS") && table.contains("one"), "{table}");
    kubectl_ok(&sim, &["scale", "rosterset", "one", "--replicas=4"]).await;
    kubectl_ok(
        &sim,
        &["patch", "rosterset", "one", "--subresource=status", "--type=merge", "-p", r#"{"status":{"replicas":4}}"#],
    )
    .await;
    // a main-resource update cannot change status
    kubectl_ok(&sim, &["patch", "rosterset", "one", "--type=merge", "-p", r#"{"status":{"replicas":7}}"#]).await;
    let cr = get_json(&sim, &["get", "rset", "one"]).await;
    assert_eq!(cr["spec"]["replicas"], 4);
    assert_eq!(cr["status"]["replicas"], 4);
    assert_eq!(cr["metadata"]["generation"], 2, "only the scale changed the spec");
    let all = kubectl_ok(&sim, &["get", "all"]).await;
    assert!(all.contains("rosterset.roster.dev/one"), "{all}");
    kubectl_ok(&sim, &["delete", "crd", "rostersets.roster.dev"]).await;
    let gone = kubectl(&sim, &["get", "rosterset"]).await;
    assert!(!gone.ok, "{}", gone.stdout);
    // defined again: the old objects went with the old definition
    assert!(kubectl_stdin(&sim, &["apply", "-f", "-"], Some(CRD)).await.ok);
    let listed = kubectl_ok(&sim, &["get", "rosterset", "-o", "name"]).await;
    assert!(listed.trim().is_empty(), "{listed}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_events_expose_fills_endpoints_and_logs_answer() {
    let sim = start().await;
    kubectl_ok(&sim, &["run", "api", "--image=nginx:1.27", "--port=8080", "--labels=app=api"]).await;
    kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod/api", "--timeout=20s"]).await;
    let described = kubectl_ok(&sim, &["describe", "pod", "api"]).await;
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(described.contains(reason), "no {reason} event in:\n{described}");
    }
    kubectl_ok(&sim, &["expose", "pod", "api", "--port=80", "--target-port=8080", "--type=NodePort"]).await;
    let svc = get_json(&sim, &["get", "svc", "api"]).await;
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{svc}");
    let ip = get_json(&sim, &["get", "pod", "api"]).await["status"]["podIP"].as_str().unwrap_or_default().to_owned();
    eventually("the Endpoints object lists the pod", Duration::from_secs(20), || {
        let out = common::kubectl_sync(&sim)
            .args([
                "get",
                "endpoints",
                "api",
                "-o",
                "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
            ])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout) == format!("{ip}:8080")).then_some(())
    })
    .await;
    let logs = kubectl(&sim, &["logs", "api"]).await;
    assert!(logs.ok, "{}", logs.stderr);
    let events =
        kubectl_ok(&sim, &["get", "events", "--field-selector", "involvedObject.name=api", "-o", "name"]).await;
    assert!(events.lines().count() >= 4, "{events}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_and_cordoned_nodes_take_no_pods() {
    let sim = start().await;
    kubectl_ok(&sim, &["run", "a", "--image=nginx"]).await;
    kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod/a", "--timeout=20s"]).await;
    let out = kubectl_ok(&sim, &["drain", "sim-node-0", "--force", "--timeout=20s"]).await;
    assert!(out.contains("drained"), "{out}");
    assert!(kubectl(&sim, &["get", "pod", "a"]).await.stderr.contains("NotFound"));
    let nodes = kubectl_ok(&sim, &["get", "nodes"]).await;
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    kubectl_ok(&sim, &["run", "b", "--image=nginx"]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_json(&sim, &["get", "pod", "b"]).await["status"]["phase"], "Pending");
    kubectl_ok(&sim, &["uncordon", "sim-node-0"]).await;
    kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod/b", "--timeout=20s"]).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_removes_fields_dropped_from_the_manifest() {
    let sim = start().await;
    let first =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, labels: {a: '1', b: '2'}}\ndata: {x: '1', y: '2'}\n";
    let out = kubectl_stdin(&sim, &["apply", "--server-side", "-f", "-"], Some(first)).await;
    assert!(out.ok && out.stdout.contains("serverside-applied"), "{}{}", out.stdout, out.stderr);
    kubectl_ok(&sim, &["label", "configmap", "ssa", "by-hand=yes"]).await;
    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, labels: {a: '1'}}\ndata: {x: '3'}\n";
    let out = kubectl_stdin(&sim, &["apply", "--server-side", "-f", "-"], Some(second)).await;
    assert!(out.ok, "{}", out.stderr);
    let cm = get_json(&sim, &["get", "configmap", "ssa"]).await;
    assert_eq!(cm["data"], serde_json::json!({"x": "3"}));
    assert_eq!(cm["metadata"]["labels"], serde_json::json!({"a": "1", "by-hand": "yes"}));
    let managed = kubectl_ok(&sim, &["get", "configmap", "ssa", "-o", "yaml", "--show-managed-fields"]).await;
    assert!(managed.contains("manager: kubectl") && managed.contains("operation: Apply"), "{managed}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_over_nodes_and_honour_node_selectors() {
    let sim = common::start_with(roster_sim::SimConfig { nodes: 3, ..common::fast() }).await;
    let nodes = kubectl_ok(&sim, &["get", "nodes", "-o", "name"]).await;
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    for i in 0..3 {
        kubectl_ok(&sim, &["run", &format!("p{i}"), "--image=nginx"]).await;
    }
    let pinned = r#"{"spec": {"nodeSelector": {"kubernetes.io/hostname": "sim-node-2"}}}"#;
    kubectl_ok(&sim, &["run", "pinned", "--image=nginx", &format!("--overrides={pinned}")]).await;
    kubectl_ok(&sim, &["wait", "--for=condition=Ready", "pod", "--all", "--timeout=20s"]).await;
    let placed = kubectl_ok(
        &sim,
        &["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{\"\\n\"}{end}"],
    )
    .await;
    let used: std::collections::HashSet<&str> =
        placed.lines().filter(|l| !l.starts_with("pinned")).filter_map(|l| l.split('=').nth(1)).collect();
    assert!(placed.lines().any(|l| l == "pinned=sim-node-2"), "{placed}");
    assert_eq!(used.len(), 3, "spread over the nodes: {placed}");
    sim.shutdown().await;
}
