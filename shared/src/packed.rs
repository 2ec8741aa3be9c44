//! The packed snapshot: a compact binary form of a [`ZoneData`] for the record stream, ~8× smaller than
//! its JSON before compression and decoded without a parser of text.
//!
//! Layout (varints are LEB128, at most 10 bytes, never past 64 bits):
//! - `RSPK`, version byte 1, then varints: name count, record count, client count;
//! - each name, in the zone's (string) order: the name as (bytes shared with the start of the previous
//!   name, bytes shared with its end, the length of what differs, those bytes), then its record count and
//!   its records: a type byte (1 A, 2 AAAA, 3 SRV, 4 PTR, 5 CNAME, 6 TXT, 7 NS) and the data — A 4 bytes,
//!   AAAA 16, SRV priority, weight and port as varints then its target, PTR/CNAME/NS the target, TXT a
//!   length and UTF-8 bytes. A target is written as a name, against the previous target written;
//! - each client in address order: 4 or 6 and the address bytes, then the index of its namespace among
//!   those already written, or the next index followed by the namespace's length and bytes.
//!
//! Neighbours in sorted order share long prefixes (`set-5-3.set-5.ns-5…`) or suffixes (`….in-addr.arpa`),
//! so a name costs a few bytes. The decoder is pushed bytes as they arrive ([`Decoder::feed`]) and hands
//! each name with its records, and each client, to a [`Visitor`] as soon as it is complete, so nothing
//! holds the encoded snapshot whole. It checks everything: every name and target is a valid, canonical
//! [`DomainName`], names and clients strictly ascending, counts as declared, lengths bounded before they
//! are waited for (what it keeps is one item: at most a TXT record of [`MAX_TXT_BYTES`]), no trailing bytes.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::name::{DomainName, MAX_NAME_LEN, NameError, is_dns1123_label};
use crate::records::{RData, ZoneData};

/// The first bytes of every packed snapshot.
pub const MAGIC: &[u8; 4] = b"RSPK";
/// The layout described above.
pub const VERSION: u8 = 1;
/// The longest TXT text packed: a record's data cannot be longer on the wire.
pub const MAX_TXT_BYTES: usize = 65_535;

const TYPE_A: u8 = 1;
const TYPE_AAAA: u8 = 2;
const TYPE_SRV: u8 = 3;
const TYPE_PTR: u8 = 4;
const TYPE_CNAME: u8 = 5;
const TYPE_TXT: u8 = 6;
const TYPE_NS: u8 = 7;

/// A zone that cannot be packed (synthesis never makes one; the controller sends such a zone as JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("a TXT record of `{name}` is {len} bytes, more than the {MAX_TXT_BYTES} a packed snapshot holds")]
    TxtTooLong { name: String, len: usize },
    #[error("the namespace `{namespace}` of client {ip} is not a DNS-1123 label")]
    BadNamespace { ip: IpAddr, namespace: String },
}

