//! The subscriber: follows a stream of frames into the store, resuming after every interruption.
//!
//! A [`FrameSource`] connects to a publisher from a position (epoch, generation) and yields frames:
//! [`HttpSource`] dials a controller's `/v1/records` over mutual TLS; `roster local` plugs in an
//! in-process source. The store keeps answering with what it has while the source is away, and never
//! goes back: a snapshot older than what it holds, by (epoch, generation), is refused.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use roster_shared::{Frame, PACKED_SNAPSHOT_START, PackedSnapshotHeader, Trigger};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::snapshot_decode::{self, CHUNKS_IN_FLIGHT, ChunkReader, SNAPSHOT_START};
use crate::store::{ApplyError, PreparedSnapshot, ZoneStore};
use crate::stream_encoding::decompressed;

/// What a stream yields: a frame, or a snapshot already built into a table for the store it was
/// connected for (the HTTP stream decodes snapshots as they arrive, see `snapshot_decode`).
#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    Snapshot(PreparedSnapshot),
}

impl From<Frame> for Received {
    fn from(frame: Frame) -> Self {
        Self::Frame(frame)
    }
}

impl Received {
    /// (epoch, generation) of a snapshot.
    fn snapshot_position(&self) -> Option<(u64, u64)> {
        match self {
            Self::Frame(Frame::Snapshot { epoch, generation, .. }) => Some((*epoch, *generation)),
            Self::Snapshot(snapshot) => Some(snapshot.position()),
            Self::Frame(_) => None,
        }
    }
}

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Received, String>> + Send>>;

/// The longest frame accepted (a snapshot is one line): beyond, the stream is treated as broken.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// Something frames come from.
#[async_trait::async_trait]
pub trait FrameSource: Send {
    /// Opens a stream that starts after `from` (or with a snapshot when `None` or unknown there).
    /// Snapshots may come built for `store` ([`Received::Snapshot`]).
    async fn connect(&mut self, from: Option<(u64, u64)>, store: &Arc<ZoneStore>) -> Result<FrameStream, String>;

    /// The last stream offered records older than ours: look elsewhere next time, if there is elsewhere.
    fn refused(&mut self) {}
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// When the last frame (bookmarks included) arrived: how stale the records may be.
#[derive(Debug)]
pub struct Freshness {
    start: Instant,
    /// Milliseconds after `start` of the last frame, plus one; 0 before the first.
    last: AtomicU64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0) }
    }
}

impl Freshness {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last.store(ms + 1, Ordering::Relaxed);
    }

    /// Time since the last frame or bookmark; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let last = self.last.load(Ordering::Relaxed).checked_sub(1)?;
        Some(self.start.elapsed().saturating_sub(Duration::from_millis(last)))
    }
}

/// Applies frames from `source` to `store` forever, reconnecting with exponential backoff and resuming
/// from the store's position; a gap in generations forces a fresh snapshot.
pub async fn follow(
    source: impl FrameSource,
    store: Arc<ZoneStore>,
    idle_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
) {
    follow_with(source, store, idle_timeout, metrics, Freshness::new()).await;
}

