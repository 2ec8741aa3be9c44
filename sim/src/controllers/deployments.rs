//! The Deployment controller: a Deployment owns one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`, the hash also a label of the ReplicaSet's selector and pods), rolls
//! from the old ones to the new one (RollingUpdate within maxSurge/maxUnavailable, or Recreate), numbers
//! them with `deployment.kubernetes.io/revision`, keeps `revisionHistoryLimit` scaled-down old ones, only
//! scales while paused, and reports replica counts and the Available/Progressing conditions.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::record_event;
use super::replicasets::{controller_uid, owner_ref, set_controller};
use crate::bootstrap::builtin;
use crate::meta::{self, path, path_str};
use crate::resources::ResourceType;
use crate::selector::LabelSelector;
use crate::store::{DeleteOptions, Store, Subresource};

/// Annotations the controller writes (and does not copy from the Deployment to its ReplicaSets).
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The label that tells one template's ReplicaSet and pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
const COMPONENT: &str = "deployment-controller";

/// JSON with sorted keys, so equal templates hash alike whatever order their fields arrived in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The pod-template-hash: FNV-1a of the template (and the collision count), its decimal digits spelled
/// in the vowel-free alphabet Kubernetes uses for generated names.
pub fn template_hash(template: &Value, collisions: i64) -> String {
    let mut text = String::new();
    canonical(template, &mut text);
    if collisions > 0 {
        text.push_str(&collisions.to_string());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()])).collect()
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A template as compared with another: without the hash label, and with null fields taken as absent
/// (typed clients send `creationTimestamp: null`; to the real controller that is the zero value either way).
fn without_hash(template: Option<&Value>) -> Value {
    let mut t = template.cloned().unwrap_or(json!({}));
    if let Some(Value::Object(labels)) = t.pointer_mut("/metadata/labels") {
        labels.remove(HASH_LABEL);
    }
    drop_nulls(&mut t);
    t
}

fn revision(rs: &Value) -> i64 {
    path(rs, "metadata.annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn int(o: &Value, p: &str) -> i64 {
    path(o, p).and_then(Value::as_i64).unwrap_or(0)
}

fn spec_replicas(o: &Value) -> i64 {
    path(o, "spec.replicas").and_then(Value::as_i64).unwrap_or(1)
}

/// An int-or-percent against a total (percentages round up for maxSurge, down for maxUnavailable).
fn scaled_value(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if round_up => (p * total + 99) / 100,
            Some(p) => p * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// maxSurge and maxUnavailable as pod counts (Recreate: none of either).
fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    if path_str(d, "spec.strategy.type") == "Recreate" {
        return (0, 0);
    }
    let want = spec_replicas(d);
    let ru = path(d, "spec.strategy.rollingUpdate");
    let surge = scaled_value(ru.and_then(|r| r.get("maxSurge")).or(Some(&json!("25%"))), want, true);
    let unavailable = scaled_value(ru.and_then(|r| r.get("maxUnavailable")).or(Some(&json!("25%"))), want, false);
    // both zero would never progress: the API server rejects it, and the controller allows one
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(want)) }
}

/// The Deployment's annotations that its new ReplicaSet carries.
fn copied_annotations(d: &Value) -> Map<String, Value> {
    let mut out = path(d, "metadata.annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    for k in [REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS, LAST_APPLIED] {
        out.remove(k);
    }
    out
}

struct Ctx<'a> {
    store: &'a Store,
    rs_rt: ResourceType,
    d: &'a Value,
}

impl Ctx<'_> {
    /// Set a ReplicaSet's replicas (and the desired/max annotations), recording the scaling event.
    fn scale(&self, rs: &mut Arc<Value>, to: i64) {
        let from = spec_replicas(rs);
        let want = spec_replicas(self.d);
        let (surge, _) = surge_and_unavailable(self.d);
        let updated = self.store.mutate(&self.rs_rt, meta::namespace(rs), meta::name(rs), Subresource::Main, |old| {
            let mut o = old.clone();
            o["spec"]["replicas"] = json!(to);
            let m = meta::metadata_mut(&mut o);
            m.remove("resourceVersion");
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            ann[DESIRED] = json!(want.to_string());
            ann[MAX_REPLICAS] = json!((want + surge).to_string());
            Ok(o)
        });
        if let Ok(u) = updated {
            *rs = u;
            if from != to {
                let dir = if to > from { "up" } else { "down" };
                record_event(
                    self.store,
                    self.d,
                    "Deployment",
                    COMPONENT,
                    "ScalingReplicaSet",
                    &format!("Scaled {dir} replica set {} from {from} to {to}", meta::name(rs)),
                );
            }
        }
    }
}

