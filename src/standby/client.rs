//! The HTTP client of the replication routes: a standby asking its primary for a base and
//! records, a promoted box fencing its old primary, a primary asking its standbys which epoch
//! they are in, `ora promote` asking the local server. Every answer is read to a bounded size
//! and checked (the feed by [`super::wire::decode`]); a status the client does not expect is an
//! error that says what the other box answered. Holds no state beyond the connection pool.

use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::base::{BaseInfo, CHUNK};
use super::error::{StandbyError, StandbyKind};
use super::wire;
use crate::store::capture::Record;

/// JSON answers larger than this are refused.
const MAX_JSON: u64 = 1 << 20;

/// Who is asking (sent with every poll, so the primary can list its standbys).
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub url: String,
}

/// What a primary answered to a poll.
#[derive(Debug)]
pub enum Polled {
    Records {
        records: Vec<Record>,
        primary_seq: i64,
        epoch: i64,
    },
    /// The position is no longer kept there.
    Gone(String),
    /// The position is not in the primary's history.
    Diverged(String),
    /// The other box is not a primary of this lineage any more (fenced, or a standby).
    NotPrimary(String),
}

/// The answer of `/replication/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteStatus {
    pub role: String,
    pub epoch: i64,
    pub seq: i64,
    pub database_id: String,
    #[serde(default)]
    pub primary_url: String,
    #[serde(default)]
    pub fenced: String,
}

/// The headers of an answer the feed reads.
struct Heads {
    primary_seq: Option<String>,
    epoch: Option<String>,
}

/// A client of one other box.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    code: String,
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> StandbyError {
    StandbyError::new(StandbyKind::Unreachable, format!("{url}: {e}"))
}

impl Client {
    /// A client of the box at `base` (`http://host:port`), waiting at most `timeout` for an
    /// answer (a long poll's wait comes on top).
    pub fn new(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
        trust: &crate::tls::Trust,
    ) -> Result<Client, StandbyError> {
        let b = base.trim_end_matches('/');
        if !(b.starts_with("http://") || b.starts_with("https://")) || b.len() > 2_000 {
            return Err(StandbyError::new(
                StandbyKind::Refused,
                format!(
                    "{:?} is not an http:// or https:// address",
                    crate::model::clip(b)
                ),
            ));
        }
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirects(0);
        if b.starts_with("https://") {
            let config = trust
                .config()
                .map_err(|e| StandbyError::new(StandbyKind::Refused, e))?;
            agent = agent.tls_config(config);
        }
        let agent = agent.build();
        Ok(Client {
            agent,
            base: b.to_string(),
            token: token.map(str::to_string),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: &str, path: &str, timeout: Duration) -> ureq::Request {
        let mut r = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    /// Sends `r`; answers with the status and the body (at most `max` bytes).
    fn send(
        &self,
        r: ureq::Request,
        body: Option<&serde_json::Value>,
        max: u64,
    ) -> Result<(u16, Vec<u8>, Heads), StandbyError> {
        let sent = match body {
            Some(b) => r
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => r.call(),
        };
        let resp = match sent {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return Err(unreachable(&self.base, crate::error::with_causes(&t)))
            }
        };
        let status = resp.status();
        let head = Heads {
            primary_seq: resp.header("X-Ora-Primary-Seq").map(str::to_string),
            epoch: resp.header("X-Ora-Epoch").map(str::to_string),
        };
        let mut data = Vec::new();
        resp.into_reader()
            .take(max.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| unreachable(&self.base, format!("the answer was cut short: {e}")))?;
        if data.len() as u64 > max {
            return Err(StandbyError::new(
                StandbyKind::Damaged,
                format!("{}: the answer is larger than {max} bytes", self.base),
            ));
        }
        Ok((status, data, head))
    }

    /// The error for an answer with an unexpected status.
    fn refusal(&self, status: u16, data: &[u8]) -> StandbyError {
        let said = serde_json::from_slice::<ErrorBody>(data)
            .map(|b| format!("{} ({})", b.error, b.code))
            .unwrap_or_else(|_| crate::model::clip(String::from_utf8_lossy(data).trim()));
        let kind = match status {
            401 | 403 => StandbyKind::Refused,
            409 | 410 => StandbyKind::NeedsBase,
            _ => StandbyKind::Unreachable,
        };
        StandbyError::new(kind, format!("{} answered {status}: {said}", self.base))
    }

    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, StandbyError> {
        let r = self.request(method, path, Duration::from_secs(30));
        let (status, data, _) = self.send(r, body, MAX_JSON)?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(status, &data));
        }
        serde_json::from_slice(&data).map_err(|e| {
            StandbyError::new(
                StandbyKind::Damaged,
                format!("{}{path}: the answer is not what ora sends: {e}", self.base),
            )
        })
    }

