//! Differential answers: roster and CoreDNS (built from its Go module by scripts/cluster.sh, run with
//! kubeadm's Corefile) watch the same real control plane; a query set generated from the cluster's objects
//! (every record kind, the benchmark dataset's name shapes and the names Kubernetes' e2e DNS tests resolve,
//! positive and negative) goes to both. Every difference in rcode, AA, TC, the answer RRset or the owners
//! and types of the authority section fails, unless docs/coredns-differences.md lists its case with the
//! spec section behind it; a listed case that no longer differs fails too, so the document stays true.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use real_support::RealCluster;
use real_support::queries::{self, Question};
use support::process::{Proc, free_port};
use support::upstream::{self, Behaviour};

const NAMESPACES: [&str; 3] = ["dns-a", "dns-b", "default"];
const MISSING_NS: &str = "no-such-ns";

/// The objects: a StatefulSet behind a headless service, a ClusterIP service with named TCP and UDP ports,
/// ExternalName services (outside and inside the cluster), a service without selector and manual
/// EndpointSlices (an endpoint with a hostname, one without, one not ready), a dual-stack service, a pod
/// with hostname and subdomain, pods in two namespaces.
const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dns-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: dns-b}
---
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: dns-a}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: dns-a}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.8
        ports: [{name: web, containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: dns-a}
spec:
  selector: {app: nginx}
  ports:
  - {name: http, port: 8080, targetPort: 80, protocol: TCP}
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: dual, namespace: dns-a}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: nginx}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: dns-a}
spec:
  type: ExternalName
  externalName: www.example.com
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: dns-b}
spec:
  type: ExternalName
  externalName: front.dns-a.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: dns-b}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  namespace: dns-b
  labels: {kubernetes.io/service-name: manual}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.250.0.10]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.250.0.11]
  conditions: {ready: true}
- addresses: [10.250.0.12]
  hostname: db-2
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: sub, namespace: dns-b}
spec:
  clusterIP: None
  selector: {app: alpha}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: alpha, namespace: dns-b, labels: {app: alpha}}
spec:
  hostname: alpha
  subdomain: sub
  containers: [{name: c, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: loner, namespace: dns-b, labels: {app: loner}}
spec:
  containers: [{name: c, image: registry.k8s.io/pause:3.10}]
"#;

/// Created last: when both servers answer its endpoint's name, both have seen what came before.
const SENTINEL: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: zz-sentinel, namespace: dns-b}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: zz-sentinel-1
  namespace: dns-b
  labels: {kubernetes.io/service-name: zz-sentinel}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.250.9.9]
  hostname: ready
"#;

/// kubeadm's Corefile, on loopback: `health`, `ready` and `prometheus` on free ports, `forward` to the
/// same fake upstream roster forwards to, the kubernetes plugin reading the cluster through `kubeconfig`.
fn corefile(dns: u16, kubeconfig: &str, upstream: SocketAddr) -> String {
    let (health, ready, metrics) = (free_port(), free_port(), free_port());
    format!(
        ".:{dns} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health} {{
        lameduck 1s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} admin@roster-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    forward . {upstream}
    cache 30
    loop
    reload
    loadbalance
}}
"
    )
}

fn sentinel_answered(server: SocketAddr) -> bool {
    let question = Question {
        case: String::new(),
        name: format!("ready.zz-sentinel.dns-b.svc.{}", queries::ZONE),
        rtype: RecordType::A,
    };
    queries::ask(server, &question).is_ok_and(|m| !m.answers.is_empty())
}

