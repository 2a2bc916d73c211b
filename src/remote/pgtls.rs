//! TLS for the PostgreSQL mirror (`[remote.postgres] tls = "verify-full"`): the connector over
//! the shared client configuration ([`super::tls`]: `ca_file` or the system's CA store,
//! always verified), and the URL's sslmode as the client library understands it. Never opens
//! a connection itself.

use std::path::Path;

use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `ca_file`, or for the system's CA store when it is `None`. The error is a
/// sentence for the operator.
pub fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let config = crate::tls::client_config(ca_file, "remote.postgres.ca_file")?;
    Ok(MakeRustlsConnect::new(std::sync::Arc::unwrap_or_clone(
        config,
    )))
}

/// The URL with libpq's `sslmode=verify-ca|verify-full` (which the client library does not
/// parse) turned into `require`: verification is ours to do, and always done.
pub fn normalize_url(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}
