//! Wire-level behaviour with raw sockets: truncation, EDNS0, zone transfers, odd questions, and
//! malformed or hostile packets that must neither crash nor stall the server.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use support::{FIXTURE, Options};

fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::new(0x5a5a, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.set_edns(opt);
    }
    message
}

fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    socket.send_to(bytes, addr).unwrap();
    let mut buffer = vec![0u8; 65535];
    match socket.recv_from(&mut buffer) {
        Ok((len, _)) => Some(buffer[..len].to_vec()),
        Err(_) => None,
    }
}

fn udp_query(addr: SocketAddr, message: &Message) -> (Message, usize) {
    let bytes = udp_exchange(addr, &message.to_vec().unwrap()).expect("an answer over UDP");
    (Message::from_vec(&bytes).unwrap(), bytes.len())
}

fn tcp_query(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let bytes = message.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

/// A manifest with one headless service of `count` ready endpoints.
fn big_service(count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec:\n  clusterIP: None\n  ports: [{name: web, port: 80}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: default\n  labels: {kubernetes.io/service-name: big}\naddressType: IPv4\nports: [{name: web, port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 0..count {
        text.push_str(&format!("- addresses: [10.244.{}.{}]\n  hostname: big-{i}\n", i / 200, i % 200 + 1));
    }
    std::fs::write(dir.path().join("big.yaml"), text).unwrap();
    dir
}

#[tokio::test]
async fn udp_answers_over_the_limit_are_truncated_and_tcp_carries_them_whole() {
    let dir = big_service(100);
    let server = support::start(Some(dir.path()), Options::default()).await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        // No EDNS: 512 bytes at most, TC set.
        let (plain, size) = udp_query(addr, &query("big.default.svc.cluster.local.", RecordType::A, None));
        assert!(plain.metadata.truncation, "TC must be set");
        assert!(size <= 512, "answer of {size} bytes over UDP without EDNS");
        assert!(plain.answers.len() < 100);
        // EDNS 1232: more, still truncated.
        let (edns, size) = udp_query(addr, &query("big.default.svc.cluster.local.", RecordType::A, Some(1232)));
        assert!(edns.metadata.truncation);
        assert!(size <= 1232);
        assert!(edns.edns.is_some(), "EDNS answered with OPT");
        // EDNS 4096: the whole answer (100 × 16 bytes plus header) fits.
        let (large, _) = udp_query(addr, &query("big.default.svc.cluster.local.", RecordType::A, Some(4096)));
        assert!(!large.metadata.truncation);
        assert_eq!(large.answers.len(), 100);
        // TCP: everything, including the 100 SRV records that do not fit 4096 bytes.
        let whole = tcp_query(addr, &query("big.default.svc.cluster.local.", RecordType::A, None));
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 100);
        let srv = tcp_query(addr, &query("_web._tcp.big.default.svc.cluster.local.", RecordType::SRV, Some(4096)));
        assert_eq!(srv.answers.len(), 100);
        let (srv_udp, size) =
            udp_query(addr, &query("_web._tcp.big.default.svc.cluster.local.", RecordType::SRV, Some(4096)));
        assert!(srv_udp.metadata.truncation && size <= 4096);
    })
    .await
    .unwrap();
}

/// Parses a whole response: the records the header counts and nothing after them (dig's "Got bad
/// packet: extra input data" is bytes past the counted records).
fn parse_exactly(bytes: &[u8]) -> Message {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    let mut decoder = BinDecoder::new(bytes);
    let message = Message::read(&mut decoder).unwrap();
    assert!(decoder.is_empty(), "{} bytes after the last counted record", decoder.len());
    message
}

fn tcp_exchange(addr: SocketAddr, message: &Message) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let bytes = message.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// dig's whole output (stdout and stderr) for one question.
fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &addr.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (scripts/test.sh installs dnsutils)");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Headless services of 1,500 and 20,000 endpoints with a named port: their SRV sets (48 bytes a
/// record here) pass 65,535 bytes, where 16-bit set lengths saturated: `_web._tcp.<svc> A` came back
/// malformed, and a set stored after a big one (the SRV after the service's A set) was not found. Every answer is
/// well-formed; UDP keeps as many records as fit with TC (as CoreDNS does); TCP as many as fit in
/// 65,535 bytes, with TC; other types at those names are NODATA.
#[tokio::test]
async fn huge_record_sets_answer_well_formed_over_udp_and_tcp() {
    for count in [1_500, 20_000] {
        let dir = big_service(count);
        let server = support::start(Some(dir.path()), Options::default()).await;
        let addr = server.addr;
        tokio::task::spawn_blocking(move || {
            let srv_name = "_web._tcp.big.default.svc.cluster.local.";
            for (name, rtype) in [
                (srv_name, RecordType::A),
                (srv_name, RecordType::AAAA),
                ("big.default.svc.cluster.local.", RecordType::TXT),
            ] {
                for bytes in [
                    udp_exchange(addr, &query(name, rtype, Some(4096)).to_vec().unwrap()).unwrap(),
                    tcp_exchange(addr, &query(name, rtype, None)),
                ] {
                    let message = parse_exactly(&bytes);
                    let what = format!("{count}: {name} {rtype}");
                    assert_eq!(message.metadata.response_code, ResponseCode::NoError, "{what}");
                    assert!(message.answers.is_empty() && !message.metadata.truncation, "{what}: NODATA");
                    assert_eq!(message.authorities.len(), 1, "{what}: the SOA");
                }
            }
            for (name, rtype) in [(srv_name, RecordType::SRV), ("big.default.svc.cluster.local.", RecordType::SRV)] {
                for size in [None, Some(1232), Some(4096)] {
                    let bytes = udp_exchange(addr, &query(name, rtype, size).to_vec().unwrap()).unwrap();
                    let message = parse_exactly(&bytes);
                    assert!(message.metadata.truncation, "{count} {name} over UDP {size:?}: TC");
                    assert!(bytes.len() <= usize::from(size.unwrap_or(512)));
                    assert!(!message.answers.is_empty(), "as many records as fit, as CoreDNS");
                }
                let bytes = tcp_exchange(addr, &query(name, rtype, None));
                let message = parse_exactly(&bytes);
                assert!(message.metadata.truncation, "{count} {name} over TCP: TC");
                // Each SRV record here is at most 2 + 10 + 6 + 45 bytes: the message is nearly full.
                assert!(bytes.len() > 65_535 - 70, "{} bytes", bytes.len());
                assert!(message.answers.len() > 900 && message.answers.len() < count);
                assert!(message.additionals.is_empty(), "no additional data beside a truncated answer");
            }
            // The service's A set: 20,000 × 16 bytes over TCP, truncated at 65,535.
            let bytes = tcp_exchange(addr, &query("big.default.svc.cluster.local.", RecordType::A, None));
            let message = parse_exactly(&bytes);
            assert_eq!(message.metadata.truncation, count * 16 > 65_535 - 60);
            // dig, over UDP and TCP, reads every answer.
            for transport in ["+notcp", "+tcp"] {
                let text = dig(addr, &[srv_name, "A", transport]);
                assert!(text.contains("status: NOERROR") && !text.contains("bad packet"), "{text}");
                let text = dig(addr, &[srv_name, "SRV", transport, "+ignore"]);
                assert!(text.contains("status: NOERROR") && !text.contains("bad packet"), "{text}");
            }
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn edns_and_odd_questions() {
    let server = support::start(Some(Path::new(FIXTURE)), Options::default()).await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        // Without EDNS no OPT comes back; with EDNS it does.
        let (plain, _) = udp_query(addr, &query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, None));
        assert!(plain.edns.is_none());
        assert_eq!(plain.metadata.id, 0x5a5a);
        assert_eq!(plain.queries[0].name().to_string(), "web-0.nginx.demo.svc.cluster.local.");

        // EDNS version 1 → BADVERS.
        let mut v1 = query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, Some(1232));
        v1.edns.as_mut().unwrap().set_version(1);
        let (badvers, _) = udp_query(addr, &v1);
        // BADVERS is 16 (low bits in the header, high bits in OPT); hickory names 16 BADSIG too.
        assert_eq!(u16::from(badvers.metadata.response_code), 16);
        assert!(badvers.edns.is_some());
        assert!(badvers.answers.is_empty());

        // The question is echoed as sent (case preserved).
        let (mixed, _) = udp_query(addr, &query("Web-0.NGINX.demo.svc.cluster.local.", RecordType::A, None));
        assert_eq!(mixed.queries[0].name().to_string(), "Web-0.NGINX.demo.svc.cluster.local.");
        assert_eq!(mixed.answers.len(), 1);

        // A type nobody stores: NODATA with the SOA.
        let (unknown, _) =
            udp_query(addr, &query("web-0.nginx.demo.svc.cluster.local.", RecordType::Unknown(65280), None));
        assert_eq!(unknown.metadata.response_code, ResponseCode::NoError);
        assert!(unknown.answers.is_empty());
        assert_eq!(unknown.authorities.len(), 1);

        // Two questions in one message: FORMERR.
        let mut two = query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, None);
        two.add_query(Query::query(Name::from_ascii("web-1.nginx.demo.svc.cluster.local.").unwrap(), RecordType::A));
        let (formerr, _) = udp_query(addr, &two);
        assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);

        // Zone transfers are refused, over TCP and UDP.
        let axfr = tcp_query(addr, &query("cluster.local.", RecordType::AXFR, None));
        assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
        assert!(axfr.answers.is_empty());
        let ixfr = tcp_query(addr, &query("cluster.local.", RecordType::IXFR, None));
        assert_eq!(ixfr.metadata.response_code, ResponseCode::Refused);

        // Other opcodes: NOTIMP.
        let mut notify = query("cluster.local.", RecordType::SOA, None);
        notify.metadata.op_code = OpCode::Notify;
        let (notimp, _) = udp_query(addr, &notify);
        assert_eq!(notimp.metadata.response_code, ResponseCode::NotImp);

        // A class other than IN: refused.
        let mut chaos = query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, None);
        chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
        let (chaos_answer, _) = udp_query(addr, &chaos);
        assert_eq!(chaos_answer.metadata.response_code, ResponseCode::Refused);
    })
    .await
    .unwrap();
}