/// One pass over every Deployment.
pub fn reconcile(store: &Store) {
    let d_rt = builtin("apps", "deployments");
    let (deployments, _) = store.list(&d_rt, None);
    if deployments.is_empty() {
        return;
    }
    let rs_rt = builtin("apps", "replicasets");
    let (sets, _) = store.list(&rs_rt, None);
    for d in deployments.iter().filter(|d| !meta::is_terminating(d)) {
        let ctx = Ctx { store, rs_rt: rs_rt.clone(), d };
        sync(&ctx, &d_rt, &sets);
    }
}

fn sync(ctx: &Ctx<'_>, d_rt: &ResourceType, sets: &[Arc<Value>]) {
    let (store, d) = (ctx.store, ctx.d);
    let ns = meta::namespace(d);
    let name = meta::name(d);
    let uid = meta::meta_str(d, "uid");
    let Some(selector) = path(d, "spec.selector").and_then(|s| LabelSelector::from_json(s).ok()) else { return };
    if selector.is_empty() {
        return;
    }
    let mut owner = d.clone();
    owner["kind"] = json!("Deployment");
    // adopt matching orphans, release owned ReplicaSets the selector no longer matches
    let mut owned: Vec<Arc<Value>> = Vec::new();
    for rs in sets.iter().filter(|r| meta::namespace(r) == ns) {
        let matches = selector.matches_object(rs);
        match controller_uid(rs) {
            Some(u) if u == uid && (matches || meta::is_terminating(rs)) => owned.push(rs.clone()),
            Some(u) if u == uid => {
                let _ = store
                    .mutate(&ctx.rs_rt, ns, meta::name(rs), Subresource::Main, |old| Ok(set_controller(old, None)));
            }
            None if matches && !meta::is_terminating(rs) => {
                if let Ok(r) = store.mutate(&ctx.rs_rt, ns, meta::name(rs), Subresource::Main, |old| {
                    Ok(set_controller(old, Some(&owner)))
                }) {
                    owned.push(r);
                }
            }
            _ => {}
        }
    }
    owned.retain(|r| !meta::is_terminating(r));
    owned.sort_by_key(|r| (meta::parse_rfc3339(meta::meta_str(r, "creationTimestamp")).unwrap_or(0), revision(r)));
    let plain = without_hash(path(d, "spec.template"));
    let new_idx = owned.iter().position(|r| without_hash(path(r, "spec.template")) == plain);
    let mut new_rs = new_idx.map(|i| owned.remove(i));
    let mut old = owned;
    let max_old_revision = old.iter().map(|r| revision(r)).max().unwrap_or(0);
    let paused = path(d, "spec.paused").and_then(Value::as_bool).unwrap_or(false);
    let recreate = path_str(d, "spec.strategy.type") == "Recreate";
    let want = spec_replicas(d);
    let (surge, max_unavailable) = surge_and_unavailable(d);
    let mut created_new = false;
    let mut progressed = false;
    let mut collision = false;

    if paused {
        // a paused Deployment only scales: the difference goes to its newest active ReplicaSet
        let total: i64 = new_rs.iter().chain(old.iter()).map(|r| spec_replicas(r)).sum();
        let target = match new_rs.as_mut() {
            Some(r) => Some(r),
            None => old.iter_mut().filter(|r| spec_replicas(r) > 0).max_by_key(|r| revision(r)),
        };
        if let Some(r) = target
            && total != want
        {
            let to = (spec_replicas(r) + want - total).max(0);
            ctx.scale(r, to);
        }
    } else {
        if recreate {
            for r in old.iter_mut().filter(|r| spec_replicas(r) > 0) {
                ctx.scale(r, 0);
                progressed = true;
            }
        }
        let may_create = !recreate || (!progressed && old_pods_gone(store, ns, &old));
        if new_rs.is_none() && may_create {
            let initial = if recreate {
                want
            } else {
                let total: i64 = old.iter().map(|r| spec_replicas(r)).sum();
                (want + surge - total).clamp(0, want)
            };
            match create_new(ctx, &owner, &plain, max_old_revision + 1, initial) {
                Ok(r) => {
                    new_rs = Some(r);
                    created_new = true;
                }
                Err(c) => collision = c,
            }
        }
        if let Some(r) = new_rs.as_mut() {
            sync_revision(ctx, r, max_old_revision);
        }
        if recreate {
            if let Some(r) = new_rs.as_mut()
                && spec_replicas(r) != want
                && old_pods_gone(store, ns, &old)
            {
                ctx.scale(r, want);
                progressed = true;
            }
        } else if let Some(r) = new_rs.as_mut() {
            progressed |= roll(ctx, r, &mut old, want, surge, max_unavailable);
        }
    }

    let all: Vec<&Arc<Value>> = new_rs.iter().chain(old.iter()).collect();
    let sum = |p: &str| -> i64 { all.iter().map(|r| int(r, p)).sum() };
    let replicas = sum("status.replicas");
    let updated = new_rs.as_ref().map_or(0, |r| int(r, "status.replicas"));
    let ready = sum("status.readyReplicas");
    let available = sum("status.availableReplicas");
    let total_spec: i64 = all.iter().map(|r| spec_replicas(r)).sum();
    let complete = new_rs.is_some() && updated == want && replicas == want && available == want;
    if complete || paused {
        cleanup(ctx, &old);
    }

    // the Deployment's own revision annotation follows its new ReplicaSet
    if let Some(r) = &new_rs {
        let rev = revision(r).to_string();
        let current = path(d, "metadata.annotations").and_then(|a| a.get(REVISION)).and_then(Value::as_str);
        if current != Some(rev.as_str()) {
            let _ = store.mutate(d_rt, ns, name, Subresource::Main, |o| {
                let mut o = o.clone();
                let m = meta::metadata_mut(&mut o);
                m.remove("resourceVersion");
                let ann = m.entry("annotations").or_insert_with(|| json!({}));
                ann[REVISION] = json!(rev);
                Ok(o)
            });
        }
    }

    let now = meta::now_rfc3339();
    let old_status = d.get("status").cloned().unwrap_or(json!({}));
    let old_cond = |t: &str| -> Option<Value> {
        old_status.get("conditions")?.as_array()?.iter().find(|c| path_str(c, "type") == t).cloned()
    };
    let cond = |t: &str, status: &str, reason: &str, message: String, refresh: bool| -> Value {
        let prev = old_cond(t);
        let same_status = prev.as_ref().is_some_and(|p| path_str(p, "status") == status);
        if let Some(p) = &prev
            && same_status
            && path_str(p, "reason") == reason
            && path_str(p, "message") == message
            && !refresh
        {
            return p.clone();
        }
        let transition = if same_status {
            prev.as_ref().map_or(json!(now), |p| json!(path_str(p, "lastTransitionTime")))
        } else {
            json!(now)
        };
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastUpdateTime": now, "lastTransitionTime": transition})
    };
    let available_cond = if available >= want - max_unavailable {
        cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), false)
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            false,
        )
    };
    let rs_name = new_rs.as_ref().map(|r| meta::name(r).to_owned()).unwrap_or_default();
    let prev_progress = old_cond("Progressing");
    let prev_reason = prev_progress.as_ref().map(|p| path_str(p, "reason").to_owned()).unwrap_or_default();
    let counts_changed = ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"]
        .iter()
        .zip([replicas, updated, ready, available])
        .any(|(k, v)| int(&old_status, k) != v);
    let deadline = path(d, "spec.progressDeadlineSeconds").and_then(Value::as_i64).unwrap_or(600);
    let progressing_cond = if paused {
        cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), false)
    } else if collision {
        cond("Progressing", "False", "ReplicaSetCreateError", "Failed to create new replica set".into(), false)
    } else if complete {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            false,
        )
    } else if created_new {
        cond("Progressing", "True", "NewReplicaSetCreated", format!("Created new replica set \"{rs_name}\""), true)
    } else if progressed || counts_changed {
        cond("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."), true)
    } else if prev_reason == "DeploymentPaused" {
        cond("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), false)
    } else {
        match prev_progress {
            Some(p)
                if path_str(&p, "status") == "True"
                    && meta::parse_rfc3339(path_str(&p, "lastUpdateTime"))
                        .is_some_and(|t| meta::now_secs() - t > deadline) =>
            {
                cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    false,
                )
            }
            Some(p) => p,
            None => cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
                true,
            ),
        }
    };
    // the API omits zero counts
    let mut status = Map::new();
    for (k, v) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", (total_spec.max(want) - available).max(0)),
    ] {
        if v > 0 {
            status.insert(k.into(), json!(v));
        }
    }
    status.insert("observedGeneration".into(), json!(int(d, "metadata.generation")));
    status.insert("conditions".into(), json!([available_cond, progressing_cond]));
    let collisions = int(&old_status, "collisionCount") + i64::from(collision);
    if collisions > 0 {
        status.insert("collisionCount".into(), json!(collisions));
    }
    let status = Value::Object(status);
    if d.get("status") != Some(&status) {
        let _ = store.mutate(d_rt, ns, name, Subresource::Status, |o| {
            let mut o = o.clone();
            o["status"] = status.clone();
            Ok(o)
        });
    }
}

