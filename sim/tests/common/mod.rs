//! Shared test helpers: start the stand-in in-process, find (or install) kubectl, run it, poll.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster_sim::{SimConfig, SimHandle};

/// Start a stand-in on a free loopback port with fast pod transitions.
pub async fn start() -> SimHandle {
    start_with(fast()).await
}

/// A config with fast pod transitions.
pub fn fast() -> SimConfig {
    SimConfig {
        ready_delay: Duration::from_millis(200),
        start_delay: Duration::from_millis(100),
        termination_cap: Duration::from_secs(1),
        bookmark_interval: Duration::from_secs(1),
        ..SimConfig::default()
    }
}

/// Start a stand-in with a given config.
pub async fn start_with(config: SimConfig) -> SimHandle {
    roster_sim::start(config).await.expect("the stand-in starts")
}

/// Poll `f` until it returns `Some`, or panic after `timeout` with `what`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(bin)).find(|p| p.is_file()))
}

fn try_install_kubectl() {
    // Debian's package set of these machines carries `kubectl`; `kubernetes-client` is Debian's own
    // (older) build. Both come through apt, the only way to a kubectl binary with package registries.
    for pkg in ["kubectl", "kubernetes-client"] {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", pkg])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if ok && on_path("kubectl").is_some() {
            return;
        }
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", pkg])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if ok && on_path("kubectl").is_some() {
            return;
        }
    }
}

/// The kubectl binary, installed through apt when missing.
pub fn kubectl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KUBECTL").map(PathBuf::from) {
            return p;
        }
        if on_path("kubectl").is_none() {
            try_install_kubectl();
        }
        on_path("kubectl").expect("kubectl is on PATH or installable with apt-get")
    })
}

/// kubectl's discovery cache for this stand-in: beside its kubeconfig, so it goes with it (each test's
/// stand-in has a port of its own; a shared cache in the home directory would only grow).
pub fn cache_dir(sim: &SimHandle) -> PathBuf {
    sim.kubeconfig_path().parent().map_or_else(std::env::temp_dir, Path::to_path_buf).join("kubectl-cache")
}

/// A blocking kubectl command against the stand-in (for polling closures).
pub fn kubectl_sync(sim: &SimHandle) -> Command {
    let mut cmd = Command::new(kubectl_bin());
    cmd.env("KUBECONFIG", sim.kubeconfig_path()).env("KUBECACHEDIR", cache_dir(sim));
    cmd
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

/// Run kubectl against the stand-in (bounded to 60 s).
pub async fn kubectl(sim: &SimHandle, args: &[&str]) -> Out {
    kubectl_stdin(sim, args, None).await
}

/// Run kubectl with a stdin document.
pub async fn kubectl_stdin(sim: &SimHandle, args: &[&str], stdin: Option<&str>) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(kubectl_bin());
    cmd.args(args)
        .env("KUBECONFIG", sim.kubeconfig_path())
        .env("KUBECACHEDIR", cache_dir(sim))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("kubectl runs");
    if let (Some(doc), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(doc.as_bytes()).await.expect("writing kubectl's stdin");
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

/// Run kubectl and require success; returns stdout.
pub async fn kubectl_ok(sim: &SimHandle, args: &[&str]) -> String {
    let out = kubectl(sim, args).await;
    assert!(out.ok, "kubectl {args:?} failed:\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
    out.stdout
}
