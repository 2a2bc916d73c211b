//! `[remote]`, `[remote.postgres]`, `[remote.qdrant]` and their environment variables: the
//! section as written, and [`from_section`], which checks every key and applies the one
//! precedence rule (environment over file over default) into `remote`'s typed settings. Reads
//! no network.

use std::path::PathBuf;

use serde::Deserialize;

use super::{env, ranged};
use crate::error::{Error, Result};
use crate::remote::options::{
    valid_site_id, PgTls, PostgresConfig, QdrantConfig, RemoteConfig, VectorSource,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteSection {
    site_id: Option<String>,
    batch: Option<usize>,
    outbox_cap: Option<u64>,
    max_lag_seconds: Option<u64>,
    postgres: Option<PostgresSection>,
    qdrant: Option<QdrantSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSection {
    url: Option<String>,
    schema: Option<String>,
    tls: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QdrantSection {
    url: Option<String>,
    collection: Option<String>,
    api_key: Option<String>,
    ca_file: Option<PathBuf>,
    vectors: Option<String>,
    vector_size: Option<usize>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "site".into())
}

fn bad(m: String) -> Error {
    Error::config(format!("config: {m}"))
}

/// `[remote]` validated, with its environment overrides applied.
pub(crate) fn from_section(sec: &RemoteSection) -> Result<RemoteConfig> {
    let site_id = env("ORA_SITE_ID")
        .or_else(|| sec.site_id.clone())
        .unwrap_or_else(hostname);
    if !valid_site_id(&site_id) {
        return Err(bad(format!(
            "remote.site_id {:?} must be 1-64 letters, digits, - _ .",
            crate::model::clip(&site_id)
        )));
    }
    let pg_url =
        env("ORA_POSTGRES_URL").or_else(|| sec.postgres.as_ref().and_then(|p| p.url.clone()));
    let postgres = match pg_url {
        None => None,
        Some(url) => Some(postgres(url, sec.postgres.as_ref())?),
    };
    let q_url = env("ORA_QDRANT_URL").or_else(|| sec.qdrant.as_ref().and_then(|q| q.url.clone()));
    let qdrant = match q_url {
        None => None,
        Some(url) => Some(qdrant(url, sec.qdrant.as_ref())?),
    };
    Ok(RemoteConfig {
        site_id,
        batch: ranged("remote.batch", sec.batch, 1000, 1..=100_000)?,
        outbox_cap: ranged(
            "remote.outbox_cap",
            sec.outbox_cap,
            1_000_000,
            1..=1_000_000_000,
        )?,
        max_lag_seconds: ranged(
            "remote.max_lag_seconds",
            sec.max_lag_seconds,
            300,
            1..=86_400 * 30,
        )?,
        postgres,
        qdrant,
    })
}

/// `[remote.postgres]` for a configured `url`.
fn postgres(url: String, p: Option<&PostgresSection>) -> Result<PostgresConfig> {
    if !cfg!(feature = "postgres") {
        return Err(bad(
            "remote.postgres is configured but this ora was built without the postgres feature"
                .into(),
        ));
    }
    let schema = p
        .and_then(|p| p.schema.clone())
        .unwrap_or_else(|| "ora".into());
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(bad(format!(
            "remote.postgres.schema {schema:?} must be letters, digits and _"
        )));
    }
    let ca_file = env("ORA_POSTGRES_CA_FILE")
        .map(PathBuf::from)
        .or_else(|| p.and_then(|p| p.ca_file.clone()));
    let tls = postgres_tls(&url, p.and_then(|p| p.tls.as_deref()), ca_file)?;
    Ok(PostgresConfig { url, schema, tls })
}

/// TLS to PostgreSQL: as `tls` says, else verify-full when the URL asks for TLS or a CA file
/// is given, else none.
fn postgres_tls(url: &str, tls: Option<&str>, ca_file: Option<PathBuf>) -> Result<PgTls> {
    let asks_tls = [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
    ]
    .iter()
    .any(|m| url.contains(m));
    let tls = match tls {
        Some("disable") => {
            if ca_file.is_some() {
                return Err(bad(
                    "remote.postgres.ca_file is set but tls = \"disable\"; use tls = \"verify-full\"".into(),
                ));
            }
            PgTls::Disable
        }
        Some("verify-full") => PgTls::VerifyFull { ca_file },
        None if asks_tls || ca_file.is_some() => PgTls::VerifyFull { ca_file },
        None => PgTls::Disable,
        Some(other) => {
            return Err(bad(format!(
                "remote.postgres.tls = {:?}: use \"disable\" or \"verify-full\"",
                crate::model::clip(other)
            )))
        }
    };
    if let PgTls::VerifyFull {
        ca_file: Some(f), ..
    } = &tls
    {
        if !f.is_file() {
            return Err(bad(format!(
                "remote.postgres.ca_file {} is not a readable file",
                f.display()
            )));
        }
    }
    Ok(tls)
}

/// `[remote.qdrant]` for a configured `url`.
fn qdrant(url: String, q: Option<&QdrantSection>) -> Result<QdrantConfig> {
    crate::remote::httpc::check_url(&url).map_err(|e| bad(format!("remote.qdrant.url {e}")))?;
    let ca_file = env("ORA_QDRANT_CA_FILE")
        .map(PathBuf::from)
        .or_else(|| q.and_then(|q| q.ca_file.clone()));
    if let Some(f) = &ca_file {
        if !url.starts_with("https://") {
            return Err(bad(format!(
                "remote.qdrant.ca_file is set but remote.qdrant.url {url:?} is plain http; use https://"
            )));
        }
        if !f.is_file() {
            return Err(bad(format!(
                "remote.qdrant.ca_file {} is not a readable file",
                f.display()
            )));
        }
    }
    let collection = q
        .and_then(|q| q.collection.clone())
        .unwrap_or_else(|| "ora_products".into());
    if collection.is_empty()
        || collection.len() > 255
        || !collection
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(bad(format!(
            "remote.qdrant.collection {:?} must be 1-255 letters, digits, - and _",
            crate::model::clip(&collection)
        )));
    }
    let api_key = env("ORA_QDRANT_API_KEY")
        .or_else(|| q.and_then(|q| q.api_key.clone()))
        .filter(|k| !k.is_empty());
    let vectors = vector_source(
        q.and_then(|q| q.vectors.as_deref()).unwrap_or("builtin"),
        q.and_then(|q| q.vector_size),
    )?;
    Ok(QdrantConfig {
        url,
        ca_file,
        collection,
        api_key,
        vectors,
    })
}

/// `vectors` and `vector_size` of `[remote.qdrant]`.
fn vector_source(vectors: &str, size: Option<usize>) -> Result<VectorSource> {
    match (vectors, size) {
        ("builtin", None) => Ok(VectorSource::Builtin),
        ("builtin", Some(_)) => Err(bad(
            "remote.qdrant.vector_size is only for vectors = \"client\" (the built-in embedding has its own size)".into(),
        )),
        ("client", Some(size)) => Ok(VectorSource::Client {
            size: ranged(
                "remote.qdrant.vector_size",
                Some(size),
                size,
                1..=crate::store::vectors::MAX_DIMS,
            )?,
        }),
        ("client", None) => Err(bad(
            "remote.qdrant.vectors = \"client\" needs remote.qdrant.vector_size (the size of your model's vectors)".into(),
        )),
        (other, _) => Err(bad(format!(
            "remote.qdrant.vectors = {:?}: use \"builtin\" or \"client\"",
            crate::model::clip(other)
        ))),
    }
}
