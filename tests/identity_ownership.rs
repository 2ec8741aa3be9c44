//! Ownership, as upstream's ControllerRefManager keeps it, driven with kubectl against the stand-in: a set
//! adopts only orphans that match it (with a patch conditional on the pod's UID and resourceVersion),
//! releases pods that stop matching, and an IdentitySet never takes a claim or pod that belongs to
//! something else — it says why, in a Warning Event and its `OwnershipConflict` condition.
#![allow(clippy::unwrap_used)]

mod identity_support;

use std::time::Duration;

use identity_support::{Cluster, Kind, SERVICE, set_manifest};
use serde_json::Value;

/// An IdentitySet `name` selecting `app: <label>` with one claim template `template`.
fn identityset(name: &str, label: &str, template: &str, extra: &str) -> String {
    format!(
        "apiVersion: roster.dev/v1\nkind: IdentitySet\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: {label}}}}}\n  template:\n    metadata: {{labels: {{app: {label}}}}}\n    \
         spec: {{containers: [{{name: c, image: nginx:1.24}}]}}\n  volumeClaimTemplates:\n  - metadata: {{name: {template}}}\n    \
         spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n{extra}"
    )
}

/// The set's `OwnershipConflict` condition message, once it has one.
async fn conflict(c: &Cluster, resource: &str, name: &str) -> Option<String> {
    let set = c.get_json(&[resource, name]).await;
    set["status"]["conditions"].as_array()?.iter().find(|x| x["type"] == "OwnershipConflict").map(|x| {
        assert_eq!(x["status"], "True");
        x["message"].as_str().unwrap_or("").to_owned()
    })
}

async fn warnings(c: &Cluster, reason: &str) -> Vec<String> {
    let v = c.get_json(&["events.v1.events.k8s.io"]).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "Warning" && e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| a.iter().map(|r| r["uid"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Template `data-web` of set `db` and template `data` of set `web-db` both name `data-web-db-0`. The old
/// controller mounted db's claim in web-db-0 and made web-db its owner, so deleting web-db collected it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_named_like_another_sets_is_not_taken() {
    let c = Cluster::start(Kind::IdentitySet).await;
    c.apply(&identityset("db", "db", "data-web", "")).await;
    c.wait_settled("db", 1).await;

    let retention = "  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n";
    c.apply(&identityset("web-db", "webdb", "data", retention)).await;
    // Either the controller reports the conflict, or (the old one) it creates web-db-0 on db's claim.
    c.eventually("web-db acts", Duration::from_secs(20), async |c| {
        let created = c.kubectl(&["get", "pod", "web-db-0"]).await.ok;
        (created || conflict(c, "identityset", "web-db").await.is_some()).then_some(())
    })
    .await;
    // Nothing was taken: no pod mounts it, and its owners are as db left them.
    assert!(!c.kubectl(&["get", "pod", "web-db-0"]).await.ok, "web-db-0 was created on db's claim");
    assert!(owner_uids(&c.get_json(&["pvc", "data-web-db-0"]).await).is_empty(), "web-db owns db's claim");
    let why = conflict(&c, "identityset", "web-db").await.unwrap();
    assert!(why.contains("data-web-db-0") && why.contains("db/data-web"), "{why}");
    let notes = warnings(&c, "OwnershipConflict").await;
    assert!(notes.iter().any(|n| n.contains("data-web-db-0")), "{notes:?}");
    let claim = c.get_json(&["pvc", "data-web-db-0"]).await;
    assert_eq!(claim["metadata"]["annotations"]["roster.dev/claim-of"], "db/data-web");

    // Deleting web-db leaves db's claim alone.
    c.kubectl_ok(&["delete", "identityset", "web-db", "--wait=true"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.kubectl(&["get", "pvc", "data-web-db-0"]).await.ok, "db's claim was collected with web-db");
}

/// A pod named like an ordinal but controlled by something else is neither adopted nor replaced; the
/// IdentitySet says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_another_controller_is_not_taken() {
    let c = Cluster::start(Kind::IdentitySet).await;
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: boss}\n").await;
    let boss = c.get_json(&["configmap", "boss"]).await["metadata"]["uid"].as_str().unwrap().to_owned();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  labels: {{app: nginx}}\n  ownerReferences:\n  \
         - {{apiVersion: v1, kind: ConfigMap, name: boss, uid: {boss}, controller: true}}\n\
         spec: {{containers: [{{name: nginx, image: nginx:1.24}}]}}\n"
    ))
    .await;
    c.apply(SERVICE).await;
    c.apply(&set_manifest(Kind::IdentitySet, "web", 1, "nginx:1.24", "")).await;
    let why = c
        .eventually("web reports the conflict", Duration::from_secs(20), async |c| {
            conflict(c, "identityset", "web").await
        })
        .await;
    assert!(why.contains("pod web-0") && why.contains("ConfigMap boss"), "{why}");
    assert!(warnings(&c, "OwnershipConflict").await.iter().any(|n| n.contains("pod web-0")));
    let pod = c.get_json(&["pod", "web-0"]).await;
    assert_eq!(owner_uids(&pod), [boss], "the pod changed hands");
    assert!(pod["metadata"]["deletionTimestamp"].is_null(), "the pod was deleted");
}

