//! The cache of forwarded answers (never of our own zones): TTL-respecting, size-bounded, with negative
//! caching per RFC 2308 and capped TTLs, as CoreDNS's cache plugin does by default. Answers are kept
//! in wire form ([`Forwarded`]): a hit is one copy with the TTLs patched, ready for the writer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use parking_lot::Mutex;

use super::records::Forwarded;

/// CoreDNS defaults: success capped at 3600 s, denial at 1800 s, at least 5 s.
pub const MAX_SUCCESS_TTL: u32 = 3600;
pub const MAX_DENIAL_TTL: u32 = 1800;
pub const MIN_TTL: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub name: LowerName,
    pub qtype: RecordType,
    pub class: DNSClass,
    pub dnssec_ok: bool,
}

/// A forwarded answer as the upstream sent it, to be cached.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// A cached answer, its TTLs reduced by the time it spent in the cache.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rcode: ResponseCode,
    pub records: Forwarded,
    /// `success` or `denial`, for the metrics.
    pub kind: &'static str,
}

#[derive(Debug)]
struct Entry {
    rcode: ResponseCode,
    records: Forwarded,
    kind: &'static str,
    stored: Instant,
    ttl: u32,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    /// Entries per kind (`success`, `denial`), for the `coredns_cache_entries` gauge.
    success: usize,
    denial: usize,
}

impl Entries {
    fn count(&mut self, kind: &'static str, delta: isize) {
        let slot = if kind == "success" { &mut self.success } else { &mut self.denial };
        *slot = slot.saturating_add_signed(delta);
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.map.remove(key) {
            self.count(entry.kind, -1);
        }
    }
}

#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    entries: Mutex<Entries>,
}

/// What kind of entry, for the `type` label of the cache metrics.
pub fn kind_of(answer: &CachedAnswer) -> &'static str {
    if answer.rcode == ResponseCode::NoError && !answer.answers.is_empty() { "success" } else { "denial" }
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, entries: Mutex::new(Entries::default()) }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map.len()
    }

    /// Entries by kind: (success, denial).
    pub fn counts(&self) -> (usize, usize) {
        let entries = self.entries.lock();
        (entries.success, entries.denial)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long `answer` may be cached: the smallest TTL of its answer records (positive), or the
    /// SOA's TTL bounded by its minimum (negative, RFC 2308 §5); `None` when it must not be cached.
    pub fn ttl_for(answer: &CachedAnswer) -> Option<u32> {
        match answer.rcode {
            ResponseCode::NoError if !answer.answers.is_empty() => {
                let ttl = answer.answers.iter().map(|r| r.ttl).min()?;
                Some(ttl.clamp(MIN_TTL, MAX_SUCCESS_TTL))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let soa = answer.authority.iter().find(|r| r.record_type() == RecordType::SOA)?;
                let minimum = match &soa.data {
                    hickory_proto::rr::RData::SOA(soa) => soa.minimum,
                    _ => return None,
                };
                Some(soa.ttl.min(minimum).clamp(MIN_TTL, MAX_DENIAL_TTL))
            }
            _ => None,
        }
    }

    /// Stores `records`, the wire form of `answer`, if it may be cached; returns whether it was.
    pub fn insert(&self, key: CacheKey, answer: &CachedAnswer, records: &Forwarded) -> bool {
        let Some(ttl) = Self::ttl_for(answer) else { return false };
        let kind = kind_of(answer);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
            evict(&mut entries, now);
        }
        entries.remove(&key);
        entries.count(kind, 1);
        entries.map.insert(key, Entry { rcode: answer.rcode, records: records.clone(), kind, stored: now, ttl });
        true
    }

    /// True when `key` is cached with at least a second to live (so that a `get` right after hits).
    pub fn holds(&self, key: &CacheKey) -> bool {
        let entries = self.entries.lock();
        entries
            .map
            .get(key)
            .is_some_and(|e| e.stored.elapsed() + Duration::from_secs(1) < Duration::from_secs(u64::from(e.ttl)))
    }

    /// The cached answer with every TTL reduced by the time it spent in the cache.
    pub fn get(&self, key: &CacheKey) -> Option<Hit> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let entry = entries.map.get(key)?;
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            entries.remove(key);
            return None;
        }
        let records = entry.records.aged(age, entry.ttl - age);
        Some(Hit { rcode: entry.rcode, records, kind: entry.kind })
    }
}

/// Makes room: drops expired entries, or, if none, the one closest to expiry among a sample.
fn evict(entries: &mut Entries, now: Instant) {
    let expired = |e: &Entry| now.duration_since(e.stored) >= Duration::from_secs(u64::from(e.ttl));
    let stale: Vec<CacheKey> = entries.map.iter().filter(|(_, e)| expired(e)).map(|(k, _)| k.clone()).collect();
    if !stale.is_empty() {
        for key in &stale {
            entries.remove(key);
        }
        return;
    }
    let victim = entries
        .map
        .iter()
        .take(16)
        .min_by_key(|(_, e)| e.stored + Duration::from_secs(u64::from(e.ttl)))
        .map(|(k, _)| k.clone());
    if let Some(victim) = victim {
        entries.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData};

    fn key(name: &str) -> CacheKey {
        CacheKey {
            name: LowerName::new(&Name::from_ascii(name).unwrap()),
            qtype: RecordType::A,
            class: DNSClass::IN,
            dnssec_ok: false,
        }
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(Name::from_ascii("www.example.com.").unwrap(), ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let name = Name::from_ascii("example.com.").unwrap();
        Record::from_rdata(name.clone(), ttl, RData::SOA(SOA::new(name.clone(), name, 1, 1, 1, 1, minimum)))
    }

    fn positive(ttl: u32) -> CachedAnswer {
        CachedAnswer { rcode: ResponseCode::NoError, answers: vec![a(ttl)], authority: vec![], additionals: vec![] }
    }

    #[test]
    fn ttls_follow_rfc_2308_and_the_caps() {
        assert_eq!(Cache::ttl_for(&positive(300)), Some(300));
        assert_eq!(Cache::ttl_for(&positive(1)), Some(MIN_TTL));
        assert_eq!(Cache::ttl_for(&positive(86400)), Some(MAX_SUCCESS_TTL));
        let nx = CachedAnswer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authority: vec![soa(900, 60)],
            additionals: vec![],
        };
        assert_eq!(Cache::ttl_for(&nx), Some(60), "negative TTL = min(SOA TTL, SOA minimum)");
        let bare_nx = CachedAnswer { authority: vec![], ..nx.clone() };
        assert_eq!(Cache::ttl_for(&bare_nx), None, "no SOA, no negative caching");
        let servfail = CachedAnswer { rcode: ResponseCode::ServFail, ..nx };
        assert_eq!(Cache::ttl_for(&servfail), None);
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache = Cache::new(3);
        for i in 0..10 {
            let answer = positive(300);
            let records = Forwarded::new(&answer.answers, &[], &[]);
            assert!(cache.insert(key(&format!("n{i}.example.com.")), &answer, &records));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.counts(), (3, 0));
        let hit = cache.get(&key("n9.example.com.")).unwrap();
        assert!(hit.records.ttls()[0] <= 300);
        assert_eq!(hit.kind, "success");
    }
}
