//! The `roster` command: argument parsing and wiring only.

mod hub_source;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roster_controller::health::Health;
use roster_controller::stream::StreamConfig;
use roster_controller::{Hub, Publisher};
use roster_dns::forward::{Forwarder, ForwarderConfig, parse_upstream, upstreams_from_resolv_conf};
use roster_dns::metrics::Metrics;
use roster_dns::probes::{AliveCheck, ProbeAddrs, ProbeState};
use roster_dns::subscriber::{ClientTls, Freshness, HttpSource, follow_with};
use roster_dns::{DnsConfig, DnsServer, FrontHandler, ZoneStore};
use roster_shared::{PodMode, SynthConfig};
use tracing::info;

use crate::hub_source::HubSource;

// Against glibc's malloc: a fifth less CPU to the first answer and a third fewer bytes per cached entry
// (bench/README.md, Start-up, "the allocator"); `roster_dns::memory` releases its free pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "roster", version, about = "Stable ordinal identities for Kubernetes workloads, published in DNS")]
struct Cli {
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Check the arguments (and what they name, such as zones and URLs) and exit without starting.
    #[arg(long, global = true)]
    check_args: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cluster zone over DNS (UDP and TCP), from manifests or from a controller's stream.
    Dns(DnsArgs),
    /// Watch the Kubernetes API and stream the cluster zone's records to DNS replicas.
    Controller(ControllerArgs),
    /// A stand-in cluster, the controller and a DNS server in one process, on loopback.
    Local(LocalArgs),
    /// Print the IdentitySet CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Print Secrets with new record-stream TLS material (a CA, the controller's server certificate,
    /// the replicas' client certificate) for `kubectl apply -f -`.
    Certs(CertsArgs),
}

#[derive(Args)]
struct CertsArgs {
    /// Namespace of the Secrets and of the controller's Service.
    #[arg(long, default_value = "kube-system")]
    namespace: String,
    /// The controller's Service: its DNS names go into the server certificate.
    #[arg(long, default_value = "roster-controller")]
    service: String,
    /// More names or IP addresses for the server certificate (repeatable).
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// The Secret the controller mounts (server certificate and key, the CA).
    #[arg(long, default_value = "roster-stream-server")]
    server_secret: String,
    /// The Secret the DNS replicas mount (client certificate and key, the CA).
    #[arg(long, default_value = "roster-stream-client")]
    client_secret: String,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
}

/// The record stream's mutual TLS: this end's certificate and key, and the CA the other end's must chain to.
#[derive(Args, Clone, Default)]
struct TlsArgs {
    /// PEM certificate presented on the record stream (`tls.crt` of the Secret `roster certs` prints).
    #[arg(long, env = "ROSTER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (`tls.key`).
    #[arg(long, env = "ROSTER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA the other end's certificate must chain to (`ca.crt`).
    #[arg(long, env = "ROSTER_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self, role: &str) -> anyhow::Result<(&PathBuf, &PathBuf, &PathBuf)> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Ok((ca, cert, key)),
            _ => anyhow::bail!(
                "{role} needs --tls-ca, --tls-cert and --tls-key: the record stream is mutual TLS \
                 (`roster certs` makes the material)"
            ),
        }
    }

    fn server(&self) -> anyhow::Result<Arc<roster_controller::rustls::ServerConfig>> {
        let (ca, cert, key) = self.files("roster controller")?;
        let pem = roster_controller::tls::Pem::read(ca, cert, key)?;
        Ok(roster_controller::tls::server_config(&pem)?)
    }

    fn client(&self, server_name: Option<&str>) -> anyhow::Result<ClientTls> {
        let (ca, cert, key) = self.files("--controller")?;
        ClientTls::from_files(ca, cert, key, server_name).map_err(anyhow::Error::msg)
    }
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

/// What both synthesis (controller) and answering (dns) need to agree on.
#[derive(Args, Clone)]
struct ZoneArgs {
    /// The cluster domain.
    #[arg(long, env = "ROSTER_ZONE", default_value = "cluster.local")]
    zone: String,
    /// How `a-b-c-d.<ns>.pod.<zone>` names are answered.
    #[arg(long, env = "ROSTER_PODS", value_enum, default_value_t = PodsArg::Insecure)]
    pods: PodsArg,
    /// Name endpoints without a hostname after their pod instead of their address.
    #[arg(long, env = "ROSTER_ENDPOINT_POD_NAMES")]
    endpoint_pod_names: bool,
    /// Serve multi-cluster services (KEP-1645) in this zone, e.g. `clusterset.local`: ServiceImports
    /// (multicluster.x-k8s.io/v1alpha1) and the EndpointSlices labelled with their names. Give the
    /// same value to the controller and every replica. Off by default.
    #[arg(long, env = "ROSTER_MULTICLUSTER_ZONE")]
    multicluster_zone: Option<String>,
}

