//! Durability: with a data directory, state survives a clean restart, a torn log tail and `kill -9` with
//! no acknowledged write lost. The crash test runs the stand-in in a child process (this test binary,
//! re-entered through the `child_server` test), so it can be killed for real.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use roster_sim::SimConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_DIR: &str = "ROSTER_SIM_CHILD_DIR";

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig loads");
    Client::try_from(config).expect("client builds")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": name}})).expect("configmap")
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("roster-sim-test-{tag}-{}", roster_sim::meta::random_suffix(8)));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Not a test on its own: when re-entered with `ROSTER_SIM_CHILD_DIR`, serve a stand-in from that
/// directory until killed.
#[test]
fn child_server() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let sim = roster_sim::start(SimConfig { data_dir: Some(dir.into()), ..SimConfig::default() })
            .await
            .expect("child stand-in starts");
        println!("READY {}", sim.addr());
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(sim);
    });
}

async fn spawn_child(dir: &std::path::Path) -> tokio::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("READY ") {
                return;
            }
        }
        panic!("child exited before it was ready");
    })
    .await
    .expect("child ready within 30 s");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = temp_dir("kill9");
    let mut child = spawn_child(&dir).await;
    let api: Api<ConfigMap> = Api::namespaced(client_for(&dir.join("kubeconfig")).await, "default");
    let mut last_rv = 0u64;
    for i in 0..40 {
        let c = api.create(&PostParams::default(), &cm(&format!("cm-{i}"))).await.expect("create");
        last_rv = c.metadata.resource_version.and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;

    let _child = spawn_child(&dir).await;
    let api: Api<ConfigMap> = Api::namespaced(client_for(&dir.join("kubeconfig")).await, "default");
    let list = api.list(&ListParams::default()).await.expect("list");
    let names: std::collections::HashSet<String> = list.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
    for i in 0..40 {
        assert!(names.contains(&format!("cm-{i}")), "cm-{i} survived kill -9");
    }
    let rv: u64 = list.metadata.resource_version.and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(rv >= last_rv, "resourceVersion continues ({rv} >= {last_rv})");
    let next = api.create(&PostParams::default(), &cm("after")).await.expect("create after restart");
    let next_rv: u64 = next.metadata.resource_version.and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(next_rv > rv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_and_torn_tail_keep_state() {
    let dir = temp_dir("restart");
    let config = || SimConfig { data_dir: Some(dir.clone()), ..SimConfig::default() };
    let sim = common::start_with(config()).await;
    let api: Api<ConfigMap> = Api::namespaced(client_for(sim.kubeconfig_path()).await, "default");
    api.create(&PostParams::default(), &cm("kept")).await.expect("create");
    let svc_ip = {
        let out = common::kubectl_ok(&sim, &["create", "service", "clusterip", "s", "--tcp=80"]).await;
        assert!(out.contains("created"));
        common::kubectl_ok(&sim, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"]).await
    };
    sim.shutdown().await;
    // a write torn by a crash mid-append: never acknowledged, so dropped at replay
    let mut log = std::fs::OpenOptions::new().append(true).open(dir.join("state.log")).expect("log");
    log.write_all(b"{\"rv\": 999999, \"key\": \"/configmaps\", \"ns\": \"default\", \"na").expect("append");
    drop(log);
    let sim = common::start_with(config()).await;
    let api: Api<ConfigMap> = Api::namespaced(client_for(sim.kubeconfig_path()).await, "default");
    assert_eq!(api.get("kept").await.expect("kept").data.and_then(|d| d.get("v").cloned()).as_deref(), Some("kept"));
    let ip = common::kubectl_ok(&sim, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"]).await;
    assert_eq!(ip, svc_ip, "allocated ClusterIP kept");
    // the `kubernetes` service and system namespaces exist once, not twice
    let ns = common::kubectl_ok(&sim, &["get", "ns", "-o", "name"]).await;
    assert_eq!(ns.lines().filter(|l| *l == "namespace/default").count(), 1);
    api.create(&PostParams::default(), &cm("new")).await.expect("writes after replay");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
