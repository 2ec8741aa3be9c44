//! The shapes the manifest source decodes Services, EndpointSlices, Pods, Namespaces and
//! ServiceImports into: only the fields `slim` reads, everything else skipped unread. Each is then
//! moved into its k8s-openapi type (those fields set, the rest default) so that one conversion,
//! `slim`'s, serves watches and files alike.
//!
//! Decoding every field of every object into full k8s-openapi structs, only to drop most of them, was
//! an eighth of start-up at 100k pod records (bench/README.md, "Start-up"). The fields read decode as
//! k8s-openapi decodes them: every one optional, `null` read as absent, a required one absent read as
//! its default, the same types (so a mismatch names the same path and type). Fields DNS does not read
//! are no longer checked against the schema.
//!
//! An object is decoded one top-level field at a time ([`Typed::field`]): the manifest reader hands
//! each field over as soon as it knows the object's kind, so a list is read in one pass.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as k8s_core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny};

use crate::service_import::{self, ServiceImportSpec};
use crate::slim::{MULTICLUSTER_SERVICE_NAME_LABEL, SERVICE_NAME_LABEL, SOURCE_CLUSTER_LABEL};

/// A top-level field: absent (`None`), or present and maybe `null` (`Some(None)`); present twice is an
/// error, as serde's derived structs make it.
type Slot<T> = Option<Option<T>>;

fn set<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    slot: &mut Slot<T>,
    name: &'static str,
    value: D,
) -> Result<(), D::Error> {
    if slot.is_some() {
        return Err(D::Error::duplicate_field(name));
    }
    *slot = Some(Option::<T>::deserialize(value)?);
    Ok(())
}

/// One object of a kind DNS reads, being decoded field by field; `Ignored` for the other kinds.
pub(crate) enum Typed {
    Namespace(Namespace),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Pod(Pod),
    ServiceImport(ServiceImport),
    Ignored,
}

impl Typed {
    /// An empty object of the kind `apiVersion`/`kind` name.
    pub(crate) fn new(api_version: &str, kind: &str) -> Self {
        match (api_version, kind) {
            ("v1", "Namespace") => Self::Namespace(Namespace::default()),
            ("v1", "Service") => Self::Service(Service::default()),
            ("discovery.k8s.io/v1", "EndpointSlice") => Self::EndpointSlice(EndpointSlice::default()),
            ("v1", "Pod") => Self::Pod(Pod::default()),
            (service_import::API_VERSION, "ServiceImport") => Self::ServiceImport(ServiceImport::default()),
            _ => Self::Ignored,
        }
    }

    /// Decodes the top-level field `key` from `value`; a field DNS does not read is skipped unchecked.
    pub(crate) fn field<'de, D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        match (self, key) {
            (Self::Namespace(o), "metadata") => set(&mut o.metadata, "metadata", value),
            (Self::Service(o), "metadata") => set(&mut o.metadata, "metadata", value),
            (Self::Service(o), "spec") => set(&mut o.spec, "spec", value),
            (Self::EndpointSlice(o), "metadata") => set(&mut o.metadata, "metadata", value),
            (Self::EndpointSlice(o), "addressType") => set(&mut o.address_type, "addressType", value),
            (Self::EndpointSlice(o), "endpoints") => set(&mut o.endpoints, "endpoints", value),
            (Self::EndpointSlice(o), "ports") => set(&mut o.ports, "ports", value),
            (Self::Pod(o), "metadata") => set(&mut o.metadata, "metadata", value),
            (Self::Pod(o), "spec") => set(&mut o.spec, "spec", value),
            (Self::Pod(o), "status") => set(&mut o.status, "status", value),
            (Self::ServiceImport(o), "metadata") => set(&mut o.metadata, "metadata", value),
            (Self::ServiceImport(o), "spec") => set(&mut o.spec, "spec", value),
            _ => IgnoredAny::deserialize(value).map(drop),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename = "ObjectMeta")]
struct ObjectMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<Labels>,
}

impl From<ObjectMeta> for meta::ObjectMeta {
    fn from(slim: ObjectMeta) -> Self {
        Self { name: slim.name, namespace: slim.namespace, labels: slim.labels.map(|l| l.0), ..Default::default() }
    }
}

/// The labels DNS reads (a slice's owner and source cluster); the others are checked (strings, as in
/// the API) and dropped.
struct Labels(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Labels;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut read = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    if [SERVICE_NAME_LABEL, MULTICLUSTER_SERVICE_NAME_LABEL, SOURCE_CLUSTER_LABEL]
                        .contains(&key.as_str())
                    {
                        read.insert(key, value);
                    }
                }
                Ok(Labels(read))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Default)]
pub(crate) struct Namespace {
    metadata: Slot<ObjectMeta>,
}

impl From<Namespace> for k8s_core::Namespace {
    fn from(slim: Namespace) -> Self {
        Self { metadata: slim.metadata.flatten().unwrap_or_default().into(), ..Default::default() }
    }
}

