//! The record stream at node scale: one controller serving N light subscribers.
//!
//! `cargo run --release -p roster-controller --example fanout -- [SUBSCRIBERS] [SERVICES] [ENDPOINTS] [DELTAS] [zstd|plain] [INTERVAL_MS] [packed|json|bytes]`
//! (default 1,000 subscribers; 10,000 headless services × 10 ready endpoints = 100,000 pod records; 50 deltas,
//! one every 20 ms; subscribers ask for the zstd encoding as replicas do, `plain` for newline-delimited JSON;
//! they ask for the packed snapshot as replicas do, `json` for the JSON snapshot line; `bytes` asks for the
//! packed snapshot and only counts its bytes, without decoding them: the floor that the transport alone
//! sets).
//!
//! The controller side runs in this process: the cluster folded into an `IncrementalSynthesis`, published
//! through a `Hub` and served by the real stream server (`stream::serve`, mutual TLS) on 127.0.0.1. The
//! subscribers run in a child process (this binary with `--subscribe`), so that the CPU time measured here
//! is the controller's own. Each subscriber opens its own TLS connection to `/v1/records`, reads every
//! frame and checks it: every delta and bookmark decoded as a `Frame` and its generation contiguous; a
//! packed snapshot decoded whole as it arrives by the replicas' decoder (`roster_shared::packed`: every
//! name and record built and checked; `support/verified.rs` reads every field of each and counts records
//! and clients against the snapshot's header; no zone kept). A JSON snapshot (`json`) is only
//! checked at its head and read to the end without being held (a 46 MB line in each of 1,000 subscribers
//! would not fit this machine, and decoding it costs ~0.5 CPU s each).
//!
//! Printed: the snapshot fan-out (first connection → the last subscriber has read the whole snapshot), the
//! controller's CPU seconds and RSS during it and the subscriber process's CPU seconds and peak RSS, then delta propagation (publication → each subscriber has
//! read the delta), p50/p99/max over every (subscriber, delta). Every wait is bounded.
//!
//! `fanout --attach URL CERT_DIR N zstd|plain [packed|json|bytes]` only subscribes: N light subscribers to a running
//! `roster controller` (bench/watchers_real.py drives it against a real API server). It prints
//! `snapshot UNIX_NS BYTES` once every subscriber holds the snapshot, then `delta SUBSCRIBER GENERATION UNIX_NS`
//! per subscriber and delta as they arrive, and stops (printing `done`) when its stdin closes.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use roster_controller::stream::{self, StreamConfig};
use roster_controller::{Hub, Publisher, tls};
use roster_dns::stream_encoding::decompressed;
use roster_shared::{DomainName, Frame, PACKED_SNAPSHOT_START, PackedSnapshotHeader, SynthConfig, packed};

#[path = "support/dataset.rs"]
mod dataset;
#[path = "support/verified.rs"]
mod verified;
use verified::Verified;

