//! The Kubernetes source: one watch per kind (Namespaces, Services, EndpointSlices, Pods), converted to
//! slim views on arrival, synthesised and published whenever a batch of events has been taken in.
//! With a multicluster zone, also the EndpointSlices labelled `multicluster.kubernetes.io/service-name`
//! and, once discovery shows the API serves them, ServiceImports.
//!
//! Re-lists (after a `410 Gone` or a dropped watch) arrive as `Init … InitApply … InitDone`; the kind's
//! whole view set is replaced at `InitDone`, so objects deleted while the watch was down disappear.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use roster_shared::views::object_key;
use roster_shared::{IncrementalSynthesis, ServiceKind, SynthConfig, Trigger};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::hub::Hub;
use crate::metrics::{ControllerMetrics, KindLabel};
use crate::service_import::{self, ServiceImport};
use crate::slim;

/// The kinds DNS watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Pod,
    /// EndpointSlices of ServiceImports (multicluster zone only).
    ImportedSlice,
    /// ServiceImports (multicluster zone only, once the API serves them).
    ServiceImport,
}

/// The kinds that must have been listed before the first publication. The multicluster kinds are not
/// among them: ServiceImports may never be served (no CRD), and records must not wait for them.
const KINDS: [Kind; 4] = [Kind::Namespace, Kind::Service, Kind::EndpointSlice, Kind::Pod];

/// How often the controller asks discovery whether ServiceImports are served yet.
const SERVICE_IMPORT_DISCOVERY_EVERY: Duration = Duration::from_secs(10);

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Service => "services",
            Self::EndpointSlice => "endpointslices",
            Self::Pod => "pods",
            Self::ImportedSlice => "endpointslices_multicluster",
            Self::ServiceImport => "serviceimports",
        }
    }
}

/// One watch event, already reduced to what DNS needs.
enum Update {
    /// A re-list begins: collect into a fresh set.
    Restart(Kind),
    /// An object as it is now (`None` view: present in the API but nothing DNS publishes).
    Upsert(Kind, String, Option<SlimObject>, Option<u64>),
    Delete(Kind, String),
    /// The re-list is complete: the fresh set replaces the old one.
    Synced(Kind),
    /// The watch failed; kube-rs retries with backoff.
    Failed(Kind, String),
}

#[derive(PartialEq)]
enum SlimObject {
    Namespace(roster_shared::NamespaceView),
    Service(roster_shared::ServiceView),
    EndpointSlice(roster_shared::EndpointSliceView),
    Pod(roster_shared::PodView),
    ImportedSlice(roster_shared::EndpointSliceView),
    ServiceImport(roster_shared::ServiceImportView),
}

fn key_of<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    match &meta.namespace {
        Some(namespace) => object_key(namespace, meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Update> + Send>>;

fn watch_kind<K>(
    api: Api<K>,
    kind: Kind,
    convert: fn(&K) -> Result<Option<SlimObject>, slim::ConvertError>,
) -> UpdateStream
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    watch_selected(api, kind, convert, watcher::Config::default())
}

/// [`watch_kind`] with a watcher config (e.g. a label selector).
fn watch_selected<K>(
    api: Api<K>,
    kind: Kind,
    convert: fn(&K) -> Result<Option<SlimObject>, slim::ConvertError>,
    config: watcher::Config,
) -> UpdateStream
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let config = config.any_semantic();
    let mut warned = WarnOnce::new(WARN_MEMORY);
    let stream = watcher::watcher(api, config).default_backoff().map(move |event| match event {
        Ok(Event::Init) => Update::Restart(kind),
        Ok(Event::InitDone) => Update::Synced(kind),
        Ok(Event::Apply(object) | Event::InitApply(object)) => {
            let (update, problems) = convert_object(kind, &object, convert, &mut warned);
            for problem in problems {
                warn!(?kind, object = %key_of(&object), %problem, "object not fully published in DNS");
            }
            update
        }
        Ok(Event::Delete(object)) => Update::Delete(kind, key_of(&object)),
        Err(error) => Update::Failed(kind, error.to_string()),
    });
    Box::pin(stream)
}

