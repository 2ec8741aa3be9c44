//! reconcile(set, ctx) → Action, and error_policy: read the set fresh and its pods from the cache,
//! resolve revisions, run one pass of the algorithm, write the status, trim the history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::context::Context;
use super::error::{Error, kube_conflict, kube_not_found};
use super::pods;
use super::revision;
use super::set::{SetKind, SetView, selector_matches};
use super::status;
use super::sync::{self, Targets};

/// How often a quiet set is looked at again.
const RESYNC: Duration = Duration::from_secs(60);

/// The set's pods: those it controls, plus orphans named like its ordinals that match its selector,
/// which it adopts (upstream's ClaimPods). Read from the pod cache, with this controller's unobserved
/// writes laid over it.
async fn pods_of(ctx: &Context, set: &SetView) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace);
    let candidates = ctx.caches.pods.view(&set.namespace, |p| {
        set.ordinal_of(pods::name(p)).is_some()
            && selector_matches(&set.spec.selector, p.metadata.labels.as_ref().unwrap_or(&Default::default()))
    });
    let mut out = Vec::with_capacity(candidates.len());
    for pod in candidates {
        if pods::controlled_by(&pod, &set.uid) {
            out.push(Arc::unwrap_or_clone(pod));
        } else if !pods::has_controller(&pod) && !pods::is_terminating(&pod) {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(set.controller_ref());
            ctx.guard_write()?;
            let patch = json!({ "metadata": { "ownerReferences": refs } });
            match api.patch(pods::name(&pod), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(adopted) => {
                    ctx.caches.pods.updated(&adopted);
                    out.push(adopted);
                }
                Err(e) if kube_not_found(&e) || kube_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
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
    let template_labels = set.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    if !selector_matches(&set.spec.selector, &template_labels) {
        let reason = "selector does not match template labels".to_owned();
        ctx.event(&set, true, "FailedCreate", reason.clone(), None).await;
        return Err(Error::InvalidSet { name: set.name.clone(), reason });
    }

    let now = Timestamp::now();
    let owned = pods_of(&ctx, &set).await?;
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

    let pods_now = if outcome.wrote { pods_of(&ctx, &set).await? } else { owned };
    let st = status::compute(&set, &pods_now, &current_name, &update_name, revs.collision_count, Timestamp::now());
    status::write::<K>(&ctx, &set, &st).await?;

    let mut live: BTreeSet<String> = pods_now.iter().map(|p| pods::revision(p).to_owned()).collect();
    if let Some(c) = st.current_revision.clone() {
        live.insert(c);
    }
    revision::truncate(&ctx, &set, &revs, &live).await?;

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
