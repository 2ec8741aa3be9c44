//! Behaviour tables: question → complete expected answer (rcode, AA, answer, authority, additional),
//! run against the real server over UDP and over TCP with the hickory-net client.
//!
//! SRV answers carry the A/AAAA of their targets in the additional section, as CoreDNS's
//! `plugin.SRV` adds them. An SRV question at a service's own name gets every port, as CoreDNS matches
//! an absent `_port._proto` as "any": a ClusterIP service answers one record per distinct port, target
//! the service; a headless service one per endpoint × port, target the endpoint's name; named or not,
//! any protocol. Weights share 100 (`floor(100 / n)`, at least 1).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use hickory_proto::op::ResponseCode::{self, NXDomain, NoError, Refused, ServFail};
use hickory_proto::rr::RecordType::{self, A, AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT};
use roster_shared::PodMode;
use support::{DnsClient, Expect, FIXTURE, Options, Transport, check};

const ZONE: &str = "cluster.local.";
const IN_ADDR: &str = "in-addr.arpa.";
const IP6: &str = "ip6.arpa.";

struct Row {
    name: &'static str,
    rtype: RecordType,
    expect: Expect,
}

fn row(name: &'static str, rtype: RecordType, rcode: ResponseCode, answer: &[&str], soa: Option<&'static str>) -> Row {
    let aa = matches!(rcode, NoError | NXDomain);
    let answer = answer.iter().map(|s| (*s).to_owned()).collect();
    Row { name, rtype, expect: Expect { rcode, aa, answer, soa, additional: Vec::new() } }
}

