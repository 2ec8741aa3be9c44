//! Pods you can exec into on `roster local`: the seeds' own DNS checks, typed as users type them —
//! `kubectl exec web-0 -- nslookup web-1.nginx`, `kubectl run -i --rm dns-test --image=busybox:1.28
//! --restart=Never -- nslookup web-0.nginx`, and `kubectl run -it --rm --image busybox:1.28 dns-test`
//! with a shell on a terminal (under `script`). The commands are the host's, run in a network namespace
//! made for the pod (its IP, the kubelet's resolv.conf, roster's DNS at 10.96.0.10:53). kubectl speaks
//! the WebSocket remotecommand protocol (v5.channel.k8s.io): exit codes, stdin and its end, the TTY.
//! Needs root and iproute2; a second test runs `roster local` as nobody and expects a clear refusal.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::process::{Proc, ROSTER, free_port, wait_for};

/// A command's exit code, stdout and stderr; killed (by its PID) after `limit`.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// What the command reads: `text`, then end-of-file when `close`, else a stdin held open until the
/// command ends (as a person's terminal is).
struct Input<'a> {
    text: &'a str,
    close: bool,
}

fn run(program: &str, args: &[&str], kubeconfig: &Path, stdin: Input<'_>, limit: Duration) -> Outcome {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.text.as_bytes()).unwrap();
    let input = (!stdin.close).then_some(input);
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(input);
    let outcome =
        Outcome { code: status.and_then(|s| s.code()), stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    assert!(status.is_some(), "{program} {args:?} still running after {limit:?}: {}{}", outcome.stdout, outcome.stderr);
    outcome
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Input<'_>) -> Outcome {
    run("kubectl", args, kubeconfig, stdin, Duration::from_secs(60))
}

const HELD_OPEN: Input<'static> = Input { text: "", close: false };

/// `roster local` on free loopback ports; on drop it is killed and whatever network namespaces its
/// PID named are removed, so a failing test leaves nothing behind.
struct Local {
    proc: Option<Proc>,
    pid: u32,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Local {
    fn start(as_nobody: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = |p: u16| format!("127.0.0.1:{p}");
        let (api, dns, stream) = (port(free_port()), port(free_port()), port(free_port()));
        let mut args = vec![
            "local",
            "--data-dir",
            data.to_str().unwrap(),
            "--api",
            &api,
            "--dns",
            &dns,
            "--stream",
            &stream,
            "--pod-ready-ms",
            "200",
        ];
        let own_binary = dir.path().join("roster");
        let proc = if as_nobody {
            // nobody must be able to write the data directory, and to reach the binary (the checkout
            // may sit under a directory only root enters): a link to it (a copy across filesystems)
            std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
            if std::fs::hard_link(ROSTER, &own_binary).is_err() {
                std::fs::copy(ROSTER, &own_binary).unwrap();
            }
            let mut full = vec!["--reuid=65534", "--regid=65534", "--clear-groups", own_binary.to_str().unwrap()];
            full.append(&mut args);
            Proc::spawn("setpriv", &full)
        } else {
            Proc::spawn(ROSTER, &args)
        };
        let pid = proc.child.id();
        wait_for("roster local", &[&proc], || proc.log().contains("roster local is up"));
        Self { proc: Some(proc), pid, kubeconfig: data.join("kubeconfig"), _dir: dir }
    }

    fn kubectl(&self, args: &[&str]) -> Outcome {
        kubectl(&self.kubeconfig, args, HELD_OPEN)
    }

    /// kubectl that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_eq!(out.code, Some(0), "kubectl {args:?}: {}{}\n{}", out.stdout, out.stderr, self.log());
        out.stdout
    }

    fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    fn proc(&self) -> &Proc {
        self.proc.as_ref().unwrap()
    }

    /// This run's network namespaces, sorted.
    fn namespaces(&self) -> Vec<String> {
        let prefix = format!("roster-{}-", self.pid);
        let mut names: Vec<String> = std::fs::read_dir("/var/run/netns")
            .map(|dir| dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|name| name.starts_with(&prefix));
        names.sort();
        names
    }

    /// This run's UTS namespace files (the pods' hostnames).
    fn uts_files(&self) -> Vec<String> {
        let prefix = format!("roster-{}-", self.pid);
        std::fs::read_dir("/run/roster-uts")
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops roster local as Ctrl-C would (SIGTERM to its PID) and waits for it to exit.
    fn stop(&mut self) {
        let mut proc = self.proc.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while proc.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "roster local did not stop on SIGTERM:\n{}", proc.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill();
        }
        for name in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
        for name in self.uts_files() {
            let _ = Command::new("umount").arg(&name).status();
            let _ = std::fs::remove_file(&name);
        }
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn pod_ip(local: &Local, pod: &str) -> String {
    local.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

#[test]
fn seed_dns_checks_run_inside_pods() {
    assert!(is_root(), "this test makes network namespaces: run it as root (scripts/test.sh does)");
    let mut local = Local::start(false);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/local/statefulset-web.yaml");
    local.ok(&["apply", "-f", manifest]);
    let ready = |pod: &str| {
        let out =
            local.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        out.code == Some(0) && out.stdout == "True"
    };
    wait_for("web-0, web-1 and web-2 Ready", &[local.proc()], || ready("web-0") && ready("web-1") && ready("web-2"));
    let (web0, web1, web2) = (pod_ip(&local, "web-0"), pod_ip(&local, "web-1"), pod_ip(&local, "web-2"));

    // The seed's check from inside a pod: the search list completes the short name.
    let out = local.kubectl(&["exec", "web-0", "--", "nslookup", "web-1.nginx"]);
    assert_eq!(out.code, Some(0), "{}{}\n{}", out.stdout, out.stderr, local.log());
    assert!(out.stdout.contains("Server:\t\t10.96.0.10"), "{}", out.stdout);
    assert!(out.stdout.contains("Name:\tweb-1.nginx.default.svc.cluster.local"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("Address: {web1}")), "{}", out.stdout);

    // The pod's own network: its IP on eth0, the kubelet's resolv.conf, glibc and dig resolving.
    let addr = local.ok(&["exec", "web-0", "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {web0}/16")), "{addr}");
    let resolv = local.ok(&["exec", "web-0", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let hosts = local.ok(&["exec", "web-0", "--", "getent", "hosts", "web-2.nginx"]);
    assert!(hosts.starts_with(&web2), "{hosts}");
    let dig = local.ok(&["exec", "web-0", "--", "dig", "+search", "+short", "web-1.nginx"]);
    assert_eq!(dig.trim(), web1);

    // The seed's hostname loop: each pod answers with its own name.
    for pod in ["web-0", "web-1"] {
        assert_eq!(local.ok(&["exec", pod, "--", "sh", "-c", "hostname"]), format!("{pod}\n"));
    }

    // The command's exit code is kubectl's.
    let out = local.kubectl(&["exec", "web-0", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("command terminated with exit code 3"), "{}", out.stderr);
    // stdin goes through, and its end ends `cat` (v5's close signal).
    let text = "hello from stdin\nsecond line\n";
    let out = kubectl(&local.kubeconfig, &["exec", "-i", "web-0", "--", "cat"], Input { text, close: true });
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), text), "{}", out.stderr);
    // stderr is its own channel.
    let out = local.kubectl(&["exec", "web-0", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"));

    // kubectl run -i --rm: creates the pod, waits for it, attaches, reads the exit code, deletes it.
    let out = local.kubectl(&[
        "run",
        "-i",
        "--rm",
        "dns-test",
        "--image=busybox:1.28",
        "--restart=Never",
        "--",
        "nslookup",
        "web-0.nginx",
    ]);
    assert_eq!(out.code, Some(0), "{}{}\n{}", out.stdout, out.stderr, local.log());
    assert!(out.stdout.contains("Name:\tweb-0.nginx.default.svc.cluster.local"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("Address: {web0}")), "{}", out.stdout);
    assert!(out.stdout.contains("pod \"dns-test\" deleted"), "{}", out.stdout);

    // --rm deletes gracefully (the pod is Terminating for a moment, as on a real cluster): the next
    // run of the same name waits for it to be gone.
    wait_for("dns-test deleted", &[local.proc()], || {
        local.kubectl(&["get", "pod", "dns-test"]).stderr.contains("NotFound")
    });

    // The seed's own command on a terminal: a shell (busybox's default command), typed into.
    let typed = "nslookup web-1.nginx\nexit\n";
    let out = run(
        "script",
        &["-qec", "kubectl run -it --rm --image busybox:1.28 dns-test", "/dev/null"],
        &local.kubeconfig,
        Input { text: typed, close: false },
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(0), "{}{}\n{}", out.stdout, out.stderr, local.log());
    assert!(out.stdout.contains("web-1.nginx.default.svc.cluster.local"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("Address: {web1}")), "{}", out.stdout);
    // A terminal starts at the client's size (kubectl's first resize message).
    let out = run(
        "script",
        &["-qec", "stty rows 30 cols 100; kubectl exec -it web-0 -- stty size", "/dev/null"],
        &local.kubeconfig,
        HELD_OPEN,
        Duration::from_secs(60),
    );
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "30 100"), "{}", out.stderr);
    // A terminal's shell that fails: `kubectl run` exits with its code (read from the pod's status).
    let out = run(
        "script",
        &["-qec", "kubectl run -it --rm dns-test-2 --image=busybox:1.28 --restart=Never -- sh", "/dev/null"],
        &local.kubeconfig,
        Input { text: "exit 4\n", close: false },
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(4), "{}{}\n{}", out.stdout, out.stderr, local.log());

    // A deleted pod's namespace goes; those of web-0 and web-1 (the first made) stay while they do.
    let pid = local.pid;
    let expected = ["node", "pod1", "pod2"].map(|name| format!("roster-{pid}-0-{name}"));
    wait_for("the run pods' namespaces removed", &[local.proc()], || {
        local.namespaces() == expected && local.uts_files().len() == 2
    });
    // A container the pod does not have is refused before any process starts.
    let out = local.kubectl(&["exec", "web-0", "-c", "sidecar", "--", "true"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("container sidecar is not valid for pod web-0"), "{}", out.stderr);

    // Stopping roster local removes every namespace it made.
    local.stop();
    assert_eq!(local.namespaces(), Vec::<String>::new());
    assert_eq!(local.uts_files(), Vec::<String>::new());
    assert!(!Path::new(&format!("/etc/netns/roster-{pid}-0-pod1")).exists());
}

#[test]
fn exec_without_root_is_refused_clearly() {
    assert!(is_root(), "this test switches to nobody with setpriv: run it as root");
    let local = Local::start(true);
    local.ok(&["run", "web", "--image=nginx"]);
    wait_for("pod web Running", &[local.proc()], || {
        local.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]).stdout == "Running"
    });
    let out = local.kubectl(&["exec", "web", "--", "nslookup", "kubernetes"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("needs root: run `roster local` as root (sudo) to use kubectl exec, attach and run -it"),
        "{}",
        out.stderr
    );
    assert_eq!(local.namespaces(), Vec::<String>::new());
    // …and the stand-in keeps serving.
    local.ok(&["get", "pod", "web"]);
}