// The `roster` binary's allocator, for the controller side and the subscribers alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Longest line a subscriber keeps whole (deltas and bookmarks); of longer ones (the snapshot) it keeps
/// the head, which holds the kind, epoch and generation.
const KEEP_WHOLE: usize = 1 << 20;
const KEEP_HEAD: usize = 4096;
const DEADLINE: Duration = Duration::from_secs(900);

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// `(VmRSS, VmHWM)` in MiB of process `pid` ("self" for this one).
fn memory_of(pid: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn memory() -> (f64, f64) {
    memory_of("self")
}

/// User + system CPU seconds of process `pid` (`/proc/PID/stat`, clock ticks of 1/100 s on Linux).
fn cpu_seconds_of(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

fn arg(n: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse::<usize>().map_err(|e| format!("argument {n} `{text}`: {e}"))?),
        None => Ok(default),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--subscribe") {
        return subscribe(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("--attach") {
        return attach(&args[2..]);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(controller())
}

async fn controller() -> Result<()> {
    let subscribers = arg(1, 1000)?;
    let services = arg(2, 10_000)?;
    let endpoints = arg(3, 10)?;
    let deltas = arg(4, 50)?;
    // A delta every INTERVAL_MS: when one delta's delivery to every subscriber takes longer, they queue.
    let interval = Duration::from_millis(arg(6, 20)? as u64);
    let encoding = std::env::args().nth(5).unwrap_or_else(|| "zstd".to_owned());
    if encoding != "zstd" && encoding != "plain" {
        return Err(format!("encoding `{encoding}`: zstd or plain").into());
    }
    let form = std::env::args().nth(7).unwrap_or_else(|| "packed".to_owned());
    if !["packed", "json", "bytes"].contains(&form.as_str()) {
        return Err(format!("snapshot form `{form}`: packed, json or bytes").into());
    }
    let namespaces = 10;
    println!(
        "fanout: {subscribers} subscribers ({encoding}, {form} snapshot); {services} headless services × {endpoints} endpoints = {} pod records; {deltas} deltas, one every {} ms",
        services * endpoints,
        interval.as_millis()
    );

    let state = dataset::build_state(services, endpoints, namespaces);
    let mut synthesis = dataset::fold(&state, SynthConfig::new(DomainName::parse("cluster.local")?));
    let hub = Hub::new(Publisher::new());
    let first = hub.publish_incremental(&mut synthesis, None).ok_or("the first publication")?;
    let records = synthesis.record_count();

    let material = tls::generate(&["localhost".to_owned()], 1)?;
    let dir = tempfile::tempdir()?;
    material.client.write_to(dir.path())?;
    let config = StreamConfig { max_connections: subscribers + 16, ..StreamConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}", listener.local_addr()?.port());
    let server_tls = tls::server_config(&material.server)?;
    tokio::spawn(stream::serve(listener, stream::router(hub.clone(), config.clone()), server_tls, config, hub.clone()));

    let (rss_before, _) = memory();
    let cpu_before = cpu_seconds();
    let started = unix_ns();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--subscribe", &url, &dir.path().display().to_string(), &subscribers.to_string()])
        // One delta more than measured: subscribers close as they reach the last one, and 1,000 closing
        // connections would otherwise delay the measured last delta's delivery to the others.
        .arg((first + deltas as u64 + 1).to_string())
        .arg(&encoding)
        .arg(&form)
        .stdout(Stdio::piped())
        .spawn()?;
    let child_pid = child.id().to_string();
    let stdout = child.stdout.take().ok_or("the child's stdout")?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| -> Result<String> {
        Ok(tokio::time::timeout(DEADLINE, rx.recv()).await?.ok_or("the subscribers ended early")?)
    };

    // The child reports when every subscriber holds the snapshot.
    let snapshot_line = next_line(&mut lines_rx).await?;
    let cpu_fanout = cpu_seconds() - cpu_before;
    let (rss_fanout, hwm_fanout) = memory();
    let subscribers_cpu_fanout = cpu_seconds_of(&child_pid);
    let (_, subscribers_hwm_fanout) = memory_of(&child_pid);
    let fields: Vec<u64> = snapshot_line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [last_done, snapshot_bytes] = fields[..] else { return Err(format!("bad report `{snapshot_line}`").into()) };
    let fanout_s = last_done.saturating_sub(started) as f64 / 1e9;
    println!();
    println!(
        "| records | subscribers | encoding | snapshot bytes (decoded) | fan-out s | controller CPU s | controller RSS MiB before / after / peak | subscriber process CPU s / peak RSS MiB |"
    );
    println!("|---:|---:|---|---:|---:|---:|---|---|");
    println!(
        "| {records} | {subscribers} | {encoding} | {snapshot_bytes} | {fanout_s:.2} | {cpu_fanout:.2} | {rss_before:.1} / {rss_fanout:.1} / {hwm_fanout:.1} | {subscribers_cpu_fanout:.2} / {subscribers_hwm_fanout:.1} |"
    );

    // Deltas: one endpoint's readiness flips, published; the time of publication is kept per generation.
    let cpu_before = cpu_seconds();
    let mut published = std::collections::HashMap::new();
    let keys: Vec<String> = state.endpoint_slices.keys().cloned().collect();
    for round in 0..=deltas {
        let mut slice = state.endpoint_slices[&keys[round % keys.len()]].clone();
        if let Some(endpoint) = slice.endpoints.first_mut() {
            endpoint.ready = round % (2 * keys.len()) >= keys.len();
        }
        let at = unix_ns();
        synthesis.upsert_endpoint_slice(slice);
        let generation = hub.publish_incremental(&mut synthesis, None).ok_or("a readiness flip publishes")?;
        if round < deltas {
            published.insert(generation, at);
        }
        tokio::time::sleep(interval).await;
    }
    let mut latencies = Vec::new();
    let mut slowest = Vec::new();
    let subscriber_totals = loop {
        let line = next_line(&mut lines_rx).await?;
        // `done PEAK_RSS_MIB CPU_S`: the child's own figures, read before it exits.
        if let Some(rest) = line.strip_prefix("done") {
            let fields: Vec<f64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            break (fields.first().copied().unwrap_or(f64::NAN), fields.get(1).copied().unwrap_or(f64::NAN));
        }
        let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        if let [generation, at] = fields[..]
            && let Some(sent) = published.get(&generation)
        {
            latencies.push(at.saturating_sub(*sent) as f64 / 1e6);
            slowest.push((at.saturating_sub(*sent), generation));
        }
    };
    // Which deltas make the tail: the first after the snapshot, or spread out.
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    let tail: Vec<String> = slowest
        .iter()
        .take(5)
        .map(|(ns, generation)| format!("gen {generation}: {:.1} ms", *ns as f64 / 1e6))
        .collect();
    println!("slowest deliveries: {}", tail.join(", "));
    let cpu_deltas = cpu_seconds() - cpu_before;
    let (subscribers_hwm, subscribers_cpu) = subscriber_totals;
    let subscribers_cpu_deltas = subscribers_cpu - subscribers_cpu_fanout;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the subscribers failed: {status}").into());
    }
    latencies.sort_by(f64::total_cmp);
    let expected = subscribers * deltas;
    println!();
    println!(
        "| deltas × subscribers | received | p50 ms | p99 ms | max ms | controller CPU s (deltas) | subscriber process CPU s (deltas) / peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {expected} | {} | {:.2} | {:.2} | {:.2} | {cpu_deltas:.2} | {subscribers_cpu_deltas:.2} / {subscribers_hwm:.1} |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    if latencies.len() != expected {
        return Err(format!("{} of {expected} deltas arrived", latencies.len()).into());
    }
    Ok(())
}

/// The child: `--subscribe URL CERT_DIR N LAST_GENERATION zstd|plain packed|json`.
fn subscribe(args: &[String]) -> Result<()> {
    let [url, dir, count, last, encoding, form] = args else {
        return Err("--subscribe URL CERT_DIR N LAST_GENERATION zstd|plain packed|json".into());
    };
    let ask = Ask::new(encoding, form);
    let count: usize = count.parse()?;
    let last: u64 = last.parse()?;
    let dir = std::path::Path::new(dir);
    let pem = tls::Pem::read(&dir.join("ca.crt"), &dir.join("tls.crt"), &dir.join("tls.key"))?;
    let tls = Arc::new(client_config(&pem)?);
    let port: u16 = url.rsplit_once(':').ok_or("URL without a port")?.1.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let (snapshots_tx, mut snapshots_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        // Every subscriber connects before any reads its snapshot: these 1,000 share one process, and
        // subscribers decoding on its threads delayed the others' TLS handshakes past the server's 10 s
        // timeout (separate replicas do not wait on each other).
        let connected = Arc::new(tokio::sync::Barrier::new(count));
        for _ in 0..count {
            let (tls, snapshots, connected) = (tls.clone(), snapshots_tx.clone(), Some(connected.clone()));
            tasks.spawn(async move {
                let subscriber = one_subscriber(tls, port, last, ask, snapshots, connected, None);
                tokio::time::timeout(DEADLINE, subscriber).await
            });
        }
        drop(snapshots_tx);
        let mut sizes = Vec::new();
        while sizes.len() < count {
            tokio::select! {
                bytes = snapshots_rx.recv() => match bytes {
                    Some(bytes) => sizes.push(bytes),
                    None => break,
                },
                // No subscriber ends before every one has its snapshot unless it failed: say why at once
                // instead of waiting out the deadline.
                Some(ended) = tasks.join_next() => {
                    let why = match ended {
                        Ok(Ok(Ok(_))) => "ended early".to_owned(),
                        Ok(Ok(Err(error))) => error.to_string(),
                        Ok(Err(_)) => "timed out".to_owned(),
                        Err(error) => error.to_string(),
                    };
                    return Err(format!("a subscriber failed before every snapshot was read: {why}").into());
                }
            }
        }
        if sizes.len() != count || sizes.iter().any(|b| *b != sizes[0]) {
            return Err(
                format!("{} of {count} subscribers read a snapshot, sizes {:?}", sizes.len(), sizes.first()).into()
            );
        }
        println!("snapshot {} {}", unix_ns(), sizes[0]);
        let mut failures = Vec::new();
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(Ok(receipts))) => {
                    for (generation, at) in receipts {
                        println!("delta {generation} {at}");
                    }
                }
                Ok(Ok(Err(error))) => failures.push(error.to_string()),
                Ok(Err(_)) => failures.push("timed out".to_owned()),
                Err(error) => failures.push(error.to_string()),
            }
        }
        println!("done {:.1} {:.2}", memory().1, cpu_seconds());
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("{} subscribers failed: {:?}", failures.len(), failures.first()).into())
        }
    })
}

