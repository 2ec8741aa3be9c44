//! Node-local replicas (deploy/overlays/node-local) on two "nodes": network namespaces set up by the
//! overlay's own `node-setup.sh` (the link-local address, the NOTRACK rules), each running `roster dns` on
//! its address and following one record stream from `roster local`, each with a pod behind a veth.
//! Every change made through the API must be answered by both replicas, and the propagation latency
//! (write acknowledged → the replica answers the change, polled from the node's pod) is printed. Then a
//! replica dies: its address still refuses at once, so the pod's resolver, with kube-dns second in its
//! resolv.conf, moves on without a timeout. Needs root, iproute2, iptables and dig (scripts/test.sh).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use support::netns::{PodNamespace, require_iproute2, run};
use support::process::{Proc, ROSTER, free_port, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Changes made through the API (half creations, half deletions), each awaited on both replicas.
const CHANGES: usize = 200;
/// A change not answered this long after its write is a failure (the target is 10 ms at p99).
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// A node: a network namespace with a veth to the host (the controller's stream comes that way), its
/// link-local DNS address, and a pod: a namespace of its own behind a veth to the node, whose queries
/// arrive on the node as a real pod's do (PREROUTING, from another interface).
struct Node {
    ns: PodNamespace,
    address: String,
    pod: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        // The pod's veth goes with its namespace; the node's after this, with `ns`.
        let _ = run("ip", &["netns", "del", &self.pod]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.pod));
    }
}

impl Node {
    fn create(name: &str, subnet: u8, address: &str) -> Self {
        let ns = PodNamespace::create(name, subnet, "default");
        // The node reaches the controller on node A's veth too.
        let (ok, text) = run("ip", &["-n", name, "route", "add", "default", "via", &ns.host_ip]);
        assert!(ok, "default route in {name}: {text}");
        let pod = format!("{name}p");
        let (node_if, pod_if) = (format!("{pod}-n"), format!("{pod}-p"));
        let _ = run("ip", &["netns", "del", &pod]);
        // Addresses that exist only inside this node and its pod.
        for args in [
            vec!["netns", "add", &pod],
            vec!["-n", name, "link", "add", &node_if, "type", "veth", "peer", "name", &pod_if, "netns", &pod],
            vec!["-n", name, "addr", "add", "10.254.0.1/24", "dev", &node_if],
            vec!["-n", name, "link", "set", &node_if, "up"],
            vec!["-n", &pod, "addr", "add", "10.254.0.2/24", "dev", &pod_if],
            vec!["-n", &pod, "link", "set", &pod_if, "up"],
            vec!["-n", &pod, "link", "set", "lo", "up"],
            vec!["-n", &pod, "route", "add", "default", "via", "10.254.0.1"],
        ] {
            let (ok, text) = run("ip", &args);
            assert!(ok, "ip {args:?}: {text}");
        }
        Self { ns, address: address.to_owned(), pod }
    }

    /// The kubelet's resolv.conf for the pod: `--cluster-dns` gives the nameservers, in order.
    fn pod_resolv_conf(&self, nameservers: &[&str]) {
        let dir = format!("/etc/netns/{}", self.pod);
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = nameservers.iter().map(|s| format!("nameserver {s}\n")).collect();
        std::fs::write(
            format!("{dir}/resolv.conf"),
            format!(
                "search default.svc.cluster.local svc.cluster.local cluster.local\n{servers}options ndots:5 timeout:5 attempts:1\n"
            ),
        )
        .unwrap();
    }

