//! Fake upstream resolvers on loopback, each with one behaviour, counting the queries they get.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `*.example.com` A → 192.0.2.<n> (TTL 300); other names NXDOMAIN with an SOA (minimum 60).
    Good,
    /// Never answers.
    Silent,
    /// Always SERVFAIL.
    ServFail,
    /// Over UDP: TC set, no records. Over TCP: 40 A records.
    Truncating,
    /// As `Good`, 300 ms later.
    Delayed,
    /// Over UDP, before `Good`'s answer, messages that do not answer the query (another ID, QR clear,
    /// opcode STATUS, another name, type or class, two questions, garbage), each claiming 192.0.2.66.
    Spoofing,
    /// Over UDP: TC set. Over TCP: an answer to another question (`evil.example.com.`).
    TruncatingWrongQuestion,
    /// Over UDP: TC set. Over TCP: one TXT record of ~30 KB (120 strings of 250 bytes), TTL 300.
    LargeTxt,
    /// Over UDP: no TC, but one TXT record of ~5 KB, past roster's 4 KiB receive buffer (an upstream
    /// ignoring the payload size roster advertised). Over TCP: 40 A records.
    Oversize,
}

/// The address spoofed answers claim.
pub const SPOOFED: [u8; 4] = [192, 0, 2, 66];

/// Messages that look like answers to `request` but are not, in the order `Spoofing` sends them.
fn spoofs(request: &Message) -> Vec<Vec<u8>> {
    let query = request.queries[0].clone();
    let forged = |edit: &dyn Fn(&mut Message)| {
        let mut message = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        message.add_query(query.clone());
        message.add_answer(Record::from_rdata(
            query.name().clone(),
            300,
            RData::A(A::from(std::net::Ipv4Addr::from(SPOOFED))),
        ));
        edit(&mut message);
        message.to_vec().unwrap()
    };
    let renamed = |name: &str, rtype: RecordType, class: DNSClass| {
        let mut other = Query::query(Name::from_ascii(name).unwrap(), rtype);
        other.set_query_class(class);
        other
    };
    let name = query.name().to_string();
    vec![
        forged(&|m| m.metadata.id = request.metadata.id.wrapping_add(1)),
        forged(&|m| m.metadata.message_type = MessageType::Query),
        forged(&|m| m.metadata.op_code = OpCode::Status),
        forged(&|m| m.queries = vec![renamed("evil.example.com.", RecordType::A, DNSClass::IN)]),
        forged(&|m| m.queries = vec![renamed(&name, RecordType::AAAA, DNSClass::IN)]),
        forged(&|m| m.queries = vec![renamed(&name, RecordType::A, DNSClass::CH)]),
        forged(&|m| m.queries.push(renamed(&name, RecordType::A, DNSClass::IN))),
        vec![request.metadata.id.to_be_bytes()[0], request.metadata.id.to_be_bytes()[1], 0x81, 0x80, 0xff],
    ]
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn respond(request: &Message, behaviour: Behaviour, tcp: bool) -> Option<Message> {
    let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.clone());
    let query = request.queries.first()?;
    let name = query.name().clone();
    match behaviour {
        Behaviour::Silent => return None,
        Behaviour::ServFail => response.metadata.response_code = ResponseCode::ServFail,
        Behaviour::Truncating | Behaviour::TruncatingWrongQuestion | Behaviour::LargeTxt if !tcp => {
            response.metadata.truncation = true;
        }
        Behaviour::Oversize if !tcp => {
            let strings = vec!["x".repeat(250); 20];
            response.add_answer(Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(strings))));
        }
        Behaviour::TruncatingWrongQuestion => {
            let evil = Name::from_ascii("evil.example.com.").unwrap();
            response.queries = vec![Query::query(evil.clone(), RecordType::A)];
            response.add_answer(Record::from_rdata(evil, 300, RData::A(A::from(std::net::Ipv4Addr::from(SPOOFED)))));
        }
        Behaviour::LargeTxt => {
            let strings = vec!["x".repeat(250); 120];
            response.add_answer(Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(strings))));
        }
        Behaviour::Truncating | Behaviour::Oversize => {
            for i in 1..=40u8 {
                response.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, i))));
            }
        }
        Behaviour::Good | Behaviour::Delayed | Behaviour::Spoofing => {
            let example = Name::from_ascii("example.com.").unwrap();
            let known = example.zone_of(&name) && name.num_labels() == 3 && query.query_type() == RecordType::A;
            if known {
                let octet = name.to_string().len() as u8;
                response.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, octet))));
            } else {
                response.metadata.response_code = ResponseCode::NXDomain;
                let soa = SOA::new(
                    Name::from_ascii("ns.example.com.").unwrap(),
                    Name::from_ascii("h.example.com.").unwrap(),
                    1,
                    1,
                    1,
                    1,
                    60,
                );
                response.add_authority(Record::from_rdata(Name::root(), 900, RData::SOA(soa)));
            }
        }
    }
    Some(response)
}

/// Starts an upstream with `behaviour` on 127.0.0.1 (UDP and TCP on the same port).
pub async fn start(behaviour: Behaviour) -> FakeUpstream {
    // The same port for UDP and TCP: retry when the UDP port's TCP twin is taken.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let udp = Arc::new(udp);
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let udp_task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = udp.recv_from(&mut buffer).await else { return };
            let Ok(request) = Message::from_vec(&buffer[..len]) else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            if behaviour == Behaviour::Spoofing && !request.queries.is_empty() {
                for spoof in spoofs(&request) {
                    let _ = udp.send_to(&spoof, from).await;
                }
            }
            let Some(response) = respond(&request, behaviour, false) else { continue };
            let bytes = response.to_vec().unwrap();
            if behaviour == Behaviour::Delayed {
                let udp = udp.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = udp.send_to(&bytes, from).await;
                });
            } else {
                let _ = udp.send_to(&bytes, from).await;
            }
        }
    });
    let counted = queries.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else { return };
            let counted = counted.clone();
            tokio::spawn(async move {
                // Several queries per connection, answered in turn.
                loop {
                    let mut length = [0u8; 2];
                    if stream.read_exact(&mut length).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(length))];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let Ok(request) = Message::from_vec(&body) else { return };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Some(response) = respond(&request, behaviour, true) {
                        let bytes = response.to_vec().unwrap();
                        let _ = stream.write_all(&(bytes.len() as u16).to_be_bytes()).await;
                        let _ = stream.write_all(&bytes).await;
                    }
                }
            });
        }
    });
    FakeUpstream { addr, queries, tasks: vec![udp_task, tcp_task] }
}

/// An upstream that relays every query to `target` (set later) and relays the answer back: pointing a
/// server's forwarder at a relay to itself makes a forwarding loop.
pub async fn relay(target: Arc<parking_lot::Mutex<Option<SocketAddr>>>) -> FakeUpstream {
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = udp.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = udp.recv_from(&mut buffer).await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let Some(target) = *target.lock() else { continue };
            let bytes = buffer[..len].to_vec();
            let udp = udp.clone();
            tokio::spawn(async move {
                let out = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let _ = out.send_to(&bytes, target).await;
                let mut answer = vec![0u8; 4096];
                if let Ok(Ok((len, _))) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), out.recv_from(&mut answer)).await
                {
                    let _ = udp.send_to(&answer[..len], from).await;
                }
            });
        }
    });
    FakeUpstream { addr, queries, tasks: vec![task] }
}
