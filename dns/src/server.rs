//! Binding and running: one UDP socket and one TCP listener on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::handler::FrontHandler;
use crate::store::ZoneStore;

/// How long an idle TCP connection is kept (RFC 7766 suggests seconds, CoreDNS uses 10 s reads).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest TCP answer buffered per connection.
const TCP_RESPONSE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind UDP {addr}: {source}")]
    BindUdp { addr: SocketAddr, source: std::io::Error },
    #[error("cannot bind TCP {addr}: {source}")]
    BindTcp { addr: SocketAddr, source: std::io::Error },
    #[error("DNS server stopped: {0}")]
    Stopped(String),
}

pub struct DnsServer {
    server: Server<FrontHandler>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    udp_task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.udp_task.abort();
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0 picks a free port, the same for both when possible).
    pub async fn bind(addr: SocketAddr, store: Arc<ZoneStore>) -> Result<Self, ServeError> {
        Self::bind_with(addr, FrontHandler::new(store)).await
    }

    /// Binds with a configured handler (forwarder, metrics).
    pub async fn bind_with(addr: SocketAddr, handler: FrontHandler) -> Result<Self, ServeError> {
        let (udp, tcp) = bind_pair(addr).await?;
        let udp_addr = udp.local_addr().map_err(|source| ServeError::BindUdp { addr, source })?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServeError::BindTcp { addr, source })?;
        // TCP through hickory-server; UDP through roster's own loop (see `udp`).
        let udp_task = tokio::spawn(crate::udp::serve(udp, handler.clone()));
        let mut server = Server::new(handler);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(Self { server, udp_addr, tcp_addr, udp_task })
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Serves until the server stops; returns an error if a listener died.
    pub async fn run(mut self) -> Result<(), ServeError> {
        let udp = &mut self.udp_task;
        tokio::select! {
            result = self.server.block_until_done() => result.map_err(|e| ServeError::Stopped(e.to_string())),
            result = udp => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServeError::Stopped(format!("UDP: {e}"))),
                Err(e) => Err(ServeError::Stopped(format!("UDP task: {e}"))),
            },
        }
    }

    /// Stops accepting, lets in-flight TCP queries finish.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.udp_task.abort();
        self.server.shutdown_gracefully().await.map_err(|e| ServeError::Stopped(e.to_string()))
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServeError> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await.map_err(|source| ServeError::BindUdp { addr, source })?;
        let tcp = TcpListener::bind(addr).await.map_err(|source| ServeError::BindTcp { addr, source })?;
        return Ok((udp, tcp));
    }
    // Port 0: take a UDP port, then the same TCP port; retry a few times if TCP's is taken.
    let mut last_error = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await.map_err(|source| ServeError::BindUdp { addr, source })?;
        let chosen = udp.local_addr().map_err(|source| ServeError::BindUdp { addr, source })?;
        match TcpListener::bind(chosen).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => last_error = Some(ServeError::BindTcp { addr: chosen, source }),
        }
    }
    Err(last_error.unwrap_or(ServeError::Stopped("no free port".into())))
}
