//! The wire store against a model: arbitrary record sets (snapshots and deltas, built with
//! `arbitrary`) are loaded into a `ZoneStore`, then names are looked up through the request path.
//! Every answer must parse, and say exactly what a plain reading of the record sets says
//! (`lookup::answer`'s rules re-stated over a `BTreeMap`): rcode, answer records, the SOA of
//! negative answers, SRV additional data.

#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{self, RecordType};
use libfuzzer_sys::fuzz_target;
use roster_dns::FrontHandler;
use roster_dns::convert::record_type;
use roster_dns::fuzzing::answer;
use roster_fuzz::{QueryEdns, empty_store, name, now, parse_exactly, query};
use roster_shared::name::parse_dashed_ip;
use roster_shared::{Change, DomainName, Frame, RData, ZoneData};

/// Where generated names hang: the zones, names inside them, and names outside (not stored).
const PARENTS: &[&str] = &[
    "cluster.local",
    "svc.cluster.local",
    "default.svc.cluster.local",
    "nginx.default.svc.cluster.local",
    "pod.cluster.local",
    "default.pod.cluster.local",
    "in-addr.arpa",
    "10.in-addr.arpa",
    "ip6.arpa",
    "example.com",
    "local",
];
/// Labels that make names collide often enough to build chains, pod names and SRV owners.
const LABELS: &[&str] = &["web-0", "web-1", "nginx", "_http", "_tcp", "10-244-0-1", "fd00--1", "1", "0", "a", "pod"];
/// Authoritative zones in the store's order (the cluster zone first).
const ZONES: &[&str] = &["cluster.local", "in-addr.arpa", "ip6.arpa"];
const QTYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
    RecordType::MX,
];

#[derive(Arbitrary, Debug)]
enum Label {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum NameSpec {
    /// A name made earlier in this input (so sets, targets and queries meet).
    Earlier(u8),
    Built {
        parent: u8,
        labels: Vec<Label>,
    },
}

#[derive(Arbitrary, Debug)]
enum RecordSpec {
    A([u8; 4]),
    Aaaa([u8; 16]),
    Srv(u16, u16, u16, NameSpec),
    Ptr(NameSpec),
    Cname(NameSpec),
    Txt(String),
    Ns(NameSpec),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Snapshot(Vec<(NameSpec, Vec<RecordSpec>)>),
    /// `None` records remove the name. `skip` sends a generation that does not follow.
    Delta {
        skip: bool,
        changes: Vec<(NameSpec, Option<Vec<RecordSpec>>)>,
    },
    Query {
        name: NameSpec,
        qtype: u8,
        case: u64,
        edns: Option<u16>,
        tcp: bool,
    },
}

/// What the store holds: names in the zones with their records (the stream's view).
#[derive(Default)]
struct Model {
    names: BTreeMap<DomainName, Vec<RData>>,
    generation: Option<u64>,
}

/// A record of an answer, comparable across the model and hickory's parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rec {
    Data(RData),
    /// SOA content is the store's (serial from the clock); only its place is checked.
    Soa,
}

struct Builder {
    names: Vec<DomainName>,
}

impl Builder {
    fn name(&mut self, spec: &NameSpec) -> Option<DomainName> {
        match spec {
            NameSpec::Earlier(i) if !self.names.is_empty() => {
                Some(self.names[usize::from(*i) % self.names.len()].clone())
            }
            NameSpec::Earlier(_) => None,
            NameSpec::Built { parent, labels } => {
                let mut text = String::new();
                for label in labels.iter().take(6) {
                    match label {
                        Label::Known(i) => text.push_str(LABELS[usize::from(*i) % LABELS.len()]),
                        Label::Raw(raw) => text.push_str(raw),
                    }
                    text.push('.');
                }
                text.push_str(PARENTS[usize::from(*parent) % PARENTS.len()]);
                let name = DomainName::parse(&text).ok()?;
                self.names.push(name.clone());
                Some(name)
            }
        }
    }

