//! `roster-sim`: a single-process stand-in Kubernetes cluster for `roster local` and tests.
//!
//! It serves a subset of the real HTTP API (plain HTTP on loopback) with real list/watch semantics, and
//! runs the control-plane loops roster depends on: EndpointSlices, a kubelet stand-in, garbage
//! collection, namespace deletion, ClusterIP allocation and PVC binding. Unmodified clients — kubectl,
//! kube-rs, the Python `kubernetes` client — use it through the kubeconfig it writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), roster_sim::SimError> {
//! let sim = roster_sim::start(roster_sim::SimConfig {
//!     data_dir: Some("/tmp/roster".into()),
//!     ..roster_sim::SimConfig::default()
//! })
//! .await?;
//! println!("export KUBECONFIG={}", sim.kubeconfig_path().display());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What it serves
//! - Discovery (`/version`, `/api`, `/apis`, per group-version resource lists with verbs, short names,
//!   categories, `/status` and `/scale` subresources) and OpenAPI v3 documents per group version with the
//!   upstream component schemas and field descriptions (from k8s-openapi; built once, cached), so
//!   `kubectl explain deploy.spec.strategy` reads like a real cluster's; CRD groups get their
//!   `openAPIV3Schema`. The PATCH operations declare `fieldValidation`, so kubectl validates on the server
//!   and `kubectl apply` needs no `--validate=false` (`/openapi/v2` is absent, as kubectl tolerates).
//! - Field validation of built-in kinds against those schemas: unknown fields are rejected
//!   (`fieldValidation=Strict`, kubectl's default), reported as `Warning` headers (`Warn`, the server
//!   default) or ignored, and never stored.
//! - Namespaces, pods, services, endpoints, endpointslices, PVCs, PVs, nodes, configmaps, secrets,
//!   serviceaccounts, events (core/v1 and events.k8s.io/v1, one storage), statefulsets, deployments and
//!   replicasets (each +status, +scale), controllerrevisions, storageclasses, leases, CRDs and the custom
//!   resources they define (+status, +scale, additionalPrinterColumns).
//! - Verbs: get, list (label selectors with set-based terms, field selectors on any field path,
//!   limit/continue), watch (replay from a resourceVersion, selector transitions, bookmarks,
//!   `sendInitialEvents`, `timeoutSeconds`, 410 `Expired` as an `ERROR` event once the version left the
//!   bounded history), create, update, delete (grace periods, preconditions, propagation policies,
//!   finalizers), deletecollection, and patch as JSON merge, JSON patch, strategic merge and server-side
//!   apply (applied fields tracked per manager in `managedFields`, fields dropped from a manager's
//!   configuration removed; conflicts are not detected: every apply is forced).
//! - Request bodies in JSON or Kubernetes protobuf (decoded through a table of the built-in messages);
//!   responses in JSON, as `Table` for kubectl's printing, or as `PartialObjectMetadata`.
//!
//! # Loops
//! EndpointSlices (and the core/v1 Endpoints mirror), a kubelet/scheduler stand-in (see
//! [`SimConfig`]; pod IPs from 10.244.0.0/16, never reused), the garbage collector, namespace deletion,
//! ClusterIP (10.96.0.0/12, `kubernetes` = 10.96.0.1) and NodePort allocation, a PV binder that
//! provisions through the default StorageClass `standard`, and the ReplicaSet and Deployment controllers:
//! adoption and release by selector, pods created and deleted to match replicas, `pod-template-hash`
//! ReplicaSets named `<deployment>-<hash>`, RollingUpdate (maxSurge/maxUnavailable, 25% by default) and
//! Recreate, `deployment.kubernetes.io/revision` annotations (so `kubectl rollout status|history|undo|
//! pause|resume|restart` work), `revisionHistoryLimit`, the Available/Progressing conditions (with
//! `progressDeadlineSeconds`) and ScalingReplicaSet/SuccessfulCreate/SuccessfulDelete events.
//! Proportional scaling of a Deployment caught mid-rollout is simplified: the difference goes to the
//! newest ReplicaSet.
//!
//! # Durability
//! With [`SimConfig::data_dir`], every write is appended to `state.log` and fsync'd (group commit) before
//! the API acknowledges it; the log is replayed and compacted at start.
//!
//! # Test hooks
//! Per pod, with annotations: `sim.roster.dev/ready: "false"` keeps (or makes) the pod's containers not
//! ready; `sim.roster.dev/fail: "true"` makes the pod fail (phase `Failed`, container terminated, exit 1).
//! On the [`Store`] ([`SimHandle::store`]): [`Store::disconnect_watchers`] (a dropped connection),
//! [`Store::refuse_watches`] (an outage), [`Store::compact_history`] (resumes get 410 Gone) and
//! [`Store::gone_served`].
//!
//! # Exec and attach
//! `pods/exec` and `pods/attach` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) run the host's
//! command in a network namespace made for the pod ([`podnet`]), as root; see `api/exec/`.
//!
//! # Not served
//! `port-forward` (the containers are imaginary; `logs` answers empty; `eviction`
//! deletes, as no PodDisruptionBudgets exist), DaemonSets, Jobs, RBAC and authentication, protobuf
//! responses, and the StatefulSet controller (roster's identity controller fills that role).

mod admission;
mod api;
mod bootstrap;
mod controllers;
mod kubeconfig;
pub mod meta;
mod patch;
pub mod podnet;
mod proto;
pub mod resources;
pub mod selector;
pub mod status;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use status::ApiError;
pub use store::Store;

