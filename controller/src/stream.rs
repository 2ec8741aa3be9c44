//! The record stream over HTTPS with client certificates: `GET /v1/records?epoch=E&since=G` answers
//! newline-delimited JSON frames — a snapshot (or the missed deltas), then live deltas and periodic
//! bookmarks — for as long as the replica stays connected and keeps reading. With `&snapshot=packed4`
//! the snapshot comes as a `packed_snapshot` header line and the packed bytes instead. Also `/healthz`, `/readyz`
//! and `/metrics`, which carry no records and need no client certificate (kubelet probes have none).
//!
//! The server is bounded: a connection cap, TLS handshake and request-header timeouts (slowloris), and
//! per subscriber at most one snapshot's worth of unread frames before it is cut off.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use roster_shared::Frame;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{debug, warn};

use crate::hub::{Encoding, Hub, Published, SnapshotForm};

/// Limits and timings of the stream server.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Bookmarks on idle streams this often (replicas treat a long silence as a dead connection).
    pub bookmark_every: Duration,
    /// Connections held at once, probes included; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// A connection must finish its TLS handshake within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// Unread bytes a subscriber may have queued when no snapshot is larger: the floor of its budget.
    pub min_buffer_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            bookmark_every: Duration::from_secs(5),
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            min_buffer_bytes: 1 << 20,
        }
    }
}

/// What the connection knows about its client, handed to the handlers.
#[derive(Clone)]
struct Peer {
    /// A client certificate signed by the stream CA was presented (the handshake verified it).
    authenticated: bool,
    /// Ends the connection (a subscriber that stopped reading).
    close: Arc<Notify>,
}

#[derive(Clone)]
struct StreamState {
    hub: Hub,
    config: StreamConfig,
}

#[derive(Debug, Deserialize)]
struct RecordsQuery {
    epoch: Option<u64>,
    since: Option<u64>,
    /// `packed`: the snapshot in the packed form ([`SnapshotForm::Packed`]); anything else, or nothing, JSON.
    snapshot: Option<String>,
}

pub fn router(hub: Hub, config: StreamConfig) -> Router {
    Router::new()
        .route("/v1/records", get(records))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(StreamState { hub, config })
}

async fn healthz(State(state): State<StreamState>) -> Response {
    match state.hub.health().check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(dead) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{dead}\n")).into_response(),
    }
}

async fn ready(State(state): State<StreamState>) -> Response {
    if let Err(dead) = state.hub.health().check() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{dead}\n")).into_response();
    }
    // A standby is ready too: it holds the records and takes over the moment it wins the Lease (a
    // readiness that waited for the Lease would stall every rolling update).
    let role = if *state.hub.serving().borrow() { "serving" } else { "standby" };
    match state.hub.position() {
        Some((_, generation)) => (StatusCode::OK, format!("ready, generation {generation}, {role}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n").into_response(),
    }
}

async fn metrics(State(state): State<StreamState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.hub.metrics().render()).into_response()
}

/// Serves `router` on `listener` over TLS until the listener fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    config: StreamConfig,
    hub: Hub,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait instead of spinning.
            Err(error) => {
                warn!(%error, "accepting a stream connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            hub.metrics().refused("capacity");
            debug!(%remote, "stream connection cap reached; closing");
            continue;
        };
        // Frames are small and latency matters: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, config, hub) = (acceptor.clone(), router.clone(), config.clone(), hub.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    hub.metrics().refused("handshake");
                    debug!(%remote, %error, "stream TLS handshake failed");
                    return;
                }
                Err(_) => {
                    hub.metrics().refused("handshake");
                    debug!(%remote, "stream TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer { authenticated: tls.get_ref().1.peer_certificates().is_some(), close: Arc::default() };
            let close = peer.close.clone();
            let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(peer.clone());
                let mut router = router.clone();
                async move { router.call(request).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_timeout)
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                result = connection => if let Err(error) = result { debug!(%remote, %error, "stream connection ended") },
                () = close.notified() => debug!(%remote, "stream connection closed"),
            }
        });
    }
}

/// Counts a subscriber while its feed runs.
struct Subscribed(Hub);

impl Subscribed {
    fn new(hub: Hub) -> Self {
        hub.metrics().subscribers.inc();
        Self(hub)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.metrics().subscribers.dec();
    }
}

/// zstd when the replica lists it in `Accept-Encoding` (with a non-zero q-value), else plain NDJSON.
fn negotiate(headers: &axum::http::HeaderMap) -> Encoding {
    let accepts_zstd = headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|value| {
        value.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
            coding.eq_ignore_ascii_case(roster_shared::STREAM_ENCODING_ZSTD) && !refused
        })
    });
    if accepts_zstd { Encoding::Zstd } else { Encoding::Plain }
}

