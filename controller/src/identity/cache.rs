//! Watch-backed caches of the sets' children (pods, claims, ControllerRevisions), as upstream's informers:
//! a reconcile reads them from memory instead of listing them from the API server on every pass.
//!
//! A cache lags the API server, and most of all it lags the controller's own writes: right after
//! creating `web-3` a pass could still see no `web-3` and create it again, or, after deleting a pod for a
//! rolling update, still count it as available and delete one more than `maxUnavailable` allows. Upstream
//! guards against this with "expectations". Here every write the controller makes is recorded as an
//! [`Expect`]ation on the object's name until the watch delivers it; until then a read sees the
//! controller's own result in place of the cache's older copy (an overlay), or, for revisions, a caller
//! asks [`Cache::pending`] and reads the API instead.
//!
//! As upstream's, an expectation ends only when the API says so, never by time alone: when the watch
//! delivers the write (or anything newer), or when the watch relists (a list issued after a write
//! reflects it). A write whose event never comes (which a watch that resumes by resourceVersion should
//! not allow, but a bug could) must not leave a pass blind for ever: [`Pump::run`] checks every
//! [`WATCHDOG`] and restarts the watch of a cache holding an expectation older than [`RELIST_AFTER`]:
//! a full relist, whose list then decides. Time only triggers the relist; the list ends the wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

/// How long a write may stay unobserved before its cache relists (a watch delivers in milliseconds).
pub const RELIST_AFTER: Duration = Duration::from_secs(120);

/// How often the caches are checked for overdue expectations.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// How many deleted UIDs are remembered (a delete's response can arrive after its watch event).
const DELETED_MEMORY: usize = 4096;

/// What the watch must deliver before the cache reflects a write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// Any event of the object (it was created: once seen, the cache has it).
    Seen,
    /// The object at exactly this resourceVersion (it was patched; events arrive in order).
    Version(String),
    /// The object terminating or deleted, or another object under its name.
    Gone,
}

/// One write not yet observed.
#[derive(Debug)]
struct Expect<K> {
    uid: String,
    want: Want,
    /// What the write returned: shown in place of the cache's copy until observed (`None`: absent).
    object: Option<Arc<K>>,
    /// When it was recorded (only to tell the watchdog that a relist is due; never ends it).
    at: Instant,
    /// When it was recorded, in [`Inner::clock`] ticks.
    tick: u64,
}

#[derive(Debug)]
struct Inner<K> {
    by_key: HashMap<(String, String), Expect<K>>,
    /// The last [`DELETED_MEMORY`] UIDs the watch reported deleted: a write's response can arrive after
    /// the watch already delivered (and the store dropped) the object.
    deleted: HashSet<String>,
    deleted_order: VecDeque<String>,
    clock: u64,
    /// The tick at which the running relist started.
    relist_from: Option<u64>,
}

fn key<K: Resource>(obj: &K) -> (String, String) {
    (obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone().unwrap_or_default())
}

fn uid<K: Resource>(obj: &K) -> &str {
    obj.meta().uid.as_deref().unwrap_or("")
}

impl<K: Resource> Expect<K> {
    /// Whether `seen` (the cache's or the watch's copy; `deleted` for a delete event) reflects the write.
    fn met_by(&self, seen: &K, deleted: bool) -> bool {
        if uid(seen) != self.uid {
            // Names are unique: another object under the name means ours is gone.
            return self.want == Want::Gone;
        }
        match &self.want {
            _ if deleted => true,
            Want::Seen => true,
            Want::Version(rv) => seen.meta().resource_version.as_deref().is_some_and(|s| at_least(s, rv)),
            // Terminating meets a graceful delete; one the API reported gone waits for the delete event.
            Want::Gone => self.object.is_some() && seen.meta().deletion_timestamp.is_some(),
        }
    }
}

