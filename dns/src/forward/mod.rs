//! Forwarding of every name outside the cluster zones to upstream resolvers, with a cache of the
//! answers, health-checked upstreams, a bound on concurrent upstream queries, and loop detection.

pub mod cache;
pub mod records;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, warn};

use crate::lookup::Answer;
use crate::metrics::{CacheLabels, CacheMissLabels, ForwardLabels, ForwardResponseLabels, Metrics, rcode_label};
use cache::{Cache, CacheKey, CachedAnswer};
use records::Forwarded;
use upstream::Upstream;

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub upstreams: Vec<SocketAddr>,
    /// Upstream queries in flight at most; more are answered REFUSED, as CoreDNS's `max_concurrent`.
    pub max_concurrent: usize,
    /// Per-upstream attempt timeout.
    pub timeout: Duration,
    pub cache_capacity: usize,
}

impl ForwarderConfig {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self { upstreams, max_concurrent: 1000, timeout: Duration::from_secs(2), cache_capacity: 10_000 }
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

pub struct Forwarder {
    upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    permits: Semaphore,
    timeout: Duration,
    cache: Cache,
    metrics: Arc<Metrics>,
    loop_probe: LowerName,
    probe_seen: AtomicU32,
    loop_detected: watch::Sender<Option<String>>,
}

impl Forwarder {
    pub fn new(config: ForwarderConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let probe = format!("{}.{}.roster-loop-probe.", rand::random::<u64>(), rand::random::<u64>());
        let loop_probe = LowerName::new(&Name::from_ascii(&probe).unwrap_or_else(|_| Name::root()));
        Arc::new(Self {
            upstreams: config.upstreams.into_iter().map(|addr| Arc::new(Upstream::new(addr))).collect(),
            next: AtomicUsize::new(0),
            permits: Semaphore::new(config.max_concurrent.max(1)),
            timeout: config.timeout,
            cache: Cache::new(config.cache_capacity.max(1)),
            metrics,
            loop_probe,
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
        self.cache.holds(&CacheKey {
            name: LowerName::new(query.name()),
            qtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        })
    }

    /// Answers `query` from the cache or the upstreams. Never authoritative.
    pub async fn resolve(&self, query: &Query, dnssec_ok: bool) -> Answer {
        let server = self.metrics.server();
        let key = CacheKey {
            name: LowerName::new(query.name()),
            qtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok,
        };
        if let Some(hit) = self.cache.get(&key) {
            let labels = CacheLabels { server, r#type: hit.kind, zones: ".", view: "" };
            self.metrics.cache_hits.get_or_create(&labels).inc();
            return to_answer(hit.rcode, hit.records, "cache");
        }
        self.metrics.cache_misses.get_or_create(&CacheMissLabels { server, zones: ".", view: "" }).inc();
        let Ok(_permit) = self.permits.try_acquire() else {
            warn!("too many concurrent upstream queries; refusing");
            return Answer::error(ResponseCode::Refused);
        };
        match self.query_upstreams(query, dnssec_ok).await {
            Some(message) => {
                let answer = from_message(message);
                let records = Forwarded::new(&answer.answers, &answer.authority, &answer.additionals);
                if self.cache.insert(key, &answer, &records) {
                    self.update_entry_gauges();
                }
                to_answer(answer.rcode, records, "forward")
            }
            None => Answer::error(ResponseCode::ServFail),
        }
    }

    fn update_entry_gauges(&self) {
        let server = self.metrics.server();
        let (success, denial) = self.cache.counts();
        for (kind, count) in [("success", success), ("denial", denial)] {
            let labels = CacheLabels { server, r#type: kind, zones: ".", view: "" };
            self.metrics.cache_entries.get_or_create(&labels).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
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
