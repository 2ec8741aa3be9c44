//! Generic object storage with the real server's semantics: a global monotonic resourceVersion, uid,
//! creationTimestamp, generation, optimistic concurrency, graceful deletion and finalizers, and
//! (optionally) a durable log. Only live objects are stored (no tombstones, no per-object history);
//! the watch history is [`history`], the address allocators [`alloc`].

pub mod alloc;
pub mod history;
pub mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::admission;
use crate::meta;
use crate::resources::{Registry, ResourceType};
use crate::status::{ApiError, Cause};
use alloc::{PodIps, ServiceIps};
pub use history::HistoryLimits;
use history::WatchHistory;
use wal::Wal;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object appeared.
    Added,
    /// The object changed.
    Modified,
    /// The object is gone (carries its last state).
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Storage key of the resource type.
    pub key: String,
    /// What happened.
    pub event: EventType,
    /// The object after the change (before removal, for `Deleted`).
    pub object: Arc<Value>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<Value>>,
}

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object (status changes ignored when a status subresource exists).
    Main,
    /// `/status`: only status changes.
    Status,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `propagationPolicy`: Background, Foreground or Orphan.
    pub propagation: Option<String>,
}

/// What a new watch starts from: events to replay, the live receiver, and the resourceVersion the
/// receiver starts after.
pub type WatchStart = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>, u64);

type Objects = BTreeMap<(String, String), Arc<Value>>;

struct Inner {
    rv: u64,
    objects: HashMap<String, Objects>,
    history: WatchHistory,
    wal: Option<Wal>,
    pod_ips: PodIps,
    service_ips: ServiceIps,
}

impl Inner {
    /// The stored object `rt`/`ns`/`name`, or the API's NotFound.
    fn existing(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_owned(), name.to_owned())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
    changed: watch::Sender<u64>,
    disconnect: watch::Sender<u64>,
    watches_refused: std::sync::atomic::AtomicBool,
    durability: Option<Arc<wal::Durability>>,
    gone_served: std::sync::atomic::AtomicU64,
    /// The servable resource types.
    pub registry: Registry,
}

impl Store {
    /// An in-memory store, or one backed by `data_dir/state.log`.
    pub fn open(data_dir: Option<&Path>, history: HistoryLimits) -> std::io::Result<Self> {
        let (tx, _) = broadcast::channel(history.changes.clamp(1024, 65_536));
        let (changed, _) = watch::channel(0);
        let (disconnect, _) = watch::channel(0);
        let mut inner = Inner {
            rv: 0,
            objects: HashMap::new(),
            history: WatchHistory::new(history, 0),
            wal: None,
            pod_ips: PodIps::default(),
            service_ips: ServiceIps::default(),
        };
        let mut durability = None;
        if let Some(dir) = data_dir {
            let (mut wal, replayed) = Wal::open(dir)?;
            for rec in replayed.records {
                let objs = inner.objects.entry(rec.key).or_default();
                match rec.object {
                    Some(obj) => objs.insert((rec.ns, rec.name), Arc::new(obj)),
                    None => objs.remove(&(rec.ns, rec.name)),
                };
            }
            inner.objects.retain(|_, objs| !objs.is_empty());
            let of = |key: &str| inner.objects.get(key).into_iter().flat_map(|m| m.values().map(AsRef::as_ref));
            inner.pod_ips = PodIps::resume(replayed.ip_next, of("/pods"));
            let mut service_ips = ServiceIps::default();
            for svc in of("/services") {
                service_ips.track(None, Some(svc));
            }
            inner.service_ips = service_ips;
            inner.rv = replayed.rv;
            inner.history = WatchHistory::new(history, replayed.rv);
            let rv = inner.rv;
            let ip_next = inner.pod_ips.next_index();
            wal.compact(rv, ip_next, every_object(&inner.objects))?;
            durability = Some(wal.durability());
            inner.wal = Some(wal);
        }
        let store = Self {
            inner: Mutex::new(inner),
            tx,
            changed,
            disconnect,
            watches_refused: std::sync::atomic::AtomicBool::new(false),
            durability,
            gone_served: std::sync::atomic::AtomicU64::new(0),
            registry: Registry::new(),
        };
        store.refresh_crds();
        Ok(store)
    }