/// Whether resourceVersion `seen` is `want` or newer. resourceVersions are opaque, so only equality is
/// certain; when both are integers (etcd's revisions, the stand-in's counter) a larger one is newer.
fn at_least(seen: &str, want: &str) -> bool {
    seen == want || matches!((seen.parse::<u64>(), want.parse::<u64>()), (Ok(s), Ok(w)) if s >= w)
}

/// A watch-backed store of one kind plus the controller's unobserved writes to it.
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    expect: Mutex<Inner<K>>,
    /// Ends the running watch so that a new one relists.
    relist: tokio::sync::Notify,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn new() -> (Arc<Self>, Writer<K>) {
        let (store, writer) = reflector::store();
        let inner = Inner {
            by_key: HashMap::new(),
            deleted: HashSet::new(),
            deleted_order: VecDeque::new(),
            clock: 0,
            relist_from: None,
        };
        (Arc::new(Cache { store, expect: Mutex::new(inner), relist: tokio::sync::Notify::new() }), writer)
    }

    /// Wait until the first list has been loaded.
    pub async fn ready(&self) -> bool {
        self.store.wait_until_ready().await.is_ok()
    }

    fn record(&self, like: &K, want: Want, object: Option<K>) {
        let mut inner = self.expect.lock();
        inner.clock += 1;
        let e = Expect {
            uid: uid(like).to_owned(),
            want,
            object: object.map(Arc::new),
            at: Instant::now(),
            tick: inner.clock,
        };
        let k = key(like);
        // The watch may have delivered the write before the API answered: then there is nothing to wait
        // for (and no later event would end the wait).
        let seen = self.store.get(&ObjectRef::new(&k.1).within(&k.0));
        let met = inner.deleted.contains(&e.uid) || seen.is_some_and(|s| e.met_by(&s, false));
        if met {
            inner.by_key.remove(&k);
        } else {
            inner.by_key.insert(k, e);
        }
    }

    /// The controller created `obj` (as the API returned it).
    pub fn created(&self, obj: &K) {
        self.record(obj, Want::Seen, Some(obj.clone()));
    }

    /// The controller patched `obj` (as the API returned it).
    pub fn updated(&self, obj: &K) {
        match obj.meta().resource_version.clone() {
            Some(rv) => self.record(obj, Want::Version(rv), Some(obj.clone())),
            None => self.record(obj, Want::Seen, Some(obj.clone())),
        }
    }

    /// The controller deleted `old`; `remaining` is the object the API returned when deletion is graceful
    /// (terminating), `None` when it is gone at once.
    pub fn deleted(&self, old: &K, remaining: Option<K>) {
        self.record(old, Want::Gone, remaining);
    }

    /// Objects in `namespace` matching `keep`, with the controller's unobserved writes laid over the
    /// cache's copies.
    pub fn view(&self, namespace: &str, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        // The lock is held across the store read so that an expectation cannot be met (and dropped)
        // between the two reads: whatever the store shows is at least as new as the expectations.
        let inner = self.expect.lock();
        let listed = self.store.state_filter(|o| o.meta().namespace.as_deref() == Some(namespace) && keep(o));
        if !inner.by_key.keys().any(|(ns, _)| ns == namespace) {
            return listed;
        }
        let mut by_name: HashMap<String, Arc<K>> =
            listed.into_iter().map(|o| (o.meta().name.clone().unwrap_or_default(), o)).collect();
        for ((ns, name), e) in &inner.by_key {
            if ns != namespace || by_name.get(name).is_some_and(|seen| e.met_by(seen, false)) {
                continue;
            }
            match &e.object {
                Some(o) if keep(o) => by_name.insert(name.clone(), o.clone()),
                _ => by_name.remove(name),
            };
        }
        by_name.into_values().collect()
    }

    /// Whether a write to an object of `namespace` whose name satisfies `name` is still unobserved.
    pub fn pending(&self, namespace: &str, name: impl Fn(&str) -> bool) -> bool {
        self.expect.lock().by_key.keys().any(|(ns, n)| ns == namespace && name(n))
    }

    /// Whether a write has waited for its watch event longer than `after` (then a relist is due).
    pub fn overdue(&self, after: Duration) -> bool {
        self.expect.lock().by_key.values().any(|e| e.at.elapsed() > after)
    }

    /// Restart the watch: the new one lists everything again, which ends every expectation recorded
    /// before it began.
    pub fn relist(&self) {
        self.relist.notify_one();
    }

    /// Writes not yet observed (for tests and metrics).
    pub fn unobserved(&self) -> usize {
        self.expect.lock().by_key.len()
    }

    /// Account for a watch event, after the reflector applied it to the store.
    fn observe(&self, ev: &watcher::Event<K>) {
        let mut inner = self.expect.lock();
        match ev {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                let deleted = matches!(ev, watcher::Event::Delete(_));
                if deleted && inner.deleted.insert(uid(o).to_owned()) {
                    inner.deleted_order.push_back(uid(o).to_owned());
                    if inner.deleted_order.len() > DELETED_MEMORY
                        && let Some(old) = inner.deleted_order.pop_front()
                    {
                        inner.deleted.remove(&old);
                    }
                }
                let k = key(o);
                if inner.by_key.get(&k).is_some_and(|e| e.met_by(o, deleted)) {
                    inner.by_key.remove(&k);
                }
            }
            // Objects of a relist reach the store only at InitDone.
            watcher::Event::InitApply(_) => {}
            watcher::Event::Init => inner.relist_from = Some(inner.clock),
            watcher::Event::InitDone => {
                // The list was read after every write recorded before the relist began, so the store now
                // reflects them. Later ones are met if the fresh store shows them.
                let from = inner.relist_from.take().unwrap_or(0);
                let store = &self.store;
                inner.by_key.retain(|(ns, name), e| {
                    if e.tick <= from {
                        return false;
                    }
                    let seen = store.find(|o| {
                        o.meta().namespace.as_deref() == Some(ns.as_str()) && o.meta().name.as_deref() == Some(name)
                    });
                    match seen {
                        Some(o) => !e.met_by(&o, false),
                        None => e.want != Want::Gone,
                    }
                });
            }
        }
    }
}

