//! The installed units under a real systemd: `tests/systemd/boot.sh` boots `/lib/systemd/systemd`
//! as PID 1 of fresh namespaces on a throwaway overlay of this machine's root, `install.sh`
//! installs ora inside, and the test checks what an operator relies on: readiness, the
//! sandbox, restarts, the watchdog, the timers and their jobs, failure reasons, restore.sh,
//! upgrades and a reboot. Root only; SKIP (a failure under ORA_TEST_STRICT=1) where
//! namespaces or mounts are refused.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{is_root, skip, ORA};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A booted systemd in its own namespaces; dropped, everything in it is killed and its
/// writable layer (a tmpfs in its own mount namespace) disappears.
struct Machine {
    dir: tempfile::TempDir,
    boot: Child,
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The script is the leader of its own process group; its unshares kill their
        // children (and so the namespace's init) when they die.
        let pgid = self.boot.id() as i32;
        // SAFETY: signalling a process group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.boot.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; the condition's last value.
fn wait_for<T>(limit: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Machine {
    /// Boots; `Err(reason)` when this machine refuses namespaces or mounts.
    fn boot() -> Result<Machine, String> {
        let dir = tempfile::Builder::new()
            .prefix("ora-systemd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // What the box needs from this checkout, bound in at /mnt/share (the target directory
        // may live on a file system the overlay does not show).
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("repo")).map_err(|e| e.to_string())?;
        std::fs::copy(ORA, share.join("ora")).map_err(|e| e.to_string())?;
        let cp = Command::new("cp")
            .args(["-r", "scripts", "systemd", "README.md", "docs", "contrib"])
            .arg(share.join("repo"))
            .current_dir(repo())
            .output()
            .map_err(|e| e.to_string())?;
        if !cp.status.success() {
            return Err(text(&cp));
        }
        let log = std::fs::File::create(dir.path().join("boot.log")).map_err(|e| e.to_string())?;
        let boot = Command::new("bash")
            .arg(repo().join("tests/systemd/boot.sh"))
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| e.to_string())?;
        let m = Machine { dir, boot };
        m.wait_running(None)?;
        Ok(m)
    }

    /// The host PID of the running init (systemd), if it is up.
    fn init_pid(&self) -> Option<u32> {
        let unshare = std::fs::read_to_string(self.dir.path().join("init.pid")).ok()?;
        let unshare = unshare.trim();
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "systemd").then_some(pid)
    }

    /// Waits for systemd (another than `not`, after a reboot) to report `running`.
    fn wait_running(&self, not: Option<u32>) -> Result<u32, String> {
        let boot_log = || {
            let log = std::fs::read_to_string(self.dir.path().join("boot.log")).unwrap_or_default();
            format!("boot.log: {log}")
        };
        let pid = wait_for(Duration::from_secs(60), || {
            self.init_pid().filter(|p| Some(*p) != not)
        })
        .ok_or_else(|| format!("systemd did not start; {}", boot_log()))?;
        // systemctl answers once systemd's bus socket exists, a moment after exec.
        let state = wait_for(Duration::from_secs(60), || {
            let o = Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-a",
                    "systemctl",
                    "is-system-running",
                    "--wait",
                ])
                .output()
                .ok()?;
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (!state.is_empty() && state != "offline").then_some(state)
        })
        .unwrap_or_default();
        if state != "running" {
            let failed = Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-a",
                    "systemctl",
                    "--failed",
                    "--no-pager",
                ])
                .output()
                .map(|o| text(&o))
                .unwrap_or_default();
            return Err(format!("systemd is {state:?}, not running: {failed}"));
        }
        Ok(pid)
    }

    fn pid(&self) -> u32 {
        self.init_pid().expect("systemd is running")
    }

    /// Runs a shell script inside (all namespaces of the box's init).
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-a", "bash", "-c", script])
            .output()
            .expect("nsenter")
    }

    /// Runs a script that must succeed; its stdout, trimmed.
    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(o.status.success(), "{script}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn main_pid(&self) -> u32 {
        self.ok("systemctl show -p MainPID --value ora.service")
            .parse()
            .expect("MainPID")
    }

    /// Waits until ora.service is active with a main process other than `old`.
    fn wait_restarted(&self, old: u32, why: &str) -> u32 {
        wait_for(Duration::from_secs(60), || {
            let pid = self.main_pid();
            let active = self.ok("systemctl is-active ora.service || true");
            (pid != 0 && pid != old && active == "active").then_some(pid)
        })
        .unwrap_or_else(|| panic!("ora was not restarted after {why}: {}", self.status()))
    }

    fn status(&self) -> String {
        text(&self.sh(
            "systemctl status ora.service --no-pager -n 30; journalctl -u ora --no-pager -n 30",
        ))
    }

    /// The HTTP status of GET /health inside the box (000: no answer).
    fn health_code(&self) -> String {
        self.ok("curl -s -o /dev/null -m 5 -w '%{http_code}' http://127.0.0.1:8080/health || true")
    }

    /// One row of SQL from the installed database, read through SQLite.
    fn sql(&self, query: &str) -> String {
        self.ok(&format!(
            "sqlite3 -readonly /var/lib/ora/ora.db \"{query}\""
        ))
    }

    /// A TCP listener bound inside the box's network namespace (on a thread of this process
    /// that joined it), recording request lines and bodies.
    fn listener(&self) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
        let ns = format!("/proc/{}/ns/net", self.pid());
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("open the box's net namespace");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace descriptor; it moves only this thread.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            crate::deploy::listener()
        })
        .join()
        .expect("listener thread")
    }
}

