//! Differential DNS answers: a query set generated from a cluster's objects (the name shapes of the
//! benchmark dataset and of Kubernetes' e2e DNS tests, for every record kind), a plain UDP client built on
//! hickory-proto, answers reduced to what must agree (rcode, AA, TC, the answer RRset sorted without TTLs,
//! the authority section's owners and types), and docs/coredns-differences.md's table of the differences
//! that are known.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;

pub const ZONE: &str = "cluster.local";

/// One question, with the case it stands for (the key of docs/coredns-differences.md's table).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Question {
    pub case: String,
    pub name: String,
    pub rtype: RecordType,
}

/// What two servers must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub rcode: String,
    pub aa: bool,
    pub tc: bool,
    /// `owner TYPE rdata`, owner lower-cased, no TTL, SOA serials masked; sorted.
    pub answer: Vec<String>,
    /// `owner TYPE` of the authority section; sorted.
    pub authority: Vec<String>,
    /// The largest TTL of a record in the answer and authority sections inside the cluster zones.
    pub max_zone_ttl: u32,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} aa={} tc={} answer={:?} authority={:?}",
            self.rcode, self.aa, self.tc, self.answer, self.authority
        )
    }
}

/// `10.244.0.5` → `10-244-0-5`; IPv6 with `-` for `:`.
pub fn dashed(ip: &str) -> String {
    ip.replace(['.', ':'], "-")
}

/// The PTR owner of an address.
pub fn reverse(ip: &str) -> String {
    match IpAddr::from_str(ip).unwrap() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let nibbles: Vec<String> = hex.chars().rev().map(String::from).collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
}

