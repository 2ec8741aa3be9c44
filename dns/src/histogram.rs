//! A classic Prometheus histogram whose observations are relaxed atomic additions. The DNS path
//! observes three per query, and prometheus-client's `Histogram` takes a mutex for each (74
//! instructions an observation under callgrind, bench/README.md issue 14). It is exported through
//! prometheus-client's own encoder, so the text is the same as its `Histogram`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending; the +Inf bucket is implicit.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative): one per bound, then +Inf.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// `bounds` ascending, as prometheus-client's `Histogram::new` takes them (non-finite ones dropped).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().filter(|bound| bound.is_finite()).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner { bounds, counts, sum: AtomicU64::new(0) }))
    }

    pub fn observe(&self, value: f64) {
        let inner = &*self.0;
        // The first bucket whose bound is at least the value; NaN lands in +Inf (as prometheus-client).
        let bucket = inner.bounds.iter().position(|bound| value <= *bound).unwrap_or(inner.bounds.len());
        if let Some(count) = inner.counts.get(bucket) {
            count.fetch_add(1, Relaxed);
        }
        // No atomic f64 add: a compare-exchange loop, uncontended in practice (one UDP loop per core).
        let mut old = inner.sum.load(Relaxed);
        while let Err(current) =
            inner.sum.compare_exchange_weak(old, (f64::from_bits(old) + value).to_bits(), Relaxed, Relaxed)
        {
            old = current;
        }
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|count| count.load(Relaxed)))
            .collect();
        // The count from the buckets read, so that a scrape during observations stays consistent.
        let count = buckets.iter().map(|(_, count)| count).sum();
        encoder.encode_histogram::<NoLabelSet>(f64::from_bits(inner.sum.load(Relaxed)), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    fn text(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    /// The same observations give prometheus-client's text byte for byte: bounds, boundary values,
    /// values past the last bound, zero, NaN.
    #[test]
    fn exports_what_prometheus_clients_histogram_exports() {
        let bounds: Vec<f64> = exponential_buckets(0.00025, 2.0, 16).collect();
        let ours = AtomicHistogram::new(bounds.clone());
        let theirs = Histogram::new(bounds.clone());
        let values = [0.0, 0.00025, 0.0003, 0.001, 1.0, 8.192, 8.2, 100.0, 3e-5, f64::NAN];
        for (i, value) in values.iter().chain(bounds.iter()).enumerate() {
            for _ in 0..=i % 3 {
                ours.observe(*value);
                theirs.observe(*value);
            }
        }
        // NaN makes both sums NaN; compare a second pair without it too.
        let expected = text(|r| r.register("d", "help", theirs));
        assert_eq!(text(|r| r.register("d", "help", ours)), expected);
        assert!(expected.contains("d_bucket{le=\"+Inf\"}"), "{expected}");

        let ours = AtomicHistogram::new([0.0, 100.0, 511.0, f64::INFINITY]);
        let theirs = Histogram::new([0.0, 100.0, 511.0, f64::INFINITY]);
        for value in [0.0, 1.0, 99.0, 100.0, 512.0, 70_000.0, 33.0] {
            ours.observe(value);
            theirs.observe(value);
        }
        let expected = text(|r| r.register("s", "help", theirs));
        assert_eq!(text(|r| r.register("s", "help", ours)), expected);
        assert!(expected.contains("s_sum 70745.0"), "{expected}");
    }
}
