//! The zone store: precompiled wire record sets per name, swapped and patched atomically.
//!
//! One `RwLock` guards the whole table so that a delta touching many names is applied as one step: a
//! query sees the table before or after a frame, never half of it. Readers hold the lock only for a
//! hash lookup and an `Arc` clone.
//!
//! Memory is a design constraint (CoreDNS and Knot hold ~250 B per record): each name is one
//! allocation, a [`Node`] holding its lowercase wire name and its records' wire rdata, and the table
//! is a hash set of those nodes keyed by their own name, so no name is stored twice.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use rustc_hash::FxHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::{LowerName, Name, RecordType};
use parking_lot::RwLock;
use roster_shared::{Change, DomainName, Frame, RData, ZoneData};

use std::net::IpAddr;

use crate::clients::Clients;
use crate::config::DnsConfig;
use crate::convert::{ns_rdata, soa_rdata, to_lower, to_node, to_wire};
use crate::wire::{Node, NodeWriter, Set, WireName, is_within};

/// An authoritative zone: its apex and the SOA that goes with its negative answers.
#[derive(Debug, Clone)]
pub struct Zone {
    pub apex: LowerName,
    /// The apex in lowercase wire form.
    pub apex_wire: Vec<u8>,
    pub name: DomainName,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("delta for generation {got} does not follow the store's generation {have:?}")]
    OutOfOrder { have: Option<u64>, got: u64 },
}

/// A node in the name table, hashed and compared by its name only, so that the table can be searched
/// with a borrowed wire name.
#[derive(Debug, Clone)]
struct Entry(Node);

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.0.name()
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for Entry {}

/// Nodes by name; FxHash because names are short and hashing them is on every query's path.
type NameMap = HashSet<Entry, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Default)]
struct Table {
    names: NameMap,
    /// The SOA of each zone (a node of the apex holding only its SOA), index-aligned with `zones`.
    soas: Vec<Node>,
    /// The stream position of the last applied frame: (epoch, generation).
    position: Option<(u64, u64)>,
    /// Autopath clients (kept only when autopath is on), swapped with the names they came with.
    clients: Clients,
}

#[derive(Debug)]
pub struct ZoneStore {
    config: DnsConfig,
    zones: Vec<Zone>,
    /// `pod.<cluster zone>`, for answering insecure pod records without storing them.
    pod_apex: Vec<u8>,
    /// `ns.dns.<cluster zone>`, the name server every NS and SOA record names.
    name_server: Vec<u8>,
    serial_base: u32,
    table: RwLock<Table>,
}

/// A consistent read view of the table: every lookup of one query goes through one view, so a CNAME
/// chain cannot straddle two generations.
pub struct View<'a> {
    table: parking_lot::RwLockReadGuard<'a, Table>,
}

impl View<'_> {
    /// The node of a lowercase wire name.
    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.table.names.get(name).map(|entry| &entry.0)
    }

    pub fn soa(&self, zone: usize) -> Option<Set> {
        self.table.soas.get(zone).and_then(|node| node.set(RecordType::SOA))
    }

    /// The namespace of the autopath client at `ip` (always `None` with autopath off).
    pub fn client_namespace(&self, ip: IpAddr) -> Option<&str> {
        self.table.clients.namespace(ip)
    }
}