    fn record(&mut self, spec: &RecordSpec) -> Option<RData> {
        Some(match spec {
            RecordSpec::A(ip) => RData::A { ip: (*ip).into() },
            RecordSpec::Aaaa(ip) => RData::Aaaa { ip: (*ip).into() },
            RecordSpec::Srv(priority, weight, port, target) => {
                RData::Srv { priority: *priority, weight: *weight, port: *port, target: self.name(target)? }
            }
            RecordSpec::Ptr(target) => RData::Ptr { target: self.name(target)? },
            RecordSpec::Cname(target) => RData::Cname { target: self.name(target)? },
            RecordSpec::Txt(text) => RData::Txt { text: text.clone() },
            RecordSpec::Ns(target) => RData::Ns { target: self.name(target)? },
        })
    }

    fn records(&mut self, specs: &[RecordSpec]) -> Vec<RData> {
        specs.iter().filter_map(|spec| self.record(spec)).collect()
    }
}

/// The most specific authoritative zone of `name`.
fn zone_of(name: &DomainName) -> Option<usize> {
    ZONES
        .iter()
        .enumerate()
        .filter(|(_, z)| name.is_within(&self::name(z)))
        .max_by_key(|(_, z)| z.len())
        .map(|(i, _)| i)
}

impl Model {
    /// The record sets of a name as the store holds them, by type: the stream's records, and at each
    /// apex the SOA and (unless the stream has some) the default NS.
    fn node(&self, owner: &DomainName) -> Option<BTreeMap<u16, Vec<Rec>>> {
        let apex = ZONES.iter().any(|z| name(z) == *owner);
        let records = self.names.get(owner);
        if records.is_none() && !apex {
            return None;
        }
        let mut sets: BTreeMap<u16, Vec<Rec>> = BTreeMap::new();
        for rdata in records.into_iter().flatten() {
            sets.entry(u16::from(record_type(rdata))).or_default().push(Rec::Data(rdata.clone()));
        }
        if apex {
            sets.insert(u16::from(RecordType::SOA), vec![Rec::Soa]);
            sets.entry(u16::from(RecordType::NS))
                .or_insert_with(|| vec![Rec::Data(RData::Ns { target: name("ns.dns.cluster.local") })]);
        }
        Some(sets)
    }

