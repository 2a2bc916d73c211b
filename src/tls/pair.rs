//! Certificates by their fingerprint (`sha256:` and the SHA-256 of the DER, in hex), and the
//! self-signed pair `ora tls selfsigned` makes for a box without a CA: an ECDSA P-256 key and
//! a certificate naming the box, valid from 1975 to 4096 (a pinned certificate is trusted by
//! its fingerprint, never by its dates). Writes only the two files it is asked for, the key
//! 0600, never over an existing file.

use std::io::Write;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How a fingerprint is written: `sha256:` and 64 hex digits.
pub const PIN_PREFIX: &str = "sha256:";

pub(super) fn digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The fingerprint of the first certificate of a PEM text.
pub fn fingerprint(pem: &[u8]) -> Result<String> {
    let cert = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| Error::usage("no PEM certificate (-----BEGIN CERTIFICATE-----) found"))?
        .map_err(|e| Error::usage(format!("not a PEM certificate: {e}")))?;
    Ok(format!(
        "{PIN_PREFIX}{}",
        crate::fsutil::hex(&digest(cert.as_ref()))
    ))
}

/// Reads a fingerprint as ora writes it, or as `openssl x509 -fingerprint -sha256` does
/// (upper case, colons; with or without the `sha256:` prefix).
pub fn parse_pin(text: &str) -> std::result::Result<[u8; 32], String> {
    let t = text.trim();
    let bare = t
        .strip_prefix(PIN_PREFIX)
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256 Fingerprint="))
        .or_else(|| t.strip_prefix("SHA256 Fingerprint="))
        .unwrap_or(t);
    let hex: String = bare
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    crate::fsutil::unhex32(&hex).ok_or_else(|| {
        format!(
            "{:?} is not a certificate fingerprint ({PIN_PREFIX} and 64 hex digits, as `ora tls fingerprint` prints)",
            crate::model::clip(t)
        )
    })
}

/// A certificate and its key, as PEM, with the certificate's fingerprint.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

/// A self-signed pair naming `names` (host names or IP addresses).
pub fn selfsigned(names: &[String]) -> Result<Pair> {
    if names.is_empty() {
        return Err(Error::usage("a certificate needs at least one name"));
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::usage(format!("cannot make the certificate: {e}")))?;
    let cert_pem = made.cert.pem();
    Ok(Pair {
        fingerprint: format!(
            "{PIN_PREFIX}{}",
            crate::fsutil::hex(&digest(made.cert.der()))
        ),
        key_pem: made.signing_key.serialize_pem(),
        cert_pem,
    })
}

/// Writes `pair` to `cert` (0644) and `key` (0600), refusing to replace either.
pub fn write_pair(pair: &Pair, cert: &Path, key: &Path) -> Result<()> {
    for p in [cert, key] {
        if p.exists() {
            return Err(Error::new(
                crate::error::Kind::Conflict,
                format!("{} already exists; it is left as it is", p.display()),
            )
            .with_hint("move it away first, or name other files with --cert and --key"));
        }
    }
    write_new(key, pair.key_pem.as_bytes(), 0o600)?;
    write_new(cert, pair.cert_pem.as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| Error::io(format!("write {}", path.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    crate::fsutil::sync_dir(&crate::fsutil::parent_dir(path)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_names_its_certificate_by_the_fingerprint_it_prints() {
        let p = selfsigned(&["box-a".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(fingerprint(p.cert_pem.as_bytes()).unwrap(), p.fingerprint);
        let pin = parse_pin(&p.fingerprint).unwrap();
        let openssl_style = p.fingerprint.as_bytes()[PIN_PREFIX.len()..]
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            parse_pin(&format!("SHA256 Fingerprint={openssl_style}")).unwrap(),
            pin
        );
        for bad in ["", "sha256:", "sha256:zz", &"a".repeat(65), &"é".repeat(40)] {
            assert!(parse_pin(bad).is_err(), "{bad:?}");
        }
        assert!(fingerprint(b"-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(fingerprint(p.key_pem.as_bytes()).is_err());
    }
}
