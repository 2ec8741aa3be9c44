//! Peak memory of loading the DNS benchmark's manifest (bench/lib/gen_dataset.py `--scale small`: a
//! 2.2 MB `v1 List` of 2,000 Services and 1,000 EndpointSlices). Ignored because it reads this
//! process's RSS, so nothing else may run beside it:
//!
//! `cargo test --release -p roster-controller --test manifest_memory -- --ignored --nocapture`

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The benchmark's objects, written as text (a `Value` tree here would raise the peak we measure).
fn benchmark_list(headless: usize, pods: usize, cluster_ip: usize, namespaces: usize) -> String {
    let mut items = Vec::new();
    let port = r#"[{"name":"http","port":80,"protocol":"TCP"}]"#;
    let mut pod_ip = 0x0a80_0001_u32; // 10.128.0.1
    let ip = |n: u32| std::net::Ipv4Addr::from(n).to_string();
    for s in 0..headless {
        let ns = format!("ns-{}", s % namespaces);
        items.push(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"hsvc-{s}","namespace":"{ns}"}},"spec":{{"clusterIP":"None","clusterIPs":["None"],"selector":{{"app":"hsvc-{s}"}},"ports":{port}}}}}"#
        ));
        let mut endpoints = Vec::new();
        for p in 0..pods {
            endpoints.push(format!(
                r#"{{"addresses":["{}"],"hostname":"web-{p}","conditions":{{"ready":true}},"targetRef":{{"kind":"Pod","namespace":"{ns}","name":"hsvc-{s}-web-{p}"}}}}"#,
                ip(pod_ip)
            ));
            pod_ip += 1;
        }
        items.push(format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"hsvc-{s}-0","namespace":"{ns}","labels":{{"kubernetes.io/service-name":"hsvc-{s}"}}}},"addressType":"IPv4","ports":{port},"endpoints":[{}]}}"#,
            endpoints.join(",")
        ));
    }
    for s in 0..cluster_ip {
        let ns = format!("ns-{}", s % namespaces);
        let cip = ip(0x0a60_0010 + u32::try_from(s).unwrap()); // 10.96.0.16 on
        items.push(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"csvc-{s}","namespace":"{ns}"}},"spec":{{"clusterIP":"{cip}","clusterIPs":["{cip}"],"type":"ClusterIP","selector":{{"app":"csvc-{s}"}},"ports":{port}}}}}"#
        ));
    }
    let mut text = String::from(r#"{"apiVersion":"v1","kind":"List","items":["#);
    write!(text, "{}]}}", items.join(",")).unwrap();
    text
}

#[test]
#[ignore = "measures this process's RSS; run alone with --release"]
fn manifest_load_peak_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kube-objects.json");
    let text = benchmark_list(1000, 10, 1000, 10);
    std::fs::write(&path, &text).unwrap();
    let bytes = text.len();
    drop(text);

    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak below is the load's alone.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let started = std::time::Instant::now();
    let state = roster_controller::load_path(&path).unwrap();
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:");
    let after = status_kib("VmRSS:");
    assert_eq!((state.services.len(), state.endpoint_slices.len()), (2000, 1000));
    println!(
        "load_path of {:.1} MB in {elapsed:.0?}: RSS {:.1} MiB before, peak +{:.1} MiB, +{:.1} MiB after (the loaded state alive)",
        bytes as f64 / 1e6,
        before as f64 / 1024.0,
        (peak - before) as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
    );
    // Parsing the whole file into a `serde_json::Value` tree made this peak ~60 MiB.
    assert!(peak - before < 16 * 1024, "peak +{peak_kib} KiB over {before} KiB", peak_kib = peak - before);
}
