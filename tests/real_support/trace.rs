//! What a set's controller does, as anyone can observe it through the API: pods and claims created and
//! deleted (in order), ControllerRevisions, every distinct status of the set, and the Events about it.
//! Recorded from watches, one stream per kind (their relative order is not observable), and
//! normalised so that two controllers' traces compare: revision names become `rev1`, `rev2`… in order
//! of appearance, and roster's own kind name reads as the StatefulSet it imitates.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Api, Client};

/// The streams of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    Pods,
    Claims,
    Revisions,
    Status,
    Events,
    /// The claims' owners when the step settled (upstream sets them after creating a claim, roster
    /// when creating it: the state compares, the writes do not).
    ClaimOwners,
}

#[derive(Default)]
struct Shared {
    lines: Vec<(Stream, String)>,
    last_change: Option<Instant>,
    /// Live claims' owners, by claim name.
    claim_owners: BTreeMap<String, Vec<String>>,
    /// Pods not terminating, by UID: their phase and Ready condition.
    live_pods: HashMap<String, PodState>,
}

/// What a pod's kubelet (kwok, or the stand-in's) has reported.
struct PodState {
    phase: String,
    ready: bool,
}

/// The namespace's pods as the kubelet reports them, for deciding that a step has settled.
pub struct Pods {
    /// Pods no kubelet has started yet (phase Pending): a step with one is still on its way.
    pub starting: usize,
    /// Pods Running with Ready=True: what the set's readyReplicas must count once its controller caught up.
    pub running_ready: usize,
}

/// A running recorder for one namespace.
pub struct Trace {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Mutex<Shared>>,
}

/// One step's observations, per stream, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepTrace {
    pub label: String,
    pub streams: BTreeMap<Stream, Vec<String>>,
}

impl StepTrace {
    pub fn render(&self) -> String {
        let mut text = format!("## {}\n", self.label);
        for (stream, lines) in &self.streams {
            text.push_str(&format!("  {stream:?}:\n"));
            for line in lines {
                text.push_str(&format!("    {line}\n"));
            }
        }
        text
    }
}

fn push(shared: &Arc<Mutex<Shared>>, stream: Stream, line: String) {
    let mut shared = shared.lock().unwrap();
    shared.lines.push((stream, line));
    shared.last_change = Some(Instant::now());
}

fn label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> String {
    meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default()
}

impl Trace {
    /// Starts recording namespace `namespace` of the cluster behind `kubeconfig`, for the set kind
    /// `kind` (`StatefulSet` or `IdentitySet`) named `set`.
    pub fn start(kubeconfig: &Path, namespace: &str, kind: &str, set: &str) -> Trace {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let client = runtime.block_on(async {
            let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.unwrap();
            Client::try_from(config).unwrap()
        });
        let (ns, set) = (namespace.to_owned(), set.to_owned());
        runtime.spawn(watch_pods(Api::namespaced(client.clone(), &ns), shared.clone()));
        runtime.spawn(watch_claims(Api::namespaced(client.clone(), &ns), shared.clone()));
        runtime.spawn(watch_revisions(Api::namespaced(client.clone(), &ns), shared.clone()));
        runtime.spawn(watch_events(Api::namespaced(client.clone(), &ns), shared.clone()));
        let gvk = match kind {
            "StatefulSet" => GroupVersionKind::gvk("apps", "v1", "StatefulSet"),
            _ => GroupVersionKind::gvk("roster.dev", "v1", "IdentitySet"),
        };
        let resource = ApiResource::from_gvk(&gvk);
        runtime.spawn(watch_status(Api::namespaced_with(client, &ns, &resource), set, shared.clone()));
        Trace { runtime, shared }
    }

    /// Number of raw lines so far (a mark for [`Trace::since`]).
    pub fn mark(&self) -> usize {
        self.shared.lock().unwrap().lines.len()
    }

    /// Time since the last observed change.
    pub fn quiet_for(&self) -> Duration {
        self.shared.lock().unwrap().last_change.map(|t| t.elapsed()).unwrap_or(Duration::MAX)
    }

