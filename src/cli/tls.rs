//! `ora tls selfsigned` (a certificate and key for a box without a CA, with the fingerprint
//! to pin on the other box) and `ora tls fingerprint FILE` (the fingerprint of a PEM
//! certificate). Arguments and printing only; the pair is made by [`crate::tls`]. Never
//! touches the database.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Ctx;
use crate::error::{exit, Error, Result};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a self-signed certificate and key for `[server] tls_cert` / `tls_key`.
    Selfsigned(SelfsignedArgs),
    /// Print the fingerprint of a PEM certificate (what `[standby] tls_pins` and `--pin` take).
    Fingerprint {
        /// The PEM certificate file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SelfsignedArgs {
    /// Where to write the certificate (refused if it exists).
    #[arg(long, value_name = "FILE", default_value = "ora-cert.pem")]
    pub cert: PathBuf,
    /// Where to write the key, mode 0600 (refused if it exists).
    #[arg(long, value_name = "FILE", default_value = "ora-key.pem")]
    pub key: PathBuf,
    /// A host name or IP address the certificate names, besides this host's name, localhost
    /// and 127.0.0.1; may be given more than once.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn run(ctx: &Ctx, c: TlsCommand) -> Result<i32> {
    match c {
        TlsCommand::Selfsigned(a) => selfsigned(ctx, &a),
        TlsCommand::Fingerprint { file } => {
            let pem = std::fs::read(&file)
                .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
            let fp = crate::tls::fingerprint(&pem)
                .map_err(|e| e.map_message(|m| format!("{}: {m}", file.display())))?;
            if ctx.json {
                super::output::json(&serde_json::json!({"fingerprint": fp}))?;
            } else {
                outln!("{fp}");
            }
            Ok(exit::OK)
        }
    }
}

fn selfsigned(ctx: &Ctx, a: &SelfsignedArgs) -> Result<i32> {
    let mut names = vec![
        host_name(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    for n in &a.names {
        if n.is_empty() || n.len() > 253 || !n.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::usage(format!(
                "--name {:?} is not a host name or IP address",
                crate::model::clip(n)
            )));
        }
        names.push(n.clone());
    }
    names.retain(|n| !n.is_empty());
    names.dedup();
    let pair = crate::tls::selfsigned(&names)?;
    crate::tls::write_pair(&pair, &a.cert, &a.key)?;
    if ctx.json {
        super::output::json(&serde_json::json!({
            "cert": a.cert, "key": a.key, "names": names, "fingerprint": pair.fingerprint,
        }))?;
        return Ok(exit::OK);
    }
    outln!(
        "tls: wrote {} and {} (the key is readable by its owner only)",
        a.cert.display(),
        a.key.display()
    );
    outln!("tls: names {}", names.join(", "));
    outln!("tls: fingerprint {}", pair.fingerprint);
    outln!(
        "tls: on this box set [server] tls_cert = {:?} and tls_key = {:?}; on the other box add the fingerprint to [standby] tls_pins (or pass --pin)",
        a.cert.display().to_string(),
        a.key.display().to_string()
    );
    Ok(exit::OK)
}

/// This host's name (empty when it cannot be read).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the stack buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
