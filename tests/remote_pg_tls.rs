//! The PostgreSQL mirror over TLS, against a real PostgreSQL that refuses every loopback
//! connection without TLS: with `tls = "verify-full"` and the right CA the mirror arrives and
//! checks equal; plain TCP, an unknown CA, a certificate for another host name, a server
//! without TLS and a CA file that is not PEM each fail with a clear line, and the outbox keeps
//! every change meanwhile.

use crate::pg::{make_certs, PgCluster, PASSWORD};
use crate::util::{query_i64, Sandbox};

fn config(s: &Sandbox, name: &str, url: &str, tls: &str) -> String {
    let cfg = s.path(&format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!("[remote]\nsite_id = \"wh-tls\"\n\n[remote.postgres]\nurl = {url:?}\n{tls}"),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

#[test]
fn the_mirror_runs_over_verified_tls_and_refuses_what_it_cannot_verify() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        crate::util::skip(
            "the_mirror_runs_over_verified_tls",
            "no openssl command to make certificates",
        );
        return;
    }
    let Some(pg) = PgCluster::start("the_mirror_runs_over_verified_tls") else {
        return;
    };
    let s = Sandbox::new();
    let certs = make_certs(s.dir.path(), "good", "DNS:localhost,IP:127.0.0.1");
    let other = make_certs(s.dir.path(), "other", "DNS:localhost,IP:127.0.0.1");
    let ca = |p: &std::path::Path| format!("tls = \"verify-full\"\nca_file = {:?}\n", p);
    s.ok(&["product", "add", "A-1", "Blue widget", "--initial", "10"]);

    // The server has no TLS yet: asking for it fails clearly (exit 2), nothing is lost.
    let good = config(&s, "good", &pg.url(), &ca(&certs.ca));
    let err = s.fails(&["--config", &good, "sync", "postgres"], 2);
    assert!(err.contains("PostgreSQL TLS failed"), "{err}");
    assert!(err.contains("does not support TLS"), "{err}");

    pg.require_tls(&certs);
    s.ok(&["--config", &good, "stock", "receive", "A-1", "5"]);

    // Plain TCP is now refused by the server.
    let plain = config(&s, "plain", &pg.url(), "");
    let err = s.fails(&["--config", &plain, "sync", "postgres"], 3);
    assert!(err.contains("no encryption"), "{err}");

    // A CA that did not sign the server's certificate.
    let wrong_ca = config(&s, "wrong-ca", &pg.url(), &ca(&other.ca));
    let err = s.fails(&["--config", &wrong_ca, "sync", "postgres"], 2);
    assert!(err.contains("PostgreSQL TLS failed"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but the URL names a host the certificate is not for.
    let other_name = format!(
        "postgresql://postgres:{PASSWORD}@db.example.invalid:{}/postgres?hostaddr=127.0.0.1",
        pg.port
    );
    let wrong_name = config(&s, "wrong-name", &other_name, &ca(&certs.ca));
    let err = s.fails(&["--config", &wrong_name, "sync", "postgres"], 2);
    assert!(
        err.contains("not valid for name \"db.example.invalid\""),
        "{err}"
    );

    // A CA file that is not a certificate.
    let junk = s.path("junk.pem");
    std::fs::write(&junk, "this is not a certificate\n").unwrap();
    let junk_cfg = config(&s, "junk", &pg.url(), &ca(&junk));
    let err = s.fails(&["--config", &junk_cfg, "sync", "postgres"], 2);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    assert!(
        query_i64(&s.db, "SELECT count(*) FROM outbox") >= 1,
        "the outbox must keep the changes while nothing could be delivered"
    );

    // Verified TLS: everything arrives and both sides are equal. libpq's sslmode=verify-full
    // in the URL means the same as tls = "verify-full".
    let v = s.json(&["--config", &good, "sync", "postgres", "--check"]);
    assert_eq!(v["equal"], true, "{v}");
    assert_eq!(
        pg.psql("SELECT current_quantity FROM ora.inventory_current WHERE site_id = 'wh-tls' AND sku = 'A-1'"),
        "15"
    );
    let url_mode = config(
        &s,
        "url-mode",
        &format!("{}?sslmode=verify-full", pg.url()),
        &format!("ca_file = {:?}\n", certs.ca),
    );
    s.ok(&["--config", &url_mode, "stock", "ship", "A-1", "2"]);
    let v = s.json(&["--config", &url_mode, "sync", "postgres", "--check"]);
    assert_eq!(v["equal"], true, "{v}");
}

#[test]
fn tls_configuration_is_checked() {
    let s = Sandbox::new();
    let url = "postgresql://u@127.0.0.1:1/db";
    for (extra, needle) in [
        ("tls = \"maybe\"\n", "use \"disable\" or \"verify-full\""),
        (
            "tls = \"verify-full\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "is not a readable file",
        ),
        (
            "tls = \"disable\"\nca_file = \"/etc/hostname\"\n",
            "tls = \"disable\"",
        ),
    ] {
        let cfg = config(&s, "bad", url, extra);
        let err = s.fails(&["--config", &cfg, "stock", "list"], 2);
        assert!(err.contains(needle), "{extra}: {err}");
    }
}