    fn refresh_crds(&self) {
        let inner = self.inner.lock();
        let crds: Vec<Arc<Value>> = inner
            .objects
            .get("apiextensions.k8s.io/customresourcedefinitions")
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        drop(inner);
        self.registry.set_crds(crds.iter().map(AsRef::as_ref));
    }

    /// Remove the custom resources whose definition is gone (as the CRD finalizer does).
    fn purge_unserved(&self) {
        let served: HashSet<String> = self.registry.all().iter().map(ResourceType::key).collect();
        let mut inner = self.inner.lock();
        let doomed: Vec<(String, String, String, Value)> = inner
            .objects
            .iter()
            .filter(|(key, _)| !served.contains(*key))
            .flat_map(|(key, objs)| {
                objs.iter().map(|((ns, name), o)| (key.clone(), ns.clone(), name.clone(), (**o).clone()))
            })
            .collect();
        for (key, ns, name, obj) in doomed {
            if let Err(e) = self.commit(&mut inner, &key, &ns, &name, obj, EventType::Deleted) {
                tracing::warn!(error = %e, "removing a custom resource of a deleted definition");
            }
        }
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Block until every write made so far is on disk (a no-op in memory). The API calls this before it
    /// acknowledges a write; many writers share one fsync.
    pub fn wait_durable(&self) -> Result<(), ApiError> {
        match &self.durability {
            Some(d) => d.wait().map_err(|e| ApiError::internal(format!("syncing the log: {e}"))),
            None => Ok(()),
        }
    }

    /// Every committed change from now on (control loops filter by key).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// A receiver that sees the latest resourceVersion after every commit.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.inner.lock().existing(rt, ns, name)
    }