const CONFIG: &str = "/etc/ora/ora.toml";
/// ora as the operator runs it on an installed box.
const ORA_AS_ORA: &str = "runuser -u ora -- ora --config /etc/ora/ora.toml";

#[test]
fn the_units_work_under_a_real_systemd() {
    const NAME: &str = "real systemd";
    if !is_root() {
        skip(NAME, "needs root to boot systemd in namespaces");
        return;
    }
    for tool in ["nsenter", "unshare", "sqlite3", "curl"] {
        if !crate::util::have(tool) {
            skip(NAME, &format!("{tool} is not installed"));
            return;
        }
    }
    let m = match Machine::boot() {
        Ok(m) => m,
        Err(why) => {
            skip(
                NAME,
                &format!("systemd cannot boot in namespaces here: {why}"),
            );
            return;
        }
    };
    let t0 = Instant::now();

    // Install, with the replica disk's mount point present, as the README says.
    m.ok("mkdir -p /srv/ora-replica");
    let out = m.ok("bash /mnt/share/repo/scripts/install.sh --binary /mnt/share/ora");
    assert!(out.contains("ora is running"), "{out}");
    assert_eq!(m.health_code(), "200", "{}", m.status());
    let exposure = an_installed_box_works(&m, "/usr/local");

    // install.sh again: the running service now runs the new binary.
    let main = m.main_pid();
    let out = m.ok("bash /mnt/share/repo/scripts/install.sh --binary /mnt/share/ora");
    assert!(out.contains("restarted ora.service"), "{out}");
    let after = m.main_pid();
    assert_ne!(after, main, "install.sh left the old process running");
    let exe = m.ok(&format!("readlink /proc/{after}/exe"));
    assert_eq!(exe, "/usr/local/bin/ora");

    // A reboot: everything comes back, and a timer missed while the box was off runs.
    m.ok("touch -d '2 days ago' /var/lib/systemd/timers/stamp-ora-health.timer");
    let init = m.pid();
    let _ = m.sh("systemctl reboot");
    m.wait_running(Some(init))
        .expect("the box comes back after a reboot");
    let active = wait_for(Duration::from_secs(30), || {
        (m.ok("systemctl is-active ora.service || true") == "active").then_some(())
    });
    assert!(active.is_some(), "{}", m.status());
    assert_eq!(m.health_code(), "200");
    assert_eq!(
        m.sql("SELECT current_quantity FROM inventory_current WHERE sku = 'SKU-1'"),
        "45"
    );
    let ran = wait_for(Duration::from_secs(30), || {
        let r = m.ok("systemctl show ora-health.service -p ExecMainExitTimestampMonotonic --value");
        (r != "0" && !r.is_empty()).then_some(r)
    });
    assert!(ran.is_some(), "the missed health timer did not run at boot");
    assert_eq!(
        m.ok("systemctl show ora-health.service -p Result --value"),
        "success"
    );
    eprintln!(
        "real systemd: exposure {exposure}, checked in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Builds the package from this binary with `scripts/build-deb.sh` into `share`, and an older
/// version of it (the same files, version `0.0.1`) for the upgrade.
fn build_debs(share: &std::path::Path) -> (String, String) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-deb.sh"))
        .args(["--binary", ORA, "--out"])
        .arg(share)
        .output()
        .expect("build-deb.sh");
    assert!(out.status.success(), "build-deb.sh: {}", text(&out));
    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tree = share.join("old-tree");
    let unpack = Command::new("dpkg-deb")
        .arg("-R")
        .arg(&new)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "{}", text(&unpack));
    let control = tree.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control).unwrap();
    let c = c
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                "Version: 0.0.1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&control, c + "\n").unwrap();
    let old = share.join("ora_0.0.1_amd64.deb");
    let pack = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
        .arg(&tree)
        .arg(&old)
        .output()
        .unwrap();
    assert!(pack.status.success(), "{}", text(&pack));
    let _ = std::fs::remove_dir_all(&tree);
    let name = |p: &str| {
        format!(
            "/mnt/share/{}",
            std::path::Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
        )
    };
    (name(old.to_str().unwrap()), name(&new))
}

