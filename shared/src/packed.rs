//! The packed snapshot: a compact binary form of a [`ZoneData`] for the record stream, ~8× smaller than
//! its JSON before compression and decoded without a parser of text.
//!
//! Layout (varints are LEB128, at most 10 bytes, never past 64 bits):
//! - `RSPK`, version byte 4, then varints: name count, record count, client count (what a [`Visitor`] is
//!   handed: names given to [`Visitor::name`], records including implied ones, clients);
//! - each written name in canonical DNS order (labels compared from the root, byte by byte; a parent
//!   before its children): how many labels it keeps of the previous name (from the root), how many it
//!   adds, and each added label from the root outwards as a length byte (1-63) and its bytes; then a
//!   varint `records << 1 | group`: its record count and whether it holds a group; its group, if so; then
//!   its records: a type byte (1 A, 2 AAAA, 3 SRV, 4 PTR, 5 CNAME, 6 TXT, 7 NS) and the data — A 4 bytes,
//!   AAAA 16, SRV priority, weight and port as varints then its target, PTR/CNAME/NS the target, TXT a
//!   length and UTF-8 bytes. A target is written the same way against the previous target written (it
//!   may add no label: the same target again, or one of its ancestors). Type 8 + a type: "the records
//!   of that type of the last name that had records" (a repeat);
//! - a group (version 3): a name's children that hold only addresses and nothing below them — a headless
//!   service's endpoints — written inside it instead of as names: the member count, a flags byte (bit 0:
//!   every member address has a PTR record to its member, not written either), then each member as its
//!   label (version 4: a byte for how many bytes it shares with the previous member's label, a length
//!   byte and the rest; members in ascending label order), its address count (1-100) and each
//!   address as 4 or 6 and its bytes. While the names read are the group's name or below it, type 9 + 4
//!   or 6 stands for the members' addresses of that family, in member order (the service's own
//!   addresses), and type 10 + priority, weight and port for one SRV record to each member, in member
//!   order (its SRV sets). No written name below a group's name may be a member or below one, and groups
//!   do not nest;
//! - each client in address order: 4 or 6, then (version 4) a varint of up to 128 bits: how far past the
//!   previous client of that family it is, less one, or for the first of its family its address; then the
//!   index of its namespace among those already written, or the next index followed by the namespace's
//!   length and bytes.
//!
//! At 100k pod records a group removes 4 of a pod's 5 names and records as written (its name is a
//! label in its group, its service's address and SRV records are two bytes per service, its reverse
//! name is gone): version 3 is 2.7 MB where version 2 was 7.6; version 4's shared label starts and
//! client gaps make it 1.7 MB (0.28 MB under zstd, from 0.47; bench/README.md, "Record stream at node
//! scale").
//!
//! In canonical order a name is usually its parent, written just before it, plus one label, and
//! successive SRV targets differ in their first label: a name costs its new label, and checking it costs
//! checking that label. The decoder holds a name as a stack of labels whose text is right-aligned in a
//! fixed buffer, so adding a label writes only that label and the name is always one slice. Version 1
//! wrote names in text order as bytes shared with the previous name's start and end: every name was
//! assembled and its touched labels found and checked again, 4× the decoder's time (bench/README.md,
//! "Record stream at node scale").
//!
//! The decoder is pushed bytes as they arrive ([`Decoder::feed`]) and hands each name with its records,
//! each implied PTR and each client to a [`Visitor`] as soon as it is complete, borrowed, so nothing
//! holds the encoded snapshot whole and nothing is allocated per name. It checks everything: every name
//! and target is a valid, canonical [`DomainName`], written names strictly ascending in canonical order,
//! members in label order and never written again, clients in address order, counts as declared,
//! lengths bounded before they are waited for (what it keeps is one item — at most a TXT record of
//! [`MAX_TXT_BYTES`] — and the open group's member labels and addresses), no trailing bytes. What it
//! cannot see without a table is an implied PTR whose name is also given otherwise; no encoder writes
//! that, and a replica refuses it.

use std::cmp::Ordering;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::name::{
    DomainName, MAX_LABEL_LEN, MAX_NAME_LEN, NameError, is_canonical_label, is_canonical_label_after, is_dns1123_label,
};
use crate::records::{RData, ZoneData};

/// The first bytes of every packed snapshot.
pub const MAGIC: &[u8; 4] = b"RSPK";
/// The layout described above.
pub const VERSION: u8 = 4;
/// The longest TXT text packed: a record's data cannot be longer on the wire.
pub const MAX_TXT_BYTES: usize = 65_535;
/// The most labels a name of [`MAX_NAME_LEN`] characters can have (one character each, dots between).
const MAX_LABELS: usize = MAX_NAME_LEN.div_ceil(2);

const TYPE_A: u8 = 1;
const TYPE_AAAA: u8 = 2;
const TYPE_SRV: u8 = 3;
const TYPE_PTR: u8 = 4;
const TYPE_CNAME: u8 = 5;
const TYPE_TXT: u8 = 6;
const TYPE_NS: u8 = 7;
/// Not a record: "this name's records of type T (the next byte) are those of the last name that had
/// records". A service's SRV set is repeated at `_port._proto.service` (100k of the 500k records at 100k
/// pod records), and a repeat is decoded by copying, not by reading targets again.
const TYPE_REPEAT: u8 = 8;
/// Not a record: "the addresses of every member of the open group, of family 4 or 6 (the next byte), in
/// member order" (a headless service's own addresses).
const TYPE_MEMBER_ADDRESSES: u8 = 9;
/// Not a record: "one SRV record with this priority, weight and port (varints) to each member of the
/// open group, in member order" (a headless service's SRV sets).
const TYPE_MEMBER_SRV: u8 = 10;
/// The most addresses a group member holds (an EndpointSlice endpoint holds at most 100).
const MAX_MEMBER_ADDRESSES: u64 = 100;
/// Group flags: the members' addresses have PTR records to the members.
const GROUP_PTR: u8 = 1;

fn type_code(record: &RData) -> u8 {
    match record {
        RData::A { .. } => TYPE_A,
        RData::Aaaa { .. } => TYPE_AAAA,
        RData::Srv { .. } => TYPE_SRV,
        RData::Ptr { .. } => TYPE_PTR,
        RData::Cname { .. } => TYPE_CNAME,
        RData::Txt { .. } => TYPE_TXT,
        RData::Ns { .. } => TYPE_NS,
    }
}

/// A zone that cannot be packed (synthesis never makes one; the controller sends such a zone as JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("a TXT record of `{name}` is {len} bytes, more than the {MAX_TXT_BYTES} a packed snapshot holds")]
    TxtTooLong { name: String, len: usize },
    #[error("the namespace `{namespace}` of client {ip} is not a DNS-1123 label")]
    BadNamespace { ip: IpAddr, namespace: String },
}

/// Bytes that sort as `name` does in canonical DNS order (RFC 4034 section 6.1, on lower-case names): its labels from the root, each ended by a 0
/// (below every byte of a label, so a label sorts before any longer one it starts). Sorting on these is
/// ~20× faster than comparing the names label by label.
fn canonical_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    for_each_label_from_root(name.as_bytes(), |label| {
        key.extend_from_slice(label);
        key.push(0);
    });
    key
}

/// Calls `each` with the labels of `text` (dotted, not empty), the one next to the root first. A loop
/// over the bytes: `rsplit('.')` calls `memrchr` per label, which made up most of encoding.
fn for_each_label_from_root(text: &[u8], mut each: impl FnMut(&[u8])) {
    let mut end = text.len();
    loop {
        let start = text[..end].iter().rposition(|&b| b == b'.').map_or(0, |dot| dot + 1);
        each(&text[start..end]);
        if start == 0 {
            return;
        }
        end = start - 1;
    }
}

/// Packs `zone`.
pub fn encode(zone: &ZoneData) -> Result<Vec<u8>, PackError> {
    let mut names: Vec<(Vec<u8>, &DomainName, &Vec<RData>)> =
        zone.names.iter().map(|(name, records)| (canonical_key(name.as_str()), name, records)).collect();
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let plan = GroupPlan::new(zone, &names);
    let mut out = Vec::with_capacity(16 + zone.names.len() * 10 + zone.record_count() * 8 + zone.clients.len() * 6);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_varint(&mut out, (zone.names.len() - plan.implied_ptr_names) as u64);
    put_varint(&mut out, zone.record_count() as u64);
    put_varint(&mut out, zone.clients.len() as u64);
    let (mut previous_name, mut previous_target) = ("", "");
    // The records of the last name that had any: a run of one type equal to its records of that type is
    // written as a repeat.
    let mut previous_records: &[RData] = &[];
    // The last group written, while the names are in its subtree: (its name's key, the group).
    let mut open: Option<(&[u8], &PlannedGroup)> = None;
    for (index, (key, name, records)) in names.iter().enumerate() {
        if plan.written_elsewhere[index] {
            continue;
        }
        if open.is_some_and(|(group_key, _)| !key.starts_with(group_key)) {
            open = None;
        }
        let group = plan.groups.get(&index);
        put_labels(&mut out, &mut previous_name, name.as_str());
        put_varint(&mut out, (records.len() as u64) << 1 | u64::from(group.is_some()));
        if let Some(group) = group {
            put_group(&mut out, group);
            open = Some((key, group));
        }
        let mut rest = &records[..];
        while let Some(first) = rest.first() {
            let kind = type_code(first);
            let (run, after) = rest.split_at(rest.iter().take_while(|record| type_code(record) == kind).count());
            rest = after;
            if previous_records.iter().filter(|record| type_code(record) == kind).eq(run) {
                out.extend_from_slice(&[TYPE_REPEAT, kind]);
                continue;
            }
            if let Some((_, group)) = open
                && put_expansion(&mut out, group, run)
            {
                continue;
            }
            for record in run {
                put_record(&mut out, &mut previous_target, name, record)?;
            }
        }
        if !records.is_empty() {
            previous_records = records;
        }
    }
    let mut namespaces: Vec<&str> = Vec::new();
    let mut previous_client = None;
    for (ip, namespace) in &zone.clients {
        if !is_dns1123_label(namespace) {
            return Err(PackError::BadNamespace { ip: *ip, namespace: namespace.clone() });
        }
        put_client_address(&mut out, previous_client, *ip);
        previous_client = Some(*ip);
        // Few namespaces, many clients: a linear search of the recent ones first is enough.
        match namespaces.iter().rposition(|known| *known == namespace) {
            Some(index) => put_varint(&mut out, index as u64),
            None => {
                put_varint(&mut out, namespaces.len() as u64);
                put_varint(&mut out, namespace.len() as u64);
                out.extend_from_slice(namespace.as_bytes());
                namespaces.push(namespace);
            }
        }
    }
    Ok(out)
}

/// A group to write: the members of one name, each with its records (addresses only), in canonical order.
struct PlannedGroup<'a> {
    members: Vec<(&'a DomainName, &'a [RData])>,
    ptr: bool,
    /// What the group's expansions make, to compare with a name's runs of records.
    v4: Vec<&'a RData>,
    v6: Vec<&'a RData>,
}

/// A possible member (its index) and, when every PTR of its addresses can be implied, their names' indices.
type Candidate = (usize, Option<Vec<usize>>);

/// Which names become groups: a name's children that hold only addresses and have no children of their
/// own are its members, written inside it as a label and addresses; when every address of a member has
/// exactly one PTR record, to that member, the PTRs are implied too. Groups do not nest.
struct GroupPlan<'a> {
    /// By the index of the name that holds the group.
    groups: std::collections::BTreeMap<usize, PlannedGroup<'a>>,
    /// Members and implied PTR names: not written as names of their own.
    written_elsewhere: Vec<bool>,
    implied_ptr_names: usize,
}