#[test]
fn roster_answers_as_coredns_on_a_real_cluster() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(upstream::start(Behaviour::Good));
    let cluster = RealCluster::up(&[]);
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_owned();

    cluster.apply(OBJECTS);
    cluster.kubectl_ok(&["rollout", "status", "statefulset/web", "-n", "dns-a", "--timeout=120s"]);
    cluster.kubectl_ok(&["wait", "--for=condition=Ready", "pod/alpha", "pod/loner", "-n", "dns-b", "--timeout=120s"]);
    // Every selector's EndpointSlice lists its ready pods before the servers start.
    cluster.eventually("EndpointSlices with every pod", Duration::from_secs(60), || {
        let slices = cluster.get_json(&["get", "endpointslices", "-A"]);
        let ready = |service: &str| {
            slices["items"].as_array().unwrap().iter().any(|s| {
                s["metadata"]["labels"]["kubernetes.io/service-name"] == service
                    && s["endpoints"].as_array().is_some_and(|e| {
                        e.iter().filter(|e| e["conditions"]["ready"] == true).count()
                            == if service == "sub" { 1 } else { 2 }
                    })
            })
        };
        ["nginx", "front", "sub"].into_iter().all(ready).then_some(())
    });

    let roster_port = free_port();
    let roster = Proc::roster(&[
        "local",
        "--kubeconfig",
        &kubeconfig,
        "--install-crd",
        "--dns",
        &format!("127.0.0.1:{roster_port}"),
        "--stream",
        &format!("127.0.0.1:{}", free_port()),
        "--pods",
        "insecure",
        "--ttl",
        "30",
        "--upstream",
        &fake.addr.to_string(),
    ]);
    let coredns_port = free_port();
    let corefile_path = cluster.dir.path().join("Corefile");
    std::fs::write(&corefile_path, corefile(coredns_port, &kubeconfig, fake.addr)).unwrap();
    let coredns =
        Proc::spawn(cluster.bin.join("coredns").to_str().unwrap(), &["-conf", corefile_path.to_str().unwrap()]);

    cluster.apply(SENTINEL);
    let roster_addr: SocketAddr = format!("127.0.0.1:{roster_port}").parse().unwrap();
    let coredns_addr: SocketAddr = format!("127.0.0.1:{coredns_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(sentinel_answered(roster_addr) && sentinel_answered(coredns_addr)) {
        assert!(
            Instant::now() < deadline,
            "the servers did not see the cluster within 90 s\nroster:\n{}\ncoredns:\n{}",
            roster.log(),
            coredns.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let services = cluster.get_json(&["get", "services", "-A"]);
    let slices = cluster.get_json(&["get", "endpointslices", "-A"]);
    let pods = cluster.get_json(&["get", "pods", "-A"]);
    let questions = queries::generate(&services, &slices, &pods, &NAMESPACES, MISSING_NS);
    let kinds: std::collections::BTreeSet<RecordType> = questions.iter().map(|q| q.rtype).collect();
    for kind in [RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::PTR, RecordType::CNAME] {
        assert!(kinds.contains(&kind), "the query set has no {kind} question");
    }

    let doc_path = format!("{}/docs/coredns-differences.md", real_support::ROOT);
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let known = queries::documented(&doc);
    let mut differing_cases = std::collections::BTreeSet::new();
    let mut undocumented = Vec::new();
    let mut report = Vec::new();
    let mut agreeing_positive = 0;
    for question in &questions {
        let r = queries::outcome(&queries::ask(roster_addr, question).unwrap());
        let c = queries::outcome(&queries::ask(coredns_addr, question).unwrap());
        for (who, o) in [("roster", &r), ("coredns", &c)] {
            assert!(o.max_zone_ttl <= 30, "{who}: TTL above 30 for {} {}: {o}", question.name, question.rtype);
        }
        let same = (&r.rcode, r.aa, r.tc, &r.answer, &r.authority) == (&c.rcode, c.aa, c.tc, &c.answer, &c.authority);
        if same {
            agreeing_positive += usize::from(!r.answer.is_empty());
            continue;
        }
        differing_cases.insert(question.case.clone());
        let line =
            format!("[{}] {} {}\n    roster:  {r}\n    coredns: {c}", question.case, question.name, question.rtype);
        if known.contains_key(&question.case) {
            report.push(line);
        } else {
            undocumented.push(line);
        }
    }
    println!(
        "{} questions ({} cases), {} agreeing with answers, {} cases differing; {:?} in all",
        questions.len(),
        questions.iter().map(|q| &q.case).collect::<std::collections::BTreeSet<_>>().len(),
        agreeing_positive,
        differing_cases.len(),
        started.elapsed()
    );
    println!("documented differences seen:\n{}", report.join("\n"));
    assert!(
        undocumented.is_empty(),
        "{} answers differ without an entry in docs/coredns-differences.md:\n{}",
        undocumented.len(),
        undocumented.join("\n")
    );
    // The answers agree on most of the set, and the comparison saw real records.
    assert!(agreeing_positive >= 20, "only {agreeing_positive} positive answers agree");
    for (case, row) in &known {
        assert!(
            differing_cases.contains(case),
            "docs/coredns-differences.md lists `{case}`, which no longer differs: {}",
            row.row
        );
        assert!(
            row.row.contains("specification.md") || row.row.contains("RFC"),
            "docs/coredns-differences.md: `{case}` names no spec section or RFC: {}",
            row.row
        );
    }
    drop(coredns);
    drop(roster);
}
