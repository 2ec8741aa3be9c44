//! Synthesis: the complete record set of the cluster zone and the reverse zones, as a pure function of
//! the slim views (Kubernetes DNS-Based Service Discovery, schema 1.1.0, with design.md's decisions).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::name::{DomainName, dashed_ip, is_dns1123_label};
use crate::records::{RData, ZoneData};
use crate::views::{ClusterState, EndpointSliceView, EndpointView, PodView, PortProtocol, ServiceKind, ServiceView};

/// The version of the specification roster implements, published as `dns-version.<zone>` TXT.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// How `a-b-c-d.<ns>.pod.<zone>` names are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodMode {
    /// Any well-formed dashed address in an existing namespace resolves to itself (kubeadm's default).
    #[default]
    Insecure,
    /// Only addresses of pods that exist in that namespace resolve.
    Verified,
    /// No pod records.
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    pub zone: DomainName,
    pub pod_mode: PodMode,
    /// Name endpoints without a hostname by their pod's name instead of their dashed address.
    pub endpoint_pod_names: bool,
}

impl SynthConfig {
    pub fn new(zone: DomainName) -> Self {
        Self { zone, pod_mode: PodMode::default(), endpoint_pod_names: false }
    }
}

/// The apex of the reverse zone an address's PTR name lives in.
pub fn reverse_apex(ip: IpAddr) -> DomainName {
    let text = if ip.is_ipv4() { "in-addr.arpa" } else { "ip6.arpa" };
    DomainName::parse(text).unwrap_or_else(|_| unreachable!("constant reverse apex is valid"))
}

/// One part of the zone that is synthesised on its own from a few objects, so that a change to one
/// object re-synthesises only the parts it feeds (see [`crate::incremental`]). The zone is the union
/// of its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `svc.<zone>`, `pod.<zone>`, `dns-version.<zone>` and `ns.dns.<zone>` (from `kube-system/kube-dns`).
    Apex,
    /// `<ns>.svc.<zone>` and, in insecure pod mode, `<ns>.pod.<zone>`: exists while anything uses the
    /// namespace.
    Namespace(String),
    /// A service's names, SRV and PTR records, from the service and its EndpointSlices (`ns/name`).
    Service(String),
    /// A pod's `a-b-c-d.<ns>.pod.<zone>` records in verified mode (`ns/name`). Its autopath claims are
    /// counted beside the parts (`IncrementalSynthesis`).
    Pod(String),
}

/// Builds every record of the cluster zone (under `config.zone`) and every PTR (under `in-addr.arpa`
/// and `ip6.arpa`), with the empty non-terminals in between. Objects whose names cannot form valid DNS
/// names are skipped: the API server already rejects them, and manifest files are checked at load.
pub fn synthesize(state: &ClusterState, config: &SynthConfig) -> ZoneData {
    let mut out = ZoneData::default();
    add_apex(&mut out, state, config);

    let mut namespaces: BTreeSet<&str> = state.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(state.services.values().map(|s| s.namespace.as_str()));
    namespaces.extend(state.pods.values().map(|p| p.namespace.as_str()));
    for namespace in namespaces {
        add_namespace(&mut out, namespace, config);
    }

    let slices_by_service = group_slices(state);
    for service in state.services.values() {
        let slices = slices_by_service
            .get(&(service.namespace.as_str(), service.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        add_service(&mut out, &config.zone, service, slices, config);
    }

    for pod in state.pods.values() {
        add_pod(&mut out, pod, config);
    }
    out.clients = unambiguous_clients(state.pods.values().flat_map(pod_clients));
    out.normalise();
    out
}

/// The autopath clients a pod claims: each of its addresses with its namespace, when it may be
/// autopathed. Several pods may claim one address (a reused address whose old pod is still listed).
pub fn pod_clients(pod: &PodView) -> impl Iterator<Item = (IpAddr, &str)> {
    pod.ips.iter().filter(|_| pod.autopath).map(|ip| (*ip, pod.namespace.as_str()))
}

/// Claims → the client map: an address claimed from exactly one namespace maps to it; an address
/// claimed from two (which pod is asking cannot be told) maps to none, so the server never completes
/// the wrong search list.
pub fn unambiguous_clients<'a>(claims: impl Iterator<Item = (IpAddr, &'a str)>) -> BTreeMap<IpAddr, String> {
    let mut namespaces: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    for (ip, namespace) in claims {
        namespaces.entry(ip).or_default().insert(namespace);
    }
    namespaces
        .into_iter()
        .filter_map(|(ip, set)| match set.into_iter().collect::<Vec<_>>().as_slice() {
            [only] => Some((ip, (*only).to_owned())),
            _ => None,
        })
        .collect()
}

