//! Workflow states with optimistic locking: every change bumps `version`, and a caller that
//! names the version it last saw is refused when someone else changed it since.

use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// A requested change of a workflow's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowChange {
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The version the caller last saw (0: the workflow must not exist yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<i64>,
}

/// A row of `workflows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    pub status: String,
    pub details: Option<String>,
    pub version: i64,
    pub updated_at: String,
}

impl WorkflowChange {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_label("workflow name", &self.name, model::MAX_NAME_LEN)?;
        model::validate_label("status", &self.status, model::MAX_STATUS_LEN)?;
        if let Some(d) = &self.details {
            model::validate_text("details", d, model::MAX_DETAILS_LEN)?;
        }
        if let Some(v) = self.expect_version {
            model::validate_count("expected version", v)?;
        }
        Ok(())
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Workflow> {
    Ok(Workflow {
        name: r.get(0)?,
        status: r.get(1)?,
        details: r.get(2)?,
        version: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// One workflow, if it exists.
pub fn get(conn: &Connection, name: &str) -> Result<Option<Workflow>> {
    conn.prepare_cached(
        "SELECT name, status, details, version, updated_at FROM workflows WHERE name = ?1",
    )
    .and_then(|mut st| st.query_row([name], from_row).optional())
    .ctx("read workflow")
}

/// Sets a workflow's status, creating it at version 1 or bumping its version.
pub fn set(conn: &Connection, c: &WorkflowChange) -> Result<Workflow> {
    c.validate().map_err(StoreError::invalid)?;
    let current = get(conn, &c.name)?.map_or(0, |w| w.version);
    if let Some(expected) = c.expect_version {
        if expected != current {
            return Err(StoreError::conflict(format!(
                "workflow {:?} is at version {current}, not {expected}: someone changed it since you read it; reload and retry",
                c.name
            )));
        }
    }
    conn.prepare_cached(
        "INSERT INTO workflows (name, status, details, version, updated_at)
         VALUES (?1, ?2, ?3, 1, ?4)
         ON CONFLICT (name) DO UPDATE SET
             status = excluded.status, details = coalesce(excluded.details, workflows.details),
             version = workflows.version + 1, updated_at = excluded.updated_at",
    )
    .and_then(|mut st| st.execute((&c.name, c.status.trim(), &c.details, model::now_utc())))
    .ctx("set workflow")?;
    get(conn, &c.name)?.ok_or_else(|| StoreError::failed("set workflow: row vanished"))
}

/// Every workflow, by name.
pub fn list(conn: &Connection) -> Result<Vec<Workflow>> {
    let mut st = conn
        .prepare_cached(
            "SELECT name, status, details, version, updated_at FROM workflows ORDER BY name",
        )
        .ctx("list workflows")?;
    let rows = st.query_map([], from_row).ctx("list workflows")?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .ctx("list workflows")
}
