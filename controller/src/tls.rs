//! Mutual TLS for the record stream: the material (`roster certs`, `roster local`) and the controller's
//! server configuration. One private CA signs a server certificate (controller, `serverAuth`) and a
//! client certificate (DNS replicas, `clientAuth`); each side trusts only that CA, so neither a stranger
//! nor the other side's certificate can take a role it was not issued for.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// PEM text of one end's credentials and the CA that vouches for the other end.
#[derive(Debug, Clone)]
pub struct Pem {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// What `roster certs` and `roster local` hand out: the server's and the client's credentials.
#[derive(Debug, Clone)]
pub struct Material {
    pub server: Pem,
    pub client: Pem,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A new CA, a server certificate for `server_names` (DNS names or IP addresses) and a client
/// certificate, valid for `days`. The CA's key is not kept: rotating means generating anew.
pub fn generate(server_names: &[String], days: u32) -> Result<Material, TlsError> {
    // From a day ago: tolerates clocks a little behind ours.
    let now = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let until = now + time::Duration::days(i64::from(days) + 1);
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "roster record stream CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca_params.not_before, ca_params.not_after) = (now, until);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>, common: &str, usage: ExtendedKeyUsagePurpose| -> Result<Pem, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, common);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        (params.not_before, params.not_after) = (now, until);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pem { ca: ca_pem.clone(), cert: cert.pem(), key: key.serialize_pem() })
    };
    let server = leaf(server_names.to_vec(), "roster-controller", ExtendedKeyUsagePurpose::ServerAuth)?;
    let client = leaf(Vec::new(), "roster-dns", ExtendedKeyUsagePurpose::ClientAuth)?;
    Ok(Material { server, client })
}

/// Reads a PEM file, naming it in the error.
pub fn read_pem(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path)
        .map_err(|e| TlsError::File { path: path.display().to_string(), reason: e.to_string() })
}

/// Certificates and key from PEM text; `what` names the source in errors.
pub fn parse_identity(
    cert: &str,
    key: &str,
    what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File { path: format!("{what} certificate"), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::File { path: format!("{what} certificate"), reason: "no CERTIFICATE block".into() });
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| TlsError::File { path: format!("{what} key"), reason: e.to_string() })?;
    Ok((certs, key))
}

/// A trust store holding the certificates of `ca` (PEM).
pub fn parse_roots(ca: &str, what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::File { path: format!("{what} CA"), reason: e.to_string() })?;
        roots.add(cert).map_err(|e| TlsError::File { path: format!("{what} CA"), reason: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(TlsError::File { path: format!("{what} CA"), reason: "no CERTIFICATE block".into() });
    }
    Ok(roots)
}

/// The controller's TLS: its certificate, and client certificates checked against `pem.ca`.
///
/// A client without a certificate still completes the handshake (kubelet probes `/healthz` and
/// `/readyz` over HTTPS without one); `/v1/records` then answers 403. A client certificate from another
/// CA, or one not issued for `clientAuth`, fails the handshake.
pub fn server_config(pem: &Pem) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = parse_identity(&pem.cert, &pem.key, "--tls-cert/--tls-key")?;
    let roots = Arc::new(parse_roots(&pem.ca, "--tls-ca")?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Pem {
    /// Reads the three files of `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub fn read(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self { ca: read_pem(ca)?, cert: read_pem(cert)?, key: read_pem(key)? })
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (owner-only) into `dir`, as a Secret volume lays them out.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), &self.ca)?;
        std::fs::write(dir.join("tls.crt"), &self.cert)?;
        let key = dir.join("tls.key");
        std::fs::write(&key, &self.key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

/// The Secrets `roster certs` prints: the controller's (server) and the replicas' (client), each with
/// `ca.crt`, `tls.crt`, `tls.key` — replicas never receive the server's key, nor the controller the client's.
pub fn secrets_yaml(material: &Material, namespace: &str, server_secret: &str, client_secret: &str) -> String {
    let secret = |name: &str, component: &str, pem: &Pem| {
        let field = |key: &str, text: &str| {
            let mut out = format!("  {key}: |\n");
            for line in text.lines() {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
            out
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{app.kubernetes.io/name: roster, app.kubernetes.io/component: {component}}}\ntype: kubernetes.io/tls\nstringData:\n{}{}{}",
            field("ca.crt", &pem.ca),
            field("tls.crt", &pem.cert),
            field("tls.key", &pem.key)
        )
    };
    format!(
        "{}---\n{}",
        secret(server_secret, "controller", &material.server),
        secret(client_secret, "dns", &material.client)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_builds_a_server_config_and_yaml() {
        let material = generate(&["roster-controller.kube-system.svc".into(), "127.0.0.1".into()], 30).unwrap();
        server_config(&material.server).unwrap();
        let yaml = secrets_yaml(&material, "kube-system", "roster-stream-server", "roster-stream-client");
        assert_eq!(yaml.matches("kind: Secret").count(), 2);
        assert!(yaml.contains("    -----BEGIN PRIVATE KEY-----"), "{yaml}");
        assert!(matches!(parse_roots("not pem", "x"), Err(TlsError::File { .. })));
    }
}
