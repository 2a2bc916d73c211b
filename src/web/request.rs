//! Checking a request: path segments percent-decoded and checked, the query string parsed,
//! bearer-token authorisation compared in constant time, the content type checked. Every
//! refusal is an [`Error`] with the right status; nothing here panics on what a client sends,
//! and no token is ever logged.

use super::http::Request;
use crate::config::NamedToken;

use super::fault::{Fault, Result};

/// A parsed request line.
pub struct Target {
    /// Decoded path segments (no empty ones).
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one URL component (`+` stays `+` in paths, is a space in queries).
fn percent_decode(s: &str, plus_is_space: bool) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => return Err(Fault::usage("malformed percent-encoding in the URL")),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Fault::usage("the URL is not valid UTF-8"))
}

/// Splits and decodes a request URL. Refuses `.`/`..` segments and control characters.
pub fn target(url: &str) -> Result<Target> {
    if url.len() > 4096 {
        return Err(Fault::usage("the URL is longer than 4096 bytes"));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw, false)?;
        if seg == "." || seg == ".." || seg.contains('/') && seg.contains("..") {
            return Err(Fault::usage("path traversal is not allowed"));
        }
        if seg.chars().any(char::is_control) {
            return Err(Fault::usage("control characters in the URL"));
        }
        segments.push(seg);
    }
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    if pairs.len() > 50 {
        return Err(Fault::usage("too many query parameters"));
    }
    Ok(Target {
        segments,
        query: pairs,
    })
}

/// A yes/no query parameter: `1`, `true`, `yes` or `0`, `false`, `no` (absent: no).
pub fn flag(t: &Target, name: &str) -> Result<bool> {
    match t.param(name) {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes" | "") => Ok(true),
        Some(v) => Err(Fault::invalid(format!(
            "{name} must be 1, true or yes (or 0, false, no), got {:?}",
            crate::model::clip(v)
        ))),
    }
}

impl Target {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Checks `Authorization: Bearer TOKEN` against the configured tokens and answers with the
/// name the write is recorded under (every token is compared, so the time says nothing about
/// which one matched). With no token configured, writes are open and recorded as `api`.
pub fn authorize<'a>(req: &Request, tokens: &'a [NamedToken]) -> Result<&'a str> {
    if tokens.is_empty() {
        return Ok(crate::config::SINGLE_TOKEN_NAME);
    }
    let given = req
        .header("Authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(g) = given else {
        return Err(Fault::Unauthorized(
            "this server needs `Authorization: Bearer TOKEN` for writes".into(),
        ));
    };
    let mut found = None;
    for t in tokens {
        if constant_time_eq(g.as_bytes(), t.token.as_bytes()) && found.is_none() {
            found = Some(t.name.as_str());
        }
    }
    found.ok_or_else(|| Fault::Unauthorized("the bearer token is wrong".into()))
}

/// The host a `Host` header names, lower-case, without its port (`[::1]:8080` -> `::1`).
fn host_of(value: &str) -> Option<String> {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        if !(tail.is_empty()
            || tail
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        h
    } else {
        match v.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => v,
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Checks the `Host` header against the names this server answers to: loopback names and
/// addresses, the address it is bound to (any IP address when bound to all), and the names in
/// `[server] hosts`. A web page cannot then reach the API through a name of its own that
/// resolves to this box (DNS rebinding). Exactly one Host header is required.
pub fn check_host(req: &Request, bind: std::net::SocketAddr, hosts: &[String]) -> Result<()> {
    let mut given = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("host"));
    let (Some((_, value)), None) = (given.next(), given.next()) else {
        return Err(Fault::usage("a request must carry exactly one Host header"));
    };
    let Some(host) = host_of(value) else {
        return Err(Fault::usage(format!(
            "the Host header {:?} is malformed",
            crate::model::clip(value)
        )));
    };
    let ok = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bind.ip() || bind.ip().is_unspecified(),
        Err(_) => host == "localhost" || host.ends_with(".localhost") || hosts.contains(&host),
    };
    if ok {
        Ok(())
    } else {
        Err(Fault::Misdirected(format!(
            "this server does not answer to the host name {:?}; add it to [server] hosts if it is yours",
            crate::model::clip(&host)
        )))
    }
}

/// Whether the method changes data.
pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The JSON body of a request: the content type must be JSON and the body non-empty (its size
/// was limited while it was read).
pub fn json_body(req: &Request) -> Result<&[u8]> {
    let ct = req.header("Content-Type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Fault::UnsupportedMedia(format!(
            "the body must be application/json, not {:?}",
            crate::model::clip(ct)
        )));
    }
    if req.body.is_empty() {
        return Err(Fault::usage(
            "the request body is empty; send a JSON object",
        ));
    }
    Ok(&req.body)
}

/// Parses a JSON body into `T`: syntax errors are 400, well-formed JSON of the wrong shape is
/// 422; both in words that name the place or the field ("quantity must be a whole number, got
/// the text \"5\"").
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    super::body::shape(super::body::object(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_decode_and_refuse_traversal() {
        let t = target("/api/inventory/A%2D1?low=1&x=a+b").unwrap();
        assert_eq!(t.segments, ["api", "inventory", "A-1"]);
        assert_eq!(t.param("x"), Some("a b"));
        for bad in [
            "/api/../etc/passwd",
            "/api/%2e%2e/x",
            "/a/%zz",
            "/a/%ff%fe",
            "/a/%00",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_in_constant_time_and_correctly() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-124"));
        assert!(!constant_time_eq(b"short", b"shorter"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}

#[cfg(test)]
#[path = "request_props.rs"]
mod props;
