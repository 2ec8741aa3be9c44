//! Support for the identity controller's end-to-end tests: an in-process stand-in cluster, the identity
//! controller as a task that can be killed and restarted, the real kubectl, a pod timeline recorded
//! from a watch (to assert order, not only end states), and roster's DNS pipeline queried with dig.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;
pub mod scenarios;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client};
use roster_controller::identity::{IdentityOptions, LeaseSettings};
use roster_sim::{SimConfig, SimHandle};
use serde_json::Value;

/// Which set kind a scenario drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// apps/v1 StatefulSet (the controller told to own them).
    StatefulSet,
    /// roster.dev/v1 IdentitySet.
    IdentitySet,
}

impl Kind {
    /// The kubectl resource name.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::StatefulSet => "statefulset",
            Kind::IdentitySet => "identityset",
        }
    }
    /// The kind name in Events.
    pub fn kind(self) -> &'static str {
        match self {
            Kind::StatefulSet => "StatefulSet",
            Kind::IdentitySet => "IdentitySet",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::StatefulSet => "apps/v1",
            Kind::IdentitySet => "roster.dev/v1",
        }
    }
}

/// The seed scenarios both kinds pass alike, one `#[tokio::test]` each: a test file writes
/// `identity_support::seed_scenarios!(Kind::X);` and adds beside it only what is its kind's own.
// Test files other than the two per-kind ones share this module without the macro.
#[allow(unused_macros)]
macro_rules! seed_scenarios {
    ($kind:expr) => {
        $crate::identity_support::seed_scenarios!(@tests $kind;
            create_pods_in_order_with_claims_and_dns => create_in_order(true);
            scale_up_in_order_and_down_highest_first => scale_up_and_down();
            template_change_rolls_in_reverse_order_one_at_a_time => rolling_update();
            partition_canary_restore_and_finish => partition_canary();
            on_delete_moves_only_deleted_pods => on_delete();
            parallel_creates_and_deletes_in_bursts => parallel_burst();
            delete_set_keeps_claims_and_reapply_rebinds_them => delete_set_and_reapply();
            retention_policy_delete_on_scale_down_and_deletion => retention_delete();
            retention_policy_retain_on_scale_delete_on_deletion => retention_mixed();
            unready_pod_blocks_scaling_and_rollout => unready_pod_blocks();
            controller_killed_mid_rollout_resumes_in_order => controller_killed_mid_rollout();
            failed_pod_is_replaced => failed_pod_replaced();
            min_ready_seconds_and_ordinals_start => min_ready_seconds_and_start_ordinal();
            max_unavailable_rolls_two_at_a_time => max_unavailable();
            an_old_template_returns_to_its_revision => rollout_undo();
            revision_history_limit_trims_old_revisions => history_limit();
            deleting_every_pod_brings_them_back_in_order => delete_all_pods_returns_in_order();
            only_the_lease_holder_writes_and_a_standby_takes_over => only_the_leader_writes();
            orphaned_pods_are_adopted_by_the_set_applied_again => orphaned_pods_are_adopted();
        );
    };
    (@tests $kind:expr; $($name:ident => $scenario:ident($($arg:expr),*);)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::identity_support::scenarios::$scenario($kind $(, $arg)*).await;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use seed_scenarios;

/// One observed pod transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A pod (new uid) appeared, at this revision label.
    Created { revision: String },
    /// The pod became Running and Ready.
    Ready,
    /// The pod became not ready again (after having been ready).
    Unready,
    /// Deletion started.
    Terminating,
    /// The pod is gone.
    Gone,
}

/// A timeline entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Pod name.
    pub pod: String,
    /// Pod uid.
    pub uid: String,
    /// What happened.
    pub step: Step,
    /// When it was observed.
    pub at: Instant,
}

#[derive(Default)]
struct Seen {
    ready: bool,
    terminating: bool,
}

/// Pod transitions in one namespace, in observed order.
#[derive(Clone, Default)]
pub struct Timeline {
    entries: Arc<Mutex<Vec<Entry>>>,
}