    /// Runs a command inside the pod.
    fn in_pod(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["netns", "exec", &self.pod];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs the overlay's init-container script inside the node. The device is `lo`: the kernels CI
    /// containers run on may lack the dummy module; everything else is what the init container does.
    fn set_up(&self) -> String {
        let script = format!("{ROOT}/deploy/overlays/node-local/node-setup.sh");
        let (ok, text) = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns.name,
                "env",
                &format!("NODE_DNS_ADDRESS={}", self.address),
                "NODE_DNS_DEVICE=lo",
                "sh",
                &script,
            ],
        );
        assert!(ok, "node-setup.sh in {}: {text}", self.ns.name);
        text
    }

    fn iptables(&self, table: &str) -> String {
        let (ok, text) = self.ns.exec(&["iptables", "-w", "10", "-t", table, "-S"]);
        assert!(ok, "iptables -t {table} -S: {text}");
        text
    }

    /// `roster dns` inside the node, listening on `a` (its probes beside it), following `controller`.
    fn start_replica(&self, a: &str, controller: &str, tls_dir: &str) -> Proc {
        let args: Vec<String> = [
            "netns",
            "exec",
            &self.ns.name,
            ROSTER,
            "dns",
            "--controller",
            controller,
            "--tls-ca",
            &format!("{tls_dir}/ca.crt"),
            "--tls-cert",
            &format!("{tls_dir}/tls.crt"),
            "--tls-key",
            &format!("{tls_dir}/tls.key"),
            "--listen",
            &format!("{a}:53"),
            "--health",
            &format!("{a}:8085"),
            "--ready",
            &format!("{a}:8186"),
            "--zone",
            "cluster.local",
        ]
        .map(str::to_owned)
        .to_vec();
        // `ip netns exec` execs the command: the PID is the replica's.
        Proc::spawn("ip", &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// dig from the pod at `server`.
    fn dig(&self, server: &str, args: &[&str]) -> String {
        let server = format!("@{server}");
        let mut full = vec!["dig", &server, "+time=1", "+tries=1"];
        full.extend_from_slice(args);
        self.in_pod(&full).1
    }

    /// A UDP socket inside the pod, connected to the node's replica: a thread enters the namespace
    /// (setns changes only the calling thread), binds and ends; the socket stays in the namespace.
    fn socket(&self) -> UdpSocket {
        let path = format!("/var/run/netns/{}", self.pod);
        let server: SocketAddr = format!("{}:53", self.address).parse().unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).unwrap();
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap();
                    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                    socket.connect(server).unwrap();
                    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    socket
                })
                .join()
                .unwrap()
        })
    }
}

/// What a replica must answer once a change has reached it.
#[derive(Clone, Copy)]
enum Expect<'a> {
    Address(&'a str),
    NxDomain,
}

/// One query; true when the answer shows the change. Answers to earlier, timed-out queries are skipped.
fn shows(socket: &UdpSocket, id: &mut u16, name: &str, expect: Expect) -> bool {
    *id = id.wrapping_add(1);
    let mut query = Message::new(*id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if socket.send(&query.to_vec().unwrap()).is_err() {
        return false;
    }
    let mut buffer = [0u8; 1500];
    while let Ok(len) = socket.recv(&mut buffer) {
        let Ok(answer) = Message::from_vec(&buffer[..len]) else { continue };
        if answer.metadata.id != *id {
            continue;
        }
        return match expect {
            Expect::Address(ip) => {
                answer.metadata.response_code == ResponseCode::NoError
                    && answer.answers.iter().any(|r| r.data.to_string() == ip)
            }
            Expect::NxDomain => answer.metadata.response_code == ResponseCode::NXDomain,
        };
    }
    false
}

/// Polls until the replica shows the change; the time since `since` (the write's acknowledgement).
fn propagation(socket: &UdpSocket, name: &str, expect: Expect, since: Instant) -> Duration {
    let mut id = 0;
    while since.elapsed() < CHANGE_DEADLINE {
        if shows(socket, &mut id, name, expect) {
            return since.elapsed();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    panic!("{name}: not answered within {CHANGE_DEADLINE:?} of the write");
}

/// One request to the stand-in's API (plain HTTP on loopback); its status code once fully answered.
fn api(port: u16, method: &str, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{method} {path}: {text}"))
}

fn create_service(port: u16, name: &str, cluster_ip: &str) {
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"clusterIP":"{cluster_ip}","ports":[{{"port":80}}]}}}}"#
    );
    assert_eq!(api(port, "POST", "/api/v1/namespaces/default/services", &body), 201, "create {name}");
}

