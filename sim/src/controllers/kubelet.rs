//! A kubelet (and scheduler) stand-in: binds pods to the fake nodes, walks them through
//! Pending → ContainerCreating → Running → Ready, gives each new pod a new IP, honours the test
//! annotations, and finishes graceful deletions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bootstrap::builtin;
use crate::meta::{self, path, path_str};
use crate::resources::ResourceType;
use crate::store::{DeleteOptions, Store, Subresource};
use crate::{FAIL_ANNOTATION, READY_ANNOTATION, SimConfig};

/// Per-pod timers, by uid (not persisted: after a restart the clocks start again).
pub struct Kubelet {
    start_delay: Duration,
    ready_delay: Duration,
    termination_cap: Duration,
    created: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
    terminating: HashMap<String, Instant>,
    killing: std::collections::HashSet<String>,
    /// The readiness this kubelet last reported per pod: it speaks again only when its own view changes,
    /// so a status patch from outside (a pod marked unready or failed by a test) stands, as with kwok.
    reported: HashMap<String, bool>,
    pods: ResourceType,
    nodes: ResourceType,
    events: Option<ResourceType>,
}

fn annotation<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn label<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod.get("metadata").and_then(|m| m.get("labels")).and_then(|l| l.get(key)).and_then(Value::as_str).unwrap_or("")
}

/// The label that keeps a pod Running but never Ready, as in the real test cluster's kwok stages.
const NEVER_READY_LABEL: &str = "roster.dev/test-never-ready";

fn condition(kind: &str, ok: bool, now: &str) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now})
}

fn containers(pod: &Value) -> Vec<(String, String)> {
    path(pod, "spec.containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (path_str(c, "name").to_owned(), path_str(c, "image").to_owned()))
        .collect()
}

/// What the kubelet reports for a pod in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Creating,
    Running { ready: bool },
    Failed,
}