fn pod_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Timeline {
    fn start(client: Client, ns: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let tl = Timeline::default();
        let entries = tl.entries.clone();
        let api: Api<Pod> = Api::namespaced(client, ns);
        let task = tokio::spawn(async move {
            let mut seen: std::collections::HashMap<String, Seen> = std::collections::HashMap::new();
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let (pod, deleted) = match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                    watcher::Event::Delete(p) => (p, true),
                    _ => continue,
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let now = Instant::now();
                let mut out = entries.lock().unwrap();
                let mut push = |step: Step| out.push(Entry { pod: name.clone(), uid: uid.clone(), step, at: now });
                if !seen.contains_key(&uid) {
                    seen.insert(uid.clone(), Seen::default());
                    let revision = pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("controller-revision-hash"))
                        .cloned()
                        .unwrap_or_default();
                    push(Step::Created { revision });
                }
                let s = seen.get_mut(&uid).unwrap();
                let ready = pod_ready(&pod) && !deleted;
                if ready && !s.ready {
                    s.ready = true;
                    push(Step::Ready);
                } else if !ready && s.ready && !deleted {
                    s.ready = false;
                    push(Step::Unready);
                }
                if (pod.metadata.deletion_timestamp.is_some() || deleted) && !s.terminating {
                    s.terminating = true;
                    push(Step::Terminating);
                }
                if deleted {
                    push(Step::Gone);
                }
            }
        });
        (tl, task)
    }

    /// A copy of the entries so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Entries since index `from`.
    pub fn since(&self, from: usize) -> Vec<Entry> {
        self.entries().into_iter().skip(from).collect()
    }

    /// Number of entries so far (a mark for [`Timeline::since`]).
    pub fn mark(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// A compact rendering, for assertion messages.
    pub fn render(entries: &[Entry]) -> String {
        entries
            .iter()
            .map(|e| match &e.step {
                Step::Created { revision } => format!("{} created@{revision}", e.pod),
                s => format!("{} {s:?}", e.pod),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Position of the first entry for `pod` with a step matching `f`, in `entries`.
pub fn pos(entries: &[Entry], pod: &str, f: impl Fn(&Step) -> bool) -> Option<usize> {
    entries.iter().position(|e| e.pod == pod && f(&e.step))
}

/// Position of the first creation of `pod`.
pub fn created(entries: &[Entry], pod: &str) -> usize {
    pos(entries, pod, |s| matches!(s, Step::Created { .. }))
        .unwrap_or_else(|| panic!("{pod} was never created:\n{}", Timeline::render(entries)))
}

/// Position of the first Ready of `pod`.
pub fn ready(entries: &[Entry], pod: &str) -> usize {
    pos(entries, pod, |s| *s == Step::Ready)
        .unwrap_or_else(|| panic!("{pod} never became ready:\n{}", Timeline::render(entries)))
}

/// Position of the first Terminating of `pod`.
pub fn terminating(entries: &[Entry], pod: &str) -> usize {
    pos(entries, pod, |s| *s == Step::Terminating)
        .unwrap_or_else(|| panic!("{pod} never terminated:\n{}", Timeline::render(entries)))
}

/// Position of the first Gone of `pod`.
pub fn gone(entries: &[Entry], pod: &str) -> usize {
    pos(entries, pod, |s| *s == Step::Gone)
        .unwrap_or_else(|| panic!("{pod} never went away:\n{}", Timeline::render(entries)))
}

/// A running test cluster.
pub struct Cluster {
    /// The stand-in.
    pub sim: SimHandle,
    /// A kube client for it.
    pub client: Client,
    /// Pods of `default`, as observed.
    pub timeline: Timeline,
    /// Which kind the scenario drives.
    pub kind: Kind,
    /// API writes the identity controller made (all instances).
    pub writes: Arc<std::sync::atomic::AtomicU64>,
    /// The identity controllers' API requests (every instance talks through a counting proxy).
    pub api: proxy::ApiCounts,
    /// The client the identity controllers use (through the counting proxy).
    controller_client: Client,
    controller: Option<tokio::task::JoinHandle<()>>,
    watch: tokio::task::JoinHandle<()>,
    dns: Option<Dns>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
        self.watch.abort();
    }
}

/// Fast pod transitions, short termination.
pub fn sim_config() -> SimConfig {
    SimConfig {
        ready_delay: Duration::from_millis(250),
        start_delay: Duration::from_millis(100),
        termination_cap: Duration::from_millis(600),
        bookmark_interval: Duration::from_secs(1),
        ..SimConfig::default()
    }
}

/// Settings of a test lease: short, so a restarted controller takes over quickly.
pub fn lease(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: "default".into(),
        name: "roster-identity".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        retry: Duration::from_millis(500),
    }
}

impl Cluster {
    /// A stand-in with the identity controller running.
    pub async fn start(kind: Kind) -> Cluster {
        Self::start_with(kind, sim_config()).await
    }

    /// A stand-in with a given config and the identity controller running.
    pub async fn start_with(kind: Kind, config: SimConfig) -> Cluster {
        let sim = roster_sim::start(config).await.expect("the stand-in starts");
        let kubeconfig = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let client = Client::try_from(config.clone()).unwrap();
        let (proxy_addr, api) = proxy::start(sim.addr()).await;
        let mut proxied = config;
        proxied.cluster_url = format!("http://{proxy_addr}").parse().unwrap();
        let controller_client = Client::try_from(proxied).unwrap();
        let (timeline, watch) = Timeline::start(client.clone(), "default");
        let mut c = Cluster {
            sim,
            client,
            timeline,
            kind,
            writes: Arc::default(),
            api,
            controller_client,
            controller: None,
            watch,
            dns: None,
        };
        c.start_controller("identity-a");
        if kind == Kind::IdentitySet {
            c.eventually("the IdentitySet CRD is served", Duration::from_secs(20), async |c| {
                c.kubectl(&["get", "identitysets"]).await.ok.then_some(())
            })
            .await;
        }
        c
    }

    /// Start (or restart) the controller under `identity`.
    pub fn start_controller(&mut self, identity: &str) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
        let options = IdentityOptions {
            manage_statefulsets: true,
            install_crd: true,
            lease: lease(identity),
            writes: self.writes.clone(),
            ..IdentityOptions::default()
        };
        let client = self.controller_client.clone();
        self.controller = Some(tokio::spawn(async move {
            if let Err(e) = roster_controller::identity::run(client, options).await {
                eprintln!("identity controller failed: {e}");
            }
        }));
    }

    /// Start another controller instance beside the first (as a second replica would run), returning its
    /// task and its write counter.
    pub fn spawn_extra_controller(
        &self,
        identity: &str,
    ) -> (tokio::task::JoinHandle<()>, Arc<std::sync::atomic::AtomicU64>) {
        let writes: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let options = IdentityOptions {
            manage_statefulsets: true,
            install_crd: true,
            lease: lease(identity),
            writes: writes.clone(),
            ..IdentityOptions::default()
        };
        let client = self.controller_client.clone();
        let task = tokio::spawn(async move {
            let _ = roster_controller::identity::run(client, options).await;
        });
        (task, writes)
    }

    /// Kill the controller (no lease release, no goodbye: as a crash).
    pub async fn kill_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
            let _ = c.await;
        }
    }

    /// Run kubectl.
    pub async fn kubectl(&self, args: &[&str]) -> Out {
        self.kubectl_stdin(args, None).await
    }

    /// Run kubectl with a stdin document.
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        use tokio::io::AsyncWriteExt;
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env("KUBECONFIG", self.sim.kubeconfig_path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl runs");
        if let (Some(doc), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(doc.as_bytes()).await.unwrap();
            drop(input);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes within 60 s")
            .expect("kubectl output");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run kubectl, require success, return stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(out.ok, "kubectl {args:?} failed:\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
        out.stdout
    }

    /// `kubectl apply -f -` with `doc`.
    pub async fn apply(&self, doc: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(doc)).await;
        assert!(out.ok, "kubectl apply failed:\nstdout: {}\nstderr: {}\n{doc}", out.stdout, out.stderr);
        out.stdout
    }

    /// `kubectl get <what> -o json`, parsed.
    pub async fn get_json(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&a).await).unwrap()
    }

    /// The set object as JSON.
    pub async fn set_json(&self, name: &str) -> Value {
        self.get_json(&[self.kind.resource(), name]).await
    }

    /// Pods of the namespace by name (not terminating ones only when `live`).
    pub async fn pods(&self) -> Vec<Value> {
        self.get_json(&["pods"]).await["items"].as_array().cloned().unwrap_or_default()
    }

    /// Poll `f` until it returns `Some`, or panic after `timeout` with `what` and the timeline.
    pub async fn eventually<T>(&self, what: &str, timeout: Duration, mut f: impl AsyncFnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self).await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}\ntimeline:\n{}",
                Timeline::render(&self.timeline.entries())
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Wait until the set reports `n` ready replicas, all updated, at its observed generation.
    pub async fn wait_settled(&self, name: &str, n: i64) {
        self.eventually(&format!("{name} settled at {n} ready replicas"), Duration::from_secs(60), async |c| {
            let s = c.set_json(name).await;
            let st = &s["status"];
            let ok = st["readyReplicas"].as_i64().unwrap_or(0) == n
                && st["replicas"].as_i64().unwrap_or(-1) == n
                && st["updatedReplicas"].as_i64().unwrap_or(-1) == n
                && st["currentRevision"] == st["updateRevision"]
                && st["observedGeneration"] == s["metadata"]["generation"];
            ok.then_some(())
        })
        .await;
    }

    /// Events (events.k8s.io/v1) notes about `set`, in creation order.
    pub async fn event_notes(&self) -> Vec<String> {
        let v = self.get_json(&["events.v1.events.k8s.io"]).await;
        let mut items = v["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|e| e["eventTime"].as_str().unwrap_or("").to_owned());
        items.iter().filter_map(|e| e["note"].as_str().map(str::to_owned)).collect()
    }

    /// Start roster's DNS pipeline (kube watch → records → DNS server) against this cluster.
    pub async fn start_dns(&mut self) -> SocketAddr {
        let dns = Dns::start(self.client.clone()).await;
        let addr = dns.addr;
        self.dns = Some(dns);
        addr
    }

    /// `dig +short` an A record through roster's DNS.
    pub async fn dig(&self, name: &str) -> Vec<String> {
        let addr = self.dns.as_ref().expect("start_dns first").addr;
        let out = tokio::process::Command::new("dig")
            .args([
                &format!("@{}", addr.ip()),
                "-p",
                &addr.port().to_string(),
                name,
                "A",
                "+short",
                "+tries=1",
                "+time=2",
            ])
            .output()
            .await
            .expect("dig runs");
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        ips.sort();
        ips
    }
}

