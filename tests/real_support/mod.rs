//! A real Kubernetes control plane for tests: `scripts/cluster.sh up` (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok, built from tools/k8s/) in a temporary folder,
//! `down` on drop; kubectl of the same release; roster run with nothing but a ServiceAccount token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod queries;
pub mod scenarios;
pub mod trace;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// One kubectl runner for every test (the test files that use this module also declare `support`).
pub use crate::support::process::{Out, run_kubectl as kubectl};

/// A running control plane; stopped (exactly what `up` started) on drop.
pub struct RealCluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
}

fn cluster_sh(args: &[&str]) -> std::process::Output {
    Command::new(format!("{ROOT}/scripts/cluster.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/cluster.sh runs")
}

impl RealCluster {
    /// `cluster.sh up DIR FLAGS…`; fails the test, with the components' logs, when the cluster cannot start.
    pub fn up(flags: &[&str]) -> RealCluster {
        let dir = tempfile::Builder::new().prefix("roster-real-").tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let bin = cluster_sh(&["bin"]);
        assert!(bin.status.success(), "cluster.sh bin failed: {}", String::from_utf8_lossy(&bin.stderr));
        let bin = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        let mut args = vec!["up", path.as_str()];
        args.extend_from_slice(flags);
        let cluster = RealCluster { kubeconfig: dir.path().join("kubeconfig"), dir, bin };
        let up = cluster_sh(&args);
        assert!(
            up.status.success(),
            "cluster.sh up failed: {}\n{}",
            String::from_utf8_lossy(&up.stderr),
            cluster.logs()
        );
        cluster
    }

    /// The tail of every component's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) else { return text };
        for entry in entries.flatten() {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("== {}\n", entry.file_name().to_string_lossy()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// kubectl of the cluster's release with `kubeconfig`, optionally fed `stdin`.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        kubectl(&self.bin.join("kubectl"), kubeconfig, args, stdin)
    }

    pub fn kubectl(&self, args: &[&str]) -> Out {
        self.kubectl_as(&self.kubeconfig, args, None)
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.ok, "kubectl {args:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// Waits until the CRD `crd` (`plural.group`) is Established and its resource is in discovery: the API
    /// server updates discovery some time after the condition, and a kubectl that asks in between is told
    /// the kind does not exist.
    pub fn wait_for_crd(&self, crd: &str) {
        self.kubectl_ok(&["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=60s"]);
        self.eventually(&format!("{crd} in discovery"), Duration::from_secs(60), || {
            self.kubectl(&["get", crd, "-A", "-o", "name"]).ok.then_some(())
        });
    }

    /// `kubectl explain FIELD`: the API server publishes a new CRD's OpenAPI some time after it is
    /// Established, so this asks again until it is there.
    pub fn explain(&self, field: &str) -> String {
        self.eventually(&format!("kubectl explain {field}"), Duration::from_secs(60), || {
            let out = self.kubectl(&["explain", field]);
            out.ok.then_some(out.stdout)
        })
    }

    /// `kubectl apply -f -` (client-side) of `yaml`.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_as(&self.kubeconfig, &["apply", "-f", "-"], Some(yaml));
        assert!(out.ok, "kubectl apply failed: {}{}\n{yaml}", out.stdout, out.stderr);
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).unwrap()
    }

    /// The API server's address (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> String {
        let port = std::fs::read_to_string(self.dir.path().join("api-port")).unwrap();
        format!("https://127.0.0.1:{}", port.trim())
    }

    /// A kubeconfig holding nothing but a token of ServiceAccount `namespace/name` (`kubectl create token`),
    /// as a pod of that ServiceAccount would have.
    pub fn token_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration", "2h"]);
        let path = self.dir.path().join(format!("{namespace}-{name}.kubeconfig"));
        let ca = self.dir.path().join("pki/ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: {name}\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {name}}}\n\
             current-context: c\n",
            self.server(),
            ca.display(),
            token.trim()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Stops one component (`kube-apiserver`, `etcd`, …) and starts it again with the same command line.
    pub fn restart(&self, component: &str) {
        let out = cluster_sh(&["restart", self.dir.path().to_str().unwrap(), component]);
        assert!(
            out.status.success(),
            "cluster.sh restart {component}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Compacts etcd's history up to its current revision (watches resuming from before it get 410 Gone).
    pub fn compact(&self) {
        let out = cluster_sh(&["compact", self.dir.path().to_str().unwrap()]);
        assert!(out.status.success(), "cluster.sh compact: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Polls `f` every 200 ms until it returns `Some`, for up to `within`; fails with `what` and the logs.
    pub fn eventually<T>(&self, what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = f() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        let _ = cluster_sh(&["down", self.dir.path().to_str().unwrap()]);
    }
}
