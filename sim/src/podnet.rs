//! The stand-in's pod network: what `kubectl exec` and `kubectl attach` run the host's commands in.
//!
//! Everything lives in network namespaces this process makes, never on the host's own network: one
//! per stand-in plays the node — a bridge `cni0` carrying the pods' gateway 10.244.0.1/16, and the cluster
//! DNS address 10.96.0.10 on its loopback, where roster's DNS server answers on port 53 (the sockets
//! are bound inside that namespace and handed to the server through [`PodNetworkConfig::dns`]) — and
//! one per pod, made on the pod's first exec or attach: a veth whose pod end `eth0` carries the pod IP,
//! a default route via the gateway, and `/etc/netns/<name>/{resolv.conf,hosts}` as the kubelet writes
//! them (`ip netns exec` bind-mounts those over `/etc`), and a UTS namespace with the pod's hostname
//! (`unshare --uts=FILE`, entered with `nsenter --uts=FILE`). A pod's namespace goes when the pod is
//! deleted, all of them when the stand-in stops, and those of a run that was killed at the next start.
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2's `ip` and util-linux's `unshare` and `nsenter`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};

use crate::store::{Change, EventType, Store};

/// The pods' gateway, on the node's bridge (never a pod IP: the allocator skips `.1` of every /24).
const GATEWAY: &str = "10.244.0.1";
/// The pod network's prefix length (pod IPs come from 10.244.0.0/16).
const POD_PREFIX: u8 = 16;
/// The cluster DNS address (the ClusterIP the stand-in keeps for kube-dns), as kubelet's `clusterDNS`.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// At most this many pod namespaces at once (each is a namespace, a veth pair and two files).
const MAX_PODS: usize = 512;
const NETNS_DIR: &str = "/var/run/netns";
const NETNS_ETC: &str = "/etc/netns";
/// Each pod's UTS namespace (its hostname), kept by a bind mount on a file named as its network's.
const UTS_DIR: &str = "/run/roster-uts";

/// The DNS server's sockets inside the node namespace: UDP and TCP on 10.96.0.10:53.
pub type DnsSockets = (UdpSocket, TcpListener);

/// How pods reach DNS.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// The cluster domain of the pods' search list.
    pub cluster_domain: String,
    /// Where the node namespace's DNS sockets go (roster local serves them); `None`: pods get a
    /// resolv.conf but nothing answers at its nameserver.
    pub dns: Option<mpsc::Sender<DnsSockets>>,
}

impl Default for PodNetworkConfig {
    fn default() -> Self {
        Self { cluster_domain: "cluster.local".to_owned(), dns: None }
    }
}

/// Why a pod's namespace could not be made; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PodNetError(String);

/// The pod a namespace is made for.
pub struct PodInfo<'a> {
    /// metadata.uid
    pub uid: &'a str,
    /// metadata.namespace
    pub namespace: &'a str,
    /// metadata.name
    pub name: &'a str,
    /// spec.hostname (empty: the pod name)
    pub hostname: &'a str,
    /// spec.subdomain (may be empty)
    pub subdomain: &'a str,
    /// status.podIP
    pub ip: &'a str,
}

/// A pod's namespaces, for a session: their names, and a flag that turns true when the pod is gone.
#[derive(Clone)]
pub struct PodNamespace {
    /// The `ip netns` name.
    pub netns: String,
    /// The file holding its UTS namespace (for `nsenter --uts=`).
    pub uts: String,
    /// True once the pod was deleted (its sessions end).
    pub gone: watch::Receiver<bool>,
}

struct PodEntry {
    netns: String,
    gone: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    node_ready: bool,
    pods: HashMap<String, PodEntry>,
    next: u64,
}

/// The pod network of one stand-in run.
pub struct PodNetwork {
    config: PodNetworkConfig,
    /// `roster-<pid>-<n>-`: names this network's namespaces (a later run removes them if this pid is
    /// gone; `n` tells apart the stand-ins of one process, as tests start several).
    prefix: String,
    inner: Mutex<Inner>,
}

