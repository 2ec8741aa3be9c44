//! Benchmark: time and API writes for the identity controller to bring a Parallel set to ready and to
//! roll it to a new revision, on the in-process stand-in.
//!
//! `cargo test --release --test identity_bench -- --ignored --nocapture`; `ROSTER_BENCH_REPLICAS`
//! (default 1000) and `ROSTER_BENCH_MAX_UNAVAILABLE` (default `10%`) change the shape.
#![allow(clippy::unwrap_used)]

mod identity_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use identity_support::{Cluster, Kind, SERVICE, set_manifest, sim_config};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;

async fn wait_for(c: &Cluster, what: &str, timeout: Duration, f: impl Fn(&StatefulSet) -> bool) {
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let deadline = Instant::now() + timeout;
    loop {
        let s = api.get("web").await.unwrap();
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}: {:?}", s.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One phase's figures.
struct Phase {
    time: Duration,
    writes: u64,
    /// The controller's read requests (list, get, watch) during the phase.
    reads: u64,
    /// Of which pod LISTs.
    pod_lists: u64,
}

impl Phase {
    fn measure(c: &Cluster, t0: Instant, w0: u64, r0: (u64, u64)) -> Phase {
        Phase {
            time: t0.elapsed(),
            writes: c.writes.load(Ordering::Relaxed) - w0,
            reads: c.api.reads() - r0.0,
            pod_lists: c.api.get("list", "pods") - r0.1,
        }
    }
}

fn reads(c: &Cluster) -> (u64, u64) {
    (c.api.reads(), c.api.get("list", "pods"))
}

async fn run(n: i32, max_unavailable: &str) -> (Phase, Phase) {
    let config = roster_sim::SimConfig {
        start_delay: Duration::from_millis(20),
        ready_delay: Duration::from_millis(50),
        termination_cap: Duration::from_millis(100),
        ..sim_config()
    };
    let c = Cluster::start_with(Kind::StatefulSet, config).await;
    c.apply(SERVICE).await;
    let extra = format!(
        "  podManagementPolicy: Parallel\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: \"{max_unavailable}\"\n"
    );
    let w0 = c.writes.load(Ordering::Relaxed);
    let r0 = reads(&c);
    let t0 = Instant::now();
    c.apply(&set_manifest(Kind::StatefulSet, "web", n, "nginx:1.24", &extra)).await;
    let timeout = Duration::from_secs(600);
    wait_for(&c, "all ready", timeout, |s| s.status.as_ref().and_then(|st| st.ready_replicas) == Some(n)).await;
    let ready = Phase::measure(&c, t0, w0, r0);
    let w1 = c.writes.load(Ordering::Relaxed);
    let r1 = reads(&c);
    let t1 = Instant::now();
    c.kubectl_ok(&["set", "image", "statefulset/web", "nginx=nginx:1.25"]).await;
    wait_for(&c, "rolled", timeout, |s| {
        let st = s.status.clone().unwrap_or_default();
        st.updated_replicas == Some(n)
            && st.ready_replicas == Some(n)
            && st.current_revision == st.update_revision
            && st.observed_generation == s.metadata.generation
    })
    .await;
    let rolled = Phase::measure(&c, t1, w1, r1);
    println!("identity bench: controller API requests by verb and resource: {}", c.api.render());
    (ready, rolled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn parallel_set_to_ready_and_rolled() {
    let n: i32 = std::env::var("ROSTER_BENCH_REPLICAS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mu = std::env::var("ROSTER_BENCH_MAX_UNAVAILABLE").unwrap_or_else(|_| "10%".into());
    let (ready, roll) = run(n, &mu).await;
    println!(
        "identity bench: Parallel set of {n} replicas (one claim each): ready in {:.2} s with {} API writes, \
         {} API reads ({} pod LISTs); rolled (maxUnavailable {mu}) in {:.2} s with {} API writes, {} API reads \
         ({} pod LISTs)",
        ready.time.as_secs_f64(),
        ready.writes,
        ready.reads,
        ready.pod_lists,
        roll.time.as_secs_f64(),
        roll.writes,
        roll.reads,
        roll.pod_lists,
    );
}

/// The same path at a small size, so the benchmark cannot rot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_set_small_bench_runs() {
    let (ready, roll) = run(20, "50%").await;
    // 20 claims + 20 pods + 1 revision + status writes; 20 deletes + 20 creates + 1 revision + status.
    assert!(ready.writes >= 41, "{}", ready.writes);
    assert!(roll.writes >= 41, "{}", roll.writes);
}
