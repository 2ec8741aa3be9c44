//! The `roster` binary end to end: `roster dns --objects` driven with dig, reloads, bad input, bad flags.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::process::{self, Proc, free_port, http_get};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples");

/// A running `roster dns` on its own port.
struct Roster {
    proc: Proc,
    port: u16,
}

fn start(objects: &Path, extra: &[&str]) -> Roster {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["dns", "--objects", objects.to_str().unwrap(), "--listen", &listen, "--reload-ms", "100"];
    args.extend_from_slice(extra);
    let roster = Roster { proc: Proc::roster(&args), port };
    roster.wait_for(|r| r.dig(&["dns-version.cluster.local", "TXT", "+short"]).contains("1.1.0"));
    roster
}

impl Roster {
    fn dig(&self, args: &[&str]) -> String {
        process::dig(self.port, args)
    }

    fn log(&self) -> String {
        self.proc.log()
    }

    fn wait_for(&self, done: impl Fn(&Self) -> bool) {
        process::wait_for("roster", &[&self.proc], || done(self));
    }
}

fn short(text: &str) -> Vec<String> {
    process::sorted_lines(text)
}

#[test]
fn dig_answers_the_example_workloads() {
    let roster = start(Path::new(EXAMPLES), &[]);
    assert_eq!(short(&roster.dig(&["web-demo-0.nginx-demo.demo.svc.cluster.local", "+short"])), ["10.244.1.10"]);
    assert_eq!(
        short(&roster.dig(&["nginx-demo.demo.svc.cluster.local", "+short"])),
        ["10.244.1.10", "10.244.1.12", "10.244.2.11"]
    );
    assert_eq!(short(&roster.dig(&["myapp-0.myapp-svc.default.svc.cluster.local", "+short", "+tcp"])), ["10.244.1.20"]);
    assert_eq!(
        short(&roster.dig(&["_web._tcp.myapp-svc.default.svc.cluster.local", "SRV", "+short"])),
        [
            "0 33 80 myapp-0.myapp-svc.default.svc.cluster.local.",
            "0 33 80 myapp-1.myapp-svc.default.svc.cluster.local.",
            "0 33 80 myapp-2.myapp-svc.default.svc.cluster.local.",
        ]
    );
    assert_eq!(short(&roster.dig(&["-x", "10.244.2.21", "+short"])), ["myapp-1.myapp-svc.default.svc.cluster.local."]);
    assert_eq!(short(&roster.dig(&["search.default.svc.cluster.local", "CNAME", "+short"])), ["search.example.com."]);
    let full = roster.dig(&["web-demo-9.nginx-demo.demo.svc.cluster.local"]);
    assert!(full.contains("status: NXDOMAIN"), "{full}");
    assert!(full.contains("flags: qr aa"), "{full}");
    assert!(full.contains("IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."), "{full}");
    let nodata = roster.dig(&["demo.svc.cluster.local"]);
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"), "{nodata}");
}

#[test]
fn file_changes_are_applied_and_bad_files_keep_the_last_good_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(EXAMPLES).join("web-demo.yaml"), dir.path().join("web-demo.yaml")).unwrap();
    let roster = start(dir.path(), &[]);
    assert_eq!(short(&roster.dig(&["web-demo-1.nginx-demo.demo.svc.cluster.local", "+short"])), ["10.244.2.11"]);

    // A new file appears: its records are served.
    std::fs::copy(Path::new(EXAMPLES).join("myapp.yaml"), dir.path().join("myapp.yaml")).unwrap();
    roster.wait_for(|r| r.dig(&["myapp-2.myapp-svc.default.svc.cluster.local", "+short"]).contains("10.244.1.22"));

    // A pod moves: the name follows.
    let moved =
        std::fs::read_to_string(dir.path().join("web-demo.yaml")).unwrap().replace("10.244.2.11", "10.244.3.99");
    std::fs::write(dir.path().join("web-demo.yaml"), moved).unwrap();
    roster.wait_for(|r| r.dig(&["web-demo-1.nginx-demo.demo.svc.cluster.local", "+short"]).contains("10.244.3.99"));

    // A broken edit: reported with file and document, nothing is lost.
    let broken = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x\n";
    std::fs::write(dir.path().join("myapp.yaml"), broken).unwrap();
    roster.wait_for(|r| r.log().contains("manifest rejected"));
    let log = roster.log();
    assert!(log.contains("myapp.yaml") && log.contains("document=2"), "{log}");
    assert_eq!(short(&roster.dig(&["myapp-2.myapp-svc.default.svc.cluster.local", "+short"])), ["10.244.1.22"]);

    // An object that parses but is invalid is rejected the same way.
    let invalid =
        "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name, namespace: demo}\nspec: {clusterIP: 10.96.9.9}\n";
    std::fs::write(dir.path().join("myapp.yaml"), invalid).unwrap();
    roster.wait_for(|r| r.log().contains("Bad_Name"));
    assert_eq!(short(&roster.dig(&["myapp-2.myapp-svc.default.svc.cluster.local", "+short"])), ["10.244.1.22"]);

    // The file goes away: its records go too.
    std::fs::remove_file(dir.path().join("myapp.yaml")).unwrap();
    roster.wait_for(|r| r.dig(&["myapp-2.myapp-svc.default.svc.cluster.local"]).contains("NXDOMAIN"));
    assert_eq!(short(&roster.dig(&["web-demo-1.nginx-demo.demo.svc.cluster.local", "+short"])), ["10.244.3.99"]);
}

