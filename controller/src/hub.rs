//! The hub: one publisher shared by every subscriber — in-process replicas and HTTP streams alike.
//! Publishing and subscribing take the same lock, so a subscriber's catch-up frames and its live frames
//! join without a gap or an overlap.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use roster_shared::{Frame, IncrementalSynthesis, Trigger, ZoneData};
use tokio::sync::{broadcast, watch};

use crate::health::Health;
use crate::metrics::ControllerMetrics;
use crate::publisher::Publisher;

/// Live frames buffered per subscriber before it is cut off as too slow (it then resumes from history).
const LIVE_BUFFER: usize = 4096;

/// A snapshot's (epoch, generation) and its stream line.
type EncodedSnapshot = ((u64, u64), Bytes);

#[derive(Clone)]
pub struct Hub {
    publisher: Arc<Mutex<Publisher>>,
    live: broadcast::Sender<Frame>,
    metrics: Arc<ControllerMetrics>,
    health: Arc<Health>,
    /// Whether this instance serves the record stream now (the stream Lease's holder; always in process).
    serving: watch::Sender<bool>,
    /// The last snapshot as a stream line, keyed by (epoch, generation): encoded once for every subscriber.
    /// An async lock, so that subscribers arriving together wait for one encoding instead of each doing it.
    snapshot_line: Arc<tokio::sync::Mutex<Option<EncodedSnapshot>>>,
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

    /// `frame` as one NDJSON line; a snapshot is encoded once per (epoch, generation) for all subscribers.
    pub async fn line(&self, frame: &Frame) -> Bytes {
        let Frame::Snapshot { epoch, generation, .. } = frame else { return encode(frame) };
        let key = (*epoch, *generation);
        let mut cached = self.snapshot_line.lock().await;
        if let Some((at, line)) = cached.as_ref()
            && *at == key
        {
            return line.clone();
        }
        let line = encode(frame);
        self.metrics.snapshot_encodings.inc();
        self.metrics.snapshot_bytes.set(i64::try_from(line.len()).unwrap_or(i64::MAX));
        *cached = Some((key, line.clone()));
        line
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
        let _ = self.live.send(frame);
        generation
    }

    /// The frames that bring a subscriber at `from` up to date, and a receiver for everything after.
    pub fn subscribe(&self, from: Option<(u64, u64)>) -> (Vec<Frame>, broadcast::Receiver<Frame>) {
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
