//! Multi-cluster services (KEP-1645, `--multicluster-zone clusterset.local`) as behaviour tables:
//! question → complete answer (rcode, AA, answer, authority, additional), over UDP and TCP, against the
//! `roster dns --objects` binary serving tests/fixtures/multicluster.yaml (ServiceImports and the
//! EndpointSlices labelled `multicluster.kubernetes.io/service-name`, with a local service beside
//! them). The expected answers are CoreDNS's `multicluster` option's (plugin/kubernetes), with roster's
//! documented differences (docs/coredns-differences.md).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;

use hickory_proto::op::ResponseCode::{self, NXDomain, NoError, Refused};
use hickory_proto::rr::RecordType::{self, A, AAAA, NS, PTR, SOA, SRV, TXT};
use support::process::{self, Proc};
use support::upstream::{self, Behaviour};
use support::{DnsClient, Expect, Transport};

const OBJECTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/multicluster.yaml");
const MC: &str = "clusterset.local.";

/// `roster dns --objects` on a free loopback port, answering once the manifests are loaded.
fn start(extra: &[&str]) -> (Proc, SocketAddr) {
    let port = process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["dns", "--objects", OBJECTS, "--listen", &listen];
    args.extend_from_slice(extra);
    let server = Proc::roster(&args);
    process::wait_for("the manifests to be served", &[&server], || {
        process::status(port, "web.demo.svc.cluster.local.") == "NOERROR"
    });
    (server, listen.parse().unwrap())
}

fn expect(rcode: ResponseCode, answer: &[&str], soa: Option<&'static str>, additional: &[&str]) -> Expect {
    let own = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect();
    Expect { rcode, aa: rcode != Refused, answer: own(answer), soa, additional: own(additional) }
}

fn answer(answer: &[&str]) -> Expect {
    expect(NoError, answer, None, &[])
}

fn with_additional(records: &[&str], additional: &[&str]) -> Expect {
    expect(NoError, records, None, additional)
}

fn nodata() -> Expect {
    expect(NoError, &[], Some(MC), &[])
}

fn nxdomain() -> Expect {
    expect(NXDomain, &[], Some(MC), &[])
}