#[derive(Default)]
pub(crate) struct ServiceImport {
    metadata: Slot<ObjectMeta>,
    spec: Slot<ServiceImportSpec>,
}

impl From<ServiceImport> for service_import::ServiceImport {
    fn from(slim: ServiceImport) -> Self {
        Self {
            metadata: slim.metadata.flatten().unwrap_or_default().into(),
            spec: slim.spec.flatten().unwrap_or_default(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Service {
    metadata: Slot<ObjectMeta>,
    spec: Slot<ServiceSpec>,
}

#[derive(Deserialize)]
#[serde(rename = "ServiceSpec", rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "type")]
    type_: Option<String>,
    external_name: Option<String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    ports: Option<Vec<ServicePort>>,
    publish_not_ready_addresses: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename = "ServicePort")]
struct ServicePort {
    name: Option<String>,
    protocol: Option<String>,
    port: Option<i32>,
}

impl From<Service> for k8s_core::Service {
    fn from(slim: Service) -> Self {
        let spec = slim.spec.flatten().map(|spec| k8s_core::ServiceSpec {
            type_: spec.type_,
            external_name: spec.external_name,
            cluster_ip: spec.cluster_ip,
            cluster_ips: spec.cluster_ips,
            ports: spec.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| k8s_core::ServicePort {
                        name: p.name,
                        protocol: p.protocol,
                        port: p.port.unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect()
            }),
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
            ..Default::default()
        });
        Self { metadata: slim.metadata.flatten().unwrap_or_default().into(), spec, status: None }
    }
}

#[derive(Default)]
pub(crate) struct EndpointSlice {
    metadata: Slot<ObjectMeta>,
    address_type: Slot<String>,
    endpoints: Slot<Vec<Endpoint>>,
    ports: Slot<Vec<EndpointPort>>,
}

#[derive(Deserialize)]
#[serde(rename = "Endpoint", rename_all = "camelCase")]
struct Endpoint {
    addresses: Option<Vec<String>>,
    conditions: Option<EndpointConditions>,
    hostname: Option<String>,
    target_ref: Option<ObjectReference>,
}

#[derive(Deserialize)]
#[serde(rename = "EndpointConditions")]
struct EndpointConditions {
    ready: Option<bool>,
    terminating: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename = "ObjectReference")]
struct ObjectReference {
    kind: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename = "EndpointPort")]
struct EndpointPort {
    name: Option<String>,
    protocol: Option<String>,
    port: Option<i32>,
}

impl From<EndpointSlice> for discovery::EndpointSlice {
    fn from(slim: EndpointSlice) -> Self {
        let endpoint = |e: Endpoint| discovery::Endpoint {
            addresses: e.addresses.unwrap_or_default(),
            conditions: e.conditions.map(|c| discovery::EndpointConditions {
                ready: c.ready,
                terminating: c.terminating,
                serving: None,
            }),
            hostname: e.hostname,
            target_ref: e.target_ref.map(|r| k8s_core::ObjectReference {
                kind: r.kind,
                name: r.name,
                ..Default::default()
            }),
            ..Default::default()
        };
        let port = |p: EndpointPort| discovery::EndpointPort {
            name: p.name,
            protocol: p.protocol,
            port: p.port,
            app_protocol: None,
        };
        Self {
            metadata: slim.metadata.flatten().unwrap_or_default().into(),
            address_type: slim.address_type.flatten().unwrap_or_default(),
            endpoints: slim.endpoints.flatten().unwrap_or_default().into_iter().map(endpoint).collect(),
            ports: slim.ports.flatten().map(|ports| ports.into_iter().map(port).collect()),
        }
    }
}

#[derive(Default)]
pub(crate) struct Pod {
    metadata: Slot<ObjectMeta>,
    spec: Slot<PodSpec>,
    status: Slot<PodStatus>,
}

#[derive(Deserialize)]
#[serde(rename = "PodSpec", rename_all = "camelCase")]
struct PodSpec {
    dns_policy: Option<String>,
    host_network: Option<bool>,
    dns_config: Option<PodDnsConfig>,
}

#[derive(Deserialize)]
#[serde(rename = "PodDNSConfig")]
struct PodDnsConfig {
    searches: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodStatus", rename_all = "camelCase")]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIp>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodIP")]
struct PodIp {
    ip: Option<String>,
}

impl From<Pod> for k8s_core::Pod {
    fn from(slim: Pod) -> Self {
        let spec = slim.spec.flatten().map(|spec| k8s_core::PodSpec {
            dns_policy: spec.dns_policy,
            host_network: spec.host_network,
            dns_config: spec.dns_config.map(|c| k8s_core::PodDNSConfig { searches: c.searches, ..Default::default() }),
            ..Default::default()
        });
        let status = slim.status.flatten().map(|status| k8s_core::PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            pod_ips: status
                .pod_ips
                .map(|ips| ips.into_iter().map(|ip| k8s_core::PodIP { ip: ip.ip.unwrap_or_default() }).collect()),
            ..Default::default()
        });
        Self { metadata: slim.metadata.flatten().unwrap_or_default().into(), spec, status }
    }
}