/// The records of one part of the zone. `slices` are the EndpointSlices of the service when `source`
/// is a service (ignored otherwise). Normalised, like [`synthesize`]'s result.
pub fn synthesize_part(
    source: &Source,
    state: &ClusterState,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) -> ZoneData {
    let mut out = ZoneData::default();
    match source {
        Source::Apex => add_apex(&mut out, state, config),
        Source::Namespace(namespace) => {
            if namespace_in_use(state, namespace) {
                add_namespace(&mut out, namespace, config);
            }
        }
        Source::Service(key) => {
            if let Some(service) = state.services.get(key) {
                add_service(&mut out, &config.zone, service, slices, config);
            }
        }
        Source::Pod(key) => {
            if let Some(pod) = state.pods.get(key) {
                add_pod(&mut out, pod, config);
            }
        }
    }
    out.normalise();
    out
}

/// A namespace has names while the Namespace object, or any service or pod in it, exists (manifest
/// files may omit the Namespace object).
fn namespace_in_use(state: &ClusterState, namespace: &str) -> bool {
    let prefix = format!("{namespace}/");
    let has_prefix = |keys: &mut dyn Iterator<Item = &String>| keys.next().is_some_and(|key| key.starts_with(&prefix));
    state.namespaces.contains_key(namespace)
        || has_prefix(&mut state.services.range(prefix.clone()..).map(|(key, _)| key))
        || has_prefix(&mut state.pods.range(prefix.clone()..).map(|(key, _)| key))
}

fn add_apex(out: &mut ZoneData, state: &ClusterState, config: &SynthConfig) {
    let zone = &config.zone;
    if let Some(svc_apex) = child(zone, "svc") {
        out.ensure_name(&svc_apex, zone);
    }
    if let Some(version) = child(zone, "dns-version") {
        out.add(version, RData::Txt { text: SCHEMA_VERSION.to_owned() }, zone);
    }
    if config.pod_mode != PodMode::Disabled
        && let Some(pod_apex) = child(zone, "pod")
    {
        out.ensure_name(&pod_apex, zone);
    }
    add_dns_server_name(out, state, zone);
}

fn add_namespace(out: &mut ZoneData, namespace: &str, config: &SynthConfig) {
    let zone = &config.zone;
    if let Ok(name) = zone.prefixed(&[namespace, "svc"]) {
        out.ensure_name(&name, zone);
    }
    // In insecure mode the DNS server answers any dashed address itself; it only needs to tell
    // existing namespaces apart.
    if config.pod_mode == PodMode::Insecure
        && let Ok(name) = zone.prefixed(&[namespace, "pod"])
    {
        out.ensure_name(&name, zone);
    }
}

fn child(parent: &DomainName, label: &str) -> Option<DomainName> {
    parent.child(label).ok()
}

fn group_slices(state: &ClusterState) -> BTreeMap<(&str, &str), Vec<&EndpointSliceView>> {
    let mut grouped: BTreeMap<(&str, &str), Vec<&EndpointSliceView>> = BTreeMap::new();
    for slice in state.endpoint_slices.values() {
        grouped.entry((slice.namespace.as_str(), slice.service.as_str())).or_default().push(slice);
    }
    grouped
}