async fn run_table(addr: SocketAddr, table: &[(&str, RecordType, Expect)]) {
    let mut failures = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(addr, transport).await;
        for (name, rtype, want) in table {
            let response = client.query(name, *rtype).await;
            if let Err(problem) = support::check(&format!("{name} {rtype}"), &response, want) {
                failures.push(format!("{transport:?} {problem}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

const DB_A: &str = "db.demo.svc.clusterset.local. 30 IN A 10.99.0.10";
const DB_AAAA: &str = "db.demo.svc.clusterset.local. 30 IN AAAA fd00:99::10";
const CACHE0_EAST: &str = "cache-0.east.cache.demo.svc.clusterset.local. 30 IN A 10.1.0.5";
const CACHE0_WEST: &str = "cache-0.west.cache.demo.svc.clusterset.local. 30 IN A 10.2.0.5";
const UNNAMED_EAST: &str = "10-1-0-7.east.cache.demo.svc.clusterset.local. 30 IN A 10.1.0.7";

#[tokio::test]
async fn clusterset_local_answers_service_imports() {
    let (server, addr) = start(&["--multicluster-zone", "clusterset.local"]);
    let table = [
        // ClusterSetIP: its IPs, SRV per named port and at the name for every port (to the name).
        ("db.demo.svc.clusterset.local.", A, answer(&[DB_A])),
        ("DB.Demo.svc.ClusterSet.local.", A, answer(&["db.demo.svc.clusterset.local. 30 IN A 10.99.0.10"])),
        ("db.demo.svc.clusterset.local.", AAAA, answer(&[DB_AAAA])),
        ("db.demo.svc.clusterset.local.", TXT, nodata()),
        (
            "_pg._tcp.db.demo.svc.clusterset.local.",
            SRV,
            with_additional(
                &["_pg._tcp.db.demo.svc.clusterset.local. 30 IN SRV 0 100 5432 db.demo.svc.clusterset.local."],
                &[DB_A, DB_AAAA],
            ),
        ),
        (
            "db.demo.svc.clusterset.local.",
            SRV,
            with_additional(
                &[
                    "db.demo.svc.clusterset.local. 30 IN SRV 0 50 5432 db.demo.svc.clusterset.local.",
                    "db.demo.svc.clusterset.local. 30 IN SRV 0 50 9187 db.demo.svc.clusterset.local.",
                ],
                &[DB_A, DB_AAAA],
            ),
        ),
        ("_pg._udp.db.demo.svc.clusterset.local.", SRV, nxdomain()),
        ("_metrics._tcp.db.demo.svc.clusterset.local.", SRV, nxdomain()),
        ("_tcp.db.demo.svc.clusterset.local.", SRV, nodata()),
        // Per-endpoint names carry the source cluster: `<hostname>.<clusterid>.<svc>.<ns>`.
        (
            "db-0.east.db.demo.svc.clusterset.local.",
            A,
            answer(&["db-0.east.db.demo.svc.clusterset.local. 30 IN A 10.1.0.20"]),
        ),
        ("db-0.west.db.demo.svc.clusterset.local.", A, nxdomain()),
        ("db-0.db.demo.svc.clusterset.local.", A, nxdomain()),
        ("east.db.demo.svc.clusterset.local.", A, nodata()),
        // Headless: every ready endpoint of every cluster; not-ready and terminating ones are left out.
        (
            "cache.demo.svc.clusterset.local.",
            A,
            answer(&[
                "cache.demo.svc.clusterset.local. 30 IN A 10.1.0.5",
                "cache.demo.svc.clusterset.local. 30 IN A 10.1.0.7",
                "cache.demo.svc.clusterset.local. 30 IN A 10.2.0.5",
            ]),
        ),
        ("cache.demo.svc.clusterset.local.", AAAA, nodata()),
        ("cache-0.east.cache.demo.svc.clusterset.local.", A, answer(&[CACHE0_EAST])),
        ("cache-0.west.cache.demo.svc.clusterset.local.", A, answer(&[CACHE0_WEST])),
        // Without a hostname, the endpoint is named by its dashed address (as CoreDNS).
        ("10-1-0-7.east.cache.demo.svc.clusterset.local.", A, answer(&[UNNAMED_EAST])),
        ("cache-1.east.cache.demo.svc.clusterset.local.", A, nxdomain()),
        ("cache-3.east.cache.demo.svc.clusterset.local.", A, nxdomain()),
        ("10-1-0-6.east.cache.demo.svc.clusterset.local.", A, nxdomain()),
        // Headless SRV: one record per ready endpoint, to its own name, port the endpoint's.
        (
            "_redis._tcp.cache.demo.svc.clusterset.local.",
            SRV,
            with_additional(
                &[
                    "_redis._tcp.cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 10-1-0-7.east.cache.demo.svc.clusterset.local.",
                    "_redis._tcp.cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 cache-0.east.cache.demo.svc.clusterset.local.",
                    "_redis._tcp.cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 cache-0.west.cache.demo.svc.clusterset.local.",
                ],
                &[CACHE0_EAST, CACHE0_WEST, UNNAMED_EAST],
            ),
        ),
        (
            "cache.demo.svc.clusterset.local.",
            SRV,
            with_additional(
                &[
                    "cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 10-1-0-7.east.cache.demo.svc.clusterset.local.",
                    "cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 cache-0.east.cache.demo.svc.clusterset.local.",
                    "cache.demo.svc.clusterset.local. 30 IN SRV 0 33 6379 cache-0.west.cache.demo.svc.clusterset.local.",
                ],
                &[CACHE0_EAST, CACHE0_WEST, UNNAMED_EAST],
            ),
        ),
        // No ready endpoint, no IP yet, not imported (a local service only), no such namespace.
        ("empty.demo.svc.clusterset.local.", A, nxdomain()),
        ("_http._tcp.empty.demo.svc.clusterset.local.", SRV, nxdomain()),
        ("pending.demo.svc.clusterset.local.", A, nxdomain()),
        ("web.demo.svc.clusterset.local.", A, nxdomain()),
        ("db.nothing.svc.clusterset.local.", A, nxdomain()),
        ("nothing.svc.clusterset.local.", A, nxdomain()),
        // Empty non-terminals and namespaces of this cluster: NODATA.
        ("demo.svc.clusterset.local.", A, nodata()),
        ("other.svc.clusterset.local.", A, nodata()),
        ("svc.clusterset.local.", A, nodata()),
        ("pod.clusterset.local.", A, nxdomain()),
        ("dns-version.clusterset.local.", TXT, answer(&["dns-version.clusterset.local. 30 IN TXT 1.1.0"])),
        // The zone's apex: SOA and NS, the one name server of the cluster zone.
        ("clusterset.local.", SOA, expect(NoError, &[], None, &[])),
        ("clusterset.local.", NS, answer(&["clusterset.local. 30 IN NS ns.dns.cluster.local."])),
        ("clusterset.local.", A, nodata()),
        // Imports have no PTR (the addresses belong to other clusters), as in CoreDNS.
        ("20.0.1.10.in-addr.arpa.", PTR, expect(NXDomain, &[], Some("in-addr.arpa."), &[])),
        ("10.0.99.10.in-addr.arpa.", PTR, expect(NXDomain, &[], Some("in-addr.arpa."), &[])),
        // The cluster zone is unchanged.
        ("web.demo.svc.cluster.local.", A, answer(&["web.demo.svc.cluster.local. 30 IN A 10.96.0.20"])),
        ("db.demo.svc.cluster.local.", A, expect(NXDomain, &[], Some("cluster.local."), &[])),
    ];
    // The SOA's answer carries a serial that changes with each generation: checked apart.
    let (soa_rows, rows): (Vec<_>, Vec<_>) = table.into_iter().partition(|(_, rtype, _)| *rtype == SOA);
    run_table(addr, &rows).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(addr, transport).await;
        for (name, _, _) in &soa_rows {
            let response = client.query(name, SOA).await;
            let soa = support::show(&response.answers[0]);
            assert!(
                response.metadata.authoritative
                    && soa.starts_with("clusterset.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. ")
                    && soa.ends_with(" 7200 1800 86400 30"),
                "{transport:?} {name} SOA: {soa}"
            );
        }
    }
    // And as people ask: dig over UDP and TCP.
    let port = addr.port();
    assert_eq!(process::short(port, "db.demo.svc.clusterset.local", "A"), ["10.99.0.10"]);
    let tcp = process::sorted_lines(&process::dig(port, &["+tcp", "+short", "cache.demo.svc.clusterset.local"]));
    assert_eq!(tcp, ["10.1.0.5", "10.1.0.7", "10.2.0.5"]);
    assert_eq!(
        process::short(port, "_pg._tcp.db.demo.svc.clusterset.local", "SRV"),
        ["0 100 5432 db.demo.svc.clusterset.local."]
    );
    assert_eq!(process::status(port, "cache-1.east.cache.demo.svc.clusterset.local"), "NXDOMAIN");
    drop(server);
}

/// Without the flag the zone is not roster's: with no forwarder its names are REFUSED like every
/// foreign name (ServiceImports in the manifests are read and ignored); the cluster zone is as before.
#[tokio::test]
async fn without_the_flag_clusterset_local_is_foreign() {
    let (server, addr) = start(&[]);
    let refused = || expect(Refused, &[], None, &[]);
    let table = [
        ("db.demo.svc.clusterset.local.", A, refused()),
        ("clusterset.local.", SOA, refused()),
        ("demo.svc.clusterset.local.", A, refused()),
        ("web.demo.svc.cluster.local.", A, answer(&["web.demo.svc.cluster.local. 30 IN A 10.96.0.20"])),
        ("db.demo.svc.cluster.local.", A, expect(NXDomain, &[], Some("cluster.local."), &[])),
    ];
    run_table(addr, &table).await;
    drop(server);
}

/// Without the flag and with a forwarder, the zone's names go upstream like any foreign name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_clusterset_local_is_forwarded_when_told() {
    let upstream = upstream::start(Behaviour::Good).await;
    let (server, addr) = start(&["--upstream", &upstream.addr.to_string()]);
    let before = upstream.queries.load(Ordering::SeqCst);
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut client = DnsClient::connect(addr, transport).await;
        let response = client.query("db.demo.svc.clusterset.local.", A).await;
        // The fake upstream's NXDOMAIN, not ours: not authoritative.
        assert_eq!(response.metadata.response_code, NXDomain, "{transport:?}");
        assert!(!response.metadata.authoritative, "{transport:?}");
    }
    // (At least: the forwarder's health checks go to the same upstream.)
    assert!(upstream.queries.load(Ordering::SeqCst) > before, "the upstream was asked");
    drop(server);
}

/// A multicluster zone that overlaps the cluster zone or a reverse zone is refused before starting,
/// naming the flag; a well-formed one passes the same check.
#[test]
fn an_overlapping_multicluster_zone_is_refused() {
    let check = |zone: &str| {
        Command::new(process::ROSTER)
            .args(["dns", "--objects", OBJECTS, "--multicluster-zone", zone, "--check-args"])
            .output()
            .unwrap()
    };
    for zone in ["cluster.local", "svc.cluster.local", "local", "in-addr.arpa", "bad..zone"] {
        let output = check(zone);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{zone} accepted");
        assert!(stderr.contains("--multicluster-zone"), "{zone}: {stderr}");
    }
    assert!(check("clusterset.local").status.success());
    // The environment variable is the same flag.
    let env = Command::new(process::ROSTER)
        .args(["dns", "--objects", OBJECTS, "--check-args"])
        .env("ROSTER_MULTICLUSTER_ZONE", "in-addr.arpa")
        .output()
        .unwrap();
    assert!(!env.status.success() && String::from_utf8_lossy(&env.stderr).contains("--multicluster-zone"));
    let controller = Command::new(process::ROSTER)
        .args(["controller", "--multicluster-zone", "cluster.local", "--check-args"])
        .output()
        .unwrap();
    assert!(!controller.status.success());
    assert!(String::from_utf8_lossy(&controller.stderr).contains("--multicluster-zone"));
}

const CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/serviceimport-crd.yaml");

/// Through the Kubernetes API (`roster local`'s stand-in, kube-rs watches): the ServiceImport CRD is
/// installed after the start and picked up without a restart; imports and their slices follow edits
/// and deletions.
#[test]
fn roster_local_follows_service_imports_installed_later() {
    let dir = tempfile::tempdir().unwrap();
    let (api, dns, stream) = (process::free_port(), process::free_port(), process::free_port());
    let local = Proc::roster(&[
        "local",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--api",
        &format!("127.0.0.1:{api}"),
        "--dns",
        &format!("127.0.0.1:{dns}"),
        "--stream",
        &format!("127.0.0.1:{stream}"),
        "--multicluster-zone",
        "clusterset.local",
    ]);
    let kubeconfig = dir.path().join("kubeconfig");
    process::wait_for("roster local to start", &[&local], || local.log().contains("roster local is up"));
    process::wait_for("the API in DNS", &[&local], || {
        process::short(dns, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"]
    });
    // Authoritative from the start; nothing imported yet.
    assert_eq!(process::status(dns, "db.demo.svc.clusterset.local"), "NXDOMAIN");
    assert_eq!(process::status(dns, "default.svc.clusterset.local"), "NOERROR");

    let manifests = std::fs::read_to_string(OBJECTS).unwrap();
    process::kubectl(&kubeconfig, &["apply", "-f", CRD], None);
    process::kubectl(
        &kubeconfig,
        &["wait", "--for=condition=Established", "crd/serviceimports.multicluster.x-k8s.io"],
        None,
    );
    process::kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&manifests));
    process::wait_for("the imports in DNS", &[&local], || {
        process::short(dns, "db.demo.svc.clusterset.local", "A") == ["10.99.0.10"]
    });
    process::wait_for("the imported slices in DNS", &[&local], || {
        process::short(dns, "cache.demo.svc.clusterset.local", "A") == ["10.1.0.5", "10.1.0.7", "10.2.0.5"]
    });
    assert_eq!(process::short(dns, "cache-0.west.cache.demo.svc.clusterset.local", "A"), ["10.2.0.5"]);

    // An endpoint turns not ready in one cluster; an import changes its IP; another is deleted.
    process::kubectl(
        &kubeconfig,
        &[
            "-n",
            "demo",
            "patch",
            "endpointslice",
            "cache-west",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/endpoints/0/conditions","value":{"ready":false}}]"#,
        ],
        None,
    );
    process::kubectl(
        &kubeconfig,
        &["-n", "demo", "patch", "serviceimport", "db", "--type=merge", "-p", r#"{"spec":{"ips":["10.99.0.11"]}}"#],
        None,
    );
    process::kubectl(&kubeconfig, &["-n", "demo", "delete", "serviceimport", "pending"], None);
    process::wait_for("the edits in DNS", &[&local], || {
        process::short(dns, "cache.demo.svc.clusterset.local", "A") == ["10.1.0.5", "10.1.0.7"]
            && process::short(dns, "db.demo.svc.clusterset.local", "A") == ["10.99.0.11"]
            && process::status(dns, "cache-0.west.cache.demo.svc.clusterset.local") == "NXDOMAIN"
    });
    process::kubectl(&kubeconfig, &["-n", "demo", "delete", "serviceimport", "db"], None);
    process::wait_for("the deletion in DNS", &[&local], || {
        process::status(dns, "db.demo.svc.clusterset.local") == "NXDOMAIN"
    });
    assert!(local.log().contains("ServiceImports are served"), "{}", local.log());
}
