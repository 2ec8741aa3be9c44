//! The PersistentVolume binder and provisioner: a pending claim binds to a matching available volume, or
//! gets one provisioned through its StorageClass (the default `standard` when it names none); a volume
//! whose claim is gone is deleted or released per its reclaim policy. A bound claim whose storage request
//! has grown past its capacity (which the API server allows only when its StorageClass has
//! `allowVolumeExpansion: true`) is expanded at once, as a CSI driver with online expansion would:
//! the volume's and the claim's capacity become the request.

use serde_json::{Value, json};

use crate::bootstrap::{DEFAULT_STORAGE_CLASS, PROVISIONER, builtin};
use crate::meta::{self, path, path_str};
use crate::store::{DeleteOptions, Store, Subresource};

/// Bytes of a quantity like `1Gi`, `500Mi`, `10G`, `1000`.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    // quantities are small enough for f64; truncation is intended
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((n * mult) as u128)
}

fn modes(v: &Value, p: &str) -> Vec<String> {
    path(v, p)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Grow a bound claim's volume and capacity to its storage request when the request is larger.
fn expand(store: &Store, claim: &Value) {
    let request = path_str(claim, "spec.resources.requests.storage");
    let (Some(want), have) =
        (quantity_bytes(request), quantity_bytes(path_str(claim, "status.capacity.storage")).unwrap_or(0))
    else {
        return;
    };
    if want <= have {
        return;
    }
    let pv_rt = builtin("", "persistentvolumes");
    let request = json!(request);
    let volume = path_str(claim, "spec.volumeName");
    if !volume.is_empty() {
        let _ = store.mutate(&pv_rt, "", volume, Subresource::Main, |old| {
            let mut o = old.clone();
            o["spec"]["capacity"]["storage"] = request.clone();
            meta::metadata_mut(&mut o).remove("resourceVersion");
            Ok(o)
        });
    }
    let _ = store.mutate(
        &builtin("", "persistentvolumeclaims"),
        meta::namespace(claim),
        meta::name(claim),
        Subresource::Status,
        |old| {
            let mut o = old.clone();
            o["status"]["capacity"]["storage"] = request.clone();
            meta::metadata_mut(&mut o).remove("resourceVersion");
            Ok(o)
        },
    );
}

/// One pass over claims and volumes.
pub fn reconcile(store: &Store) {
    let pvc_rt = builtin("", "persistentvolumeclaims");
    let pv_rt = builtin("", "persistentvolumes");
    let sc_rt = builtin("storage.k8s.io", "storageclasses");
    let (claims, _) = store.list(&pvc_rt, None);
    let (volumes, _) = store.list(&pv_rt, None);
    let (classes, _) = store.list(&sc_rt, None);
    for claim in claims.iter().filter(|c| !meta::is_terminating(c)) {
        if path_str(claim, "status.phase") == "Bound" {
            expand(store, claim);
            continue;
        }
        let ns = meta::namespace(claim);
        let name = meta::name(claim);
        let class = match path(claim, "spec.storageClassName") {
            Some(Value::String(s)) => s.clone(),
            _ => DEFAULT_STORAGE_CLASS.to_owned(),
        };
        let want = quantity_bytes(path_str(claim, "spec.resources.requests.storage")).unwrap_or(0);
        let want_modes = modes(claim, "spec.accessModes");
        let named = path_str(claim, "spec.volumeName");
        let existing = volumes.iter().find(|v| {
            let claim_ref_ok = path_str(v, "spec.claimRef.uid").is_empty()
                || path_str(v, "spec.claimRef.uid") == meta::meta_str(claim, "uid");
            let free = path_str(v, "status.phase") == "Available" && claim_ref_ok;
            let fits = quantity_bytes(path_str(v, "spec.capacity.storage")).unwrap_or(0) >= want
                && want_modes.iter().all(|m| modes(v, "spec.accessModes").contains(m))
                && path_str(v, "spec.storageClassName") == class;
            if named.is_empty() { free && fits } else { meta::name(v) == named && claim_ref_ok }
        });
        let pv_name = match existing {
            Some(v) => meta::name(v).to_owned(),
            None => {
                let Some(sc) = classes.iter().find(|c| meta::name(c) == class) else { continue };
                if path_str(sc, "provisioner") != PROVISIONER || !named.is_empty() {
                    continue;
                }
                let pv_name = format!("pvc-{}", meta::meta_str(claim, "uid"));
                let size = path_str(claim, "spec.resources.requests.storage");
                let reclaim = match path_str(sc, "reclaimPolicy") {
                    "" => "Delete",
                    r => r,
                };
                let pv = json!({
                    "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
                    "spec": {
                        "capacity": {"storage": if size.is_empty() { "1Gi" } else { size }},
                        "accessModes": if want_modes.is_empty() { json!(["ReadWriteOnce"]) } else { json!(want_modes) },
                        "persistentVolumeReclaimPolicy": reclaim,
                        "storageClassName": class,
                        "hostPath": {"path": format!("/var/lib/roster-sim/{pv_name}")},
                        "volumeMode": path(claim, "spec.volumeMode").cloned().unwrap_or(json!("Filesystem")),
                    },
                });
                if store.create(&pv_rt, "", pv).is_err() {
                    continue;
                }
                pv_name
            }
        };
        let claim_ref = json!({
            "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
            "uid": meta::meta_str(claim, "uid"),
        });
        let bound_pv = store.mutate(&pv_rt, "", &pv_name, Subresource::Main, |old| {
            let mut o = old.clone();
            o["spec"]["claimRef"] = claim_ref.clone();
            meta::metadata_mut(&mut o).remove("resourceVersion");
            Ok(o)
        });
        let Ok(bound_pv) = bound_pv else { continue };
        let _ = store.mutate(&pv_rt, "", &pv_name, Subresource::Status, |old| {
            let mut o = old.clone();
            o["status"] = json!({"phase": "Bound"});
            Ok(o)
        });
        let capacity = path(&bound_pv, "spec.capacity").cloned().unwrap_or(json!({}));
        let access = path(&bound_pv, "spec.accessModes").cloned().unwrap_or(json!([]));
        let _ = store.mutate(&pvc_rt, ns, name, Subresource::Main, |old| {
            let mut o = old.clone();
            o["spec"]["volumeName"] = json!(pv_name);
            o["spec"]["storageClassName"] = json!(class);
            let m = meta::metadata_mut(&mut o);
            m.remove("resourceVersion");
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            ann["pv.kubernetes.io/bind-completed"] = json!("yes");
            ann["pv.kubernetes.io/bound-by-controller"] = json!("yes");
            Ok(o)
        });
        let _ = store.mutate(&pvc_rt, ns, name, Subresource::Status, |old| {
            let mut o = old.clone();
            o["status"] = json!({"phase": "Bound", "capacity": capacity, "accessModes": access});
            Ok(o)
        });
    }
    for v in volumes.iter().filter(|v| path_str(v, "status.phase") == "Bound") {
        let ns = path_str(v, "spec.claimRef.namespace");
        let cname = path_str(v, "spec.claimRef.name");
        let gone = store
            .get(&pvc_rt, ns, cname)
            .map(|c| meta::meta_str(&c, "uid") != path_str(v, "spec.claimRef.uid"))
            .unwrap_or(true);
        if !gone {
            continue;
        }
        if path_str(v, "spec.persistentVolumeReclaimPolicy") == "Delete" {
            let _ = store.delete(&pv_rt, "", meta::name(v), &DeleteOptions::default());
        } else {
            let _ = store.mutate(&pv_rt, "", meta::name(v), Subresource::Status, |old| {
                let mut o = old.clone();
                o["status"] = json!({"phase": "Released"});
                Ok(o)
            });
        }
    }
}
