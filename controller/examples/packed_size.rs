//! The packed snapshot against the JSON one at node scale: size, compressed size and CPU to make and
//! to read, for the record stream (bench/README.md "Record stream at node scale").
//!
//! `cargo run --release -p roster-controller --example packed_size -- [SERVICES] [ENDPOINTS] [ROUNDS]`
//! (default 10,000 headless services × 10 ready endpoints = 100,000 pod records, 5 rounds; each figure
//! is the fastest round's wall-clock time: single-threaded, so a loaded host distorts it little).
//!
//! Read: JSON decoded whole into a `ZoneData` (what a whole-line replica did); packed through the
//! replicas' streaming decoder with a visitor that keeps nothing (what `fanout.rs`'s light subscribers
//! do); zstd decompression of each form's compressed line.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use roster_shared::{DomainName, Frame, SynthConfig, ZoneData, packed};

#[path = "support/dataset.rs"]
mod dataset;
#[path = "support/verified.rs"]
mod verified;
use verified::Verified;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn arg(n: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse::<usize>().map_err(|e| format!("argument {n} `{text}`: {e}"))?),
        None => Ok(default),
    }
}

/// The fastest of `rounds` runs of `work`, in wall-clock milliseconds. (This thread's CPU time, from
/// `/proc/thread-self/schedstat`, advances by scheduler ticks here: 4 ms, as coarse as the figures.)
fn fastest<T>(rounds: usize, mut work: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let before = Instant::now();
        let value = work();
        best = best.min(before.elapsed().as_secs_f64() * 1e3);
        last = Some(value);
    }
    (best, last.unwrap_or_else(|| unreachable!()))
}

/// As the controller compresses each form (JSON lines 2 MiB window, packed snapshot 256 KiB).
fn compress(bytes: &[u8], window_log: u32) -> Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(3)?;
    compressor.set_parameter(zstd::stream::raw::CParameter::WindowLog(window_log))?;
    Ok(compressor.compress(bytes)?)
}

fn main() -> Result<()> {
    let services = arg(1, 10_000)?;
    let endpoints = arg(2, 10)?;
    let rounds = arg(3, 5)?;
    let state = dataset::build_state(services, endpoints, 10);
    let synthesis = dataset::fold(&state, SynthConfig::new(DomainName::parse("cluster.local")?));
    let zone: Arc<ZoneData> = Arc::new(synthesis.zone());
    let records = zone.record_count();
    let frame = Frame::Snapshot { epoch: 1, generation: 1, zone: zone.clone() };
    if let Some(path) = std::env::var_os("PACKED_DUMP") {
        // For `zstd -b`: the packed snapshot's bytes.
        std::fs::write(path, packed::encode(&zone)?)?;
    }
    if std::env::var_os("PACKED_DECODE_ONLY").is_some() {
        // For a profiler: only the packed decode, `rounds` times.
        let packed = packed::encode(&zone)?;
        let mut walls = Vec::new();
        for _ in 0..rounds.max(1) {
            let start = Instant::now();
            let mut verified = Verified::default();
            let summary = packed::decode(&packed[..], &mut verified)?;
            verified.check(&summary)?;
            walls.push(start.elapsed().as_secs_f64() * 1e3);
        }
        walls.sort_by(f64::total_cmp);
        println!("packed decode ms: fastest {:.2}, median {:.2}", walls[0], walls[walls.len() / 2]);
        return Ok(());
    }

    let (json_encode, json) = fastest(rounds, || serde_json::to_vec(&frame));
    let json = json?;
    let (packed_encode, packed) = fastest(rounds, || packed::encode(&zone));
    let packed = packed?;
    let (json_compress, json_zstd) = fastest(rounds, || compress(&json, roster_shared::STREAM_ZSTD_WINDOW_LOG));
    let json_zstd = json_zstd?;
    let (packed_compress, packed_zstd) = fastest(rounds, || compress(&packed, roster_shared::PACKED_ZSTD_WINDOW_LOG));
    let packed_zstd = packed_zstd?;
    let (json_inflate, _) = fastest(rounds, || zstd::bulk::decompress(&json_zstd, json.len()));
    let (packed_inflate, _) = fastest(rounds, || zstd::bulk::decompress(&packed_zstd, packed.len()));
    let (json_decode, decoded) = fastest(rounds, || serde_json::from_slice::<Frame>(&json));
    if !matches!(decoded?, Frame::Snapshot { zone: ref z, .. } if **z == *zone) {
        return Err("the JSON snapshot did not round-trip".into());
    }
    let (packed_decode, verified) = fastest(rounds, || {
        let mut verified = Verified::default();
        packed::decode(&packed[..], &mut verified).map(|summary| (summary, verified))
    });
    let (summary, verified) = verified?;
    verified.check(&summary)?;
    if summary.records != records as u64 || packed::decode_zone(&packed)? != *zone {
        return Err("the packed snapshot did not round-trip".into());
    }
    println!(
        "{services} services × {endpoints} endpoints: {} names, {records} records, {} clients",
        zone.names.len(),
        zone.clients.len()
    );
    println!();
    println!("| form | bytes | B / pod | zstd bytes | encode ms | compress ms | decompress ms | decode ms (checked) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let pods = (services * endpoints).max(1);
    for (form, bytes, zstd, encode, compress, inflate, decode) in [
        ("JSON", json.len(), json_zstd.len(), json_encode, json_compress, json_inflate, json_decode),
        ("packed", packed.len(), packed_zstd.len(), packed_encode, packed_compress, packed_inflate, packed_decode),
    ] {
        println!(
            "| {form} | {bytes} | {} | {zstd} | {encode:.1} | {compress:.1} | {inflate:.1} | {decode:.1} |",
            bytes / pods
        );
    }
    Ok(())
}