impl PodNetwork {
    /// A pod network with nothing made yet.
    pub fn new(config: PodNetworkConfig) -> Arc<Self> {
        static NETWORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NETWORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Self { config, prefix: format!("roster-{}-{n}-", std::process::id()), inner: Mutex::default() })
    }

    /// Refuses unless this process can make network namespaces (it runs as root).
    pub fn check_privileges() -> Result<(), PodNetError> {
        if rustix::process::geteuid().is_root() {
            return Ok(());
        }
        Err(PodNetError(
            "the stand-in runs exec and attach as the host's command inside a network namespace made for the \
             pod (ip netns), which needs root: run `roster local` as root (sudo) to use kubectl exec, attach \
             and run -it"
                .to_owned(),
        ))
    }

    /// The pod's namespace, made now when it has none (blocking: runs `ip`).
    pub fn ensure_pod(&self, pod: &PodInfo<'_>) -> Result<PodNamespace, PodNetError> {
        Self::check_privileges()?;
        let (uid, ns) = (pod.uid, pod.namespace);
        let ip: Ipv4Addr =
            pod.ip.parse().map_err(|_| PodNetError(format!("pod {ns}/{} has no IPv4 address yet", pod.name)))?;
        // One pod at a time: namespaces are made rarely, and the node must exist exactly once.
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.pods.get(uid) {
            return Ok(PodNamespace {
                uts: uts_file(&entry.netns),
                netns: entry.netns.clone(),
                gone: entry.gone.subscribe(),
            });
        }
        if inner.pods.len() >= MAX_PODS {
            return Err(PodNetError(format!(
                "the stand-in's pod network holds at most {MAX_PODS} pod namespaces: delete pods you no longer exec into"
            )));
        }
        if !inner.node_ready {
            self.make_node()?;
            inner.node_ready = true;
        }
        inner.next += 1;
        let index = inner.next;
        let netns = format!("{}pod{index}", self.prefix);
        if let Err(e) = self.make_pod(&netns, index, pod, ip) {
            remove_netns(&netns);
            return Err(e);
        }
        let (gone, gone_rx) = watch::channel(false);
        inner.pods.insert(uid.to_owned(), PodEntry { netns: netns.clone(), gone });
        tracing::info!(pod = %format!("{ns}/{}", pod.name), %netns, %ip, "pod network namespace made");
        Ok(PodNamespace { uts: uts_file(&netns), netns, gone: gone_rx })
    }

    fn node(&self) -> String {
        format!("{}node", self.prefix)
    }

    fn make_node(&self) -> Result<(), PodNetError> {
        let node = self.node();
        remove_netns(&node);
        let gateway = format!("{GATEWAY}/{POD_PREFIX}");
        let dns = format!("{CLUSTER_DNS}/32");
        let steps: [&[&str]; 6] = [
            &["netns", "add", &node],
            &["-n", &node, "link", "set", "lo", "up"],
            &["-n", &node, "link", "add", "cni0", "type", "bridge"],
            &["-n", &node, "addr", "add", &gateway, "dev", "cni0"],
            &["-n", &node, "link", "set", "cni0", "up"],
            &["-n", &node, "addr", "add", &dns, "dev", "lo"],
        ];
        let made = steps.iter().try_for_each(|args| run_ip(args)).and_then(|()| self.hand_over_dns(&node));
        if made.is_err() {
            remove_netns(&node);
        }
        made
    }

    /// Binds the DNS sockets inside the node namespace and gives them to the DNS server.
    fn hand_over_dns(&self, node: &str) -> Result<(), PodNetError> {
        let Some(sink) = &self.config.dns else { return Ok(()) };
        let addr = SocketAddr::from((CLUSTER_DNS, 53));
        let sockets = bind_in_netns(node, addr)
            .map_err(|e| PodNetError(format!("binding the pods' DNS address {addr} in {node}: {e}")))?;
        sink.try_send(sockets).map_err(|e| PodNetError(format!("handing the pods' DNS sockets to the DNS server: {e}")))
    }

    fn make_pod(&self, netns: &str, index: u64, pod: &PodInfo<'_>, ip: Ipv4Addr) -> Result<(), PodNetError> {
        let node = self.node();
        let veth = format!("veth{index}");
        let address = format!("{ip}/{POD_PREFIX}");
        let steps: [&[&str]; 7] = [
            &["netns", "add", netns],
            &["-n", netns, "link", "set", "lo", "up"],
            &["-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
            &["-n", &node, "link", "set", &veth, "master", "cni0", "up"],
            &["-n", netns, "addr", "add", &address, "dev", "eth0"],
            &["-n", netns, "link", "set", "eth0", "up"],
            &["-n", netns, "route", "add", "default", "via", GATEWAY],
        ];
        steps.iter().try_for_each(|args| run_ip(args))?;
        let dir = format!("{NETNS_ETC}/{netns}");
        let write = |file: &str, text: String| {
            std::fs::write(format!("{dir}/{file}"), text).map_err(|e| PodNetError(format!("writing {dir}/{file}: {e}")))
        };
        std::fs::create_dir_all(&dir).map_err(|e| PodNetError(format!("creating {dir}: {e}")))?;
        let domain = &self.config.cluster_domain;
        write("resolv.conf", resolv_conf(pod.namespace, domain))?;
        write("hosts", hosts(ip, pod, domain))?;
        // the kubelet's hostname: spec.hostname, else the pod's name (at most 63 characters)
        let hostname = if pod.hostname.is_empty() { pod.name } else { pod.hostname };
        let hostname: String = hostname.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_owned();
        let uts = uts_file(netns);
        std::fs::create_dir_all(UTS_DIR).map_err(|e| PodNetError(format!("creating {UTS_DIR}: {e}")))?;
        std::fs::write(&uts, "").map_err(|e| PodNetError(format!("creating {uts}: {e}")))?;
        run("unshare", &[&format!("--uts={uts}"), "hostname", &hostname])
    }

    /// Removes the namespace of a pod that is gone (blocking), and tells its sessions.
    pub fn remove_pod(&self, uid: &str) {
        let entry = self.inner.lock().pods.remove(uid);
        if let Some(entry) = entry {
            let _ = entry.gone.send(true);
            remove_netns(&entry.netns);
            tracing::info!(netns = %entry.netns, "pod network namespace removed");
        }
    }

    /// Removes every namespace of this run (blocking): at shutdown.
    pub fn remove_all(&self) {
        let (pods, node) = {
            let mut inner = self.inner.lock();
            let node = std::mem::take(&mut inner.node_ready);
            (std::mem::take(&mut inner.pods), node)
        };
        for entry in pods.into_values() {
            let _ = entry.gone.send(true);
            remove_netns(&entry.netns);
        }
        if node {
            remove_netns(&self.node());
        }
    }

    /// Removes namespaces left by runs that are no longer alive (killed before they could clean up).
    pub fn sweep_stale() {
        let names = [NETNS_DIR, UTS_DIR]
            .into_iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        for name in names {
            let Some(pid) = Self::owner(&name) else { continue };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                tracing::info!(netns = %name, "removing a pod network namespace left by an earlier run");
                remove_netns(&name);
            }
        }
    }

    /// The pid in a name of ours (`roster-<pid>-…`).
    fn owner(name: &str) -> Option<u32> {
        name.strip_prefix("roster-").and_then(|rest| rest.split('-').next()).and_then(|pid| pid.parse().ok())
    }

    /// Follows pod deletions: a deleted pod's namespace goes (and its sessions end).
    pub async fn follow_deletions(self: Arc<Self>, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
        let pods = crate::bootstrap::builtin("", "pods");
        let mut changes = store.subscribe();
        loop {
            let gone: Vec<String> = tokio::select! {
                _ = shutdown.changed() => return,
                change = changes.recv() => match change {
                    Ok(change) => deleted_pod(&change).into_iter().collect(),
                    // missed events: compare with the pods that exist
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let live: std::collections::HashSet<String> = store.list(&pods, None).0.iter()
                            .map(|p| crate::meta::meta_str(p, "uid").to_owned()).collect();
                        self.inner.lock().pods.keys().filter(|uid| !live.contains(*uid)).cloned().collect()
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            for uid in gone.into_iter().filter(|uid| self.inner.lock().pods.contains_key(uid)) {
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.remove_pod(&uid)).await;
            }
        }
    }
}

