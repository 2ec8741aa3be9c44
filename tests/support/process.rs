//! Processes under test: spawn (killed on drop, output collected), wait, and talk to them with the
//! clients users use (dig, kubectl, plain HTTP).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

/// A child process, killed (through its handle, by PID) on drop; stdout and stderr are collected.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("ROSTER_LOG", "info,hickory_server=warn,kube=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let pipes: Vec<Box<dyn Read + Send>> =
            vec![Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for pipe in pipes {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self { child, log }
    }

    /// `roster ARGS`.
    pub fn roster(args: &[&str]) -> Self {
        Self::spawn(ROSTER, args)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP, from `scripts/cluster.sh ports`: below the kernel's
/// ephemeral range, so no outgoing connection (the real control plane makes many) takes it before its
/// server binds, and claimed where the script claims the control plane's ports, so tests and clusters
/// running side by side never share one.
pub fn free_port() -> u16 {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
        .args(["ports", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("scripts/cluster.sh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("cluster.sh ports: `{text}` {}", String::from_utf8_lossy(&out.stderr)))
}

/// Polls `done` for up to 30 s; on timeout, fails with the logs of `procs`.
pub fn wait_for(what: &str, procs: &[&Proc], done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs: Vec<String> = procs.iter().map(|p| p.log()).collect();
    panic!("timed out waiting for {what}; logs:\n{}", logs.join("\n-----\n"));
}

/// A plain HTTP/1.0 GET on loopback: (status line, body); `None` when nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some((head.lines().next().unwrap_or_default().to_owned(), body.to_owned()))
}

/// `dig @127.0.0.1 -p PORT ARGS`, one try of one second.
pub fn dig(port: u16, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=1", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (scripts/test.sh installs dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `dig +short` lines, sorted.
pub fn short(port: u16, name: &str, rtype: &str) -> Vec<String> {
    sorted_lines(&dig(port, &[name, rtype, "+short"]))
}

pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> =
        text.lines().filter(|l| !l.is_empty() && !l.starts_with(";;")).map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The rcode dig reports (`NOERROR`, `NXDOMAIN`, …), or `no answer`.
pub fn status(port: u16, name: &str) -> String {
    let text = dig(port, &[name]);
    text.split("status: ").nth(1).and_then(|rest| rest.split(',').next()).unwrap_or("no answer").to_owned()
}

/// kubectl with `kubeconfig`, optionally fed `stdin`; fails the test when kubectl fails.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run_kubectl(Path::new("kubectl"), kubeconfig, args, stdin);
    assert!(out.ok, "kubectl {args:?} failed: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// The output of one command.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `kubectl` (the binary at `bin`) with `kubeconfig`, optionally fed `stdin`.
pub fn run_kubectl(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        // Discovery and OpenAPI caches beside the kubeconfig: a later cluster on a reused port must not see
        // an earlier one's resources.
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs (scripts/test.sh installs kubectl): {e}", bin.display()));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    Out {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
