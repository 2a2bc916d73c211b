//! The PostgreSQL mirror: the domain tables in a schema of their own (default `ora`), each
//! with a `site_id` column so many warehouses share one database, created if missing. A batch
//! is one PostgreSQL transaction: per table one upsert of all its rows (`jsonb_to_recordset`,
//! two parameters however many rows) and one delete, plus this site's position in
//! `sync_state`, so the data and the position commit together or not at all and a crash
//! between send and acknowledgement neither loses nor duplicates anything.

use postgres::config::SslMode;
use postgres::{Client, GenericClient, NoTls};

use crate::remote::options::{PgTls, PostgresConfig};

use super::outbox::{Change, TABLES};
use super::target::{RemoteError, Target};

/// The layout of the mirror's tables this ora writes and reads, recorded in
/// `mirror_layout`; a mirror laid out by a newer ora is refused rather than guessed at.
/// Layout 2 added the trail: `inventory_transactions.actor` and the `audit_log` table (an
/// older mirror is upgraded in place by [`Target::prepare`], and each site's rows are copied
/// once more in full so its history has them too; `sync_state.layout` says which sites have).
pub const MIRROR_LAYOUT: i32 = 2;

/// The layout that added a mirrored column (a mirror of an older layout lacks it).
pub(super) fn added_in(table: &str, col: &str) -> i32 {
    match (table, col) {
        ("audit_log", _) | ("inventory_transactions", "actor") => 2,
        _ => 1,
    }
}

/// Column types on the PostgreSQL side.
pub(super) fn pg_type(table: &str, col: &str) -> &'static str {
    match (table, col) {
        (
            _,
            "current_quantity" | "reorder_point" | "quantity" | "item_count" | "total_units"
            | "quantity_shipped" | "transaction_id" | "version" | "orders_today" | "shipments_sent"
            | "pending_uploads",
        ) => "bigint",
        ("inventory_transactions" | "shipped_items" | "audit_log", "id") => "bigint",
        _ => "text",
    }
}

/// The mirror of one site.
pub struct Postgres {
    url: String,
    schema: String,
    tls: PgTls,
    site: String,
    client: Option<Client>,
    /// Deliver row by row instead of one statement per table (benchmark reference only).
    pub row_by_row: bool,
}

pub(super) fn classify(e: postgres::Error) -> RemoteError {
    classify_as(e, false)
}

/// [`classify`] for a failed connect; `tls_asked`: the connection was to be encrypted, so a
/// failure with neither an answer from the server nor an OS error under it happened in the
/// TLS negotiation (the server does not offer TLS).
fn classify_connect(e: postgres::Error, tls_asked: bool) -> RemoteError {
    classify_as(e, tls_asked)
}

fn classify_as(e: postgres::Error, tls_asked: bool) -> RemoteError {
    use super::causes;
    let msg = crate::error::with_causes(&e);
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let said = if code == "28P01" || code == "28000" {
            RemoteError::auth(format!("PostgreSQL refused the login: {}", db.message()))
        } else {
            RemoteError::failed(format!("PostgreSQL: {} ({code})", db.message()))
        };
        return said.with_source(e);
    }
    let io = causes::io_kind(&e);
    if causes::tls_refused(&e) || (tls_asked && io.is_none() && !e.is_closed()) {
        return RemoteError::mismatch(format!(
            "PostgreSQL TLS failed: {msg}; check remote.postgres.tls and ca_file (the CA that signed the server's certificate, which must name the host of the URL)"
        ))
        .with_source(e);
    }
    if e.is_closed() || io.is_some() {
        return RemoteError::unreachable(format!("PostgreSQL is unreachable: {msg}"))
            .with_source(e);
    }
    RemoteError::failed(format!("PostgreSQL: {msg}")).with_source(e)
}

