//! The Qdrant target against the stand-in: the collection is created and filled, product
//! changes follow, search answers like the local index, Qdrant down or answering 5xx keeps the
//! outbox, a collection of the wrong vector size is refused until `ora qdrant reindex`.

use ora::remote::qdrant::{point_id, Qdrant as Client};

use crate::qdrant_standin::Qdrant;
use crate::search::{catalog, perturb};
use crate::util::{query_i64, Rng, Sandbox};

fn config(s: &Sandbox, url: &str, key: Option<&str>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (url, key).hash(&mut h);
    let cfg = s.path(&format!("ora-{:x}.toml", h.finish()));
    let key = key
        .map(|k| format!("api_key = {k:?}\n"))
        .unwrap_or_default();
    std::fs::write(&cfg, format!("[remote]\nsite_id = \"wh-q\"\n\n[remote.qdrant]\nurl = {url:?}\ncollection = \"products\"\n{key}")).unwrap();
    cfg.to_str().unwrap().to_string()
}

// Sync fills the collection (one point per sku, payload sku/name/site), follows renames and
// deletions of points, and search through Qdrant answers like the local index.
#[test]
fn products_reach_qdrant_and_search_uses_it() {
    let q = Qdrant::start(Some("key-123"));
    let s = Sandbox::new();
    for (sku, name) in catalog().into_iter().take(50) {
        s.ok(&["product", "add", &sku, &name]);
    }
    let cfg = config(&s, &q.url(), Some("key-123"));
    let v = s.json(&["--config", &cfg, "sync", "qdrant", "--once"]);
    assert!(v["copied_rows"].as_u64().unwrap() >= 50, "{v}");
    assert_eq!(q.points("products"), 50);
    {
        let st = q.state.lock().unwrap();
        let col = &st.collections["products"];
        assert_eq!(
            (col.size, col.distance.as_str()),
            (ora::remote::embed::DIM, "Cosine")
        );
        assert!(
            col.indexes.contains(&"sku".to_string()) && col.indexes.contains(&"site".to_string())
        );
        let (_, payload) = &col.points[&point_id("wh-q", "P-0007")];
        assert_eq!(payload["sku"], "P-0007");
        assert_eq!(payload["site"], "wh-q");
    }
    s.ok(&[
        "--config",
        &cfg,
        "product",
        "update",
        "P-0007",
        "--name",
        "Bright orange traffic cone 75 cm",
    ]);
    s.ok(&["--config", &cfg, "stock", "receive", "P-0008", "3"]);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    {
        let st = q.state.lock().unwrap();
        assert_eq!(
            st.collections["products"].points[&point_id("wh-q", "P-0007")].1["name"],
            "Bright orange traffic cone 75 cm"
        );
    }
    let remote = s.json(&["--config", &cfg, "search", "orange trafic cone"]);
    assert_eq!(remote["source"], "qdrant");
    assert_eq!(remote["hits"][0]["sku"], "P-0007");
    let local = s.json(&["search", "orange trafic cone"]);
    assert_eq!(local["source"], "local");
    assert_eq!(local["hits"][0]["sku"], remote["hits"][0]["sku"]);
    // health --full asks Qdrant live.
    let out = s.ok(&["--config", &cfg, "health", "--full"]);
    assert!(
        out.contains("qdrant answers; collection products holds"),
        "{out}"
    );
}