impl ZoneStore {
    pub fn new(config: DnsConfig) -> Self {
        let zones: Vec<Zone> = config
            .zones()
            .map(|name| Zone { apex: to_lower(name), apex_wire: to_wire(name), name: name.clone() })
            .collect();
        let pod_apex = to_wire(&config.cluster_zone.child("pod").unwrap_or_else(|_| config.cluster_zone.clone()));
        // Serials start from the wall clock so that they keep increasing across restarts.
        let serial_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs() % u64::from(u32::MAX / 2)).unwrap_or(0))
            .unwrap_or(0);
        let name_server = crate::convert::ns_rdata(&config.cluster_zone);
        Self { config, zones, pod_apex, name_server, serial_base, table: RwLock::new(Table::default()) }
    }

    /// The same store with serials counted from `base`: two stores built a second apart would otherwise
    /// hold different SOA serials, and tests that compare their apexes would fail on the clock.
    #[cfg(test)]
    pub(crate) fn with_serial_base(mut self, base: u32) -> Self {
        self.serial_base = base;
        self
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// `pod.<cluster zone>` in lowercase wire form.
    pub fn pod_apex(&self) -> &[u8] {
        &self.pod_apex
    }

    /// `ns.dns.<cluster zone>` in wire form.
    pub fn name_server(&self) -> &[u8] {
        &self.name_server
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

    /// [`Self::zone_of`] for a lowercase wire name.
    pub fn zone_of_wire(&self, name: &[u8]) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, zone)| is_within(name, &zone.apex_wire))
            .max_by_key(|(_, zone)| zone.apex_wire.len())
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
        WireName::from_name(&Name::from(name.clone()))
            .is_some_and(|wire| self.table.read().names.contains(wire.as_bytes()))
    }

    /// Applies one frame of the record stream.
    pub fn apply(&self, frame: &Frame) -> Result<(), ApplyError> {
        match frame {
            Frame::Snapshot { epoch, generation, zone } => {
                self.swap_in(self.build_snapshot(zone, *epoch, *generation));
                Ok(())
            }
            Frame::Delta { generation, changes, .. } => {
                // Checked: a snapshot at u64::MAX (the stream is input) has no next generation.
                let follows = |(_, have): &(u64, u64)| have.checked_add(1) == Some(*generation);
                let Some((epoch, have)) = self.position().filter(follows) else {
                    return Err(ApplyError::OutOfOrder { have: self.generation(), got: *generation });
                };
                debug_assert!(have < *generation);
                let prepared = self.prepare_changes(changes);
                let soas = self.build_soas(*generation);
                let mut table = self.table.write();
                for (name, node) in prepared {
                    match node {
                        Some(node) => {
                            table.names.replace(Entry(node));
                        }
                        None => {
                            table.names.remove(name.as_slice());
                        }
                    }
                }
                self.restore_apexes(&mut table.names, &soas);
                if self.config.autopath.is_some() {
                    for change in changes {
                        if let Change::Client { ip, namespace } = change {
                            table.clients.set(*ip, namespace.as_deref());
                        }
                    }
                }
                table.soas = soas;
                table.position = Some((epoch, *generation));
                Ok(())
            }
            Frame::Bookmark { .. } => Ok(()),
        }
    }

    /// Replaces every record with `zone`, a whole record set from a source in this process (`roster dns
    /// --objects`), at the next generation; returns that generation. Nothing else keeps the records
    /// (no hub, no publisher's copy): names whose node did not change share the node held, and
    /// `zone` is freed (after the swap, so the new records answer first) before the heap is trimmed,
    /// so a reload costs the new table while it is built and the records once afterwards.
    pub fn load(&self, zone: ZoneData) -> u64 {
        let (epoch, generation) = self.position().map_or((1, 1), |(epoch, generation)| (epoch, generation + 1));
        let snapshot = self.build_snapshot(&zone, epoch, generation);
        self.swap(snapshot);
        // Freed once the new records answer: freeing a large set takes a noticeable part of start-up.
        drop(zone);
        crate::memory::release_free_pages();
        generation
    }

    /// The table of a whole record set, ready to swap in.
    fn build_snapshot(&self, zone: &ZoneData, epoch: u64, generation: u64) -> PreparedSnapshot {
        let mut builder = self.snapshot_builder();
        builder.reserve_names(zone.names.len());
        let v4 = zone.clients.keys().filter(|ip| ip.to_canonical().is_ipv4()).count();
        builder.reserve_clients(v4, zone.clients.len() - v4);
        for (name, records) in &zone.names {
            builder.add_name(name, records);
        }
        for (ip, namespace) in &zone.clients {
            builder.add_client(*ip, namespace);
        }
        builder.finish(epoch, generation)
    }

    fn in_zones(&self, name: &DomainName) -> bool {
        self.zones.iter().any(|zone| name.is_within(&zone.name))
    }

    /// A builder for a snapshot's table, to be swapped in with [`Self::swap_in`]: the whole-line path
    /// feeds it from a decoded [`roster_shared::ZoneData`], the streaming decoder (`snapshot_decode`) name by name.
    pub fn snapshot_builder(&self) -> SnapshotBuilder<'_> {
        let capacity = self.name_count() + self.zones.len();
        let mut builder = SnapshotBuilder {
            store: self,
            names: NameMap::with_capacity_and_hasher(capacity, Default::default()),
            clients: Clients::default(),
            reused: 0,
            writer: NodeWriter::default(),
            nothing_held: self.name_count() == 0,
        };
        // A streamed snapshot's client count is not known ahead: room for as many as are held now.
        let (v4, v6) = self.table.read().clients.len_by_family();
        builder.reserve_clients(v4, v6);
        builder
    }

    /// Replaces the whole table with a built snapshot (the caller checked it is not older), then trims
    /// the heap of what building it freed and of the old table (`memory`).
    pub fn swap_in(&self, snapshot: PreparedSnapshot) {
        self.swap(snapshot);
        crate::memory::release_free_pages();
    }

    fn swap(&self, snapshot: PreparedSnapshot) {
        let PreparedSnapshot { mut names, clients, position, .. } = snapshot;
        let soas = self.build_soas(position.1);
        self.restore_apexes(&mut names, &soas);
        let mut table = self.table.write();
        let old = std::mem::replace(&mut *table, Table { names, soas, position: Some(position), clients });
        drop(table);
        // Freed outside the lock: dropping a large table takes long enough to stall readers.
        drop(old);
    }

    /// How many autopath clients are held.
    pub fn client_count(&self) -> usize {
        self.table.read().clients.len()
    }

    fn prepare_changes(&self, changes: &[Change]) -> Vec<(Vec<u8>, Option<Node>)> {
        let mut writer = NodeWriter::default();
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Set { name, records } => self.in_zones(name).then(|| {
                    let node = to_node(&mut writer, name, records);
                    (node.name().to_vec(), Some(node))
                }),
                Change::Remove { name } => self.in_zones(name).then(|| (to_wire(name), None)),
                // Applied under the write lock, with the names (`apply`).
                Change::Client { .. } => None,
            })
            .collect()
    }

    fn build_soas(&self, generation: u64) -> Vec<Node> {
        let serial = self.serial_base.wrapping_add(u32::try_from(generation % u64::from(u32::MAX)).unwrap_or(0));
        let soa = soa_rdata(&self.config.cluster_zone, serial, self.config.ttl);
        self.zones.iter().map(|zone| Node::build(&zone.apex_wire, &[(RecordType::SOA, vec![soa.clone()])])).collect()
    }

    /// Puts SOA and NS at every apex (the stream carries neither: both depend on this replica's config).
    fn restore_apexes(&self, names: &mut NameMap, soas: &[Node]) {
        for (zone, soa) in self.zones.iter().zip(soas) {
            let existing = names.get(zone.apex_wire.as_slice()).map(|entry| entry.0.clone());
            let mut sets: Vec<(RecordType, Vec<Vec<u8>>)> = Vec::new();
            if let Some(node) = &existing {
                for rtype in node.types() {
                    if rtype != RecordType::SOA
                        && let Some(set) = node.set(rtype)
                    {
                        sets.push((rtype, set.rdatas().map(<[u8]>::to_vec).collect()));
                    }
                }
            }
            if let Some(set) = soa.set(RecordType::SOA) {
                sets.push((RecordType::SOA, set.rdatas().map(<[u8]>::to_vec).collect()));
            }
            if !sets.iter().any(|(t, _)| *t == RecordType::NS) {
                sets.push((RecordType::NS, vec![ns_rdata(&self.config.cluster_zone)]));
            }
            sets.sort_by_key(|(t, _)| u16::from(*t));
            names.replace(Entry(Node::build(&zone.apex_wire, &sets)));
        }
    }
}

