//! Response rate limiting over UDP with BIND's semantics: identical responses to one netblock beyond
//! `--rrl-responses-per-second` are dropped, every `--rrl-slip`-th sent truncated (TC, no records) so
//! real clients retry over TCP; TCP is never limited; off by default.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use support::process::{Proc, dig, free_port, wait_for};

const NAME: &str = "kubernetes.default.svc.cluster.local.";

/// Sends `count` identical A queries over UDP at once, then collects what comes back:
/// (full answers, truncated replies).
fn burst(port: u16, count: u16) -> (usize, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    for id in 0..count {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_ascii(NAME).unwrap(), RecordType::A));
        socket.send_to(&query.to_vec().unwrap(), ("127.0.0.1", port)).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buffer = [0u8; 4096];
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        let reply = Message::from_vec(&buffer[..len]).unwrap();
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty(), "a slip carries no records");
            truncated += 1;
        } else {
            assert_eq!(reply.answers.len(), 1);
            full += 1;
        }
    }
    (full, truncated)
}

fn start(extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let fixture = support::FIXTURE;
    let mut args = vec!["dns", "--objects", fixture, "--listen", &listen];
    args.extend_from_slice(extra);
    let proc = Proc::roster(&args);
    wait_for("roster dns to answer", &[&proc], || dig(port, &[NAME, "+short"]).contains("10.96.0.1"));
    (proc, port)
}

#[test]
fn identical_responses_over_the_rate_are_dropped_or_slipped_and_tcp_is_never_limited() {
    let (_proc, port) = start(&["--rrl-responses-per-second", "5", "--rrl-slip", "2"]);
    // The readiness probe above spent part of this second's credit; start on a fresh account.
    std::thread::sleep(Duration::from_secs(2));
    let (full, truncated) = burst(port, 60);
    // 5 a second (a burst may straddle one second boundary), then every second limited one slips.
    assert!((5..=12).contains(&full), "full answers: {full}");
    let limited = 60 - full;
    assert!(truncated >= limited / 2 - 1 && truncated <= limited / 2 + 1, "truncated {truncated} of {limited} limited");
    for _ in 0..20 {
        assert!(dig(port, &[NAME, "+tcp", "+short"]).contains("10.96.0.1"), "TCP answered in full");
    }
}

#[test]
fn without_the_flag_nothing_is_limited() {
    let (_proc, port) = start(&[]);
    assert_eq!(burst(port, 60), (60, 0));
}

#[test]
fn out_of_range_settings_are_refused_naming_the_flag() {
    let output = std::process::Command::new(support::process::ROSTER)
        .args([
            "dns",
            "--objects",
            support::FIXTURE,
            "--rrl-responses-per-second",
            "5",
            "--rrl-slip",
            "11",
            "--check-args",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rrl-window/--rrl-slip") && stderr.contains("slip 11"), "{stderr}");
}
