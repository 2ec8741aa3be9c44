//! The zone store: precompiled hickory record sets per name, swapped and patched atomically.
//!
//! One `RwLock` guards the whole table so that a delta touching many names is applied as one step: a
//! query sees the table before or after a frame, never half of it. Readers hold the lock only for a
//! hash lookup and an `Arc` clone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use parking_lot::RwLock;
use roster_shared::{Change, DomainName, Frame, RData, ZoneData};

use crate::config::DnsConfig;
use crate::convert::{ns_record, record_type, soa_record, to_lower, to_name, to_record};

/// The record sets of one name, in a fixed type order. Empty for an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    rrsets: Vec<(RecordType, Arc<[Record]>)>,
}

impl Node {
    pub fn get(&self, rtype: RecordType) -> Option<&Arc<[Record]>> {
        self.rrsets.iter().find(|(t, _)| *t == rtype).map(|(_, set)| set)
    }

    pub fn first(&self) -> Option<&Arc<[Record]>> {
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
        Self { rrsets: by_type.into_iter().map(|(t, list)| (t, Arc::from(list))).collect() }
    }

    fn insert(&mut self, rtype: RecordType, records: Vec<Record>) {
        self.rrsets.retain(|(t, _)| *t != rtype);
        self.rrsets.push((rtype, Arc::from(records)));
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
    names: HashMap<LowerName, Node>,
    /// The SOA of each zone, index-aligned with `ZoneStore::zones`.
    soas: Vec<Arc<[Record]>>,
    generation: Option<u64>,
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

/// What a lookup of one name found, cloned out of the table so the lock is not held while answering.
#[derive(Debug, Clone)]
pub enum Found {
    Node(Node),
    Missing,
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
        self.table.read().generation
    }

    pub fn is_synced(&self) -> bool {
        self.generation().is_some()
    }

    pub fn name_count(&self) -> usize {
        self.table.read().names.len()
    }

    /// Looks `name` up; also returns the SOA of zone `zone`.
    pub fn find(&self, zone: usize, name: &LowerName) -> (Found, Option<Arc<[Record]>>) {
        let table = self.table.read();
        let found = match table.names.get(name) {
            Some(node) => Found::Node(node.clone()),
            None => Found::Missing,
        };
        (found, table.soas.get(zone).cloned())
    }

    /// True when `name` exists (possibly as an empty non-terminal).
    pub fn contains(&self, name: &LowerName) -> bool {
        self.table.read().names.contains_key(name)
    }

    /// Applies one frame of the record stream.
    pub fn apply(&self, frame: &Frame) -> Result<(), ApplyError> {
        match frame {
            Frame::Snapshot { generation, zone } => {
                let mut names = self.build_names(zone);
                let soas = self.build_soas(*generation);
                self.restore_apexes(&mut names, &soas);
                let mut table = self.table.write();
                *table = Table { names, soas, generation: Some(*generation) };
                Ok(())
            }
            Frame::Delta { generation, changes } => {
                let have = self.generation();
                if have.map(|g| g + 1) != Some(*generation) {
                    return Err(ApplyError::OutOfOrder { have, got: *generation });
                }
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
                table.generation = Some(*generation);
                Ok(())
            }
            Frame::Bookmark { .. } => Ok(()),
        }
    }

    fn in_zones(&self, name: &DomainName) -> bool {
        self.zones.iter().any(|zone| name.is_within(&zone.name))
    }

    fn build_names(&self, zone: &ZoneData) -> HashMap<LowerName, Node> {
        let ttl = self.config.ttl;
        let mut names = HashMap::with_capacity(zone.names.len() + self.zones.len());
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

    fn build_soas(&self, generation: u64) -> Vec<Arc<[Record]>> {
        let serial = self.serial_base.wrapping_add(u32::try_from(generation % u64::from(u32::MAX)).unwrap_or(0));
        self.zones
            .iter()
            .map(|zone| Arc::from(vec![soa_record(&zone.name, &self.config.cluster_zone, serial, self.config.ttl)]))
            .collect()
    }

    /// Puts SOA and NS at every apex (the stream carries neither: both depend on this replica's config).
    fn restore_apexes(&self, names: &mut HashMap<LowerName, Node>, soas: &[Arc<[Record]>]) {
        for (zone, soa) in self.zones.iter().zip(soas) {
            let node = names.entry(zone.apex.clone()).or_default();
            node.insert(RecordType::SOA, soa.to_vec());
            if node.get(RecordType::NS).is_none() {
                node.insert(RecordType::NS, vec![ns_record(&zone.name, &self.config.cluster_zone, self.config.ttl)]);
            }
        }
    }
}
