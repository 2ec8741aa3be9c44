//! Time and memory to synthesise and publish a snapshot of a large cluster, in process.
//!
//! `cargo run --release -p roster-controller --example snapshot_bench -- [SERVICES] [ENDPOINTS] [NAMESPACES]`
//! (default 10000 headless services × 10 ready endpoints = 100,000 pod records, in 10 namespaces).
//!
//! Steps, each timed and followed by the process's RSS (`VmRSS`) and peak RSS since the previous step
//! (`VmHWM`, reset between steps through `/proc/self/clear_refs` where the kernel allows it):
//! 1. build the `ClusterState` of slim views (services, EndpointSlices with hostnames, pods);
//! 2. `roster_shared::synthesize` → `ZoneData`;
//! 3. `Publisher::publish` → the snapshot `Frame` (the publisher keeps the zone as its current state);
//! 4. `serde_json::to_vec` of the frame: the bytes a replica receives on `/v1/records`;
//! 5. `serde_json::from_slice` of those bytes: what a replica decodes;
//! 6. `ZoneStore::apply` of the decoded snapshot into a fresh DNS zone store.
//!
//! Then, a few times, the per-change path at this size: one endpoint flips readiness → full
//! re-synthesis → `Publisher::publish` (diff against the current zone) → JSON → `ZoneStore::apply`; then
//! the controller's incremental path: every object folded into an `IncrementalSynthesis`, and the same
//! readiness flip re-synthesising only its service → `Publisher::publish_changes`.

use std::error::Error;
use std::time::{Duration, Instant};

use roster_controller::Publisher;
use roster_dns::{DnsConfig, ZoneStore};
use roster_shared::{ClusterState, DomainName, Frame, PodMode, SynthConfig, synthesize};

#[path = "support/dataset.rs"]
mod dataset;
use dataset::build_state;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// `(VmRSS, VmHWM)` in KiB.
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds; 0 when unavailable).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|ns| ns.parse().ok()))
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0); false when not permitted.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Meter {
    last_rss: u64,
    peak_resets: bool,
    cpu_at: u64,
}

impl Meter {
    fn new() -> Self {
        let peak_resets = reset_peak();
        Self { last_rss: memory().0, peak_resets, cpu_at: cpu_ns() }
    }

    /// Starts timing a step: wall clock, and this thread's CPU time.
    fn start(&mut self) -> Instant {
        self.cpu_at = cpu_ns();
        Instant::now()
    }

    fn step(&mut self, label: &str, took: Duration, extra: &str) {
        let cpu = cpu_ns().saturating_sub(self.cpu_at);
        let (rss, hwm) = memory();
        let delta = rss as i64 - self.last_rss as i64;
        println!(
            "| {label} | {:.1} | {:.1} | {:+.1} | {:.1} | {:.1} | {extra} |",
            ms(took),
            cpu as f64 / 1e6,
            delta as f64 / 1024.0,
            mib(rss),
            mib(hwm)
        );
        self.last_rss = rss;
        if self.peak_resets {
            reset_peak();
        }
    }
}

