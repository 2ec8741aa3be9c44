//! Per-ordinal PersistentVolumeClaims: `<template>-<set>-<ordinal>`, created before the pod, retained by
//! default, and owned (so the garbage collector deletes them) only as
//! `persistentVolumeClaimRetentionPolicy` asks — by the set for `whenDeleted: Delete`, by the pod for
//! `whenScaled: Delete` once its ordinal is scaled away — as upstream does.
//!
//! For apps/v1 StatefulSets this is upstream's code path fact for fact (stateful_pod_control.go,
//! stateful_set_utils.go): an existing claim of the right name is used whoever owns it; its owner
//! references are only rewritten when `isClaimOwnerUpToDate` says so, never on top of an unexpected
//! controller or a stale reference (then a `ConflictingController` Warning). IdentitySets are safer: a
//! claim that belongs to something else — a controller reference other than the set or the ordinal's
//! pod, a reference to an earlier set of the name, another set's marker annotation, or, unmarked, labels
//! the selector does not match — is never mounted nor touched; the pass reports it (a Warning Event and
//! the `OwnershipConflict` condition). Names alone cannot tell: template `data-web` of set `db` and
//! template `data` of set `web-db` both name `data-web-db-0`.

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Api, PostParams};

use super::context::Context;
use super::error::{Error, kube_conflict, kube_not_found};
use super::pods;
use super::set::{SetView, selector_matches};

/// Annotation on the claims an IdentitySet creates: `<set>/<template>`, the pair that made the name.
pub const CLAIM_OF_ANNOTATION: &str = "roster.dev/claim-of";

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
    /// A claim of the name belongs to something else (IdentitySets only): the pod is not created.
    Conflict(String),
}

fn is_identity_set(set: &SetView) -> bool {
    set.kind != "StatefulSet"
}

/// The claims of `ordinal` as its templates make them: `(template name, claim)`.
pub fn desired_claims(set: &SetView, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
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
            if is_identity_set(set) {
                claim
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(CLAIM_OF_ANNOTATION.into(), format!("{}/{tname}", set.name));
            }
            Some((tname, claim))
        })
        .collect()
}

/// `(whenDeleted, whenScaled)` is `Delete`; anything else (absent, `Retain`, unknown) retains, as
/// upstream treats an unknown policy.
fn retention(set: &SetView) -> (bool, bool) {
    let p = set.spec.persistent_volume_claim_retention_policy.as_ref();
    let when_deleted = p.and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    let when_scaled = p.and_then(|p| p.when_scaled.as_deref()) == Some("Delete");
    (when_deleted, when_scaled)
}

pub(super) fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
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

    /// The claim of that name, if the set has it.
    pub fn get(&self, name: &str) -> Option<&PersistentVolumeClaim> {
        self.0.get(name).map(AsRef::as_ref)
    }
}

/// A reference to the object `(api_version, kind, name)`, whatever its UID (upstream's matchesRef).
fn matches_ref(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name
}

fn matches_set(r: &OwnerReference, set: &SetView) -> bool {
    matches_ref(r, &set.api_version, &set.kind, &set.name)
}

fn matches_pod(r: &OwnerReference, pod_name: &str) -> bool {
    matches_ref(r, "v1", "Pod", pod_name)
}

/// Why an IdentitySet must not use `claim` (for ordinal `ordinal`, made from template `template`):
/// `None` when the claim is the set's or a free one it may use.
pub fn foreign_claim(set: &SetView, claim: &PersistentVolumeClaim, template: &str, ordinal: i32) -> Option<String> {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    let pod_name = set.pod_name(ordinal);
    for r in claim.metadata.owner_references.iter().flatten() {
        if r.uid == set.uid || matches_pod(r, &pod_name) {
            continue;
        }
        if matches_set(r, set) {
            return Some(format!("claim {name} is owned by an earlier {} {} (uid {})", r.kind, r.name, r.uid));
        }
        let set_like = matches!(r.kind.as_str(), "IdentitySet" | "StatefulSet");
        if r.controller == Some(true) || set_like {
            return Some(format!("claim {name} belongs to {} {} (uid {})", r.kind, r.name, r.uid));
        }
    }
    let made_for = claim.metadata.annotations.as_ref().and_then(|a| a.get(CLAIM_OF_ANNOTATION));
    match made_for {
        Some(m) if *m != format!("{}/{template}", set.name) => {
            Some(format!("claim {name} was made for IdentitySet/template {m}, not {}/{template}", set.name))
        }
        Some(_) => None,
        None => {
            let labels = claim.metadata.labels.clone().unwrap_or_default();
            (!selector_matches(&set.spec.selector, &labels))
                .then(|| format!("claim {name} is not {}'s and its labels do not match the selector", set.name))
        }
    }
}