/// Adoption patches name the pod's UID and resourceVersion (a pod recreated or changed since the cache
/// saw it is not adopted blindly), and a pod that stops matching the selector is released.
async fn adopt_and_release(kind: Kind) {
    let c = Cluster::start(kind).await;
    c.apply(SERVICE).await;
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, labels: {app: nginx}}\n\
         spec: {containers: [{name: nginx, image: nginx:1.24}]}\n",
    )
    .await;
    let orphan = c.get_json(&["pod", "web-0"]).await["metadata"]["uid"].as_str().unwrap().to_owned();
    c.apply(&set_manifest(kind, "web", 1, "nginx:1.24", "")).await;
    c.wait_settled("web", 1).await;
    let set_uid = c.set_json("web").await["metadata"]["uid"].as_str().unwrap().to_owned();

    let patches = c.api.patches("/pods/web-0");
    let adoption = patches
        .iter()
        .find(|p| p["metadata"]["ownerReferences"].to_string().contains(&set_uid))
        .unwrap_or_else(|| panic!("no adoption patch: {patches:?}"));
    assert_eq!(adoption["metadata"]["uid"], orphan.as_str(), "{adoption}");
    assert!(adoption["metadata"]["resourceVersion"].is_string(), "{adoption}");

    // Relabelled out of the selector: released (its controller reference removed), as upstream.
    c.kubectl_ok(&["label", "pod", "web-0", "app=elsewhere", "--overwrite"]).await;
    c.eventually("web-0 released", Duration::from_secs(20), async |c| {
        let pod = c.get_json(&["pod", "web-0"]).await;
        (!owner_uids(&pod).contains(&set_uid)).then_some(())
    })
    .await;
    let release = c.api.patches("/pods/web-0").pop().unwrap();
    assert!(release["metadata"]["uid"].is_string(), "{release}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_adopts_with_preconditions_and_releases() {
    adopt_and_release(Kind::StatefulSet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identityset_adopts_with_preconditions_and_releases() {
    adopt_and_release(Kind::IdentitySet).await;
}

/// A set deleted with `--cascade=orphan` and created again adopts its old ControllerRevisions (its
/// pods keep their revision), with a patch conditional on the revision's UID and resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_revisions_are_adopted_with_preconditions() {
    let c = Cluster::start(Kind::StatefulSet).await;
    c.apply(SERVICE).await;
    c.apply(&set_manifest(Kind::StatefulSet, "web", 1, "nginx:1.24", "")).await;
    c.wait_settled("web", 1).await;
    let revisions = c.get_json(&["controllerrevisions"]).await;
    let revision = revisions["items"][0]["metadata"].clone();
    let (name, uid) = (revision["name"].as_str().unwrap().to_owned(), revision["uid"].as_str().unwrap().to_owned());
    c.kubectl_ok(&["delete", "statefulset", "web", "--cascade=orphan"]).await;
    c.eventually("the revision orphaned", Duration::from_secs(20), async |c| {
        let r = c.get_json(&["controllerrevision", &name]).await;
        r["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty).then_some(())
    })
    .await;
    c.apply(&set_manifest(Kind::StatefulSet, "web", 1, "nginx:1.24", "")).await;
    c.wait_settled("web", 1).await;
    let set_uid = c.set_json("web").await["metadata"]["uid"].as_str().unwrap().to_owned();
    let patches = c.api.patches(&format!("/controllerrevisions/{name}"));
    let adoption = patches
        .iter()
        .find(|p| p["metadata"]["ownerReferences"].to_string().contains(&set_uid))
        .unwrap_or_else(|| panic!("no adoption patch of {name}: {patches:?}"));
    assert_eq!(adoption["metadata"]["uid"], uid.as_str(), "{adoption}");
    assert!(adoption["metadata"]["resourceVersion"].is_string(), "{adoption}");
}
