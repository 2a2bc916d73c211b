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
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<String> {
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

impl Target {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

/// Parses JSON: syntax errors are 400, well-formed JSON of the wrong shape is 422; both in
/// words that name the field ("quantity must be a whole number, got the text \"5\"").
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    // Every body of the API is an object; serde would read a list positionally as one.
    if !matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | None
    ) {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(syntax_error)?;
        let got = match v {
            serde_json::Value::Array(_) => "a list",
            serde_json::Value::String(_) => "text",
            serde_json::Value::Bool(_) => "true or false",
            serde_json::Value::Null => "null",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(Fault::invalid(format!(
            "the body must be a JSON object ({{\"field\": value, ...}}), got {got}"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => Fault::invalid(plain(&path, &inner)),
            _ => syntax_error(inner),
        }
    })?;
    de.end().map_err(syntax_error)?;
    Ok(v)
}

/// A body that is not JSON at all (400), in words with its position.
fn syntax_error(e: serde_json::Error) -> Fault {
    if e.classify() == serde_json::error::Category::Eof {
        return Fault::usage(format!(
            "the body is not valid JSON: it ends too early (line {}, column {})",
            e.line(),
            e.column()
        ));
    }
    Fault::usage(format!(
        "the body is not valid JSON: {} (line {}, column {})",
        syntax(&e),
        e.line(),
        e.column()
    ))
}

/// [`parse`] for a value already read as JSON.
pub fn shape<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Fault::invalid(plain(&path, e.inner()))
    })
}

/// serde_json's message without its position.
fn bare(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}

fn syntax(e: &serde_json::Error) -> String {
    let m = bare(e);
    if m.starts_with("expected ident") || m.starts_with("expected value") {
        "a value (a number, \"text\", true, false, null, [..] or {..}) was expected".into()
    } else if m.contains("trailing characters") {
        "there is more after the JSON value".into()
    } else if m.contains("control character") {
        "a string holds a raw control character (escape it)".into()
    } else {
        m.replace('`', "")
    }
}

/// What serde calls a type, in words.
fn kind_words(t: &str) -> String {
    let t = t.trim();
    match t {
        "i64" | "i32" | "u64" | "u32" | "usize" | "u16" | "u8" | "an integer" => {
            "a whole number".into()
        }
        "f64" | "f32" | "a number" => "a number".into(),
        "a string" | "a borrowed string" | "string" => "text".into(),
        "a boolean" | "boolean" => "true or false".into(),
        "a sequence" | "sequence" => "a list".into(),
        "a map" | "map" => "an object".into(),
        "null" | "unit" => "null".into(),
        t if t.starts_with("struct ") => "an object".into(),
        t if t.starts_with("string ") => format!("the text {}", &t["string ".len()..]),
        t if t.starts_with("integer ") => {
            format!("the number {}", t["integer ".len()..].trim_matches('`'))
        }
        t if t.starts_with("floating point ") => {
            format!(
                "the number {}",
                t["floating point ".len()..].trim_matches('`')
            )
        }
        t if t.starts_with("boolean ") => t["boolean ".len()..].trim_matches('`').to_string(),
        t => t.replace('`', ""),
    }
}

/// A shape error in words, naming the field by its path.
fn plain(path: &str, e: &serde_json::Error) -> String {
    let m = bare(e);
    let field = if path.is_empty() || path == "." {
        "the body".to_string()
    } else {
        path.to_string()
    };
    let within = |name: &str| {
        if field == "the body" {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    let between = |s: &str, a: &str| s.split_once(a).map(|(_, r)| r.to_string());
    if let Some(rest) = m
        .strip_prefix("invalid type: ")
        .or_else(|| m.strip_prefix("invalid value: "))
    {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!(
                "{field} must be {}, got {}",
                kind_words(want),
                kind_words(got)
            );
        }
    }
    if let Some(name) = between(&m, "missing field `") {
        return format!("{} is missing", within(name.trim_end_matches('`')));
    }
    if let Some(rest) = between(&m, "unknown field `") {
        // The path already ends at the unknown field.
        let (_, known) = rest.split_once('`').unwrap_or((rest.as_str(), ""));
        let known = known
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .replace('`', "");
        let known = if known.starts_with(", there are no fields") || known.is_empty() {
            String::new()
        } else {
            format!("; the fields are {known}")
        };
        return format!("{field} is not a field here{known}");
    }
    if let Some(rest) = m.strip_prefix("invalid length ") {
        return format!(
            "{field} has the wrong number of items ({})",
            rest.replace('`', "")
        );
    }
    format!("{field}: {}", m.replace('`', ""))
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

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        sku: String,
        quantity: i64,
        #[serde(rename = "type")]
        kind: crate::model::TxType,
    }

    fn message(body: &str) -> String {
        parse::<Shape>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn json_errors_are_in_words_and_name_the_field() {
        let m = message(r#"{"sku":"A-1","quantity":"5","type":"ship"}"#);
        assert_eq!(m, "quantity must be a whole number, got the text \"5\"");
        let m = message(r#"{"sku":"A-1","quantity":5,"type":"steal"}"#);
        assert!(
            m.starts_with("type: unknown movement type \"steal\""),
            "{m}"
        );
        let m = message(r#"{"sku":"A-1","type":"ship"}"#);
        assert_eq!(m, "quantity is missing");
        let m = message(r#"{"sku":"A-1","quantity":1,"type":"ship","colour":1}"#);
        assert!(
            m.starts_with("colour is not a field here; the fields are sku, quantity, type"),
            "{m}"
        );
        let m = message("{x}");
        assert!(
            m.starts_with("the body is not valid JSON:") && m.contains("line 1, column 2"),
            "{m}"
        );
        let m = message(r#"{"sku":"A-1""#);
        assert!(m.contains("ends too early"), "{m}");
        let m = message(r#"{"sku":"A-1","quantity":1,"type":"ship"} x"#);
        assert!(m.contains("more after the JSON value"), "{m}");
        for (typed, want) in [
            ("ship", "Ship"),
            ("RECEIVE", "Receive"),
            ("Adjust Up", "Adjust Up"),
            ("adjust_down", "Adjust Down"),
        ] {
            let s: Shape =
                parse(format!(r#"{{"sku":"A-1","quantity":1,"type":"{typed}"}}"#).as_bytes())
                    .unwrap();
            assert_eq!(s.kind.as_str(), want);
        }
        for m in [
            message(r#"{"sku":1,"quantity":1,"type":"ship"}"#),
            message("[1]"),
        ] {
            assert!(
                !m.contains("expected") && !m.contains('`'),
                "serde's words leak: {m}"
            );
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