fn items(list: &Value) -> Vec<&Value> {
    list["items"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut v = value;
    for key in path {
        v = &v[*key];
    }
    v.as_str().unwrap_or("")
}

/// The query set for the objects in `services`, `slices`, `pods` (`kubectl get … -A -o json`), restricted
/// to the namespaces in `namespaces`; `missing_ns` is a namespace that does not exist.
pub fn generate(
    services: &Value,
    slices: &Value,
    pods: &Value,
    namespaces: &[&str],
    missing_ns: &str,
) -> Vec<Question> {
    use RecordType::*;
    let mut set = BTreeSet::new();
    let mut q = |case: &str, name: String, rtype: RecordType| {
        set.insert(Question { case: case.to_owned(), name: name.trim_end_matches('.').to_owned(), rtype });
    };
    let wanted = |ns: &str| namespaces.contains(&ns);

    // The zone apex and the fixed names of the schema.
    for (rtype, case) in [(SOA, "apex SOA"), (NS, "apex NS"), (A, "apex A"), (TXT, "apex TXT")] {
        q(case, ZONE.to_owned(), rtype);
    }
    q("dns-version TXT", format!("dns-version.{ZONE}"), TXT);
    q("dns-version wrong type", format!("dns-version.{ZONE}"), A);
    q("ns.dns A", format!("ns.dns.{ZONE}"), A);
    q("svc label A", format!("svc.{ZONE}"), A);
    q("pod label A", format!("pod.{ZONE}"), A);
    q("unknown below apex", format!("nothing-here.{ZONE}"), A);
    q("reverse zone SOA", "in-addr.arpa".to_owned(), SOA);
    q("reverse zone SOA", "ip6.arpa".to_owned(), SOA);
    q("reverse zone NS", "in-addr.arpa".to_owned(), NS);
    q("reverse unknown in 10/8", "77.66.55.10.in-addr.arpa".to_owned(), PTR);
    q("reverse outside cluster", "1.2.0.192.in-addr.arpa".to_owned(), PTR);
    q("forwarded A", "www.example.com".to_owned(), A);
    q("forwarded NXDOMAIN", "nothing.example.org".to_owned(), A);

    // Names Kubernetes' e2e DNS tests resolve, as a pod's resolver expands them through its search path
    // (`<ns>.svc.cluster.local svc.cluster.local cluster.local`, then as written).
    for short in ["kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"] {
        for (i, search) in
            [format!("{}.svc.{ZONE}", namespaces[0]), format!("svc.{ZONE}"), ZONE.to_owned()].into_iter().enumerate()
        {
            q(&format!("e2e search expansion {i}"), format!("{short}.{search}"), A);
        }
        q("e2e as written", short.to_owned(), A);
    }

    for ns in namespaces {
        let base = format!("{ns}.svc.{ZONE}");
        q("namespace name A", base.clone(), A);
        q("missing service A", format!("missing-1.{base}"), A);
        q("bench ndots expansion", format!("api-1.example.com.{base}"), A);
    }
    q("missing namespace A", format!("kubernetes.{missing_ns}.svc.{ZONE}"), A);
    q("missing namespace name A", format!("{missing_ns}.svc.{ZONE}"), A);

    for svc in items(services) {
        let ns = text(svc, &["metadata", "namespace"]);
        if !wanted(ns) {
            continue;
        }
        let name = text(svc, &["metadata", "name"]);
        let kind = match (text(svc, &["spec", "type"]), text(svc, &["spec", "clusterIP"])) {
            ("ExternalName", _) if text(svc, &["spec", "externalName"]).ends_with(&format!(".{ZONE}")) => {
                "externalname-incluster"
            }
            ("ExternalName", _) => "externalname-external",
            (_, "None") => "headless",
            _ if svc["spec"]["ipFamilies"].as_array().is_some_and(|f| f.len() > 1) => "dualstack",
            _ if svc["spec"]["selector"].is_null() => "clusterip-noselector",
            _ => "clusterip",
        };
        let base = format!("{name}.{ns}.svc.{ZONE}");
        for rtype in [A, AAAA, SRV, TXT, CNAME, MX] {
            q(&format!("{kind} service {rtype}"), base.clone(), rtype);
        }
        q(&format!("{kind} service uppercase A"), base.to_uppercase(), A);
        q(&format!("{kind} bench doubled suffix"), format!("{base}.{ns}.svc.{ZONE}"), A);
        q(&format!("{kind} below service"), format!("missing-1.{base}"), A);
        for ip in svc["spec"]["clusterIPs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if IpAddr::from_str(ip).is_err() {
                continue; // a headless service's `None`
            }
            q(&format!("{kind} ClusterIP PTR"), reverse(ip), PTR);
        }
        let mut port_names = Vec::new();
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let pname = port["name"].as_str().unwrap_or("");
            let proto = port["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
            if pname.is_empty() {
                continue;
            }
            port_names.push(pname.to_owned());
            let other = if proto == "tcp" { "udp" } else { "tcp" };
            q(&format!("{kind} port SRV {proto}"), format!("_{pname}._{proto}.{base}"), SRV);
            q(&format!("{kind} port wrong type"), format!("_{pname}._{proto}.{base}"), A);
            q(&format!("{kind} port wrong protocol"), format!("_{pname}._{other}.{base}"), SRV);
            q(&format!("{kind} port proto level"), format!("_{proto}.{base}"), SRV);
        }
        // The e2e tests always ask `_http._tcp.<svc>`; a service without such a port answers no SRV.
        if !port_names.iter().any(|p| p == "http") {
            q(&format!("{kind} port SRV absent"), format!("_http._tcp.{base}"), SRV);
        }
        if kind.starts_with("externalname") {
            continue;
        }
        // Endpoint names: the hostname when the endpoint has one, the dashed address otherwise.
        for slice in items(slices) {
            if text(slice, &["metadata", "namespace"]) != ns
                || text(slice, &["metadata", "labels", "kubernetes.io/service-name"]) != name
            {
                continue;
            }
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                let ready = endpoint["conditions"]["ready"].as_bool() != Some(false);
                let state = if ready { "ready" } else { "not-ready" };
                let hostname = endpoint["hostname"].as_str();
                for ip in endpoint["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let label = hostname.map_or_else(|| dashed(ip), str::to_owned);
                    let how = if hostname.is_some() { "hostname" } else { "address" };
                    let owner = format!("{label}.{base}");
                    q(&format!("{kind} {state} endpoint by {how} A"), owner.clone(), A);
                    q(&format!("{kind} {state} endpoint by {how} AAAA"), owner.clone(), AAAA);
                    q(&format!("{kind} {state} endpoint below"), format!("x.{owner}"), A);
                    q(&format!("{kind} {state} endpoint PTR by {how}"), reverse(ip), PTR);
                    if hostname.is_some() {
                        q(&format!("{kind} {state} endpoint by address A"), format!("{}.{base}", dashed(ip)), A);
                    }
                }
            }
        }
    }

    for pod in items(pods) {
        let ns = text(pod, &["metadata", "namespace"]);
        let ip = text(pod, &["status", "podIP"]);
        if !wanted(ns) || ip.is_empty() {
            continue;
        }
        let d = dashed(ip);
        q("pod A", format!("{d}.{ns}.pod.{ZONE}"), A);
        q("pod AAAA", format!("{d}.{ns}.pod.{ZONE}"), AAAA);
        q("pod below", format!("x.{d}.{ns}.pod.{ZONE}"), A);
        let other = namespaces.iter().find(|n| **n != ns).unwrap();
        q("pod other namespace A", format!("{d}.{other}.pod.{ZONE}"), A);
        q("pod missing namespace A", format!("{d}.{missing_ns}.pod.{ZONE}"), A);
        q("pod IP PTR", reverse(ip), PTR);
        let (host, sub) = (text(pod, &["spec", "hostname"]), text(pod, &["spec", "subdomain"]));
        if !host.is_empty() && !sub.is_empty() {
            q("pod hostname.subdomain A", format!("{host}.{sub}.{ns}.svc.{ZONE}"), A);
        }
    }
    for ns in namespaces {
        q("pod not an address", format!("not-an-ip.{ns}.pod.{ZONE}"), A);
        q("pod namespace level", format!("{ns}.pod.{ZONE}"), A);
    }
    set.into_iter().collect()
}

