//! The kubeconfig written for clients: plain HTTP to the loopback API, no credentials.

use std::net::SocketAddr;
use std::path::Path;

/// The kubeconfig text for an API at `addr`.
pub fn render(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: roster-local
  cluster:
    server: http://{addr}
contexts:
- name: roster-local
  context:
    cluster: roster-local
    user: roster-local
    namespace: default
current-context: roster-local
users:
- name: roster-local
  user: {{}}
preferences: {{}}
"
    )
}

/// Write the kubeconfig atomically.
pub fn write(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(addr))?;
    std::fs::rename(&tmp, path)
}
