//! The garbage collector: dependents whose owners are all gone are deleted (Background), a Foreground
//! deletion waits for the owner's dependents to go first, an Orphan deletion strips the owner reference
//! from its dependents first.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::meta;
use crate::resources::ResourceType;
use crate::store::{DeleteOptions, EventType, Store, Subresource};

use super::Pass;

struct Entry {
    rt: ResourceType,
    obj: Arc<Value>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn remove_finalizer(store: &Store, e: &Entry, finalizer: &str) {
    let _ = store.mutate(&e.rt, meta::namespace(&e.obj), meta::name(&e.obj), Subresource::Main, |old| {
        let mut o = old.clone();
        let rest: Vec<String> = meta::finalizers(old).into_iter().filter(|f| f != finalizer).collect();
        let m = meta::metadata_mut(&mut o);
        if rest.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), json!(rest));
        }
        m.remove("resourceVersion");
        Ok(o)
    });
}

/// Whether some owner of `obj` exists (kind, name and uid match); `None` when an owner's kind is unknown.
fn has_live_owner(store: &Store, obj: &Value) -> Option<bool> {
    let refs = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array)?;
    let mut live = false;
    for r in refs {
        let rt = store.registry.find_kind(meta::path_str(r, "apiVersion"), meta::path_str(r, "kind"))?;
        let ns = if rt.namespaced { meta::namespace(obj) } else { "" };
        live |= store
            .get(&rt, ns, meta::path_str(r, "name"))
            .is_ok_and(|owner| meta::meta_str(&owner, "uid") == meta::path_str(r, "uid"));
    }
    Some(live)
}

/// A pass: when the changes are only new dependents whose owners exist there is nothing to collect, so
/// the pass over the whole store (which grows with the cluster) is skipped.
pub fn reconcile(store: &Store, pass: Pass<'_>) {
    if let Pass::Changes(changes) = pass {
        let nothing_to_collect = changes.iter().all(|c| {
            c.event == EventType::Added
                && !meta::is_terminating(&c.object)
                && has_live_owner(store, &c.object) == Some(true)
        });
        if nothing_to_collect {
            return;
        }
    }
    reconcile_all(store);
}

/// One pass over every object of every type.
fn reconcile_all(store: &Store) {
    let mut entries: Vec<Entry> = Vec::new();
    for rt in store.registry.all().iter() {
        let (items, _) = store.list(rt, None);
        entries.extend(items.into_iter().map(|obj| Entry { rt: rt.clone(), obj }));
    }
    let by_uid: HashMap<&str, &Entry> = entries.iter().map(|e| (meta::meta_str(&e.obj, "uid"), e)).collect();
    let mut dependents: HashMap<String, Vec<&Entry>> = HashMap::new();
    for e in &entries {
        for uid in owner_uids(&e.obj) {
            dependents.entry(uid).or_default().push(e);
        }
    }
    for e in &entries {
        let owners = owner_uids(&e.obj);
        if !owners.is_empty()
            && owners.iter().all(|u| !by_uid.contains_key(u.as_str()))
            && !meta::is_terminating(&e.obj)
        {
            let _ = store.delete(&e.rt, meta::namespace(&e.obj), meta::name(&e.obj), &DeleteOptions::default());
        }
    }
    for owner in entries.iter().filter(|e| meta::is_terminating(&e.obj)) {
        let uid = meta::meta_str(&owner.obj, "uid");
        let deps = dependents.get(uid).map(Vec::as_slice).unwrap_or(&[]);
        let finalizers = meta::finalizers(&owner.obj);
        if finalizers.iter().any(|f| f == "orphan") {
            for d in deps {
                let _ = store.mutate(&d.rt, meta::namespace(&d.obj), meta::name(&d.obj), Subresource::Main, |old| {
                    let mut o = old.clone();
                    let refs: Vec<Value> = old
                        .get("metadata")
                        .and_then(|m| m.get("ownerReferences"))
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter().filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid)).cloned().collect()
                        })
                        .unwrap_or_default();
                    let m = meta::metadata_mut(&mut o);
                    if refs.is_empty() {
                        m.remove("ownerReferences");
                    } else {
                        m.insert("ownerReferences".into(), json!(refs));
                    }
                    m.remove("resourceVersion");
                    Ok(o)
                });
            }
            remove_finalizer(store, owner, "orphan");
        } else if finalizers.iter().any(|f| f == "foregroundDeletion") {
            if deps.is_empty() {
                remove_finalizer(store, owner, "foregroundDeletion");
            } else {
                for d in deps.iter().filter(|d| !meta::is_terminating(&d.obj)) {
                    let opts = DeleteOptions { propagation: Some("Foreground".into()), ..DeleteOptions::default() };
                    let _ = store.delete(&d.rt, meta::namespace(&d.obj), meta::name(&d.obj), &opts);
                }
            }
        }
    }
}
