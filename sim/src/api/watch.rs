//! Watch: newline-delimited JSON events from a resourceVersion, with replay from the bounded history,
//! selector transitions (an object leaving the selection is DELETED), bookmarks and timeouts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::view::{self, Shape};
use super::{App, Filter, Params, streaming, table};
use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::store::{Change, EventType};

/// Start a watch and return the streaming response.
pub fn serve(app: &Arc<App>, rt: &ResourceType, ns: &str, params: &Params, shape: Shape) -> Result<Response, ApiError> {
    if app.store.watches_refused() {
        return Err(ApiError::unavailable("the watch cache is not ready"));
    }
    let filter = Filter::from_params(params)?;
    let rv_param = params.get("resourceVersion").map(String::as_str).unwrap_or("");
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let from = if send_initial || rv_param.is_empty() || rv_param == "0" {
        None
    } else {
        Some(
            rv_param
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?,
        )
    };
    let srt = view::storage_type(rt);
    let (replay, rx, start_rv) = match app.store.watch(&srt.key(), from) {
        Ok(start) => start,
        // like the real server: the watch opens, then says `ERROR` with the 410 Status and ends
        Err(e) if e.code == 410 => {
            let line = format!("{}\n", json!({"type": "ERROR", "object": e.to_status()}));
            return Ok(streaming(Body::from(line)));
        }
        Err(e) => return Err(e),
    };
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let (tx, body_rx) = mpsc::channel::<Bytes>(256);
    let w = Watcher {
        app: app.clone(),
        rt: rt.clone(),
        srt,
        ns: (rt.namespaced && !ns.is_empty()).then(|| ns.to_owned()),
        filter,
        shape,
        params: params.clone(),
        tx,
        first_table: true,
    };
    let interval = app.bookmark_interval;
    tokio::spawn(w.run(replay, rx, start_rv, send_initial, bookmarks, timeout, interval));
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Ok(streaming(Body::from_stream(stream)))
}

struct Watcher {
    app: Arc<App>,
    rt: ResourceType,
    srt: ResourceType,
    ns: Option<String>,
    filter: Filter,
    shape: Shape,
    params: Params,
    tx: mpsc::Sender<Bytes>,
    first_table: bool,
}

impl Watcher {
    fn in_scope(&self, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|ns| crate::meta::namespace(obj) == ns) && self.filter.matches(obj)
    }

    /// The event to send for a change, after selector transitions.
    fn translate(&self, c: &Change) -> Option<(EventType, Arc<Value>)> {
        let now = self.in_scope(&c.object);
        let before = c.prev.as_ref().is_some_and(|p| self.in_scope(p));
        match (c.event, before, now) {
            (EventType::Deleted, _, true) => Some((EventType::Deleted, c.object.clone())),
            (EventType::Deleted, _, false) => None,
            (EventType::Added, _, true) => Some((EventType::Added, c.object.clone())),
            (EventType::Modified, true, true) => Some((EventType::Modified, c.object.clone())),
            (EventType::Modified, false, true) => Some((EventType::Added, c.object.clone())),
            (EventType::Modified, true, false) => Some((EventType::Deleted, c.object.clone())),
            _ => None,
        }
    }

    async fn send_event(&mut self, kind: &str, obj: &Arc<Value>) -> bool {
        let object = if self.shape == Shape::Table {
            let mut t = table::render(
                &self.app.store,
                &self.srt,
                std::slice::from_ref(obj),
                crate::store::rv_of(obj),
                self.first_table,
                &self.params,
            );
            if !self.first_table {
                t["columnDefinitions"] = json!([]);
            }
            self.first_table = false;
            t
        } else if self.shape == Shape::Metadata {
            view::metadata_only(obj)
        } else {
            // the common case: write the stored object straight into the line, no copy
            let object = view::present(&self.rt, obj);
            let mut line = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
            if serde_json::to_writer(&mut line, object.as_ref()).is_err() {
                return false;
            }
            line.extend_from_slice(b"}\n");
            return self.tx.send(Bytes::from(line)).await.is_ok();
        };
        self.send_raw(&json!({"type": kind, "object": object})).await
    }

    async fn send_raw(&self, v: &Value) -> bool {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut m = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": m,
        }})
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        mut self,
        replay: Vec<Arc<Change>>,
        mut rx: broadcast::Receiver<Arc<Change>>,
        start_rv: u64,
        send_initial: bool,
        bookmarks: bool,
        timeout: Duration,
        interval: Duration,
    ) {
        let key = self.srt.key();
        for c in &replay {
            if let Some((ev, obj)) = self.translate(c)
                && !self.send_event(ev.as_str(), &obj).await
            {
                return;
            }
        }
        let mut seen_rv = start_rv;
        if send_initial && bookmarks && !self.send_raw(&self.bookmark(seen_rv, true)).await {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        let mut shutdown = self.app.shutdown.clone();
        let mut disconnect = self.app.store.disconnects();
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = disconnect.changed() => return,
                _ = shutdown.changed() => return,
                _ = tick.tick(), if bookmarks => {
                    if !self.send_raw(&self.bookmark(seen_rv, false)).await {
                        return;
                    }
                }
                r = rx.recv() => match r {
                    Ok(c) => {
                        seen_rv = seen_rv.max(c.rv);
                        if c.key != key {
                            continue;
                        }
                        if let Some((ev, obj)) = self.translate(&c)
                            && !self.send_event(ev.as_str(), &obj).await
                        {
                            return;
                        }
                    }
                    // a watcher that fell behind is closed; the client resumes from its last version
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                () = self.tx.closed() => return,
            }
        }
    }
}
