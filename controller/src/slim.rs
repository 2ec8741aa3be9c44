//! Kubernetes objects → slim views. Every field DNS needs is checked here, once, with an error that
//! names the field, so that synthesis can trust its input.
//!
//! The checks are the API server's own (`ValidateObjectMeta` and friends), so every object a cluster
//! can hold converts: namespace and service names are DNS-1123 labels, pod and EndpointSlice names and
//! endpoint hostnames DNS-1123 subdomains (up to 253 characters, dots allowed). Whether a name can be a
//! DNS label is synthesis's business: it affects only the records that need it (see `notes`).
//!
//! Each check reads the fields DNS needs (`manifest_objects`' shapes): a manifest file decodes into
//! them, a kube object is borrowed into them, so watches and files convert alike.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use roster_shared::name::{is_dns1123_label, is_dns1123_subdomain};
use roster_shared::{
    DomainName, EndpointPort, EndpointSliceView, EndpointView, ImportKind, NamespaceView, PodView, PortProtocol,
    ServiceImportView, ServiceKind, ServicePort, ServiceView,
};

use crate::manifest_objects as fields;
use crate::service_import::ServiceImport;

/// The label the EndpointSlice controller puts on every slice of a service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that ties an EndpointSlice to the ServiceImport of that name (KEP-1645).
pub const MULTICLUSTER_SERVICE_NAME_LABEL: &str = "multicluster.kubernetes.io/service-name";
/// The label naming the cluster an imported EndpointSlice's endpoints are in: the `<clusterid>` of
/// their names (KEP-1645; CoreDNS reads the same label).
pub const SOURCE_CLUSTER_LABEL: &str = "multicluster.kubernetes.io/source-cluster";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error("{field}: `{value}` is not a valid DNS-1123 label")]
    BadLabel { field: &'static str, value: String },
    #[error("{field}: `{value}` is not a valid DNS-1123 subdomain (at most 253 characters)")]
    BadSubdomain { field: &'static str, value: String },
    #[error("{field}: `{value}` is not an IP address")]
    BadIp { field: &'static str, value: String },
    #[error("{field}: {value} is not a port number (1-65535)")]
    BadPort { field: &'static str, value: i32 },
    #[error("{field}: unsupported protocol `{value}` (TCP, UDP or SCTP)")]
    BadProtocol { field: &'static str, value: String },
    #[error("spec.externalName: `{value}` is not a valid DNS name ({reason})")]
    BadExternalName { value: String, reason: String },
    #[error("spec.type: unsupported ServiceImport type `{value}` (ClusterSetIP or Headless)")]
    BadImportType { value: String },
}

/// The name of a namespace or service: a DNS-1123 label in the API.
fn name_of(name: Option<&str>) -> Result<String, ConvertError> {
    let name = name.ok_or(ConvertError::MissingName)?;
    if !is_dns1123_label(name) {
        return Err(ConvertError::BadLabel { field: "metadata.name", value: name.to_owned() });
    }
    Ok(name.to_owned())
}

/// The name of a pod or EndpointSlice: a DNS-1123 subdomain in the API.
fn subdomain_name_of(name: Option<&str>) -> Result<String, ConvertError> {
    let name = name.ok_or(ConvertError::MissingName)?;
    if !is_dns1123_subdomain(name) {
        return Err(ConvertError::BadSubdomain { field: "metadata.name", value: name.to_owned() });
    }
    Ok(name.to_owned())
}

fn namespace_of(namespace: Option<&str>) -> Result<String, ConvertError> {
    let namespace = namespace.unwrap_or("default");
    if !is_dns1123_label(namespace) {
        return Err(ConvertError::BadLabel { field: "metadata.namespace", value: namespace.to_owned() });
    }
    Ok(namespace.to_owned())
}

/// The name and namespace of an object's metadata (absent metadata has neither).
fn meta_of<'m>(metadata: &'m Option<fields::ObjectMeta<'_>>) -> (Option<&'m str>, Option<&'m str>) {
    metadata.as_ref().map_or((None, None), |m| (m.name.as_deref(), m.namespace.as_deref()))
}

fn parse_ip(field: &'static str, value: &str) -> Result<IpAddr, ConvertError> {
    value.parse().map_err(|_| ConvertError::BadIp { field, value: value.to_owned() })
}

fn port_number(field: &'static str, value: i32) -> Result<u16, ConvertError> {
    u16::try_from(value).ok().filter(|p| *p != 0).ok_or(ConvertError::BadPort { field, value })
}

fn protocol(field: &'static str, value: Option<&str>) -> Result<PortProtocol, ConvertError> {
    match value {
        None | Some("TCP") => Ok(PortProtocol::Tcp),
        Some("UDP") => Ok(PortProtocol::Udp),
        Some("SCTP") => Ok(PortProtocol::Sctp),
        Some(other) => Err(ConvertError::BadProtocol { field, value: other.to_owned() }),
    }
}

/// A port of a Service's or a ServiceImport's `spec.ports`.
fn service_port(name: Option<&str>, protocol_name: Option<&str>, port: i32) -> Result<ServicePort, ConvertError> {
    Ok(ServicePort {
        name: port_name(name),
        protocol: protocol("spec.ports.protocol", protocol_name)?,
        port: port_number("spec.ports.port", port)?,
    })
}

fn port_name(name: Option<&str>) -> Option<String> {
    name.filter(|n| !n.is_empty()).map(str::to_ascii_lowercase)
}

pub fn namespace_view(namespace: &Namespace) -> Result<NamespaceView, ConvertError> {
    namespace_fields_view(&namespace.into())
}

pub(crate) fn namespace_fields_view(namespace: &fields::Namespace<'_>) -> Result<NamespaceView, ConvertError> {
    Ok(NamespaceView { name: name_of(meta_of(&namespace.metadata).0)? })
}

pub fn service_view(service: &Service) -> Result<ServiceView, ConvertError> {
    service_fields_view(&service.into())
}

pub(crate) fn service_fields_view(service: &fields::Service<'_>) -> Result<ServiceView, ConvertError> {
    let (name, namespace) = meta_of(&service.metadata);
    let name = name_of(name)?;
    let namespace = namespace_of(namespace)?;
    let no_spec = fields::ServiceSpec::default();
    let spec = service.spec.as_ref().unwrap_or(&no_spec);
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let value = spec.external_name.as_deref().unwrap_or_default().to_owned();
        // The API checks a DNS-1123 subdomain (no limit per label); a name that passes but is no DNS
        // name (a label over 63) only loses the CNAME, in synthesis.
        if let Err(e) = DomainName::parse(&value)
            && !is_dns1123_subdomain(value.strip_suffix('.').unwrap_or(&value))
        {
            return Err(ConvertError::BadExternalName { value, reason: e.to_string() });
        }
        ServiceKind::ExternalName(value)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let mut texts: Vec<&str> = spec.cluster_ips.iter().flatten().map(|ip| &**ip).collect();
        if texts.is_empty()
            && let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty())
        {
            texts.push(ip);
        }
        let ips = texts
            .iter()
            .filter(|t| **t != "None")
            .map(|t| parse_ip("spec.clusterIPs", t))
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() { ServiceKind::Pending } else { ServiceKind::ClusterIp(ips) }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| service_port(p.name.as_deref(), p.protocol.as_deref(), p.port.unwrap_or_default()))
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(ServiceView {
        namespace,
        name,
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

/// `Ok(None)` for a slice that belongs to no service or carries FQDN addresses: DNS ignores those.
pub fn endpoint_slice_view(slice: &EndpointSlice) -> Result<Option<EndpointSliceView>, ConvertError> {
    slice_view(&slice.into(), SERVICE_NAME_LABEL)
}

/// A slice of a ServiceImport (labelled `multicluster.kubernetes.io/service-name`), with its source
/// cluster; `Ok(None)` for a slice without that label or with FQDN addresses.
pub fn imported_slice_view(slice: &EndpointSlice) -> Result<Option<EndpointSliceView>, ConvertError> {
    slice_view(&slice.into(), MULTICLUSTER_SERVICE_NAME_LABEL)
}

/// [`endpoint_slice_view`] and [`imported_slice_view`] of one slice's fields.
pub(crate) fn slice_fields_views(
    slice: &fields::EndpointSlice<'_>,
) -> Result<(Option<EndpointSliceView>, Option<EndpointSliceView>), ConvertError> {
    Ok((slice_view(slice, SERVICE_NAME_LABEL)?, slice_view(slice, MULTICLUSTER_SERVICE_NAME_LABEL)?))
}

/// A slice as the endpoints of the service named by its label `owner_label`.
fn slice_view(slice: &fields::EndpointSlice<'_>, owner_label: &str) -> Result<Option<EndpointSliceView>, ConvertError> {
    let (name, namespace) = meta_of(&slice.metadata);
    let name = subdomain_name_of(name)?;
    let namespace = namespace_of(namespace)?;
    let labels = slice.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let Some(service) = labels.and_then(|l| l.get(owner_label)).map(str::to_owned) else {
        return Ok(None);
    };
    let cluster = labels.and_then(|l| l.get(SOURCE_CLUSTER_LABEL)).filter(|c| !c.is_empty()).map(str::to_owned);
    if slice.address_type.as_deref() == Some("FQDN") {
        return Ok(None);
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.map(|port| (p, port)))
        .map(|(p, port)| {
            Ok(EndpointPort {
                name: port_name(p.name.as_deref()),
                protocol: protocol("ports.protocol", p.protocol.as_deref())?,
                port: port_number("ports.port", port)?,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let endpoints = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| {
            let addresses = e
                .addresses
                .iter()
                .flatten()
                .map(|a| parse_ip("endpoints.addresses", a))
                .collect::<Result<Vec<_>, _>>()?;
            let hostname = e.hostname.as_deref().filter(|h| !h.is_empty());
            if let Some(h) = hostname
                && !is_dns1123_subdomain(h)
            {
                return Err(ConvertError::BadSubdomain { field: "endpoints.hostname", value: h.to_owned() });
            }
            let conditions = e.conditions.as_ref();
            // Any pod name; synthesis uses it only where it is a DNS label.
            let pod_name =
                e.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| r.name.as_deref());
            Ok(EndpointView {
                addresses,
                ready: conditions.and_then(|c| c.ready).unwrap_or(true),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                hostname: hostname.map(str::to_owned),
                pod_name: pod_name.map(str::to_owned),
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(Some(EndpointSliceView { namespace, name, service, cluster, ports, endpoints }))
}

/// A ServiceImport: `type` ClusterSetIP (also when absent, as CoreDNS reads it) or Headless.
pub fn service_import_view(import: &ServiceImport) -> Result<ServiceImportView, ConvertError> {
    let name = name_of(import.metadata.name.as_deref())?;
    let namespace = namespace_of(import.metadata.namespace.as_deref())?;
    let spec = &import.spec;
    let kind = match spec.type_.as_deref() {
        None | Some("ClusterSetIP") => {
            ImportKind::ClusterSetIp(spec.ips.iter().map(|ip| parse_ip("spec.ips", ip)).collect::<Result<Vec<_>, _>>()?)
        }
        Some("Headless") => ImportKind::Headless,
        Some(other) => return Err(ConvertError::BadImportType { value: other.to_owned() }),
    };
    let ports = spec
        .ports
        .iter()
        .map(|p| service_port(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(ServiceImportView { namespace, name, kind, ports })
}

/// What a valid imported EndpointSlice loses in DNS: without a usable cluster id (a DNS label) in
/// `multicluster.kubernetes.io/source-cluster`, its endpoints get no names of their own.
pub fn imported_slice_notes(view: &EndpointSliceView) -> Vec<String> {
    match &view.cluster {
        Some(cluster) if is_dns1123_label(cluster) => Vec::new(),
        Some(cluster) => vec![format!(
            "label {SOURCE_CLUSTER_LABEL}=`{cluster}` is not a DNS label: its endpoints get no \
             <endpoint>.<clusterid> names"
        )],
        None => vec![format!("no {SOURCE_CLUSTER_LABEL} label: its endpoints get no <endpoint>.<clusterid> names")],
    }
}

pub fn pod_view(pod: &Pod) -> Result<PodView, ConvertError> {
    pod_fields_view(&pod.into())
}

pub(crate) fn pod_fields_view(pod: &fields::Pod<'_>) -> Result<PodView, ConvertError> {
    // Pod records are keyed by address: the name is only the object's key, whatever its length.
    let (name, namespace) = meta_of(&pod.metadata);
    let name = subdomain_name_of(name)?;
    let namespace = namespace_of(namespace)?;
    let status = pod.status.as_ref();
    let mut texts: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .iter()
        .flat_map(|ips| ips.iter())
        .map(|p| p.ip.as_deref().unwrap_or_default())
        .collect();
    if texts.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty())
    {
        texts.push(ip);
    }
    let ips = texts.iter().map(|t| parse_ip("status.podIPs", t)).collect::<Result<Vec<_>, _>>()?;
    Ok(PodView { namespace, name, ips, autopath: autopath_client(pod) })
}

/// Whether the DNS server may complete this pod's search list (autopath): the kubelet gives it
/// `<ns>.svc.<zone> svc.<zone> <zone>` and the node's search domains only when it runs with dnsPolicy
/// ClusterFirst (the default; ClusterFirstWithHostNet is the same without hostNetwork) off the host
/// network, and it asks from its own address only while Running. Search domains of its own in
/// `dnsConfig` come after those the server knows, so such pods are left to search themselves.
/// The API server always sets a phase; a manifest file may leave it out, and a pod it lists with an
/// address is taken as running.
fn autopath_client(pod: &fields::Pod<'_>) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|phase| phase == "Running");
    let cluster_first = matches!(spec.dns_policy.as_deref(), None | Some("ClusterFirst" | "ClusterFirstWithHostNet"));
    let own_searches = spec.dns_config.as_ref().and_then(|c| c.searches.as_ref()).is_some_and(|s| !s.is_empty());
    running && cluster_first && !spec.host_network.unwrap_or(false) && !own_searches
}

/// What a valid EndpointSlice loses in DNS because a name cannot be a DNS label: one line per endpoint
/// hostname that is not a label (that endpoint is named by its dashed address instead). Empty for
/// nearly every slice.
pub fn endpoint_slice_notes(view: &EndpointSliceView) -> Vec<String> {
    view.endpoints
        .iter()
        .filter_map(|e| {
            let hostname = e.hostname.as_ref().filter(|h| !is_dns1123_label(h))?;
            let ip = e.addresses.first()?;
            Some(format!(
                "endpoints.hostname `{hostname}` is not a DNS label (at most 63 characters, no dots): the endpoint \
                 is named {} instead",
                roster_shared::name::dashed_ip(*ip)
            ))
        })
        .collect()
}

/// What a valid Service loses in DNS: an ExternalName that is a DNS-1123 subdomain but not a DNS name
/// gets no CNAME.
pub fn service_notes(view: &ServiceView) -> Vec<String> {
    match &view.kind {
        ServiceKind::ExternalName(target) => match DomainName::parse(target) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("spec.externalName `{target}` is not a DNS name ({e}): no CNAME is published")],
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn import(spec: serde_json::Value) -> ServiceImport {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceImport",
            "metadata": {"name": "db", "namespace": "demo"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn service_imports_convert_as_coredns_reads_them() {
        let view = service_import_view(&import(serde_json::json!({
            "type": "ClusterSetIP", "ips": ["10.99.0.10", "fd00::10"],
            "ports": [{"name": "PG", "protocol": "TCP", "port": 5432}, {"port": 9187}],
            "sessionAffinity": "None",
        })))
        .unwrap();
        assert_eq!(
            view.kind,
            ImportKind::ClusterSetIp(vec!["10.99.0.10".parse().unwrap(), "fd00::10".parse().unwrap()])
        );
        assert_eq!(view.ports[0], ServicePort { name: Some("pg".into()), protocol: PortProtocol::Tcp, port: 5432 });
        assert_eq!(view.ports[1].name, None);
        let headless = service_import_view(&import(serde_json::json!({"type": "Headless", "ports": []}))).unwrap();
        assert_eq!(headless.kind, ImportKind::Headless);
        // No type (the CRD requires one): read as ClusterSetIP, as CoreDNS does.
        let untyped = service_import_view(&import(serde_json::json!({"ports": []}))).unwrap();
        assert_eq!(untyped.kind, ImportKind::ClusterSetIp(Vec::new()));
    }

    #[test]
    fn bad_service_imports_name_the_field() {
        let bad_type = service_import_view(&import(serde_json::json!({"type": "LoadBalancer"}))).unwrap_err();
        assert!(bad_type.to_string().contains("spec.type") && bad_type.to_string().contains("LoadBalancer"));
        let bad_ip = service_import_view(&import(serde_json::json!({"ips": ["10.99.0.300"]}))).unwrap_err();
        assert!(bad_ip.to_string().contains("spec.ips"), "{bad_ip}");
        let bad_port = service_import_view(&import(serde_json::json!({"ports": [{"port": 0}]}))).unwrap_err();
        assert!(bad_port.to_string().contains("spec.ports.port"), "{bad_port}");
    }

    fn slice(labels: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cache-east", "namespace": "demo", "labels": labels},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "hostname": "cache-0"}],
        }))
        .unwrap()
    }

    #[test]
    fn imported_slices_carry_their_import_and_source_cluster() {
        let labels = serde_json::json!({MULTICLUSTER_SERVICE_NAME_LABEL: "cache", SOURCE_CLUSTER_LABEL: "east"});
        let view = imported_slice_view(&slice(labels.clone())).unwrap().unwrap();
        assert_eq!((view.service.as_str(), view.cluster.as_deref()), ("cache", Some("east")));
        assert!(imported_slice_notes(&view).is_empty());
        // Not a slice of a local service, and a local slice is not imported.
        assert_eq!(endpoint_slice_view(&slice(labels)).unwrap(), None);
        assert_eq!(imported_slice_view(&slice(serde_json::json!({SERVICE_NAME_LABEL: "cache"}))).unwrap(), None);
        // Without a usable cluster id the endpoints lose their own names, which is said.
        let anonymous = imported_slice_view(&slice(serde_json::json!({MULTICLUSTER_SERVICE_NAME_LABEL: "cache"})))
            .unwrap()
            .unwrap();
        assert_eq!(anonymous.cluster, None);
        assert!(imported_slice_notes(&anonymous)[0].contains(SOURCE_CLUSTER_LABEL));
    }
}
