//! ControllerRevisions: the template history of a set, as upstream keeps it.
//!
//! A revision's data is the patch `{"spec":{"template":{…,"$patch":"replace"}}}` (JSON, keys sorted), the
//! exact document `kubectl rollout undo` sends back as a strategic merge patch. Its name is
//! `<set>-<hash>` where hash is FNV-1 (32 bit) of the data and the collision count, encoded with
//! upstream's SafeEncodeString alphabet. Re-applying an old template finds the old revision by equal data
//! and gives it the next revision number (a rollback), as upstream does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Map, Value, json};

use super::context::Context;
use super::error::{Error, kube_conflict, kube_not_found};
use super::set::{SetView, selector_matches, selector_string};

/// Label on revisions: the hash part of the name.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Upstream's `rand.SafeEncodeString` alphabet (no vowels, no look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Sort object keys recursively, so serialisation is canonical whatever the map type.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The revision data of a template.
pub fn patch_of(template: &PodTemplateSpec) -> Result<Value, Error> {
    let mut t =
        serde_json::to_value(template).map_err(|source| Error::Convert { what: "pod template".into(), source })?;
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    Ok(canonical(&json!({ "spec": { "template": t } })))
}

/// The template a revision's data holds.
pub fn template_of(revision: &ControllerRevision) -> Result<PodTemplateSpec, Error> {
    let mut t = revision
        .data
        .as_ref()
        .and_then(|d| d.0.get("spec"))
        .and_then(|s| s.get("template"))
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).map_err(|source| Error::Convert { what: "revision template".into(), source })
}

fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    }
    h
}

/// Upstream's `HashControllerRevision`: FNV-1 of the data and the collision count, safe-encoded.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let raw = serde_json::to_string(data).unwrap_or_default();
    let h = fnv1_32(&[raw.as_bytes(), collision_count.to_string().as_bytes()]);
    h.to_string().bytes().map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()])).collect()
}

/// `<set>-<hash>`, the prefix cut so the name stays within 253 characters.
pub fn revision_name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

fn data_of(r: &ControllerRevision) -> Value {
    r.data.as_ref().map(|d| canonical(&d.0)).unwrap_or(Value::Null)
}

/// The set's revisions, oldest first: those it controls, plus orphans matching its selector, which it
/// adopts (upstream's adoptOrphanRevisions: a set deleted with `--cascade=orphan` and created again keeps
/// its history, so its pods keep their revision). Read from the revision cache; while a revision write
/// of this controller is not yet in it (revision numbers and truncation must not be decided on a stale
/// history), from the API.
pub async fn list(ctx: &Context, set: &SetView) -> Result<Vec<ControllerRevision>, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let prefix = format!("{}-", set.name);
    let found: Vec<ControllerRevision> = if ctx.caches.revisions.pending(&set.namespace, |n| n.starts_with(&prefix)) {
        let sel = selector_string(&set.spec.selector);
        let lp = if sel.is_empty() { ListParams::default() } else { ListParams::default().labels(&sel) };
        api.list(&lp).await?.items
    } else {
        ctx.caches
            .revisions
            .view(&set.namespace, |r| {
                selector_matches(&set.spec.selector, r.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
            })
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    };
    let mut revs = Vec::new();
    for r in found {
        let refs = r.metadata.owner_references.clone().unwrap_or_default();
        if refs.iter().any(|o| o.controller == Some(true) && o.uid == set.uid) {
            revs.push(r);
        } else if !refs.iter().any(|o| o.controller == Some(true)) && r.metadata.deletion_timestamp.is_none() {
            let mut next = refs;
            next.push(set.controller_ref());
            let name = r.metadata.name.clone().unwrap_or_default();
            ctx.guard_write()?;
            // Conditional on the UID (a revision recreated under the name is not touched) and the
            // resourceVersion (the references replaced are those it has now), as pod adoption.
            let patch = json!({ "metadata": {
                "ownerReferences": next,
                "uid": r.metadata.uid,
                "resourceVersion": r.metadata.resource_version,
            } });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(adopted) => {
                    ctx.caches.revisions.updated(&adopted);
                    revs.push(adopted);
                }
                Err(e) if kube_not_found(&e) || kube_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    revs.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| a.metadata.name.cmp(&b.metadata.name)));
    Ok(revs)
}

/// The outcome of resolving the set's revisions.
pub struct Revisions {
    /// The revision pods below the partition keep.
    pub current: ControllerRevision,
    /// The revision of the set's template.
    pub update: ControllerRevision,
    /// The collision count after resolving.
    pub collision_count: i32,
    /// Every revision of the set, oldest first.
    pub all: Vec<ControllerRevision>,
}

