//! The record model: what the cluster zone holds, independent of any DNS library.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};

use crate::frame::Change;
use crate::name::DomainName;

/// One record's data. TTL and class are the DNS server's configuration, the same for every record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RData {
    A { ip: Ipv4Addr },
    Aaaa { ip: Ipv6Addr },
    Srv { priority: u16, weight: u16, port: u16, target: DomainName },
    Ptr { target: DomainName },
    Cname { target: DomainName },
    Txt { text: String },
    Ns { target: DomainName },
}

impl RData {
    /// The record type's mnemonic, as in zone files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::A { .. } => "A",
            Self::Aaaa { .. } => "AAAA",
            Self::Srv { .. } => "SRV",
            Self::Ptr { .. } => "PTR",
            Self::Cname { .. } => "CNAME",
            Self::Txt { .. } => "TXT",
            Self::Ns { .. } => "NS",
        }
    }
}

/// Every name of the zones with its records, in canonical order. A name with no records is an empty
/// non-terminal: it exists (NODATA) but holds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneData {
    pub names: BTreeMap<DomainName, Vec<RData>>,
    /// Autopath: pod address → the namespace of the pod there whose search list the DNS server may
    /// complete (see `PodView::autopath`). Only addresses with exactly one such namespace are here,
    /// so a reused address never maps to an old pod. Carried in the same generation as the records.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<IpAddr, String>,
}

impl ZoneData {
    /// Adds `rdata` at `name` (ignoring an exact duplicate) and makes every ancestor down to `apex`
    /// exist, so that empty non-terminals answer NODATA. (Synthesis uses [`ZoneBuilder`].)
    pub fn add(&mut self, name: DomainName, rdata: RData, apex: &DomainName) {
        self.ensure_name(&name, apex);
        if let Some(records) = self.names.get_mut(&name)
            && !records.contains(&rdata)
        {
            records.push(rdata);
        }
    }

    /// Makes `name` and its ancestors down to `apex` exist without adding records.
    pub fn ensure_name(&mut self, name: &DomainName, apex: &DomainName) {
        let mut current = Some(name.clone());
        while let Some(node) = current.filter(|node| !self.names.contains_key(node)) {
            current = parent_below(&node, apex);
            self.names.insert(node, Vec::new());
        }
    }

    /// Sorts each name's records so that equal record sets compare equal.
    pub fn normalise(&mut self) {
        for records in self.names.values_mut() {
            records.sort();
        }
    }

    /// True when the zone holds no name and no client.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.clients.is_empty()
    }

    pub fn record_count(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    /// The changes that turn `self` into `next`: one `Set` per new or changed name, one `Remove` per
    /// vanished name. Both must be normalised.
    pub fn diff(&self, next: &ZoneData) -> Vec<Change> {
        let mut changes = Vec::new();
        for (name, records) in &next.names {
            if self.names.get(name) != Some(records) {
                changes.push(Change::Set { name: name.clone(), records: records.clone() });
            }
        }
        for name in self.names.keys() {
            if !next.names.contains_key(name) {
                changes.push(Change::Remove { name: name.clone() });
            }
        }
        for (ip, namespace) in &next.clients {
            if self.clients.get(ip) != Some(namespace) {
                changes.push(Change::Client { ip: *ip, namespace: Some(namespace.clone()) });
            }
        }
        for ip in self.clients.keys() {
            if !next.clients.contains_key(ip) {
                changes.push(Change::Client { ip: *ip, namespace: None });
            }
        }
        changes
    }

    /// True when `change` would change nothing here.
    pub fn already_has(&self, change: &Change) -> bool {
        match change {
            Change::Set { name, records } => self.names.get(name) == Some(records),
            Change::Remove { name } => !self.names.contains_key(name),
            Change::Client { ip, namespace } => self.clients.get(ip) == namespace.as_ref(),
        }
    }

    /// Applies changes produced by [`ZoneData::diff`].
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Set { name, records } => {
                    self.names.insert(name.clone(), records.clone());
                }
                Change::Remove { name } => {
                    self.names.remove(name);
                }
                Change::Client { ip, namespace: Some(namespace) } => {
                    self.clients.insert(*ip, namespace.clone());
                }
                Change::Client { ip, namespace: None } => {
                    self.clients.remove(ip);
                }
            }
        }
    }
}

/// The parent of `name` when `name` lies strictly below `apex` (the ancestors an added name needs).
fn parent_below(name: &DomainName, apex: &DomainName) -> Option<DomainName> {
    let below = name != apex && name.is_within(apex);
    if below { name.parent() } else { None }
}

/// Collects a zone's records by name in a hash map, then sorts them once into a [`ZoneData`]: one hash
/// per added record instead of a search of the ordered map, which was a fifth of start-up at 100k pod
/// records (bench/README.md, "Start-up").
#[derive(Debug, Default)]
pub struct ZoneBuilder {
    names: HashMap<DomainName, Vec<RData>, BuildHasherDefault<FxHasher>>,
}

impl ZoneBuilder {
    /// As [`ZoneData::add`].
    pub fn add(&mut self, name: DomainName, rdata: RData, apex: &DomainName) {
        match self.names.entry(name) {
            Entry::Occupied(mut held) => {
                if !held.get().contains(&rdata) {
                    held.get_mut().push(rdata);
                }
            }
            Entry::Vacant(vacant) => {
                let parent = parent_below(vacant.key(), apex);
                vacant.insert(vec![rdata]);
                if let Some(parent) = parent {
                    self.ensure_name(&parent, apex);
                }
            }
        }
    }

    /// As [`ZoneData::ensure_name`].
    pub fn ensure_name(&mut self, name: &DomainName, apex: &DomainName) {
        let mut current = Some(name.clone());
        while let Some(node) = current.filter(|node| !self.names.contains_key(node)) {
            current = parent_below(&node, apex);
            self.names.insert(node, Vec::new());
        }
    }

    /// The zone, normalised (each name's records sorted), without clients.
    pub fn finish(self) -> ZoneData {
        let mut names: Vec<(DomainName, Vec<RData>)> = self.names.into_iter().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, records) in &mut names {
            records.sort();
        }
        // Built from sorted pairs, the ordered map is filled in one pass.
        ZoneData { names: names.into_iter().collect(), clients: BTreeMap::new() }
    }
}
