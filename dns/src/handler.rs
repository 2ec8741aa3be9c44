//! The front request handler: validates the request, gates cluster names on sync, answers from the
//! store or through the forwarder, encodes the response with roster's writer (names compressed
//! against the question, RFC 1035 §4.1.4, for every answer: authoritative, forwarded and errors, over
//! UDP and TCP), and records metrics. The UDP and TCP loops (`udp`, `tcp`) own the sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hickory_proto::op::{MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};

use crate::autopath::SearchPath;
use crate::forward::Forwarder;
use crate::lookup::{Answer, answer};
use crate::metrics::{Metrics, Observation, static_label};
use crate::request::{Incoming, Question};
use crate::rrl::{ResponseKind, ResponseRateLimiter, Verdict};
use crate::store::ZoneStore;
use crate::wire::{MessageWriter, Node, OPT_LEN, WireName};

/// The UDP payload size roster accepts and caps its own answers at (RFC 6891 §6.2.5 leaves it to us;
/// 4096 is what BIND and CoreDNS advertise).
const MAX_UDP_PAYLOAD: u16 = 4096;

#[derive(Clone)]
pub struct FrontHandler {
    store: Arc<ZoneStore>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: Option<Arc<Metrics>>,
    /// The `zone` metric label of each authoritative zone (`cluster.local.`), by zone index.
    zone_labels: Arc<[&'static str]>,
    rotation: Arc<AtomicUsize>,
    /// Response rate limiting for UDP, when on.
    rrl: Option<Arc<ResponseRateLimiter>>,
    /// The search domains autopath walks, when it is on.
    search: Option<Arc<SearchPath>>,
}

impl FrontHandler {
    pub fn new(store: Arc<ZoneStore>) -> Self {
        let zone_labels: Vec<&'static str> =
            store.zones().iter().map(|z| static_label(format!("{}.", z.name))).collect();
        Self {
            forwarder: None,
            metrics: None,
            zone_labels: zone_labels.into(),
            rotation: Arc::default(),
            rrl: None,
            search: SearchPath::new(store.config()).map(Arc::new),
            store,
        }
    }

    /// Limits UDP responses per client netblock with BIND's semantics (`crate::rrl`).
    pub fn with_rate_limit(mut self, rrl: Arc<ResponseRateLimiter>) -> Self {
        self.rrl = Some(rrl);
        self
    }

    /// Whether to send the response just written for `request`, drop it, or send a truncated reply.
    pub(crate) fn rate_limit(&self, request: &Incoming, outcome: &Outcome) -> Verdict {
        let Some(rrl) = &self.rrl else { return Verdict::Send };
        let name = || request.lower_name();
        let kind = match (outcome.rcode, &request.question) {
            (ResponseCode::NoError, Some(q)) => match name() {
                Some(name) => ResponseKind::Answer(name, u16::from(q.qtype)),
                None => ResponseKind::Error,
            },
            // NXDOMAIN is counted per zone, so random names under one zone share an account.
            (ResponseCode::NXDomain, Some(_)) => match Name::from_ascii(outcome.zone_label) {
                Ok(zone) if outcome.zone_label.ends_with('.') && outcome.zone_label.len() > 1 => {
                    ResponseKind::NxDomain(LowerName::new(&zone))
                }
                _ => name().map_or(ResponseKind::Error, ResponseKind::NxDomain),
            },
            _ => ResponseKind::Error,
        };
        rrl.check(request.src.ip(), !request.udp, kind, Instant::now())
    }

