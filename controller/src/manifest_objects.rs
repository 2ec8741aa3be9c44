//! The fields of Services, EndpointSlices, Pods, Namespaces and ServiceImports that DNS reads, and
//! nothing else: the shapes a manifest file decodes into, and the shapes `slim` converts to views
//! (a kube object is borrowed into them, see the `From` impls), so one conversion serves watches and
//! files alike.
//!
//! Decoding every field of every object into full k8s-openapi structs, only to drop most of them, was
//! an eighth of start-up at 100k pod records (bench/README.md, "Start-up"). The fields read decode as
//! k8s-openapi decodes them: every one optional, `null` read as absent, a required one absent read as
//! its default, the same types (so a mismatch names the same path and type). Fields DNS does not read
//! are not checked against the schema. Strings borrow the file's text ([`Text`]), so a kept string is
//! allocated once, in its view.
//!
//! An object is decoded one top-level field at a time ([`Typed::field`]): the manifest reader hands
//! each field over as soon as it knows the object's kind, so a list is read in one pass.

use std::borrow::Cow;
use std::ops::Deref;

use k8s_openapi::api::core::v1 as k8s_core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny};

use crate::service_import::{self, ServiceImportSpec};
use crate::slim::{MULTICLUSTER_SERVICE_NAME_LABEL, SERVICE_NAME_LABEL, SOURCE_CLUSTER_LABEL};

/// A string of the text being read, borrowed unless it has escapes (or comes from a kube object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a String> for Text<'a> {
    fn from(text: &'a String) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// One object of a kind DNS reads, being decoded field by field ([`Typed::field`]).
pub(crate) struct Typed<'a> {
    pub(crate) object: Object<'a>,
    /// The fields read so far, one bit each: a field present twice is an error, as serde's derived
    /// structs make it.
    seen: u8,
}

pub(crate) enum Object<'a> {
    Namespace(Namespace<'a>),
    Service(Service<'a>),
    EndpointSlice(EndpointSlice<'a>),
    Pod(Pod<'a>),
    ServiceImport(ServiceImport<'a>),
    /// A kind DNS does not read.
    Ignored,
}

impl<'a> Typed<'a> {
    /// An empty object of the kind `apiVersion`/`kind` name.
    pub(crate) fn new(api_version: &str, kind: &str) -> Self {
        let object = match (api_version, kind) {
            ("v1", "Namespace") => Object::Namespace(Namespace::default()),
            ("v1", "Service") => Object::Service(Service::default()),
            ("discovery.k8s.io/v1", "EndpointSlice") => Object::EndpointSlice(EndpointSlice::default()),
            ("v1", "Pod") => Object::Pod(Pod::default()),
            (service_import::API_VERSION, "ServiceImport") => Object::ServiceImport(ServiceImport::default()),
            _ => Object::Ignored,
        };
        Self { object, seen: 0 }
    }

    /// Decodes the top-level field `key` from `value`; a field DNS does not read is skipped unchecked.
    pub(crate) fn field<'de: 'a, D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        let seen = &mut self.seen;
        match (&mut self.object, key) {
            (Object::Namespace(o), "metadata") => set(&mut o.metadata, seen, 0, "metadata", value),
            (Object::Service(o), "metadata") => set(&mut o.metadata, seen, 0, "metadata", value),
            (Object::Service(o), "spec") => set(&mut o.spec, seen, 1, "spec", value),
            (Object::EndpointSlice(o), "metadata") => set(&mut o.metadata, seen, 0, "metadata", value),
            (Object::EndpointSlice(o), "addressType") => set(&mut o.address_type, seen, 1, "addressType", value),
            (Object::EndpointSlice(o), "endpoints") => set(&mut o.endpoints, seen, 2, "endpoints", value),
            (Object::EndpointSlice(o), "ports") => set(&mut o.ports, seen, 3, "ports", value),
            (Object::Pod(o), "metadata") => set(&mut o.metadata, seen, 0, "metadata", value),
            (Object::Pod(o), "spec") => set(&mut o.spec, seen, 1, "spec", value),
            (Object::Pod(o), "status") => set(&mut o.status, seen, 2, "status", value),
            (Object::ServiceImport(o), "metadata") => set(&mut o.metadata, seen, 0, "metadata", value),
            (Object::ServiceImport(o), "spec") => set(&mut o.spec, seen, 1, "spec", value),
            _ => IgnoredAny::deserialize(value).map(drop),
        }
    }
}

/// Decodes a top-level field (`null` as absent) unless it was read before (bit `bit` of `seen`).
fn set<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    slot: &mut Option<T>,
    seen: &mut u8,
    bit: u8,
    name: &'static str,
    value: D,
) -> Result<(), D::Error> {
    if *seen & (1 << bit) != 0 {
        return Err(D::Error::duplicate_field(name));
    }
    *seen |= 1 << bit;
    *slot = Option::<T>::deserialize(value)?;
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename = "ObjectMeta")]
pub(crate) struct ObjectMeta<'a> {
    #[serde(borrow)]
    pub(crate) name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) namespace: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) labels: Option<Labels<'a>>,
}

