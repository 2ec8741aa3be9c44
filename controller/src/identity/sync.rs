//! One pass of upstream's StatefulSet algorithm over a set's pods (updateStatefulSet): replace failed
//! pods, create missing ordinals (claims first), scale down from the highest ordinal, then roll pods to
//! the update revision in reverse ordinal order — one at a time under `OrderedReady`, in bursts under
//! `Parallel`, honouring `partition` and `maxUnavailable`, never under `OnDelete`.
//!
//! IdentitySets' opt-in features (all off for StatefulSets, so theirs is upstream's pass): reserved
//! ordinals are never created (their pods are condemned like scaled-away ones), `paused` stops the
//! replacement of existing pods, and `rolloutRecovery: Replace` replaces a superseded revision's unready
//! pods before the ordered walk would stop at them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use futures::StreamExt;

use super::claims::{self, ClaimIndex, Claims};
use super::context::Context;
use super::error::{Error, kube_conflict, kube_not_found};
use super::pods;
use super::set::SetView;

/// How many pod writes a Parallel pass keeps in flight.
const BURST: usize = 32;

/// What a pass wants next.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Seconds until a ready pod becomes available (minReadySeconds), if one is waiting.
    pub requeue_after: Option<i64>,
    /// Whether anything was written.
    pub wrote: bool,
    /// Children that belong to something else (IdentitySets), for the set's condition.
    pub conflicts: Vec<String>,
    /// Pods `rolloutRecovery: Replace` replaced in this pass (`web-2 (revision web-abc)`).
    pub recovered: Vec<String>,
}

/// The templates and revision names a pass works with.
pub struct Targets<'a> {
    /// The current revision's name.
    pub current_revision: &'a str,
    /// Its template.
    pub current_template: &'a PodTemplateSpec,
    /// The update revision's name.
    pub update_revision: &'a str,
    /// Its template.
    pub update_template: &'a PodTemplateSpec,
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

async fn create_pod(ctx: &Context, set: &SetView, pod: &Pod) -> Result<Option<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let name = pods::name(pod).to_owned();
    ctx.guard_write()?;
    match api.create(&PostParams::default(), pod).await {
        Ok(created) => {
            ctx.caches.pods.created(&created);
            let note = format!("Create Pod {name} in {} {} successful", set.kind, set.name);
            ctx.event(set, false, "SuccessfulCreate", note, Some(pod_ref(&created))).await;
            Ok(Some(created))
        }
        // A pod of that name is still there (the cache lags someone else's write): the next pass sees it.
        Err(e) if kube_conflict(&e) => Ok(None),
        Err(e) => {
            let note = format!("Create Pod {name} in {} {} failed error: {e}", set.kind, set.name);
            ctx.event(set, true, "FailedCreate", note, None).await;
            Err(e.into())
        }
    }
}

async fn delete_pod(ctx: &Context, set: &SetView, pod: &Pod) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let name = pods::name(pod).to_owned();
    ctx.guard_write()?;
    // Preconditioned on the UID, so a pod recreated meanwhile is never deleted by mistake.
    let dp = DeleteParams {
        preconditions: pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(res) => {
            // Until the watch shows it, passes see the pod terminating (or gone), never still available.
            ctx.caches.pods.deleted(pod, res.left());
            let note = format!("Delete Pod {name} in {} {} successful", set.kind, set.name);
            ctx.event(set, false, "SuccessfulDelete", note, Some(pod_ref(pod))).await;
            Ok(())
        }
        Err(e) if kube_not_found(&e) => {
            ctx.caches.pods.deleted(pod, None);
            Ok(())
        }
        // Another pod under the name (the UID precondition failed): nothing to delete.
        Err(e) if kube_conflict(&e) => Ok(()),
        Err(e) => {
            let note = format!("Delete Pod {name} in {} {} failed error: {e}", set.kind, set.name);
            ctx.event(set, true, "FailedDelete", note, None).await;
            Err(e.into())
        }
    }
}