    pub fn with_forwarder(mut self, forwarder: Arc<Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn store(&self) -> &Arc<ZoneStore> {
        &self.store
    }

    /// True when the answer comes from the store alone (no upstream to wait for), so that the UDP loop
    /// may answer inline. With a forwarder, names outside the cluster zone, reverse names (which may fall
    /// through) and CNAMEs (ExternalName, which may be chased) may wait.
    pub fn answers_without_waiting(&self, request: &Incoming) -> bool {
        let Some(forwarder) = &self.forwarder else { return true };
        let Some(question) = &request.question else { return true };
        let zone = self.zone_of(request, question);
        if zone != Some(0) {
            let dnssec_ok = request.edns.is_some_and(|e| e.dnssec_ok);
            return zone.is_none()
                && match &question.name {
                    Some(wire) => forwarder.is_cached_wire(wire.as_bytes(), question.qtype, question.qclass, dnssec_ok),
                    None => request.query().is_some_and(|query| forwarder.is_cached(&query, dnssec_ok)),
                };
        }
        let Some(wire) = &question.name else { return true };
        let view = self.store.view();
        match view.node(wire.as_bytes()) {
            Some(node) => !node.has(RecordType::CNAME),
            // A missing name asked by an autopath client may be walked out of the zone.
            None => self.search.is_none() || view.client_namespace(request.src.ip()).is_none(),
        }
    }

    /// The zone of the question's name: found on its wire form (a fraction of `zone_of`'s work on
    /// hickory's name, which is only used when the name has no wire form here).
    fn zone_of(&self, request: &Incoming, question: &Question) -> Option<usize> {
        match &question.name {
            Some(wire) => self.store.zone_of_wire(wire.as_bytes()),
            None => self.store.zone_of(&request.lower_name()?),
        }
    }

    /// Decides the answer to a request that parsed; also returns the zone label for metrics.
    /// `size_limit` is the most the response may hold.
    async fn decide(&self, request: &Incoming, size_limit: usize) -> (Answer, &'static str) {
        if request.op_code != OpCode::Query {
            return (Answer::error(ResponseCode::NotImp), ".");
        }
        let Some(question) = &request.question else {
            // Zero or several questions: nobody sends that on purpose.
            return (Answer::error(ResponseCode::FormErr), ".");
        };
        let qtype = question.qtype;
        if qtype == RecordType::OPT {
            return (Answer::error(ResponseCode::FormErr), ".");
        }
        let dnssec_ok = request.edns.is_some_and(|e| e.dnssec_ok);
        let Some(zone) = self.zone_of(request, question) else {
            // A cache hit straight from the question's wire name: no hickory query to make.
            if let (Some(forwarder), Some(wire)) = (&self.forwarder, &question.name)
                && let Some(hit) = forwarder.cached_answer(wire.as_bytes(), qtype, question.qclass, dnssec_ok)
            {
                return (hit, ".");
            }
            let Some(query) = request.query() else { return (Answer::error(ResponseCode::FormErr), ".") };
            return (self.forward(&LowerName::new(query.name()), &query, dnssec_ok).await, ".");
        };
        let zone_label = self.zone_labels.get(zone).copied().unwrap_or(".");
        if question.qclass != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return (Answer::error(ResponseCode::Refused), zone_label);
        }
        if !self.store.is_synced() {
            return (Answer::error(ResponseCode::ServFail), zone_label);
        }
        let Some(wire) = &question.name else {
            return (Answer::error(ResponseCode::FormErr), zone_label);
        };
        let found = self.authoritative(zone, wire, request, qtype, size_limit, dnssec_ok).await;
        if found.rcode == ResponseCode::NXDomain
            && zone == 0
            && let Some(walked) = self.autopath(request, size_limit, dnssec_ok).await
        {
            return (walked, zone_label);
        }
        (found, zone_label)
    }