/// One applied object as an update, with what to warn about: nothing for a version already warned
/// about (re-lists and status updates repeat an object many times).
fn convert_object<K: Resource>(
    kind: Kind,
    object: &K,
    convert: fn(&K) -> Result<Option<SlimObject>, slim::ConvertError>,
    warned: &mut WarnOnce,
) -> (Update, Vec<String>) {
    let key = key_of(object);
    let trigger = trigger_time(object.meta());
    let (view, mut problems) = match convert(object) {
        Ok(view) => {
            let notes = view.as_ref().map(notes).unwrap_or_default();
            (view, notes)
        }
        Err(error) => (None, vec![format!("object ignored: {error}")]),
    };
    if !problems.is_empty() && !warned.first_time(object.meta()) {
        problems.clear();
    }
    (Update::Upsert(kind, key, view, trigger), problems)
}

/// What a converted object loses in DNS (names that cannot be labels).
fn notes(view: &SlimObject) -> Vec<String> {
    match view {
        SlimObject::Service(service) => slim::service_notes(service),
        SlimObject::EndpointSlice(slice) => slim::endpoint_slice_notes(slice),
        SlimObject::ImportedSlice(slice) => slim::imported_slice_notes(slice),
        SlimObject::Namespace(_) | SlimObject::Pod(_) | SlimObject::ServiceImport(_) => Vec::new(),
    }
}

/// Object versions remembered per kind so that each is warned about once.
const WARN_MEMORY: usize = 4096;

/// Remembers the last `capacity` object versions (uid and resourceVersion) warned about, oldest
/// forgotten first: bounded memory, and a version seen again (a re-list, a no-op update) stays quiet.
struct WarnOnce {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl WarnOnce {
    fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity }
    }

    /// True the first time this version of the object is seen (and always for objects without uid
    /// and resourceVersion, which only tests build).
    fn first_time(&mut self, meta: &ObjectMeta) -> bool {
        let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) else { return true };
        let key = (uid.clone(), version.clone());
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

/// The annotation the EndpointSlice controller sets to when the change that updated a slice happened.
const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The trigger time of an object's change in Unix milliseconds: the annotation when present and
/// parseable (RFC 3339), else now — when the change arrived.
fn trigger_time(meta: &ObjectMeta) -> Option<u64> {
    let annotated = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGER_ANNOTATION))
        .and_then(|text| text.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .and_then(|ts| u64::try_from(ts.as_millisecond()).ok());
    Some(annotated.unwrap_or_else(now_ms))
}

/// The views of every kind, folded into an incremental synthesis as they arrive; `pending` collects a
/// re-list until it completes.
struct Views {
    synthesis: IncrementalSynthesis,
    pending: BTreeMap<Kind, BTreeMap<String, SlimObject>>,
    synced: BTreeMap<Kind, bool>,
    /// The earliest trigger among changes not yet published, with the kind of service it concerns.
    trigger: Option<Trigger>,
}

impl Views {
    fn new(config: SynthConfig) -> Self {
        Self {
            synthesis: IncrementalSynthesis::new(config),
            pending: BTreeMap::new(),
            synced: BTreeMap::new(),
            trigger: None,
        }
    }

