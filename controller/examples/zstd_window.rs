//! What bounding the zstd window costs on the record stream's snapshot line.
//!
//! `cargo run --release -p roster-controller --example zstd_window -- [SERVICES] [ENDPOINTS]`
//! (default 10,000 headless services × 10 ready endpoints = 100,000 pod records).
//!
//! The snapshot line is compressed at level 3 with each window log from 17 to 27 and with zstd's own
//! choice (`bulk::compress`, what the controller did before the window was set); printed per row: the
//! window the frame header asks a decoder for, the compressed size, the ratio and the compression CPU
//! time (this thread's), and the decompression CPU time through the replica's bounded decoder.

use std::error::Error;
use std::time::Duration;

use bytes::BytesMut;
use roster_controller::{Hub, Publisher};
use roster_dns::stream_encoding::ZstdChunks;
use roster_shared::{DomainName, SynthConfig};
use zstd::stream::raw::CParameter;

#[path = "support/dataset.rs"]
mod dataset;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn arg(n: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse::<usize>().map_err(|e| format!("argument {n} `{text}`: {e}"))?),
        None => Ok(default),
    }
}

/// This thread's CPU time (`/proc/thread-self/schedstat`: nanoseconds on a CPU).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(text.split_whitespace().next().and_then(|ns| ns.parse().ok()).unwrap_or(0))
}

fn main() -> Result<()> {
    let services = arg(1, 10_000)?;
    let endpoints = arg(2, 10)?;
    let state = dataset::build_state(services, endpoints, 10);
    let mut synthesis = dataset::fold(&state, SynthConfig::new(DomainName::parse("cluster.local")?));
    let hub = Hub::new(Publisher::new());
    hub.publish_incremental(&mut synthesis, None).ok_or("the first publication")?;
    let (frames, _) = hub.subscribe(None);
    let frame = frames.first().ok_or("no snapshot")?;
    let mut line = serde_json::to_vec(frame)?;
    line.push(b'\n');
    println!("snapshot line of {} pod records: {} bytes, level 3", services * endpoints, line.len());
    println!();
    println!("| window log | frame window | compressed bytes | ratio | compress CPU ms | decompress CPU ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rows: Vec<(String, Vec<u8>, Duration)> = Vec::new();
    let started = thread_cpu();
    let default = zstd::bulk::compress(&line, 3)?;
    rows.push(("zstd's choice".to_owned(), default, thread_cpu() - started));
    for window_log in 17..=27u32 {
        let started = thread_cpu();
        let mut compressor = zstd::bulk::Compressor::new(3)?;
        compressor.set_parameter(CParameter::WindowLog(window_log))?;
        let compressed = compressor.compress(&line)?;
        rows.push((window_log.to_string(), compressed, thread_cpu() - started));
    }
    for (label, compressed, took) in rows {
        let window = window_size(&compressed).map_or("?".to_owned(), |w| format!("{} KiB", w >> 10));
        let started = thread_cpu();
        let decoded = ZstdChunks::new()?.feed(&compressed, &mut BytesMut::new(), usize::MAX).map_or_else(
            |e| format!("refused: {e}"),
            |()| format!("{:.0}", (thread_cpu() - started).as_secs_f64() * 1e3),
        );
        println!(
            "| {label} | {window} | {} | {:.2} | {:.0} | {decoded} |",
            compressed.len(),
            line.len() as f64 / compressed.len() as f64,
            took.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The window a zstd frame's header asks for (RFC 8878 §3.1.1.1): the window descriptor, or the content
/// size for a single-segment frame.
fn window_size(frame: &[u8]) -> Option<u64> {
    let descriptor = *frame.get(4)?;
    if descriptor & 0x20 == 0 {
        let byte = *frame.get(5)?;
        let base = 1u64 << (10 + (byte >> 3));
        return Some(base + base / 8 * u64::from(byte & 7));
    }
    let size_bytes = match descriptor >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let start = 5 + [0, 1, 2, 4][usize::from(descriptor & 3)];
    let mut size = [0u8; 8];
    size[..size_bytes].copy_from_slice(frame.get(start..start + size_bytes)?);
    Some(u64::from_le_bytes(size) + if size_bytes == 2 { 256 } else { 0 })
}