    /// The answer for a name in our zone `zone`: from the store, with reverse names we hold nothing for
    /// and ExternalName targets sent on to the forwarder when there is one.
    async fn authoritative(
        &self,
        zone: usize,
        wire: &WireName,
        asked: impl Asked,
        qtype: RecordType,
        size_limit: usize,
        dnssec_ok: bool,
    ) -> Answer {
        let mut found = answer(&self.store, zone, wire, qtype, size_limit);
        let Some(forwarder) = &self.forwarder else { return found };

        // Reverse names we hold nothing for fall through to the upstreams (kubeadm's `fallthrough`).
        if found.rcode == ResponseCode::NXDomain && self.store.config().is_reverse_zone(zone) {
            let Some(query) = asked.query() else { return found };
            return forwarder.resolve(&query, dnssec_ok).await;
        }
        // ExternalName: chase the CNAME's target through the forwarder; the CNAME alone if that fails.
        if matches!(qtype, RecordType::A | RecordType::AAAA)
            && let Some(target) = found.dangling_cname()
        {
            let chased = forwarder.resolve(&Query::query(target, qtype), dnssec_ok).await;
            if matches!(chased.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
                found.rcode = chased.rcode;
                found.forwarded = chased.forwarded.without_additionals();
            }
        }
        found
    }

    /// Autopath (`crate::autopath`): when `asked` is the first search candidate of the pod asking,
    /// the first of its other candidates that does not answer NXDOMAIN (or an error), behind a CNAME
    /// from the asked name when it has records; `None` when autopath does not apply or every
    /// candidate is missing (the asked name's own NXDOMAIN stands, as CoreDNS answers).
    async fn autopath(&self, request: &Incoming, size_limit: usize, dnssec_ok: bool) -> Option<Answer> {
        let search = self.search.as_ref()?;
        let (asked, candidates) = {
            let view = self.store.view();
            let namespace = view.client_namespace(request.src.ip())?;
            // Made only for an autopath client's NXDOMAIN: it allocates.
            let asked = request.query()?;
            let candidates = search.candidates(namespace, asked.name())?;
            (asked, candidates)
        };
        for candidate in candidates {
            let query = Query::query(candidate.clone(), asked.query_type());
            let lower = LowerName::new(&candidate);
            let found = match self.store.zone_of(&lower) {
                Some(zone) => {
                    let Some(wire) = WireName::from_name(&candidate) else { continue };
                    self.authoritative(zone, &wire, &query, asked.query_type(), size_limit, dnssec_ok).await
                }
                None if self.forwarder.is_some() => self.forward(&lower, &query, dnssec_ok).await,
                None => continue,
            };
            if found.rcode == ResponseCode::NoError {
                if let Some(metrics) = &self.metrics {
                    metrics.autopath_succeeded();
                }
                return Some(with_cname(asked.name(), &candidate, found, self.store.config().ttl));
            }
        }
        None
    }

    async fn forward(&self, name: &LowerName, query: &Query, dnssec_ok: bool) -> Answer {
        let Some(forwarder) = &self.forwarder else { return Answer::error(ResponseCode::Refused) };
        if forwarder.is_returning_probe(name) && forwarder.loop_seen() {
            return Answer::error(ResponseCode::ServFail);
        }
        if query.query_class() != DNSClass::IN || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return Answer::error(ResponseCode::Refused);
        }
        forwarder.resolve(query, dnssec_ok).await
    }
}

/// The question as a hickory query, for the forwarder: made only when it is asked (it allocates).
trait Asked {
    fn query(&self) -> Option<Query>;
}

impl Asked for &Incoming {
    fn query(&self) -> Option<Query> {
        Incoming::query(self)
    }
}

impl Asked for &Query {
    fn query(&self) -> Option<Query> {
        Some((*self).clone())
    }
}

/// CoreDNS's `cnamer`: an answer for `candidate` given for `asked`, led by a CNAME from `asked` to
/// `candidate` when it has answer records (NODATA stays as it is). The CNAME's TTL is the answer's
/// (the smallest forwarded TTL, at most the zone's).
fn with_cname(asked: &Name, candidate: &Name, mut found: Answer, zone_ttl: u32) -> Answer {
    if found.local.is_empty() && !found.forwarded.has_answers() {
        return found;
    }
    let (Some(owner), Some(target)) = (WireName::from_name(asked), WireName::from_name(candidate)) else {
        return found;
    };
    if found.local.is_empty() {
        // Only forwarded records: the local TTL applies to the CNAME alone.
        found.ttl = found.forwarded.ttls().into_iter().min().unwrap_or(zone_ttl).min(zone_ttl);
    }
    let cname = Node::build(owner.as_bytes(), &[(RecordType::CNAME, vec![target.as_bytes().to_vec()])]);
    found.local.splice(0..0, cname.set(RecordType::CNAME));
    found
}

