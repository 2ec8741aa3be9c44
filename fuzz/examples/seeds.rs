//! Writes the seed corpora under `corpus/<target>/` (run from `fuzz/`: `cargo run --example seeds`).
//! Seeds are small and few: real queries against the fixed zone, frames and manifests made from the
//! repository's examples. What fuzzing adds to them stays out of git (bench/fuzz.sh fuzzes a copy).

use std::path::Path;
use std::sync::Arc;

use roster_fuzz::{QueryEdns, name, query};
use roster_shared::{Change, Frame, RData, SynthConfig, synthesize};

const MANIFESTS: &[&str] = &[
    "../deploy/examples/cluster.yaml",
    "../deploy/examples/myapp.yaml",
    "../deploy/examples/web-demo.yaml",
    "../deploy/examples/local/statefulset-web.yaml",
    "../deploy/examples/local/web.yaml",
    "../tests/fixtures/spec-cluster.yaml",
];

fn write(target: &str, seed: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::write(dir.join(seed), bytes).unwrap_or_else(|e| panic!("{seed}: {e}"));
}

fn requests() {
    let names = [
        "web-0.nginx.default.svc.cluster.local",
        "Nginx.Default.svc.cluster.local",
        "_web._tcp.nginx.default.svc.cluster.local",
        "kubernetes.default.svc.cluster.local",
        "search.default.svc.cluster.local",
        "alias.default.svc.cluster.local",
        "10-244-0-5.default.pod.cluster.local",
        "2.0.244.10.in-addr.arpa",
        "dns-version.cluster.local",
        "long.default.svc.cluster.local",
        "missing.default.svc.cluster.local",
        "cluster.local",
        "example.com",
    ];
    let edns = |payload, version, dnssec_ok| Some(QueryEdns { payload, version, dnssec_ok });
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, qname) in names.iter().enumerate() {
        // A, AAAA, SRV, PTR, TXT, ANY, SOA, NS, CNAME, MX: one type per name, rotating.
        let qtype = [1u16, 28, 33, 12, 16, 255, 6, 2, 5, 15][i % 10];
        seeds.push((format!("{qname}-{qtype}"), query(i as u16, qname, qtype, 1, None)));
        seeds.push((format!("{qname}-{qtype}-edns"), query(i as u16, qname, qtype, 1, edns(1232, 0, i % 2 == 0))));
    }
    let headless = "nginx.default.svc.cluster.local";
    seeds.push(("headless-a-4096".into(), query(1, headless, 1, 1, edns(4096, 0, false))));
    seeds.push(("headless-srv-512".into(), query(1, headless, 33, 1, edns(512, 0, false))));
    seeds.push(("badvers".into(), query(2, headless, 1, 1, edns(1232, 1, false))));
    seeds.push(("axfr".into(), query(3, "cluster.local", 252, 1, None)));
    seeds.push(("chaos".into(), query(4, "cluster.local", 16, 3, None)));
    seeds.push(("opt-qtype".into(), query(5, "cluster.local", 41, 1, None)));
    let mut notify = query(6, "cluster.local", 6, 1, None);
    notify[2] = 0x20; // opcode NOTIFY
    seeds.push(("notify".into(), notify));
    let mut response = query(7, headless, 1, 1, None);
    response[2] |= 0x80;
    seeds.push(("response".into(), response));
    let mut two = query(8, headless, 1, 1, None);
    two[5] = 2;
    two.extend_from_slice(&query(8, "cluster.local", 6, 1, None)[12..]);
    seeds.push(("two-questions".into(), two));
    // The question name as a pointer to itself after one label (compression in a question).
    let mut pointer = query(9, "a.cluster.local", 1, 1, None);
    pointer.truncate(12 + 2);
    pointer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    seeds.push(("pointer-loop".into(), pointer));
    seeds.push(("header-only".into(), query(10, "", 1, 1, None)[..12].to_vec()));
    for (seed, bytes) in seeds {
        write("request", &seed, &bytes);
    }
}

/// Arbitrary-derived input: any bytes are a valid input; a few lengths of deterministic noise.
fn store() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for (i, len) in [16usize, 64, 128, 256, 512, 1024, 2048, 4000].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        write("store", &format!("noise-{i}-{len}"), &bytes);
    }
}

