//! Encrypted backups end to end, as real processes: a key pair from `ora backups keygen`,
//! backups encrypted to its public key (age format), drills and restores that need the
//! identity, and clear refusals for a missing or wrong key, a flipped byte, a bad key in the
//! configuration and a full disk; nothing is restored or left behind when one happens.

use crate::util::{query_i64, snapshot, Sandbox};

pub(crate) struct Keys {
    pub identity: String,
    pub public: String,
}

/// A key pair from `ora backups keygen` in the sandbox (also used by the encrypted replica
/// tests).
pub(crate) fn keygen(s: &Sandbox, name: &str) -> Keys {
    let path = s.path(name);
    let out = s.ok(&["backups", "keygen", path.to_str().unwrap()]);
    let public = out
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("a public key line")
        .to_string();
    Keys {
        identity: path.display().to_string(),
        public,
    }
}

/// A configuration file that encrypts to `public`.
pub(crate) fn config(s: &Sandbox, public: &str) -> String {
    let path = s.path("encrypted.toml");
    std::fs::write(&path, format!("[backup]\nencrypt_to = \"{public}\"\n")).unwrap();
    path.display().to_string()
}

fn newest_backup(s: &Sandbox) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(s.path("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".db.gz.age"))
        .collect();
    files.sort();
    files.pop().expect("an encrypted backup")
}

#[test]
fn encrypted_backups_need_their_identity_and_refuse_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "7"]);
    let keys = keygen(&s, "backup.key");
    assert!(keys.public.starts_with("age1"), "{}", keys.public);
    let mode = std::fs::metadata(&keys.identity)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = s.fails(&["backups", "keygen", &keys.identity], 2);
    assert!(again.contains("never overwritten"), "{again}");
    let cfg = config(&s, &keys.public);
    s.ok(&["--config", &cfg, "backup"]);
    let file = newest_backup(&s);
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n"),
        "not an age file"
    );
    assert!(
        !bytes.windows(15).any(|w| w == b"SQLite format 3"),
        "plaintext inside"
    );
    let f = file.to_str().unwrap();

    // Without the identity: nothing can be checked or restored, and that is not a verdict.
    let err = s.fails(&["--config", &cfg, "backups", "verify"], 2);
    assert!(err.contains("is encrypted; pass --identity FILE"), "{err}");
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM ops_log WHERE kind = 'backup_verify'"
        ),
        0
    );
    // With it: the drill passes.
    let out = s.ok(&[
        "--config",
        &cfg,
        "--identity",
        &keys.identity,
        "backups",
        "verify",
    ]);
    assert!(out.contains(": ok ("), "{out}");
    // Another key: refused as such.
    let other = keygen(&s, "other.key");
    let err = s.fails(&["--identity", &other.identity, "backups", "verify", f], 2);
    assert!(err.contains("encrypted to another key"), "{err}");

    // Restore: without the identity nothing changes; with it the state comes back.
    let before = snapshot(&s.db);
    s.ok(&["stock", "receive", "A-1", "100"]);
    let changed = snapshot(&s.db);
    let err = s.fails(&["restore", f, "--yes"], 2);
    assert!(err.contains("is encrypted"), "{err}");
    assert_eq!(
        snapshot(&s.db),
        changed,
        "a refused restore changed the database"
    );
    s.ok(&["--identity", &keys.identity, "restore", f, "--yes"]);
    assert_eq!(snapshot(&s.db), before);

    // A flipped byte: the checksum catches it; without the sidecar, decryption does.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let bad = s.path("backups").join("ora-20260101T000000Z.db.gz.age");
    std::fs::write(&bad, &damaged).unwrap();
    std::fs::copy(format!("{f}.sha256"), format!("{}.sha256", bad.display())).unwrap();
    let b = bad.to_str().unwrap();
    let out = s.run(&["--identity", &keys.identity, "backups", "verify", b]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(format!("{b}.sha256")).unwrap();
    let out = s.run(&["--identity", &keys.identity, "backups", "verify", b]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = s.fails(&["--identity", &keys.identity, "restore", b, "--yes"], 2);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(snapshot(&s.db), before);
}

#[test]
fn bad_keys_in_the_configuration_or_the_identity_file_are_refused() {
    let s = Sandbox::new();
    let cfg = config(&s, "age1notakey");
    let err = s.fails(&["--config", &cfg, "backup"], 2);
    assert!(err.contains("is not an age public key"), "{err}");
    assert!(
        !s.path("backups").exists()
            || std::fs::read_dir(s.path("backups"))
                .unwrap()
                .next()
                .is_none()
    );
    let id = s.path("bad.key");
    std::fs::write(&id, "# a comment\nAGE-SECRET-KEY-1NOTASECRETATALL\n").unwrap();
    let err = s.fails(&["--identity", id.to_str().unwrap(), "backups", "list"], 2);
    assert!(err.contains("line 2: not an age secret key"), "{err}");
    assert!(!err.contains("NOTASECRET"), "the secret was echoed: {err}");
    std::fs::write(&id, "# only comments\n").unwrap();
    let err = s.fails(&["--identity", id.to_str().unwrap(), "backups", "list"], 2);
    assert!(err.contains("holds no age secret key"), "{err}");
    let big = s.path("big.key");
    std::fs::write(&big, vec![b'#'; 100_000]).unwrap();
    s.fails(&["--identity", big.to_str().unwrap(), "backups", "list"], 2);
}

// An encrypted backup onto a full disk leaves no file, and the database as it was.
#[test]
fn an_encrypted_backup_on_a_full_disk_leaves_nothing() {
    if !crate::util::is_root() {
        crate::util::skip("encrypted backup on a full disk", "needs root for a tmpfs");
        return;
    }
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 200, 5).unwrap();
    let keys = keygen(&s, "backup.key");
    let tiny = s.path("tiny");
    let _disk = crate::util::Tmpfs::mount(&tiny, "64k");
    let cfg = s.path("full.toml");
    std::fs::write(
        &cfg,
        format!(
            "[backup]\ndir = {:?}\nencrypt_to = \"{}\"\n",
            tiny.display().to_string(),
            keys.public
        ),
    )
    .unwrap();
    let before = snapshot(&s.db);
    let out = s.run(&["--json", "--config", cfg.to_str().unwrap(), "backup"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The OS error's kind survives to the machine-readable error.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["code"].as_str(), v["io_kind"].as_str()),
        (Some("disk_full"), Some("StorageFull")),
        "{v}"
    );
    let left: Vec<_> = std::fs::read_dir(&tiny)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(snapshot(&s.db), before);
}
