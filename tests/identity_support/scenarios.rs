//! The seed workflows, each a function of the set kind, asserting the observable order of pod
//! transitions (from a watch) and Events, not only end states.

use std::time::Duration;

use serde_json::Value;

use super::*;

const V1: &str = "nginx:1.24";
const V2: &str = "nginx:1.25";

fn pod_names(n: i32) -> Vec<String> {
    (0..n).map(|i| format!("web-{i}")).collect()
}

/// A pod's JSON by name, if it exists.
pub async fn pod(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]).await;
    out.ok.then(|| serde_json::from_str(&out.stdout).unwrap())
}

fn revision_of(p: &Value) -> String {
    p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("").to_owned()
}

fn image_of(p: &Value) -> String {
    p["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_owned()
}

fn uid_of(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap_or("").to_owned()
}

fn is_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        && p["metadata"]["deletionTimestamp"].is_null()
}

/// Change the template's image: `kubectl set image` for StatefulSets (as the seeds do), a JSON patch for
/// IdentitySets (kubectl's `set image` knows only built-in kinds).
pub async fn set_image(c: &Cluster, image: &str) {
    match c.kind {
        Kind::StatefulSet => {
            c.kubectl_ok(&["set", "image", "statefulset/web", &format!("nginx={image}")]).await;
        }
        Kind::IdentitySet => {
            let patch =
                format!(r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"{image}"}}]"#);
            c.kubectl_ok(&["patch", "identityset", "web", "--type=json", "-p", &patch]).await;
        }
    }
}

/// `kubectl scale` through the /scale subresource.
pub async fn scale(c: &Cluster, n: i32) {
    c.kubectl_ok(&["scale", c.kind.resource(), "web", &format!("--replicas={n}")]).await;
}

/// A merge patch of the set.
pub async fn patch(c: &Cluster, p: &str) {
    c.kubectl_ok(&["patch", c.kind.resource(), "web", "--type=merge", "-p", p]).await;
}

/// The set's `status.updateRevision`.
pub async fn update_revision(c: &Cluster) -> String {
    c.set_json("web").await["status"]["updateRevision"].as_str().unwrap_or("").to_owned()
}

async fn pvc_uids(c: &Cluster) -> std::collections::BTreeMap<String, String> {
    c.get_json(&["pvc"]).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_owned(), uid_of(p)))
        .collect()
}

async fn all_bound(c: &Cluster, names: &[String]) -> bool {
    let v = c.get_json(&["pvc"]).await;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    names.iter().all(|n| items.iter().any(|p| p["metadata"]["name"] == n.as_str() && p["status"]["phase"] == "Bound"))
}

