//! Namespace deletion: empty a terminating namespace, then release its `kubernetes` finalizer.

use serde_json::{Value, json};

use crate::bootstrap::builtin;
use crate::meta;
use crate::store::{DeleteOptions, Store, Subresource};

/// One pass over terminating namespaces.
pub fn reconcile(store: &Store) {
    let ns_rt = builtin("", "namespaces");
    let (namespaces, _) = store.list(&ns_rt, None);
    let all = store.registry.all();
    for ns in namespaces.iter().filter(|n| meta::is_terminating(n)) {
        let name = meta::name(ns);
        let mut remaining = 0usize;
        for rt in all.iter().filter(|t| t.namespaced) {
            let (items, _) = store.list(rt, Some(name));
            remaining += items.len();
            for item in items.iter().filter(|i| !meta::is_terminating(i)) {
                let _ = store.delete(rt, name, meta::name(item), &DeleteOptions::default());
            }
        }
        let has_finalizer = meta::path(ns, "spec.finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if remaining == 0 && has_finalizer {
            let _ = store.mutate(&ns_rt, "", name, Subresource::Main, |old| {
                let mut o = old.clone();
                meta::set_path(&mut o, "spec.finalizers", json!([]));
                Ok(o)
            });
        }
    }
}
