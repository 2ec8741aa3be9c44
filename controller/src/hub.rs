//! The hub: one publisher shared by every subscriber — in-process replicas and HTTP streams alike.
//! Publishing and subscribing take the same lock, so a subscriber's catch-up frames and its live frames
//! join without a gap or an overlap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use roster_shared::{Frame, IncrementalSynthesis, PackedSnapshotHeader, Trigger, ZoneData, packed};
use tokio::sync::{broadcast, watch};
use tracing::warn;
use zstd::stream::raw::CParameter;

use crate::health::Health;
use crate::metrics::ControllerMetrics;
use crate::publisher::Publisher;

/// Live frames buffered per subscriber before it is cut off as too slow (it then resumes from history).
const LIVE_BUFFER: usize = 4096;

/// A frame as it goes live, shared by every subscriber: each receiver gets the `Arc`, not a copy of the
/// frame, and the stream line of a delta or bookmark is encoded once, by the first feed that needs it.
#[derive(Debug)]
pub struct Published {
    pub frame: Frame,
    line: Encoded,
}

impl Published {
    fn new(frame: Frame) -> Arc<Self> {
        Arc::new(Self { frame, line: Encoded::default() })
    }
}

/// How a subscriber asked for its stream (`Accept-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Newline-delimited JSON.
    Plain,
    /// Each line as its own zstd frame (`Content-Encoding: zstd`).
    Zstd,
}

/// The snapshot form a subscriber asked for (`?snapshot=packed4`); other frames are JSON lines either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotForm {
    /// `{"kind":"snapshot",…}`, as every client that does not ask gets.
    Json,
    /// A `packed_snapshot` header line and the packed bytes (`roster_shared::packed`).
    Packed,
}

/// zstd's default level: a 100k-record snapshot compresses several times over in a fraction of a second, once.
const ZSTD_LEVEL: i32 = 3;

/// One frame's stream line in each encoding (and, for a snapshot, each form), each made at most once,
/// when first needed: a snapshot nobody asked packed is never packed, one only packed subscribers asked
/// for is never written as JSON.
#[derive(Debug, Default)]
struct Encoded {
    plain: OnceLock<Bytes>,
    zstd: OnceLock<Bytes>,
    packed: OnceLock<Bytes>,
    packed_zstd: OnceLock<Bytes>,
}

impl Encoded {
    fn get(&self, frame: &Frame, encoding: Encoding, form: SnapshotForm) -> Bytes {
        let packed = form == SnapshotForm::Packed && matches!(frame, Frame::Snapshot { .. });
        let (plain, zstd, window_log) = if packed {
            (self.packed.get_or_init(|| encode_packed(frame)), &self.packed_zstd, roster_shared::PACKED_ZSTD_WINDOW_LOG)
        } else {
            (self.plain.get_or_init(|| encode(frame)), &self.zstd, roster_shared::STREAM_ZSTD_WINDOW_LOG)
        };
        match encoding {
            Encoding::Plain => plain.clone(),
            Encoding::Zstd => zstd.get_or_init(|| compress(plain, window_log)).clone(),
        }
    }
}

/// A snapshot's (epoch, generation) and its stream lines.
type EncodedSnapshot = ((u64, u64), Arc<Encoded>);

/// A bookmark's generation and its stream lines.
type EncodedBookmark = (u64, Arc<Encoded>);

#[derive(Clone)]
pub struct Hub {
    publisher: Arc<Mutex<Publisher>>,
    live: broadcast::Sender<Arc<Published>>,
    metrics: Arc<ControllerMetrics>,
    health: Arc<Health>,
    /// Whether this instance serves the record stream now (the stream Lease's holder; always in process).
    serving: watch::Sender<bool>,
    /// The last snapshot as a stream line, keyed by (epoch, generation): encoded once for every subscriber.
    /// An async lock, so that subscribers arriving together wait for one encoding instead of each doing it.
    snapshot_line: Arc<tokio::sync::Mutex<Option<EncodedSnapshot>>>,
    /// The last bookmark's lines, by generation: every subscriber at that generation sends the same bytes,
    /// so 1,000 subscribers cost one encoding (and one zstd compression) instead of 1,000.
    bookmark_line: Arc<Mutex<Option<EncodedBookmark>>>,
    /// The size of the last packed snapshot line: a packed subscriber's outbox budget, as the JSON line's
    /// size (`snapshot_bytes`) is a JSON subscriber's.
    packed_snapshot_bytes: Arc<AtomicUsize>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(Publisher::new())
    }
}