/// Wait until pods `names` are ready at revision `rev`.
async fn wait_pods_at(c: &Cluster, names: &[&str], rev: &str) {
    c.eventually(&format!("{names:?} ready at {rev}"), Duration::from_secs(60), async |c| {
        for n in names {
            let p = pod(c, n).await?;
            if !(is_ready(&p) && revision_of(&p) == rev) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn create_set(c: &Cluster, replicas: i32, extra: &str) {
    c.apply(SERVICE).await;
    c.apply(&set_manifest(c.kind, "web", replicas, V1, extra)).await;
    c.wait_settled("web", i64::from(replicas)).await;
}

/// Create: pods 0, 1, 2 one at a time, each after its predecessor is Running and Ready; claims
/// `www-web-N` created before their pods and bound; identity on every pod; upstream-format Events; a
/// ControllerRevision; with `dns`, every pod name and the service name resolve through roster's DNS.
pub async fn create_in_order(kind: Kind, dns: bool) {
    let mut c = Cluster::start(kind).await;
    if dns {
        c.start_dns().await;
    }
    create_set(&c, 3, "").await;
    let e = c.timeline.entries();
    for i in 0..3 {
        let p = format!("web-{i}");
        assert!(created(&e, &p) < ready(&e, &p));
        if i < 2 {
            let next = format!("web-{}", i + 1);
            assert!(
                ready(&e, &p) < created(&e, &next),
                "{next} created before {p} was ready:\n{}",
                Timeline::render(&e)
            );
        }
        let n = e.iter().filter(|x| x.pod == p && matches!(x.step, Step::Created { .. })).count();
        assert_eq!(n, 1, "{p} created more than once:\n{}", Timeline::render(&e));
    }

    let set = c.set_json("web").await;
    let rev = set["status"]["updateRevision"].as_str().unwrap().to_owned();
    assert!(rev.starts_with("web-"), "{rev}");
    assert_eq!(set["status"]["currentRevision"], rev.as_str());
    assert_eq!(set["status"]["availableReplicas"], 3);
    assert_eq!(set["status"]["currentReplicas"], 3);
    assert_eq!(set["status"]["collisionCount"], 0);
    for i in 0..3 {
        let name = format!("web-{i}");
        let p = pod(&c, &name).await.unwrap();
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "nginx");
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name.as_str());
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string().as_str());
        assert_eq!(labels["controller-revision-hash"], rev.as_str());
        assert_eq!(labels["app"], "nginx");
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], kind.kind());
        assert_eq!(owner["name"], "web");
        assert_eq!(owner["controller"], true);
        let claim = p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "www")
            .map(|v| v["persistentVolumeClaim"]["claimName"].clone());
        assert_eq!(claim, Some(Value::from(format!("www-web-{i}"))));
    }
    let claims: Vec<String> = (0..3).map(|i| format!("www-web-{i}")).collect();
    c.eventually("claims bound", Duration::from_secs(20), async |c| all_bound(c, &claims).await.then_some(())).await;

    // Events, in upstream's words and order: each claim before its pod, ordinals ascending.
    let notes = c.event_notes().await;
    let k = kind.kind();
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(format!("Create Claim www-web-{i} Pod web-{i} in {k} web success"));
        expected.push(format!("Create Pod web-{i} in {k} web successful"));
    }
    let positions: Vec<usize> = expected
        .iter()
        .map(|x| notes.iter().position(|n| n == x).unwrap_or_else(|| panic!("no event {x:?} in {notes:#?}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "events out of order: {notes:#?}");

    let revs = c.get_json(&["controllerrevisions"]).await;
    let revs = revs["items"].as_array().unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0]["metadata"]["name"], rev.as_str());
    assert_eq!(revs[0]["revision"], 1);

    let table = c.kubectl_ok(&["get", kind.resource(), "web"]).await;
    assert!(table.contains("3/3"), "READY column: {table}");

    if dns {
        for i in 0..3 {
            let name = format!("web-{i}");
            let ip = pod(&c, &name).await.unwrap()["status"]["podIP"].as_str().unwrap().to_owned();
            let fqdn = format!("{name}.nginx.default.svc.cluster.local");
            c.eventually(&format!("{fqdn} → {ip}"), Duration::from_secs(20), async |c| {
                (c.dig(&fqdn).await == vec![ip.clone()]).then_some(())
            })
            .await;
        }
        let mut ips: Vec<String> = Vec::new();
        for p in c.pods().await {
            ips.push(p["status"]["podIP"].as_str().unwrap().to_owned());
        }
        ips.sort();
        c.eventually("the service name lists every pod", Duration::from_secs(20), async |c| {
            (c.dig("nginx.default.svc.cluster.local").await == ips).then_some(())
        })
        .await;
        let web0 = pod(&c, "web-0").await.unwrap()["status"]["podIP"].as_str().unwrap().to_owned();
        let answer = c.nslookup("web-0.nginx.default.svc.cluster.local").await;
        assert!(answer.contains(&web0), "nslookup: {answer}");
        // A scaled-away ordinal's name goes with its pod.
        scale(&c, 2).await;
        c.wait_settled("web", 2).await;
        c.eventually("web-2's name is gone", Duration::from_secs(20), async |c| {
            c.dig("web-2.nginx.default.svc.cluster.local").await.is_empty().then_some(())
        })
        .await;
        let answer = c.nslookup("web-2.nginx.default.svc.cluster.local").await;
        assert!(answer.contains("NXDOMAIN"), "nslookup: {answer}");
    }
}

/// Scale up (new ordinals in order, each after its predecessor is ready) and down (highest first, the
/// next only once the previous is gone); claims of scaled-away ordinals are retained.
pub async fn scale_up_and_down(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 2, "").await;
    let mark = c.timeline.mark();
    scale(&c, 5).await;
    c.wait_settled("web", 5).await;
    let e = c.timeline.since(mark);
    for i in 2..5 {
        let p = format!("web-{i}");
        assert!(created(&e, &p) < ready(&e, &p));
        if i < 4 {
            let next = format!("web-{}", i + 1);
            assert!(ready(&e, &p) < created(&e, &next), "{next} before {p} ready:\n{}", Timeline::render(&e));
        }
    }

    let mark = c.timeline.mark();
    patch(&c, r#"{"spec":{"replicas":2}}"#).await;
    c.wait_settled("web", 2).await;
    c.eventually("web-2..4 gone", Duration::from_secs(30), async |c| {
        let e = c.timeline.since(mark);
        ["web-2", "web-3", "web-4"].iter().all(|p| pos(&e, p, |s| *s == Step::Gone).is_some()).then_some(())
    })
    .await;
    let e = c.timeline.since(mark);
    assert!(terminating(&e, "web-4") < gone(&e, "web-4"));
    assert!(
        gone(&e, "web-4") < terminating(&e, "web-3"),
        "web-3 went before web-4 was gone:\n{}",
        Timeline::render(&e)
    );
    assert!(
        gone(&e, "web-3") < terminating(&e, "web-2"),
        "web-2 went before web-3 was gone:\n{}",
        Timeline::render(&e)
    );
    assert!(pos(&e, "web-0", |s| *s == Step::Terminating).is_none());
    assert!(pos(&e, "web-1", |s| *s == Step::Terminating).is_none());
    let notes = c.event_notes().await;
    assert!(notes.contains(&format!("Delete Pod web-4 in {} web successful", kind.kind())), "{notes:#?}");
    // Retained by default.
    let claims = pvc_uids(&c).await;
    for i in 0..5 {
        assert!(claims.contains_key(&format!("www-web-{i}")), "claim www-web-{i} was deleted: {claims:?}");
    }
}

/// Delete a pod: the same name comes back, with a new uid and a new IP; with `dns`, the name follows.
pub async fn delete_pod_returns(kind: Kind, dns: bool) {
    let mut c = Cluster::start(kind).await;
    if dns {
        c.start_dns().await;
    }
    create_set(&c, 3, "").await;
    let old = pod(&c, "web-1").await.unwrap();
    let old_ip = old["status"]["podIP"].as_str().unwrap().to_owned();
    if dns {
        c.eventually("web-1 resolves", Duration::from_secs(20), async |c| {
            (c.dig("web-1.nginx.default.svc.cluster.local").await == vec![old_ip.clone()]).then_some(())
        })
        .await;
    }
    let mark = c.timeline.mark();
    c.kubectl_ok(&["delete", "pod", "web-1"]).await;
    let new = c
        .eventually("web-1 back and ready", Duration::from_secs(30), async |c| {
            let p = pod(c, "web-1").await?;
            (uid_of(&p) != uid_of(&old) && is_ready(&p)).then_some(p)
        })
        .await;
    let new_ip = new["status"]["podIP"].as_str().unwrap().to_owned();
    assert_ne!(new_ip, old_ip, "the new pod has a new IP");
    assert_eq!(new["spec"]["hostname"], "web-1");
    let e = c.timeline.since(mark);
    assert!(gone(&e, "web-1") < created(&e, "web-1"), "{}", Timeline::render(&e));
    for other in ["web-0", "web-2"] {
        assert!(pos(&e, other, |s| *s == Step::Terminating).is_none(), "{}", Timeline::render(&e));
    }
    assert_eq!(
        new["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "www").unwrap()["persistentVolumeClaim"]
            ["claimName"],
        "www-web-1"
    );
    if dns {
        c.eventually("web-1 resolves to its new IP", Duration::from_secs(20), async |c| {
            (c.dig("web-1.nginx.default.svc.cluster.local").await == vec![new_ip.clone()]).then_some(())
        })
        .await;
    }
}

/// A template change rolls pods in reverse ordinal order, one at a time: the next pod is deleted only
/// once the previous one is back, Running and Ready, at the new revision.
pub async fn rolling_update(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "").await;
    let rev1 = update_revision(&c).await;
    let mark = c.timeline.mark();
    set_image(&c, V2).await;
    c.eventually("a new update revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await != rev1).then_some(())
    })
    .await;
    c.wait_settled("web", 3).await;
    let rev2 = update_revision(&c).await;
    let e = c.timeline.since(mark);
    let order = ["web-2", "web-1", "web-0"];
    for w in order.windows(2) {
        assert!(
            ready(&e, w[0]) < terminating(&e, w[1]),
            "{} went before {} was back:\n{}",
            w[1],
            w[0],
            Timeline::render(&e)
        );
    }
    for p in order {
        assert!(terminating(&e, p) < created(&e, p));
        let entry = &e[created(&e, p)];
        assert_eq!(entry.step, Step::Created { revision: rev2.clone() });
        let now = pod(&c, p).await.unwrap();
        assert_eq!(image_of(&now), V2);
        assert_eq!(revision_of(&now), rev2);
    }
    let revs = c.get_json(&["controllerrevisions"]).await;
    assert_eq!(revs["items"].as_array().unwrap().len(), 2);
}

