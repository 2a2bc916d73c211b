//! Property tests of what ora still parses itself once hyper has framed a request: the
//! request target (segments and query, percent-decoded) and the Host header. Arbitrary input
//! never panics, what is accepted keeps the promises the routes rely on, and what a client
//! encodes decodes back to exactly what it meant.

use proptest::prelude::*;

use super::*;
use crate::web::http::Request;

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_host(values: &[String]) -> Request {
    Request {
        method: "GET".into(),
        target: "/".into(),
        headers: values
            .iter()
            .map(|v| ("Host".to_string(), v.clone()))
            .collect(),
        body: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    // Any target, bytes of every kind and percent signs in every position: an answer, never
    // a panic; an accepted one has no empty, "." or ".." segment and no control character.
    #[test]
    fn any_target_is_refused_or_safe(url in "(/|%|[0-9a-fA-F]|\\.|\\?|&|=|\\+|[\\x00-\\x7f]|\\PC){0,300}") {
        if let Ok(t) = target(&url) {
            for s in &t.segments {
                prop_assert!(!s.is_empty());
                prop_assert!(s != "." && s != "..");
                prop_assert!(!s.chars().any(char::is_control));
                prop_assert!(!(s.contains('/') && s.contains("..")));
            }
            prop_assert!(t.query.len() <= 50);
        }
    }

    // Segments and query pairs a client encodes come back exactly.
    #[test]
    fn encoded_targets_decode_to_what_was_meant(
        segs in proptest::collection::vec("[^\\x00-\\x1f\\x7f]{1,20}", 1..6),
        pairs in proptest::collection::vec(("[a-z_]{1,8}", "[^\\x00-\\x1f\\x7f]{0,20}"), 0..6),
    ) {
        prop_assume!(segs.iter().all(|s| s != "." && s != ".." && !(s.contains('/') && s.contains(".."))));
        prop_assume!(segs.iter().all(|s| !s.chars().any(char::is_control)));
        let path: String = segs.iter().map(|s| format!("/{}", encode(s))).collect();
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let url = if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) };
        prop_assume!(url.len() <= 4096);
        let t = target(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(&t.segments, &segs);
        prop_assert_eq!(&t.query, &pairs);
    }

    // A Host header of any shape: an answer, never a panic; a name is served only when it is
    // loopback, an IP address of this server, or listed; and never with two Host headers.
    #[test]
    fn any_host_is_refused_unless_it_names_this_server(value in "\\PC{0,80}", second in proptest::option::of("\\PC{0,20}")) {
        let bind: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let listed = vec!["ora.warehouse.lan".to_string()];
        let mut values = vec![value.clone()];
        values.extend(second.clone());
        let verdict = check_host(&with_host(&values), bind, &listed);
        if second.is_some() {
            prop_assert!(verdict.is_err());
        } else if verdict.is_ok() {
            let host = host_of(&value).unwrap_or_default();
            let ok = host == "localhost"
                || host.ends_with(".localhost")
                || listed.contains(&host)
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            prop_assert!(ok, "{value:?} was served");
        }
    }
}