impl<'a> GroupPlan<'a> {
    fn new(zone: &ZoneData, names: &[(Vec<u8>, &'a DomainName, &'a Vec<RData>)]) -> Self {
        let index: rustc_hash::FxHashMap<&str, usize> =
            names.iter().enumerate().map(|(i, (_, name, _))| (name.as_str(), i)).collect();
        let is_leaf = |i: usize| names.get(i + 1).is_none_or(|next| !next.0.starts_with(&names[i].0));
        let addresses = |records: &[RData]| {
            !records.is_empty() && records.iter().all(|r| matches!(r, RData::A { .. } | RData::Aaaa { .. }))
        };
        // The reverse name of each address of `member`, when its records are exactly one PTR to it.
        let implied_ptrs = |member: &DomainName, records: &[RData]| -> Option<Vec<usize>> {
            let ats: Vec<usize> = records
                .iter()
                .map(|record| {
                    let ip = match record {
                        RData::A { ip } => IpAddr::V4(*ip),
                        RData::Aaaa { ip } => IpAddr::V6(*ip),
                        _ => return None,
                    };
                    let at = *index.get(DomainName::reverse_of(ip).as_str())?;
                    let only = matches!(&zone.names[names[at].1][..], [RData::Ptr { target }] if target == member);
                    (only && is_leaf(at)).then_some(at)
                })
                .collect::<Option<_>>()?;
            // An address held twice would imply its PTR twice.
            let distinct: rustc_hash::FxHashSet<&usize> = ats.iter().collect();
            (distinct.len() == ats.len()).then_some(ats)
        };
        // By parent: each candidate member and the names of its implied PTRs (if they can be implied).
        let mut candidates: std::collections::BTreeMap<usize, Vec<Candidate>> = Default::default();
        for (i, (_, name, records)) in names.iter().enumerate() {
            if !addresses(records) || !is_leaf(i) {
                continue;
            }
            let Some(parent) = name.as_str().split_once('.').and_then(|(_, parent)| index.get(parent)) else {
                continue;
            };
            candidates.entry(*parent).or_default().push((i, implied_ptrs(name, records)));
        }
        let mut plan =
            Self { groups: Default::default(), written_elsewhere: vec![false; names.len()], implied_ptr_names: 0 };
        let mut open: Option<&[u8]> = None;
        for (parent, members) in candidates {
            if open.is_some_and(|key| names[parent].0.starts_with(key)) {
                continue;
            }
            open = Some(&names[parent].0);
            let ptr = members.iter().any(|(_, ptrs)| ptrs.is_some());
            let mut group = PlannedGroup { members: Vec::new(), ptr, v4: Vec::new(), v6: Vec::new() };
            for (member, ptrs) in members {
                if ptrs.is_some() != ptr {
                    continue;
                }
                plan.written_elsewhere[member] = true;
                for at in ptrs.into_iter().flatten() {
                    plan.written_elsewhere[at] = true;
                    plan.implied_ptr_names += 1;
                }
                let (_, name, records) = names[member];
                group.members.push((name, records));
                group.v4.extend(records.iter().filter(|r| matches!(r, RData::A { .. })));
                group.v6.extend(records.iter().filter(|r| matches!(r, RData::Aaaa { .. })));
            }
            plan.groups.insert(parent, group);
        }
        plan
    }
}

/// A group's members, after its name's head: the count, the flags, then each member's label and addresses.
fn put_group(out: &mut Vec<u8>, group: &PlannedGroup) {
    put_varint(out, group.members.len() as u64);
    out.push(if group.ptr { GROUP_PTR } else { 0 });
    let mut previous: &[u8] = b"";
    for (name, records) in &group.members {
        let label = name.as_str().split_once('.').map_or(name.as_str(), |(label, _)| label).as_bytes();
        // Labels ascend, so what follows the shared start is never empty and sorts after the previous.
        let shared = previous.iter().zip(label).take_while(|(a, b)| a == b).count();
        out.push(shared as u8);
        out.push((label.len() - shared) as u8);
        out.extend_from_slice(&label[shared..]);
        previous = label;
        put_varint(out, records.len() as u64);
        for record in records.iter() {
            match record {
                RData::A { ip } => put_address(out, IpAddr::V4(*ip)),
                RData::Aaaa { ip } => put_address(out, IpAddr::V6(*ip)),
                _ => {}
            }
        }
    }
}

/// An address as its family (4 or 6) and its bytes (group members and clients).
fn put_address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// A client's address: its family (4 or 6), then its distance past the previous client of its family
/// (clients ascend), less one, as a varint; the first of a family, the address itself. Pods take
/// addresses from per-node ranges, so most clients are a byte or two past the one before.
fn put_client_address(out: &mut Vec<u8>, previous: Option<IpAddr>, ip: IpAddr) {
    let (family, bits) = address_order(ip);
    out.push(if family == 1 { 4 } else { 6 });
    let gap = match previous.map(address_order) {
        Some((previous_family, previous_bits)) if previous_family == family => bits - previous_bits - 1,
        _ => bits,
    };
    put_varint128(out, gap);
}

/// Writes `run` (records of one type) as expansions of `group`, if it is exactly what they make.
fn put_expansion(out: &mut Vec<u8>, group: &PlannedGroup, run: &[RData]) -> bool {
    match run.first() {
        Some(RData::A { .. }) if run.iter().eq(group.v4.iter().copied()) => {
            out.extend_from_slice(&[TYPE_MEMBER_ADDRESSES, 4])
        }
        Some(RData::Aaaa { .. }) if run.iter().eq(group.v6.iter().copied()) => {
            out.extend_from_slice(&[TYPE_MEMBER_ADDRESSES, 6])
        }
        Some(RData::Srv { .. }) => {
            let members = group.members.len();
            if members == 0 || !run.len().is_multiple_of(members) {
                return false;
            }
            let Some(sets) = run.chunks(members).map(|chunk| srv_to_members(chunk, group)).collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            for (priority, weight, port) in sets {
                out.push(TYPE_MEMBER_SRV);
                for value in [priority, weight, port] {
                    put_varint(out, u64::from(value));
                }
            }
        }
        _ => return false,
    }
    true
}

/// The priority, weight and port of `chunk` when it is one SRV record with them to each member of `group`,
/// in member order.
fn srv_to_members(chunk: &[RData], group: &PlannedGroup) -> Option<(u16, u16, u16)> {
    let Some(RData::Srv { priority, weight, port, .. }) = chunk.first() else { return None };
    let to_members = chunk.iter().zip(&group.members).all(|(record, (member, _))| {
        matches!(record, RData::Srv { priority: p, weight: w, port: o, target }
            if (p, w, o, target) == (priority, weight, port, *member))
    });
    to_members.then_some((*priority, *weight, *port))
}

