//! A throwaway PostgreSQL cluster for the tests, from the machine's PostgreSQL 15 server
//! binaries (initdb + pg_ctl in a temp dir, a free loopback port, password auth), stopped and
//! removed on drop. As root the cluster runs as the `postgres` user (initdb refuses root).

use std::path::PathBuf;
use std::process::Command;

use crate::util::{free_port, is_root};

pub const PASSWORD: &str = "pw-for-tests-7";

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

fn as_postgres(cmd: &mut Command) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    } else {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args());
        c
    }
}

impl PgCluster {
    /// Starts a cluster, or returns None (printing why) where PostgreSQL is not installed.
    pub fn start(test: &str) -> Option<PgCluster> {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        if !bin.join("initdb").exists() {
            eprintln!(
                "SKIP {test}: no PostgreSQL server binaries in {}",
                bin.display()
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("ora-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let data = dir.path().join("data");
        let out = as_postgres(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "scram-sha-256", "-U", "postgres", "-E", "UTF8"])
                .arg(format!("--pwfile={}", pwfile.display())),
        )
        .output()
        .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = PgCluster {
            port: free_port(),
            dir,
            bin,
        };
        c.up();
        Some(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server on the same port and data.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-t", "60", "-l"])
                .arg(self.dir.path().join("server.log"))
                .args(["-o", &opts, "start"]),
        )
        .output()
        .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn down(&self) {
        let _ = as_postgres(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"]),
        )
        .output();
    }

    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn url_with_password(&self, pw: &str) -> String {
        format!(
            "postgresql://postgres:{pw}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs one query with psql and returns its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .arg(self.url())
            .args(["-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.down();
    }
}
