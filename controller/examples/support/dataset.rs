//! The synthetic cluster the controller benchmarks share: headless services whose endpoints are
//! StatefulSet-style pods with hostnames, spread over namespaces.

use std::net::{IpAddr, Ipv4Addr};

use roster_shared::{
    ClusterState, EndpointPort, EndpointSliceView, EndpointView, IncrementalSynthesis, NamespaceView, PodView,
    PortProtocol, ServiceKind, ServicePort, ServiceView, SynthConfig,
};

pub fn endpoint_ip(index: usize) -> IpAddr {
    // 10.128.0.0/9: room for 8M endpoints, away from the 10.96.0.0/12 service range.
    let n = 0x0A80_0000u32 + u32::try_from(index).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::from(n))
}

/// `services` headless services `set-<s>` × `endpoints` ready endpoints (`set-<s>-<ordinal>`), one
/// EndpointSlice `set-<s>-abcde` each, in namespaces `ns-0` … `ns-<namespaces-1>`.
pub fn build_state(services: usize, endpoints: usize, namespaces: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for ns in 0..namespaces {
        state.insert_namespace(NamespaceView { name: format!("ns-{ns}") });
    }
    let mut index = 0;
    for s in 0..services {
        let namespace = format!("ns-{}", s % namespaces.max(1));
        let name = format!("set-{s}");
        state.insert_service(ServiceView {
            namespace: namespace.clone(),
            name: name.clone(),
            kind: ServiceKind::Headless,
            ports: vec![ServicePort { name: Some("web".to_owned()), protocol: PortProtocol::Tcp, port: 80 }],
            publish_not_ready: false,
        });
        let mut views = Vec::with_capacity(endpoints);
        for ordinal in 0..endpoints {
            let pod = format!("{name}-{ordinal}");
            let ip = endpoint_ip(index);
            index += 1;
            state.insert_pod(PodView {
                namespace: namespace.clone(),
                name: pod.clone(),
                ips: vec![ip],
                autopath: true,
            });
            views.push(EndpointView {
                addresses: vec![ip],
                ready: true,
                terminating: false,
                hostname: Some(pod.clone()),
                pod_name: Some(pod),
            });
        }
        state.insert_endpoint_slice(EndpointSliceView {
            namespace,
            name: format!("{name}-abcde"),
            service: name,
            cluster: None,
            ports: vec![EndpointPort { name: Some("web".to_owned()), protocol: PortProtocol::Tcp, port: 8080 }],
            endpoints: views,
        });
    }
    state
}

/// Every object of `state` folded into an incremental synthesis, as the controller's watches do.
pub fn fold(state: &ClusterState, config: SynthConfig) -> IncrementalSynthesis {
    let mut synthesis = IncrementalSynthesis::new(config);
    for view in state.namespaces.values() {
        synthesis.upsert_namespace(view.clone());
    }
    for view in state.services.values() {
        synthesis.upsert_service(view.clone());
    }
    for view in state.endpoint_slices.values() {
        synthesis.upsert_endpoint_slice(view.clone());
    }
    for view in state.pods.values() {
        synthesis.upsert_pod(view.clone());
    }
    synthesis
}