/// Annotation that keeps a pod not ready (`"false"`), for tests.
pub const READY_ANNOTATION: &str = "sim.roster.dev/ready";
/// Annotation that makes a pod fail (`"true"`), for tests.
pub const FAIL_ANNOTATION: &str = "sim.roster.dev/fail";

/// How to run the stand-in.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where the API listens; port 0 picks a free one.
    pub api_addr: SocketAddr,
    /// Durable state and the kubeconfig live here; `None` keeps state in memory (the kubeconfig then
    /// goes to a fresh temporary directory).
    pub data_dir: Option<PathBuf>,
    /// Number of fake nodes pods are bound to (`sim-node-0` ...); at least one.
    pub nodes: usize,
    /// How long a started pod's containers take to become ready.
    pub ready_delay: Duration,
    /// How long a pod stays `ContainerCreating` before `Running`.
    pub start_delay: Duration,
    /// The longest a deleted pod stays Terminating (its grace period, capped by this).
    pub termination_cap: Duration,
    /// Changes kept for watch resumption; older resourceVersions get `410 Gone`.
    pub watch_history: usize,
    /// The most the kept changes may weigh (an estimate of their heap bytes); the oldest go first.
    pub watch_history_bytes: usize,
    /// Events older than this (by their last occurrence) are deleted, as kube-apiserver's `--event-ttl`.
    pub event_ttl: Duration,
    /// The most Events kept (core/v1 and events.k8s.io/v1 each); beyond, the oldest are deleted.
    pub max_events: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Whether the kubelet stand-in records Events (Scheduled, Pulled, Created, Started, Killing).
    pub kubelet_events: bool,
    /// The pod network exec and attach run commands in (see [`podnet`]).
    pub pod_network: podnet::PodNetworkConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            nodes: 1,
            ready_delay: Duration::from_millis(500),
            start_delay: Duration::from_millis(200),
            termination_cap: Duration::from_secs(2),
            watch_history: store::HistoryLimits::default().changes,
            watch_history_bytes: store::HistoryLimits::default().bytes,
            event_ttl: controllers::EVENT_TTL,
            max_events: controllers::MAX_EVENTS,
            bookmark_interval: Duration::from_secs(10),
            kubelet_events: true,
            pod_network: podnet::PodNetworkConfig::default(),
        }
    }
}

/// Why the stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the API address failed.
    #[error("binding the API address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Opening or replaying the data directory failed.
    #[error("opening the data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing the kubeconfig failed.
    #[error("writing the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Creating the built-in objects failed.
    #[error("creating the built-in objects: {0}")]
    Bootstrap(#[from] ApiError),
}

/// A running stand-in cluster. Dropping it without [`SimHandle::shutdown`] aborts its tasks.
pub struct SimHandle {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    store: Arc<Store>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pod_network: Arc<podnet::PodNetwork>,
    _tmp: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl SimHandle {
    /// The bound API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig written for clients.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Direct access to the object store (tests; in-process wiring).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stop serving, end open watches and the control loops, and wait for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let network = self.pod_network.clone();
        let _ = tokio::task::spawn_blocking(move || network.remove_all()).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        // the pods' network namespaces outlive the process unless removed
        self.pod_network.remove_all();
    }
}

/// Start the stand-in: open (or replay) the store, create the built-in objects, bind the API, start the
/// control loops and write `<data_dir>/kubeconfig`.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let (dir, tmp) = match &config.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("roster-sim-{}", meta::random_suffix(10)));
            (d.clone(), Some(TempDir(d)))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|source| SimError::DataDir { dir: dir.clone(), source })?;
    let store = Arc::new(
        Store::open(
            config.data_dir.as_deref(),
            store::HistoryLimits { changes: config.watch_history, bytes: config.watch_history_bytes },
        )
        .map_err(|source| SimError::DataDir { dir: dir.clone(), source })?,
    );
    bootstrap::ensure(&store, config.nodes.max(1))?;
    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .map_err(|source| SimError::Bind { addr: config.api_addr, source })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: config.api_addr, source })?;
    let kubeconfig = dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig, addr).map_err(|source| SimError::Kubeconfig { path: kubeconfig.clone(), source })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let pod_network = podnet::PodNetwork::new(config.pod_network.clone());
    if podnet::PodNetwork::check_privileges().is_ok() {
        // namespaces of earlier runs that were killed before removing theirs
        tokio::task::spawn_blocking(podnet::PodNetwork::sweep_stale);
    }
    let app = Arc::new(api::App {
        store: store.clone(),
        addr,
        bookmark_interval: config.bookmark_interval,
        shutdown: shutdown_rx.clone(),
        exec: api::ExecRuntime::new(pod_network.clone()),
    });
    let router = api::router(app);
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        // Watch events are small: without TCP_NODELAY they wait for the client's delayed ACK (~40 ms),
        // which a real (Go) API server never makes them do.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = server_shutdown.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the stand-in API server failed");
        }
    });
    let deletions = tokio::spawn(pod_network.clone().follow_deletions(store.clone(), shutdown_rx.clone()));
    let mut tasks = vec![server, deletions];
    tasks.extend(controllers::spawn_all(store.clone(), &config, shutdown_rx));
    Ok(SimHandle { addr, kubeconfig, store, shutdown, tasks, pod_network, _tmp: tmp })
}