    /// Every object of a type (in one namespace when given), ordered by namespace then name, and the
    /// resourceVersion the list is consistent at.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        self.list_key(&rt.key(), ns)
    }

    /// Like [`Store::list`], by storage key.
    pub fn list_key(&self, key: &str, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.inner.lock();
        let items = match inner.objects.get(key) {
            None => Vec::new(),
            Some(m) => match ns {
                Some(ns) => m
                    .range((ns.to_owned(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => m.values().cloned().collect(),
            },
        };
        (items, inner.rv)
    }

    /// Start a watch: the events to replay first, then a live receiver. `from` is the resourceVersion
    /// the client has seen (`None`: send the current state as `ADDED` events first).
    pub fn watch(&self, key: &str, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let inner = self.inner.lock();
        let rx = self.tx.subscribe();
        let replay = match from {
            None => inner
                .objects
                .get(key)
                .map(|m| {
                    m.values()
                        .map(|o| {
                            Arc::new(Change {
                                rv: rv_of(o),
                                key: key.to_owned(),
                                event: EventType::Added,
                                object: o.clone(),
                                prev: None,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Some(rv) => inner.history.since(key, rv).map_err(|too_old| {
                self.gone_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ApiError::gone(format!("too old resource version: {rv} ({})", too_old.compacted_rv))
            })?,
        };
        Ok((replay, rx, inner.rv))
    }

    /// Allocate a pod IP never handed out before (wrapping only after the whole /16).
    pub fn allocate_pod_ip(&self) -> String {
        self.inner.lock().pod_ips.allocate()
    }

    /// Create an object.
    pub fn create(&self, rt: &ResourceType, ns: &str, mut obj: Value) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        check_type(rt, &mut obj)?;
        let ns = if rt.namespaced { ns } else { "" };
        let mut inner = self.inner.lock();
        let meta_map = meta::metadata_mut(&mut obj);
        let body_ns = meta_map.get("namespace").and_then(Value::as_str).unwrap_or("").to_owned();
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta_map.insert("namespace".into(), json!(ns));
        } else {
            meta_map.remove("namespace");
        }
        let mut name = meta_map.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        if name.is_empty() {
            let prefix = meta_map.get("generateName").and_then(Value::as_str).unwrap_or("").to_owned();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    &[Cause {
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                        reason: "FieldValueRequired",
                    }],
                ));
            }
            name = format!("{prefix}{}", meta::random_suffix(5));
            meta_map.insert("name".into(), json!(name));
        }
        if rt.namespaced {
            match inner.objects.get("/namespaces").and_then(|m| m.get(&(String::new(), ns.to_owned()))) {
                None => return Err(ApiError::not_found("", "namespaces", ns)),
                Some(n) if meta::is_terminating(n) => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.plural
                    )));
                }
                Some(_) => {}
            }
        }
        let key = rt.key();
        if inner.objects.get(&key).is_some_and(|m| m.contains_key(&(ns.to_owned(), name.clone()))) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta_map.remove(field);
        }
        meta_map.insert("uid".into(), json!(meta::new_uid()));
        meta_map.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        meta_map.insert("generation".into(), json!(1));
        admission::prepare_create(rt, &mut obj);
        if key == "/services" {
            let services = inner.objects.get("/services").into_iter().flat_map(|m| m.values().map(AsRef::as_ref));
            inner.service_ips.allocate(&mut obj, services)?;
        }
        let causes = admission::validate(rt, &obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, &causes));
        }
        let out = self.commit(&mut inner, &key, ns, &name, obj, EventType::Added)?;
        drop(inner);
        self.after_commit(&key);
        Ok(out)
    }

    /// Replace an object (PUT), checking `metadata.resourceVersion` when the body carries one.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        new: Value,
        sub: Subresource,
    ) -> Result<Arc<Value>, ApiError> {
        self.mutate(rt, ns, name, sub, |_old| Ok(new))
    }

    /// Read-modify-write under the store lock: `f` maps the current object to the new one (a patch, or a
    /// controller's change). A resourceVersion in the result must match the current one.
    pub fn mutate(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Subresource,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.key();
        let mut inner = self.inner.lock();
        let old = inner.existing(rt, ns, name)?;
        let mut new = f(&old)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        check_type(rt, &mut new)?;
        let old_rv = meta::meta_str(&old, "resourceVersion").to_owned();
        let want_rv = meta::meta_str(&new, "resourceVersion").to_owned();
        if !want_rv.is_empty() && want_rv != old_rv {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        let body_name = meta::name(&new);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let want_uid = Some(meta::meta_str(&new, "uid")).filter(|u| !u.is_empty());
        precondition(rt, name, "UID", want_uid, meta::meta_str(&old, "uid"))?;
        let mut merged = match sub {
            Subresource::Status => {
                let mut m = (*old).clone();
                if let (Some(map), Some(status)) = (m.as_object_mut(), new.get("status")) {
                    map.insert("status".into(), status.clone());
                }
                m
            }
            Subresource::Main => {
                let mut n = new;
                if rt.status
                    && let Some(map) = n.as_object_mut()
                {
                    match old.get("status") {
                        Some(s) => map.insert("status".into(), s.clone()),
                        None => map.remove("status"),
                    };
                }
                let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                let m = meta::metadata_mut(&mut n);
                for field in
                    ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
                {
                    match old_meta.get(field) {
                        Some(v) => m.insert(field.into(), v.clone()),
                        None => m.remove(field),
                    };
                }
                m.insert("name".into(), json!(name));
                if rt.namespaced {
                    m.insert("namespace".into(), json!(ns));
                }
                admission::prepare_update(rt, &old, &mut n);
                n
            }
        };
        meta::metadata_mut(&mut merged).insert("resourceVersion".into(), json!(old_rv));
        if sub == Subresource::Main {
            let mut causes = admission::validate(rt, &merged);
            causes.extend(admission::validate_update(rt, &old, &merged));
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, name, &causes));
            }
            if spec_changed(&old, &merged) {
                let generation =
                    old.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(0);
                meta::metadata_mut(&mut merged).insert("generation".into(), json!(generation + 1));
            }
        }
        if merged == *old {
            return Ok(old);
        }
        let ns_finalizing = key == "/namespaces"
            && meta::path(&merged, "spec.finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        let finished = meta::is_terminating(&merged)
            && meta::finalizers(&merged).is_empty()
            && grace_elapsed(&merged)
            && !ns_finalizing;
        let event = if finished { EventType::Deleted } else { EventType::Modified };
        let out = self.commit(&mut inner, &key, ns, name, merged, event)?;
        drop(inner);
        self.after_commit(&key);
        Ok(out)
    }

    /// Delete an object: at once, or by marking it (deletionTimestamp) while finalizers or a grace period
    /// remain. Returns the object's last state.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.key();
        let mut inner = self.inner.lock();
        let old = inner.existing(rt, ns, name)?;
        precondition(rt, name, "UID", opts.precondition_uid.as_deref(), meta::meta_str(&old, "uid"))?;
        let rv = meta::meta_str(&old, "resourceVersion");
        precondition(rt, name, "ResourceVersion", opts.precondition_rv.as_deref(), rv)?;
        let mut obj = (*old).clone();
        let mut finalizers = meta::finalizers(&obj);
        match opts.propagation.as_deref() {
            Some("Orphan") => push_unique(&mut finalizers, "orphan"),
            Some("Foreground") => push_unique(&mut finalizers, "foregroundDeletion"),
            Some("Background") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "DeleteOptions.PropagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        if key == "/namespaces" {
            // the namespace controller empties it, then removes the `kubernetes` finalizer
            let spec_fin = meta::path(&obj, "spec.finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            if spec_fin {
                meta::set_path(&mut obj, "status.phase", json!("Terminating"));
            }
        }
        let is_pod = key == "/pods";
        let grace = if is_pod && !meta::path_str(&obj, "spec.nodeName").is_empty() {
            let default = meta::path(&obj, "spec.terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            let mut g = opts.grace_period_seconds.unwrap_or(default).max(0);
            if let Some(cur) =
                obj.get("metadata").and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64)
            {
                g = g.min(cur);
            }
            g
        } else {
            0
        };
        let ns_finalizing = key == "/namespaces"
            && meta::path(&obj, "spec.finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if finalizers.is_empty() && grace == 0 && !ns_finalizing {
            let out = self.commit(&mut inner, &key, ns, name, obj, EventType::Deleted)?;
            drop(inner);
            self.after_commit(&key);
            return Ok(out);
        }
        let already = meta::is_terminating(&obj);
        let m = meta::metadata_mut(&mut obj);
        if !already || grace == 0 {
            m.insert("deletionTimestamp".into(), json!(meta::rfc3339(meta::now_secs() + grace)));
        }
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if finalizers.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), json!(finalizers));
        }
        if obj == *old {
            return Ok(old);
        }
        let out = self.commit(&mut inner, &key, ns, name, obj, EventType::Modified)?;
        drop(inner);
        self.after_commit(&key);
        Ok(out)
    }

    /// Write `obj` as the new state (or, for `Deleted`, remove it reporting `obj` as its last state).
    fn commit(
        &self,
        inner: &mut Inner,
        key: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
        event: EventType,
    ) -> Result<Arc<Value>, ApiError> {
        let rv = inner.rv + 1;
        let id = (ns.to_owned(), name.to_owned());
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let removed = event == EventType::Deleted;
        if let Some(w) = inner.wal.as_mut() {
            w.append(rv, key, ns, name, (!removed).then_some(&obj))
                .map_err(|e| ApiError::internal(format!("writing the log: {e}")))?;
        }
        inner.rv = rv;
        let object = Arc::new(obj);
        let objs = inner.objects.entry(key.to_owned()).or_default();
        let prev = if removed { objs.remove(&id) } else { objs.insert(id, object.clone()) };
        if objs.is_empty() {
            inner.objects.remove(key);
        }
        if key == "/services" {
            inner.service_ips.track(prev.as_deref(), (!removed).then_some(&*object));
        }
        let change = Arc::new(Change { rv, key: key.to_owned(), event, object: object.clone(), prev });
        inner.history.push(change.clone());
        let _ = self.tx.send(change);
        Self::maybe_compact(inner);
        Ok(object)
    }

    /// Rewrite the log as a snapshot once it holds far more records than live objects.
    fn maybe_compact(inner: &mut Inner) {
        let appended = inner.wal.as_ref().map_or(0, Wal::appended);
        if appended < 50_000 || !appended.is_multiple_of(10_000) {
            return;
        }
        let live: usize = inner.objects.values().map(BTreeMap::len).sum();
        if appended < live * 4 {
            return;
        }
        let (rv, ip_next) = (inner.rv, inner.pod_ips.next_index());
        let Inner { wal, objects, .. } = inner;
        if let Some(w) = wal.as_mut()
            && let Err(e) = w.compact(rv, ip_next, every_object(objects))
        {
            tracing::warn!(error = %e, "compacting the log");
        }
    }

    fn after_commit(&self, key: &str) {
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            self.refresh_crds();
            self.purge_unserved();
        }
        let rv = self.current_rv();
        self.changed.send_replace(rv);
    }

    /// A receiver that changes when open watches must end (see [`Store::disconnect_watchers`]).
    pub fn disconnects(&self) -> watch::Receiver<u64> {
        self.disconnect.subscribe()
    }

    /// End every open watch, as a dropped connection would (tests of client resumption).
    pub fn disconnect_watchers(&self) {
        self.disconnect.send_modify(|n| *n += 1);
    }

    /// Refuse new watches with 503 (and end open ones) until called with `false`: an API server outage,
    /// for tests of client recovery.
    pub fn refuse_watches(&self, refuse: bool) {
        self.watches_refused.store(refuse, std::sync::atomic::Ordering::SeqCst);
        if refuse {
            self.disconnect_watchers();
        }
    }

    /// Whether new watches are refused.
    pub fn watches_refused(&self) -> bool {
        self.watches_refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many watches were answered `410 Gone`.
    pub fn gone_served(&self) -> u64 {
        self.gone_served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drop the watch history (tests use this to force `410 Gone` on resumed watches).
    pub fn compact_history(&self) {
        let mut inner = self.inner.lock();
        let rv = inner.rv;
        inner.history.clear(rv);
    }
}

/// Every stored object as (storage key, namespace, name, object), as the log's snapshot takes them.
fn every_object(objects: &HashMap<String, Objects>) -> impl Iterator<Item = (&str, &str, &str, &Value)> {
    objects.iter().flat_map(|(key, objs)| {
        objs.iter().map(move |((ns, name), obj)| (key.as_str(), ns.as_str(), name.as_str(), obj.as_ref()))
    })
}

/// kube-apiserver's 409 when a precondition (`UID`, `ResourceVersion`) names another version.
fn precondition(rt: &ResourceType, name: &str, field: &str, want: Option<&str>, have: &str) -> Result<(), ApiError> {
    match want {
        Some(want) if want != have => Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!("Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"),
        )),
        _ => Ok(()),
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|f| f == item) {
        list.push(item.to_owned());
    }
}