pub(super) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Postgres {
    pub fn new(cfg: &PostgresConfig, site: &str) -> Postgres {
        Postgres {
            url: crate::remote::pgtls::normalize_url(&cfg.url),
            schema: cfg.schema.clone(),
            tls: cfg.tls.clone(),
            site: site.to_string(),
            client: None,
            row_by_row: false,
        }
    }

    pub(super) fn client(&mut self) -> Result<&mut Client, RemoteError> {
        if self.client.as_mut().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut cfg: postgres::Config = self.url.parse().map_err(|e: postgres::Error| {
                RemoteError::mismatch(format!(
                    "remote.postgres.url is not a valid connection string: {e}"
                ))
            })?;
            cfg.connect_timeout(std::time::Duration::from_secs(10));
            let client = match &self.tls {
                PgTls::Disable => cfg.ssl_mode(SslMode::Disable).connect(NoTls),
                PgTls::VerifyFull { ca_file } => {
                    let tls = crate::remote::pgtls::connector(ca_file.as_deref())
                        .map_err(RemoteError::mismatch)?;
                    cfg.ssl_mode(SslMode::Require).connect(tls)
                }
            };
            let tls_asked = !matches!(self.tls, PgTls::Disable);
            self.client = Some(client.map_err(|e| classify_connect(e, tls_asked))?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| RemoteError::unreachable("no connection"))
    }

    fn upsert_sql(&self, table: &str, key: &str, cols: &[&str]) -> String {
        let s = ident(&self.schema);
        let col_list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let typed = cols
            .iter()
            .map(|c| format!("{} {}", ident(c), pg_type(table, c)))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = cols
            .iter()
            .filter(|c| **c != key)
            .map(|c| format!("{} = EXCLUDED.{}", ident(c), ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {s}.{t} (site_id, {col_list}) SELECT $1, {col_list} FROM jsonb_to_recordset($2::text::jsonb) AS x({typed})
             ON CONFLICT (site_id, {k}) DO UPDATE SET {updates}",
            t = ident(table),
            k = ident(key)
        )
    }

    fn apply(
        &self,
        tx: &mut impl GenericClient,
        table: &str,
        rows: &[serde_json::Value],
        deletes: &[String],
    ) -> Result<(), RemoteError> {
        let Some((_, key, cols)) = TABLES.iter().find(|(t, _, _)| *t == table) else {
            return Ok(());
        };
        if !rows.is_empty() {
            let sql = self.upsert_sql(table, key, cols);
            if self.row_by_row {
                for r in rows {
                    tx.execute(
                        &sql,
                        &[
                            &self.site,
                            &serde_json::Value::Array(vec![r.clone()]).to_string(),
                        ],
                    )
                    .map_err(classify)?;
                }
            } else {
                tx.execute(
                    &sql,
                    &[
                        &self.site,
                        &serde_json::Value::Array(rows.to_vec()).to_string(),
                    ],
                )
                .map_err(classify)?;
            }
        }
        if !deletes.is_empty() {
            let sql = format!(
                "DELETE FROM {}.{} WHERE site_id = $1 AND {}::text = ANY($2)",
                ident(&self.schema),
                ident(table),
                ident(key)
            );
            tx.execute(&sql, &[&self.site, &deletes])
                .map_err(classify)?;
        }
        Ok(())
    }

    fn set_position(&self, tx: &mut impl GenericClient, up_to: i64) -> Result<(), RemoteError> {
        tx.execute(
            &format!(
                "INSERT INTO {}.sync_state (site_id, last_seq, updated_at, layout) VALUES ($1, $2, now(), {MIRROR_LAYOUT})
                 ON CONFLICT (site_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now(), layout = {MIRROR_LAYOUT}",
                ident(&self.schema)
            ),
            &[&self.site, &up_to],
        )
        .map_err(classify)?;
        Ok(())
    }

    /// Takes the connection out (connecting if needed), so it can be used beside `&self`.
    fn take_client(&mut self) -> Result<Client, RemoteError> {
        self.client()?;
        self.client
            .take()
            .ok_or_else(|| RemoteError::unreachable("no connection"))
    }

    /// Runs `f` on the connection and puts it back unless it broke.
    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&Self, &mut Client) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let mut client = self.take_client()?;
        let result = f(self, &mut client);
        if !client.is_closed() {
            self.client = Some(client);
        }
        result
    }

    /// Rows and an order-independent digest of one table of this site on the PostgreSQL side
    /// (the same digest [`super::check`] computes locally).
    pub fn table_digest(&mut self, table: &str) -> Result<(i64, u64), RemoteError> {
        let (schema, site) = (self.schema.clone(), self.site.clone());
        let Some((_, _, cols)) = TABLES.iter().find(|(t, _, _)| *t == table) else {
            return Ok((0, 0));
        };
        let list = cols
            .iter()
            .map(|c| format!("{}::text", ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {list} FROM {}.{} WHERE site_id = $1",
            ident(&schema),
            ident(table)
        );
        let rows = self.client()?.query(&sql, &[&site]).map_err(classify)?;
        let mut digest = 0u64;
        for r in &rows {
            let values: Vec<Option<String>> = (0..cols.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect();
            digest = digest.wrapping_add(super::check::row_hash(&values));
        }
        Ok((rows.len() as i64, digest))
    }
}

/// The mirror's tables, created or given their missing columns (an older layout upgraded in
/// place), and the layout recorded; for [`Target::prepare`], inside its transaction.
fn layout_ddl(s: &str) -> String {
    let mut ddl = String::new();
    for (t, key, cols) in TABLES {
        let defs = cols
            .iter()
            .map(|c| format!("{} {}", ident(c), pg_type(t, c)))
            .collect::<Vec<_>>()
            .join(", ");
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {s}.{} (site_id text NOT NULL, {defs}, PRIMARY KEY (site_id, {}));\n",
            ident(t),
            ident(key)
        ));
        for c in cols.iter().filter(|c| added_in(t, c) > 1) {
            ddl.push_str(&format!(
                "ALTER TABLE {s}.{} ADD COLUMN IF NOT EXISTS {} {};\n",
                ident(t),
                ident(c),
                pg_type(t, c)
            ));
        }
    }
    ddl.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {s}.sync_state (site_id text PRIMARY KEY, last_seq bigint NOT NULL, updated_at timestamptz NOT NULL);
         ALTER TABLE {s}.sync_state ADD COLUMN IF NOT EXISTS layout integer NOT NULL DEFAULT 1;
         UPDATE {s}.mirror_layout SET version = {MIRROR_LAYOUT} WHERE version < {MIRROR_LAYOUT};\n"
    ));
    ddl
}

