//! Arbitrary bytes as a DNS request, through the path the UDP and TCP loops take
//! (`roster_dns::fuzzing::answer`), against a small fixed zone. Checks more than "no panic": whether a
//! response is sent, that it parses exactly with hickory-proto, fits its transport, echoes ID, opcode
//! and question, keeps EDNS, and that the UDP answer is the TCP answer cut short (never different).

#![no_main]

use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use libfuzzer_sys::fuzz_target;
use roster_dns::FrontHandler;
use roster_dns::fuzzing::{answer, question_pointers_stay_inside};
use roster_fuzz::{TTL, handler_for, now, parse_exactly, sample_zone};

/// One handler per transport over one store (SOA serials come from the clock): each handler has its
/// own rotation counter, both advanced once per input, so both rotate address sets alike and their
/// answers can be compared.
fn handlers() -> &'static (FrontHandler, FrontHandler) {
    static HANDLERS: OnceLock<(FrontHandler, FrontHandler)> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        let udp = handler_for(sample_zone());
        let tcp = FrontHandler::new(udp.store().clone());
        (udp, tcp)
    })
}

/// Checks one transport's response; returns it parsed.
fn check(data: &[u8], tcp: bool, response: Option<Vec<u8>>) -> Option<Message> {
    // Any 12 bytes or more that are not a response get an answer (FORMERR when the rest is unreadable).
    let asks = data.len() >= 12 && data[2] & 0x80 == 0;
    assert_eq!(response.is_some(), asks, "tcp={tcp}: a response exactly when the message is a request");
    let response = response?;
    let message = parse_exactly(&response).unwrap_or_else(|e| panic!("tcp={tcp}: response does not parse: {e}"));
    assert_eq!(message.metadata.id, u16::from_be_bytes([data[0], data[1]]), "ID echoed");
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert_eq!(response[2] & 0x78, data[2] & 0x78, "opcode echoed");

    let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
    let src = std::net::SocketAddr::from(([192, 0, 2, 1], 40000));
    // A question whose pointers leave its section cannot be echoed as sent (its pointers would read
    // other bytes in the response): unreadable, as a request hickory cannot parse.
    let readable = Request::from_bytes(data.to_vec(), src, protocol)
        .ok()
        .filter(|request| question_pointers_stay_inside(data, request.queries.as_bytes().len()));
    let Some(request) = readable else {
        assert_eq!(response.len(), 12, "an unreadable request gets the header alone");
        assert_eq!(message.metadata.response_code, ResponseCode::FormErr);
        return Some(message);
    };
    let limit = match &request.edns {
        _ if tcp => usize::from(u16::MAX),
        Some(edns) => usize::from(edns.max_payload().clamp(512, 4096)),
        None => 512,
    };
    assert!(response.len() <= limit, "tcp={tcp}: {} bytes over the limit {limit}", response.len());
    let question = request.queries.as_bytes();
    assert_eq!(&response[12..12 + question.len()], question, "question copied as sent");
    assert_eq!(message.queries.len(), request.queries.queries().len());
    if let Some(edns) = &request.edns {
        let reply = message.edns.as_ref().unwrap_or_else(|| panic!("tcp={tcp}: EDNS request, no OPT in the reply"));
        assert!((512..=4096).contains(&reply.max_payload()));
        if edns.version() > 0 {
            // Code 16: hickory reads it back as BADSIG, its other name (RFC 6891, RFC 8945).
            assert_eq!(u16::from(message.metadata.response_code), u16::from(ResponseCode::BADVERS));
        }
    }
    if message.metadata.authoritative {
        let records = message.answers.iter().chain(&message.authorities).chain(&message.additionals);
        assert!(records.into_iter().all(|r| r.ttl == TTL), "every authoritative record has the zone TTL");
    }
    Some(message)
}

fuzz_target!(|data: &[u8]| {
    let (udp_handler, tcp_handler) = handlers();
    let udp = check(data, false, now(answer(udp_handler, data, false)));
    // A TCP message is never empty (a zero length closes the connection) nor longer than 65,535.
    if data.is_empty() || data.len() > usize::from(u16::MAX) {
        return;
    }
    let tcp = check(data, true, now(answer(tcp_handler, data, true)));
    let (Some(udp), Some(tcp)) = (udp, tcp) else { return };
    assert_eq!(udp.metadata.response_code, tcp.metadata.response_code);
    assert!(!tcp.metadata.truncation || udp.metadata.truncation, "TCP cut short what UDP sent whole");
    assert!(tcp.answers.starts_with(&udp.answers), "UDP answers are the first of TCP's");
    if !udp.metadata.truncation {
        assert_eq!(udp.answers, tcp.answers, "nothing truncated: the same answers");
        assert_eq!(udp.authorities, tcp.authorities);
        assert!(tcp.additionals.starts_with(&udp.additionals), "additional data may only be cut short");
    }
});
