//! Property tests for synthesis: structural invariants that must hold for any cluster.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use roster_shared::name::dashed_ip;
use roster_shared::synth::reverse_apex;
use roster_shared::{
    ClusterState, DomainName, EndpointPort, EndpointSliceView, EndpointView, ImportKind, IncrementalSynthesis,
    NamespaceView, PodMode, PodView, PortProtocol, RData, ServiceImportView, ServiceKind, ServicePort, ServiceView,
    SynthConfig, ZoneData, synthesize,
};

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..8).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(10, 244, c, d))),
        (0u16..8).prop_map(|x| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, x))),
    ]
}

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "web", "db", "web-0", "web-1"]).prop_map(str::to_owned)
}

fn protocol() -> impl Strategy<Value = PortProtocol> {
    prop_oneof![Just(PortProtocol::Tcp), Just(PortProtocol::Udp)]
}

fn endpoint() -> impl Strategy<Value = EndpointView> {
    (
        prop::collection::vec(ip(), 1..3),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(label()),
        prop::option::of(label()),
    )
        .prop_map(|(addresses, ready, terminating, hostname, pod_name)| EndpointView {
            addresses,
            ready,
            terminating,
            hostname,
            pod_name,
        })
}

fn service() -> impl Strategy<Value = ServiceView> {
    let kind = prop_oneof![
        prop::collection::vec(ip(), 1..3).prop_map(ServiceKind::ClusterIp),
        Just(ServiceKind::Headless),
        Just(ServiceKind::ExternalName("www.example.com".to_owned())),
        Just(ServiceKind::Pending),
    ];
    let port = (prop::option::of(label()), protocol(), 1u16..100).prop_map(|(name, protocol, port)| ServicePort {
        name,
        protocol,
        port,
    });
    (label(), prop::sample::select(vec!["default", "demo"]), kind, prop::collection::vec(port, 0..3), any::<bool>())
        .prop_map(|(name, namespace, kind, ports, publish_not_ready)| ServiceView {
            namespace: namespace.to_owned(),
            name,
            kind,
            ports,
            publish_not_ready,
        })
}

fn slice(index: usize) -> impl Strategy<Value = EndpointSliceView> {
    let port = (prop::option::of(label()), protocol(), 1u16..100).prop_map(|(name, protocol, port)| EndpointPort {
        name,
        protocol,
        port,
    });
    (
        label(),
        prop::sample::select(vec!["default", "demo"]),
        prop::collection::vec(port, 0..3),
        prop::collection::vec(endpoint(), 0..5),
        // The source cluster of an imported slice: absent, usable, or not a DNS label.
        prop::option::of(prop::sample::select(vec!["east", "west", "Not_A_Label"])),
    )
        .prop_map(move |(service, namespace, ports, endpoints, cluster)| EndpointSliceView {
            namespace: namespace.to_owned(),
            name: format!("slice-{index}"),
            service,
            cluster: cluster.map(str::to_owned),
            ports,
            endpoints,
        })
}

fn service_import() -> impl Strategy<Value = ServiceImportView> {
    let kind =
        prop_oneof![prop::collection::vec(ip(), 0..3).prop_map(ImportKind::ClusterSetIp), Just(ImportKind::Headless),];
    let port = (prop::option::of(label()), protocol(), 1u16..100).prop_map(|(name, protocol, port)| ServicePort {
        name,
        protocol,
        port,
    });
    (label(), prop::sample::select(vec!["default", "demo", "far"]), kind, prop::collection::vec(port, 0..3)).prop_map(
        |(name, namespace, kind, ports)| ServiceImportView { namespace: namespace.to_owned(), name, kind, ports },
    )
}

fn cluster() -> impl Strategy<Value = ClusterState> {
    (
        prop::collection::vec(service(), 0..6),
        (0usize..6).prop_flat_map(|n| (0..n).map(slice).collect::<Vec<_>>()),
        // Pods in two namespaces over a small address pool: addresses are shared (reused, hostNetwork),
        // some pods may be autopathed and some not.
        prop::collection::vec(
            (label(), prop::collection::vec(ip(), 0..2), any::<bool>(), prop::sample::select(vec!["demo", "other"])),
            0..4,
        ),
        prop::collection::vec(service_import(), 0..4),
        (0usize..5).prop_flat_map(|n| (0..n).map(slice).collect::<Vec<_>>()),
    )
        .prop_map(|(services, slices, pods, imports, imported_slices)| {
            let mut state = ClusterState::default();
            state.insert_namespace(NamespaceView { name: "default".to_owned() });
            for service in services {
                state.insert_service(service);
            }
            for slice in slices {
                state.insert_endpoint_slice(slice);
            }
            for (name, ips, autopath, namespace) in pods {
                state.insert_pod(PodView { namespace: namespace.to_owned(), name, ips, autopath });
            }
            for import in imports {
                state.insert_service_import(import);
            }
            for slice in imported_slices {
                state.insert_imported_slice(slice);
            }
            state
        })
}