impl Cluster {
    /// `nslookup` a name through roster's DNS; the full output.
    pub async fn nslookup(&self, name: &str) -> String {
        let addr = self.dns.as_ref().expect("start_dns first").addr;
        let out = tokio::process::Command::new("nslookup")
            .args([&format!("-port={}", addr.port()), "-timeout=2", "-retry=1", name, &addr.ip().to_string()])
            .output()
            .await
            .expect("nslookup runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Output of one kubectl run.
pub struct Out {
    /// Exit success.
    pub ok: bool,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// roster's DNS pipeline in-process: the kube watch source publishing into a hub, a DNS replica
/// following it, and the DNS server.
pub struct Dns {
    /// Where the DNS server answers (UDP and TCP).
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct HubSource(roster_controller::Hub);

#[async_trait::async_trait]
impl roster_dns::subscriber::FrameSource for HubSource {
    async fn connect(
        &mut self,
        from: Option<(u64, u64)>,
        _: &Arc<roster_dns::ZoneStore>,
    ) -> Result<roster_dns::subscriber::FrameStream, String> {
        let (catch_up, live) = self.0.subscribe(from);
        let live = futures_util::stream::unfold(live, |mut live| async move {
            match live.recv().await {
                Ok(published) => Some((Ok(published.frame.clone().into()), live)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some((Err(format!("lagged {n}")), live)),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Box::pin(futures_util::stream::iter(catch_up.into_iter().map(|frame| Ok(frame.into()))).chain(live)))
    }
}

impl Dns {
    async fn start(client: Client) -> Dns {
        let config = roster_dns::DnsConfig::new("cluster.local", 5, roster_shared::PodMode::Insecure).unwrap();
        let synth = roster_shared::SynthConfig::new(roster_shared::DomainName::parse("cluster.local").unwrap());
        let hub = roster_controller::Hub::default();
        let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
        let source = tokio::spawn(roster_controller::kube_source::run(client, synth, hub.clone(), synced_tx));
        let store = Arc::new(roster_dns::ZoneStore::new(config));
        let follower = tokio::spawn(roster_dns::subscriber::follow(
            HubSource(hub),
            store.clone(),
            Duration::from_secs(86400),
            None,
        ));
        tokio::time::timeout(Duration::from_secs(20), synced.wait_for(|s| *s)).await.unwrap().unwrap();
        let server = roster_dns::DnsServer::bind("127.0.0.1:0".parse().unwrap(), store).await.unwrap();
        let addr = server.udp_addr();
        let serve = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Dns { addr, tasks: vec![source, follower, serve] }
    }
}

/// A headless service `nginx` for app=nginx.
pub const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports:
  - name: web
    port: 80
"#;

/// A set manifest like the seeds' `web`: `replicas`, image `image`, a `www` claim template, and
/// `extra_spec` (YAML lines at spec indentation, two spaces) appended to the spec.
pub fn set_manifest(kind: Kind, name: &str, replicas: i32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: {api}
kind: {kind}
metadata:
  name: {name}
spec:
  serviceName: nginx
  replicas: {replicas}
  selector:
    matchLabels: {{app: nginx}}
  template:
    metadata:
      labels: {{app: nginx}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
{extra_spec}"#,
        api = kind.api_version(),
        kind = kind.kind(),
    )
}