impl Hub {
    pub fn new(publisher: Publisher) -> Self {
        Self {
            publisher: Arc::new(Mutex::new(publisher)),
            live: broadcast::channel(LIVE_BUFFER).0,
            metrics: ControllerMetrics::new(),
            health: Health::new(),
            serving: watch::channel(true).0,
            snapshot_line: Arc::default(),
            bookmark_line: Arc::default(),
            packed_snapshot_bytes: Arc::default(),
        }
    }

    /// A hub that serves the stream only between [`Hub::begin_term`] and [`Hub::end_term`].
    pub fn elected(publisher: Publisher) -> Self {
        let hub = Self::new(publisher);
        hub.serving.send_replace(false);
        hub
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Starts serving under `epoch`: subscribers from any earlier term get a snapshot of the new epoch.
    pub fn begin_term(&self, epoch: u64) {
        self.publisher.lock().set_epoch(epoch);
        self.metrics.epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
        self.serving.send_replace(true);
    }

    /// Stops serving: every stream ends, new ones are refused.
    pub fn end_term(&self) {
        self.serving.send_replace(false);
    }

    /// Follows whether this instance serves the stream.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }

    /// `frame` as one stream line (a snapshot in `form`); a snapshot is encoded (and compressed) once per
    /// (epoch, generation) and form for all subscribers.
    pub async fn line(&self, frame: &Frame, encoding: Encoding, form: SnapshotForm) -> Bytes {
        if let Frame::Bookmark { generation } = frame {
            return self.bookmark_line(*generation, frame, encoding);
        }
        let Frame::Snapshot { epoch, generation, .. } = frame else {
            return Encoded::default().get(frame, encoding, form);
        };
        let key = (*epoch, *generation);
        let mut cached = self.snapshot_line.lock().await;
        let lines = match cached.as_ref() {
            Some((at, lines)) if *at == key => lines.clone(),
            _ => {
                self.metrics.snapshot_encodings.inc();
                cached.insert((key, Arc::default())).1.clone()
            }
        };
        // Still under the lock: subscribers arriving together wait for one encoding and one compression,
        // not each do it.
        let line = lines.get(frame, encoding, form);
        if let Some(plain) = lines.plain.get() {
            self.metrics.snapshot_bytes.set(i64::try_from(plain.len()).unwrap_or(i64::MAX));
        }
        if let Some(packed) = lines.packed.get() {
            self.packed_snapshot_bytes.store(packed.len(), Ordering::Relaxed);
        }
        line
    }

    /// The uncompressed size of the last snapshot line in `form` written (0 before any).
    pub fn snapshot_bytes(&self, form: SnapshotForm) -> usize {
        match form {
            SnapshotForm::Json => usize::try_from(self.metrics.snapshot_bytes.get()).unwrap_or(0),
            SnapshotForm::Packed => self.packed_snapshot_bytes.load(Ordering::Relaxed),
        }
    }

    fn bookmark_line(&self, generation: u64, frame: &Frame, encoding: Encoding) -> Bytes {
        let lines = {
            let mut cached = self.bookmark_line.lock();
            match cached.as_ref() {
                Some((at, lines)) if *at == generation => lines.clone(),
                _ => cached.insert((generation, Arc::default())).1.clone(),
            }
        };
        lines.get(frame, encoding, SnapshotForm::Json)
    }

    /// The stream line of a live frame: snapshots through [`Hub::line`]'s cache, others encoded once.
    pub async fn live_line(&self, published: &Published, encoding: Encoding, form: SnapshotForm) -> Bytes {
        if matches!(published.frame, Frame::Snapshot { .. }) {
            return self.line(&published.frame, encoding, form).await;
        }
        published.line.get(&published.frame, encoding, SnapshotForm::Json)
    }

    pub fn metrics(&self) -> &Arc<ControllerMetrics> {
        &self.metrics
    }

    /// Publishes a new record set; returns the new generation when something changed.
    pub fn publish(&self, zone: ZoneData) -> Option<u64> {
        self.publish_with(zone, None)
    }

    /// As [`Hub::publish`], recording what triggered the change (for the programming latency metric).
    pub fn publish_with(&self, zone: ZoneData, trigger: Option<Trigger>) -> Option<u64> {
        let records = zone.record_count();
        let mut publisher = self.publisher.lock();
        let frame = publisher.publish_with(zone, trigger)?;
        Some(self.announce(frame, records))
    }

    /// Publishes what changed in `synthesis` since its last publication.
    pub fn publish_incremental(&self, synthesis: &mut IncrementalSynthesis, trigger: Option<Trigger>) -> Option<u64> {
        let changes = synthesis.take_changes();
        let mut publisher = self.publisher.lock();
        let frame = publisher.publish_changes(changes, trigger, || synthesis.zone())?;
        Some(self.announce(frame, synthesis.record_count()))
    }

    /// Sends `frame` live. Callers hold the publisher's lock, so that a subscriber sees each frame
    /// exactly once: in its catch-up or live, never both.
    fn announce(&self, frame: Frame, records: usize) -> u64 {
        let generation = frame.generation();
        self.metrics.publishes.inc();
        self.metrics.generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.metrics.records.set(i64::try_from(records).unwrap_or(i64::MAX));
        // No subscriber is fine: they catch up from the publisher when they come.
        let _ = self.live.send(Published::new(frame));
        generation
    }

    /// The frames that bring a subscriber at `from` up to date, and a receiver for everything after.
    pub fn subscribe(&self, from: Option<(u64, u64)>) -> (Vec<Frame>, broadcast::Receiver<Arc<Published>>) {
        let publisher = self.publisher.lock();
        (publisher.catch_up(from), self.live.subscribe())
    }

    /// `(epoch, generation)` once something was published.
    pub fn position(&self) -> Option<(u64, u64)> {
        let publisher = self.publisher.lock();
        publisher.generation().map(|generation| (publisher.epoch(), generation))
    }

    pub fn current(&self) -> Option<Arc<ZoneData>> {
        self.publisher.lock().current().cloned()
    }
}

fn encode(frame: &Frame) -> Bytes {
    let mut text = serde_json::to_vec(frame).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// A snapshot as its `packed_snapshot` header line followed by the packed bytes; a zone that cannot be
/// packed (synthesis never makes one) goes as its JSON line, which a replica that asked for packed reads too.
fn encode_packed(frame: &Frame) -> Bytes {
    let Frame::Snapshot { epoch, generation, zone } = frame else { return encode(frame) };
    let packed = match packed::encode(zone) {
        Ok(packed) => packed,
        Err(error) => {
            warn!(%error, "snapshot sent as JSON to subscribers that asked for it packed");
            return encode(frame);
        }
    };
    let header = PackedSnapshotHeader { epoch: *epoch, generation: *generation, bytes: packed.len() as u64 };
    let mut line = serde_json::to_vec(&header).unwrap_or_default();
    line.push(b'\n');
    line.extend_from_slice(&packed);
    Bytes::from(line)
}

/// One complete zstd frame holding `line`, its window bounded (at most `STREAM_ZSTD_WINDOW_LOG`) so that a
/// replica decodes a snapshot of any size with a bounded buffer (zstd's own choice depends on level and
/// version).
fn compress(line: &[u8], window_log: u32) -> Bytes {
    let compressed = zstd::bulk::Compressor::new(ZSTD_LEVEL).and_then(|mut compressor| {
        compressor.set_parameter(CParameter::WindowLog(window_log))?;
        compressor.compress(line)
    });
    // Compressing into memory fails only when allocation does, which aborts first.
    Bytes::from(compressed.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

    #[tokio::test]
    async fn a_bookmark_is_encoded_once_per_generation_for_every_subscriber() {
        let hub = Hub::default();
        for encoding in [Encoding::Plain, Encoding::Zstd] {
            let first = hub.line(&Frame::Bookmark { generation: 7 }, encoding, SnapshotForm::Json).await;
            let again = hub.line(&Frame::Bookmark { generation: 7 }, encoding, SnapshotForm::Packed).await;
            // The same bytes, not an equal copy: one encoding shared (a bookmark has one form).
            assert_eq!(first.as_ptr(), again.as_ptr(), "{encoding:?}");
            let next = hub.line(&Frame::Bookmark { generation: 8 }, encoding, SnapshotForm::Json).await;
            assert_ne!(first, next, "{encoding:?}");
        }
        let plain = hub.line(&Frame::Bookmark { generation: 8 }, Encoding::Plain, SnapshotForm::Json).await;
        assert_eq!(&plain[..], b"{\"kind\":\"bookmark\",\"generation\":8}\n");
    }

    fn snapshot(generation: u64) -> Frame {
        let apex = roster_shared::DomainName::parse("cluster.local").unwrap();
        let mut zone = ZoneData::default();
        for i in 0..50u32 {
            let name = roster_shared::DomainName::parse(&format!("p{i}.default.svc.cluster.local")).unwrap();
            zone.add(name, roster_shared::RData::A { ip: std::net::Ipv4Addr::from(0x0a00_0000 + i) }, &apex);
        }
        Frame::Snapshot { epoch: 2, generation, zone: Arc::new(zone) }
    }

    #[tokio::test]
    async fn a_snapshot_is_packed_only_when_asked_and_once_per_generation() {
        let hub = Hub::default();
        let frame = snapshot(5);
        let json = hub.line(&frame, Encoding::Plain, SnapshotForm::Json).await;
        assert_eq!(&json[..], &encode(&frame)[..], "JSON subscribers get today's line");
        let cached = hub.snapshot_line.lock().await.as_ref().unwrap().1.clone();
        assert!(cached.packed.get().is_none(), "nobody asked for it packed yet");

        let packed = hub.line(&frame, Encoding::Plain, SnapshotForm::Packed).await;
        let again = hub.line(&frame, Encoding::Plain, SnapshotForm::Packed).await;
        assert_eq!(packed.as_ptr(), again.as_ptr(), "packed once for every subscriber");
        let newline = packed.iter().position(|b| *b == b'\n').unwrap();
        let header: PackedSnapshotHeader = serde_json::from_slice(&packed[..newline]).unwrap();
        assert_eq!(
            header,
            PackedSnapshotHeader { epoch: 2, generation: 5, bytes: (packed.len() - newline - 1) as u64 }
        );
        let Frame::Snapshot { zone, .. } = &frame else { unreachable!() };
        assert_eq!(&packed::decode_zone(&packed[newline + 1..]).unwrap(), &**zone);
        assert_eq!(hub.snapshot_bytes(SnapshotForm::Packed), packed.len());
        assert_eq!(hub.snapshot_bytes(SnapshotForm::Json), json.len());
        assert!(packed.len() * 3 < json.len(), "{} vs {}", packed.len(), json.len());
        assert_eq!(hub.metrics.snapshot_encodings.get(), 1);

        // Only packed subscribers at the next generation: never written as JSON.
        let zstd = hub.line(&snapshot(6), Encoding::Zstd, SnapshotForm::Packed).await;
        assert!(zstd.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        let cached = hub.snapshot_line.lock().await.as_ref().unwrap().1.clone();
        assert!(cached.plain.get().is_none() && cached.packed.get().is_some());
        assert_eq!(hub.metrics.snapshot_encodings.get(), 2);
    }

    #[test]
    fn a_large_line_compresses_to_a_frame_a_bounded_decoder_takes() {
        // 4 MiB of text that does not repeat within 2 MiB, so that a window may not shrink to the content.
        let line: Vec<u8> =
            (0..600_000u32).flat_map(|i| format!("{},", i.wrapping_mul(2_654_435_761)).into_bytes()).collect();
        assert!(line.len() > 4 << 20);
        // A packed snapshot's frame is decoded within its smaller window.
        for window_log in [roster_shared::STREAM_ZSTD_WINDOW_LOG, roster_shared::PACKED_ZSTD_WINDOW_LOG] {
            let frame = compress(&line, window_log);
            let mut decoder = Decoder::new().unwrap();
            decoder.set_parameter(DParameter::WindowLogMax(window_log)).unwrap();
            let mut out = vec![0u8; line.len() + 1];
            let mut input = InBuffer::around(&frame[..]);
            let mut output = OutBuffer::around(&mut out[..]);
            while input.pos() < frame.len() {
                decoder.run(&mut input, &mut output).unwrap();
            }
            let written = output.pos();
            assert_eq!(&out[..written], &line[..], "window 2^{window_log}");
        }
    }
}