/// Partition canary: only ordinals ≥ partition move; a deleted lower pod comes back at the old revision;
/// lowering the partition finishes the rollout, highest first.
pub async fn partition_canary(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 4, "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 2\n").await;
    let rev1 = update_revision(&c).await;
    let before: Vec<String> = {
        let mut v = Vec::new();
        for n in ["web-0", "web-1"] {
            v.push(uid_of(&pod(&c, n).await.unwrap()));
        }
        v
    };
    let mark = c.timeline.mark();
    set_image(&c, V2).await;
    c.eventually("a new update revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await != rev1).then_some(())
    })
    .await;
    let rev2 = update_revision(&c).await;
    wait_pods_at(&c, &["web-3", "web-2"], &rev2).await;
    c.eventually("status counts the canary", Duration::from_secs(20), async |c| {
        let s = c.set_json("web").await;
        (s["status"]["updatedReplicas"] == 2
            && s["status"]["currentRevision"] == rev1.as_str()
            && s["status"]["readyReplicas"] == 4)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-3") < terminating(&e, "web-2"), "{}", Timeline::render(&e));
    for (i, n) in ["web-0", "web-1"].iter().enumerate() {
        let p = pod(&c, n).await.unwrap();
        assert_eq!(uid_of(&p), before[i], "{n} below the partition was replaced");
        assert_eq!(revision_of(&p), rev1);
        assert_eq!(image_of(&p), V1);
    }

    // A deleted pod below the partition is restored at the old revision.
    c.kubectl_ok(&["delete", "pod", "web-0"]).await;
    let back = c
        .eventually("web-0 back", Duration::from_secs(30), async |c| {
            let p = pod(c, "web-0").await?;
            (uid_of(&p) != before[0] && is_ready(&p)).then_some(p)
        })
        .await;
    assert_eq!(revision_of(&back), rev1);
    assert_eq!(image_of(&back), V1);

    // Lowering the partition finishes the rollout: web-1, then web-0.
    let mark = c.timeline.mark();
    patch(&c, r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#).await;
    c.wait_settled("web", 4).await;
    assert_eq!(update_revision(&c).await, rev2);
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-1") < terminating(&e, "web-0"), "{}", Timeline::render(&e));
    assert!(pos(&e, "web-2", |s| *s == Step::Terminating).is_none());
    assert!(pos(&e, "web-3", |s| *s == Step::Terminating).is_none());
}

/// OnDelete: a template change moves nothing until a pod is deleted; that pod returns at the new
/// revision, the others stay.
pub async fn on_delete(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "  updateStrategy:\n    type: OnDelete\n").await;
    let rev1 = update_revision(&c).await;
    let mark = c.timeline.mark();
    set_image(&c, V2).await;
    c.eventually("a new update revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await != rev1).then_some(())
    })
    .await;
    let rev2 = update_revision(&c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = c.timeline.since(mark);
    assert!(e.iter().all(|x| x.step != Step::Terminating), "OnDelete moved a pod:\n{}", Timeline::render(&e));
    c.kubectl_ok(&["delete", "pod", "web-1"]).await;
    wait_pods_at(&c, &["web-1"], &rev2).await;
    assert_eq!(image_of(&pod(&c, "web-1").await.unwrap()), V2);
    for n in ["web-0", "web-2"] {
        let p = pod(&c, n).await.unwrap();
        assert_eq!(revision_of(&p), rev1, "{n} moved under OnDelete");
    }
    let s = c.set_json("web").await;
    assert_eq!(s["status"]["updatedReplicas"], 1);
    assert_eq!(s["status"]["currentReplicas"], 2);
}

/// Parallel: every pod is created without waiting for its predecessors, and a scale to zero deletes them
/// all at once.
pub async fn parallel_burst(kind: Kind) {
    let c = Cluster::start_with(kind, SimConfig { ready_delay: Duration::from_millis(1500), ..sim_config() }).await;
    create_set(&c, 3, "  podManagementPolicy: Parallel\n").await;
    let e = c.timeline.entries();
    let first_ready = ["web-0", "web-1", "web-2"].iter().map(|p| ready(&e, p)).min().unwrap();
    for p in ["web-0", "web-1", "web-2"] {
        assert!(created(&e, p) < first_ready, "{p} waited for a predecessor:\n{}", Timeline::render(&e));
    }
    let mark = c.timeline.mark();
    scale(&c, 0).await;
    c.eventually("all gone", Duration::from_secs(30), async |c| c.pods().await.is_empty().then_some(())).await;
    let e = c.timeline.since(mark);
    let last_terminating = ["web-0", "web-1", "web-2"].iter().map(|p| terminating(&e, p)).max().unwrap();
    let first_gone = ["web-0", "web-1", "web-2"].iter().map(|p| gone(&e, p)).min().unwrap();
    assert!(last_terminating < first_gone, "deletion was not a burst:\n{}", Timeline::render(&e));
}

/// Delete the set: its pods go, its claims stay; apply it again: the same names come back on the same
/// claims.
pub async fn delete_set_and_reapply(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "").await;
    let claims = pvc_uids(&c).await;
    assert_eq!(claims.len(), 3);
    c.kubectl_ok(&["delete", kind.resource(), "web"]).await;
    c.eventually("pods gone", Duration::from_secs(30), async |c| c.pods().await.is_empty().then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pvc_uids(&c).await, claims, "claims changed when the set was deleted");
    let mark = c.timeline.mark();
    c.apply(&set_manifest(kind, "web", 3, V1, "")).await;
    c.wait_settled("web", 3).await;
    assert_eq!(pvc_uids(&c).await, claims, "the set came back on new claims");
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-0") < created(&e, "web-1"));
    assert!(ready(&e, "web-1") < created(&e, "web-2"));
    for i in 0..3 {
        let p = pod(&c, &format!("web-{i}")).await.unwrap();
        let claim = p["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "www").unwrap()
            ["persistentVolumeClaim"]["claimName"]
            .clone();
        assert_eq!(claim, Value::from(format!("www-web-{i}")));
    }
    let claims_now = c.get_json(&["pvc"]).await;
    for p in claims_now["items"].as_array().unwrap() {
        assert_eq!(p["status"]["phase"], "Bound");
    }
}

/// `persistentVolumeClaimRetentionPolicy` Delete: scaled-away ordinals lose their claims, and deleting the
/// set deletes the rest.
pub async fn retention_delete(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n")
        .await;
    scale(&c, 1).await;
    c.wait_settled("web", 1).await;
    c.eventually("claims of scaled-away ordinals deleted", Duration::from_secs(30), async |c| {
        let claims = pvc_uids(c).await;
        (!claims.contains_key("www-web-1") && !claims.contains_key("www-web-2")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pvc_uids(&c).await.contains_key("www-web-0"), "the claim of a live ordinal was deleted");
    c.kubectl_ok(&["delete", kind.resource(), "web"]).await;
    c.eventually("claims deleted with the set", Duration::from_secs(30), async |c| {
        pvc_uids(c).await.is_empty().then_some(())
    })
    .await;
}

/// Retain (the default) under scale-down and set deletion is covered by [`scale_up_and_down`] and
/// [`delete_set_and_reapply`]; `whenScaled: Retain, whenDeleted: Delete` keeps scaled-away claims.
pub async fn retention_mixed(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 2, "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Retain\n")
        .await;
    scale(&c, 1).await;
    c.wait_settled("web", 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pvc_uids(&c).await.contains_key("www-web-1"), "whenScaled: Retain deleted a claim");
    c.kubectl_ok(&["delete", kind.resource(), "web"]).await;
    c.eventually("claims deleted with the set", Duration::from_secs(30), async |c| {
        pvc_uids(c).await.is_empty().then_some(())
    })
    .await;
}

/// An unready pod halts OrderedReady scaling and a rolling update until it is ready again.
pub async fn unready_pod_blocks(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "").await;
    c.kubectl_ok(&["annotate", "pod", "web-1", "sim.roster.dev/ready=false", "--overwrite"]).await;
    c.eventually("web-1 unready", Duration::from_secs(20), async |c| {
        (c.set_json("web").await["status"]["readyReplicas"] == 2).then_some(())
    })
    .await;
    let mark = c.timeline.mark();
    scale(&c, 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = c.timeline.since(mark);
    assert!(
        pos(&e, "web-3", |s| matches!(s, Step::Created { .. })).is_none(),
        "scaled past an unready pod:\n{}",
        Timeline::render(&e)
    );
    c.kubectl_ok(&["annotate", "pod", "web-1", "sim.roster.dev/ready-"]).await;
    c.wait_settled("web", 4).await;

    // Scale-down halts too.
    c.kubectl_ok(&["annotate", "pod", "web-0", "sim.roster.dev/ready=false", "--overwrite"]).await;
    c.eventually("web-0 unready", Duration::from_secs(20), async |c| {
        (c.set_json("web").await["status"]["readyReplicas"] == 3).then_some(())
    })
    .await;
    let mark = c.timeline.mark();
    scale(&c, 3).await;
    let rev1 = update_revision(&c).await;
    set_image(&c, V2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = c.timeline.since(mark);
    assert!(e.iter().all(|x| x.step != Step::Terminating), "moved while web-0 was unready:\n{}", Timeline::render(&e));
    assert_ne!(update_revision(&c).await, rev1, "the new revision is recorded even while blocked");
    c.kubectl_ok(&["annotate", "pod", "web-0", "sim.roster.dev/ready-"]).await;
    c.wait_settled("web", 3).await;
    let e = c.timeline.since(mark);
    assert!(
        gone(&e, "web-3") < terminating(&e, "web-2"),
        "scale-down comes before the update:\n{}",
        Timeline::render(&e)
    );
    assert!(ready(&e, "web-2") < terminating(&e, "web-1"));
    assert!(ready(&e, "web-1") < terminating(&e, "web-0"));
}

/// The controller is killed mid-rollout: nothing moves while it is down, and a new instance (after the
/// lease expires) finishes the rollout in order, respecting the partition.
pub async fn controller_killed_mid_rollout(kind: Kind) {
    let mut c = Cluster::start(kind).await;
    create_set(&c, 4, "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 1\n").await;
    let rev1 = update_revision(&c).await;
    let web0 = uid_of(&pod(&c, "web-0").await.unwrap());
    let claims = pvc_uids(&c).await;
    let mark = c.timeline.mark();
    set_image(&c, V2).await;
    c.eventually("web-3 updated", Duration::from_secs(30), async |c| {
        let e = c.timeline.since(mark);
        pos(&e, "web-3", |s| *s == Step::Ready).map(|_| ())
    })
    .await;
    c.kill_controller().await;
    let down = c.timeline.mark();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = c.timeline.since(down);
    assert!(
        e.iter().all(|x| !matches!(x.step, Step::Created { .. })),
        "pods were created while the controller was down:\n{}",
        Timeline::render(&e)
    );
    c.start_controller("identity-b");
    let rev2 = c
        .eventually("the rollout finished", Duration::from_secs(60), async |c| {
            let s = c.set_json("web").await;
            let rev2 = s["status"]["updateRevision"].as_str()?.to_owned();
            (s["status"]["updatedReplicas"] == 3 && s["status"]["readyReplicas"] == 4 && rev2 != rev1).then_some(rev2)
        })
        .await;
    wait_pods_at(&c, &["web-3", "web-2", "web-1"], &rev2).await;
    let p0 = pod(&c, "web-0").await.unwrap();
    assert_eq!(uid_of(&p0), web0, "web-0 is below the partition");
    assert_eq!(revision_of(&p0), rev1);
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-3") < terminating(&e, "web-2"), "{}", Timeline::render(&e));
    assert!(ready(&e, "web-2") < terminating(&e, "web-1"), "{}", Timeline::render(&e));
    let holder = c.kubectl_ok(&["get", "lease", "roster-identity", "-o", "jsonpath={.spec.holderIdentity}"]).await;
    assert_eq!(holder.trim(), "identity-b");
    assert_eq!(pvc_uids(&c).await, claims, "a claim was deleted or replaced across the restart");
}

/// A failed pod is deleted and recreated under the same name.
pub async fn failed_pod_replaced(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 2, "").await;
    let old = uid_of(&pod(&c, "web-1").await.unwrap());
    c.kubectl_ok(&["annotate", "pod", "web-1", "sim.roster.dev/fail=true"]).await;
    c.eventually("web-1 replaced", Duration::from_secs(30), async |c| {
        let p = pod(c, "web-1").await?;
        (uid_of(&p) != old && is_ready(&p)).then_some(())
    })
    .await;
    let notes = c.event_notes().await;
    assert!(notes.contains(&format!("Delete Pod web-1 in {} web successful", kind.kind())), "{notes:#?}");
}

/// `ordinals.start` names pods from it; `minReadySeconds` holds the next ordinal until the previous pod
/// has been ready that long, and `availableReplicas` follows.
pub async fn min_ready_seconds_and_start_ordinal(kind: Kind) {
    let c = Cluster::start(kind).await;
    c.apply(SERVICE).await;
    c.apply(&set_manifest(kind, "web", 2, V1, "  minReadySeconds: 2\n  ordinals:\n    start: 3\n")).await;
    c.wait_settled("web", 2).await;
    c.eventually("both available", Duration::from_secs(20), async |c| {
        (c.set_json("web").await["status"]["availableReplicas"] == 2).then_some(())
    })
    .await;
    let e = c.timeline.entries();
    let r3 = &e[ready(&e, "web-3")];
    let c4 = &e[created(&e, "web-4")];
    // lastTransitionTime has whole seconds, so "ready for 2 s" may be judged after a little over 1 s.
    assert!(c4.at.duration_since(r3.at) >= Duration::from_millis(900), "web-4 did not wait minReadySeconds");
    assert!(pos(&e, "web-0", |_| true).is_none());
    let claims = pvc_uids(&c).await;
    assert!(claims.contains_key("www-web-3") && claims.contains_key("www-web-4"), "{claims:?}");
}

/// `maxUnavailable: 2`: the rolling update takes two pods down at a time (highest first).
pub async fn max_unavailable(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 4, "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 2\n")
        .await;
    let mark = c.timeline.mark();
    set_image(&c, V2).await;
    c.eventually("rolled", Duration::from_secs(30), async |c| {
        let s = c.set_json("web").await;
        (s["status"]["updatedReplicas"] == 4 && s["status"]["readyReplicas"] == 4).then_some(())
    })
    .await;
    let e = c.timeline.since(mark);
    // web-3 and web-2 go together, before either is back.
    let back = created(&e, "web-3").min(created(&e, "web-2"));
    assert!(terminating(&e, "web-3") < back && terminating(&e, "web-2") < back, "{}", Timeline::render(&e));
    let back = created(&e, "web-1").min(created(&e, "web-0"));
    assert!(terminating(&e, "web-1") < back && terminating(&e, "web-0") < back, "{}", Timeline::render(&e));
}

/// `kubectl rollout undo` re-applies the previous revision's template: the set returns to the old
/// revision (renumbered as the newest), in reverse ordinal order. kubectl's rollout commands know only
/// built-in kinds, so for IdentitySets the old template is re-applied with a patch, which is what
/// `rollout undo` sends.
pub async fn rollout_undo(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "").await;
    let rev1 = update_revision(&c).await;
    set_image(&c, V2).await;
    c.eventually("a new update revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await != rev1).then_some(())
    })
    .await;
    c.wait_settled("web", 3).await;
    if kind == Kind::StatefulSet {
        let history = c.kubectl_ok(&["rollout", "history", "statefulset/web"]).await;
        assert!(history.contains('1') && history.contains('2'), "{history}");
    }
    let mark = c.timeline.mark();
    match kind {
        Kind::StatefulSet => {
            c.kubectl_ok(&["rollout", "undo", "statefulset/web"]).await;
        }
        Kind::IdentitySet => set_image(&c, V1).await,
    }
    c.eventually("back at the first revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await == rev1).then_some(())
    })
    .await;
    c.wait_settled("web", 3).await;
    for n in pod_names(3) {
        let p = pod(&c, &n).await.unwrap();
        assert_eq!(image_of(&p), V1);
        assert_eq!(revision_of(&p), rev1);
    }
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-2") < terminating(&e, "web-1"), "{}", Timeline::render(&e));
    assert!(ready(&e, "web-1") < terminating(&e, "web-0"), "{}", Timeline::render(&e));
    let revs = c.get_json(&["controllerrevisions"]).await;
    assert_eq!(revs["items"].as_array().unwrap().len(), 2, "no new revision for an old template");
    let r1 = revs["items"].as_array().unwrap().iter().find(|r| r["metadata"]["name"] == rev1.as_str()).unwrap().clone();
    assert_eq!(r1["revision"], 3, "the rolled-back revision is renumbered as the newest");
    if kind == Kind::StatefulSet {
        let status = c.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=20s"]).await;
        assert!(status.contains("complete"), "{status}");
    }
}

