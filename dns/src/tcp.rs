//! roster's own TCP loop (RFC 1035 §4.2.2, RFC 7766): length-prefixed messages, pipelined. Answers go
//! through the same writer as UDP answers (hickory-server's TCP path encodes with hickory's encoder,
//! with no way to hand it bytes).
//!
//! Per connection, a reader parses requests and answers those that need no waiting inline; the others
//! get a task. Responses reach the writer through a bounded channel: a slot is reserved before a
//! request is handled, which bounds the queries in flight per connection and stops reading while a
//! client does not take its answers. Connections are bounded in number, in total and per client
//! address (one client must not take every slot: beyond its limit its new connections are closed at
//! once), and closed after an idle period, a stalled write, or a malformed length prefix.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::debug;

use crate::handler::FrontHandler;
use crate::request::Incoming;
use crate::wire::format_error;

/// How long a connection may sit without a complete request (RFC 7766 §6.2.3 suggests seconds;
/// CoreDNS reads with a 10 s deadline). Also bounds a request that stops halfway.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to accept its answers before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Queries in flight (and answers waiting to be written) per connection.
const MAX_IN_FLIGHT: usize = 32;
/// Open connections per client address by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// The per-client limit, process-wide: set once at start-up (`--max-tcp-connections-per-client`)
/// before any server is bound.
static MAX_CONNECTIONS_PER_CLIENT: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);

/// Sets how many connections one client address may hold open (at least 1).
pub fn set_max_connections_per_client(limit: usize) {
    MAX_CONNECTIONS_PER_CLIENT.store(limit.max(1), Ordering::Relaxed);
}

/// Open connections per client address; at most `MAX_CONNECTIONS` addresses are present.
#[derive(Default)]
struct PerClient(parking_lot::Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts a new connection from `ip`, or refuses it when `ip` holds `limit` already.
    fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

/// One counted connection; uncounted when dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `listener` until it is dropped (the task aborted); connections end with it.
pub async fn serve(listener: TcpListener, handler: FrontHandler) -> Result<(), std::io::Error> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients = Arc::new(PerClient::default());
    let mut connections = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return Ok(()) };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection reset before accept: both pass.
                debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = clients.admit(peer.ip(), MAX_CONNECTIONS_PER_CLIENT.load(Ordering::Relaxed)) else {
            debug!(%peer, "too many TCP connections from this client; closing the new one");
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        connections.spawn(async move {
            connection(stream, peer, handler).await;
            drop((slot, permit));
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, handler: FrontHandler) {
    // Answers are written as soon as they are ready (Nagle would hold the second of two for an ACK).
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (responses, queue) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::join!(read_requests(reader, peer, handler, responses), write_responses(writer, queue));
}

async fn read_requests(
    reader: OwnedReadHalf,
    peer: SocketAddr,
    handler: FrontHandler,
    responses: mpsc::Sender<Vec<u8>>,
) {
    let mut reader = BufReader::new(reader);
    loop {
        // Reserved before reading, so that a client not reading its answers is not read from either.
        let Ok(slot) = responses.clone().reserve_owned().await else { return };
        let Some(message) = read_message(&mut reader).await else { return };
        let header: Option<[u8; 12]> = message.get(..12).and_then(|h| h.try_into().ok());
        let Ok(request) = Incoming::parse(&message, peer, false) else {
            let mut reply = Vec::new();
            if header.is_some_and(|header| format_error(&header, &mut reply)) {
                slot.send(reply);
            }
            continue;
        };
        if request.is_response {
            continue;
        }
        if handler.answers_without_waiting(&request) {
            answer(&handler, &request, slot).await;
        } else {
            let handler = handler.clone();
            tokio::spawn(async move { answer(&handler, &request, slot).await });
        }
    }
}

async fn answer(handler: &FrontHandler, request: &Incoming, slot: mpsc::OwnedPermit<Vec<u8>>) {
    let mut response = Vec::with_capacity(512);
    let outcome = handler.respond(request, &mut response).await;
    let len = response.len();
    slot.send(response);
    handler.observe(request, &outcome, len);
}

/// One length-prefixed message; `None` at the end of the stream, after the idle timeout, or for a
/// zero length (no DNS message is empty; the stream cannot be trusted after it).
async fn read_message(reader: &mut BufReader<OwnedReadHalf>) -> Option<Vec<u8>> {
    let read = async {
        let len = usize::from(reader.read_u16().await.ok()?);
        if len == 0 {
            return None;
        }
        let mut message = vec![0u8; len];
        reader.read_exact(&mut message).await.ok()?;
        Some(message)
    };
    tokio::time::timeout(IDLE_TIMEOUT, read).await.ok().flatten()
}

async fn write_responses(writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut writer = BufWriter::new(writer);
    while let Some(first) = queue.recv().await {
        // Everything already answered goes out in one write.
        let batch = async {
            let mut next = Some(first);
            while let Some(response) = next {
                next = queue.try_recv().ok();
                // The writer keeps every answer within 65,535 bytes; a longer one cannot be framed and is
                // dropped whole rather than cut into a malformed message.
                let Ok(len) = u16::try_from(response.len()) else {
                    debug!(len = response.len(), "TCP answer too long to frame; dropped");
                    continue;
                };
                writer.write_all(&len.to_be_bytes()).await?;
                writer.write_all(&response).await?;
            }
            writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(%error, "TCP write failed; closing");
                return;
            }
            Err(_) => {
                debug!("TCP client not reading its answers; closing");
                return;
            }
        }
    }
}
