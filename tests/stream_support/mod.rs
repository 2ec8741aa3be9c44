//! Record-stream credentials for process tests: `roster certs` output written out as the Secret volumes
//! lay it out, and curl against the stream's HTTPS endpoints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub struct Creds {
    pub server: PathBuf,
    pub client: PathBuf,
    _dir: tempfile::TempDir,
}

impl Creds {
    /// New material from `roster certs`, with a server certificate valid for 127.0.0.1.
    pub fn new() -> Self {
        let output = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["certs", "--server-name", "127.0.0.1", "--server-name", "localhost"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = (dir.path().join("server"), dir.path().join("client"));
        for doc in text.split("\n---\n") {
            let secret: Value = serde_saphyr::from_str(doc).unwrap();
            let target = match secret["metadata"]["name"].as_str().unwrap() {
                "roster-stream-server" => &server,
                "roster-stream-client" => &client,
                other => panic!("unexpected Secret {other}"),
            };
            std::fs::create_dir_all(target).unwrap();
            for file in ["ca.crt", "tls.crt", "tls.key"] {
                std::fs::write(target.join(file), secret["stringData"][file].as_str().unwrap()).unwrap();
            }
        }
        Self { server, client, _dir: dir }
    }

    pub fn server_args(&self) -> Vec<String> {
        tls_args(&self.server)
    }

    pub fn client_args(&self) -> Vec<String> {
        tls_args(&self.client)
    }
}

/// `--tls-ca DIR/ca.crt --tls-cert DIR/tls.crt --tls-key DIR/tls.key`.
pub fn tls_args(dir: &Path) -> Vec<String> {
    ["ca.crt", "tls.crt", "tls.key"]
        .iter()
        .zip(["--tls-ca", "--tls-cert", "--tls-key"])
        .flat_map(|(file, flag)| [flag.to_owned(), dir.join(file).display().to_string()])
        .collect()
}

/// curl `https://127.0.0.1:PORT/PATH` trusting `dir/ca.crt`, with `dir`'s client certificate when
/// `with_cert`; reads for at most `seconds`. (HTTP status, body).
pub fn curl(port: u16, path: &str, dir: &Path, with_cert: bool, seconds: u32) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-m", &seconds.to_string(), "-w", "\n%{http_code}", "--cacert"]).arg(dir.join("ca.crt"));
    if with_cert {
        command.arg("--cert").arg(dir.join("tls.crt")).arg("--key").arg(dir.join("tls.key"));
    }
    let output = command.arg(format!("https://127.0.0.1:{port}{path}")).output().expect("curl is installed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