fn delete_service(port: u16, name: &str) {
    assert_eq!(api(port, "DELETE", &format!("/api/v1/namespaces/default/services/{name}"), ""), 200, "delete {name}");
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn two_node_local_replicas_follow_one_stream_and_fall_back_when_one_dies() {
    require_iproute2();
    let (is_root, _) = run("sh", &["-c", "test \"$(id -u)\" = 0"]);
    assert!(is_root, "network namespaces need root");
    let (has_iptables, _) = run("sh", &["-c", "command -v iptables"]);
    assert!(has_iptables, "iptables is required (scripts/test.sh installs it)");

    // Two nodes, each with its own link-local address (NodeLocal DNSCache's and the next one).
    let pid = std::process::id();
    let subnet = u8::try_from(pid % 100 * 2 + 20).unwrap();
    let nodes = [
        Node::create(&format!("rnl{}a", pid % 100_000), subnet, "169.254.20.10"),
        Node::create(&format!("rnl{}b", pid % 100_000), subnet + 1, "169.254.20.11"),
    ];

    // The overlay's setup script, run twice as a restarted pod would: the rules are there once.
    for node in &nodes {
        node.set_up();
        node.set_up();
        let (_, addresses) = node.ns.exec(&["ip", "-4", "addr", "show", "dev", "lo"]);
        assert!(addresses.contains(&format!("{}/32", node.address)), "{addresses}");
        let raw = node.iptables("raw");
        let notrack: Vec<&str> = raw.lines().filter(|l| l.contains("NOTRACK")).collect();
        assert_eq!(notrack.len(), 6, "PREROUTING and OUTPUT (to and from), UDP and TCP, once each: {raw}");
        for (chain, proto, port) in [("PREROUTING", "udp", "--dport 53"), ("OUTPUT", "tcp", "--sport 53")] {
            assert!(
                notrack.iter().any(|l| l.starts_with(&format!("-A {chain}"))
                    && l.contains(&format!("-p {proto}"))
                    && l.contains(port)
                    && l.contains(&node.address)),
                "{chain} {proto} {port}: {raw}"
            );
        }
        assert_eq!(node.iptables("filter").lines().filter(|l| l.contains("-j ACCEPT")).count(), 4);
    }

    // The controller's stream on node A's veth, which node B reaches through the host; the API and the
    // stand-in's own DNS server on loopback.
    let host = nodes[0].ns.host_ip.clone();
    let (api_port, stream_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let local = Proc::roster(&[
        "local",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--api",
        &format!("127.0.0.1:{api_port}"),
        "--dns",
        &format!("127.0.0.1:{}", free_port()),
        "--stream",
        &format!("{host}:{stream_port}"),
    ]);
    wait_for("roster local to start", &[&local], || local.log().contains("roster local is up"));
    // roster local writes this run's client certificate where its hint says.
    let log = local.log();
    let tls_dir = log.split("--tls-ca ").nth(1).and_then(|rest| rest.split("/ca.crt").next()).unwrap().to_owned();
    let controller = format!("https://{host}:{stream_port}");
    let replicas: Vec<Proc> =
        nodes.iter().map(|node| node.start_replica(&node.address, &controller, &tls_dir)).collect();
    // kube-dns, the fallback: on node A at its ClusterIP (as kube-proxy makes it reachable there), a
    // replica of the base's Deployment following the same stream.
    let (ok, text) = nodes[0].ns.exec(&["ip", "addr", "add", "10.96.0.10/32", "dev", "lo"]);
    assert!(ok, "{text}");
    let kube_dns = nodes[0].start_replica("10.96.0.10", &controller, &tls_dir);
    let all: Vec<&Proc> = replicas.iter().chain([&local, &kube_dns]).collect();
    for (node, server) in nodes.iter().map(|n| (n, n.address.as_str())).chain([(&nodes[0], "10.96.0.10")]) {
        wait_for(&format!("the replica on {server}"), &all, || {
            node.dig(server, &["kubernetes.default.svc.cluster.local", "+short"]).trim() == "10.96.0.1"
        });
    }

    // Changes through the API: a Service appears, then goes; both replicas must answer each.
    let sockets: Vec<UdpSocket> = nodes.iter().map(Node::socket).collect();
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); nodes.len()];
    let started = Instant::now();
    for change in 0..CHANGES {
        let i = change / 2 + 1;
        let name = format!("nl-{i}");
        let ip = format!("10.96.200.{i}");
        let fqdn = format!("{name}.default.svc.cluster.local.");
        let expect = if change % 2 == 0 {
            create_service(api_port, &name, &ip);
            Expect::Address(&ip)
        } else {
            delete_service(api_port, &name);
            Expect::NxDomain
        };
        let acknowledged = Instant::now();
        let measured: Vec<Duration> = std::thread::scope(|scope| {
            let polls: Vec<_> =
                sockets.iter().map(|socket| scope.spawn(|| propagation(socket, &fqdn, expect, acknowledged))).collect();
            polls.into_iter().map(|poll| poll.join().unwrap()).collect()
        });
        for (replica, latency) in measured.into_iter().enumerate() {
            latencies[replica].push(latency);
        }
    }
    for (node, measured) in nodes.iter().zip(&mut latencies) {
        measured.sort();
        println!(
            "propagation to the replica on {} (write acknowledged -> answered in the node's pod, {} changes, debug build): \
             p50 {}, p99 {}, max {}",
            node.address,
            measured.len(),
            ms(percentile(measured, 0.50)),
            ms(percentile(measured, 0.99)),
            ms(*measured.last().unwrap()),
        );
        assert_eq!(measured.len(), CHANGES);
    }
    println!("{CHANGES} changes in {:.1} s", started.elapsed().as_secs_f64());
    // dig from inside each node agrees with the poller: the last Service is gone. The queries and
    // answers went through the NOTRACK rules (their packet counters moved).
    for node in &nodes {
        let last = node.dig(&node.address, &[&format!("nl-{}.default.svc.cluster.local", CHANGES / 2)]);
        assert!(last.contains("status: NXDOMAIN"), "{last}");
        for (chain, port) in [("PREROUTING", "dpt:53"), ("OUTPUT", "spt:53")] {
            let (ok, text) = node.ns.exec(&["iptables", "-w", "10", "-t", "raw", "-L", chain, "-v", "-n", "-x"]);
            assert!(ok, "{text}");
            let packets: u64 = text
                .lines()
                .filter(|l| l.contains("NOTRACK") && l.contains("udp") && l.contains(port))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            assert!(packets >= CHANGES as u64, "{chain} NOTRACK matched {packets} packets on {}: {text}", node.address);
        }
    }

    // Node A's pod, as the kubelet writes it under --cluster-dns=169.254.20.10,10.96.0.10, resolves a
    // short name through its search list. Then node A's replica dies: its address stays on the
    // interface, so a query is refused at once (ICMP port unreachable) rather than left to time out,
    // and glibc moves on to kube-dns.
    create_service(api_port, "fallback", "10.96.200.200");
    for (node, server) in nodes.iter().map(|n| (n, n.address.as_str())).chain([(&nodes[0], "10.96.0.10")]) {
        wait_for(&format!("the last change on {server}"), &all, || {
            node.dig(server, &["fallback.default.svc.cluster.local", "+short"]).trim() == "10.96.200.200"
        });
    }
    let node = &nodes[0];
    node.pod_resolv_conf(&[&node.address, "10.96.0.10"]);
    let getent = || node.in_pod(&["getent", "hosts", "fallback"]);
    let (ok, text) = getent();
    assert!(ok && text.starts_with("10.96.200.200"), "getent through the node-local replica: {text}");
    let mut replicas = replicas.into_iter();
    replicas.next().unwrap().kill();
    let refused_at = Instant::now();
    let text = node.dig(&node.address, &["+time=5", "fallback.default.svc.cluster.local"]);
    let refused = refused_at.elapsed();
    assert!(text.contains("connection refused"), "{text}");
    assert!(refused < Duration::from_secs(3), "refused only after {refused:?} (the timeout is 5 s)");
    let fallback_at = Instant::now();
    let (ok, text) = getent();
    let fallback = fallback_at.elapsed();
    assert!(ok && text.starts_with("10.96.200.200"), "getent through the fallback: {text}");
    assert!(fallback < Duration::from_secs(3), "fell back only after {fallback:?} (the timeout is 5 s)");
    println!(
        "the dead replica's address refused in {}; `getent hosts fallback` answered through kube-dns in {}",
        ms(refused),
        ms(fallback)
    );
    // A replica that has not synced yet (here: it cannot reach the controller) answers SERVFAIL for
    // the cluster zone, which glibc also takes as "ask the next nameserver".
    let unsynced = node.start_replica(&node.address, "https://127.0.0.1:9", &tls_dir);
    wait_for("the unsynced replica to answer SERVFAIL", &[&unsynced], || {
        node.dig(&node.address, &["fallback.default.svc.cluster.local"]).contains("status: SERVFAIL")
    });
    let (ok, text) = getent();
    assert!(ok && text.starts_with("10.96.200.200"), "getent past a SERVFAIL: {text}");
    drop(unsynced);
    // Node B's replica is unaffected.
    let b = &nodes[1];
    assert_eq!(b.dig(&b.address, &["fallback.default.svc.cluster.local", "+short"]).trim(), "10.96.200.200");
    drop(kube_dns);
}
