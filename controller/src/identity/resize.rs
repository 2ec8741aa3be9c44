//! IdentitySets' claims that follow their template (`volumeClaimUpdatePolicy`). Upstream cannot change
//! a StatefulSet's `volumeClaimTemplates` at all (kubernetes/kubernetes#68737); an IdentitySet can, and:
//!
//! - with `InPlace`, a larger storage request reaches every existing claim of the set through the PVC
//!   resize path, ordinal by ordinal: a claim is updated only once the previous one's capacity has grown
//!   to the request. The API server refuses growth unless the claim is bound and its StorageClass has
//!   `allowVolumeExpansion: true`; its reason becomes the `VolumeClaimResizeFailed` condition.
//! - with either policy, what else differs between a template and its claims (access modes, class,
//!   volume mode, limits, selector; a smaller request, since claims never shrink; a larger one under
//!   `OnClaimDelete`) reaches new claims only and is reported (`VolumeClaimTemplateChanged`).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::claims::{self, ClaimIndex, claim_name, foreign_claim};
use super::context::Context;
use super::error::{Error, kube_conflict};
use super::quantity;
use super::set::SetView;
use super::status::Problem;

/// What the claims of the set report, for the status.
#[derive(Debug, Default)]
pub struct Report {
    /// Conditions to set.
    pub problems: Vec<Problem>,
    /// `status.volumeClaims` (with `InPlace` only).
    pub volume_claims: Option<Value>,
    /// A claim is growing or waits to be bound: look again soon (claim changes do not trigger passes).
    pub waiting: bool,
}

fn storage_request(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
}

fn storage_capacity(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.status.as_ref()?.capacity.as_ref()?.get("storage").map(|q| q.0.clone())
}

fn bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// The fields of `template` (its spec) that `claim` does not have, by name (what only new claims get).
/// Fields the API server defaults (class, volume mode) count only when the template sets them.
fn differing_fields(template: &PersistentVolumeClaim, claim: &PersistentVolumeClaim) -> Vec<&'static str> {
    let (Some(t), Some(c)) = (template.spec.as_ref(), claim.spec.as_ref()) else { return Vec::new() };
    let mut out = Vec::new();
    let sorted = |m: &Option<Vec<String>>| {
        let mut v = m.clone().unwrap_or_default();
        v.sort();
        v
    };
    if sorted(&t.access_modes) != sorted(&c.access_modes) {
        out.push("accessModes");
    }
    if t.storage_class_name.is_some() && t.storage_class_name != c.storage_class_name {
        out.push("storageClassName");
    }
    if t.volume_mode.is_some() && t.volume_mode != c.volume_mode {
        out.push("volumeMode");
    }
    let limits = |p: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| {
        p.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default()
    };
    if limits(t) != limits(c) {
        out.push("resources.limits");
    }
    let other_requests = |p: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| {
        let mut r = p.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        r.remove("storage");
        r
    };
    if other_requests(t) != other_requests(c) {
        out.push("resources.requests (other than storage)");
    }
    if t.selector.is_some() && t.selector != c.selector {
        out.push("selector");
    }
    out
}

