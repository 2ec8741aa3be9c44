//! The HTTP endpoints a cluster DNS server is probed and scraped on, with CoreDNS's semantics:
//! `/health` (200 while the process and its core tasks live, lameduck included; 503 once the record
//! stream's follower has died), `/ready` (200 once the first snapshot is applied and while the last
//! frame or bookmark is recent enough; 503 before, when stale, and during lameduck), `/metrics`
//! (Prometheus text, with how stale the records are).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::server::ServeError;
use crate::store::ZoneStore;
use crate::subscriber::Freshness;

/// Whether the process's core tasks still run: `Err` names those that ended.
pub type AliveCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct ProbeState {
    pub store: Arc<ZoneStore>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: ready turns 503 while DNS keeps answering for the lameduck period.
    pub lameduck: Arc<AtomicBool>,
    /// When the record stream last spoke; `None` when records do not come from a stream.
    pub freshness: Option<Arc<Freshness>>,
    /// Not ready when the last frame or bookmark is older than this (`None`: never stale).
    pub max_staleness: Option<Duration>,
    pub alive: Option<AliveCheck>,
}

/// Where each endpoint listens; `None` disables it. The same address may serve several.
#[derive(Debug, Clone, Default)]
pub struct ProbeAddrs {
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

async fn health(State(state): State<ProbeState>) -> Response {
    match state.alive.as_ref().map_or(Ok(()), |alive| alive()) {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(dead) => (StatusCode::SERVICE_UNAVAILABLE, format!("{dead}\n")).into_response(),
    }
}

async fn ready(State(state): State<ProbeState>) -> Response {
    if state.lameduck.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "lameduck\n").into_response();
    }
    if !state.store.is_synced() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no records yet\n").into_response();
    }
    let age = state.freshness.as_ref().and_then(|freshness| freshness.age());
    if let (Some(age), Some(bound)) = (age, state.max_staleness)
        && age > bound
    {
        let message =
            format!("records stale: last frame {:.1} s ago (bound {} s)\n", age.as_secs_f64(), bound.as_secs());
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    }
    (StatusCode::OK, "OK").into_response()
}

async fn metrics(State(state): State<ProbeState>) -> Response {
    let mut text = state.metrics.render();
    // The stream's gauges, before the OpenMetrics terminator.
    let end = text.rfind("# EOF").unwrap_or(text.len());
    let mut extra = String::new();
    if let Some(freshness) = &state.freshness {
        let age = freshness.age().map_or(-1.0, |age| age.as_secs_f64());
        extra.push_str(&format!(
            "# HELP roster_dns_stream_staleness_seconds Seconds since the last frame or bookmark of the record stream (-1: none yet).\n# TYPE roster_dns_stream_staleness_seconds gauge\nroster_dns_stream_staleness_seconds {age}\n"
        ));
    }
    if let Some((epoch, generation)) = state.store.position() {
        extra.push_str(&format!(
            "# HELP roster_dns_stream_epoch Epoch of the records served.\n# TYPE roster_dns_stream_epoch gauge\nroster_dns_stream_epoch {epoch}\n# HELP roster_dns_stream_generation Generation of the records served.\n# TYPE roster_dns_stream_generation gauge\nroster_dns_stream_generation {generation}\n"
        ));
    }
    text.insert_str(end, &extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Binds every configured endpoint (grouping routes that share an address) and serves them.
pub async fn spawn(
    addrs: &ProbeAddrs,
    state: ProbeState,
) -> Result<Vec<(SocketAddr, tokio::task::JoinHandle<()>)>, ServeError> {
    let mut routers: Vec<(SocketAddr, Router<ProbeState>)> = Vec::new();
    let mut add = |addr: Option<SocketAddr>, path: &'static str, route: axum::routing::MethodRouter<ProbeState>| {
        let Some(addr) = addr else { return };
        match routers.iter_mut().find(|(a, _)| *a == addr && addr.port() != 0) {
            Some((_, router)) => *router = std::mem::take(router).route(path, route),
            None => routers.push((addr, Router::new().route(path, route))),
        }
    };
    add(addrs.health, "/health", get(health));
    add(addrs.ready, "/ready", get(ready));
    add(addrs.metrics, "/metrics", get(metrics));
    let mut served = Vec::new();
    for (addr, router) in routers {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::BindTcp { addr, source })?;
        let bound = listener.local_addr().map_err(|source| ServeError::BindTcp { addr, source })?;
        let app = router.with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        served.push((bound, task));
    }
    Ok(served)
}