    /// Takes in one update; true when the records may have changed.
    fn apply(&mut self, update: Update, metrics: &ControllerMetrics) -> bool {
        let kind_label = |kind: Kind| KindLabel { kind: kind.label() };
        match &update {
            Update::Restart(kind) => metrics.watch_restarts.get_or_create(&kind_label(*kind)).inc(),
            Update::Failed(kind, _) => metrics.watch_errors.get_or_create(&kind_label(*kind)).inc(),
            Update::Upsert(kind, ..) | Update::Delete(kind, _) => {
                metrics.watch_events.get_or_create(&kind_label(*kind)).inc()
            }
            Update::Synced(_) => 0,
        };
        match update {
            Update::Restart(kind) => {
                self.pending.insert(kind, BTreeMap::new());
                false
            }
            Update::Upsert(kind, key, view, trigger) => {
                let service_kind = service_kind_of(&view);
                if let Some(pending) = self.pending.get_mut(&kind) {
                    match view {
                        Some(view) => pending.insert(key, view),
                        None => pending.remove(&key),
                    };
                    return false;
                }
                // Most updates (pod status, slice metadata) leave the slim view as it was: those
                // change nothing.
                let changed = match view {
                    Some(view) => self.upsert(view),
                    None => self.remove(kind, &key),
                };
                if let (true, Some(unix_ms)) = (changed, trigger)
                    && self.trigger.as_ref().is_none_or(|t| unix_ms < t.unix_ms)
                {
                    self.trigger = Some(Trigger { unix_ms, service_kind: service_kind.to_owned() });
                }
                changed
            }
            Update::Delete(kind, key) => {
                if let Some(pending) = self.pending.get_mut(&kind) {
                    pending.remove(&key);
                }
                self.remove(kind, &key) && !self.pending.contains_key(&kind)
            }
            Update::Synced(kind) => {
                let fresh = self.pending.remove(&kind).unwrap_or_default();
                let gone: Vec<String> = self.keys(kind).filter(|key| !fresh.contains_key(*key)).cloned().collect();
                let mut changed = false;
                for key in gone {
                    changed |= self.remove(kind, &key);
                }
                for view in fresh.into_values() {
                    changed |= self.upsert(view);
                }
                let first = self.synced.insert(kind, true).is_none();
                changed || first
            }
            Update::Failed(kind, error) => {
                warn!(?kind, %error, "watch failed; retrying");
                false
            }
        }
    }

    fn upsert(&mut self, view: SlimObject) -> bool {
        match view {
            SlimObject::Namespace(view) => self.synthesis.upsert_namespace(view),
            SlimObject::Service(view) => self.synthesis.upsert_service(view),
            SlimObject::EndpointSlice(view) => self.synthesis.upsert_endpoint_slice(view),
            SlimObject::Pod(view) => self.synthesis.upsert_pod(view),
            SlimObject::ImportedSlice(view) => self.synthesis.upsert_imported_slice(view),
            SlimObject::ServiceImport(view) => self.synthesis.upsert_service_import(view),
        }
    }

    fn remove(&mut self, kind: Kind, key: &str) -> bool {
        match kind {
            Kind::Namespace => self.synthesis.remove_namespace(key),
            Kind::Service => self.synthesis.remove_service(key),
            Kind::EndpointSlice => self.synthesis.remove_endpoint_slice(key),
            Kind::Pod => self.synthesis.remove_pod(key),
            Kind::ImportedSlice => self.synthesis.remove_imported_slice(key),
            Kind::ServiceImport => self.synthesis.remove_service_import(key),
        }
    }

    /// The keys of the objects of `kind` that the records are built from now.
    fn keys(&self, kind: Kind) -> Box<dyn Iterator<Item = &String> + '_> {
        let state = self.synthesis.state();
        match kind {
            Kind::Namespace => Box::new(state.namespaces.keys()),
            Kind::Service => Box::new(state.services.keys()),
            Kind::EndpointSlice => Box::new(state.endpoint_slices.keys()),
            Kind::Pod => Box::new(state.pods.keys()),
            Kind::ImportedSlice => Box::new(state.imported_slices.keys()),
            Kind::ServiceImport => Box::new(state.service_imports.keys()),
        }
    }

    fn all_synced(&self) -> bool {
        KINDS.iter().all(|kind| self.synced.get(kind).copied().unwrap_or(false))
    }
}

