//! Autopath behaviour tables (`--autopath`, CoreDNS's `autopath @kubernetes`): question from a pod →
//! complete answer, over UDP and TCP with the hickory-net client, against the real server fed from
//! manifests through the record stream's publisher (the client map travels with the records).
//!
//! The asking pod is `demo/client` at 127.0.0.1 (where the test client's queries come from). A query
//! for its first search name (`<name>.demo.svc.cluster.local`) that does not exist is answered with
//! the first of `<name>.svc.cluster.local`, `<name>.cluster.local`, `<name>.` that is not NXDOMAIN,
//! behind a CNAME from the asked name when it has records (the forwarder's answers included);
//! NXDOMAIN only when none exists. Everything else is answered as without autopath.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use hickory_proto::op::ResponseCode::{self, NXDomain, NoError};
use hickory_proto::rr::RecordType::{self, A, AAAA, TXT};
use hickory_proto::rr::{Record, RecordType as Rt};
use support::upstream::{self, Behaviour};
use support::{DnsClient, Options, Transport};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: other}
spec: {type: ExternalName, externalName: api.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: demo}
spec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: demo}
spec: {CLIENT_SPEC containers: [{name: c, image: busybox}]}
status: {CLIENT_PHASE podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}]}
"#;

/// One expected answer: rcode, AA, answer records (TTLs of forwarded records left out: the cache
/// counts them down), and whether the cluster zone's SOA is the authority.
struct Row {
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    answer: &'static [&'static str],
    soa: bool,
}