/// How a DNS server answers beyond its zones, and how it is probed and scraped.
#[derive(Args, Clone)]
struct ServeArgs {
    /// Forward names outside the cluster zones to this upstream (IP or IP:port; repeatable).
    #[arg(long = "upstream", env = "ROSTER_UPSTREAMS", value_delimiter = ',')]
    upstreams: Vec<String>,
    /// Forward names outside the cluster zones to the nameservers of --resolv-conf.
    #[arg(long, env = "ROSTER_FORWARD")]
    forward: bool,
    /// Where --forward finds its upstreams (and --autopath the node's search domains).
    #[arg(long, env = "ROSTER_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Complete pods' search lists in the server (CoreDNS's `autopath @kubernetes`): a query for the
    /// first search name of a Running ClusterFirst pod that does not exist is answered with the first
    /// of its other search names that does, behind a CNAME. Off by default, as in CoreDNS.
    #[arg(long, env = "ROSTER_AUTOPATH")]
    autopath: bool,
    /// Upstream queries in flight at most; beyond, queries are refused.
    #[arg(long, env = "ROSTER_MAX_CONCURRENT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent: u32,
    /// Bytes the forwarded-answer cache may hold (records, names and per-entry overhead), e.g. 64Mi.
    #[arg(long, env = "ROSTER_CACHE_BYTES", default_value = "64Mi", value_parser = roster_dns::forward::parse_byte_size)]
    cache_bytes: u64,
    /// Deprecated and ignored: the cache is bounded in bytes (--cache-bytes).
    #[arg(long, env = "ROSTER_CACHE_SIZE", value_parser = clap::value_parser!(u32).range(1..))]
    cache_size: Option<u32>,
    /// TCP connections one client address may hold open; beyond, its new connections are closed.
    #[arg(long, env = "ROSTER_MAX_TCP_PER_CLIENT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_tcp_connections_per_client: u32,
    /// Response rate limiting over UDP (BIND's `responses-per-second`): identical responses per second
    /// to one client netblock (/24, /56) before limiting; 0 (default) turns it off. TCP is never limited.
    #[arg(long, env = "ROSTER_RRL_RESPONSES_PER_SECOND", default_value_t = 0)]
    rrl_responses_per_second: u32,
    /// Seconds over which response rates are tracked (BIND's `window`, 1..=3600).
    #[arg(long, env = "ROSTER_RRL_WINDOW", default_value_t = 15)]
    rrl_window: u32,
    /// Every N-th limited response is sent truncated so real clients retry over TCP (BIND's `slip`,
    /// 0..=10; 0 never).
    #[arg(long, env = "ROSTER_RRL_SLIP", default_value_t = 2)]
    rrl_slip: u32,
    /// Serve `/health` here (CoreDNS: :8080).
    #[arg(long, env = "ROSTER_HEALTH")]
    health: Option<SocketAddr>,
    /// Serve `/ready` here (CoreDNS: :8181).
    #[arg(long, env = "ROSTER_READY")]
    ready: Option<SocketAddr>,
    /// Serve Prometheus `/metrics` here (CoreDNS: :9153).
    #[arg(long, env = "ROSTER_METRICS")]
    metrics: Option<SocketAddr>,
    /// Threads answering UDP, each with its own socket on the address (SO_REUSEPORT when more than
    /// one); default: the CPUs this process may run on (CPU affinity and quotas respected).
    #[arg(long, env = "ROSTER_UDP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    udp_workers: Option<u16>,
    /// On SIGTERM, report not-ready and keep answering this long before stopping (only with --ready).
    #[arg(long, env = "ROSTER_LAMEDUCK_MS", default_value_t = 5000)]
    lameduck_ms: u64,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["objects", "controller"]))]
