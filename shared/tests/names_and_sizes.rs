//! Names and sizes: the Kubernetes API's own name rules (table tests), and what synthesis does with a
//! valid object whose names cannot all be DNS names — only the records that need the name are lost.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use roster_shared::name::{is_dns1123_label, is_dns1123_subdomain, is_iana_svc_name};
use roster_shared::{
    ClusterState, DomainName, EndpointPort, EndpointSliceView, EndpointView, PodMode, PodView, PortProtocol, RData,
    ServiceKind, ServicePort, ServiceView, SynthConfig, ZoneData, synthesize,
};

/// apimachinery's `IsDNS1123Label`: namespace and service names, pod `hostname` and `subdomain`.
#[test]
fn dns1123_labels() {
    let table: &[(&str, bool)] = &[
        ("a", true),
        ("web-0", true),
        ("0web", true),
        (&"a".repeat(63), true),
        (&"a".repeat(64), false),
        ("", false),
        ("-web", false),
        ("web-", false),
        ("Web", false),
        ("web.0", false),
        ("web_0", false),
    ];
    for (text, valid) in table {
        assert_eq!(is_dns1123_label(text), *valid, "{text:?}");
    }
}

/// apimachinery's `IsDNS1123Subdomain`: pod, EndpointSlice and most object names, endpoint hostnames.
/// At most 253 characters; the regular expression puts no limit on one label's length.
#[test]
fn dns1123_subdomains() {
    let long_label = "p".repeat(72);
    let max = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(max.len(), 253);
    let table: &[(&str, bool)] = &[
        ("web-0", true),
        (&long_label, true),
        (&"p".repeat(253), true),
        (&"p".repeat(254), false),
        (&max, true),
        (&format!("{max}e"), false),
        ("a.b.c", true),
        ("a..b", false),
        (".a", false),
        ("a.", false),
        ("a.-b", false),
        ("A.b", false),
        ("", false),
    ];
    for (text, valid) in table {
        assert_eq!(is_dns1123_subdomain(text), *valid, "{text:?}");
        // Every label is a subdomain; a subdomain is a label only without dots and within 63.
        if is_dns1123_label(text) {
            assert!(is_dns1123_subdomain(text), "{text:?}");
        }
    }
    assert!(!is_dns1123_label(&long_label), "a valid pod name that is no DNS label");
}

/// apimachinery's `IsValidPortName` (IANA_SVC_NAME): container port names.
#[test]
fn iana_service_names() {
    let table: &[(&str, bool)] = &[
        ("http", true),
        ("web-2", true),
        ("h2c", true),
        (&"a".repeat(15), true),
        (&"a".repeat(16), false),
        ("8080", false),
        ("-http", false),
        ("http-", false),
        ("ht--tp", false),
        ("HTTP", false),
        ("", false),
    ];
    for (text, valid) in table {
        assert_eq!(is_iana_svc_name(text), *valid, "{text:?}");
    }
}