/// One record of `name`: its type byte and data, its target written against `previous_target`.
fn put_record<'a>(
    out: &mut Vec<u8>,
    previous_target: &mut &'a str,
    name: &DomainName,
    record: &'a RData,
) -> Result<(), PackError> {
    out.push(type_code(record));
    let target = match record {
        RData::A { ip } => {
            out.extend_from_slice(&ip.octets());
            None
        }
        RData::Aaaa { ip } => {
            out.extend_from_slice(&ip.octets());
            None
        }
        RData::Srv { priority, weight, port, target } => {
            for value in [priority, weight, port] {
                put_varint(out, u64::from(*value));
            }
            Some(target)
        }
        RData::Ptr { target } | RData::Cname { target } | RData::Ns { target } => Some(target),
        RData::Txt { text } => {
            if text.len() > MAX_TXT_BYTES {
                return Err(PackError::TxtTooLong { name: name.to_string(), len: text.len() });
            }
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
            None
        }
    };
    if let Some(target) = target {
        put_labels(out, previous_target, target.as_str());
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    put_varint128(out, u128::from(value));
}

/// The same, for a value of up to 128 bits (a client's address gap), at most 19 bytes.
fn put_varint128(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `name` against `previous` (then replaced by `name`): the labels kept, the labels added, each added
/// label behind its length, from the root outwards.
fn put_labels<'a>(out: &mut Vec<u8>, previous: &mut &'a str, name: &'a str) {
    let (old, new) = (previous.as_bytes(), name.as_bytes());
    // The labels kept: the longest common suffix that starts a label in both names.
    let starts_label = |text: &[u8], len: usize| len == text.len() || text[text.len() - len - 1] == b'.';
    let mut shared = old.iter().rev().zip(new.iter().rev()).take_while(|(a, b)| a == b).count();
    while shared > 0 && !(starts_label(old, shared) && starts_label(new, shared)) {
        shared -= 1;
    }
    let dots = |text: &[u8]| text.iter().filter(|&&b| b == b'.').count();
    let keep = if shared == 0 { 0 } else { dots(&new[new.len() - shared..]) + 1 };
    // What is added, without the dot before the kept labels.
    let added = &new[..(new.len() - shared).saturating_sub(usize::from(shared > 0))];
    put_varint(out, keep as u64);
    put_varint(out, if added.is_empty() { 0 } else { dots(added) as u64 + 1 });
    if !added.is_empty() {
        for_each_label_from_root(added, |label| {
            // A checked name's labels are 1-63 bytes.
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        });
    }
    *previous = name;
}

/// A name the decoder has checked: valid and canonical, as [`DomainName::parse`] would keep it. Held
/// as bytes (ASCII), so that a visitor that does not read the text pays nothing to turn it into `&str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedName<'a>(&'a [u8]);

impl<'a> CheckedName<'a> {
    pub fn as_str(&self) -> &'a str {
        // Checked labels are ASCII.
        std::str::from_utf8(self.0).unwrap_or("")
    }

    pub fn to_name(&self) -> DomainName {
        DomainName::from_checked(self.as_str())
    }

    /// Its text as bytes, without the UTF-8 check of [`Self::as_str`].
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// One decoded record, borrowed from the decoder. A four-byte tag puts an `A` record's address (aligned
/// to 1) at offset 4: behind a one-byte tag, visitors read it back through a failed store forward, half
/// of their time (profiled; decoding 100k pod records with a visitor that reads every field: 10.0 →
/// 9.2–9.3 ms, bench/README.md "Record stream at node scale").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Record<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv { priority: u16, weight: u16, port: u16, target: CheckedName<'a> },
    Ptr(CheckedName<'a>),
    Cname(CheckedName<'a>),
    Ns(CheckedName<'a>),
    Txt(&'a str),
}

impl Record<'_> {
    pub fn to_rdata(&self) -> RData {
        match *self {
            Self::A(ip) => RData::A { ip },
            Self::Aaaa(ip) => RData::Aaaa { ip },
            Self::Srv { priority, weight, port, target } => {
                RData::Srv { priority, weight, port, target: target.to_name() }
            }
            Self::Ptr(target) => RData::Ptr { target: target.to_name() },
            Self::Cname(target) => RData::Cname { target: target.to_name() },
            Self::Ns(target) => RData::Ns { target: target.to_name() },
            Self::Txt(text) => RData::Txt { text: text.to_owned() },
        }
    }
}

/// A name's decoded records: kept as fields and ranges of one text buffer, reused from name to name.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    slots: &'a [Slot],
    text: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'a>> + use<'a> {
        let text = self.text;
        let name = move |span: &Span| CheckedName(text.get(span.start as usize..span.end as usize).unwrap_or(b""));
        self.slots.iter().map(move |slot| match slot {
            Slot::A(ip) => Record::A(*ip),
            Slot::Aaaa(ip) => Record::Aaaa(*ip),
            Slot::Srv(priority, weight, port, target) => {
                Record::Srv { priority: *priority, weight: *weight, port: *port, target: name(target) }
            }
            Slot::Ptr(target) => Record::Ptr(name(target)),
            Slot::Cname(target) => Record::Cname(name(target)),
            Slot::Ns(target) => Record::Ns(name(target)),
            // Checked as UTF-8 when decoded.
            Slot::Txt(range) => Record::Txt(std::str::from_utf8(name(range).0).unwrap_or("")),
        })
    }

    pub fn to_rdata(&self) -> Vec<RData> {
        self.iter().map(|record| record.to_rdata()).collect()
    }
}

/// Where a target or a TXT text is in the records' text. Not a `Range`, which is not `Copy`: slots that
/// are `Copy` are copied in bulk (a member's addresses into its group, a group's into its name).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

/// A decoded record held for its name: targets and TXT texts are spans of the records' text.
#[derive(Debug, Clone, Copy)]
enum Slot {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv(u16, u16, u16, Span),
    Ptr(Span),
    Cname(Span),
    Ns(Span),
    Txt(Span),
}

impl Slot {
    fn type_code(&self) -> u8 {
        match self {
            Self::A(_) => TYPE_A,
            Self::Aaaa(_) => TYPE_AAAA,
            Self::Srv(..) => TYPE_SRV,
            Self::Ptr(_) => TYPE_PTR,
            Self::Cname(_) => TYPE_CNAME,
            Self::Ns(_) => TYPE_NS,
            Self::Txt(_) => TYPE_TXT,
        }
    }

    /// The same record with its text `by` bytes further on (or back: wrapping), for a copy of the text.
    fn moved(self, by: u32) -> Self {
        let shift = |span: Span| Span { start: span.start.wrapping_add(by), end: span.end.wrapping_add(by) };
        match self {
            Self::A(_) | Self::Aaaa(_) => self,
            Self::Srv(priority, weight, port, target) => Self::Srv(priority, weight, port, shift(target)),
            Self::Ptr(target) => Self::Ptr(shift(target)),
            Self::Cname(target) => Self::Cname(shift(target)),
            Self::Ns(target) => Self::Ns(shift(target)),
            Self::Txt(text) => Self::Txt(shift(text)),
        }
    }

    /// Where its text is, if it has any.
    fn text(&self) -> Option<Span> {
        match *self {
            Self::A(_) | Self::Aaaa(_) => None,
            Self::Srv(.., span) | Self::Ptr(span) | Self::Cname(span) | Self::Ns(span) | Self::Txt(span) => Some(span),
        }
    }
}

/// Receives a packed snapshot's contents as they are decoded.
pub trait Visitor {
    /// One name with its records (none: an empty non-terminal): written names in canonical order, a
    /// group's members before the name that holds the group.
    fn name(&mut self, name: CheckedName<'_>, records: Records<'_>);
    /// The PTR record at the reverse name of `ip` to the group member `target`. Its name is not written:
    /// the encoder implies a PTR only where it is the whole record set of its name, so a table that
    /// meets that name twice holds a snapshot no encoder wrote (a replica refuses it).
    fn ptr(&mut self, ip: IpAddr, target: CheckedName<'_>);
    /// One autopath client, in address order.
    fn client(&mut self, ip: IpAddr, namespace: &str);
}

/// Collects the whole zone (tests, tools; a replica builds its table instead).
impl Visitor for ZoneData {
    fn name(&mut self, name: CheckedName<'_>, records: Records<'_>) {
        self.names.insert(name.to_name(), records.to_rdata());
    }

    fn ptr(&mut self, ip: IpAddr, target: CheckedName<'_>) {
        self.names.entry(DomainName::reverse_of(ip)).or_default().push(RData::Ptr { target: target.to_name() });
    }

    fn client(&mut self, ip: IpAddr, namespace: &str) {
        self.clients.insert(ip, namespace.to_owned());
    }
}

/// What a snapshot held, once decoded whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub names: u64,
    pub records: u64,
    pub clients: u64,
}

/// Why a packed snapshot was refused, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packed snapshot, {at}: {problem}")]
pub struct PackedError {
    /// Where: the header, `name 3 of 10`, `record 2 of name 3 (`a.cluster.local`)`, `client 5 of 7`, the end.
    pub at: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("does not start with `RSPK`")]
    BadMagic,
    #[error("version {0}, this decoder reads version {VERSION}")]
    UnsupportedVersion(u8),
    #[error("the data ends inside it")]
    Truncated,
    #[error("a varint longer than {0} bits")]
    VarintTooLong(u32),
    #[error("{what} {value} is more than {max}")]
    TooLarge { what: &'static str, value: u64, max: u64 },
    #[error("`{text}` is not a name: {error}")]
    BadName { text: String, error: NameError },
    #[error("`{0}` is not in canonical form (lower case)")]
    NotCanonical(String),
    #[error("not ASCII where a name must be")]
    NotAscii,
    #[error("`{found}` does not come after `{previous}`")]
    OutOfOrder { previous: String, found: String },
    #[error("a client {gap} addresses past {previous} is past its family's last address")]
    ClientPastRange { previous: String, gap: u128 },
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("a repeat of type {0} records, which the last name with records does not have")]
    NothingToRepeat(u8),
    #[error("members' records (type {0}) outside a group")]
    NoGroup(u8),
    #[error("the group's members have no address of family {0}")]
    NoMemberAddress(u8),
    #[error("a group with no member")]
    EmptyGroup,
    #[error("unknown group flags {0:#x}")]
    UnknownGroupFlags(u8),
    #[error("a group inside the group of `{0}`")]
    NestedGroup(String),
    #[error("`{0}` is a name of a member of the open group")]
    MemberWritten(String),
    #[error("member `{found}` does not come after member `{previous}`")]
    MemberOutOfOrder { previous: String, found: String },
    #[error("TXT text is not UTF-8")]
    TxtNotUtf8,
    #[error("unknown address family {0}")]
    UnknownFamily(u8),
    #[error("namespace index {index} with {known} namespaces known")]
    NamespaceIndex { index: u64, known: usize },
    #[error("namespace `{0}` is not a DNS-1123 label")]
    BadNamespace(String),
    #[error("the header declares {declared} {what}, the data holds {found}")]
    CountMismatch { what: &'static str, declared: u64, found: u64 },
    #[error("bytes after the last client")]
    TrailingBytes,
    #[error("decoder used after an error")]
    Failed,
    #[error("reading: {0}")]
    Io(String),
}

/// Why an item could not be read yet, or at all.
enum Need {
    More,
    Bad(Problem),
}

impl From<Problem> for Need {
    fn from(problem: Problem) -> Self {
        Self::Bad(problem)
    }
}

/// A slice being read; running off its end means the item is incomplete.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, len: usize) -> Result<&'a [u8], Need> {
        let bytes = self.bytes.get(self.pos..self.pos.checked_add(len).ok_or(Need::More)?).ok_or(Need::More)?;
        self.pos += len;
        Ok(bytes)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Need> {
        let byte = *self.bytes.get(self.pos).ok_or(Need::More)?;
        self.pos += 1;
        Ok(byte)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Need> {
        // Most varints here are one byte.
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let mut value = u64::from(first & 0x7f);
        for shift in (7..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Problem::VarintTooLong(64).into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::VarintTooLong(64).into())
    }

    /// A varint of up to 128 bits (19 bytes). Kept apart from `varint`: one reader of both widths in u128
    /// made decoding 4 % slower (7.8 → 8.1 ms at 100k pod records).
    #[inline]
    fn varint128(&mut self) -> Result<u128, Need> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(u128::from(first));
        }
        let mut value = u128::from(first & 0x7f);
        for shift in (7..128).step_by(7) {
            let byte = self.byte()?;
            let bits = u128::from(byte & 0x7f);
            if shift == 126 && bits > 3 {
                return Err(Problem::VarintTooLong(128).into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::VarintTooLong(128).into())
    }

    /// A varint that must not exceed `max`, checked before anything is waited for or allocated.
    #[inline]
    fn bounded(&mut self, what: &'static str, max: u64) -> Result<u64, Need> {
        let value = self.varint()?;
        if value > max {
            return Err(Problem::TooLarge { what, value, max }.into());
        }
        Ok(value)
    }

    /// A name's labels written against one that has `held` labels (see [`put_labels`]): read whole,
    /// nothing applied.
    #[inline]
    fn labels(&mut self, held: usize) -> Result<LabelRun, Need> {
        let keep = self.bounded("kept labels", held as u64)? as usize;
        let added = self.bounded("added labels", (MAX_LABELS - keep) as u64)? as usize;
        let at = self.pos;
        for _ in 0..added {
            let len = self.byte()?;
            if usize::from(len) > MAX_LABEL_LEN {
                return Err(
                    Problem::TooLarge { what: "label length", value: len.into(), max: MAX_LABEL_LEN as u64 }.into()
                );
            }
            self.take(usize::from(len))?;
        }
        Ok(LabelRun { keep, added, at })
    }
}

/// A name as written: the labels kept of the one before, and the added labels (at `at` in the item's
/// bytes, each behind its length byte).
struct LabelRun {
    keep: usize,
    added: usize,
    at: usize,
}

/// Copies `src` into `dst` (of its length): a label's few bytes as one or two overlapping fixed-size copies
/// rather than a call to `memcpy`, whose dispatch cost more than the bytes (two such calls per group member).
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..n].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..n].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Where a name's text ends in [`StackedName::text`].
const TEXT_END: usize = MAX_NAME_LEN;

/// A name as a stack of labels from the root, its text right-aligned in a fixed buffer: pushing a label
/// writes that label (and a dot) in front of the text, so the name is always `text[starts[depth]..]`.
#[derive(Clone)]
struct StackedName {
    text: [u8; TEXT_END],
    /// `starts[d]`: where the name's `d` labels nearest the root begin; `starts[0]` is the end.
    starts: [u8; MAX_LABELS + 1],
    depth: usize,
}