struct DnsArgs {
    /// Kubernetes manifests to serve: a YAML/JSON file or a directory of them; reloaded on change.
    #[arg(long, env = "ROSTER_OBJECTS")]
    objects: Option<PathBuf>,
    /// A controller's record stream to follow, e.g. https://127.0.0.1:8053 (repeatable: tried in turn).
    #[arg(long, env = "ROSTER_CONTROLLER", value_delimiter = ',')]
    controller: Vec<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// The name the controller's certificate must carry, when the URL's host is not it (an address).
    #[arg(long, env = "ROSTER_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// With --controller: not ready when the last frame or bookmark is older than this (0: never).
    #[arg(long, env = "ROSTER_MAX_STALENESS_SECONDS", default_value_t = 120)]
    max_staleness_seconds: u64,
    /// Address for both UDP and TCP.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    #[command(flatten)]
    zone: ZoneArgs,
    /// TTL of every answer, and the negative-answer TTL (SOA minimum).
    #[arg(long, env = "ROSTER_TTL", default_value_t = 30)]
    ttl: u32,
    /// Reverse zones to serve (repeatable); default `in-addr.arpa` and `ip6.arpa`.
    #[arg(long = "reverse-zone", env = "ROSTER_REVERSE_ZONES", value_delimiter = ',')]
    reverse_zones: Vec<String>,
    /// How often to look for changed manifests, in milliseconds (a change is loaded once it has held
    /// still for one such poll).
    #[arg(long, env = "ROSTER_RELOAD_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    reload_ms: u64,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ControllerArgs {
    /// Kubeconfig to use; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "ROSTER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address of the record stream (`/v1/records`), `/healthz` and `/readyz`.
    #[arg(long, env = "ROSTER_CONTROLLER_LISTEN", default_value = "127.0.0.1:8053")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    /// Stream connections held at once (probes included); beyond, new ones are closed.
    #[arg(long, env = "ROSTER_MAX_STREAM_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_stream_connections: u32,
    /// The Lease whose holder serves the record stream (its terms number the epochs).
    #[arg(long, env = "ROSTER_STREAM_LEASE", default_value = "roster-record-stream")]
    stream_lease: String,
    /// Namespace of --stream-lease.
    #[arg(long, env = "ROSTER_LEASE_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    /// Seconds a stream Lease term lasts without renewal (a standby takes over after it).
    #[arg(long, env = "ROSTER_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    lease_seconds: u64,
    #[command(flatten)]
    zone: ZoneArgs,
    /// Seconds between bookmarks on idle streams (replicas reconnect after three missed ones).
    #[arg(long, env = "ROSTER_BOOKMARK_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    bookmark_seconds: u64,
    /// Also reconcile apps/v1 StatefulSets (only where kube-controller-manager's own StatefulSet
    /// controller is off); IdentitySets are always reconciled.
    #[arg(long, env = "ROSTER_MANAGE_STATEFULSETS")]
    manage_statefulsets: bool,
    /// Create the IdentitySet CRD at start when it is missing.
    #[arg(long, env = "ROSTER_INSTALL_CRD")]
    install_crd: bool,
}