impl<'a> From<&'a meta::ObjectMeta> for ObjectMeta<'a> {
    fn from(kube: &'a meta::ObjectMeta) -> Self {
        let labels = kube.labels.as_ref().map(|labels| {
            Labels(
                labels.iter().filter(|(k, _)| is_read_label(k)).map(|(k, v)| (Text::from(k), Text::from(v))).collect(),
            )
        });
        Self { name: kube.name.as_ref().map(Text::from), namespace: kube.namespace.as_ref().map(Text::from), labels }
    }
}

impl From<ObjectMeta<'_>> for meta::ObjectMeta {
    fn from(slim: ObjectMeta<'_>) -> Self {
        let owned = |t: Text<'_>| t.0.into_owned();
        Self {
            name: slim.name.map(owned),
            namespace: slim.namespace.map(owned),
            labels: slim.labels.map(|l| l.0.into_iter().map(|(k, v)| (owned(k), owned(v))).collect()),
            ..Default::default()
        }
    }
}

impl ObjectMeta<'_> {
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

fn is_read_label(key: &str) -> bool {
    [SERVICE_NAME_LABEL, MULTICLUSTER_SERVICE_NAME_LABEL, SOURCE_CLUSTER_LABEL].contains(&key)
}

/// The labels DNS reads (a slice's owner and source cluster); the others are checked (strings, as in
/// the API) and dropped.
pub(crate) struct Labels<'a>(Vec<(Text<'a>, Text<'a>)>);

impl Labels<'_> {
    /// The value of label `key` (the last, should a file repeat it, as a map keeps it).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Labels<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Labels<'de>, A::Error> {
                let mut read = Vec::new();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    let value: Text<'de> = map.next_value()?;
                    if is_read_label(&key) {
                        read.push((key, value));
                    }
                }
                Ok(Labels(read))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Default)]
pub(crate) struct Namespace<'a> {
    pub(crate) metadata: Option<ObjectMeta<'a>>,
}

impl<'a> From<&'a k8s_core::Namespace> for Namespace<'a> {
    fn from(kube: &'a k8s_core::Namespace) -> Self {
        Self { metadata: Some((&kube.metadata).into()) }
    }
}

#[derive(Default)]
pub(crate) struct ServiceImport<'a> {
    pub(crate) metadata: Option<ObjectMeta<'a>>,
    pub(crate) spec: Option<ServiceImportSpec>,
}

impl From<ServiceImport<'_>> for service_import::ServiceImport {
    fn from(slim: ServiceImport<'_>) -> Self {
        Self { metadata: slim.metadata.unwrap_or_default().into(), spec: slim.spec.unwrap_or_default() }
    }
}

#[derive(Default)]
pub(crate) struct Service<'a> {
    pub(crate) metadata: Option<ObjectMeta<'a>>,
    pub(crate) spec: Option<ServiceSpec<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename = "ServiceSpec", rename_all = "camelCase")]
pub(crate) struct ServiceSpec<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) type_: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) external_name: Option<Text<'a>>,
    #[serde(rename = "clusterIP", borrow)]
    pub(crate) cluster_ip: Option<Text<'a>>,
    #[serde(rename = "clusterIPs", borrow)]
    pub(crate) cluster_ips: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub(crate) ports: Option<Vec<ServicePort<'a>>>,
    pub(crate) publish_not_ready_addresses: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename = "ServicePort")]
pub(crate) struct ServicePort<'a> {
    #[serde(borrow)]
    pub(crate) name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) protocol: Option<Text<'a>>,
    /// Required in the API; absent reads as 0, as k8s-openapi reads it.
    pub(crate) port: Option<i32>,
}

impl<'a> From<&'a k8s_core::Service> for Service<'a> {
    fn from(kube: &'a k8s_core::Service) -> Self {
        let spec = kube.spec.as_ref().map(|spec| ServiceSpec {
            type_: spec.type_.as_ref().map(Text::from),
            external_name: spec.external_name.as_ref().map(Text::from),
            cluster_ip: spec.cluster_ip.as_ref().map(Text::from),
            cluster_ips: spec.cluster_ips.as_ref().map(|ips| ips.iter().map(Text::from).collect()),
            ports: spec.ports.as_ref().map(|ports| {
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.as_ref().map(Text::from),
                        protocol: p.protocol.as_ref().map(Text::from),
                        port: Some(p.port),
                    })
                    .collect()
            }),
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
        });
        Self { metadata: Some((&kube.metadata).into()), spec }
    }
}

