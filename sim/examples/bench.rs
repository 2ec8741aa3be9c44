//! Benchmark of the stand-in: list latency with 10k pods, and watch fan-out to 20 watchers at 1k
//! writes/s. `cargo run --release -p roster-sim --example bench [PODS] [WATCHERS] [WRITES_PER_SEC] [SECS]`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use roster_sim::SimConfig;
use serde_json::json;

fn micros_now() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // index arithmetic on small vectors; truncation is intended
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pods = args.first().copied().unwrap_or(10_000);
    let watchers = args.get(1).copied().unwrap_or(20);
    let rate = args.get(2).copied().unwrap_or(1000);
    let secs = args.get(3).copied().unwrap_or(5);

    // BENCH_DATA_DIR=/path measures with the durable log (fsync per write)
    let data_dir = std::env::var_os("BENCH_DATA_DIR").map(Into::into);
    let sim = roster_sim::start(SimConfig { kubelet_events: false, data_dir, ..SimConfig::default() }).await?;
    let kc = Kubeconfig::read_from(sim.kubeconfig_path())?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;

    // seed pods straight into the store, then let the kubelet stand-in settle them
    let pods_rt = roster_sim::resources::builtins().into_iter().find(|t| t.plural == "pods").ok_or("no pods type")?;
    let seeded = Instant::now();
    for i in 0..pods {
        sim.store().create(
            &pods_rt,
            "default",
            json!({"metadata": {"name": format!("p-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                   "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}),
        )?;
    }
    println!("seeded {pods} pods in {:.2?}", seeded.elapsed());
    let settle = Instant::now();
    loop {
        let (items, _) = sim.store().list(&pods_rt, None);
        let ready = items.iter().filter(|p| roster_sim::meta::path_str(p, "status.phase") == "Running").count();
        if ready == pods || settle.elapsed() > Duration::from_secs(120) {
            println!("kubelet stand-in ran {ready}/{pods} pods in {:.2?}", settle.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (what, uri) in [
        ("list all pods", "/api/v1/pods".to_owned()),
        ("list pods, labelSelector shard=3", "/api/v1/namespaces/default/pods?labelSelector=shard%3D3".to_owned()),
        ("list pods, limit=500", "/api/v1/namespaces/default/pods?limit=500".to_owned()),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let req = http::Request::get(&uri).body(Vec::new())?;
            let t = Instant::now();
            let body = client.request_text(req).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms ({} KiB)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            bytes / 1024
        );
    }

    // watch fan-out
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "tick"}}))?).await?;
    let rv = cms.get("tick").await?.metadata.resource_version.unwrap_or_default();
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::<f64>::new()));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let cms = cms.clone();
        let rv = rv.clone();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream =
                match cms.watch(&WatchParams::default().timeout(u32::try_from(secs * 4 + 30).unwrap_or(60)), &rv).await
                {
                    Ok(s) => s.boxed(),
                    Err(_) => return 0usize,
                };
            let mut n = 0;
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Modified(cm) = ev {
                    n += 1;
                    let sent: u128 =
                        cm.data.as_ref().and_then(|d| d.get("t").and_then(|t| t.parse().ok())).unwrap_or(0);
                    #[allow(clippy::cast_precision_loss)]
                    latencies.lock().push((micros_now().saturating_sub(sent)) as f64 / 1000.0);
                }
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * secs;
    // four writers, each at a quarter of the rate (one client's round trips cannot pace 1k/s alone)
    let writers = 4;
    let gap = Duration::from_secs_f64(writers as f64 / rate.max(1) as f64);
    let start = Instant::now();
    let mut writer_tasks = Vec::new();
    for w in 0..writers {
        let cms = cms.clone();
        writer_tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + gap.mul_f64(f64::from(u32::try_from(w).unwrap_or(0)) / 4.0);
            let mut times = Vec::new();
            for i in 0..total / writers {
                next += gap;
                tokio::time::sleep_until(next).await;
                let t = Instant::now();
                let r = cms
                    .patch(
                        "tick",
                        &kube::api::PatchParams::default(),
                        // `w` makes every write a change: two writers in the same microsecond would otherwise
                        // send the same body, a no-op the API server answers without an event
                        &kube::api::Patch::Merge(
                            json!({"data": {"t": micros_now().to_string(), "w": format!("{w}-{i}")}}),
                        ),
                    )
                    .await;
                if r.is_ok() {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            times
        }));
    }
    let mut write_times = Vec::with_capacity(total);
    for t in writer_tasks {
        write_times.extend(t.await.unwrap_or_default());
    }
    let total = write_times.len();
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.store().disconnect_watchers();
    let mut delivered = 0;
    for t in tasks {
        delivered += t.await.unwrap_or(0);
    }
    write_times.sort_by(f64::total_cmp);
    let mut lat = latencies.lock().clone();
    lat.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let achieved = total as f64 / elapsed.as_secs_f64();
    println!(
        "watch fan-out: {watchers} watchers, {total} writes at {achieved:.0}/s (target {rate}/s); write p50 {:.2} ms p99 {:.2} ms",
        percentile(&write_times, 0.5),
        percentile(&write_times, 0.99)
    );
    println!(
        "  delivered {delivered}/{} events; write-to-watcher latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total * watchers,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    sim.shutdown().await;
    Ok(())
}
