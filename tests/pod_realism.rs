//! Pods as network namespaces: each has a veth to the host and a pod-like `/etc/netns/NAME/resolv.conf`
//! (`search <ns>.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`, nameserver =
//! roster). Inside, the seeds' commands run unchanged against a workload on `roster local`: nslookup
//! with short names, dig, glibc's `getent hosts`, and a name outside the cluster answered through the
//! forwarder by Knot standing in for the internet. Needs root and iproute2 (scripts/test.sh provides).
#![allow(clippy::unwrap_used)]

mod support;

use support::netns::{PodNamespace, require_iproute2, start_internet};
use support::process::{Proc, ROSTER, free_port, kubectl, wait_for};

const SEED_WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-demo, namespace: demo, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-demo-0, namespace: demo, labels: {app: nginx}}
spec:
  hostname: web-demo-0
  subdomain: nginx-demo
  containers: [{name: nginx, image: "nginx:1.19.2-alpine", ports: [{name: web, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: myapp-svc, namespace: default}
spec:
  clusterIP: None
  selector: {app: myapp-pod}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: myapp-0, namespace: default, labels: {app: myapp-pod}}
spec:
  hostname: myapp-0
  subdomain: myapp-svc
  containers: [{name: myapp, image: "ikubernetes/myapp:v1", ports: [{name: web, containerPort: 80}]}]
"#;

#[test]
fn seed_commands_resolve_from_pod_namespaces() {
    require_iproute2();
    let dir = tempfile::tempdir().unwrap();
    let (knot, knot_port) = start_internet(dir.path());

    let tag = std::process::id() % 200 + 20;
    let demo_pod = PodNamespace::create(&format!("rpd{tag}"), u8::try_from(tag).unwrap(), "demo");
    let default_pod = PodNamespace::create(&format!("rpf{tag}"), u8::try_from(tag + 1).unwrap(), "default");

    // One roster serves both pods' networks: --dns takes one address, so each pod gets a replica that
    // follows the same controller stream (as the kube-dns Service's replicas would).
    let (api, stream) = (free_port(), free_port());
    let data = dir.path().join("cluster");
    let local = Proc::spawn(
        ROSTER,
        &[
            "local",
            "--data-dir",
            data.to_str().unwrap(),
            "--api",
            &format!("127.0.0.1:{api}"),
            "--dns",
            &format!("{}:53", demo_pod.host_ip),
            "--stream",
            &format!("127.0.0.1:{stream}"),
            "--pod-ready-ms",
            "200",
            "--upstream",
            &format!("127.0.0.1:{knot_port}"),
        ],
    );
    wait_for("roster local", &[&local, &knot], || local.log().contains("roster local is up"));
    // The record stream is mutual TLS: the replica uses the client certificate `roster local` made
    // for this run, as its instructions say.
    let log = local.log();
    let tls = |flag: &str| {
        log.split(&format!("{flag} ")).nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_owned()
    };
    let (ca, cert, key) = (tls("--tls-ca"), tls("--tls-cert"), tls("--tls-key"));
    let replica = Proc::spawn(
        ROSTER,
        &[
            "dns",
            "--controller",
            &format!("https://127.0.0.1:{stream}"),
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--listen",
            &format!("{}:53", default_pod.host_ip),
            "--upstream",
            &format!("127.0.0.1:{knot_port}"),
        ],
    );
    let procs = [&local, &replica, &knot];
    let kubeconfig = data.join("kubeconfig");
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(SEED_WORKLOADS));
    let pod_ip = |ns: &str, pod: &str| {
        kubectl(&kubeconfig, &["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"], None)
    };
    wait_for("pods with addresses", &procs, || {
        !pod_ip("demo", "web-demo-0").is_empty() && !pod_ip("default", "myapp-0").is_empty()
    });
    let web_ip = pod_ip("demo", "web-demo-0");
    let myapp_ip = pod_ip("default", "myapp-0");

    // `nslookup web-demo-0.nginx-demo` from namespace demo: the search list completes the name.
    wait_for("nslookup web-demo-0.nginx-demo", &procs, || {
        let (ok, text) = demo_pod.exec(&["nslookup", "web-demo-0.nginx-demo"]);
        ok && text.contains(&format!("Address: {web_ip}"))
            && text.contains("web-demo-0.nginx-demo.demo.svc.cluster.local")
    });
    // The fully qualified StatefulSet pod name, from the other pod.
    wait_for("nslookup myapp-0.myapp-svc.default.svc.cluster.local", &procs, || {
        let (ok, text) = default_pod.exec(&["nslookup", "myapp-0.myapp-svc.default.svc.cluster.local"]);
        ok && text.contains(&format!("Address: {myapp_ip}"))
    });
    let (ok, text) = default_pod.exec(&["nslookup", "myapp-svc"]);
    assert!(ok && text.contains(&myapp_ip), "{text}");
    // dig -t A with the full name (dig does not use the search list unless asked).
    let (ok, text) = demo_pod.exec(&["dig", "-t", "A", "web-demo-0.nginx-demo.demo.svc.cluster.local", "+short"]);
    assert!(ok && text.trim() == web_ip, "{text}");
    let (ok, text) = demo_pod.exec(&["dig", "+search", "web-demo-0.nginx-demo", "+short"]);
    assert!(ok && text.trim() == web_ip, "{text}");
    // glibc through the system resolver (search list, ndots:5), as applications resolve.
    let (ok, text) = demo_pod.exec(&["getent", "hosts", "web-demo-0.nginx-demo"]);
    assert!(ok && text.starts_with(&web_ip), "{text}");
    let (ok, text) = default_pod.exec(&["getent", "hosts", "web-demo-0.nginx-demo.demo"]);
    assert!(ok && text.starts_with(&web_ip), "{text}");
    // A missing ordinal does not resolve (NXDOMAIN all along the search list).
    let (ok, _) = demo_pod.exec(&["getent", "hosts", "web-demo-7.nginx-demo"]);
    assert!(!ok, "a missing ordinal must not resolve");
    // Outside the cluster: the forwarder asks the internet (Knot), even with ndots:5 expansion first.
    let (ok, text) = demo_pod.exec(&["nslookup", "www.example.org"]);
    assert!(ok && text.contains("192.0.2.80"), "{text}");
    let (ok, text) = default_pod.exec(&["getent", "hosts", "www.example.org"]);
    assert!(ok && text.starts_with("192.0.2.80"), "{text}");
    // Reverse lookup of the pod's address from inside.
    let (ok, text) = demo_pod.exec(&["nslookup", &web_ip]);
    assert!(ok && text.contains("web-demo-0.nginx-demo.demo.svc.cluster.local"), "{text}");
}
