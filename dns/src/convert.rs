//! The edge between roster's record model and hickory's: shared names and rdata in, hickory records out.

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData as HickoryRData, Record, RecordType};
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

pub fn to_record(owner: &Name, ttl: u32, rdata: &RData) -> Record {
    let data = match rdata {
        RData::A { ip } => HickoryRData::A(A(*ip)),
        RData::Aaaa { ip } => HickoryRData::AAAA(AAAA(*ip)),
        RData::Srv { priority, weight, port, target } => {
            HickoryRData::SRV(SRV::new(*priority, *weight, *port, to_name(target)))
        }
        RData::Ptr { target } => HickoryRData::PTR(PTR(to_name(target))),
        RData::Cname { target } => HickoryRData::CNAME(CNAME(to_name(target))),
        RData::Txt { text } => HickoryRData::TXT(TXT::new(vec![text.clone()])),
        RData::Ns { target } => HickoryRData::NS(NS(to_name(target))),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

/// The SOA of a zone: `ns.dns.<cluster zone> hostmaster.<cluster zone>`, minimum = the negative TTL.
pub fn soa_record(apex: &DomainName, cluster_zone: &DomainName, serial: u32, ttl: u32) -> Record {
    let mname = to_name(&cluster_zone.prefixed(&["ns", "dns"]).unwrap_or_else(|_| cluster_zone.clone()));
    let rname = to_name(&cluster_zone.child("hostmaster").unwrap_or_else(|_| cluster_zone.clone()));
    let soa = SOA::new(mname, rname, serial, 7200, 1800, 86400, ttl);
    Record::from_rdata(to_name(apex), ttl, HickoryRData::SOA(soa))
}

pub fn ns_record(apex: &DomainName, cluster_zone: &DomainName, ttl: u32) -> Record {
    let target = cluster_zone.prefixed(&["ns", "dns"]).unwrap_or_else(|_| cluster_zone.clone());
    to_record(&to_name(apex), ttl, &RData::Ns { target })
}
