//! End-to-end: Deployments and ReplicaSets driven by the real kubectl (create, scale, set image, rollout
//! status/history/undo/pause/resume, cascading delete).

mod common;

use std::time::Duration;

use common::{eventually, kubectl, kubectl_ok, kubectl_stdin, kubectl_sync, start};
use serde_json::Value;

fn get_sync(sim: &roster_sim::SimHandle, args: &[&str]) -> Value {
    let out = kubectl_sync(sim).args(args).args(["-o", "json"]).output().expect("kubectl runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn items(v: &Value) -> Vec<Value> {
    v.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// The ReplicaSets of app=web by image: (name, image, spec replicas, revision).
async fn replica_sets(sim: &roster_sim::SimHandle) -> Vec<(String, String, i64, String)> {
    let out = kubectl_ok(sim, &["get", "rs", "-l", "app=web", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).expect("JSON");
    items(&v)
        .iter()
        .map(|r| {
            (
                s(r, "/metadata/name").to_owned(),
                s(r, "/spec/template/spec/containers/0/image").to_owned(),
                n(r, "/spec/replicas"),
                s(r, "/metadata/annotations/deployment.kubernetes.io~1revision").to_owned(),
            )
        })
        .collect()
}

async fn rolled_out(sim: &roster_sim::SimHandle) {
    let out = kubectl_ok(sim, &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_rolls_out_undoes_pauses_and_cascades() {
    let sim = start().await;
    kubectl_ok(&sim, &["create", "deployment", "web", "--image=nginx:1.14", "--replicas=3"]).await;
    rolled_out(&sim).await;
    let d: Value =
        serde_json::from_str(&kubectl_ok(&sim, &["get", "deploy", "web", "-o", "json"]).await).expect("JSON");
    // the API server's defaults
    assert_eq!(s(&d, "/spec/strategy/type"), "RollingUpdate");
    assert_eq!(s(&d, "/spec/strategy/rollingUpdate/maxSurge"), "25%");
    assert_eq!(s(&d, "/spec/strategy/rollingUpdate/maxUnavailable"), "25%");
    assert_eq!(n(&d, "/spec/revisionHistoryLimit"), 10);
    assert_eq!(n(&d, "/spec/progressDeadlineSeconds"), 600);
    assert_eq!(s(&d, "/spec/template/spec/restartPolicy"), "Always");
    assert_eq!(s(&d, "/metadata/annotations/deployment.kubernetes.io~1revision"), "1");
    assert_eq!(n(&d, "/status/availableReplicas"), 3);
    let conditions: Vec<(String, String, String)> = d["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| (s(c, "/type").to_owned(), s(c, "/status").to_owned(), s(c, "/reason").to_owned()))
        .collect();
    assert!(
        conditions.contains(&("Available".into(), "True".into(), "MinimumReplicasAvailable".into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("Progressing".into(), "True".into(), "NewReplicaSetAvailable".into())),
        "{conditions:?}"
    );

    let first = replica_sets(&sim).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let (rs1, _, _, rev) = &first[0];
    assert_eq!(rev, "1");
    let pods: Value =
        serde_json::from_str(&kubectl_ok(&sim, &["get", "pods", "-l", "app=web", "-o", "json"]).await).expect("JSON");
    let hash = rs1.strip_prefix("web-").expect("named <deployment>-<hash>");
    for p in items(&pods) {
        assert_eq!(s(&p, "/metadata/labels/pod-template-hash"), hash);
        assert_eq!(s(&p, "/metadata/ownerReferences/0/kind"), "ReplicaSet");
        assert_eq!(s(&p, "/metadata/ownerReferences/0/name"), rs1);
    }
    let table = kubectl_ok(&sim, &["get", "deploy,rs"]).await;
    assert!(table.contains("READY   UP-TO-DATE   AVAILABLE"), "{table}");
    assert!(table.contains("deployment.apps/web   3/3     3            3"), "{table}");
    assert!(table.contains("DESIRED   CURRENT   READY"), "{table}");

    // a rolling update: a new ReplicaSet scales up, the old one down to zero
    kubectl_ok(&sim, &["set", "image", "deployment/web", "nginx=nginx:1.16"]).await;
    rolled_out(&sim).await;
    let second = replica_sets(&sim).await;
    assert_eq!(second.len(), 2, "{second:?}");
    let old = second.iter().find(|r| r.0 == *rs1).expect("the old ReplicaSet stays");
    assert_eq!(old.2, 0);
    let new = second.iter().find(|r| r.0 != *rs1).expect("a new ReplicaSet");
    assert_eq!((new.1.as_str(), new.2, new.3.as_str()), ("nginx:1.16", 3, "2"));
    let history = kubectl_ok(&sim, &["rollout", "history", "deployment/web"]).await;
    assert!(history.contains("REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>"), "{history}");

    // undo: back to the first template, through the first ReplicaSet, now revision 3
    kubectl_ok(&sim, &["rollout", "undo", "deployment/web"]).await;
    rolled_out(&sim).await;
    let third = replica_sets(&sim).await;
    assert_eq!(third.len(), 2, "{third:?}");
    let back = third.iter().find(|r| r.0 == *rs1).expect("the first ReplicaSet");
    assert_eq!((back.1.as_str(), back.2, back.3.as_str()), ("nginx:1.14", 3, "3"));
    let image =
        kubectl_ok(&sim, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).await;
    assert_eq!(image, "nginx:1.14");
    kubectl_ok(&sim, &["rollout", "undo", "deployment/web", "--to-revision=2"]).await;
    rolled_out(&sim).await;
    let image =
        kubectl_ok(&sim, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).await;
    assert_eq!(image, "nginx:1.16");

    // paused: a template change starts no rollout until resumed; scaling still works
    kubectl_ok(&sim, &["rollout", "pause", "deployment/web"]).await;
    kubectl_ok(&sim, &["set", "image", "deployment/web", "nginx=nginx:1.20"]).await;
    kubectl_ok(&sim, &["scale", "deployment", "web", "--replicas=4"]).await;
    eventually("the paused deployment scales", Duration::from_secs(20), || {
        let d = get_sync(&sim, &["get", "deploy", "web"]);
        (n(&d, "/status/availableReplicas") == 4).then_some(())
    })
    .await;
    let reason = kubectl_ok(
        &sim,
        &["get", "deploy", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"],
    )
    .await;
    assert_eq!(reason, "DeploymentPaused");
    assert!(replica_sets(&sim).await.iter().all(|r| r.1 != "nginx:1.20"), "a paused deployment rolls nothing out");
    kubectl_ok(&sim, &["rollout", "resume", "deployment/web"]).await;
    rolled_out(&sim).await;
    let rs = replica_sets(&sim).await;
    let newest = rs.iter().find(|r| r.1 == "nginx:1.20").expect("resumed: the new template rolls out");
    assert_eq!(newest.2, 4);
    assert!(rs.iter().filter(|r| r.1 != "nginx:1.20").all(|r| r.2 == 0), "{rs:?}");

    // delete cascades to the ReplicaSets and their pods
    kubectl_ok(&sim, &["delete", "deploy", "web"]).await;
    eventually("the ReplicaSets and pods are collected", Duration::from_secs(30), || {
        let rs = get_sync(&sim, &["get", "rs", "-l", "app=web"]);
        let pods = get_sync(&sim, &["get", "pods", "-l", "app=web"]);
        (rs.get("items").is_some() && items(&rs).is_empty() && pods.get("items").is_some() && items(&pods).is_empty())
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

const RECREATE: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: rec}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector: {matchLabels: {app: rec}}
  template:
    metadata: {labels: {app: rec}}
    spec: {containers: [{name: c, image: busybox:1}]}
";

#[tokio::test(flavor = "multi_thread")]
async fn recreate_stops_the_old_pods_before_starting_new_ones() {
    let sim = start().await;
    kubectl_stdin(&sim, &["apply", "-f", "-"], Some(RECREATE)).await;
    kubectl_ok(&sim, &["rollout", "status", "deployment/rec", "--timeout=60s"]).await;
    kubectl_ok(&sim, &["set", "image", "deployment/rec", "c=busybox:2"]).await;
    eventually("the new pods run", Duration::from_secs(30), || {
        let pods = items(&get_sync(&sim, &["get", "pods", "-l", "app=rec"]));
        let images: Vec<&str> = pods.iter().map(|p| s(p, "/spec/containers/0/image")).collect();
        assert!(
            !(images.contains(&"busybox:1") && images.contains(&"busybox:2")),
            "old and new pods at once: {images:?}"
        );
        (images == ["busybox:2", "busybox:2"]).then_some(())
    })
    .await;
    sim.shutdown().await;
}

const ORPHAN: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: orphan, labels: {app: fe}}
spec: {containers: [{name: c, image: nginx:1}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: fe}
spec:
  replicas: 2
  selector: {matchLabels: {app: fe}}
  template:
    metadata: {labels: {app: fe}}
    spec: {containers: [{name: c, image: nginx:1}]}
";

#[tokio::test(flavor = "multi_thread")]
async fn replicaset_adopts_and_scales() {
    let sim = start().await;
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(ORPHAN)).await;
    assert!(out.ok, "{}", out.stderr);
    let count = |want: usize| {
        let sim = &sim;
        move || {
            let pods = items(&get_sync(sim, &["get", "pods", "-l", "app=fe"]));
            let active = pods.iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).count();
            let rs = get_sync(sim, &["get", "rs", "fe"]);
            (active == want && n(&rs, "/status/readyReplicas") == i64::try_from(want).unwrap_or(0)).then_some(pods)
        }
    };
    let pods = eventually("two pods", Duration::from_secs(20), count(2)).await;
    let orphan = pods.iter().find(|p| s(p, "/metadata/name") == "orphan").expect("the orphan is kept");
    assert_eq!(s(orphan, "/metadata/ownerReferences/0/name"), "fe", "adopted");
    kubectl_ok(&sim, &["scale", "replicaset", "fe", "--replicas=4"]).await;
    eventually("four pods", Duration::from_secs(20), count(4)).await;
    let table = kubectl_ok(&sim, &["get", "rs", "fe"]).await;
    assert!(table.contains("fe     4         4         4"), "{table}");
    kubectl_ok(&sim, &["scale", "rs", "fe", "--replicas=1"]).await;
    eventually("one pod", Duration::from_secs(20), count(1)).await;
    let out = kubectl(&sim, &["get", "rs", "fe", "-o", "jsonpath={.status.observedGeneration}"]).await;
    assert_eq!(out.stdout, "3");
    sim.shutdown().await;
}
