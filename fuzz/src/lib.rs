//! What the fuzz targets share: a fixed zone, wire queries, strict parsing of responses, and a way to
//! run the (async) answer path without a runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hickory_proto::op::Message;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use roster_dns::{DnsConfig, FrontHandler, ZoneStore};
use roster_shared::{DomainName, Frame, PodMode, RData, ZoneData};

/// The TTL of every record in the fuzzed stores.
pub const TTL: u32 = 30;

/// Runs a future that has nothing to wait for. Without a forwarder, answering never waits (the UDP
/// loop relies on that to answer inline), so one poll must finish it; `Pending` is a finding.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("answering waited although there is no forwarder"),
    }
}

/// Parses a whole response with hickory-proto: every record the header counts, nothing after them.
pub fn parse_exactly(bytes: &[u8]) -> Result<Message, String> {
    let mut decoder = BinDecoder::new(bytes);
    let message = Message::read(&mut decoder).map_err(|e| e.to_string())?;
    if !decoder.is_empty() {
        return Err(format!("{} bytes after the last counted record", decoder.len()));
    }
    Ok(message)
}

/// EDNS of a query: payload size, version, DO bit.
#[derive(Debug, Clone, Copy)]
pub struct QueryEdns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A wire query (RD set) for `qname` (presentation form, any case, no trailing dot), with an OPT
/// record when `edns` is given. Labels longer than 63 bytes are cut so that the message stays well
/// formed; whether the name is sensible is the server's problem.
pub fn query(id: u16, qname: &str, qtype: u16, qclass: u16, edns: Option<QueryEdns>) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in qname.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&qclass.to_be_bytes());
    if let Some(edns) = edns {
        bytes.extend_from_slice(&[0, 0, 41]);
        bytes.extend_from_slice(&edns.payload.to_be_bytes());
        bytes.extend_from_slice(&[0, edns.version, if edns.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    bytes
}

pub fn name(text: &str) -> DomainName {
    DomainName::parse(text).unwrap_or_else(|e| panic!("fixed name {text}: {e}"))
}

/// A store for `cluster.local` with the default reverse zones, insecure pod records, TTL [`TTL`].
pub fn empty_store() -> Arc<ZoneStore> {
    let config = DnsConfig::new("cluster.local", TTL, PodMode::Insecure).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(ZoneStore::new(config))
}

/// A small zone with one of everything the synthesis publishes: a headless service with enough
/// pods that its A and SRV sets do not fit 512 bytes, a ClusterIP service, an ExternalName (a CNAME
/// out of the zone), a CNAME inside the zone, PTRs in both reverse zones, TXT, a pod namespace.
pub fn sample_zone() -> ZoneData {
    let (cluster, v4, v6) = (name("cluster.local"), name("in-addr.arpa"), name("ip6.arpa"));
    let mut zone = ZoneData::default();
    let headless = name("nginx.default.svc.cluster.local");
    for i in 0..40u8 {
        let ip = std::net::Ipv4Addr::new(10, 244, 0, i + 2);
        let pod = headless.child(&format!("web-{i}")).unwrap_or_else(|e| panic!("{e}"));
        zone.add(pod.clone(), RData::A { ip }, &cluster);
        zone.add(pod.clone(), RData::Aaaa { ip: ip.to_ipv6_mapped() }, &cluster);
        zone.add(headless.clone(), RData::A { ip }, &cluster);
        let srv = RData::Srv { priority: 0, weight: 2, port: 80, target: pod.clone() };
        zone.add(name("_web._tcp.nginx.default.svc.cluster.local"), srv.clone(), &cluster);
        zone.add(headless.clone(), srv, &cluster);
        let [a, b, c, d] = ip.octets();
        zone.add(name(&format!("{d}.{c}.{b}.{a}.in-addr.arpa")), RData::Ptr { target: pod }, &v4);
    }
    let api = name("kubernetes.default.svc.cluster.local");
    zone.add(api.clone(), RData::A { ip: [10, 96, 0, 1].into() }, &cluster);
    zone.add(api.clone(), RData::Aaaa { ip: "fd00::1".parse().unwrap_or_else(|e| panic!("{e}")) }, &cluster);
    zone.add(name("1.0.96.10.in-addr.arpa"), RData::Ptr { target: api.clone() }, &v4);
    let v6_ptr = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
    zone.add(name(v6_ptr), RData::Ptr { target: api.clone() }, &v6);
    let search = RData::Cname { target: name("search.example.com") };
    zone.add(name("search.default.svc.cluster.local"), search, &cluster);
    zone.add(name("alias.default.svc.cluster.local"), RData::Cname { target: api }, &cluster);
    zone.add(name("dns-version.cluster.local"), RData::Txt { text: "1.1.0".to_owned() }, &cluster);
    zone.add(name("long.default.svc.cluster.local"), RData::Txt { text: "x".repeat(600) }, &cluster);
    zone.ensure_name(&name("default.pod.cluster.local"), &cluster);
    zone.names.entry(cluster.clone()).or_default().push(RData::Ns { target: name("ns.dns.cluster.local") });
    zone
}

/// A handler over a store holding `zone` (generation 1), without forwarder or metrics.
pub fn handler_for(zone: ZoneData) -> FrontHandler {
    let store = empty_store();
    store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap_or_else(|e| panic!("{e}"));
    FrontHandler::new(store)
}
