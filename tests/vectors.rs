//! Client-supplied product vectors: stored through the CLI and the API (bad ones refused with
//! nothing changed), searched locally by exact scan, and sent to Qdrant (the stand-in) in
//! place of the built-in embedding when `vectors = "client"`: a product without a vector has no
//! point until it gets one, clearing a vector removes the point, renames keep the vector, and
//! a search through Qdrant answers like the local scan.

use ora::remote::qdrant::point_id;

use crate::qdrant_standin::Qdrant;
use crate::util::{call, http, query_i64, Rng, Sandbox, Server};

const DIMS: usize = 8;

/// A deterministic vector for `seed`.
fn vector(seed: u64) -> Vec<f32> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x100_0000_01B3));
    (0..DIMS)
        .map(|_| (rng.below(2001) as f32 - 1000.0) / 1000.0)
        .collect()
}

fn json_of(v: &[f32]) -> String {
    serde_json::to_string(v).unwrap()
}

fn client_config(s: &Sandbox, url: &str, size: usize) -> String {
    let cfg = s.path(&format!("client-{size}.toml"));
    std::fs::write(
        &cfg,
        format!("[remote]\nsite_id = \"wh-v\"\n\n[remote.qdrant]\nurl = {url:?}\ncollection = \"mine\"\nvectors = \"client\"\nvector_size = {size}\n"),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

fn stored(s: &Sandbox, sku: &str) -> Option<Vec<f32>> {
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    ora::store::vectors::point_source(&conn, sku)
        .unwrap()
        .and_then(|(_, v)| v)
}

// Vectors given on the command line are stored exactly; bad ones (wrong size for the site,
// not numbers, too large for f32, all zeros, empty, oversized, unknown sku, no input) are
// refused with exit 2 and leave the database as it was.
#[test]
fn cli_vectors_are_stored_exactly_and_bad_ones_change_nothing() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    s.ok(&["product", "add", "B-2", "Red gadget"]);
    let a = vector(1);
    s.ok(&["product", "vector", "A-1", "--values", &json_of(&a)]);
    assert_eq!(stored(&s, "A-1"), Some(a.clone()));
    let file = s.path("b2.json");
    let b = vector(2);
    std::fs::write(
        &file,
        serde_json::json!({ "vector": b }).to_string().as_bytes(),
    )
    .unwrap();
    s.ok(&["product", "vector", "B-2", "--file", file.to_str().unwrap()]);
    assert_eq!(stored(&s, "B-2"), Some(b));

    let before = s.snapshot();
    let huge = s.path("huge.json");
    std::fs::write(&huge, vec![b' '; 9 << 20]).unwrap();
    let too_many = format!("[{}]", vec!["1"; 65_537].join(","));
    let too_many_file = s.path("many.json");
    std::fs::write(&too_many_file, &too_many).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["A-1".into(), "--values".into(), "[1, 2, 3]".into()],
            "have 8 dimensions and this one has 3",
        ),
        (
            vec!["A-1".into(), "--values".into(), "[1, \"x\"]".into()],
            "not a number",
        ),
        (
            vec!["A-1".into(), "--values".into(), "[1e39, 0]".into()],
            "not a finite number",
        ),
        (
            vec!["A-1".into(), "--values".into(), "[0, 0, 0]".into()],
            "all zeros",
        ),
        (vec!["A-1".into(), "--values".into(), "[]".into()], "empty"),
        (
            vec!["A-1".into(), "--values".into(), "{\"v\": 1}".into()],
            "JSON array of numbers",
        ),
        (
            vec!["A-1".into(), "--values".into(), "[1, 2".into()],
            "not JSON",
        ),
        (
            vec!["A-1".into(), "--file".into(), huge.to_str().unwrap().into()],
            "larger than 8 MiB",
        ),
        (
            vec![
                "A-1".into(),
                "--file".into(),
                too_many_file.to_str().unwrap().into(),
            ],
            "the limit is 65536",
        ),
        (
            vec!["A-1".into(), "--file".into(), "/nonexistent/v.json".into()],
            "cannot read the vector file",
        ),
        (
            vec!["NOPE".into(), "--values".into(), json_of(&vector(3))],
            "unknown sku",
        ),
        (vec!["A-1".into()], "either --values"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["product", "vector"];
        all.extend(args.iter().map(String::as_str));
        let err = s.fails(&all, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
        crate::util::assert_clean_error(&err);
    }
    assert_eq!(
        s.snapshot(),
        before,
        "a refused vector changed the database"
    );
    assert_eq!(stored(&s, "A-1"), Some(a));

    // Clearing one, then all (which needs --yes).
    s.ok(&["product", "vector", "A-1", "--clear"]);
    assert_eq!(stored(&s, "A-1"), None);
    s.fails(&["product", "clear-vectors"], 2);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM product_vectors"), 1);
    s.ok(&["product", "clear-vectors", "--yes"]);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM product_vectors"), 0);
    // With every vector gone, another model's size is accepted.
    s.ok(&["product", "vector", "A-1", "--values", "[0.5, 0.5, 0.1]"]);
}

// The local vector search ranks by cosine similarity, exactly: each product's own vector
// finds it first; a query of the wrong size is refused.
#[test]
fn local_vector_search_finds_each_product_by_its_own_vector() {
    let s = Sandbox::new();
    for i in 0..40u64 {
        let sku = format!("V-{i:03}");
        s.ok(&["product", "add", &sku, &format!("Item {i}")]);
        s.ok(&["product", "vector", &sku, "--values", &json_of(&vector(i))]);
    }
    for i in [0u64, 7, 39] {
        // A slightly moved query still finds the product.
        let q: Vec<f32> = vector(i).iter().map(|x| x * 0.9 + 0.01).collect();
        let v = s.json(&["search", "--vector", &json_of(&q), "--limit", "3"]);
        assert_eq!(v["source"], "local");
        assert_eq!(v["hits"][0]["sku"], format!("V-{i:03}"), "{v}");
        let scores: Vec<f64> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
    let err = s.fails(&["search", "--vector", "[1, 2]"], 2);
    assert!(err.contains("has 2 dimensions"), "{err}");
    let err = s.fails(&["search", "--vector", "[0, 0]"], 2);
    assert!(err.contains("all zeros"), "{err}");
}

// The API: PUT stores, GET returns it, DELETE removes it; bad bodies get 4xx with a JSON
// error and change nothing; search answers GET ?q= and POST {text}|{vector}.
#[test]
fn api_vectors_and_search() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    s.ok(&["product", "add", "B-2", "Red gadget"]);
    let srv = Server::start(&s, &[]);
    let a = vector(11);
    let (st, v) = call(
        &srv.addr,
        "PUT",
        "/api/products/A-1/vector",
        None,
        Some(&serde_json::json!({ "vector": a })),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["dims"], DIMS);
    let (st, v) = call(&srv.addr, "GET", "/api/products/A-1/vector", None, None);
    assert_eq!(st, 200);
    let back: Vec<f32> = serde_json::from_value(v["vector"].clone()).unwrap();
    assert_eq!(back, a);
    let (st, _) = call(&srv.addr, "GET", "/api/products/B-2/vector", None, None);
    assert_eq!(st, 404);

    let before = s.snapshot();
    let bad: Vec<(serde_json::Value, u16, &str)> = vec![
        (serde_json::json!({ "vector": [1, 2] }), 422, "dimensions"),
        (
            serde_json::json!({ "vector": [1, "x"] }),
            422,
            "vector[1] must be a number, got the text \"x\"",
        ),
        (serde_json::json!({ "vector": [] }), 422, "empty"),
        (serde_json::json!({ "vector": [0.0, 0.0] }), 422, "zeros"),
        (serde_json::json!({ "vector": [1e39, 1] }), 422, "finite"),
        (
            serde_json::json!({ "vectors": [1] }),
            422,
            "vectors is not a field here",
        ),
        (
            serde_json::json!([1, 2]),
            422,
            "the body must be a JSON object",
        ),
    ];
    for (body, status, needle) in bad {
        let (st, v) = call(
            &srv.addr,
            "PUT",
            "/api/products/B-2/vector",
            None,
            Some(&body),
        );
        assert_eq!(st, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (st, _) = call(
        &srv.addr,
        "PUT",
        "/api/products/NOPE/vector",
        None,
        Some(&serde_json::json!({ "vector": vector(1) })),
    );
    assert_eq!(st, 404);
    let (st, _, _) = http(
        &srv.addr,
        "PUT",
        "/api/products/B-2/vector",
        &[("Content-Type", "text/plain")],
        b"[1,2]",
    )
    .unwrap();
    assert_eq!(st, 415);
    // Oversized: more than the body limit (1 MiB by default).
    let big = format!(
        "{{\"vector\": [{}]}}",
        vec!["0.123456789"; 200_000].join(",")
    );
    let (st, _, _) = http(
        &srv.addr,
        "PUT",
        "/api/products/B-2/vector",
        &[("Content-Type", "application/json")],
        big.as_bytes(),
    )
    .unwrap();
    assert_eq!(st, 413);
    let (st, _) = call(&srv.addr, "POST", "/api/products/B-2/vector", None, None);
    assert_eq!(st, 405);
    assert_eq!(
        s.snapshot(),
        before,
        "a refused request changed the database"
    );

    // Search.
    let (st, v) = call(&srv.addr, "GET", "/api/search?q=blue%20widgt", None, None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["source"].as_str(), v["hits"][0]["sku"].as_str()),
        (Some("local"), Some("A-1"))
    );
    let (st, v) = call(
        &srv.addr,
        "POST",
        "/api/search",
        None,
        Some(&serde_json::json!({ "vector": a, "limit": 1 })),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hits"][0]["sku"], "A-1");
    for (body, needle) in [
        (serde_json::json!({}), "exactly one"),
        (
            serde_json::json!({ "text": "x", "vector": [1] }),
            "exactly one",
        ),
        (serde_json::json!({ "text": "" }), "1 to 500"),
        (serde_json::json!({ "text": "a".repeat(501) }), "1 to 500"),
        (serde_json::json!({ "text": "x", "limit": 0 }), "limit"),
        (serde_json::json!({ "vector": [1, 2, 3] }), "dimensions"),
    ] {
        let (st, v) = call(&srv.addr, "POST", "/api/search", None, Some(&body));
        assert_eq!(st, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (st, _) = call(&srv.addr, "GET", "/api/search", None, None);
    assert_eq!(st, 422);

    let (st, v) = call(&srv.addr, "DELETE", "/api/products/A-1/vector", None, None);
    assert_eq!((st, v["result"]["cleared"].as_bool()), (200, Some(true)));
    assert_eq!(stored(&s, "A-1"), None);
}

// A token protects vector writes but not searches (a search is a read, even as a POST).
#[test]
fn token_guards_vector_writes_not_searches() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    let cfg = s.path("token.toml");
    std::fs::write(&cfg, "[server]\ntoken = \"0123456789abcdef0123\"\n").unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    let body = serde_json::json!({ "vector": vector(5) });
    let (st, _) = call(
        &srv.addr,
        "PUT",
        "/api/products/A-1/vector",
        None,
        Some(&body),
    );
    assert_eq!(st, 401);
    let (st, _) = call(
        &srv.addr,
        "PUT",
        "/api/products/A-1/vector",
        Some("0123456789abcdef0123"),
        Some(&body),
    );
    assert_eq!(st, 200);
    let (st, v) = call(
        &srv.addr,
        "POST",
        "/api/search",
        None,
        Some(&serde_json::json!({ "text": "widget" })),
    );
    assert_eq!((st, v["hits"][0]["sku"].as_str()), (200, Some("A-1")));
}

// With vectors = "client", Qdrant gets exactly the stored vectors: products without one have
// no point (and cost no request) until they get one, clearing removes the point, renames
// update the payload and keep the vector, and search through Qdrant answers like the local
// scan. A collection of another size is refused; reindex rebuilds it at the configured size.
#[test]
fn client_vectors_reach_qdrant_instead_of_the_builtin_embedding() {
    let q = Qdrant::start(None);
    let s = Sandbox::new();
    for i in 0..30u64 {
        let sku = format!("V-{i:03}");
        s.ok(&["product", "add", &sku, &format!("Item {i}")]);
        if i < 20 {
            s.ok(&["product", "vector", &sku, "--values", &json_of(&vector(i))]);
        }
    }
    let cfg = client_config(&s, &q.url(), DIMS);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    let points = |q: &Qdrant| -> std::collections::HashMap<String, (Vec<f32>, serde_json::Value)> {
        q.state.lock().unwrap().collections["mine"].points.clone()
    };
    {
        let st = q.state.lock().unwrap();
        assert_eq!(st.collections["mine"].size, DIMS);
    }
    let p = points(&q);
    assert_eq!(p.len(), 20, "only products with a vector have a point");
    let (v, payload) = &p[&point_id("wh-v", "V-004")];
    assert_eq!(v, &vector(4));
    assert_eq!(payload["name"], "Item 4");
    assert!(!p.contains_key(&point_id("wh-v", "V-025")));

    // Movements of a product without a vector cost no Qdrant request.
    let requests = q.state.lock().unwrap().requests.len();
    s.ok(&["--config", &cfg, "stock", "receive", "V-025", "5"]);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    let after: Vec<(String, String)> = q.state.lock().unwrap().requests[requests..].to_vec();
    assert!(
        after.iter().all(|(_, p)| !p.contains("/points")),
        "{after:?}"
    );

    // A new vector, a cleared vector, a rename, a replaced vector.
    s.ok(&[
        "--config",
        &cfg,
        "product",
        "vector",
        "V-025",
        "--values",
        &json_of(&vector(25)),
    ]);
    s.ok(&["--config", &cfg, "product", "vector", "V-003", "--clear"]);
    s.ok(&[
        "--config",
        &cfg,
        "product",
        "update",
        "V-004",
        "--name",
        "Renamed item",
    ]);
    s.ok(&[
        "--config",
        &cfg,
        "product",
        "vector",
        "V-005",
        "--values",
        &json_of(&vector(105)),
    ]);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    let p = points(&q);
    assert_eq!(p.len(), 20);
    assert_eq!(p[&point_id("wh-v", "V-025")].0, vector(25));
    assert!(!p.contains_key(&point_id("wh-v", "V-003")));
    assert_eq!(p[&point_id("wh-v", "V-004")].0, vector(4));
    assert_eq!(p[&point_id("wh-v", "V-004")].1["name"], "Renamed item");
    assert_eq!(p[&point_id("wh-v", "V-005")].0, vector(105));

    // Search through Qdrant and locally agree.
    for i in [0u64, 12, 25] {
        let qv = json_of(&vector(i));
        let remote = s.json(&["--config", &cfg, "search", "--vector", &qv, "--limit", "5"]);
        let local = s.json(&["search", "--vector", &qv, "--limit", "5"]);
        assert_eq!(remote["source"], "qdrant");
        assert_eq!(local["source"], "local");
        let skus = |v: &serde_json::Value| -> Vec<String> {
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["sku"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(skus(&remote), skus(&local));
        assert_eq!(skus(&remote)[0], format!("V-{i:03}"));
    }
    // Text search in client mode has no embedding to ask Qdrant with: the local index answers.
    let v = s.json(&["--config", &cfg, "search", "Renamed itm"]);
    assert_eq!(
        (v["source"].as_str(), v["hits"][0]["sku"].as_str()),
        (Some("local"), Some("V-004"))
    );
    // A vector of another size than the configured one is refused before it is stored.
    let err = s.fails(
        &[
            "--config", &cfg, "product", "vector", "V-026", "--values", "[1, 2]",
        ],
        2,
    );
    assert!(err.contains("vector_size is 8"), "{err}");
    let err = s.fails(&["--config", &cfg, "search", "--vector", "[1, 2]"], 2);
    assert!(err.contains("collection has 8"), "{err}");

    // Another size configured: the existing collection is refused, the outbox kept; reindex
    // rebuilds at the new size (products whose vectors are of the old size are left out).
    let cfg4 = client_config(&s, &q.url(), 4);
    s.ok(&["--config", &cfg4, "stock", "receive", "V-001", "1"]);
    let err = s.fails(&["--config", &cfg4, "sync", "qdrant"], 2);
    assert!(
        err.contains("vectors of size 8") && err.contains("needs 4"),
        "{err}"
    );
    assert!(query_i64(&s.db, "SELECT count(*) FROM outbox") >= 1);
    s.ok(&["--config", &cfg4, "product", "clear-vectors", "--yes"]);
    s.ok(&[
        "--config",
        &cfg4,
        "product",
        "vector",
        "V-001",
        "--values",
        "[0.1, 0.2, 0.3, 0.4]",
    ]);
    s.json(&["--config", &cfg4, "qdrant", "reindex", "--recreate"]);
    let st = q.state.lock().unwrap();
    assert_eq!(st.collections["mine"].size, 4);
    assert_eq!(st.collections["mine"].points.len(), 1);
    assert_eq!(
        st.collections["mine"].points[&point_id("wh-v", "V-001")].0,
        vec![0.1, 0.2, 0.3, 0.4]
    );
}

// Configuration of the vector source is checked.
#[test]
fn vector_configuration_is_checked() {
    let s = Sandbox::new();
    let cases = [
        ("vectors = \"client\"\n", "needs remote.qdrant.vector_size"),
        ("vectors = \"client\"\nvector_size = 0\n", "out of range"),
        (
            "vectors = \"client\"\nvector_size = 70000\n",
            "out of range",
        ),
        ("vector_size = 8\n", "only for vectors = \"client\""),
        ("vectors = \"mine\"\n", "use \"builtin\" or \"client\""),
    ];
    for (extra, needle) in cases {
        let cfg = s.path("v.toml");
        std::fs::write(
            &cfg,
            format!("[remote.qdrant]\nurl = \"http://127.0.0.1:1\"\n{extra}"),
        )
        .unwrap();
        let err = s.fails(&["--config", cfg.to_str().unwrap(), "stock", "list"], 2);
        assert!(err.contains(needle), "{extra}: {err}");
    }
}