    /// Insecure pod records: `Some(Some(record))`, `Some(None)` for NODATA, `None` when not a pod name.
    fn pod_record(&self, owner: &DomainName, qtype: RecordType) -> Option<Option<Rec>> {
        let namespace = owner.parent()?;
        if namespace.parent()? != name("pod.cluster.local") {
            return None;
        }
        self.node(&namespace)?;
        let label = owner.as_str().split('.').next()?;
        Some(match (parse_dashed_ip(label)?, qtype) {
            (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => Some(Rec::Data(RData::A { ip })),
            (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => Some(Rec::Data(RData::Aaaa { ip })),
            _ => None,
        })
    }

    /// The expected answer: rcode, answer records, whether the SOA is in authority, and the records
    /// the additional section may hold.
    fn expect(&self, qname: &DomainName, qtype: RecordType, size_limit: usize) -> Expected {
        let mut expected =
            Expected { rcode: ResponseCode::NoError, answers: Vec::new(), soa: false, additional: Vec::new() };
        let Some(zone) = zone_of(qname) else {
            expected.rcode = ResponseCode::Refused;
            return expected;
        };
        if self.generation.is_none() {
            expected.rcode = ResponseCode::ServFail;
            return expected;
        }
        let mut current = qname.clone();
        for _ in 0..8 {
            let Some(sets) = self.node(&current) else {
                match self.pod_record(&current, qtype) {
                    Some(Some(record)) => expected.answers.push((current.clone(), record)),
                    Some(None) => expected.soa = true,
                    None => {
                        expected.rcode = ResponseCode::NXDomain;
                        expected.soa = true;
                    }
                }
                return expected;
            };
            let wanted =
                if qtype == RecordType::ANY { sets.iter().next() } else { sets.get_key_value(&u16::from(qtype)) };
            if let Some((&rtype, records)) = wanted {
                expected.answers.extend(records.iter().map(|r| (current.clone(), r.clone())));
                if rtype == u16::from(RecordType::SRV) && records.len() * 19 <= size_limit {
                    let mut seen = Vec::new();
                    for record in records {
                        let Rec::Data(RData::Srv { target, .. }) = record else { continue };
                        if seen.contains(target) {
                            continue;
                        }
                        seen.push(target.clone());
                        for (rtype, records) in self.node(target).unwrap_or_default() {
                            if rtype == u16::from(RecordType::A) || rtype == u16::from(RecordType::AAAA) {
                                expected.additional.extend(records.into_iter().map(|r| (target.clone(), r)));
                            }
                        }
                    }
                }
                return expected;
            }
            let cname = sets.get(&u16::from(RecordType::CNAME)).filter(|_| qtype != RecordType::CNAME);
            let Some(cname) = cname else {
                expected.soa = true;
                return expected;
            };
            expected.answers.extend(cname.iter().map(|r| (current.clone(), r.clone())));
            let Some(Rec::Data(RData::Cname { target })) = cname.first() else { unreachable!() };
            if zone_of(target) != Some(zone) {
                return expected;
            }
            current = target.clone();
        }
        expected
    }

    /// The store must refuse a delta exactly when the model does.
    fn apply(&mut self, frame: &Frame) -> bool {
        match frame {
            Frame::Snapshot { generation, zone, .. } => {
                self.names = zone
                    .names
                    .iter()
                    .filter(|(n, _)| zone_of(n).is_some())
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect();
                self.generation = Some(*generation);
            }
            Frame::Delta { generation, changes, .. } => {
                if self.generation.map(|g| g + 1) != Some(*generation) {
                    return false;
                }
                for change in changes {
                    match change {
                        Change::Set { name, records } if zone_of(name).is_some() => {
                            self.names.insert(name.clone(), records.clone());
                        }
                        Change::Remove { name } => {
                            self.names.remove(name);
                        }
                        // Autopath clients: the model answers no autopath (the store keeps none by default).
                        Change::Set { .. } | Change::Client { .. } => {}
                    }
                }
                self.generation = Some(*generation);
            }
            Frame::Bookmark { .. } => {}
        }
        true
    }
}

struct Expected {
    rcode: ResponseCode,
    answers: Vec<(DomainName, Rec)>,
    soa: bool,
    additional: Vec<(DomainName, Rec)>,
}

fn domain(name: &rr::Name) -> DomainName {
    let text = name.to_ascii();
    DomainName::parse(&text).unwrap_or_else(|e| panic!("answer name `{text}`: {e}"))
}

/// An answer record in the model's terms.
fn rec(record: &rr::Record) -> (DomainName, Rec) {
    let data = match &record.data {
        rr::RData::A(a) => RData::A { ip: a.0 },
        rr::RData::AAAA(a) => RData::Aaaa { ip: a.0 },
        rr::RData::SRV(srv) => {
            RData::Srv { priority: srv.priority, weight: srv.weight, port: srv.port, target: domain(&srv.target) }
        }
        rr::RData::PTR(ptr) => RData::Ptr { target: domain(&ptr.0) },
        rr::RData::CNAME(cname) => RData::Cname { target: domain(&cname.0) },
        rr::RData::NS(ns) => RData::Ns { target: domain(&ns.0) },
        rr::RData::TXT(txt) => {
            let bytes: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
            RData::Txt { text: String::from_utf8(bytes).unwrap_or_else(|e| panic!("TXT not as stored: {e}")) }
        }
        rr::RData::SOA(_) => return (domain(&record.name), Rec::Soa),
        other => panic!("unexpected record {other:?}"),
    };
    (domain(&record.name), Rec::Data(data))
}

fn sorted(mut records: Vec<(DomainName, Rec)>) -> Vec<(DomainName, Rec)> {
    records.sort();
    records
}

/// True when every record of `part` is in `whole`, counting repeats.
fn is_sub_multiset(part: &[(DomainName, Rec)], whole: &[(DomainName, Rec)]) -> bool {
    let mut rest = sorted(whole.to_vec());
    part.iter().all(|record| match rest.iter().position(|r| r == record) {
        Some(i) => {
            rest.remove(i);
            true
        }
        None => false,
    })
}

/// `text` with the ASCII letters' case flipped where `mask`'s bits (cycled) are set, as 0x20
/// randomisation does.
fn mixed_case(text: &str, mask: u64) -> String {
    text.chars().enumerate().map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect()
}

fn check(message: &Message, expected: &Expected, qname: &DomainName) {
    let context = || format!("{qname}: {message}");
    assert_eq!(message.metadata.response_code, expected.rcode, "{}", context());
    if matches!(expected.rcode, ResponseCode::Refused | ResponseCode::ServFail) {
        assert!(message.answers.is_empty() && message.authorities.is_empty(), "{}", context());
        return;
    }
    assert!(message.metadata.authoritative, "{}", context());
    let answers: Vec<_> = message.answers.iter().map(rec).collect();
    if message.metadata.truncation {
        assert!(is_sub_multiset(&answers, &expected.answers), "{}", context());
        return;
    }
    assert_eq!(sorted(answers), sorted(expected.answers.clone()), "{}", context());
    let authority: Vec<_> = message.authorities.iter().map(rec).collect();
    if expected.soa {
        let zone = zone_of(qname).map(|z| name(ZONES[z]));
        assert!(matches!(authority.as_slice(), [(apex, Rec::Soa)] if Some(apex) == zone.as_ref()), "{}", context());
    } else {
        assert!(authority.is_empty(), "{}", context());
    }
    let additional: Vec<_> = message.additionals.iter().map(rec).collect();
    assert!(is_sub_multiset(&additional, &expected.additional), "{}", context());
}

fuzz_target!(|steps: Vec<Step>| {
    let store = empty_store();
    let handler = FrontHandler::new(store.clone());
    let mut model = Model::default();
    let mut builder = Builder { names: Vec::new() };
    let mut generation = 0u64;
    for step in steps.iter().take(32) {
        match step {
            Step::Snapshot(sets) => {
                let mut zone = ZoneData::default();
                for (owner, records) in sets {
                    let Some(owner) = builder.name(owner) else { continue };
                    let records = builder.records(records);
                    zone.names.insert(owner, records);
                }
                generation += 1;
                let frame = Frame::Snapshot { epoch: 1, generation, zone: Arc::new(zone) };
                assert!(model.apply(&frame));
                store.apply(&frame).unwrap_or_else(|e| panic!("snapshot refused: {e}"));
            }
            Step::Delta { skip, changes } => {
                let changes: Vec<Change> = changes
                    .iter()
                    .filter_map(|(owner, records)| {
                        let name = builder.name(owner)?;
                        Some(match records {
                            Some(records) => Change::Set { name, records: builder.records(records) },
                            None => Change::Remove { name },
                        })
                    })
                    .collect();
                let frame = Frame::Delta { generation: generation + 1 + u64::from(*skip), changes, trigger: None };
                let accepted = model.apply(&frame);
                assert_eq!(store.apply(&frame).is_ok(), accepted, "store and model disagree on the delta's order");
                if accepted {
                    generation += 1;
                }
            }
            Step::Query { name: spec, qtype, case, edns, tcp } => {
                let Some(qname) = builder.name(spec) else { continue };
                let qtype = QTYPES[usize::from(*qtype) % QTYPES.len()];
                let edns = edns.map(|payload| QueryEdns { payload, version: 0, dnssec_ok: false });
                let bytes = query(0x4242, &mixed_case(qname.as_str(), *case), u16::from(qtype), 1, edns);
                let response = now(answer(&handler, &bytes, *tcp)).unwrap_or_else(|| panic!("no response to a query"));
                let message = parse_exactly(&response)
                    .unwrap_or_else(|e| panic!("{qname} {qtype}: response does not parse: {e}"));
                let size_limit = match edns {
                    _ if *tcp => usize::from(u16::MAX),
                    Some(edns) => usize::from(edns.payload.clamp(512, 4096)),
                    None => 512,
                };
                assert!(response.len() <= size_limit);
                check(&message, &model.expect(&qname, qtype, size_limit), &qname);
            }
        }
    }
});