/// A port of an endpoint: named ones get `_<port>._<proto>` SRV names; every one is in the SRV set at
/// the service's own name (CoreDNS matches an absent port and protocol as "any").
#[derive(Clone)]
struct EndpointPortInfo {
    name: Option<String>,
    protocol: PortProtocol,
    port: u16,
}

/// One published endpoint address of a service: the address, its own name's first label, its ports.
struct PublishedEndpoint {
    ip: IpAddr,
    label: String,
    ports: Vec<EndpointPortInfo>,
}

/// The first label of an endpoint's own name: its hostname, else (in `endpoint_pod_names` mode) its
/// pod's name, else its dashed address. Hostnames and pod names are DNS-1123 subdomains in the API (up
/// to 253 characters, dots allowed); one that is not a DNS label is passed over, as if absent.
fn endpoint_label(endpoint: &EndpointView, ip: IpAddr, config: &SynthConfig) -> String {
    let usable = |text: &&String| is_dns1123_label(text);
    endpoint
        .hostname
        .as_ref()
        .filter(usable)
        .or_else(|| endpoint.pod_name.as_ref().filter(|_| config.endpoint_pod_names).filter(usable))
        .cloned()
        .unwrap_or_else(|| dashed_ip(ip))
}

fn published_endpoints(
    service: &ServiceView,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) -> Vec<PublishedEndpoint> {
    let mut seen = BTreeSet::new();
    let mut published = Vec::new();
    for slice in slices {
        let ports: Vec<EndpointPortInfo> = slice
            .ports
            .iter()
            .map(|p| EndpointPortInfo {
                name: p.name.clone().filter(|n| !n.is_empty()),
                protocol: p.protocol,
                port: p.port,
            })
            .collect();
        for endpoint in &slice.endpoints {
            let publish = service.publish_not_ready || (endpoint.ready && !endpoint.terminating);
            if !publish {
                continue;
            }
            for ip in &endpoint.addresses {
                let label = endpoint_label(endpoint, *ip, config);
                // The same address in two slices (e.g. during a slice migration) is one endpoint.
                if seen.insert((*ip, label.clone())) {
                    published.push(PublishedEndpoint { ip: *ip, label, ports: ports.clone() });
                }
            }
        }
    }
    published
}

fn address_record(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(ip) => RData::A { ip },
        IpAddr::V6(ip) => RData::Aaaa { ip },
    }
}

fn srv_name(service_name: &DomainName, port: &str, protocol: PortProtocol) -> Option<DomainName> {
    service_name.prefixed(&[&format!("_{}", port.to_ascii_lowercase()), &format!("_{}", protocol.label())]).ok()
}

fn add_service(
    out: &mut ZoneData,
    zone: &DomainName,
    service: &ServiceView,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) {
    let Ok(name) = zone.prefixed(&[&service.name, &service.namespace, "svc"]) else {
        return;
    };
    let endpoints = published_endpoints(service, slices, config);

    match &service.kind {
        ServiceKind::ClusterIp(ips) => {
            for ip in ips {
                out.add(name.clone(), address_record(*ip), zone);
                out.add(DomainName::reverse_of(*ip), RData::Ptr { target: name.clone() }, &reverse_apex(*ip));
            }
            let named_ports = service.ports.iter().filter_map(|p| Some((p.name.as_deref()?, p)));
            for (port_name, port) in named_ports {
                if let Some(srv) = srv_name(&name, port_name, port.protocol) {
                    let rdata = RData::Srv { priority: 0, weight: 100, port: port.port, target: name.clone() };
                    out.add(srv, rdata, zone);
                }
            }
            let targets = service.ports.iter().map(|p| (name.clone(), p.port));
            add_srv_set(out, zone, &name, targets);
        }
        ServiceKind::Headless => {
            for endpoint in &endpoints {
                out.add(name.clone(), address_record(endpoint.ip), zone);
            }
            add_headless_srv(out, zone, &name, &endpoints);
            let targets = endpoints.iter().flat_map(|endpoint| {
                let target = name.child(&endpoint.label).ok();
                endpoint.ports.iter().filter_map(move |p| Some((target.clone()?, p.port)))
            });
            add_srv_set(out, zone, &name, targets);
        }
        ServiceKind::ExternalName(target) => {
            if let Ok(target) = DomainName::parse(target) {
                out.add(name.clone(), RData::Cname { target }, zone);
            }
        }
        ServiceKind::Pending => {}
    }

    // Every published endpoint has its own name and a PTR back to it, whatever the service's kind.
    if !matches!(service.kind, ServiceKind::ExternalName(_)) {
        for endpoint in &endpoints {
            let Ok(own_name) = name.child(&endpoint.label) else { continue };
            out.add(own_name.clone(), address_record(endpoint.ip), zone);
            out.add(DomainName::reverse_of(endpoint.ip), RData::Ptr { target: own_name }, &reverse_apex(endpoint.ip));
        }
    }
}