/// One question over UDP (RD set, as a stub resolver sends it, no EDNS), three tries of two seconds.
pub fn ask(server: SocketAddr, question: &Question) -> Result<Message, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(format!("{}.", question.name)).unwrap(), question.rtype));
    let bytes = message.to_vec().unwrap();
    let mut buffer = [0u8; 65535];
    for _ in 0..3 {
        socket.send_to(&bytes, server).map_err(|e| e.to_string())?;
        while let Ok((n, _)) = socket.recv_from(&mut buffer) {
            let response = Message::from_vec(&buffer[..n]).map_err(|e| e.to_string())?;
            if response.metadata.id == message.metadata.id {
                return Ok(response);
            }
        }
    }
    Err(format!("{server}: no answer to {} {}", question.name, question.rtype))
}

fn in_cluster_zones(name: &Name) -> bool {
    let owner = name.to_ascii().to_ascii_lowercase();
    let owner = owner.trim_end_matches('.');
    [ZONE, "in-addr.arpa", "ip6.arpa"].iter().any(|z| owner == *z || owner.ends_with(&format!(".{z}")))
}

fn show(record: &Record) -> String {
    let rdata = match &record.data {
        RData::SOA(soa) => {
            format!("{} {} (serial) {} {} {} {}", soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum)
        }
        other => other.to_string(),
    };
    format!("{} {} {}", record.name.to_ascii().to_ascii_lowercase(), record.record_type(), rdata)
}

/// The parts of `response` two servers must agree on.
pub fn outcome(response: &Message) -> Outcome {
    let mut answer: Vec<String> = response.answers.iter().map(show).collect();
    answer.sort();
    let mut authority: Vec<String> = response
        .authorities
        .iter()
        .map(|r| format!("{} {}", r.name.to_ascii().to_ascii_lowercase(), r.record_type()))
        .collect();
    authority.sort();
    let max_zone_ttl = response
        .answers
        .iter()
        .chain(&response.authorities)
        .filter(|r| in_cluster_zones(&r.name))
        .map(|r| r.ttl)
        .max()
        .unwrap_or(0);
    Outcome {
        rcode: format!("{:?}", response.metadata.response_code),
        aa: response.metadata.authoritative,
        tc: response.metadata.truncation,
        answer,
        authority,
        max_zone_ttl,
    }
}

/// A row of docs/coredns-differences.md: the case (first column, in backticks) and whether it names the
/// spec section or RFC behind it.
#[derive(Debug)]
pub struct Documented {
    pub case: String,
    pub row: String,
}

/// The table rows of the differences document, by case.
pub fn documented(markdown: &str) -> BTreeMap<String, Documented> {
    let mut rows = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[0].starts_with('`') {
            continue;
        }
        let case = cells[0].trim_matches('`').to_owned();
        rows.insert(case.clone(), Documented { case, row: line.to_owned() });
    }
    rows
}