/// Watch `api` into the cache: the reflector fills the store, then expectations are met; yields every
/// object the watch touched (metadata only), for triggering reconciles.
fn reflect<K>(api: Api<K>, writer: Writer<K>, cache: Arc<Cache<K>>) -> impl Stream<Item = K> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + Default + 'static,
{
    // Each watch runs until the cache asks for a relist; the next one starts with a full list.
    let relists = cache.clone();
    let watches = futures::stream::repeat(()).flat_map(move |()| {
        let cache = relists.clone();
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .take_until(async move { cache.relist.notified().await })
    });
    reflector::reflector(writer, watches).filter_map(move |ev| {
        let out = match ev {
            Ok(ev) => {
                cache.observe(&ev);
                match ev {
                    watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                        let mut slim = K::default();
                        *slim.meta_mut() = o.meta().clone();
                        Some(slim)
                    }
                    watcher::Event::Init | watcher::Event::InitDone => None,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, kind = %K::kind(&()), "identity cache watch");
                None
            }
        };
        std::future::ready(out)
    })
}

/// The caches the identity controller reads: every pod, claim and ControllerRevision of the cluster, as
/// upstream's shared informers hold them.
pub struct Caches {
    /// Pods.
    pub pods: Arc<Cache<Pod>>,
    /// PersistentVolumeClaims.
    pub claims: Arc<Cache<PersistentVolumeClaim>>,
    /// ControllerRevisions.
    pub revisions: Arc<Cache<ControllerRevision>>,
}

impl Caches {
    /// Whether every cache has loaded its first list (`false`: the watches stopped).
    pub async fn ready(&self) -> bool {
        self.pods.ready().await && self.claims.ready().await && self.revisions.ready().await
    }

