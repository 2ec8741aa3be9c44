//! Every response goes through roster's writer: TCP answers equal UDP answers byte for byte, forwarded
//! answers are compressed against the question, the size metric sees the bytes sent, and the TCP loop
//! pipelines and survives malformed input.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use roster_dns::forward::{Forwarder, ForwarderConfig};
use roster_dns::metrics::Metrics;
use roster_dns::{DnsConfig, DnsServer, FrontHandler, ZoneStore};
use roster_shared::{DomainName, Frame, PodMode, RData as ZoneRData, ZoneData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(5);

fn name(text: &str) -> DomainName {
    DomainName::parse(text).unwrap()
}

fn store() -> Arc<ZoneStore> {
    let store = Arc::new(ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()));
    let (cluster, reverse) = (name("cluster.local"), name("in-addr.arpa"));
    let pod = name("web-0.nginx.default.svc.cluster.local");
    let mut zone = ZoneData::default();
    for i in 2..=4u8 {
        zone.add(name("nginx.default.svc.cluster.local"), ZoneRData::A { ip: [10, 244, 0, i].into() }, &cluster);
    }
    zone.add(pod.clone(), ZoneRData::A { ip: "10.244.0.2".parse().unwrap() }, &cluster);
    zone.add(
        name("_web._tcp.nginx.default.svc.cluster.local"),
        ZoneRData::Srv { priority: 0, weight: 100, port: 80, target: pod.clone() },
        &cluster,
    );
    zone.add(name("2.0.244.10.in-addr.arpa"), ZoneRData::Ptr { target: pod }, &reverse);
    store.apply(&Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) }).unwrap();
    store
}

/// A wire query (ID 0x1234, RD) for `qname`/`qtype`/`qclass`, with an OPT advertising `edns` if given.
fn query(qname: &str, qtype: u16, qclass: u16, edns: Option<u16>) -> Vec<u8> {
    let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
    for label in qname.trim_end_matches('.').split('.') {
        bytes.push(u8::try_from(label.len()).unwrap());
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.push(0);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&qclass.to_be_bytes());
    if let Some(payload) = edns {
        bytes.extend_from_slice(&[0, 0, 41]);
        bytes.extend_from_slice(&payload.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    bytes
}

async fn udp(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(request, server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let len = tokio::time::timeout(TIMEOUT, client.recv(&mut buffer)).await.unwrap().unwrap();
    buffer.truncate(len);
    buffer
}

async fn send_framed(stream: &mut TcpStream, message: &[u8]) {
    let mut framed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await.unwrap();
}

/// The next length-prefixed message, or `None` when the server closed the connection.
async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = tokio::time::timeout(TIMEOUT, stream.read_u16()).await.unwrap().ok()?;
    let mut body = vec![0u8; usize::from(len)];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut body)).await.unwrap().ok()?;
    Some(body)
}

async fn tcp(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    send_framed(&mut stream, request).await;
    read_framed(&mut stream).await.unwrap()
}

/// Authoritative answers, errors and EDNS: the TCP answer is the UDP answer, byte for byte (the
/// address rotation aside, hence one A record); the question keeps the client's case.
#[tokio::test]
async fn tcp_answers_are_the_udp_answers_byte_for_byte() {
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), store()).await.unwrap();
    let addr = server.udp_addr();
    let cases = [
        ("A, mixed case, EDNS", query("Web-0.NGINX.default.svc.cluster.local", 1, 1, Some(1232))),
        ("SRV", query("_web._tcp.nginx.default.svc.cluster.local", 33, 1, None)),
        ("NXDOMAIN", query("missing.default.svc.cluster.local", 1, 1, Some(4096))),
        ("NODATA", query("web-0.nginx.default.svc.cluster.local", 28, 1, None)),
        ("PTR", query("2.0.244.10.in-addr.arpa", 12, 1, None)),
        ("REFUSED (class CH)", query("web-0.nginx.default.svc.cluster.local", 1, 3, None)),
        ("REFUSED (not ours, no forwarder)", query("www.example.com", 1, 1, Some(1232))),
        ("FORMERR (OPT as qtype)", query("web-0.nginx.default.svc.cluster.local", 41, 1, None)),
        ("BADVERS", {
            let mut q = query("web-0.nginx.default.svc.cluster.local", 1, 1, Some(1232));
            let version = q.len() - 5;
            q[version] = 1;
            q
        }),
    ];
    for (what, request) in &cases {
        let over_udp = udp(addr, request).await;
        let over_tcp = tcp(addr, request).await;
        assert_eq!(over_tcp, over_udp, "{what}");
        let qlen = request.len() - if request[11] == 1 { 11 } else { 0 };
        assert_eq!(&over_tcp[12..qlen], &request[12..qlen], "{what}: the question as sent");
    }
    // The A answer's owner is a pointer to the question: 12 + 43 + 16 + OPT 11.
    let response = tcp(addr, &cases[0].1).await;
    assert_eq!(response.len(), 82);
    assert_eq!(&response[55..57], &[0xC0, 12]);
}

