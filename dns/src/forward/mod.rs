//! Forwarding of every name outside the cluster zones to upstream resolvers, with a cache of the
//! answers bounded in bytes, identical concurrent misses sent upstream once, health-checked upstreams,
//! answers checked against their query, a bound on concurrent upstream queries, and loop detection.

pub mod cache;
pub mod records;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OnceCell, Semaphore, watch};
use tracing::{debug, error, warn};

use crate::lookup::Answer;
use crate::metrics::{CacheLabels, CacheMissLabels, ForwardLabels, ForwardResponseLabels, Metrics, rcode_label};
use cache::{Cache, CacheKey, CachedAnswer, KeyRef, lowercase_wire};
use records::Forwarded;
use upstream::Upstream;

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub upstreams: Vec<SocketAddr>,
    /// Upstream queries in flight at most; more are answered REFUSED, as CoreDNS's `max_concurrent`.
    pub max_concurrent: usize,
    /// Per-upstream attempt timeout.
    pub timeout: Duration,
    /// The cache's bound in bytes (records, names and per-entry overhead).
    pub cache_bytes: u64,
}

/// The default cache bound: 64 MiB. deploy/ gives the DNS container 170 Mi; this leaves ~100 Mi for the
/// zone (a cluster of ~100k records), the runtime and buffers, and allocator slack.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

impl ForwarderConfig {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self { upstreams, max_concurrent: 1000, timeout: Duration::from_secs(2), cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamConfigError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} names no nameserver")]
    NoNameserver { path: String },
    #[error("`{0}` is not an upstream address (IP or IP:port)")]
    BadAddress(String),
}

/// Parses an upstream given as `IP` or `IP:port` (port 53 by default; IPv6 as `[addr]:port`).
pub fn parse_upstream(text: &str) -> Result<SocketAddr, UpstreamConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| UpstreamConfigError::BadAddress(text.to_owned()))
}

/// Parses a size in bytes: a number with an optional suffix `K`, `M`, `G` (powers of 1000) or `Ki`,
/// `Mi`, `Gi` (powers of 1024), as Kubernetes quantities are written (`64Mi`).
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let unit: u64 = match suffix {
        "" => 1,
        "K" | "k" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("`{text}`: unknown unit `{suffix}` (use a number of bytes, or K, M, G, Ki, Mi, Gi)")),
    };
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size (e.g. 67108864 or 64Mi)"))?;
    match number.checked_mul(unit) {
        Some(0) => Err(format!("`{text}`: the size must be above zero")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

/// The `nameserver` lines of a resolv.conf.
pub fn upstreams_from_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, UpstreamConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| UpstreamConfigError::Unreadable { path: shown.clone(), reason: e.to_string() })?;
    let upstreams: Vec<SocketAddr> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|addr| parse_upstream(addr.split('%').next().unwrap_or(addr)).ok())
        .collect();
    if upstreams.is_empty() {
        return Err(UpstreamConfigError::NoNameserver { path: shown });
    }
    Ok(upstreams)
}

/// How many times our own loop probe may come back before it is a loop (CoreDNS's loop plugin: 3).
const LOOP_THRESHOLD: u32 = 3;

/// An upstream query in progress, shared by every client asking the same question meanwhile: its
/// outcome (`None`: no upstream answered) once the first of them has it.
type Flight = Arc<OnceCell<Option<(ResponseCode, Forwarded)>>>;

pub struct Forwarder {
    upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    permits: Semaphore,
    timeout: Duration,
    cache: Cache,
    /// Misses being resolved, one flight per key; at most `max_concurrent` (each holds a permit).
    in_flight: Mutex<HashMap<CacheKey, Flight>>,
    metrics: Arc<Metrics>,
    /// The `coredns_cache_hits` series of success and denial hits, looked up once (not per hit).
    hit_counters: [OnceLock<Counter>; 2],
    loop_probe: LowerName,
    /// The probe's cache key name (lowercase wire form).
    loop_probe_wire: Box<[u8]>,
    probe_seen: AtomicU32,
    loop_detected: watch::Sender<Option<String>>,
}