impl StackedName {
    fn new() -> Self {
        Self { text: [0; TEXT_END], starts: [TEXT_END as u8; MAX_LABELS + 1], depth: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[usize::from(self.starts[self.depth])..]
    }

    /// For messages.
    fn as_str(&self) -> &str {
        // Every byte pushed is of a checked label: ASCII.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The label at `depth` (1: the one next to the root).
    fn label(&self, depth: usize) -> &[u8] {
        let end = if depth == 1 { TEXT_END } else { usize::from(self.starts[depth - 1]) - 1 };
        &self.text[usize::from(self.starts[depth])..end]
    }

    /// Applies `run` (whose labels are in `bytes`): keeps its labels, then pushes each added one, checked.
    fn apply(&mut self, run: &LabelRun, bytes: &[u8]) -> Result<(), Problem> {
        self.depth = run.keep;
        let mut at = run.at;
        for _ in 0..run.added {
            let len = usize::from(bytes[at]);
            let label = &bytes[at + 1..at + 1 + len];
            at += 1 + len;
            self.push(label)?;
        }
        Ok(())
    }

    fn push(&mut self, label: &[u8]) -> Result<(), Problem> {
        let end = usize::from(self.starts[self.depth]);
        let dot = usize::from(self.depth > 0);
        if !is_canonical_label(label) {
            return Err(self.label_problem(label));
        }
        let Some(start) = end.checked_sub(label.len() + dot) else {
            let text = format!("{}.{}", String::from_utf8_lossy(label), self.as_str());
            return Err(Problem::BadName { error: NameError::TooLong(text.clone()), text });
        };
        copy_short(&mut self.text[start..start + label.len()], label);
        if dot == 1 {
            self.text[start + label.len()] = b'.';
        }
        self.depth += 1;
        self.starts[self.depth] = start as u8;
        Ok(())
    }

    /// Pushes the label made of `previous`'s first `shared` bytes and `rest`, checked, written in place.
    /// Kept apart from `push`: a `push` that called this decoded 4 % slower (7.8 → 8.1 ms, 100k pod records).
    fn push_shared(&mut self, previous: &[u8], shared: usize, rest: &[u8]) -> Result<(), Problem> {
        let len = shared + rest.len();
        let end = usize::from(self.starts[self.depth]);
        let dot = usize::from(self.depth > 0);
        let Some(start) = end.checked_sub(len + dot) else {
            return self.push(&[&previous[..shared], rest].concat());
        };
        copy_short(&mut self.text[start..start + shared], &previous[..shared]);
        copy_short(&mut self.text[start + shared..start + len], rest);
        // The shared start was checked with the previous member's label.
        if !is_canonical_label_after(&self.text[start..start + len], shared) {
            return Err(self.label_problem(&self.text[start..start + len]));
        }
        if dot == 1 {
            self.text[start + len] = b'.';
        }
        self.depth += 1;
        self.starts[self.depth] = start as u8;
        Ok(())
    }

    /// Why `label` (not canonical) cannot be pushed, named as `DomainName::parse` names it.
    fn label_problem(&self, label: &[u8]) -> Problem {
        let Some(label) = std::str::from_utf8(label).ok().filter(|label| label.is_ascii()) else {
            return Problem::NotAscii;
        };
        let text = if self.depth == 0 { label.to_owned() } else { format!("{label}.{}", self.as_str()) };
        match DomainName::check_labels(label) {
            Err(error) => Problem::BadName { text, error },
            // Valid in some case, so not in lower case.
            Ok(()) => Problem::NotCanonical(text),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Name,
    Member,
    Record,
    Client,
    Done,
    Failed,
}

/// A push decoder: [`Decoder::feed`] it the bytes as they come, then [`Decoder::finish`].
pub struct Decoder {
    stage: Stage,
    /// The start of an item that has not arrived whole (at most one item).
    pending: Vec<u8>,
    declared: Summary,
    seen: Summary,
    /// The name whose records are being read, and how many are still to come.
    name: StackedName,
    records_left: u64,
    /// The name's records, their targets and texts in `text`; both reused from name to name.
    slots: Vec<Slot>,
    text: Vec<u8>,
    /// The same for the last name that had records (what a repeat copies).
    previous_slots: Vec<Slot>,
    previous_text: Vec<u8>,
    target: StackedName,
    /// The last client's [`address_order`] (`(0, 0)`: none yet).
    previous_client: (u8, u128),
    namespaces: Vec<String>,
    /// The group of the last name that held one, while the names read are in its subtree.
    group: Option<Group>,
    /// The last group closed, whose buffers the next one reuses.
    spare: Group,
    /// A member's address records, reused from member to member.
    member_slots: Vec<Slot>,
}

/// A group: a name's members, each a child of it holding only addresses (see the module's layout).
#[derive(Debug, Default)]
struct Group {
    /// The labels of the name that holds it.
    depth: usize,
    ptr: bool,
    /// Members still to read.
    left: u64,
    /// The members' names, one after the other, where each ends and how long its label (its start) is:
    /// an SRV expansion copies them at once.
    names: Vec<u8>,
    name_ends: Vec<u32>,
    label_lens: Vec<u8>,
    /// The members' addresses (A and AAAA slots), in member order, and how many are IPv4.
    addresses: Vec<Slot>,
    v4: usize,
}

impl Group {
    fn label(&self, member: usize) -> &[u8] {
        let start = if member == 0 { 0 } else { self.name_ends[member - 1] as usize };
        &self.names[start..start + usize::from(self.label_lens[member])]
    }

    fn members(&self) -> usize {
        self.name_ends.len()
    }

    /// Emptied for the group of a name of `depth` labels, with `left` members to read.
    fn reset(&mut self, depth: usize, ptr: bool, left: u64) {
        self.depth = depth;
        self.ptr = ptr;
        self.left = left;
        self.names.clear();
        self.name_ends.clear();
        self.label_lens.clear();
        self.addresses.clear();
        self.v4 = 0;
    }

    /// Whether `label` is a member's (members are in ascending order).
    fn has_member(&self, label: &[u8]) -> bool {
        let (mut low, mut high) = (0, self.members());
        while low < high {
            let middle = (low + high) / 2;
            // Labels are short: compared in place rather than through `memcmp`.
            match self.label(middle).iter().cmp(label.iter()) {
                Ordering::Equal => return true,
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
            }
        }
        false
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        let zero = Summary { names: 0, records: 0, clients: 0 };
        Self {
            stage: Stage::Header,
            pending: Vec::new(),
            declared: zero,
            seen: zero,
            name: StackedName::new(),
            records_left: 0,
            slots: Vec::new(),
            text: Vec::new(),
            previous_slots: Vec::new(),
            previous_text: Vec::new(),
            target: StackedName::new(),
            previous_client: (0, 0),
            namespaces: Vec::new(),
            group: None,
            spare: Group::default(),
            member_slots: Vec::new(),
        }
    }

    /// Decodes what `input` completes, handing each finished name and client to `visitor`.
    pub fn feed(&mut self, input: &[u8], visitor: &mut impl Visitor) -> Result<(), PackedError> {
        if self.stage == Stage::Failed {
            return Err(self.error(Problem::Failed));
        }
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.complete_pending(&mut pending, input, visitor).and_then(|taken| {
            if !pending.is_empty() {
                return Ok(());
            }
            let input = &input[taken..];
            self.run(input, visitor).map(|used| pending.extend_from_slice(&input[used..]))
        });
        let result = result.and_then(|()| {
            if self.stage == Stage::Done && !pending.is_empty() {
                return Err(self.error(Problem::TrailingBytes));
            }
            Ok(())
        });
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        self.pending = pending;
        result
    }

    /// Completes the item held in `pending` from the start of `input`, copying no more of `input` than
    /// that takes (in steps that double, as an item may be long): the bytes of `input` taken. `pending` is
    /// left empty unless `input` ran out first.
    fn complete_pending(
        &mut self,
        pending: &mut Vec<u8>,
        input: &[u8],
        visitor: &mut impl Visitor,
    ) -> Result<usize, PackedError> {
        let mut taken = 0;
        while !pending.is_empty() && taken < input.len() {
            let step = (input.len() - taken).min(pending.len().max(64));
            pending.extend_from_slice(&input[taken..taken + step]);
            taken += step;
            let used = self.run(pending, visitor)?;
            if used > 0 {
                // The held item is whole, and what follows it in `pending` is still in `input`.
                taken -= pending.len() - used;
                pending.clear();
            }
        }
        Ok(taken)
    }

    /// Ends the snapshot: an error unless it was complete.
    pub fn finish(self) -> Result<Summary, PackedError> {
        match self.stage {
            Stage::Done => Ok(self.seen),
            Stage::Failed => Err(self.error(Problem::Failed)),
            _ => Err(self.error(Problem::Truncated)),
        }
    }

    /// Reads items from `data` while they are whole; the bytes used.
    fn run(&mut self, data: &[u8], visitor: &mut impl Visitor) -> Result<usize, PackedError> {
        let mut used = 0;
        while self.stage != Stage::Done {
            let mut cursor = Cursor { bytes: &data[used..], pos: 0 };
            match self.item(&mut cursor, visitor) {
                Ok(()) => used += cursor.pos,
                Err(Need::More) => break,
                Err(Need::Bad(problem)) => return Err(self.error(problem)),
            }
        }
        Ok(used)
    }

    fn error(&self, problem: Problem) -> PackedError {
        let at = match self.stage {
            Stage::Header => "the header".to_owned(),
            Stage::Name => format!("name {} of {}", self.seen.names + 1, self.declared.names),
            Stage::Member => {
                let member = self.group.as_ref().map_or(0, Group::members) + 1;
                format!("member {member} of the group of name `{}`", self.name.as_str())
            }
            Stage::Record => {
                format!("record {} of name {} (`{}`)", self.slots.len() + 1, self.seen.names + 1, self.name.as_str())
            }
            Stage::Client => format!("client {} of {}", self.seen.clients + 1, self.declared.clients),
            Stage::Done | Stage::Failed => "the end".to_owned(),
        };
        PackedError { at, problem }
    }

    /// Reads one item (the header, a name's head, a record, a client); state changes only once it is whole.
    fn item(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        match self.stage {
            Stage::Header => self.header(cursor),
            Stage::Name => self.name_head(cursor, visitor),
            Stage::Member => self.member(cursor, visitor),
            Stage::Record => self.record(cursor, visitor),
            Stage::Client => self.client(cursor, visitor),
            Stage::Done | Stage::Failed => Ok(()),
        }
    }

    fn header(&mut self, cursor: &mut Cursor<'_>) -> Result<(), Need> {
        let magic = cursor.take(MAGIC.len().min(cursor.bytes.len()))?;
        if magic != &MAGIC[..magic.len()] {
            return Err(Problem::BadMagic.into());
        }
        if magic.len() < MAGIC.len() {
            return Err(Need::More);
        }
        let version = cursor.byte()?;
        if version != VERSION {
            return Err(Problem::UnsupportedVersion(version).into());
        }
        let names = cursor.varint()?;
        let records = cursor.varint()?;
        let clients = cursor.varint()?;
        self.declared = Summary { names, records, clients };
        self.next_section()
    }

    /// After the header or a name's last record: the next name, the clients, or the end.
    fn next_section(&mut self) -> Result<(), Need> {
        if self.seen.names < self.declared.names {
            self.stage = Stage::Name;
            return Ok(());
        }
        if self.seen.records != self.declared.records {
            self.stage = Stage::Done;
            let (declared, found) = (self.declared.records, self.seen.records);
            return Err(Problem::CountMismatch { what: "records", declared, found }.into());
        }
        self.stage = if self.declared.clients > 0 { Stage::Client } else { Stage::Done };
        Ok(())
    }

    fn name_head(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let run = cursor.labels(self.name.depth)?;
        let head = cursor.varint()?;
        let (count, grouped) = (head >> 1, head & 1 == 1);
        let left = self.declared.records.saturating_sub(self.seen.records);
        if count > left {
            return Err(Problem::TooLarge { what: "record count", value: count, max: left }.into());
        }
        let group = if grouped {
            // The name itself is one of the names left.
            let members = cursor.bounded("member count", (self.declared.names - self.seen.names).saturating_sub(1))?;
            let flags = cursor.byte()?;
            if members == 0 {
                return Err(Problem::EmptyGroup.into());
            }
            if flags & !GROUP_PTR != 0 {
                return Err(Problem::UnknownGroupFlags(flags).into());
            }
            Some((members, flags & GROUP_PTR != 0))
        } else {
            None
        };
        self.follows_name(&run, cursor.bytes)?;
        // The open group ends with its subtree: at a name that does not keep the group's name.
        if self.group.as_ref().is_some_and(|group| run.keep < group.depth) {
            self.spare = self.group.take().unwrap_or_default();
        }
        self.name.apply(&run, cursor.bytes)?;
        if let Some(open) = &self.group {
            if open.has_member(self.name.label(open.depth + 1)) {
                return Err(Problem::MemberWritten(self.name.as_str().to_owned()).into());
            }
            if group.is_some() {
                return Err(Problem::NestedGroup(self.name.as_str().to_owned()).into());
            }
        }
        self.slots.clear();
        self.text.clear();
        self.records_left = count;
        if let Some((members, ptr)) = group {
            let mut group = std::mem::take(&mut self.spare);
            group.reset(self.name.depth, ptr, members);
            self.group = Some(group);
            self.stage = Stage::Member;
            return Ok(());
        }
        self.after_head(visitor)
    }

    /// After a name's head and its group's members: its records, or the name is whole.
    fn after_head(&mut self, visitor: &mut impl Visitor) -> Result<(), Need> {
        if self.records_left == 0 {
            self.seen.names += 1;
            visitor.name(CheckedName(self.name.as_bytes()), Records { slots: &[], text: b"" });
            return self.next_section();
        }
        self.stage = Stage::Record;
        Ok(())
    }

    /// One member of the group being read: its label (the start it shares with the previous member's,
    /// then the rest), then its addresses.
    fn member(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let Some(group) = self.group.as_mut() else { return Err(Problem::Failed.into()) };
        let previous_len = group.label_lens.last().map_or(0, |&len| usize::from(len));
        let shared = usize::from(cursor.byte()?);
        if shared > previous_len {
            let (value, max) = (shared as u64, previous_len as u64);
            return Err(Problem::TooLarge { what: "shared label length", value, max }.into());
        }
        let rest_len = usize::from(cursor.byte()?);
        if shared + rest_len > MAX_LABEL_LEN {
            let (value, max) = (rest_len as u64, (MAX_LABEL_LEN - shared) as u64);
            return Err(Problem::TooLarge { what: "label length", value, max }.into());
        }
        let rest = cursor.take(rest_len)?;
        let count = cursor.bounded("member addresses", MAX_MEMBER_ADDRESSES)?;
        self.member_slots.clear();
        for _ in 0..count {
            self.member_slots.push(match address(cursor)? {
                IpAddr::V4(ip) => Slot::A(ip),
                IpAddr::V6(ip) => Slot::Aaaa(ip),
            });
        }
        // The item is whole: the member's name is made in place, its label checked as any label.
        let previous = group.members().checked_sub(1).map_or(&b""[..], |last| group.label(last));
        self.name.push_shared(previous, shared, rest)?;
        let label = self.name.label(self.name.depth);
        // Ascending. The encoder shares all it can, so the first byte of the rest decides, against the
        // previous label's byte in its place; the whole labels are compared only when those are equal.
        let ascends = match (rest.first(), previous.get(shared)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(first), Some(had)) => first > had || (first == had && label > previous),
        };
        if group.members() > 0 && !ascends {
            let (previous, found) = (String::from_utf8_lossy(previous), String::from_utf8_lossy(label));
            return Err(Problem::MemberOutOfOrder { previous: previous.into_owned(), found: found.into_owned() }.into());
        }
        let implied = if group.ptr { 2 * count } else { count };
        // The group's name's own records are counted already (`records_left`).
        let left = self.declared.records.saturating_sub(self.seen.records + self.records_left);
        if count == 0 || implied > left {
            return Err(Problem::TooLarge { what: "member addresses", value: implied, max: left }.into());
        }
        let label_len = label.len() as u8;
        let member = CheckedName(self.name.as_bytes());
        visitor.name(member, Records { slots: &self.member_slots, text: b"" });
        for slot in &self.member_slots {
            let ip = match slot {
                Slot::A(ip) => IpAddr::V4(*ip),
                Slot::Aaaa(ip) => IpAddr::V6(*ip),
                _ => continue,
            };
            group.v4 += usize::from(ip.is_ipv4());
            if group.ptr {
                visitor.ptr(ip, member);
            }
        }
        group.addresses.extend_from_slice(&self.member_slots);
        group.names.extend_from_slice(member.0);
        group.name_ends.push(group.names.len() as u32);
        group.label_lens.push(label_len);
        self.name.depth -= 1;
        group.left -= 1;
        self.seen.names += 1;
        self.seen.records += implied;
        if group.left == 0 {
            return self.after_head(visitor);
        }
        Ok(())
    }

    /// Checks that the name `run` writes comes after the one held, in canonical order: it adds a label,
    /// and the first label it adds after a label of the previous name it drops comes after that label.
    fn follows_name(&self, run: &LabelRun, bytes: &[u8]) -> Result<(), Problem> {
        let previous = &self.name;
        let after = match run.added {
            0 => false,
            _ if run.keep == previous.depth => true,
            _ => {
                let len = usize::from(bytes[run.at]);
                // Labels are short: compared in place rather than through `memcmp`.
                bytes[run.at + 1..run.at + 1 + len].iter().cmp(previous.label(run.keep + 1).iter()) == Ordering::Greater
            }
        };
        if after {
            return Ok(());
        }
        let mut found = previous.clone();
        let found = found.apply(run, bytes).map(|()| found.as_str().to_owned());
        Err(Problem::OutOfOrder {
            previous: previous.as_str().to_owned(),
            found: found.unwrap_or_else(|problem| format!("({problem})")),
        })
    }

    fn record(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let kind = cursor.byte()?;
        let slot = match kind {
            TYPE_A => Slot::A(Ipv4Addr::from(<[u8; 4]>::try_from(cursor.take(4)?).map_err(|_| Need::More)?)),
            TYPE_AAAA => Slot::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(cursor.take(16)?).map_err(|_| Need::More)?)),
            TYPE_SRV => {
                let max = u64::from(u16::MAX);
                let priority = cursor.bounded("SRV priority", max)? as u16;
                let weight = cursor.bounded("SRV weight", max)? as u16;
                let port = cursor.bounded("SRV port", max)? as u16;
                Slot::Srv(priority, weight, port, self.target(cursor)?)
            }
            TYPE_PTR => Slot::Ptr(self.target(cursor)?),
            TYPE_CNAME => Slot::Cname(self.target(cursor)?),
            TYPE_NS => Slot::Ns(self.target(cursor)?),
            TYPE_TXT => {
                let len = cursor.bounded("TXT length", MAX_TXT_BYTES as u64)? as usize;
                let text = std::str::from_utf8(cursor.take(len)?).map_err(|_| Problem::TxtNotUtf8)?;
                Slot::Txt(self.keep_text(text))
            }
            TYPE_REPEAT => {
                let kind = cursor.byte()?;
                return self.repeat(kind, visitor);
            }
            TYPE_MEMBER_ADDRESSES => {
                let family = cursor.byte()?;
                return self.member_addresses(family, visitor);
            }
            TYPE_MEMBER_SRV => {
                let max = u64::from(u16::MAX);
                let priority = cursor.bounded("SRV priority", max)? as u16;
                let weight = cursor.bounded("SRV weight", max)? as u16;
                let port = cursor.bounded("SRV port", max)? as u16;
                return self.member_srv(priority, weight, port, visitor);
            }
            other => return Err(Problem::UnknownType(other).into()),
        };
        self.slots.push(slot);
        self.added(1, visitor)
    }

    /// After `count` records were added to the name: the next record, or the name is whole.
    fn added(&mut self, count: u64, visitor: &mut impl Visitor) -> Result<(), Need> {
        self.seen.records += count;
        self.records_left -= count;
        if self.records_left > 0 {
            return Ok(());
        }
        self.seen.names += 1;
        visitor.name(CheckedName(self.name.as_bytes()), Records { slots: &self.slots, text: &self.text });
        std::mem::swap(&mut self.slots, &mut self.previous_slots);
        std::mem::swap(&mut self.text, &mut self.previous_text);
        self.next_section()
    }

    /// Copies the records of type `kind` of the last name that had records.
    fn repeat(&mut self, kind: u8, visitor: &mut impl Visitor) -> Result<(), Need> {
        if !(TYPE_A..=TYPE_NS).contains(&kind) {
            return Err(Problem::UnknownType(kind).into());
        }
        let previous = &self.previous_slots[..];
        let of_kind = |slot: &Slot| slot.type_code() == kind;
        let (Some(first), Some(last)) = (previous.iter().position(of_kind), previous.iter().rposition(of_kind)) else {
            return Err(Problem::NothingToRepeat(kind).into());
        };
        // Records of one type are usually written together (a service's SRV set after its addresses): then
        // the run is one slice, copied with its length known.
        let run = &previous[first..=last];
        let whole = run.iter().all(of_kind);
        let count = if whole { run.len() as u64 } else { run.iter().filter(|slot| of_kind(slot)).count() as u64 };
        if count > self.records_left {
            return Err(Problem::TooLarge { what: "repeated records", value: count, max: self.records_left }.into());
        }
        // The run's texts were written one after the other (with any other types' between): copied in one
        // piece, each slot's span moved by the same amount.
        let mut texts = run.iter().filter_map(Slot::text);
        let (start, end) = match texts.next() {
            Some(span) => (span.start, texts.next_back().unwrap_or(span).end),
            None => (0, 0),
        };
        let by = (self.text.len() as u32).wrapping_sub(start);
        self.text.extend_from_slice(&self.previous_text[start as usize..end as usize]);
        if whole {
            self.slots.extend(run.iter().map(|slot| slot.moved(by)));
        } else {
            self.slots.extend(run.iter().filter(|slot| of_kind(slot)).map(|slot| slot.moved(by)));
        }
        self.added(count, visitor)
    }

    /// The open group's member addresses of `family` (4 or 6).
    fn member_addresses(&mut self, family: u8, visitor: &mut impl Visitor) -> Result<(), Need> {
        let v4 = match family {
            4 => true,
            6 => false,
            other => return Err(Problem::UnknownFamily(other).into()),
        };
        let group = whole_group(&self.group, TYPE_MEMBER_ADDRESSES)?;
        let count = if v4 { group.v4 } else { group.addresses.len() - group.v4 };
        expands_within(count, self.records_left)?;
        if count == 0 {
            return Err(Problem::NoMemberAddress(family).into());
        }
        if count == group.addresses.len() {
            self.slots.extend_from_slice(&group.addresses);
        } else {
            self.slots.extend(group.addresses.iter().filter(|slot| matches!(slot, Slot::A(_)) == v4).copied());
        }
        self.added(count as u64, visitor)
    }

    /// One SRV record to each member of the open group.
    fn member_srv(&mut self, priority: u16, weight: u16, port: u16, visitor: &mut impl Visitor) -> Result<(), Need> {
        let group = whole_group(&self.group, TYPE_MEMBER_SRV)?;
        expands_within(group.members(), self.records_left)?;
        let base = self.text.len() as u32;
        self.text.extend_from_slice(&group.names);
        let mut start = base;
        for &end in &group.name_ends {
            self.slots.push(Slot::Srv(priority, weight, port, Span { start, end: base + end }));
            start = base + end;
        }
        let count = group.members() as u64;
        self.added(count, visitor)
    }

    /// A record's target, checked and kept in `text`. Every target is its record's last field, so the
    /// record is whole once it is read: only then does the previous target change.
    fn target(&mut self, cursor: &mut Cursor<'_>) -> Result<Span, Need> {
        let run = cursor.labels(self.target.depth)?;
        self.target.apply(&run, cursor.bytes)?;
        if self.target.depth == 0 {
            return Err(Problem::BadName { text: String::new(), error: NameError::Empty }.into());
        }
        let start = self.text.len() as u32;
        self.text.extend_from_slice(self.target.as_bytes());
        Ok(Span { start, end: self.text.len() as u32 })
    }

    fn keep_text(&mut self, text: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(text.as_bytes());
        Span { start, end: self.text.len() as u32 }
    }

    fn client(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let (family, max) = match cursor.byte()? {
            4 => (1, u128::from(u32::MAX)),
            6 => (2, u128::MAX),
            other => return Err(Problem::UnknownFamily(other).into()),
        };
        let gap = cursor.varint128()?;
        let known = self.namespaces.len();
        let index = cursor.varint()?;
        let new = if index == known as u64 {
            let len = cursor.bounded("namespace length", 63)? as usize;
            let bytes = cursor.take(len)?;
            let text = std::str::from_utf8(bytes)
                .ok()
                .filter(|text| is_dns1123_label(text))
                .ok_or_else(|| Problem::BadNamespace(String::from_utf8_lossy(bytes).into_owned()))?;
            Some(text.to_owned())
        } else if index > known as u64 {
            return Err(Problem::NamespaceIndex { index, known }.into());
        } else {
            None
        };
        // After the previous client of its family; every IPv4 client before every IPv6 one.
        let (previous_family, previous_bits) = self.previous_client;
        let bits = match previous_family.cmp(&family) {
            Ordering::Less => Some(gap),
            Ordering::Equal => previous_bits.checked_add(gap).and_then(|bits| bits.checked_add(1)),
            Ordering::Greater => {
                let (previous, found) =
                    (address_from_order(self.previous_client), if family == 1 { "IPv4" } else { "IPv6" });
                return Err(Problem::OutOfOrder {
                    previous: previous.to_string(),
                    found: format!("an {found} client"),
                }
                .into());
            }
        };
        let Some(bits) = bits.filter(|&bits| bits <= max) else {
            let previous = address_from_order(self.previous_client);
            return Err(Problem::ClientPastRange { previous: previous.to_string(), gap }.into());
        };
        let order = (family, bits);
        let ip = address_from_order(order);
        self.namespaces.extend(new);
        self.previous_client = order;
        self.seen.clients += 1;
        visitor.client(ip, &self.namespaces[index as usize]);
        if self.seen.clients == self.declared.clients {
            self.stage = Stage::Done;
        }
        Ok(())
    }
}

/// The open group, whole (its members read), for a record of type `kind` that expands it.
fn whole_group(group: &Option<Group>, kind: u8) -> Result<&Group, Problem> {
    group.as_ref().filter(|group| group.left == 0).ok_or(Problem::NoGroup(kind))
}

/// An expansion to `count` records, when the name has only `left` records to come.
fn expands_within(count: usize, left: u64) -> Result<(), Problem> {
    let count = count as u64;
    if count > left {
        return Err(Problem::TooLarge { what: "members' records", value: count, max: left });
    }
    Ok(())
}

/// `ip` as a pair that sorts as `IpAddr` does (every IPv4 address before every IPv6 one; `(0, 0)` before
/// both): integers compared instead of an enum, whose copy through memory stalled the loop.
fn address_order(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (1, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (2, u128::from(v6)),
    }
}

/// The address an [`address_order`] was made from (for messages).
fn address_from_order((family, bits): (u8, u128)) -> IpAddr {
    if family == 1 { IpAddr::V4(Ipv4Addr::from(bits as u32)) } else { IpAddr::V6(Ipv6Addr::from(bits)) }
}

/// An address: its family (4 or 6), then its bytes.
#[inline]
fn address(cursor: &mut Cursor<'_>) -> Result<IpAddr, Need> {
    Ok(match cursor.byte()? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(cursor.take(4)?).map_err(|_| Need::More)?)),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(cursor.take(16)?).map_err(|_| Need::More)?)),
        other => return Err(Problem::UnknownFamily(other).into()),
    })
}