/// `--attach URL CERT_DIR N zstd|plain [packed|json|bytes]`: N subscribers to a running controller until stdin
/// closes.
fn attach(args: &[String]) -> Result<()> {
    let (url, dir, count, encoding, form) = match args {
        [url, dir, count, encoding] => (url, dir, count, encoding, "packed"),
        [url, dir, count, encoding, form] => (url, dir, count, encoding, form.as_str()),
        _ => return Err("--attach URL CERT_DIR N zstd|plain [packed|json|bytes]".into()),
    };
    let ask = Ask::new(encoding, form);
    let count: usize = count.parse()?;
    let dir = std::path::Path::new(dir);
    let pem = tls::Pem::read(&dir.join("ca.crt"), &dir.join("tls.crt"), &dir.join("tls.key"))?;
    let tls = Arc::new(client_config(&pem)?);
    let port: u16 = url.rsplit_once(':').ok_or("URL without a port")?.1.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let (snapshots_tx, mut snapshots_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        // Bounded: a slow reader of stdout slows the subscribers rather than growing a queue.
        let (live_tx, mut live_rx) = tokio::sync::mpsc::channel::<(usize, u64, u64)>(4 * count.max(1));
        for index in 0..count {
            let (tls, snapshots, live) = (tls.clone(), snapshots_tx.clone(), live_tx.clone());
            tasks.spawn(
                async move { one_subscriber(tls, port, u64::MAX, ask, snapshots, None, Some((index, live))).await },
            );
        }
        drop((snapshots_tx, live_tx));
        let mut sizes = Vec::new();
        while sizes.len() < count {
            let bytes = tokio::time::timeout(DEADLINE, snapshots_rx.recv())
                .await?
                .ok_or_else(|| format!("{} of {count} subscribers read a snapshot", sizes.len()))?;
            sizes.push(bytes);
        }
        println!("snapshot {} {}", unix_ns(), sizes.first().copied().unwrap_or(0));
        let stdin_closed = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => break,
                receipt = live_rx.recv() => match receipt {
                    Some((index, generation, at)) => println!("delta {index} {generation} {at}"),
                    None => break,
                },
                Some(ended) = tasks.join_next() => {
                    // A subscriber only ends on an error (its `last` is never reached).
                    return Err(format!("a subscriber ended: {:?}", ended.map(|r| r.err().map(|e| e.to_string()))).into());
                }
            }
        }
        println!("done");
        // Stop the subscribers rather than letting the runtime wait for streams that never end.
        tasks.abort_all();
        Ok(())
    });
    // The stdin reader may still block: do not wait for it.
    runtime.shutdown_background();
    result
}

