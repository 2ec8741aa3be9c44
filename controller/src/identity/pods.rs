//! Pods of a set: building a pod for an ordinal at a revision, the identity it must carry, and the
//! predicates upstream's controller decides with (created, running and ready, available, terminating).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::claims::claim_name;
use super::set::SetView;

/// Label: the pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label: the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label: the ControllerRevision name the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// A new pod for `ordinal` from `template` (the template of revision `revision`).
pub fn new_pod(set: &SetView, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = set.pod_name(ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_owned());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    // Claims first, then the template's volumes not shadowed by a claim template (upstream's updateStorage).
    let templates = set.spec.volume_claim_templates.clone().unwrap_or_default();
    let claim_names: Vec<String> = templates.iter().filter_map(|t| t.metadata.name.clone()).collect();
    let mut volumes: Vec<Volume> = claim_names
        .iter()
        .map(|t| Volume {
            name: t.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(t, &set.name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(spec.volumes.take().unwrap_or_default().into_iter().filter(|v| !claim_names.contains(&v.name)));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(set.namespace.clone()),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![set.controller_ref()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Pod name.
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Pod labels (empty when none).
pub fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// The revision label.
pub fn revision(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or("")
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Deletion has started.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Phase `Failed`.
pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

/// Phase `Succeeded`.
pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// Phase `Pending`.
pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Phase `Running` and condition `Ready` true.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_since(pod).is_some()
}

/// Running, ready, and ready for at least `min_ready_seconds`.
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i64, now: Timestamp) -> bool {
    if !is_running_and_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod).flatten() {
        Some(t) => now.as_second() - t.as_second() >= min_ready_seconds,
        None => false,
    }
}

/// Seconds until a ready pod becomes available (for requeueing), when it is not yet.
pub fn seconds_to_available(pod: &Pod, min_ready_seconds: i64, now: Timestamp) -> Option<i64> {
    if min_ready_seconds <= 0 || !is_running_and_ready(pod) {
        return None;
    }
    let since = ready_since(pod).flatten()?;
    let left = min_ready_seconds - (now.as_second() - since.as_second());
    (left > 0).then_some(left)
}

/// Running and ready and not terminating.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// Not available, or terminating.
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i64, now: Timestamp) -> bool {
    !is_running_and_available(pod, min_ready_seconds, now) || is_terminating(pod)
}

/// The labels an existing pod of `ordinal` is missing or has wrong (identity labels only; upstream's
/// `identityMatches` and `updateIdentity`).
pub fn identity_label_fixes(set: &SetView, pod: &Pod, ordinal: i32) -> BTreeMap<String, String> {
    let labels = labels(pod);
    let want = [(POD_NAME_LABEL, set.pod_name(ordinal)), (POD_INDEX_LABEL, ordinal.to_string())];
    want.into_iter().filter(|(k, v)| labels.get(*k) != Some(v)).map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Whether the pod is controlled by the set with `uid`.
pub fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Whether the pod has any controller.
pub fn has_controller(pod: &Pod) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|r| r.controller == Some(true))
}