fn deleted_pod(change: &Change) -> Option<String> {
    (change.event == EventType::Deleted && change.key == "/pods")
        .then(|| crate::meta::meta_str(&change.object, "uid").to_owned())
}

/// The kubelet's resolv.conf for a pod with `dnsPolicy: ClusterFirst`.
fn resolv_conf(ns: &str, domain: &str) -> String {
    format!("search {ns}.svc.{domain} svc.{domain} {domain}\nnameserver {CLUSTER_DNS}\noptions ndots:5\n")
}

/// The kubelet's /etc/hosts: loopback, then the pod's own address and names (its FQDN first when it
/// has a subdomain).
fn hosts(ip: Ipv4Addr, pod: &PodInfo<'_>, domain: &str) -> String {
    let name = if pod.hostname.is_empty() { pod.name } else { pod.hostname };
    let names = if pod.subdomain.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{}.{}.svc.{domain}\t{name}", pod.subdomain, pod.namespace)
    };
    format!(
        "# Kubernetes-managed hosts file (the stand-in's).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{names}\n"
    )
}

fn uts_file(netns: &str) -> String {
    format!("{UTS_DIR}/{netns}")
}

/// `ip ARGS`.
fn run_ip(args: &[&str]) -> Result<(), PodNetError> {
    run("ip", args)
}

