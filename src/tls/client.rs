//! The TLS client configurations: the remote targets' (trust the PEM certificates of a
//! `ca_file`, or else the system's CA store; chains and host names always verified) and
//! another ora box's ([`Trust`]: the same, or certificates pinned by their SHA-256
//! fingerprint, for boxes with self-signed pairs). There is deliberately no mode that encrypts
//! without checking who answers. Never opens a connection itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// What a client of another ora box trusts: the certificates pinned by fingerprint (any of
/// them; names and dates are not checked, the pin is the identity), else the CA file, else
/// the system's CAs. Built once, on first use.
#[derive(Clone, Default)]
pub struct Trust {
    pub pins: Vec<[u8; 32]>,
    pub ca_file: Option<PathBuf>,
    built: Arc<OnceLock<Result<Arc<ClientConfig>, String>>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("pins", &self.pins.len())
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PartialEq for Trust {
    fn eq(&self, other: &Trust) -> bool {
        self.pins == other.pins && self.ca_file == other.ca_file
    }
}

impl Trust {
    pub fn new(pins: Vec<[u8; 32]>, ca_file: Option<PathBuf>) -> Trust {
        Trust {
            pins,
            ca_file,
            built: Arc::default(),
        }
    }

    /// The same trust with `pin` accepted too.
    pub fn with_pin(&self, pin: [u8; 32]) -> Trust {
        let mut pins = self.pins.clone();
        if !pins.contains(&pin) {
            pins.push(pin);
        }
        Trust::new(pins, self.ca_file.clone())
    }

    /// The client configuration (the error is a sentence for the operator).
    pub fn config(&self) -> Result<Arc<ClientConfig>, String> {
        self.built
            .get_or_init(|| {
                if self.pins.is_empty() {
                    return client_config(self.ca_file.as_deref(), "standby.tls_ca");
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let pinned = Pinned {
                    pins: self.pins.clone(),
                    algs: provider.signature_verification_algorithms,
                };
                let config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup failed: {e}"))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(pinned))
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
    }
}

/// Accepts a server whose certificate is one of `pins`, after checking that the server holds
/// its key (the handshake's signature).
#[derive(Debug)]
struct Pinned {
    pins: Vec<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = super::pair::digest(end_entity.as_ref());
        if self.pins.contains(&fp) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate {}{} is not a pinned one (standby.tls_pins)",
                super::PIN_PREFIX,
                crate::fsutil::hex(&fp)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
