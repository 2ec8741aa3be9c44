//! The edge between roster's record model and the wire: shared names and rdata in, wire bytes out.

use hickory_proto::rr::{LowerName, Name, RecordType};
use roster_shared::{DomainName, RData};

use crate::wire::{Node, NodeWriter};

/// The hickory form of a roster name (fully qualified).
pub fn to_name(name: &DomainName) -> Name {
    let mut hickory = Name::from_ascii(name.as_str()).unwrap_or_else(|_| Name::root());
    hickory.set_fqdn(true);
    hickory
}

pub fn to_lower(name: &DomainName) -> LowerName {
    LowerName::new(&to_name(name))
}

/// The lowercase wire form of a roster name, written straight from its text: a `DomainName` is
/// already lower case with checked labels of 1-63 letters, digits, `-` and `_`, so nothing needs
/// escaping (through hickory's parser this was 11 % of start-up at 100k pod records).
pub fn to_wire(name: &DomainName) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.as_str().len() + 2);
    write_wire(name, &mut out);
    out
}

/// Appends [`to_wire`]'s bytes to `out`.
pub fn write_wire(name: &DomainName, out: &mut Vec<u8>) {
    // The text copied whole behind a length byte, then each dot turned into the next label's length,
    // found in one pass over the text: half the instructions of testing every byte of the output with
    // its bounds, and `memchr` costs more than it saves on 40-byte names (bench/README.md, "Start-up").
    let text = name.as_str().as_bytes();
    let start = out.len();
    out.reserve(text.len() + 2);
    out.push(0);
    out.extend_from_slice(text);
    out.push(0);
    // The byte before a label (the leading 0, or the dot in front of it) holds its length.
    let mut length_at = start;
    for (index, byte) in text.iter().enumerate() {
        if *byte == b'.' {
            out[length_at] = u8::try_from(start + index - length_at).unwrap_or(u8::MAX);
            length_at = start + index + 1;
        }
    }
    out[length_at] = u8::try_from(start + text.len() - length_at).unwrap_or(u8::MAX);
}

pub fn record_type(rdata: &RData) -> RecordType {
    match rdata {
        RData::A { .. } => RecordType::A,
        RData::Aaaa { .. } => RecordType::AAAA,
        RData::Srv { .. } => RecordType::SRV,
        RData::Ptr { .. } => RecordType::PTR,
        RData::Cname { .. } => RecordType::CNAME,
        RData::Txt { .. } => RecordType::TXT,
        RData::Ns { .. } => RecordType::NS,
    }
}

/// The rdata in wire form, names uncompressed (the response writer compresses them per message).
pub fn to_rdata(rdata: &RData) -> Vec<u8> {
    let mut out = Vec::new();
    write_rdata(rdata, &mut out);
    out
}

/// Appends [`to_rdata`]'s bytes to `out`.
pub fn write_rdata(rdata: &RData, out: &mut Vec<u8>) {
    match rdata {
        RData::A { ip } => out.extend_from_slice(&ip.octets()),
        RData::Aaaa { ip } => out.extend_from_slice(&ip.octets()),
        RData::Srv { priority, weight, port, target } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            write_wire(target, out);
        }
        RData::Ptr { target } | RData::Cname { target } | RData::Ns { target } => write_wire(target, out),
        RData::Txt { text } => {
            // Character-strings of at most 255 bytes each (RFC 1035 §3.3.14).
            for chunk in text.as_bytes().chunks(255) {
                out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(chunk);
            }
            if text.is_empty() {
                out.push(0);
            }
        }
    }
}

/// Every record type roster's record model has, in type-number order: the order a node keeps its sets.
const TYPES_IN_ORDER: [RecordType; 7] = [
    RecordType::A,
    RecordType::NS,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::TXT,
    RecordType::AAAA,
    RecordType::SRV,
];

/// The node of `name` holding `records`: one set per type in type order, each set's records in the
/// order given. Written straight into `writer`'s buffer, no `Vec` per rdata.
pub fn to_node(writer: &mut NodeWriter, name: &DomainName, records: &[RData]) -> Node {
    writer.start(|out| write_wire(name, out));
    // Which types are present, as bits of TYPES_IN_ORDER's indices: most names hold one type.
    let present = records.iter().fold(0u8, |bits, rdata| bits | 1 << type_index(rdata));
    for (index, rtype) in TYPES_IN_ORDER.iter().enumerate() {
        if present & 1 << index == 0 {
            continue;
        }
        writer.set(*rtype);
        for rdata in records.iter().filter(|rdata| type_index(rdata) == index) {
            writer.record(|out| write_rdata(rdata, out));
        }
    }
    writer.finish()
}

/// The index of `rdata`'s type in [`TYPES_IN_ORDER`].
fn type_index(rdata: &RData) -> usize {
    match rdata {
        RData::A { .. } => 0,
        RData::Ns { .. } => 1,
        RData::Cname { .. } => 2,
        RData::Ptr { .. } => 3,
        RData::Txt { .. } => 4,
        RData::Aaaa { .. } => 5,
        RData::Srv { .. } => 6,
    }
}

/// The SOA rdata of a zone: `ns.dns.<cluster zone> hostmaster.<cluster zone>`, minimum = the negative TTL.
pub fn soa_rdata(cluster_zone: &DomainName, serial: u32, ttl: u32) -> Vec<u8> {
    let mname = to_wire(&cluster_zone.prefixed(&["ns", "dns"]).unwrap_or_else(|_| cluster_zone.clone()));
    let rname = to_wire(&cluster_zone.child("hostmaster").unwrap_or_else(|_| cluster_zone.clone()));
    let mut out = Vec::with_capacity(mname.len() + rname.len() + 20);
    out.extend_from_slice(&mname);
    out.extend_from_slice(&rname);
    for value in [serial, 7200, 1800, 86400, ttl] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// The NS rdata of every apex: `ns.dns.<cluster zone>`.
pub fn ns_rdata(cluster_zone: &DomainName) -> Vec<u8> {
    to_wire(&cluster_zone.prefixed(&["ns", "dns"]).unwrap_or_else(|_| cluster_zone.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name_bytes;

    #[test]
    fn wire_form_is_hickorys_for_every_kind_of_name() {
        for text in [
            "cluster.local",
            "web-0.nginx.default.svc.cluster.local",
            "_http._tcp.a.b.svc.cluster.local",
            "1.0.244.10.in-addr.arpa",
            "Mixed.Case.Example",
            &format!("{}.x", "a".repeat(63)),
        ] {
            let name = DomainName::parse(text).unwrap();
            assert_eq!(to_wire(&name), name_bytes(&to_name(&name)), "{text}");
        }
    }
}
