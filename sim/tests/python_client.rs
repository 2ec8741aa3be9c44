//! The Python `kubernetes` client's list and watch against the stand-in (installed with pip when
//! missing).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kubectl_ok, start};
use tokio::io::{AsyncBufReadExt, BufReader};

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
pods = v1.list_namespaced_pod("default", label_selector="app in (py)")
print("LISTED", len(pods.items), pods.metadata.resource_version, flush=True)
nss = v1.list_namespace()
print("NAMESPACES", ",".join(sorted(n.metadata.name for n in nss.items)), flush=True)
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app in (py)",
                   resource_version=pods.metadata.resource_version, timeout_seconds=20):
    pod = ev["object"]
    print("EVENT", ev["type"], pod.metadata.name, pod.status.phase, pod.status.pod_ip, flush=True)
    if ev["type"] == "MODIFIED" and pod.status.phase == "Running":
        w.stop()
print("DONE", flush=True)
"#;

fn python_client_available() -> bool {
    let has = || {
        Command::new("python3")
            .args(["-c", "import kubernetes"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has() {
        return true;
    }
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "kubernetes"])
        .status();
    has()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_and_watches() {
    assert!(python_client_available(), "pip install kubernetes failed");
    let sim = start().await;
    let dir = sim.kubeconfig_path().parent().expect("dir").to_owned();
    let script = dir.join("client.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(sim.kubeconfig_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    if let Ok(Ok(Some(l))) = first {
        seen.push(l);
    }
    assert!(seen.first().is_some_and(|l| l.starts_with("LISTED 0")), "{seen:?}");
    kubectl_ok(&sim, &["run", "py-pod", "--image=nginx", "--labels=app=py"]).await;
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line == "DONE";
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let mut stderr = String::new();
    if !finished {
        let _ = child.kill().await;
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
    }
    assert!(finished, "python watch finished: {seen:?}\n{stderr}");
    assert!(seen.iter().any(|l| l.starts_with("NAMESPACES") && l.contains("kube-system")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("EVENT ADDED py-pod")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("EVENT MODIFIED py-pod Running 10.244.")), "{seen:?}");
    sim.shutdown().await;
}