// Qdrant answering 5xx, then not listening at all: sync fails with exit 3 and a clear line,
// the outbox keeps every change, and once Qdrant is back everything arrives.
#[test]
fn qdrant_failures_keep_the_outbox() {
    let q = Qdrant::start(None);
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    let cfg = config(&s, &q.url(), None);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    q.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    s.ok(&["--config", &cfg, "product", "add", "B-2", "Red gadget"]);
    let err = s.fails(&["--config", &cfg, "sync", "qdrant"], 3);
    assert!(err.contains("Qdrant answered 503"), "{err}");
    assert!(query_i64(&s.db, "SELECT count(*) FROM outbox") >= 1);
    let dead = config(
        &s,
        &format!("http://127.0.0.1:{}", crate::util::free_port()),
        None,
    );
    let err = s.fails(&["--config", &dead, "sync", "qdrant"], 3);
    assert!(err.contains("Qdrant is unreachable"), "{err}");
    let err = s.fails(&["--config", &dead, "search", "widget"], 3);
    assert!(err.contains("unreachable"), "{err}");
    q.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    assert_eq!(q.points("products"), 2);
    // A wrong API key is a clear refusal.
    let bad_key = Qdrant::start(Some("right"));
    let cfg2 = config(&s, &bad_key.url(), Some("wrong"));
    let err = s.fails(&["--config", &cfg2, "qdrant", "reindex"], 3);
    assert!(err.contains("refused the API key"), "{err}");
    // Qdrant's 401 body is plain text: shown as it is, never as `null`.
    assert!(err.contains("Must provide an API key"), "{err}");
    assert!(!err.contains("null"), "{err}");
    // A URL with a path prefix meets a 404 that is not Qdrant's "collection missing": said so,
    // instead of trying to create the collection there.
    let prefixed = config(&s, &format!("{}/qdrant", q.url()), None);
    let err = s.fails(&["--config", &prefixed, "sync", "qdrant"], 3);
    assert!(err.contains("check remote.qdrant.url"), "{err}");
    assert!(!err.contains("PUT"), "{err}");
    // A collection name Qdrant would refuse is refused when the configuration loads.
    let long = s.path("long.toml");
    std::fs::write(
        &long,
        format!(
            "[remote.qdrant]\nurl = {:?}\ncollection = \"{}\"\n",
            q.url(),
            "c".repeat(256)
        ),
    )
    .unwrap();
    let err = s.fails(&["--config", long.to_str().unwrap(), "sync", "qdrant"], 2);
    assert!(err.contains("1-255"), "{err}");
}

// An existing collection with another vector size is refused with a clear message (exit 2)
// and left alone; `ora qdrant reindex` rebuilds it.
#[test]
fn a_collection_of_the_wrong_size_is_refused_until_reindexed() {
    let q = Qdrant::start(None);
    q.state.lock().unwrap().collections.insert(
        "products".into(),
        crate::qdrant_standin::Collection {
            size: 3,
            distance: "Cosine".into(),
            ..Default::default()
        },
    );
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    let cfg = config(&s, &q.url(), None);
    let err = s.fails(&["--config", &cfg, "sync", "qdrant"], 2);
    assert!(err.contains("vectors of size 3"), "{err}");
    assert_eq!(
        q.state.lock().unwrap().collections["products"].size,
        3,
        "the collection must be left alone"
    );
    // A plain reindex refuses it too (it never drops a collection); --recreate rebuilds it.
    let err = s.fails(&["--config", &cfg, "qdrant", "reindex"], 2);
    assert!(err.contains("reindex --recreate"), "{err}");
    assert_eq!(q.state.lock().unwrap().collections["products"].size, 3);
    s.json(&["--config", &cfg, "qdrant", "reindex", "--recreate"]);
    assert_eq!(
        q.state.lock().unwrap().collections["products"].size,
        ora::remote::embed::DIM
    );
    assert_eq!(q.points("products"), 1);
}

// Two sites share one collection: a reindex at one site replaces its own points and leaves
// the other site's alone (it used to drop the whole collection).
#[test]
fn a_reindex_touches_only_this_sites_points() {
    let q = Qdrant::start(None);
    let north = Sandbox::new();
    let south = Sandbox::new();
    for (s, site, n) in [(&north, "north", 3), (&south, "south", 2)] {
        for i in 0..n {
            s.ok(&[
                "product",
                "add",
                &format!("{site}-{i}"),
                &format!("Lamp {i}"),
            ]);
        }
        let cfg = s.path("site.toml");
        std::fs::write(
            &cfg,
            format!("[remote]\nsite_id = \"{site}\"\n\n[remote.qdrant]\nurl = {:?}\ncollection = \"shared\"\n", q.url()),
        )
        .unwrap();
        s.json(&["--config", cfg.to_str().unwrap(), "sync", "qdrant"]);
    }
    assert_eq!(q.points("shared"), 5);
    let ncfg = north.path("site.toml");
    north.ok(&[
        "--config",
        ncfg.to_str().unwrap(),
        "product",
        "add",
        "north-9",
        "Desk",
    ]);
    north.json(&["--config", ncfg.to_str().unwrap(), "qdrant", "reindex"]);
    assert_eq!(q.points("shared"), 6, "south's points must stay");
    let scfg = south.path("site.toml");
    let v = south.json(&["--config", scfg.to_str().unwrap(), "search", "Lamp"]);
    assert_eq!(v["source"], "qdrant");
    assert_eq!(v["hits"].as_array().unwrap().len(), 2, "{v}");
}

