//! DNS wire format for the authoritative path: names as lowercase wire bytes, each name's record sets
//! precompiled into one allocation ([`Node`]), and a response writer that compresses names against the
//! names already in the message (RFC 1035 §4.1.4), as Knot and NSD do.
//!
//! Everything here trusts its input: names and nodes are built by this crate from validated data, so
//! the parsers below only guard against running off the end, never against hostile bytes — except
//! [`WireName::from_name`], which takes names from requests.

use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

/// Longest name on the wire (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;

/// A domain name in wire form on the stack, lowercased (the key the store is searched with) unless
/// made by [`WireName::with_case`].
#[derive(Clone)]
pub struct WireName {
    bytes: [u8; MAX_NAME],
    len: usize,
}

impl WireName {
    /// The lowercase wire form of `name` (always fully qualified); `None` if it does not fit.
    pub fn from_name(name: &Name) -> Option<Self> {
        Self::encode(name, true)
    }

    /// The wire form of `name` in its own case (a forwarded record's owner).
    pub fn with_case(name: &Name) -> Option<Self> {
        Self::encode(name, false)
    }

    fn encode(name: &Name, lowercase: bool) -> Option<Self> {
        let mut out = Self { bytes: [0; MAX_NAME], len: 0 };
        for label in name.iter() {
            let end = out.len + 1 + label.len();
            if label.is_empty() || label.len() > 63 || end >= MAX_NAME {
                return None;
            }
            out.bytes[out.len] = u8::try_from(label.len()).ok()?;
            out.bytes[out.len + 1..end].copy_from_slice(label);
            if lowercase {
                out.bytes[out.len + 1..end].make_ascii_lowercase();
            }
            out.len = end;
        }
        out.bytes[out.len] = 0;
        out.len += 1;
        Some(out)
    }

    /// The lowercase wire form of the name a raw question section starts with, when it is written
    /// uncompressed (as every client writes it); `None` otherwise (then [`Self::from_name`] of the
    /// parsed name). Cheaper than walking the parsed name's labels.
    pub fn from_question(question: &[u8]) -> Option<Self> {
        let mut out = Self { bytes: [0; MAX_NAME], len: 0 };
        loop {
            let len = usize::from(*question.get(out.len)?);
            if len == 0 {
                break;
            }
            // Pointers and extended label types (0x40, 0x80, 0xC0) are left to the parsed name.
            let end = out.len + 1 + len;
            if len > 63 || end >= MAX_NAME {
                return None;
            }
            out.bytes[out.len..end].copy_from_slice(question.get(out.len..end)?);
            out.bytes[out.len + 1..end].make_ascii_lowercase();
            out.len = end;
        }
        out.bytes[out.len] = 0;
        out.len += 1;
        Some(out)
    }

    /// Copies a wire name this crate produced (lowercase, uncompressed).
    pub fn from_wire(wire: &[u8]) -> Option<Self> {
        if wire.is_empty() || wire.len() > MAX_NAME {
            return None;
        }
        let mut out = Self { bytes: [0; MAX_NAME], len: wire.len() };
        out.bytes[..wire.len()].copy_from_slice(wire);
        Some(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The wire form of a hickory name, lowercased (tests compare the store's own encoding with it).
#[cfg(test)]
pub(crate) fn name_bytes(name: &Name) -> Vec<u8> {
    WireName::from_name(name).map_or_else(|| vec![0], |wire| wire.as_bytes().to_vec())
}

/// The name without its first label; `None` for the root.
pub fn parent(name: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*name.first()?);
    if len == 0 { None } else { name.get(1 + len..) }
}

/// The first label's bytes (empty for the root).
pub fn first_label(name: &[u8]) -> &[u8] {
    let len = name.first().map_or(0, |l| usize::from(*l));
    name.get(1..1 + len).unwrap_or_default()
}

pub fn label_count(name: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = name;
    while let Some(up) = parent(rest) {
        count += 1;
        rest = up;
    }
    count
}

/// True when `name` is `apex` or below it.
pub fn is_within(name: &[u8], apex: &[u8]) -> bool {
    // Up to the first suffix no longer than the apex, then one comparison.
    let mut rest = name;
    while rest.len() > apex.len() {
        match parent(rest) {
            Some(up) => rest = up,
            None => return false,
        }
    }
    rest == apex
}

/// A hickory name from wire bytes this crate produced.
pub fn to_hickory(name: &[u8]) -> Name {
    let mut labels = Vec::new();
    let mut rest = name;
    while let Some(up) = parent(rest) {
        labels.push(first_label(rest));
        rest = up;
    }
    Name::from_labels(labels).unwrap_or_else(|_| Name::root())
}

fn get_u16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// A stored u32 as usize (a node is one allocation, far below 4 GiB, so every length fits).
fn get_u32(bytes: &[u8], at: usize) -> usize {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX),
        _ => 0,
    }
}

/// `value` as a stored u32. Sets come from the record stream; one beyond 4 GiB cannot be built in the
/// first place, so the fallback is unreachable in practice and never silently wraps.
fn put_u32(blob: &mut Vec<u8>, value: usize) {
    blob.extend_from_slice(&u32::try_from(value).unwrap_or(u32::MAX).to_be_bytes());
}

/// Where names sit in an rdata of type `rtype`, for compression: (bytes before them, how many). Only
/// RFC 1035 types may be compressed (RFC 3597 §4): PTR, CNAME and NS are one name, SOA starts with
/// two, MX has one after its preference. SRV targets are deliberately absent (RFC 2782).
fn compressible_names(rtype: u16) -> (usize, usize) {
    match RecordType::from(rtype) {
        RecordType::PTR | RecordType::CNAME | RecordType::NS => (0, 1),
        RecordType::SOA => (0, 2),
        RecordType::MX => (2, 1),
        _ => (0, 0),
    }
}

/// One name's record sets, precompiled to wire rdata in a single shared allocation (no hickory `Record`s:
/// those cost ~250 bytes each plus a heap name). Layout:
/// `[name len][name]` then per set `[type u16][count u32][bytes u32]` followed by `bytes` of records,
/// each `[rdlength u16][rdata]`. An empty non-terminal has no sets. Count and length are 32 bits: a
/// headless service's SRV set passes 65,535 bytes at ~1,100 endpoints (16-bit lengths saturated
/// there, and the next set's header was read from inside a record).
#[derive(Clone, PartialEq, Eq)]
pub struct Node(Arc<[u8]>);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &to_hickory(self.name())).field("bytes", &self.0.len()).finish()
    }
}

