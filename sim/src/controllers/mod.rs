//! The control loops a real control plane runs, each reconciling the whole store when it changes (and on
//! a tick, for time-based transitions).

mod endpointslices;
mod gc;
mod kubelet;
mod namespaces;
mod pvc;

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
    vec![
        spawn(store.clone(), shutdown.clone(), pods, ms(100), ms(10), move |s| kubelet.reconcile(s)),
        spawn(store.clone(), shutdown.clone(), slices, ms(1000), ms(10), endpointslices::reconcile),
        spawn(store.clone(), shutdown.clone(), gc, ms(1000), ms(50), gc::reconcile),
        spawn(store.clone(), shutdown.clone(), namespaces, ms(1000), ms(50), namespaces::reconcile),
        spawn(store, shutdown, claims, ms(1000), ms(50), pvc::reconcile),
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
