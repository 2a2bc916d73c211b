//! The HTTP client for Qdrant's REST API, on ureq: http, or https verified against the system's
//! CAs or a `ca_file` (rustls, the same configuration as the PostgreSQL mirror's TLS); every
//! address a host name resolves to is tried in turn; a timeout on connecting and on the whole
//! request; no redirects followed; an answer larger than [`MAX_ANSWER`], cut short, or a
//! success that is not JSON is an error, never a success; an optional `api-key` header. The only code that talks to Qdrant
//! over the network.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Largest answer read (a search answer is a few kilobytes).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why a request failed before a whole HTTP answer came back.
#[derive(Debug, Clone)]
pub enum Unreachable {
    /// Not reached, refused, timed out, cut short.
    Down(String),
    /// The TLS handshake failed: a certificate that does not verify, or no TLS on the other
    /// side (a setup problem, not an outage).
    Tls(String),
}

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
            b = b.tls_config(crate::tls::client_config(ca_file, "remote.qdrant.ca_file")?);
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
            Err(ureq::Error::Transport(t)) => {
                let words = crate::error::with_causes(&t);
                return Err(if is_tls(&t, url.starts_with("https:")) {
                    Unreachable::Tls(words)
                } else {
                    Unreachable::Down(words)
                });
            }
        };
        let status = resp.status();
        let mut data = Vec::new();
        resp.into_reader()
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut data)
            .map_err(|e| Unreachable::Down(format!("{url}: the answer was cut short: {e}")))?;
        if data.len() as u64 > MAX_ANSWER {
            return Err(Unreachable::Down(format!(
                "{url}: the answer is larger than {} MiB",
                MAX_ANSWER / (1024 * 1024)
            )));
        }
        let value = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(_) if data.iter().all(|b| b.is_ascii_whitespace()) => serde_json::Value::Null,
            // Qdrant answers success in JSON: anything else is a broken or cut-short answer.
            Err(e) if (200..300).contains(&status) => {
                return Err(Unreachable::Down(format!(
                    "{url}: answered {status} with a body that is not JSON (cut short?): {e}"
                )))
            }
            Err(_) => {
                serde_json::Value::String(crate::model::clip(String::from_utf8_lossy(&data).trim()))
            }
        };
        Ok((status, value))
    }
}

/// Whether a transport error happened in the TLS handshake: rustls refused (a certificate),
/// or, on an https URL, the other side broke off the connection while it was being set up
/// (it does not speak TLS on that port).
fn is_tls(t: &ureq::Transport, https: bool) -> bool {
    if super::causes::tls_refused(t) {
        return true;
    }
    https
        && t.kind() == ureq::ErrorKind::ConnectionFailed
        && super::causes::io_kind(t).is_some_and(super::causes::broke_off_handshake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A one-shot server on loopback that reads a request head and answers `answer` bytes.
    fn answering(answer: Vec<u8>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut s, &mut buf);
                let _ = s.write_all(&answer);
            }
        });
        format!("http://{addr}")
    }

    fn ask(answer: &[u8]) -> Result<(u16, serde_json::Value), Unreachable> {
        let url = answering(answer.to_vec());
        Client::new(&url, None, Duration::from_secs(5))
            .unwrap()
            .request("GET", "/collections/x", None, None)
    }

    // Regressions of the hand-written client: a truncated answer passed as success, a hostile
    // chunk size could overflow, header lines were unbounded.
    #[test]
    fn broken_and_hostile_answers_are_errors() {
        let ok = ask(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n").unwrap();
        assert_eq!(ok, (200, serde_json::json!({"a": 1})));
        let plain =
            ask(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\n\r\nMust provide.").unwrap();
        assert_eq!(plain, (401, serde_json::json!("Must provide.")));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"result\":"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\nxx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":",
            b"not http at all\r\n\r\n",
            b"",
        ] {
            assert!(ask(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut flood = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..20_000 {
            flood.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        flood.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
        assert!(ask(&flood).is_err(), "a flood of header lines is refused");
        let mut huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_ANSWER + 10
        )
        .into_bytes();
        huge.extend(std::iter::repeat_n(b' ', (MAX_ANSWER + 10) as usize));
        assert!(matches!(ask(&huge), Err(Unreachable::Down(m)) if m.contains("larger than")));
    }

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
