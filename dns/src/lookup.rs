//! Answering one question from the zone store: the DNS decisions of design.md, with no I/O.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use roster_shared::PodMode;
use roster_shared::name::parse_dashed_ip;

use crate::store::{Found, ZoneStore};

/// The content of an authoritative answer, before it is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Arc<[Record]>>,
    /// The zone's SOA, present in every NXDOMAIN and NODATA answer.
    pub soa: Option<Arc<[Record]>>,
}

impl Answer {
    pub fn answer_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.answers.iter().flat_map(|set| set.iter())
    }

    pub fn soa_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.soa.iter().flat_map(|set| set.iter())
    }

    /// The external name a CNAME chain ended on, if the answer is a CNAME leading out of our zones.
    pub fn dangling_cname(&self) -> Option<&Name> {
        let last = self.answers.last()?.last()?;
        match &last.data {
            RData::CNAME(CNAME(target)) => Some(target),
            _ => None,
        }
    }
}

/// CNAME chains inside our zones are followed at most this far (they are one step in practice).
const MAX_CHAIN: usize = 8;

/// Answers `qtype` for `name` in authoritative zone `zone`.
pub fn answer(store: &ZoneStore, zone: usize, name: &LowerName, original: &Name, qtype: RecordType) -> Answer {
    let mut answer = Answer::default();
    let mut current = name.clone();
    let mut owner = original.clone();
    for _ in 0..MAX_CHAIN {
        let (found, soa) = store.find(zone, &current);
        let node = match found {
            Found::Node(node) => node,
            Found::Missing => {
                if let Some(pod) = insecure_pod_record(store, &current, &owner, qtype) {
                    match pod {
                        Some(record) => answer.answers.push(Arc::from(vec![record])),
                        None => answer.soa = soa,
                    }
                    return answer;
                }
                answer.rcode = ResponseCode::NXDomain;
                answer.soa = soa;
                return answer;
            }
        };
        let wanted = if qtype == RecordType::ANY { node.first() } else { node.get(qtype) };
        if let Some(set) = wanted {
            answer.answers.push(set.clone());
            return answer;
        }
        let Some(cname) = node.get(RecordType::CNAME).filter(|_| qtype != RecordType::CNAME) else {
            // The name exists but holds nothing of this type: NODATA.
            answer.soa = soa;
            return answer;
        };
        answer.answers.push(cname.clone());
        let Some(RData::CNAME(CNAME(target))) = cname.first().map(|record| &record.data) else {
            return answer;
        };
        let target_lower = LowerName::new(target);
        let target = target.clone();
        if store.zone_of(&target_lower) != Some(zone) {
            // Leaves our zone: the forwarder (if any) chases it; alone, the CNAME is the answer.
            return answer;
        }
        owner = target;
        current = target_lower;
    }
    answer
}

/// `a-b-c-d.<ns>.pod.<zone>` in insecure mode: `Some(Some(record))` for an answer, `Some(None)` for
/// NODATA (the name exists but the type is of the other family), `None` when not a pod name.
fn insecure_pod_record(store: &ZoneStore, name: &LowerName, owner: &Name, qtype: RecordType) -> Option<Option<Record>> {
    if store.config().pod_mode != PodMode::Insecure || name.num_labels() < 3 {
        return None;
    }
    let namespace = name.base_name();
    if namespace.base_name() != *store.pod_apex() || !store.contains(&namespace) {
        return None;
    }
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
