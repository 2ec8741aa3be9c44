//! roster's own UDP loop. hickory-server's UDP path spawns a task per query and hands every response
//! through a channel; for the cluster zone, where an answer needs no waiting, this loop answers inline
//! from the receive loop and sends directly. Queries that may wait (forwarding) still get their own task.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Header, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::handler::FrontHandler;

/// Sends one response datagram straight to the client.
#[derive(Clone)]
struct UdpResponder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // RFC 1035 §4.2.1: 512 bytes without EDNS; else what both sides allow (set by the handler).
        let max_size = response.edns().map_or(512, |edns| edns.max_payload().max(512));
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, "cannot encode a response; answering SERVFAIL");
                bytes.clear();
                servfail(id, &mut bytes)?
            }
        };
        self.socket.send_to(&bytes, self.dst).await.map_err(NetError::from)?;
        Ok(info)
    }
}

fn servfail(id: u16, bytes: &mut Vec<u8>) -> Result<ResponseInfo, NetError> {
    let mut metadata = Metadata::new(id, MessageType::Response, hickory_proto::op::OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header { metadata, counts: Default::default() };
    let mut encoder = BinEncoder::new(bytes);
    hickory_proto::serialize::binary::BinEncodable::emit(&header, &mut encoder).map_err(NetError::from)?;
    Ok(ResponseInfo::from(header))
}

/// A FORMERR for a datagram whose header parses but whose body does not (as hickory-server does).
fn format_error(datagram: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = BinDecoder::new(datagram);
    let header = Header::read(&mut decoder).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut message = Message::new(header.metadata.id, MessageType::Response, header.metadata.op_code);
    message.metadata.response_code = ResponseCode::FormErr;
    message.to_vec().ok()
}

/// Serves `socket` until it fails irrecoverably.
pub async fn serve(socket: UdpSocket, handler: FrontHandler) -> Result<(), std::io::Error> {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; 65535];
    loop {
        let (len, src) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // ICMP errors from earlier sends surface here on some systems; they concern one client.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(error) => return Err(error),
        };
        if src.port() == 0 {
            continue;
        }
        let datagram = buffer[..len].to_vec();
        let request = match Request::from_bytes(datagram, src, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                if let Some(reply) = format_error(&buffer[..len]) {
                    let _ = socket.send_to(&reply, src).await;
                }
                continue;
            }
        };
        // Never answer responses: that is how reflection loops start.
        if request.metadata.message_type == MessageType::Response {
            continue;
        }
        let responder = UdpResponder { socket: socket.clone(), dst: src };
        if handler.answers_without_waiting(&request) {
            handler.handle_request::<_, TokioTime>(&request, responder).await;
        } else {
            let handler = handler.clone();
            tokio::spawn(async move {
                handler.handle_request::<_, TokioTime>(&request, responder).await;
            });
        }
    }
}