fn arg(n: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse::<usize>().map_err(|e| format!("argument {n} `{text}`: {e}"))?),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let services = arg(1, 10_000)?;
    let endpoints = arg(2, 10)?;
    let namespaces = arg(3, 10)?.max(1);
    let rounds = 5;
    println!(
        "snapshot_bench: {services} headless services × {endpoints} ready endpoints = {} pod records, {namespaces} namespaces",
        services * endpoints
    );
    let mut meter = Meter::new();
    println!(
        "RSS at start {:.1} MiB; peak reset per step: {}",
        mib(meter.last_rss),
        if meter.peak_resets { "yes" } else { "no (VmHWM is the process peak so far)" }
    );
    println!();
    println!("| step | wall ms | CPU ms | RSS Δ MiB | RSS MiB | peak RSS MiB | |");
    println!("|---|---:|---:|---:|---:|---:|---|");

    let t = meter.start();
    let state = build_state(services, endpoints, namespaces);
    meter.step("build ClusterState (slim views)", t.elapsed(), &format!("{} pods", state.pods.len()));

    let config = SynthConfig::new(DomainName::parse("cluster.local")?);
    let t = meter.start();
    let zone = synthesize(&state, &config);
    let names = zone.names.len();
    let records = zone.record_count();
    meter.step("synthesize", t.elapsed(), &format!("{names} names, {records} records"));

    let mut publisher = Publisher::new();
    let t = meter.start();
    let frame = publisher.publish(zone).ok_or("the first publication is a snapshot")?;
    meter.step("Publisher::publish (snapshot)", t.elapsed(), "frame + the publisher's current zone");

    let t = meter.start();
    let bytes = serde_json::to_vec(&frame)?;
    meter.step(
        "serde_json::to_vec(frame)",
        t.elapsed(),
        &format!("{} bytes ({:.1} MiB)", bytes.len(), bytes.len() as f64 / 1048576.0),
    );

    let t = meter.start();
    let decoded: Frame = serde_json::from_slice(&bytes)?;
    meter.step("serde_json::from_slice (replica side)", t.elapsed(), "");
    drop(frame);

    let store = ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure)?);
    let t = meter.start();
    store.apply(&decoded)?;
    meter.step("ZoneStore::apply (snapshot)", t.elapsed(), &format!("{} names in the store", store.name_count()));
    drop(decoded);
    let t = meter.start();
    drop(bytes);
    meter.step("drop the encoded and decoded frames", t.elapsed(), "");

    println!();
    println!("One change at this size (an endpoint's readiness flips), {rounds} rounds:");
    println!();
    println!(
        "| round | synthesize ms | publish (diff) ms | to_vec ms | bytes | apply ms | total wall ms | total CPU ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut state = state;
    let mut totals = Vec::new();
    for round in 0..rounds {
        let key = format!("ns-{}/set-{}-abcde", round % namespaces, round);
        if let Some(slice) = state.endpoint_slices.get_mut(&key)
            && let Some(endpoint) = slice.endpoints.first_mut()
        {
            endpoint.ready = !endpoint.ready;
        }
        let c0 = cpu_ns();
        let t0 = Instant::now();
        let zone = synthesize(&state, &config);
        let t1 = Instant::now();
        let frame = publisher.publish(zone).ok_or("a readiness flip changes records")?;
        let t2 = Instant::now();
        let bytes = serde_json::to_vec(&frame)?;
        let t3 = Instant::now();
        let decoded: Frame = serde_json::from_slice(&bytes)?;
        let t4 = Instant::now();
        store.apply(&decoded)?;
        let t5 = Instant::now();
        let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e6;
        let total = t5 - t0 - (t4 - t3);
        totals.push((ms(total), cpu));
        println!(
            "| {round} | {:.1} | {:.1} | {:.3} | {} | {:.3} | {:.1} | {cpu:.1} |",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            bytes.len(),
            ms(t5 - t4),
            ms(total)
        );
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let (rss, hwm) = memory();
    println!();
    println!(
        "median per-change cost with full re-synthesis (the manifest source's path; synthesize + publish + \
         encode + apply; decode excluded): {:.1} ms wall, {:.1} ms CPU (with decode); RSS now {:.1} MiB, peak {:.1} MiB",
        median(totals.iter().map(|t| t.0).collect()),
        median(totals.iter().map(|t| t.1).collect()),
        mib(rss),
        mib(hwm)
    );
    drop(publisher);
    incremental(state, config, rounds, namespaces)
}

/// The controller's path: objects folded one by one into an `IncrementalSynthesis`, then one change
/// re-synthesises only its service.
fn incremental(state: ClusterState, config: SynthConfig, rounds: usize, namespaces: usize) -> Result<()> {
    println!();
    println!("Incremental synthesis (the controller's path), same cluster:");
    println!();
    println!("| step | wall ms | CPU ms | RSS Δ MiB | RSS MiB | peak RSS MiB | |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut meter = Meter::new();
    let t = meter.start();
    let mut synthesis = dataset::fold(&state, config);
    meter.step("fold every object in", t.elapsed(), &format!("{} records", synthesis.record_count()));
    let mut publisher = Publisher::new();
    let t = meter.start();
    let changes = synthesis.take_changes();
    publisher.publish_changes(changes, None, || synthesis.zone()).ok_or("the first publication is a snapshot")?;
    meter.step("first publication (whole zone)", t.elapsed(), "");

    println!();
    println!("| round | re-synthesise ms | publish ms | changes | total wall ms | total CPU ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut totals = Vec::new();
    for round in 0..rounds {
        let key = format!("ns-{}/set-{}-abcde", round % namespaces, round);
        let mut slice = state.endpoint_slices.get(&key).cloned().ok_or("the bench's slice exists")?;
        if let Some(endpoint) = slice.endpoints.first_mut() {
            endpoint.ready = !endpoint.ready;
        }
        let c0 = cpu_ns();
        let t0 = Instant::now();
        synthesis.upsert_endpoint_slice(slice);
        let changes = synthesis.take_changes();
        let candidates = changes.len();
        let t1 = Instant::now();
        let frame =
            publisher.publish_changes(changes, None, || synthesis.zone()).ok_or("a readiness flip changes records")?;
        let t2 = Instant::now();
        let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e6;
        let Frame::Delta { changes, .. } = &frame else { return Err("a delta after the first publication".into()) };
        totals.push((ms(t2 - t0), cpu));
        println!(
            "| {round} | {:.3} | {:.3} | {} of {candidates} candidates | {:.3} | {cpu:.3} |",
            ms(t1 - t0),
            ms(t2 - t1),
            changes.len(),
            ms(t2 - t0)
        );
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    println!();
    println!(
        "median per-change cost, incremental (re-synthesise + publish; encode and apply as above): {:.3} ms wall, {:.3} ms CPU",
        median(totals.iter().map(|t| t.0).collect()),
        median(totals.iter().map(|t| t.1).collect()),
    );
    Ok(())
}
