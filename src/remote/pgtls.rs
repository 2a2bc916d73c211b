//! TLS for the PostgreSQL mirror (`[remote.postgres] tls = "verify-full"`): the rustls client
//! configuration, trusting `ca_file` (PEM) or else the system's CA store. The server's
//! certificate chain and host name are always verified; there is deliberately no mode that
//! encrypts without checking who answers. Never opens a connection itself.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `ca_file`, or for the system's CA store when it is `None`. The error is a
/// sentence for the operator.
pub fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display();
            let bytes = std::fs::read(path)
                .map_err(|e| format!("remote.postgres.ca_file {shown}: cannot read it: {e}"))?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| {
                    format!("remote.postgres.ca_file {shown}: not a PEM certificate file: {e}")
                })?;
                roots.add(cert).map_err(|e| {
                    format!("remote.postgres.ca_file {shown}: a certificate is not usable: {e}")
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "remote.postgres.ca_file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "tls = \"verify-full\" but the system has no CA certificates; set remote.postgres.ca_file to the CA that signed the server's certificate".into(),
                );
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The URL with libpq's `sslmode=verify-ca|verify-full` (which the client library does not
/// parse) turned into `require`: verification is ours to do, and always done.
pub fn normalize_url(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}
