//! The subscriber: follows a stream of frames into the store, resuming after every interruption.
//!
//! A [`FrameSource`] connects to a publisher from a position (epoch, generation) and yields frames:
//! [`HttpSource`] dials a controller's `/v1/records`; `roster local` plugs in an in-process source.
//! The store keeps answering with what it has while the source is away.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use roster_shared::{Frame, Trigger};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::store::{ApplyError, ZoneStore};

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, String>> + Send>>;

/// Something frames come from.
#[async_trait::async_trait]
pub trait FrameSource: Send {
    /// Opens a stream that starts after `from` (or with a snapshot when `None` or unknown there).
    async fn connect(&mut self, from: Option<(u64, u64)>) -> Result<FrameStream, String>;
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Applies frames from `source` to `store` forever, reconnecting with exponential backoff and resuming
/// from the store's position; a gap in generations forces a fresh snapshot.
pub async fn follow(
    mut source: impl FrameSource,
    store: Arc<ZoneStore>,
    idle_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut need_snapshot = false;
    loop {
        let from = if need_snapshot { None } else { store.position() };
        match source.connect(from).await {
            Ok(mut frames) => {
                need_snapshot = false;
                loop {
                    let next = match tokio::time::timeout(idle_timeout, frames.next()).await {
                        Ok(Some(next)) => next,
                        Ok(None) => {
                            info!("record stream ended; reconnecting");
                            break;
                        }
                        Err(_) => {
                            warn!(?idle_timeout, "record stream silent (no bookmark); reconnecting");
                            break;
                        }
                    };
                    let frame = match next {
                        Ok(frame) => frame,
                        Err(error) => {
                            warn!(%error, "record stream failed; reconnecting");
                            break;
                        }
                    };
                    backoff = MIN_BACKOFF;
                    match store.apply(&frame) {
                        Ok(()) if !matches!(frame, Frame::Bookmark { .. }) => {
                            if let (Some(metrics), Frame::Delta { trigger: Some(trigger), .. }) = (&metrics, &frame) {
                                observe_programming(metrics, trigger);
                            }
                            info!(generation = frame.generation(), names = store.name_count(), "applied records");
                        }
                        Ok(()) => {}
                        Err(error @ ApplyError::OutOfOrder { .. }) => {
                            warn!(%error, "gap in the record stream; asking for a snapshot");
                            need_snapshot = true;
                            break;
                        }
                    }
                }
            }
            Err(error) => warn!(%error, ?backoff, "cannot reach the record stream"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Records how long the change took from its trigger to being answerable here.
fn observe_programming(metrics: &Metrics, trigger: &Trigger) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let kind = match trigger.service_kind.as_str() {
        "headless_with_selector" => "headless_with_selector",
        "headless_without_selector" => "headless_without_selector",
        _ => "cluster_ip",
    };
    metrics.observe_programming(kind, Duration::from_millis(now_ms.saturating_sub(trigger.unix_ms)));
}

/// A controller's HTTP record stream, `GET <base>/v1/records?epoch=E&since=G` (newline-delimited JSON).
pub struct HttpSource {
    base: String,
    client: Client<HttpConnector, http_body_util::Empty<bytes::Bytes>>,
}

impl HttpSource {
    /// `base` is `http://host:port`; only plain HTTP (the stream stays inside the cluster network).
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().map_err(|e| format!("`{base}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!("`{base}` must be an http://host:port URL"));
        }
        Ok(Self { base, client: Client::builder(TokioExecutor::new()).build_http() })
    }
}

#[async_trait::async_trait]
impl FrameSource for HttpSource {
    async fn connect(&mut self, from: Option<(u64, u64)>) -> Result<FrameStream, String> {
        let url = match from {
            Some((epoch, since)) => format!("{}/v1/records?epoch={epoch}&since={since}", self.base),
            None => format!("{}/v1/records", self.base),
        };
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let response = self.client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let body = response.into_body();
        let lines = futures_util::stream::unfold((body, BytesMut::new()), |(mut body, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line = buffer.split_to(end + 1);
                    let frame =
                        serde_json::from_slice::<Frame>(&line[..end]).map_err(|e| format!("undecodable frame: {e}"));
                    return Some((frame, (body, buffer)));
                }
                match body.frame().await {
                    Some(Ok(chunk)) => {
                        if let Ok(data) = chunk.into_data() {
                            buffer.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => return Some((Err(format!("stream broken: {e}")), (body, buffer))),
                    None => return None,
                }
            }
        });
        Ok(Box::pin(lines))
    }
}
