//! The DNS server as the kind manifests run it: a non-root user whose only capability is
//! NET_BIND_SERVICE, on a read-only root filesystem, binding port 53. Modelled with `unshare` (a private
//! mount namespace with `/` remounted read-only) and `setpriv` (uid 65534, capability sets reduced to
//! NET_BIND_SERVICE, or to nothing for the negative control). Needs root to set this up.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples");

fn confined(caps: &str, listen: &str) -> Command {
    let script = format!(
        "mount --bind / / && mount -o remount,bind,ro / && exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         --inh-caps={caps} --ambient-caps={caps} --bounding-set={caps} -- {} dns --objects {EXAMPLES} --listen {listen}",
        env!("CARGO_BIN_EXE_roster")
    );
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]).env("ROSTER_LOG", "info");
    command
}

/// A loopback address of this test run's own, so that parallel tests and runs do not collide on :53.
fn address(offset: u32) -> String {
    format!("127.0.{}.{}", std::process::id() % 200 + 20, std::process::id() % 250 + 2 + offset)
}

#[test]
fn binds_53_as_non_root_with_only_net_bind_service_on_a_read_only_root() {
    let listen = format!("{}:53", address(0));
    let mut child =
        confined("-all,+net_bind_service", &listen).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let ip = listen.trim_end_matches(":53").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = String::new();
    while Instant::now() < deadline && answer.trim() != "10.244.1.10" {
        let output = Command::new("dig")
            .args([&format!("@{ip}"), "+time=1", "+tries=1", "+short", "web-demo-0.nginx-demo.demo.svc.cluster.local"])
            .output()
            .unwrap();
        answer = String::from_utf8_lossy(&output.stdout).into_owned();
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert_eq!(answer.trim(), "10.244.1.10", "stderr: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn without_the_capability_the_bind_fails_with_a_clear_error() {
    let listen = format!("{}:53", address(1));
    let output = confined("-all", &listen).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot bind UDP {listen}")) && stderr.contains("Permission denied"), "{stderr}");
}
