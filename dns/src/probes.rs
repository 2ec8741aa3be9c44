//! The HTTP endpoints a cluster DNS server is probed and scraped on, with CoreDNS's semantics:
//! `/health` (200 while the process lives, lameduck included), `/ready` (200 once the first snapshot is
//! applied, 503 before and during lameduck), `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::server::ServeError;
use crate::store::ZoneStore;

#[derive(Clone)]
pub struct ProbeState {
    pub store: Arc<ZoneStore>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: ready turns 503 while DNS keeps answering for the lameduck period.
    pub lameduck: Arc<AtomicBool>,
}

/// Where each endpoint listens; `None` disables it. The same address may serve several.
#[derive(Debug, Clone, Default)]
pub struct ProbeAddrs {
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

async fn health() -> &'static str {
    "OK"
}

async fn ready(State(state): State<ProbeState>) -> Response {
    if state.lameduck.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "lameduck\n").into_response();
    }
    if state.store.is_synced() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no records yet\n").into_response()
    }
}

async fn metrics(State(state): State<ProbeState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
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
