//! What lies under a client library's error, found by type, never by its text: a TLS refusal
//! (a rustls error, directly or inside an OS error), or an OS error and its kind. The targets
//! classify their failures with these.

use std::error::Error as StdError;

/// Every cause of `e`, `e` first.
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |c: &&'a (dyn StdError + 'static)| (*c).source())
}

/// Whether rustls refused something somewhere under `e` (a certificate, a protocol message).
pub fn tls_refused(e: &(dyn StdError + 'static)) -> bool {
    chain(e).any(|c| {
        c.downcast_ref::<rustls::Error>().is_some()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    })
}

/// The kind of the first OS error under `e`, if there is one.
pub fn io_kind(e: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    chain(e).find_map(|c| c.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
}

/// Whether an OS error of this kind, met while a TLS connection was being set up, means the
/// other side broke off the handshake (it does not speak TLS there) rather than that it could
/// not be reached.
pub fn broke_off_handshake(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        UnexpectedEof | ConnectionReset | ConnectionAborted | InvalidData | BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_found_by_type() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::General("bad".into()),
        );
        assert!(tls_refused(&tls));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!tls_refused(&refused));
        assert_eq!(
            io_kind(&refused),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(!broke_off_handshake(std::io::ErrorKind::ConnectionRefused));
        assert!(broke_off_handshake(std::io::ErrorKind::UnexpectedEof));
    }
}
