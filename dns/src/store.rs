//! The zone store: precompiled hickory record sets per name, swapped and patched atomically.
//!
//! One `RwLock` guards the whole table so that a delta touching many names is applied as one step: a
//! query sees the table before or after a frame, never half of it. Readers hold the lock only for a
//! hash lookup and an `Arc` clone.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use parking_lot::RwLock;
use roster_shared::{Change, DomainName, Frame, RData, ZoneData};

use crate::config::DnsConfig;
use crate::convert::{ns_record, record_type, soa_record, to_lower, to_name, to_record};

/// One record set, shared between the store and the answers that carry it.
#[derive(Debug, Clone)]
pub struct RrSet {
    pub records: Arc<[Record]>,
    /// Uncompressed wire size, for the response-size metric without encoding twice.
    pub wire_len: usize,
}

impl RrSet {
    pub fn new(records: Vec<Record>) -> Self {
        let mut scratch = Vec::with_capacity(64);
        let mut wire_len = 0;
        for record in &records {
            scratch.clear();
            let mut encoder = BinEncoder::new(&mut scratch);
            if record.emit(&mut encoder).is_ok() {
                wire_len += scratch.len();
            }
        }
        Self { records: Arc::from(records), wire_len }
    }
}

/// The record sets of one name, in a fixed type order. Empty for an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    rrsets: Vec<(RecordType, RrSet)>,
}

impl Node {
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|(t, _)| *t == rtype).map(|(_, set)| set)
    }

    pub fn first(&self) -> Option<&RrSet> {
        self.rrsets.first().map(|(_, set)| set)
    }

    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty()
    }

    fn build(owner: &Name, ttl: u32, records: &[RData]) -> Self {
        let mut by_type: Vec<(RecordType, Vec<Record>)> = Vec::new();
        for rdata in records {
            let rtype = record_type(rdata);
            let record = to_record(owner, ttl, rdata);
            match by_type.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, list)) => list.push(record),
                None => by_type.push((rtype, vec![record])),
            }
        }
        by_type.sort_by_key(|(t, _)| u16::from(*t));
        Self { rrsets: by_type.into_iter().map(|(t, list)| (t, RrSet::new(list))).collect() }
    }

    fn insert(&mut self, rtype: RecordType, set: RrSet) {
        self.rrsets.retain(|(t, _)| *t != rtype);
        self.rrsets.push((rtype, set));
        self.rrsets.sort_by_key(|(t, _)| u16::from(*t));
    }
}

/// An authoritative zone: its apex and the SOA that goes with its negative answers.
#[derive(Debug, Clone)]
pub struct Zone {
    pub apex: LowerName,
    pub name: DomainName,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("delta for generation {got} does not follow the store's generation {have:?}")]
    OutOfOrder { have: Option<u64>, got: u64 },
}

#[derive(Debug, Default)]
struct Table {
    names: NameMap,
    /// The SOA of each zone, index-aligned with `ZoneStore::zones`.
    soas: Vec<RrSet>,
    /// The stream position of the last applied frame: (epoch, generation).
    position: Option<(u64, u64)>,
}

#[derive(Debug)]
pub struct ZoneStore {
    config: DnsConfig,
    zones: Vec<Zone>,
    /// `pod.<cluster zone>`, for answering insecure pod records without storing them.
    pod_apex: LowerName,
    serial_base: u32,
    table: RwLock<Table>,
}

/// Names to nodes; FxHash because names are short and hashing them is on every query's path.
type NameMap = HashMap<LowerName, Node, BuildHasherDefault<FxHasher>>;

/// A consistent read view of the table: every lookup of one query goes through one view, so a CNAME
/// chain cannot straddle two generations.
pub struct View<'a> {
    table: parking_lot::RwLockReadGuard<'a, Table>,
}

impl View<'_> {
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.table.names.get(name)
    }

    pub fn soa(&self, zone: usize) -> Option<&RrSet> {
        self.table.soas.get(zone)
    }
}

