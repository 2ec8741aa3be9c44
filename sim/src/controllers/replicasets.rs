//! The ReplicaSet controller: each ReplicaSet adopts the orphan pods its selector matches, releases owned
//! pods it no longer matches, creates or deletes pods until its active pods number `spec.replicas`, and
//! reports replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and observedGeneration.

use serde_json::{Value, json};

use super::record_event;
use crate::bootstrap::builtin;
use crate::meta::{self, path, path_str};
use crate::selector::LabelSelector;
use crate::store::{DeleteOptions, Store, Subresource};

/// The uid of an object's controller (the owner reference with `controller: true`).
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// The owner reference a controller puts on what it creates or adopts.
pub fn owner_ref(owner: &Value, kind: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind, "name": meta::name(owner), "uid": meta::meta_str(owner, "uid"),
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// Set (`Some`) or drop (`None`) the controller reference of an object, as adoption and release do.
pub fn set_controller(obj: &Value, owner: Option<&Value>) -> Value {
    let mut o = obj.clone();
    let m = meta::metadata_mut(&mut o);
    m.remove("resourceVersion");
    let mut refs: Vec<Value> = m
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|r| r.get("controller").and_then(Value::as_bool) != Some(true)).cloned().collect())
        .unwrap_or_default();
    if let Some((owner, kind)) = owner.map(|o| (o, o.get("kind").and_then(Value::as_str).unwrap_or(""))) {
        refs.push(owner_ref(owner, kind));
    }
    if refs.is_empty() {
        m.remove("ownerReferences");
    } else {
        m.insert("ownerReferences".into(), json!(refs));
    }
    o
}

/// A pod that counts towards replicas: not being deleted, not finished.
pub fn is_active(pod: &Value) -> bool {
    !meta::is_terminating(pod) && !matches!(path_str(pod, "status.phase"), "Succeeded" | "Failed")
}

fn ready_since(pod: &Value) -> Option<i64> {
    let conds = path(pod, "status.conditions")?.as_array()?;
    let ready = conds.iter().find(|c| path_str(c, "type") == "Ready")?;
    if path_str(ready, "status") != "True" {
        return None;
    }
    Some(meta::parse_rfc3339(path_str(ready, "lastTransitionTime")).unwrap_or(0))
}

/// Ready for at least `min_ready` seconds.
fn is_available(pod: &Value, min_ready: i64, now: i64) -> bool {
    ready_since(pod).is_some_and(|t| min_ready <= 0 || now - t >= min_ready)
}

/// Which pods go first when scaling down: not yet scheduled, pending, not ready, then the newest.
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<i64>) {
    let created = meta::parse_rfc3339(meta::meta_str(pod, "creationTimestamp")).unwrap_or(0);
    (
        u8::from(!path_str(pod, "spec.nodeName").is_empty()),
        u8::from(path_str(pod, "status.phase") == "Running"),
        u8::from(ready_since(pod).is_some()),
        std::cmp::Reverse(created),
    )
}

/// One pass over every ReplicaSet.
pub fn reconcile(store: &Store) {
    let rs_rt = builtin("apps", "replicasets");
    let (sets, _) = store.list(&rs_rt, None);
    if sets.is_empty() {
        return;
    }
    let pod_rt = builtin("", "pods");
    let now = meta::now_secs();
    for rs in sets.iter().filter(|r| !meta::is_terminating(r)) {
        let ns = meta::namespace(rs);
        let name = meta::name(rs);
        let uid = meta::meta_str(rs, "uid");
        let Some(selector) = path(rs, "spec.selector").and_then(|s| LabelSelector::from_json(s).ok()) else {
            continue;
        };
        if selector.is_empty() {
            continue;
        }
        let (pods, _) = store.list(&pod_rt, Some(ns));
        let mut owned = Vec::new();
        for pod in &pods {
            let matches = selector.matches_object(pod);
            match controller_uid(pod) {
                Some(u) if u == uid && !matches && !meta::is_terminating(pod) => {
                    let _ = store
                        .mutate(&pod_rt, ns, meta::name(pod), Subresource::Main, |old| Ok(set_controller(old, None)));
                }
                Some(u) if u == uid => owned.push(pod.clone()),
                None if matches && is_active(pod) => {
                    let mut owner = (**rs).clone();
                    owner["kind"] = json!("ReplicaSet");
                    if let Ok(p) = store.mutate(&pod_rt, ns, meta::name(pod), Subresource::Main, |old| {
                        Ok(set_controller(old, Some(&owner)))
                    }) {
                        owned.push(p);
                    }
                }
                _ => {}
            }
        }
        let mut active: Vec<_> = owned.iter().filter(|p| is_active(p)).cloned().collect();
        let want = usize::try_from(path(rs, "spec.replicas").and_then(Value::as_i64).unwrap_or(1)).unwrap_or(0);
        if active.len() < want {
            let template = path(rs, "spec.template").cloned().unwrap_or(json!({}));
            for _ in active.len()..want {
                let mut pod = json!({
                    "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
                    "spec": template.get("spec").cloned().unwrap_or(json!({})),
                });
                let m = meta::metadata_mut(&mut pod);
                m.remove("name");
                m.insert("generateName".into(), json!(format!("{name}-")));
                m.insert("ownerReferences".into(), json!([owner_ref(rs, "ReplicaSet")]));
                match store.create(&pod_rt, ns, pod) {
                    Ok(p) => {
                        record_event(
                            store,
                            rs,
                            "ReplicaSet",
                            "replicaset-controller",
                            "SuccessfulCreate",
                            &format!("Created pod: {}", meta::name(&p)),
                        );
                        active.push(p);
                    }
                    Err(e) => {
                        record_event(
                            store,
                            rs,
                            "ReplicaSet",
                            "replicaset-controller",
                            "FailedCreate",
                            &format!("Error creating: {}", e.message),
                        );
                        break;
                    }
                }
            }
        } else if active.len() > want {
            active.sort_by_key(|p| deletion_rank(p));
            let extra = active.len() - want;
            for pod in active.drain(..extra) {
                if store.delete(&pod_rt, ns, meta::name(&pod), &DeleteOptions::default()).is_ok() {
                    record_event(
                        store,
                        rs,
                        "ReplicaSet",
                        "replicaset-controller",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", meta::name(&pod)),
                    );
                }
            }
        }
        let labels = path(rs, "spec.template.metadata.labels").and_then(Value::as_object);
        let fully_labeled = active
            .iter()
            .filter(|p| {
                labels.is_none_or(|l| l.iter().all(|(k, v)| meta::labels(p).and_then(|pl| pl.get(k)) == Some(v)))
            })
            .count();
        let min_ready = path(rs, "spec.minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
        let ready = active.iter().filter(|p| ready_since(p).is_some()).count();
        let available = active.iter().filter(|p| is_available(p, min_ready, now)).count();
        // the API omits zero counts, except replicas
        let mut status = json!({"replicas": active.len()});
        for (k, n) in
            [("fullyLabeledReplicas", fully_labeled), ("readyReplicas", ready), ("availableReplicas", available)]
        {
            if n > 0 {
                status[k] = json!(n);
            }
        }
        status["observedGeneration"] =
            json!(meta::path(rs, "metadata.generation").and_then(Value::as_i64).unwrap_or(1));
        if rs.get("status") != Some(&status) {
            let _ = store.mutate(&rs_rt, ns, name, Subresource::Status, |old| {
                let mut o = old.clone();
                o["status"] = status.clone();
                Ok(o)
            });
        }
    }
}
