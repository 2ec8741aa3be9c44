//! A real `roster dns` replica's memory when a second full snapshot replaces its table.
//!
//! `cargo run --release -p roster-controller --example replica_swap -- ROSTER_BIN [SERVICES] [ENDPOINTS] [zstd|plain] [one|all] [packed|json]`
//! (default 10,000 headless services × 10 ready endpoints = 100,000 pod records, zstd; the second snapshot
//! adds one name, or with `all` also moves every IPv4 address by one, so no name with an A record is
//! unchanged: the worst case for a swap).
//!
//! This process is the controller side: the synthetic cluster (`support/dataset.rs`) published through a
//! `Hub` and served by the real stream server (mutual TLS) on 127.0.0.1; with `plain` the request's
//! `Accept-Encoding` is dropped so the replica gets newline-delimited JSON, and with `json` its
//! `snapshot=packed4` is dropped so it gets the JSON snapshot (as from a controller that ignores the ask). The replica is
//! `ROSTER_BIN dns --controller …` in its own process. Measured from its /proc files:
//! - load: until it answers the last pod's name (dig), then its VmRSS (steady) and VmHWM (the first
//!   snapshot's peak);
//! - swap: VmHWM reset (`5 > /proc/PID/clear_refs`), the stream's term ended and a new one begun under a
//!   new epoch with one more name, so the replica reconnects and must take a fresh snapshot (within one
//!   epoch it would resume with a delta); once it answers the new name, its VmHWM is the peak of the swap.
//!
//! Printed: one Markdown table row. Every wait is bounded.

use std::error::Error;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_controller::stream::{self, StreamConfig};
use roster_controller::{Hub, Publisher, tls};
use roster_shared::{DomainName, RData, SynthConfig};

#[path = "support/dataset.rs"]
mod dataset;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const DEADLINE: Duration = Duration::from_secs(300);

fn arg(n: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse::<usize>().map_err(|e| format!("argument {n} `{text}`: {e}"))?),
        None => Ok(default),
    }
}

/// A field of /proc/PID/status in MiB (`VmRSS:`, `VmHWM:`).
fn status_mib(pid: u32, key: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = text
        .lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// User + system CPU seconds of `pid` (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// Asks the replica for `name`'s A record until it answers `ip`, for at most `DEADLINE`.
async fn wait_for_answer(replica: &mut Child, port: u16, name: &str, ip: &str) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if let Some(status) = replica.try_wait()? {
            return Err(format!("the replica exited: {status}").into());
        }
        let output = tokio::process::Command::new("dig")
            .args(["+short", "+time=1", "+tries=1", "-p", &port.to_string(), "@127.0.0.1", name, "A"])
            .output()
            .await?;
        if String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == ip) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("{name} not answered within {DEADLINE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let roster = std::env::args().nth(1).ok_or("usage: replica_swap ROSTER_BIN [SERVICES] [ENDPOINTS] [zstd|plain]")?;
    let services = arg(2, 10_000)?;
    let endpoints = arg(3, 10)?;
    let encoding = std::env::args().nth(4).unwrap_or_else(|| "zstd".to_owned());
    if encoding != "zstd" && encoding != "plain" {
        return Err(format!("encoding `{encoding}`: zstd or plain").into());
    }
    let change_all = match std::env::args().nth(5).as_deref() {
        None | Some("one") => false,
        Some("all") => true,
        Some(other) => return Err(format!("change `{other}`: one or all").into()),
    };
    let form = std::env::args().nth(6).unwrap_or_else(|| "packed".to_owned());
    if form != "packed" && form != "json" {
        return Err(format!("snapshot form `{form}`: packed or json").into());
    }

    let state = dataset::build_state(services, endpoints, 10);
    let mut synthesis = dataset::fold(&state, SynthConfig::new(DomainName::parse("cluster.local")?));
    let hub = Hub::new(Publisher::new());
    hub.begin_term(1);
    hub.publish_incremental(&mut synthesis, None).ok_or("the first publication")?;
    let records = synthesis.record_count();

    let material = tls::generate(&["localhost".to_owned()], 1)?;
    let dir = tempfile::tempdir()?;
    material.client.write_to(dir.path())?;
    let config = StreamConfig::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}", listener.local_addr()?.port());
    let mut router = stream::router(hub.clone(), config.clone());
    if encoding == "plain" {
        router = router.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
            request.headers_mut().remove(axum::http::header::ACCEPT_ENCODING);
            request
        }));
    }
    if form == "json" {
        router = router.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or("").replace("snapshot=packed4", "");
            if let Ok(uri) = format!("{path}?{query}").parse() {
                *request.uri_mut() = uri;
            }
            request
        }));
    }
    tokio::spawn(stream::serve(listener, router, tls::server_config(&material.server)?, config, hub.clone()));

    let dns_port = free_port()?;
    let file = |name: &str| dir.path().join(name).display().to_string();
    let mut replica = Command::new(&roster)
        .args(["dns", "--controller", &url, "--listen", &format!("127.0.0.1:{dns_port}")])
        .args(["--tls-ca", &file("ca.crt"), "--tls-cert", &file("tls.crt"), "--tls-key", &file("tls.key")])
        .env("ROSTER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let pid = replica.id();
    let outcome = measure(&hub, &mut replica, pid, dns_port, services, endpoints, change_all).await;
    // Ours, by PID.
    let _ = replica.kill();
    let _ = replica.wait();
    let (load_s, load_cpu, steady, first_peak, swap_s, swap_cpu, swap_peak, after, settled) = outcome?;
    let change = if change_all { "all" } else { "one" };
    println!(
        "| records | encoding | snapshot | changed | load s (CPU s) | steady VmRSS MiB | first-load peak MiB | swap s (CPU s) | swap peak MiB | peak / steady | VmRSS after MiB | 1 s later MiB |"
    );
    println!("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {records} | {encoding} | {form} | {change} | {load_s:.1} ({load_cpu:.2}) | {steady:.1} | {first_peak:.1} | {swap_s:.1} ({swap_cpu:.2}) | {swap_peak:.1} | {:.2} | {after:.1} | {settled:.1} |",
        swap_peak / steady
    );
    Ok(())
}

