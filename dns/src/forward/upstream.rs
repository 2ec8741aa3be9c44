//! One upstream resolver: a query over UDP (TCP when the answer is truncated) and its health. An
//! answer counts only if it answers our query: same ID, QR set, opcode QUERY, the same single question
//! (name case-insensitively, type, class). Over UDP anything else is dropped and the wait goes on
//! until the timeout (a spoofed or stray datagram must not end it); over TCP it fails the exchange.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::LowerName;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

/// Consecutive failures after which an upstream is considered down until a health check succeeds.
const MAX_FAILS: u32 = 2;
/// The EDNS buffer roster advertises upstream (the DNS Flag Day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;
/// Receive buffer for an upstream's UDP answer; a datagram that fills it is retried over TCP.
const UDP_RECEIVE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}: timed out")]
    Timeout(SocketAddr),
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("{0}: undecodable answer")]
    Malformed(SocketAddr),
    #[error("{addr}: answer does not match the query ({reason})")]
    Mismatch { addr: SocketAddr, reason: &'static str },
}

#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// The `to` label of the forward metrics.
    pub label: &'static str,
    fails: AtomicU32,
    down: AtomicBool,
    /// `roster_forward_rejected_answers_total` for this upstream, per protocol.
    rejected_udp: Counter,
    rejected_tcp: Counter,
}

impl Upstream {
    pub fn new(addr: SocketAddr, metrics: &crate::metrics::Metrics) -> Self {
        let label = crate::metrics::static_label(addr.to_string());
        let rejected = |proto| {
            metrics.forward_rejected.get_or_create(&crate::metrics::ForwardRejectLabels { to: label, proto }).clone()
        };
        Self {
            addr,
            label,
            fails: AtomicU32::new(0),
            down: AtomicBool::new(false),
            rejected_udp: rejected("udp"),
            rejected_tcp: rejected("tcp"),
        }
    }

    pub fn is_healthy(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        self.fails.store(0, Ordering::Relaxed);
        self.down.store(false, Ordering::Relaxed);
    }

    pub fn record_failure(&self) {
        if self.fails.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_FAILS {
            self.down.store(true, Ordering::Relaxed);
        }
    }

    /// Sends `query` and returns the answer, retrying over TCP when the UDP answer is truncated.
    pub async fn exchange(&self, query: &Query, dnssec_ok: bool, timeout: Duration) -> Result<Message, ExchangeError> {
        let request = build_request(query, dnssec_ok);
        let bytes = request.to_vec().map_err(|_| ExchangeError::Malformed(self.addr))?;
        let answer = tokio::time::timeout(timeout, self.over_udp(&bytes, request.metadata.id, query))
            .await
            .map_err(|_| ExchangeError::Timeout(self.addr))??;
        if let Some(answer) = answer.filter(|answer| !answer.metadata.truncation) {
            return Ok(answer);
        }
        tokio::time::timeout(timeout, self.over_tcp(&bytes, request.metadata.id, query))
            .await
            .map_err(|_| ExchangeError::Timeout(self.addr))?
    }

    /// The answer over UDP; `None` when the datagram filled the receive buffer (larger than the payload
    /// size we advertise, so possibly cut by the kernel): the caller asks again over TCP.
    async fn over_udp(&self, bytes: &[u8], id: u16, query: &Query) -> Result<Option<Message>, ExchangeError> {
        let io = |source| ExchangeError::Io { addr: self.addr, source };
        let bind: SocketAddr = if self.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(self.addr).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        // Bounded well above UPSTREAM_PAYLOAD rather than 64 KiB: a 64 KiB buffer per miss, freed between
        // the cache's small allocations, fragments the heap (bench/README, forwarder memory per entry).
        let mut buffer = vec![0u8; UDP_RECEIVE];
        // The socket is connected: the kernel already drops datagrams from other addresses.
        loop {
            let len = socket.recv(&mut buffer).await.map_err(io)?;
            if len == buffer.len() {
                return Ok(None);
            }
            let checked = Message::from_vec(&buffer[..len])
                .map_err(|_| "undecodable")
                .and_then(|message| check_answer(&message, id, query).map(|()| message));
            match checked {
                Ok(message) => return Ok(Some(message)),
                Err(reason) => {
                    debug!(upstream = %self.addr, reason, "dropped a UDP message that does not answer our query");
                    self.rejected_udp.inc();
                }
            }
        }
    }

    async fn over_tcp(&self, bytes: &[u8], id: u16, query: &Query) -> Result<Message, ExchangeError> {
        let io = |source| ExchangeError::Io { addr: self.addr, source };
        let mut stream = TcpStream::connect(self.addr).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).map_err(|_| ExchangeError::Malformed(self.addr))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.map_err(io)?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.map_err(io)?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut body).await.map_err(io)?;
        let message = Message::from_vec(&body).map_err(|_| ExchangeError::Malformed(self.addr))?;
        if let Err(reason) = check_answer(&message, id, query) {
            self.rejected_tcp.inc();
            return Err(ExchangeError::Mismatch { addr: self.addr, reason });
        }
        Ok(message)
    }
}

/// Whether `message` answers the query we sent (RFC 5452 §9.1: ID and question must match); the
/// reason when it does not.
fn check_answer(message: &Message, id: u16, query: &Query) -> Result<(), &'static str> {
    let metadata = &message.metadata;
    if metadata.id != id {
        return Err("ID");
    }
    if metadata.message_type != MessageType::Response {
        return Err("QR bit not set");
    }
    if metadata.op_code != OpCode::Query {
        return Err("opcode");
    }
    let [question] = message.queries.as_slice() else { return Err("question count") };
    if LowerName::new(question.name()) != LowerName::new(query.name()) {
        return Err("question name");
    }
    if question.query_type() != query.query_type() || question.query_class() != query.query_class() {
        return Err("question type or class");
    }
    Ok(())
}

fn build_request(query: &Query, dnssec_ok: bool) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD);
    edns.set_dnssec_ok(dnssec_ok);
    message.set_edns(edns);
    message
}
