//! roster's own UDP serving: worker threads, each blocking in `recvmmsg` on its own socket (all bound
//! to one address with SO_REUSEPORT when there are several), answering inline what needs no waiting
//! and sending the batch's replies with one `sendmmsg`. No async runtime sits between a datagram and
//! its answer: tokio's wake-up per datagram cost more than the answer's bookkeeping (bench/README,
//! issue 14). Queries that may wait (forwarding) are handed to the runtime as tasks, which send their
//! reply on the worker's socket.

mod batch;

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::debug;

use crate::handler::{FrontHandler, Outcome};
use crate::request::Incoming;
use crate::rrl::{Verdict, truncated_reply};
use crate::wire::format_error;
use batch::{BATCH, Receiver, Sender};

/// How often a worker blocked on an idle socket looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// The default number of UDP workers: the CPUs this process may run on (CPU affinity and cgroup
/// quotas respected), 1 when that cannot be told.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// UDP worker threads, one per socket. Dropping this stops them (within [`STOP_CHECK`]), which closes
/// their sockets.
pub struct UdpWorkers {
    stop: Arc<AtomicBool>,
    /// Datagrams received, per worker.
    received: Arc<[AtomicU64]>,
    /// A worker's irrecoverable error (or panic); closed once every worker has ended without one.
    failures: mpsc::Receiver<std::io::Error>,
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl UdpWorkers {
    /// Starts a worker thread per socket (each made blocking, with a receive timeout for the stop
    /// check). Must be called within a tokio runtime: queries that wait are spawned on it.
    pub fn start(sockets: Vec<UdpSocket>, handler: FrontHandler) -> std::io::Result<Self> {
        let runtime = Handle::current();
        let stop = Arc::new(AtomicBool::new(false));
        let received: Arc<[AtomicU64]> = sockets.iter().map(|_| AtomicU64::new(0)).collect();
        let (failed, failures) = mpsc::channel(sockets.len().max(1));
        // Made first, so that an error below drops it and stops the workers already started.
        let workers = Self { stop: stop.clone(), received: received.clone(), failures };
        for (index, socket) in sockets.into_iter().enumerate() {
            socket.set_nonblocking(false)?;
            socket.set_read_timeout(Some(STOP_CHECK))?;
            let worker = Worker {
                socket: Arc::new(socket),
                handler: handler.clone(),
                runtime: runtime.clone(),
                stop: stop.clone(),
                received: received.clone(),
                index,
            };
            let report = FailureReport { failed: failed.clone(), index };
            std::thread::Builder::new().name(format!("roster-udp-{index}")).spawn(move || {
                let result = worker.run();
                report.send(result);
            })?;
        }
        Ok(workers)
    }

    /// Resolves with the first worker's irrecoverable error; `Ok` once every worker has stopped
    /// without one (which only a stop asks for).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match self.failures.recv().await {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Datagrams received so far, per worker.
    pub fn received(&self) -> Vec<u64> {
        self.received.iter().map(|count| count.load(Ordering::Relaxed)).collect()
    }
}

/// Tells `UdpWorkers::wait` how a worker ended: its error, or a panic (reported while unwinding).
struct FailureReport {
    failed: mpsc::Sender<std::io::Error>,
    index: usize,
}

impl FailureReport {
    fn send(self, result: std::io::Result<()>) {
        if let Err(error) = result {
            // One report per worker, and the channel has a slot per worker: never full.
            let _ = self.failed.try_send(error);
        }
    }
}

impl Drop for FailureReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.failed.try_send(std::io::Error::other(format!("UDP worker {} panicked", self.index)));
        }
    }
}

struct Worker {
    socket: Arc<UdpSocket>,
    handler: FrontHandler,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    received: Arc<[AtomicU64]>,
    index: usize,
}

/// A reply written into the response buffer of the same index, waiting for the batch's send.
struct Reply {
    to: std::net::SocketAddr,
    /// What metrics record once it is sent (errors to malformed packets are not recorded).
    observed: Option<(Incoming, Outcome)>,
}

