//! The edge between roster's record model and the wire: shared names and rdata in, wire bytes out.

use hickory_proto::rr::{LowerName, Name, RecordType};
use roster_shared::{DomainName, RData};

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
    // The text copied whole behind a length byte, each dot then turned into the next label's length:
    // 0.44 G instructions instead of 0.71 G splitting at dots for the half a million names at 100k pod
    // records (bench/README.md, "Start-up").
    let text = name.as_str().as_bytes();
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(0);
    out.extend_from_slice(text);
    out.push(0);
    let mut length_at = 0;
    for at in 1..=text.len() + 1 {
        if out[at] == b'.' || at == text.len() + 1 {
            out[length_at] = u8::try_from(at - length_at - 1).unwrap_or(u8::MAX);
            length_at = at;
        }
    }
    out
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
    match rdata {
        RData::A { ip } => ip.octets().to_vec(),
        RData::Aaaa { ip } => ip.octets().to_vec(),
        RData::Srv { priority, weight, port, target } => {
            let mut out = Vec::with_capacity(6 + target.as_str().len() + 2);
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&to_wire(target));
            out
        }
        RData::Ptr { target } | RData::Cname { target } | RData::Ns { target } => to_wire(target),
        RData::Txt { text } => {
            // Character-strings of at most 255 bytes each (RFC 1035 §3.3.14).
            let mut out = Vec::with_capacity(text.len() + text.len() / 255 + 1);
            for chunk in text.as_bytes().chunks(255) {
                out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(chunk);
            }
            if text.is_empty() {
                out.push(0);
            }
            out
        }
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
