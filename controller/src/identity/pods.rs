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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn set() -> SetView {
        let spec: StatefulSetSpec = serde_json::from_value(serde_json::json!({
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "1"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i"}],
                    "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "www"}}],
        }))
        .unwrap();
        SetView { namespace: "ns".into(), ..SetView::fixture(spec) }
    }

    #[test]
    fn a_new_pod_carries_its_identity() {
        let s = set();
        let p = new_pod(&s, &s.spec.template, 2, "web-abc");
        assert_eq!(name(&p), "web-2");
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        let l = labels(&p);
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[REVISION_LABEL], "web-abc");
        assert_eq!(l["app"], "web");
        assert_eq!(p.metadata.annotations.as_ref().unwrap()["a"], "1");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        // The claim replaces the template's volume of the same name and comes first.
        let vols = spec.volumes.unwrap();
        assert_eq!(vols.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["www", "cfg"]);
        assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-2");
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", Some(true)));
    }

    fn pod_with(phase: &str, ready: bool, ready_secs_ago: i64, now: Timestamp) -> Pod {
        let since = now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(ready_secs_ago)).unwrap();
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(since)),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn readiness_and_availability_table() {
        let now = Timestamp::now();
        // (phase, ready, ready for s, minReadySeconds) → (running and ready, available)
        let table = [
            ("Running", true, 0, 0, true, true),
            ("Running", true, 1, 5, true, false),
            ("Running", true, 5, 5, true, true),
            ("Running", false, 9, 0, false, false),
            ("Pending", true, 9, 0, false, false),
            ("Failed", false, 9, 0, false, false),
        ];
        for (phase, ready, ago, min, want_ready, want_available) in table {
            let p = pod_with(phase, ready, ago, now);
            assert_eq!(is_running_and_ready(&p), want_ready, "{phase} {ready} {ago} {min}");
            assert_eq!(is_running_and_available(&p, min, now), want_available, "{phase} {ready} {ago} {min}");
            assert_eq!(is_unavailable(&p, min, now), !want_available);
        }
        assert_eq!(seconds_to_available(&pod_with("Running", true, 1, now), 5, now), Some(4));
        assert!(is_failed(&pod_with("Failed", false, 0, now)));
    }
}