impl Forwarder {
    pub fn new(config: ForwarderConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let probe = loop_probe_name(rand::random());
        let loop_probe_wire = lowercase_wire(&probe).into_boxed_slice();
        let loop_probe = LowerName::new(&probe);
        let upstreams = config.upstreams.into_iter().map(|addr| Arc::new(Upstream::new(addr, &metrics))).collect();
        Arc::new(Self {
            upstreams,
            next: AtomicUsize::new(0),
            permits: Semaphore::new(config.max_concurrent.max(1)),
            timeout: config.timeout,
            cache: Cache::new(config.cache_bytes),
            in_flight: Mutex::default(),
            metrics,
            hit_counters: Default::default(),
            loop_probe,
            loop_probe_wire,
            probe_seen: AtomicU32::new(0),
            loop_detected: watch::channel(None).0,
        })
    }

    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.iter().map(|u| u.addr).collect()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Accounted bytes in the cache, and its bound.
    pub fn cache_bytes(&self) -> (u64, u64) {
        (self.cache.bytes(), self.cache.max_bytes())
    }

    /// Fires with a description once a forwarding loop has been seen.
    pub fn loop_detected(&self) -> watch::Receiver<Option<String>> {
        self.loop_detected.subscribe()
    }

    /// Called by the front handler for every query outside our zones: true (and counted) when it is our
    /// own loop probe coming back. Past the threshold the loop is reported.
    pub fn is_returning_probe(&self, name: &LowerName) -> bool {
        if *name != self.loop_probe {
            return false;
        }
        let seen = self.probe_seen.fetch_add(1, Ordering::SeqCst) + 1;
        if seen >= LOOP_THRESHOLD {
            let message = format!(
                "forwarding loop detected: our probe {} came back {seen} times through upstreams {:?}; \
                 an upstream forwards to this server (e.g. /etc/resolv.conf points at it)",
                self.loop_probe,
                self.upstreams()
            );
            error!("{message}");
            self.loop_detected.send_replace(Some(message));
        }
        true
    }

    pub fn loop_seen(&self) -> bool {
        self.loop_detected.borrow().is_some()
    }

    /// Sends the loop probe once (CoreDNS's loop plugin does this at start-up).
    pub async fn probe_for_loops(&self) {
        let query = Query::query(Name::from(self.loop_probe.clone()), RecordType::HINFO);
        let _ = self.query_upstreams(&query, false).await;
    }

