//! The cache of forwarded answers (never of our own zones): TTL-respecting, bounded in bytes, with
//! negative caching per RFC 2308 and capped TTLs, as CoreDNS's cache plugin does by default. Answers are
//! kept in wire form ([`Forwarded`]): a hit is one copy with the TTLs patched, ready for the writer.
//!
//! A hit looks its key up without allocating: the key is the question's lowercase wire name (the
//! request parser made it already), borrowed as a [`KeyRef`].
//!
//! Storage and eviction are quick_cache's (S3-FIFO-like, sharded, weighted): every entry weighs its
//! bytes, so a flood of large answers cannot grow the process past the bound (an entry-count bound
//! let 20,000 answers of 30 KB grow it by 327 MiB). Expired entries are dropped when read; unread ones
//! are cold and are the first to go when room is needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use parking_lot::Mutex;
use smallvec::SmallVec;

use super::records::Forwarded;

/// CoreDNS defaults: success capped at 3600 s, denial at 1800 s, at least 5 s.
pub const MAX_SUCCESS_TTL: u32 = 3600;
pub const MAX_DENIAL_TTL: u32 = 1800;
pub const MIN_TTL: u32 = 5;

/// What an entry costs beyond its name and records (264 B in all): the key and entry structs, and 96 B
/// for the `Arc` and quick_cache's slot, table and ghost-list share (in the measurement in
/// docs/design.md, RSS matched weights that counted 64 B per entry for these).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<CacheKey>() + std::mem::size_of::<Entry>() + 96;

/// What an answer is cached under: the question's name as lowercase wire bytes (RFC 4343: names
/// compare case-insensitively), type, class and the DO bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Inline up to 32 bytes (as hickory's `LowerName` kept it): a heap allocation per key left holes
    /// beside the upstream exchange's buffers and grew RSS per entry ~3× (bench/README, forwarder).
    name: SmallVec<[u8; 32]>,
    qtype: u16,
    class: u16,
    dnssec_ok: bool,
}

/// A key borrowed from a request, to look an answer up without allocating; hashes as [`CacheKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    /// Lowercase wire form.
    pub name: &'a [u8],
    pub qtype: RecordType,
    pub class: DNSClass,
    pub dnssec_ok: bool,
}

impl CacheKey {
    /// The key of `name` (any case), `qtype` and `class`.
    pub fn new(name: &Name, qtype: RecordType, class: DNSClass, dnssec_ok: bool) -> Self {
        Self { name: lowercase_wire(name), qtype: qtype.into(), class: class.into(), dnssec_ok }
    }

    /// The name's lowercase wire form.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    pub fn borrowed(&self) -> KeyRef<'_> {
        KeyRef {
            name: &self.name,
            qtype: RecordType::from(self.qtype),
            class: DNSClass::from(self.class),
            dnssec_ok: self.dnssec_ok,
        }
    }
}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl quick_cache::Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *self == key.borrowed()
    }
}

/// `name` in lowercase wire form, as the request parser makes it from a question (`WireName`).
pub fn lowercase_wire(name: &Name) -> SmallVec<[u8; 32]> {
    let mut wire = SmallVec::with_capacity(name.len() + 2);
    for label in name.iter() {
        wire.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        wire.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    wire.push(0);
    wire
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
    /// Accounted bytes (see [`ENTRY_OVERHEAD`]).
    weight: u64,
}

impl Entry {
    fn expired(&self, now: Instant, margin: Duration) -> bool {
        now.duration_since(self.stored) + margin >= Duration::from_secs(u64::from(self.ttl))
    }
}

#[derive(Clone)]
struct Weigher;

impl quick_cache::Weighter<CacheKey, Arc<Entry>> for Weigher {
    fn weight(&self, _key: &CacheKey, entry: &Arc<Entry>) -> u64 {
        entry.weight
    }
}

/// Entries per kind, for the `coredns_cache_entries` gauge; evictions come through the lifecycle.
#[derive(Debug, Default)]
struct Tally {
    success: AtomicUsize,
    denial: AtomicUsize,
}

impl Tally {
    fn slot(&self, kind: &str) -> &AtomicUsize {
        if kind == "success" { &self.success } else { &self.denial }
    }
}

#[derive(Clone)]
struct Lifecycle(Arc<Tally>);

impl quick_cache::Lifecycle<CacheKey, Arc<Entry>> for Lifecycle {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: CacheKey, entry: Arc<Entry>) {
        self.0.slot(entry.kind).fetch_sub(1, Ordering::Relaxed);
    }
}

type Store = quick_cache::sync::Cache<CacheKey, Arc<Entry>, Weigher, quick_cache::DefaultHashBuilder, Lifecycle>;

pub struct Cache {
    store: Store,
    tally: Arc<Tally>,
    /// Serialises replacing inserts: quick_cache reports evictions but not replacements, so an insert
    /// removes the old entry first, and two of those must not interleave for the tally to stay exact.
    inserting: Mutex<()>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("entries", &self.len()).field("bytes", &self.bytes()).finish()
    }
}

/// What kind of entry, for the `type` label of the cache metrics.
pub fn kind_of(answer: &CachedAnswer) -> &'static str {
    if answer.rcode == ResponseCode::NoError && !answer.answers.is_empty() { "success" } else { "denial" }
}

