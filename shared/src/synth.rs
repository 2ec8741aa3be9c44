//! Synthesis: the complete record set of the cluster zone and the reverse zones, as a pure function of
//! the slim views (Kubernetes DNS-Based Service Discovery, schema 1.1.0, with design.md's decisions).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::OnceLock;

use crate::name::{DomainName, dashed_ip, is_dns1123_label};
use crate::records::{RData, ZoneBuilder, ZoneData};
use crate::views::{
    ClusterState, EndpointSliceView, EndpointView, ImportKind, PodView, PortProtocol, ServiceImportView, ServiceKind,
    ServicePort, ServiceView,
};

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
    /// The multicluster zone (KEP-1645, e.g. `clusterset.local`) where ServiceImports are published;
    /// `None`: off, and ServiceImports and imported slices are ignored.
    pub multicluster_zone: Option<DomainName>,
}

impl SynthConfig {
    pub fn new(zone: DomainName) -> Self {
        Self { zone, pod_mode: PodMode::default(), endpoint_pod_names: false, multicluster_zone: None }
    }
}

/// The apex of the reverse zone an address's PTR name lives in; made once per process, not once per
/// PTR record.
pub fn reverse_apex(ip: IpAddr) -> &'static DomainName {
    static V4: OnceLock<DomainName> = OnceLock::new();
    static V6: OnceLock<DomainName> = OnceLock::new();
    let (apex, text) = if ip.is_ipv4() { (&V4, "in-addr.arpa") } else { (&V6, "ip6.arpa") };
    apex.get_or_init(|| DomainName::parse(text).unwrap_or_else(|_| unreachable!("constant reverse apex is valid")))
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
    /// A ServiceImport's names under the multicluster zone, from the import and the EndpointSlices
    /// labelled with its name (`ns/name`).
    Import(String),
}