type Measured = (f64, f64, f64, f64, f64, f64, f64, f64, f64);

async fn measure(
    hub: &Hub,
    replica: &mut Child,
    pid: u32,
    port: u16,
    services: usize,
    endpoints: usize,
    change_all: bool,
) -> Result<Measured> {
    // The last pod of the dataset (`set-<s>-<ordinal>` in `ns-<s % 10>`).
    let (last_service, last_ordinal) = (services - 1, endpoints - 1);
    let last =
        format!("set-{last_service}-{last_ordinal}.set-{last_service}.ns-{}.svc.cluster.local", last_service % 10);
    let last_ip = dataset::endpoint_ip(services * endpoints - 1).to_string();
    let load = wait_for_answer(replica, port, &last, &last_ip).await?;
    let load_cpu = cpu_seconds(pid)?;
    let steady = status_mib(pid, "VmRSS:")?;
    let first_peak = status_mib(pid, "VmHWM:")?;

    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    let extra = "swap-marker.ns-0.svc.cluster.local";
    let extra_ip = "10.99.0.1";
    let mut zone = (*hub.current().ok_or("no zone")?).clone();
    if change_all {
        for records in zone.names.values_mut() {
            for record in records.iter_mut() {
                if let RData::A { ip } = record {
                    *ip = std::net::Ipv4Addr::from(u32::from(*ip).wrapping_add(1));
                }
            }
            records.sort();
            records.dedup();
        }
    }
    zone.add(DomainName::parse(extra)?, RData::A { ip: extra_ip.parse()? }, &DomainName::parse("cluster.local")?);
    hub.end_term();
    hub.publish(zone).ok_or("the second publication")?;
    hub.begin_term(2);
    let cpu_before = cpu_seconds(pid)?;
    let swap = wait_for_answer(replica, port, extra, extra_ip).await?;
    let swap_cpu = cpu_seconds(pid)? - cpu_before;
    let swap_peak = status_mib(pid, "VmHWM:")?;
    let after = status_mib(pid, "VmRSS:")?;
    // Once the replica has released what the swap freed (it may answer before it has).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = status_mib(pid, "VmRSS:")?;
    Ok((load.as_secs_f64(), load_cpu, steady, first_peak, swap.as_secs_f64(), swap_cpu, swap_peak, after, settled))
}