/// CoreDNS's `service_kind` label for a changed object (EndpointSlices of headless services are
/// the common case; everything else counts as `cluster_ip`).
fn service_kind_of(view: &Option<SlimObject>) -> &'static str {
    match view {
        Some(SlimObject::Service(service)) if service.kind == ServiceKind::Headless => "headless_with_selector",
        Some(SlimObject::EndpointSlice(_)) => "headless_with_selector",
        _ => "cluster_ip",
    }
}

fn convert_namespace(o: &Namespace) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::namespace_view(o).map(|v| Some(SlimObject::Namespace(v)))
}

fn convert_service(o: &Service) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::service_view(o).map(|v| Some(SlimObject::Service(v)))
}

fn convert_endpoint_slice(o: &EndpointSlice) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::endpoint_slice_view(o).map(|v| v.map(SlimObject::EndpointSlice))
}

fn convert_pod(o: &Pod) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::pod_view(o).map(|v| Some(SlimObject::Pod(v)))
}

fn convert_imported_slice(o: &EndpointSlice) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::imported_slice_view(o).map(|v| v.map(SlimObject::ImportedSlice))
}

fn convert_service_import(o: &ServiceImport) -> Result<Option<SlimObject>, slim::ConvertError> {
    slim::service_import_view(o).map(|v| Some(SlimObject::ServiceImport(v)))
}

/// The multicluster watches: the slices labelled with a ServiceImport's name (a label selector, as
/// CoreDNS's informer), and ServiceImports once discovery shows the API serves them. The CRD is looked
/// for every 10 s until it appears, so installing it later needs no restart.
fn multicluster_streams(client: &Client) -> Vec<UpdateStream> {
    let slices = watch_selected(
        Api::<EndpointSlice>::all(client.clone()),
        Kind::ImportedSlice,
        convert_imported_slice,
        watcher::Config::default().labels(slim::MULTICLUSTER_SERVICE_NAME_LABEL),
    );
    let discovery = client.clone();
    let imports = futures::stream::once(async move {
        wait_until_served(&discovery).await;
        watch_kind(Api::<ServiceImport>::all(discovery), Kind::ServiceImport, convert_service_import)
    })
    .flatten();
    vec![slices, Box::pin(imports)]
}

/// Returns once discovery lists `multicluster.x-k8s.io/v1alpha1` `serviceimports`.
async fn wait_until_served(client: &Client) {
    let mut said = false;
    loop {
        match service_import::served(client).await {
            Ok(true) => {
                info!("ServiceImports are served; watching them");
                return;
            }
            Ok(false) if !said => {
                info!(
                    api = service_import::API_VERSION,
                    "ServiceImports are not served (no CRD); looking again every 10 s"
                );
                said = true;
            }
            Ok(false) => {}
            Err(error) => warn!(%error, "discovery of ServiceImports failed; retrying"),
        }
        tokio::time::sleep(SERVICE_IMPORT_DISCOVERY_EVERY).await;
    }
}

