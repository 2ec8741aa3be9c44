//! Kubernetes objects → slim views. Every field DNS needs is checked here, once, with an error that
//! names the field, so that synthesis can trust its input.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use roster_shared::name::is_dns1123_label;
use roster_shared::{
    DomainName, EndpointPort, EndpointSliceView, EndpointView, NamespaceView, PodView, PortProtocol, ServiceKind,
    ServicePort, ServiceView,
};

/// The label the EndpointSlice controller puts on every slice of a service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error("{field}: `{value}` is not a valid DNS-1123 label")]
    BadLabel { field: &'static str, value: String },
    #[error("{field}: `{value}` is not an IP address")]
    BadIp { field: &'static str, value: String },
    #[error("{field}: {value} is not a port number (1-65535)")]
    BadPort { field: &'static str, value: i32 },
    #[error("{field}: unsupported protocol `{value}` (TCP, UDP or SCTP)")]
    BadProtocol { field: &'static str, value: String },
    #[error("spec.externalName: `{value}` is not a valid DNS name ({reason})")]
    BadExternalName { value: String, reason: String },
}

fn name_of(name: Option<&String>) -> Result<String, ConvertError> {
    let name = name.ok_or(ConvertError::MissingName)?;
    if !is_dns1123_label(name) {
        return Err(ConvertError::BadLabel { field: "metadata.name", value: name.clone() });
    }
    Ok(name.clone())
}

fn namespace_of(namespace: Option<&String>) -> Result<String, ConvertError> {
    let namespace = namespace.cloned().unwrap_or_else(|| "default".to_owned());
    if !is_dns1123_label(&namespace) {
        return Err(ConvertError::BadLabel { field: "metadata.namespace", value: namespace });
    }
    Ok(namespace)
}

fn parse_ip(field: &'static str, value: &str) -> Result<IpAddr, ConvertError> {
    value.parse().map_err(|_| ConvertError::BadIp { field, value: value.to_owned() })
}

fn port_number(field: &'static str, value: i32) -> Result<u16, ConvertError> {
    u16::try_from(value).ok().filter(|p| *p != 0).ok_or(ConvertError::BadPort { field, value })
}

fn protocol(field: &'static str, value: Option<&String>) -> Result<PortProtocol, ConvertError> {
    match value.map(String::as_str) {
        None | Some("TCP") => Ok(PortProtocol::Tcp),
        Some("UDP") => Ok(PortProtocol::Udp),
        Some("SCTP") => Ok(PortProtocol::Sctp),
        Some(other) => Err(ConvertError::BadProtocol { field, value: other.to_owned() }),
    }
}

fn port_name(name: Option<&String>) -> Option<String> {
    name.filter(|n| !n.is_empty()).map(|n| n.to_ascii_lowercase())
}

pub fn namespace_view(namespace: &Namespace) -> Result<NamespaceView, ConvertError> {
    Ok(NamespaceView { name: name_of(namespace.metadata.name.as_ref())? })
}

pub fn service_view(service: &Service) -> Result<ServiceView, ConvertError> {
    let name = name_of(service.metadata.name.as_ref())?;
    let namespace = namespace_of(service.metadata.namespace.as_ref())?;
    let spec = service.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let value = spec.external_name.clone().unwrap_or_default();
        DomainName::parse(&value)
            .map_err(|e| ConvertError::BadExternalName { value: value.clone(), reason: e.to_string() })?;
        ServiceKind::ExternalName(value)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let mut texts: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
        if texts.is_empty()
            && let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty())
        {
            texts.push(ip);
        }
        let ips = texts
            .iter()
            .filter(|t| t.as_str() != "None")
            .map(|t| parse_ip("spec.clusterIPs", t))
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() { ServiceKind::Pending } else { ServiceKind::ClusterIp(ips) }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            Ok(ServicePort {
                name: port_name(p.name.as_ref()),
                protocol: protocol("spec.ports.protocol", p.protocol.as_ref())?,
                port: port_number("spec.ports.port", p.port)?,
            })
        })
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
    let name = name_of(slice.metadata.name.as_ref())?;
    let namespace = namespace_of(slice.metadata.namespace.as_ref())?;
    let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned() else {
        return Ok(None);
    };
    if slice.address_type == "FQDN" {
        return Ok(None);
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.map(|port| (p, port)))
        .map(|(p, port)| {
            Ok(EndpointPort {
                name: port_name(p.name.as_ref()),
                protocol: protocol("ports.protocol", p.protocol.as_ref())?,
                port: port_number("ports.port", port)?,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| {
            let addresses =
                e.addresses.iter().map(|a| parse_ip("endpoints.addresses", a)).collect::<Result<Vec<_>, _>>()?;
            let hostname = e.hostname.clone().filter(|h| !h.is_empty());
            if let Some(h) = &hostname
                && !is_dns1123_label(h)
            {
                return Err(ConvertError::BadLabel { field: "endpoints.hostname", value: h.clone() });
            }
            let conditions = e.conditions.clone().unwrap_or_default();
            let pod_name = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone())
                .filter(|n| is_dns1123_label(n));
            Ok(EndpointView {
                addresses,
                ready: conditions.ready.unwrap_or(true),
                terminating: conditions.terminating.unwrap_or(false),
                hostname,
                pod_name,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(Some(EndpointSliceView { namespace, name, service, ports, endpoints }))
}

pub fn pod_view(pod: &Pod) -> Result<PodView, ConvertError> {
    let name = name_of(pod.metadata.name.as_ref())?;
    let namespace = namespace_of(pod.metadata.namespace.as_ref())?;
    let status = pod.status.clone().unwrap_or_default();
    let mut texts: Vec<String> = status.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    if texts.is_empty()
        && let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty())
    {
        texts.push(ip);
    }
    let ips = texts.iter().map(|t| parse_ip("status.podIPs", t)).collect::<Result<Vec<_>, _>>()?;
    Ok(PodView { namespace, name, ips })
}
