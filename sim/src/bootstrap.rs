//! The objects every cluster starts with: system namespaces, the `kubernetes` service, nodes and the
//! default StorageClass. Idempotent, so a restarted stand-in keeps what it had.

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::store::Store;

/// The default StorageClass's name.
pub const DEFAULT_STORAGE_CLASS: &str = "standard";
/// The provisioner of the default StorageClass.
pub const PROVISIONER: &str = "roster.dev/sim-hostpath";

/// The type of a built-in resource by group and plural.
pub fn builtin(group: &str, plural: &str) -> ResourceType {
    crate::resources::builtins()
        .into_iter()
        .find(|t| t.group == group && t.plural == plural)
        .unwrap_or_else(|| panic!("{plural}.{group} is a built-in type"))
}

fn ensure_one(store: &Store, rt: &ResourceType, ns: &str, obj: Value) -> Result<(), ApiError> {
    match store.create(rt, ns, obj) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create what is missing.
pub fn ensure(store: &Store, nodes: usize) -> Result<(), ApiError> {
    let ns = builtin("", "namespaces");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_one(store, &ns, "", json!({"metadata": {"name": name}}))?;
    }
    let svc = builtin("", "services");
    ensure_one(
        store,
        &svc,
        "default",
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        }),
    )?;
    let node = builtin("", "nodes");
    for i in 0..nodes {
        let name = format!("sim-node-{i}");
        let ip = format!("172.18.0.{}", i + 2);
        ensure_one(
            store,
            &node,
            "",
            json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                }},
                "spec": {"podCIDR": format!("10.244.{i}.0/24")},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                    "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                    "nodeInfo": {"kubeletVersion": "v1.33.0-roster-sim", "osImage": "roster-sim", "architecture": "amd64", "operatingSystem": "linux", "containerRuntimeVersion": "sim://1.0", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
                },
            }),
        )?;
    }
    let sc = builtin("storage.k8s.io", "storageclasses");
    ensure_one(
        store,
        &sc,
        "",
        json!({
            "metadata": {"name": DEFAULT_STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }),
    )?;
    Ok(())
}
