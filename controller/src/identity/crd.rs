//! roster's own set kind, `IdentitySet.roster.dev/v1`: the StatefulSet spec under another name, so the
//! identity controller can run beside a cluster's built-in StatefulSet controller.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSetCondition, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{Error, kube_conflict};
use super::set::{Extensions, MAX_RESERVED_ENTRIES};

/// The spec of an [`IdentitySet`]: field for field the apps/v1 StatefulSet spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "roster.dev",
    version = "v1",
    kind = "IdentitySet",
    plural = "identitysets",
    shortname = "idset",
    category = "all",
    namespaced,
    status = "IdentitySetStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"READY", "type":"string", "jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"AGE", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"REVISION", "type":"string", "jsonPath":".status.updateRevision", "priority":1}"#,
    printcolumn = r#"{"name":"UPDATED", "type":"integer", "jsonPath":".status.updatedReplicas", "priority":1}"#,
    printcolumn = r#"{"name":"PAUSED", "type":"boolean", "jsonPath":".spec.updateStrategy.rollingUpdate.paused", "priority":1}"#,
    printcolumn = r#"{"name":"RESERVED", "type":"string", "jsonPath":".spec.reserveOrdinals", "priority":1}"#,
    printcolumn = r#"{"name":"RECOVERY", "type":"string", "jsonPath":".spec.rolloutRecovery", "priority":1}"#,
    printcolumn = r#"{"name":"CLAIMS", "type":"string", "jsonPath":".spec.volumeClaimUpdatePolicy", "priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.replicas) ? self.replicas : 1) + (has(self.ordinals) && has(self.ordinals.start) ? self.ordinals.start : 0) <= 2147483647",
        "message": "replicas + ordinals.start must not exceed 2147483647"
    }
]))]
pub struct IdentitySetSpec {
    /// Desired number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "non_negative")]
    pub replicas: Option<i32>,
    /// A label query over pods; must match the template's labels.
    #[schemars(schema_with = "object_schema")]
    pub selector: LabelSelector,
    /// The governing (headless) service: every pod gets `subdomain` = this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_schema")]
    pub service_name: Option<String>,
    /// The pod template.
    #[schemars(schema_with = "object_schema")]
    pub template: PodTemplateSpec,
    /// One PVC per template per ordinal, `<template>-<set>-<ordinal>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_list_schema")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
    /// `OrderedReady` (default) or `Parallel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_management_policy_schema")]
    pub pod_management_policy: Option<String>,
    /// How pods are replaced when the template changes: `RollingUpdate` (default, with `partition`,
    /// `maxUnavailable` and, beyond StatefulSets, `paused`) or `OnDelete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "update_strategy_schema")]
    pub update_strategy: Option<IdentitySetUpdateStrategy>,
    /// How many old ControllerRevisions to keep (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "non_negative")]
    pub revision_history_limit: Option<i32>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "non_negative")]
    pub min_ready_seconds: Option<i32>,
    /// `whenDeleted` / `whenScaled`: `Retain` (default) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "retention_policy_schema")]
    pub persistent_volume_claim_retention_policy: Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
    /// `start`: the first ordinal (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ordinals_schema")]
    pub ordinals: Option<StatefulSetOrdinals>,
    /// Beyond StatefulSets (OpenKruise's field): ordinals never created, each an integer or a string "a-b" (an
    /// inclusive range). replicas counts the other ordinals: replicas 3 with reserveOrdinals [1] gives pods 0, 2
    /// and 3. A pod already at a newly reserved ordinal is deleted as in a scale-down, highest ordinal first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reserve_ordinals_schema")]
    pub reserve_ordinals: Option<Vec<IntOrString>>,
    /// Beyond StatefulSets: Freeze (default, upstream's behaviour) leaves a rollout frozen behind a pod that never
    /// becomes Ready until someone deletes it, even after the template is reverted (kubernetes/kubernetes#67250).
    /// Replace: when the update revision changes again (a revert or a fix) while a pod of a superseded revision
    /// (neither the current nor the update revision) is not Ready, that pod is replaced at the update revision
    /// without waiting for it - one at a time (at most maxUnavailable pods being replaced), only at ordinals at or
    /// above the partition, never while paused. Condition RolloutRecovery and a RecoverRollout Event say what was
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rollout_recovery_schema")]
    pub rollout_recovery: Option<String>,
    /// Beyond StatefulSets: OnClaimDelete (default) - a changed claim template applies to claims created afterwards
    /// only. InPlace - a larger storage request is applied to every existing claim of the set, ordinal by ordinal
    /// (the next claim once the previous one's capacity has grown), through the PVC resize path; the StorageClass
    /// must allow volume expansion, else condition VolumeClaimResizeFailed names the claim and the API server's
    /// reason. With either policy, other template changes (and smaller requests: claims never shrink) reach new
    /// claims only and condition VolumeClaimTemplateChanged reports them. status.volumeClaims shows the progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "volume_claim_update_policy_schema")]
    pub volume_claim_update_policy: Option<String>,
}