    /// Raw lines since `mark`, per stream.
    pub fn since(&self, mark: usize) -> BTreeMap<Stream, Vec<String>> {
        let shared = self.shared.lock().unwrap();
        let mut out: BTreeMap<Stream, Vec<String>> = BTreeMap::new();
        for (stream, line) in shared.lines.iter().skip(mark) {
            out.entry(*stream).or_default().push(line.clone());
        }
        out
    }

    /// The live pods' progress.
    pub fn pods(&self) -> Pods {
        let shared = self.shared.lock().unwrap();
        let pods = shared.live_pods.values();
        Pods {
            starting: pods.clone().filter(|p| p.phase.is_empty() || p.phase == "Pending").count(),
            running_ready: pods.filter(|p| p.phase == "Running" && p.ready).count(),
        }
    }

    /// The live claims' owners, one line per claim.
    pub fn claim_owners(&self) -> Vec<String> {
        let shared = self.shared.lock().unwrap();
        shared.claim_owners.iter().map(|(name, owners)| format!("{name} owners={owners:?}")).collect()
    }

    pub fn stop(self) {
        self.runtime.shutdown_background();
    }
}

async fn watch_pods(api: Api<Pod>, shared: Arc<Mutex<Shared>>) {
    let mut seen: HashMap<String, bool> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let (pod, deleted) = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => continue,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !seen.contains_key(&uid) {
            seen.insert(uid.clone(), false);
            let revision = label(&pod.metadata, "controller-revision-hash");
            push(&shared, Stream::Pods, format!("create {name} at {revision}"));
        }
        let gone = deleted || pod.metadata.deletion_timestamp.is_some();
        {
            let mut shared = shared.lock().unwrap();
            if gone {
                shared.live_pods.remove(&uid);
            } else {
                let status = pod.status.as_ref();
                let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                shared.live_pods.insert(uid.clone(), PodState { phase, ready });
            }
        }
        let terminating = seen.get_mut(&uid).unwrap();
        if gone && !*terminating {
            *terminating = true;
            push(&shared, Stream::Pods, format!("delete {name}"));
        }
    }
}

async fn watch_claims(api: Api<PersistentVolumeClaim>, shared: Arc<Mutex<Shared>>) {
    let mut seen: HashMap<String, bool> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let (claim, deleted) = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => continue,
        };
        let name = claim.metadata.name.clone().unwrap_or_default();
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let owners: Vec<String> = claim
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| format!("{}/{}", normalise_kind(&o.kind), o.name))
            .collect();
        {
            let mut shared = shared.lock().unwrap();
            if deleted {
                shared.claim_owners.remove(&name);
            } else {
                shared.claim_owners.insert(name.clone(), owners);
            }
        }
        if !seen.contains_key(&uid) {
            seen.insert(uid.clone(), false);
            push(&shared, Stream::Claims, format!("create {name}"));
        }
        let terminating = seen.get_mut(&uid).unwrap();
        if (deleted || claim.metadata.deletion_timestamp.is_some()) && !*terminating {
            *terminating = true;
            push(&shared, Stream::Claims, format!("delete {name}"));
        }
    }
}

async fn watch_revisions(api: Api<ControllerRevision>, shared: Arc<Mutex<Shared>>) {
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let (rev, deleted) = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => continue,
        };
        let name = rev.metadata.name.clone().unwrap_or_default();
        if deleted {
            seen.remove(&name);
            push(&shared, Stream::Revisions, format!("delete {name}"));
        } else if seen.get(&name) != Some(&rev.revision) {
            let verb = if seen.contains_key(&name) { "renumber" } else { "create" };
            seen.insert(name.clone(), rev.revision);
            push(&shared, Stream::Revisions, format!("{verb} {name} revision={}", rev.revision));
        }
    }
}

async fn watch_events(api: Api<Event>, shared: Arc<Mutex<Shared>>) {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = event else { continue };
        let kind = e.involved_object.kind.clone().unwrap_or_default();
        if kind != "StatefulSet" && kind != "IdentitySet" {
            continue;
        }
        let (kind, reason, message) = claim_race(
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            normalise_kind(&e.message.clone().unwrap_or_default()),
        );
        if seen.insert((reason.clone(), message.clone())) {
            push(&shared, Stream::Events, format!("{kind} {reason}: {message}"));
        }
    }
}