/// As [`follow`], reporting every frame's arrival to `freshness`.
pub async fn follow_with(
    mut source: impl FrameSource,
    store: Arc<ZoneStore>,
    idle_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    freshness: Arc<Freshness>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut need_snapshot = false;
    loop {
        let from = if need_snapshot { None } else { store.position() };
        match source.connect(from, &store).await {
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
                    let received = match next {
                        Ok(received) => received,
                        Err(error) => {
                            warn!(%error, "record stream failed; reconnecting");
                            break;
                        }
                    };
                    if let (Some((epoch, generation)), Some(have)) = (received.snapshot_position(), store.position())
                        && (epoch, generation) < have
                    {
                        // Another controller with an older history (a deposed leader, a lagging
                        // standby): applying it would take the answers back in time.
                        warn!(
                            offered_epoch = epoch,
                            offered_generation = generation,
                            epoch = have.0,
                            generation = have.1,
                            "refusing a snapshot older than the records held"
                        );
                        source.refused();
                        break;
                    }
                    backoff = MIN_BACKOFF;
                    let frame = match received {
                        Received::Frame(frame) => frame,
                        Received::Snapshot(snapshot) => {
                            let reused = snapshot.reused();
                            store.swap_in(snapshot);
                            freshness.touch();
                            info!(
                                generation = store.generation(),
                                names = store.name_count(),
                                reused,
                                "applied records (streamed snapshot)"
                            );
                            continue;
                        }
                    };
                    match store.apply(&frame) {
                        Ok(()) => {
                            freshness.touch();
                            if !matches!(frame, Frame::Bookmark { .. }) {
                                if let (Some(metrics), Frame::Delta { trigger: Some(trigger), .. }) = (&metrics, &frame)
                                {
                                    observe_programming(metrics, trigger);
                                }
                                info!(generation = frame.generation(), names = store.name_count(), "applied records");
                            }
                        }
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

/// The client side of the stream's mutual TLS: our certificate, and the CA the controller's must chain to.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    /// The name the controller's certificate must carry; default the URL's host.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// From PEM text: the CA, our certificate (chain) and its key. `server_name` overrides the name
    /// checked in the controller's certificate (the URL may be an address the certificate cannot know).
    pub fn from_pem(ca: &str, cert: &str, key: &str, server_name: Option<&str>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            let der = der.map_err(|e| format!("--tls-ca: {e}"))?;
            roots.add(der).map_err(|e| format!("--tls-ca: {e}"))?;
        }
        if roots.is_empty() {
            return Err("--tls-ca: no CERTIFICATE block".into());
        }
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--tls-cert: {e}"))?;
        if chain.is_empty() {
            return Err("--tls-cert: no CERTIFICATE block".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("--tls-key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = server_name
            .map(|name| ServerName::try_from(name.to_owned()).map_err(|e| format!("--tls-server-name {name}: {e}")))
            .transpose()?;
        Ok(Self { config: Arc::new(config), server_name })
    }

    /// From the files of `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub fn from_files(
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
        server_name: Option<&str>,
    ) -> Result<Self, String> {
        let read =
            |path: &std::path::Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
        Self::from_pem(&read(ca)?, &read(cert)?, &read(key)?, server_name)
    }
}

/// One controller to dial.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    host: String,
    port: u16,
}

/// Controllers' HTTPS record streams, `GET <base>/v1/records?epoch=E&since=G` (newline-delimited JSON),
/// tried in turn: a connection that fails moves on to the next.
#[derive(Debug)]
pub struct HttpSource {
    endpoints: Vec<Endpoint>,
    next: usize,
    tls: ClientTls,
    /// TCP connect plus TLS handshake must finish within this.
    pub connect_timeout: Duration,
    /// The response headers must arrive within this after the request.
    pub header_timeout: Duration,
    /// Ask for the packed snapshot (`&snapshot=packed4`; a controller that does not know it sends JSON).
    pub ask_packed: bool,
}

impl HttpSource {
    /// `bases` are `https://host:port` URLs (plain HTTP is refused: records must be authentic).
    pub fn new(bases: &[String], tls: ClientTls) -> Result<Self, String> {
        if bases.is_empty() {
            return Err("no controller URL".into());
        }
        let endpoints = bases.iter().map(|base| parse_base(base)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            endpoints,
            next: 0,
            tls,
            connect_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            ask_packed: true,
        })
    }

    async fn open(&self, endpoint: &Endpoint, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let url = format!("{}{path}", endpoint.base);
        let name = match &self.tls.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(endpoint.host.clone()).map_err(|e| format!("{url}: {e}"))?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.config.clone());
        let dial = async {
            let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| format!("{url}: connect: {e}"))?;
            // Small frames must not wait for a delayed ACK.
            let _ = tcp.set_nodelay(true);
            connector.connect(name, tcp).await.map_err(|e| format!("{url}: TLS: {e}"))
        };
        let tls = tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| format!("{url}: no connection within {:?}", self.connect_timeout))??;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, format!("{}:{}", endpoint.host, endpoint.port))
            .header(hyper::header::ACCEPT_ENCODING, roster_shared::STREAM_ENCODING_ZSTD)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let response = tokio::time::timeout(self.header_timeout, sender.send_request(request))
            .await
            .map_err(|_| format!("{url}: no response headers within {:?}", self.header_timeout))?
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        Ok(response)
    }
}

