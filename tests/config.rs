//! Configuration files and environment overrides: bad ones are refused with exit 2 and a line
//! that names the key; good ones take effect.

use crate::util::Sandbox;

fn with_config(s: &Sandbox, text: &[u8]) -> String {
    let f = s.path("ora.toml");
    std::fs::write(&f, text).unwrap();
    f.to_str().unwrap().to_string()
}

#[test]
fn bad_configuration_is_refused_with_the_key_named() {
    let s = Sandbox::new();
    let cases: &[(&[u8], &str)] = &[
        (b"[databse]\npath = 'x.db'\n", "unknown field `databse`"),
        (
            b"[database]\nreaders = 0\n",
            "database.readers = 0 is out of range",
        ),
        (b"[database]\nsynchronous = 'sometimes'\n", "sometimes"),
        (b"[server]\nbind = 'localhost'\n", "not IP:PORT"),
        (b"[server]\ntoken = 'short'\n", "at least 16"),
        (b"[log]\nlevel = 'loud'\n", "log level"),
        (b"[database\n", "ora.toml"),
        (b"\xff\xfe garbage", "not valid UTF-8"),
    ];
    for (text, needle) in cases {
        let cfg = with_config(&s, text);
        let err = s.fails(&["--config", &cfg, "stock", "list"], 2);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let err = s.fails(&["--config", "/nonexistent/ora.toml", "stock", "list"], 2);
    assert!(err.contains("cannot read /nonexistent/ora.toml"), "{err}");
}

#[test]
fn oversized_config_is_refused() {
    let s = Sandbox::new();
    let mut text = b"# padding\n".repeat(200_000);
    text.extend_from_slice(b"[database]\n");
    let cfg = with_config(&s, &text);
    let err = s.fails(&["--config", &cfg, "stock", "list"], 2);
    assert!(err.contains("too large"), "{err}");
}

// The file's database path applies, and DATABASE_PATH / --db override it in that order.
#[test]
fn database_path_precedence_is_flag_env_file() {
    let s = Sandbox::empty();
    let from_file = s.path("file.db");
    let cfg = with_config(
        &s,
        format!("[database]\npath = {:?}\n", from_file.to_str().unwrap()).as_bytes(),
    );
    let mut c = std::process::Command::new(crate::util::ORA);
    crate::util::clean_env(&mut c);
    assert!(c
        .args(["--config", &cfg, "init"])
        .status()
        .unwrap()
        .success());
    assert!(from_file.exists());
    let from_env = s.path("env.db");
    let mut c = std::process::Command::new(crate::util::ORA);
    crate::util::clean_env(&mut c);
    assert!(c
        .env("DATABASE_PATH", &from_env)
        .args(["--config", &cfg, "init"])
        .status()
        .unwrap()
        .success());
    assert!(from_env.exists());
}