fn grace_elapsed(obj: &Value) -> bool {
    obj.get("metadata").and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64).unwrap_or(0) == 0
}

/// The resourceVersion of a stored object.
pub fn rv_of(obj: &Value) -> u64 {
    meta::meta_str(obj, "resourceVersion").parse().unwrap_or(0)
}

fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            map.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            rt.api_version()
        )));
    }
    map.insert("kind".into(), json!(rt.kind));
    map.insert("apiVersion".into(), json!(rt.api_version()));
    Ok(())
}

/// Whether anything but metadata and status changed (binding a pod to a node is not a spec change).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(k);
            }
            if let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("nodeName");
            }
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_from_before_the_byte_bounded_history_is_gone() {
        let limits = HistoryLimits { changes: 10_000, bytes: 64 << 10 };
        let store = Store::open(None, limits).expect("in-memory store");
        crate::bootstrap::ensure(&store, 1).expect("bootstrap");
        let maps = crate::bootstrap::builtin("", "configmaps");
        let start = store.current_rv();
        for i in 0..100 {
            let cm = json!({"metadata": {"name": format!("cm-{i}")}, "data": {"blob": "x".repeat(4096)}});
            store.create(&maps, "default", cm).expect("create");
        }
        let err = store.watch(&maps.key(), Some(start)).map(|_| ()).expect_err("history holds ~16 of 100 changes");
        assert_eq!(err.code, 410, "{err:?}");
        assert_eq!(store.gone_served(), 1);
        let recent = store.current_rv() - 5;
        let (replay, _, _) = store.watch(&maps.key(), Some(recent)).expect("recent history is kept");
        assert_eq!(
            replay.iter().map(|c| c.rv).collect::<Vec<_>>(),
            ((recent + 1)..=store.current_rv()).collect::<Vec<_>>()
        );
    }
}
