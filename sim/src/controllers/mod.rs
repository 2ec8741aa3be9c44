//! The control loops a real control plane runs, each reconciling the whole store when it changes (and on
//! a tick, for time-based transitions).

mod endpointslices;
mod gc;
mod kubelet;
mod namespaces;
mod pvc;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SimConfig;
use crate::store::Store;

/// Start every loop.
pub fn spawn_all(store: Arc<Store>, config: &SimConfig, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut kubelet = kubelet::Kubelet::new(config);
    let ms = Duration::from_millis;
    vec![
        spawn(store.clone(), shutdown.clone(), ms(100), ms(10), move |s| kubelet.reconcile(s)),
        spawn(store.clone(), shutdown.clone(), ms(1000), ms(10), endpointslices::reconcile),
        spawn(store.clone(), shutdown.clone(), ms(1000), ms(100), gc::reconcile),
        spawn(store.clone(), shutdown.clone(), ms(1000), ms(100), namespaces::reconcile),
        spawn(store, shutdown, ms(1000), ms(50), pvc::reconcile),
    ]
}

/// Run `f` after every burst of changes (at most once per `min_gap`) and every `tick`.
fn spawn(
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
    tick: Duration,
    min_gap: Duration,
    mut f: impl FnMut(&Store) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.changes();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // let a burst of writes land before reconciling
                    tokio::time::sleep(min_gap).await;
                }
                _ = interval.tick() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            changes.borrow_and_update();
            f(&store);
        }
    })
}