/// Find or create the update revision for the set's template, and find the current one (upstream's
/// getStatefulSetRevisions).
pub async fn resolve(ctx: &Context, set: &SetView, mut revs: Vec<ControllerRevision>) -> Result<Revisions, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let data = patch_of(&set.spec.template)?;
    let mut collision_count = set.status.collision_count.unwrap_or(0);
    let next_number = revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal: Vec<usize> = revs.iter().enumerate().filter(|(_, r)| data_of(r) == data).map(|(i, _)| i).collect();
    let update = if let Some(&last) = equal.last() {
        let is_latest = revs[last].revision == next_number - 1;
        if is_latest {
            revs[last].clone()
        } else {
            // A rollback: the old revision becomes the newest.
            let name = revs[last].metadata.name.clone().unwrap_or_default();
            ctx.guard_write()?;
            let updated =
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({ "revision": next_number }))).await?;
            ctx.caches.revisions.updated(&updated);
            revs[last] = updated.clone();
            updated
        }
    } else {
        let mut attempts = 0;
        loop {
            let h = hash(&data, collision_count);
            let name = revision_name(&set.name, &h);
            let mut labels = set.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.into(), h.clone());
            let cr = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(set.namespace.clone()),
                    labels: Some(labels),
                    annotations: (!set.annotations.is_empty()).then(|| set.annotations.clone()),
                    owner_references: Some(vec![set.controller_ref()]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: next_number,
            };
            ctx.guard_write()?;
            match api.create(&PostParams::default(), &cr).await {
                Ok(created) => {
                    ctx.caches.revisions.created(&created);
                    revs.push(created.clone());
                    break created;
                }
                Err(e) if kube_conflict(&e) => {
                    // The name exists: ours with equal data (a stale list), or a real collision.
                    let existing = api.get(&name).await?;
                    let ours = existing
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.controller == Some(true) && o.uid == set.uid);
                    if ours && data_of(&existing) == data {
                        revs.push(existing.clone());
                        break existing;
                    }
                    collision_count += 1;
                    attempts += 1;
                    if attempts > 10 {
                        return Err(Error::HashCollision(set.name.clone()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let current = set
        .status
        .current_revision
        .as_deref()
        .and_then(|c| revs.iter().find(|r| r.metadata.name.as_deref() == Some(c)))
        .cloned()
        .unwrap_or_else(|| update.clone());
    revs.sort_by_key(|r| r.revision);
    Ok(Revisions { current, update, collision_count, all: revs })
}

/// Delete the oldest revisions no pod uses, beyond `revisionHistoryLimit` (upstream's truncateHistory).
pub async fn truncate(
    ctx: &Context,
    set: &SetView,
    revs: &Revisions,
    live_names: &std::collections::BTreeSet<String>,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let keep = |r: &ControllerRevision| {
        let n = r.metadata.name.clone().unwrap_or_default();
        live_names.contains(&n)
            || revs.current.metadata.name.as_ref() == Some(&n)
            || revs.update.metadata.name.as_ref() == Some(&n)
    };
    let history: Vec<&ControllerRevision> = revs.all.iter().filter(|r| !keep(r)).collect();
    let limit = set.revision_history_limit();
    if history.len() <= limit {
        return Ok(());
    }
    for r in &history[..history.len() - limit] {
        let name = r.metadata.name.clone().unwrap_or_default();
        ctx.guard_write()?;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(res) => ctx.caches.revisions.deleted(r, res.left()),
            Err(e) if kube_not_found(&e) => ctx.caches.revisions.deleted(r, None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_go_hash_fnv_new32() {
        // Go: fnv.New32().Write([]byte("hello")) → 0xb6fa7167
        assert_eq!(fnv1_32(&[b"hello"]), 0xb6fa_7167);
        assert_eq!(fnv1_32(&[]), 0x811c_9dc5);
    }

    #[test]
    fn safe_encoding_uses_upstream_alphabet() {
        let h = hash(&json!({"spec": {}}), 0);
        assert!(!h.is_empty());
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn patch_round_trips_the_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}
        }))
        .unwrap();
        let p = patch_of(&t).unwrap();
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        let cr = ControllerRevision { data: Some(RawExtension(p)), ..ControllerRevision::default() };
        assert_eq!(template_of(&cr).unwrap(), t);
    }
}