/// The update strategy of an [`IdentitySet`]: the StatefulSet's, plus `rollingUpdate.paused` (its schema
/// is `update_strategy_schema`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySetUpdateStrategy {
    /// `RollingUpdate` or `OnDelete`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Parameters of `RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<IdentitySetRollingUpdate>,
}

/// `updateStrategy.rollingUpdate` of an [`IdentitySet`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySetRollingUpdate {
    /// Pods with an ordinal below `start + partition` keep the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Pods that may be unavailable during the update: an integer or a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Hold the rollout where it is (no existing pod is replaced) while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl IdentitySetSpec {
    /// The opt-in features, for the controller (`status`: the stored status, for what it reported).
    pub fn extensions(&self, status: Option<&IdentitySetStatus>) -> Extensions {
        let rolling = self.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref());
        Extensions {
            reserve_ordinals: self.reserve_ordinals.clone().unwrap_or_default(),
            paused: rolling.and_then(|r| r.paused).unwrap_or(false),
            replace_stuck_pods: self.rollout_recovery.as_deref() == Some(RECOVERY_REPLACE),
            claims_in_place: self.volume_claim_update_policy.as_deref() == Some(CLAIMS_IN_PLACE),
            volume_claims_status: status.and_then(|s| s.volume_claims.clone()),
        }
    }
}

/// `rolloutRecovery`: replace a superseded revision's unready pods without waiting.
pub const RECOVERY_REPLACE: &str = "Replace";
/// `rolloutRecovery`: upstream's behaviour (the default).
pub const RECOVERY_FREEZE: &str = "Freeze";
/// `volumeClaimUpdatePolicy`: grow existing claims to a larger template request.
pub const CLAIMS_IN_PLACE: &str = "InPlace";
/// `volumeClaimUpdatePolicy`: template changes reach claims created afterwards only (the default).
pub const CLAIMS_ON_CLAIM_DELETE: &str = "OnClaimDelete";

/// The status of an [`IdentitySet`]: the StatefulSet status, plus `selector` (for `/scale`) and `ready`
/// (`"2/3"`, the READY column).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySetStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods running and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods at the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Pods at the update revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Pods ready for at least `minReadySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The revision of pods below the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision the template is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Revision-name hash collisions met so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// The spec's selector as a string (the `/scale` subresource's `labelSelectorPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `ready/desired`, as `kubectl get sts` prints READY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Why the controller cannot do what the spec asks (a child owned by something else, a spec it
    /// cannot act on): `type`, `status`, `reason`, `message`, `lastTransitionTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<StatefulSetCondition>>,
    /// With `volumeClaimUpdatePolicy: InPlace`: per claim template, its storage request and how many of
    /// the set's claims have reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "volume_claims_status_schema")]
    pub volume_claims: Option<serde_json::Value>,
}

/// An int32 that may not be negative (as the API server validates the StatefulSet field).
fn non_negative(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "format": "int32", "minimum": 0 })
}

fn string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string" })
}

fn pod_management_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["OrderedReady", "Parallel"] })
}

/// `maxUnavailable`: an integer of at least 1 or a percentage from 1% to 100% (the API server's rules for
/// StatefulSets); `pattern` applies to strings only, `minimum` to integers only.
pub const MAX_UNAVAILABLE_PATTERN: &str = "^(100|[1-9][0-9]?)%$";

