//! CoreDNS-compatible metrics, so that CoreDNS dashboards work unchanged: the same names, labels and
//! buckets (`coredns_dns_*`, `coredns_cache_*`, `coredns_forward_*`, `coredns_build_info`,
//! `coredns_kubernetes_dns_programming_duration_seconds`). Label values are `&'static str` so that
//! recording a query allocates nothing.

use std::sync::Arc;
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

fn duration_histogram() -> Histogram {
    // CoreDNS: prometheus.ExponentialBuckets(0.00025, 2, 16).
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn size_histogram() -> Histogram {
    Histogram::new([0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3])
}

fn programming_histogram() -> Histogram {
    // CoreDNS: prometheus.ExponentialBuckets(0.001, 2, 20) (1 ms … ~9 min).
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// The per-query series one combination of labels resolves to, looked up once and then reused: the
/// families hash their label structs with SipHash on every lookup, which showed in profiles.
struct QueryHandles {
    requests: Counter,
    responses: Counter,
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

/// Identifies a [`QueryHandles`]: label strings by address (they are `'static`), the rest by value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct HandleKey {
    zone: usize,
    plugin: usize,
    udp: bool,
    ipv6: bool,
    qtype: u16,
    rcode: u16,
}

/// Every metric a DNS replica exports.
pub struct Metrics {
    handles: parking_lot::RwLock<std::collections::HashMap<HandleKey, QueryHandles, rustc_hash::FxBuildHasher>>,
    registry: Registry,
    server: &'static str,
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    request_sizes: Family<SizeLabels, Histogram, fn() -> Histogram>,
    response_sizes: Family<SizeLabels, Histogram, fn() -> Histogram>,
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

/// CoreDNS's type label: common types by name, everything else `other`.
fn type_label(qtype: RecordType) -> &'static str {
    match qtype {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::SRV => "SRV",
        RecordType::SOA => "SOA",
        RecordType::CNAME => "CNAME",
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::ANY => "ANY",
        RecordType::AXFR => "AXFR",
        RecordType::IXFR => "IXFR",
        RecordType::HTTPS => "HTTPS",
        RecordType::SVCB => "SVCB",
        _ => "other",
    }
}

pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "other",
    }
}

fn record(handles: &QueryHandles, o: &Observation) {
    handles.requests.inc();
    handles.responses.inc();
    handles.duration.observe(o.duration.as_secs_f64());
    handles.request_size.observe(o.request_size as f64);
    handles.response_size.observe(o.response_size as f64);
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
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            durations.clone(),
        );
        let request_sizes = Family::<SizeLabels, Histogram, fn() -> Histogram>::new_with_constructor(size_histogram);
        registry.register(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            request_sizes.clone(),
        );
        let response_sizes = Family::<SizeLabels, Histogram, fn() -> Histogram>::new_with_constructor(size_histogram);
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
            handles: parking_lot::RwLock::default(),
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
        let key = HandleKey {
            zone: o.zone.as_ptr() as usize,
            plugin: o.plugin.as_ptr() as usize,
            udp: o.udp,
            ipv6: o.ipv6,
            qtype: u16::from(o.qtype),
            rcode: u16::from(o.rcode),
        };
        if let Some(handles) = self.handles.read().get(&key) {
            record(handles, o);
            return;
        }
        let handles = self.create_handles(o);
        record(&handles, o);
        self.handles.write().insert(key, handles);
    }

    fn create_handles(&self, o: &Observation) -> QueryHandles {
        let server = self.server;
        let qtype = type_label(o.qtype);
        let proto = if o.udp { "udp" } else { "tcp" };
        let family = if o.ipv6 { "2" } else { "1" };
        let view = "";
        let sizes = SizeLabels { server, zone: o.zone, view, proto };
        let responses = ResponseLabels { server, zone: o.zone, view, rcode: rcode_label(o.rcode), plugin: o.plugin };
        QueryHandles {
            requests: self
                .requests
                .get_or_create(&RequestLabels { server, zone: o.zone, view, proto, family, r#type: qtype })
                .clone(),
            responses: self.responses.get_or_create(&responses).clone(),
            duration: self
                .durations
                .get_or_create(&DurationLabels { server, zone: o.zone, view, r#type: qtype })
                .clone(),
            request_size: self.request_sizes.get_or_create(&sizes).clone(),
            response_size: self.response_sizes.get_or_create(&sizes).clone(),
        }
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