#[derive(Args)]
struct LocalArgs {
    /// Use this existing cluster instead of starting the stand-in (then the stand-in's flags do not apply).
    #[arg(long, env = "ROSTER_KUBECONFIG", conflicts_with_all = ["data_dir", "api", "pod_ready_ms"])]
    kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: also reconcile apps/v1 StatefulSets (only where kube-controller-manager's own
    /// StatefulSet controller is off). The stand-in has none, so there roster always does.
    #[arg(long, env = "ROSTER_MANAGE_STATEFULSETS", requires = "kubeconfig")]
    manage_statefulsets: bool,
    /// With --kubeconfig: create the IdentitySet CRD at start when it is missing (the stand-in always does).
    #[arg(long, env = "ROSTER_INSTALL_CRD", requires = "kubeconfig")]
    install_crd: bool,
    /// Keep the stand-in cluster's state here (survives restarts); default: in memory.
    #[arg(long, env = "ROSTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the stand-in Kubernetes API.
    #[arg(long, env = "ROSTER_API", default_value = "127.0.0.1:6443")]
    api: SocketAddr,
    /// Address of the DNS server (UDP and TCP).
    #[arg(long, env = "ROSTER_DNS", default_value = "127.0.0.1:5353")]
    dns: SocketAddr,
    /// Address of the record stream, for extra `roster dns --controller` replicas.
    #[arg(long, env = "ROSTER_CONTROLLER_LISTEN", default_value = "127.0.0.1:8053")]
    stream: SocketAddr,
    #[command(flatten)]
    zone: ZoneArgs,
    /// TTL of every answer.
    #[arg(long, env = "ROSTER_TTL", default_value_t = 30)]
    ttl: u32,
    /// Milliseconds the stand-in kubelet takes to report a started pod Ready.
    #[arg(long, env = "ROSTER_POD_READY_MS", default_value_t = 1000)]
    pod_ready_ms: u64,
    #[command(flatten)]
    serve: ServeArgs,
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
    if cli.check_args {
        return match check_args(&cli.command) {
            Ok(()) => {
                println!("arguments OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("roster: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dns(args) => run_dns(args).await,
            Command::Controller(args) => run_controller(args).await,
            Command::Local(args) => run_local(args).await,
            Command::Crd => {
                print!("{}", roster_controller::identity::crd_yaml());
                Ok(())
            }
            Command::Certs(args) => print_certs(&args),
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

impl ServeArgs {
    /// `config` with autopath on when asked for, the node's search domains read from --resolv-conf.
    fn autopath(&self, config: DnsConfig) -> anyhow::Result<DnsConfig> {
        if !self.autopath {
            return Ok(config);
        }
        let search = roster_dns::autopath::node_search(&self.resolv_conf)
            .map_err(anyhow::Error::msg)
            .context("--autopath (the node's search domains, from --resolv-conf)")?;
        config.with_autopath(&search).context("--autopath: a search domain of --resolv-conf")
    }

    /// The response rate limiter's settings, when on; an error names the flag out of range.
    fn rate_limit(&self) -> anyhow::Result<Option<roster_dns::rrl::RrlConfig>> {
        if self.rrl_responses_per_second == 0 {
            return Ok(None);
        }
        let config = roster_dns::rrl::RrlConfig {
            window: self.rrl_window,
            slip: self.rrl_slip,
            ..roster_dns::rrl::RrlConfig::new(self.rrl_responses_per_second)
        };
        config.validate().map_err(anyhow::Error::msg).context("--rrl-window/--rrl-slip")?;
        Ok(Some(config))
    }
}

/// What `--check-args` verifies: everything that can be checked without binding or connecting.
fn check_args(command: &Command) -> anyhow::Result<()> {
    let check_serve = |serve: &ServeArgs| -> anyhow::Result<()> {
        for upstream in &serve.upstreams {
            parse_upstream(upstream).context("--upstream")?;
        }
        serve.rate_limit().map(drop)
    };
    match command {
        Command::Dns(args) => {
            let mut config = DnsConfig::new(&args.zone.zone, args.ttl, args.zone.pod_mode()).context("--zone/--ttl")?;
            if !args.reverse_zones.is_empty() {
                config = config.with_reverse_zones(&args.reverse_zones).context("--reverse-zone")?;
            }
            let config = args.zone.multicluster(config)?;
            args.serve.autopath(config)?;
            if !args.controller.is_empty() {
                let tls = args.tls.client(args.tls_server_name.as_deref())?;
                HttpSource::new(&args.controller, tls).map_err(anyhow::Error::msg).context("--controller")?;
            }
            check_serve(&args.serve)
        }
        Command::Controller(args) => {
            args.zone.synth_config()?;
            args.tls.server().map(drop)
        }
        Command::Crd | Command::Certs(_) => Ok(()),
        Command::Local(args) => {
            let config = DnsConfig::new(&args.zone.zone, args.ttl, args.zone.pod_mode()).context("--zone/--ttl")?;
            let config = args.zone.multicluster(config)?;
            args.serve.autopath(config)?;
            check_serve(&args.serve)
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

impl ZoneArgs {
    fn pod_mode(&self) -> PodMode {
        match self.pods {
            PodsArg::Insecure => PodMode::Insecure,
            PodsArg::Verified => PodMode::Verified,
            PodsArg::Disabled => PodMode::Disabled,
        }
    }

    fn synth_config(&self) -> anyhow::Result<SynthConfig> {
        let zone = roster_shared::DomainName::parse(&self.zone).with_context(|| format!("--zone {}", self.zone))?;
        // The same checks as the replicas' (`multicluster`): a zone of its own.
        let multicluster_zone = match &self.multicluster_zone {
            Some(_) => {
                let config = DnsConfig::new(&self.zone, 30, self.pod_mode()).context("--zone")?;
                self.multicluster(config)?.multicluster_zone
            }
            None => None,
        };
        Ok(SynthConfig {
            zone,
            pod_mode: self.pod_mode(),
            endpoint_pod_names: self.endpoint_pod_names,
            multicluster_zone,
        })
    }

    /// `config` serving the multicluster zone when one is given.
    fn multicluster(&self, config: DnsConfig) -> anyhow::Result<DnsConfig> {
        match &self.multicluster_zone {
            Some(zone) => config.with_multicluster_zone(zone).context("--multicluster-zone"),
            None => Ok(config),
        }
    }
}

async fn run_dns(args: DnsArgs) -> anyhow::Result<()> {
    let mut config = DnsConfig::new(&args.zone.zone, args.ttl, args.zone.pod_mode()).context("--zone/--ttl")?;
    if !args.reverse_zones.is_empty() {
        config = config.with_reverse_zones(&args.reverse_zones).context("--reverse-zone")?;
    }
    let config = args.zone.multicluster(config)?;
    let config = args.serve.autopath(config)?;
    let synth = args.zone.synth_config()?;
    let store = Arc::new(ZoneStore::new(config));
    let metrics = Metrics::new(&args.listen.to_string());

    let health = Health::new();
    let mut stream = StreamProbes::default();
    let follower = if let Some(objects) = &args.objects {
        std::fs::metadata(objects).with_context(|| format!("--objects {}", objects.display()))?;
        let interval = Duration::from_millis(args.reload_ms);
        // Each load goes straight into the store as a whole record set: with no stream to serve, a
        // hub would only keep a second copy of every record to diff the next load against.
        let loader = store.clone();
        let publish = move |zone| Some(loader.load(zone));
        let watch = roster_controller::manifest_source::run(objects.clone(), synth.clone(), interval, publish);
        health.spawn_core("manifest watch", watch)
    } else {
        let tls = args.tls.client(args.tls_server_name.as_deref())?;
        let source = HttpSource::new(&args.controller, tls).map_err(anyhow::Error::msg).context("--controller")?;
        let freshness = Freshness::new();
        stream.freshness = Some(freshness.clone());
        stream.max_staleness =
            (args.max_staleness_seconds > 0).then(|| Duration::from_secs(args.max_staleness_seconds));
        // Idle streams carry a bookmark every few seconds; silence this long means a dead connection.
        let follow = follow_with(source, store.clone(), Duration::from_secs(20), Some(metrics.clone()), freshness);
        health.spawn_core("follower", follow)
    };
    let alive = health.clone();
    stream.alive = Some(Arc::new(move || alive.check()));
    let result = serve_dns(store, args.listen, &args.serve, metrics, &synth.zone.to_string(), stream, None).await;
    follower.abort();
    result
}

/// What the probes report about where the records come from.
#[derive(Default)]
struct StreamProbes {
    freshness: Option<Arc<Freshness>>,
    max_staleness: Option<Duration>,
    alive: Option<AliveCheck>,
}

/// Runs a DNS server over `store` until a signal (then lameduck, then stop) or a forwarding loop.
async fn serve_dns(
    store: Arc<ZoneStore>,
    listen: SocketAddr,
    serve: &ServeArgs,
    metrics: Arc<Metrics>,
    zone: &str,
    stream: StreamProbes,
    extra_sockets: Option<PodDnsSockets>,
) -> anyhow::Result<()> {
    let mut handler = FrontHandler::new(store.clone()).with_metrics(metrics.clone());
    if serve.cache_size.is_some() {
        tracing::warn!(
            "--cache-size (ROSTER_CACHE_SIZE) is deprecated and ignored: the cache is bounded by --cache-bytes"
        );
    }
    roster_dns::tcp::set_max_connections_per_client(serve.max_tcp_connections_per_client as usize);
    if let Some(rrl) = serve.rate_limit()? {
        handler = handler.with_rate_limit(Arc::new(roster_dns::rrl::ResponseRateLimiter::new(rrl)));
    }
    let upstreams = if !serve.upstreams.is_empty() {
        serve.upstreams.iter().map(|u| parse_upstream(u)).collect::<Result<Vec<_>, _>>().context("--upstream")?
    } else if serve.forward {
        upstreams_from_resolv_conf(&serve.resolv_conf).context("--forward")?
    } else {
        Vec::new()
    };
    let forwarder = (!upstreams.is_empty()).then(|| {
        let mut config = ForwarderConfig::new(upstreams);
        config.max_concurrent = serve.max_concurrent as usize;
        config.cache_bytes = serve.cache_bytes;
        Forwarder::new(config, metrics.clone())
    });
    if let Some(forwarder) = &forwarder {
        handler = handler.with_forwarder(forwarder.clone());
    }
    let lameduck = Arc::new(AtomicBool::new(false));
    let probe_addrs = ProbeAddrs { health: serve.health, ready: serve.ready, metrics: serve.metrics };
    let probe_state = ProbeState {
        store,
        metrics,
        lameduck: lameduck.clone(),
        freshness: stream.freshness,
        max_staleness: stream.max_staleness,
        alive: stream.alive,
    };
    for (addr, _) in roster_dns::probes::spawn(&probe_addrs, probe_state).await? {
        info!(%addr, "serving probes/metrics");
    }

    let handler_for_extra = handler.clone();
    let udp_workers = serve.udp_workers.map_or_else(roster_dns::udp::default_workers, usize::from);
    let server = DnsServer::bind_workers(listen, handler, udp_workers).await?;
    info!(udp = %server.udp_addr(), tcp = %server.tcp_addr(), %zone, udp_workers, "serving DNS");
    let loop_detected = match &forwarder {
        Some(forwarder) => {
            info!(upstreams = ?forwarder.upstreams(), "forwarding other names");
            forwarder.spawn_health_checks(Duration::from_secs(1));
            let probe = forwarder.clone();
            tokio::spawn(async move { probe.probe_for_loops().await });
            Some(forwarder.loop_detected())
        }
        None => None,
    };
    let loop_detected = async move {
        match loop_detected {
            Some(mut detected) => match detected.wait_for(Option::is_some).await {
                Ok(message) => message.clone().unwrap_or_default(),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    // Sockets bound elsewhere (the stand-in's pod network) get the same handler; aborted on return.
    let _extra = extra_sockets.map(|sockets| AbortOnDrop(tokio::spawn(serve_extra(sockets, handler_for_extra))));
    let running = tokio::spawn(server.run());
    tokio::select! {
        result = running => {
            result.context("DNS server task")??;
            Ok(())
        }
        message = loop_detected => anyhow::bail!("{message}"),
        _ = shutdown_signal() => {
            if serve.ready.is_some() && serve.lameduck_ms > 0 {
                info!(lameduck_ms = serve.lameduck_ms, "lameduck: not ready, still answering");
                lameduck.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(serve.lameduck_ms)).await;
            }
            info!("shutting down");
            Ok(())
        }
    }
}

/// UDP and TCP sockets bound outside `--dns` (the stand-in's pod network), arriving while serving.
type PodDnsSockets = tokio::sync::mpsc::Receiver<(std::net::UdpSocket, std::net::TcpListener)>;

#[cfg(feature = "sim")]
fn pod_dns_sockets(receiver: PodDnsSockets) -> Option<PodDnsSockets> {
    Some(receiver)
}

#[cfg(not(feature = "sim"))]
fn pod_dns_sockets(receiver: Option<PodDnsSockets>) -> Option<PodDnsSockets> {
    receiver
}

/// Serves each pair of sockets that arrives with roster's own UDP worker (one per socket) and TCP loop.
async fn serve_extra(mut sockets: PodDnsSockets, handler: FrontHandler) {
    let mut loops = tokio::task::JoinSet::new();
    while let Some((udp, tcp)) = sockets.recv().await {
        let udp_addr = udp.local_addr();
        // The workers stop when their task is dropped: when this function's task is aborted.
        match (roster_dns::udp::UdpWorkers::start(vec![udp], handler.clone()), tokio::net::TcpListener::from_std(tcp)) {
            (Ok(mut workers), Ok(tcp)) => {
                info!(udp = ?udp_addr, "serving DNS to the stand-in's pods");
                loops.spawn(async move { workers.wait().await });
                loops.spawn(roster_dns::tcp::serve(tcp, handler.clone()));
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "cannot serve DNS to the stand-in's pods"),
        }
    }
    // the stand-in is gone: keep serving what it handed over until the process ends
    while loops.join_next().await.is_some() {}
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context("no kubeconfig found (use --kubeconfig)")?,
    };
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let synth = args.zone.synth_config()?;
    let tls = args.tls.server()?;
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    // Serves the stream only while holding the stream Lease: one history across controllers.
    let hub = Hub::elected(Publisher::new());
    let health = hub.health().clone();
    let (synced_tx, _synced) = tokio::sync::watch::channel(false);
    let watch = roster_controller::kube_source::run(client.clone(), synth, hub.clone(), synced_tx);
    let watch = health.spawn_core("watch", watch);
    let duration = Duration::from_secs(args.lease_seconds);
    let lease = roster_controller::lease::LeaseSettings {
        namespace: args.lease_namespace.clone(),
        name: args.stream_lease.clone(),
        identity: roster_controller::identity::default_identity(),
        duration,
        retry: roster_controller::stream_lease::retry(duration),
    };
    let elector =
        health.spawn_core("stream lease", roster_controller::stream_lease::run(client.clone(), lease, hub.clone()));
    let identity = tokio::spawn(run_identity(client, hub.clone(), args.manage_statefulsets, args.install_crd));
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("--listen {}", args.listen))?;
    info!(addr = %listener.local_addr()?, "serving the record stream (mutual TLS)");
    let config = StreamConfig {
        bookmark_every: Duration::from_secs(args.bookmark_seconds),
        max_connections: args.max_stream_connections as usize,
        ..StreamConfig::default()
    };
    let router = roster_controller::stream::router(hub.clone(), config.clone());
    let server =
        health.spawn_core("stream server", roster_controller::stream::serve(listener, router, tls, config, hub));
    tokio::select! {
        result = server => result.context("record stream server")?.context("record stream server")?,
        _ = shutdown_signal() => info!("shutting down"),
    }
    watch.abort();
    elector.abort();
    identity.abort();
    Ok(())
}

/// `roster certs`: new material, as the two Secrets the Deployments mount.
fn print_certs(args: &CertsArgs) -> anyhow::Result<()> {
    let (service, namespace) = (&args.service, &args.namespace);
    let mut names = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    names.extend(args.server_names.iter().cloned());
    let material = roster_controller::tls::generate(&names, args.days)?;
    print!("{}", roster_controller::tls::secrets_yaml(&material, namespace, &args.server_secret, &args.client_secret));
    Ok(())
}

async fn run_local(args: LocalArgs) -> anyhow::Result<()> {
    let synth = args.zone.synth_config()?;
    let config = DnsConfig::new(&args.zone.zone, args.ttl, args.zone.pod_mode()).context("--zone/--ttl")?;
    let config = args.zone.multicluster(config)?;
    let config = args.serve.autopath(config)?;
    #[cfg(not(feature = "sim"))]
    if args.kubeconfig.is_none() {
        anyhow::bail!(
            "this build of roster has no stand-in cluster (built without the `sim` feature): \
             run `roster local --kubeconfig PATH` against a cluster, or build with the default features"
        );
    }
    check_local_listeners(&args)?;
    // Either an existing cluster, or the stand-in (which has no StatefulSet controller of its own:
    // roster's fills that role).
    #[cfg(feature = "sim")]
    let mut stand_in = None;
    // The stand-in's pods reach this DNS server at 10.96.0.10:53 inside their network: it binds those
    // sockets there (on the first exec) and hands them over here.
    #[cfg(feature = "sim")]
    let (pod_dns_tx, pod_dns) = tokio::sync::mpsc::channel(1);
    #[cfg(not(feature = "sim"))]
    let pod_dns: Option<PodDnsSockets> = None;
    let (kubeconfig, manage_statefulsets, install_crd) = match &args.kubeconfig {
        Some(path) => (path.clone(), args.manage_statefulsets, args.install_crd),
        #[cfg(feature = "sim")]
        None => {
            let sim_config = roster_sim::SimConfig {
                api_addr: args.api,
                data_dir: args.data_dir.clone(),
                ready_delay: Duration::from_millis(args.pod_ready_ms),
                pod_network: roster_sim::podnet::PodNetworkConfig {
                    cluster_domain: args.zone.zone.clone(),
                    dns: Some(pod_dns_tx.clone()),
                },
                ..roster_sim::SimConfig::default()
            };
            let sim = roster_sim::start(sim_config).await.context("starting the stand-in cluster")?;
            let kubeconfig = sim.kubeconfig_path().to_path_buf();
            stand_in = Some(sim);
            (kubeconfig, true, true)
        }
        #[cfg(not(feature = "sim"))]
        None => unreachable!("refused above"),
    };

    // The controller talks to the stand-in exactly as to a real cluster: kube-rs over HTTP.
    let client = kube_client(Some(&kubeconfig)).await?;
    let hub = Hub::default();
    let health = hub.health().clone();
    let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
    let watch =
        health.spawn_core("watch", roster_controller::kube_source::run(client.clone(), synth, hub.clone(), synced_tx));
    let identity = tokio::spawn(run_identity(client, hub.clone(), manage_statefulsets, install_crd));
    // The stream's TLS material, made for this run: the server's in memory, the client's in a
    // temporary directory (removed at exit) for extra `roster dns --controller` replicas.
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), args.stream.ip().to_string()];
    let material = roster_controller::tls::generate(&names, 30)?;
    let tls = roster_controller::tls::server_config(&material.server)?;
    let client_dir =
        tempfile::Builder::new().prefix("roster-local-stream-").tempdir().context("a temporary directory")?;
    material.client.write_to(client_dir.path()).context("writing the stream's client certificate")?;
    let listener =
        tokio::net::TcpListener::bind(args.stream).await.with_context(|| format!("--stream {}", args.stream))?;
    let stream_config = StreamConfig::default();
    let router = roster_controller::stream::router(hub.clone(), stream_config.clone());
    let stream_server = health.spawn_core(
        "stream server",
        roster_controller::stream::serve(listener, router, tls, stream_config, hub.clone()),
    );

    let store = Arc::new(ZoneStore::new(config));
    let metrics = Metrics::new(&args.dns.to_string());
    let follow = follow_with(
        HubSource(hub),
        store.clone(),
        Duration::from_secs(365 * 86400),
        Some(metrics.clone()),
        Freshness::new(),
    );
    let follower = health.spawn_core("follower", follow);
    let _ = tokio::time::timeout(Duration::from_secs(30), synced.wait_for(|synced| *synced)).await;
    let dns_addr = args.dns;

    let through_kubeconfig = || format!("{} (--kubeconfig)", kubeconfig.display());
    #[cfg(feature = "sim")]
    let api = stand_in.as_ref().map_or_else(through_kubeconfig, |sim| sim.url());
    #[cfg(not(feature = "sim"))]
    let api = through_kubeconfig();
    let kubeconfig = kubeconfig.display();
    println!(
        "roster local is up: Kubernetes API {api}, DNS {dns_addr} (UDP+TCP), record stream https://{}",
        args.stream
    );
    println!();
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl apply -f deploy/examples/local/statefulset-web.yaml");
    println!("  kubectl get pods -w -l app=nginx");
    println!("  kubectl get pods -o wide");
    println!("  dig @{} -p {} kubernetes.default.svc.{} +short", dns_addr.ip(), dns_addr.port(), args.zone.zone);
    println!();
    let dir = client_dir.path().display();
    println!("An extra DNS replica follows the record stream with this run's client certificate:");
    println!(
        "  roster dns --controller https://{} --tls-ca {dir}/ca.crt --tls-cert {dir}/tls.crt --tls-key {dir}/tls.key --listen 127.0.0.1:5354",
        args.stream
    );
    println!();
    println!("Ctrl-C stops everything.");

    let alive = health.clone();
    let probes = StreamProbes { alive: Some(Arc::new(move || alive.check())), ..StreamProbes::default() };
    let result = tokio::select! {
        result = serve_dns(store, args.dns, &args.serve, metrics, &args.zone.zone, probes, pod_dns_sockets(pod_dns)) => result,
        result = stream_server => result.context("record stream server")?.context("record stream server"),
    };
    watch.abort();
    identity.abort();
    follower.abort();
    #[cfg(feature = "sim")]
    if let Some(sim) = stand_in {
        sim.shutdown().await;
    }
    result
}

/// `roster local`'s listeners, bound and released before anything starts: a taken port is then one
/// clear line naming the flag to change, instead of watches and connection errors first and the bind
/// failure last. Held together, so two flags given the same address are caught too.
fn check_local_listeners(args: &LocalArgs) -> anyhow::Result<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum Proto {
        Udp,
        Tcp,
    }
    let mut wanted =
        vec![(args.dns, Proto::Udp, "--dns"), (args.dns, Proto::Tcp, "--dns"), (args.stream, Proto::Tcp, "--stream")];
    if args.kubeconfig.is_none() {
        wanted.push((args.api, Proto::Tcp, "--api"));
    }
    let probes = [(args.serve.health, "--health"), (args.serve.ready, "--ready"), (args.serve.metrics, "--metrics")];
    wanted.extend(probes.into_iter().filter_map(|(addr, flag)| Some((addr?, Proto::Tcp, flag))));

    // Dropped (released) on return, once every listener is known to be free.
    let (mut udp_held, mut tcp_held) = (Vec::new(), Vec::new());
    for (i, &(addr, proto, flag)) in wanted.iter().enumerate() {
        let name = if proto == Proto::Udp { "UDP" } else { "TCP" };
        // Port 0 asks for any free port, so it cannot clash.
        let earlier = wanted[..i].iter().find(|(a, p, f)| *a == addr && *p == proto && *f != flag && addr.port() != 0);
        if let Some((_, _, other)) = earlier {
            anyhow::bail!("{addr} ({name}) is given to both {other} and {flag}: choose another with {flag}");
        }
        let bound = match proto {
            Proto::Udp => std::net::UdpSocket::bind(addr).map(|socket| udp_held.push(socket)),
            Proto::Tcp => std::net::TcpListener::bind(addr).map(|listener| tcp_held.push(listener)),
        };
        match bound {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                anyhow::bail!("{addr} is in use ({name}): choose another with {flag}")
            }
            Err(e) => anyhow::bail!("cannot listen on {addr} ({name}): {e}: choose another with {flag}"),
        }
    }
    Ok(())
}

/// The identity controller, logging (not propagating) its end: DNS keeps working without it.
async fn run_identity(client: kube::Client, hub: Hub, manage_statefulsets: bool, install_crd: bool) {
    let options = roster_controller::identity::IdentityOptions {
        manage_statefulsets,
        install_crd,
        metrics: Some(hub.metrics().clone()),
        ..roster_controller::identity::IdentityOptions::default()
    };
    match roster_controller::identity::run(client, options).await {
        Ok(()) => info!("identity controller stopped"),
        Err(error) => tracing::error!(%error, "identity controller failed"),
    }
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