/// Create the ReplicaSet of the current template. `Err(true)` is a name collision (another template
/// hashed alike): the collision count goes up, and the next hash differs.
fn create_new(
    ctx: &Ctx<'_>,
    owner: &Value,
    template: &Value,
    revision: i64,
    replicas: i64,
) -> Result<Arc<Value>, bool> {
    let d = ctx.d;
    let collisions = int(d, "status.collisionCount");
    let hash = template_hash(template, collisions);
    let name = format!("{}-{hash}", meta::name(d));
    let mut tpl = template.clone();
    let labels = tpl.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut labels = labels;
    labels.insert(HASH_LABEL.into(), json!(hash));
    meta::set_path(&mut tpl, "metadata.labels", Value::Object(labels.clone()));
    let mut selector = path(d, "spec.selector").cloned().unwrap_or(json!({}));
    meta::set_path(&mut selector, &format!("matchLabels.{HASH_LABEL}"), json!(hash));
    let (surge, _) = surge_and_unavailable(d);
    let want = spec_replicas(d);
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED.into(), json!(want.to_string()));
    annotations.insert(MAX_REPLICAS.into(), json!((want + surge).to_string()));
    let mut spec = json!({"replicas": replicas, "selector": selector, "template": tpl});
    if let Some(m) = path(d, "spec.minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    let rs = json!({
        "metadata": {
            "name": name, "labels": labels, "annotations": annotations,
            "ownerReferences": [owner_ref(owner, "Deployment")],
        },
        "spec": spec,
    });
    match ctx.store.create(&ctx.rs_rt, meta::namespace(d), rs) {
        Ok(r) => {
            record_event(
                ctx.store,
                d,
                "Deployment",
                COMPONENT,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
            Ok(r)
        }
        Err(e) => Err(e.reason == "AlreadyExists"),
    }
}

