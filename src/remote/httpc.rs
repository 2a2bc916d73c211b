//! The HTTP client for Qdrant's REST API, on ureq: http, or https verified against the system's
//! CAs or a `ca_file` (rustls, the same configuration as the PostgreSQL mirror's TLS); every
//! address a host name resolves to is tried in turn; a timeout on connecting and on the whole
//! request; no redirects followed; an answer larger than [`MAX_ANSWER`] or cut short is an
//! error, never a success; an optional `api-key` header. The only code that talks to Qdrant
//! over the network.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Largest answer read (a search answer is a few kilobytes).
pub const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why a request failed before a whole HTTP answer came back.
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

/// Checks a Qdrant base URL: `http://` or `https://`, a host, an optional port and path
/// prefix, nothing else. The error is a sentence for the operator.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{url:?} names no host"));
    }
    if rest.contains(['?', '#', ' ', '@']) {
        return Err(format!(
            "{url:?} must be scheme://host[:port][/prefix], without user, query or spaces"
        ));
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{url:?} has a bad port {port:?}"));
        }
    }
    Ok(())
}

/// A client for one Qdrant base URL (`http[s]://host:port[/prefix]`).
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// A client for `base`; `ca_file` is the CA to trust for https (else the system's).
    pub fn new(base: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Client, String> {
        check_url(base).map_err(|e| format!("remote.qdrant.url {e}"))?;
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .redirects(0)
            .max_idle_connections_per_host(4);
        if base.starts_with("https://") {
            b = b.tls_config(super::tls::client_config(ca_file, "remote.qdrant.ca_file")?);
        }
        Ok(Client {
            agent: b.build(),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Sends one request; returns (status, the answer as JSON; a non-JSON answer, such as
    /// Qdrant's plain-text 401, as a clipped JSON string; `Null` when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        api_key: Option<&str>,
    ) -> Result<(u16, serde_json::Value), Unreachable> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .agent
            .request(method, &url)
            .set("Accept", "application/json");
        if let Some(k) = api_key {
            req = req.set("api-key", k);
        }
        let sent = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match sent {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(Unreachable(transport_words(&t))),
        };
        let status = resp.status();
        let mut data = Vec::new();
        resp.into_reader()
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut data)
            .map_err(|e| Unreachable(format!("{url}: the answer was cut short: {e}")))?;
        if data.len() as u64 > MAX_ANSWER {
            return Err(Unreachable(format!(
                "{url}: the answer is larger than {} MiB",
                MAX_ANSWER / (1024 * 1024)
            )));
        }
        let value = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(_) if data.iter().all(|b| b.is_ascii_whitespace()) => serde_json::Value::Null,
            Err(_) => serde_json::Value::String(crate::model::clip(
                String::from_utf8_lossy(&data).trim(),
            )),
        };
        Ok((status, value))
    }
}

/// A transport error with its causes (a TLS failure says which check failed).
fn transport_words(t: &ureq::Transport) -> String {
    let mut msg = t.to_string();
    let mut cause = std::error::Error::source(t);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for ok in [
            "http://q:6333",
            "https://q.example.cloud:6333",
            "http://q/proxy/",
            "http://[::1]:6333",
            "https://q",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://q",
            "http://",
            "https://:6333",
            "http://q:0",
            "http://q:99999",
            "http://q:x",
            "http://user:pw@q:6333",
            "http://q:6333/?x=1",
            "q:6333",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
