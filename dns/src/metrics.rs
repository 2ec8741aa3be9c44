//! CoreDNS-compatible metrics, so that CoreDNS dashboards work unchanged: the same names, labels and
//! buckets (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`, `coredns_build_info`,
//! `coredns_kubernetes_dns_programming_duration_seconds`). Label values are `&'static str` so that
//! recording a query allocates nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::histogram::AtomicHistogram;

/// The `server` label: CoreDNS's `dns://:53` form.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: &'static str,
    pub zone: &'static str,
    pub view: &'static str,
    pub proto: &'static str,
    pub family: &'static str,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub server: &'static str,
    pub zone: &'static str,
    pub view: &'static str,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub server: &'static str,
    pub zone: &'static str,
    pub view: &'static str,
    pub rcode: &'static str,
    pub plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SizeLabels {
    pub server: &'static str,
    pub zone: &'static str,
    pub view: &'static str,
    pub proto: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub server: &'static str,
    pub r#type: &'static str,
    pub zones: &'static str,
    pub view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheMissLabels {
    pub server: &'static str,
    pub zones: &'static str,
    pub view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardResponseLabels {
    pub to: &'static str,
    pub rcode: &'static str,
}

/// An upstream message dropped because it is not the answer to our query (ID, QR, opcode or question).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardRejectLabels {
    pub to: &'static str,
    pub proto: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgrammingLabels {
    pub service_kind: &'static str,
}

fn duration_histogram() -> AtomicHistogram {
    // CoreDNS: prometheus.ExponentialBuckets(0.00025, 2, 16).
    AtomicHistogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn size_histogram() -> AtomicHistogram {
    AtomicHistogram::new([
        0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
    ])
}

fn programming_histogram() -> Histogram {
    // CoreDNS: prometheus.ExponentialBuckets(0.001, 2, 20) (1 ms … ~9 min).
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// CoreDNS's type labels: common types by name, everything else `other` (last), in index order.
const TYPE_LABELS: [&str; 15] =
    ["A", "AAAA", "NS", "PTR", "SRV", "SOA", "CNAME", "TXT", "MX", "ANY", "AXFR", "IXFR", "HTTPS", "SVCB", "other"];
const RCODE_LABELS: [&str; 8] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"];
/// The `plugin` label values the handler gives, in index order.
const PLUGIN_LABELS: [&str; 4] = ["kubernetes", "forward", "cache", ""];
/// Protocols (`udp`, `tcp`) times address families (`1`, `2`).
const TRANSPORTS: usize = 4;
/// Zone labels with their own [`ZoneSeries`]: the handler's zones and "."; others take the slow path.
const MAX_ZONE_LABELS: usize = 8;

/// The per-query series of one zone label, each resolved from its family the first time it is used
/// (so a series appears in the output only once observed, as CoreDNS's) and then reached by index
/// with one atomic load: no lock and no hashing per query (the families hash label structs with
/// SipHash under a lock).
struct ZoneSeries {
    zone: &'static str,
    /// By transport (protocol, family) and type.
    requests: [OnceLock<Counter>; TRANSPORTS * TYPE_LABELS.len()],
    /// By rcode and plugin.
    responses: [OnceLock<Counter>; RCODE_LABELS.len() * PLUGIN_LABELS.len()],
    /// By type.
    durations: [OnceLock<AtomicHistogram>; TYPE_LABELS.len()],
    /// By protocol.
    request_sizes: [OnceLock<AtomicHistogram>; 2],
    response_sizes: [OnceLock<AtomicHistogram>; 2],
}

impl ZoneSeries {
    fn new(zone: &'static str) -> Self {
        Self {
            zone,
            requests: std::array::from_fn(|_| OnceLock::new()),
            responses: std::array::from_fn(|_| OnceLock::new()),
            durations: std::array::from_fn(|_| OnceLock::new()),
            request_sizes: std::array::from_fn(|_| OnceLock::new()),
            response_sizes: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// Every metric a DNS replica exports.
pub struct Metrics {
    zone_series: [OnceLock<Box<ZoneSeries>>; MAX_ZONE_LABELS],
    registry: Registry,
    server: &'static str,
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    durations: Family<DurationLabels, AtomicHistogram, fn() -> AtomicHistogram>,
    request_sizes: Family<SizeLabels, AtomicHistogram, fn() -> AtomicHistogram>,
    response_sizes: Family<SizeLabels, AtomicHistogram, fn() -> AtomicHistogram>,
    pub cache_entries: Family<CacheLabels, Gauge>,
    /// roster's own: the cache's accounted bytes (it is bounded in bytes, `--cache-bytes`).
    pub cache_bytes: Family<CacheMissLabels, Gauge>,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheMissLabels, Counter>,
    pub forward_requests: Family<ForwardLabels, Counter>,
    pub forward_responses: Family<ForwardResponseLabels, Counter>,
    /// roster's own: upstream messages dropped as not answering our query (spoofed or stray).
    pub forward_rejected: Family<ForwardRejectLabels, Counter>,
    programming: Family<ProgrammingLabels, Histogram, fn() -> Histogram>,
    autopath: Family<ServerLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: &'static str,
}

/// One answered query, as the front handler saw it.
pub struct Observation {
    pub zone: &'static str,
    pub udp: bool,
    pub ipv6: bool,
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    /// Which part answered: `kubernetes`, `forward`, `cache` (CoreDNS's plugin label), or "" for errors.
    pub plugin: &'static str,
    pub request_size: usize,
    pub response_size: usize,
    pub duration: Duration,
}

fn type_index(qtype: RecordType) -> usize {
    match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::NS => 2,
        RecordType::PTR => 3,
        RecordType::SRV => 4,
        RecordType::SOA => 5,
        RecordType::CNAME => 6,
        RecordType::TXT => 7,
        RecordType::MX => 8,
        RecordType::ANY => 9,
        RecordType::AXFR => 10,
        RecordType::IXFR => 11,
        RecordType::HTTPS => 12,
        RecordType::SVCB => 13,
        _ => 14,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    RCODE_LABELS[rcode_index(rcode)]
}

/// Leaks a label value once; used for the handful of values fixed at start-up (zones, upstreams).
pub fn static_label(value: String) -> &'static str {
    Box::leak(value.into_boxed_str())
}

impl Metrics {
    /// `listen` becomes the `server` label, as CoreDNS's `dns://host:port`.
    pub fn new(listen: &str) -> Arc<Self> {
        let server = static_label(format!("dns://{listen}"));
        let mut registry = Registry::default();
        let build = Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", "roster"),
            ("goversion", "none (rust)"),
        ]);
        registry.register("coredns_build", "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.", build);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            requests.clone(),
        );
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register("coredns_dns_responses", "Counter of response status codes.", responses.clone());
        let durations = Family::<DurationLabels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            durations.clone(),
        );
        let request_sizes =
            Family::<SizeLabels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(size_histogram);
        registry.register(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            request_sizes.clone(),
        );
        let response_sizes =
            Family::<SizeLabels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(size_histogram);
        registry.register(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            response_sizes.clone(),
        );
        let cache_entries = Family::<CacheLabels, Gauge>::default();
        registry.register("coredns_cache_entries", "The number of elements in the cache.", cache_entries.clone());
        let cache_bytes = Family::<CacheMissLabels, Gauge>::default();
        registry.register(
            "roster_cache_size_bytes",
            "Bytes accounted to the forwarded-answer cache (records, names, per-entry overhead).",
            cache_bytes.clone(),
        );
        let cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register("coredns_cache_hits", "The count of cache hits.", cache_hits.clone());
        let cache_misses = Family::<CacheMissLabels, Counter>::default();
        registry.register(
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
            cache_misses.clone(),
        );
        let forward_requests = Family::<ForwardLabels, Counter>::default();
        registry.register(
            "coredns_forward_requests",
            "Counter of requests made per upstream.",
            forward_requests.clone(),
        );
        let forward_responses = Family::<ForwardResponseLabels, Counter>::default();
        registry.register(
            "coredns_forward_responses",
            "Counter of responses received per upstream.",
            forward_responses.clone(),
        );
        let forward_rejected = Family::<ForwardRejectLabels, Counter>::default();
        registry.register(
            "roster_forward_rejected_answers",
            "Upstream messages dropped because their ID, QR bit, opcode or question do not match the query.",
            forward_rejected.clone(),
        );
        let programming =
            Family::<ProgrammingLabels, Histogram, fn() -> Histogram>::new_with_constructor(programming_histogram);
        registry.register(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            programming.clone(),
        );
        // Present from the start, so that dashboards see the series before the first change.
        for service_kind in ["cluster_ip", "headless_with_selector"] {
            let _ = programming.get_or_create(&ProgrammingLabels { service_kind });
        }
        let autopath = Family::<ServerLabels, Counter>::default();
        registry.register("coredns_autopath_success", "Counter of requests that did autopath.", autopath.clone());
        Arc::new(Self {
            zone_series: std::array::from_fn(|_| OnceLock::new()),
            registry,
            server,
            requests,
            responses,
            durations,
            request_sizes,
            response_sizes,
            cache_entries,
            cache_bytes,
            cache_hits,
            cache_misses,
            forward_requests,
            forward_responses,
            forward_rejected,
            programming,
            autopath,
        })
    }

    /// One query answered by autopath (`coredns_autopath_success_total`).
    pub fn autopath_succeeded(&self) {
        self.autopath.get_or_create(&ServerLabels { server: self.server }).inc();
    }

    pub fn server(&self) -> &'static str {
        self.server
    }

    pub fn observe(&self, o: &Observation) {
        let plugin = PLUGIN_LABELS.iter().position(|p| *p == o.plugin);
        let (Some(series), Some(plugin)) = (self.series_of(o.zone), plugin) else {
            return self.observe_through_families(o);
        };
        let (qtype, rcode, tcp) = (type_index(o.qtype), rcode_index(o.rcode), usize::from(!o.udp));
        let transport = tcp * 2 + usize::from(o.ipv6);
        series.requests[transport * TYPE_LABELS.len() + qtype]
            .get_or_init(|| self.requests.get_or_create(&self.request_labels(o)).clone())
            .inc();
        series.responses[rcode * PLUGIN_LABELS.len() + plugin]
            .get_or_init(|| self.responses.get_or_create(&self.response_labels(o)).clone())
            .inc();
        series.durations[qtype]
            .get_or_init(|| self.durations.get_or_create(&self.duration_labels(o)).clone())
            .observe(o.duration.as_secs_f64());
        series.request_sizes[tcp]
            .get_or_init(|| self.request_sizes.get_or_create(&self.size_labels(o)).clone())
            .observe(o.request_size as f64);
        series.response_sizes[tcp]
            .get_or_init(|| self.response_sizes.get_or_create(&self.size_labels(o)).clone())
            .observe(o.response_size as f64);
    }

    /// The series of zone label `zone`, given one the first time it is seen while there is room.
    fn series_of(&self, zone: &'static str) -> Option<&ZoneSeries> {
        for slot in &self.zone_series {
            let series = slot.get_or_init(|| Box::new(ZoneSeries::new(zone)));
            if std::ptr::eq(series.zone, zone) || series.zone == zone {
                return Some(series);
            }
        }
        None
    }

    /// The same series, each looked up in its family (a lock and a hash each): labels without a
    /// [`ZoneSeries`] slot, which the handler does not produce.
    fn observe_through_families(&self, o: &Observation) {
        self.requests.get_or_create(&self.request_labels(o)).inc();
        self.responses.get_or_create(&self.response_labels(o)).inc();
        self.durations.get_or_create(&self.duration_labels(o)).observe(o.duration.as_secs_f64());
        self.request_sizes.get_or_create(&self.size_labels(o)).observe(o.request_size as f64);
        self.response_sizes.get_or_create(&self.size_labels(o)).observe(o.response_size as f64);
    }

    fn request_labels(&self, o: &Observation) -> RequestLabels {
        RequestLabels {
            server: self.server,
            zone: o.zone,
            view: "",
            proto: if o.udp { "udp" } else { "tcp" },
            family: if o.ipv6 { "2" } else { "1" },
            r#type: TYPE_LABELS[type_index(o.qtype)],
        }
    }

    fn response_labels(&self, o: &Observation) -> ResponseLabels {
        ResponseLabels { server: self.server, zone: o.zone, view: "", rcode: rcode_label(o.rcode), plugin: o.plugin }
    }

    fn duration_labels(&self, o: &Observation) -> DurationLabels {
        DurationLabels { server: self.server, zone: o.zone, view: "", r#type: TYPE_LABELS[type_index(o.qtype)] }
    }

    fn size_labels(&self, o: &Observation) -> SizeLabels {
        SizeLabels { server: self.server, zone: o.zone, view: "", proto: if o.udp { "udp" } else { "tcp" } }
    }

    /// One applied change's programming latency; `service_kind` as CoreDNS: `cluster_ip`,
    /// `headless_with_selector`, `headless_without_selector`.
    pub fn observe_programming(&self, service_kind: &'static str, latency: Duration) {
        self.programming.get_or_create(&ProgrammingLabels { service_kind }).observe(latency.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