/// Whether no pod of the old ReplicaSets is left (Recreate starts the new ones only then).
fn old_pods_gone(store: &Store, ns: &str, old: &[Arc<Value>]) -> bool {
    let pods = store.list(&builtin("", "pods"), Some(ns)).0;
    let old_uids: Vec<&str> = old.iter().map(|r| meta::meta_str(r, "uid")).collect();
    !pods.iter().any(|p| {
        controller_uid(p).is_some_and(|u| old_uids.contains(&u))
            && !matches!(path_str(p, "status.phase"), "Succeeded" | "Failed")
    })
}

/// A reused ReplicaSet (a rollback, or a template restored by hand) becomes the newest revision; its
/// annotations follow the Deployment's.
fn sync_revision(ctx: &Ctx<'_>, rs: &mut Arc<Value>, max_old_revision: i64) {
    let current = revision(rs);
    let mut annotations = path(rs, "metadata.annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    let before = annotations.clone();
    for (k, v) in copied_annotations(ctx.d) {
        annotations.insert(k, v);
    }
    if current <= max_old_revision {
        annotations.insert(REVISION.into(), json!((max_old_revision + 1).to_string()));
        if current > 0 {
            let history = annotations.get(REVISION_HISTORY).and_then(Value::as_str).unwrap_or("");
            let history = if history.is_empty() { current.to_string() } else { format!("{history},{current}") };
            annotations.insert(REVISION_HISTORY.into(), json!(history));
        }
    }
    if annotations == before {
        return;
    }
    if let Ok(u) = ctx.store.mutate(&ctx.rs_rt, meta::namespace(rs), meta::name(rs), Subresource::Main, |old| {
        let mut o = old.clone();
        let m = meta::metadata_mut(&mut o);
        m.remove("resourceVersion");
        m.insert("annotations".into(), Value::Object(annotations.clone()));
        Ok(o)
    }) {
        *rs = u;
    }
}

/// One RollingUpdate step: scale the new ReplicaSet up within maxSurge, or else the old ones down within
/// maxUnavailable (unhealthy replicas first). Whether anything was scaled.
fn roll(
    ctx: &Ctx<'_>,
    new_rs: &mut Arc<Value>,
    old: &mut [Arc<Value>],
    want: i64,
    surge: i64,
    max_unavailable: i64,
) -> bool {
    let new_replicas = spec_replicas(new_rs);
    let total: i64 = spec_replicas(new_rs) + old.iter().map(|r| spec_replicas(r)).sum::<i64>();
    if new_replicas > want {
        ctx.scale(new_rs, want);
        return true;
    }
    if new_replicas < want && total < want + surge {
        let up = (want + surge - total).min(want - new_replicas);
        ctx.scale(new_rs, new_replicas + up);
        return true;
    }
    let min_available = want - max_unavailable;
    let new_unavailable = (spec_replicas(new_rs) - int(new_rs, "status.availableReplicas")).max(0);
    let mut budget = total - min_available - new_unavailable;
    if budget <= 0 {
        return false;
    }
    let mut scaled = false;
    // replicas that are not available anyway go first: removing them costs no availability
    for r in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = spec_replicas(r) - int(r, "status.availableReplicas");
        if spec_replicas(r) == 0 || unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget);
        let to = spec_replicas(r) - down;
        ctx.scale(r, to);
        budget -= down;
        scaled = true;
    }
    let available: i64 =
        int(new_rs, "status.availableReplicas") + old.iter().map(|r| int(r, "status.availableReplicas")).sum::<i64>();
    let mut down_total = (available - min_available).min(budget);
    for r in old.iter_mut() {
        if down_total <= 0 {
            break;
        }
        let current = spec_replicas(r);
        if current == 0 {
            continue;
        }
        let down = current.min(down_total);
        ctx.scale(r, current - down);
        down_total -= down;
        scaled = true;
    }
    scaled
}

/// Delete the oldest scaled-down ReplicaSets beyond `revisionHistoryLimit`.
fn cleanup(ctx: &Ctx<'_>, old: &[Arc<Value>]) {
    let limit =
        usize::try_from(path(ctx.d, "spec.revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10)).unwrap_or(0);
    let mut idle: Vec<&Arc<Value>> = old
        .iter()
        .filter(|r| {
            spec_replicas(r) == 0
                && int(r, "status.replicas") == 0
                && int(r, "status.observedGeneration") >= int(r, "metadata.generation")
        })
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|r| revision(r));
    for r in &idle[..idle.len() - limit] {
        let _ = ctx.store.delete(&ctx.rs_rt, meta::namespace(r), meta::name(r), &DeleteOptions::default());
    }
}