impl Row {
    /// The additional section this answer must carry.
    fn with_additional(mut self, additional: &[&str]) -> Self {
        self.expect.additional = additional.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

/// Answer present: NOERROR, AA, no authority.
fn yes(name: &'static str, rtype: RecordType, answer: &[&str]) -> Row {
    row(name, rtype, NoError, answer, None)
}

/// The name exists without that type: NOERROR, no answer, the zone's SOA.
fn nodata(name: &'static str, rtype: RecordType, zone: &'static str) -> Row {
    row(name, rtype, NoError, &[], Some(zone))
}

fn nxdomain(name: &'static str, rtype: RecordType, zone: &'static str) -> Row {
    row(name, rtype, NXDomain, &[], Some(zone))
}

/// The table for the default configuration (pods insecure, hostnames or dashed addresses, TTL 30).
fn default_table() -> Vec<Row> {
    vec![
        // Headless service, StatefulSet pod records.
        yes("web-0.nginx.demo.svc.cluster.local.", A, &["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10"]),
        yes("web-1.nginx.demo.svc.cluster.local.", A, &["web-1.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.11"]),
        yes("WEB-0.Nginx.Demo.SVC.cluster.LOCAL.", A, &["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10"]),
        nodata("web-0.nginx.demo.svc.cluster.local.", AAAA, ZONE),
        nodata("web-0.nginx.demo.svc.cluster.local.", TXT, ZONE),
        nxdomain("web-2.nginx.demo.svc.cluster.local.", A, ZONE),
        nxdomain("web-3.nginx.demo.svc.cluster.local.", A, ZONE),
        nxdomain("web-9.nginx.demo.svc.cluster.local.", A, ZONE),
        nxdomain("sub.web-0.nginx.demo.svc.cluster.local.", A, ZONE),
        yes(
            "nginx.demo.svc.cluster.local.",
            A,
            &["nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10", "nginx.demo.svc.cluster.local. 30 IN A 10.244.1.11"],
        ),
        nodata("nginx.demo.svc.cluster.local.", AAAA, ZONE),
        yes(
            "_web._tcp.nginx.demo.svc.cluster.local.",
            SRV,
            &[
                "_web._tcp.nginx.demo.svc.cluster.local. 30 IN SRV 0 50 8080 web-0.nginx.demo.svc.cluster.local.",
                "_web._tcp.nginx.demo.svc.cluster.local. 30 IN SRV 0 50 8080 web-1.nginx.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10", "web-1.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.11"]),
        nodata("_web._tcp.nginx.demo.svc.cluster.local.", A, ZONE),
        nodata("_tcp.nginx.demo.svc.cluster.local.", SRV, ZONE),
        nxdomain("_web._udp.nginx.demo.svc.cluster.local.", SRV, ZONE),
        nxdomain("_http._tcp.nginx.demo.svc.cluster.local.", SRV, ZONE),
        // Headless without hostnames: dashed addresses.
        yes(
            "anon.demo.svc.cluster.local.",
            A,
            &["anon.demo.svc.cluster.local. 30 IN A 10.244.2.5", "anon.demo.svc.cluster.local. 30 IN A 10.244.2.6"],
        ),
        yes(
            "10-244-2-5.anon.demo.svc.cluster.local.",
            A,
            &["10-244-2-5.anon.demo.svc.cluster.local. 30 IN A 10.244.2.5"],
        ),
        nxdomain("anon-abc.anon.demo.svc.cluster.local.", A, ZONE),
        yes(
            "_http._tcp.anon.demo.svc.cluster.local.",
            SRV,
            &[
                "_http._tcp.anon.demo.svc.cluster.local. 30 IN SRV 0 50 8080 10-244-2-5.anon.demo.svc.cluster.local.",
                "_http._tcp.anon.demo.svc.cluster.local. 30 IN SRV 0 50 8080 10-244-2-6.anon.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&["10-244-2-5.anon.demo.svc.cluster.local. 30 IN A 10.244.2.5", "10-244-2-6.anon.demo.svc.cluster.local. 30 IN A 10.244.2.6"]),
        // publishNotReadyAddresses.
        yes("notready.demo.svc.cluster.local.", A, &["notready.demo.svc.cluster.local. 30 IN A 10.244.3.1"]),
        yes("nr-0.notready.demo.svc.cluster.local.", A, &["nr-0.notready.demo.svc.cluster.local. 30 IN A 10.244.3.1"]),
        // Headless with no endpoints does not exist.
        nxdomain("empty-headless.demo.svc.cluster.local.", A, ZONE),
        // ClusterIP, dual-stack, named ports, endpoints of a ClusterIP service.
        yes("dual.demo.svc.cluster.local.", A, &["dual.demo.svc.cluster.local. 30 IN A 10.96.5.5"]),
        yes("dual.demo.svc.cluster.local.", AAAA, &["dual.demo.svc.cluster.local. 30 IN AAAA fd00:10:96::5"]),
        yes(
            "_dns._udp.dual.demo.svc.cluster.local.",
            SRV,
            &["_dns._udp.dual.demo.svc.cluster.local. 30 IN SRV 0 100 53 dual.demo.svc.cluster.local."],
        )
        .with_additional(&["dual.demo.svc.cluster.local. 30 IN A 10.96.5.5", "dual.demo.svc.cluster.local. 30 IN AAAA fd00:10:96::5"]),
        nxdomain("_dns._tcp.dual.demo.svc.cluster.local.", SRV, ZONE),
        yes(
            "10-244-4-1.dual.demo.svc.cluster.local.",
            A,
            &["10-244-4-1.dual.demo.svc.cluster.local. 30 IN A 10.244.4.1"],
        ),
        yes(
            "fd00-10-244--4-1.dual.demo.svc.cluster.local.",
            AAAA,
            &["fd00-10-244--4-1.dual.demo.svc.cluster.local. 30 IN AAAA fd00:10:244::4:1"],
        ),
        yes("v6only.demo.svc.cluster.local.", AAAA, &["v6only.demo.svc.cluster.local. 30 IN AAAA fd00:10:96::6"]),
        nodata("v6only.demo.svc.cluster.local.", A, ZONE),
        yes("kubernetes.default.svc.cluster.local.", A, &["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"]),
        yes(
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            SRV,
            &[
                "_https._tcp.kubernetes.default.svc.cluster.local. 30 IN SRV 0 100 443 kubernetes.default.svc.cluster.local.",
            ],
        )
        .with_additional(&["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"]),
        // SRV at the service's own name (CoreDNS): every port; headless: every endpoint × port.
        yes(
            "nginx.demo.svc.cluster.local.",
            SRV,
            &[
                "nginx.demo.svc.cluster.local. 30 IN SRV 0 50 8080 web-0.nginx.demo.svc.cluster.local.",
                "nginx.demo.svc.cluster.local. 30 IN SRV 0 50 8080 web-1.nginx.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&[
            "web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10",
            "web-1.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.11",
        ]),
        yes(
            "anon.demo.svc.cluster.local.",
            SRV,
            &[
                "anon.demo.svc.cluster.local. 30 IN SRV 0 50 8080 10-244-2-5.anon.demo.svc.cluster.local.",
                "anon.demo.svc.cluster.local. 30 IN SRV 0 50 8080 10-244-2-6.anon.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&[
            "10-244-2-5.anon.demo.svc.cluster.local. 30 IN A 10.244.2.5",
            "10-244-2-6.anon.demo.svc.cluster.local. 30 IN A 10.244.2.6",
        ]),
        yes(
            "notready.demo.svc.cluster.local.",
            SRV,
            &["notready.demo.svc.cluster.local. 30 IN SRV 0 100 80 nr-0.notready.demo.svc.cluster.local."],
        )
        .with_additional(&["nr-0.notready.demo.svc.cluster.local. 30 IN A 10.244.3.1"]),
        // ClusterIP: the service is the target; a named UDP port and an unnamed TCP port; both families.
        yes(
            "dual.demo.svc.cluster.local.",
            SRV,
            &[
                "dual.demo.svc.cluster.local. 30 IN SRV 0 50 53 dual.demo.svc.cluster.local.",
                "dual.demo.svc.cluster.local. 30 IN SRV 0 50 8080 dual.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&[
            "dual.demo.svc.cluster.local. 30 IN A 10.96.5.5",
            "dual.demo.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ]),
        // Port 53 over UDP and TCP is one (target, port): one record.
        yes(
            "kube-dns.kube-system.svc.cluster.local.",
            SRV,
            &[
                "kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 50 53 kube-dns.kube-system.svc.cluster.local.",
                "kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 50 9153 kube-dns.kube-system.svc.cluster.local.",
            ],
        )
        .with_additional(&["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"]),
        yes(
            "v6only.demo.svc.cluster.local.",
            SRV,
            &["v6only.demo.svc.cluster.local. 30 IN SRV 0 100 80 v6only.demo.svc.cluster.local."],
        )
        .with_additional(&["v6only.demo.svc.cluster.local. 30 IN AAAA fd00:10:96::6"]),
        nxdomain("empty-headless.demo.svc.cluster.local.", SRV, ZONE),
        nodata("10-244-4-1.dual.demo.svc.cluster.local.", SRV, ZONE),
        yes("ext.demo.svc.cluster.local.", SRV, &["ext.demo.svc.cluster.local. 30 IN CNAME www.example.com."]),
        // Names the API accepts that are no DNS label: only that endpoint's name changes.
        yes(
            "longnames.demo.svc.cluster.local.",
            A,
            &[
                "longnames.demo.svc.cluster.local. 30 IN A 10.244.5.7",
                "longnames.demo.svc.cluster.local. 30 IN A 10.244.5.8",
            ],
        ),
        yes(
            "10-244-5-7.longnames.demo.svc.cluster.local.",
            A,
            &["10-244-5-7.longnames.demo.svc.cluster.local. 30 IN A 10.244.5.7"],
        ),
        yes("db-1.longnames.demo.svc.cluster.local.", A, &["db-1.longnames.demo.svc.cluster.local. 30 IN A 10.244.5.8"]),
        yes(
            "_db._tcp.longnames.demo.svc.cluster.local.",
            SRV,
            &[
                "_db._tcp.longnames.demo.svc.cluster.local. 30 IN SRV 0 50 5432 10-244-5-7.longnames.demo.svc.cluster.local.",
                "_db._tcp.longnames.demo.svc.cluster.local. 30 IN SRV 0 50 5432 db-1.longnames.demo.svc.cluster.local.",
            ],
        )
        .with_additional(&[
            "10-244-5-7.longnames.demo.svc.cluster.local. 30 IN A 10.244.5.7",
            "db-1.longnames.demo.svc.cluster.local. 30 IN A 10.244.5.8",
        ]),
        yes(
            "7.5.244.10.in-addr.arpa.",
            PTR,
            &["7.5.244.10.in-addr.arpa. 30 IN PTR 10-244-5-7.longnames.demo.svc.cluster.local."],
        ),
        // ExternalName.
        yes("ext.demo.svc.cluster.local.", CNAME, &["ext.demo.svc.cluster.local. 30 IN CNAME www.example.com."]),
        yes("ext.demo.svc.cluster.local.", A, &["ext.demo.svc.cluster.local. 30 IN CNAME www.example.com."]),
        yes(
            "alias.demo.svc.cluster.local.",
            A,
            &[
                "alias.demo.svc.cluster.local. 30 IN CNAME dual.demo.svc.cluster.local.",
                "dual.demo.svc.cluster.local. 30 IN A 10.96.5.5",
            ],
        ),
        // PTR for cluster IPs and ready endpoints, IPv4 and IPv6.
        yes(
            "10.1.244.10.in-addr.arpa.",
            PTR,
            &["10.1.244.10.in-addr.arpa. 30 IN PTR web-0.nginx.demo.svc.cluster.local."],
        ),
        yes(
            "5.2.244.10.in-addr.arpa.",
            PTR,
            &["5.2.244.10.in-addr.arpa. 30 IN PTR 10-244-2-5.anon.demo.svc.cluster.local."],
        ),
        yes("5.5.96.10.in-addr.arpa.", PTR, &["5.5.96.10.in-addr.arpa. 30 IN PTR dual.demo.svc.cluster.local."]),
        yes(
            "1.4.244.10.in-addr.arpa.",
            PTR,
            &["1.4.244.10.in-addr.arpa. 30 IN PTR 10-244-4-1.dual.demo.svc.cluster.local."],
        ),
        yes(
            "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
            PTR,
            &[
                "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 30 IN PTR dual.demo.svc.cluster.local.",
            ],
        ),
        nxdomain("12.1.244.10.in-addr.arpa.", PTR, IN_ADDR),
        nxdomain("9.9.9.9.in-addr.arpa.", PTR, IN_ADDR),
        nodata("1.244.10.in-addr.arpa.", PTR, IN_ADDR),
        nxdomain("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", PTR, IP6),
        // Empty non-terminals and names that do not exist.
        nodata("svc.cluster.local.", A, ZONE),
        nodata("demo.svc.cluster.local.", A, ZONE),
        nodata("empty-ns.svc.cluster.local.", A, ZONE),
        nxdomain("no-such-ns.svc.cluster.local.", A, ZONE),
        nxdomain("nope.demo.svc.cluster.local.", A, ZONE),
        nxdomain("web-0.nginx.demo.svc.cluster.local.demo.svc.cluster.local.", A, ZONE),
        nxdomain("nginx.demo.cluster.local.", A, ZONE),
        // Apex, version, name server.
        nodata("cluster.local.", A, ZONE),
        yes("cluster.local.", NS, &["cluster.local. 30 IN NS ns.dns.cluster.local."]),
        yes("ns.dns.cluster.local.", A, &["ns.dns.cluster.local. 30 IN A 10.96.0.10"]),
        yes("dns-version.cluster.local.", TXT, &["dns-version.cluster.local. 30 IN TXT 1.1.0"]),
        nodata("dns-version.cluster.local.", A, ZONE),
        // Pod records, insecure mode.
        yes("10-244-1-10.demo.pod.cluster.local.", A, &["10-244-1-10.demo.pod.cluster.local. 30 IN A 10.244.1.10"]),
        yes("10-1-2-3.demo.pod.cluster.local.", A, &["10-1-2-3.demo.pod.cluster.local. 30 IN A 10.1.2.3"]),
        nodata("10-1-2-3.demo.pod.cluster.local.", AAAA, ZONE),
        yes("fd00--1.demo.pod.cluster.local.", AAAA, &["fd00--1.demo.pod.cluster.local. 30 IN AAAA fd00::1"]),
        nxdomain("10-1-2-3.no-such-ns.pod.cluster.local.", A, ZONE),
        nxdomain("not-an-ip.demo.pod.cluster.local.", A, ZONE),
        nodata("demo.pod.cluster.local.", A, ZONE),
        // ANY gets one RRset (RFC 8482).
        yes("web-0.nginx.demo.svc.cluster.local.", ANY, &["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10"]),
        // Not ours, and no forwarder configured.
        row("example.com.", A, Refused, &[], None),
    ]
}

async fn run_table(options: Options, table: Vec<Row>) {
    let server = support::start(Some(Path::new(FIXTURE)), options).await;
    let mut failures = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(server.addr, transport).await;
        for row in &table {
            let response = client.query(row.name, row.rtype).await;
            let question = format!("{transport:?} {} {}", row.name, row.rtype);
            if let Err(problem) = check(&question, &response, &row.expect) {
                failures.push(problem);
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn default_configuration() {
    run_table(Options::default(), default_table()).await;
}

#[tokio::test]
async fn soa_answers_and_serial() {
    let server = support::start(Some(Path::new(FIXTURE)), Options::default()).await;
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    let response = client.query("cluster.local.", SOA).await;
    assert_eq!(response.metadata.response_code, NoError);
    assert!(response.metadata.authoritative);
    let line = support::show(&response.answers[0]);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[..6],
        &["cluster.local.", "30", "IN", "SOA", "ns.dns.cluster.local.", "hostmaster.cluster.local."]
    );
    assert_eq!(fields[9], "86400");
    assert_eq!(fields[10], "30", "SOA minimum is the negative TTL");
    let reverse = client.query("in-addr.arpa.", SOA).await;
    assert_eq!(reverse.answers.len(), 1);
}

#[tokio::test]
async fn verified_pod_mode() {
    let table = vec![
        yes("10-244-1-10.demo.pod.cluster.local.", A, &["10-244-1-10.demo.pod.cluster.local. 30 IN A 10.244.1.10"]),
        yes(
            "fd00-10-244--99.demo.pod.cluster.local.",
            AAAA,
            &["fd00-10-244--99.demo.pod.cluster.local. 30 IN AAAA fd00:10:244::99"],
        ),
        nxdomain("10-1-2-3.demo.pod.cluster.local.", A, ZONE),
        nxdomain("10-244-1-10.default.pod.cluster.local.", A, ZONE),
        // The pod with a 72-character name.
        yes("10-244-5-7.demo.pod.cluster.local.", A, &["10-244-5-7.demo.pod.cluster.local. 30 IN A 10.244.5.7"]),
    ];
    run_table(Options { pod_mode: PodMode::Verified, ..Options::default() }, table).await;
}

#[tokio::test]
async fn disabled_pod_mode() {
    let table = vec![
        nxdomain("10-244-1-10.demo.pod.cluster.local.", A, ZONE),
        nxdomain("pod.cluster.local.", A, ZONE),
        yes("web-0.nginx.demo.svc.cluster.local.", A, &["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10"]),
    ];
    run_table(Options { pod_mode: PodMode::Disabled, ..Options::default() }, table).await;
}

#[tokio::test]
async fn endpoint_pod_names_mode() {
    let table = vec![
        yes("anon-abc.anon.demo.svc.cluster.local.", A, &["anon-abc.anon.demo.svc.cluster.local. 30 IN A 10.244.2.5"]),
        nxdomain("10-244-2-5.anon.demo.svc.cluster.local.", A, ZONE),
        // A pod name that is no DNS label: the dashed address, as without the mode.
        yes(
            "10-244-5-7.longnames.demo.svc.cluster.local.",
            A,
            &["10-244-5-7.longnames.demo.svc.cluster.local. 30 IN A 10.244.5.7"],
        ),
        // A hostname still wins over the pod name.
        yes("web-0.nginx.demo.svc.cluster.local.", A, &["web-0.nginx.demo.svc.cluster.local. 30 IN A 10.244.1.10"]),
        yes(
            "5.2.244.10.in-addr.arpa.",
            PTR,
            &["5.2.244.10.in-addr.arpa. 30 IN PTR anon-abc.anon.demo.svc.cluster.local."],
        ),
    ];
    run_table(Options { endpoint_pod_names: true, ..Options::default() }, table).await;
}

#[tokio::test]
async fn custom_ttl() {
    let table = vec![yes(
        "kubernetes.default.svc.cluster.local.",
        A,
        &["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"],
    )];
    run_table(Options { ttl: 5, ..Options::default() }, table).await;
}

#[tokio::test]
async fn servfail_for_cluster_names_until_synced() {
    let server = support::start(None, Options::default()).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(server.addr, transport).await;
        let response = client.query("web-0.nginx.demo.svc.cluster.local.", A).await;
        assert_eq!(response.metadata.response_code, ServFail);
        assert!(!response.metadata.authoritative);
        let reverse = client.query("10.1.244.10.in-addr.arpa.", PTR).await;
        assert_eq!(reverse.metadata.response_code, ServFail);
        let other = client.query("example.com.", A).await;
        assert_eq!(other.metadata.response_code, Refused);
    }
}