/// Create the ordinal's missing claims (upstream's createPersistentVolumeClaims), recording an Event per
/// claim created. `before_create`: the pod does not exist yet, so a claim still owned by an earlier pod
/// of the ordinal is stale (upstream's PodClaimIsStale).
pub async fn ensure(
    ctx: &Context,
    set: &SetView,
    ordinal: i32,
    index: &ClaimIndex,
    before_create: bool,
) -> Result<Claims, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let pod_name = set.pod_name(ordinal);
    let (when_deleted, when_scaled) = retention(set);
    for (template, mut claim) in desired_claims(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match index.get(&name) {
            Some(existing) => {
                if is_identity_set(set)
                    && let Some(why) = foreign_claim(set, existing, &template, ordinal)
                {
                    return Ok(Claims::Conflict(why));
                }
                if existing.metadata.deletion_timestamp.is_some() {
                    return Ok(Claims::Stale(format!("claim {name} is being deleted")));
                }
                // The pod has no UID yet, so any reference to a pod of its name is to an earlier one.
                let stale = existing.metadata.owner_references.iter().flatten().any(|r| matches_pod(r, &pod_name));
                if before_create && when_scaled && stale {
                    return Ok(Claims::Stale(format!("claim {name} still belongs to a previous pod {pod_name}")));
                }
            }
            None => {
                // The owners the retention policy gives a claim of a pod in range, in the same write
                // (upstream writes them right after creating the pod).
                if when_deleted && set.in_range(ordinal) {
                    claim.metadata.owner_references = Some(vec![set.controller_ref()]);
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

fn pod_controller_ref(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pods::name(pod).to_owned(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Upstream's hasStaleOwnerRef: the first reference to the object's kind and name has another UID.
fn has_stale_ref(refs: &[OwnerReference], matches: impl Fn(&OwnerReference) -> bool, uid: &str) -> bool {
    refs.iter().find(|r| matches(r)).is_some_and(|r| r.uid != uid)
}

/// Upstream's hasUnexpectedController: under a non-Retain policy, a controller other than the set and the
/// pod, or a reference to either with another UID.
pub fn has_unexpected_controller(set: &SetView, pod: &Pod, refs: &[OwnerReference]) -> bool {
    let (when_deleted, when_scaled) = retention(set);
    if !when_deleted && !when_scaled {
        return false;
    }
    refs.iter().any(|r| {
        if matches_set(r, set) {
            r.uid != set.uid
        } else if matches_pod(r, pods::name(pod)) {
            r.uid != pod_uid(pod)
        } else {
            r.controller == Some(true)
        }
    })
}

fn has_ref(refs: &[OwnerReference], uid: &str) -> bool {
    refs.iter().any(|r| r.uid == uid)
}

/// Upstream's isClaimOwnerUpToDate for a claim with owner references `refs` of `pod` (ordinal `ordinal`).
pub fn is_claim_owner_up_to_date(set: &SetView, pod: &Pod, ordinal: i32, refs: &[OwnerReference]) -> bool {
    if has_stale_ref(refs, |r| matches_set(r, set), &set.uid)
        || has_stale_ref(refs, |r| matches_pod(r, pods::name(pod)), pod_uid(pod))
    {
        // Managed by an earlier set or pod of the name: not to be touched.
        return true;
    }
    let (has_set, has_pod) = (has_ref(refs, &set.uid), has_ref(refs, pod_uid(pod)));
    if has_unexpected_controller(set, pod, refs) {
        // Our references must go; none are added on top of another controller.
        return !(has_set || has_pod);
    }
    let non_controller = refs.iter().any(|r| (r.uid == set.uid || r.uid == pod_uid(pod)) && r.controller != Some(true));
    if non_controller {
        return false;
    }
    let scaled_down = !set.in_range(ordinal);
    match retention(set) {
        (false, false) => !has_set && !has_pod,
        (true, false) => has_set && !has_pod,
        (false, true) => !has_set && scaled_down == has_pod,
        (true, true) => scaled_down != has_set && scaled_down == has_pod,
    }
}

/// Upstream's updateClaimOwnerRefForSetAndPod: the references `refs` become under the retention policy.
pub fn updated_claim_owners(set: &SetView, pod: &Pod, ordinal: i32, refs: &[OwnerReference]) -> Vec<OwnerReference> {
    let unexpected = has_unexpected_controller(set, pod, refs);
    let mut next: Vec<OwnerReference> =
        refs.iter().filter(|r| !matches_set(r, set) && !matches_pod(r, pods::name(pod))).cloned().collect();
    if unexpected {
        return next;
    }
    let add = |next: &mut Vec<OwnerReference>, owner: OwnerReference| {
        if !next.iter().any(|r| r.uid == owner.uid) {
            next.push(owner);
        }
    };
    let scaled_down = !set.in_range(ordinal);
    match retention(set) {
        (false, false) => {}
        (true, false) => add(&mut next, set.controller_ref()),
        (false, true) => {
            if scaled_down {
                add(&mut next, pod_controller_ref(pod));
            }
        }
        (true, true) => {
            if scaled_down {
                add(&mut next, pod_controller_ref(pod));
            } else {
                add(&mut next, set.controller_ref());
            }
        }
    }
    next
}

/// Bring the owner references of `pod`'s claims in line with the retention policy (upstream's
/// ClaimsMatchRetentionPolicy + UpdatePodClaimForRetentionPolicy). `always`: upstream's call sites that
/// update unconditionally (after creating a pod, for a pending pod), which warn about an unexpected
/// controller even when nothing is written. Claims that do not exist are skipped. For IdentitySets, a
/// claim that belongs to something else is left alone and returned as a conflict.
pub async fn enforce_retention(
    ctx: &Context,
    set: &SetView,
    pod: &Pod,
    ordinal: i32,
    index: &ClaimIndex,
    always: bool,
) -> Result<Vec<String>, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let mut conflicts = Vec::new();
    for (template, claim) in desired_claims(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let Some(existing) = index.get(&name) else { continue };
        if is_identity_set(set)
            && let Some(why) = foreign_claim(set, existing, &template, ordinal)
        {
            conflicts.push(why);
            continue;
        }
        let refs = existing.metadata.owner_references.clone().unwrap_or_default();
        let up_to_date = is_claim_owner_up_to_date(set, pod, ordinal, &refs);
        if up_to_date && !always {
            continue;
        }
        if has_unexpected_controller(set, pod, &refs) {
            let note = format!(
                "PersistentVolumeClaim {name} has a conflicting OwnerReference that acts as a manging controller, the retention policy is ignored for this claim"
            );
            ctx.event(set, true, "ConflictingController", note, None).await;
        }
        if up_to_date {
            continue;
        }
        let mut next = existing.clone();
        next.metadata.owner_references = Some(updated_claim_owners(set, pod, ordinal, &refs));
        ctx.guard_write()?;
        // A whole-object update, as upstream's: the cached resourceVersion makes it conditional.
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(replaced) => ctx.caches.claims.updated(&replaced),
            Err(e) if kube_not_found(&e) || kube_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(conflicts)
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
        SetView { uid: "set-uid".into(), ..SetView::fixture(spec) }
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

    fn owner(kind: &str, name: &str, uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "Pod" { "v1" } else { "apps/v1" }.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: controller.then_some(true),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn retention_owner_table() {
        // (whenDeleted, whenScaled, ordinal of a 2-replica set, expected owners) — upstream's table.
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
            let got = updated_claim_owners(&s, &p, *ordinal, &[]);
            assert_eq!(owners(&got), *want, "whenDeleted={wd} whenScaled={ws} ordinal={ordinal}");
            assert!(got.iter().all(|r| r.controller == Some(true)), "upstream's owners are controller references");
            assert_eq!(is_claim_owner_up_to_date(&s, &p, *ordinal, &[]), want.is_empty());
            assert!(is_claim_owner_up_to_date(&s, &p, *ordinal, &got), "{wd}/{ws}/{ordinal} not stable");
        }
    }

    #[test]
    fn foreign_owners_are_kept() {
        let s = set("Retain", "Retain", 1);
        let other = owner("ConfigMap", "x", "x-uid", false);
        let with_set = vec![other.clone(), s.controller_ref()];
        assert!(!is_claim_owner_up_to_date(&s, &pod("web-0"), 0, &with_set));
        assert_eq!(updated_claim_owners(&s, &pod("web-0"), 0, &with_set), vec![other]);
    }

    /// Upstream never adds owners on top of another controller, nor touches a claim an earlier set of
    /// the name still references (for StatefulSets, roster does exactly that).
    #[test]
    fn another_controller_or_a_stale_reference_is_not_overwritten() {
        let s = set("Delete", "Retain", 2);
        let p = pod("web-0");
        let other = vec![owner("StatefulSet", "web-db", "other-uid", true)];
        assert!(has_unexpected_controller(&s, &p, &other));
        assert!(is_claim_owner_up_to_date(&s, &p, 0, &other), "nothing to write");
        let both = vec![other[0].clone(), s.controller_ref()];
        assert!(!is_claim_owner_up_to_date(&s, &p, 0, &both));
        assert_eq!(updated_claim_owners(&s, &p, 0, &both), other, "only our reference goes");
        let stale = vec![owner("StatefulSet", "web", "earlier-uid", true)];
        assert!(is_claim_owner_up_to_date(&s, &p, 0, &stale), "a stale reference is not touched");
        // Under Retain/Retain another controller is no conflict for a StatefulSet.
        assert!(!has_unexpected_controller(&set("Retain", "Retain", 2), &p, &other));
    }

    #[test]
    fn identity_sets_do_not_use_claims_of_others() {
        let mut s = set("Retain", "Retain", 1);
        s.kind = "IdentitySet".into();
        s.api_version = "roster.dev/v1".into();
        let (template, mine) = desired_claims(&s, 0).remove(0);
        assert_eq!(mine.metadata.annotations.as_ref().unwrap()[CLAIM_OF_ANNOTATION], "web/www");
        assert_eq!(foreign_claim(&s, &mine, &template, 0), None);
        // The same name, made by another set/template pair (`www-web` + `eb` = `www-web-eb-0`, say).
        let mut theirs = mine.clone();
        theirs.metadata.annotations = Some([(CLAIM_OF_ANNOTATION.to_owned(), "eb/www-w".to_owned())].into());
        assert!(foreign_claim(&s, &theirs, &template, 0).is_some_and(|w| w.contains("eb/www-w")));
        // Unmarked: usable only when the selector matches its labels (an orphan the set could adopt).
        let mut unmarked = mine.clone();
        unmarked.metadata.annotations = None;
        assert_eq!(foreign_claim(&s, &unmarked, &template, 0), None);
        unmarked.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
        assert!(foreign_claim(&s, &unmarked, &template, 0).is_some());
        // Owned: by another controller, by another set, or by an earlier set of the name.
        for r in [
            owner("ReplicaSet", "x", "x-uid", true),
            OwnerReference { api_version: "roster.dev/v1".into(), ..owner("IdentitySet", "web-db", "o", false) },
            OwnerReference { api_version: "roster.dev/v1".into(), ..owner("IdentitySet", "web", "earlier", true) },
        ] {
            let mut owned = mine.clone();
            owned.metadata.owner_references = Some(vec![r.clone()]);
            assert!(foreign_claim(&s, &owned, &template, 0).is_some(), "{r:?}");
        }
        let mut ours = mine;
        ours.metadata.owner_references = Some(vec![s.controller_ref(), pod_controller_ref(&pod("web-0"))]);
        assert_eq!(foreign_claim(&s, &ours, &template, 0), None);
    }

    #[test]
    fn claims_are_named_and_labelled_like_upstream() {
        let s = set("Retain", "Retain", 1);
        let claims = desired_claims(&s, 4);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].1.metadata.name.as_deref(), Some("www-web-4"));
        assert_eq!(claims[0].1.metadata.annotations, None, "StatefulSet claims are upstream's");
        let labels = claims[0].1.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("data"));
        assert_eq!(claim_name("data", "db", 0), "data-db-0");
    }
}
