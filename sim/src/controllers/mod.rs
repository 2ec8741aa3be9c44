//! The control loops a real control plane runs, each reconciling the whole store when it changes (and on
//! a tick, for time-based transitions).

mod deployments;
mod endpointslices;
mod gc;
mod kubelet;
mod namespaces;
mod pvc;
mod replicasets;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::SimConfig;
use crate::store::{Change, EventType, Store};

/// Start every loop.
pub fn spawn_all(store: Arc<Store>, config: &SimConfig, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut kubelet = kubelet::Kubelet::new(config);
    let ms = Duration::from_millis;
    let keys = |keys: &'static [&'static str]| move |c: &Change| keys.contains(&c.key.as_str());
    let pods = keys(&["/pods", "/nodes"]);
    let slices = keys(&["/pods", "/services", "discovery.k8s.io/endpointslices"]);
    let claims = keys(&["/persistentvolumeclaims", "/persistentvolumes", "storage.k8s.io/storageclasses"]);
    // the collector cares about removals, deletions in progress and new dependents
    let gc = |c: &Change| {
        c.event == EventType::Deleted
            || crate::meta::is_terminating(&c.object)
            || (c.event == EventType::Added && c.object.pointer("/metadata/ownerReferences").is_some())
    };
    let namespaces = |c: &Change| c.key == "/namespaces" || c.event == EventType::Deleted;
    let replicasets = keys(&["apps/replicasets", "/pods"]);
    // Recreate waits for the old pods to be gone, so pods matter too
    let deployments = keys(&["apps/deployments", "apps/replicasets", "/pods"]);
    vec![
        spawn(store.clone(), shutdown.clone(), pods, ms(100), ms(10), move |s| kubelet.reconcile(s)),
        spawn(store.clone(), shutdown.clone(), slices, ms(1000), ms(10), endpointslices::reconcile),
        spawn(store.clone(), shutdown.clone(), gc, ms(1000), ms(50), gc::reconcile),
        spawn(store.clone(), shutdown.clone(), namespaces, ms(1000), ms(50), namespaces::reconcile),
        spawn(store.clone(), shutdown.clone(), claims, ms(1000), ms(50), pvc::reconcile),
        spawn(store.clone(), shutdown.clone(), replicasets, ms(1000), ms(10), replicasets::reconcile),
        spawn(store, shutdown, deployments, ms(1000), ms(10), deployments::reconcile),
    ]
}

/// Run `f` after every burst of changes that `relevant` selects, at most once per `min_gap`, and every
/// `tick`.
fn spawn(
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
    relevant: impl Fn(&Change) -> bool + Send + 'static,
    tick: Duration,
    min_gap: Duration,
    mut f: impl FnMut(&Store) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.subscribe();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = changes.recv() => {
                    match r {
                        Ok(c) if !relevant(&c) => continue,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    // let a burst of writes land before reconciling
                    tokio::time::sleep(min_gap).await;
                    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = changes.try_recv() {}
                }
                _ = interval.tick() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            f(&store);
        }
    })
}

/// Record a core/v1 Event about a workload object, as the controller-manager's controllers do.
fn record_event(store: &Store, obj: &serde_json::Value, kind: &str, component: &str, reason: &str, message: &str) {
    use serde_json::json;
    let now = crate::meta::now_rfc3339();
    let ns = crate::meta::namespace(obj);
    let ev = json!({
        "metadata": {"name": format!("{}.{:016x}", crate::meta::name(obj), crate::meta::random_u64())},
        "involvedObject": {
            "kind": kind, "apiVersion": "apps/v1", "namespace": ns, "name": crate::meta::name(obj),
            "uid": crate::meta::meta_str(obj, "uid"), "resourceVersion": crate::meta::meta_str(obj, "resourceVersion"),
        },
        "reason": reason, "message": message,
        "type": if reason.starts_with("Failed") { "Warning" } else { "Normal" }, "count": 1,
        "source": {"component": component}, "firstTimestamp": now, "lastTimestamp": now,
        "reportingComponent": component, "reportingInstance": "",
    });
    if let Err(e) = store.create(&crate::bootstrap::builtin("", "events"), ns, ev) {
        tracing::debug!(error = %e, "recording an event");
    }
}