    /// Asks for the records after `after` (whose hash is `hash`), waiting up to `wait`.
    pub fn poll(
        &self,
        after: i64,
        hash: &[u8; 32],
        epoch: i64,
        wait: Duration,
        me: &Me,
    ) -> Result<Polled, StandbyError> {
        let path = format!(
            "/replication/records?after={after}&hash={}&wait_ms={}",
            crate::fsutil::hex(hash),
            wait.as_millis()
        );
        let r = self
            .request("GET", &path, wait + Duration::from_secs(15))
            .set("X-Ora-Standby", &me.name)
            .set("X-Ora-Standby-Url", &me.url)
            .set("X-Ora-Epoch", &epoch.to_string());
        let max = u64::try_from(wire::MAX_BATCH).unwrap_or(u64::MAX);
        let (status, data, head) = self.send(r, None, max)?;
        let code = || {
            serde_json::from_slice::<ErrorBody>(&data)
                .map(|b| (b.code, b.error))
                .unwrap_or_default()
        };
        match status {
            200 => {
                let records = wire::decode(&data).map_err(|e| {
                    StandbyError::new(StandbyKind::Damaged, e.to_string()).with_source(e)
                })?;
                let number = |h: &str| {
                    let v = if h == "X-Ora-Epoch" {
                        &head.epoch
                    } else {
                        &head.primary_seq
                    };
                    v.as_deref()
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .ok_or_else(|| {
                            StandbyError::new(
                                StandbyKind::Damaged,
                                format!("{}: the feed's answer has no {h} header", self.base),
                            )
                        })
                };
                Ok(Polled::Records {
                    records,
                    primary_seq: number("X-Ora-Primary-Seq")?,
                    epoch: number("X-Ora-Epoch")?,
                })
            }
            410 => Ok(Polled::Gone(code().1)),
            409 if code().0 == "diverged" => Ok(Polled::Diverged(code().1)),
            503 if code().0 == "not_primary" => Ok(Polled::NotPrimary(code().1)),
            _ => Err(self.refusal(status, &data)),
        }
    }

    /// Asks the primary for a new base.
    pub fn new_base(&self) -> Result<BaseInfo, StandbyError> {
        self.json("POST", "/replication/base", Some(&serde_json::json!({})))
    }

    /// A piece of base `id` from `offset`.
    pub fn chunk(&self, id: &str, offset: u64) -> Result<Vec<u8>, StandbyError> {
        let path = format!("/replication/base/{id}?offset={offset}");
        let r = self.request("GET", &path, Duration::from_secs(120));
        let (status, data, _) = self.send(r, None, CHUNK)?;
        if status != 200 {
            return Err(self.refusal(status, &data));
        }
        Ok(data)
    }

    /// Tells the primary the base is no longer needed.
    pub fn base_done(&self, id: &str) {
        let r = self.request(
            "DELETE",
            &format!("/replication/base/{id}"),
            Duration::from_secs(10),
        );
        let _ = self.send(r, None, MAX_JSON);
    }

    /// The other box's role and position.
    pub fn status(&self) -> Result<RemoteStatus, StandbyError> {
        self.json("GET", "/replication/status", None)
    }

    /// Tells an old primary that epoch `epoch` was promoted at `by`.
    pub fn fence(&self, epoch: i64, by: &str) -> Result<RemoteStatus, StandbyError> {
        self.json(
            "POST",
            "/replication/fence",
            Some(&serde_json::json!({ "epoch": epoch, "by": by })),
        )
    }

    /// Asks a standby's server to promote itself.
    pub fn promote(&self) -> Result<RemoteStatus, StandbyError> {
        self.json("POST", "/replication/promote", Some(&serde_json::json!({})))
    }
}