/// Sets are this many bytes of header before their records.
const SET_HEADER: usize = 10;

/// Writes nodes record by record into one scratch buffer, then copies each into its own allocation:
/// one allocation per node, none per record (building through [`Node::build`] cost a `Vec` per rdata
/// and a second copy of each node; bench/README.md, "Start-up"). The same layout as [`Node::build`]:
/// call [`Self::start`], then per set, in the order the sets are to be kept, [`Self::set`] and
/// [`Self::record`] per record, then [`Self::finish`].
#[derive(Debug, Default)]
pub struct NodeWriter {
    blob: Vec<u8>,
    /// Where the open set's header starts, and how many records it has.
    open_set: Option<(usize, usize)>,
}

impl NodeWriter {
    /// Begins a node; `write_name` appends the owner's lowercase wire name (at most 255 bytes).
    pub fn start(&mut self, write_name: impl FnOnce(&mut Vec<u8>)) {
        self.blob.clear();
        self.open_set = None;
        self.blob.push(0);
        write_name(&mut self.blob);
        self.blob[0] = u8::try_from(self.blob.len() - 1).unwrap_or(0);
    }

    /// Begins the next set.
    pub fn set(&mut self, rtype: RecordType) {
        self.close_set();
        self.open_set = Some((self.blob.len(), 0));
        self.blob.extend_from_slice(&u16::from(rtype).to_be_bytes());
        self.blob.extend_from_slice(&[0; SET_HEADER - 2]);
    }

    /// Adds a record to the open set; `write_rdata` appends its wire rdata.
    pub fn record(&mut self, write_rdata: impl FnOnce(&mut Vec<u8>)) {
        let at = self.blob.len();
        self.blob.extend_from_slice(&[0, 0]);
        write_rdata(&mut self.blob);
        let len = self.blob.len() - at - 2;
        debug_assert!(len <= usize::from(u16::MAX));
        self.blob[at..at + 2].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        if let Some((_, count)) = &mut self.open_set {
            *count += 1;
        }
    }

    fn close_set(&mut self) {
        if let Some((at, count)) = self.open_set.take() {
            let bytes = self.blob.len() - at - SET_HEADER;
            let stored = |value: usize| u32::try_from(value).unwrap_or(u32::MAX).to_be_bytes();
            self.blob[at + 2..at + 6].copy_from_slice(&stored(count));
            self.blob[at + 6..at + SET_HEADER].copy_from_slice(&stored(bytes));
        }
    }

    /// The node written since [`Self::start`].
    pub fn finish(&mut self) -> Node {
        self.close_set();
        Node(Arc::from(self.blob.as_slice()))
    }
}

impl Node {
    /// Builds a node from sets of wire rdata, kept in the order given.
    pub fn build(name: &[u8], sets: &[(RecordType, Vec<Vec<u8>>)]) -> Self {
        let size = 1
            + name.len()
            + sets.iter().map(|(_, list)| SET_HEADER + list.iter().map(|r| 2 + r.len()).sum::<usize>()).sum::<usize>();
        let mut blob = Vec::with_capacity(size);
        blob.push(u8::try_from(name.len()).unwrap_or(0));
        blob.extend_from_slice(name);
        for (rtype, list) in sets {
            let bytes: usize = list.iter().map(|r| 2 + r.len()).sum();
            blob.extend_from_slice(&u16::from(*rtype).to_be_bytes());
            put_u32(&mut blob, list.len());
            put_u32(&mut blob, bytes);
            for rdata in list {
                // Rdata is at most 65,535 bytes on the wire; ours (addresses, one name, short TXT) is
                // far below.
                debug_assert!(rdata.len() <= usize::from(u16::MAX));
                blob.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(u16::MAX).to_be_bytes());
                blob.extend_from_slice(rdata);
            }
        }
        Self(Arc::from(blob))
    }

    /// The owner name, lowercase wire form.
    pub fn name(&self) -> &[u8] {
        let len = usize::from(self.0[0]);
        &self.0[1..1 + len]
    }

    /// (type, offset of the set header) of every set.
    fn sets(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        let mut at = 1 + usize::from(self.0[0]);
        std::iter::from_fn(move || {
            if at + SET_HEADER > self.0.len() {
                return None;
            }
            let here = at;
            at += SET_HEADER + get_u32(&self.0, at + 6);
            Some((get_u16(&self.0, here), here))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sets().next().is_none()
    }

    /// The types of the sets, in stored order.
    pub fn types(&self) -> impl Iterator<Item = RecordType> + '_ {
        self.sets().map(|(t, _)| RecordType::from(t))
    }

    pub fn has(&self, rtype: RecordType) -> bool {
        let wanted = u16::from(rtype);
        self.sets().any(|(t, _)| t == wanted)
    }

    /// The set of `rtype`, sharing this node's allocation.
    pub fn set(&self, rtype: RecordType) -> Option<Set> {
        let wanted = u16::from(rtype);
        self.sets().find(|(t, _)| *t == wanted).map(|(_, at)| Set { node: self.clone(), at })
    }

    /// The first set in type order (the minimal answer to ANY, RFC 8482).
    pub fn first(&self) -> Option<Set> {
        self.sets().next().map(|(_, at)| Set { node: self.clone(), at })
    }

    /// Heap bytes of this node (for tests and sizing).
    pub fn heap_len(&self) -> usize {
        self.0.len()
    }
}