/// Bytes read from a [`Read`] at a time.
const READ_CHUNK: usize = 64 << 10;

/// Decodes a whole packed snapshot from `reader` (to its end), handing its contents to `visitor`.
pub fn decode(mut reader: impl Read, visitor: &mut impl Visitor) -> Result<Summary, PackedError> {
    let mut decoder = Decoder::new();
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => return decoder.finish(),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(decoder.error(Problem::Io(error.to_string()))),
        };
        decoder.feed(&buffer[..read], visitor)?;
    }
}

/// Decodes a whole packed snapshot held in memory into a [`ZoneData`].
pub fn decode_zone(bytes: &[u8]) -> Result<ZoneData, PackedError> {
    let mut zone = ZoneData::default();
    decode(bytes, &mut zone)?;
    Ok(zone)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    /// A zone as synthesis makes them: headless services with pod names, SRV, PTR, an ExternalName,
    /// dual-stack addresses, TXT, NS at the apex, empty non-terminals, clients of both families.
    fn cluster_zone(services: usize, pods: usize) -> ZoneData {
        let apex = name("cluster.local");
        let mut zone = ZoneData::default();
        let mut index = 0u32;
        for s in 0..services {
            let namespace = format!("ns-{}", s % 3);
            let service = name(&format!("set-{s}.{namespace}.svc.cluster.local"));
            let srv = name(&format!("_web._tcp.set-{s}.{namespace}.svc.cluster.local"));
            for p in 0..pods {
                let ip = Ipv4Addr::from(0x0a80_0000 + index);
                let v6: Ipv6Addr = format!("fd00::{index:x}").parse().unwrap();
                index += 1;
                let pod = name(&format!("set-{s}-{p}.set-{s}.{namespace}.svc.cluster.local"));
                for owner in [&pod, &service] {
                    zone.add(owner.clone(), RData::A { ip }, &apex);
                    zone.add(owner.clone(), RData::Aaaa { ip: v6 }, &apex);
                }
                let srv_record = RData::Srv { priority: 0, weight: 10, port: 8080, target: pod.clone() };
                zone.add(srv.clone(), srv_record.clone(), &apex);
                zone.add(service.clone(), srv_record, &apex);
                zone.add(DomainName::reverse_of(IpAddr::V4(ip)), RData::Ptr { target: pod.clone() }, &name("arpa"));
                zone.add(DomainName::reverse_of(IpAddr::V6(v6)), RData::Ptr { target: pod.clone() }, &name("arpa"));
                zone.clients.insert(IpAddr::V4(ip), namespace.clone());
                zone.clients.insert(IpAddr::V6(v6), namespace.clone());
            }
        }
        zone.add(name("ext.ns-0.svc.cluster.local"), RData::Cname { target: name("example.org") }, &apex);
        zone.add(name("cluster.local"), RData::Ns { target: name("ns.dns.cluster.local") }, &apex);
        zone.add(name("dns-version.cluster.local"), RData::Txt { text: "1.1.0".to_owned() }, &apex);
        zone.ensure_name(&name("empty.ns-0.svc.cluster.local"), &apex);
        zone.normalise();
        zone
    }

    /// Decodes `bytes` fed `chunk` bytes at a time.
    fn decode_in_chunks(bytes: &[u8], chunk: usize) -> Result<ZoneData, PackedError> {
        let mut zone = ZoneData::default();
        let mut decoder = Decoder::new();
        for piece in bytes.chunks(chunk) {
            decoder.feed(piece, &mut zone)?;
        }
        decoder.finish()?;
        Ok(zone)
    }

    #[test]
    fn a_cluster_zone_round_trips_in_any_chunking() {
        let mut zone = cluster_zone(4, 5);
        let apex = name("cluster.local");
        zone.add(name("big.cluster.local"), RData::Txt { text: "é".repeat(MAX_TXT_BYTES / 2) }, &apex);
        let bytes = encode(&zone).unwrap();
        for chunk in [1, 2, 3, 7, 64, 4096, bytes.len()] {
            assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone, "chunks of {chunk}");
        }
        let summary = decode(&bytes[..], &mut ZoneData::default()).unwrap();
        // The reverse names of the pods' addresses (4 services × 5 pods × 2) are visited through `ptr`.
        assert_eq!(summary.names, zone.names.len() as u64 - 40);
        assert_eq!(summary.records, zone.record_count() as u64);
        assert_eq!(summary.clients, zone.clients.len() as u64);
        assert_eq!(decode_zone(&encode(&ZoneData::default()).unwrap()).unwrap(), ZoneData::default());
    }

    #[test]
    fn packed_is_several_times_smaller_than_json() {
        let zone = cluster_zone(40, 10);
        let packed = encode(&zone).unwrap().len();
        let json = serde_json::to_vec(&zone).unwrap().len();
        // Dual-stack, so half the names are 72-character IPv6 reverse names: 4.5× here, 8× on IPv4 alone.
        assert!(packed * 4 < json, "packed {packed} bytes, JSON {json}");
        // A pod of this zone (10 records, 2 reverse names, 2 clients) costs ~150 bytes.
        assert!(packed < 400 * 160, "{packed}");
    }

    #[test]
    fn every_truncation_is_refused_by_name() {
        let bytes = encode(&cluster_zone(2, 2)).unwrap();
        for cut in 0..bytes.len() {
            let error = decode_zone(&bytes[..cut]).unwrap_err();
            assert_eq!(error.problem, Problem::Truncated, "cut at {cut}: {error}");
            assert_eq!(decode_in_chunks(&bytes[..cut], 3).unwrap_err().problem, Problem::Truncated, "cut at {cut}");
        }
    }

    #[test]
    fn every_corrupted_byte_is_refused_or_decodes_without_panic() {
        let zone = cluster_zone(2, 2);
        let bytes = encode(&zone).unwrap();
        let mut refused = 0;
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= flip;
                match decode_zone(&corrupt) {
                    Err(error) => {
                        refused += 1;
                        assert!(!error.to_string().is_empty());
                    }
                    // An address or a port changed: another valid zone, never the same one.
                    Ok(other) => assert_ne!(other, zone, "byte {at} ^ {flip:#x}"),
                }
            }
        }
        assert!(refused > bytes.len(), "{refused} of {} corruptions refused", 3 * bytes.len());
    }

    /// A packed header, then `body`.
    fn with_header(names: u64, records: u64, clients: u64, body: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        for count in [names, records, clients] {
            put_varint(&mut bytes, count);
        }
        bytes.extend_from_slice(body);
        bytes
    }

    /// A name written with nothing kept.
    fn fresh(text: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        put_labels(&mut bytes, &mut "", text);
        bytes
    }

    /// `labels` added (from the root outwards) to the `keep` labels kept.
    fn labels(keep: u8, labels: &[&[u8]]) -> Vec<u8> {
        let mut bytes = vec![keep, labels.len() as u8];
        for label in labels {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(label);
        }
        bytes
    }

    #[test]
    fn corruptions_are_refused_with_the_problem_named() {
        let a = fresh("a.cluster.local");
        let b = fresh("b.cluster.local");
        let long = [b'a'; 63];
        let cases: Vec<(Vec<u8>, Problem)> = vec![
            (b"RSPX\x02\0\0\0".to_vec(), Problem::BadMagic),
            (b"{\"kind\"".to_vec(), Problem::BadMagic),
            (b"RSPK\x01\0\0\0".to_vec(), Problem::UnsupportedVersion(1)),
            (b"RSPK\x02\0\0\0".to_vec(), Problem::UnsupportedVersion(2)),
            (with_header(0, 0, 0, b"x"), Problem::TrailingBytes),
            (with_header(0, 1, 0, b""), Problem::CountMismatch { what: "records", declared: 1, found: 0 }),
            (
                with_header(1, 1, 0, &[&a[..], &[0]].concat()),
                Problem::CountMismatch { what: "records", declared: 1, found: 0 },
            ),
            (
                with_header(1, 0, 0, &[&a[..], &[2]].concat()),
                Problem::TooLarge { what: "record count", value: 1, max: 0 },
            ),
            (with_header(1, 1, 0, &[&a[..], &[2, 11]].concat()), Problem::UnknownType(11)),
            // Groups: `a.cluster.local` holding members `x` (10.0.0.1) and then the given label.
            (with_header(2, 1, 0, &[&a[..], &[1, 0, 0]].concat()), Problem::EmptyGroup),
            (with_header(2, 1, 0, &[&a[..], &[1, 1, 2]].concat()), Problem::UnknownGroupFlags(2)),
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1, 0, 1, b'b', 1, 4, 10, 0, 0, 2]].concat(),
                ),
                Problem::MemberOutOfOrder { previous: "x".to_owned(), found: "b".to_owned() },
            ),
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1, 0, 1, b'x', 1, 4, 10, 0, 0, 2]].concat(),
                ),
                Problem::MemberOutOfOrder { previous: "x".to_owned(), found: "x".to_owned() },
            ),
            // A member's label as the start it shares with the previous one and the rest.
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 2, b'x', b'b', 1, 4, 10, 0, 0, 1, 0, 2, b'x', b'a', 1, 4, 10, 0, 0, 2]]
                        .concat(),
                ),
                Problem::MemberOutOfOrder { previous: "xb".to_owned(), found: "xa".to_owned() },
            ),
            (
                with_header(3, 2, 0, &[&a[..], &[1, 2, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1, 2, 1, b'y']].concat()),
                Problem::TooLarge { what: "shared label length", value: 2, max: 1 },
            ),
            (
                with_header(3, 2, 0, &[&a[..], &[1, 2, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1, 1, 63]].concat()),
                Problem::TooLarge { what: "label length", value: 63, max: 62 },
            ),
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 2, b'x', b'b', 1, 4, 10, 0, 0, 1, 1, 1, b'a', 1, 4, 10, 0, 0, 2]].concat(),
                ),
                Problem::MemberOutOfOrder { previous: "xb".to_owned(), found: "xa".to_owned() },
            ),
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 2, b'x', b'b', 1, 4, 10, 0, 0, 1, 2, 0, 1, 4, 10, 0, 0, 2]].concat(),
                ),
                Problem::MemberOutOfOrder { previous: "xb".to_owned(), found: "xb".to_owned() },
            ),
            (
                with_header(
                    3,
                    2,
                    0,
                    &[&a[..], &[1, 2, 0, 0, 2, b'x', b'b', 1, 4, 10, 0, 0, 1, 1, 0, 1, 4, 10, 0, 0, 2]].concat(),
                ),
                Problem::MemberOutOfOrder { previous: "xb".to_owned(), found: "x".to_owned() },
            ),
            (
                with_header(2, 1, 0, &[&a[..], &[1, 1, 0, 0, 1, b'X', 1, 4, 10, 0, 0, 1]].concat()),
                Problem::NotCanonical("X.a.cluster.local".to_owned()),
            ),
            (
                with_header(2, 1, 0, &[&a[..], &[1, 1, 0, 0, 1, b'x', 0]].concat()),
                Problem::TooLarge { what: "member addresses", value: 0, max: 1 },
            ),
            // The name's own records are counted first: its members may not take them (fuzzing found the
            // sum past the header's count).
            (
                with_header(2, 1, 0, &[&a[..], &[3, 1, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1]].concat()),
                Problem::TooLarge { what: "member addresses", value: 1, max: 0 },
            ),
            // The PTR flag doubles a member's records.
            (
                with_header(2, 1, 0, &[&a[..], &[1, 1, 1, 0, 1, b'x', 1, 4, 10, 0, 0, 1]].concat()),
                Problem::TooLarge { what: "member addresses", value: 2, max: 1 },
            ),
            // A member's name written again, below it, or a group inside the group.
            (
                with_header(
                    3,
                    1,
                    0,
                    &[&a[..], &[1, 1, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1], &labels(3, &[b"x"]), &[0]].concat(),
                ),
                Problem::MemberWritten("x.a.cluster.local".to_owned()),
            ),
            (
                with_header(
                    3,
                    1,
                    0,
                    &[&a[..], &[1, 1, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1], &labels(3, &[b"x", b"y"]), &[0]].concat(),
                ),
                Problem::MemberWritten("y.x.a.cluster.local".to_owned()),
            ),
            (
                with_header(
                    4,
                    2,
                    0,
                    &[
                        &a[..],
                        &[1, 1, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1],
                        &labels(3, &[b"y"]),
                        &[1, 1, 0, 0, 1, b'z', 1, 4, 10, 0, 0, 2],
                    ]
                    .concat(),
                ),
                Problem::NestedGroup("y.a.cluster.local".to_owned()),
            ),
            // Members' records with no group open, or more of them than the name has.
            (
                with_header(1, 1, 0, &[&a[..], &[2, TYPE_MEMBER_ADDRESSES, 4]].concat()),
                Problem::NoGroup(TYPE_MEMBER_ADDRESSES),
            ),
            (
                with_header(2, 1, 0, &[&b[..], &[0], &labels(2, &[b"c"]), &[2, TYPE_MEMBER_SRV, 0, 0, 80]].concat()),
                Problem::NoGroup(TYPE_MEMBER_SRV),
            ),
            (
                with_header(
                    2,
                    2,
                    0,
                    &[&a[..], &[3, 1, 0, 0, 1, b'x', 1, 4, 10, 0, 0, 1, TYPE_MEMBER_ADDRESSES, 6]].concat(),
                ),
                Problem::NoMemberAddress(6),
            ),
            (
                with_header(
                    3,
                    3,
                    0,
                    &[
                        &a[..],
                        &[
                            3,
                            2,
                            0,
                            0,
                            1,
                            b'x',
                            1,
                            4,
                            10,
                            0,
                            0,
                            1,
                            0,
                            1,
                            b'y',
                            1,
                            4,
                            10,
                            0,
                            0,
                            2,
                            TYPE_MEMBER_SRV,
                            0,
                            0,
                            80,
                        ],
                    ]
                    .concat(),
                ),
                Problem::TooLarge { what: "members' records", value: 2, max: 1 },
            ),
            (
                with_header(1, 0, 0, &[&fresh("A.cluster.local")[..], &[0]].concat()),
                Problem::NotCanonical("A.cluster.local".to_owned()),
            ),
            // A trailing dot is an empty label next to the root.
            (
                with_header(1, 0, 0, &[&labels(0, &[b"", b"local"])[..], &[0]].concat()),
                Problem::BadName { text: String::new(), error: NameError::EmptyLabel { name: String::new() } },
            ),
            (
                with_header(2, 0, 0, &[&b[..], &[0], &labels(2, &[b"a"]), &[0]].concat()),
                Problem::OutOfOrder { previous: "b.cluster.local".to_owned(), found: "a.cluster.local".to_owned() },
            ),
            (
                with_header(2, 0, 0, &[&a[..], &[0], &labels(3, &[]), &[0]].concat()),
                Problem::OutOfOrder { previous: "a.cluster.local".to_owned(), found: "a.cluster.local".to_owned() },
            ),
            // An ancestor of the name before comes before it.
            (
                with_header(2, 0, 0, &[&a[..], &[0], &labels(2, &[]), &[0]].concat()),
                Problem::OutOfOrder { previous: "a.cluster.local".to_owned(), found: "cluster.local".to_owned() },
            ),
            // More labels kept than the previous name has.
            (
                with_header(2, 0, 0, &[&a[..], &[0], &labels(4, &[b"x"])].concat()),
                Problem::TooLarge { what: "kept labels", value: 4, max: 3 },
            ),
            (with_header(1, 0, 0, &[0, 0xc8, 0x01]), Problem::TooLarge { what: "added labels", value: 200, max: 127 }),
            (with_header(1, 0, 0, &[0, 1, 64]), Problem::TooLarge { what: "label length", value: 64, max: 63 }),
            (
                with_header(1, 0, 0, &[&labels(0, &[&long, &long, &long, &long])[..], &[0]].concat()),
                Problem::BadName {
                    text: format!("{0}.{0}.{0}.{0}", "a".repeat(63)),
                    error: NameError::TooLong(format!("{0}.{0}.{0}.{0}", "a".repeat(63))),
                },
            ),
            (with_header(1, 0, 0, &[&labels(0, &[&[0xc3, 0xa9]])[..], &[0]].concat()), Problem::NotAscii),
            (with_header(u64::MAX, 0, 0, &[0xff; 11]), Problem::VarintTooLong(64)),
            (
                with_header(1, 1, 0, &[&a[..], &[2, TYPE_TXT, 0xff, 0xff, 0x04]].concat()),
                Problem::TooLarge { what: "TXT length", value: 0x1_3fff, max: MAX_TXT_BYTES as u64 },
            ),
            (with_header(1, 1, 0, &[&a[..], &[2, TYPE_TXT, 2, 0xc3, 0x28]].concat()), Problem::TxtNotUtf8),
            (
                with_header(1, 1, 0, &[&a[..], &[2, TYPE_SRV, 0, 0, 0x80, 0x80, 0x04]].concat()),
                Problem::TooLarge { what: "SRV port", value: 0x1_0000, max: 65_535 },
            ),
            // A target with no label.
            (
                with_header(1, 1, 0, &[&a[..], &[2, TYPE_PTR, 0, 0]].concat()),
                Problem::BadName { text: String::new(), error: NameError::Empty },
            ),
            // A target keeps at most the previous target's labels.
            (
                with_header(1, 1, 0, &[&a[..], &[2, TYPE_PTR, 1, 0]].concat()),
                Problem::TooLarge { what: "kept labels", value: 1, max: 0 },
            ),
            (with_header(1, 1, 0, &[&a[..], &[2, TYPE_REPEAT, TYPE_A]].concat()), Problem::NothingToRepeat(TYPE_A)),
            (with_header(1, 1, 0, &[&a[..], &[2, TYPE_REPEAT, 0]].concat()), Problem::UnknownType(0)),
            (
                with_header(
                    2,
                    3,
                    0,
                    &[
                        &a[..],
                        &[4, TYPE_A, 1, 1, 1, 1, TYPE_A, 2, 2, 2, 2],
                        &labels(2, &[b"b"]),
                        &[2, TYPE_REPEAT, TYPE_A],
                    ]
                    .concat(),
                ),
                Problem::TooLarge { what: "repeated records", value: 2, max: 1 },
            ),
            (with_header(0, 0, 1, &[5, 1, 2, 3, 4]), Problem::UnknownFamily(5)),
            (with_header(0, 0, 1, &[4, 10, 1]), Problem::NamespaceIndex { index: 1, known: 0 }),
            (with_header(0, 0, 1, &[4, 10, 0, 2, b'A', b'b']), Problem::BadNamespace("Ab".to_owned())),
            // Clients are written as gaps, so only a family out of order or a gap out of range remains.
            (
                with_header(0, 0, 2, &[6, 1, 0, 1, b'a', 4, 1, 0]),
                Problem::OutOfOrder { previous: "::1".to_owned(), found: "an IPv4 client".to_owned() },
            ),
            (
                with_header(0, 0, 2, &[4, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 1, b'a', 4, 1, 0]),
                Problem::ClientPastRange { previous: "255.255.255.254".to_owned(), gap: 1 },
            ),
            (with_header(0, 0, 1, &[&[6][..], &[0xff; 18], &[0x04]].concat()), Problem::VarintTooLong(128)),
        ];
        for (bytes, problem) in cases {
            for chunk in [1, bytes.len().max(1)] {
                let error = decode_in_chunks(&bytes, chunk).unwrap_err();
                assert_eq!(error.problem, problem, "{error} (chunks of {chunk})");
            }
        }
        let bad_label = with_header(1, 0, 0, &[&fresh("-a.cluster.local")[..], &[0]].concat());
        let error = decode_zone(&bad_label).unwrap_err();
        assert!(matches!(error.problem, Problem::BadName { .. }), "{error}");
        assert_eq!(error.at, "name 1 of 1");
        assert!(error.to_string().contains("`-a.cluster.local` is not a name"), "{error}");
        let bad_target = with_header(1, 1, 0, &[&a[..], &[2, TYPE_PTR], &fresh("x_y.cluster.local")].concat());
        let error = decode_zone(&bad_target).unwrap_err();
        assert_eq!(error.at, "record 1 of name 1 (`a.cluster.local`)");
        assert!(error.to_string().contains("`x_y.cluster.local` is not a name"), "{error}");
    }

    #[test]
    fn names_come_in_canonical_order_each_written_as_its_new_labels() {
        let apex = name("cluster.local");
        let mut zone = ZoneData::default();
        for text in ["b.a.cluster.local", "a-b.cluster.local", "_x.a.cluster.local", "z.cluster.local"] {
            zone.add(name(text), RData::Ptr { target: name("t.a.cluster.local") }, &apex);
        }
        let bytes = encode(&zone).unwrap();
        struct Order(Vec<String>);
        impl Visitor for Order {
            fn name(&mut self, name: CheckedName<'_>, records: Records<'_>) {
                assert!(
                    records.iter().all(|r| r == Record::Ptr(CheckedName(b"t.a.cluster.local"))) || records.is_empty()
                );
                self.0.push(name.as_str().to_owned());
            }
            fn ptr(&mut self, _: IpAddr, _: CheckedName<'_>) {}
            fn client(&mut self, _: IpAddr, _: &str) {}
        }
        let mut order = Order(Vec::new());
        decode(&bytes[..], &mut order).unwrap();
        // Labels compared from the root: `a` before `a-b`, `_x` before `b` (0x5f < 0x62).
        let want = [
            "cluster.local",
            "a.cluster.local",
            "_x.a.cluster.local",
            "b.a.cluster.local",
            "a-b.cluster.local",
            "z.cluster.local",
        ];
        assert_eq!(order.0, want);
        // `b.a.cluster.local` after `_x.a.cluster.local`: keeps 3 labels, adds `b`; its PTR record is the
        // one `_x.a.cluster.local` has: a repeat.
        let b = [&labels(3, &[b"b"])[..], &[2, TYPE_REPEAT, TYPE_PTR]].concat();
        assert!(bytes.windows(b.len()).any(|w| w == b), "{bytes:?}");
        // Without a repeat, the same target again adds no label.
        let mut zone = ZoneData::default();
        let target = RData::Ptr { target: name("t.cluster.local") };
        zone.add(name("a.cluster.local"), target.clone(), &apex);
        zone.add(name("b.cluster.local"), target, &apex);
        zone.add(name("b.cluster.local"), RData::Ptr { target: name("x.cluster.local") }, &apex);
        let bytes = encode(&zone).unwrap();
        let b = [&labels(2, &[b"b"])[..], &[4, TYPE_PTR, 3, 0, TYPE_PTR, 2, 1, 1, b'x']].concat();
        assert!(bytes.windows(b.len()).any(|w| w == b), "{bytes:?}");
        assert_eq!(decode_zone(&bytes).unwrap(), zone);
    }

    #[test]
    fn a_hostile_header_allocates_nothing_ahead() {
        // Counts of 2^63 and lengths at their bounds: refused or waited for, never reserved.
        let mut decoder = Decoder::new();
        let bytes = with_header(1 << 63, 1 << 63, 1 << 63, &[0, 1, 63]);
        decoder.feed(&bytes, &mut ZoneData::default()).unwrap();
        assert!(decoder.pending.capacity() < 1024, "{}", decoder.pending.capacity());
        assert_eq!(decoder.finish().unwrap_err().problem, Problem::Truncated);
        // An item never waits for more than its bound: a TXT length past it is refused at once.
        let mut decoder = Decoder::new();
        let a = fresh("a.cluster.local");
        let bytes = with_header(1, 1, 0, &[&a[..], &[2, TYPE_TXT, 0x80, 0x80, 0x80, 0x80, 0x01]].concat());
        let error = decoder.feed(&bytes, &mut ZoneData::default()).unwrap_err();
        assert!(matches!(error.problem, Problem::TooLarge { what: "TXT length", .. }), "{error}");
        assert_eq!(decoder.feed(b"", &mut ZoneData::default()).unwrap_err().problem, Problem::Failed);
    }

    #[test]
    fn zones_that_cannot_be_packed_say_why() {
        let apex = name("cluster.local");
        let mut zone = ZoneData::default();
        zone.add(name("t.cluster.local"), RData::Txt { text: "x".repeat(MAX_TXT_BYTES + 1) }, &apex);
        assert!(matches!(encode(&zone), Err(PackError::TxtTooLong { .. })));
        let mut zone = ZoneData::default();
        zone.clients.insert("10.0.0.1".parse().unwrap(), "Not A Label".to_owned());
        assert!(matches!(encode(&zone), Err(PackError::BadNamespace { .. })));
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?|_[a-z]{1,5}"
    }

    fn domain() -> impl Strategy<Value = DomainName> {
        prop::collection::vec(label(), 1..5).prop_map(|labels| name(&labels.join(".")))
    }

    fn rdata() -> impl Strategy<Value = RData> {
        prop_oneof![
            any::<Ipv4Addr>().prop_map(|ip| RData::A { ip }),
            any::<Ipv6Addr>().prop_map(|ip| RData::Aaaa { ip }),
            (any::<u16>(), any::<u16>(), any::<u16>(), domain())
                .prop_map(|(priority, weight, port, target)| RData::Srv { priority, weight, port, target }),
            domain().prop_map(|target| RData::Ptr { target }),
            domain().prop_map(|target| RData::Cname { target }),
            domain().prop_map(|target| RData::Ns { target }),
            ".{0,40}".prop_map(|text| RData::Txt { text }),
        ]
    }

    fn any_zone() -> impl Strategy<Value = ZoneData> {
        let names = prop::collection::btree_map(domain(), prop::collection::vec(rdata(), 0..4), 0..30);
        let clients = prop::collection::btree_map(any::<IpAddr>(), "[a-z]([a-z0-9-]{0,8}[a-z0-9])?", 0..10);
        (names, clients).prop_map(|(names, clients)| ZoneData { names, clients })
    }

    /// Services holding members that share addresses now and then (so some PTRs cannot be implied), with
    /// SRV sets whose targets are the members or not, and stray names beside and below the members.
    fn grouped_zone() -> impl Strategy<Value = ZoneData> {
        let member = ("[a-z]{1,3}(-[0-9])?", prop::collection::vec(0u8..24, 1..3), any::<bool>());
        let service =
            ("[a-c]{1,2}", prop::collection::vec(member, 1..6), prop::collection::vec((0u16..2, 0u16..3), 0..3));
        (prop::collection::vec(service, 0..5), any::<bool>()).prop_map(|(services, normalise)| {
            let apex = name("cluster.local");
            let mut zone = ZoneData::default();
            for (service, members, ports) in services {
                let service = name(&format!("{service}.ns.svc.cluster.local"));
                zone.ensure_name(&service, &apex);
                for (label, addresses, stray) in members {
                    let own = name(&format!("{label}.{service}"));
                    for (i, last) in addresses.iter().enumerate() {
                        let ip = if i % 2 == 0 {
                            IpAddr::V4(Ipv4Addr::new(10, 0, 0, *last))
                        } else {
                            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(*last)))
                        };
                        let address = match ip {
                            IpAddr::V4(ip) => RData::A { ip },
                            IpAddr::V6(ip) => RData::Aaaa { ip },
                        };
                        zone.add(own.clone(), address.clone(), &apex);
                        zone.add(service.clone(), address, &apex);
                        zone.add(DomainName::reverse_of(ip), RData::Ptr { target: own.clone() }, &name("arpa"));
                    }
                    for (port, weight) in &ports {
                        let srv = RData::Srv { priority: 0, weight: *weight, port: *port, target: own.clone() };
                        zone.add(service.clone(), srv.clone(), &apex);
                        zone.add(
                            service.prefixed(&["_tcp"]).unwrap().prefixed(&[&format!("_p{port}")]).unwrap(),
                            srv,
                            &apex,
                        );
                    }
                    if stray {
                        zone.add(name(&format!("x.{own}")), RData::Txt { text: String::new() }, &apex);
                    }
                }
            }
            if normalise {
                zone.normalise();
            }
            zone
        })
    }

    /// Labels are copied in pieces by their length (`copy_short`): every length from 1 to 63, as a written
    /// name's label and as a group member's, sharing with the member before it starts of every length.
    #[test]
    fn labels_of_every_length_round_trip() {
        let apex = name("cluster.local");
        let mut zone = ZoneData::default();
        for len in 1..=MAX_LABEL_LEN {
            let label: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            zone.add(name(&format!("{label}.names.cluster.local")), RData::Txt { text: label.clone() }, &apex);
            // Members `xx…xa` (len bytes) then `xx…xb`: the second shares len - 1 bytes with the first.
            let stem = "x".repeat(len - 1);
            for (last, ip) in [('a', 2 * len as u32), ('b', 2 * len as u32 + 1)] {
                let member = name(&format!("{stem}{last}.set.ns.svc.cluster.local"));
                let ip = Ipv4Addr::from(0x0a00_0000 + ip);
                zone.add(member.clone(), RData::A { ip }, &apex);
                zone.add(name("set.ns.svc.cluster.local"), RData::A { ip }, &apex);
                zone.add(DomainName::reverse_of(IpAddr::V4(ip)), RData::Ptr { target: member }, &name("arpa"));
            }
        }
        zone.normalise();
        let bytes = encode(&zone).unwrap();
        assert!(bytes.windows(2).any(|w| w == [TYPE_MEMBER_ADDRESSES, 4]), "written as a group");
        for chunk in [1, 7, bytes.len()] {
            assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone, "chunks of {chunk}");
        }
    }

    #[test]
    fn headless_services_are_written_as_groups() {
        let zone = cluster_zone(3, 4);
        let bytes = encode(&zone).unwrap();
        // Every pod is a member: its own name, both reverse names and the service's addresses and SRV
        // targets are no longer written.
        let srv = [TYPE_MEMBER_SRV, 0, 10, 0x90, 0x3f];
        assert_eq!(bytes.windows(srv.len()).filter(|w| *w == srv).count(), 3, "{bytes:?}");
        let addresses = [TYPE_MEMBER_ADDRESSES, 4, TYPE_MEMBER_ADDRESSES, 6];
        assert_eq!(bytes.windows(4).filter(|w| *w == addresses).count(), 3);
        // The pods' reverse names (3 × 4 × 2) come as implied PTRs, not as names.
        let summary = decode(&bytes[..], &mut ZoneData::default()).unwrap();
        assert_eq!(summary.names, zone.names.len() as u64 - 24);
        assert_eq!(decode_zone(&bytes).unwrap(), zone);
    }

    #[test]
    fn a_repeat_copies_a_whole_record_set_or_the_records_of_one_type() {
        let mut zone = ZoneData::default();
        let srv = |target: &str| RData::Srv { priority: 0, weight: 10, port: 80, target: name(target) };
        let set = [srv("t1.cluster.local"), srv("t2.cluster.local")];
        let a = RData::A { ip: Ipv4Addr::new(10, 0, 0, 1) };
        let txt = RData::Txt { text: "hello".to_owned() };
        // b repeats the SRV records of a mixed set; c all of b's; d adds them after a TXT record.
        zone.names.insert(name("a.cluster.local"), [&[a.clone()][..], &set].concat());
        zone.names.insert(name("b.cluster.local"), set.to_vec());
        zone.names.insert(name("c.cluster.local"), set.to_vec());
        zone.names.insert(name("d.cluster.local"), [&[txt][..], &set].concat());
        // f repeats e's one PTR record, after e's TXT record's text.
        let (txt, ptr) = (RData::Txt { text: "hi".to_owned() }, RData::Ptr { target: name("t3.cluster.local") });
        zone.names.insert(name("e.cluster.local"), vec![txt, ptr.clone()]);
        zone.names.insert(name("f.cluster.local"), vec![a, ptr]);
        // h repeats the SRV records of g, which has an A record between them (a run that is not one slice).
        let aa = RData::A { ip: Ipv4Addr::new(10, 0, 0, 2) };
        zone.names.insert(name("g.cluster.local"), vec![set[0].clone(), aa, set[1].clone()]);
        zone.names.insert(name("h.cluster.local"), set.to_vec());
        let bytes = encode(&zone).unwrap();
        assert_eq!(bytes.windows(2).filter(|w| *w == [TYPE_REPEAT, TYPE_SRV]).count(), 4, "{bytes:?}");
        assert_eq!(bytes.windows(2).filter(|w| *w == [TYPE_REPEAT, TYPE_PTR]).count(), 1, "{bytes:?}");
        for chunk in [1, 2, 5, bytes.len()] {
            assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_repeat_after_its_group_closed_copies_the_members_srv_records() {
        let mut zone = ZoneData::default();
        let srv = |target: &str| RData::Srv { priority: 0, weight: 10, port: 80, target: name(target) };
        let set = vec![srv("x.a.cluster.local"), srv("y.a.cluster.local")];
        zone.names.insert(name("a.cluster.local"), set.clone());
        zone.names.insert(name("x.a.cluster.local"), vec![RData::A { ip: Ipv4Addr::new(10, 0, 0, 1) }]);
        zone.names.insert(name("y.a.cluster.local"), vec![RData::A { ip: Ipv4Addr::new(10, 0, 0, 2) }]);
        // Outside the group: the same SRV set, written as a repeat of the group's expansion.
        zone.names.insert(name("b.cluster.local"), set);
        let bytes = encode(&zone).unwrap();
        assert!(bytes.windows(2).any(|w| w == [TYPE_REPEAT, TYPE_SRV]), "{bytes:?}");
        assert!(bytes.windows(1).any(|w| w == [TYPE_MEMBER_SRV]), "{bytes:?}");
        for chunk in [1, 3, bytes.len()] {
            assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone, "chunks of {chunk}");
        }
        let mut counted = Summary { names: 0, records: 0, clients: 0 };
        struct Count<'a>(&'a mut Summary);
        impl Visitor for Count<'_> {
            fn name(&mut self, _: CheckedName<'_>, records: Records<'_>) {
                assert_eq!(records.len(), records.iter().count());
                self.0.records += records.len() as u64;
            }
            fn ptr(&mut self, _: IpAddr, _: CheckedName<'_>) {}
            fn client(&mut self, _: IpAddr, _: &str) {}
        }
        decode(&bytes[..], &mut Count(&mut counted)).unwrap();
        assert_eq!(counted.records, 6);
    }

    #[test]
    fn member_labels_share_their_start_and_clients_are_gaps() {
        let mut zone = ZoneData::default();
        let service = name("web.default.svc.cluster.local");
        zone.names.insert(service.clone(), vec![]);
        for (ordinal, ip) in [(0, [10, 0, 0, 7]), (1, [10, 0, 0, 3]), (10, [10, 0, 1, 9])] {
            let pod = name(&format!("web-{ordinal}.web.default.svc.cluster.local"));
            zone.names.insert(pod, vec![RData::A { ip: Ipv4Addr::from(ip) }]);
        }
        for (ip, namespace) in
            [("10.0.0.3", "a"), ("10.0.0.7", "a"), ("10.0.1.9", "b"), ("fd00::1", "a"), ("fd00::2", "b")]
        {
            zone.clients.insert(ip.parse().unwrap(), namespace.to_owned());
        }
        let bytes = encode(&zone).unwrap();
        // `web-0`, then `web-1` as 4 shared bytes and `1`, then `web-10` as all 5 of those and `0`.
        let members =
            [0, 5, b'w', b'e', b'b', b'-', b'0', 1, 4, 10, 0, 0, 7, 4, 1, b'1', 1, 4, 10, 0, 0, 3, 5, 1, b'0'];
        assert!(bytes.windows(members.len()).any(|w| w == members), "{bytes:?}");
        // 10.0.0.3 from nothing; 10.0.0.7 three past it; 10.0.1.9 257 past that (a two-byte varint); then
        // the first IPv6 client in full and the next 0 past it.
        let mut clients = vec![4, 0x83, 0x80, 0x80, 0x50, 0, 1, b'a', 4, 3, 0, 4, 0x81, 0x02, 1, 1, b'b', 6];
        put_varint128(&mut clients, u128::from("fd00::1".parse::<Ipv6Addr>().unwrap()));
        clients.extend_from_slice(&[0, 6, 0, 1]);
        assert!(bytes.ends_with(&clients), "{bytes:?}");
        assert_eq!(decode_zone(&bytes).unwrap(), zone);
        // A member that shares less than it could is read all the same.
        let written = [4, 1, b'1'];
        let at = bytes.windows(3).position(|w| w == written).unwrap();
        let longer = [&bytes[..at], &[2, 3, b'b', b'-', b'1'], &bytes[at + 3..]].concat();
        assert_eq!(decode_zone(&longer).unwrap(), zone);
    }

    proptest! {
        #[test]
        fn grouped_zones_round_trip(zone in grouped_zone(), chunk in 1usize..50) {
            let bytes = encode(&zone).unwrap();
            prop_assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone);
        }

        #[test]
        fn any_zone_round_trips(zone in any_zone(), chunk in 1usize..50) {
            let bytes = encode(&zone).unwrap();
            prop_assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone);
        }

        #[test]
        fn canonical_keys_sort_names_label_by_label_from_the_root(a in domain(), b in domain()) {
            let labelwise = a.as_str().rsplit('.').cmp(b.as_str().rsplit('.'));
            prop_assert_eq!(canonical_key(a.as_str()).cmp(&canonical_key(b.as_str())), labelwise);
        }

        #[test]
        fn any_bytes_are_decoded_or_refused_without_panic(body in prop::collection::vec(any::<u8>(), 0..200), counts in (0u64..4, 0u64..6, 0u64..3)) {
            let _ = decode_zone(&with_header(counts.0, counts.1, counts.2, &body));
        }
    }
}
