//! A throwaway PostgreSQL cluster for the tests, from the machine's PostgreSQL 15 server
//! binaries (initdb + pg_ctl in a temp dir, a free loopback port, password auth), stopped and
//! removed on drop. As root the cluster runs as the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
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
            crate::util::skip(
                test,
                &format!(
                    "no PostgreSQL server binaries in {} (scripts/test.sh installs postgresql)",
                    bin.display()
                ),
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

/// A test CA and a server certificate it signed, made with the openssl command.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `NAME-ca.crt` and a server certificate for `sans` ("DNS:localhost,IP:127.0.0.1")
/// signed by it, in `dir`.
pub fn make_certs(dir: &Path, name: &str, sans: &str) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (format!("{name}-ca.crt"), format!("{name}-ca.key"));
    let (cert, key, csr) = (
        format!("{name}-server.crt"),
        format!("{name}-server.key"),
        format!("{name}-server.csr"),
    );
    let subject = format!("/CN=ora test CA {name}");
    let mut a = vec!["req", "-x509"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&[
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &a);
    let mut a = vec!["req"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=postgres"]);
    openssl(dir, &a);
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    Certs {
        ca: dir.join(ca),
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

impl PgCluster {
    /// Turns TLS on with `certs` and refuses every loopback TCP connection without it, then
    /// restarts the server.
    pub fn require_tls(&self, certs: &Certs) {
        let data = self.data();
        std::fs::copy(&certs.cert, data.join("server.crt")).unwrap();
        std::fs::copy(&certs.key, data.join("server.key")).unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        for f in ["server.crt", "server.key", "pg_hba.conf"] {
            std::fs::set_permissions(
                data.join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            if is_root() {
                let st = Command::new("chown")
                    .arg("postgres")
                    .arg(data.join(f))
                    .status()
                    .unwrap();
                assert!(st.success());
            }
        }
        self.down();
        self.up();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.down();
    }
}