fn client_config(pem: &tls::Pem) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem.ca.as_bytes()) {
        roots.add(der?)?;
    }
    let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes()).collect::<std::result::Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What a subscriber asks for: the zstd encoding, the packed snapshot; and whether it decodes that.
#[derive(Clone, Copy)]
struct Ask {
    zstd: bool,
    packed: bool,
    decode: bool,
}

impl Ask {
    /// From the arguments `zstd|plain` and `packed|json|bytes`.
    fn new(encoding: &str, form: &str) -> Self {
        Self { zstd: encoding == "zstd", packed: form != "json", decode: form != "bytes" }
    }
}

/// Reads one stream until generation `last`; reports the snapshot's size once read, and returns when
/// each delta arrived.
async fn one_subscriber(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    last: u64,
    ask: Ask,
    snapshots: tokio::sync::mpsc::UnboundedSender<u64>,
    connected: Option<Arc<tokio::sync::Barrier>>,
    live: Option<(usize, LiveReceipts)>,
) -> Result<Vec<(u64, u64)>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let zstd = ask.zstd;
    let path = if ask.packed { "/v1/records?snapshot=packed4" } else { "/v1/records" };
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, format!("localhost:{port}"));
    if zstd {
        request = request.header(hyper::header::ACCEPT_ENCODING, roster_shared::STREAM_ENCODING_ZSTD);
    }
    let request = request.body(http_body_util::Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if let Some(connected) = connected {
        connected.wait().await;
    }
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()).into());
    }
    let encoded = response.headers().get(hyper::header::CONTENT_ENCODING).is_some();
    if encoded != zstd {
        return Err(format!("asked for zstd: {zstd}, Content-Encoding present: {encoded}").into());
    }
    // Decompressed by the replica's own decoder, in pieces of at most 64 KiB: decoding a whole body chunk
    // at once held up to ~27× the chunk (megabytes per subscriber; 3.4 GiB for 200 subscribers).
    let body = response.into_body().into_data_stream();
    let mut chunks: std::pin::Pin<Box<dyn futures::Stream<Item = std::result::Result<Bytes, String>> + Send>> =
        if zstd { Box::pin(decompressed(body)?) } else { Box::pin(body.map(|chunk| chunk.map_err(|e| e.to_string()))) };
    let mut line = Line::default();
    let mut generation: Option<u64> = None;
    let mut receipts = Vec::new();
    // The packed snapshot being decoded, its size and how many of its bytes are still to come.
    let mut packed_snapshot: Option<(packed::Decoder, u64, usize)> = None;
    let mut verified = Verified::default();
    while let Some(data) = chunks.next().await {
        let data = data?;
        let mut rest = &data[..];
        loop {
            if let Some((decoder, _, left)) = &mut packed_snapshot {
                let take = rest.len().min(*left);
                if ask.decode {
                    decoder.feed(&rest[..take], &mut verified)?;
                }
                rest = &rest[take..];
                *left -= take;
                if *left > 0 {
                    break;
                }
                let Some((decoder, bytes, _)) = packed_snapshot.take() else { break };
                if ask.decode {
                    verified.check(&decoder.finish()?)?;
                }
                let _ = snapshots.send(bytes);
                continue;
            }
            let Some(end) = memchr::memchr(b'\n', rest) else { break };
            line.push(&rest[..end]);
            rest = &rest[end + 1..];
            if line.kept.starts_with(PACKED_SNAPSHOT_START) && line.len <= KEEP_WHOLE {
                let header: PackedSnapshotHeader = serde_json::from_slice(&line.kept)?;
                if generation.is_some() {
                    return Err(
                        format!("a packed snapshot at generation {} after {generation:?}", header.generation).into()
                    );
                }
                generation = Some(header.generation);
                packed_snapshot = Some((packed::Decoder::new(), header.bytes, usize::try_from(header.bytes)?));
                line = Default::default();
                continue;
            }
            let (kind, at) = line.check(generation)?;
            generation = Some(at);
            match kind {
                Kind::Snapshot => {
                    let _ = snapshots.send(line.len as u64);
                }
                Kind::Delta => match &live {
                    // Attached to a controller that runs on: report each delta at once, keep nothing.
                    Some((index, live)) => {
                        live.send((*index, at, unix_ns())).await.map_err(|_| "the reporter stopped")?
                    }
                    None => receipts.push((at, unix_ns())),
                },
                Kind::Bookmark => {}
            }
            line = Line::default();
            if generation == Some(last) {
                return Ok(receipts);
            }
        }
        line.push(rest);
    }
    Err(format!("the stream ended at generation {generation:?}, before {last}").into())
}

