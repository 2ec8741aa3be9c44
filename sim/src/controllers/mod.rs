//! The control loops a real control plane runs, each reconciling the whole store when it changes (and on
//! a tick, for time-based transitions). A loop that scales with the cluster (the EndpointSlice controller)
//! looks only at what the changes since its last pass touch, and at everything on its tick.

mod deployments;
mod endpointslices;
mod events;
mod gc;
mod kubelet;
mod namespaces;
pub(crate) mod pvc;
mod replicasets;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::SimConfig;
use crate::store::{Change, EventType, Store};
pub use events::{EVENT_TTL, MAX_EVENTS};

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
    let new_events = |c: &Change| c.event == EventType::Added && events::EVENT_KEYS.contains(&c.key.as_str());
    let (event_ttl, max_events) = (config.event_ttl, config.max_events);
    vec![
        spawn(store.clone(), shutdown.clone(), pods, ms(100), ms(10), move |s, _| kubelet.reconcile(s)),
        // a resync, as informers do: every change already arrives as an event
        spawn(store.clone(), shutdown.clone(), slices, ms(5000), ms(10), endpointslices::reconcile),
        // a pass reads the whole store: batch the deletions of a burst
        spawn(store.clone(), shutdown.clone(), gc, ms(1000), ms(200), gc::reconcile),
        spawn(store.clone(), shutdown.clone(), namespaces, ms(1000), ms(50), |s, _| namespaces::reconcile(s)),
        spawn(store.clone(), shutdown.clone(), claims, ms(1000), ms(50), |s, _| pvc::reconcile(s)),
        spawn(store.clone(), shutdown.clone(), replicasets, ms(1000), ms(10), |s, _| replicasets::reconcile(s)),
        spawn(store.clone(), shutdown.clone(), deployments, ms(1000), ms(10), |s, _| deployments::reconcile(s)),
        // the tick expires by time; new Events may pass the count bound
        spawn(store, shutdown, new_events, ms(10_000), ms(1000), move |s, _| {
            events::expire(s, event_ttl, max_events, crate::meta::now_secs());
        }),
    ]
}

/// What one pass of a loop must look at.
pub enum Pass<'a> {
    /// Everything: the loop's tick, or changes were missed.
    Full,
    /// What these changes (the relevant ones since the last pass, oldest first) touch.
    Changes(&'a [Arc<Change>]),
}

/// Run `f` after every burst of changes that `relevant` selects, at most once per `min_gap`, and every
/// `tick`.
fn spawn(
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
    relevant: impl Fn(&Change) -> bool + Send + 'static,
    tick: Duration,
    min_gap: Duration,
    mut f: impl FnMut(&Store, Pass<'_>) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.subscribe();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Arc<Change>> = Vec::new();
        loop {
            batch.clear();
            let mut full = false;
            tokio::select! {
                _ = shutdown.changed() => return,
                r = changes.recv() => {
                    match r {
                        Ok(c) if !relevant(&c) => continue,
                        Ok(c) => batch.push(c),
                        Err(broadcast::error::RecvError::Lagged(_)) => full = true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    // let a burst of writes land before reconciling
                    tokio::time::sleep(min_gap).await;
                    loop {
                        match changes.try_recv() {
                            Ok(c) if relevant(&c) => batch.push(c),
                            Ok(_) => {}
                            Err(broadcast::error::TryRecvError::Lagged(_)) => full = true,
                            Err(_) => break,
                        }
                    }
                }
                _ = interval.tick() => full = true,
            }
            if *shutdown.borrow() {
                return;
            }
            f(&store, if full { Pass::Full } else { Pass::Changes(&batch) });
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
