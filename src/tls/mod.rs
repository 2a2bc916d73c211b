//! TLS for ora's own HTTP: the server's certificate and key ([`ServerTls`], PEM files read
//! again on SIGHUP), what a client of another ora box trusts ([`Trust`]: a pinned certificate
//! fingerprint, a CA file, or the system's CAs), a self-signed pair for a box without a CA
//! ([`selfsigned`]) and the SHA-256 fingerprint that names a certificate. rustls with ring
//! throughout. Reads the files it is given and writes only the pair it is asked to make;
//! never opens a connection.

mod client;
mod pair;
mod server;

pub use client::{client_config, Trust};
pub use pair::{fingerprint, parse_pin, selfsigned, write_pair, Pair, PIN_PREFIX};
pub use server::ServerTls;