fn frames() {
    let config = SynthConfig::new(name("cluster.local"));
    for path in MANIFESTS {
        let state = roster_controller::load_path(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let zone = synthesize(&state, &config);
        let stem = Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("zone");
        let first = zone.names.keys().next().cloned().unwrap_or_else(|| name("cluster.local"));
        let last = zone.names.keys().last().cloned().unwrap_or_else(|| name("cluster.local"));
        let snapshot = Frame::Snapshot { epoch: 3, generation: 7, zone: Arc::new(zone) };
        let delta = Frame::Delta {
            generation: 8,
            changes: vec![
                Change::Remove { name: first },
                Change::Set { name: last, records: vec![RData::A { ip: [10, 244, 9, 9].into() }] },
            ],
            trigger: Some(roster_shared::Trigger { unix_ms: 1_700_000_000_000, service_kind: "cluster_ip".into() }),
        };
        let lines: Vec<String> = [&snapshot, &delta, &Frame::Bookmark { generation: 8 }]
            .iter()
            .map(|frame| serde_json::to_string(frame).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        write("frames", &format!("{stem}-snapshot"), lines[0].as_bytes());
        write("frames", &format!("{stem}-stream"), (lines.join("\n") + "\n").as_bytes());
    }
    let small = r#"{"kind":"snapshot","generation":1,"zone":{"names":{"cluster.local":[],"a.svc.cluster.local":[{"type":"A","ip":"10.0.0.1"},{"type":"TXT","text":"t"},{"type":"SRV","priority":0,"weight":1,"port":80,"target":"a.svc.cluster.local"}],"1.0.0.10.in-addr.arpa":[{"type":"PTR","target":"a.svc.cluster.local"}],"b.svc.cluster.local":[{"type":"CNAME","target":"a.svc.cluster.local"}],"c.svc.cluster.local":[{"type":"AAAA","ip":"fd00::1"},{"type":"NS","target":"x.example.com"}]}}}
{"kind":"delta","generation":2,"changes":[{"op":"remove","name":"a.svc.cluster.local"},{"op":"set","name":"d.svc.cluster.local","records":[]}]}
{"kind":"delta","generation":4,"changes":[]}
{"kind":"bookmark","generation":2}
"#;
    write("frames", "small-stream", small.as_bytes());
    // Regression: nothing follows the last generation (a delta after it overflowed `generation + 1`).
    let last = "{\"kind\":\"snapshot\",\"generation\":18446744073709551615,\"zone\":{\"names\":{}}}\n\
                {\"kind\":\"delta\",\"generation\":0,\"changes\":[]}\n";
    write("frames", "regression-last-generation", last.as_bytes());
}

/// Packed snapshots of the example zones, each behind the byte that chooses how the target cuts it.
fn packed() {
    let config = SynthConfig::new(name("cluster.local"));
    for (index, path) in MANIFESTS.iter().enumerate() {
        let state = roster_controller::load_path(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut zone = synthesize(&state, &config);
        zone.clients.insert([10, 244, 0, 5].into(), "default".to_owned());
        let bytes = roster_shared::packed::encode(&zone).unwrap_or_else(|e| panic!("{path}: {e}"));
        let stem = Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("zone");
        write("packed", stem, &[&[index as u8][..], &bytes].concat());
    }
}

fn manifests() {
    for path in MANIFESTS {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let stem = Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("manifest");
        // The first byte: bit 0 JSON, bits 1-2 pod mode, bit 3 endpoint pod names.
        write("manifests", &format!("{stem}.yaml"), &[&[0u8][..], text.as_bytes()].concat());
        write("manifests", &format!("{stem}-pod-names.yaml"), &[&[0x0Au8][..], text.as_bytes()].concat());
        // The same objects as one JSON `v1 List`.
        let items: Vec<serde_json::Value> = text
            .split("\n---")
            .filter_map(|document| serde_saphyr::from_str::<serde_json::Value>(document).ok())
            .filter(|value| value.is_object())
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let json = serde_json::to_string_pretty(&list).unwrap_or_else(|e| panic!("{e}"));
        write("manifests", &format!("{stem}.json"), &[&[1u8][..], json.as_bytes()].concat());
    }
}

fn main() {
    requests();
    store();
    frames();
    manifests();
    packed();
}