/// A snapshot's table being built beside the one in service. A name whose node comes out byte-identical
/// to the one held shares the held node, so a snapshot that changes little (a reconnection to a new
/// controller) costs the new table's slots, not a second copy of every record.
pub struct SnapshotBuilder<'a> {
    store: &'a ZoneStore,
    names: NameMap,
    clients: Clients,
    reused: usize,
    /// The buffer each node is written in before it is copied into its own allocation.
    writer: NodeWriter,
    /// The store held no name when the build began (the first load): no node to share, so no lookup.
    nothing_held: bool,
}

impl SnapshotBuilder<'_> {
    /// Makes room for this many more names, when the caller knows the count (a decoded snapshot): the
    /// table is not grown and rehashed step by step.
    pub fn reserve_names(&mut self, additional: usize) {
        self.names.reserve(additional);
    }

    /// Adds one name of the snapshot (the last one wins if a name comes twice, as in a decoded map);
    /// false when the name was already there.
    pub fn add_name(&mut self, name: &DomainName, records: &[RData]) -> bool {
        if !self.store.in_zones(name) {
            return true;
        }
        let node = to_node(&mut self.writer, name, records);
        let held = if self.nothing_held {
            None
        } else {
            self.store.table.read().names.get(node.name()).filter(|held| held.0 == node).cloned()
        };
        let replaced = match held {
            Some(held) => {
                self.reused += 1;
                self.names.replace(held)
            }
            None => self.names.replace(Entry(node)),
        };
        replaced.is_none()
    }

    /// Makes room for this many autopath clients of each family (nothing with autopath off).
    pub fn reserve_clients(&mut self, v4: usize, v6: usize) {
        if self.store.config.autopath.is_some() {
            self.clients.reserve(v4, v6);
        }
    }

    /// Adds one autopath client (ignored with autopath off).
    pub fn add_client(&mut self, ip: IpAddr, namespace: &str) {
        if self.store.config.autopath.is_some() {
            self.clients.set(ip, Some(namespace));
        }
    }

    /// The built table, at stream position (`epoch`, `generation`).
    pub fn finish(self, epoch: u64, generation: u64) -> PreparedSnapshot {
        PreparedSnapshot {
            names: self.names,
            clients: self.clients,
            position: (epoch, generation),
            reused: self.reused,
        }
    }
}