/// Headless SRV: one record per ready endpoint and named port, target the endpoint's own name, port the
/// endpoint's port; weights share 100 as CoreDNS does.
fn add_headless_srv(out: &mut ZoneData, zone: &DomainName, name: &DomainName, endpoints: &[PublishedEndpoint]) {
    let mut by_port: BTreeMap<(String, PortProtocol), Vec<(DomainName, u16)>> = BTreeMap::new();
    for endpoint in endpoints {
        let Ok(target) = name.child(&endpoint.label) else { continue };
        for port in &endpoint.ports {
            let Some(port_name) = &port.name else { continue };
            let targets = by_port.entry((port_name.to_ascii_lowercase(), port.protocol)).or_default();
            if !targets.contains(&(target.clone(), port.port)) {
                targets.push((target.clone(), port.port));
            }
        }
    }
    for ((port_name, protocol), targets) in by_port {
        let Some(srv) = srv_name(name, &port_name, protocol) else { continue };
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
        for (target, port) in targets {
            out.add(srv.clone(), RData::Srv { priority: 0, weight, port, target }, zone);
        }
    }
}

/// The SRV set at the service's own name, as CoreDNS answers `<svc>.<ns>.svc.<zone> SRV`: every
/// (target, port) once, whatever the port's name and protocol; weights share 100 (at least 1).
fn add_srv_set(
    out: &mut ZoneData,
    zone: &DomainName,
    name: &DomainName,
    targets: impl Iterator<Item = (DomainName, u16)>,
) {
    let mut distinct: Vec<(DomainName, u16)> = Vec::new();
    let mut seen = BTreeSet::new();
    for target in targets {
        if seen.insert(target.clone()) {
            distinct.push(target);
        }
    }
    let weight = u16::try_from(100 / distinct.len().max(1)).unwrap_or(1).max(1);
    for (target, port) in distinct {
        out.add(name.clone(), RData::Srv { priority: 0, weight, port, target }, zone);
    }
}

/// Verified mode: a pod's addresses answer under `<dashed-ip>.<ns>.pod.<zone>`.
fn add_pod(out: &mut ZoneData, pod: &PodView, config: &SynthConfig) {
    if config.pod_mode != PodMode::Verified {
        return;
    }
    let zone = &config.zone;
    for ip in &pod.ips {
        if let Ok(name) = zone.prefixed(&[&dashed_ip(*ip), &pod.namespace, "pod"]) {
            out.add(name, address_record(*ip), zone);
        }
    }
}

/// `ns.dns.<zone>`, the name in the SOA and NS records, resolves to the cluster DNS service's address
/// when that service (`kube-system/kube-dns`) is known, as CoreDNS does.
fn add_dns_server_name(out: &mut ZoneData, state: &ClusterState, zone: &DomainName) {
    let Some(ServiceView { kind: ServiceKind::ClusterIp(ips), .. }) =
        state.services.get(&crate::views::object_key("kube-system", "kube-dns"))
    else {
        return;
    };
    if let Ok(name) = zone.prefixed(&["ns", "dns"]) {
        for ip in ips {
            out.add(name.clone(), address_record(*ip), zone);
        }
    }
}