async fn fix_identity(ctx: &Context, set: &SetView, pod: &Pod, ordinal: i32) -> Result<bool, Error> {
    let fixes = pods::identity_label_fixes(set, pod, ordinal);
    if fixes.is_empty() {
        return Ok(false);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace);
    ctx.guard_write()?;
    let patch = json!({ "metadata": { "labels": fixes } });
    match api.patch(pods::name(pod), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(patched) => {
            ctx.caches.pods.updated(&patched);
            let note = format!("Update Pod {} in {} {} successful", pods::name(pod), set.kind, set.name);
            ctx.event(set, false, "SuccessfulUpdate", note, Some(pod_ref(pod))).await;
            Ok(true)
        }
        Err(e) if kube_not_found(&e) || kube_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Create the ordinal's claims, then its pod at the revision its position calls for: the current
/// revision below the partition (RollingUpdate), else the update revision. `true` when a pod was created.
async fn create_ordinal(
    ctx: &Context,
    set: &SetView,
    t: &Targets<'_>,
    ordinal: i32,
    index: &ClaimIndex,
    out: &mut Outcome,
) -> Result<bool, Error> {
    match claims::ensure(ctx, set, ordinal, index, true).await? {
        Claims::Ready => {}
        Claims::Stale(why) => {
            tracing::debug!(set = %set.name, ordinal, %why, "waiting for a claim");
            out.requeue_after = Some(1);
            return Ok(false);
        }
        Claims::Conflict(why) => {
            out.conflicts.push(why);
            return Ok(false);
        }
    }
    let below_partition = !set.on_delete() && ordinal.saturating_sub(set.start_ordinal()) < set.partition();
    let pod = if below_partition {
        pods::new_pod(set, t.current_template, ordinal, t.current_revision)
    } else {
        pods::new_pod(set, t.update_template, ordinal, t.update_revision)
    };
    let Some(created) = create_pod(ctx, set, &pod).await? else { return Ok(false) };
    // As upstream after CreateStatefulPod: the claims' owners as the policy says, now the pod has a UID.
    out.conflicts.extend(claims::enforce_retention(ctx, set, &created, ordinal, index, true).await?);
    Ok(true)
}

/// `rolloutRecovery: Replace` (IdentitySets): the pods of a superseded revision — neither the current
/// nor the update revision, so the template changed again while they were rolling out — that are not
/// Ready, at or above the partition, are deleted, highest ordinal first, while fewer than
/// `maxUnavailable` pods are missing or terminating; the next pass creates them at the update revision.
/// Upstream waits for them for ever (kubernetes/kubernetes#67250). `true` when one was deleted.
async fn replace_stuck(
    ctx: &Context,
    set: &SetView,
    replicas: &[(i32, Option<Pod>)],
    t: &Targets<'_>,
    out: &mut Outcome,
) -> Result<bool, Error> {
    let (start, partition) = (set.start_ordinal(), set.partition());
    let stuck: Vec<&Pod> = replicas
        .iter()
        .rev()
        .filter(|(o, _)| o.saturating_sub(start) >= partition)
        .filter_map(|(_, p)| p.as_ref())
        .filter(|p| {
            let rev = pods::revision(p);
            !pods::is_terminating(p)
                && !pods::is_running_and_ready(p)
                && rev != t.current_revision
                && rev != t.update_revision
        })
        .collect();
    if stuck.is_empty() {
        return Ok(false);
    }
    let max_unavailable =
        set.max_unavailable().map_err(|reason| Error::InvalidSet { name: set.name.clone(), reason })?;
    let in_flight = replicas.iter().filter(|(_, p)| p.as_ref().is_none_or(pods::is_terminating)).count();
    let budget = usize::try_from(max_unavailable).unwrap_or(1).saturating_sub(in_flight);
    let mut replaced = false;
    for pod in stuck.into_iter().take(budget) {
        let (name, rev) = (pods::name(pod).to_owned(), pods::revision(pod).to_owned());
        delete_pod(ctx, set, pod).await?;
        let note = format!(
            "Replace Pod {name} (revision {rev}, not Ready) at update revision {} without waiting for it",
            t.update_revision
        );
        ctx.event(set, false, "RecoverRollout", note, Some(pod_ref(pod))).await;
        out.recovered.push(format!("{name} (revision {rev})"));
        out.wrote = true;
        replaced = true;
    }
    Ok(replaced)
}

fn invalid(set: &SetView) -> Error {
    Error::InvalidSet { name: set.name.clone(), reason: set.spec_problem().unwrap_or_default() }
}

/// Run one pass. `owned` are the set's pods (any ordinal).
pub async fn run(
    ctx: &Context,
    set: &SetView,
    owned: Vec<Pod>,
    t: &Targets<'_>,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let mut out = Outcome::default();
    let monotonic = set.monotonic();
    let min_ready = set.min_ready_seconds();
    let start = set.start_ordinal();
    let wanted = set.wanted_ordinals().ok_or_else(|| invalid(set))?;
    let partition = set.partition();

    let mut by_ordinal: BTreeMap<i32, Pod> = BTreeMap::new();
    for p in owned {
        if let Some(o) = set.ordinal_of(pods::name(&p)) {
            by_ordinal.insert(o, p);
        }
    }
    let replicas: Vec<(i32, Option<Pod>)> = wanted.into_iter().map(|o| (o, by_ordinal.remove(&o))).collect();
    // Condemned: outside the range (or reserved), highest ordinal first.
    let condemned: Vec<(i32, Pod)> = by_ordinal.into_iter().rev().collect();

    let first_unhealthy: Option<String> = replicas
        .iter()
        .find(|(_, p)| p.as_ref().is_none_or(|p| !pods::is_healthy(p)))
        .map(|(o, _)| set.pod_name(*o))
        .or_else(|| condemned.iter().find(|(_, p)| !pods::is_healthy(p)).map(|(_, p)| pods::name(p).to_owned()));

    let index = ClaimIndex::load(ctx, set);
    if set.extensions.replace_stuck_pods
        && !set.on_delete()
        && !set.extensions.paused
        && replace_stuck(ctx, set, &replicas, t, &mut out).await?
    {
        // The next pass (our own deletes trigger it) recreates them at the update revision.
        return Ok(out);
    }
    // Parallel: the pods to create and delete are gathered and written concurrently (upstream's
    // slowStartBatch); OrderedReady returns at the first write or the first pod not yet ready.
    let mut to_create: Vec<i32> = Vec::new();
    let mut to_delete: Vec<Pod> = Vec::new();
    for (ordinal, slot) in &replicas {
        let ordinal = *ordinal;
        match slot {
            Some(pod) if pods::is_failed(pod) || pods::is_succeeded(pod) => {
                // Failed-pod replacement: delete it; a later pass creates it afresh.
                if !pods::is_terminating(pod) {
                    if monotonic {
                        delete_pod(ctx, set, pod).await?;
                        out.wrote = true;
                    } else {
                        to_delete.push(pod.clone());
                    }
                }
                if monotonic {
                    return Ok(out);
                }
            }
            None if monotonic => {
                out.wrote |= create_ordinal(ctx, set, t, ordinal, &index, &mut out).await?;
                return Ok(out);
            }
            None => to_create.push(ordinal),
            Some(pod) => {
                if pods::is_pending(pod) {
                    // Recreate claims deleted under a pending pod (upstream's createMissingPersistentVolumeClaims).
                    if let Claims::Conflict(why) = claims::ensure(ctx, set, ordinal, &index, false).await? {
                        out.conflicts.push(why);
                    }
                    out.conflicts.extend(claims::enforce_retention(ctx, set, pod, ordinal, &index, true).await?);
                }
                if monotonic {
                    if pods::is_terminating(pod) || !pods::is_running_and_ready(pod) {
                        return Ok(out);
                    }
                    if !pods::is_running_and_available(pod, min_ready, now) {
                        out.requeue_after = pods::seconds_to_available(pod, min_ready, now);
                        return Ok(out);
                    }
                } else if let Some(s) = pods::seconds_to_available(pod, min_ready, now) {
                    out.requeue_after = Some(out.requeue_after.map_or(s, |r| r.min(s)));
                }
                if !pods::is_terminating(pod) {
                    out.wrote |= fix_identity(ctx, set, pod, ordinal).await?;
                    out.conflicts.extend(claims::enforce_retention(ctx, set, pod, ordinal, &index, false).await?);
                }
            }
        }
    }
    if !to_delete.is_empty() || !to_create.is_empty() {
        out.wrote = true;
        let deletes = futures::stream::iter(to_delete)
            .map(|p: Pod| async move { delete_pod(ctx, set, &p).await })
            .buffer_unordered(BURST);
        for r in deletes.collect::<Vec<_>>().await {
            r?;
        }
        let creates = futures::stream::iter(to_create)
            .map(|o: i32| {
                let index = &index;
                async move {
                    let mut o_out = Outcome::default();
                    let r = create_ordinal(ctx, set, t, o, index, &mut o_out).await;
                    (r, o_out)
                }
            })
            .buffer_unordered(BURST);
        for (r, o_out) in creates.collect::<Vec<_>>().await {
            r?;
            if o_out.requeue_after.is_some() {
                out.requeue_after = o_out.requeue_after;
            }
            out.conflicts.extend(o_out.conflicts);
        }
    }

    // Claims of condemned pods get their retention owners before the pods go.
    for (ordinal, pod) in &condemned {
        if !pods::is_terminating(pod) {
            out.conflicts.extend(claims::enforce_retention(ctx, set, pod, *ordinal, &index, false).await?);
        }
    }
    let mut condemned_deletes: Vec<Pod> = Vec::new();
    for (_, pod) in &condemned {
        if pods::is_terminating(pod) {
            if monotonic {
                return Ok(out);
            }
            continue;
        }
        let is_first_unhealthy = first_unhealthy.as_deref() == Some(pods::name(pod));
        if monotonic && !is_first_unhealthy && !pods::is_running_and_available(pod, min_ready, now) {
            return Ok(out);
        }
        if monotonic {
            delete_pod(ctx, set, pod).await?;
            out.wrote = true;
            return Ok(out);
        }
        condemned_deletes.push(pod.clone());
    }
    if !condemned_deletes.is_empty() {
        out.wrote = true;
        let deletes = futures::stream::iter(condemned_deletes)
            .map(|p: Pod| async move { delete_pod(ctx, set, &p).await })
            .buffer_unordered(BURST);
        for r in deletes.collect::<Vec<_>>().await {
            r?;
        }
    }

    if set.on_delete() || set.extensions.paused {
        // Paused (IdentitySets): the rollout holds; the status says so.
        return Ok(out);
    }

    // Rolling update: highest ordinal first, at most maxUnavailable pods unavailable at once.
    let max_unavailable =
        set.max_unavailable().map_err(|reason| Error::InvalidSet { name: set.name.clone(), reason })?;
    let unavailable = i32::try_from(
        replicas.iter().filter(|(_, p)| p.as_ref().is_none_or(|p| pods::is_unavailable(p, min_ready, now))).count(),
    )
    .unwrap_or(i32::MAX);
    if unavailable >= max_unavailable {
        return Ok(out);
    }
    let mut budget = max_unavailable - unavailable;
    for (ordinal, slot) in replicas.iter().rev() {
        if budget == 0 || ordinal.saturating_sub(start) < partition {
            break;
        }
        let Some(pod) = slot else { continue };
        if pods::revision(pod) != t.update_revision && !pods::is_terminating(pod) {
            delete_pod(ctx, set, pod).await?;
            out.wrote = true;
            budget -= 1;
        }
    }
    Ok(out)
}
