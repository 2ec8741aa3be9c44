//! The resource types the stand-in serves: built-ins and those defined by CRDs.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

/// Where a scalable resource keeps its replica counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Dotted path of the desired replicas (`spec.replicas`).
    pub spec_replicas: String,
    /// Dotted path of the observed replicas (`status.replicas`).
    pub status_replicas: String,
    /// Dotted path of the label selector string in status, if any.
    pub label_selector: Option<String>,
}

/// One servable resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Plural resource name (`pods`).
    pub plural: String,
    /// Singular name (`pod`).
    pub singular: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether a `/status` subresource exists.
    pub status: bool,
    /// The `/scale` subresource, if any.
    pub scale: Option<ScalePaths>,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The storage key: group and plural (`apps/statefulsets`, `/pods`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `<Kind>List`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The URL prefix of the group version (`/api/v1`, `/apis/apps/v1`).
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn rt(
    group: &str,
    version: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: categories.iter().map(|s| (*s).to_owned()).collect(),
        status,
        scale: None,
    }
}

/// The built-in resource types.
pub fn builtins() -> Vec<ResourceType> {
    let mut sts = rt("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, &["sts"], &["all"], true);
    sts.scale = Some(ScalePaths {
        spec_replicas: "spec.replicas".into(),
        status_replicas: "status.replicas".into(),
        label_selector: None,
    });
    let scaled = |mut t: ResourceType| {
        t.scale = Some(ScalePaths {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            label_selector: None,
        });
        t
    };
    let deploy = scaled(rt("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"], &["all"], true));
    let rs = scaled(rt("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"], &["all"], true));
    vec![
        rt("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"], &[], true),
        rt("", "v1", "pods", "pod", "Pod", true, &["po"], &["all"], true),
        rt("", "v1", "services", "service", "Service", true, &["svc"], &["all"], true),
        rt("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"], &[], false),
        rt(
            "",
            "v1",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            &[],
            true,
        ),
        rt("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, &["pv"], &[], true),
        rt("", "v1", "nodes", "node", "Node", false, &["no"], &[], true),
        rt("", "v1", "events", "event", "Event", true, &["ev"], &[], false),
        rt("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], &[], false),
        rt("", "v1", "secrets", "secret", "Secret", true, &[], &[], false),
        rt("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], &[], false),
        sts,
        deploy,
        rs,
        rt("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, &[], &[], false),
        rt("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, &[], &[], false),
        rt("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false, &["sc"], &[], false),
        rt("events.k8s.io", "v1", "events", "event", "Event", true, &["ev"], &[], false),
        rt("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, &[], &[], false),
        rt(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "",
            "SelfSubjectAccessReview",
            false,
            &[],
            &[],
            false,
        ),
        rt(
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
            "",
            "SelfSubjectRulesReview",
            false,
            &[],
            &[],
            false,
        ),
        rt(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            &[],
            true,
        ),
    ]
}

/// Resource types derived from one CRD object (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |p: &str| crate::meta::path_str(&spec, p).to_owned();
    let strings = |p: &str| -> Vec<String> {
        crate::meta::path(&spec, p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let group = s("group");
    let plural = s("names.plural");
    let kind = s("names.kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match s("names.singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let namespaced = s("scope") != "Cluster";
    let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|v| {
            let version = v.get("name")?.as_str()?.to_owned();
            let sub = v.get("subresources");
            let status = sub.and_then(|s| s.get("status")).is_some();
            let scale = sub.and_then(|s| s.get("scale")).map(|sc| {
                let p = |k: &str| sc.get(k).and_then(Value::as_str).map(|x| x.trim_start_matches('.').to_owned());
                ScalePaths {
                    spec_replicas: p("specReplicasPath").unwrap_or_else(|| "spec.replicas".into()),
                    status_replicas: p("statusReplicasPath").unwrap_or_else(|| "status.replicas".into()),
                    label_selector: p("labelSelectorPath"),
                }
            });
            Some(ResourceType {
                group: group.clone(),
                version,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: strings("names.shortNames"),
                categories: strings("names.categories"),
                status,
                scale,
            })
        })
        .collect()
}

/// All servable types: built-ins plus the CRDs' (replaced wholesale when CRDs change).
#[derive(Debug, Default)]
pub struct Registry {
    types: RwLock<Arc<Vec<ResourceType>>>,
}

impl Registry {
    /// A registry of the built-ins.
    pub fn new() -> Self {
        Self { types: RwLock::new(Arc::new(builtins())) }
    }

    /// Every type.
    pub fn all(&self) -> Arc<Vec<ResourceType>> {
        self.types.read().clone()
    }

    /// Rebuild from the built-ins plus the given CRD objects.
    pub fn set_crds<'a>(&self, crds: impl Iterator<Item = &'a Value>) {
        let mut all = builtins();
        for crd in crds {
            for t in from_crd(crd) {
                if !all.iter().any(|b| b.group == t.group && b.version == t.version && b.plural == t.plural) {
                    all.push(t);
                }
            }
        }
        *self.types.write() = Arc::new(all);
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types.read().iter().find(|t| t.group == group && t.version == version && t.plural == plural).cloned()
    }

    /// The first type with this group and plural (any version).
    pub fn find_gr(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.types.read().iter().find(|t| t.group == group && t.plural == plural).cloned()
    }

    /// The type of an apiVersion + kind.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types.read().iter().find(|t| t.api_version() == api_version && t.kind == kind).cloned()
    }
}
