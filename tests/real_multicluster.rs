//! Multi-cluster services against the real control plane (scripts/cluster.sh): deploy/overlays/
//! kind-multicluster applied with strict validation, `roster local --kubeconfig` with nothing but the
//! controller's ServiceAccount token (base rules plus the multicluster component's), the ServiceImport
//! CRD installed after roster started (found by discovery without a restart), objects validated by the
//! real API server, dig over UDP and TCP. One cluster for the whole file; fails, not skips, when the
//! cluster cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod support;

use std::time::Duration;

use real_support::RealCluster;
use support::process::{Proc, dig, free_port, short, sorted_lines, status};

const CRD: &str = include_str!("fixtures/serviceimport-crd.yaml");
const OBJECTS: &str = include_str!("fixtures/multicluster.yaml");

#[test]
fn service_imports_from_a_real_api_server_are_served_in_clusterset_local() {
    let cluster = RealCluster::up(&[]);
    let deploy =
        cluster.kubectl_ok(&["kustomize", &format!("{}/deploy/overlays/kind-multicluster", real_support::ROOT)]);
    let out = cluster.kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=roster-test", "--validate=strict", "-f", "-"],
        Some(&deploy),
    );
    assert!(out.ok, "deploy/overlays/kind-multicluster does not apply: {}{}", out.stdout, out.stderr);
    let token = cluster.token_kubeconfig("kube-system", "roster-controller");
    // kubectl resolves the resource through discovery, so ServiceImports can be asked about only once
    // their CRD is in (below); the base rules come from the same apply.
    cluster.eventually("RBAC for roster-controller", Duration::from_secs(30), || {
        let out =
            cluster.kubectl_as(&token, &["auth", "can-i", "watch", "endpointslices.discovery.k8s.io", "-A"], None);
        (out.stdout.trim() == "yes").then_some(())
    });

    let (dns, stream) = (free_port(), free_port());
    let roster = Proc::roster(&[
        "local",
        "--kubeconfig",
        token.to_str().unwrap(),
        "--dns",
        &format!("127.0.0.1:{dns}"),
        "--stream",
        &format!("127.0.0.1:{stream}"),
        "--multicluster-zone",
        "clusterset.local",
    ]);
    let logs = || format!("{}\n-----\n{}", roster.log(), cluster.logs());
    cluster.eventually("roster's watches to sync", Duration::from_secs(60), || {
        (short(dns, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"]).then_some(())
    });
    assert!(roster.log().contains("ServiceImports are not served"), "{}", logs());
    assert_eq!(status(dns, "db.demo.svc.clusterset.local"), "NXDOMAIN", "{}", logs());

    // The CRD arrives after roster: discovery finds it, the watch starts, objects flow in.
    cluster.apply(CRD);
    cluster.wait_for_crd("serviceimports.multicluster.x-k8s.io");
    let can_watch =
        cluster.kubectl_as(&token, &["auth", "can-i", "watch", "serviceimports.multicluster.x-k8s.io", "-A"], None);
    assert_eq!(can_watch.stdout.trim(), "yes", "{}", can_watch.stderr);
    let out = cluster.kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=roster-test", "--validate=strict", "-f", "-"],
        Some(OBJECTS),
    );
    assert!(out.ok, "the multicluster objects do not apply: {}{}", out.stdout, out.stderr);
    cluster.eventually("the imports in clusterset.local", Duration::from_secs(40), || {
        (short(dns, "db.demo.svc.clusterset.local", "A") == ["10.99.0.10"]).then_some(())
    });
    for tcp in [false, true] {
        let ask = |name: &str, rtype: &str| {
            let mut args = vec![name, rtype, "+short"];
            if tcp {
                args.push("+tcp");
            }
            sorted_lines(&dig(dns, &args))
        };
        assert_eq!(ask("db.demo.svc.clusterset.local", "AAAA"), ["fd00:99::10"], "{}", logs());
        assert_eq!(ask("cache.demo.svc.clusterset.local", "A"), ["10.1.0.5", "10.1.0.7", "10.2.0.5"], "{}", logs());
        assert_eq!(ask("cache-0.west.cache.demo.svc.clusterset.local", "A"), ["10.2.0.5"]);
        assert_eq!(ask("db-0.east.db.demo.svc.clusterset.local", "A"), ["10.1.0.20"]);
        assert_eq!(
            ask("_redis._tcp.cache.demo.svc.clusterset.local", "SRV"),
            [
                "0 33 6379 10-1-0-7.east.cache.demo.svc.clusterset.local.",
                "0 33 6379 cache-0.east.cache.demo.svc.clusterset.local.",
                "0 33 6379 cache-0.west.cache.demo.svc.clusterset.local.",
            ]
        );
        assert_eq!(ask("_pg._tcp.db.demo.svc.clusterset.local", "SRV"), ["0 100 5432 db.demo.svc.clusterset.local."]);
    }
    assert_eq!(status(dns, "cache-1.east.cache.demo.svc.clusterset.local"), "NXDOMAIN");
    assert_eq!(status(dns, "web.demo.svc.clusterset.local"), "NXDOMAIN");

    cluster.kubectl_ok(&["-n", "demo", "delete", "serviceimport", "cache"]);
    cluster.eventually("the deleted import to go", Duration::from_secs(30), || {
        (status(dns, "cache.demo.svc.clusterset.local") == "NXDOMAIN").then_some(())
    });
    let log = roster.log();
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("forbidden") || l.contains("Forbidden")).collect();
    assert!(denied.is_empty(), "roster was refused by the API server:\n{}", denied.join("\n"));
}