/// Builds every record of the cluster zone (under `config.zone`) and every PTR (under `in-addr.arpa`
/// and `ip6.arpa`), with the empty non-terminals in between. Objects whose names cannot form valid DNS
/// names are skipped: the API server already rejects them, and manifest files are checked at load.
pub fn synthesize(state: &ClusterState, config: &SynthConfig) -> ZoneData {
    let mut out = ZoneBuilder::with_capacity(expected_names(state));
    add_apex(&mut out, state, config);

    let mut namespaces: BTreeSet<&str> = state.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(state.services.values().map(|s| s.namespace.as_str()));
    namespaces.extend(state.pods.values().map(|p| p.namespace.as_str()));
    namespaces.extend(state.service_imports.values().map(|i| i.namespace.as_str()));
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

    let imported_slices = group_imported_slices(state);
    for import in state.service_imports.values() {
        let slices = imported_slices
            .get(&(import.namespace.as_str(), import.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        add_import(&mut out, import, slices, config);
    }
    let mut out = out.finish();
    out.clients = unambiguous_clients(state.pods.values().flat_map(pod_clients));
    out
}

/// About how many names `state` makes: an endpoint address has its own name and a PTR, a service its
/// name, an SRV name and a PTR. Only a hint for the map's first size; wrong costs a regrowth, no error.
fn expected_names(state: &ClusterState) -> usize {
    let addresses: usize = state
        .endpoint_slices
        .values()
        .flat_map(|slice| &slice.endpoints)
        .map(|endpoint| endpoint.addresses.len())
        .sum();
    2 * addresses + 3 * state.services.len()
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
/// is a service, the imported slices of the ServiceImport when it is an import (ignored otherwise). Normalised, like [`synthesize`]'s result.
pub fn synthesize_part(
    source: &Source,
    state: &ClusterState,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) -> ZoneData {
    let mut out = ZoneBuilder::default();
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
        Source::Import(key) => {
            if let Some(import) = state.service_imports.get(key) {
                add_import(&mut out, import, slices, config);
            }
        }
    }
    out.finish()
}

/// A namespace has names while the Namespace object, or any service or pod in it, exists (manifest
/// files may omit the Namespace object).
fn namespace_in_use(state: &ClusterState, namespace: &str) -> bool {
    let prefix = format!("{namespace}/");
    let has_prefix = |keys: &mut dyn Iterator<Item = &String>| keys.next().is_some_and(|key| key.starts_with(&prefix));
    state.namespaces.contains_key(namespace)
        || has_prefix(&mut state.services.range(prefix.clone()..).map(|(key, _)| key))
        || has_prefix(&mut state.pods.range(prefix.clone()..).map(|(key, _)| key))
        || has_prefix(&mut state.service_imports.range(prefix.clone()..).map(|(key, _)| key))
}

fn add_apex(out: &mut ZoneBuilder, state: &ClusterState, config: &SynthConfig) {
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
    // The multicluster zone has the same skeleton: `svc.<zone>` and `dns-version.<zone>`, as CoreDNS
    // answers them in every zone of its kubernetes plugin.
    if let Some(zone) = &config.multicluster_zone {
        if let Some(svc_apex) = child(zone, "svc") {
            out.ensure_name(&svc_apex, zone);
        }
        if let Some(version) = child(zone, "dns-version") {
            out.add(version, RData::Txt { text: SCHEMA_VERSION.to_owned() }, zone);
        }
    }
}

fn add_namespace(out: &mut ZoneBuilder, namespace: &str, config: &SynthConfig) {
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
    // `<ns>.svc.<multicluster zone>` exists for every namespace of this cluster (CoreDNS answers NODATA
    // there for an exposed namespace, with or without imports).
    if let Some(zone) = &config.multicluster_zone
        && let Ok(name) = zone.prefixed(&[namespace, "svc"])
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

fn group_imported_slices(state: &ClusterState) -> BTreeMap<(&str, &str), Vec<&EndpointSliceView>> {
    let mut grouped: BTreeMap<(&str, &str), Vec<&EndpointSliceView>> = BTreeMap::new();
    for slice in state.imported_slices.values() {
        grouped.entry((slice.namespace.as_str(), slice.service.as_str())).or_default().push(slice);
    }
    grouped
}

/// A port of an endpoint: named ones get `_<port>._<proto>` SRV names; every one is in the SRV set at
/// the service's own name (CoreDNS matches an absent port and protocol as "any").
struct EndpointPortInfo {
    /// Lower-cased, as in the SRV name.
    name: Option<String>,
    protocol: PortProtocol,
    port: u16,
}

/// One published endpoint address of a service: the address, its own name (none when it cannot be
/// formed), its ports.
struct PublishedEndpoint {
    ip: IpAddr,
    own_name: Option<DomainName>,
    /// Its slice's ports, shared by the slice's endpoints.
    ports: Rc<[EndpointPortInfo]>,
}

/// Where an endpoint's own name goes below its service's name.
#[derive(Clone, Copy)]
enum EndpointNaming {
    /// `<endpoint>.<svc>.<ns>.svc.<zone>`: a service of this cluster.
    Local,
    /// `<endpoint>.<clusterid>.<svc>.<ns>.svc.<multicluster zone>`: an import, the cluster id from the
    /// slice's `multicluster.kubernetes.io/source-cluster` label. A slice without a usable cluster id
    /// (absent, or not a DNS label) gives its endpoints no own name.
    Multicluster,
}

/// The first label of an endpoint's own name: its hostname, else (in `endpoint_pod_names` mode) its
/// pod's name, else its dashed address. Hostnames and pod names are DNS-1123 subdomains in the API (up
/// to 253 characters, dots allowed); one that is not a DNS label is passed over, as if absent.
fn endpoint_label<'a>(endpoint: &'a EndpointView, ip: IpAddr, config: &SynthConfig) -> Cow<'a, str> {
    let usable = |text: &&String| is_dns1123_label(text);
    endpoint
        .hostname
        .as_ref()
        .filter(usable)
        .or_else(|| endpoint.pod_name.as_ref().filter(|_| config.endpoint_pod_names).filter(usable))
        .map_or_else(|| Cow::Owned(dashed_ip(ip)), |label| Cow::Borrowed(label.as_str()))
}

fn published_endpoints(
    name: &DomainName,
    publish_not_ready: bool,
    naming: EndpointNaming,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) -> Vec<PublishedEndpoint> {
    let mut seen = BTreeSet::new();
    let mut published = Vec::new();
    for slice in slices {
        let ports: Rc<[EndpointPortInfo]> = slice
            .ports
            .iter()
            .map(|p| EndpointPortInfo {
                name: p.name.as_deref().filter(|n| !n.is_empty()).map(str::to_ascii_lowercase),
                protocol: p.protocol,
                port: p.port,
            })
            .collect();
        for endpoint in &slice.endpoints {
            let publish = publish_not_ready || (endpoint.ready && !endpoint.terminating);
            if !publish {
                continue;
            }
            for ip in &endpoint.addresses {
                let label = endpoint_label(endpoint, *ip, config);
                let own_name = match naming {
                    EndpointNaming::Local => name.child(&label).ok(),
                    EndpointNaming::Multicluster => slice
                        .cluster
                        .as_deref()
                        .filter(|cluster| is_dns1123_label(cluster))
                        .and_then(|cluster| name.prefixed(&[&label, cluster]).ok()),
                };
                // The same address in two slices (e.g. during a slice migration) is one endpoint.
                if seen.insert((*ip, label, own_name.clone())) {
                    published.push(PublishedEndpoint { ip: *ip, own_name, ports: Rc::clone(&ports) });
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
    out: &mut ZoneBuilder,
    zone: &DomainName,
    service: &ServiceView,
    slices: &[&EndpointSliceView],
    config: &SynthConfig,
) {
    let Ok(name) = zone.prefixed(&[&service.name, &service.namespace, "svc"]) else {
        return;
    };
    let endpoints = published_endpoints(&name, service.publish_not_ready, EndpointNaming::Local, slices, config);

    match &service.kind {
        ServiceKind::ClusterIp(ips) => {
            for ip in ips {
                out.add(name.clone(), address_record(*ip), zone);
                out.add(DomainName::reverse_of(*ip), RData::Ptr { target: name.clone() }, reverse_apex(*ip));
            }
            add_port_srv(out, zone, &name, &service.ports);
        }
        ServiceKind::Headless => {
            out.add_all(&name, endpoints.iter().map(|endpoint| address_record(endpoint.ip)), zone);
            add_headless_srv(out, zone, &name, &endpoints);
            add_srv_set(out, zone, &name, endpoint_targets(&endpoints));
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
            let Some(own_name) = &endpoint.own_name else { continue };
            out.add(own_name.clone(), address_record(endpoint.ip), zone);
            let ptr = RData::Ptr { target: own_name.clone() };
            out.add(DomainName::reverse_of(endpoint.ip), ptr, reverse_apex(endpoint.ip));
        }
    }
}

/// Every (endpoint name, port) of `endpoints`, for the SRV set at the service's own name.
fn endpoint_targets(endpoints: &[PublishedEndpoint]) -> impl Iterator<Item = (DomainName, u16)> + '_ {
    endpoints.iter().flat_map(|endpoint| {
        let target = endpoint.own_name.clone();
        endpoint.ports.iter().filter_map(move |p| Some((target.clone()?, p.port)))
    })
}

/// A ServiceImport under the multicluster zone (KEP-1645's DNS section, as CoreDNS's `multicluster`
/// option serves it): ClusterSetIP imports answer their IPs and SRV per port like a ClusterIP service;
/// headless ones every ready endpoint of their slices, with SRV to the endpoints' names. Every ready
/// endpoint of either kind has its own name `<endpoint>.<clusterid>.<svc>.<ns>.svc.<zone>`. No PTR:
/// an address belongs to the cluster that holds it, and CoreDNS publishes none for imports either.
fn add_import(out: &mut ZoneBuilder, import: &ServiceImportView, slices: &[&EndpointSliceView], config: &SynthConfig) {
    let Some(zone) = &config.multicluster_zone else { return };
    let Ok(name) = zone.prefixed(&[&import.name, &import.namespace, "svc"]) else {
        return;
    };
    let endpoints = published_endpoints(&name, false, EndpointNaming::Multicluster, slices, config);
    match &import.kind {
        ImportKind::ClusterSetIp(ips) => {
            if ips.is_empty() {
                // No IP assigned yet: nothing to answer, as a ClusterIP service that is pending.
                return;
            }
            for ip in ips {
                out.add(name.clone(), address_record(*ip), zone);
            }
            add_port_srv(out, zone, &name, &import.ports);
        }
        ImportKind::Headless => {
            out.add_all(&name, endpoints.iter().map(|endpoint| address_record(endpoint.ip)), zone);
            add_headless_srv(out, zone, &name, &endpoints);
            add_srv_set(out, zone, &name, endpoint_targets(&endpoints));
        }
    }
    for endpoint in &endpoints {
        if let Some(own_name) = &endpoint.own_name {
            out.add(own_name.clone(), address_record(endpoint.ip), zone);
        }
    }
}

/// SRV of an address-holding service: `_<port>._<proto>.<name>` per named port and the set at the
/// name itself for every port, all targeting the name.
fn add_port_srv(out: &mut ZoneBuilder, zone: &DomainName, name: &DomainName, ports: &[ServicePort]) {
    for port in ports {
        let Some(port_name) = port.name.as_deref() else { continue };
        if let Some(srv) = srv_name(name, port_name, port.protocol) {
            let rdata = RData::Srv { priority: 0, weight: 100, port: port.port, target: name.clone() };
            out.add(srv, rdata, zone);
        }
    }
    add_srv_set(out, zone, name, ports.iter().map(|p| (name.clone(), p.port)));
}

/// Headless SRV: one record per ready endpoint and named port, target the endpoint's own name, port the
/// endpoint's port; weights share 100 as CoreDNS does.
fn add_headless_srv(out: &mut ZoneBuilder, zone: &DomainName, name: &DomainName, endpoints: &[PublishedEndpoint]) {
    let mut by_port: BTreeMap<(&str, PortProtocol), Vec<(DomainName, u16)>> = BTreeMap::new();
    for endpoint in endpoints {
        let Some(target) = &endpoint.own_name else { continue };
        for port in endpoint.ports.iter() {
            let Some(port_name) = &port.name else { continue };
            by_port.entry((port_name, port.protocol)).or_default().push((target.clone(), port.port));
        }
    }
    for ((port_name, protocol), mut targets) in by_port {
        // Each (target, port) once; the order does not matter, a name's records are sorted at the end.
        targets.sort_unstable();
        targets.dedup();
        let Some(srv) = srv_name(name, port_name, protocol) else { continue };
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
        let records = targets.into_iter().map(|(target, port)| RData::Srv { priority: 0, weight, port, target });
        out.add_all(&srv, records, zone);
    }
}

/// The SRV set at the service's own name, as CoreDNS answers `<svc>.<ns>.svc.<zone> SRV`: every
/// (target, port) once, whatever the port's name and protocol; weights share 100 (at least 1).
fn add_srv_set(
    out: &mut ZoneBuilder,
    zone: &DomainName,
    name: &DomainName,
    targets: impl Iterator<Item = (DomainName, u16)>,
) {
    // Sorted to drop repeats: the order does not matter, a name's records are sorted when the zone is built.
    let mut distinct: Vec<(DomainName, u16)> = targets.collect();
    distinct.sort_unstable();
    distinct.dedup();
    let weight = u16::try_from(100 / distinct.len().max(1)).unwrap_or(1).max(1);
    let records = distinct.into_iter().map(|(target, port)| RData::Srv { priority: 0, weight, port, target });
    out.add_all(name, records, zone);
}

/// Verified mode: a pod's addresses answer under `<dashed-ip>.<ns>.pod.<zone>`.
fn add_pod(out: &mut ZoneBuilder, pod: &PodView, config: &SynthConfig) {
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
fn add_dns_server_name(out: &mut ZoneBuilder, state: &ClusterState, zone: &DomainName) {
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
