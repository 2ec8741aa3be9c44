//! One history across controller failover, and readiness that tells the truth: two `roster controller`
//! processes share a stand-in cluster; only the stream Lease's holder serves, a replica that follows
//! both moves to the successor when the holder dies and only forward in (epoch, generation), and once
//! no controller speaks, the replica reports its records stale (not ready) while still answering.
#![allow(clippy::unwrap_used)]

mod stream_support;
mod support;

use std::path::Path;

use stream_support::{Creds, curl};
use support::process::{Proc, free_port, http_get, kubectl, short, wait_for};

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

fn controller(kubeconfig: &Path, port: u16, creds: &Creds) -> Proc {
    let mut args: Vec<String> = [
        "controller",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--bookmark-seconds",
        "1",
        "--lease-seconds",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(creds.server_args());
    Proc::roster(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_replica_follows_the_lease_holder_forward_and_reports_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let (api, dns, stream) = (free_port(), free_port(), free_port());
    let local = Proc::roster(&[
        "local",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--api",
        &format!("127.0.0.1:{api}"),
        "--dns",
        &format!("127.0.0.1:{dns}"),
        "--stream",
        &format!("127.0.0.1:{stream}"),
    ]);
    wait_for("roster local", &[&local], || local.log().contains("roster local is up"));
    let kubeconfig = dir.path().join("kubeconfig");
    let creds = Creds::new();
    let (port_a, port_b) = (free_port(), free_port());
    let a = controller(&kubeconfig, port_a, &creds);
    let b = controller(&kubeconfig, port_b, &creds);

    let (replica_dns, ready, metrics) = (free_port(), free_port(), free_port());
    let mut args: Vec<String> = vec![
        "dns".into(),
        "--controller".into(),
        format!("https://127.0.0.1:{port_a},https://127.0.0.1:{port_b}"),
        "--listen".into(),
        format!("127.0.0.1:{replica_dns}"),
        "--health".into(),
        format!("127.0.0.1:{ready}"),
        "--ready".into(),
        format!("127.0.0.1:{ready}"),
        "--metrics".into(),
        format!("127.0.0.1:{metrics}"),
        "--max-staleness-seconds".into(),
        "3".into(),
    ];
    args.extend(creds.client_args());
    let replica = Proc::roster(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let logs = [&local, &a, &b, &replica];
    wait_for("the replica synced", &logs, || {
        short(replica_dns, "kubernetes.default.svc.cluster.local", "A") == ["10.96.0.1"]
    });

    // Exactly one controller serves the stream; the other is a ready standby that refuses it.
    let records = |port| curl(port, "/v1/records", &creds.client, true, 2);
    let (code_a, code_b) = (records(port_a).0, records(port_b).0);
    assert_eq!([code_a.min(code_b), code_a.max(code_b)], [200, 503], "a: {code_a}, b: {code_b}");
    assert_eq!(curl(port_a, "/readyz", &creds.client, false, 5).0, 200);
    assert_eq!(curl(port_b, "/readyz", &creds.client, false, 5).0, 200);
    let (leader, standby, standby_port) = if code_a == 200 { (a, b, port_b) } else { (b, a, port_a) };
    let replica_metrics = || http_get(metrics, "/metrics").unwrap().1;
    let first_epoch = gauge(&replica_metrics(), "roster_dns_stream_epoch").unwrap();

    // The holder dies without releasing the Lease; a change is made; the standby takes over after the
    // Lease expires, under a later epoch, and the replica follows it there.
    leader.kill();
    kubectl(&kubeconfig, &["create", "service", "externalname", "after", "--external-name", "after.example.com"], None);
    let logs = [&local, &standby, &replica];
    wait_for("the replica to follow the successor", &logs, || {
        short(replica_dns, "after.default.svc.cluster.local", "CNAME") == ["after.example.com."]
    });
    assert_eq!(records(standby_port).0, 200);
    let second_epoch = gauge(&replica_metrics(), "roster_dns_stream_epoch").unwrap();
    assert!(second_epoch > first_epoch, "{second_epoch} after {first_epoch}");
    assert_eq!(http_get(ready, "/ready").unwrap().0, "HTTP/1.0 200 OK");

    // No controller at all: the records age, readiness says so; DNS keeps answering; the process lives.
    standby.kill();
    wait_for("the replica to report stale records", &[&replica], || {
        http_get(ready, "/ready").is_some_and(|(status, body)| status.contains("503") && body.contains("stale"))
    });
    assert!(gauge(&replica_metrics(), "roster_dns_stream_staleness_seconds").unwrap() > 3.0);
    assert_eq!(short(replica_dns, "after.default.svc.cluster.local", "CNAME"), ["after.example.com."]);
    assert_eq!(http_get(ready, "/health").unwrap().0, "HTTP/1.0 200 OK");
}
