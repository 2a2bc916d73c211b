//! `[standby]` and its environment variables (`ORA_STANDBY_TOKEN`, `ORA_STANDBY_MODE`): the
//! section as written, and [`from_section`], which checks every key into the standby's typed
//! settings (environment over file over default). Reads no network.

use std::time::Duration;

use serde::Deserialize;

use super::{env, ranged};
use crate::error::{Error, Result};
use crate::standby::{self, Mode, OnTimeout, StandbyConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StandbySection {
    token: Option<String>,
    name: Option<String>,
    advertise: Option<String>,
    mode: Option<String>,
    sync_timeout_ms: Option<u64>,
    on_timeout: Option<String>,
    keep_records: Option<u64>,
    tls_pins: Option<Vec<String>>,
    tls_ca: Option<std::path::PathBuf>,
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "standby".into())
}

/// `tls_pins` and `tls_ca`.
fn trust(sec: &StandbySection) -> Result<crate::tls::Trust> {
    let pins = sec
        .tls_pins
        .iter()
        .flatten()
        .map(|p| {
            crate::tls::parse_pin(p)
                .map_err(|e| Error::config(format!("config: standby.tls_pins: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::tls::Trust::new(pins, sec.tls_ca.clone()))
}

/// Checks `[standby]` into [`StandbyConfig`].
pub(crate) fn from_section(sec: &StandbySection) -> Result<StandbyConfig> {
    let bad = |m: String| Error::config(format!("config: standby.{m}"));
    let token = env("ORA_STANDBY_TOKEN").or_else(|| sec.token.clone());
    if let Some(t) = &token {
        if t.len() < 16 || t.len() > 4096 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "token must be 16-4096 printable ASCII characters without spaces".into(),
            ));
        }
    }
    let name = sec.name.clone().unwrap_or_else(host_name);
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad(format!(
            "name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
            crate::model::clip(&name)
        )));
    }
    if let Some(a) = &sec.advertise {
        if !(a.starts_with("http://") || a.starts_with("https://")) || a.len() > 2_000 {
            return Err(bad(format!(
                "advertise {:?} must be an http:// or https:// address",
                crate::model::clip(a)
            )));
        }
    }
    let mode = match env("ORA_STANDBY_MODE")
        .or_else(|| sec.mode.clone())
        .as_deref()
    {
        None | Some("async") => Mode::Async,
        Some("sync") => Mode::Sync,
        Some(m) => {
            return Err(bad(format!(
                "mode must be async or sync, got {:?}",
                crate::model::clip(m)
            )))
        }
    };
    let on_timeout = match sec.on_timeout.as_deref() {
        None | Some("refuse") => OnTimeout::Refuse,
        Some("async") => OnTimeout::Async,
        Some(m) => {
            return Err(bad(format!(
                "on_timeout must be refuse or async, got {:?}",
                crate::model::clip(m)
            )))
        }
    };
    Ok(StandbyConfig {
        trust: trust(sec)?,
        token,
        name,
        advertise: sec
            .advertise
            .clone()
            .map(|a| a.trim_end_matches('/').to_string()),
        mode,
        sync_timeout: Duration::from_millis(ranged(
            "standby.sync_timeout_ms",
            sec.sync_timeout_ms,
            standby::DEFAULT_SYNC_TIMEOUT_MS,
            50..=600_000,
        )?),
        on_timeout,
        keep_records: ranged(
            "standby.keep_records",
            sec.keep_records,
            standby::DEFAULT_KEEP_RECORDS,
            100..=100_000_000,
        )?,
    })
}