/// `--udp-workers 3`: three UDP threads (named `roster-udp-N`), each answering on the one port.
#[test]
fn udp_workers_flag_sets_the_serving_threads() {
    let roster = start(Path::new(EXAMPLES), &["--udp-workers", "3"]);
    // dig takes a new source port each time, so the kernel's hash spreads these over the sockets.
    for _ in 0..8 {
        assert_eq!(short(&roster.dig(&["web-demo-0.nginx-demo.demo.svc.cluster.local", "+short"])), ["10.244.1.10"]);
    }
    let tasks = std::fs::read_dir(format!("/proc/{}/task", roster.proc.child.id())).unwrap();
    let mut names: Vec<String> = tasks
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("roster-udp"))
        .collect();
    names.sort();
    assert_eq!(names, ["roster-udp-0", "roster-udp-1", "roster-udp-2"]);
    assert!(roster.log().contains("udp_workers=3"), "{}", roster.log());
}

#[test]
fn bad_flags_are_rejected_with_a_clear_message() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_roster")).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&["dns"]).contains("--objects"));
    assert!(run(&["dns", "--objects", EXAMPLES, "--listen", "nowhere"]).contains("--listen"));
    assert!(run(&["dns", "--objects", EXAMPLES, "--pods", "sometimes"]).contains("--pods"));
    assert!(run(&["dns", "--objects", EXAMPLES, "--ttl", "abc"]).contains("--ttl"));
    assert!(run(&["dns", "--objects", EXAMPLES, "--zone", "bad..zone"]).contains("bad..zone"));
    assert!(run(&["dns", "--objects", "/no/such/path"]).contains("/no/such/path"));
    assert!(run(&["dns", "--objects", EXAMPLES, "--udp-workers", "0"]).contains("--udp-workers"));
    assert!(run(&["local", "--udp-workers", "257"]).contains("--udp-workers"));
    let autopath = run(&["dns", "--objects", EXAMPLES, "--autopath", "--resolv-conf", "/no/such/resolv.conf"]);
    assert!(autopath.contains("--autopath") && autopath.contains("/no/such/resolv.conf"), "{autopath}");
    let env = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["dns", "--objects", EXAMPLES])
        .env("ROSTER_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&env.stderr).contains("--listen"));
}

#[test]
fn environment_variables_configure_every_flag() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("dns")
        .env("ROSTER_OBJECTS", EXAMPLES)
        .env("ROSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROSTER_ZONE", "corp.example")
        .env("ROSTER_TTL", "7")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut answer = String::new();
    while Instant::now() < deadline && !answer.contains("10.244.1.10") {
        let output = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+time=1", "+noall", "+answer"])
            .arg("web-demo-0.nginx-demo.demo.svc.corp.example")
            .output()
            .unwrap();
        answer = String::from_utf8_lossy(&output.stdout).into_owned();
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(fields, ["web-demo-0.nginx-demo.demo.svc.corp.example.", "7", "IN", "A", "10.244.1.10"], "{answer}");
}

#[test]
fn probes_metrics_and_lameduck() {
    let (health, ready, metrics) = (free_port(), free_port(), free_port());
    let mut roster = start(
        Path::new(EXAMPLES),
        &[
            "--health",
            &format!("127.0.0.1:{health}"),
            "--ready",
            &format!("127.0.0.1:{ready}"),
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
            "--lameduck-ms",
            "1500",
        ],
    );
    assert!(http_get(health, "/health").unwrap().0.contains("200"));
    assert!(http_get(ready, "/ready").unwrap().0.contains("200"));
    roster.dig(&["web-demo-0.nginx-demo.demo.svc.cluster.local", "+short"]);
    let (_, text) = http_get(metrics, "/metrics").unwrap();
    assert!(text.contains("coredns_dns_requests_total{server=\"dns://127.0.0.1:"), "{text}");
    assert!(text.contains("coredns_build_info"), "{text}");

    // SIGTERM: not ready at once, still alive and answering during the lameduck, then gone.
    let pid = roster.proc.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    roster.wait_for(|_| http_get(ready, "/ready").is_some_and(|(status, _)| status.contains("503")));
    assert!(http_get(health, "/health").unwrap().0.contains("200"), "health stays 200 in lameduck");
    assert_eq!(short(&roster.dig(&["web-demo-0.nginx-demo.demo.svc.cluster.local", "+short"])), ["10.244.1.10"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = roster.proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "roster did not stop after the lameduck");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_forwarding_loop_fails_loudly() {
    // Forward to ourselves: the loop probe comes back and roster exits with a clear error.
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["dns", "--objects", EXAMPLES, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("forwarding loop detected"), "{stderr}");
}