/// A decided answer with what is needed to put it on the wire and to observe it.
struct Decided {
    started: Instant,
    answer: Answer,
    zone_label: &'static str,
    metadata: Metadata,
    /// The response's OPT record, when the request had one: (payload size, extended rcode and flags).
    opt: Option<(u16, u32)>,
}

/// What the metrics need of a response once it is sent.
pub(crate) struct Outcome {
    started: Instant,
    zone_label: &'static str,
    rcode: ResponseCode,
    plugin: &'static str,
}

impl FrontHandler {
    /// Everything up to encoding: EDNS, the answer, the response header.
    async fn prepare(&self, request: &Incoming, size_limit: usize) -> Decided {
        let started = Instant::now();
        let bad_version = request.edns.is_some_and(|e| e.version > 0);
        // Version 0, and BADVERS's upper bits in the extended rcode (RFC 6891 §6.1.3) when it is due.
        let opt = request.edns.map(|edns| {
            let rcode_high = if bad_version { ResponseCode::BADVERS.high() } else { 0 };
            (edns.max_payload.clamp(512, MAX_UDP_PAYLOAD), u32::from(rcode_high) << 24)
        });

        let (answer, zone_label) = if bad_version {
            (Answer::error(ResponseCode::BADVERS), ".")
        } else {
            self.decide(request, size_limit).await
        };
        let mut metadata = Metadata::new(request.id, MessageType::Response, request.op_code);
        metadata.recursion_desired = request.recursion_desired;
        metadata.checking_disabled = request.checking_disabled;
        metadata.response_code = answer.rcode;
        metadata.authoritative = answer.authoritative;
        metadata.recursion_available = self.forwarder.is_some();
        Decided { started, answer, zone_label, metadata, opt }
    }

    /// Answers `request` into `bytes` (cleared first): the question as sent, records with names
    /// compressed, at most 512 bytes or the EDNS payload size over UDP (RFC 1035 §4.2.1, RFC 6891) and
    /// 65535 over TCP, TC set when records had to be left out. The caller sends the bytes, then
    /// calls [`Self::observe`].
    pub(crate) async fn respond(&self, request: &Incoming, bytes: &mut Vec<u8>) -> Outcome {
        let max_size = if request.udp {
            request.edns.map_or(512, |edns| usize::from(edns.max_payload.clamp(512, MAX_UDP_PAYLOAD)))
        } else {
            usize::from(u16::MAX)
        };
        let decided = self.prepare(request, max_size).await;
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let header = header_bytes(&decided.metadata, request.question_count());
        let limit = max_size.saturating_sub(if decided.opt.is_some() { OPT_LEN } else { 0 });
        let mut writer = MessageWriter::new(bytes, &header, request.question_bytes(), limit);
        decided.answer.write(&mut writer, rotation);
        writer.finish(decided.opt);
        Outcome {
            started: decided.started,
            zone_label: decided.zone_label,
            rcode: decided.answer.rcode,
            plugin: decided.answer.plugin,
        }
    }

    /// Records a response of `response_size` bytes, as sent.
    pub(crate) fn observe(&self, request: &Incoming, outcome: &Outcome, response_size: usize) {
        let Some(metrics) = &self.metrics else { return };
        metrics.observe(&Observation {
            zone: outcome.zone_label,
            udp: request.udp,
            ipv6: request.src.is_ipv6(),
            qtype: request.first_qtype(),
            rcode: outcome.rcode,
            plugin: outcome.plugin,
            request_size: request.size,
            response_size: response_size.min(usize::from(u16::MAX)),
            duration: outcome.started.elapsed(),
        });
    }
}

