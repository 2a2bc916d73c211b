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
        (b"[replica]\nmode = 'eventually'\n", "bounded or strict"),
        (
            b"[replica]\nmax_lag_ms = 0\n",
            "replica.max_lag_ms = 0 is out of range",
        ),
        (b"[replica]\nkeep_days = 0\n", "replica.keep_days"),
        // The same range as the --keep-days flag that overrides it.
        (
            b"[backup]\nkeep_days = 4000\n",
            "backup.keep_days = 4000 is out of range (1..=3650)",
        ),
        (
            b"[replica]\nstrict_timeout_ms = 99999999\n",
            "replica.strict_timeout_ms",
        ),
        (b"[replica]\nmax_pending_mb = -1\n", "ora.toml"),
        (
            b"[replica]\ndirectory = '/x'\n",
            "unknown field `directory`",
        ),
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

// ORA_REPLICA_DIR and ORA_REPLICA_MODE win over the file, like every other variable, and
// ORA_BACKUP_DIR over `[backup] dir`.
#[test]
fn replica_and_backup_settings_take_the_environment_over_the_file() {
    let s = Sandbox::new();
    let (file_dir, env_dir) = (s.path("rep-file"), s.path("rep-env"));
    let cfg = with_config(
        &s,
        format!(
            "[replica]\ndir = {:?}\nmode = \"strict\"\n[backup]\ndir = {:?}\n",
            file_dir.to_str().unwrap(),
            s.path("bk-file").to_str().unwrap()
        )
        .as_bytes(),
    );
    let status = |env: &[(&str, &std::path::Path)]| {
        let mut c = s.cmd(&["--config", &cfg, "--json", "replica", "status"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(status(&[])["replica"]["dir"], file_dir.to_str().unwrap());
    let v = status(&[
        ("ORA_REPLICA_DIR", &env_dir),
        ("ORA_REPLICA_MODE", std::path::Path::new("bounded")),
    ]);
    assert_eq!(v["replica"]["dir"], env_dir.to_str().unwrap());
    let bk_env = s.path("bk-env");
    std::fs::create_dir(&bk_env).unwrap();
    let out = s
        .cmd(&["--config", &cfg, "backup"])
        .env("ORA_BACKUP_DIR", &bk_env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&bk_env).unwrap().count(),
        2,
        "backup + sidecar in ORA_BACKUP_DIR"
    );
}