fn status_for(pod: &Value, state: State, now: &str) -> Value {
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    let started = path_str(pod, "status.startTime");
    let started = if started.is_empty() { now.to_owned() } else { started.to_owned() };
    let statuses: Vec<Value> = containers(pod)
        .into_iter()
        .map(|(name, image)| {
            let (st, ready, started_flag) = match state {
                State::Creating => (json!({"waiting": {"reason": "ContainerCreating"}}), false, false),
                State::Running { ready } => (json!({"running": {"startedAt": started}}), ready, true),
                State::Failed => (
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": now}}),
                    false,
                    false,
                ),
            };
            json!({
                "name": name, "image": image, "imageID": format!("sim://{image}"),
                "containerID": if started_flag { json!(format!("sim://{name}")) } else { Value::Null },
                "ready": ready, "started": started_flag, "restartCount": 0, "state": st,
            })
        })
        .collect();
    let (phase, ready) = match state {
        State::Creating => ("Pending", false),
        State::Running { ready } => ("Running", ready),
        State::Failed => ("Failed", false),
    };
    let keep_time = |kind: &str, value: bool| -> Value {
        let existing = path(pod, "status.conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| path_str(c, "type") == kind))
            .filter(|c| path_str(c, "status") == if value { "True" } else { "False" });
        existing.cloned().unwrap_or_else(|| condition(kind, value, now))
    };
    if let Some(m) = status.as_object_mut() {
        m.insert("phase".into(), json!(phase));
        m.insert("startTime".into(), json!(started));
        m.insert("containerStatuses".into(), json!(statuses));
        m.insert(
            "conditions".into(),
            json!([
                keep_time("PodReadyToStartContainers", state != State::Creating),
                keep_time("Initialized", true),
                keep_time("Ready", ready),
                keep_time("ContainersReady", ready),
                keep_time("PodScheduled", true),
            ]),
        );
    }
    status
}

impl Kubelet {
    /// A kubelet with the configured delays.
    pub fn new(config: &SimConfig) -> Self {
        Self {
            start_delay: config.start_delay,
            ready_delay: config.ready_delay,
            termination_cap: config.termination_cap,
            created: HashMap::new(),
            running: HashMap::new(),
            terminating: HashMap::new(),
            killing: std::collections::HashSet::new(),
            reported: HashMap::new(),
            pods: builtin("", "pods"),
            nodes: builtin("", "nodes"),
            events: config.kubelet_events.then(|| builtin("", "events")),
        }
    }

    /// One pass over every pod.
    pub fn reconcile(&mut self, store: &Store) {
        let (pods, _) = store.list(&self.pods, None);
        let (nodes, _) = store.list(&self.nodes, None);
        // the scheduler's part: cordoned nodes (`kubectl cordon`/`drain`) take no new pods
        let node_names: Vec<(String, Value)> = nodes
            .iter()
            .filter(|n| path(n, "spec.unschedulable").and_then(Value::as_bool) != Some(true))
            .map(|n| (meta::name(n).to_owned(), path(n, "metadata.labels").cloned().unwrap_or(json!({}))))
            .collect();
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for p in &pods {
            *per_node.entry(path_str(p, "spec.nodeName").to_owned()).or_default() += 1;
        }
        let live: std::collections::HashSet<String> =
            pods.iter().map(|p| meta::meta_str(p, "uid").to_owned()).collect();
        self.created.retain(|k, _| live.contains(k));
        self.running.retain(|k, _| live.contains(k));
        self.terminating.retain(|k, _| live.contains(k));
        self.killing.retain(|k| live.contains(k));
        self.reported.retain(|k, _| live.contains(k));
        for pod in pods {
            if let Err(e) = self.step(store, &pod, &node_names, &mut per_node) {
                tracing::debug!(pod = meta::name(&pod), error = %e, "kubelet step");
            }
        }
    }

    fn step(
        &mut self,
        store: &Store,
        pod: &Value,
        nodes: &[(String, Value)],
        per_node: &mut HashMap<String, usize>,
    ) -> Result<(), crate::ApiError> {
        let ns = meta::namespace(pod);
        let name = meta::name(pod);
        let uid = meta::meta_str(pod, "uid").to_owned();
        let now_s = meta::now_rfc3339();
        let node = path_str(pod, "spec.nodeName");
        let phase = path_str(pod, "status.phase");
        if meta::is_terminating(pod) {
            let since = *self.terminating.entry(uid).or_insert_with(Instant::now);
            let grace = pod
                .get("metadata")
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let wait = Duration::from_secs(u64::try_from(grace).unwrap_or(0)).min(self.termination_cap);
            let ready_now = path(pod, "status.conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| path_str(c, "type") == "Ready"))
                .is_some_and(|c| path_str(c, "status") == "True");
            if !self.terminating_seen(pod) {
                for (c, _) in containers(pod) {
                    self.event(store, pod, "kubelet", "Killing", &format!("Stopping container {c}"));
                }
            }
            if since.elapsed() >= wait && !node.is_empty() {
                store.delete(
                    &self.pods,
                    ns,
                    name,
                    &DeleteOptions { grace_period_seconds: Some(0), ..DeleteOptions::default() },
                )?;
            } else if ready_now && phase == "Running" {
                let status = status_for(pod, State::Running { ready: false }, &now_s);
                self.write_status(store, pod, status)?;
            }
            return Ok(());
        }
        if node.is_empty() {
            // nodeSelector narrows the candidates; among them, the least loaded
            let selector = path(pod, "spec.nodeSelector").and_then(Value::as_object);
            let fits = |labels: &Value| selector.is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
            let Some(target) = nodes
                .iter()
                .filter(|(_, labels)| fits(labels))
                .map(|(n, _)| n)
                .min_by_key(|n| per_node.get(*n).copied().unwrap_or(0))
            else {
                return Ok(());
            };
            *per_node.entry(target.clone()).or_default() += 1;
            let target = target.clone();
            store.mutate(&self.pods, ns, name, Subresource::Main, |old| {
                let mut o = old.clone();
                meta::set_path(&mut o, "spec.nodeName", json!(target));
                Ok(o)
            })?;
            let msg = format!("Successfully assigned {ns}/{name} to {target}");
            self.event(store, pod, "default-scheduler", "Scheduled", &msg);
            return Ok(());
        }
        if matches!(phase, "Failed" | "Succeeded") {
            return Ok(());
        }
        if annotation(pod, FAIL_ANNOTATION) == "true" {
            let status = status_for(pod, State::Failed, &now_s);
            return self.write_status(store, pod, status);
        }
        let has_ip = !path_str(pod, "status.podIP").is_empty();
        if !has_ip {
            let ip = store.allocate_pod_ip();
            let mut status = status_for(pod, State::Creating, &now_s);
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
            status["hostIP"] = json!(node_ip(node));
            status["hostIPs"] = json!([{"ip": node_ip(node)}]);
            self.created.insert(uid, Instant::now());
            self.write_status(store, pod, status)?;
            for (c, image) in containers(pod) {
                let pulled = format!("Container image \"{image}\" already present on machine");
                self.event(store, pod, "kubelet", "Pulled", &pulled);
                self.event(store, pod, "kubelet", "Created", &format!("Created container: {c}"));
            }
            return Ok(());
        }
        if phase == "Pending" {
            let since = *self.created.entry(uid.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= self.start_delay {
                self.running.insert(uid.clone(), Instant::now());
                self.reported.insert(uid, false);
                let status = status_for(pod, State::Running { ready: false }, &now_s);
                self.write_status(store, pod, status)?;
                for (c, _) in containers(pod) {
                    self.event(store, pod, "kubelet", "Started", &format!("Started container {c}"));
                }
                return Ok(());
            }
            return Ok(());
        }
        if phase == "Running" {
            let since = *self.running.entry(uid.clone()).or_insert_with(Instant::now);
            let want_ready = annotation(pod, READY_ANNOTATION) != "false"
                && label(pod, NEVER_READY_LABEL) != "true"
                && since.elapsed() >= self.ready_delay;
            // Images are compared too: a changed container image is reported as running at once.
            let statuses = path(pod, "status.containerStatuses").and_then(Value::as_array);
            let specs = path(pod, "spec.containers").and_then(Value::as_array);
            let images_match = match (statuses, specs) {
                (Some(cs), Some(specs)) => {
                    cs.len() == specs.len() && cs.iter().zip(specs).all(|(c, spec)| c.get("image") == spec.get("image"))
                }
                _ => false,
            };
            if images_match && self.reported.get(&uid) == Some(&want_ready) {
                return Ok(());
            }
            self.reported.insert(uid, want_ready);
            let status = status_for(pod, State::Running { ready: want_ready }, &now_s);
            return self.write_status(store, pod, status);
        }
        Ok(())
    }

    /// Whether this pod's termination was already seen (its Killing events recorded).
    fn terminating_seen(&mut self, pod: &Value) -> bool {
        let uid = meta::meta_str(pod, "uid").to_owned();
        !self.killing.insert(uid)
    }

    /// Record a core/v1 Event about a pod, as the kubelet and scheduler do.
    fn event(&self, store: &Store, pod: &Value, component: &str, reason: &str, message: &str) {
        let Some(rt) = &self.events else { return };
        let now = meta::now_rfc3339();
        let node = path_str(pod, "spec.nodeName");
        let ev = json!({
            "metadata": {"name": format!("{}.{:016x}", meta::name(pod), meta::random_u64())},
            "involvedObject": {
                "kind": "Pod", "apiVersion": "v1", "namespace": meta::namespace(pod), "name": meta::name(pod),
                "uid": meta::meta_str(pod, "uid"), "resourceVersion": meta::meta_str(pod, "resourceVersion"),
            },
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "source": if component == "kubelet" { json!({"component": component, "host": node}) } else { json!({"component": component}) },
            "firstTimestamp": now, "lastTimestamp": now,
            "reportingComponent": component, "reportingInstance": if component == "kubelet" { node } else { "" },
        });
        if let Err(e) = store.create(rt, meta::namespace(pod), ev) {
            tracing::debug!(error = %e, "recording an event");
        }
    }

    fn write_status(&self, store: &Store, pod: &Value, status: Value) -> Result<(), crate::ApiError> {
        if pod.get("status") == Some(&status) {
            return Ok(());
        }
        store.mutate(&self.pods, meta::namespace(pod), meta::name(pod), Subresource::Status, |old| {
            let mut o = old.clone();
            // keep a concurrent writer's status intact: only replace when nothing changed meanwhile
            if meta::meta_str(old, "resourceVersion") != meta::meta_str(pod, "resourceVersion") {
                return Err(crate::ApiError::stale("", "pods", meta::name(pod)));
            }
            o["status"] = status;
            Ok(o)
        })?;
        Ok(())
    }
}

fn node_ip(node: &str) -> String {
    let i: u32 = node.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    format!("172.18.0.{}", i + 2)
}