/// Where an attached subscriber reports each delta at once: (subscriber, generation, unix ns).
type LiveReceipts = tokio::sync::mpsc::Sender<(usize, u64, u64)>;

enum Kind {
    Snapshot,
    Delta,
    Bookmark,
}

/// One stream line as it arrives: whole when short, its head and length when long.
#[derive(Default)]
struct Line {
    kept: Vec<u8>,
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        let room = if self.len <= KEEP_WHOLE { usize::MAX } else { KEEP_HEAD.saturating_sub(self.kept.len()) };
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.len > KEEP_WHOLE {
            self.kept.truncate(KEEP_HEAD);
        }
    }

    /// Decodes (or, for a long line, checks the head of) the frame; its kind and generation, which must
    /// follow `previous`.
    fn check(&self, previous: Option<u64>) -> Result<(Kind, u64)> {
        if self.len <= KEEP_WHOLE {
            let frame: Frame = serde_json::from_slice(&self.kept)?;
            let generation = frame.generation();
            return match (frame, previous) {
                (Frame::Snapshot { .. }, None) => Ok((Kind::Snapshot, generation)),
                (Frame::Delta { .. }, Some(p)) if generation == p + 1 => Ok((Kind::Delta, generation)),
                (Frame::Bookmark { .. }, Some(p)) if generation == p => Ok((Kind::Bookmark, generation)),
                (_, previous) => Err(format!("generation {generation} after {previous:?}").into()),
            };
        }
        let head = std::str::from_utf8(&self.kept).unwrap_or("");
        if !head.starts_with(r#"{"kind":"snapshot""#) || previous.is_some() {
            return Err(format!("a {} byte line that is not the first snapshot", self.len).into());
        }
        let generation = head
            .split_once(r#""generation":"#)
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .ok_or("a snapshot without a generation")?;
        Ok((Kind::Snapshot, generation))
    }
}