// Search quality through Qdrant (the stand-in ranks by cosine, as Qdrant does): at least 90%
// of damaged queries find their product in the top 3.
#[test]
fn search_through_qdrant_finds_misspelled_products() {
    let q = Qdrant::start(None);
    let s = Sandbox::new();
    let products = catalog();
    let store = ora::store::Store::open(
        &ora::store::StoreOptions::new(&s.db),
        ora::store::OpenMode::Existing,
    )
    .unwrap();
    for (sku, name) in &products {
        let p = ora::store::products::NewProduct {
            sku: sku.clone(),
            product_name: name.clone(),
            reorder_point: 0,
            initial_quantity: 0,
        };
        store
            .write(ora::store::WriteRequest::new(
                ora::store::WriteOp::ProductAdd(p),
            ))
            .unwrap();
    }
    store.close();
    let cfg = config(&s, &q.url(), None);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    assert_eq!(q.points("products"), products.len());
    let qcfg = ora::config::QdrantConfig {
        url: q.url(),
        ca_file: None,
        collection: "products".into(),
        api_key: None,
        vectors: ora::config::VectorSource::Builtin,
    };
    let client = Client::new(&qcfg, "wh-q");
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut hits = 0;
    for (i, (sku, name)) in products.iter().enumerate() {
        let query = perturb(name, i as u64, &mut rng);
        if client
            .search(&query, 3)
            .unwrap()
            .iter()
            .any(|h| &h.sku == sku)
        {
            hits += 1;
        }
    }
    let rate = hits as f64 / products.len() as f64;
    eprintln!(
        "qdrant search: {:.1}% of {} damaged queries found in the top 3",
        rate * 100.0,
        products.len()
    );
    assert!(rate >= 0.9, "{rate}");

    // The two paths rank with one score: for a name the same top 5; for a sku the exact sku
    // first on both (the rest differs: the local index adds skus that look alike, Qdrant the
    // products with the nearest names).
    let remote = ora::config::RemoteConfig {
        site_id: "wh-q".into(),
        batch: 500,
        outbox_cap: 1_000_000,
        max_lag_seconds: 60,
        postgres: None,
        qdrant: Some(qcfg.clone()),
    };
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let top5 = |cfg: Option<&ora::config::RemoteConfig>, q: &str| -> Vec<String> {
        let query = ora::remote::search::Query::Text(q.to_string());
        ora::remote::search::run(cfg, &conn, &query, 5)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.sku)
            .collect()
    };
    let mut rng = Rng(0x5EED_1234_ABCD_0002);
    let (mut same, mut names) = (0, 0);
    for (i, (sku, name)) in products.iter().take(30).enumerate() {
        if i % 3 == 0 {
            let q = sku.to_lowercase();
            assert_eq!(
                top5(Some(&remote), &q).first(),
                Some(sku),
                "exact sku through Qdrant"
            );
            assert_eq!(top5(None, &q).first(), Some(sku), "exact sku locally");
            continue;
        }
        let query = perturb(name, i as u64, &mut rng);
        let (a, b) = (top5(Some(&remote), &query), top5(None, &query));
        names += 1;
        if a == b {
            same += 1;
        } else {
            eprintln!("differ for {query:?}: qdrant {a:?}, local {b:?}");
        }
    }
    eprintln!("search parity: the same top 5 for {same} of {names} name queries");
    assert!(same * 10 >= names * 9, "{same} of {names}");
}

