//! Stand-in fidelity: the seeds' kubectl walkthrough of the `web` StatefulSet, run word for word against
//! the stand-in (`roster local`) and against the real control plane with the upstream StatefulSet
//! controller; outputs normalised (ages, UIDs, IPs, volume and node names, resourceVersions, column
//! widths) and compared line by line. The scenario scripts' traces are compared in real_identity.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use real_support::RealCluster;
use support::process::{Proc, free_port};

const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/local/statefulset-web.yaml");

/// One step of the walkthrough: kubectl arguments, and what must hold before its output is taken.
struct Step {
    args: Vec<String>,
    /// Poll (up to 90 s) until this kubectl jsonpath query prints this value, before running `args`.
    wait: Option<(&'static str, &'static str)>,
}

fn step(args: &str) -> Step {
    Step { args: shell_words(args), wait: None }
}

fn after(query: &'static str, value: &'static str, args: &str) -> Step {
    Step { args: shell_words(args), wait: Some((query, value)) }
}

/// Splits on spaces, keeping single-quoted words whole (enough for these commands).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

const READY3: (&str, &str) = ("{.status.readyReplicas}/{.status.updatedReplicas}/{.status.replicas}", "3/3/3");
const READY5: (&str, &str) = ("{.status.readyReplicas}/{.status.updatedReplicas}/{.status.replicas}", "5/5/5");

fn walkthrough() -> Vec<Step> {
    let images = "get pods -l app=nginx -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}{.spec.containers[0].image}{\"\\n\"}{end}'";
    vec![
        step(&format!("apply -f {WEB}")),
        after(READY3.0, READY3.1, "get statefulset web"),
        step("get pods -l app=nginx"),
        step("get pvc -l app=nginx"),
        step("get service nginx"),
        step("get pods -o custom-columns=Name:metadata.name,Image:spec.containers[0].image"),
        step("scale sts web --replicas=5"),
        after(READY5.0, READY5.1, "get pods -l app=nginx"),
        step("get pvc -l app=nginx"),
        step("patch sts web -p '{\"spec\":{\"replicas\":3}}'"),
        after(READY3.0, READY3.1, "get pods -l app=nginx"),
        step(
            "patch statefulset web -p '{\"spec\":{\"updateStrategy\":{\"type\":\"RollingUpdate\",\"rollingUpdate\":{\"partition\":3}}}}'",
        ),
        step(
            "patch statefulset web --type=json -p '[{\"op\":\"replace\",\"path\":\"/spec/template/spec/containers/0/image\",\"value\":\"registry.k8s.io/nginx-slim:0.7\"}]'",
        ),
        after(READY3.0, "3/0/3", "get po web-2 --template '{{range $i, $c := .spec.containers}}{{$c.image}}{{end}}'"),
        step("delete pod web-2"),
        after("{.status.readyReplicas}/{.status.updatedReplicas}", "3/1", images),
        step(
            "patch statefulset web -p '{\"spec\":{\"updateStrategy\":{\"type\":\"RollingUpdate\",\"rollingUpdate\":{\"partition\":0}}}}'",
        ),
        after(READY3.0, READY3.1, images),
        step("rollout history statefulset/web"),
        step("rollout undo statefulset/web"),
        after(READY3.0, READY3.1, images),
        step(
            "get statefulset web -o jsonpath={.status.currentReplicas}/{.status.updatedReplicas}/{.status.availableReplicas}",
        ),
        step("delete statefulset web"),
        step("get pvc -l app=nginx"),
    ]
}

fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[String]) -> (bool, String) {
    let output = std::process::Command::new(kubectl).args(args).env("KUBECONFIG", kubeconfig).output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Runs the walkthrough; one normalised block of output per step.
fn run(kubectl_bin: &Path, kubeconfig: &Path) -> Vec<String> {
    let mut outputs = Vec::new();
    for s in walkthrough() {
        if let Some((query, value)) = s.wait {
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            let args: Vec<String> = ["get", "statefulset", "web", "-o"]
                .iter()
                .map(|a| a.to_string())
                .chain([format!("jsonpath={query}")])
                .collect();
            while kubectl(kubectl_bin, kubeconfig, &args).1.trim() != value && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(250));
            }
            // The controller's last status write and the pods' last transitions settle.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let (ok, text) = kubectl(kubectl_bin, kubeconfig, &s.args);
        outputs.push(format!(
            "$ kubectl {}\n[{}]\n{}",
            s.args.join(" "),
            if ok { "ok" } else { "failed" },
            normalise(&text)
        ));
    }
    outputs
}

/// Replaces what differs between any two clusters (ages, names generated at random, addresses, node
/// names) and collapses column padding.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|word| {
                    let bare = word.trim_matches(|c: char| c == ',' || c == '"');
                    if is_age(bare) {
                        "AGE".to_owned()
                    } else if bare.starts_with("pvc-") {
                        "VOLUME".to_owned()
                    } else if bare.parse::<std::net::IpAddr>().is_ok() || bare.contains("10.244.") {
                        "IP".to_owned()
                    } else if bare.starts_with("kwok-node-") || bare.starts_with("sim-node-") {
                        "NODE".to_owned()
                    } else if bare.starts_with("web-")
                        && bare.len() > 8
                        && !bare[4..].chars().all(|c| c.is_ascii_digit())
                    {
                        // a revision name (web-<hash>) as printed by kubectl
                        "REVISION".to_owned()
                    } else {
                        word.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_age(word: &str) -> bool {
    !word.is_empty()
        && word.chars().next().is_some_and(|c| c.is_ascii_digit())
        && word.chars().all(|c| c.is_ascii_digit() || "smhd".contains(c))
        && word.chars().any(|c| "smhd".contains(c))
}

/// Differences between the stand-in and the real cluster listed in docs/identity-divergences.md
/// ("Stand-in fidelity" table: the kubectl command and why).
fn deliberate(command: &str) -> bool {
    let path = PathBuf::from(real_support::ROOT).join("docs/identity-divergences.md");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some(section) = text.split("## Stand-in fidelity").nth(1) else { return false };
    section.lines().filter_map(|l| l.split('|').nth(1)).any(|cell| {
        let cell = cell.trim().trim_matches('`');
        !cell.is_empty() && command.ends_with(cell)
    })
}

#[test]
fn the_seed_walkthrough_prints_the_same_on_the_stand_in_and_a_real_cluster() {
    let real = RealCluster::up(&[]);
    let kubectl_bin = real.bin.join("kubectl");
    let dir = tempfile::tempdir().unwrap();
    let stand_in = Proc::roster(&[
        "local",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--api",
        &format!("127.0.0.1:{}", free_port()),
        "--dns",
        &format!("127.0.0.1:{}", free_port()),
        "--stream",
        &format!("127.0.0.1:{}", free_port()),
        "--pod-ready-ms",
        "200",
    ]);
    real.eventually("the stand-in", Duration::from_secs(60), || {
        stand_in.log().contains("roster local is up").then_some(())
    });
    let (upstream, sim) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&kubectl_bin, &real.kubeconfig));
        let b = scope.spawn(|| run(&kubectl_bin, &dir.path().join("kubeconfig")));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut differences = Vec::new();
    for (a, b) in upstream.iter().zip(&sim) {
        let command = a.lines().next().unwrap_or_default();
        if a != b && !deliberate(command) {
            differences.push(format!("--- real cluster\n{a}\n--- stand-in\n{b}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} steps differ:\n{}",
        differences.len(),
        upstream.len(),
        differences.join("\n\n")
    );
}
