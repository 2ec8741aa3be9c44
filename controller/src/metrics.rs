//! The controller's own metrics, served on the record stream's port at `/metrics`: watch events,
//! restarts and errors per kind, publications, the current generation and record count, and the number
//! of DNS replicas following the stream.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

pub struct ControllerMetrics {
    registry: Registry,
    /// Identity-controller reconciles per kind and result (`success`, `error`).
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Identity-controller reconciles running now.
    pub reconciles_in_flight: Gauge,
    pub watch_events: Family<KindLabel, Counter>,
    pub watch_restarts: Family<KindLabel, Counter>,
    pub watch_errors: Family<KindLabel, Counter>,
    pub publishes: Counter,
    pub generation: Gauge,
    pub records: Gauge,
    pub subscribers: Gauge,
    /// The epoch (stream Lease term) this instance publishes under.
    pub epoch: Gauge,
    pub snapshot_encodings: Counter,
    pub snapshot_bytes: Gauge,
    /// Stream connections refused: over the cap, a failed or slow handshake, no client certificate.
    pub stream_refused: Family<ReasonLabel, Counter>,
    /// Subscribers cut off for not reading (more than a snapshot's worth buffered).
    pub stream_cutoffs: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

impl ControllerMetrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "roster_controller_reconciles",
            "Identity-controller reconciles per kind and result (success, error).",
            reconciles.clone(),
        );
        let reconciles_in_flight = Gauge::default();
        registry.register(
            "roster_controller_reconciles_in_flight",
            "Identity-controller reconciles running now.",
            reconciles_in_flight.clone(),
        );
        let watch_events = Family::<KindLabel, Counter>::default();
        registry.register("roster_controller_watch_events", "Watch events taken in, per kind.", watch_events.clone());
        let watch_restarts = Family::<KindLabel, Counter>::default();
        registry.register(
            "roster_controller_watch_restarts",
            "Re-lists per kind (start, dropped watch, 410 Gone).",
            watch_restarts.clone(),
        );
        let watch_errors = Family::<KindLabel, Counter>::default();
        registry.register("roster_controller_watch_errors", "Failed watch requests per kind.", watch_errors.clone());
        let publishes = Counter::default();
        registry.register(
            "roster_controller_publishes",
            "Record sets published (snapshot or delta).",
            publishes.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "roster_controller_generation",
            "Generation of the published record set.",
            generation.clone(),
        );
        let records = Gauge::default();
        registry.register("roster_controller_records", "Records in the published set.", records.clone());
        let subscribers = Gauge::default();
        registry.register(
            "roster_controller_stream_subscribers",
            "DNS replicas following the stream.",
            subscribers.clone(),
        );
        let epoch = Gauge::default();
        registry.register(
            "roster_controller_stream_epoch",
            "The epoch (stream Lease term) this instance publishes under.",
            epoch.clone(),
        );
        let snapshot_encodings = Counter::default();
        registry.register(
            "roster_controller_snapshot_encodings",
            "Snapshots encoded for the stream (once per generation, shared by every subscriber).",
            snapshot_encodings.clone(),
        );
        let snapshot_bytes = Gauge::default();
        registry.register(
            "roster_controller_snapshot_bytes",
            "Size of the last encoded snapshot.",
            snapshot_bytes.clone(),
        );
        let stream_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "roster_controller_stream_refused",
            "Stream connections refused, per reason (capacity, handshake, unauthenticated, not_leader).",
            stream_refused.clone(),
        );
        let stream_cutoffs = Counter::default();
        registry.register(
            "roster_controller_stream_cutoffs",
            "Subscribers cut off for not reading their frames.",
            stream_cutoffs.clone(),
        );
        Arc::new(Self {
            registry,
            reconciles,
            reconciles_in_flight,
            watch_events,
            watch_restarts,
            watch_errors,
            publishes,
            generation,
            records,
            subscribers,
            epoch,
            snapshot_encodings,
            snapshot_bytes,
            stream_refused,
            stream_cutoffs,
        })
    }

    /// Counts one reconcile outcome.
    pub fn reconciled(&self, kind: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reconciles.get_or_create(&ReconcileLabels { kind, result }).inc();
    }

    /// Counts one refused stream connection.
    pub fn refused(&self, reason: &'static str) {
        self.stream_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl std::fmt::Debug for ControllerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerMetrics").finish_non_exhaustive()
    }
}
