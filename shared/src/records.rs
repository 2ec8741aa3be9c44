//! The record model: what the cluster zone holds, independent of any DNS library.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};

use crate::frame::Change;
use crate::name::{DomainName, is_within_str};

/// One record's data. TTL and class are the DNS server's configuration, the same for every record.
/// Read by a hand-written reader (`tagged.rs`): the derived one parsed each record twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
/// records (bench/README.md, "Start-up"). Names are looked up by their text, so a record added at a
/// name already held, or an ancestor that exists, makes no name.
#[derive(Debug, Default)]
pub struct ZoneBuilder {
    names: HashMap<DomainName, Vec<RData>, BuildHasherDefault<FxHasher>>,
}

impl ZoneBuilder {
    /// A builder with room for about `names` names, so that the map is not grown step by step.
    pub fn with_capacity(names: usize) -> Self {
        Self { names: HashMap::with_capacity_and_hasher(names, Default::default()) }
    }

    /// As [`ZoneData::add`]. Exact duplicates are dropped by [`Self::finish`], which sorts each name's
    /// records anyway: a search per added record is quadratic in a large service's endpoints.
    pub fn add(&mut self, name: DomainName, rdata: RData, apex: &DomainName) {
        if let Some(records) = self.names.get_mut(name.as_str()) {
            records.push(rdata);
            return;
        }
        self.ensure_ancestors(&name, apex);
        self.names.insert(name, vec![rdata]);
    }

    /// [`Self::add`] of every record of `rdatas` at `name`, with one lookup of the name.
    pub fn add_all(&mut self, name: &DomainName, rdatas: impl IntoIterator<Item = RData>, apex: &DomainName) {
        let mut rdatas = rdatas.into_iter().peekable();
        if rdatas.peek().is_none() {
            return;
        }
        if let Some(records) = self.names.get_mut(name.as_str()) {
            records.extend(rdatas);
            return;
        }
        self.ensure_ancestors(name, apex);
        self.names.insert(name.clone(), rdatas.collect());
    }

    /// As [`ZoneData::ensure_name`].
    pub fn ensure_name(&mut self, name: &DomainName, apex: &DomainName) {
        if !self.names.contains_key(name.as_str()) {
            self.ensure_ancestors(name, apex);
            self.names.insert(name.clone(), Vec::new());
        }
    }

    /// Makes the ancestors of `name` down to `apex` exist, walking up until one is held (they are
    /// all held above one that is).
    fn ensure_ancestors(&mut self, name: &DomainName, apex: &DomainName) {
        let mut current = name.as_str();
        while current != apex.as_str() && is_within_str(current, apex.as_str()) {
            let Some((_, parent)) = current.split_once('.') else { break };
            if self.names.contains_key(parent) {
                break;
            }
            self.names.insert(DomainName::from_checked(parent), Vec::new());
            current = parent;
        }
    }

    /// The zone, normalised (each name's records sorted, exact duplicates dropped), without clients.
    pub fn finish(self) -> ZoneData {
        let mut names: Vec<(DomainName, Vec<RData>)> = self.names.into_iter().collect();
        sort_by_name(&mut names);
        for (_, records) in &mut names {
            records.sort_unstable();
            records.dedup();
        }
        // Built from sorted pairs, the ordered map is filled in one pass.
        ZoneData { names: names.into_iter().collect(), clients: BTreeMap::new() }
    }
}

/// Sorts `names` by their text, comparing the first 16 bytes as one integer and the whole texts only
/// where those are equal: at 100k pod records 0.17 G instructions instead of 0.26 G comparing the texts
/// throughout, most of that in `memcmp` calls (bench/README.md, "Start-up").
fn sort_by_name(names: &mut Vec<(DomainName, Vec<RData>)>) {
    // A text's first bytes, zero-padded, big-endian: ordered as the texts are, since names hold no zero
    // byte (a shorter text that is a prefix of another pads with zeros and so sorts first).
    let prefix = |name: &DomainName| {
        let mut bytes = [0u8; 16];
        let text = name.as_str().as_bytes();
        let len = text.len().min(16);
        bytes[..len].copy_from_slice(&text[..len]);
        u128::from_be_bytes(bytes)
    };
    let mut order: Vec<(u128, usize)> =
        names.iter().enumerate().map(|(index, (name, _))| (prefix(name), index)).collect();
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| names[a.1].0.cmp(&names[b.1].0)));
    let mut slots: Vec<Option<(DomainName, Vec<RData>)>> = std::mem::take(names).into_iter().map(Some).collect();
    names.extend(order.iter().filter_map(|(_, index)| slots[*index].take()));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    /// (owner, record) adds under a small set of names, so that names repeat, records repeat exactly
    /// and names are ancestors of each other; one owner lies outside the apex.
    fn adds() -> impl Strategy<Value = Vec<(String, RData)>> {
        let owner = prop::sample::select(vec![
            "a.svc.cluster.local",
            "b.a.svc.cluster.local",
            "c.b.a.svc.cluster.local",
            "_http._tcp.a.svc.cluster.local",
            "cluster.local",
            "svc.cluster.local",
            "elsewhere.example",
        ]);
        let rdata = prop_oneof![
            (0u8..4).prop_map(|last| RData::A { ip: Ipv4Addr::new(10, 0, 0, last) }),
            (0u16..3, prop::sample::select(vec!["b.a.svc.cluster.local", "a.svc.cluster.local"]))
                .prop_map(|(port, target)| RData::Srv { priority: 0, weight: 50, port, target: name(target) }),
            Just(RData::Txt { text: "1.1.0".to_owned() }),
        ];
        prop::collection::vec((owner.prop_map(str::to_owned), rdata), 0..40)
    }

    proptest! {
        /// The hash-map builder gives the zone the ordered map gives, add for add.
        #[test]
        fn builder_equals_ordered_adds(adds in adds(), ensured in prop::sample::select(vec!["x.y.cluster.local", "cluster.local"])) {
            let apex = name("cluster.local");
            let mut builder = ZoneBuilder::default();
            let mut ordered = ZoneData::default();
            for (index, (owner, rdata)) in adds.iter().enumerate() {
                if index % 2 == 0 {
                    builder.add(name(owner), rdata.clone(), &apex);
                } else {
                    builder.add_all(&name(owner), [rdata.clone(), rdata.clone()], &apex);
                }
                ordered.add(name(owner), rdata.clone(), &apex);
            }
            builder.add_all(&name("empty.cluster.local"), [], &apex);
            builder.ensure_name(&name(ensured), &apex);
            ordered.ensure_name(&name(ensured), &apex);
            ordered.normalise();
            prop_assert_eq!(builder.finish(), ordered);
        }

        /// The prefix-first sort orders names as their texts do, prefixes of 16 bytes shared or not.
        #[test]
        fn names_sort_as_their_texts(labels in prop::collection::vec("(web-[0-9]{1,2}\\.hsvc-[0-9]{1,4}|_http\\._tcp\\.s[0-9]{0,3}|[a-z]{1,3})", 0..60)) {
            let mut names: Vec<(DomainName, Vec<RData>)> =
                labels.iter().map(|label| (name(&format!("{label}.cluster.local")), Vec::new())).collect();
            let mut expected: Vec<String> = names.iter().map(|(name, _)| name.as_str().to_owned()).collect();
            expected.sort();
            sort_by_name(&mut names);
            let sorted: Vec<String> = names.iter().map(|(name, _)| name.as_str().to_owned()).collect();
            prop_assert_eq!(sorted, expected);
        }
    }
}
