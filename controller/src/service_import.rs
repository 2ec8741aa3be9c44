//! `ServiceImport.multicluster.x-k8s.io/v1alpha1` (KEP-1645, sigs.k8s.io/mcs-api): the fields DNS reads.
//! Not roster's CRD: a multicluster implementation installs it. The controller watches it only when
//! the API serves it (see [`served`]).

use kube::{Client, CustomResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group/version the controller asks discovery about.
pub const API_VERSION: &str = "multicluster.x-k8s.io/v1alpha1";
/// The resource's plural, as discovery lists it.
pub const PLURAL: &str = "serviceimports";

/// The spec of a ServiceImport, as far as DNS needs it. Unknown fields (sessionAffinity, …) are ignored.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "multicluster.x-k8s.io",
    version = "v1alpha1",
    kind = "ServiceImport",
    plural = "serviceimports",
    namespaced
)]
pub struct ServiceImportSpec {
    /// `ClusterSetIP` or `Headless`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The ClusterSet IPs of a `ClusterSetIP` import (one per family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ImportPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct ImportPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub port: i32,
}

/// Whether the API serves ServiceImports now (discovery of `multicluster.x-k8s.io/v1alpha1` lists
/// `serviceimports`). A group the API does not know is `Ok(false)`; other failures are errors.
pub async fn served(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(API_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}