/// One record set inside a [`Node`]: owner, type and the records' wire rdata.
#[derive(Clone, Debug)]
pub struct Set {
    node: Node,
    at: usize,
}

impl Set {
    pub fn owner(&self) -> &[u8] {
        self.node.name()
    }

    pub fn rtype(&self) -> RecordType {
        RecordType::from(get_u16(&self.node.0, self.at))
    }

    pub fn len(&self) -> usize {
        get_u32(&self.node.0, self.at + 2)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records' rdata, in stored order.
    pub fn rdatas(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let blob = &self.node.0;
        let start = self.at + SET_HEADER;
        let end = start + get_u32(blob, self.at + 6);
        let mut at = start;
        std::iter::from_fn(move || {
            if at + 2 > end {
                return None;
            }
            let len = usize::from(get_u16(blob, at));
            let rdata = blob.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            Some(rdata)
        })
    }
}

/// Sections of a message, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// Compression targets remembered per message: label starts of names written in full. 64 covers the
/// question and a handful of distinct targets; beyond it names are written uncompressed (still valid).
const MAX_TARGETS: usize = 64;
/// Starts of whole names written with at least their first label (SRV targets, CNAME targets, owners
/// not found elsewhere): the next record's owner is usually one of them, in the order written (an SRV
/// answer's additional addresses follow its targets), so it is found with one or two comparisons.
const MAX_NAMES: usize = 32;
/// Pointers can only reach the first 16 KiB of a message.
const MAX_POINTER: usize = 0x3FFF;

/// How a name is compressed against the names already in the message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compress {
    Never,
    /// Against a suffix in any case; the written case is the one read.
    AnyCase,
    /// Only against a suffix written with the same bytes.
    Exact,
}