impl Worker {
    /// Serves the socket until the stop flag is set (`Ok`) or it fails irrecoverably.
    fn run(self) -> std::io::Result<()> {
        // Code below the handler may spawn or read tokio's clock.
        let _runtime = self.runtime.enter();
        let mut receiver = Receiver::new();
        let mut sender = Sender::new();
        // Answers encoded inline reuse these buffers, one per datagram of a batch.
        let mut responses: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(4096)).collect();
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH);
        while !self.stop.load(Ordering::Relaxed) {
            let count = match receiver.receive(&self.socket) {
                Ok(count) => count,
                // The receive timeout: time to look at the stop flag.
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => continue,
                // ICMP errors from earlier sends surface here on some systems; they concern one client.
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => continue,
                Err(error) => return Err(error),
            };
            self.received[self.index].fetch_add(count as u64, Ordering::Relaxed);
            for index in 0..count {
                let (message, src) = receiver.datagram(index);
                let Some(src) = src.filter(|src| src.port() != 0) else { continue };
                let response = &mut responses[replies.len()];
                let Ok(request) = Incoming::parse(message, src, true) else {
                    if format_error(message, response) {
                        replies.push(Reply { to: src, observed: None });
                    }
                    continue;
                };
                // Never answer responses: that is how reflection loops start.
                if request.is_response {
                    continue;
                }
                if !self.handler.answers_without_waiting(&request) {
                    self.answer_later(request, message.to_vec());
                    continue;
                }
                // The handler's promise: this completes without waiting (the fuzz targets hold it to
                // that). Should it not, the query goes to the runtime like a forwarded one.
                let Some(outcome) = self.handler.respond(&request, response).now_or_never() else {
                    debug!("an inline answer had to wait; answering it on the runtime");
                    self.answer_later(request, message.to_vec());
                    continue;
                };
                if passes_rate_limit(&self.handler, &request, &outcome, message, response) {
                    replies.push(Reply { to: src, observed: Some((request, outcome)) });
                }
            }
            sender.send(&self.socket, replies.iter().zip(&responses).map(|(reply, bytes)| (&bytes[..], reply.to)));
            for (reply, bytes) in replies.drain(..).zip(&responses) {
                if let Some((request, outcome)) = reply.observed {
                    self.handler.observe(&request, &outcome, bytes.len());
                }
            }
        }
        Ok(())
    }

    /// Answers a query that may wait (forwarding) in a task on the runtime.
    fn answer_later(&self, request: Incoming, message: Vec<u8>) {
        let (handler, socket) = (self.handler.clone(), self.socket.clone());
        self.runtime.spawn(async move {
            let mut response = Vec::with_capacity(512);
            let outcome = handler.respond(&request, &mut response).await;
            if !passes_rate_limit(&handler, &request, &outcome, &message, &mut response) {
                return;
            }
            // A blocking send on the runtime: a UDP send waits on no peer, only (briefly) for room in
            // the socket's send buffer.
            if let Err(error) = socket.send_to(&response, request.src) {
                debug!(%error, "failed to send a response");
            }
            handler.observe(&request, &outcome, response.len());
        });
    }
}

