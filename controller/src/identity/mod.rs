//! The identity controller: StatefulSet semantics (upstream Kubernetes 1.36) for apps/v1 StatefulSets
//! (when told to own them) and for roster's own CRD kind, `IdentitySet.roster.dev/v1` (always).
//!
//! # Wiring
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), roster_controller::identity::Error> {
//! use roster_controller::identity::{IdentityOptions, run};
//! let options = IdentityOptions { manage_statefulsets: true, install_crd: true, ..IdentityOptions::default() };
//! run(client, options).await // elects a leader, then reconciles until SIGINT/SIGTERM
//! # }
//! ```
//!
//! - [`run`]`(client: kube::Client, options: IdentityOptions) -> Result<(), Error>`: installs the CRD when
//!   `install_crd`, then loops: wait for the Lease, run the controllers while holding it, stop them (and
//!   every write) when the Lease is lost, and wait again.
//! - [`crd_yaml`]`() -> String`: the CRD document for `roster crd`; `deploy/crd/identitysets.roster.dev.yaml`
//!   is its output (a test keeps them equal).
//!
//! # Permissions
//! On a real cluster the controller's ServiceAccount needs: `pods` list/watch/create/patch/delete;
//! `persistentvolumeclaims` list/watch/create/update (and delete, with the
//! OwnerReferencesPermissionEnforcement plugin); `apps` `controllerrevisions`
//! list/watch/create/patch/delete (children are read from watch-backed caches, see `cache`);
//! `apps` `statefulsets` (with `manage_statefulsets`) and `roster.dev` `identitysets` get/list/watch,
//! and their `/status` patch (and `/finalizers` update with that plugin); `coordination.k8s.io` `leases`
//! get/create/update; `events.k8s.io` `events` create/patch; `apiextensions.k8s.io`
//! `customresourcedefinitions` create (with `install_crd`).
//!
//! # Layout
//! `set` (the two kinds seen as one), `crd` (the IdentitySet kind), `cache` (watch-backed stores of
//! pods, claims and revisions, with expectations for the controller's own writes), `context` (client,
//! recorder, caches, the leadership flag every write checks), `reconcile` (reconcile/error_policy), `sync` (one pass of the
//! algorithm: failed pods, creation, scale-down, rolling update), `pods`, `claims`, `revision`, `status`,
//! `leader`; IdentitySets' opt-in features beyond StatefulSets: `resize` (claims that follow their
//! template), `quantity` (comparing storage requests), reserved ordinals (`set`), paused rollouts and
//! rollout recovery (`sync`).

mod cache;
mod claims;
mod context;
mod crd;
mod error;
mod leader;
mod pods;
mod quantity;
mod reconcile;
mod resize;
mod revision;
mod set;
mod status;
mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::task::Poll;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{self, Action, trigger_owners, trigger_self};
use kube::runtime::events::Reporter;
use kube::runtime::{WatchStreamExt, applier, reflector, watcher};

pub use claims::claim_name;
pub use context::Context;
pub use crd::{
    IdentitySet, IdentitySetRollingUpdate, IdentitySetSpec, IdentitySetStatus, IdentitySetUpdateStrategy, crd,
    crd_yaml, install as install_crd,
};
pub use error::Error;
pub use leader::{LeaseSettings, default_identity};
pub use pods::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};
pub use reconcile::{error_policy, reconcile};
pub use revision::HASH_LABEL;
pub use set::{Extensions, SetKind, SetView};

/// How to run the identity controller.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// Reconcile apps/v1 StatefulSets too (`--manage-statefulsets`: on in `roster local`, off by default
    /// elsewhere, because a real cluster runs the built-in controller). IdentitySets are always reconciled.
    pub manage_statefulsets: bool,
    /// Create the IdentitySet CRD at start when it is missing.
    pub install_crd: bool,
    /// The Lease guarding every write.
    pub lease: LeaseSettings,
    /// The Events' reportingController.
    pub reporter: String,
    /// Counts API writes, Events included (for benchmarks); shared with the caller when given.
    pub writes: Arc<AtomicU64>,
    /// Where reconcile outcomes are counted (`roster_controller_reconciles_total`), when given.
    pub metrics: Option<Arc<crate::metrics::ControllerMetrics>>,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            manage_statefulsets: false,
            install_crd: false,
            lease: LeaseSettings::default(),
            reporter: "statefulset-controller".into(),
            writes: Arc::default(),
            metrics: None,
        }
    }
}

