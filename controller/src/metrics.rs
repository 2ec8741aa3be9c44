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
        })
    }

    /// Counts one reconcile outcome.
    pub fn reconciled(&self, kind: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reconciles.get_or_create(&ReconcileLabels { kind, result }).inc();
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
