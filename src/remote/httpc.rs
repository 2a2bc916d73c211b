//! A minimal HTTP/1.1 JSON client for Qdrant's REST API: one request per connection, a
//! timeout on connect and on every read, Content-Length or chunked answers, an optional
//! `api-key` header. Plain http only (put TLS in front of Qdrant with a local proxy).
//! The only code that talks to Qdrant over the network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest answer read (a search answer is a few kilobytes).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Why a request failed before an HTTP answer came back.
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

/// Splits `http://host:port[/prefix]` into (host:port, prefix).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return None;
    }
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Some((hostport, prefix.to_string()))
}

/// Sends one request; returns (status, parsed JSON or Null).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), Unreachable> {
    let (hostport, prefix) =
        split_url(base).ok_or_else(|| Unreachable(format!("bad URL {base:?}")))?;
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| Unreachable(format!("cannot resolve {hostport}: {e}")))?
        .next()
        .ok_or_else(|| Unreachable(format!("cannot resolve {hostport}")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| Unreachable(format!("cannot connect to {hostport}: {e}")))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| Unreachable(e.to_string()))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| Unreachable(e.to_string()))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {prefix}{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: application/json\r\n");
    if body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    if let Some(k) = api_key {
        head.push_str(&format!("api-key: {k}\r\n"));
    }
    head.push_str("\r\n");
    let io = |e: std::io::Error| Unreachable(format!("{hostport}: {e}"));
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(payload.as_bytes()).map_err(io)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Unreachable(format!("{hostport} did not answer HTTP")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line).map_err(io)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut data = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Unreachable(format!("{hostport}: malformed chunk")))?;
            if n == 0 || data.len() + n > MAX_ANSWER {
                break;
            }
            let start = data.len();
            data.resize(start + n, 0);
            r.read_exact(&mut data[start..]).map_err(io)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(io)?;
        }
    } else if let Some(n) = length {
        data.resize(n.min(MAX_ANSWER), 0);
        r.read_exact(&mut data).map_err(io)?;
    } else {
        r.take(MAX_ANSWER as u64)
            .read_to_end(&mut data)
            .map_err(io)?;
    }
    // An answer that is not JSON (a plain-text 401, a proxy's HTML 404) is kept as its text
    // (clipped), so the error can say what the other side said.
    let value = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(_) if data.iter().all(|b| b.is_ascii_whitespace()) => serde_json::Value::Null,
        Err(_) => {
            serde_json::Value::String(crate::model::clip(String::from_utf8_lossy(&data).trim()))
        }
    };
    Ok((status, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_prefix() {
        assert_eq!(
            split_url("http://q:6333"),
            Some(("q:6333".into(), "".into()))
        );
        assert_eq!(
            split_url("http://q/proxy/"),
            Some(("q:80".into(), "/proxy".into()))
        );
        assert_eq!(split_url("https://q:6333"), None);
        assert_eq!(split_url("http://"), None);
    }
}
