//! Scenario scripts for set controllers, written once and run against any cluster and either kind:
//! kubectl actions, each followed by waiting until the controller settles, with a [`Trace`] of what
//! the controller did per step. Comparing two runs' traces is the differential test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Out;
use super::trace::{StepTrace, Stream, Trace, normalise};

pub const V1: &str = "registry.k8s.io/nginx-slim:0.8";
pub const V2: &str = "registry.k8s.io/nginx-slim:0.9";

/// Where a scenario runs: a cluster, a namespace of its own, and the set kind.
#[derive(Clone)]
pub struct Target {
    /// Shown in reports, e.g. `upstream StatefulSet`.
    pub name: String,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    pub namespace: String,
    /// `StatefulSet` or `IdentitySet`.
    pub kind: &'static str,
}

/// One kubectl action of a scenario.
#[derive(Debug, Clone)]
pub enum Act {
    /// The headless service `nginx` and the set `web` with `replicas`, image V1, a `www` claim template,
    /// and `extra` (YAML at the spec's indentation, two spaces).
    Create {
        replicas: i32,
        extra: &'static str,
    },
    Scale(i32),
    /// Change the template's image.
    Image(&'static str),
    /// A JSON merge patch of the set.
    Patch(&'static str),
    /// A JSON patch of the set.
    JsonPatch(&'static str),
    DeletePod(&'static str),
    /// Mark a pod unready (a status patch, as a failing readiness probe would).
    Unready(&'static str),
    /// Mark a pod ready again.
    Ready(&'static str),
    /// Mark a pod Failed.
    Fail(&'static str),
    /// Delete the set, orphaning its pods or not.
    DeleteSet {
        orphan: bool,
    },
    /// Back to the previous revision: `kubectl rollout undo` for StatefulSets; for IdentitySets (which
    /// kubectl's rollout does not know) the previous image, which selects the same revision.
    UndoTo(&'static str),
}

/// A scenario: its actions and how long the controller must stay quiet to count as settled.
pub struct Scenario {
    pub name: &'static str,
    pub acts: Vec<Act>,
    pub quiet: Duration,
    /// Parallel pod management: pods of one burst are created (and deleted) concurrently, in an order
    /// that varies from run to run, so a step's lines compare as sets.
    pub unordered: bool,
}

/// Every scenario of the differential identity test.
pub fn all() -> Vec<Scenario> {
    let quiet = Duration::from_millis(2500);
    let s = |name, acts| Scenario { name, acts, quiet, unordered: false };
    let parallel = |name, acts| Scenario { name, acts, quiet, unordered: true };
    use Act::*;
    vec![
        s(
            "ordered-create-scale-delete",
            vec![Create { replicas: 3, extra: "" }, Scale(5), Scale(2), DeletePod("web-0")],
        ),
        s("rolling-update", vec![Create { replicas: 3, extra: "" }, Image(V2)]),
        s(
            "partition-staging",
            vec![
                Create {
                    replicas: 3,
                    extra: "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}\n",
                },
                Image(V2),
                Patch(r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#),
                Patch(r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#),
            ],
        ),
        s(
            "on-delete",
            vec![
                Create { replicas: 3, extra: "  updateStrategy: {type: OnDelete}\n" },
                Image(V2),
                DeletePod("web-2"),
                DeletePod("web-0"),
                DeletePod("web-1"),
            ],
        ),
        parallel(
            "parallel",
            vec![Create { replicas: 3, extra: "  podManagementPolicy: Parallel\n" }, Scale(5), Image(V2), Scale(1)],
        ),
        s(
            "scale-up-held-by-unready",
            vec![Create { replicas: 3, extra: "" }, Unready("web-1"), Scale(5), Ready("web-1")],
        ),
        s(
            "rollout-frozen-by-unready",
            vec![Create { replicas: 3, extra: "" }, Unready("web-1"), Image(V2), Ready("web-1")],
        ),
        s(
            "broken-rollout-reverted",
            vec![Create { replicas: 3, extra: "" }, JsonPatch(BREAK_TEMPLATE), JsonPatch(FIX_TEMPLATE)],
        ),
        parallel(
            "max-unavailable",
            vec![
                Create {
                    replicas: 5,
                    extra: "  podManagementPolicy: Parallel\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}\n",
                },
                Image(V2),
            ],
        ),
        Scenario {
            name: "min-ready-seconds",
            acts: vec![Create { replicas: 2, extra: "  minReadySeconds: 3\n" }, Scale(3)],
            quiet: Duration::from_secs(5),
            unordered: false,
        },
        s(
            "retention-delete",
            vec![
                Create {
                    replicas: 3,
                    extra: "  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Delete}\n",
                },
                Scale(1),
                DeleteSet { orphan: false },
            ],
        ),
        s("retention-retain", vec![Create { replicas: 3, extra: "" }, Scale(1), DeleteSet { orphan: false }]),
        s("ordinals-start", vec![Create { replicas: 2, extra: "  ordinals: {start: 5}\n" }, Scale(3), Scale(1)]),
        s("failed-pod", vec![Create { replicas: 3, extra: "" }, Fail("web-1")]),
        s("rollback", vec![Create { replicas: 3, extra: "" }, Image(V2), UndoTo(V1)]),
        s(
            "orphaned-and-recreated",
            vec![Create { replicas: 3, extra: "" }, DeleteSet { orphan: true }, Create { replicas: 3, extra: "" }],
        ),
    ]
}

/// A template whose pods never become Ready (kwok's never-ready stage, see tools/k8s/kwok/stages.yaml).
const BREAK_TEMPLATE: &str = r#"[{"op":"add","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready","value":"true"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.9"}]"#;
/// The same template reverted.
const FIX_TEMPLATE: &str = r#"[{"op":"remove","path":"/spec/template/metadata/labels/roster.dev~1test-never-ready"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.8"}]"#;

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: nginx, labels: {app: nginx}}\nspec:\n  clusterIP: None\n  selector: {app: nginx}\n  ports: [{name: web, port: 80}]\n";

fn set_manifest(kind: &str, replicas: i32, extra: &str) -> String {
    let api = if kind == "StatefulSet" { "apps/v1" } else { "roster.dev/v1" };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n  serviceName: nginx\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: nginx}}}}\n  template:\n    metadata: {{labels: {{app: nginx}}}}\n    spec:\n      \
         terminationGracePeriodSeconds: 1\n      containers:\n      - name: nginx\n        image: {V1}\n        \
         ports: [{{name: web, containerPort: 80}}]\n        volumeMounts: [{{name: www, mountPath: /usr/share/nginx/html}}]\n  \
         volumeClaimTemplates:\n  - metadata: {{name: www}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      \
         resources: {{requests: {{storage: 1Gi}}}}\n{extra}"
    )
}

impl Target {
    fn resource(&self) -> &'static str {
        if self.kind == "StatefulSet" { "statefulset" } else { "identityset" }
    }

    /// kubectl in the target's namespace.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        super::kubectl(&self.kubectl, &self.kubeconfig, &all, stdin)
    }

    fn must(&self, args: &[&str], stdin: Option<&str>) {
        let out = self.kubectl(args, stdin);
        assert!(out.ok, "[{}] kubectl {args:?}: {}{}", self.name, out.stdout, out.stderr);
    }

    fn act(&self, act: &Act) {
        let set = format!("{}/web", self.resource());
        match act {
            Act::Create { replicas, extra } => {
                self.must(&["apply", "-f", "-"], Some(SERVICE));
                self.must(&["apply", "-f", "-"], Some(&set_manifest(self.kind, *replicas, extra)));
            }
            Act::Scale(n) => self.must(&["scale", &set, &format!("--replicas={n}")], None),
            Act::Image(image) => {
                let patch = format!(
                    r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"{image}"}}]"#
                );
                self.must(&["patch", &set, "--type=json", "-p", &patch], None);
            }
            Act::Patch(patch) => self.must(&["patch", &set, "--type=merge", "-p", patch], None),
            Act::JsonPatch(patch) => self.must(&["patch", &set, "--type=json", "-p", patch], None),
            Act::DeletePod(pod) => self.must(&["delete", "pod", pod, "--wait=false"], None),
            Act::Unready(pod) => {
                self.pod_status(pod, r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#)
            }
            Act::Ready(pod) => self.pod_status(pod, r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#),
            Act::Fail(pod) => self.pod_status(pod, r#"{"status":{"phase":"Failed"}}"#),
            Act::DeleteSet { orphan } => {
                let cascade = if *orphan { "--cascade=orphan" } else { "--cascade=background" };
                self.must(&["delete", &set, cascade, "--wait=false"], None);
            }
            Act::UndoTo(image) => {
                if self.kind == "StatefulSet" {
                    self.must(&["rollout", "undo", &set], None);
                } else {
                    self.act(&Act::Image(image));
                }
            }
        }
    }

    fn pod_status(&self, pod: &str, patch: &str) {
        self.must(&["patch", "pod", pod, "--subresource=status", "--type=strategic", "-p", patch], None);
    }

    /// The set's generation, observedGeneration, replicas and readyReplicas, when it exists.
    fn set_status(&self) -> Option<SetStatus> {
        let out = self.kubectl(&["get", self.resource(), "web", "-o", "json"], None);
        if !out.ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let status = &v["status"];
        let count = |field: &str| status[field].as_i64().unwrap_or(0);
        Some(SetStatus {
            generation: v["metadata"]["generation"].as_i64()?,
            observed: count("observedGeneration"),
            replicas: count("replicas"),
            ready: count("readyReplicas"),
        })
    }

    /// Runs `scenario`, returning one normalised trace per step (and `Err` with the steps that never
    /// settled).
    pub fn run(&self, scenario: &Scenario) -> Vec<StepTrace> {
        self.must(&["create", "namespace", &self.namespace], None);
        // Pods are refused until the namespace's default ServiceAccount exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubectl(&["get", "serviceaccount", "default"], None).ok && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let trace = Trace::start(&self.kubeconfig, &self.namespace, self.kind, "web");
        std::thread::sleep(Duration::from_millis(500));
        let mut steps = Vec::new();
        for act in &scenario.acts {
            let mark = trace.mark();
            self.act(act);
            let settled = self.settle(&trace, scenario.quiet);
            let mut label = format!("{act:?}");
            if !settled {
                label.push_str(" (did not settle in 90 s)");
            }
            let mut streams = trace.since(mark);
            streams.insert(Stream::ClaimOwners, trace.claim_owners());
            if scenario.unordered {
                for stream in [Stream::Pods, Stream::Claims, Stream::Events] {
                    if let Some(lines) = streams.get_mut(&stream) {
                        lines.sort();
                    }
                }
            }
            steps.push(StepTrace { label, streams });
        }
        trace.stop();
        normalise(&mut steps, "web");
        let _ = self.kubectl(&["delete", "namespace", &self.namespace, "--wait=false"], None);
        steps
    }

    /// Waits until the set's status has caught up with its spec and with its pods, no pod is still
    /// starting, and nothing has changed for `quiet`.
    fn settle(&self, trace: &Trace, quiet: Duration) -> bool {
        let deadline = Instant::now() + Duration::from_secs(90);
        std::thread::sleep(Duration::from_millis(300));
        while Instant::now() < deadline {
            let status = self.set_status();
            let pods = trace.pods();
            // On a loaded host kwok can take seconds to start a pod, and a controller seconds to see a
            // pod turn Ready: neither is a settled step, however long the trace has been quiet.
            let caught_up = status.as_ref().is_none_or(|s| {
                s.observed >= s.generation && pods.starting == 0 && s.ready >= pods.running_ready as i64
            });
            // Unready pods that stay so (the scenarios' never-ready pods) cost a longer quiet, not a hang.
            let all_ready = status.as_ref().is_none_or(|s| s.replicas == s.ready);
            let needed = if all_ready { quiet } else { quiet.max(Duration::from_secs(8)) };
            if caught_up && trace.quiet_for() >= needed {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }
}

/// The parts of a set's status that tell whether its controller has settled.
struct SetStatus {
    generation: i64,
    observed: i64,
    replicas: i64,
    ready: i64,
}

/// The differences between an upstream run (`a`) and another run (`b`) of one scenario, step by step;
/// empty when they agree. Pods, claims (and their owners when settled), revisions and Events must be
/// equal. Status: the same status when settled, and the same sequence of revision changes
/// (currentRevision, updateRevision) — the replica counts in between depend on when each controller's
/// informers saw which pod, and vary between two runs of upstream itself (docs/identity-divergences.md).
pub fn differences(a: &[StepTrace], b: &[StepTrace]) -> Vec<String> {
    let mut out = Vec::new();
    // Each side's revision pair as the previous step left it: a status rewritten with the same pair
    // (a replica count changing as pods are orphaned, say) is not a revision change.
    let (mut x_pair, mut y_pair) = (String::new(), String::new());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let mut differ = x.label != y.label;
        for stream in [Stream::Pods, Stream::Claims, Stream::Revisions, Stream::ClaimOwners] {
            differ |= x.streams.get(&stream) != y.streams.get(&stream);
        }
        let empty = Vec::new();
        let (xe, ye) =
            (x.streams.get(&Stream::Events).unwrap_or(&empty), y.streams.get(&Stream::Events).unwrap_or(&empty));
        differ |= without_retention_recheck(xe, ye) != *ye;
        let (xs, ys) =
            (x.streams.get(&Stream::Status).unwrap_or(&empty), y.streams.get(&Stream::Status).unwrap_or(&empty));
        let (x_changes, y_changes) = (revisions(&x_pair, xs), revisions(&y_pair, ys));
        differ |= xs.last() != ys.last() || x_changes != y_changes;
        x_pair = x_changes.last().cloned().unwrap_or(x_pair);
        y_pair = y_changes.last().cloned().unwrap_or(y_pair);
        if differ {
            out.push(format!("step {i}:\n{}--- vs ---\n{}", x.render(), y.render()));
        }
    }
    if a.len() != b.len() {
        out.push(format!("{} steps vs {}", a.len(), b.len()));
    }
    out
}

/// Upstream re-checks a pod's claims against the retention policy from its claim informer; when that
/// informer has not yet seen upstream's own owner write it writes the owners again and updates the pod,
/// reporting `SuccessfulUpdate: Update Pod …` although nothing changed. Whether it happens depends on
/// informer timing (docs/identity-divergences.md), so upstream's such Events are dropped unless the
/// other run reported the same; an extra one from the other run still differs.
fn without_retention_recheck(upstream: &[String], other: &[String]) -> Vec<String> {
    upstream
        .iter()
        .filter(|line| !line.starts_with("Normal SuccessfulUpdate: Update Pod ") || other.contains(line))
        .cloned()
        .collect()
}

/// The (currentRevision, updateRevision) pairs that `lines` change to from `before`, in order.
fn revisions(before: &str, lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last = before.to_owned();
    for line in lines {
        // A status not yet written by any controller (apps/v1 defaults it to `replicas: 0`) has none.
        let pair: Vec<&str> = line.split(' ').filter(|w| w.contains("Revision=") && !w.ends_with('=')).collect();
        let pair = pair.join(" ");
        if !pair.is_empty() && pair != last {
            last.clone_from(&pair);
            out.push(pair);
        }
    }
    out
}
