//! Binding and running: one UDP socket and one TCP listener on the same address, each served by
//! roster's own loop (`udp`, `tcp`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::handler::FrontHandler;
use crate::store::ZoneStore;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind UDP {addr}: {source}")]
    BindUdp { addr: SocketAddr, source: std::io::Error },
    #[error("cannot bind TCP {addr}: {source}")]
    BindTcp { addr: SocketAddr, source: std::io::Error },
    #[error("DNS server stopped: {0}")]
    Stopped(String),
}

type Loop = JoinHandle<Result<(), std::io::Error>>;

pub struct DnsServer {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    udp_task: Loop,
    tcp_task: Loop,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.udp_task.abort();
        self.tcp_task.abort();
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
        let udp_task = tokio::spawn(crate::udp::serve(udp, handler.clone()));
        let tcp_task = tokio::spawn(crate::tcp::serve(tcp, handler));
        Ok(Self { udp_addr, tcp_addr, udp_task, tcp_task })
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Serves until a listener dies; returns its error.
    pub async fn run(mut self) -> Result<(), ServeError> {
        let (udp, tcp) = (&mut self.udp_task, &mut self.tcp_task);
        tokio::select! {
            result = udp => stopped("UDP", result),
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