/// Writes one response message. Records that would take it past its size limit are dropped and TC set.
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    counts: [u16; 3],
    truncated: bool,
    targets: [u16; MAX_TARGETS],
    target_count: usize,
    /// `targets[..question_labels]` are the question's labels, which end at its root: names are
    /// compared with it label by label from the root, with no search.
    question_labels: usize,
    /// Bytes of the question's name (root included) when `question_labels` is set, else 0.
    question_len: usize,
    names: [u16; MAX_NAMES],
    name_count: usize,
    /// Index in `names` of the last whole name a name was found at: it and the next are tried first.
    last_name: usize,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message in `buf` (cleared) with a 12-byte `header` and the request's question section
    /// copied as sent (so the question echoes the client's case). Records may use `limit` bytes in all.
    pub fn new(buf: &'b mut Vec<u8>, header: &[u8; 12], question: &[u8], limit: usize) -> Self {
        buf.clear();
        buf.extend_from_slice(header);
        buf[6..12].fill(0);
        buf.extend_from_slice(question);
        let mut writer = Self {
            buf,
            limit,
            counts: [0; 3],
            truncated: false,
            targets: [0; MAX_TARGETS],
            target_count: 0,
            question_labels: 0,
            question_len: 0,
            names: [0; MAX_NAMES],
            name_count: 0,
            last_name: 0,
        };
        // The question's name is the usual compression target: answers are mostly about it.
        let (mut at, mut labels) = (12, 0);
        while let Some(&len) = writer.buf.get(at) {
            if len == 0 {
                // Written whole (no pointer, as every client writes it) and every label a target:
                // names are compared with it from its root.
                if labels == writer.target_count {
                    writer.question_labels = labels;
                    writer.question_len = at + 1 - 12;
                }
                break;
            }
            if len & 0xC0 != 0 {
                break;
            }
            writer.add_target(at);
            labels += 1;
            at += 1 + usize::from(len);
        }
        writer
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn add_target(&mut self, at: usize) {
        if self.target_count < MAX_TARGETS && at <= MAX_POINTER {
            self.targets[self.target_count] = u16::try_from(at).unwrap_or(0);
            self.target_count += 1;
        }
    }

    /// True when the name `suffix` is written at `at` in the message (through pointers), compared
    /// case-insensitively for owners, byte for byte for rdata names (`exact`).
    fn matches_at(&self, mut at: usize, suffix: &[u8], exact: bool) -> bool {
        let mut i = 0;
        let mut hops = 0;
        loop {
            let Some(&len) = self.buf.get(at) else { return false };
            if len & 0xC0 == 0xC0 {
                hops += 1;
                if hops > 16 {
                    return false;
                }
                at = usize::from(get_u16(self.buf, at) & 0x3FFF);
                continue;
            }
            if suffix.get(i) != Some(&len) {
                return false;
            }
            if len == 0 {
                return true;
            }
            let n = usize::from(len);
            let (Some(written), Some(wanted)) = (self.buf.get(at + 1..at + 1 + n), suffix.get(i + 1..i + 1 + n)) else {
                return false;
            };
            if !(written == wanted || !exact && written.eq_ignore_ascii_case(wanted)) {
                return false;
            }
            at += 1 + n;
            i += 1 + n;
        }
    }

    /// Where `name` is already written whole, among the last name found and the one written after it.
    fn find_written_name(&mut self, name: &[u8], exact: bool) -> Option<usize> {
        for index in [self.last_name, self.last_name + 1] {
            if index >= self.name_count {
                break;
            }
            let at = usize::from(self.names[index]);
            if self.matches_at(at, name, exact) {
                self.last_name = index;
                return Some(at);
            }
        }
        None
    }

    /// True when `name` is the question's name (written whole at offset 12).
    fn is_question(&self, name: &[u8], exact: bool) -> bool {
        if self.question_len == 0 || name.len() != self.question_len {
            return false;
        }
        let Some(written) = self.buf.get(12..12 + self.question_len) else { return false };
        // Length bytes (< 64) are never letters, so comparing the whole name ignoring case is exact.
        written == name || !exact && written.eq_ignore_ascii_case(name)
    }

    /// The longest suffix of `name` that is also the question's: (where it starts in `name`, where it
    /// is in the message). Both are uncompressed names ending at the root, so a shared suffix has the
    /// same length in bytes: each suffix of `name` is compared (once, whole) only with the question's
    /// suffix of its length, if one starts at a label.
    fn question_suffix(&self, name: &[u8], exact: bool) -> Option<(usize, usize)> {
        let question = self.buf.get(12..12 + self.question_len)?;
        let starts = &self.targets[..self.question_labels];
        let mut next = 0;
        let mut at = 0;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                return None;
            }
            let suffix = &name[at..];
            // The question's suffixes longer than this one cannot be it, nor any shorter one of `name`.
            while let Some(&target) = starts.get(next) {
                let theirs = &question[usize::from(target) - 12..];
                if theirs.len() < suffix.len() {
                    break;
                }
                next += 1;
                if theirs.len() == suffix.len() {
                    // Length bytes (< 64) are never letters: ignoring case compares labels exactly.
                    if theirs == suffix || !exact && theirs.eq_ignore_ascii_case(suffix) {
                        return Some((at, usize::from(target)));
                    }
                    break;
                }
            }
            if next == starts.len() {
                return None;
            }
            at += 1 + usize::from(len);
        }
        None
    }

    /// The longest suffix of `name` already in the message: (where it starts in `name`, where it is
    /// in the message), `None` when only the root is. The question is tried first; only suffixes
    /// longer than what it shares are searched for among the other targets.
    fn find_suffix(&self, name: &[u8], exact: bool) -> Option<(usize, usize)> {
        let in_question = self.question_suffix(name, exact);
        let others = &self.targets[self.question_labels..self.target_count];
        if !others.is_empty() {
            let shared = in_question.map_or_else(|| name_len(name).saturating_sub(1), |(at, _)| at);
            let mut at = 0;
            while let Some(&len) = name.get(at).filter(|_| at < shared) {
                let suffix = &name[at..];
                if let Some(&target) = others.iter().find(|t| self.matches_at(usize::from(**t), suffix, exact)) {
                    return Some((at, usize::from(target)));
                }
                at += 1 + usize::from(len);
            }
        }
        in_question
    }

    /// Writes `name`: the longest suffix already in the message as a pointer, if any (`Compress`).
    fn write_name(&mut self, name: &[u8], compress: Compress) {
        let start = self.buf.len();
        let exact = compress == Compress::Exact;
        let (literal, pointer) = match compress {
            Compress::Never => (name_len(name).saturating_sub(1), None),
            // Most owners are the question's name: one comparison of the whole name.
            _ if self.is_question(name, exact) => (0, Some(12)),
            _ => match self.find_written_name(name, exact) {
                Some(target) => (0, Some(target)),
                None => match self.find_suffix(name, exact) {
                    Some((at, target)) => (at, Some(target)),
                    None => (name_len(name).saturating_sub(1), None),
                },
            },
        };
        self.write_labels(&name[..literal]);
        match pointer {
            Some(target) => self.buf.extend_from_slice(&(0xC000 | u16::try_from(target).unwrap_or(0)).to_be_bytes()),
            None => self.buf.push(0),
        }
        if literal > 0 && self.name_count < MAX_NAMES && start <= MAX_POINTER {
            self.names[self.name_count] = u16::try_from(start).unwrap_or(0);
            self.name_count += 1;
        }
    }

    fn write_labels(&mut self, labels: &[u8]) {
        let mut at = 0;
        while let Some(&len) = labels.get(at) {
            self.add_target(self.buf.len());
            let end = (at + 1 + usize::from(len)).min(labels.len());
            self.buf.extend_from_slice(&labels[at..end]);
            at = end;
        }
    }

    /// Appends one record of class IN; false (and TC set) when it does not fit, after which nothing
    /// more is added.
    pub fn record(&mut self, section: Section, owner: &[u8], rtype: RecordType, ttl: u32, rdata: &[u8]) -> bool {
        self.record_in(section, owner, rtype, DNS_CLASS_IN, ttl, rdata)
    }

    /// Appends one record of any class. `owner` and the names in `rdata` are uncompressed wire names
    /// in any case; names are compared case-insensitively, the first occurrence's case is kept.
    pub fn record_in(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: RecordType,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> bool {
        let fits = self.try_record(section, owner, rtype, class, ttl, rdata);
        if !fits {
            self.truncated = true;
        }
        fits
    }

    /// Appends one optional record (additional data, RFC 2181 §9): one that does not fit is left out
    /// without TC, as Knot and BIND do; later ones may still be tried.
    pub fn optional_record(&mut self, owner: &[u8], rtype: RecordType, ttl: u32, rdata: &[u8]) -> bool {
        self.try_record(Section::Additional, owner, rtype, DNS_CLASS_IN, ttl, rdata)
    }

    /// Appends every record of `set` as optional additional data; false at the first that does not fit.
    pub fn optional_set(&mut self, set: &Set, ttl: u32) -> bool {
        let (owner, rtype) = (set.owner(), set.rtype());
        set.rdatas().all(|rdata| self.optional_record(owner, rtype, ttl, rdata))
    }

    /// Appends one record if it fits (and the message is not already truncated); the message is left
    /// as it was when it does not.
    fn try_record(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: RecordType,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> bool {
        if self.truncated || self.counts[section as usize] == u16::MAX {
            return false;
        }
        let mark = self.buf.len();
        let (targets, written_names) = (self.target_count, self.name_count);
        // An owner reads in the case already written (the question's, for answers about it).
        self.write_name(owner, Compress::AnyCase);
        let rtype_code = u16::from(rtype);
        self.buf.extend_from_slice(&rtype_code.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let rdlength_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        let (prefix, names) = compressible_names(rtype_code);
        let mut rest = rdata;
        if names > 0 && rest.len() > prefix {
            self.buf.extend_from_slice(&rest[..prefix]);
            rest = &rest[prefix..];
            for _ in 0..names {
                let len = name_len(rest);
                // A name in rdata keeps its own case: a pointer to the question's suffix would give
                // a CNAME target the client's 0x20 case (CoreDNS compresses case-sensitively too).
                self.write_name(&rest[..len], Compress::Exact);
                rest = &rest[len..];
            }
        }
        if rtype == RecordType::SRV && rest.len() > 6 {
            // Priority, weight, port, then the target uncompressed (RFC 2782); still a target for others.
            self.buf.extend_from_slice(&rest[..6]);
            self.write_name(&rest[6..], Compress::Never);
        } else {
            self.buf.extend_from_slice(rest);
        }
        let rdlength = self.buf.len() - rdlength_at - 2;
        if self.buf.len() > self.limit || rdlength > usize::from(u16::MAX) {
            self.buf.truncate(mark);
            self.target_count = targets;
            self.name_count = written_names;
            self.last_name = self.last_name.min(written_names);
            return false;
        }
        self.buf[rdlength_at..rdlength_at + 2].copy_from_slice(&u16::try_from(rdlength).unwrap_or(0).to_be_bytes());
        // Cannot overflow: checked against u16::MAX above, and 65,535 bytes hold far fewer records.
        self.counts[section as usize] += 1;
        true
    }

    /// Appends every record of `set`, starting at record `start` and wrapping around (round robin).
    pub fn set(&mut self, section: Section, set: &Set, ttl: u32, start: usize) -> bool {
        let count = set.len();
        let start = if count == 0 { 0 } else { start % count };
        let rtype = set.rtype();
        let owner = set.owner();
        // Stops at the first record that does not fit: nothing after it would be written anyway.
        set.rdatas()
            .skip(start)
            .chain(set.rdatas().take(start))
            .all(|rdata| self.record(section, owner, rtype, ttl, rdata))
    }

    /// Ends the message: an OPT record when `opt` is `Some((payload, extended rcode and flags))` (it was
    /// reserved room for in `limit`), the counts and TC in the header. Returns the length.
    pub fn finish(mut self, opt: Option<(u16, u32)>) -> usize {
        if let Some((payload, ttl)) = opt {
            self.buf.push(0);
            self.buf.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
            self.buf.extend_from_slice(&payload.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
            self.counts[Section::Additional as usize] += 1;
        }
        for (i, count) in self.counts.iter().enumerate() {
            self.buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&count.to_be_bytes());
        }
        if self.truncated {
            self.buf[2] |= 0x02;
        }
        self.buf.len()
    }
}

/// Wire size of an OPT record without options.
pub const OPT_LEN: usize = 11;

/// The class of every record in our zones.
const DNS_CLASS_IN: u16 = 1;

/// A FORMERR for a request whose header is readable but whose body is not: the header alone, with
/// the request's ID and opcode (as hickory-server answers), written to `out`. False (nothing written)
/// for fewer than 12 bytes or a response (answering responses is how reflection loops start).
pub fn format_error(request: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(&[id_hi, id_lo, flags, _]) = request.get(..4) else { return false };
    if request.len() < 12 || flags & 0x80 != 0 {
        return false;
    }
    out.clear();
    out.extend_from_slice(&[id_hi, id_lo, 0x80 | (flags & 0x78), 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    true
}

/// Length of the uncompressed name at the start of `bytes`.
fn name_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(&len) = bytes.get(at) {
        at += 1;
        if len == 0 {
            return at;
        }
        at += usize::from(len);
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::str::FromStr;

    fn wire(text: &str) -> Vec<u8> {
        name_bytes(&Name::from_str(text).unwrap())
    }

    /// A response header with one question.
    const HEADER: [u8; 12] = [0, 1, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];

    fn question(text: &str) -> Vec<u8> {
        let mut q = Name::from_str(text).unwrap().iter().fold(Vec::new(), |mut v, l| {
            v.push(u8::try_from(l.len()).unwrap());
            v.extend_from_slice(l);
            v
        });
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn names_lowercase_and_walk_up() {
        let name = wire("Web-0.NGINX.default.svc.cluster.local.");
        assert_eq!(name, wire("web-0.nginx.default.svc.cluster.local."));
        assert_eq!(label_count(&name), 6);
        assert_eq!(first_label(&name), b"web-0");
        assert!(is_within(&name, &wire("cluster.local.")));
        assert!(is_within(&name, &name));
        assert!(!is_within(&name, &wire("local.cluster.")));
        assert!(!is_within(&wire("xcluster.local."), &wire("cluster.local.")));
        assert_eq!(to_hickory(&name), Name::from_str("web-0.nginx.default.svc.cluster.local.").unwrap());
    }

    /// The raw question's name, lowercased, is what the parsed name gives; pointers are left to it.
    #[test]
    fn names_from_the_raw_question_match_the_parsed_ones() {
        let q = b"\x05Web-0\x05NGINX\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01";
        let parsed = WireName::from_name(&Name::from_ascii("Web-0.NGINX.default.svc.cluster.local.").unwrap());
        assert_eq!(WireName::from_question(q).unwrap().as_bytes(), parsed.unwrap().as_bytes());
        assert_eq!(WireName::from_question(b"\x00\x00\x06\x00\x01").unwrap().as_bytes(), b"\x00");
        assert!(WireName::from_question(b"\x03www\xC0\x0C\x00\x01\x00\x01").is_none());
        assert!(WireName::from_question(b"\x03ww").is_none(), "cut short");
        let long: Vec<u8> = (0..5).flat_map(|_| std::iter::once(60).chain([b'a'; 60])).chain([0]).collect();
        assert!(WireName::from_question(&long).is_none(), "over 255 bytes");
    }

    /// A repeated owner points at its first writing (or at what that pointed at).
    #[test]
    fn repeated_owners_are_the_same_pointer() {
        let q = question("web.default.svc.cluster.local.");
        let owner = wire("WEB.default.svc.cluster.local.");
        let other = wire("db.default.svc.cluster.local.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 512);
        for (owner, ip) in [(&owner, 1), (&owner, 2), (&other, 3), (&other, 4), (&owner, 5)] {
            assert!(writer.record(Section::Answer, owner, RecordType::A, 5, &[10, 0, 0, ip]));
        }
        writer.finish(None);
        let at = 12 + q.len();
        let record = |i: usize| &buf[at + i * 16..at + i * 16 + 2];
        assert_eq!([record(0), record(1)], [&[0xC0, 12][..], &[0xC0, 12][..]]);
        // `db` written out, then a pointer to `default`; its repeat points at `db`.
        let db_at = u8::try_from(at + 2 * 16).unwrap();
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(message.answers[2].name, message.answers[3].name);
        assert_eq!(&buf[at + 2 * 16 + 3 + 2 + 10 + 4..][..2], &[0xC0, db_at]);
        let names: Vec<String> = message.answers.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(names[4], names[0]);
    }

    #[test]
    fn node_sets_round_trip() {
        let name = wire("a.svc.cluster.local.");
        let node = Node::build(
            &name,
            &[(RecordType::A, vec![vec![10, 0, 0, 1], vec![10, 0, 0, 2]]), (RecordType::TXT, vec![b"\x02hi".to_vec()])],
        );
        assert_eq!(node.name(), name.as_slice());
        let a = node.set(RecordType::A).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.rdatas().collect::<Vec<_>>(), vec![&[10, 0, 0, 1][..], &[10, 0, 0, 2][..]]);
        assert_eq!(node.first().unwrap().rtype(), RecordType::A);
        assert_eq!(node.set(RecordType::TXT).unwrap().rdatas().next().unwrap(), b"\x02hi");
        assert!(node.set(RecordType::AAAA).is_none());
        assert!(Node::build(&name, &[]).is_empty());
    }

    /// A set past 65,535 bytes or records (a headless service's SRV set at ~1,100 endpoints) keeps its
    /// length and count, and the set after it is still found (16-bit lengths saturated and the next
    /// header was read from inside a record).
    #[test]
    fn sets_past_16_bits_keep_their_size() {
        let name = wire("_web._tcp.big.default.svc.cluster.local.");
        let target = wire("big-00000.big.default.svc.cluster.local.");
        let srv: Vec<Vec<u8>> = (0..70_000u32)
            .map(|i| {
                let mut rdata = vec![0, 0, 0, 1];
                rdata.extend_from_slice(&u16::try_from(i % 65_536).unwrap().to_be_bytes());
                rdata.extend_from_slice(&target);
                rdata
            })
            .collect();
        let node = Node::build(&name, &[(RecordType::SRV, srv.clone()), (RecordType::TXT, vec![b"\x02hi".to_vec()])]);
        let set = node.set(RecordType::SRV).unwrap();
        assert_eq!(set.len(), 70_000);
        assert_eq!(set.rdatas().count(), 70_000);
        assert_eq!(set.rdatas().last().unwrap(), srv.last().unwrap().as_slice());
        assert_eq!(node.types().collect::<Vec<_>>(), vec![RecordType::SRV, RecordType::TXT]);
        assert_eq!(node.set(RecordType::TXT).unwrap().rdatas().next().unwrap(), b"\x02hi");
        assert!(node.set(RecordType::A).is_none(), "no stray set read from inside the records");
    }

    /// Optional records (additional data) that do not fit are left out without TC.
    #[test]
    fn optional_records_never_set_tc() {
        let q = question("big.default.svc.cluster.local.");
        let owner = wire("big.default.svc.cluster.local.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 12 + q.len() + 16);
        assert!(writer.record(Section::Answer, &owner, RecordType::A, 5, &[1, 2, 3, 4]));
        assert!(!writer.optional_record(&owner, RecordType::A, 5, &[1, 2, 3, 5]));
        assert!(!writer.truncated());
        writer.finish(None);
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert!(!message.metadata.truncation);
        assert_eq!((message.answers.len(), message.additionals.len()), (1, 0));
    }

    /// The owner of an answer about the question's name is a pointer to offset 12 (the question).
    #[test]
    fn owners_point_at_the_question_even_in_another_case() {
        let q = question("WEB-0.nginx.default.svc.cluster.local.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 512);
        let owner = wire("web-0.nginx.default.svc.cluster.local.");
        assert!(writer.record(Section::Answer, &owner, RecordType::A, 5, &[10, 0, 0, 1]));
        let len = writer.finish(None);
        assert_eq!(len, 12 + q.len() + 2 + 10 + 4);
        assert_eq!(&buf[12 + q.len()..12 + q.len() + 2], &[0xC0, 12]);
    }

    /// A CNAME target keeps its own case whatever the question's (the owner echoes the question): its
    /// suffix must not become a pointer into a question asked in another case.
    #[test]
    fn rdata_names_keep_their_case_under_a_mixed_case_question() {
        // By hand: hickory's `Name::from_str` lowercases.
        let q = b"\x05ALIAS\x04demo\x03svc\x07CLUSTER\x05local\x00\x00\x05\x00\x01".to_vec();
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 512);
        let owner = wire("alias.demo.svc.cluster.local.");
        let target = wire("dual.demo.svc.cluster.local.");
        assert!(writer.record(Section::Answer, &owner, RecordType::CNAME, 5, &target));
        assert!(writer.record(Section::Answer, &target, RecordType::A, 5, &[10, 0, 0, 9]));
        writer.finish(None);
        // Raw bytes: hickory's decoder does not keep the case of names read through pointers.
        let cname_at = 12 + q.len();
        assert_eq!(&buf[cname_at..cname_at + 2], &[0xC0, 12], "the owner echoes the question");
        let rdata_at = cname_at + 2 + 10;
        // `dual.demo.svc.cluster` written out, then a pointer to the question's `local` (same bytes).
        let local_in_question = 12 + (1 + 5) + (1 + 4) + (1 + 3) + (1 + 7);
        let mut expected = b"\x04dual\x04demo\x03svc\x07cluster".to_vec();
        expected.extend_from_slice(&[0xC0, u8::try_from(local_in_question).unwrap()]);
        assert_eq!(buf.get(rdata_at..rdata_at + expected.len()), Some(expected.as_slice()));
        // The target's own record points at the target as written.
        let a_at = rdata_at + expected.len();
        assert_eq!(&buf[a_at..a_at + 2], &[0xC0, u8::try_from(rdata_at).unwrap()]);
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(message.answers.len(), 2);
    }

    #[test]
    fn rdata_names_compress_but_srv_targets_do_not() {
        let q = question("_web._tcp.nginx.default.svc.cluster.local.");
        let target = wire("web-0.nginx.default.svc.cluster.local.");
        let mut srv = vec![0, 0, 0, 10, 0, 80];
        srv.extend_from_slice(&target);
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 4096);
        let owner = wire("_web._tcp.nginx.default.svc.cluster.local.");
        assert!(writer.record(Section::Answer, &owner, RecordType::SRV, 5, &srv));
        let srv_end = writer.buf.len();
        // The SRV rdata carries the whole target (RFC 2782).
        assert_eq!(&writer.buf[srv_end - target.len()..srv_end], target.as_slice());
        // A PTR to the same target afterwards is one pointer into the SRV's target.
        assert!(writer.record(Section::Additional, &target, RecordType::PTR, 5, &target));
        let len = writer.finish(None);
        let ptr_owner_at = srv_end;
        assert_eq!(buf[ptr_owner_at] & 0xC0, 0xC0, "owner compressed against the SRV target");
        assert_eq!(len, srv_end + 2 + 10 + 2);
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(message.answers.len(), 1);
        assert_eq!(message.additionals[0].name, Name::from_str("web-0.nginx.default.svc.cluster.local.").unwrap());
    }

    /// Each additional address's owner is one pointer to its SRV target as written, also past the
    /// point where the targets' labels no longer fit in the compression targets; out of order, the
    /// owners still read as their names.
    #[test]
    fn additional_owners_point_at_the_srv_targets_written() {
        let q = question("_web._tcp.nginx.default.svc.cluster.local.");
        let owner = wire("_web._tcp.nginx.default.svc.cluster.local.");
        let targets: Vec<Vec<u8>> =
            (0..12).map(|i| wire(&format!("web-{i}.nginx.default.svc.cluster.local."))).collect();
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 4096);
        let mut target_at = Vec::new();
        for target in &targets {
            assert!(writer.record(
                Section::Answer,
                &owner,
                RecordType::SRV,
                5,
                &[&[0, 0, 0, 1, 0, 80][..], target].concat()
            ));
            target_at.push(writer.buf.len() - target.len());
        }
        for (i, target) in targets.iter().enumerate() {
            let at = writer.buf.len();
            assert!(writer.optional_record(target, RecordType::A, 5, &[10, 0, 0, u8::try_from(i).unwrap()]));
            let pointer = 0xC000 | u16::try_from(target_at[i]).unwrap();
            assert_eq!(get_u16(writer.buf, at), pointer, "owner of additional {i}");
        }
        for target in targets.iter().rev() {
            assert!(writer.optional_record(target, RecordType::AAAA, 5, &[0; 16]));
        }
        writer.finish(None);
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        let names: Vec<String> = message.additionals.iter().map(|r| r.name.to_string()).collect();
        let expected: Vec<String> =
            (0..12).chain((0..12).rev()).map(|i| format!("web-{i}.nginx.default.svc.cluster.local.")).collect();
        assert_eq!(names, expected);
    }

    /// A question with more labels than there are compression targets is not compared from its root
    /// (its last labels are not targets): names sharing its suffix still read as written.
    #[test]
    fn questions_longer_than_the_targets_compress_correctly() {
        let text: String = (0..100).map(|i| if i % 2 == 0 { "a." } else { "B." }).collect();
        let q = question(&text);
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 4096);
        let names = [wire(&text), wire(&format!("x.{text}")), wire("c.a.b.a."), wire("b.a.")];
        for name in &names {
            assert!(writer.record(Section::Answer, name, RecordType::CNAME, 5, name));
        }
        writer.finish(None);
        let mut at = 12 + q.len();
        for name in &names {
            let (owner, end) = read_name(&buf, at);
            assert!(owner.eq_ignore_ascii_case(name));
            let (rdata, rdata_end) = read_name(&buf, end + 10);
            assert_eq!(&rdata, name);
            at = rdata_end;
        }
        assert_eq!(at, buf.len());
    }

    /// Reads the name at `at` through pointers, each of which must point backwards (RFC 1035 §4.1.4)
    /// and within reach; returns the name's uncompressed bytes in the case written and where it ends.
    fn read_name(message: &[u8], mut at: usize) -> (Vec<u8>, usize) {
        let (mut name, mut end) = (Vec::new(), None);
        loop {
            let len = message[at];
            if len & 0xC0 == 0xC0 {
                let target = usize::from(get_u16(message, at) & 0x3FFF);
                assert!(target < at && target <= 0x3FFF, "pointer at {at} to {target}");
                end.get_or_insert(at + 2);
                at = target;
                continue;
            }
            name.extend_from_slice(&message[at..at + 1 + usize::from(len)]);
            if len == 0 {
                return (name, end.unwrap_or(at + 1));
            }
            at += 1 + usize::from(len);
        }
    }

    fn mixed_case_name() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let label = prop::sample::select(vec!["a", "B", "web-0", "Web-0", "svc", "SVC", "x", "cluster", "local"]);
        prop::collection::vec(label, 1..6).prop_map(|labels| {
            let mut wire = Vec::new();
            for label in labels {
                wire.push(u8::try_from(label.len()).unwrap());
                wire.extend_from_slice(label.as_bytes());
            }
            wire.push(0);
            wire
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever names a message holds, decoding it gives back every record as written: owners in
        /// the case of the suffixes they point to (compared case-insensitively), names in rdata byte
        /// for byte (PTR, CNAME, MX compressed; SRV targets whole), every pointer backwards.
        #[test]
        fn compressed_names_decode_to_what_was_written(
            question in mixed_case_name(),
            records in proptest::collection::vec((mixed_case_name(), 0usize..5, mixed_case_name()), 1..24),
        ) {
            let mut q = question.clone();
            q.extend_from_slice(&[0, 1, 0, 1]);
            let mut buf = Vec::new();
            let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 16_000);
            let mut written = Vec::new();
            for (owner, kind, target) in &records {
                let (rtype, rdata) = match kind {
                    0 => (RecordType::A, vec![10, 0, 0, 1]),
                    1 => (RecordType::CNAME, target.clone()),
                    2 => (RecordType::PTR, target.clone()),
                    3 => (RecordType::MX, [&[0, 10][..], target].concat()),
                    _ => (RecordType::SRV, [&[0, 1, 0, 2, 0, 80][..], target].concat()),
                };
                proptest::prop_assert!(writer.record(Section::Answer, owner, rtype, 5, &rdata));
                written.push((owner.clone(), rtype, rdata));
            }
            let len = writer.finish(None);
            let mut at = 12 + q.len();
            for (owner, rtype, rdata) in &written {
                let (read_owner, end) = read_name(&buf, at);
                proptest::prop_assert!(read_owner.eq_ignore_ascii_case(owner));
                proptest::prop_assert_eq!(get_u16(&buf, end), u16::from(*rtype));
                let rdata_at = end + 10;
                let rdlength = usize::from(get_u16(&buf, end + 8));
                let (prefix, names) = compressible_names(u16::from(*rtype));
                let read_rdata = if names > 0 {
                    let (name, name_end) = read_name(&buf, rdata_at + prefix);
                    proptest::prop_assert_eq!(name_end, rdata_at + rdlength);
                    [&buf[rdata_at..rdata_at + prefix], &name[..]].concat()
                } else {
                    buf[rdata_at..rdata_at + rdlength].to_vec()
                };
                proptest::prop_assert_eq!(&read_rdata, rdata, "rdata of {:?}", rtype);
                at = rdata_at + rdlength;
            }
            proptest::prop_assert_eq!(at, len);
        }
    }

    #[test]
    fn records_past_the_limit_are_dropped_with_tc() {
        let q = question("big.default.svc.cluster.local.");
        let owner = wire("big.default.svc.cluster.local.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 12 + q.len() + 2 * 16);
        assert!(writer.record(Section::Answer, &owner, RecordType::A, 5, &[1, 2, 3, 4]));
        assert!(writer.record(Section::Answer, &owner, RecordType::A, 5, &[1, 2, 3, 5]));
        assert!(!writer.record(Section::Answer, &owner, RecordType::A, 5, &[1, 2, 3, 6]));
        assert!(writer.truncated());
        writer.finish(Some((1232, 0)));
        let message = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert!(message.metadata.truncation);
        assert_eq!(message.answers.len(), 2);
        assert_eq!(message.edns.unwrap().max_payload(), 1232);
    }
}
