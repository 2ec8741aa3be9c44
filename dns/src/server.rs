//! Binding and running: UDP sockets and one TCP listener on the same address, served by roster's own
//! UDP workers (`udp`, one socket each, SO_REUSEPORT when several) and TCP loop (`tcp`).

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::handler::FrontHandler;
use crate::store::ZoneStore;
use crate::udp::UdpWorkers;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind UDP {addr}: {source}")]
    BindUdp { addr: SocketAddr, source: std::io::Error },
    #[error("cannot bind TCP {addr}: {source}")]
    BindTcp { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the UDP workers: {0}")]
    StartUdp(std::io::Error),
    #[error("DNS server stopped: {0}")]
    Stopped(String),
}

type Loop = JoinHandle<Result<(), std::io::Error>>;

/// A running DNS server; dropping it stops it (the TCP loop at once, the UDP workers within 200 ms).
pub struct DnsServer {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    udp: UdpWorkers,
    tcp_task: Loop,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.tcp_task.abort();
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0 picks a free port, the same for both when possible).
    pub async fn bind(addr: SocketAddr, store: Arc<ZoneStore>) -> Result<Self, ServeError> {
        Self::bind_with(addr, FrontHandler::new(store)).await
    }

    /// Binds with a configured handler (forwarder, metrics) and the default number of UDP workers.
    pub async fn bind_with(addr: SocketAddr, handler: FrontHandler) -> Result<Self, ServeError> {
        Self::bind_workers(addr, handler, crate::udp::default_workers()).await
    }

    /// Binds with `workers` UDP worker threads (at least one), each with its own socket on `addr`.
    pub async fn bind_workers(addr: SocketAddr, handler: FrontHandler, workers: usize) -> Result<Self, ServeError> {
        let (udp, tcp) = bind_pair(addr, workers.max(1)).await?;
        let udp_addr = udp[0].local_addr().map_err(|source| ServeError::BindUdp { addr, source })?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServeError::BindTcp { addr, source })?;
        let udp = UdpWorkers::start(udp, handler.clone()).map_err(ServeError::StartUdp)?;
        let tcp_task = tokio::spawn(crate::tcp::serve(tcp, handler));
        Ok(Self { udp_addr, tcp_addr, udp, tcp_task })
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Datagrams received so far by each UDP worker.
    pub fn udp_received(&self) -> Vec<u64> {
        self.udp.received()
    }

    /// Serves until a UDP worker or the TCP loop dies; returns its error.
    pub async fn run(mut self) -> Result<(), ServeError> {
        let (udp, tcp) = (&mut self.udp, &mut self.tcp_task);
        tokio::select! {
            result = udp.wait() => result.map_err(|e| ServeError::Stopped(format!("UDP: {e}"))),
            result = tcp => stopped("TCP", result),
        }
    }
}

fn stopped(what: &str, result: Result<Result<(), std::io::Error>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Stopped(format!("{what}: {e}"))),
        Err(e) => Err(ServeError::Stopped(format!("{what} task: {e}"))),
    }
}

/// `workers` UDP sockets and a TCP listener on one address. Several UDP sockets share it through
/// SO_REUSEPORT (the kernel spreads clients over them by address hash; Linux admits only sockets of
/// the same user to the group); one socket is bound plainly, as before workers.
async fn bind_pair(addr: SocketAddr, workers: usize) -> Result<(Vec<std::net::UdpSocket>, TcpListener), ServeError> {
    let shared = workers > 1;
    let udp_error = |addr| move |source| ServeError::BindUdp { addr, source };
    if addr.port() != 0 {
        let first = bind_udp(addr, shared).map_err(udp_error(addr))?;
        let tcp = TcpListener::bind(addr).await.map_err(|source| ServeError::BindTcp { addr, source })?;
        let mut udp = vec![first];
        for _ in 1..workers {
            udp.push(bind_udp(addr, true).map_err(udp_error(addr))?);
        }
        return Ok((udp, tcp));
    }
    // Port 0: take a UDP port, then the same TCP port and the other workers' UDP sockets; retry a few
    // times if one of those is taken.
    let mut last_error = None;
    for _ in 0..16 {
        let first = bind_udp(addr, shared).map_err(udp_error(addr))?;
        let chosen = first.local_addr().map_err(udp_error(addr))?;
        let tcp = match TcpListener::bind(chosen).await {
            Ok(tcp) => tcp,
            Err(source) => {
                last_error = Some(ServeError::BindTcp { addr: chosen, source });
                continue;
            }
        };
        let udp: Result<Vec<_>, _> =
            std::iter::once(Ok(first)).chain((1..workers).map(|_| bind_udp(chosen, true))).collect();
        match udp {
            Ok(udp) => return Ok((udp, tcp)),
            Err(source) => last_error = Some(ServeError::BindUdp { addr: chosen, source }),
        }
    }
    Err(last_error.unwrap_or(ServeError::Stopped("no free port".into())))
}

/// A UDP socket bound to `addr`, with SO_REUSEPORT set first when `shared`.
fn bind_udp(addr: SocketAddr, shared: bool) -> std::io::Result<std::net::UdpSocket> {
    if !shared {
        return std::net::UdpSocket::bind(addr);
    }
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::DnsConfig;
    use roster_shared::PodMode;
    use std::time::{Duration, Instant};

    /// A query for `dns-version.cluster.local` TXT with the given id.
    fn query(id: u16) -> Vec<u8> {
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(b"\x0bdns-version\x07cluster\x05local\x00\x00\x10\x00\x01");
        bytes
    }

    /// Two workers on one port both answer (64 clients: the kernel's hash puts all of them on one
    /// socket with probability 2^-63), and dropping the server ends them: the port can be bound
    /// again, without SO_REUSEPORT, for UDP and TCP.
    #[tokio::test]
    async fn two_workers_share_the_port_and_stop_when_dropped() {
        let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()));
        let server =
            DnsServer::bind_workers("127.0.0.1:0".parse().unwrap(), FrontHandler::new(store), 2).await.unwrap();
        let addr = server.udp_addr();
        assert_eq!(server.tcp_addr(), addr, "TCP on the same port");
        let clients: Vec<_> = (0..64u16).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (id, client) in (0u16..).zip(&clients) {
            client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            client.send_to(&query(id), addr).unwrap();
        }
        let mut buffer = [0u8; 512];
        for (id, client) in (0u16..).zip(&clients) {
            let (len, from) = client.recv_from(&mut buffer).unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buffer[..2], &id.to_be_bytes(), "the answer to this client's query");
            // Before the first snapshot: SERVFAIL for a cluster name, the question echoed.
            assert_eq!(buffer[3] & 0x0F, 2);
            assert_eq!(&buffer[12..len], &query(id)[12..]);
        }
        let received = server.udp_received();
        assert_eq!(received.len(), 2);
        assert_eq!(received.iter().sum::<u64>(), 64);
        assert!(received.iter().all(|&count| count > 0), "both workers answered: {received:?}");

        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let udp = std::net::UdpSocket::bind(addr);
            let tcp = std::net::TcpListener::bind(addr);
            if udp.is_ok() && tcp.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the port is still held: {udp:?} {tcp:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A fixed port with several workers refuses a port held without SO_REUSEPORT, naming UDP.
    #[tokio::test]
    async fn a_taken_port_is_refused_with_workers() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()));
        let error = DnsServer::bind_workers(addr, FrontHandler::new(store), 2).await.err().unwrap();
        assert!(error.to_string().starts_with(&format!("cannot bind UDP {addr}")), "{error}");
    }
}
