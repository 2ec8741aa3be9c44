//! reconcile(set, ctx) → Action, and error_policy: read the set fresh and its pods from the cache,
//! resolve revisions, run one pass of the algorithm, write the status, trim the history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::context::Context;
use super::error::{Error, kube_conflict, kube_invalid, kube_not_found};
use super::pods;
use super::resize;
use super::revision;
use super::set::{SetKind, SetView, selector_matches};
use super::status;
use super::sync::{self, Targets};

/// How often a quiet set is looked at again.
const RESYNC: Duration = Duration::from_secs(60);

/// How often a set whose claim is growing looks again (claim events do not trigger passes).
const CLAIM_POLL: Duration = Duration::from_secs(2);

/// Upstream's "recheck with an uncached quorum read" before adopting: the set read from the API after
/// the pods were read from the cache is still this set (same UID) and not being deleted.
async fn can_adopt<K: SetKind>(ctx: &Context, set: &SetView) -> Result<(), String> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &set.namespace);
    match api.get_opt(&set.name).await {
        Ok(Some(fresh)) if fresh.meta().uid.as_deref() != Some(set.uid.as_str()) => {
            Err(format!("{} {} was replaced (uid {:?}, wanted {})", set.kind, set.name, fresh.meta().uid, set.uid))
        }
        Ok(Some(fresh)) if fresh.meta().deletion_timestamp.is_some() => {
            Err(format!("{} {} is being deleted", set.kind, set.name))
        }
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{} {} is gone", set.kind, set.name)),
        Err(e) => Err(e.to_string()),
    }
}