async fn watch_status(api: Api<DynamicObject>, set: String, shared: Arc<Mutex<Shared>>) {
    let mut last = String::new();
    let config = watcher::Config::default().fields(&format!("metadata.name={set}"));
    let mut events = watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let (object, deleted) = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => continue,
        };
        let line = if deleted { "deleted".to_owned() } else { status_line(&object.data["status"]) };
        if line != last && !line.is_empty() {
            last = line.clone();
            push(&shared, Stream::Status, line);
        }
    }
}

/// Upstream creates a pod, then updates its claims' owners for the retention policy; when that update
/// loses a race (the PV controller binding the claim meanwhile) it reports `FailedUpdate` instead of the
/// pod's `SuccessfulCreate`, and retries. roster sets the owners when creating the claim, so the race
/// does not exist: the pair reads as the creation it stands for (docs/identity-divergences.md).
fn claim_race(kind: String, reason: String, message: String) -> (String, String, String) {
    let lost_race = reason == "FailedUpdate"
        && message.contains("could not update claim")
        && message.contains("the object has been modified");
    let words: Vec<&str> = message.split(' ').collect();
    match (lost_race, words.as_slice()) {
        (true, ["Update", "Pod", pod, "in", "StatefulSet", set, ..]) => (
            "Normal".to_owned(),
            "SuccessfulCreate".to_owned(),
            format!("Create Pod {pod} in StatefulSet {set} successful"),
        ),
        _ => (kind, reason, message),
    }
}

/// The status fields a user reads (observedGeneration and collisionCount are bookkeeping).
fn status_line(status: &serde_json::Value) -> String {
    if status.is_null() {
        return String::new();
    }
    let n = |key: &str| status[key].as_i64().unwrap_or(0);
    let s = |key: &str| status[key].as_str().unwrap_or("").to_owned();
    let conditions: Vec<String> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{}={}", c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or("")))
        .collect();
    format!(
        "replicas={} ready={} current={} updated={} available={} currentRevision={} updateRevision={}{}",
        n("replicas"),
        n("readyReplicas"),
        n("currentReplicas"),
        n("updatedReplicas"),
        n("availableReplicas"),
        s("currentRevision"),
        s("updateRevision"),
        if conditions.is_empty() { String::new() } else { format!(" conditions={conditions:?}") }
    )
}

/// roster's kind reads as the StatefulSet it imitates; client-go's event aggregation prefix (an
/// artefact of the recorder library after ten similar Events, not of the controller) is dropped.
fn normalise_kind(text: &str) -> String {
    text.replace("IdentitySet", "StatefulSet").replace("(combined from similar events): ", "")
}

/// Rewrites revision names (`<set>-<hash>`) to `rev1`, `rev2`… in order of first appearance across
/// the whole scenario, so that traces of two controllers (or two kinds) compare.
pub fn normalise(steps: &mut [StepTrace], set: &str) {
    let prefix = format!("{set}-");
    let mut names: HashMap<String, String> = HashMap::new();
    let rewrite = |line: &str, names: &mut HashMap<String, String>| -> String {
        line.split(' ')
            .map(|word| {
                let (head, tail) = match word.split_once('=') {
                    Some((k, v)) => (format!("{k}="), v),
                    None => (String::new(), word),
                };
                let bare = tail.trim_matches(|c| c == '"' || c == ',' || c == '[' || c == ']');
                let is_revision = bare.strip_prefix(&prefix).is_some_and(|hash| {
                    hash.len() >= 6
                        && hash.chars().all(|c| c.is_ascii_alphanumeric())
                        && !hash.chars().all(|c| c.is_ascii_digit())
                });
                if is_revision {
                    let next = names.len() + 1;
                    let short = names.entry(bare.to_owned()).or_insert_with(|| format!("rev{next}")).clone();
                    format!("{head}{}", tail.replace(bare, &short))
                } else {
                    word.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    for step in steps.iter_mut() {
        for lines in step.streams.values_mut() {
            for line in lines.iter_mut() {
                *line = rewrite(line, &mut names);
            }
        }
    }
}