/// `PROGRAM ARGS`, its stderr in the error.
fn run(program: &str, args: &[&str]) -> Result<(), PodNetError> {
    let shown = args.join(" ");
    let output = Command::new(program).args(args).output().map_err(|e| {
        PodNetError(format!("running `{program} {shown}`: {e} (the pod network needs iproute2 and util-linux)"))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(PodNetError(format!("`{program} {shown}` failed: {}", String::from_utf8_lossy(&output.stderr).trim())))
}

/// Removes a pod's namespaces and its /etc/netns files (the veth pair goes with the namespace).
fn remove_netns(name: &str) {
    let uts = uts_file(name);
    if std::path::Path::new(&uts).exists() {
        // the bind mount holds the UTS namespace; then the file goes
        let _ = run("umount", &[&uts]);
        let _ = std::fs::remove_file(&uts);
    }
    let _ = std::fs::remove_dir_all(format!("{NETNS_ETC}/{name}"));
    // last: a namespace file gone means everything of the pod is gone
    if std::path::Path::new(&format!("{NETNS_DIR}/{name}")).exists()
        && let Err(e) = run_ip(&["netns", "delete", name])
    {
        tracing::warn!(error = %e, "removing a pod network namespace");
    }
}

/// UDP and TCP sockets bound to `addr` inside the named namespace: a thread of its own enters the
/// namespace (setns changes only the calling thread) and ends; the sockets stay in the namespace.
fn bind_in_netns(netns: &str, addr: SocketAddr) -> std::io::Result<DnsSockets> {
    let path = format!("{NETNS_DIR}/{netns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path)?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                let udp = UdpSocket::bind(addr)?;
                let tcp = TcpListener::bind(addr)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_is_the_kubelets() {
        assert_eq!(
            resolv_conf("demo", "cluster.local"),
            "search demo.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_names_the_pod() {
        let pod =
            PodInfo { uid: "u", namespace: "default", name: "web-0", hostname: "web-0", subdomain: "nginx", ip: "" };
        let text = hosts(Ipv4Addr::new(10, 244, 0, 5), &pod, "cluster.local");
        assert!(text.ends_with("10.244.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n"), "{text}");
        let pod = PodInfo { subdomain: "", name: "dns-test", hostname: "", ..pod };
        assert!(hosts(Ipv4Addr::new(10, 244, 0, 6), &pod, "cluster.local").ends_with("10.244.0.6\tdns-test\n"));
    }
}
