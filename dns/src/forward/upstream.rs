//! One upstream resolver: a query over UDP (TCP when the answer is truncated) and its health.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Consecutive failures after which an upstream is considered down until a health check succeeds.
const MAX_FAILS: u32 = 2;
/// The EDNS buffer roster advertises upstream (the DNS Flag Day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}: timed out")]
    Timeout(SocketAddr),
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("{0}: undecodable answer")]
    Malformed(SocketAddr),
}

#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// The `to` label of the forward metrics.
    pub label: &'static str,
    fails: AtomicU32,
    down: AtomicBool,
}

impl Upstream {
    pub fn new(addr: SocketAddr) -> Self {
        let label = crate::metrics::static_label(addr.to_string());
        Self { addr, label, fails: AtomicU32::new(0), down: AtomicBool::new(false) }
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
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        tokio::time::timeout(timeout, self.over_tcp(&bytes, request.metadata.id))
            .await
            .map_err(|_| ExchangeError::Timeout(self.addr))?
    }

    async fn over_udp(&self, bytes: &[u8], id: u16, query: &Query) -> Result<Message, ExchangeError> {
        let io = |source| ExchangeError::Io { addr: self.addr, source };
        let bind: SocketAddr = if self.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(self.addr).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buffer = vec![0u8; 65535];
        loop {
            let len = socket.recv(&mut buffer).await.map_err(io)?;
            // Ignore stray datagrams (wrong id or question): only the answer to this query counts.
            let Ok(message) = Message::from_vec(&buffer[..len]) else { continue };
            let same_question = message
                .queries
                .first()
                .is_some_and(|q| q.name() == query.name() && q.query_type() == query.query_type());
            if message.metadata.id == id && same_question {
                return Ok(message);
            }
        }
    }

    async fn over_tcp(&self, bytes: &[u8], id: u16) -> Result<Message, ExchangeError> {
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
        if message.metadata.id != id {
            return Err(ExchangeError::Malformed(self.addr));
        }
        Ok(message)
    }
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