/// Watches the cluster through `client` and publishes into `hub` until the process ends. `synced`
/// turns true once every kind has been listed.
pub async fn run(client: Client, config: SynthConfig, hub: Hub, synced: watch::Sender<bool>) {
    let streams: Vec<UpdateStream> = vec![
        watch_kind(Api::<Namespace>::all(client.clone()), Kind::Namespace, convert_namespace),
        watch_kind(Api::<Service>::all(client.clone()), Kind::Service, convert_service),
        watch_kind(Api::<EndpointSlice>::all(client.clone()), Kind::EndpointSlice, convert_endpoint_slice),
        watch_kind(Api::<Pod>::all(client.clone()), Kind::Pod, convert_pod),
    ];
    let streams = match &config.multicluster_zone {
        Some(_) => streams.into_iter().chain(multicluster_streams(&client)).collect(),
        None => streams,
    };
    let mut updates = futures::stream::select_all(streams);
    let mut views = Views::new(config);
    while let Some(update) = updates.next().await {
        let metrics = hub.metrics().clone();
        let mut changed = views.apply(update, &metrics);
        // Take in everything already queued before synthesising once for the whole batch.
        while let Some(Some(update)) = updates.next().now_or_never() {
            changed |= views.apply(update, &metrics);
        }
        if !changed || !views.all_synced() {
            continue;
        }
        let trigger = views.trigger.take();
        if let Some(generation) = hub.publish_incremental(&mut views.synthesis, trigger) {
            debug!(generation, "published");
        }
        if !*synced.borrow() {
            info!("every watch has synced; records published");
            synced.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(name: &str, uid: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("demo".to_owned()),
            uid: Some(uid.to_owned()),
            resource_version: Some(version.to_owned()),
            ..ObjectMeta::default()
        }
    }

    /// A valid pod with a 72-character name (a DNS-1123 subdomain) is taken in, silently, and its
    /// pod record is published.
    #[test]
    fn a_pod_with_a_long_valid_name_is_published() {
        let long = "p".repeat(72);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": long, "namespace": "demo", "uid": "u1", "resourceVersion": "1"},
            "status": {"podIP": "10.244.0.7"}
        }))
        .unwrap();
        let mut warned = WarnOnce::new(8);
        let (update, problems) = convert_object(Kind::Pod, &pod, convert_pod, &mut warned);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(matches!(&update, Update::Upsert(Kind::Pod, _, Some(SlimObject::Pod(_)), _)));
        let config = SynthConfig {
            pod_mode: roster_shared::PodMode::Verified,
            ..SynthConfig::new(roster_shared::DomainName::parse("cluster.local").unwrap())
        };
        let mut views = Views::new(config.clone());
        let metrics = ControllerMetrics::new();
        assert!(views.apply(update, &metrics));
        assert_eq!(views.synthesis.state().pods.len(), 1);
        let zone = roster_shared::synthesize(views.synthesis.state(), &config);
        let pod_name = roster_shared::DomainName::parse("10-244-0-7.demo.pod.cluster.local").unwrap();
        assert_eq!(zone.names[&pod_name], vec![roster_shared::RData::A { ip: [10, 244, 0, 7].into() }]);
    }

    /// A slice whose endpoint hostname is not a label is published (that endpoint by its dashed
    /// address) and warned about once per version, however often the watch repeats it.
    #[test]
    fn problems_are_warned_once_per_object_version() {
        let slice = |version: &str| -> EndpointSlice {
            let mut slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.7"], "hostname": "db.primary"}]
            }))
            .unwrap();
            slice.metadata = meta("db-abcde", "u2", version);
            slice.metadata.labels = Some([(slim::SERVICE_NAME_LABEL.to_owned(), "db".to_owned())].into());
            slice
        };
        let mut warned = WarnOnce::new(8);
        let (update, problems) = convert_object(Kind::EndpointSlice, &slice("5"), convert_endpoint_slice, &mut warned);
        assert!(matches!(update, Update::Upsert(_, _, Some(SlimObject::EndpointSlice(_)), _)));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("db.primary") && problems[0].contains("10-244-0-7"), "{}", problems[0]);
        for _ in 0..3 {
            let (_, again) = convert_object(Kind::EndpointSlice, &slice("5"), convert_endpoint_slice, &mut warned);
            assert!(again.is_empty(), "the same version again: no warning");
        }
        let (_, next) = convert_object(Kind::EndpointSlice, &slice("6"), convert_endpoint_slice, &mut warned);
        assert_eq!(next.len(), 1, "a new version is warned about");
    }

    #[test]
    fn warn_once_memory_is_bounded() {
        let mut warned = WarnOnce::new(3);
        for i in 0..10 {
            assert!(warned.first_time(&meta("x", &format!("u{i}"), "1")));
        }
        assert_eq!(warned.seen.len(), 3);
        assert_eq!(warned.order.len(), 3);
        assert!(!warned.first_time(&meta("x", "u9", "1")), "recent versions are remembered");
        assert!(warned.first_time(&meta("x", "u0", "1")), "the oldest are forgotten");
    }
}