/// A merge patch that replaces the pod's owner references, conditional on its UID (a pod recreated
/// under the name is not touched) and its resourceVersion (the references are those it has now).
fn owner_patch(pod: &Pod, refs: &[OwnerReference]) -> serde_json::Value {
    json!({ "metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    } })
}

/// The set's pods, as upstream's ControllerRefManager claims them: pods it controls that still match
/// (its selector, and named like its ordinals) are its; those that no longer match are released
/// (orphaned); orphans that match are adopted — after an uncached read shows the set alive, with a patch
/// conditional on the pod's UID and resourceVersion. Pods another controller owns are never taken; for
/// IdentitySets, one holding an ordinal's name is reported in `conflicts`. Read from the pod cache, with
/// this controller's unobserved writes laid over it.
async fn pods_of<K: SetKind>(ctx: &Context, set: &SetView, conflicts: &mut Vec<String>) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let member = |p: &Pod| set.ordinal_of(pods::name(p)).is_some();
    let matches = |p: &Pod| {
        member(p) && selector_matches(&set.spec.selector, p.metadata.labels.as_ref().unwrap_or(&Default::default()))
    };
    let candidates = ctx.caches.pods.view(&set.namespace, |p| member(p) || pods::controlled_by(p, &set.uid));
    let mut adopt_checked: Option<Result<(), String>> = None;
    let mut out = Vec::with_capacity(candidates.len());
    for pod in candidates {
        let refs = pod.metadata.owner_references.clone().unwrap_or_default();
        match refs.iter().find(|r| r.controller == Some(true)) {
            Some(r) if r.uid == set.uid => {
                if matches(&pod) {
                    out.push(Arc::unwrap_or_clone(pod));
                    continue;
                }
                // Ours, but no longer selected: release it, as upstream's ReleasePod.
                let rest: Vec<OwnerReference> = refs.iter().filter(|r| r.uid != set.uid).cloned().collect();
                ctx.guard_write()?;
                match api
                    .patch(pods::name(&pod), &PatchParams::default(), &Patch::Merge(&owner_patch(&pod, &rest)))
                    .await
                {
                    Ok(released) => ctx.caches.pods.updated(&released),
                    Err(e) if kube_not_found(&e) || kube_conflict(&e) || kube_invalid(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(r) => {
                if set.kind != "StatefulSet" && set.ordinal_of(pods::name(&pod)).is_some_and(|o| set.in_range(o)) {
                    conflicts.push(format!(
                        "pod {} belongs to {} {} (uid {})",
                        pods::name(&pod),
                        r.kind,
                        r.name,
                        r.uid
                    ));
                }
            }
            None => {
                if !matches(&pod) || pods::is_terminating(&pod) {
                    continue;
                }
                if adopt_checked.is_none() {
                    adopt_checked = Some(can_adopt::<K>(ctx, set).await);
                }
                if let Some(Err(why)) = &adopt_checked {
                    return Err(Error::InvalidSet {
                        name: set.name.clone(),
                        reason: format!("cannot adopt pods: {why}"),
                    });
                }
                let mut with_ours = refs.clone();
                with_ours.push(set.controller_ref());
                ctx.guard_write()?;
                match api
                    .patch(pods::name(&pod), &PatchParams::default(), &Patch::Merge(&owner_patch(&pod, &with_ours)))
                    .await
                {
                    Ok(adopted) => {
                        ctx.caches.pods.updated(&adopted);
                        out.push(adopted);
                    }
                    // Gone, recreated, or changed since the cache saw it: the next pass decides again.
                    Err(e) if kube_not_found(&e) || kube_conflict(&e) || kube_invalid(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(out)
}

/// Report what keeps the pass from doing its job: the set's conditions (written with the status), and a
/// Warning Event when a condition appears or its message changes.
async fn report(ctx: &Context, set: &SetView, problems: &[status::Problem]) {
    for p in problems {
        let known = set
            .status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == p.type_ && c.status == "True" && c.message.as_deref() == Some(p.message.as_str()));
        if !known {
            ctx.event(set, p.warning, p.reason, p.message.clone(), None).await;
        }
    }
}

/// The conditions of IdentitySets' opt-in rollout features: `RolloutPaused` while paused, and
/// `RolloutRecovery` from the pass that replaced stuck pods until the update revision changes again.
fn beyond_statefulsets(
    set: &SetView,
    st: &k8s_openapi::api::apps::v1::StatefulSetStatus,
    recovered: &[String],
    update_revision: &str,
) -> Vec<status::Problem> {
    let mut out = Vec::new();
    if set.extensions.paused {
        out.push(status::Problem::paused(format!(
            "rollout paused: {} of {} pods at update revision {update_revision}",
            st.updated_replicas.unwrap_or(0),
            st.replicas
        )));
    }
    let kept = set.status.update_revision.as_deref() == Some(update_revision);
    let earlier = set
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == status::ROLLOUT_RECOVERY && c.status == "True")
        .and_then(|c| c.message.clone())
        .filter(|_| kept);
    if !recovered.is_empty() {
        let now = format!(
            "replaced {} (not Ready) at update revision {update_revision} without waiting",
            recovered.join(", ")
        );
        out.push(status::Problem::recovered(match earlier {
            Some(e) => format!("{e}; {now}"),
            None => now,
        }));
    } else if let Some(e) = earlier {
        out.push(status::Problem::recovered(e));
    }
    out
}

/// Reconcile one set of kind `K`.
pub async fn reconcile<K: SetKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    // Never act on a cache that has not loaded its first list: it would look like a set without pods.
    if !ctx.caches.ready().await {
        return Err(Error::CachesStopped);
    }
    // Read the set fresh: the controller's cache may lag our own status writes and the user's edits.
    let ns = kube::ResourceExt::namespace(obj.as_ref()).ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(fresh) = api.get_opt(&kube::ResourceExt::name_any(obj.as_ref())).await? else {
        return Ok(Action::await_change());
    };
    let set = SetView::of(&fresh)?;
    if set.deleting {
        // The garbage collector takes the pods (and the claims the retention policy gave the set).
        return Ok(Action::await_change());
    }
    if let Some(reason) = set.spec_problem() {
        // Never guessed at (a malformed maxUnavailable is not 100 %): said, and nothing else done.
        let problems = [status::Problem::invalid_spec(reason.clone())];
        report(&ctx, &set, &problems).await;
        status::write_conditions::<K>(&ctx, &set, &problems).await?;
        return Err(Error::InvalidSet { name: set.name.clone(), reason });
    }
    let template_labels = set.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    if !selector_matches(&set.spec.selector, &template_labels) {
        let reason = "selector does not match template labels".to_owned();
        ctx.event(&set, true, "FailedCreate", reason.clone(), None).await;
        return Err(Error::InvalidSet { name: set.name.clone(), reason });
    }

    let now = Timestamp::now();
    let mut conflicts = Vec::new();
    let owned = pods_of::<K>(&ctx, &set, &mut conflicts).await?;
    let revs = revision::list(&ctx, &set).await?;
    let revs = revision::resolve(&ctx, &set, revs).await?;
    let current_template = revision::template_of(&revs.current)?;
    let current_name = revs.current.metadata.name.clone().unwrap_or_default();
    let update_name = revs.update.metadata.name.clone().unwrap_or_default();
    let targets = Targets {
        current_revision: &current_name,
        current_template: &current_template,
        update_revision: &update_name,
        update_template: &set.spec.template,
    };
    let outcome = sync::run(&ctx, &set, owned.clone(), &targets, now).await?;
    conflicts.extend(outcome.conflicts.iter().cloned());

    let pods_now = if outcome.wrote { pods_of::<K>(&ctx, &set, &mut Vec::new()).await? } else { owned };
    let mut st = status::compute(&set, &pods_now, &current_name, &update_name, revs.collision_count, Timestamp::now());
    conflicts.sort();
    conflicts.dedup();
    let mut problems: Vec<status::Problem> =
        if conflicts.is_empty() { Vec::new() } else { vec![status::Problem::ownership(conflicts.join("; "))] };
    problems.extend(beyond_statefulsets(&set, &st, &outcome.recovered, &update_name));
    let claims = resize::run(&ctx, &set, &set.wanted_ordinals().unwrap_or_default()).await?;
    problems.extend(claims.problems);
    report(&ctx, &set, &problems).await;
    status::set_conditions(&mut st, &problems, Timestamp::now());
    status::write::<K>(&ctx, &set, &st, claims.volume_claims).await?;

    let mut live: BTreeSet<String> = pods_now.iter().map(|p| pods::revision(p).to_owned()).collect();
    if let Some(c) = st.current_revision.clone() {
        live.insert(c);
    }
    revision::truncate(&ctx, &set, &revs, &live).await?;

    if claims.waiting {
        return Ok(Action::requeue(CLAIM_POLL));
    }
    Ok(match outcome.requeue_after {
        Some(s) => Action::requeue(Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1))),
        None => Action::requeue(RESYNC),
    })
}

/// Retry soon: conflicts and stale reads clear up at once, other failures get a short pause.
pub fn error_policy<K: SetKind>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::NotLeader => Action::requeue(Duration::from_secs(2)),
        e if e.is_conflict() => Action::requeue(Duration::from_millis(200)),
        Error::InvalidSet { .. } => Action::requeue(Duration::from_secs(30)),
        e => {
            tracing::warn!(set = %kube::ResourceExt::name_any(obj.as_ref()), error = %e, "reconciling a set failed");
            Action::requeue(Duration::from_secs(2))
        }
    }
}
