//! The server asks itself: every period, a thread connects to the server's own listening
//! socket, sends `GET /health/live` and, when a 200 comes back in time, ticks the watchdog's
//! heartbeat. So systemd is told "alive" only while a request can really be accepted, parsed,
//! handled and answered; a server that accepts but cannot answer (every slot held, no
//! connection thread starting) is restarted. A server speaking HTTPS is asked over TLS,
//! trusting the certificate it serves now. Never touches the database.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::sdnotify::Heartbeat;
use crate::shutdown::Shutdown;
use crate::tls::ServerTls;

/// Starts the probing thread: one probe every `period`, each allowed `period` to answer.
pub fn start(
    listening: SocketAddr,
    beat: Heartbeat,
    shutdown: Shutdown,
    period: Duration,
    tls: Option<std::sync::Arc<ServerTls>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let target = reachable(listening);
    std::thread::Builder::new()
        .name("ora-http-probe".into())
        .spawn(move || {
            let mut failing = false;
            while !shutdown.wait(period) {
                match once(target, period, tls.as_deref()) {
                    Ok(()) => {
                        beat.tick();
                        if failing {
                            log::info!("http: the server answers its own probe again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            log::error!("http: the server did not answer its own probe: {e}");
                        }
                        failing = true;
                    }
                }
            }
        })
}

/// The address to connect to: the listening one, or loopback when it listens on all.
fn reachable(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// One probe: a 200 within `limit`, or what went wrong.
pub fn once(target: SocketAddr, limit: Duration, tls: Option<&ServerTls>) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&target, limit).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let req = format!("GET /health/live HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    let answer = match tls {
        None => exchange(s, &req)?,
        Some(tls) => {
            let pin = crate::tls::parse_pin(&tls.fingerprint())?;
            let config = crate::tls::Trust::new(vec![pin], None).config()?;
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
            exchange(rustls::StreamOwned::new(conn, s), &req)?
        }
    };
    let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    if status_line.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(format!(
            "it answered {:?}",
            String::from_utf8_lossy(status_line)
        ))
    }
}

/// Sends `req` on `s` and reads the first 4 KiB of the answer.
fn exchange(mut s: impl Read + Write, req: &str) -> Result<Vec<u8>, String> {
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match s.take(4096).read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        // A TLS peer that closes without its close_notify: what came is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(answer),
        Err(e) => Err(e.to_string()),
    }
}