// After a restore of an older backup, Qdrant follows the restored database: the next sync is
// a full copy of this site, so a product added after the backup leaves no ghost point behind.
#[test]
fn qdrant_follows_a_restore() {
    let q = Qdrant::start(None);
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget"]);
    s.ok(&["product", "add", "B-2", "Red gadget"]);
    let cfg = config(&s, &q.url(), None);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    s.ok(&["--config", &cfg, "backup"]);
    s.ok(&["--config", &cfg, "product", "add", "C-3", "Green gizmo"]);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    assert_eq!(q.points("products"), 3);
    let backup = std::fs::read_dir(s.path("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".db.gz"))
        .unwrap();
    s.ok(&[
        "--config",
        &cfg,
        "restore",
        backup.to_str().unwrap(),
        "--yes",
    ]);
    s.json(&["--config", &cfg, "sync", "qdrant"]);
    assert_eq!(q.points("products"), 2, "the ghost of C-3 stayed");
    let v = s.json(&["--config", &cfg, "search", "green gizmo"]);
    assert!(
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["sku"] != "C-3"),
        "{v}"
    );
}

fn tls_config(s: &Sandbox, name: &str, url: &str, ca: Option<&std::path::Path>) -> String {
    let cfg = s.path(&format!("ora-tls-{name}.toml"));
    let ca = ca
        .map(|c| format!("ca_file = {:?}\n", c))
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!("[remote]\nsite_id = \"wh-q\"\n\n[remote.qdrant]\nurl = {url:?}\ncollection = \"products\"\napi_key = \"k-123\"\n{ca}"),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

// Qdrant behind https, as Qdrant Cloud is: the certificate is checked against ca_file and must
// name the host of the URL, the API key goes with every request, and sync and search work. A
// CA that did not sign the certificate, a certificate for another name, https to a plain-http
// server and a ca_file beside an http URL are refused with a line that says which (exit 2);
// the outbox keeps every change meanwhile.
#[test]
fn qdrant_over_https_is_verified() {
    if !crate::util::have("openssl") {
        crate::util::skip(
            "qdrant_over_https_is_verified",
            "no openssl command to make certificates",
        );
        return;
    }
    let s = Sandbox::new();
    let certs = crate::pg::make_certs(s.dir.path(), "q", "DNS:localhost,IP:127.0.0.1");
    let other = crate::pg::make_certs(s.dir.path(), "q-other", "DNS:localhost,IP:127.0.0.1");
    let named = crate::pg::make_certs(s.dir.path(), "q-named", "DNS:qdrant.example.invalid");
    let q = Qdrant::start_tls(Some("k-123"), &certs.cert, &certs.key);
    for (sku, name) in catalog().into_iter().take(20) {
        s.ok(&["product", "add", &sku, &name]);
    }

    let wrong_ca = tls_config(&s, "wrong-ca", &q.https_url(), Some(&other.ca));
    let err = s.fails(&["--config", &wrong_ca, "sync", "qdrant"], 2);
    assert!(
        err.contains("Qdrant TLS failed") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(q.points("products"), 0);

    let good = tls_config(&s, "good", &q.https_url(), Some(&certs.ca));
    s.ok(&["--config", &good, "stock", "receive", "P-0003", "4"]);
    let v = s.json(&["--config", &good, "sync", "qdrant"]);
    assert!(v["copied_rows"].as_u64().unwrap() >= 20, "{v}");
    assert_eq!(q.points("products"), 20);
    s.ok(&[
        "--config",
        &good,
        "product",
        "update",
        "P-0004",
        "--name",
        "Bright orange traffic cone 75 cm",
    ]);
    s.json(&["--config", &good, "sync", "qdrant"]);
    let hits = s.json(&["--config", &good, "search", "orange trafic cone"]);
    assert_eq!(hits["source"], "qdrant");
    assert_eq!(hits["hits"][0]["sku"], "P-0004");
    assert!(q
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .any(|(m, p)| m == "POST" && p == "/collections/products/points/query"));

    // A certificate for another host name than the URL's.
    let q2 = Qdrant::start_tls(Some("k-123"), &named.cert, &named.key);
    let wrong_name = tls_config(&s, "wrong-name", &q2.https_url(), Some(&named.ca));
    let err = s.fails(&["--config", &wrong_name, "sync", "qdrant"], 2);
    assert!(
        err.contains("Qdrant TLS failed") && err.contains("not valid for name \"localhost\""),
        "{err}"
    );

    // https to a server that speaks plain http.
    let plain = Qdrant::start(Some("k-123"));
    let to_plain = tls_config(
        &s,
        "to-plain",
        &plain.url().replace("http://", "https://"),
        Some(&certs.ca),
    );
    let err = s.fails(&["--config", &to_plain, "sync", "qdrant"], 2);
    assert!(err.contains("Qdrant TLS failed"), "{err}");
    assert_eq!(plain.points("products"), 0);

    // A ca_file with a plain http URL is a configuration error.
    let mixed = tls_config(&s, "mixed", &plain.url(), Some(&certs.ca));
    let err = s.fails(&["--config", &mixed, "sync", "qdrant"], 2);
    assert!(err.contains("plain http"), "{err}");
    let junk = s.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk_cfg = tls_config(&s, "junk", &q.https_url(), Some(&junk));
    let err = s.fails(&["--config", &junk_cfg, "sync", "qdrant"], 2);
    assert!(err.contains("holds no PEM certificate"), "{err}");
}
