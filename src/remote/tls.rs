//! The TLS client configuration the remote targets share (rustls with ring): trust the PEM
//! certificates of a `ca_file`, or else the system's CA store. Certificate chains and host
//! names are always verified; there is deliberately no mode that encrypts without checking who
//! answers. Never opens a connection itself.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The client configuration trusting `ca_file` (named `key` in messages, such as
/// `remote.postgres.ca_file`), or the system's CA store when it is `None`. The error is a
/// sentence for the operator.
pub fn client_config(ca_file: Option<&Path>, key: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display();
            let bytes =
                std::fs::read(path).map_err(|e| format!("{key} {shown}: cannot read it: {e}"))?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert =
                    cert.map_err(|e| format!("{key} {shown}: not a PEM certificate file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{key} {shown}: a certificate is not usable: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "{key} {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "TLS is asked for but the system has no CA certificates; set {key} to the CA that signed the server's certificate"
                ));
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