#[derive(Default)]
pub(crate) struct EndpointSlice<'a> {
    pub(crate) metadata: Option<ObjectMeta<'a>>,
    pub(crate) address_type: Option<Text<'a>>,
    pub(crate) endpoints: Option<Vec<Endpoint<'a>>>,
    pub(crate) ports: Option<Vec<EndpointPort<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename = "Endpoint", rename_all = "camelCase")]
pub(crate) struct Endpoint<'a> {
    #[serde(borrow)]
    pub(crate) addresses: Option<Vec<Text<'a>>>,
    pub(crate) conditions: Option<EndpointConditions>,
    #[serde(borrow)]
    pub(crate) hostname: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) target_ref: Option<ObjectReference<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "EndpointConditions")]
pub(crate) struct EndpointConditions {
    pub(crate) ready: Option<bool>,
    pub(crate) terminating: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename = "ObjectReference")]
pub(crate) struct ObjectReference<'a> {
    #[serde(borrow)]
    pub(crate) kind: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "EndpointPort")]
pub(crate) struct EndpointPort<'a> {
    #[serde(borrow)]
    pub(crate) name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) protocol: Option<Text<'a>>,
    pub(crate) port: Option<i32>,
}

impl<'a> From<&'a discovery::EndpointSlice> for EndpointSlice<'a> {
    fn from(kube: &'a discovery::EndpointSlice) -> Self {
        let endpoint = |e: &'a discovery::Endpoint| Endpoint {
            addresses: Some(e.addresses.iter().map(Text::from).collect()),
            conditions: e
                .conditions
                .as_ref()
                .map(|c| EndpointConditions { ready: c.ready, terminating: c.terminating }),
            hostname: e.hostname.as_ref().map(Text::from),
            target_ref: e.target_ref.as_ref().map(|r| ObjectReference {
                kind: r.kind.as_ref().map(Text::from),
                name: r.name.as_ref().map(Text::from),
            }),
        };
        let port = |p: &'a discovery::EndpointPort| EndpointPort {
            name: p.name.as_ref().map(Text::from),
            protocol: p.protocol.as_ref().map(Text::from),
            port: p.port,
        };
        Self {
            metadata: Some((&kube.metadata).into()),
            address_type: Some(Text::from(&kube.address_type)),
            endpoints: Some(kube.endpoints.iter().map(endpoint).collect()),
            ports: kube.ports.as_ref().map(|ports| ports.iter().map(port).collect()),
        }
    }
}

#[derive(Default)]
pub(crate) struct Pod<'a> {
    pub(crate) metadata: Option<ObjectMeta<'a>>,
    pub(crate) spec: Option<PodSpec<'a>>,
    pub(crate) status: Option<PodStatus<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodSpec", rename_all = "camelCase")]
pub(crate) struct PodSpec<'a> {
    #[serde(borrow)]
    pub(crate) dns_policy: Option<Text<'a>>,
    pub(crate) host_network: Option<bool>,
    #[serde(borrow)]
    pub(crate) dns_config: Option<PodDnsConfig<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodDNSConfig")]
pub(crate) struct PodDnsConfig<'a> {
    #[serde(borrow)]
    pub(crate) searches: Option<Vec<Text<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodStatus", rename_all = "camelCase")]
pub(crate) struct PodStatus<'a> {
    #[serde(borrow)]
    pub(crate) phase: Option<Text<'a>>,
    #[serde(rename = "podIP", borrow)]
    pub(crate) pod_ip: Option<Text<'a>>,
    #[serde(rename = "podIPs", borrow)]
    pub(crate) pod_ips: Option<Vec<PodIp<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename = "PodIP")]
pub(crate) struct PodIp<'a> {
    /// Required in the API; absent reads as empty, as k8s-openapi reads it.
    #[serde(borrow)]
    pub(crate) ip: Option<Text<'a>>,
}

impl<'a> From<&'a k8s_core::Pod> for Pod<'a> {
    fn from(kube: &'a k8s_core::Pod) -> Self {
        let spec = kube.spec.as_ref().map(|spec| PodSpec {
            dns_policy: spec.dns_policy.as_ref().map(Text::from),
            host_network: spec.host_network,
            dns_config: spec
                .dns_config
                .as_ref()
                .map(|c| PodDnsConfig { searches: c.searches.as_ref().map(|s| s.iter().map(Text::from).collect()) }),
        });
        let status = kube.status.as_ref().map(|status| PodStatus {
            phase: status.phase.as_ref().map(Text::from),
            pod_ip: status.pod_ip.as_ref().map(Text::from),
            pod_ips: status
                .pod_ips
                .as_ref()
                .map(|ips| ips.iter().map(|ip| PodIp { ip: Some(Text::from(&ip.ip)) }).collect()),
        });
        Self { metadata: Some((&kube.metadata).into()), spec, status }
    }
}