async fn records(
    State(state): State<StreamState>,
    peer: Option<Extension<Peer>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<RecordsQuery>,
) -> Response {
    let Some(Extension(peer)) = peer.filter(|peer| peer.authenticated) else {
        state.hub.metrics().refused("unauthenticated");
        return (StatusCode::FORBIDDEN, "the record stream needs a client certificate from the stream CA\n")
            .into_response();
    };
    let serving = state.hub.serving();
    if !*serving.borrow() {
        state.hub.metrics().refused("not_leader");
        return (StatusCode::SERVICE_UNAVAILABLE, "standby: another controller holds the stream lease\n")
            .into_response();
    }
    let from = query.epoch.zip(query.since);
    let encoding = negotiate(&headers);
    let form = match query.snapshot.as_deref() {
        Some(roster_shared::SNAPSHOT_FORM_PACKED) => SnapshotForm::Packed,
        _ => SnapshotForm::Json,
    };
    let (catch_up, live) = state.hub.subscribe(from);
    let mut lines = Vec::with_capacity(catch_up.len());
    let mut last = None;
    for frame in &catch_up {
        last = Some(frame.generation());
        lines.push(state.hub.line(frame, encoding, form).await);
    }
    // A subscriber may leave at most a snapshot's worth of frames unread (the snapshot in the form it
    // asked for): enough for a catch-up snapshot plus what follows while a healthy reader takes it in.
    let snapshot = state.hub.snapshot_bytes(form);
    let budget = snapshot.max(state.config.min_buffer_bytes);
    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let outbox = Outbox { tx, queued: queued.clone(), budget };
    let feed = Feed {
        outbox,
        last,
        live,
        serving,
        hub: state.hub.clone(),
        bookmark_every: state.config.bookmark_every,
        encoding,
        form,
    };
    tokio::spawn(feed.run(lines, peer.close));
    let body = Body::from_stream(futures::stream::unfold((rx, queued), |(mut rx, queued)| async move {
        let line = rx.recv().await?;
        queued.fetch_sub(line.len(), Ordering::SeqCst);
        Some((Ok::<_, std::convert::Infallible>(line), (rx, queued)))
    }));
    match encoding {
        Encoding::Plain => ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response(),
        Encoding::Zstd => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (header::CONTENT_ENCODING, roster_shared::STREAM_ENCODING_ZSTD),
            ],
            body,
        )
            .into_response(),
    }
}

/// Frames queued for one subscriber, bounded in count and bytes.
struct Outbox {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

impl Outbox {
    /// Queues `line`; `false` when the subscriber is gone or has left its whole budget unread.
    fn push(&self, line: Bytes) -> bool {
        let len = line.len();
        let before = self.queued.fetch_add(len, Ordering::SeqCst);
        // One frame larger than the budget still goes to a reader that has read everything.
        if before > 0 && before + len > self.budget {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        if self.tx.try_send(line).is_err() {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }
}

struct Feed {
    outbox: Outbox,
    last: Option<u64>,
    live: broadcast::Receiver<Arc<Published>>,
    serving: tokio::sync::watch::Receiver<bool>,
    hub: Hub,
    bookmark_every: Duration,
    encoding: Encoding,
    form: SnapshotForm,
}

impl Feed {
    /// Writes one subscriber's frames until it disconnects, stops reading, falls too far behind, or
    /// this instance stops serving; then closes its connection.
    async fn run(mut self, catch_up: Vec<Bytes>, close: Arc<Notify>) {
        let _subscribed = Subscribed::new(self.hub.clone());
        if !self.feed(catch_up).await {
            close.notify_one();
        }
    }

    /// `false` when the connection must be closed.
    async fn feed(&mut self, catch_up: Vec<Bytes>) -> bool {
        for line in catch_up {
            if !send(&self.outbox, &self.hub, line) {
                return false;
            }
        }
        let Self { outbox, last, live, serving, hub, bookmark_every, encoding, form } = self;
        let mut bookmarks = tokio::time::interval(*bookmark_every);
        bookmarks.tick().await;
        // Made once and kept across frames: made anew per frame, they registered every subscriber with
        // the shared `serving` watch and its outbox again per delta, 1,000 times per publication.
        let stopped = async { while serving.changed().await.is_ok() && *serving.borrow() {} };
        let closed = outbox.tx.closed();
        tokio::pin!(stopped, closed);
        loop {
            tokio::select! {
                frame = live.recv() => match frame {
                    // Frames published between catch-up and subscription are in both; skip the repeats.
                    Ok(published) if last.is_some_and(|last| published.frame.generation() <= last) => {}
                    Ok(published) => {
                        *last = Some(published.frame.generation());
                        let line = hub.live_line(&published, *encoding, *form).await;
                        if !send(outbox, hub, line) { return false; }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        debug!(missed, "subscriber too slow; closing its stream so that it resumes");
                        return false;
                    }
                    Err(broadcast::error::RecvError::Closed) => return false,
                },
                _ = bookmarks.tick() => {
                    // The generation this subscriber was sent, not the hub's: a delta published a moment
                    // ago may still be on its way to this feed, and a bookmark must not claim it.
                    if let Some(generation) = *last
                        && !send(outbox, hub, hub.line(&Frame::Bookmark { generation }, *encoding, *form).await)
                    {
                        return false;
                    }
                }
                () = &mut stopped => {
                    debug!("no longer serving the stream; closing");
                    return false;
                }
                () = &mut closed => return true,
            }
        }
    }
}

/// Queues `line` for the subscriber; `false` (counted and logged when it is a cut-off) when it cannot.
fn send(outbox: &Outbox, hub: &Hub, line: Bytes) -> bool {
    if outbox.push(line) {
        return true;
    }
    if !outbox.tx.is_closed() {
        hub.metrics().stream_cutoffs.inc();
        warn!(budget = outbox.budget, "subscriber stopped reading: cut off (it resumes when it reads again)");
    }
    false
}