/// Over TCP nothing is truncated (UDP without EDNS stops at 512 bytes with TC).
#[tokio::test]
async fn tcp_carries_what_udp_truncates() {
    let store = store();
    let cluster = name("cluster.local");
    let mut zone = ZoneData::default();
    for i in 0..200u8 {
        zone.add(name("big.default.svc.cluster.local"), ZoneRData::A { ip: [10, 1, 0, i].into() }, &cluster);
    }
    store.apply(&Frame::Snapshot { epoch: 2, generation: 1, zone: Arc::new(zone) }).unwrap();
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), store).await.unwrap();
    let request = query("big.default.svc.cluster.local", 1, 1, None);
    let over_udp = udp(server.udp_addr(), &request).await;
    assert!(over_udp.len() <= 512 && over_udp[2] & 0x02 != 0, "TC over UDP");
    let over_tcp = tcp(server.tcp_addr(), &request).await;
    assert_eq!(over_tcp[2] & 0x02, 0);
    let message = Message::from_vec(&over_tcp).unwrap();
    assert_eq!(message.answers.len(), 200);
    assert_eq!(over_tcp.len(), request.len() + 200 * 16, "every owner is a pointer");
}

/// Pipelined queries on one connection are all answered; malformed messages get FORMERR or are
/// skipped without closing the connection; a zero length closes it; a stalled client blocks nobody.
#[tokio::test]
async fn tcp_pipelines_and_survives_malformed_input() {
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), store()).await.unwrap();
    let addr = server.tcp_addr();
    let good = query("web-0.nginx.default.svc.cluster.local", 1, 1, None);

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut burst = Vec::new();
    for id in 0..20u8 {
        let mut request = good.clone();
        request[1] = id;
        burst.extend_from_slice(&u16::try_from(request.len()).unwrap().to_be_bytes());
        burst.extend_from_slice(&request);
    }
    stream.write_all(&burst).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let response = read_framed(&mut stream).await.unwrap();
        assert_eq!(Message::from_vec(&response).unwrap().answers.len(), 1);
        ids.push(response[1]);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<u8>>());

    // A header with a body that does not parse: FORMERR with the same ID, then the connection goes on.
    send_framed(&mut stream, &[0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'x']).await;
    let formerr = read_framed(&mut stream).await.unwrap();
    assert_eq!(formerr, [0xAB, 0xCD, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    // A response and a runt are not answered; the next query is.
    let mut response = good.clone();
    response[2] |= 0x80;
    send_framed(&mut stream, &response).await;
    send_framed(&mut stream, &[1, 2, 3]).await;
    send_framed(&mut stream, &good).await;
    let answer = read_framed(&mut stream).await.unwrap();
    assert_eq!(answer[..2], good[..2]);
    // A zero length ends the connection.
    stream.write_all(&[0, 0]).await.unwrap();
    assert!(read_framed(&mut stream).await.is_none(), "closed after a zero length");

    // Half a message and a silent connection do not hold up another client.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0xFF, 0xFF, 1, 2]).await.unwrap();
    let _idle = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let response = tcp(addr, &good).await;
    assert_eq!(Message::from_vec(&response).unwrap().answers.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A fake upstream that answers every A query with one record, owner in lowercase and uncompressed
/// (hickory's encoder compresses only against its own names, so the owner is written in full).
async fn upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65535];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buffer).await else { return };
            let Ok(request) = Message::from_vec(&buffer[..len]) else { continue };
            let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
            response.metadata.recursion_available = true;
            response.metadata.recursion_desired = true;
            response.add_queries(request.queries.clone());
            let owner = request.queries[0].name().to_lowercase();
            response.add_answer(Record::from_rdata(owner, 300, RData::A(A::new(192, 0, 2, 1))));
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

/// Forwarded answers (a miss, then cache hits) over UDP and TCP: an A answer as Unbound and dnsdist send
/// it (the owner is a pointer to the question, so it reads in the client's case), the same bytes on
/// both transports, and the size metric observes exactly what was sent.
#[tokio::test]
async fn forwarded_answers_are_compressed_and_measured_as_sent() {
    let metrics = Metrics::new("127.0.0.1:0");
    let forwarder = Forwarder::new(ForwarderConfig::new(vec![upstream().await]), metrics.clone());
    let handler = FrontHandler::new(store()).with_forwarder(forwarder).with_metrics(metrics.clone());
    let server = DnsServer::bind_with("127.0.0.1:0".parse().unwrap(), handler).await.unwrap();
    let addr = server.udp_addr();
    let request = query("WWW.Example.COM", 1, 1, None);
    let question_end = request.len();
    let mut sent = [0usize; 2];
    for round in 0..3 {
        let over_udp = udp(addr, &request).await;
        let over_tcp = tcp(addr, &request).await;
        // The TTL may tick between the two; everything else is equal.
        assert_eq!(over_tcp[..question_end + 6], over_udp[..question_end + 6], "round {round}");
        assert_eq!(over_tcp[question_end + 10..], over_udp[question_end + 10..], "round {round}");
        assert_eq!(over_udp.len(), 12 + 21 + 16, "round {round}: header, question, answer with a pointer owner");
        assert_eq!(&over_udp[question_end..question_end + 2], &[0xC0, 12], "owner points at the question");
        assert_eq!(&over_udp[12..question_end], &request[12..], "question as sent");
        let message = Message::from_vec(&over_udp).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert_eq!(message.answers[0].name.to_ascii(), "WWW.Example.COM.");
        sent[0] += over_udp.len();
        sent[1] += over_tcp.len();
    }
    let text = metrics.render();
    for (proto, bytes) in [("udp", sent[0]), ("tcp", sent[1])] {
        let key = format!(
            "coredns_dns_response_size_bytes_sum{{server=\"dns://127.0.0.1:0\",zone=\".\",view=\"\",proto=\"{proto}\"}} "
        );
        let line = text.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key} in {text}"));
        let value: f64 = line[key.len()..].trim().parse().unwrap();
        assert_eq!(value, bytes as f64, "{proto}");
    }
}