    /// Relist every cache holding a write unobserved for longer than `after`.
    pub fn relist_overdue(&self, after: Duration) {
        if self.pods.overdue(after) {
            tracing::warn!("a pod write was never observed: relisting pods");
            self.pods.relist();
        }
        if self.claims.overdue(after) {
            tracing::warn!("a claim write was never observed: relisting claims");
            self.claims.relist();
        }
        if self.revisions.overdue(after) {
            tracing::warn!("a revision write was never observed: relisting revisions");
            self.revisions.relist();
        }
    }
}

/// Drives the caches' watches and hands pod events to the controllers.
pub struct Pump {
    client: kube::Client,
    writers: (Writer<Pod>, Writer<PersistentVolumeClaim>, Writer<ControllerRevision>),
    caches: Arc<Caches>,
    subscribers: Vec<mpsc::UnboundedSender<Pod>>,
}

impl Pump {
    /// New, empty caches and the pump that fills them.
    pub fn new(client: kube::Client) -> (Arc<Caches>, Pump) {
        let (pods, pw) = Cache::new();
        let (claims, cw) = Cache::new();
        let (revisions, rw) = Cache::new();
        let caches = Arc::new(Caches { pods, claims, revisions });
        (caches.clone(), Pump { client, writers: (pw, cw, rw), caches, subscribers: Vec::new() })
    }