fn name(text: &str) -> DomainName {
    DomainName::parse(text).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn endpoint(address: &str, hostname: Option<&str>, pod_name: Option<&str>) -> EndpointView {
    EndpointView {
        addresses: vec![ip(address)],
        ready: true,
        terminating: false,
        hostname: hostname.map(str::to_owned),
        pod_name: pod_name.map(str::to_owned),
    }
}

fn headless(namespace: &str, service: &str, port: Option<&str>, endpoints: Vec<EndpointView>) -> ClusterState {
    let mut state = ClusterState::default();
    state.insert_service(ServiceView {
        namespace: namespace.to_owned(),
        name: service.to_owned(),
        kind: ServiceKind::Headless,
        ports: vec![ServicePort { name: port.map(str::to_owned), protocol: PortProtocol::Tcp, port: 80 }],
        publish_not_ready: false,
    });
    state.insert_endpoint_slice(EndpointSliceView {
        namespace: namespace.to_owned(),
        name: format!("{service}-abcde"),
        service: service.to_owned(),
        cluster: None,
        ports: vec![EndpointPort { name: port.map(str::to_owned), protocol: PortProtocol::Tcp, port: 8080 }],
        endpoints,
    });
    state
}

fn records(zone: &ZoneData, owner: &str) -> Vec<RData> {
    zone.names.get(&name(owner)).cloned().unwrap_or_default()
}

fn srv_targets(zone: &ZoneData, owner: &str) -> Vec<String> {
    records(zone, owner)
        .into_iter()
        .filter_map(|r| match r {
            RData::Srv { target, .. } => Some(target.to_string()),
            _ => None,
        })
        .collect()
}

fn config(zone: &str, endpoint_pod_names: bool) -> SynthConfig {
    SynthConfig { zone: name(zone), pod_mode: PodMode::Insecure, endpoint_pod_names, multicluster_zone: None }
}

/// An endpoint whose hostname or pod name cannot be a label takes its dashed-address name, as if it had
/// neither; its neighbours keep theirs.
#[test]
fn endpoints_whose_names_are_not_labels_take_their_dashed_address() {
    let long_pod = "p".repeat(72);
    let state = headless(
        "demo",
        "db",
        Some("pg"),
        vec![
            endpoint("10.244.1.5", Some("db.primary"), None),
            endpoint("10.244.1.6", None, Some(&long_pod)),
            endpoint("10.244.1.7", Some("db-2"), Some("db-2")),
            endpoint("10.244.1.8", None, Some("db-3")),
        ],
    );
    let zone = synthesize(&state, &config("cluster.local", true));
    let a = |owner: &str| records(&zone, owner);
    assert_eq!(a("10-244-1-5.db.demo.svc.cluster.local"), vec![RData::A { ip: "10.244.1.5".parse().unwrap() }]);
    assert_eq!(a("10-244-1-6.db.demo.svc.cluster.local"), vec![RData::A { ip: "10.244.1.6".parse().unwrap() }]);
    assert_eq!(a("db-2.db.demo.svc.cluster.local"), vec![RData::A { ip: "10.244.1.7".parse().unwrap() }]);
    assert_eq!(a("db-3.db.demo.svc.cluster.local"), vec![RData::A { ip: "10.244.1.8".parse().unwrap() }]);
    assert_eq!(a("db.demo.svc.cluster.local").len(), 4 + 4, "four A and four SRV at the service name");
    assert_eq!(srv_targets(&zone, "_pg._tcp.db.demo.svc.cluster.local").len(), 4);
    assert_eq!(
        records(&zone, "6.1.244.10.in-addr.arpa"),
        vec![RData::Ptr { target: name("10-244-1-6.db.demo.svc.cluster.local") }]
    );
}

/// Longest names: a long endpoint label, service, namespace and zone can pass 255 octets on the wire
/// (253 characters); then exactly the records at or pointing to that name are skipped.
#[test]
fn names_past_255_octets_skip_only_their_records() {
    // 63 + 63 + 63 + "svc" + a 58-character zone: the service name is 63+1+63+1+3+1+58 = 190
    // characters, an endpoint name with a 63-character label 254 (too long), a short one 201.
    let zone_name = format!("{}.local", "z".repeat(52));
    assert_eq!(zone_name.len(), 58);
    let (namespace, service) = ("n".repeat(63), "s".repeat(63));
    let long_host = "h".repeat(63);
    let state = headless(
        &namespace,
        &service,
        Some("web"),
        vec![endpoint("10.244.2.1", Some(&long_host), None), endpoint("10.244.2.2", Some("short"), None)],
    );
    let zone = synthesize(&state, &config(&zone_name, false));
    let service_name = format!("{service}.{namespace}.svc.{zone_name}");
    assert_eq!(service_name.len(), 190);
    assert!(DomainName::parse(&format!("{long_host}.{service_name}")).is_err(), "254 characters: too long");
    let addresses: Vec<RData> = records(&zone, &service_name).into_iter().filter(|r| r.type_name() == "A").collect();
    assert_eq!(addresses.len(), 2, "the service's own A set keeps both endpoints");
    assert_eq!(records(&zone, &format!("short.{service_name}")).len(), 1);
    assert!(records(&zone, "1.2.244.10.in-addr.arpa").is_empty(), "no PTR to a name that cannot exist");
    assert_eq!(records(&zone, "2.2.244.10.in-addr.arpa").len(), 1);
    let short_target = format!("short.{service_name}");
    assert_eq!(srv_targets(&zone, &format!("_web._tcp.{service_name}")), vec![short_target.clone()]);
    assert_eq!(srv_targets(&zone, &service_name), vec![short_target]);
}

/// A port name that makes `_<port>` longer than a label (the API allows 63-character port names on
/// services and slices) loses its `_<port>._<proto>` name; the SRV set at the service name keeps it.
#[test]
fn port_names_too_long_for_a_label_lose_only_their_srv_name() {
    let port = "p".repeat(63);
    let state = headless("demo", "db", Some(&port), vec![endpoint("10.244.1.5", Some("db-0"), None)]);
    let zone = synthesize(&state, &config("cluster.local", false));
    assert!(zone.names.keys().all(|n| !n.as_str().starts_with("_p")), "no `_ppp…` name");
    assert_eq!(srv_targets(&zone, "db.demo.svc.cluster.local"), vec!["db-0.db.demo.svc.cluster.local".to_owned()]);
    assert_eq!(records(&zone, "db-0.db.demo.svc.cluster.local").len(), 1);
}

/// A pod name of any valid length: pod records are keyed by address (verified mode).
#[test]
fn long_pod_names_keep_their_pod_records() {
    let mut state = ClusterState::default();
    state.insert_pod(PodView {
        namespace: "demo".to_owned(),
        name: "p".repeat(253),
        ips: vec![ip("10.244.3.3")],
        autopath: true,
    });
    let config = SynthConfig { pod_mode: PodMode::Verified, ..config("cluster.local", false) };
    let zone = synthesize(&state, &config);
    assert_eq!(
        records(&zone, "10-244-3-3.demo.pod.cluster.local"),
        vec![RData::A { ip: "10.244.3.3".parse().unwrap() }]
    );
}

/// CoreDNS answers `<svc>.<ns>.svc.<zone> SRV` with every port: a ClusterIP service's target is the
/// service itself, a headless service's every endpoint × port; named or not, any protocol.
#[test]
fn srv_at_the_service_name() {
    let mut state = ClusterState::default();
    state.insert_service(ServiceView {
        namespace: "demo".to_owned(),
        name: "api".to_owned(),
        kind: ServiceKind::ClusterIp(vec![ip("10.96.0.7"), ip("fd00::7")]),
        ports: vec![
            ServicePort { name: Some("http".to_owned()), protocol: PortProtocol::Tcp, port: 80 },
            ServicePort { name: None, protocol: PortProtocol::Tcp, port: 8080 },
            ServicePort { name: Some("dns".to_owned()), protocol: PortProtocol::Udp, port: 53 },
            ServicePort { name: Some("dns-tcp".to_owned()), protocol: PortProtocol::Tcp, port: 53 },
        ],
        publish_not_ready: false,
    });
    let zone = synthesize(&state, &config("cluster.local", false));
    let srv: Vec<RData> =
        records(&zone, "api.demo.svc.cluster.local").into_iter().filter(|r| r.type_name() == "SRV").collect();
    let target = name("api.demo.svc.cluster.local");
    let expected: Vec<RData> = [53, 80, 8080]
        .into_iter()
        .map(|port| RData::Srv { priority: 0, weight: 33, port, target: target.clone() })
        .collect();
    assert_eq!(srv, expected, "port 53 twice (UDP and TCP) is one record");

    let state = headless(
        "demo",
        "web",
        None,
        vec![endpoint("10.244.1.1", Some("web-0"), None), endpoint("10.244.1.2", Some("web-1"), None)],
    );
    let zone = synthesize(&state, &config("cluster.local", false));
    assert_eq!(
        srv_targets(&zone, "web.demo.svc.cluster.local"),
        vec!["web-0.web.demo.svc.cluster.local".to_owned(), "web-1.web.demo.svc.cluster.local".to_owned()],
        "unnamed ports too"
    );
    assert!(zone.names.keys().all(|n| !n.as_str().starts_with('_')), "no `_port._proto` name without a port name");
}
