//! IdentitySets beyond the StatefulSet controller, on the stand-in, driven with kubectl: reserved
//! ordinals and paused rollouts (as OpenKruise's Advanced StatefulSet), a broken rollout that recovers
//! when reverted (`rolloutRecovery: Replace`) beside upstream's freeze (the default), and claims that
//! follow their template (`volumeClaimUpdatePolicy`). docs/design.md, "Beyond the StatefulSet
//! controller", has the behaviour tables; tests/real_identity_beyond.rs runs the same on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity_support;

use std::time::Duration;

use identity_support::scenarios::{self as s, pod};
use identity_support::{Cluster, Kind, SERVICE, set_manifest};
use serde_json::Value;

const K: Kind = Kind::IdentitySet;
const V1: &str = "nginx:1.24";

/// A template whose pods never become Ready (the stand-in's kubelet honours the label, as kwok does).
const BREAK: &str = r#"[{"op":"add","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready","value":"true"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.25"}]"#;
/// The same template reverted.
const REVERT: &str = r#"[{"op":"remove","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.24"}]"#;

async fn create(c: &Cluster, replicas: i32, extra: &str) {
    c.apply(SERVICE).await;
    c.apply(&set_manifest(K, "web", replicas, V1, extra)).await;
}

async fn pod_names(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = c
        .pods()
        .await
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn condition<'a>(set: &'a Value, type_: &str) -> Option<&'a Value> {
    set["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_ && c["status"] == "True")
}

async fn json_patch(c: &Cluster, patch: &str) {
    c.kubectl_ok(&["patch", "identityset", "web", "--type=json", "-p", patch]).await;
}

