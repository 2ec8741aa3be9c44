//! Per-ordinal PersistentVolumeClaims: `<template>-<set>-<ordinal>`, created before the pod, retained by
//! default, and owned (so the garbage collector deletes them) only as
//! `persistentVolumeClaimRetentionPolicy` asks — by the set for `whenDeleted: Delete`, by the pod for
//! `whenScaled: Delete` once its ordinal is scaled away — as upstream does.

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::context::Context;
use super::error::{Error, kube_conflict, kube_not_found};
use super::pods;
use super::set::SetView;

/// The claim name of template `template` for `set`'s ordinal.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// What the claims of an ordinal allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claims {
    /// Every claim exists (or was just created): the pod may be created.
    Ready,
    /// A claim is still being deleted, or still belongs to a previous pod of the ordinal: wait.
    Stale(String),
}

fn desired_claims(set: &SetView, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| {
            let tname = t.metadata.name.clone()?;
            let mut claim = PersistentVolumeClaim { metadata: t.metadata.clone(), spec: t.spec.clone(), status: None };
            claim.metadata.name = Some(claim_name(&tname, &set.name, ordinal));
            claim.metadata.namespace = Some(set.namespace.clone());
            claim.metadata.resource_version = None;
            claim.metadata.uid = None;
            claim.metadata.creation_timestamp = None;
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim.metadata.labels = Some(labels);
            Some(claim)
        })
        .collect()
}

fn retention(set: &SetView) -> (bool, bool) {
    let p = set.spec.persistent_volume_claim_retention_policy.as_ref();
    let when_deleted = p.and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    let when_scaled = p.and_then(|p| p.when_scaled.as_deref()) == Some("Delete");
    (when_deleted, when_scaled)
}

fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The namespace's claims of the set by name, read once per pass from the claim cache (with this
/// controller's unobserved writes laid over it); empty when the set has no claim templates.
#[derive(Debug, Default)]
pub struct ClaimIndex(BTreeMap<String, Arc<PersistentVolumeClaim>>);

impl ClaimIndex {
    /// The claims the set's pods could use: named `<template>-<set>-<ordinal>`.
    pub fn load(ctx: &Context, set: &SetView) -> Self {
        let templates: Vec<String> =
            set.spec.volume_claim_templates.iter().flatten().filter_map(|t| t.metadata.name.clone()).collect();
        if templates.is_empty() {
            return ClaimIndex::default();
        }
        let prefixes: Vec<String> = templates.iter().map(|t| format!("{t}-{}-", set.name)).collect();
        let items = ctx.caches.claims.view(&set.namespace, |c| {
            let name = c.metadata.name.as_deref().unwrap_or("");
            prefixes.iter().any(|p| name.starts_with(p.as_str()))
        });
        ClaimIndex(items.into_iter().map(|c| (c.metadata.name.clone().unwrap_or_default(), c)).collect())
    }

    fn get(&self, name: &str) -> Option<&PersistentVolumeClaim> {
        self.0.get(name).map(AsRef::as_ref)
    }
}