fn update_strategy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": {
            "type": { "type": "string", "enum": ["RollingUpdate", "OnDelete"] },
            "rollingUpdate": {
                "type": "object",
                "properties": {
                    "partition": {
                        "type": "integer", "format": "int32", "minimum": 0,
                        "description": "Pods with an ordinal below start + partition keep (and are restored at) the current revision."
                    },
                    "maxUnavailable": {
                        "x-kubernetes-int-or-string": true,
                        "minimum": 1,
                        "pattern": MAX_UNAVAILABLE_PATTERN,
                        "description": "Pods that may be unavailable at once during the update: an integer >= 1 or a percentage (default 1)."
                    },
                    "paused": {
                        "type": "boolean",
                        "description": "Beyond StatefulSets (OpenKruise's field): while true the rollout holds where it is - no existing pod is replaced, not even by rolloutRecovery; pods created meanwhile (scale-up, a deleted or failed pod) get the revision their ordinal calls for, as without the pause. Condition RolloutPaused says so. Default false."
                    }
                }
            }
        },
        "x-kubernetes-validations": [{
            "rule": "!has(self.rollingUpdate) || !has(self.type) || self.type == 'RollingUpdate'",
            "message": "rollingUpdate is only allowed with type RollingUpdate"
        }]
    })
}

fn retention_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": {
            "whenDeleted": { "type": "string", "enum": ["Retain", "Delete"] },
            "whenScaled": { "type": "string", "enum": ["Retain", "Delete"] }
        }
    })
}

fn ordinals_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": { "start": { "type": "integer", "format": "int32", "minimum": 0 } }
    })
}

fn reserve_ordinals_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_RESERVED_ENTRIES,
        "items": {
            "x-kubernetes-int-or-string": true,
            "minimum": 0,
            "pattern": "^[0-9]{1,10}(-[0-9]{1,10})?$"
        }
    })
}

fn rollout_recovery_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": [RECOVERY_FREEZE, RECOVERY_REPLACE]
    })
}

fn volume_claim_update_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": [CLAIMS_ON_CLAIM_DELETE, CLAIMS_IN_PLACE]
    })
}

fn volume_claims_status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "description": "The claim template." },
                "storage": { "type": "string", "description": "The template's storage request." },
                "claims": { "type": "integer", "description": "The set's claims of this template." },
                "resized": { "type": "integer", "description": "Claims whose capacity has reached the request." }
            }
        },
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"]
    })
}

fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": { "type": "string" },
                "status": { "type": "string" },
                "reason": { "type": "string" },
                "message": { "type": "string" },
                "lastTransitionTime": { "type": "string", "format": "date-time" }
            }
        },
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}

fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn object_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

impl From<&IdentitySetSpec> for StatefulSetSpec {
    fn from(s: &IdentitySetSpec) -> Self {
        StatefulSetSpec {
            min_ready_seconds: s.min_ready_seconds,
            ordinals: s.ordinals.clone(),
            persistent_volume_claim_retention_policy: s.persistent_volume_claim_retention_policy.clone(),
            pod_management_policy: s.pod_management_policy.clone(),
            replicas: s.replicas,
            revision_history_limit: s.revision_history_limit,
            selector: s.selector.clone(),
            service_name: s.service_name.clone(),
            template: s.template.clone(),
            update_strategy: s.update_strategy.as_ref().map(|u| StatefulSetUpdateStrategy {
                type_: u.type_.clone(),
                rolling_update: u.rolling_update.as_ref().map(|r| RollingUpdateStatefulSetStrategy {
                    partition: r.partition,
                    max_unavailable: r.max_unavailable.clone(),
                }),
            }),
            volume_claim_templates: s.volume_claim_templates.clone(),
        }
    }
}

impl From<&IdentitySetStatus> for StatefulSetStatus {
    fn from(s: &IdentitySetStatus) -> Self {
        StatefulSetStatus {
            observed_generation: s.observed_generation,
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            current_replicas: s.current_replicas,
            updated_replicas: s.updated_replicas,
            available_replicas: s.available_replicas,
            current_revision: s.current_revision.clone(),
            update_revision: s.update_revision.clone(),
            collision_count: s.collision_count,
            conditions: s.conditions.clone(),
        }
    }
}

/// The CustomResourceDefinition of [`IdentitySet`].
pub fn crd() -> CustomResourceDefinition {
    IdentitySet::crd()
}

/// The CRD as YAML, as `roster crd` prints it and `deploy/crd/identitysets.roster.dev.yaml` holds it.
/// (Should YAML rendering ever fail, the JSON form is returned: YAML is a superset of JSON.)
pub fn crd_yaml() -> String {
    let crd = crd();
    serde_saphyr::to_string(&crd).unwrap_or_else(|_| serde_json::to_string_pretty(&crd).unwrap_or_default())
}

/// Create the CRD unless it exists (an existing definition is left as it is).
pub async fn install(client: &kube::Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &crd()).await {
        Ok(_) => Ok(()),
        Err(e) if kube_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