/// Hostile datagrams: each is sent, then a normal query must still be answered promptly.
#[tokio::test]
async fn malformed_packets_never_crash_or_stall() {
    let server = support::start(Some(Path::new(FIXTURE)), Options::default()).await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let good = query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, None).to_vec().unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("one byte", vec![0x42]),
            ("short header", vec![0; 11]),
            ("header claims 5 questions, none follow", vec![0, 1, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0]),
            ("label longer than the packet", [vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63], b"abc".to_vec()].concat()),
            ("compression pointer to itself", vec![0, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]),
            ("reserved label type", vec![0, 4, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1, 0, 1]),
            ("a response, not a query", {
                let mut m = query("cluster.local.", RecordType::SOA, None);
                m.metadata.message_type = MessageType::Response;
                m.to_vec().unwrap()
            }),
            ("truncated OPT record", {
                let mut bytes = good.clone();
                bytes[11] = 1; // ARCOUNT = 1, then only half an OPT record
                bytes.extend([0, 0, 41]);
                bytes
            }),
        ];
        // A name of 300 octets (over the 255 limit), built by hand since encoders refuse it.
        let mut long_name = vec![0, 5, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            long_name.push(60);
            long_name.extend(std::iter::repeat_n(b'a', 60));
        }
        long_name.extend([0, 0, 1, 0, 1]);
        cases.push(("name over 255 octets", long_name));
        // Deterministic pseudo-random garbage.
        let mut seed: u32 = 0x1234_5678;
        for size in [12usize, 13, 40, 300, 512, 1500] {
            let bytes: Vec<u8> = (0..size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed & 0xff) as u8
                })
                .collect();
            cases.push(("random bytes", bytes));
        }
        for (what, bytes) in &cases {
            if let Some(reply) = udp_exchange(addr, bytes)
                && let Ok(message) = Message::from_vec(&reply)
            {
                assert_ne!(message.metadata.response_code, ResponseCode::NoError, "{what}: got NOERROR");
            }
            let after = udp_exchange(addr, &good).unwrap_or_else(|| panic!("server stalled after: {what}"));
            assert_eq!(Message::from_vec(&after).unwrap().answers.len(), 1, "after {what}");
        }

        // TCP: garbage after a length prefix, a length prefix with nothing behind it, and an idle
        // connection must not block a well-behaved client.
        let mut garbage = TcpStream::connect(addr).unwrap();
        garbage.write_all(&[0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]).unwrap();
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(&[0xff, 0xff, 1]).unwrap();
        let _idle = TcpStream::connect(addr).unwrap();
        let answer = tcp_query(addr, &query("web-0.nginx.demo.svc.cluster.local.", RecordType::A, None));
        assert_eq!(answer.answers.len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn address_answers_rotate_round_robin() {
    let dir = big_service(4);
    let server = support::start(Some(dir.path()), Options::default()).await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let mut firsts = std::collections::BTreeSet::new();
        let mut full_sets = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let (answer, _) = udp_query(addr, &query("big.default.svc.cluster.local.", RecordType::A, None));
            assert_eq!(answer.answers.len(), 4);
            firsts.insert(answer.answers[0].data.to_string());
            let mut all: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
            all.sort();
            full_sets.insert(all);
        }
        assert!(firsts.len() >= 2, "the first address should change between answers: {firsts:?}");
        assert_eq!(full_sets.len(), 1, "every answer holds the same set");
        // SRV answers keep their order (rotation is for address records only).
        let (srv1, _) =
            udp_query(addr, &query("_web._tcp.big.default.svc.cluster.local.", RecordType::SRV, Some(1232)));
        let (srv2, _) =
            udp_query(addr, &query("_web._tcp.big.default.svc.cluster.local.", RecordType::SRV, Some(1232)));
        assert_eq!(srv1.answers, srv2.answers);
    })
    .await
    .unwrap();
}