/// Create the ordinal's missing claims (upstream's createPersistentVolumeClaims), recording an Event per
/// claim created.
pub async fn ensure(ctx: &Context, set: &SetView, ordinal: i32, index: &ClaimIndex) -> Result<Claims, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let pod_name = set.pod_name(ordinal);
    for mut claim in desired_claims(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match index.get(&name) {
            Some(existing) => {
                if existing.metadata.deletion_timestamp.is_some() {
                    return Ok(Claims::Stale(format!("claim {name} is being deleted")));
                }
                let pod_owned = existing.metadata.owner_references.iter().flatten().any(|r| r.kind == "Pod");
                if pod_owned && set.in_range(ordinal) {
                    return Ok(Claims::Stale(format!("claim {name} still belongs to a previous pod {pod_name}")));
                }
            }
            None => {
                let (when_deleted, _) = retention(set);
                if when_deleted && set.in_range(ordinal) {
                    claim.metadata.owner_references = Some(vec![set.owner_ref()]);
                }
                ctx.guard_write()?;
                match api.create(&PostParams::default(), &claim).await {
                    Ok(created) => {
                        ctx.caches.claims.created(&created);
                        let note = format!("Create Claim {name} Pod {pod_name} in {} {} success", set.kind, set.name);
                        ctx.event(set, false, "SuccessfulCreate", note, Some(claim_ref(&created))).await;
                    }
                    Err(e) if kube_conflict(&e) => {}
                    Err(e) => {
                        let note = format!(
                            "Create Claim {name} for Pod {pod_name} in {} {} failed error: {e}",
                            set.kind, set.name
                        );
                        ctx.event(set, true, "FailedCreate", note, None).await;
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Ok(Claims::Ready)
}

fn pod_owner_ref(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pods::name(pod).to_owned(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references a claim of `pod` (ordinal `ordinal`) should carry under the set's retention
/// policy, given the ones it has; `None` when they already match. Owners other than the set and the pod
/// are kept.
pub fn retention_owners(
    set: &SetView,
    pod: &Pod,
    ordinal: i32,
    refs: &[OwnerReference],
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = retention(set);
    let scaled_down = !set.in_range(ordinal);
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down && pod.metadata.uid.is_some();
    let mut next: Vec<OwnerReference> =
        refs.iter().filter(|r| r.uid != set.uid && !(r.kind == "Pod" && r.name == pods::name(pod))).cloned().collect();
    if want_set {
        next.push(set.owner_ref());
    }
    if want_pod {
        next.push(pod_owner_ref(pod));
    }
    let same = next.len() == refs.len() && next.iter().all(|n| refs.iter().any(|r| r.uid == n.uid));
    (!same).then_some(next)
}

/// Bring the owner references of `pod`'s claims in line with the retention policy (upstream's
/// updateClaimOwnerRefForSetAndPod): the set owns them for `whenDeleted: Delete` (unless the ordinal was
/// scaled away under `whenScaled: Delete`), the pod owns them for `whenScaled: Delete` once its ordinal is
/// out of range. Other owners are left alone. Claims that do not exist are skipped.
pub async fn enforce_retention(
    ctx: &Context,
    set: &SetView,
    pod: &Pod,
    ordinal: i32,
    index: &ClaimIndex,
) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &set.namespace);
    for claim in desired_claims(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let Some(existing) = index.get(&name) else { continue };
        if existing.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let refs = existing.metadata.owner_references.clone().unwrap_or_default();
        let Some(next) = retention_owners(set, pod, ordinal, &refs) else { continue };
        ctx.guard_write()?;
        let patch = json!({
            "metadata": { "ownerReferences": next, "resourceVersion": existing.metadata.resource_version }
        });
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(patched) => ctx.caches.claims.updated(&patched),
            Err(e) if kube_not_found(&e) || kube_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn set(when_deleted: &str, when_scaled: &str, replicas: i32) -> SetView {
        let spec: StatefulSetSpec = serde_json::from_value(serde_json::json!({
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}},
            "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "data"}}}],
        }))
        .unwrap();
        let spec = StatefulSetSpec {
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.into()),
                when_scaled: Some(when_scaled.into()),
            }),
            ..spec
        };
        SetView {
            kind: "StatefulSet".into(),
            api_version: "apps/v1".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "set-uid".into(),
            generation: 1,
            deleting: false,
            annotations: Default::default(),
            spec,
            status: Default::default(),
        }
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), uid: Some(format!("{name}-uid")), ..ObjectMeta::default() },
            ..Pod::default()
        }
    }

    fn owners(refs: &[OwnerReference]) -> Vec<String> {
        let mut v: Vec<String> = refs.iter().map(|r| r.kind.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn retention_owner_table() {
        // (whenDeleted, whenScaled, ordinal of a 2-replica set, expected owners)
        let table: &[(&str, &str, i32, &[&str])] = &[
            ("Retain", "Retain", 0, &[]),
            ("Retain", "Retain", 3, &[]),
            ("Delete", "Retain", 0, &["StatefulSet"]),
            ("Delete", "Retain", 3, &["StatefulSet"]),
            ("Retain", "Delete", 0, &[]),
            ("Retain", "Delete", 3, &["Pod"]),
            ("Delete", "Delete", 1, &["StatefulSet"]),
            ("Delete", "Delete", 2, &["Pod"]),
        ];
        for (wd, ws, ordinal, want) in table {
            let s = set(wd, ws, 2);
            let p = pod(&format!("web-{ordinal}"));
            let got = retention_owners(&s, &p, *ordinal, &[]).unwrap_or_default();
            assert_eq!(owners(&got), *want, "whenDeleted={wd} whenScaled={ws} ordinal={ordinal}");
            // Applying the result again is a no-op.
            assert!(retention_owners(&s, &p, *ordinal, &got).is_none(), "{wd}/{ws}/{ordinal} not stable");
        }
    }

    #[test]
    fn foreign_owners_are_kept() {
        let s = set("Retain", "Retain", 1);
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "x-uid".into(),
            ..OwnerReference::default()
        };
        let with_set = vec![other.clone(), s.owner_ref()];
        let next = retention_owners(&s, &pod("web-0"), 0, &with_set).unwrap();
        assert_eq!(next, vec![other]);
    }

    #[test]
    fn claims_are_named_and_labelled_like_upstream() {
        let s = set("Retain", "Retain", 1);
        let claims = desired_claims(&s, 4);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-4"));
        let labels = claims[0].metadata.labels.clone().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("data"));
        assert_eq!(claim_name("data", "db", 0), "data-db-0");
    }
}
