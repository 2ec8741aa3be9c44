//! The hub: one publisher shared by every subscriber — in-process replicas and HTTP streams alike.
//! Publishing and subscribing take the same lock, so a subscriber's catch-up frames and its live frames
//! join without a gap or an overlap.

use std::sync::Arc;

use parking_lot::Mutex;
use roster_shared::{Frame, IncrementalSynthesis, Trigger, ZoneData};
use tokio::sync::broadcast;

use crate::metrics::ControllerMetrics;
use crate::publisher::Publisher;

/// Live frames buffered per subscriber before it is cut off as too slow (it then resumes from history).
const LIVE_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Hub {
    publisher: Arc<Mutex<Publisher>>,
    live: broadcast::Sender<Frame>,
    metrics: Arc<ControllerMetrics>,
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
        }
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