fn revision(p: &Value) -> &str {
    p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_ordinals_are_never_created_and_replicas_counts_the_others() {
    let c = Cluster::start(K).await;
    create(&c, 3, "  reserveOrdinals: [1]\n").await;
    c.wait_settled("web", 3).await;
    assert_eq!(pod_names(&c).await, ["web-0", "web-2", "web-3"]);
    let claims = c.kubectl_ok(&["get", "pvc", "-o", "custom-columns=NAME:.metadata.name", "--no-headers"]).await;
    assert_eq!(claims.split_whitespace().collect::<Vec<_>>(), ["www-web-0", "www-web-2", "www-web-3"]);
    // Reserving an ordinal that has a pod condemns it, as a scale-down would; the next free one replaces it.
    s::patch(&c, r#"{"spec":{"reserveOrdinals":[1,"2-3"]}}"#).await;
    c.eventually("web-2 and web-3 gone, web-4 and web-5 up", Duration::from_secs(60), async |c| {
        (pod_names(c).await == ["web-0", "web-4", "web-5"]).then_some(())
    })
    .await;
    c.wait_settled("web", 3).await;
    let wide = c.kubectl_ok(&["get", "identityset", "web", "-o", "wide"]).await;
    assert!(wide.contains("RESERVED") && wide.contains(r#"[1,"2-3"]"#), "{wide}");
    let explain = c.kubectl_ok(&["explain", "identitysets.spec.reserveOrdinals"]).await;
    assert!(explain.contains("OpenKruise"), "{explain}");
    // A malformed entry the schema cannot catch (a > b) is a condition, and nothing moves.
    s::patch(&c, r#"{"spec":{"reserveOrdinals":["3-2"]}}"#).await;
    c.eventually("InvalidSpec names reserveOrdinals", Duration::from_secs(30), async |c| {
        condition(&c.set_json("web").await, "InvalidSpec")
            .is_some_and(|x| x["message"].as_str().unwrap_or("").contains("reserveOrdinals"))
            .then_some(())
    })
    .await;
    assert_eq!(pod_names(&c).await, ["web-0", "web-4", "web-5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_rollout_holds_and_kubectl_patch_resumes_it() {
    let c = Cluster::start(K).await;
    create(&c, 3, "").await;
    c.wait_settled("web", 3).await;
    let old = s::update_revision(&c).await;
    s::patch(&c, r#"{"spec":{"updateStrategy":{"rollingUpdate":{"paused":true}}}}"#).await;
    s::set_image(&c, "nginx:1.25").await;
    let paused = c
        .eventually("RolloutPaused", Duration::from_secs(30), async |c| {
            let set = c.set_json("web").await;
            condition(&set, "RolloutPaused").map(|x| x["message"].as_str().unwrap_or("").to_owned())
        })
        .await;
    assert!(paused.contains("0 of 3"), "{paused}");
    // Scaling goes on while paused: the new ordinal gets the revision its position calls for.
    s::scale(&c, 4).await;
    let new = c
        .eventually("web-3 ready", Duration::from_secs(30), async |c| {
            let p = pod(c, "web-3").await?;
            (p["status"]["phase"] == "Running").then(|| revision(&p).to_owned())
        })
        .await;
    assert_ne!(new, old, "web-3 is created at the update revision");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in ["web-0", "web-1", "web-2"] {
        assert_eq!(revision(&pod(&c, n).await.unwrap()), old, "{n} was replaced while paused");
    }
    let wide = c.kubectl_ok(&["get", "identityset", "web", "-o", "wide"]).await;
    assert!(wide.contains("PAUSED") && wide.contains("true"), "{wide}");
    s::patch(&c, r#"{"spec":{"updateStrategy":{"rollingUpdate":{"paused":false}}}}"#).await;
    c.wait_settled("web", 4).await;
    assert!(condition(&c.set_json("web").await, "RolloutPaused").is_none(), "the condition goes with the pause");
}

/// Break the template (pods never Ready), wait until web-2 is stuck at the broken revision, revert.
async fn break_then_revert(c: &Cluster) -> String {
    c.wait_settled("web", 3).await;
    json_patch(c, BREAK).await;
    let broken = c
        .eventually("web-2 stuck at the broken revision", Duration::from_secs(60), async |c| {
            let p = pod(c, "web-2").await?;
            let stuck = p["metadata"]["labels"]["roster.dev/test-never-ready"] == "true"
                && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null();
            stuck.then(|| revision(&p).to_owned())
        })
        .await;
    json_patch(c, REVERT).await;
    broken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rollout_recovers_when_reverted_with_rollout_recovery_replace() {
    let c = Cluster::start(K).await;
    create(&c, 3, "  rolloutRecovery: Replace\n").await;
    let broken = break_then_revert(&c).await;
    // No manual step: the stuck pod is replaced at the reverted revision.
    c.wait_settled("web", 3).await;
    for p in c.pods().await {
        assert_ne!(revision(&p), broken);
    }
    let set = c.set_json("web").await;
    let message = condition(&set, "RolloutRecovery").expect("RolloutRecovery condition")["message"].clone();
    assert!(message.as_str().unwrap().contains("web-2"), "{message}");
    let notes = c.event_notes().await;
    assert!(
        notes.iter().any(|n| n.starts_with("Replace Pod web-2 (revision ") && n.contains("not Ready")),
        "{notes:#?}"
    );
    // Only the stuck pod was replaced (web-0 and web-1 never left the good revision).
    let e = c.timeline.entries();
    assert!(identity_support::pos(&e, "web-1", |s| *s == identity_support::Step::Terminating).is_none());
}

/// A fix instead of a revert (a third revision), Parallel with maxUnavailable 2: both stuck pods are
/// replaced at once (the budget allows two), then the rollout goes on to web-0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_parallel_rollout_recovers_when_fixed_within_max_unavailable() {
    let c = Cluster::start(K).await;
    let extra = "  rolloutRecovery: Replace\n  podManagementPolicy: Parallel\n  updateStrategy: {rollingUpdate: {maxUnavailable: 2}}\n";
    create(&c, 3, extra).await;
    c.wait_settled("web", 3).await;
    let original = s::update_revision(&c).await;
    json_patch(&c, BREAK).await;
    let broken = c
        .eventually("web-1 and web-2 stuck at the broken revision", Duration::from_secs(60), async |c| {
            let mut revs = Vec::new();
            for n in ["web-1", "web-2"] {
                let p = pod(c, n).await?;
                let stuck = p["metadata"]["labels"]["roster.dev/test-never-ready"] == "true"
                    && p["status"]["phase"] == "Running";
                stuck.then_some(())?;
                revs.push(revision(&p).to_owned());
            }
            (revs[0] == revs[1]).then(|| revs[0].clone())
        })
        .await;
    let fix = r#"[{"op":"remove","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.26"}]"#;
    json_patch(&c, fix).await;
    c.wait_settled("web", 3).await;
    let fixed = s::update_revision(&c).await;
    assert!(fixed != original && fixed != broken);
    for p in c.pods().await {
        assert_eq!(revision(&p), fixed);
    }
    let notes = c.event_notes().await;
    for n in ["web-1", "web-2"] {
        assert!(notes.iter().any(|x| x.starts_with(&format!("Replace Pod {n} (revision {broken}"))), "{notes:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rollout_recovery_a_reverted_rollout_stays_frozen_as_upstream() {
    let c = Cluster::start(K).await;
    create(&c, 3, "").await;
    let broken = break_then_revert(&c).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stuck = pod(&c, "web-2").await.unwrap();
    assert_eq!(revision(&stuck), broken, "upstream's freeze: the stuck pod stays");
    assert!(condition(&c.set_json("web").await, "RolloutRecovery").is_none());
    // The manual step upstream needs.
    c.kubectl_ok(&["delete", "pod", "web-2"]).await;
    c.wait_settled("web", 3).await;
}

/// A StorageClass of the stand-in's provisioner that allows expansion.
const EXPANDABLE: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: expandable}\nprovisioner: roster.dev/sim-hostpath\nallowVolumeExpansion: true\n";

async fn claims(c: &Cluster) -> Vec<(String, String, String)> {
    let v = c.get_json(&["pvc"]).await;
    let mut out: Vec<(String, String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["spec"]["resources"]["requests"]["storage"].as_str().unwrap_or("").to_owned(),
                p["status"]["capacity"]["storage"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

const GROW: &str =
    r#"[{"op":"replace","path":"/spec/volumeClaimTemplates/0/spec/resources/requests/storage","value":"2Gi"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_grow_to_their_template_ordinal_by_ordinal() {
    let c = Cluster::start(K).await;
    c.apply(EXPANDABLE).await;
    let class = "  volumeClaimUpdatePolicy: InPlace\n";
    c.apply(SERVICE).await;
    let manifest = set_manifest(K, "web", 3, V1, class).replace(
        "      accessModes: [\"ReadWriteOnce\"]\n",
        "      accessModes: [\"ReadWriteOnce\"]\n      storageClassName: expandable\n",
    );
    c.apply(&manifest).await;
    c.wait_settled("web", 3).await;
    json_patch(&c, GROW).await;
    c.eventually("every claim at 2Gi", Duration::from_secs(60), async |c| {
        claims(c).await.iter().all(|(_, req, cap)| req == "2Gi" && cap == "2Gi").then_some(())
    })
    .await;
    let set = c
        .eventually("status.volumeClaims complete", Duration::from_secs(30), async |c| {
            let set = c.set_json("web").await;
            (set["status"]["volumeClaims"][0]["resized"] == 3).then_some(set)
        })
        .await;
    assert_eq!(set["status"]["volumeClaims"][0]["storage"], "2Gi");
    assert_eq!(set["status"]["volumeClaims"][0]["claims"], 3);
    let notes: Vec<String> = c.event_notes().await.into_iter().filter(|n| n.starts_with("Resize Claim")).collect();
    assert_eq!(
        notes,
        [0, 1, 2].map(|i| format!("Resize Claim www-web-{i} from 1Gi to 2Gi in IdentitySet web")),
        "one claim at a time, in ordinal order"
    );
    // A new ordinal's claim is made at the new size.
    s::scale(&c, 4).await;
    c.wait_settled("web", 4).await;
    assert!(claims(&c).await.contains(&("www-web-3".into(), "2Gi".into(), "2Gi".into())));
    c.eventually("VolumeClaimsResizing gone", Duration::from_secs(30), async |c| {
        condition(&c.set_json("web").await, "VolumeClaimsResizing").is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_cannot_grow_and_other_template_changes_are_reported() {
    let c = Cluster::start(K).await;
    create(&c, 2, "  volumeClaimUpdatePolicy: InPlace\n").await;
    c.wait_settled("web", 2).await;
    // The stand-in's admission, as kube-apiserver's: no growth without allowVolumeExpansion, no shrinking.
    let grow = c
        .kubectl(&["patch", "pvc", "www-web-0", "-p", r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#])
        .await;
    assert!(
        !grow.ok && grow.stderr.contains("storageclass that provisions the pvc must support resize"),
        "{}",
        grow.stderr
    );
    let shrink = c
        .kubectl(&["patch", "pvc", "www-web-0", "-p", r#"{"spec":{"resources":{"requests":{"storage":"500Mi"}}}}"#])
        .await;
    assert!(!shrink.ok && shrink.stderr.contains("can not be less than status.capacity"), "{}", shrink.stderr);

    json_patch(&c, GROW).await;
    let failed = c
        .eventually("VolumeClaimResizeFailed", Duration::from_secs(30), async |c| {
            condition(&c.set_json("web").await, "VolumeClaimResizeFailed")
                .map(|x| x["message"].as_str().unwrap().to_owned())
        })
        .await;
    assert!(failed.contains("www-web-0") && failed.contains("must support resize"), "{failed}");
    assert!(!failed.contains("www-web-1"), "ordinal by ordinal: web-1 is not tried while web-0 fails: {failed}");
    assert!(claims(&c).await.iter().all(|(_, req, _)| req == "1Gi"));
    assert!(c.event_notes().await.iter().any(|n| n.contains("cannot grow")));

    // OnClaimDelete: nothing grows, and every difference is said, not ignored.
    s::patch(&c, r#"{"spec":{"volumeClaimUpdatePolicy":"OnClaimDelete"}}"#).await;
    json_patch(
        &c,
        r#"[{"op":"replace","path":"/spec/volumeClaimTemplates/0/spec/accessModes","value":["ReadWriteMany"]}]"#,
    )
    .await;
    let changed = c
        .eventually("VolumeClaimTemplateChanged", Duration::from_secs(30), async |c| {
            let set = c.set_json("web").await;
            let m = condition(&set, "VolumeClaimTemplateChanged")?["message"].as_str()?.to_owned();
            (m.contains("accessModes") && condition(&set, "VolumeClaimResizeFailed").is_none()).then_some(m)
        })
        .await;
    assert!(changed.contains("storage 2Gi") && changed.contains("www-web-0, www-web-1"), "{changed}");
    assert!(c.set_json("web").await["status"]["volumeClaims"].is_null(), "progress is InPlace's only");
    // New claims get the template as it is now.
    s::scale(&c, 3).await;
    c.wait_settled("web", 3).await;
    let v = c.get_json(&["pvc", "www-web-2"]).await;
    assert_eq!(v["spec"]["accessModes"][0], "ReadWriteMany");
    assert_eq!(v["spec"]["resources"]["requests"]["storage"], "2Gi");
}
