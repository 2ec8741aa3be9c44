//! The `roster` command: argument parsing and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roster_dns::{DnsConfig, DnsServer, ZoneStore};
use roster_shared::{PodMode, SynthConfig};
use tokio::sync::mpsc;
use tracing::{error, info};

#[derive(Parser)]
#[command(name = "roster", version, about = "Stable ordinal identities for Kubernetes workloads, published in DNS")]
struct Cli {
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cluster zone over DNS (UDP and TCP).
    Dns(DnsArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum PodsArg {
    Insecure,
    Verified,
    Disabled,
}

#[derive(Args)]
struct DnsArgs {
    /// Kubernetes manifests to serve: a YAML/JSON file or a directory of them; reloaded on change.
    #[arg(long, env = "ROSTER_OBJECTS")]
    objects: PathBuf,
    /// Address for both UDP and TCP.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// The cluster domain.
    #[arg(long, env = "ROSTER_ZONE", default_value = "cluster.local")]
    zone: String,
    /// TTL of every answer, and the negative-answer TTL (SOA minimum).
    #[arg(long, env = "ROSTER_TTL", default_value_t = 30)]
    ttl: u32,
    /// How `a-b-c-d.<ns>.pod.<zone>` names are answered.
    #[arg(long, env = "ROSTER_PODS", value_enum, default_value_t = PodsArg::Insecure)]
    pods: PodsArg,
    /// Name endpoints without a hostname after their pod instead of their address.
    #[arg(long, env = "ROSTER_ENDPOINT_POD_NAMES")]
    endpoint_pod_names: bool,
    /// Reverse zones to serve (repeatable); default `in-addr.arpa` and `ip6.arpa`.
    #[arg(long = "reverse-zone", env = "ROSTER_REVERSE_ZONES", value_delimiter = ',')]
    reverse_zones: Vec<String>,
    /// How often to look for changed manifests, in milliseconds.
    #[arg(long, env = "ROSTER_RELOAD_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    reload_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("roster: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dns(args) => run_dns(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn pod_mode(arg: PodsArg) -> PodMode {
    match arg {
        PodsArg::Insecure => PodMode::Insecure,
        PodsArg::Verified => PodMode::Verified,
        PodsArg::Disabled => PodMode::Disabled,
    }
}

async fn run_dns(args: DnsArgs) -> anyhow::Result<()> {
    let mode = pod_mode(args.pods);
    let mut config = DnsConfig::new(&args.zone, args.ttl, mode).context("--zone/--ttl")?;
    if !args.reverse_zones.is_empty() {
        config = config.with_reverse_zones(&args.reverse_zones).context("--reverse-zone")?;
    }
    std::fs::metadata(&args.objects).with_context(|| format!("--objects {}", args.objects.display()))?;
    let synth =
        SynthConfig { zone: config.cluster_zone.clone(), pod_mode: mode, endpoint_pod_names: args.endpoint_pod_names };

    let store = Arc::new(ZoneStore::new(config));
    let server = DnsServer::bind(args.listen, store.clone()).await?;
    info!(udp = %server.udp_addr(), tcp = %server.tcp_addr(), zone = %synth.zone, "serving DNS");

    let (frames_tx, frames_rx) = mpsc::channel(16);
    let source = tokio::spawn(roster_controller::manifest_source::run(
        args.objects.clone(),
        synth,
        Duration::from_millis(args.reload_ms),
        frames_tx,
    ));
    let subscriber = tokio::spawn(roster_dns::subscriber::apply_channel(frames_rx, store));

    tokio::select! {
        result = server.run() => {
            if let Err(e) = &result { error!(error = %e, "DNS server stopped"); }
            result?;
        }
        _ = shutdown_signal() => info!("shutting down"),
    }
    source.abort();
    subscriber.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