fn config(mode: PodMode, endpoint_pod_names: bool) -> SynthConfig {
    SynthConfig {
        zone: DomainName::parse("cluster.local").unwrap(),
        pod_mode: mode,
        endpoint_pod_names,
        multicluster_zone: Some(multicluster_zone()),
    }
}

fn multicluster_zone() -> DomainName {
    DomainName::parse("clusterset.local").unwrap()
}

fn mode() -> impl Strategy<Value = PodMode> {
    prop_oneof![Just(PodMode::Insecure), Just(PodMode::Verified), Just(PodMode::Disabled)]
}

fn addresses_at(zone: &ZoneData, name: &DomainName) -> BTreeSet<IpAddr> {
    zone.names
        .get(name)
        .into_iter()
        .flatten()
        .filter_map(|r| match r {
            RData::A { ip } => Some(IpAddr::V4(*ip)),
            RData::Aaaa { ip } => Some(IpAddr::V6(*ip)),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Same input, same output; the diff of a zone with itself is empty.
    #[test]
    fn deterministic(state in cluster(), mode in mode(), names in any::<bool>()) {
        let config = config(mode, names);
        let a = synthesize(&state, &config);
        let b = synthesize(&state, &config);
        prop_assert_eq!(&a, &b);
        prop_assert!(a.diff(&b).is_empty());
    }

    /// Applying the diff of two syntheses to the first gives the second: deltas lose nothing.
    #[test]
    fn diff_then_apply_round_trips(before in cluster(), after in cluster(), mode in mode()) {
        let config = config(mode, false);
        let old = synthesize(&before, &config);
        let new = synthesize(&after, &config);
        let mut patched = old.clone();
        patched.apply(&old.diff(&new));
        prop_assert_eq!(patched, new);
    }

    /// Every name lies in the cluster zone or a reverse zone, and every ancestor up to its apex exists,
    /// so that empty non-terminals answer NODATA rather than NXDOMAIN.
    #[test]
    fn names_are_closed_under_ancestors(state in cluster(), mode in mode()) {
        let config = config(mode, false);
        let zone = synthesize(&state, &config);
        let apexes = [
            config.zone.clone(),
            multicluster_zone(),
            DomainName::parse("in-addr.arpa").unwrap(),
            DomainName::parse("ip6.arpa").unwrap(),
        ];
        for name in zone.names.keys() {
            let apex = apexes.iter().find(|apex| name.is_within(apex));
            prop_assert!(apex.is_some(), "{} is outside every zone", name);
            let apex = apex.unwrap();
            let mut current = name.clone();
            while &current != apex {
                current = current.parent().unwrap();
                prop_assert!(zone.names.contains_key(&current), "{} exists but its ancestor {} does not", name, current);
            }
        }
    }

    /// Every PTR is forward-confirmed: its target holds an address whose reverse name is the PTR's owner.
    #[test]
    fn ptr_records_are_forward_confirmed(state in cluster(), names in any::<bool>()) {
        let zone = synthesize(&state, &config(PodMode::Insecure, names));
        for (owner, records) in &zone.names {
            for record in records {
                if let RData::Ptr { target } = record {
                    let confirmed = addresses_at(&zone, target).into_iter().any(|ip| &DomainName::reverse_of(ip) == owner);
                    prop_assert!(confirmed, "PTR {} -> {} is not confirmed by an address record", owner, target);
                    let family = if owner.as_str().ends_with("in-addr.arpa") {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    };
                    prop_assert!(owner.is_within(reverse_apex(family)));
                }
            }
        }
    }

    /// A headless service's name holds exactly the published endpoint addresses: ready and not
    /// terminating, or every address with publishNotReadyAddresses.
    #[test]
    fn headless_answers_are_the_published_endpoints(state in cluster()) {
        let config = config(PodMode::Insecure, false);
        let zone = synthesize(&state, &config);
        for service in state.services.values().filter(|s| s.kind == ServiceKind::Headless) {
            let mut expected = BTreeSet::new();
            for slice in state.endpoint_slices.values().filter(|s| s.namespace == service.namespace && s.service == service.name) {
                for endpoint in &slice.endpoints {
                    if service.publish_not_ready || (endpoint.ready && !endpoint.terminating) {
                        expected.extend(endpoint.addresses.iter().copied());
                    }
                }
            }
            let name = config.zone.prefixed(&[&service.name, &service.namespace, "svc"]).unwrap();
            prop_assert_eq!(addresses_at(&zone, &name), expected);
        }
    }

    /// A headless import's name holds exactly the ready, not terminating addresses of its slices; a
    /// ClusterSetIP import's exactly its IPs. Nothing of an import has a PTR.
    #[test]
    fn imports_answer_their_addresses(state in cluster()) {
        let config = config(PodMode::Insecure, false);
        let zone = synthesize(&state, &config);
        let local = synthesize(&ClusterState { service_imports: Default::default(), imported_slices: Default::default(), ..state.clone() }, &config);
        for import in state.service_imports.values() {
            let expected: BTreeSet<IpAddr> = match &import.kind {
                ImportKind::ClusterSetIp(ips) => ips.iter().copied().collect(),
                ImportKind::Headless => state
                    .imported_slices
                    .values()
                    .filter(|s| s.namespace == import.namespace && s.service == import.name)
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| e.ready && !e.terminating)
                    .flat_map(|e| e.addresses.iter().copied())
                    .collect(),
            };
            let name = multicluster_zone().prefixed(&[&import.name, &import.namespace, "svc"]).unwrap();
            prop_assert_eq!(addresses_at(&zone, &name), expected);
        }
        // The PTRs are the local services' alone.
        let reverse = |z: &ZoneData| -> Vec<(DomainName, Vec<RData>)> {
            let arpa = DomainName::parse("arpa").unwrap();
            z.names.iter().filter(|(n, _)| n.is_within(&arpa)).map(|(n, r)| (n.clone(), r.clone())).collect()
        };
        prop_assert_eq!(reverse(&zone), reverse(&local));
    }

    /// No record outside the multicluster zone (where imports publish what other clusters hold)
    /// carries an address that only unpublished endpoints have.
    #[test]
    fn unpublished_endpoints_leave_no_trace(state in cluster()) {
        let zone = synthesize(&state, &config(PodMode::Disabled, false));
        let mut published = BTreeSet::new();
        let mut unpublished = BTreeSet::new();
        for slice in state.endpoint_slices.values() {
            let Some(service) = state.services.get(&format!("{}/{}", slice.namespace, slice.service)) else { continue };
            for endpoint in &slice.endpoints {
                let publish = service.publish_not_ready || (endpoint.ready && !endpoint.terminating);
                let set = if publish && service.kind != ServiceKind::ExternalName("www.example.com".into()) { &mut published } else { &mut unpublished };
                set.extend(endpoint.addresses.iter().copied());
            }
            if let ServiceKind::ClusterIp(ips) = &service.kind {
                published.extend(ips.iter().copied());
            }
        }
        for service in state.services.values() {
            if let ServiceKind::ClusterIp(ips) = &service.kind {
                published.extend(ips.iter().copied());
            }
        }
        for ip in unpublished.difference(&published) {
            for (name, records) in zone.names.iter().filter(|(name, _)| !name.is_within(&multicluster_zone())) {
                for record in records {
                    let carries = matches!(record, RData::A { ip: a } if IpAddr::V4(*a) == *ip)
                        || matches!(record, RData::Aaaa { ip: a } if IpAddr::V6(*a) == *ip);
                    prop_assert!(!carries, "{} carries unpublished {}", name, ip);
                }
                prop_assert!(name != &DomainName::reverse_of(*ip) || records.is_empty(), "PTR for unpublished {}", ip);
            }
        }
    }

    /// Verified pod mode publishes exactly the pods' addresses under their namespace; disabled none.
    #[test]
    fn pod_records_follow_the_mode(state in cluster()) {
        let verified = synthesize(&state, &config(PodMode::Verified, false));
        let disabled = synthesize(&state, &config(PodMode::Disabled, false));
        let pod_zone = DomainName::parse("pod.cluster.local").unwrap();
        prop_assert!(!disabled.names.keys().any(|n| n.is_within(&pod_zone)));
        for pod in state.pods.values() {
            for ip in &pod.ips {
                let name = pod_zone.prefixed(&[&dashed_ip(*ip), &pod.namespace]).unwrap();
                prop_assert!(addresses_at(&verified, &name).contains(ip));
            }
        }
    }
}

proptest! {
    /// Autopath: an address maps to a namespace exactly when autopathed pods claim it from that
    /// namespace alone; a pod that may not be autopathed claims nothing.
    #[test]
    fn clients_map_only_unambiguous_addresses(state in cluster()) {
        let zone = synthesize(&state, &config(PodMode::Insecure, false));
        let mut claims: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
        for pod in state.pods.values().filter(|pod| pod.autopath) {
            for ip in &pod.ips {
                claims.entry(*ip).or_default().insert(pod.namespace.as_str());
            }
        }
        let expected: BTreeMap<IpAddr, String> = claims
            .into_iter()
            .filter(|(_, namespaces)| namespaces.len() == 1)
            .map(|(ip, namespaces)| (ip, namespaces.into_iter().next().unwrap().to_owned()))
            .collect();
        prop_assert_eq!(&zone.clients, &expected);
    }
}

/// Brings `synthesis` from its state to `target` one object at a time, as watch events would.
fn converge(synthesis: &mut IncrementalSynthesis, target: &ClusterState, removals_first: bool) {
    let current = synthesis.state().clone();
    let remove = |synthesis: &mut IncrementalSynthesis| {
        for key in current.pods.keys().filter(|k| !target.pods.contains_key(*k)) {
            synthesis.remove_pod(key);
        }
        for key in current.endpoint_slices.keys().filter(|k| !target.endpoint_slices.contains_key(*k)) {
            synthesis.remove_endpoint_slice(key);
        }
        for key in current.services.keys().filter(|k| !target.services.contains_key(*k)) {
            synthesis.remove_service(key);
        }
        for key in current.namespaces.keys().filter(|k| !target.namespaces.contains_key(*k)) {
            synthesis.remove_namespace(key);
        }
        for key in current.imported_slices.keys().filter(|k| !target.imported_slices.contains_key(*k)) {
            synthesis.remove_imported_slice(key);
        }
        for key in current.service_imports.keys().filter(|k| !target.service_imports.contains_key(*k)) {
            synthesis.remove_service_import(key);
        }
    };
    if removals_first {
        remove(synthesis);
    }
    for view in target.namespaces.values() {
        synthesis.upsert_namespace(view.clone());
    }
    for view in target.endpoint_slices.values() {
        synthesis.upsert_endpoint_slice(view.clone());
    }
    for view in target.services.values() {
        synthesis.upsert_service(view.clone());
    }
    for view in target.pods.values() {
        synthesis.upsert_pod(view.clone());
    }
    for view in target.imported_slices.values() {
        synthesis.upsert_imported_slice(view.clone());
    }
    for view in target.service_imports.values() {
        synthesis.upsert_service_import(view.clone());
    }
    if !removals_first {
        remove(synthesis);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Incremental synthesis, object by object, reaches the same zone as a full synthesis, and the
    /// changes it reports carry a replica from the old zone to the new one.
    #[test]
    fn incremental_synthesis_equals_full_synthesis(
        before in cluster(),
        after in cluster(),
        mode in mode(),
        names in any::<bool>(),
        removals_first in any::<bool>(),
    ) {
        let config = config(mode, names);
        let mut synthesis = IncrementalSynthesis::new(config.clone());
        let mut replica = ZoneData::default();
        converge(&mut synthesis, &before, removals_first);
        replica.apply(&synthesis.take_changes());
        prop_assert_eq!(&synthesis.zone(), &synthesize(&before, &config));
        prop_assert_eq!(&replica, &synthesize(&before, &config));
        prop_assert_eq!(synthesis.record_count(), replica.record_count());

        converge(&mut synthesis, &after, removals_first);
        replica.apply(&synthesis.take_changes());
        let expected = synthesize(&after, &config);
        prop_assert_eq!(&synthesis.zone(), &expected);
        prop_assert_eq!(&replica, &expected);
        prop_assert!(synthesis.take_changes().is_empty(), "nothing left to report");
    }
}
