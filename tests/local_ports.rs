//! `roster local` with a listener's address taken: it says which flag to change and exits at once,
//! before starting the stand-in or any watch (no screen of connection errors first).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `roster local ARGS` printed on stderr, and its exit code, within `limit` (killed after).
fn run_local(args: &[String], limit: Duration) -> (String, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("local")
        .args(args)
        .env("ROSTER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("roster local still running after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (text(&output.stdout), text(&output.stderr), output.status.code())
}

/// A loopback address with a free port (for both UDP and TCP, as far as anyone can tell).
fn free_addr() -> SocketAddr {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        if UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

fn flags(dns: SocketAddr, stream: SocketAddr, api: Option<SocketAddr>) -> Vec<String> {
    let mut args = vec!["--dns".to_owned(), dns.to_string(), "--stream".to_owned(), stream.to_string()];
    if let Some(api) = api {
        args.extend(["--api".to_owned(), api.to_string()]);
    }
    args
}

/// The whole of stderr is the one line naming the address and the flag; nothing was started, so
/// nothing else was logged, and stdout (where the "is up" banner goes) stays empty.
fn assert_refused(args: &[String], expected: &str) {
    let (stdout, stderr, code) = run_local(args, Duration::from_secs(10));
    assert_eq!(stderr.trim_end(), format!("roster: {expected}"), "args {args:?}");
    assert_eq!(stdout, "", "args {args:?}");
    assert_eq!(code, Some(2), "args {args:?}");
}

#[cfg(feature = "sim")]
#[test]
fn a_taken_port_names_its_flag() {
    let (dns, stream, api) = (free_addr(), free_addr(), free_addr());

    // Only the UDP half of the DNS address taken: TCP alone would not have caught it.
    let udp = UdpSocket::bind(dns).unwrap();
    assert_refused(&flags(dns, stream, Some(api)), &format!("{dns} is in use (UDP): choose another with --dns"));
    drop(udp);

    let tcp = TcpListener::bind(dns).unwrap();
    assert_refused(&flags(dns, stream, Some(api)), &format!("{dns} is in use (TCP): choose another with --dns"));
    drop(tcp);

    let taken = TcpListener::bind(stream).unwrap();
    assert_refused(&flags(dns, stream, Some(api)), &format!("{stream} is in use (TCP): choose another with --stream"));
    drop(taken);

    let taken = TcpListener::bind(api).unwrap();
    assert_refused(&flags(dns, stream, Some(api)), &format!("{api} is in use (TCP): choose another with --api"));
    drop(taken);

    // Two of roster's own listeners on one address.
    assert_refused(
        &flags(dns, stream, Some(stream)),
        &format!("{stream} (TCP) is given to both --stream and --api: choose another with --api"),
    );
}

/// With --kubeconfig the check comes before the kubeconfig is even read (the path need not exist).
#[test]
fn an_existing_cluster_run_checks_its_listeners_first() {
    let (dns, stream) = (free_addr(), free_addr());
    let taken = TcpListener::bind(stream).unwrap();
    let mut args = flags(dns, stream, None);
    args.extend(["--kubeconfig".to_owned(), "/nonexistent/kubeconfig".to_owned()]);
    assert_refused(&args, &format!("{stream} is in use (TCP): choose another with --stream"));
    drop(taken);
}

/// A build without the stand-in refuses `roster local` without --kubeconfig, saying what to do.
#[cfg(not(feature = "sim"))]
#[test]
fn a_build_without_the_stand_in_asks_for_a_kubeconfig() {
    let (stdout, stderr, code) = run_local(&flags(free_addr(), free_addr(), None), Duration::from_secs(10));
    assert!(stderr.contains("has no stand-in cluster") && stderr.contains("--kubeconfig"), "{stderr}");
    assert_eq!((stdout.as_str(), code), ("", Some(2)));
}
