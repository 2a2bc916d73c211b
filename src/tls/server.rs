//! The server's certificate chain and key, from PEM files (`[server] tls_cert`, `tls_key`):
//! checked at start (a missing, unreadable or mismatched pair stops the server with what to
//! fix), read again by [`ServerTls::reload`] (SIGHUP), which keeps the pair in use when the
//! new files are not good. Each new connection takes the configuration current when it
//! arrives. Reads the files; never writes them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::error::{Error, Result};

/// The server's TLS configuration, swappable while it serves.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<ServerConfig>, String)>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl ServerTls {
    /// Loads the pair, or says what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls> {
        let built = build(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(built),
        })
    }

    /// Reads the files again; on success new connections use them (the fingerprint is
    /// returned), on failure the pair in use stays.
    pub fn reload(&self) -> Result<String> {
        let built = build(&self.cert, &self.key)?;
        let fp = built.1.clone();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = built;
        Ok(fp)
    }

    /// The configuration for a connection arriving now.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()).0)
    }

    /// The fingerprint of the certificate in use.
    pub fn fingerprint(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn build(cert: &Path, key: &Path) -> Result<(Arc<ServerConfig>, String)> {
    let bad = |what: &Path, why: String| {
        Error::config(format!("server TLS: {}: {why}", what.display())).with_hint(
            "set server.tls_cert and server.tls_key to a PEM certificate and its key (`ora tls selfsigned` makes a pair)",
        )
    };
    let cert_pem = read_bounded(cert).map_err(|e| bad(cert, e))?;
    let key_pem = read_bounded(key).map_err(|e| bad(key, e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate file: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(bad(
            cert,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    };
    let fingerprint = format!(
        "{}{}",
        super::PIN_PREFIX,
        crate::fsutil::hex(&super::pair::digest(leaf.as_ref()))
    );
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let mut config =
        ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::failed(format!("server TLS: setup failed: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                bad(
                    key,
                    format!("the key and the certificate do not go together: {e}"),
                )
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), fingerprint))
}

/// A PEM file of at most 1 MiB (a certificate chain is a few KiB).
fn read_bounded(path: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    const MAX: u64 = 1 << 20;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX {
        return Err("is larger than 1 MiB: not a certificate or key file".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pair_is_refused_and_a_reload_keeps_the_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let a = super::super::selfsigned(&["a".into()]).unwrap();
        super::super::write_pair(&a, &c, &k).unwrap();
        let tls = ServerTls::load(&c, &k).unwrap();
        assert_eq!(tls.fingerprint(), a.fingerprint);
        // Another box's key with this certificate: refused, the pair in use stays.
        let b = super::super::selfsigned(&["b".into()]).unwrap();
        std::fs::write(&k, &b.key_pem).unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.fingerprint(), a.fingerprint);
        std::fs::write(&c, &b.cert_pem).unwrap();
        assert_eq!(tls.reload().unwrap(), b.fingerprint);
        for junk in [&b""[..], b"hello", &[0xffu8; 3000][..]] {
            std::fs::write(&c, junk).unwrap();
            assert!(ServerTls::load(&c, &k).is_err());
        }
        std::fs::write(&c, vec![b'A'; (1 << 20) + 1]).unwrap();
        assert!(ServerTls::load(&c, &k).is_err());
        assert!(ServerTls::load(&dir.path().join("none"), &k).is_err());
    }
}
