//! Answering one question from the zone store: the DNS decisions of design.md, with no I/O.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use roster_shared::PodMode;
use roster_shared::name::parse_dashed_ip;

use crate::store::{RrSet, View, ZoneStore};

/// The content of an answer, before it is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<RrSet>,
    /// The zone's SOA, present in every authoritative NXDOMAIN and NODATA answer.
    pub soa: Option<RrSet>,
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

    pub fn answer_records(&self, rotation: usize) -> impl Iterator<Item = &Record> + Send {
        self.answers.iter().flat_map(move |set| rotated(set, rotation))
    }

    pub fn authority_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.authority.iter().chain(self.soa.iter()).flat_map(|set| set.records.iter())
    }

    pub fn additional_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.additionals.iter().flat_map(|set| set.records.iter())
    }

    /// Uncompressed size of every record, an upper bound of what they take on the wire.
    pub fn records_wire_len(&self) -> usize {
        self.answers
            .iter()
            .chain(&self.authority)
            .chain(&self.additionals)
            .chain(self.soa.iter())
            .map(|s| s.wire_len)
            .sum()
    }

    /// The external name a CNAME chain ended on, if the answer is a CNAME leading out of our zones.
    pub fn dangling_cname(&self) -> Option<&Name> {
        let last = self.answers.last()?.records.last()?;
        match &last.data {
            RData::CNAME(CNAME(target)) => Some(target),
            _ => None,
        }
    }
}

/// Address record sets are served in rotating order (round robin) so that clients that take the first
/// address spread over all of them; other types keep their canonical order.
fn rotated(set: &RrSet, rotation: usize) -> impl Iterator<Item = &Record> + Send {
    let len = set.records.len();
    let rotate = len > 1 && matches!(set.records[0].record_type(), RecordType::A | RecordType::AAAA);
    let start = if rotate { rotation % len } else { 0 };
    set.records[start..].iter().chain(set.records[..start].iter())
}

/// CNAME chains inside our zones are followed at most this far (they are one step in practice).
const MAX_CHAIN: usize = 8;

/// Answers `qtype` for `name` in authoritative zone `zone`.
pub fn answer(store: &ZoneStore, zone: usize, name: &LowerName, original: &Name, qtype: RecordType) -> Answer {
    let mut answer = Answer { authoritative: true, plugin: "kubernetes", ..Answer::default() };
    let view = store.view();
    let soa = || view.soa(zone).cloned();
    let mut current = name.clone();
    let mut owner = original.clone();
    for _ in 0..MAX_CHAIN {
        let Some(node) = view.node(&current) else {
            match insecure_pod_record(store, &view, &current, &owner, qtype) {
                Some(Some(record)) => answer.answers.push(RrSet::new(vec![record])),
                Some(None) => answer.soa = soa(),
                None => {
                    answer.rcode = ResponseCode::NXDomain;
                    answer.soa = soa();
                }
            }
            return answer;
        };
        let wanted = if qtype == RecordType::ANY { node.first() } else { node.get(qtype) };
        if let Some(set) = wanted {
            answer.answers.push(set.clone());
            return answer;
        }
        let Some(cname) = node.get(RecordType::CNAME).filter(|_| qtype != RecordType::CNAME) else {
            // The name exists but holds nothing of this type: NODATA.
            answer.soa = soa();
            return answer;
        };
        answer.answers.push(cname.clone());
        let Some(RData::CNAME(CNAME(target))) = cname.records.first().map(|record| &record.data) else {
            return answer;
        };
        let target_lower = LowerName::new(target);
        if store.zone_of(&target_lower) != Some(zone) {
            // Leaves our zone: the forwarder (if any) chases it; alone, the CNAME is the answer.
            return answer;
        }
        owner = target.clone();
        current = target_lower;
    }
    answer
}

/// `a-b-c-d.<ns>.pod.<zone>` in insecure mode: `Some(Some(record))` for an answer, `Some(None)` for
/// NODATA (the name exists but the type is of the other family), `None` when not a pod name.
fn insecure_pod_record(
    store: &ZoneStore,
    view: &View<'_>,
    name: &LowerName,
    owner: &Name,
    qtype: RecordType,
) -> Option<Option<Record>> {
    let pod_apex = store.pod_apex();
    // Cheap test first: exactly two labels below `pod.<zone>` (NXDOMAIN must stay as cheap as a hit).
    if store.config().pod_mode != PodMode::Insecure
        || name.num_labels() != pod_apex.num_labels() + 2
        || !pod_apex.zone_of(name)
    {
        return None;
    }
    let namespace = name.base_name();
    view.node(&namespace)?;
    let label = std::str::from_utf8(owner.iter().next()?).ok()?.to_ascii_lowercase();
    let ip = parse_dashed_ip(&label)?;
    let ttl = store.config().ttl;
    let record = match (ip, qtype) {
        (std::net::IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
            Record::from_rdata(owner.clone(), ttl, RData::A(A(v4)))
        }
        (std::net::IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
            Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(v6)))
        }
        _ => return Some(None),
    };
    Some(Some(record))
}
