//! Memory of the autopath client map (pod address → namespace): the resident memory a store gains
//! from a snapshot of 300,000 pods' addresses with autopath on, against the same snapshot with it
//! off, divided by the pods. Target: at most 100 bytes a pod (CoreDNS keeps a cache of whole pod
//! objects for autopath). It reads this process's RSS, so it is the only test in this binary.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use roster_dns::{DnsConfig, ZoneStore};
use roster_shared::{Frame, PodMode, ZoneData};

/// VmRSS of this process, in bytes.
fn rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 1024
}

/// A store that applied `zone`, and the resident bytes that took.
fn applied(zone: &Arc<ZoneData>, autopath: bool) -> (ZoneStore, i64) {
    let mut config = DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap();
    if autopath {
        config = config.with_autopath(&[]).unwrap();
    }
    let before = rss();
    let store = ZoneStore::new(config);
    store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: zone.clone() }).unwrap();
    let grown = rss() - before;
    assert_eq!(store.client_count(), if autopath { zone.clients.len() } else { 0 });
    (store, grown)
}

#[test]
fn the_client_map_costs_at_most_100_bytes_a_pod() {
    const PODS: u32 = 300_000;
    let mut report = Vec::new();
    for family in ["IPv4", "IPv6"] {
        let mut zone = ZoneData::default();
        for i in 0..PODS {
            let ip = match family {
                "IPv4" => IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                _ => IpAddr::V6(Ipv6Addr::from((0xfd00_u128 << 112) | u128::from(i))),
            };
            // 500 namespaces, as pods spread in a real cluster.
            zone.clients.insert(ip, format!("namespace-{}", i % 500));
        }
        let zone = Arc::new(zone);
        // Off first: both stores stay alive, so the second cannot reuse the first's pages.
        let (_off, off) = applied(&zone, false);
        let (_on, on) = applied(&zone, true);
        let per_pod = (on - off) as f64 / f64::from(PODS);
        report.push(format!("{family}: {per_pod:.1} B a pod"));
    }
    eprintln!("client map, resident memory for {PODS} pods: {}", report.join(", "));
    for line in &report {
        let bytes: f64 = line.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(bytes <= 100.0, "{report:?}");
    }
}