    /// Every pod the watch touches (metadata only), after the cache holds it: a controller's trigger.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<Pod> {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers.push(tx);
        rx
    }

    /// Run the watches (until dropped).
    pub async fn run(self) {
        let Pump { client, writers: (pw, cw, rw), caches, subscribers } = self;
        let pods = reflect(Api::all(client.clone()), pw, caches.pods.clone()).for_each(|pod| {
            for tx in &subscribers {
                let _ = tx.unbounded_send(pod.clone());
            }
            std::future::ready(())
        });
        // Claims and revisions trigger nothing (as upstream): a pass waiting on one requeues itself.
        let claims = reflect(Api::all(client.clone()), cw, caches.claims.clone()).for_each(|_| std::future::ready(()));
        let revisions = reflect(Api::all(client), rw, caches.revisions.clone()).for_each(|_| std::future::ready(()));
        let watchdog = async {
            loop {
                tokio::time::sleep(WATCHDOG).await;
                caches.relist_overdue(RELIST_AFTER);
            }
        };
        tokio::select! {
            _ = futures::future::join3(pods, claims, revisions) => {}
            () = watchdog => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(name: &str, uid: &str, rv: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                resource_version: Some(rv.into()),
                deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(v: &[Arc<Pod>]) -> Vec<String> {
        let mut n: Vec<String> = v
            .iter()
            .map(|p| {
                let t = if p.metadata.deletion_timestamp.is_some() { "!" } else { "" };
                format!(
                    "{}{t}@{}",
                    p.metadata.name.clone().unwrap_or_default(),
                    p.metadata.uid.clone().unwrap_or_default()
                )
            })
            .collect();
        n.sort();
        n
    }

    fn apply(cache: &Cache<Pod>, w: &mut Writer<Pod>, ev: watcher::Event<Pod>) {
        w.apply_watcher_event(&ev);
        cache.observe(&ev);
    }

    fn listed(cache: &Cache<Pod>, w: &mut Writer<Pod>, pods: Vec<Pod>) {
        apply(cache, w, watcher::Event::Init);
        for p in pods {
            apply(cache, w, watcher::Event::InitApply(p));
        }
        apply(cache, w, watcher::Event::InitDone);
    }

    #[test]
    fn a_created_pod_is_seen_before_the_watch_delivers_it() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        cache.created(&pod("web-1", "b", "2", false));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@a", "web-1@b"]);
        assert!(cache.view("other", |_| true).is_empty());
        // The watch delivers it: the cache's copy (a newer one, say) is used and the expectation ends.
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-1", "b", "3", false)));
        assert_eq!(cache.unobserved(), 0);
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@a", "web-1@b"]);
    }

    #[test]
    fn a_deleted_pod_counts_as_terminating_until_the_watch_says_so() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        cache.deleted(&pod("web-0", "a", "1", false), Some(pod("web-0", "a", "2", true)));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0!@a"]);
        // An older event of the pod in flight does not meet the expectation.
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-0", "a", "1", false)));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0!@a"]);
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-0", "a", "2", true)));
        assert_eq!(cache.unobserved(), 0);
        // Deleted at once: absent until the watch catches up.
        cache.deleted(&pod("web-0", "a", "2", true), None);
        assert!(cache.view("ns", |_| true).is_empty());
        apply(&cache, &mut w, watcher::Event::Delete(pod("web-0", "a", "3", true)));
        assert_eq!(cache.unobserved(), 0);
        assert!(cache.view("ns", |_| true).is_empty());
    }

    #[test]
    fn a_recreated_pod_replaces_the_stale_copy() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", true)]);
        cache.created(&pod("web-0", "b", "5", false));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@b"]);
        apply(&cache, &mut w, watcher::Event::Delete(pod("web-0", "a", "4", true)));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@b"], "the old pod's events do not meet it");
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-0", "b", "5", false)));
        assert_eq!(cache.unobserved(), 0);
    }

    #[test]
    fn patches_wait_for_their_version_and_relists_end_expectations() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        cache.updated(&pod("web-0", "a", "7", false));
        assert!(cache.pending("ns", |n| n.starts_with("web-")));
        assert!(!cache.pending("ns", |n| n.starts_with("db-")));
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-0", "a", "6", false)));
        assert!(cache.pending("ns", |_| true));
        // A relist after the write reflects it, whatever it shows.
        listed(&cache, &mut w, vec![pod("web-0", "a", "9", false)]);
        assert!(!cache.pending("ns", |_| true));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@a"]);
    }

    #[test]
    fn a_write_the_watch_delivered_first_waits_for_nothing() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-1", "b", "2", false)));
        cache.created(&pod("web-1", "b", "2", false));
        apply(&cache, &mut w, watcher::Event::Apply(pod("web-0", "a", "4", false)));
        cache.updated(&pod("web-0", "a", "3", false));
        apply(&cache, &mut w, watcher::Event::Delete(pod("web-1", "b", "5", true)));
        cache.deleted(&pod("web-1", "b", "2", false), Some(pod("web-1", "b", "5", true)));
        assert_eq!(cache.unobserved(), 0);
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@a"]);
    }

    /// The old cache dropped expectations after 30 s by the clock alone: a pass then trusted a cache
    /// that still lacked the write (and, say, created the pod again). Only the watch may end them.
    #[test]
    fn an_unobserved_write_is_not_forgotten_by_time_alone() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        cache.created(&pod("web-1", "b", "2", false));
        cache.deleted(&pod("web-0", "a", "1", false), Some(pod("web-0", "a", "3", true)));
        std::thread::sleep(Duration::from_secs(31));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0!@a", "web-1@b"]);
        assert!(cache.pending("ns", |n| n == "web-1"));
        // Overdue: the watchdog asks for a relist, and the list (not the clock) ends the wait.
        assert!(cache.overdue(Duration::from_secs(30)));
        listed(&cache, &mut w, vec![pod("web-0", "a", "1", false)]);
        assert_eq!(cache.unobserved(), 0);
        assert!(!cache.overdue(Duration::ZERO));
        assert_eq!(names(&cache.view("ns", |_| true)), ["web-0@a"], "the list is the truth");
    }

    #[test]
    fn the_filter_applies_to_the_overlay() {
        let (cache, mut w) = Cache::<Pod>::new();
        listed(&cache, &mut w, vec![]);
        cache.created(&pod("db-0", "d", "1", false));
        assert!(cache.view("ns", |p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-"))).is_empty());
    }
}