/// `revisionHistoryLimit` trims revisions no pod uses.
pub async fn history_limit(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 1, "  revisionHistoryLimit: 1\n").await;
    for image in ["nginx:1.25", "nginx:1.26", "nginx:1.27"] {
        set_image(&c, image).await;
        c.eventually(&format!("rolled to {image}"), Duration::from_secs(30), async |c| {
            let p = pod(c, "web-0").await?;
            (image_of(&p) == image && is_ready(&p)).then_some(())
        })
        .await;
        c.wait_settled("web", 1).await;
    }
    c.eventually("history trimmed to 1 + the live revision", Duration::from_secs(20), async |c| {
        (c.get_json(&["controllerrevisions"]).await["items"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
}

/// Deleting every pod at once (`kubectl delete pod -l app=nginx`): OrderedReady brings them back in
/// order, each after its predecessor is ready.
pub async fn delete_all_pods_returns_in_order(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 3, "").await;
    let mark = c.timeline.mark();
    c.kubectl_ok(&["delete", "pod", "-l", "app=nginx", "--wait=false"]).await;
    c.eventually("all three replaced", Duration::from_secs(60), async |c| {
        let e = c.timeline.since(mark);
        ["web-0", "web-1", "web-2"].iter().all(|p| pos(&e, p, |s| *s == Step::Ready).is_some()).then_some(())
    })
    .await;
    c.wait_settled("web", 3).await;
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-0") < created(&e, "web-1"), "{}", Timeline::render(&e));
    assert!(ready(&e, "web-1") < created(&e, "web-2"), "{}", Timeline::render(&e));
}

/// Two controller instances: only the lease holder writes; when it dies, the other takes over.
pub async fn only_the_leader_writes(kind: Kind) {
    let mut c = Cluster::start(kind).await;
    // Let the first instance take the lease before the second starts.
    c.eventually("identity-a leads", Duration::from_secs(20), async |c| {
        let out = c.kubectl(&["get", "lease", "roster-identity", "-o", "jsonpath={.spec.holderIdentity}"]).await;
        (out.ok && out.stdout.trim() == "identity-a").then_some(())
    })
    .await;
    let (standby, standby_writes) = c.spawn_extra_controller("identity-b");
    create_set(&c, 2, "").await;
    assert_eq!(standby_writes.load(std::sync::atomic::Ordering::Relaxed), 0, "the standby wrote");
    assert!(c.writes.load(std::sync::atomic::Ordering::Relaxed) > 0);
    c.kill_controller().await;
    scale(&c, 3).await;
    c.wait_settled("web", 3).await;
    assert!(standby_writes.load(std::sync::atomic::Ordering::Relaxed) > 0, "the standby never took over");
    let holder = c.kubectl_ok(&["get", "lease", "roster-identity", "-o", "jsonpath={.spec.holderIdentity}"]).await;
    assert_eq!(holder.trim(), "identity-b");
    standby.abort();
}

/// `kubectl delete --cascade=orphan` leaves the pods running; the set applied again adopts them (and its
/// old revisions), so nothing restarts.
pub async fn orphaned_pods_are_adopted(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 2, "").await;
    let rev = update_revision(&c).await;
    let mut uids = Vec::new();
    for n in pod_names(2) {
        uids.push(uid_of(&pod(&c, &n).await.unwrap()));
    }
    c.kubectl_ok(&["delete", kind.resource(), "web", "--cascade=orphan"]).await;
    c.eventually("the set is gone", Duration::from_secs(20), async |c| {
        (!c.kubectl(&["get", kind.resource(), "web"]).await.ok).then_some(())
    })
    .await;
    c.eventually("pods orphaned", Duration::from_secs(20), async |c| {
        let pods = c.pods().await;
        pods.iter().all(|p| p["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)).then_some(())
    })
    .await;
    let mark = c.timeline.mark();
    c.apply(&set_manifest(kind, "web", 2, V1, "")).await;
    c.wait_settled("web", 2).await;
    assert_eq!(update_revision(&c).await, rev, "the adopted history keeps the revision name");
    let set_uid = c.set_json("web").await["metadata"]["uid"].as_str().unwrap().to_owned();
    for (i, n) in pod_names(2).iter().enumerate() {
        let p = pod(&c, n).await.unwrap();
        assert_eq!(uid_of(&p), uids[i], "{n} was replaced instead of adopted");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], set_uid.as_str());
    }
    let e = c.timeline.since(mark);
    assert!(e.iter().all(|x| x.step != Step::Terminating), "{}", Timeline::render(&e));
}

/// `kubectl rollout restart`: kubectl stamps the template with `restartedAt`, which is a new revision,
/// rolled like any other (reverse order, one at a time).
pub async fn rollout_restart(kind: Kind) {
    let c = Cluster::start(kind).await;
    create_set(&c, 2, "").await;
    let rev1 = update_revision(&c).await;
    let mark = c.timeline.mark();
    c.kubectl_ok(&["rollout", "restart", "statefulset/web"]).await;
    c.eventually("a new update revision", Duration::from_secs(20), async |c| {
        (update_revision(c).await != rev1).then_some(())
    })
    .await;
    c.wait_settled("web", 2).await;
    let e = c.timeline.since(mark);
    assert!(ready(&e, "web-1") < terminating(&e, "web-0"), "{}", Timeline::render(&e));
    let p = pod(&c, "web-0").await.unwrap();
    assert!(p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
}
