//! The whole pipeline as processes: `roster local` (stand-in cluster + controller + DNS), and a separate
//! `roster controller` with two `roster dns --controller` replicas, driven with kubectl and dig.
#![allow(clippy::unwrap_used)]

mod stream_support;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use stream_support::{Creds, curl, tls_args};
use support::process::{Proc, free_port, kubectl, short, status, wait_for};

struct Local {
    proc: Proc,
    dns: u16,
    stream: u16,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let (api, dns, stream) = (free_port(), free_port(), free_port());
    let proc = Proc::roster(&[
        "local",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--api",
        &format!("127.0.0.1:{api}"),
        "--dns",
        &format!("127.0.0.1:{dns}"),
        "--stream",
        &format!("127.0.0.1:{stream}"),
        "--pod-ready-ms",
        "200",
    ]);
    let kubeconfig = dir.path().join("kubeconfig");
    wait_for("roster local to start", &[&proc], || proc.log().contains("roster local is up"));
    wait_for("the API", &[&proc], || short(dns, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"]);
    Local { proc, dns, stream, kubeconfig, _dir: dir }
}

const WORKLOAD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: docs}
spec:
  type: ExternalName
  externalName: docs.example.com
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: nginx}}
spec:
  hostname: web-0
  subdomain: nginx
  containers: [{name: nginx, image: nginx, ports: [{name: web, containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: nginx}}
spec:
  hostname: web-1
  subdomain: nginx
  containers: [{name: nginx, image: nginx, ports: [{name: web, containerPort: 80}]}]
"#;

fn pod_ip(kubeconfig: &Path, pod: &str) -> String {
    kubectl(kubeconfig, &["get", "pod", pod, "-o", "jsonpath={.status.podIP}"], None)
}

/// Everything a user sees change in DNS as the cluster changes, against any set of DNS ports.
fn exercise_workload(kubeconfig: &Path, ports: &[u16], logs: &[&Proc]) {
    kubectl(kubeconfig, &["apply", "-f", "-"], Some(WORKLOAD));
    wait_for("pods running", logs, || {
        let ip0 = pod_ip(kubeconfig, "web-0");
        let ip1 = pod_ip(kubeconfig, "web-1");
        !ip0.is_empty()
            && !ip1.is_empty()
            && ports.iter().all(|p| short(*p, "nginx.default.svc.cluster.local", "A").len() == 2)
    });
    let ip0 = pod_ip(kubeconfig, "web-0");
    let ip1 = pod_ip(kubeconfig, "web-1");
    let mut both = vec![ip0.clone(), ip1.clone()];
    both.sort();
    let front_ip = kubectl(kubeconfig, &["get", "svc", "front", "-o", "jsonpath={.spec.clusterIP}"], None);
    for port in ports {
        let port = *port;
        assert_eq!(short(port, "web-0.nginx.default.svc.cluster.local", "A"), std::slice::from_ref(&ip0));
        assert_eq!(short(port, "nginx.default.svc.cluster.local", "A"), both);
        assert_eq!(short(port, "front.default.svc.cluster.local", "A"), std::slice::from_ref(&front_ip));
        assert_eq!(
            short(port, "_http._tcp.front.default.svc.cluster.local", "SRV"),
            ["0 100 8080 front.default.svc.cluster.local."]
        );
        assert_eq!(short(port, "docs.default.svc.cluster.local", "CNAME"), ["docs.example.com."]);
        let reverse: Vec<&str> = front_ip.split('.').rev().collect();
        assert_eq!(
            short(port, &format!("{}.in-addr.arpa", reverse.join(".")), "PTR"),
            ["front.default.svc.cluster.local."]
        );
        let reverse0: Vec<&str> = ip0.split('.').rev().collect();
        let mut ptr = short(port, &format!("{}.in-addr.arpa", reverse0.join(".")), "PTR");
        ptr.sort();
        // The endpoint is in two services: one PTR each, pointing at its own name in each.
        assert_eq!(
            ptr,
            [
                format!("{}.front.default.svc.cluster.local.", ip0.replace('.', "-")),
                "web-0.nginx.default.svc.cluster.local.".to_owned()
            ]
        );
    }

    // web-1 becomes unready: it leaves the service-wide answer and its own name is NXDOMAIN.
    kubectl(kubeconfig, &["annotate", "pod", "web-1", "sim.roster.dev/ready=false"], None);
    wait_for("web-1 to leave DNS", logs, || {
        ports.iter().all(|p| status(*p, "web-1.nginx.default.svc.cluster.local") == "NXDOMAIN")
    });
    for port in ports {
        assert_eq!(short(*port, "nginx.default.svc.cluster.local", "A"), std::slice::from_ref(&ip0));
    }
    kubectl(kubeconfig, &["annotate", "pod", "web-1", "sim.roster.dev/ready-"], None);
    wait_for("web-1 back", logs, || {
        ports.iter().all(|p| short(*p, "web-1.nginx.default.svc.cluster.local", "A") == [ip1.clone()])
    });

    // web-0 is recreated with a new IP: the name follows.
    kubectl(kubeconfig, &["delete", "pod", "web-0", "--wait=true"], None);
    let pod0 = WORKLOAD.split("---").find(|d| d.contains("name: web-0")).unwrap();
    kubectl(kubeconfig, &["apply", "-f", "-"], Some(pod0));
    wait_for("web-0's new address", logs, || {
        let ip = pod_ip(kubeconfig, "web-0");
        !ip.is_empty()
            && ip != ip0
            && ports.iter().all(|p| short(*p, "web-0.nginx.default.svc.cluster.local", "A") == [ip.clone()])
    });

    // The services go: NXDOMAIN.
    kubectl(kubeconfig, &["delete", "svc", "nginx", "front", "docs"], None);
    wait_for("services gone", logs, || {
        ports.iter().all(|p| {
            status(*p, "nginx.default.svc.cluster.local") == "NXDOMAIN"
                && status(*p, "front.default.svc.cluster.local") == "NXDOMAIN"
                && status(*p, "docs.default.svc.cluster.local") == "NXDOMAIN"
        })
    });
}

#[test]
fn roster_local_follows_the_cluster() {
    let local = start_local();
    // An extra replica following `roster local`'s own record stream sees the same changes.
    // With the client certificate `roster local` made for this run, as its instructions say.
    let log = local.proc.log();
    let ca = log.split("--tls-ca ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    let client_dir = PathBuf::from(ca.strip_suffix("/ca.crt").unwrap());
    let extra = free_port();
    let url = format!("https://127.0.0.1:{}", local.stream);
    let mut args = vec!["dns".to_owned(), "--controller".to_owned(), url, "--listen".to_owned()];
    args.push(format!("127.0.0.1:{extra}"));
    args.extend(tls_args(&client_dir));
    let replica = Proc::roster(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for("extra replica synced", &[&local.proc, &replica], || {
        short(extra, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"]
    });
    exercise_workload(&local.kubeconfig, &[local.dns, extra], &[&local.proc, &replica]);

    // The README's StatefulSet: the identity controller creates web-0..2, DNS publishes them, and the
    // controller counts its reconciles.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/local/statefulset-web.yaml"))
            .unwrap();
    kubectl(&local.kubeconfig, &["create", "namespace", "sts"], None);
    kubectl(&local.kubeconfig, &["-n", "sts", "apply", "-f", "-"], Some(&example));
    wait_for("web-0..2 in DNS", &[&local.proc], || {
        (0..3).all(|i| short(local.dns, &format!("web-{i}.nginx.sts.svc.cluster.local"), "A").len() == 1)
    });
    let claims =
        kubectl(&local.kubeconfig, &["-n", "sts", "get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"], None);
    assert_eq!(claims, "www-web-0 www-web-1 www-web-2");
    let (_, metrics) = curl(local.stream, "/metrics", &client_dir, false, 5);
    assert!(
        metrics.contains("roster_controller_reconciles_total{kind=\"statefulsets\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("roster_controller_reconciles_in_flight"), "{metrics}");
}

#[test]
fn a_controller_feeds_two_replicas_through_faults() {
    let local = start_local();
    let creds = Creds::new();
    let controller_port = free_port();
    let controller_url = format!("https://127.0.0.1:{controller_port}");
    let roster = |args: Vec<String>| Proc::roster(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let start_controller = || {
        let mut args: Vec<String> = [
            "controller",
            "--kubeconfig",
            local.kubeconfig.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{controller_port}"),
            "--bookmark-seconds",
            "1",
            // A killed controller's stream Lease expires soon: its successor serves after that.
            "--lease-seconds",
            "2",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(creds.server_args());
        roster(args)
    };
    let replica_args = |port: u16, tls: Vec<String>| {
        let mut args: Vec<String> = ["dns", "--controller", &controller_url, "--listen", &format!("127.0.0.1:{port}")]
            .map(str::to_owned)
            .to_vec();
        args.extend(tls);
        args
    };
    let start_replica = |port: u16| roster(replica_args(port, creds.client_args()));
    let (dns_a, dns_b, metrics_a) = (free_port(), free_port(), free_port());

    // A replica with no controller yet: SERVFAIL for cluster names until its first snapshot.
    let mut args = replica_args(dns_a, creds.client_args());
    args.extend(["--metrics".to_owned(), format!("127.0.0.1:{metrics_a}")]);
    let replica_a = roster(args);
    wait_for("replica a to listen", &[&replica_a], || replica_a.log().contains("serving DNS"));
    assert_eq!(status(dns_a, "kubernetes.default.svc.cluster.local"), "SERVFAIL");
    let controller = start_controller();
    let replica_b = start_replica(dns_b);
    let logs = [&local.proc, &controller, &replica_a, &replica_b];
    wait_for("both replicas synced", &logs, || {
        [dns_a, dns_b].iter().all(|p| short(*p, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"])
    });

    exercise_workload(&local.kubeconfig, &[dns_a, dns_b], &logs);

    // The controller's own health, readiness and metrics (HTTPS; probes need no client certificate).
    assert_eq!(curl(controller_port, "/healthz", &creds.client, false, 5).0, 200);
    assert_eq!(curl(controller_port, "/readyz", &creds.client, false, 5).0, 200);
    let (_, metrics) = curl(controller_port, "/metrics", &creds.client, false, 5);
    assert!(metrics.contains("roster_controller_stream_subscribers 2"), "{metrics}");
    assert!(metrics.contains("roster_controller_watch_restarts_total{kind=\"pods\"}"), "{metrics}");
    assert!(metrics.contains("roster_controller_watch_events_total{kind=\"services\"}"), "{metrics}");
    assert!(metrics.contains("roster_controller_publishes_total"), "{metrics}");
    // The replica measured how long changes took from their trigger to being answerable.
    let replica_metrics = support::process::http_get(metrics_a, "/metrics").unwrap().1;
    let programmed: f64 = replica_metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "coredns_kubernetes_dns_programming_duration_seconds_count{service_kind=\"headless_with_selector\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(programmed > 0.0, "{replica_metrics}");

    // Without a client certificate: refused, and not one record.
    let (code, body) = curl(controller_port, "/v1/records", &creds.client, false, 5);
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("snapshot"), "{body}");
    // A replica that trusts another CA refuses the controller: it applies nothing.
    let other = Creds::new();
    let mut wrong_ca = creds.client_args();
    wrong_ca[1] = other.client.join("ca.crt").display().to_string();
    let dns_wrong = free_port();
    let wrong = roster(replica_args(dns_wrong, wrong_ca));
    wait_for("the wrong-CA replica to reject the controller", &[&wrong], || {
        wrong.log().contains("invalid peer certificate")
    });
    assert_eq!(status(dns_wrong, "kubernetes.default.svc.cluster.local"), "SERVFAIL");
    wrong.kill();

    // The controller dies: replicas keep answering with what they have.
    kubectl(&local.kubeconfig, &["apply", "-f", "-"], Some(WORKLOAD));
    wait_for("workload back", &logs, || {
        [dns_a, dns_b].iter().all(|p| short(*p, "nginx.default.svc.cluster.local", "A").len() == 2)
    });
    controller.kill();
    std::thread::sleep(Duration::from_millis(300));
    for port in [dns_a, dns_b] {
        assert_eq!(short(port, "nginx.default.svc.cluster.local", "A").len(), 2, "serving through the outage");
    }
    // Changes made while it is down arrive once it is back (a new epoch: a fresh snapshot).
    kubectl(&local.kubeconfig, &["delete", "svc", "docs"], None);
    kubectl(
        &local.kubeconfig,
        &["create", "service", "externalname", "wiki", "--external-name", "wiki.example.com"],
        None,
    );
    let controller = start_controller();
    let logs = [&local.proc, &controller, &replica_a, &replica_b];
    wait_for("replicas converge after the controller restart", &logs, || {
        [dns_a, dns_b].iter().all(|p| {
            short(*p, "wiki.default.svc.cluster.local", "CNAME") == ["wiki.example.com."]
                && status(*p, "docs.default.svc.cluster.local") == "NXDOMAIN"
        })
    });

    // A replica restarts: it comes back complete.
    replica_b.kill();
    let replica_b = start_replica(dns_b);
    let logs = [&local.proc, &controller, &replica_a, &replica_b];
    wait_for("restarted replica complete", &logs, || {
        short(dns_b, "wiki.default.svc.cluster.local", "CNAME") == ["wiki.example.com."]
            && short(dns_b, "nginx.default.svc.cluster.local", "A").len() == 2
    });
}