impl Cache {
    /// A cache holding at most `max_bytes` of accounted bytes.
    pub fn new(max_bytes: u64) -> Self {
        let tally = Arc::new(Tally::default());
        // The item estimate only sizes the tables and the ghost list; ~256 B is a typical small answer.
        let estimated_items = usize::try_from(max_bytes / 256).unwrap_or(usize::MAX).clamp(16, 1 << 20);
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_bytes.max(1))
            .build()
            .unwrap_or_else(|_| unreachable!("both required options are set"));
        let store =
            Store::with_options(options, Weigher, quick_cache::DefaultHashBuilder::default(), Lifecycle(tally.clone()));
        Self { store, tally, inserting: Mutex::new(()) }
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Accounted bytes of every entry (never above the bound).
    pub fn bytes(&self) -> u64 {
        self.store.weight()
    }

    /// The bound in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.store.capacity()
    }

    /// Entries by kind: (success, denial).
    pub fn counts(&self) -> (usize, usize) {
        (self.tally.success.load(Ordering::Relaxed), self.tally.denial.load(Ordering::Relaxed))
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
        let weight = (ENTRY_OVERHEAD + key.name().len() + records.byte_len()) as u64;
        let entry = Arc::new(Entry {
            rcode: answer.rcode,
            records: records.clone(),
            kind,
            stored: Instant::now(),
            ttl,
            weight,
        });
        let _inserting = self.inserting.lock();
        if let Some((_, old)) = self.store.remove(&key) {
            self.tally.slot(old.kind).fetch_sub(1, Ordering::Relaxed);
        }
        // Counted first: an entry too heavy to admit at all comes back through `on_evict` at once.
        self.tally.slot(kind).fetch_add(1, Ordering::Relaxed);
        self.store.insert(key, entry);
        true
    }

    /// True when `key` is cached with at least a second to live (so that a `get` right after hits).
    pub fn holds(&self, key: &KeyRef<'_>) -> bool {
        self.store.peek(key).is_some_and(|e| !e.expired(Instant::now(), Duration::from_secs(1)))
    }

    /// The cached answer with every TTL reduced by the time it spent in the cache; an expired entry is
    /// dropped.
    pub fn get(&self, key: &KeyRef<'_>) -> Option<Hit> {
        let now = Instant::now();
        let entry = self.store.get(key)?;
        if entry.expired(now, Duration::ZERO) {
            if self.store.remove_if(key, |current| Arc::ptr_eq(current, &entry)).is_some() {
                self.tally.slot(entry.kind).fetch_sub(1, Ordering::Relaxed);
            }
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let records = entry.records.aged(age, entry.ttl - age);
        Some(Hit { rcode: entry.rcode, records, kind: entry.kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA, TXT};
    use hickory_proto::rr::{Name, RData};

    fn key(name: &str) -> CacheKey {
        CacheKey::new(&Name::from_ascii(name).unwrap(), RecordType::A, DNSClass::IN, false)
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

    fn store(cache: &Cache, name: &str, answer: &CachedAnswer) -> bool {
        let records = Forwarded::new(&answer.answers, &answer.authority, &answer.additionals);
        cache.insert(key(name), answer, &records)
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
    fn hits_age_and_replacements_keep_the_tally() {
        let cache = Cache::new(1 << 20);
        assert!(store(&cache, "n.example.com.", &positive(300)));
        assert!(store(&cache, "n.example.com.", &positive(300)), "a replacement");
        let nx = CachedAnswer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authority: vec![soa(900, 60)],
            additionals: vec![],
        };
        assert!(store(&cache, "nx.example.com.", &nx));
        assert_eq!(cache.counts(), (1, 1));
        assert_eq!(cache.len(), 2);
        let hit = cache.get(&key("n.example.com.").borrowed()).unwrap();
        assert!(hit.records.ttls()[0] <= 300);
        assert_eq!(hit.kind, "success");
        assert!(cache.holds(&key("nx.example.com.").borrowed()));
    }

    /// Thousands of 30 KB answers (a large TXT set each) into a 2 MiB cache: the accounted bytes stay
    /// under the bound, the entries fit it, and the tally follows the evictions.
    #[test]
    fn many_large_answers_stay_within_the_byte_bound() {
        let bound = 2 << 20;
        let cache = Cache::new(bound);
        let chunk = "x".repeat(250);
        let txt = |name: &Name| {
            // 120 strings of 250 bytes: ~30 KB of rdata.
            Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(vec![chunk.clone(); 120])))
        };
        let mut largest = 0;
        for i in 0..2_000 {
            let name = format!("big{i}.example.com.");
            let answer = CachedAnswer {
                rcode: ResponseCode::NoError,
                answers: vec![txt(&Name::from_ascii(&name).unwrap())],
                authority: vec![],
                additionals: vec![],
            };
            assert!(store(&cache, &name, &answer));
            largest = largest.max(Forwarded::new(&answer.answers, &[], &[]).byte_len());
            assert!(cache.bytes() <= bound, "{} bytes accounted after {i} inserts", cache.bytes());
        }
        assert!(largest > 30_000, "{largest}");
        let len = cache.len();
        assert!(len > 0 && len as u64 <= bound / largest as u64, "{len} entries");
        assert_eq!(cache.counts(), (len, 0), "the tally follows evictions");
    }

    #[test]
    fn expired_entries_are_dropped_when_read() {
        let cache = Cache::new(1 << 20);
        let records = Forwarded::new(&[a(300)], &[], &[]);
        let entry = Arc::new(Entry {
            rcode: ResponseCode::NoError,
            records,
            kind: "success",
            stored: Instant::now() - Duration::from_secs(10),
            ttl: 5,
            weight: 100,
        });
        cache.tally.slot("success").fetch_add(1, Ordering::Relaxed);
        cache.store.insert(key("old.example.com."), entry);
        assert!(!cache.holds(&key("old.example.com.").borrowed()));
        assert!(cache.get(&key("old.example.com.").borrowed()).is_none());
        assert_eq!((cache.len(), cache.counts()), (0, (0, 0)));
    }
}
