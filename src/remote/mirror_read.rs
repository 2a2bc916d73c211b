//! Reading one site back out of the PostgreSQL mirror, for rebuilding a lost box: checks that
//! the schema is a mirror this ora understands (its `mirror_layout`, every mirrored column
//! present) and that it knows the site, then streams the site's rows table by table, all from
//! one repeatable-read snapshot so the rows and the recorded position belong together. Reads
//! only: it never writes to PostgreSQL, and it writes nothing locally itself (rows go to the
//! caller's sink).

use postgres::fallible_iterator::FallibleIterator;
use rusqlite::types::Value;

use super::outbox::TABLES;
use super::postgres::{added_in, classify, ident, pg_type, Postgres, MIRROR_LAYOUT};
use super::target::RemoteError;
use crate::remote::options::PostgresConfig;

/// Where the mirror stood for the site when it was read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SitePosition {
    /// The last outbox sequence of the box the mirror recorded as delivered.
    pub last_seq: i64,
    /// When the mirror last took a delivery from the box (UTC, RFC 3339).
    pub updated_at: String,
    /// The mirror's layout version (`None`: written before ora recorded one; same columns).
    pub layout: Option<i32>,
}

/// Why reading the mirror stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The sink refused a row (the local side failed).
    #[error(transparent)]
    Sink(E),
}

/// What was read.
#[derive(Debug, Clone)]
pub struct SiteRead {
    pub position: SitePosition,
    /// Rows read per mirrored table, in [`TABLES`] order.
    pub rows: Vec<(&'static str, u64)>,
}

/// A row sink: (table, column names, values).
type Sink<'a, E> =
    dyn FnMut(&'static str, &'static [&'static str], Vec<Value>) -> Result<(), E> + 'a;

/// Reads every row of `site` from the mirror `cfg` describes, handing each to `sink` as
/// (table, column names, values) with integers as integers and text as text.
pub fn read_site<E>(
    cfg: &PostgresConfig,
    site: &str,
    sink: &mut Sink<'_, E>,
) -> Result<SiteRead, ReadError<E>> {
    let mut pg = Postgres::new(cfg, site);
    let client = pg.client()?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(classify)?;
    let schema = cfg.schema.as_str();
    let (layout, present) = check_mirror(&mut tx, schema)?;
    let position = site_position(&mut tx, schema, site, layout)?;
    let mut counts = Vec::new();
    for (table, key, cols) in TABLES {
        let n = copy_table(&mut tx, schema, site, (table, key, cols), &present, sink)?;
        counts.push((*table, n));
    }
    tx.commit().map_err(classify)?;
    Ok(SiteRead {
        position,
        rows: counts,
    })
}

/// (table, column) pairs of the mirror.
type Columns = Vec<(String, String)>;

/// Checks that `schema` is an ora mirror this version reads; returns its layout version and
/// its columns. A column a later layout added may be missing from an older mirror (it reads
/// as NULL, a missing table as empty).
fn check_mirror(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
) -> Result<(Option<i32>, Columns), RemoteError> {
    let s = ident(schema);
    let exists = tx
        .query_opt(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .map_err(classify)?
        .is_some();
    if !exists {
        return Err(RemoteError::mismatch(format!(
            "this PostgreSQL database has no schema {schema:?}, so no ora mirror to rebuild from; check the URL and remote.postgres.schema"
        )));
    }
    let has_layout = tx
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{s}.mirror_layout")],
        )
        .and_then(|r| r.try_get::<_, Option<String>>(0))
        .map_err(classify)?
        .is_some();
    let layout = if has_layout {
        tx.query_one(&format!("SELECT max(version) FROM {s}.mirror_layout"), &[])
            .and_then(|r| r.try_get::<_, Option<i32>>(0))
            .map_err(classify)?
    } else {
        None
    };
    if let Some(v) = layout.filter(|v| *v > MIRROR_LAYOUT) {
        return Err(RemoteError::mismatch(format!(
            "the mirror in schema {schema:?} was laid out by a newer ora (mirror layout {v}; this ora reads {MIRROR_LAYOUT}); rebuild with that ora's version"
        )));
    }
    let present: Vec<(String, String)> = tx
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = $1",
            &[&schema],
        )
        .map_err(classify)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let older = layout.unwrap_or(1);
    for (table, _, cols) in TABLES {
        for c in ["site_id"].iter().chain(cols.iter()) {
            let optional = older < added_in(table, c);
            if !optional && !present.iter().any(|(t, n)| t == table && n == c) {
                return Err(RemoteError::mismatch(format!(
                    "schema {schema:?} is not an ora mirror this version understands: table {table} has no column {c}"
                )));
            }
        }
    }
    if !present.iter().any(|(t, _)| t == "sync_state") {
        return Err(RemoteError::mismatch(format!(
            "schema {schema:?} is not an ora mirror: it has no sync_state table"
        )));
    }
    Ok((layout, present))
}

/// Where the mirror stands for `site`; a site it does not hold is named among those it does.
fn site_position(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    site: &str,
    layout: Option<i32>,
) -> Result<SitePosition, RemoteError> {
    let s = ident(schema);
    let position = tx
        .query_opt(
            &format!(
                "SELECT last_seq, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM {s}.sync_state WHERE site_id = $1"
            ),
            &[&site],
        )
        .map_err(classify)?;
    let Some(position) = position else {
        let known: Vec<String> = tx
            .query(
                &format!("SELECT site_id FROM {s}.sync_state ORDER BY site_id"),
                &[],
            )
            .map_err(classify)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(RemoteError::mismatch(format!(
            "the mirror holds no site {site:?} (sites it holds: {known}); pass --site with the box's remote.site_id"
        )));
    };
    Ok(SitePosition {
        last_seq: position.try_get(0).map_err(classify)?,
        updated_at: position.try_get(1).map_err(classify)?,
        layout,
    })
}

/// Streams the site's rows of one mirrored table to `sink`, in key order; returns how many.
fn copy_table<E>(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    site: &str,
    (table, key, cols): (&'static str, &'static str, &'static [&'static str]),
    present: &Columns,
    sink: &mut Sink<'_, E>,
) -> Result<u64, ReadError<E>> {
    let has = |c: &str| present.iter().any(|(t, n)| t == table && n == c);
    if !has("site_id") {
        return Ok(0);
    }
    let list = cols
        .iter()
        .map(|c| {
            if has(c) {
                ident(c)
            } else {
                format!("NULL::{} AS {}", pg_type(table, c), ident(c))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {list} FROM {}.{} WHERE site_id = $1 ORDER BY {}",
        ident(schema),
        ident(table),
        ident(key)
    );
    let mut rows = tx.query_raw(&sql, [site]).map_err(classify)?;
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(classify)? {
        let mut values = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            let v = if pg_type(table, c) == "bigint" {
                row.try_get::<_, Option<i64>>(i)
                    .map_err(classify)?
                    .map_or(Value::Null, Value::Integer)
            } else {
                row.try_get::<_, Option<String>>(i)
                    .map_err(classify)?
                    .map_or(Value::Null, Value::Text)
            };
            values.push(v);
        }
        sink(table, cols, values).map_err(ReadError::Sink)?;
        n += 1;
    }
    Ok(n)
}