/// Applies response rate limiting to the response just written for `request` (received as
/// `message`): true when `response` is to be sent — as written, or replaced by the truncated reply
/// of a slip — and false when it is dropped.
fn passes_rate_limit(
    handler: &FrontHandler,
    request: &Incoming,
    outcome: &Outcome,
    message: &[u8],
    response: &mut Vec<u8>,
) -> bool {
    match handler.rate_limit(request, outcome) {
        Verdict::Send => true,
        Verdict::Drop => false,
        Verdict::Slip => {
            response.clear();
            response.extend_from_slice(&truncated_reply(message).unwrap_or_default());
            !response.is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::DnsConfig;
    use crate::store::ZoneStore;
    use hickory_proto::op::Message;
    use roster_shared::{DomainName, Frame, PodMode, RData, ZoneData};
    use std::net::SocketAddr;
    use tokio::net::UdpSocket as AsyncUdpSocket;

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    /// A wire query for `qname`/`qtype`, with an OPT record advertising `edns` when given.
    fn query(qname: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
        for label in qname.split('.') {
            bytes.push(u8::try_from(label.len()).unwrap());
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.push(0);
        bytes.extend_from_slice(&qtype.to_be_bytes());
        bytes.extend_from_slice(&[0, 1]);
        if let Some(payload) = edns {
            bytes.push(0);
            bytes.extend_from_slice(&41u16.to_be_bytes());
            bytes.extend_from_slice(&payload.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        bytes
    }

    async fn exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let client = AsyncUdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(bytes, server).await.unwrap();
        let mut buffer = vec![0u8; 65535];
        let len =
            tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buffer)).await.unwrap().unwrap();
        buffer.truncate(len);
        buffer
    }

    /// A worker serving a small zone; it stops when the returned `UdpWorkers` is dropped.
    async fn server() -> (SocketAddr, UdpWorkers) {
        let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()));
        let (cluster, reverse) = (name("cluster.local"), name("in-addr.arpa"));
        let pod = name("web-0.nginx.default.svc.cluster.local");
        let mut zone = ZoneData::default();
        zone.add(pod.clone(), RData::A { ip: "10.244.0.2".parse().unwrap() }, &cluster);
        zone.add(
            name("_web._tcp.nginx.default.svc.cluster.local"),
            RData::Srv { priority: 0, weight: 100, port: 80, target: pod.clone() },
            &cluster,
        );
        zone.add(name("2.0.244.10.in-addr.arpa"), RData::Ptr { target: pod }, &reverse);
        store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        (addr, UdpWorkers::start(vec![socket], FrontHandler::new(store)).unwrap())
    }

    /// The answer's owner is a pointer to the question (offset 12), as Knot sends it: header 12 +
    /// question 43 + answer 16 (pointer 2, type/class/TTL/length 10, address 4) + OPT 11 = 82 bytes.
    #[tokio::test]
    async fn answer_owners_are_compressed_against_the_question() {
        let (addr, _workers) = server().await;
        let request = query("Web-0.nginx.default.svc.cluster.local", 1, Some(1232));
        let response = exchange(addr, &request).await;
        let question_end = request.len() - 11;
        assert_eq!(response.len(), 82);
        assert_eq!(&response[question_end..question_end + 2], &[0xC0, 12], "owner points at the question");
        assert_eq!(&response[12..question_end], &request[12..question_end], "question echoed as sent");
        assert_eq!(&response[response.len() - 15..response.len() - 11], &[10, 244, 0, 2]);
        let message = Message::from_vec(&response).unwrap();
        assert_eq!(message.answers.len(), 1);
        assert!(message.metadata.authoritative && message.edns.is_some());
    }

    /// SRV targets stay whole (RFC 2782) and the target's address follows as additional data, its owner
    /// a pointer to the target; NXDOMAIN's SOA names point into the question.
    #[tokio::test]
    async fn srv_targets_are_not_compressed_and_soa_names_are() {
        let (addr, _workers) = server().await;
        let request = query("_web._tcp.nginx.default.svc.cluster.local", 33, None);
        let response = exchange(addr, &request).await;
        let target: &[u8] = b"\x05web-0\x05nginx\x07default\x03svc\x07cluster\x05local\x00";
        let srv_end = request.len() + 2 + 10 + 6 + target.len();
        assert_eq!(&response[srv_end - target.len()..srv_end], target, "SRV target written in full");
        assert_eq!(response.len(), srv_end + 2 + 10 + 4, "one additional A");
        let target_at = u8::try_from(srv_end - target.len()).unwrap();
        assert_eq!(&response[srv_end..srv_end + 2], &[0xC0, target_at], "its owner points at the target");
        assert!(response.ends_with(&[10, 244, 0, 2]));

        let request = query("missing.default.svc.cluster.local", 1, None);
        let response = exchange(addr, &request).await;
        assert_eq!(response[3] & 0x0F, 3, "NXDOMAIN");
        // SOA owner `cluster.local` (pointer), mname `ns.dns` + pointer, rname `hostmaster` + pointer.
        let soa = 2 + 10 + (1 + 2 + 1 + 3 + 2) + (1 + 10 + 2) + 20;
        assert_eq!(response.len(), request.len() + soa);
        let message = Message::from_vec(&response).unwrap();
        assert_eq!(message.authorities[0].name.to_string(), "cluster.local.");
    }

    /// A PTR target shares nothing with an in-addr.arpa question: written in full.
    #[tokio::test]
    async fn ptr_answers_carry_the_whole_target() {
        let (addr, _workers) = server().await;
        let request = query("2.0.244.10.in-addr.arpa", 12, None);
        let response = exchange(addr, &request).await;
        let message = Message::from_vec(&response).unwrap();
        assert_eq!(message.answers[0].data.to_string(), "web-0.nginx.default.svc.cluster.local.");
        assert_eq!(response.len(), request.len() + 2 + 10 + 39);
    }
}
