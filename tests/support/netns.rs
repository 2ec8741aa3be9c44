//! Pods as network namespaces: a veth to the host and a kubelet-style `/etc/netns/NAME/resolv.conf`
//! (`search <ns>.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`, nameserver on
//! the host end). Needs root and iproute2 (scripts/test.sh provides).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use super::process::{Proc, free_port};

pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Fails the test when iproute2 is missing.
pub fn require_iproute2() {
    let found = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].iter().any(|p| std::path::Path::new(p).exists());
    assert!(found, "iproute2 is required (scripts/test.sh installs it)");
}

/// A network namespace with a veth to the host and a pod's resolv.conf; removed on drop.
pub struct PodNamespace {
    pub name: String,
    /// The host end (10.253.<subnet>.1): where the pod's nameserver listens.
    pub host_ip: String,
    /// The pod's own address (10.253.<subnet>.2): the source of its queries.
    pub pod_ip: String,
}

impl PodNamespace {
    pub fn create(name: &str, subnet: u8, search_namespace: &str) -> Self {
        let host_if = format!("{name}-h");
        let pod_if = format!("{name}-p");
        let host_ip = format!("10.253.{subnet}.1");
        let pod_ip = format!("10.253.{subnet}.2");
        let _ = run("ip", &["netns", "del", name]);
        let _ = run("ip", &["link", "del", &host_if]);
        for args in [
            vec!["netns", "add", name],
            vec!["link", "add", &host_if, "type", "veth", "peer", "name", &pod_if],
            vec!["link", "set", &pod_if, "netns", name],
            vec!["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", name, "addr", "add", &format!("{pod_ip}/24"), "dev", &pod_if],
            vec!["-n", name, "link", "set", &pod_if, "up"],
            vec!["-n", name, "link", "set", "lo", "up"],
        ] {
            let (ok, text) = run("ip", &args);
            assert!(ok, "ip {args:?}: {text}");
        }
        let pod = Self { name: name.to_owned(), host_ip: host_ip.clone(), pod_ip };
        pod.write_resolv_conf(search_namespace, &host_ip);
        pod
    }

    /// Adds another address on the host end (another DNS server the pod can reach).
    pub fn add_host_address(&self, ip: &str) {
        let (ok, text) = run("ip", &["addr", "add", &format!("{ip}/24"), "dev", &format!("{}-h", self.name)]);
        assert!(ok, "ip addr add {ip}: {text}");
    }

    /// The kubelet's resolv.conf for a ClusterFirst pod of `namespace` (read by every later `exec`).
    pub fn write_resolv_conf(&self, namespace: &str, nameserver: &str) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/resolv.conf"),
            format!(
                "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {nameserver}\noptions ndots:5\n"
            ),
        )
        .unwrap();
    }

    /// Runs a command inside the pod (with its resolv.conf in place of /etc/resolv.conf).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for PodNamespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &format!("{}-h", self.name)]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Knot on loopback, authoritative for example.org: the internet, as far as the pods can tell.
pub fn start_internet(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    std::fs::write(
        dir.join("example.org.zone"),
        "$ORIGIN example.org.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.53\nwww A 192.0.2.80\n",
    )
    .unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("knot.conf"),
        format!(
            "server:\n  rundir: {d}\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
             database:\n  storage: {d}\n\
             zone:\n  - domain: example.org\n    storage: {d}\n    file: example.org.zone\n    journal-content: none\n    zonefile-sync: -1\n"
        ),
    )
    .unwrap();
    let knot = Proc::spawn("knotd", &["-c", &dir.join("knot.conf").display().to_string()]);
    (knot, port)
}