/// Grow, and report on, the set's claims of its wanted `ordinals` (IdentitySets only).
pub async fn run(ctx: &Context, set: &SetView, ordinals: &[i32]) -> Result<Report, Error> {
    let mut report = Report::default();
    let templates = set.spec.volume_claim_templates.clone().unwrap_or_default();
    if set.kind == "StatefulSet" || templates.is_empty() {
        return Ok(report);
    }
    let in_place = set.extensions.claims_in_place;
    let index = ClaimIndex::load(ctx, set);
    let (mut resizing, mut failed, mut changed, mut statuses) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for template in &templates {
        let Some(tname) = template.metadata.name.as_deref() else { continue };
        let want = storage_request(template);
        let want_nanos = want.as_deref().and_then(quantity::nanos);
        let mut claims: Vec<&PersistentVolumeClaim> = Vec::new();
        for &o in ordinals {
            let name = claim_name(tname, &set.name, o);
            if let Some(c) = index.get(&name)
                && c.metadata.deletion_timestamp.is_none()
                && foreign_claim(set, c, tname, o).is_none()
            {
                claims.push(c);
            }
        }
        // Differences that reach new claims only: field → claims that lack it.
        let mut drift: Vec<(String, Vec<String>)> = Vec::new();
        let mut note = |what: String, claim: &PersistentVolumeClaim| {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match drift.iter_mut().find(|(w, _)| *w == what) {
                Some((_, names)) => names.push(name),
                None => drift.push((what, vec![name])),
            }
        };
        let mut growing = false;
        let mut resized = 0;
        for claim in &claims {
            let name = claim.metadata.name.clone().unwrap_or_default();
            for field in differing_fields(template, claim) {
                note(field.to_owned(), claim);
            }
            let (Some(want), Some(want_nanos)) = (want.as_deref(), want_nanos) else { continue };
            let have = storage_request(claim).unwrap_or_default();
            let have_nanos = quantity::nanos(&have).unwrap_or(0);
            let capacity = storage_capacity(claim).unwrap_or_default();
            let grown = quantity::nanos(&capacity).is_some_and(|c| c >= want_nanos);
            if grown {
                resized += 1;
            }
            if have_nanos > want_nanos {
                note(format!("storage {want} (claims never shrink)"), claim);
                continue;
            }
            if have_nanos == want_nanos || grown {
                if !grown && in_place && !growing && have_nanos == want_nanos && bound(claim) {
                    // Ordinal by ordinal: the next claim waits until this one has grown.
                    resizing.push(format!("{name} is growing to {want} (capacity {capacity})"));
                    growing = true;
                }
                continue;
            }
            if !in_place {
                note(format!("storage {want} (volumeClaimUpdatePolicy OnClaimDelete)"), claim);
                continue;
            }
            if growing {
                continue;
            }
            growing = true;
            if !bound(claim) {
                resizing.push(format!("{name} waits to be bound before it grows to {want}"));
                continue;
            }
            match grow(ctx, set, claim, want).await? {
                None => resizing.push(format!("{name} is growing from {have} to {want}")),
                Some(why) => failed.push(format!("claim {name} cannot grow from {have} to {want}: {why}")),
            }
        }
        for (what, names) in drift {
            changed.push(format!("{tname}: {what} applies to new claims only ({} keep theirs)", names.join(", ")));
        }
        if in_place {
            statuses.push(json!({
                "name": tname,
                "storage": want.unwrap_or_default(),
                "claims": claims.len(),
                "resized": resized,
            }));
        }
    }
    report.waiting = !resizing.is_empty();
    if !resizing.is_empty() {
        report.problems.push(Problem::resizing(resizing.join("; ")));
    }
    if !failed.is_empty() {
        report.problems.push(Problem::resize_failed(failed.join("; ")));
    }
    if !changed.is_empty() {
        report.problems.push(Problem::template_changed(changed.join("; ")));
    }
    report.volume_claims = in_place.then_some(Value::Array(statuses));
    Ok(report)
}

/// Update `claim`'s storage request to `want` (a whole-object update, conditional on the cached
/// resourceVersion, as the retention owners are written). `Some(reason)` when the API server refuses it.
async fn grow(
    ctx: &Context,
    set: &SetView,
    claim: &PersistentVolumeClaim,
    want: &str,
) -> Result<Option<String>, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let name = claim.metadata.name.clone().unwrap_or_default();
    let have = storage_request(claim).unwrap_or_default();
    let mut next = claim.clone();
    let requests = next.spec.get_or_insert_default().resources.get_or_insert_default().requests.get_or_insert_default();
    requests.insert("storage".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(want.to_owned()));
    ctx.guard_write()?;
    match api.replace(&name, &PostParams::default(), &next).await {
        Ok(replaced) => {
            ctx.caches.claims.updated(&replaced);
            let note = format!("Resize Claim {name} from {have} to {want} in {} {}", set.kind, set.name);
            ctx.event(set, false, "ResizeClaim", note, Some(claims::claim_ref(&replaced))).await;
            Ok(None)
        }
        // Changed since the cache saw it (the binder, say): the next pass decides again.
        Err(e) if kube_conflict(&e) => Ok(None),
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 422) => Ok(Some(s.message)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({ "metadata": { "name": "www-web-0" }, "spec": spec })).unwrap()
    }

    #[test]
    fn only_set_or_differing_fields_are_reported() {
        let template = claim(json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}));
        // The API server defaulted class and volume mode; the storage request is handled on its own.
        let stored = claim(json!({
            "accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": "1Gi"}}
        }));
        assert!(differing_fields(&template, &stored).is_empty());
        let changed = claim(json!({
            "accessModes": ["ReadWriteMany"], "storageClassName": "fast",
            "resources": {"requests": {"storage": "2Gi"}, "limits": {"storage": "4Gi"}}
        }));
        assert_eq!(differing_fields(&changed, &stored), ["accessModes", "storageClassName", "resources.limits"]);
    }
}
