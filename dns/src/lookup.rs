//! Answering one question from the zone store: the DNS decisions of design.md, with no I/O.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use roster_shared::PodMode;
use roster_shared::name::parse_dashed_ip;

use crate::forward::records::Forwarded;
use crate::store::{View, ZoneStore};
use crate::wire::{MessageWriter, Node, Section, Set, WireName, first_label, parent, to_hickory};

/// The content of an answer, before it is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// Record sets from the store (authoritative), answer section first in order.
    pub local: Vec<Set>,
    /// The zone's SOA, present in every authoritative NXDOMAIN and NODATA answer.
    pub soa: Option<Set>,
    /// Address sets of SRV targets (additional section, as CoreDNS adds them); optional data, left
    /// out without TC when it does not fit (RFC 2181 §9).
    pub additional: Vec<Set>,
    /// TTL of the local records and the SOA.
    pub ttl: u32,
    /// Records of a forwarded answer; its answer records follow the local ones (a chased CNAME's
    /// target).
    pub forwarded: Forwarded,
    /// False for forwarded answers (not ours) and for errors.
    pub authoritative: bool,
    /// Which part answered, for metrics: `kubernetes`, `forward`, `cache`, or "" for errors.
    pub plugin: &'static str,
}

impl Answer {
    pub fn error(rcode: ResponseCode) -> Self {
        Self { rcode, ..Self::default() }
    }

    /// Writes every record in section order: local answers (address sets rotated round robin), then
    /// forwarded answers, forwarded authority, the SOA, forwarded additionals. Stops at the first record
    /// that does not fit (the writer sets TC).
    pub fn write(&self, writer: &mut MessageWriter<'_>, rotation: usize) {
        for set in &self.local {
            let start = if matches!(set.rtype(), RecordType::A | RecordType::AAAA) { rotation } else { 0 };
            if !writer.set(Section::Answer, set, self.ttl, start) {
                return;
            }
        }
        if !self.forwarded.write(writer, Section::Answer) || !self.forwarded.write(writer, Section::Authority) {
            return;
        }
        if let Some(soa) = &self.soa
            && !writer.set(Section::Authority, soa, self.ttl, 0)
        {
            return;
        }
        for set in &self.additional {
            if !writer.optional_set(set, self.ttl) {
                break;
            }
        }
        self.forwarded.write(writer, Section::Additional);
    }

    /// The external name a CNAME chain ended on, if the answer is a CNAME leading out of our zones.
    /// A chain that ended inside them (NODATA or NXDOMAIN, with our SOA) is complete: its target is
    /// ours, never the upstream's, to answer.
    pub fn dangling_cname(&self) -> Option<Name> {
        if !self.forwarded.is_empty() || self.soa.is_some() || self.rcode != ResponseCode::NoError {
            return None;
        }
        let last = self.local.last().filter(|set| set.rtype() == RecordType::CNAME)?;
        last.rdatas().last().map(to_hickory)
    }
}

/// CNAME chains inside our zones are followed at most this far (they are one step in practice).
const MAX_CHAIN: usize = 8;

/// The smallest an SRV record can be on the wire: owner pointer, type/class/TTL/rdlength, priority,
/// weight, port and a root target.
const MIN_SRV_WIRE: usize = 2 + 10 + 6 + 1;

/// Answers `qtype` for `name` (lowercase wire form) in authoritative zone `zone`. `size_limit` is the
/// most the response may hold: additional data is looked up only for SRV sets that could fit whole.
pub fn answer(store: &ZoneStore, zone: usize, name: &WireName, qtype: RecordType, size_limit: usize) -> Answer {
    let mut answer = Answer { authoritative: true, plugin: "kubernetes", ttl: store.config().ttl, ..Answer::default() };
    let view = store.view();
    let soa = || view.soa(zone);
    let mut current = name.clone();
    for _ in 0..MAX_CHAIN {
        let Some(node) = view.node(current.as_bytes()) else {
            // The name server our NS and SOA records name exists (RFC 2181 §10.3); its addresses are
            // the Service's, which clients already have, so it holds none here: NODATA.
            if current.as_bytes() == store.name_server() {
                answer.soa = soa();
                return answer;
            }
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
            if set.rtype() == RecordType::SRV && set.len().saturating_mul(MIN_SRV_WIRE) <= size_limit {
                answer.additional = srv_target_addresses(&view, &set);
            }
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

/// The A and AAAA sets of the distinct targets of an SRV set that are in the store, in record order.
fn srv_target_addresses(view: &View<'_>, srv: &Set) -> Vec<Set> {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut sets = Vec::new();
    for target in srv.rdatas().filter_map(|rdata| rdata.get(6..)) {
        // Targets repeat once per port; sets are small (the caller bounds them), so a scan is enough.
        if seen.contains(&target) {
            continue;
        }
        seen.push(target);
        if let Some(node) = view.node(target) {
            sets.extend(node.set(RecordType::A));
            sets.extend(node.set(RecordType::AAAA));
        }
    }
    sets
}