/// Packs `zone`.
pub fn encode(zone: &ZoneData) -> Result<Vec<u8>, PackError> {
    let mut out = Vec::with_capacity(16 + zone.names.len() * 12 + zone.record_count() * 8 + zone.clients.len() * 6);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_varint(&mut out, zone.names.len() as u64);
    put_varint(&mut out, zone.record_count() as u64);
    put_varint(&mut out, zone.clients.len() as u64);
    let (mut previous_name, mut previous_target) = ("", "");
    for (name, records) in &zone.names {
        put_name(&mut out, previous_name, name.as_str());
        previous_name = name.as_str();
        put_varint(&mut out, records.len() as u64);
        for record in records {
            let target = match record {
                RData::A { ip } => {
                    out.push(TYPE_A);
                    out.extend_from_slice(&ip.octets());
                    None
                }
                RData::Aaaa { ip } => {
                    out.push(TYPE_AAAA);
                    out.extend_from_slice(&ip.octets());
                    None
                }
                RData::Srv { priority, weight, port, target } => {
                    out.push(TYPE_SRV);
                    for value in [priority, weight, port] {
                        put_varint(&mut out, u64::from(*value));
                    }
                    Some(target)
                }
                RData::Ptr { target } => {
                    out.push(TYPE_PTR);
                    Some(target)
                }
                RData::Cname { target } => {
                    out.push(TYPE_CNAME);
                    Some(target)
                }
                RData::Ns { target } => {
                    out.push(TYPE_NS);
                    Some(target)
                }
                RData::Txt { text } => {
                    if text.len() > MAX_TXT_BYTES {
                        return Err(PackError::TxtTooLong { name: name.to_string(), len: text.len() });
                    }
                    out.push(TYPE_TXT);
                    put_varint(&mut out, text.len() as u64);
                    out.extend_from_slice(text.as_bytes());
                    None
                }
            };
            if let Some(target) = target {
                put_name(&mut out, previous_target, target.as_str());
                previous_target = target.as_str();
            }
        }
    }
    let mut namespaces: Vec<&str> = Vec::new();
    for (ip, namespace) in &zone.clients {
        if !is_dns1123_label(namespace) {
            return Err(PackError::BadNamespace { ip: *ip, namespace: namespace.clone() });
        }
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

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `name` against `previous`: shared prefix, shared suffix (of what the prefix left), the middle.
fn put_name(out: &mut Vec<u8>, previous: &str, name: &str) {
    let (previous, name) = (previous.as_bytes(), name.as_bytes());
    let prefix = previous.iter().zip(name).take_while(|(a, b)| a == b).count();
    let suffix = previous[prefix..].iter().rev().zip(name[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    put_varint(out, prefix as u64);
    put_varint(out, suffix as u64);
    let middle = &name[prefix..name.len() - suffix];
    put_varint(out, middle.len() as u64);
    out.extend_from_slice(middle);
}

/// Receives a packed snapshot's contents as they are decoded.
pub trait Visitor {
    /// One name with its records (none: an empty non-terminal), in the zone's order.
    fn name(&mut self, name: &DomainName, records: &[RData]);
    /// One autopath client, in address order.
    fn client(&mut self, ip: IpAddr, namespace: &str);
}

/// Collects the whole zone (tests, tools; a replica builds its table instead).
impl Visitor for ZoneData {
    fn name(&mut self, name: &DomainName, records: &[RData]) {
        self.names.insert(name.clone(), records.to_vec());
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
    #[error("a varint longer than 64 bits")]
    VarintTooLong,
    #[error("{what} {value} is more than {max}")]
    TooLarge { what: &'static str, value: u64, max: u64 },
    #[error("`{text}` is not a name: {error}")]
    BadName { text: String, error: NameError },
    #[error("`{0}` is not in canonical form (lower case, no trailing dot)")]
    NotCanonical(String),
    #[error("not ASCII where a name must be")]
    NotAscii,
    #[error("`{found}` does not come after `{previous}`")]
    OutOfOrder { previous: String, found: String },
    #[error("unknown record type {0}")]
    UnknownType(u8),
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
    fn take(&mut self, len: usize) -> Result<&'a [u8], Need> {
        let bytes = self.bytes.get(self.pos..self.pos.checked_add(len).ok_or(Need::More)?).ok_or(Need::More)?;
        self.pos += len;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, Need> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, Need> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Problem::VarintTooLong.into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::VarintTooLong.into())
    }

    /// A varint that must not exceed `max`, checked before anything is waited for or allocated.
    fn bounded(&mut self, what: &'static str, max: u64) -> Result<u64, Need> {
        let value = self.varint()?;
        if value > max {
            return Err(Problem::TooLarge { what, value, max }.into());
        }
        Ok(value)
    }

    /// A name written against `previous` (see [`put_name`]), as text in `out`; the byte range that is new.
    fn name_text(&mut self, previous: &str, out: &mut String) -> Result<Range<usize>, Need> {
        let max = MAX_NAME_LEN as u64;
        let prefix = self.bounded("shared prefix", previous.len() as u64)? as usize;
        let suffix = self.bounded("shared suffix", (previous.len() - prefix) as u64)? as usize;
        let middle = self.bounded("name length", max - (prefix + suffix) as u64)? as usize;
        let middle = self.take(middle)?;
        let middle = std::str::from_utf8(middle).ok().filter(|m| m.is_ascii()).ok_or(Problem::NotAscii)?;
        out.clear();
        // `previous` is a checked name, all ASCII: any byte offset is a character boundary.
        out.push_str(&previous[..prefix]);
        out.push_str(middle);
        out.push_str(&previous[previous.len() - suffix..]);
        Ok(prefix..prefix + middle.len())
    }
}

/// Checks that `text` is a valid name in canonical form (as [`DomainName::parse`] would keep it), given
/// that it is at most [`MAX_NAME_LEN`] ASCII bytes and that outside `new` it is made of a checked name's
/// bytes: only the labels that touch `new` can be wrong, so only they are checked.
fn check_name(text: &str, new: Range<usize>) -> Result<(), Problem> {
    let bad = |error| Problem::BadName { text: text.to_owned(), error };
    if text.is_empty() {
        return Err(bad(NameError::Empty));
    }
    if text.ends_with('.') || text.as_bytes()[new.clone()].iter().any(u8::is_ascii_uppercase) {
        return Err(Problem::NotCanonical(text.to_owned()));
    }
    // Labels wholly before the last dot of the shared prefix, or after the first dot of the shared suffix,
    // are labels of the previous name.
    let start = text[..new.start].rfind('.').map_or(0, |dot| dot + 1);
    let end = text[new.end..].find('.').map_or(text.len(), |dot| new.end + dot);
    DomainName::check_labels(&text[start..end]).map_err(bad)
}

/// A decoded record's fields; its target, if any, is the decoder's previous target.
enum Fields<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv(u16, u16, u16),
    Ptr,
    Cname,
    Ns,
    Txt(&'a str),
}

impl Fields<'_> {
    fn build(self, target: &str) -> RData {
        let target = || DomainName::from_checked(target);
        match self {
            Self::A(ip) => RData::A { ip },
            Self::Aaaa(ip) => RData::Aaaa { ip },
            Self::Srv(priority, weight, port) => RData::Srv { priority, weight, port, target: target() },
            Self::Ptr => RData::Ptr { target: target() },
            Self::Cname => RData::Cname { target: target() },
            Self::Ns => RData::Ns { target: target() },
            Self::Txt(text) => RData::Txt { text: text.to_owned() },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Name,
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
    /// The name whose records are being read (its buffer reused from name to name), and how many are
    /// still to come.
    name: Option<DomainName>,
    records_left: u64,
    /// The name's records: the first `used`; the others are kept so that their targets' buffers are
    /// reused by the next name's.
    records: Vec<RData>,
    used: usize,
    previous_name: String,
    previous_target: String,
    previous_client: Option<IpAddr>,
    namespaces: Vec<String>,
    scratch: String,
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
            name: None,
            records_left: 0,
            records: Vec::new(),
            used: 0,
            previous_name: String::new(),
            previous_target: String::new(),
            previous_client: None,
            namespaces: Vec::new(),
            scratch: String::with_capacity(MAX_NAME_LEN),
        }
    }

    /// Decodes what `input` completes, handing each finished name and client to `visitor`.
    pub fn feed(&mut self, input: &[u8], visitor: &mut impl Visitor) -> Result<(), PackedError> {
        if self.stage == Stage::Failed {
            return Err(self.error(Problem::Failed));
        }
        let mut pending = std::mem::take(&mut self.pending);
        let result = if pending.is_empty() {
            self.run(input, visitor).map(|used| pending.extend_from_slice(&input[used..]))
        } else {
            pending.extend_from_slice(input);
            self.run(&pending, visitor).map(|used| {
                pending.drain(..used);
            })
        };
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
            Stage::Record => {
                format!("record {} of name {} (`{}`)", self.used + 1, self.seen.names + 1, self.previous_name)
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
        let mut text = std::mem::take(&mut self.scratch);
        let read = cursor.name_text(&self.previous_name, &mut text);
        let result = read.and_then(|new| {
            let left = self.declared.records - self.seen.records;
            let count = cursor.bounded("record count", left)?;
            Ok((new, count))
        });
        let (new, count) = match result {
            Ok(read) => read,
            Err(need) => {
                self.scratch = text;
                return Err(need);
            }
        };
        let checked = check_name(&text, new).and_then(|()| {
            if !self.previous_name.is_empty() && text.as_str() <= self.previous_name.as_str() {
                return Err(Problem::OutOfOrder { previous: self.previous_name.clone(), found: text.clone() });
            }
            Ok(())
        });
        std::mem::swap(&mut self.previous_name, &mut text);
        self.scratch = text;
        checked?;
        match &mut self.name {
            Some(name) => name.assign_checked(&self.previous_name),
            None => self.name = Some(DomainName::from_checked(&self.previous_name)),
        }
        self.used = 0;
        if count == 0 {
            self.seen.names += 1;
            if let Some(name) = &self.name {
                visitor.name(name, &[]);
            }
            return self.next_section();
        }
        self.records_left = count;
        self.stage = Stage::Record;
        Ok(())
    }

    fn record(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let kind = cursor.byte()?;
        let fields = match kind {
            TYPE_A => Fields::A(Ipv4Addr::from(<[u8; 4]>::try_from(cursor.take(4)?).map_err(|_| Need::More)?)),
            TYPE_AAAA => Fields::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(cursor.take(16)?).map_err(|_| Need::More)?)),
            TYPE_SRV => {
                let max = u64::from(u16::MAX);
                let priority = cursor.bounded("SRV priority", max)? as u16;
                let weight = cursor.bounded("SRV weight", max)? as u16;
                let port = cursor.bounded("SRV port", max)? as u16;
                self.target(cursor)?;
                Fields::Srv(priority, weight, port)
            }
            TYPE_PTR | TYPE_CNAME | TYPE_NS => {
                self.target(cursor)?;
                match kind {
                    TYPE_PTR => Fields::Ptr,
                    TYPE_CNAME => Fields::Cname,
                    _ => Fields::Ns,
                }
            }
            TYPE_TXT => {
                let len = cursor.bounded("TXT length", MAX_TXT_BYTES as u64)? as usize;
                Fields::Txt(std::str::from_utf8(cursor.take(len)?).map_err(|_| Problem::TxtNotUtf8)?)
            }
            other => return Err(Problem::UnknownType(other).into()),
        };
        self.place(fields);
        self.seen.records += 1;
        self.records_left -= 1;
        if self.records_left == 0 {
            self.seen.names += 1;
            if let Some(name) = &self.name {
                visitor.name(name, &self.records[..self.used]);
            }
            return self.next_section();
        }
        Ok(())
    }

    /// Puts a decoded record at `used`, into the record held there when it is of the same type (its
    /// target's buffer reused), else in a new one.
    fn place(&mut self, fields: Fields<'_>) {
        let target = self.previous_target.as_str();
        match (self.records.get_mut(self.used), fields) {
            (Some(RData::Srv { priority, weight, port, target: held }), Fields::Srv(p, w, o)) => {
                (*priority, *weight, *port) = (p, w, o);
                held.assign_checked(target);
            }
            (Some(RData::Ptr { target: held }), Fields::Ptr)
            | (Some(RData::Cname { target: held }), Fields::Cname)
            | (Some(RData::Ns { target: held }), Fields::Ns) => held.assign_checked(target),
            (Some(slot), fields) => *slot = fields.build(target),
            (None, fields) => self.records.push(fields.build(target)),
        }
        self.used += 1;
    }

    /// A record's target, checked, left in `previous_target`; it moves on only when the record is whole,
    /// which this is the end of (every target is its record's last field).
    fn target(&mut self, cursor: &mut Cursor<'_>) -> Result<(), Need> {
        let mut text = std::mem::take(&mut self.scratch);
        let new = match cursor.name_text(&self.previous_target, &mut text) {
            Ok(new) => new,
            Err(need) => {
                self.scratch = text;
                return Err(need);
            }
        };
        let checked = check_name(&text, new);
        std::mem::swap(&mut self.previous_target, &mut text);
        self.scratch = text;
        Ok(checked?)
    }

    fn client(&mut self, cursor: &mut Cursor<'_>, visitor: &mut impl Visitor) -> Result<(), Need> {
        let ip = match cursor.byte()? {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(cursor.take(4)?).map_err(|_| Need::More)?)),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(cursor.take(16)?).map_err(|_| Need::More)?)),
            other => return Err(Problem::UnknownFamily(other).into()),
        };
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
        if let Some(previous) = self.previous_client
            && ip <= previous
        {
            return Err(Problem::OutOfOrder { previous: previous.to_string(), found: ip.to_string() }.into());
        }
        self.namespaces.extend(new);
        self.previous_client = Some(ip);
        self.seen.clients += 1;
        visitor.client(ip, &self.namespaces[index as usize]);
        if self.seen.clients == self.declared.clients {
            self.stage = Stage::Done;
        }
        Ok(())
    }
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
        assert_eq!(summary.names, zone.names.len() as u64);
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

    /// A name written with nothing shared.
    fn fresh(text: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        put_name(&mut bytes, "", text);
        bytes
    }

    #[test]
    fn corruptions_are_refused_with_the_problem_named() {
        let a = fresh("a.cluster.local");
        let b = fresh("b.cluster.local");
        let cases: Vec<(Vec<u8>, Problem)> = vec![
            (b"RSPX\x01\0\0\0".to_vec(), Problem::BadMagic),
            (b"{\"kind\"".to_vec(), Problem::BadMagic),
            (b"RSPK\x02\0\0\0".to_vec(), Problem::UnsupportedVersion(2)),
            (with_header(0, 0, 0, b"x"), Problem::TrailingBytes),
            (with_header(0, 1, 0, b""), Problem::CountMismatch { what: "records", declared: 1, found: 0 }),
            (
                with_header(1, 1, 0, &[&a[..], &[0]].concat()),
                Problem::CountMismatch { what: "records", declared: 1, found: 0 },
            ),
            (
                with_header(1, 0, 0, &[&a[..], &[1]].concat()),
                Problem::TooLarge { what: "record count", value: 1, max: 0 },
            ),
            (with_header(1, 1, 0, &[&a[..], &[1, 9]].concat()), Problem::UnknownType(9)),
            (
                with_header(1, 0, 0, &[&fresh("A.cluster.local")[..], &[0]].concat()),
                Problem::NotCanonical("A.cluster.local".to_owned()),
            ),
            (
                with_header(1, 0, 0, &[&fresh("a.cluster.local.")[..], &[0]].concat()),
                Problem::NotCanonical("a.cluster.local.".to_owned()),
            ),
            (
                with_header(2, 0, 0, &[&b[..], &[0], &[0, 0], &a[2..], &[0]].concat()),
                Problem::OutOfOrder { previous: "b.cluster.local".to_owned(), found: "a.cluster.local".to_owned() },
            ),
            (
                with_header(2, 0, 0, &[&a[..], &[0], &[15, 0, 0, 0]].concat()),
                Problem::OutOfOrder { previous: "a.cluster.local".to_owned(), found: "a.cluster.local".to_owned() },
            ),
            // A shared prefix longer than the previous name.
            (
                with_header(2, 0, 0, &[&a[..], &[0], &[16, 0, 0]].concat()),
                Problem::TooLarge { what: "shared prefix", value: 16, max: 15 },
            ),
            (
                with_header(1, 0, 0, &[0, 0, 0xfe, 0x01]),
                Problem::TooLarge { what: "name length", value: 254, max: 253 },
            ),
            (with_header(1, 0, 0, &[0, 0, 3, 0xc3, 0xa9, b'a', 0]), Problem::NotAscii),
            (with_header(u64::MAX, 0, 0, &[0xff; 11]), Problem::VarintTooLong),
            (
                with_header(1, 1, 0, &[&a[..], &[1, TYPE_TXT, 0xff, 0xff, 0x04]].concat()),
                Problem::TooLarge { what: "TXT length", value: 0x1_3fff, max: MAX_TXT_BYTES as u64 },
            ),
            (with_header(1, 1, 0, &[&a[..], &[1, TYPE_TXT, 2, 0xc3, 0x28]].concat()), Problem::TxtNotUtf8),
            (
                with_header(1, 1, 0, &[&a[..], &[1, TYPE_SRV, 0, 0, 0x80, 0x80, 0x04]].concat()),
                Problem::TooLarge { what: "SRV port", value: 0x1_0000, max: 65_535 },
            ),
            (with_header(0, 0, 1, &[5, 1, 2, 3, 4]), Problem::UnknownFamily(5)),
            (with_header(0, 0, 1, &[4, 10, 0, 0, 1, 1]), Problem::NamespaceIndex { index: 1, known: 0 }),
            (with_header(0, 0, 1, &[4, 10, 0, 0, 1, 0, 2, b'A', b'b']), Problem::BadNamespace("Ab".to_owned())),
            (
                with_header(0, 0, 2, &[4, 10, 0, 0, 2, 0, 1, b'a', 4, 10, 0, 0, 1, 0]),
                Problem::OutOfOrder { previous: "10.0.0.2".to_owned(), found: "10.0.0.1".to_owned() },
            ),
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
    }

    #[test]
    fn a_hostile_header_allocates_nothing_ahead() {
        // Counts of 2^63 and lengths at their bounds: refused or waited for, never reserved.
        let mut decoder = Decoder::new();
        let bytes = with_header(1 << 63, 1 << 63, 1 << 63, &[0, 0, 0xfd, 0x01]);
        decoder.feed(&bytes, &mut ZoneData::default()).unwrap();
        assert!(decoder.pending.capacity() < 1024, "{}", decoder.pending.capacity());
        assert_eq!(decoder.finish().unwrap_err().problem, Problem::Truncated);
        // An item never waits for more than its bound: a TXT length past it is refused at once.
        let mut decoder = Decoder::new();
        let a = fresh("a.cluster.local");
        let bytes = with_header(1, 1, 0, &[&a[..], &[1, TYPE_TXT, 0x80, 0x80, 0x80, 0x80, 0x01]].concat());
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

    proptest! {
        #[test]
        fn any_zone_round_trips(zone in any_zone(), chunk in 1usize..50) {
            let bytes = encode(&zone).unwrap();
            prop_assert_eq!(decode_in_chunks(&bytes, chunk).unwrap(), zone);
        }

        #[test]
        fn any_bytes_are_decoded_or_refused_without_panic(body in prop::collection::vec(any::<u8>(), 0..200), counts in (0u64..4, 0u64..6, 0u64..3)) {
            let _ = decode_zone(&with_header(counts.0, counts.1, counts.2, &body));
        }
    }
}