// The .deb on a fresh box under a real systemd: `apt install` gives a running, hardened
// service with its timers, the ora user and its directories, man pages and completions;
// `lintian` finds no error; an upgrade with data written keeps every movement and the
// operator's configuration and restarts the service; `apt remove` stops it and keeps the data;
// `apt purge` keeps the data; a reinstall uses it again; an older package over a newer
// database is refused by ora with a clear message and leaves the file untouched.
#[test]
fn the_package_installs_upgrades_and_removes_like_a_debian_service() {
    const NAME: &str = "the Debian package";
    if !is_root() {
        return skip(NAME, "needs root to boot systemd in namespaces");
    }
    for tool in [
        "nsenter", "unshare", "sqlite3", "curl", "dpkg-deb", "lintian", "apt-get",
    ] {
        if !crate::util::have(tool) {
            return skip(NAME, &format!("{tool} is not installed"));
        }
    }
    let m = match Machine::boot() {
        Ok(m) => m,
        Err(why) => {
            return skip(
                NAME,
                &format!("systemd cannot boot in namespaces here: {why}"),
            )
        }
    };
    let share = m.dir.path().join("share");
    let (old, new) = build_debs(&share);
    let lint = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(share.join(std::path::Path::new(&new).file_name().unwrap()))
        .output()
        .unwrap();
    assert!(lint.status.success(), "lintian: {}", text(&lint));

    // This machine is a container image whose policy-rc.d forbids starting services; the box
    // stands for a plain Debian machine, which has none.
    m.ok("rm -f /usr/sbin/policy-rc.d");
    let apt = |what: &str| {
        m.ok(&format!(
            "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold {what} 2>&1"
        ))
    };
    m.ok("mkdir -p /srv/ora-replica");
    apt(&format!("install {old}"));
    assert_eq!(m.health_code(), "200", "{}", m.status());
    let exposure = an_installed_box_works(&m, "/usr");
    assert!(exposure <= 2.0);
    let units = "ora.service ora-backup.timer ora-weekly.timer ora-health.timer ora-archive.timer ora-replica-verify.timer";
    assert_eq!(
        m.ok(&format!("systemctl is-enabled {units} | sort -u")),
        "enabled"
    );
    assert_eq!(
        m.ok(&format!("systemctl is-active {units} | sort -u")),
        "active"
    );
    assert_eq!(
        m.ok("stat -c '%U:%G %a' /var/lib/ora /var/backups/ora | sort -u"),
        "ora:ora 750"
    );
    assert_eq!(m.ok("stat -c '%U:%G %a' /etc/ora/ora.toml"), "root:ora 640");
    assert!(m
        .ok("man -P cat ora-restore 2>/dev/null")
        .contains("from-replica"));
    let completes = m.ok(
        "source /usr/share/bash-completion/completions/ora; COMP_WORDS=(ora res); COMP_CWORD=1; _ora ora res ora; echo ${COMPREPLY[@]}",
    );
    assert_eq!(completes, "restore");
    assert!(m
        .ok("ls /usr/share/ora/prometheus")
        .contains("ora-alerts.yml"));
    let security = m.ok("systemd-analyze security ora.service --no-pager 2>&1 | tail -n 1");
    assert!(security.contains("ora.service:"), "{security}");

    // Data as an older ora left it (schema 8, with a movement; placed while the service is
    // stopped, since both packages hold this build's binary), and an operator's change to the
    // configuration; then the upgrade: the service started on the new binary migrates the
    // schema after a backup, the movement and the change are kept.
    crate::util::older_database(&share.join("older.db"), 8);
    m.ok("systemctl stop ora.service && rm -f /var/lib/ora/ora.db* && install -o ora -g ora -m 0640 /mnt/share/older.db /var/lib/ora/ora.db");
    let post = |id: &str| {
        m.ok(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/json' -d '{{\"sku\":\"PKG-1\",\"type\":\"Receive\",\"quantity\":1,\"request_id\":\"{id}\"}}' http://127.0.0.1:8080/api/transactions"
        ))
    };
    m.ok("echo '# kept by the operator' >> /etc/ora/ora.toml");
    let backups: u32 = m
        .ok("ls /var/backups/ora | grep -c 'db.gz$' || true")
        .parse()
        .unwrap();
    let before = m.main_pid();
    apt(&format!("install {new}"));
    m.wait_restarted(before, "the upgrade");
    assert_eq!(m.health_code(), "200", "{}", m.status());
    assert_eq!(m.ok("dpkg-query -W -f '${Version}' ora"), "0.1.0");
    assert!(m
        .ok("cat /etc/ora/ora.toml")
        .contains("# kept by the operator"));
    assert_eq!(
        m.sql("PRAGMA user_version"),
        ora::store::schema::MIGRATIONS.len().to_string()
    );
    assert_eq!(
        m.sql("SELECT count(*) FROM inventory_transactions WHERE sku = 'A-1'"),
        "1"
    );
    let after: u32 = m
        .ok("ls /var/backups/ora | grep -c 'db.gz$' || true")
        .parse()
        .unwrap();
    assert!(after > backups, "no backup before the migration");
    assert!(m
        .ok("journalctl -u ora --no-pager")
        .contains("a backup was taken first"));
    m.ok(&format!("{ORA_AS_ORA} product add PKG-1 'Packaged lamp'"));
    for i in 0..5 {
        assert_eq!(post(&format!("pkg-{i}")), "201", "{}", m.status());
    }

    // Remove: stopped, data kept. Reinstall: the same data served again.
    apt("remove ora");
    assert_eq!(m.ok("systemctl is-active ora.service || true"), "inactive");
    m.ok("test -s /var/lib/ora/ora.db && test ! -e /usr/bin/ora");
    apt(&format!("install {new}"));
    assert_eq!(m.health_code(), "200", "{}", m.status());
    assert_eq!(post("pkg-after-reinstall"), "201");
    // Purge asks nothing and keeps the data.
    apt("purge ora");
    m.ok("test -s /var/lib/ora/ora.db && test -d /var/backups/ora && test ! -e /etc/ora/ora.toml");
    apt(&format!("install {new}"));
    assert_eq!(m.health_code(), "200", "{}", m.status());
    assert_eq!(
        m.sql("SELECT count(*) FROM inventory_transactions WHERE request_id LIKE 'pkg-%'"),
        "6"
    );

    // A database made by a newer ora, then an older package: refused, the file untouched.
    m.ok("systemctl stop ora.service && sqlite3 /var/lib/ora/ora.db 'PRAGMA user_version = 99'");
    let sum = m.ok("sha256sum /var/lib/ora/ora.db");
    apt(&format!("install --allow-downgrades {old}"));
    let refused = wait_for(Duration::from_secs(30), || {
        let journal = m.ok("journalctl -u ora --no-pager -n 50 || true");
        journal.contains("newer").then_some(journal)
    });
    assert!(refused.is_some(), "no clear refusal: {}", m.status());
    assert_ne!(m.ok("systemctl is-active ora.service || true"), "active");
    assert_eq!(
        m.ok("sha256sum /var/lib/ora/ora.db"),
        sum,
        "the newer database is untouched"
    );
}

/// What an operator relies on from a box where ora was just installed under `prefix` (by
/// install.sh or the package) and is running: the timers, the sandbox (exposure at most 2.0,
/// writes only where ora keeps its files), Type=notify readiness, restarts after kill -9 and
/// from the watchdog, every job by hand, heartbeats and failure reasons, restore.sh. Leaves
/// SKU-1 at 45 and a replica configured. Returns the exposure level.
///
/// Kept whole: one walk through an installed box, each step building on the state the last
/// one left (the same database, the same running service).
fn an_installed_box_works(m: &Machine, prefix: &str) -> f64 {
    let timers = m.ok("systemctl list-timers --all --no-pager");
    for t in [
        "ora-backup.timer",
        "ora-weekly.timer",
        "ora-health.timer",
        "ora-archive.timer",
        "ora-replica-verify.timer",
    ] {
        assert!(timers.contains(t), "{t} missing from list-timers: {timers}");
    }

    // The sandbox: exposure at most 2.0, and writes only where ora keeps its files.
    let security = m.ok("systemd-analyze security ora.service --no-pager 2>&1 | tail -n 1");
    let exposure: f64 = security
        .split("ora.service:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {security:?}"));
    assert!(exposure <= 2.0, "{security}");
    let main = m.main_pid();
    let as_ora = format!("nsenter -t {main} -m -S $(id -u ora) -G $(id -g ora)");
    for dir in ["/var/lib/ora", "/var/backups/ora", "/srv/ora-replica"] {
        m.ok(&format!(
            "install -d -o ora -g ora -m 0750 {dir}; {as_ora} touch {dir}/.probe && rm {dir}/.probe"
        ));
    }
    // As root inside the service's mount namespace, so that only the mounts can refuse.
    for path in [
        "/etc",
        &format!("{prefix}/bin"),
        "/var/lib",
        "/root",
        "/home",
        "/opt",
        "/dev/shm",
    ] {
        let o = m.sh(&format!("nsenter -t {main} -m touch {path}/.probe"));
        assert!(!o.status.success(), "the service can write {path}");
    }

    // Type=notify: while the write lock is held on a new database, the unit is activating and
    // /health does not answer; once `systemctl start` returns, /health answers at once.
    m.ok("systemctl stop ora.service && rm -f /var/lib/ora/ora.db*");
    let mut holder = Command::new("nsenter")
        .args(["-t", &m.pid().to_string(), "-a"])
        .args([
            "runuser",
            "-u",
            "ora",
            "--",
            "sqlite3",
            "/var/lib/ora/ora.db",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sqlite3 holder");
    let mut hin = holder.stdin.take().expect("stdin");
    let mut hout = BufReader::new(holder.stdout.take().expect("stdout"));
    hin.write_all(b"PRAGMA journal_mode=WAL;\nBEGIN IMMEDIATE;\nSELECT 'held';\n")
        .expect("write to sqlite3");
    let mut line = String::new();
    while line.trim() != "held" {
        line.clear();
        assert!(
            hout.read_line(&mut line).expect("read sqlite3") > 0,
            "sqlite3 ended"
        );
    }
    m.ok("systemctl start --no-block ora.service");
    let started = wait_for(Duration::from_secs(30), || {
        (m.main_pid() != 0).then_some(())
    });
    assert!(started.is_some(), "ora did not start: {}", m.status());
    assert_eq!(
        m.ok("systemctl is-active ora.service || true"),
        "activating"
    );
    let early =
        m.ok("curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:8080/health || true");
    assert_eq!(early, "000", "/health answered before ready");
    hin.write_all(b"COMMIT;\n.quit\n")
        .expect("release the lock");
    drop(hin);
    let _ = holder.wait();
    m.ok("systemctl start ora.service");
    assert_eq!(m.health_code(), "200", "{}", m.status());

    // kill -9 of the main process: restarted.
    let main = m.main_pid();
    m.ok(&format!("kill -9 {main}"));
    let main = m.wait_restarted(main, "kill -9");
    assert_eq!(m.health_code(), "200");

    // A stopped (hung) server: the watchdog kills it and it is restarted. A drop-in shortens
    // the 30 s watchdog for the test.
    m.ok("mkdir -p /etc/systemd/system/ora.service.d && printf '[Service]\\nWatchdogSec=3s\\n' >/etc/systemd/system/ora.service.d/watchdog.conf && systemctl daemon-reload && systemctl restart ora.service");
    let main_before = m.main_pid();
    assert_ne!(main_before, main);
    m.ok(&format!("kill -STOP {main_before}"));
    m.wait_restarted(main_before, "SIGSTOP (watchdog)");
    let journal = m.ok("journalctl -u ora.service --no-pager");
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    m.ok("rm /etc/systemd/system/ora.service.d/watchdog.conf && systemctl daemon-reload");

    // A few movements, then every job by hand: each succeeds and leaves what it should.
    m.ok(&format!(
        "{ORA_AS_ORA} product add SKU-1 'Blue widget' && \
         {ORA_AS_ORA} stock receive SKU-1 40 && {ORA_AS_ORA} stock ship SKU-1 5"
    ));
    m.ok(&format!(
        "install -d -o ora -g ora -m 0750 /srv/ora-replica/ora && \
         {ORA_AS_ORA} replica init /srv/ora-replica/ora && \
         printf '[replica]\\ndir = \"/srv/ora-replica/ora\"\\n' >>{CONFIG} && systemctl restart ora.service"
    ));
    for job in [
        "ora-backup",
        "ora-weekly",
        "ora-health",
        "ora-archive",
        "ora-replica-verify",
    ] {
        let o = m.sh(&format!("systemctl start {job}.service"));
        assert!(
            o.status.success(),
            "{job}: {} {}",
            text(&o),
            text(&m.sh(&format!("journalctl -u {job} --no-pager -n 20")))
        );
    }
    let backups = m.ok("stat -c '%a %U %n' /var/backups/ora/*.db.gz");
    assert!(backups.starts_with("600 ora "), "{backups}");
    let kinds = m.sql("SELECT group_concat(kind, ' ') FROM (SELECT DISTINCT kind FROM ops_log WHERE ok = 1 ORDER BY kind)");
    for kind in [
        "backup",
        "backup_verify",
        "maintain_daily",
        "verify",
        "maintain_weekly",
        "health",
    ] {
        assert!(
            kinds.split(' ').any(|k| k == kind),
            "no ok {kind} row in ops_log: {kinds}"
        );
    }
    assert!(m
        .ok(&format!("{ORA_AS_ORA} replica status"))
        .contains("verified    ok"));

    // A good night pings once (backup is fail-only, maintain daily pings), and a failing job
    // names its reason in `systemctl status` and in the heartbeat: the ping after the
    // backup's is the failure's.
    let (addr, pings) = m.listener();
    m.ok(&format!(
        "sed -i 's|^HEARTBEAT_URL=.*|HEARTBEAT_URL=http://{addr}/ping/box|' /etc/ora/ora.env"
    ));
    m.ok("systemctl start ora-backup.service");
    let (line, _) = pings.recv_timeout(Duration::from_secs(10)).expect("a ping");
    assert_eq!(line, "GET /ping/box HTTP/1.1");
    m.ok("chmod 0440 /var/lib/ora/ora.db");
    let o = m.sh("systemctl start ora-health.service");
    assert!(
        !o.status.success(),
        "health passed on an unwritable database"
    );
    let status = text(&m.sh("systemctl status ora-health.service --no-pager -n 20"));
    assert!(
        status.contains("health FAIL: file: the database cannot be written"),
        "{status}"
    );
    let (line, body) = pings
        .recv_timeout(Duration::from_secs(10))
        .expect("a fail ping");
    assert_eq!(
        line, "POST /ping/box/fail HTTP/1.1",
        "the backup unit pinged twice?"
    );
    assert!(
        body.contains("health FAIL: file: the database cannot be written"),
        "{body}"
    );
    m.ok("chmod 0640 /var/lib/ora/ora.db");

    // restore.sh: a damaged backup changes nothing; a good one brings back its state.
    let newest = m.ok("ls -1t /var/backups/ora/*.db.gz | head -n 1");
    m.ok(&format!("{ORA_AS_ORA} stock receive SKU-1 1000"));
    let main = m.main_pid();
    m.ok(&format!(
        "cp {newest} /root/bad.db.gz && printf 'XXXXXXXX' | dd of=/root/bad.db.gz bs=1 seek=200 conv=notrunc status=none"
    ));
    let bad = m.sh(&format!("{prefix}/lib/ora/restore.sh /root/bad.db.gz"));
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("nothing was changed"), "{}", text(&bad));
    assert_eq!(m.main_pid(), main, "a failed drill restarted the service");
    assert_eq!(
        m.sql("SELECT current_quantity FROM inventory_current WHERE sku = 'SKU-1'"),
        "1035"
    );
    let good = m.sh(&format!("{prefix}/lib/ora/restore.sh {newest}"));
    assert!(good.status.success(), "{}\n{}", text(&good), m.status());
    assert_eq!(
        m.sql("SELECT current_quantity FROM inventory_current WHERE sku = 'SKU-1'"),
        "35"
    );
    assert_eq!(m.health_code(), "200");
    assert_eq!(m.ok("stat -c %U /var/lib/ora/ora.db"), "ora");
    m.ok(&format!("{ORA_AS_ORA} stock receive SKU-1 10"));

    exposure
}