impl ZoneStore {
    pub fn new(config: DnsConfig) -> Self {
        let zones: Vec<Zone> = config.zones().map(|name| Zone { apex: to_lower(name), name: name.clone() }).collect();
        let pod_apex = to_lower(&config.cluster_zone.child("pod").unwrap_or_else(|_| config.cluster_zone.clone()));
        // Serials start from the wall clock so that they keep increasing across restarts.
        let serial_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs() % u64::from(u32::MAX / 2)).unwrap_or(0))
            .unwrap_or(0);
        Self { config, zones, pod_apex, serial_base, table: RwLock::new(Table::default()) }
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    pub fn pod_apex(&self) -> &LowerName {
        &self.pod_apex
    }

    /// The index of the most specific authoritative zone containing `name`.
    pub fn zone_of(&self, name: &LowerName) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, zone)| zone.apex.zone_of(name))
            .max_by_key(|(_, zone)| zone.apex.num_labels())
            .map(|(index, _)| index)
    }

    /// The generation of the last applied frame; `None` until the first snapshot.
    pub fn generation(&self) -> Option<u64> {
        self.position().map(|(_, generation)| generation)
    }

    /// Epoch and generation of the last applied frame, to resume a stream from.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.table.read().position
    }

    pub fn is_synced(&self) -> bool {
        self.generation().is_some()
    }

    pub fn name_count(&self) -> usize {
        self.table.read().names.len()
    }

    /// A read view for answering one query; hold it only while computing the answer.
    pub fn view(&self) -> View<'_> {
        View { table: self.table.read() }
    }

    /// True when `name` exists (possibly as an empty non-terminal).
    pub fn contains(&self, name: &LowerName) -> bool {
        self.table.read().names.contains_key(name)
    }

    /// Applies one frame of the record stream.
    pub fn apply(&self, frame: &Frame) -> Result<(), ApplyError> {
        match frame {
            Frame::Snapshot { epoch, generation, zone } => {
                let mut names = self.build_names(zone);
                let soas = self.build_soas(*generation);
                self.restore_apexes(&mut names, &soas);
                let mut table = self.table.write();
                *table = Table { names, soas, position: Some((*epoch, *generation)) };
                Ok(())
            }
            Frame::Delta { generation, changes, .. } => {
                let Some((epoch, have)) = self.position().filter(|(_, have)| have + 1 == *generation) else {
                    return Err(ApplyError::OutOfOrder { have: self.generation(), got: *generation });
                };
                debug_assert!(have < *generation);
                let prepared = self.prepare_changes(changes);
                let soas = self.build_soas(*generation);
                let mut table = self.table.write();
                for (name, node) in prepared {
                    match node {
                        Some(node) => {
                            table.names.insert(name, node);
                        }
                        None => {
                            table.names.remove(&name);
                        }
                    }
                }
                self.restore_apexes(&mut table.names, &soas);
                table.soas = soas;
                table.position = Some((epoch, *generation));
                Ok(())
            }
            Frame::Bookmark { .. } => Ok(()),
        }
    }

    fn in_zones(&self, name: &DomainName) -> bool {
        self.zones.iter().any(|zone| name.is_within(&zone.name))
    }

    fn build_names(&self, zone: &ZoneData) -> NameMap {
        let ttl = self.config.ttl;
        let mut names = NameMap::with_capacity_and_hasher(zone.names.len() + self.zones.len(), Default::default());
        for (name, records) in &zone.names {
            if self.in_zones(name) {
                names.insert(to_lower(name), Node::build(&to_name(name), ttl, records));
            }
        }
        names
    }

    fn prepare_changes(&self, changes: &[Change]) -> Vec<(LowerName, Option<Node>)> {
        let ttl = self.config.ttl;
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Set { name, records } => {
                    self.in_zones(name).then(|| (to_lower(name), Some(Node::build(&to_name(name), ttl, records))))
                }
                Change::Remove { name } => self.in_zones(name).then(|| (to_lower(name), None)),
            })
            .collect()
    }

    fn build_soas(&self, generation: u64) -> Vec<RrSet> {
        let serial = self.serial_base.wrapping_add(u32::try_from(generation % u64::from(u32::MAX)).unwrap_or(0));
        self.zones
            .iter()
            .map(|zone| RrSet::new(vec![soa_record(&zone.name, &self.config.cluster_zone, serial, self.config.ttl)]))
            .collect()
    }

    /// Puts SOA and NS at every apex (the stream carries neither: both depend on this replica's config).
    fn restore_apexes(&self, names: &mut NameMap, soas: &[RrSet]) {
        for (zone, soa) in self.zones.iter().zip(soas) {
            let node = names.entry(zone.apex.clone()).or_default();
            node.insert(RecordType::SOA, soa.clone());
            if node.get(RecordType::NS).is_none() {
                let ns = ns_record(&zone.name, &self.config.cluster_zone, self.config.ttl);
                node.insert(RecordType::NS, RrSet::new(vec![ns]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use roster_shared::PodMode;

    fn store() -> ZoneStore {
        ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap())
    }

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    fn lower(text: &str) -> LowerName {
        to_lower(&name(text))
    }

    fn zone_with(entries: &[(&str, &str)]) -> ZoneData {
        let mut zone = ZoneData::default();
        let apex = name("cluster.local");
        for (owner, ip) in entries {
            zone.add(name(owner), RData::A { ip: ip.parse().unwrap() }, &apex);
        }
        zone
    }

    fn serial(store: &ZoneStore) -> u32 {
        let view = store.view();
        match &view.soa(0).unwrap().records[0].data {
            hickory_proto::rr::RData::SOA(soa) => soa.serial,
            other => panic!("not an SOA: {other:?}"),
        }
    }

    #[test]
    fn deltas_apply_in_order_only_and_bump_the_serial() {
        let store = store();
        assert!(!store.is_synced());
        let snapshot = Frame::Snapshot {
            epoch: 1,
            generation: 4,
            zone: Arc::new(zone_with(&[("a.svc.cluster.local", "10.0.0.1")])),
        };
        store.apply(&snapshot).unwrap();
        let first_serial = serial(&store);
        assert!(store.contains(&lower("a.svc.cluster.local")));
        assert!(store.contains(&lower("svc.cluster.local")), "empty non-terminal kept");

        let skipping = Frame::Delta { generation: 6, changes: vec![], trigger: None };
        assert_eq!(store.apply(&skipping), Err(ApplyError::OutOfOrder { have: Some(4), got: 6 }));
        assert_eq!(store.generation(), Some(4));

        let delta = Frame::Delta {
            trigger: None,
            generation: 5,
            changes: vec![
                Change::Remove { name: name("a.svc.cluster.local") },
                Change::Set {
                    name: name("b.svc.cluster.local"),
                    records: vec![RData::A { ip: "10.0.0.2".parse().unwrap() }],
                },
            ],
        };
        store.apply(&delta).unwrap();
        assert!(!store.contains(&lower("a.svc.cluster.local")));
        assert!(store.contains(&lower("b.svc.cluster.local")));
        assert_eq!(serial(&store), first_serial + 1);
    }

    #[test]
    fn apex_records_survive_any_frame() {
        let store = store();
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::default() }).unwrap();
        // A delta that removes the apex name (as a buggy publisher might) cannot remove SOA and NS.
        let delta = Frame::Delta {
            generation: 2,
            changes: vec![Change::Remove { name: name("cluster.local") }],
            trigger: None,
        };
        store.apply(&delta).unwrap();
        for apex in ["cluster.local", "in-addr.arpa", "ip6.arpa"] {
            let view = store.view();
            let node = view.node(&lower(apex)).unwrap_or_else(|| panic!("{apex} missing"));
            assert!(node.get(RecordType::SOA).is_some() && node.get(RecordType::NS).is_some(), "{apex}");
        }
    }

    #[test]
    fn names_outside_the_zones_are_not_stored() {
        let store = ZoneStore::new(
            DnsConfig::new("cluster.local", 30, PodMode::Insecure)
                .unwrap()
                .with_reverse_zones(&["244.10.in-addr.arpa".to_owned()])
                .unwrap(),
        );
        let mut zone = ZoneData::default();
        let target = name("x.svc.cluster.local");
        zone.add(name("1.1.244.10.in-addr.arpa"), RData::Ptr { target: target.clone() }, &name("in-addr.arpa"));
        zone.add(name("1.1.96.10.in-addr.arpa"), RData::Ptr { target }, &name("in-addr.arpa"));
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap();
        assert!(store.contains(&lower("1.1.244.10.in-addr.arpa")));
        assert!(!store.contains(&lower("1.1.96.10.in-addr.arpa")), "outside the configured reverse zone");
        assert!(!store.contains(&lower("10.in-addr.arpa")), "above the configured reverse zone");
        assert_eq!(store.zone_of(&lower("1.1.96.10.in-addr.arpa")), None);
        assert_eq!(store.zone_of(&lower("9.9.244.10.in-addr.arpa")), Some(1));
    }

    /// Readers racing a writer see either the old or the new record set, never a mix.
    #[test]
    fn readers_never_see_half_a_delta() {
        let store = std::sync::Arc::new(store());
        store
            .apply(&Frame::Snapshot {
                epoch: 1,
                generation: 1,
                zone: Arc::new(zone_with(&[("a.svc.cluster.local", "10.0.0.1"), ("b.svc.cluster.local", "10.0.0.1")])),
            })
            .unwrap();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
                let mut checks = 0u32;
                while std::time::Instant::now() < deadline {
                    let table = store.table.read();
                    let a = table
                        .names
                        .get(&lower("a.svc.cluster.local"))
                        .and_then(|n| n.get(RecordType::A).map(|s| s.records.clone()));
                    let b = table
                        .names
                        .get(&lower("b.svc.cluster.local"))
                        .and_then(|n| n.get(RecordType::A).map(|s| s.records.clone()));
                    drop(table);
                    let (a, b) = (a.unwrap(), b.unwrap());
                    assert_eq!(a[0].data, b[0].data, "a and b always change together");
                    checks += 1;
                }
                checks
            })
        };
        for generation in 2..2000u64 {
            let ip = std::net::Ipv4Addr::from(u32::try_from(generation).unwrap());
            let records = vec![RData::A { ip }];
            let changes = vec![
                Change::Set { name: name("a.svc.cluster.local"), records: records.clone() },
                Change::Set { name: name("b.svc.cluster.local"), records },
            ];
            store.apply(&Frame::Delta { generation, changes, trigger: None }).unwrap();
        }
        assert!(reader.join().unwrap() > 0);
    }
}