/// The 12 header bytes (RFC 1035 §4.1.1), written by hand to keep allocation off the UDP path;
/// answer counts are left to the writer.
fn header_bytes(metadata: &Metadata, queries: usize) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[0..2].copy_from_slice(&metadata.id.to_be_bytes());
    bytes[2] = (u8::from(metadata.message_type == MessageType::Response) << 7)
        | ((u8::from(metadata.op_code) & 0x0F) << 3)
        | (u8::from(metadata.authoritative) << 2)
        | (u8::from(metadata.truncation) << 1)
        | u8::from(metadata.recursion_desired);
    bytes[3] = (u8::from(metadata.recursion_available) << 7)
        | (u8::from(metadata.authentic_data) << 5)
        | (u8::from(metadata.checking_disabled) << 4)
        | (metadata.response_code.low() & 0x0F);
    bytes[4..6].copy_from_slice(&u16::try_from(queries).unwrap_or(0).to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hickory_proto::op::{Header, HeaderCounts};
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    use hickory_server::net::xfer::Protocol;

    use crate::DnsConfig;
    use hickory_proto::op::Message;
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    use proptest::prelude::*;
    use roster_shared::{DomainName, Frame, PodMode, RData, ZoneData};

    const OWNER: &str = "big.default.svc.cluster.local";

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    /// The small set stored beside the big one: a set after a big one must still be found.
    fn companion(rtype: RecordType) -> RecordType {
        if rtype == RecordType::TXT { RecordType::A } else { RecordType::TXT }
    }

    /// A store whose `OWNER` holds `count` records of `rtype` (SRV targets exist, with an A each) and
    /// one record of its companion type.
    fn store_with(rtype: RecordType, count: usize) -> Arc<ZoneStore> {
        let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()));
        let (apex, owner) = (name("cluster.local"), name(OWNER));
        let mut zone = ZoneData::default();
        let ip = |i: usize| std::net::Ipv4Addr::from(0x0af4_0000 + u32::try_from(i).unwrap());
        // Built directly: `ZoneData::add` checks for duplicates, quadratic at these sizes.
        let records: Vec<RData> = (0..count)
            .map(|i| match rtype {
                RecordType::A => RData::A { ip: ip(i) },
                RecordType::AAAA => RData::Aaaa { ip: ip(i).to_ipv6_mapped() },
                RecordType::TXT => RData::Txt { text: format!("record {i}") },
                _ => {
                    let target = owner.child(&format!("t-{i}")).unwrap();
                    zone.names.insert(target.clone(), vec![RData::A { ip: ip(i) }]);
                    RData::Srv { priority: 0, weight: 1, port: 80, target }
                }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .chain([if companion(rtype) == RecordType::A {
                RData::A { ip: [192, 0, 2, 1].into() }
            } else {
                RData::Txt { text: "companion".to_owned() }
            }])
            .collect();
        zone.ensure_name(&owner, &apex);
        zone.names.insert(owner, records);
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap();
        store
    }

    /// A wire query with an OPT record advertising `edns` when given.
    fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
        for label in qname.split('.') {
            bytes.push(u8::try_from(label.len()).unwrap());
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.push(0);
        bytes.extend_from_slice(&u16::from(qtype).to_be_bytes());
        bytes.extend_from_slice(&[0, 1]);
        if let Some(payload) = edns {
            bytes.extend_from_slice(&[0, 0, 41]);
            bytes.extend_from_slice(&payload.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        bytes
    }

    /// Parses a whole response: every record the header counts, and nothing after them.
    fn parse_exactly(bytes: &[u8]) -> Result<Message, String> {
        let mut decoder = BinDecoder::new(bytes);
        let message = Message::read(&mut decoder).map_err(|e| e.to_string())?;
        if !decoder.is_empty() {
            return Err(format!("{} bytes after the last counted record", decoder.len()));
        }
        Ok(message)
    }

    fn rtype() -> impl Strategy<Value = RecordType> {
        prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::TXT])
    }

    /// How many answers of which type a question should get.
    fn expected(stored: RecordType, count: usize, asked: RecordType) -> (usize, RecordType) {
        let companion = companion(stored);
        let asked = match asked {
            // ANY: the first set in type order (RFC 8482).
            RecordType::ANY if count > 0 && u16::from(stored) < u16::from(companion) => stored,
            RecordType::ANY => companion,
            other => other,
        };
        if asked == stored && count > 0 {
            (count, stored)
        } else if asked == companion {
            (1, companion)
        } else {
            (0, asked)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any set size (0..25,000) and type, asked for that type, another type or ANY, over UDP (with
        /// or without EDNS) and TCP: the response parses with hickory-proto, exactly; it fits the
        /// transport; TC is set exactly when answer records were left out.
        #[test]
        fn every_response_is_well_formed(
            // Small sets, and sets around and past what 16 bits of length or count hold.
            count in prop_oneof![0usize..40, 1_000usize..25_000, 0usize..25_000],
            stored in rtype(),
            asked in prop_oneof![rtype(), Just(RecordType::ANY), Just(RecordType::MX)],
            edns in prop::option::of(prop_oneof![Just(512u16), Just(1232), Just(4096), Just(65_000)]),
        ) {
            let store = store_with(stored, count);
            let handler = FrontHandler::new(store);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                let udp = protocol == Protocol::Udp;
                let request = Incoming::parse(&query(OWNER, asked, edns), "127.0.0.1:53".parse().unwrap(), udp).unwrap();
                let mut bytes = Vec::new();
                runtime.block_on(handler.respond(&request, &mut bytes));
                let limit = match (protocol, edns) {
                    (Protocol::Udp, None) => 512,
                    (Protocol::Udp, Some(size)) => usize::from(size.clamp(512, MAX_UDP_PAYLOAD)),
                    _ => usize::from(u16::MAX),
                };
                prop_assert!(bytes.len() <= limit, "{protocol:?}: {} bytes over {limit}", bytes.len());
                let message = parse_exactly(&bytes).map_err(|e| TestCaseError::fail(format!("{protocol:?}: {e}")))?;
                prop_assert_eq!(message.metadata.response_code, ResponseCode::NoError);
                let (expected, answer_type) = expected(stored, count, asked);
                prop_assert!(message.answers.iter().all(|r| r.record_type() == answer_type));
                prop_assert_eq!(
                    message.metadata.truncation,
                    message.answers.len() < expected,
                    "{:?}: {} of {} answers", protocol, message.answers.len(), expected
                );
                if expected == 0 {
                    prop_assert_eq!(message.authorities.len(), 1, "NODATA carries the SOA");
                }
                if protocol == Protocol::Tcp && expected > 0 {
                    prop_assert!(!message.answers.is_empty(), "TCP always carries some of a set");
                }
            }
        }
    }

    /// The hand-written header agrees with hickory's encoder for every flag.
    #[test]
    fn header_bytes_match_hickory() {
        for bits in 0u8..64 {
            let mut metadata = Metadata::new(0xBEEF, MessageType::Response, OpCode::Query);
            metadata.authoritative = bits & 1 != 0;
            metadata.truncation = bits & 2 != 0;
            metadata.recursion_desired = bits & 4 != 0;
            metadata.recursion_available = bits & 8 != 0;
            metadata.checking_disabled = bits & 16 != 0;
            metadata.response_code = if bits & 32 != 0 { ResponseCode::NXDomain } else { ResponseCode::BADVERS };
            let header = Header { metadata, counts: HeaderCounts { queries: 1, ..Default::default() } };
            let mut expected = Vec::new();
            header.emit(&mut BinEncoder::new(&mut expected)).unwrap();
            assert_eq!(header_bytes(&metadata, 1).as_slice(), expected.as_slice(), "flags {bits:#b}");
        }
    }
}
