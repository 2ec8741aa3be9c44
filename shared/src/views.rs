//! Slim views of the Kubernetes objects that DNS needs: converted once at the controller's edge, so
//! that synthesis and memory never see full API objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceView {
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl PortProtocol {
    /// The SRV label without its underscore: `tcp`, `udp`, `sctp`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: PortProtocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A service with one or more cluster IPs (one per family).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the endpoints themselves.
    Headless,
    /// `type: ExternalName`: a CNAME to this (already validated) name.
    ExternalName(String),
    /// A service that has no address yet (e.g. a ClusterIP not yet allocated): it publishes nothing.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<ServicePort>,
    pub publish_not_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub protocol: PortProtocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; absent in the API means ready.
    pub ready: bool,
    pub terminating: bool,
    pub hostname: Option<String>,
    /// The name of the pod in `targetRef`, when the target is a Pod.
    pub pod_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSliceView {
    pub namespace: String,
    pub name: String,
    /// The owning service: the `kubernetes.io/service-name` label for a service's slice, the
    /// `multicluster.kubernetes.io/service-name` label for a slice of a ServiceImport.
    pub service: String,
    /// The `multicluster.kubernetes.io/source-cluster` label: the cluster id in the per-endpoint names
    /// of a ServiceImport's endpoints (`<hostname>.<clusterid>.<svc>.<ns>.svc.<multicluster zone>`).
    /// Read for imported slices only.
    pub cluster: Option<String>,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    /// True when this pod resolves through the cluster DNS with the kubelet's ClusterFirst search list
    /// (`<ns>.svc.<zone> svc.<zone> <zone>`, then the node's), so that the server may complete that
    /// list for it (autopath): phase Running, dnsPolicy ClusterFirst (or ClusterFirstWithHostNet)
    /// without hostNetwork, and no search domains of its own in `dnsConfig`.
    pub autopath: bool,
}

/// The type of a ServiceImport (multicluster.x-k8s.io/v1alpha1, KEP-1645).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// `type: ClusterSetIP`: the name resolves to `spec.ips`.
    ClusterSetIp(Vec<IpAddr>),
    /// `type: Headless`: the name resolves to the ready endpoints of the imported EndpointSlices.
    Headless,
}

/// A ServiceImport: a service exported by the clusters of a ClusterSet, published under the
/// multicluster zone (`<name>.<namespace>.svc.clusterset.local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImportView {
    pub namespace: String,
    pub name: String,
    pub kind: ImportKind,
    pub ports: Vec<ServicePort>,
}

/// Everything synthesis reads, keyed by `namespace/name` so that replacing an object is one insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub namespaces: BTreeMap<String, NamespaceView>,
    pub services: BTreeMap<String, ServiceView>,
    pub endpoint_slices: BTreeMap<String, EndpointSliceView>,
    pub pods: BTreeMap<String, PodView>,
    /// ServiceImports (read only with a multicluster zone).
    pub service_imports: BTreeMap<String, ServiceImportView>,
    /// EndpointSlices labelled `multicluster.kubernetes.io/service-name`: the endpoints of the
    /// ServiceImport of that name (read only with a multicluster zone). A slice with both service
    /// labels is here and in `endpoint_slices`.
    pub imported_slices: BTreeMap<String, EndpointSliceView>,
}

/// The key of a namespaced object in [`ClusterState`].
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl ClusterState {
    pub fn insert_namespace(&mut self, view: NamespaceView) {
        self.namespaces.insert(view.name.clone(), view);
    }
    pub fn insert_service(&mut self, view: ServiceView) {
        self.services.insert(object_key(&view.namespace, &view.name), view);
    }
    pub fn insert_endpoint_slice(&mut self, view: EndpointSliceView) {
        self.endpoint_slices.insert(object_key(&view.namespace, &view.name), view);
    }
    pub fn insert_pod(&mut self, view: PodView) {
        self.pods.insert(object_key(&view.namespace, &view.name), view);
    }
    pub fn insert_service_import(&mut self, view: ServiceImportView) {
        self.service_imports.insert(object_key(&view.namespace, &view.name), view);
    }
    pub fn insert_imported_slice(&mut self, view: EndpointSliceView) {
        self.imported_slices.insert(object_key(&view.namespace, &view.name), view);
    }
}
