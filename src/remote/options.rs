//! The remote targets' settings, validated: the PostgreSQL mirror, the Qdrant collection, the
//! site id. (The `[remote]` section is read and checked by `config::remote`.) Reads nothing.

use std::path::PathBuf;

/// The PostgreSQL mirror's settings.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string or postgresql:// URL.
    pub url: String,
    pub schema: String,
    pub tls: PgTls,
}

/// How the PostgreSQL connection is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// Plain TCP (`tls = "disable"`, the default).
    Disable,
    /// TLS, with the server's certificate chain and host name verified against `ca_file`, or
    /// the system's CA store when none is given (`tls = "verify-full"`).
    VerifyFull { ca_file: Option<PathBuf> },
}

/// Where the vectors of Qdrant points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorSource {
    /// ora's built-in embedding of the product name (`vectors = "builtin"`, the default).
    Builtin,
    /// The vectors clients store with `PUT /api/products/{sku}/vector` or
    /// `ora product vector` (`vectors = "client"`, with `vector_size`).
    Client { size: usize },
}

/// The Qdrant collection's settings.
#[derive(Debug, Clone)]
pub struct QdrantConfig {
    /// http://host:6333 or https://host:6333
    pub url: String,
    /// With https: the CA that signed Qdrant's certificate (default: the system's CAs).
    pub ca_file: Option<PathBuf>,
    pub collection: String,
    pub api_key: Option<String>,
    pub vectors: VectorSource,
}

/// The remote proxies (all off unless configured).
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// This warehouse's id in the central stores (default: the host name).
    pub site_id: String,
    pub batch: usize,
    /// Undelivered changes above this raise an alarm on /health and the page.
    pub outbox_cap: u64,
    /// A target this far behind is a warning.
    pub max_lag_seconds: u64,
    pub postgres: Option<PostgresConfig>,
    pub qdrant: Option<QdrantConfig>,
}

impl RemoteConfig {
    /// The vector size Qdrant takes when it is set up for client vectors (`None` otherwise).
    pub fn client_vector_size(&self) -> Option<usize> {
        match self.qdrant.as_ref()?.vectors {
            VectorSource::Client { size } => Some(size),
            VectorSource::Builtin => None,
        }
    }
}

/// A site id: 1-64 letters, digits, `-`, `_`, `.`.
pub fn valid_site_id(site_id: &str) -> bool {
    !site_id.is_empty()
        && site_id.len() <= 64
        && site_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
