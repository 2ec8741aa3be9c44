//! roster's own UDP loop. hickory-server's UDP path spawns a task per query and hands every response
//! through a channel; for the cluster zone, where an answer needs no waiting, this loop answers inline
//! from the receive loop and sends directly. Queries that may wait (forwarding) get their own task.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::handler::FrontHandler;
use crate::request::Incoming;
use crate::rrl::{Verdict, truncated_reply};
use crate::wire::format_error;

/// Serves `socket` until it fails irrecoverably.
pub async fn serve(socket: UdpSocket, handler: FrontHandler) -> Result<(), std::io::Error> {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; 65535];
    // Answers encoded inline reuse one buffer.
    let mut response = Vec::with_capacity(4096);
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
        let message = &buffer[..len];
        let Ok(request) = Incoming::parse(message, src, true) else {
            if format_error(message, &mut response) {
                let _ = socket.send_to(&response, src).await;
            }
            continue;
        };
        // Never answer responses: that is how reflection loops start.
        if request.is_response {
            continue;
        }
        if handler.answers_without_waiting(&request) {
            answer(&handler, &request, message, &socket, &mut response).await;
        } else {
            let handler = handler.clone();
            let socket = socket.clone();
            let message = message.to_vec();
            tokio::spawn(async move {
                let mut response = Vec::with_capacity(512);
                answer(&handler, &request, &message, &socket, &mut response).await;
            });
        }
    }
}

/// Answers `request` (received as `message`) and sends the answer, unless rate limiting says not to.
async fn answer(
    handler: &FrontHandler,
    request: &Incoming,
    message: &[u8],
    socket: &UdpSocket,
    response: &mut Vec<u8>,
) {
    let outcome = handler.respond(request, response).await;
    let sent = match handler.rate_limit(request, &outcome) {
        Verdict::Send => Some(&response[..]),
        Verdict::Drop => None,
        Verdict::Slip => {
            *response = truncated_reply(message).unwrap_or_default();
            (!response.is_empty()).then_some(&response[..])
        }
    };
    let Some(bytes) = sent else { return };
    if let Err(error) = socket.send_to(bytes, request.src).await {
        debug!(%error, "failed to send a response");
    }
    handler.observe(request, &outcome, response.len());
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
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(bytes, server).await.unwrap();
        let mut buffer = vec![0u8; 65535];
        let len =
            tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buffer)).await.unwrap().unwrap();
        buffer.truncate(len);
        buffer
    }

    async fn server() -> SocketAddr {
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
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(serve(socket, FrontHandler::new(store)));
        addr
    }

    /// The answer's owner is a pointer to the question (offset 12), as Knot sends it: header 12 +
    /// question 43 + answer 16 (pointer 2, type/class/TTL/length 10, address 4) + OPT 11 = 82 bytes.
    #[tokio::test]
    async fn answer_owners_are_compressed_against_the_question() {
        let addr = server().await;
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
        let addr = server().await;
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
        let addr = server().await;
        let request = query("2.0.244.10.in-addr.arpa", 12, None);
        let response = exchange(addr, &request).await;
        let message = Message::from_vec(&response).unwrap();
        assert_eq!(message.answers[0].data.to_string(), "web-0.nginx.default.svc.cluster.local.");
        assert_eq!(response.len(), request.len() + 2 + 10 + 39);
    }
}
