//! Answering one question from the zone store: the DNS decisions of design.md, with no I/O.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use roster_shared::PodMode;
use roster_shared::name::parse_dashed_ip;

use crate::store::{RrSet, View, ZoneStore};
use crate::wire::{MessageWriter, Node, Section, Set, WireName, first_label, parent, to_hickory};

/// The content of an answer, before it is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// Record sets from the store (authoritative), answer section first in order.
    pub local: Vec<Set>,
    /// The zone's SOA, present in every authoritative NXDOMAIN and NODATA answer.
    pub soa: Option<Set>,
    /// TTL of the local records and the SOA.
    pub ttl: u32,
    /// Answer records of a forwarded answer (after the local ones: a chased CNAME's target).
    pub answers: Vec<RrSet>,
    /// Authority records of a forwarded answer.
    pub authority: Vec<RrSet>,
    /// Additional records of a forwarded answer.
    pub additionals: Vec<RrSet>,
    /// False for forwarded answers (not ours) and for errors.
    pub authoritative: bool,
    /// Which part answered, for metrics: `kubernetes`, `forward`, `cache`, or "" for errors.
    pub plugin: &'static str,
}

impl Answer {
    pub fn error(rcode: ResponseCode) -> Self {
        Self { rcode, ..Self::default() }
    }

    /// True when every record comes from the store, so roster's own writer can encode the answer.
    pub fn is_local(&self) -> bool {
        self.answers.is_empty() && self.authority.is_empty() && self.additionals.is_empty()
    }

    /// Writes the local records: answers (address sets rotated round robin), then the SOA.
    pub fn write_local(&self, writer: &mut MessageWriter<'_>, rotation: usize) {
        for set in &self.local {
            let start = if matches!(set.rtype(), RecordType::A | RecordType::AAAA) { rotation } else { 0 };
            writer.set(Section::Answer, set, self.ttl, start);
        }
        if let Some(soa) = &self.soa {
            writer.set(Section::Authority, soa, self.ttl, 0);
        }
    }

    /// The local records as hickory records (answer, authority), for hickory's encoder (TCP, and
    /// answers mixed with forwarded records): encoded by roster's writer and decoded again.
    pub fn local_records(&self, rotation: usize) -> (Vec<Record>, Vec<Record>) {
        if self.local.is_empty() && self.soa.is_none() {
            return (Vec::new(), Vec::new());
        }
        let mut bytes = Vec::with_capacity(512);
        let mut writer = MessageWriter::new(&mut bytes, &[0; 12], &[], usize::from(u16::MAX));
        self.write_local(&mut writer, rotation);
        writer.finish(None);
        match hickory_proto::op::Message::from_vec(&bytes) {
            Ok(message) => (message.answers, message.authorities),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }

    pub fn answer_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.answers.iter().flat_map(|set| set.records.iter())
    }

    pub fn authority_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.authority.iter().flat_map(|set| set.records.iter())
    }

    pub fn additional_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.additionals.iter().flat_map(|set| set.records.iter())
    }

    /// Uncompressed size of every record, an upper bound of what they take on the wire.
    pub fn records_wire_len(&self) -> usize {
        let local: usize = self.local.iter().chain(self.soa.iter()).map(Set::wire_len).sum();
        local + self.answers.iter().chain(&self.authority).chain(&self.additionals).map(|s| s.wire_len).sum::<usize>()
    }

    /// The external name a CNAME chain ended on, if the answer is a CNAME leading out of our zones.
    pub fn dangling_cname(&self) -> Option<Name> {
        if !self.answers.is_empty() {
            return None;
        }
        let last = self.local.last().filter(|set| set.rtype() == RecordType::CNAME)?;
        last.rdatas().last().map(to_hickory)
    }
}

/// CNAME chains inside our zones are followed at most this far (they are one step in practice).
const MAX_CHAIN: usize = 8;

/// Answers `qtype` for `name` (lowercase wire form) in authoritative zone `zone`.
pub fn answer(store: &ZoneStore, zone: usize, name: &WireName, qtype: RecordType) -> Answer {
    let mut answer = Answer { authoritative: true, plugin: "kubernetes", ttl: store.config().ttl, ..Answer::default() };
    let view = store.view();
    let soa = || view.soa(zone);
    let mut current = name.clone();
    for _ in 0..MAX_CHAIN {
        let Some(node) = view.node(current.as_bytes()) else {
            match insecure_pod_record(store, &view, current.as_bytes(), qtype) {
                Some(Some(set)) => answer.local.push(set),
                Some(None) => answer.soa = soa(),
                None => {
                    answer.rcode = ResponseCode::NXDomain;
                    answer.soa = soa();
                }
            }
            return answer;
        };
        let wanted = if qtype == RecordType::ANY { node.first() } else { node.set(qtype) };
        if let Some(set) = wanted {
            answer.local.push(set);
            return answer;
        }
        let Some(cname) = node.set(RecordType::CNAME).filter(|_| qtype != RecordType::CNAME) else {
            // The name exists but holds nothing of this type: NODATA.
            answer.soa = soa();
            return answer;
        };
        let target = cname.rdatas().next().and_then(WireName::from_wire);
        answer.local.push(cname);
        let Some(target) = target else { return answer };
        if store.zone_of_wire(target.as_bytes()) != Some(zone) {
            // Leaves our zone: the forwarder (if any) chases it; alone, the CNAME is the answer.
            return answer;
        }
        current = target;
    }
    answer
}

/// `a-b-c-d.<ns>.pod.<zone>` in insecure mode: `Some(Some(set))` for an answer, `Some(None)` for
/// NODATA (the name exists but the type is of the other family), `None` when not a pod name.
fn insecure_pod_record(store: &ZoneStore, view: &View<'_>, name: &[u8], qtype: RecordType) -> Option<Option<Set>> {
    let pod_apex = store.pod_apex();
    // Cheap test first: exactly two labels below `pod.<zone>` (NXDOMAIN must stay as cheap as a hit).
    if store.config().pod_mode != PodMode::Insecure {
        return None;
    }
    let namespace = parent(name)?;
    if parent(namespace)? != pod_apex {
        return None;
    }
    view.node(namespace)?;
    let label = std::str::from_utf8(first_label(name)).ok()?;
    let ip = parse_dashed_ip(label)?;
    let (rtype, rdata) = match (ip, qtype) {
        (std::net::IpAddr::V4(v4), RecordType::A | RecordType::ANY) => (RecordType::A, v4.octets().to_vec()),
        (std::net::IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => (RecordType::AAAA, v6.octets().to_vec()),
        _ => return Some(None),
    };
    Node::build(name, &[(rtype, vec![rdata])]).set(rtype).map(Some)
}