/// A snapshot's table, built and ready to swap in ([`ZoneStore::swap_in`]).
#[derive(Debug)]
pub struct PreparedSnapshot {
    names: NameMap,
    clients: Clients,
    position: (u64, u64),
    /// How many names share the node held before (unchanged since the last snapshot or delta).
    reused: usize,
}

impl PreparedSnapshot {
    /// (epoch, generation) of the snapshot.
    pub fn position(&self) -> (u64, u64) {
        self.position
    }

    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Names that share the node the store held (not stored twice during the swap).
    pub fn reused(&self) -> usize {
        self.reused
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use roster_shared::{PodMode, ZoneData};
    use std::sync::Arc;

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
        let soa = view.soa(0).unwrap();
        let rdata = soa.rdatas().next().unwrap();
        // mname and rname, then the serial.
        let names_len = rdata.len() - 20;
        u32::from_be_bytes(rdata[names_len..names_len + 4].try_into().unwrap())
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

    /// `load` (`roster dns --objects`) replaces the whole record set at the next generation: a name
    /// gone from the set is gone, a new one answers, and an unchanged name keeps the node held.
    #[test]
    fn load_replaces_the_record_set_and_shares_unchanged_nodes() {
        let store = store();
        let first = zone_with(&[("a.svc.cluster.local", "10.0.0.1"), ("b.svc.cluster.local", "10.0.0.2")]);
        assert_eq!(store.load(first), 1);
        let a = to_wire(&name("a.svc.cluster.local"));
        let held = store.view().node(&a).unwrap().clone();
        let second = zone_with(&[("a.svc.cluster.local", "10.0.0.1"), ("c.svc.cluster.local", "10.0.0.3")]);
        assert_eq!(store.load(second), 2);
        assert_eq!(store.generation(), Some(2));
        assert!(!store.contains(&lower("b.svc.cluster.local")));
        assert!(store.contains(&lower("c.svc.cluster.local")));
        let view = store.view();
        // `held` keeps the old node alive, so an equal address can only mean the same node.
        assert!(std::ptr::eq(view.node(&a).unwrap().name().as_ptr(), held.name().as_ptr()), "a's node is shared");
        assert!(view.soa(0).is_some(), "the apex is restored after a load");
    }

    /// How nodes were built before `to_node`: a `Vec` per rdata, grouped per type in type order.
    fn grouped(records: &[RData]) -> Vec<(RecordType, Vec<Vec<u8>>)> {
        let mut by_type: Vec<(RecordType, Vec<Vec<u8>>)> = Vec::new();
        for rdata in records {
            let rtype = crate::convert::record_type(rdata);
            let wire = crate::convert::to_rdata(rdata);
            match by_type.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, list)) => list.push(wire),
                None => by_type.push((rtype, vec![wire])),
            }
        }
        by_type.sort_by_key(|(t, _)| u16::from(*t));
        by_type
    }

    /// Every kind of record, in an order that differs per name (records from the stream need not be
    /// sorted), several of a type at one name, TXT of 0, 255 and 300 bytes.
    fn mixed_records(seed: usize) -> Vec<RData> {
        let target = |i: usize| name(&format!("t-{i}.x.svc.cluster.local"));
        let mut records = vec![
            RData::A { ip: std::net::Ipv4Addr::from(u32::try_from(seed).unwrap()) },
            RData::Aaaa { ip: std::net::Ipv6Addr::from(u128::try_from(seed).unwrap()) },
            RData::Srv { priority: 0, weight: 50, port: 80, target: target(seed) },
            RData::Ptr { target: target(seed + 1) },
            RData::Cname { target: target(seed + 2) },
            RData::Txt { text: "t".repeat([0, 255, 300][seed % 3]) },
            RData::Ns { target: target(seed + 3) },
            RData::A { ip: std::net::Ipv4Addr::from(u32::try_from(seed).unwrap() + 1) },
            RData::Srv { priority: 0, weight: 50, port: 443, target: target(seed + 4) },
        ];
        let kinds = records.len();
        records.truncate(1 + seed % kinds);
        let len = records.len();
        records.rotate_left(seed % len);
        records
    }

    /// The nodes written in place (`to_node`) are byte for byte those built from grouped rdata, for
    /// every kind and order of records; and a loaded store holds exactly those nodes.
    #[test]
    fn nodes_written_in_place_equal_nodes_built_from_grouped_rdata() {
        let mut writer = NodeWriter::default();
        let mut zone = ZoneData::default();
        for seed in 0..200 {
            let owner = name(&format!("n-{seed}.svc.cluster.local"));
            let records = mixed_records(seed);
            let expected = Node::build(&to_wire(&owner), &grouped(&records));
            assert_eq!(to_node(&mut writer, &owner, &records), expected, "{owner}: {records:?}");
            zone.names.insert(owner, records);
        }
        let store = store();
        store.load(zone.clone());
        let view = store.view();
        for (owner, records) in &zone.names {
            let wire = to_wire(owner);
            assert_eq!(view.node(&wire), Some(&Node::build(&wire, &grouped(records))), "{owner}");
        }
    }

    /// A pod's A record is one allocation of its wire name, a set header and the address.
    #[test]
    fn a_record_costs_one_small_allocation() {
        let store = store();
        let zone = zone_with(&[("web-0.nginx.default.svc.cluster.local", "10.244.0.2")]);
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap();
        let view = store.view();
        let node = view.node(&to_wire(&name("web-0.nginx.default.svc.cluster.local"))).unwrap();
        // 1 (name length) + 39 (name) + 10 (set header) + 2 (rdlength) + 4 (address).
        assert_eq!(node.heap_len(), 56);
        assert_eq!(node.set(RecordType::A).unwrap().rdatas().next().unwrap(), &[10, 244, 0, 2]);
    }

    /// Resident memory of the process, from /proc (Linux).
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<usize>().ok()).unwrap_or(0) * 4096
    }

    /// What the store costs per record at the benchmark's shape: 10,000 pods behind 1,000 headless
    /// services (A per pod and per service, SRV per pod, PTR per pod).
    /// `cargo test --release -p roster-dns store_memory -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn store_memory_per_record() {
        let cluster = name("cluster.local");
        let reverse = name("in-addr.arpa");
        let mut zone = ZoneData::default();
        let mut records = 0usize;
        for service in 0..1000u32 {
            let svc = name(&format!("hsvc-{service}.ns-{}.svc.cluster.local", service % 10));
            let srv = svc.prefixed(&["_http", "_tcp"]).unwrap();
            for pod in 0..10u32 {
                let ip = std::net::Ipv4Addr::from(0x0a80_0000 + service * 10 + pod);
                let owner = svc.child(&format!("web-{pod}")).unwrap();
                zone.add(owner.clone(), RData::A { ip }, &cluster);
                zone.add(svc.clone(), RData::A { ip }, &cluster);
                zone.add(
                    srv.clone(),
                    RData::Srv { priority: 0, weight: 10, port: 80, target: owner.clone() },
                    &cluster,
                );
                let [a, b, c, d] = ip.octets();
                zone.add(name(&format!("{d}.{c}.{b}.{a}.in-addr.arpa")), RData::Ptr { target: owner }, &reverse);
                records += 4;
            }
        }
        let zone = Arc::new(zone);
        let store = store();
        let before = rss_bytes();
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone }).unwrap();
        let after = rss_bytes();
        println!(
            "store: {} names, {records} records, RSS +{:.1} MiB, {} B/record",
            store.name_count(),
            (after - before) as f64 / 1048576.0,
            (after - before) / records
        );
    }

    /// Found by fuzzing (fuzz target `frames`): a snapshot at the last generation, then a delta,
    /// overflowed `generation + 1` (a panic in debug builds, a wrapped delta applied in release).
    #[test]
    fn nothing_follows_the_last_generation() {
        let store = store();
        store.apply(&Frame::Snapshot { epoch: 1, generation: u64::MAX, zone: Arc::default() }).unwrap();
        let delta = Frame::Delta { generation: 0, changes: vec![], trigger: None };
        assert_eq!(store.apply(&delta), Err(ApplyError::OutOfOrder { have: Some(u64::MAX), got: 0 }));
        assert_eq!(store.generation(), Some(u64::MAX));
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
            let node = view.node(&to_wire(&name(apex))).unwrap_or_else(|| panic!("{apex} missing"));
            assert!(node.has(RecordType::SOA) && node.has(RecordType::NS), "{apex}");
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
                    let rdata = |owner: &str| {
                        let set = table.names.get(to_wire(&name(owner)).as_slice())?.0.set(RecordType::A)?;
                        set.rdatas().next().map(<[u8]>::to_vec)
                    };
                    let (a, b) = (rdata("a.svc.cluster.local"), rdata("b.svc.cluster.local"));
                    drop(table);
                    assert_eq!(a.unwrap(), b.unwrap(), "a and b always change together");
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