fn parse_base(base: &str) -> Result<Endpoint, String> {
    let base = base.trim_end_matches('/').to_owned();
    let uri: hyper::Uri = base.parse().map_err(|e| format!("`{base}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("`{base}` must be an https://host:port URL (the stream is mutual TLS only)"));
    }
    let host = uri.host().ok_or_else(|| format!("`{base}` has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(Endpoint { host, port: uri.port_u16().unwrap_or(443), base })
}

#[async_trait::async_trait]
impl FrameSource for HttpSource {
    fn refused(&mut self) {
        self.next = self.next.wrapping_add(1);
    }

    async fn connect(&mut self, from: Option<(u64, u64)>, store: &Arc<ZoneStore>) -> Result<FrameStream, String> {
        let mut query = Vec::new();
        if let Some((epoch, since)) = from {
            query.push(format!("epoch={epoch}&since={since}"));
        }
        if self.ask_packed {
            query.push(format!("{}={}", roster_shared::SNAPSHOT_FORM_PARAM, roster_shared::SNAPSHOT_FORM_PACKED));
        }
        let path = if query.is_empty() { "/v1/records".to_owned() } else { format!("/v1/records?{}", query.join("&")) };
        let endpoint = self.endpoints[self.next % self.endpoints.len()].clone();
        let response = match self.open(&endpoint, &path).await {
            Ok(response) => response,
            Err(error) => {
                self.next = self.next.wrapping_add(1);
                return Err(error);
            }
        };
        let zstd = match response.headers().get(hyper::header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?")) {
            None | Some("identity") => false,
            Some(roster_shared::STREAM_ENCODING_ZSTD) => true,
            Some(other) => return Err(format!("{}: unknown Content-Encoding `{other}`", endpoint.base)),
        };
        let body = response.into_body().into_data_stream();
        let chunks: Chunks = if zstd {
            Box::pin(decompressed(body)?)
        } else {
            Box::pin(body.map(|chunk| chunk.map_err(|e| format!("stream broken: {e}"))))
        };
        Ok(Lines::new(chunks, store.clone(), MAX_FRAME_BYTES).into_stream())
    }
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The newline-delimited frames of a body. Each byte is searched for the line's end once. A line that
/// starts as a snapshot is decoded as it arrives ([`snapshot_decode`]), never held whole; so are the
/// bytes after a `packed_snapshot` header line (at most [`MAX_FRAME_BYTES`] of them, as a line); any other
/// line is held until its end, at most [`MAX_FRAME_BYTES`], and decoded as a [`Frame`].
struct Lines {
    chunks: Chunks,
    /// Received bytes not yet part of a returned frame: the start of the next line.
    pending: BytesMut,
    /// How much of `pending` is known to hold no newline.
    scanned: usize,
    /// The store snapshots are built for (their unchanged names share its nodes).
    store: Arc<ZoneStore>,
    /// The longest line accepted ([`MAX_FRAME_BYTES`]; smaller in tests).
    max_line: usize,
}

impl Lines {
    fn new(chunks: Chunks, store: Arc<ZoneStore>, max_line: usize) -> Self {
        Self { chunks, pending: BytesMut::new(), scanned: 0, store, max_line }
    }

    /// The frames, as a stream.
    fn into_stream(self) -> FrameStream {
        Box::pin(futures_util::stream::unfold(self, |mut lines| async move {
            let next = lines.next().await?;
            Some((next, lines))
        }))
    }

    async fn next(&mut self) -> Option<Result<Received, String>> {
        loop {
            let newline = memchr(&self.pending[self.scanned..]).map(|at| self.scanned + at);
            if newline.is_none() {
                self.scanned = self.pending.len();
            }
            if self.pending.len() >= SNAPSHOT_START.len() || newline.is_some() {
                if self.pending.starts_with(SNAPSHOT_START) {
                    self.scanned = 0;
                    return Some(self.snapshot().await);
                }
                if let Some(at) = newline {
                    if at > self.max_line {
                        return Some(Err(format!("a frame longer than {} bytes", self.max_line)));
                    }
                    let line = self.pending.split_to(at + 1);
                    self.scanned = 0;
                    if line.starts_with(PACKED_SNAPSHOT_START) {
                        return Some(match serde_json::from_slice::<PackedSnapshotHeader>(&line[..at]) {
                            Ok(header) => self.packed_snapshot(header).await,
                            Err(error) => Err(format!("undecodable packed snapshot header: {error}")),
                        });
                    }
                    let frame = serde_json::from_slice::<Frame>(&line[..at]);
                    return Some(frame.map(Received::Frame).map_err(|e| format!("undecodable frame: {e}")));
                }
            }
            if self.pending.len() > self.max_line {
                return Some(Err(format!("a frame longer than {} bytes", self.max_line)));
            }
            match self.chunks.next().await? {
                Ok(chunk) => self.pending.extend_from_slice(&chunk),
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// The next bytes of a snapshot being read: what is pending first, then the body's next chunk.
    async fn snapshot_chunk(&mut self) -> Result<Bytes, String> {
        if !self.pending.is_empty() {
            return Ok(self.pending.split().freeze());
        }
        match self.chunks.next().await {
            Some(chunk) => chunk,
            None => Err("the stream ended inside a snapshot".to_owned()),
        }
    }

    /// Feeds the snapshot line that `pending` starts to a decoder thread, chunk by chunk as they arrive,
    /// and returns the table it built. The store is not touched: on any error the caller keeps serving
    /// what it has and reconnects.
    async fn snapshot(&mut self) -> Result<Received, String> {
        let (line_tx, line_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let store = self.store.clone();
        let decoder = spawn_decoder(move || snapshot_decode::decode(ChunkReader::new(line_rx), &store));
        let mut length = 0usize;
        let fed = loop {
            let mut chunk = match self.snapshot_chunk().await {
                Ok(chunk) => chunk,
                Err(error) => break Err(error),
            };
            let rest = memchr(&chunk).map(|at| {
                let rest = chunk.split_off(at + 1);
                chunk.truncate(at);
                rest
            });
            length += chunk.len();
            if length > self.max_line {
                break Err(format!("a frame longer than {} bytes", self.max_line));
            }
            if line_tx.send(chunk).await.is_err() {
                // The decoder stopped early: its error says why.
                break Ok(());
            }
            if let Some(rest) = rest {
                self.pending.extend_from_slice(&rest);
                break Ok(());
            }
        };
        // The end of the line (or of the attempt): the decoder finishes or fails, and its memory is freed
        // before anything else happens.
        drop(line_tx);
        let decoded = decoder.await?;
        fed?;
        decoded.map(Received::Snapshot)
    }
}

/// Runs a snapshot decoder on a thread of its own, which ends when the decoder does. Not the blocking
/// pool: mimalloc (the binary's allocator) leaves the pages of an idle pool thread's heap alone, so the
/// table that thread built stayed resident after the next snapshot replaced and freed it (6–20 MiB at
/// 100k pod records, bench/README.md, Start-up, "the allocator"). An ended thread's pages are abandoned,
/// and the forced collection after each swap (`memory::release_free_pages`) gives their free pages back.
/// Its error is the thread's (not started, or ended without a result); `T` carries the decoder's own.
fn spawn_decoder<T: Send + 'static>(
    decode: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, String>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("snapshot-decoder".to_owned()).spawn(move || {
        // The receiver is gone only when the caller gave up; the result is then not wanted.
        let _ = done_tx.send(decode());
    });
    async move {
        spawned.map_err(|e| format!("snapshot decoder: {e}"))?;
        done_rx.await.map_err(|_| "snapshot decoder: stopped without a result".to_owned())
    }
}

impl Lines {
    /// Feeds the `header.bytes` bytes after a packed snapshot's header line to a decoder thread as they
    /// arrive, and returns the table it built; as [`Lines::snapshot`], the store is not touched.
    async fn packed_snapshot(&mut self, header: PackedSnapshotHeader) -> Result<Received, String> {
        let mut left = usize::try_from(header.bytes).unwrap_or(usize::MAX);
        if left > self.max_line {
            return Err(format!(
                "a packed snapshot of {} bytes, more than the {} accepted",
                header.bytes, self.max_line
            ));
        }
        let (bytes_tx, bytes_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let store = self.store.clone();
        let (epoch, generation) = (header.epoch, header.generation);
        let decoder = spawn_decoder(move || {
            snapshot_decode::decode_packed(ChunkReader::new(bytes_rx), &store, epoch, generation)
        });
        let fed = loop {
            if left == 0 {
                break Ok(());
            }
            let mut chunk = match self.snapshot_chunk().await {
                Ok(chunk) => chunk,
                Err(error) => break Err(error),
            };
            if chunk.len() > left {
                self.pending.extend_from_slice(&chunk.split_off(left));
            }
            left -= chunk.len();
            if bytes_tx.send(chunk).await.is_err() {
                // The decoder stopped early: its error says why.
                break Ok(());
            }
        };
        drop(bytes_tx);
        let decoded = decoder.await?;
        fed?;
        decoded.map(Received::Snapshot)
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::DnsConfig;
    use parking_lot::Mutex;
    use roster_shared::{DomainName, PodMode, RData, ZoneData};

    type Position = Option<(u64, u64)>;

    /// Each connection plays the next script of frames, then ends; records where each resumed from.
    struct Scripted {
        scripts: Vec<Vec<Frame>>,
        froms: Arc<Mutex<Vec<Position>>>,
        refusals: Arc<Mutex<usize>>,
    }

    #[async_trait::async_trait]
    impl FrameSource for Scripted {
        async fn connect(&mut self, from: Option<(u64, u64)>, _: &Arc<ZoneStore>) -> Result<FrameStream, String> {
            self.froms.lock().push(from);
            if self.scripts.is_empty() {
                return Ok(Box::pin(futures_util::stream::pending()));
            }
            let frames = self.scripts.remove(0);
            Ok(Box::pin(futures_util::stream::iter(frames.into_iter().map(|frame| Ok(frame.into())))))
        }

        fn refused(&mut self) {
            *self.refusals.lock() += 1;
        }
    }

    fn snapshot(epoch: u64, generation: u64, ip: &str) -> Frame {
        let apex = DomainName::parse("cluster.local").unwrap();
        let mut zone = ZoneData::default();
        zone.add(
            DomainName::parse("a.default.svc.cluster.local").unwrap(),
            RData::A { ip: ip.parse().unwrap() },
            &apex,
        );
        Frame::Snapshot { epoch, generation, zone: Arc::new(zone) }
    }

    #[tokio::test]
    async fn a_snapshot_older_than_the_records_held_is_refused() {
        let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 5, PodMode::Insecure).unwrap()));
        let froms = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(Mutex::new(0));
        let source = Scripted {
            scripts: vec![
                vec![snapshot(10, 5, "10.0.0.1")],
                // A deposed controller: an older epoch, however high its generation.
                vec![snapshot(9, 100, "10.0.0.9")],
                // The same epoch, an older generation.
                vec![snapshot(10, 4, "10.0.0.8")],
                vec![snapshot(11, 1, "10.0.0.2")],
            ],
            froms: froms.clone(),
            refusals: refusals.clone(),
        };
        let freshness = Freshness::new();
        assert!(freshness.age().is_none());
        let task = tokio::spawn(follow_with(source, store.clone(), Duration::from_secs(60), None, freshness.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.position() != Some((11, 1)) {
            assert!(Instant::now() < deadline, "never reached the newer epoch: {:?}", store.position());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        // Every reconnection resumed from (10, 5): neither older snapshot was applied.
        assert_eq!(froms.lock()[..4], [None, Some((10, 5)), Some((10, 5)), Some((10, 5))]);
        assert_eq!(*refusals.lock(), 2);
        assert!(freshness.age().unwrap() < Duration::from_secs(10));
    }

    /// The stream's bytes, `chunk` at a time, ending with `end` (an error, or the body's end).
    fn chunks_of(lines: &[Vec<u8>], chunk: usize, end: Option<&str>) -> Chunks {
        let body: Vec<u8> = lines.concat();
        let mut items: Vec<Result<Bytes, String>> =
            body.chunks(chunk).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
        items.extend(end.map(|error| Err(error.to_owned())));
        Box::pin(futures_util::stream::iter(items))
    }

    fn line_of(frame: &Frame) -> Vec<u8> {
        let mut line = serde_json::to_vec(frame).unwrap();
        line.push(b'\n');
        line
    }

    /// A snapshot as a controller sends it to a replica that asked for it packed: header line, bytes.
    fn packed_of(frame: &Frame) -> Vec<u8> {
        let Frame::Snapshot { epoch, generation, zone } = frame else { panic!("not a snapshot") };
        let bytes = roster_shared::packed::encode(zone).unwrap();
        let header = PackedSnapshotHeader { epoch: *epoch, generation: *generation, bytes: bytes.len() as u64 };
        let mut line = serde_json::to_vec(&header).unwrap();
        line.push(b'\n');
        line.extend_from_slice(&bytes);
        line
    }

    /// Each connection reads the next script's bytes through the HTTP source's framing ([`Lines`]).
    struct ByteScripted {
        scripts: Vec<(Vec<Vec<u8>>, Option<&'static str>)>,
    }

    #[async_trait::async_trait]
    impl FrameSource for ByteScripted {
        async fn connect(&mut self, _: Option<(u64, u64)>, store: &Arc<ZoneStore>) -> Result<FrameStream, String> {
            if self.scripts.is_empty() {
                return Ok(Box::pin(futures_util::stream::pending()));
            }
            let (lines, end) = self.scripts.remove(0);
            Ok(Lines::new(chunks_of(&lines, 1000, end), store.clone(), MAX_FRAME_BYTES).into_stream())
        }
    }

    /// A zstd body in chunks of 1,000 bytes, decompressed as the HTTP source does.
    fn zstd_chunks(body: &[u8]) -> Chunks {
        let items: Vec<Result<Bytes, String>> = body.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(decompressed(futures_util::stream::iter(items)).unwrap())
    }

    /// Each connection reads the next zstd body through the HTTP source's decoding and framing.
    struct ZstdScripted {
        bodies: Vec<Vec<u8>>,
    }

    #[async_trait::async_trait]
    impl FrameSource for ZstdScripted {
        async fn connect(&mut self, _: Option<(u64, u64)>, store: &Arc<ZoneStore>) -> Result<FrameStream, String> {
            if self.bodies.is_empty() {
                return Ok(Box::pin(futures_util::stream::pending()));
            }
            let body = self.bodies.remove(0);
            Ok(Lines::new(zstd_chunks(&body), store.clone(), MAX_FRAME_BYTES).into_stream())
        }
    }

    /// Polls `store` (≤ 10 s) until it holds the third snapshot; every address of
    /// `a.default.svc.cluster.local` seen on the way, in order.
    async fn addresses_until_third_snapshot(store: &ZoneStore) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while store.position() != Some((3, 1)) {
            assert!(Instant::now() < deadline, "never reached the third snapshot: {:?}", store.position());
            if let Some(address) = a_record(store, "a.default.svc.cluster.local") {
                seen.push(address);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    }

    fn a_record(store: &ZoneStore, owner: &str) -> Option<Vec<u8>> {
        let wire = crate::convert::to_wire(&DomainName::parse(owner).unwrap());
        let view = store.view();
        let set = view.node(&wire)?.set(hickory_proto::rr::RecordType::A)?;
        set.rdatas().next().map(<[u8]>::to_vec)
    }

    /// Both snapshot forms (a JSON line, a packed header and its bytes) between other lines, in any
    /// chunking: every frame comes out whole and the snapshot builds the table.
    #[tokio::test]
    async fn frames_come_out_whole_whatever_the_chunking() {
        let snapshot = snapshot(1, 1, "10.0.0.1");
        let delta = Frame::Delta { generation: 2, changes: vec![], trigger: None };
        let bookmark = Frame::Bookmark { generation: 2 };
        for (form, encoded) in [("json", line_of(&snapshot)), ("packed", packed_of(&snapshot))] {
            let lines = [line_of(&bookmark), encoded, line_of(&delta), line_of(&bookmark)];
            for chunk in [1, 7, 19, 4096] {
                let store = test_store();
                let mut framed = Lines::new(chunks_of(&lines, chunk, None), store.clone(), MAX_FRAME_BYTES);
                let mut got = Vec::new();
                while let Some(next) = framed.next().await {
                    got.push(next.unwrap());
                }
                assert_eq!(got.len(), 4, "{form}, chunks of {chunk}");
                assert!(matches!(&got[0], Received::Frame(frame) if *frame == bookmark), "{form}, chunks of {chunk}");
                let Received::Snapshot(built) = got.remove(1) else {
                    panic!("{form}, chunks of {chunk}: not streamed")
                };
                assert_eq!(built.position(), (1, 1));
                store.swap_in(built);
                assert_eq!(a_record(&store, "a.default.svc.cluster.local").unwrap(), [10, 0, 0, 1]);
                // The bytes after the snapshot are the next line, whole.
                assert!(matches!(&got[1], Received::Frame(frame) if *frame == delta), "{form}, chunks of {chunk}");
                assert!(matches!(&got[2], Received::Frame(frame) if *frame == bookmark), "{form}, chunks of {chunk}");
            }
        }
    }

    #[tokio::test]
    async fn a_packed_snapshot_under_zstd_is_one_frame_with_its_header() {
        let snapshot = snapshot(1, 1, "10.0.0.1");
        let delta = Frame::Delta { generation: 2, changes: vec![], trigger: None };
        // Under zstd, as the controller sends it: header and bytes one frame, the delta another.
        let body: Vec<u8> = [packed_of(&snapshot), line_of(&delta)]
            .iter()
            .flat_map(|line| zstd::bulk::compress(line, 3).unwrap())
            .collect();
        let store = test_store();
        let mut framed = Lines::new(zstd_chunks(&body), store.clone(), MAX_FRAME_BYTES);
        assert!(matches!(framed.next().await.unwrap().unwrap(), Received::Snapshot(_)));
        assert!(matches!(framed.next().await.unwrap().unwrap(), Received::Frame(frame) if frame == delta));
    }

    #[tokio::test]
    async fn a_broken_packed_snapshot_leaves_the_old_records_serving() {
        let store = test_store();
        let first = packed_of(&snapshot(1, 1, "10.0.0.1"));
        let second = packed_of(&snapshot(2, 1, "10.0.0.2"));
        let third = packed_of(&snapshot(3, 1, "10.0.0.3"));
        let header_len = second.iter().position(|b| *b == b'\n').unwrap() + 1;
        let mut corrupt = second.clone();
        // The last record's type byte: an unknown type.
        let last = corrupt.len() - 5;
        corrupt[last] ^= 0x40;
        let mut short = second.clone();
        short.truncate(short.len() - 3);
        let oversize = br#"{"kind":"packed_snapshot","epoch":2,"generation":1,"bytes":999999999999}"#.to_vec();
        let source = ByteScripted {
            scripts: vec![
                (vec![first], None),
                // The connection breaks inside the packed bytes.
                (vec![second[..header_len + 10].to_vec()], Some("stream broken: connection reset")),
                // The body ends inside them.
                (vec![short], None),
                // Corrupted (or, at another byte, a different snapshot: either way no panic, no change).
                (vec![corrupt], None),
                // More bytes announced than a frame may have.
                (vec![[&oversize[..], b"\n"].concat()], None),
                // A header that is not one.
                (vec![b"{\"kind\":\"packed_snapshot\",\"generation\":\"x\"}\n".to_vec()], None),
                (vec![third], None),
            ],
        };
        let task = tokio::spawn(follow(source, store.clone(), Duration::from_secs(60), None));
        let seen = addresses_until_third_snapshot(&store).await;
        task.abort();
        assert!(
            !seen.is_empty() && seen.iter().all(|address| address[..] == [10, 0, 0, 1]),
            "only the first snapshot until the third: {seen:?}"
        );
        assert_eq!(a_record(&store, "a.default.svc.cluster.local").unwrap(), [10, 0, 0, 3]);

        // What each says, one by one.
        let header_bound = br#"{"kind":"packed_snapshot","epoch":2,"generation":1,"bytes":99}"#;
        let mut framed = Lines::new(chunks_of(&[[&header_bound[..], b"\n"].concat()], 8, None), test_store(), 98);
        assert_eq!(
            framed.next().await.unwrap().unwrap_err(),
            "a packed snapshot of 99 bytes, more than the 98 accepted"
        );
        let mut framed = Lines::new(chunks_of(&[second[..second.len() - 1].to_vec()], 8, None), test_store(), 1 << 20);
        assert_eq!(framed.next().await.unwrap().unwrap_err(), "the stream ended inside a snapshot");
    }

    #[tokio::test]
    async fn a_snapshot_that_breaks_mid_stream_leaves_the_old_records_serving() {
        let store = test_store();
        let first = line_of(&snapshot(1, 1, "10.0.0.1"));
        let second = line_of(&snapshot(2, 1, "10.0.0.2"));
        let third = line_of(&snapshot(3, 1, "10.0.0.3"));
        let source = ByteScripted {
            scripts: vec![
                (vec![first], None),
                // The connection breaks inside the snapshot line.
                (vec![second[..second.len() / 2].to_vec()], Some("stream broken: connection reset")),
                // The body ends inside the snapshot line.
                (vec![second[..second.len() - 5].to_vec()], None),
                // Malformed in the middle: the rest of the line is never read.
                (vec![[&second[..second.len() / 2], &b"}}}garbage"[..], &second[second.len() / 2..]].concat()], None),
                (vec![third], None),
            ],
        };
        let task = tokio::spawn(follow(source, store.clone(), Duration::from_secs(60), None));
        let seen = addresses_until_third_snapshot(&store).await;
        task.abort();
        assert!(
            seen.iter().all(|address| address[..] == [10, 0, 0, 1]),
            "only the first snapshot until the third: {seen:?}"
        );
        assert_eq!(a_record(&store, "a.default.svc.cluster.local").unwrap(), [10, 0, 0, 3]);
    }

    #[tokio::test]
    async fn a_zstd_window_past_the_limit_is_refused_and_the_old_records_keep_serving() {
        let compress = |frame: &Frame| zstd::bulk::compress(&line_of(frame), 3).unwrap();
        let first = compress(&snapshot(1, 1, "10.0.0.1"));
        // A controller (hostile or broken) whose frame asks for a 1 GiB window.
        let hostile = crate::stream_encoding::frame_with_window(30, &line_of(&snapshot(2, 1, "10.0.0.2")));
        let third = compress(&snapshot(3, 1, "10.0.0.3"));
        let store = test_store();
        let mut framed = Lines::new(zstd_chunks(&hostile), store.clone(), MAX_FRAME_BYTES);
        let error = framed.next().await.unwrap().unwrap_err();
        assert_eq!(
            error,
            "undecodable zstd stream: a frame asks for a window larger than 8 MiB, the most a replica accepts"
        );

        let source = ZstdScripted { bodies: vec![first, hostile, third] };
        let task = tokio::spawn(follow(source, store.clone(), Duration::from_secs(60), None));
        let seen = addresses_until_third_snapshot(&store).await;
        task.abort();
        assert!(
            !seen.is_empty() && seen.iter().all(|a| a[..] == [10, 0, 0, 1]),
            "the first records until the third: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_line_past_the_bound_is_refused_snapshot_or_not() {
        let store = test_store();
        let snapshot = line_of(&snapshot(1, 1, "10.0.0.1"));
        let delta = line_of(&Frame::Delta { generation: 2, changes: vec![], trigger: None });
        for (line, streamed) in [(&snapshot, true), (&delta, false)] {
            let bound = line.len() - 2;
            let mut framed = Lines::new(chunks_of(std::slice::from_ref(line), 8, None), store.clone(), bound);
            let error = framed.next().await.unwrap().unwrap_err();
            assert_eq!(error, format!("a frame longer than {bound} bytes"), "streamed: {streamed}");
            // One byte more is within the bound (the newline is not counted).
            let mut framed = Lines::new(chunks_of(std::slice::from_ref(line), 8, None), store.clone(), bound + 1);
            assert!(framed.next().await.unwrap().is_ok(), "streamed: {streamed}");
        }
        assert!(!store.is_synced());
    }

    fn test_store() -> Arc<ZoneStore> {
        Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 5, PodMode::Insecure).unwrap()))
    }

    fn client_tls(ca: &str) -> ClientTls {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let own_ca = params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let cert = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().signed_by(&key, &issuer).unwrap();
        let ca = if ca.is_empty() { own_ca.pem() } else { ca.to_owned() };
        ClientTls::from_pem(&ca, &cert.pem(), &key.serialize_pem(), None).unwrap()
    }

    #[tokio::test]
    async fn a_silent_controller_times_out_instead_of_hanging() {
        // Accepts TCP and says nothing: the TLS handshake never completes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let mut source = HttpSource::new(&[format!("https://127.0.0.1:{port}")], client_tls("")).unwrap();
        source.connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let error = source.connect(None, &test_store()).await.err().unwrap();
        assert!(error.contains("no connection within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        held.abort();

        // Completes the handshake, then never answers: the header timeout ends the wait.
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&server_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mute = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    held.push(tls);
                }
            }
        });
        let mut source =
            HttpSource::new(&[format!("https://127.0.0.1:{port}")], client_tls(&server_cert.pem())).unwrap();
        source.header_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let error = source.connect(None, &test_store()).await.err().unwrap();
        assert!(error.contains("no response headers within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        mute.abort();
    }

    #[test]
    fn plain_http_and_bad_material_are_refused_with_the_reason() {
        let tls = client_tls("");
        let error = HttpSource::new(&["http://127.0.0.1:8053".to_owned()], tls).unwrap_err();
        assert!(error.contains("https://"), "{error}");
        let error = ClientTls::from_pem("not a certificate", "", "", None).unwrap_err();
        assert!(error.contains("--tls-ca"), "{error}");
    }
}