    /// Checks upstreams marked down every `interval` and brings back the ones that answer.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let forwarder = self.clone();
        tokio::spawn(async move {
            let probe = Query::query(Name::root(), RecordType::NS);
            loop {
                tokio::time::sleep(interval).await;
                for upstream in forwarder.upstreams.iter().filter(|u| !u.is_healthy()) {
                    if upstream.exchange(&probe, false, forwarder.timeout).await.is_ok() {
                        debug!(upstream = %upstream.addr, "upstream healthy again");
                        upstream.record_success();
                    }
                }
            }
        })
    }

    /// True when `query` would be answered from the cache, without waiting for an upstream.
    pub fn is_cached(&self, query: &Query, dnssec_ok: bool) -> bool {
        let key = CacheKey::new(query.name(), query.query_type(), query.query_class(), dnssec_ok);
        self.cache.holds(&key.borrowed())
    }

    /// True when the question `name` (lowercase wire form) `qtype` `class` would be answered from the
    /// cache: [`Self::is_cached`] without making a hickory query (the UDP workers ask for every query).
    pub fn is_cached_wire(&self, name: &[u8], qtype: RecordType, class: DNSClass, dnssec_ok: bool) -> bool {
        self.cache.holds(&KeyRef { name, qtype, class, dnssec_ok })
    }

    /// The cached answer to the question `name` (lowercase wire form) `qtype` `class`, counted as a
    /// hit; `None` when it must be resolved ([`Self::resolve`]). Allocates nothing.
    pub fn cached_answer(&self, name: &[u8], qtype: RecordType, class: DNSClass, dnssec_ok: bool) -> Option<Answer> {
        let hit = self.cache.get(&KeyRef { name, qtype, class, dnssec_ok })?;
        let kind = usize::from(hit.kind != "success");
        self.hit_counters[kind]
            .get_or_init(|| {
                let labels = CacheLabels { server: self.metrics.server(), r#type: hit.kind, zones: ".", view: "" };
                self.metrics.cache_hits.get_or_create(&labels).clone()
            })
            .inc();
        Some(to_answer(hit.rcode, hit.records, "cache"))
    }

    /// Answers `query` from the cache or the upstreams. Never authoritative.
    pub async fn resolve(&self, query: &Query, dnssec_ok: bool) -> Answer {
        let server = self.metrics.server();
        let key = CacheKey::new(query.name(), query.query_type(), query.query_class(), dnssec_ok);
        if let Some(answer) = self.cached_answer(key.name(), query.query_type(), query.query_class(), dnssec_ok) {
            return answer;
        }
        self.metrics.cache_misses.get_or_create(&CacheMissLabels { server, zones: ".", view: "" }).inc();
        if *key.name() == *self.loop_probe_wire {
            // Our probe coming back must go round again to be counted; joining its own flight would
            // wait for itself.
            let Ok(_permit) = self.permits.try_acquire() else { return Answer::error(ResponseCode::Refused) };
            return match self.query_upstreams(query, dnssec_ok).await {
                Some(message) => to_answer(message.metadata.response_code, Forwarded::default(), "forward"),
                None => Answer::error(ResponseCode::ServFail),
            };
        }
        // Join the flight for this key, or start one (which needs a permit).
        let (flight, permit) = {
            let mut in_flight = self.in_flight.lock();
            match in_flight.get(&key) {
                Some(flight) => (flight.clone(), None),
                None => {
                    let Ok(permit) = self.permits.try_acquire() else {
                        warn!("too many concurrent upstream queries; refusing");
                        return Answer::error(ResponseCode::Refused);
                    };
                    let flight = Flight::default();
                    in_flight.insert(key.clone(), flight.clone());
                    (flight, Some(permit))
                }
            }
        };
        // The first caller runs the fetch; if it is cancelled, the next waiting caller runs its own.
        let outcome = flight.get_or_init(|| self.fetch(query, dnssec_ok, &key, permit)).await.clone();
        {
            let mut in_flight = self.in_flight.lock();
            if in_flight.get(&key).is_some_and(|current| Arc::ptr_eq(current, &flight)) {
                in_flight.remove(&key);
            }
        }
        match outcome {
            Some((rcode, records)) => to_answer(rcode, records, "forward"),
            None => Answer::error(ResponseCode::ServFail),
        }
    }

    /// One upstream query for a miss; the answer is cached before the waiting callers get it.
    async fn fetch(
        &self,
        query: &Query,
        dnssec_ok: bool,
        key: &CacheKey,
        _permit: Option<tokio::sync::SemaphorePermit<'_>>,
    ) -> Option<(ResponseCode, Forwarded)> {
        let answer = from_message(self.query_upstreams(query, dnssec_ok).await?);
        let records = Forwarded::new(&answer.answers, &answer.authority, &answer.additionals);
        // The stored key is cloned only now, after the exchange has freed its receive buffer: a
        // long-lived allocation made while that buffer is held can pin it as a heap hole.
        if self.cache.insert(key.clone(), &answer, &records) {
            self.update_cache_gauges();
        }
        Some((answer.rcode, records))
    }

    fn update_cache_gauges(&self) {
        let server = self.metrics.server();
        let (success, denial) = self.cache.counts();
        for (kind, count) in [("success", success), ("denial", denial)] {
            let labels = CacheLabels { server, r#type: kind, zones: ".", view: "" };
            self.metrics.cache_entries.get_or_create(&labels).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let labels = CacheMissLabels { server, zones: ".", view: "" };
        self.metrics.cache_bytes.get_or_create(&labels).set(i64::try_from(self.cache.bytes()).unwrap_or(i64::MAX));
    }

    /// Tries the upstreams, healthy ones first, starting from a rotating one; a SERVFAIL or REFUSED
    /// answer makes it try the next one but is returned if nothing better comes.
    async fn query_upstreams(&self, query: &Query, dnssec_ok: bool) -> Option<Message> {
        let count = self.upstreams.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut order: Vec<&Arc<Upstream>> = (0..count).map(|i| &self.upstreams[(start + i) % count]).collect();
        order.sort_by_key(|u| !u.is_healthy());
        let mut fallback = None;
        for upstream in order {
            self.metrics.forward_requests.get_or_create(&ForwardLabels { to: upstream.label }).inc();
            match upstream.exchange(query, dnssec_ok, self.timeout).await {
                Ok(message) => {
                    upstream.record_success();
                    let rcode = message.metadata.response_code;
                    self.metrics
                        .forward_responses
                        .get_or_create(&ForwardResponseLabels { to: upstream.label, rcode: rcode_label(rcode) })
                        .inc();
                    if matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused) {
                        fallback.get_or_insert(message);
                        continue;
                    }
                    return Some(message);
                }
                Err(error) => {
                    debug!(%error, "upstream failed");
                    upstream.record_failure();
                }
            }
        }
        fallback
    }
}

/// The loop probe's name: 128 random bits as one label, so that nobody can guess it and send it to us
/// to make the server believe in a loop (and exit).
fn loop_probe_name(random: u128) -> Name {
    Name::from_ascii(format!("{random:032x}.roster-loop-probe.")).unwrap_or_else(|_| Name::root())
}

fn from_message(message: Message) -> CachedAnswer {
    let keep = |records: Vec<Record>| -> Vec<Record> {
        records.into_iter().filter(|r| !matches!(r.record_type(), RecordType::OPT | RecordType::TSIG)).collect()
    };
    CachedAnswer {
        rcode: message.metadata.response_code,
        answers: keep(message.answers),
        authority: keep(message.authorities),
        additionals: keep(message.additionals),
    }
}

fn to_answer(rcode: ResponseCode, forwarded: Forwarded, plugin: &'static str) -> Answer {
    Answer { rcode, forwarded, authoritative: false, plugin, ..Answer::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units_and_bad_ones_say_why() {
        assert_eq!(parse_byte_size("67108864"), Ok(64 << 20));
        assert_eq!(parse_byte_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_byte_size("2Gi"), Ok(2 << 30));
        assert_eq!(parse_byte_size("500K"), Ok(500_000));
        assert!(parse_byte_size("64MB").unwrap_err().contains("unknown unit `MB`"));
        assert!(parse_byte_size("Mi").unwrap_err().contains("is not a size"));
        assert!(parse_byte_size("0").unwrap_err().contains("above zero"));
        assert!(parse_byte_size("99999999999Gi").unwrap_err().contains("too large"));
    }

    /// The probe is one label of 128 random bits under `roster-loop-probe.`; only that exact name (in
    /// any case) counts as our probe coming back, not a look-alike.
    #[test]
    fn the_loop_probe_is_unguessable_and_matched_exactly() {
        let forwarder = Forwarder::new(ForwarderConfig::new(vec!["127.0.0.1:9".parse().unwrap()]), Metrics::new("t"));
        let probe = Name::from(forwarder.loop_probe.clone());
        assert_eq!(probe.num_labels(), 2);
        let label = String::from_utf8(probe.iter().next().unwrap().to_vec()).unwrap();
        assert_eq!(label.len(), 32);
        assert!(label.chars().all(|c| c.is_ascii_hexdigit()));
        let other = Forwarder::new(ForwarderConfig::new(vec!["127.0.0.1:9".parse().unwrap()]), Metrics::new("t"));
        assert_ne!(other.loop_probe, forwarder.loop_probe, "random per process (per forwarder)");
        assert_eq!(loop_probe_name(0xab).to_string(), "000000000000000000000000000000ab.roster-loop-probe.");

        let look_alikes = [
            loop_probe_name(1),
            Name::from_ascii("roster-loop-probe.").unwrap(),
            Name::from_ascii(format!("x.{probe}")).unwrap(),
        ];
        for name in &look_alikes {
            for _ in 0..LOOP_THRESHOLD + 1 {
                assert!(!forwarder.is_returning_probe(&LowerName::new(name)), "{name}");
            }
        }
        assert!(!forwarder.loop_seen());
        let shouted = Name::from_ascii(probe.to_string().to_uppercase()).unwrap();
        for _ in 0..LOOP_THRESHOLD {
            assert!(forwarder.is_returning_probe(&LowerName::new(&shouted)));
        }
        assert!(forwarder.loop_seen());
    }
}
