//! The identity controller reads pods, claims and revisions from watch-backed caches: passes issue no
//! LIST requests of their own, whatever their number, and the expectations that guard the caches keep
//! creations exact and ordered.
#![allow(clippy::unwrap_used)]

mod identity_support;

use identity_support::{Cluster, Kind, SERVICE, Step, Timeline, created, ready, set_manifest};

/// Requests of the controller since `before`, as (verb, resource) → count.
fn delta(c: &Cluster, before: &std::collections::BTreeMap<(String, String), u64>, verb: &str, resource: &str) -> u64 {
    c.api.get(verb, resource) - before.get(&(verb.to_owned(), resource.to_owned())).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_reads_the_cache_not_the_api() {
    let c = Cluster::start(Kind::StatefulSet).await;
    c.apply(SERVICE).await;
    c.apply(&set_manifest(Kind::StatefulSet, "web", 1, "nginx:1.24", "")).await;
    c.wait_settled("web", 1).await;
    // Each cache lists once when its watch starts.
    for resource in ["pods", "persistentvolumeclaims", "controllerrevisions"] {
        assert_eq!(c.api.get("list", resource), 1, "{resource}: {}", c.api.render());
    }

    let before = c.api.snapshot();
    let mark = c.timeline.mark();
    c.kubectl_ok(&["scale", "statefulset/web", "--replicas=8"]).await;
    c.wait_settled("web", 8).await;

    // Every pass reads the set fresh (one GET each): there were many passes, and not one LIST.
    let passes = delta(&c, &before, "get", "statefulsets");
    assert!(passes >= 7, "only {passes} passes: {}", c.api.render());
    for resource in ["pods", "persistentvolumeclaims", "controllerrevisions"] {
        assert_eq!(delta(&c, &before, "list", resource), 0, "{resource} listed: {}", c.api.render());
    }
    // Expectations: no pass acted on a cache without its own latest creation, so each pod and claim was
    // created exactly once, and OrderedReady order held.
    assert_eq!(delta(&c, &before, "create", "pods"), 7, "{}", c.api.render());
    assert_eq!(delta(&c, &before, "create", "persistentvolumeclaims"), 7, "{}", c.api.render());
    let entries = c.timeline.since(mark);
    for k in 2..8 {
        let (prev, this) = (format!("web-{}", k - 1), format!("web-{k}"));
        assert!(
            ready(&entries, &prev) < created(&entries, &this),
            "{this} created before {prev} was ready:\n{}",
            Timeline::render(&entries)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_burst_and_roll_create_each_pod_once() {
    let c = Cluster::start(Kind::StatefulSet).await;
    c.apply(SERVICE).await;
    let extra = "  podManagementPolicy: Parallel\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 3\n";
    let before = c.api.snapshot();
    c.apply(&set_manifest(Kind::StatefulSet, "web", 12, "nginx:1.24", extra)).await;
    c.wait_settled("web", 12).await;
    assert_eq!(delta(&c, &before, "create", "pods"), 12, "{}", c.api.render());
    assert_eq!(delta(&c, &before, "create", "persistentvolumeclaims"), 12, "{}", c.api.render());

    let before = c.api.snapshot();
    let mark = c.timeline.mark();
    c.kubectl_ok(&["set", "image", "statefulset/web", "nginx=nginx:1.25"]).await;
    c.wait_settled("web", 12).await;
    // A pass that still counted a deleted pod as available would delete more than maxUnavailable at
    // once; one that missed its own creation would create twice. Neither happened.
    let entries = c.timeline.since(mark);
    let (mut down, mut worst) = (std::collections::BTreeSet::new(), 0);
    for e in &entries {
        match e.step {
            Step::Terminating => {
                down.insert(e.pod.clone());
            }
            Step::Ready => {
                down.remove(&e.pod);
            }
            _ => {}
        }
        worst = worst.max(down.len());
    }
    assert!(worst <= 3, "{worst} pods down at once:\n{}", Timeline::render(&entries));
    assert_eq!(delta(&c, &before, "delete", "pods"), 12, "{}", c.api.render());
    assert_eq!(delta(&c, &before, "create", "pods"), 12, "{}", c.api.render());
    assert_eq!(delta(&c, &before, "list", "pods"), 0, "{}", c.api.render());
}