/// Holds the in-flight gauge up while a reconcile runs.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn enter(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A reconcile on its own task (so passes of different sets run on every worker thread, as
/// kube-runtime's `Controller` runs them), aborted when dropped: losing the lease drops the controllers
/// and so stops every pass in flight.
struct Spawned(tokio::task::JoinHandle<Result<Action, Error>>);

impl Future for Spawned {
    type Output = Result<Action, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(res) => res,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Cancelled),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Reconcile sets of kind `K`: kube-runtime's applier fed by the sets' own watch and by the shared pod
/// watch (`pods`, from the [`cache::Pump`]), so a pass triggered by a pod event reads a cache that
/// already holds that event. (kube-runtime's `Controller::owns` would open a second pod watch of its
/// own, whose events could trigger passes before the cache has them.)
async fn run_kind<K: SetKind>(
    client: kube::Client,
    ctx: Arc<Context>,
    pods: futures::channel::mpsc::UnboundedReceiver<Pod>,
    metrics: Option<Arc<crate::metrics::ControllerMetrics>>,
) {
    let kind: &'static str =
        if K::kind(&Default::default()) == "StatefulSet" { "statefulsets" } else { "identitysets" };
    let sets: Api<K> = Api::all(client);
    let in_flight = metrics.as_ref().map(|m| m.reconciles_in_flight.clone());
    // Counts reconciles in progress around the real reconcile (kube-runtime keeps its queue private).
    let counted = move |set: Arc<K>, ctx: Arc<Context>| {
        let in_flight = in_flight.clone();
        Spawned(tokio::spawn(async move {
            let _guard = in_flight.map(InFlight::enter);
            reconcile::reconcile::<K>(set, ctx).await
        }))
    };
    let (store, writer) = reflector::store::<K>();
    let own =
        reflector::reflector(writer, watcher(sets, watcher::Config::default()).default_backoff()).applied_objects();
    let queue =
        futures::stream::select(trigger_self(own, ()), trigger_owners(pods.map(Ok::<Pod, watcher::Error>), (), ()))
            .take_until(shutdown_signal());
    applier(counted, reconcile::error_policy::<K>, ctx, store, queue, controller::Config::default())
        .for_each(|res| {
            if let Some(metrics) = &metrics {
                metrics.reconciled(kind, res.is_ok());
            }
            async move {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "identity reconcile");
                }
            }
        })
        .await;
}

/// Run the identity controller until SIGINT/SIGTERM (its controllers shut down on a signal; aborting the
/// task works too). Every write happens only while this instance holds `options.lease`.
pub async fn run(client: kube::Client, options: IdentityOptions) -> Result<(), Error> {
    if options.install_crd {
        crd::install(&client).await?;
    }
    let flag = Arc::new(AtomicBool::new(false));
    let mut elector = leader::Leader::new(client.clone(), options.lease.clone(), flag.clone());
    loop {
        elector.acquire().await;
        let reporter =
            Reporter { controller: options.reporter.clone(), instance: Some(options.lease.identity.clone()) };
        // Fresh caches per term: a new leader starts from a full list.
        let (caches, mut pump) = cache::Pump::new(client.clone());
        let ctx = Arc::new(Context::new(client.clone(), reporter, flag.clone(), options.writes.clone(), caches));
        let idsets = run_kind::<IdentitySet>(client.clone(), ctx.clone(), pump.subscribe(), options.metrics.clone());
        let statefulsets = options
            .manage_statefulsets
            .then(|| run_kind::<StatefulSet>(client.clone(), ctx.clone(), pump.subscribe(), options.metrics.clone()));
        let controllers = async {
            let kinds = async {
                match statefulsets {
                    Some(statefulsets) => {
                        futures::future::join(idsets, statefulsets).await;
                    }
                    None => idsets.await,
                }
            };
            // The pump runs until the controllers stop.
            tokio::select! {
                () = kinds => {}
                () = pump.run() => {}
            }
        };
        tokio::select! {
            () = controllers => return Ok(()),
            () = elector.hold() => tracing::warn!("identity controller stopped: the lease was lost"),
        }
    }
}