fn row(name: &'static str, rtype: RecordType, answer: &'static [&'static str]) -> Row {
    Row { name, rtype, rcode: NoError, aa: true, answer, soa: false }
}

fn forwarded(name: &'static str, rtype: RecordType, answer: &'static [&'static str]) -> Row {
    Row { aa: false, ..row(name, rtype, answer) }
}

fn nodata(name: &'static str, rtype: RecordType) -> Row {
    Row { soa: true, ..row(name, rtype, &[]) }
}

fn nxdomain(name: &'static str, rtype: RecordType) -> Row {
    Row { rcode: NXDomain, soa: true, ..row(name, rtype, &[]) }
}

/// A record as text; the TTL is kept only for records of our zone.
fn show(record: &Record) -> String {
    let text = support::show(record);
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields[0].ends_with("cluster.local.") { text } else { format!("{} {}", fields[0], fields[2..].join(" ")) }
}

async fn run_table(options: Options, phase_and_spec: (&str, &str), table: &[Row]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objects.yaml");
    let objects = OBJECTS.replace("CLIENT_PHASE", phase_and_spec.0).replace("CLIENT_SPEC", phase_and_spec.1);
    std::fs::write(&path, objects).unwrap();
    let upstream = upstream::start(Behaviour::Good).await;
    let server = support::start(Some(Path::new(&path)), Options { upstreams: vec![upstream.addr], ..options }).await;
    let mut failures = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(server.addr, transport).await;
        for row in table {
            let response = client.query(row.name, row.rtype).await;
            let mut problems = Vec::new();
            if response.metadata.response_code != row.rcode {
                problems.push(format!("rcode {:?}, want {:?}", response.metadata.response_code, row.rcode));
            }
            if response.metadata.authoritative != row.aa {
                problems.push(format!("aa {}", response.metadata.authoritative));
            }
            let got: Vec<String> = response.answers.iter().map(show).collect();
            if got != row.answer {
                problems.push(format!("answer {got:#?}, want {:#?}", row.answer));
            }
            let soa = matches!(response.authorities.as_slice(),
                [r] if r.record_type() == Rt::SOA && r.name.to_string() == "cluster.local.");
            if soa != row.soa {
                problems.push(format!("authority {:?}", response.authorities));
            }
            if !problems.is_empty() {
                failures.push(format!("{transport:?} {} {}: {}", row.name, row.rtype, problems.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

const RUNNING: (&str, &str) = ("phase: Running,", "");

#[tokio::test]
async fn autopath_walks_the_search_list_of_the_pod_asking() {
    let table = [
        // In the zone: the second candidate exists.
        row(
            "web.other.demo.svc.cluster.local.",
            A,
            &[
                "web.other.demo.svc.cluster.local. 30 IN CNAME web.other.svc.cluster.local.",
                "web.other.svc.cluster.local. 30 IN A 10.96.0.20",
            ],
        ),
        // The third candidate (the cluster domain itself).
        row(
            "dns-version.demo.svc.cluster.local.",
            TXT,
            &[
                "dns-version.demo.svc.cluster.local. 30 IN CNAME dns-version.cluster.local.",
                "dns-version.cluster.local. 30 IN TXT 1.1.0",
            ],
        ),
        // The name as asked, through the forwarder: CNAME, then the upstream's records.
        forwarded(
            "api.example.com.demo.svc.cluster.local.",
            A,
            &[
                "api.example.com.demo.svc.cluster.local. 30 IN CNAME api.example.com.",
                "api.example.com. IN A 192.0.2.16",
            ],
        ),
        // An ExternalName found on the way is chased as when asked directly.
        row(
            "ext.other.demo.svc.cluster.local.",
            A,
            &[
                "ext.other.demo.svc.cluster.local. 30 IN CNAME ext.other.svc.cluster.local.",
                "ext.other.svc.cluster.local. 30 IN CNAME api.example.com.",
                "api.example.com. IN A 192.0.2.16",
            ],
        ),
        // A candidate that exists without the type: NODATA, with no CNAME (CoreDNS's cnamer).
        nodata("web.other.demo.svc.cluster.local.", AAAA),
        // No candidate exists (the upstream has no AAAA, nor `nothing.`): the asked name's NXDOMAIN.
        nxdomain("api.example.com.demo.svc.cluster.local.", AAAA),
        nxdomain("nothing.demo.svc.cluster.local.", A),
        // The first candidate exists: answered as it is.
        row("local.demo.svc.cluster.local.", A, &["local.demo.svc.cluster.local. 30 IN A 10.96.0.30"]),
        // Not this pod's first candidate (another namespace's, or a later one): no walk.
        nxdomain("web.other.other.svc.cluster.local.", A),
        nxdomain("api.example.com.svc.cluster.local.", A),
        nxdomain("api.example.com.cluster.local.", A),
        nodata("demo.svc.cluster.local.", A),
    ];
    run_table(Options { autopath: true, ..Options::default() }, RUNNING, &table).await;
    // A manifest file may leave the phase out (the API server never does): listed with an address,
    // the pod is taken as running.
    run_table(Options { autopath: true, ..Options::default() }, ("", ""), &table).await;
}

/// Off (the default), and for pods that may not be autopathed, the first candidate is answered alone.
#[tokio::test]
async fn without_autopath_or_for_other_pods_each_candidate_is_answered_alone() {
    let table = [
        nxdomain("web.other.demo.svc.cluster.local.", A),
        nxdomain("api.example.com.demo.svc.cluster.local.", A),
        row("local.demo.svc.cluster.local.", A, &["local.demo.svc.cluster.local. 30 IN A 10.96.0.30"]),
    ];
    run_table(Options::default(), RUNNING, &table).await;
    // Succeeded or Failed pods no longer own their address; hostNetwork pods share the node's; other
    // DNS policies or search domains of the pod's own make a search list the server does not know.
    for client in [
        ("phase: Succeeded,", ""),
        ("phase: Failed,", ""),
        ("phase: Pending,", ""),
        ("phase: Running,", "hostNetwork: true,"),
        ("phase: Running,", "dnsPolicy: Default,"),
        ("phase: Running,", "dnsPolicy: None, dnsConfig: {nameservers: [10.96.0.10]},"),
        ("phase: Running,", "dnsConfig: {searches: [corp.example]},"),
    ] {
        run_table(Options { autopath: true, ..Options::default() }, client, &table).await;
    }
}
