//! Autopath measured from a pod: a network namespace with a kubelet resolv.conf (`search
//! <ns>.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`) whose address is the
//! address of a Running pod in the stand-in cluster (`roster local`: the controller's watch, its
//! record stream, a replica). Real clients (dig +search, glibc's getent) look up a name outside the
//! cluster; the queries reaching each server are counted from its `coredns_dns_requests_total`: a
//! replica of the stream with `--autopath` against one without it.
//!
//! Then the address is reused: another pod in another namespace gets it (while the old one is still
//! listed neither namespace is guessed; once it is gone the address maps to the new pod), and a Failed
//! pod maps to nothing. Needs root, iproute2, dig, getent and knotd (scripts/test.sh provides).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::netns::{PodNamespace, require_iproute2, start_internet};
use support::process::{Proc, ROSTER, free_port, http_get, kubectl, wait_for};

/// The name looked up: two dots, under ndots:5, so a resolver walks the search list first.
const OUTSIDE: &str = "www.example.org";
const OUTSIDE_IP: &str = "192.0.2.80";

/// Queries answered so far by the server whose metrics listen on `port`.
fn requests(port: u16) -> u64 {
    let (_, body) = http_get(port, "/metrics").unwrap();
    body.lines()
        .filter(|line| line.starts_with("coredns_dns_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

fn pod_yaml(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    )
}

struct Cluster<'a> {
    kubeconfig: &'a Path,
    procs: [&'a Proc; 4],
}

impl Cluster<'_> {
    /// Creates `namespace/name`, waits for it to run, then gives it `ip` (the pod namespace's).
    fn run_pod_at(&self, namespace: &str, name: &str, ip: &str) {
        kubectl(self.kubeconfig, &["apply", "-f", "-"], Some(&pod_yaml(namespace, name)));
        let phase =
            || kubectl(self.kubeconfig, &["-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}"], None);
        wait_for(&format!("{namespace}/{name} Running"), &self.procs, || phase() == "Running");
        self.patch_status(namespace, name, &format!(r#"{{"status":{{"podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#));
    }

    fn patch_status(&self, namespace: &str, name: &str, patch: &str) {
        let args = ["-n", namespace, "patch", "pod", name, "--subresource=status", "--type=merge", "-p", patch];
        kubectl(self.kubeconfig, &args, None);
    }
}

/// dig from inside the pod, one try: the status and the `+short`-like answer lines.
fn dig_in(pod: &PodNamespace, args: &[&str]) -> (String, String) {
    let mut full = vec!["dig", "+time=2", "+tries=1"];
    full.extend_from_slice(args);
    let (_, text) = pod.exec(&full);
    let status = text.split("status: ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("no answer").to_owned();
    let answer = text.split(";; ANSWER SECTION:").nth(1).unwrap_or("").split("\n\n").next().unwrap_or("").to_owned();
    (status, answer)
}

/// Runs `command` in the pod and returns how many queries reached the server (metrics on `port`),
/// once at least `expected` have been counted (a response is counted just after it is sent), and
/// how long the command took.
fn queries_for(pod: &PodNamespace, port: u16, command: &[&str], expected: u64) -> (u64, Duration) {
    let before = requests(port);
    let started = Instant::now();
    let (ok, text) = pod.exec(command);
    let took = started.elapsed();
    assert!(ok && text.contains(OUTSIDE_IP), "{command:?}: {text}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while requests(port) - before < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (requests(port) - before, took)
}

/// Microseconds per glibc lookup (A and AAAA) of the outside name, over 200 in one process, so that
/// starting a process is not what is measured.
fn lookup_latency(pod: &PodNamespace) -> f64 {
    let script = format!(
        "import socket, time\nstart = time.perf_counter()\nfor _ in range(200): socket.getaddrinfo('{OUTSIDE}', 80)\n\
         print((time.perf_counter() - start) / 200 * 1e6)"
    );
    let (ok, text) = pod.exec(&["python3", "-c", &script]);
    assert!(ok, "{text}");
    text.trim().parse().unwrap()
}

#[test]
fn autopath_from_a_pod_counts_queries_and_follows_address_reuse() {
    require_iproute2();
    let dir = tempfile::tempdir().unwrap();
    let (knot, knot_port) = start_internet(dir.path());
    let tag = u8::try_from(std::process::id() % 200 + 20).unwrap();
    let pod = PodNamespace::create(&format!("rap{tag}"), tag, "demo");
    // A second server for the same pod: a replica without --autopath on another host address.
    let plain_ip = format!("10.253.{tag}.3");
    pod.add_host_address(&plain_ip);
    // The node's search domains come from --resolv-conf: none here, as in the pod's resolv.conf.
    let node_resolv = dir.path().join("node-resolv.conf");
    std::fs::write(&node_resolv, "nameserver 127.0.0.1\n").unwrap();

    let (api, stream, autopath_metrics, plain_metrics) = (free_port(), free_port(), free_port(), free_port());
    let data = dir.path().join("cluster");
    let upstream = format!("127.0.0.1:{knot_port}");
    let local = Proc::spawn(
        ROSTER,
        &[
            "local",
            "--data-dir",
            data.to_str().unwrap(),
            "--api",
            &format!("127.0.0.1:{api}"),
            "--dns",
            &format!("127.0.0.1:{}", free_port()),
            "--stream",
            &format!("127.0.0.1:{stream}"),
            "--pod-ready-ms",
            "200",
        ],
    );
    wait_for("roster local", &[&local, &knot], || local.log().contains("roster local is up"));
    let log = local.log();
    let tls = |flag: &str| {
        log.split(&format!("{flag} ")).nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_owned()
    };
    // Two replicas of the controller's stream, alike but for --autopath, so that their numbers compare.
    let replica = |listen: &str, metrics: u16, extra: &[&str]| {
        let mut args = vec![
            "dns".to_owned(),
            "--controller".to_owned(),
            format!("https://127.0.0.1:{stream}"),
            "--tls-ca".to_owned(),
            tls("--tls-ca"),
            "--tls-cert".to_owned(),
            tls("--tls-cert"),
            "--tls-key".to_owned(),
            tls("--tls-key"),
            "--listen".to_owned(),
            format!("{listen}:53"),
            "--upstream".to_owned(),
            upstream.clone(),
            "--metrics".to_owned(),
            format!("127.0.0.1:{metrics}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(ROSTER, &args)
    };
    let with_autopath =
        replica(&pod.host_ip, autopath_metrics, &["--autopath", "--resolv-conf", node_resolv.to_str().unwrap()]);
    let without = replica(&plain_ip, plain_metrics, &[]);
    let kubeconfig = data.join("kubeconfig");
    let cluster = Cluster { kubeconfig: &kubeconfig, procs: [&local, &with_autopath, &without, &knot] };
    let procs = cluster.procs;
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n";
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(namespaces));
    cluster.run_pod_at("demo", "client-a", &pod.pod_ip);

    let first = |namespace: &str| format!("{OUTSIDE}.{namespace}.svc.cluster.local");
    let autopathed = |namespace: &str| {
        let (status, answer) = dig_in(&pod, &[&first(namespace), "A"]);
        status == "NOERROR" && answer.contains("CNAME") && answer.contains(OUTSIDE_IP)
    };
    let not_autopathed = |namespace: &str| dig_in(&pod, &[&first(namespace), "A"]).0 == "NXDOMAIN";
    wait_for("the pod's address to map to demo", &procs, || autopathed("demo"));
    wait_for("the replica without autopath to follow", &procs, || {
        dig_in(&pod, &[&format!("@{plain_ip}"), &first("demo"), "A"]).0 == "NXDOMAIN"
            && dig_in(&pod, &[&format!("@{plain_ip}"), "demo.svc.cluster.local", "A"]).0 == "NOERROR"
    });

    // Queries per lookup of an outside name: dig +search (A) and glibc (A and AAAA).
    let dig = ["dig", "+search", "+time=2", "+tries=1", OUTSIDE, "A"];
    let getent = ["getent", "ahosts", OUTSIDE];
    let mut report = Vec::new();
    let mut measure = |server: &str, metrics: u16, want_dig: u64, want_getent: u64| {
        pod.write_resolv_conf("demo", server);
        let (dig_count, _) = queries_for(&pod, metrics, &dig, want_dig);
        let mut times = Vec::new();
        let mut counts = Vec::new();
        for _ in 0..5 {
            let (count, took) = queries_for(&pod, metrics, &getent, want_getent);
            counts.push(count);
            times.push(took);
        }
        times.sort();
        let per_lookup = lookup_latency(&pod);
        report.push(format!(
            "{server}: dig +search {dig_count} queries, getent ahosts {counts:?} queries (median {:?} a process), \
             getaddrinfo {per_lookup:.0} µs a lookup",
            times[2]
        ));
        (dig_count, counts)
    };
    let with = measure(&pod.host_ip, autopath_metrics, 1, 2);
    let plain = measure(&plain_ip, plain_metrics, 4, 8);
    eprintln!("autopath query counts (with, then without):\n{}", report.join("\n"));
    assert_eq!(with, (1, vec![2; 5]), "with --autopath: {report:?}");
    assert_eq!(plain, (4, vec![8; 5]), "without --autopath: {report:?}");

    // Address reuse. A pod in another namespace gets the address while the old one is still listed:
    // which of the two is asking cannot be told, so neither namespace is completed.
    pod.write_resolv_conf("other", &pod.host_ip);
    cluster.run_pod_at("other", "client-b", &pod.pod_ip);
    wait_for("an address claimed from two namespaces to map to none", &procs, || {
        not_autopathed("demo") && not_autopathed("other")
    });
    // The old pod goes: the address is the new pod's, and never the old one's again.
    kubectl(&kubeconfig, &["-n", "demo", "delete", "pod", "client-a", "--grace-period=0", "--force"], None);
    wait_for("the reused address to map to other", &procs, || autopathed("other"));
    assert!(not_autopathed("demo"), "the deleted pod's namespace must not be completed");
    let (count, _) = queries_for(&pod, autopath_metrics, &getent, 2);
    assert_eq!(count, 2, "getent from the pod in other");
    // A Failed pod no longer owns its address.
    cluster.patch_status("other", "client-b", r#"{"status":{"phase":"Failed"}}"#);
    wait_for("a Failed pod's address to map to nothing", &procs, || not_autopathed("other"));
    let (count, _) = queries_for(&pod, autopath_metrics, &getent, 8);
    assert_eq!(count, 8, "getent from an address that is no Running pod's");
}
