//! Test support: an in-process roster DNS server fed from manifest files, and DNS clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use roster_dns::forward::{Forwarder, ForwarderConfig};
use roster_dns::metrics::Metrics;
use roster_dns::{DnsConfig, DnsServer, FrontHandler, ZoneStore};
use roster_shared::{PodMode, SynthConfig, synthesize};

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spec-cluster.yaml");

pub mod netns;
pub mod process;
pub mod upstream;

pub struct Options {
    pub pod_mode: PodMode,
    pub endpoint_pod_names: bool,
    pub ttl: u32,
    /// Forward other names to these (no forwarding when empty).
    pub upstreams: Vec<SocketAddr>,
    pub forward_timeout: Duration,
    pub max_concurrent: usize,
    /// Autopath on (no node search domains).
    pub autopath: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pod_mode: PodMode::Insecure,
            endpoint_pod_names: false,
            ttl: 30,
            upstreams: Vec::new(),
            forward_timeout: Duration::from_millis(400),
            max_concurrent: 100,
            autopath: false,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<ZoneStore>,
    pub metrics: Arc<Metrics>,
    pub forwarder: Option<Arc<Forwarder>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server on 127.0.0.1 (UDP and TCP on one port) serving the manifests at `path`; with
/// `path = None` it starts with no data (not yet synced).
pub async fn start(path: Option<&Path>, options: Options) -> TestServer {
    let mut config = DnsConfig::new("cluster.local", options.ttl, options.pod_mode).unwrap();
    if options.autopath {
        config = config.with_autopath(&[]).unwrap();
    }
    let synth = SynthConfig {
        zone: config.cluster_zone.clone(),
        pod_mode: options.pod_mode,
        endpoint_pod_names: options.endpoint_pod_names,
        multicluster_zone: None,
    };
    let store = Arc::new(ZoneStore::new(config));
    if let Some(path) = path {
        let state = roster_controller::load_path(path).unwrap();
        let mut publisher = roster_controller::Publisher::new();
        let frame = publisher.publish(synthesize(&state, &synth)).unwrap();
        store.apply(&frame).unwrap();
    }
    let metrics = Metrics::new("127.0.0.1:0");
    let mut handler = FrontHandler::new(store.clone()).with_metrics(metrics.clone());
    let forwarder = (!options.upstreams.is_empty()).then(|| {
        let mut config = ForwarderConfig::new(options.upstreams.clone());
        config.timeout = options.forward_timeout;
        config.max_concurrent = options.max_concurrent;
        Forwarder::new(config, metrics.clone())
    });
    if let Some(forwarder) = &forwarder {
        handler = handler.with_forwarder(forwarder.clone());
    }
    let server = DnsServer::bind_with("127.0.0.1:0".parse().unwrap(), handler).await.unwrap();
    let addr = server.udp_addr();
    assert_eq!(addr, server.tcp_addr());
    let task = tokio::spawn(async move {
        let _ = server.run().await;
    });
    TestServer { addr, store, metrics, forwarder, task }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A hickory-net client over one transport.
pub struct DnsClient {
    client: Client<TokioRuntimeProvider>,
}

impl DnsClient {
    pub async fn connect(addr: SocketAddr, transport: Transport) -> Self {
        let provider = TokioRuntimeProvider::default();
        let client = match transport {
            Transport::Udp => {
                let stream =
                    UdpClientStream::builder(addr, provider).with_timeout(Some(Duration::from_secs(3))).build();
                let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
                tokio::spawn(bg);
                client
            }
            Transport::Tcp => {
                let (future, handle) = TcpClientStream::new(addr, None, Some(Duration::from_secs(3)), provider);
                let stream = future.await.unwrap();
                let (client, bg) = Client::<TokioRuntimeProvider>::new(stream, handle);
                tokio::spawn(bg);
                client
            }
        };
        Self { client }
    }

    pub async fn query(&mut self, name: &str, rtype: RecordType) -> Message {
        let name = Name::from_str(name).unwrap();
        self.client.query(name, DNSClass::IN, rtype).await.unwrap().into_message()
    }
}

/// A record in presentation form with the owner lower-cased, for order-independent comparison.
pub fn show(record: &Record) -> String {
    let text = record.to_string();
    match text.split_once(' ') {
        Some((owner, rest)) => {
            format!("{} {}", owner.to_ascii_lowercase(), rest.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        None => text,
    }
}

pub fn sorted(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records.iter().map(show).collect();
    lines.sort();
    lines
}

/// The complete expected answer to one question.
#[derive(Debug, Clone)]
pub struct Expect {
    pub rcode: ResponseCode,
    pub aa: bool,
    pub answer: Vec<String>,
    /// True when the zone's SOA must be (the only record) in the authority section.
    pub soa: Option<&'static str>,
    /// The additional section (OPT aside), in any order.
    pub additional: Vec<String>,
}

/// Checks `response` against `expect`, returning a readable difference.
pub fn check(question: &str, response: &Message, expect: &Expect) -> Result<(), String> {
    let mut problems = Vec::new();
    if response.metadata.response_code != expect.rcode {
        problems.push(format!("rcode {:?}, want {:?}", response.metadata.response_code, expect.rcode));
    }
    if response.metadata.authoritative != expect.aa {
        problems.push(format!("aa {}, want {}", response.metadata.authoritative, expect.aa));
    }
    let mut want = expect.answer.clone();
    want.sort();
    let got = sorted(&response.answers);
    if got != want {
        problems.push(format!("answer {got:#?}, want {want:#?}"));
    }
    let authority: Vec<&Record> = response.authorities.iter().collect();
    match expect.soa {
        None if !authority.is_empty() => problems.push(format!("authority {authority:?}, want none")),
        Some(zone) => {
            let ok = authority.len() == 1
                && authority[0].record_type() == RecordType::SOA
                && authority[0].name.to_string().eq_ignore_ascii_case(zone);
            if !ok {
                problems.push(format!("authority {authority:?}, want the SOA of {zone}"));
            }
        }
        None => {}
    }
    let mut want = expect.additional.clone();
    want.sort();
    let got = sorted(&response.additionals);
    if got != want {
        problems.push(format!("additional {got:#?}, want {want:#?}"));
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{question}: {}", problems.join("; "))) }
}
