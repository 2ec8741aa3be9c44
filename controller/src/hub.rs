//! The hub: one publisher shared by every subscriber — in-process replicas and HTTP streams alike.
//! Publishing and subscribing take the same lock, so a subscriber's catch-up frames and its live frames
//! join without a gap or an overlap.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use roster_shared::{Frame, IncrementalSynthesis, Trigger, ZoneData};
use tokio::sync::{broadcast, watch};
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

/// zstd's default level: a 100k-record snapshot compresses several times over in a fraction of a second, once.
const ZSTD_LEVEL: i32 = 3;

/// One frame's stream line in each encoding, each made at most once, when first needed.
#[derive(Debug, Default)]
struct Encoded {
    plain: OnceLock<Bytes>,
    zstd: OnceLock<Bytes>,
}

impl Encoded {
    fn get(&self, frame: &Frame, encoding: Encoding) -> Bytes {
        let plain = self.plain.get_or_init(|| encode(frame));
        match encoding {
            Encoding::Plain => plain.clone(),
            Encoding::Zstd => self.zstd.get_or_init(|| compress(plain)).clone(),
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

    /// `frame` as one stream line; a snapshot is encoded (and compressed) once per (epoch, generation) for
    /// all subscribers.
    pub async fn line(&self, frame: &Frame, encoding: Encoding) -> Bytes {
        if let Frame::Bookmark { generation } = frame {
            return self.bookmark_line(*generation, frame, encoding);
        }
        let Frame::Snapshot { epoch, generation, .. } = frame else { return Encoded::default().get(frame, encoding) };
        let key = (*epoch, *generation);
        let mut cached = self.snapshot_line.lock().await;
        let lines = match cached.as_ref() {
            Some((at, lines)) if *at == key => lines.clone(),
            _ => {
                let lines = Arc::new(Encoded::default());
                let plain = lines.get(frame, Encoding::Plain);
                self.metrics.snapshot_encodings.inc();
                self.metrics.snapshot_bytes.set(i64::try_from(plain.len()).unwrap_or(i64::MAX));
                *cached = Some((key, lines.clone()));
                lines
            }
        };
        // Still under the lock: subscribers arriving together wait for one compression, not each do it.
        lines.get(frame, encoding)
    }

    fn bookmark_line(&self, generation: u64, frame: &Frame, encoding: Encoding) -> Bytes {
        let lines = {
            let mut cached = self.bookmark_line.lock();
            match cached.as_ref() {
                Some((at, lines)) if *at == generation => lines.clone(),
                _ => cached.insert((generation, Arc::default())).1.clone(),
            }
        };
        lines.get(frame, encoding)
    }

    /// The stream line of a live frame: snapshots through [`Hub::line`]'s cache, others encoded once.
    pub async fn live_line(&self, published: &Published, encoding: Encoding) -> Bytes {
        if matches!(published.frame, Frame::Snapshot { .. }) {
            return self.line(&published.frame, encoding).await;
        }
        published.line.get(&published.frame, encoding)
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

/// One complete zstd frame holding `line`, its window bounded (`STREAM_ZSTD_WINDOW_LOG`) so that a replica
/// decodes a snapshot of any size with a bounded buffer (zstd's own choice depends on level and version).
fn compress(line: &[u8]) -> Bytes {
    let compressed = zstd::bulk::Compressor::new(ZSTD_LEVEL).and_then(|mut compressor| {
        compressor.set_parameter(CParameter::WindowLog(roster_shared::STREAM_ZSTD_WINDOW_LOG))?;
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
            let first = hub.line(&Frame::Bookmark { generation: 7 }, encoding).await;
            let again = hub.line(&Frame::Bookmark { generation: 7 }, encoding).await;
            // The same bytes, not an equal copy: one encoding shared.
            assert_eq!(first.as_ptr(), again.as_ptr(), "{encoding:?}");
            let next = hub.line(&Frame::Bookmark { generation: 8 }, encoding).await;
            assert_ne!(first, next, "{encoding:?}");
        }
        let plain = hub.line(&Frame::Bookmark { generation: 8 }, Encoding::Plain).await;
        assert_eq!(&plain[..], b"{\"kind\":\"bookmark\",\"generation\":8}\n");
    }

    #[test]
    fn a_large_line_compresses_to_a_frame_a_bounded_decoder_takes() {
        // 4 MiB of text that does not repeat within 2 MiB, so that a window may not shrink to the content.
        let line: Vec<u8> =
            (0..600_000u32).flat_map(|i| format!("{},", i.wrapping_mul(2_654_435_761)).into_bytes()).collect();
        assert!(line.len() > 4 << 20);
        let frame = compress(&line);
        let mut decoder = Decoder::new().unwrap();
        decoder.set_parameter(DParameter::WindowLogMax(roster_shared::STREAM_ZSTD_WINDOW_LOG)).unwrap();
        let mut out = vec![0u8; line.len() + 1];
        let mut input = InBuffer::around(&frame[..]);
        let mut output = OutBuffer::around(&mut out[..]);
        while input.pos() < frame.len() {
            decoder.run(&mut input, &mut output).unwrap();
        }
        let written = output.pos();
        assert_eq!(&out[..written], &line[..]);
    }
}
