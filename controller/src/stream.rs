//! The record stream over HTTP: `GET /v1/records?epoch=E&since=G` answers newline-delimited JSON
//! frames — a snapshot (or the missed deltas), then live deltas and periodic bookmarks — for as long as
//! the replica stays connected. Also `/healthz` and `/readyz`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use roster_shared::Frame;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::hub::Hub;

#[derive(Clone)]
struct StreamState {
    hub: Hub,
    bookmark_every: Duration,
}

#[derive(Debug, Deserialize)]
struct RecordsQuery {
    epoch: Option<u64>,
    since: Option<u64>,
}

pub fn router(hub: Hub, bookmark_every: Duration) -> Router {
    Router::new()
        .route("/v1/records", get(records))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(StreamState { hub, bookmark_every })
}

async fn ready(State(state): State<StreamState>) -> Response {
    match state.hub.position() {
        Some((_, generation)) => (StatusCode::OK, format!("ready, generation {generation}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n").into_response(),
    }
}

async fn metrics(State(state): State<StreamState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.hub.metrics().render()).into_response()
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

fn line(frame: &Frame) -> Bytes {
    let mut text = serde_json::to_vec(frame).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

async fn records(State(state): State<StreamState>, Query(query): Query<RecordsQuery>) -> Response {
    let from = query.epoch.zip(query.since);
    let (catch_up, live) = state.hub.subscribe(from);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(feed(catch_up, live, tx, state.bookmark_every, state.hub.clone()));
    let body =
        Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// Writes one subscriber's frames until it disconnects or falls too far behind.
async fn feed(
    catch_up: Vec<Frame>,
    mut live: broadcast::Receiver<Frame>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    bookmark_every: Duration,
    hub: Hub,
) {
    let _subscribed = Subscribed::new(hub.clone());
    let mut last = None;
    for frame in catch_up {
        last = Some(frame.generation());
        if tx.send(Ok(line(&frame))).await.is_err() {
            return;
        }
    }
    let mut bookmarks = tokio::time::interval(bookmark_every);
    bookmarks.tick().await;
    loop {
        tokio::select! {
            frame = live.recv() => match frame {
                // Frames published between catch-up and subscription are in both; skip the repeats.
                Ok(frame) if last.is_some_and(|last| frame.generation() <= last) => {}
                Ok(frame) => {
                    last = Some(frame.generation());
                    if tx.send(Ok(line(&frame))).await.is_err() { return; }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    debug!(missed, "subscriber too slow; closing its stream so that it resumes");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = bookmarks.tick() => {
                if let Some((_, generation)) = hub.position()
                    && tx.send(Ok(line(&Frame::Bookmark { generation }))).await.is_err()
                {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}
