//! Two costs the writer's bounds leave out, measured alone on this machine so that a figure
//! can be set against what is physically left for it: the turnaround of closed-loop clients
//! (answered together, each back with its next request) and one append with `fdatasync` on a
//! replica's file system. Neither touches ora: plain threads and channels, a plain file.
//! Never used as a figure of ora's own.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds per round for `clients` closed-loop threads answered together by one thread that
/// does no work: each client makes its next request (as the harness's clients do), sends it
/// and waits for its answer; the answering thread waits until all of them are in, then
/// answers all: every caller woken, back, and the answering thread woken. A writer that waited
/// for its whole group before it began would pay this between two groups on top of the work
/// and the COMMIT; one that runs the first arrivals while the last are on their way hides
/// part of it.
pub fn turnaround(clients: usize, skus: usize, run_for: Duration) -> f64 {
    let (to_server, requests) = mpsc::channel::<mpsc::SyncSender<()>>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (to_server, stop) = (to_server.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng = ora::sample::Rng::new(9_000 + c as u64);
                let (tx, rx) = mpsc::sync_channel(1);
                // What the harness's clients do per request besides waiting: make it, keep
                // its latency.
                let mut lat = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let req = crate::store_bench::next_movement(&mut rng, skus);
                    let t = Instant::now();
                    if to_server.send(tx.clone()).is_err() || rx.recv().is_err() {
                        break;
                    }
                    drop(req);
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    drop(to_server);
    let mut rounds = 0u64;
    let mut waiting = Vec::with_capacity(clients);
    let start = Instant::now();
    let deadline = start + run_for;
    while Instant::now() < deadline {
        while waiting.len() < clients {
            match requests.recv() {
                Ok(reply) => waiting.push(reply),
                Err(_) => break,
            }
        }
        for reply in waiting.drain(..) {
            let _ = reply.send(());
        }
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Answer whoever is still waiting, so every client sees the stop.
    while let Ok(reply) = requests.recv_timeout(Duration::from_millis(50)) {
        let _ = reply.send(());
    }
    for h in handles {
        let _ = h.join();
    }
    secs / rounds.max(1) as f64
}

/// Median seconds of one `bytes`-long write into zeros written before, then `fdatasync`, in
/// a file under `dir` (what a strict group's replica append costs that file system, with
/// nothing of ora's around it); `None` when the file cannot be made.
pub fn append_sync(dir: &std::path::Path, bytes: usize, times: usize) -> Option<f64> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let path = dir.join("append-sync-probe");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ok()?;
    let room = bytes.checked_mul(times)?;
    f.write_all(&vec![0u8; room]).ok()?;
    f.sync_all().ok()?;
    let buf = vec![0x5au8; bytes];
    let mut took = Vec::with_capacity(times);
    for i in 0..times {
        let t = Instant::now();
        f.write_all_at(&buf, (i * bytes) as u64).ok()?;
        f.sync_data().ok()?;
        took.push(t.elapsed().as_secs_f64());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    took.sort_by(f64::total_cmp);
    took.get(times / 2).copied()
}

/// CPU time so far, in seconds: of process `pid` (`/proc/PID/stat`'s utime + stime), of this
/// process (every thread), and of the whole machine busy (all cores, `/proc/stat` without
/// idle and iowait), with the machine's cores.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub child: f64,
    pub own: f64,
    pub busy: f64,
    pub cores: f64,
}

/// Reads a [`CpuSample`]; `None` when `/proc` cannot be read.
pub fn cpu_sample(pid: u32) -> Option<CpuSample> {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    if hz <= 0.0 {
        return None;
    }
    let ticks = |stat: &str| -> Option<f64> {
        // The command name may hold spaces; the fields after it are plain numbers.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    };
    let child = ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)? / hz;
    let own = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)? / hz;
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    let mut cores = 0.0;
    let mut busy = 0.0;
    for line in all.lines() {
        if line.starts_with("cpu") && !line.starts_with("cpu ") {
            cores += 1.0;
        }
        if let Some(rest) = line.strip_prefix("cpu ") {
            let v: Vec<f64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let total: f64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
            busy = (total - idle) / hz;
        }
    }
    Some(CpuSample {
        child,
        own,
        busy,
        cores,
    })
}