impl Target for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn probe(&mut self) -> Result<String, RemoteError> {
        let row = self
            .client()?
            .query_one("SELECT current_setting('server_version')", &[])
            .map_err(classify)?;
        let version: String = row.get(0);
        Ok(format!("answers (PostgreSQL {version})"))
    }

    fn prepare(&mut self) -> Result<(), RemoteError> {
        let s = ident(&self.schema);
        let client = self.client()?;
        let mut tx = client.transaction().map_err(classify)?;
        // The layout first: a mirror laid out by a newer ora is left exactly as it is.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.mirror_layout (version integer NOT NULL);
             INSERT INTO {s}.mirror_layout (version) SELECT {MIRROR_LAYOUT} WHERE NOT EXISTS (SELECT 1 FROM {s}.mirror_layout);"
        ))
        .map_err(classify)?;
        let version: i32 = tx
            .query_one(&format!("SELECT max(version) FROM {s}.mirror_layout"), &[])
            .and_then(|r| r.try_get::<_, Option<i32>>(0))
            .map_err(classify)?
            .unwrap_or(MIRROR_LAYOUT);
        if version > MIRROR_LAYOUT {
            return Err(RemoteError::mismatch(format!(
                "the PostgreSQL schema {s} was laid out by a newer ora (mirror layout {version}; this ora writes {MIRROR_LAYOUT}); upgrade ora on this box"
            )));
        }
        tx.batch_execute(&layout_ddl(&s)).map_err(classify)?;
        if version < MIRROR_LAYOUT {
            log::warn!(
                "sync postgres: mirror layout {version} of schema {s} upgraded in place to {MIRROR_LAYOUT} (the movements' actor and the audit trail)"
            );
        }
        tx.commit().map_err(classify)
    }

    fn needs_copy(&mut self) -> Result<Option<String>, RemoteError> {
        let (schema, site) = (self.schema.clone(), self.site.clone());
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "SELECT layout FROM {}.sync_state WHERE site_id = $1",
                    ident(&schema)
                ),
                &[&site],
            )
            .map_err(classify)?;
        Ok(row
            .map(|r| r.get::<_, i32>(0))
            .filter(|l| *l < MIRROR_LAYOUT)
            .map(|l| {
                format!(
                    "the mirror holds this site in layout {l}: its rows are copied once in full so they carry the movements' actor and the audit trail"
                )
            }))
    }

    fn remote_position(&mut self) -> Result<Option<i64>, RemoteError> {
        let (schema, site) = (self.schema.clone(), self.site.clone());
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "SELECT last_seq FROM {}.sync_state WHERE site_id = $1",
                    ident(&schema)
                ),
                &[&site],
            )
            .map_err(classify)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn begin_copy(&mut self) -> Result<(), RemoteError> {
        // One transaction for the whole copy, replacing this site's rows: a copy cut short
        // leaves the old mirror, a finished one equals the local database exactly.
        self.with_client(|me, c| {
            c.batch_execute("BEGIN").map_err(classify)?;
            for (t, _, _) in TABLES {
                c.execute(
                    &format!(
                        "DELETE FROM {}.{} WHERE site_id = $1",
                        ident(&me.schema),
                        ident(t)
                    ),
                    &[&me.site],
                )
                .map_err(classify)?;
            }
            Ok(())
        })
    }

    fn copy_rows(
        &mut self,
        table: &str,
        rows: &[serde_json::Value],
        _local: &rusqlite::Connection,
    ) -> Result<(), RemoteError> {
        let result = self.with_client(|me, c| me.apply(c, table, rows, &[]));
        if result.is_err() {
            self.client = None;
        }
        result
    }

    fn end_copy(&mut self, up_to: i64) -> Result<(), RemoteError> {
        let result = self.with_client(|me, c| {
            me.set_position(c, up_to)?;
            c.batch_execute("COMMIT").map_err(classify)
        });
        if result.is_err() {
            self.client = None;
        }
        result
    }

    fn deliver(
        &mut self,
        changes: &[Change],
        up_to: i64,
        _local: &rusqlite::Connection,
    ) -> Result<(), RemoteError> {
        self.with_client(|me, client| {
            let mut tx = client.transaction().map_err(classify)?;
            for (table, _, _) in TABLES {
                let rows: Vec<serde_json::Value> = changes
                    .iter()
                    .filter(|c| c.table == *table)
                    .filter_map(|c| c.row.clone())
                    .collect();
                let deletes: Vec<String> = changes
                    .iter()
                    .filter(|c| c.table == *table && c.row.is_none())
                    .map(|c| c.key.clone())
                    .collect();
                me.apply(&mut tx, table, &rows, &deletes)?;
            }
            me.set_position(&mut tx, up_to)?;
            tx.commit().map_err(classify)
        })
    }
}
