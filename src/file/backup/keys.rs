//! age encryption of backups (the age-encryption.org/v1 format, readable by `age` and `rage`):
//! the public key backups are encrypted to (`[backup] encrypt_to = "age1..."`), and the secret
//! identities a restore or drill may decrypt with (`--identity FILE`, `[backup]
//! identity_file`), given once per process. Never logs, prints or stores a secret key.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::x25519::{Identity, Recipient};

use crate::error::{Error, Result};

/// The first bytes of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Largest identity file read (a key is 74 characters).
const MAX_IDENTITY_FILE_BYTES: u64 = 64 * 1024;

/// Checks a public key (`age1...`) from the configuration.
pub fn recipient(text: &str) -> std::result::Result<Recipient, String> {
    Recipient::from_str(text.trim()).map_err(|e| {
        format!(
            "backup.encrypt_to {:?} is not an age public key ({e}); it starts with age1 (make one with `age-keygen`)",
            crate::model::clip(text)
        )
    })
}

/// Reads an identity file: `AGE-SECRET-KEY-1...` lines; `#` comments and blank lines are
/// skipped (the layout `age-keygen` writes).
pub fn read_identities(path: &Path) -> Result<Vec<Identity>> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| Error::usage(format!("identity file {shown}: {e}")))?;
    if meta.len() > MAX_IDENTITY_FILE_BYTES {
        return Err(Error::usage(format!(
            "identity file {shown} is {} bytes; an age identity file is a few lines",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("identity file {shown}: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The error never echoes the line: it is a secret.
        let id = Identity::from_str(line).map_err(|_| {
            Error::usage(format!(
                "identity file {shown}, line {}: not an age secret key (AGE-SECRET-KEY-1...)",
                i + 1
            ))
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(Error::usage(format!(
            "identity file {shown} holds no age secret key"
        )));
    }
    Ok(out)
}

/// Makes a new key pair: writes the identity to `path` (mode 0600, never over an existing
/// file, in the layout `age-keygen` writes) and returns the public key to put in
/// `[backup] encrypt_to`.
pub fn generate(path: &Path) -> Result<String> {
    use age::secrecy::ExposeSecret;
    let id = Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {public}\n{}\n",
        crate::model::now_utc(),
        id.to_string().expose_secret()
    );
    let write =
        |e: std::io::Error| Error::io(format!("write the identity to {}", path.display()), e);
    if path.exists() {
        return Err(Error::usage(format!(
            "{} already exists; an identity is never overwritten (move it away first)",
            path.display()
        )));
    }
    let mut f = crate::fsutil::create_private(path).map_err(write)?;
    f.write_all(text.as_bytes()).map_err(write)?;
    f.sync_all().map_err(write)?;
    Ok(public)
}

/// The age identities (secret keys) a command was given (`--identity`, `[backup]
/// identity_file`) to open encrypted backups and replica generations with. Passed in the
/// options of each operation that may need them; none is kept by the process.
#[derive(Clone, Default)]
pub struct Identities(pub Vec<Identity>);

impl Identities {
    pub fn as_slice(&self) -> &[Identity] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

/// Wraps `out` so that what is written to it is encrypted to `to`; `finish` it at the end.
pub fn encrypt<W: Write>(to: &Recipient, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
    encrypt_to_all(&[to], out)
}

/// [`encrypt`] to several public keys: any one of their identities opens the result.
pub fn encrypt_to_all<W: Write>(
    to: &[&Recipient],
    out: W,
) -> std::io::Result<age::stream::StreamWriter<W>> {
    let enc = age::Encryptor::with_recipients(to.iter().map(|r| *r as &dyn age::Recipient))
        .map_err(std::io::Error::other)?;
    enc.wrap_output(out)
}

/// Why an age file could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// No identity at all to try.
    NoKey,
    /// None of the identities opens it (it may be fine, for its own key).
    WrongKey,
    /// Its header does not read: the file is damaged.
    Damaged(String),
    Other(String),
}

/// Opens age `input` with any of `identities`.
pub fn decrypt_with<R: Read>(
    input: R,
    identities: &[Identity],
) -> std::result::Result<age::stream::StreamReader<R>, Open> {
    let ids: Vec<&dyn age::Identity> = identities.iter().map(|i| i as &dyn age::Identity).collect();
    if ids.is_empty() {
        return Err(Open::NoKey);
    }
    let dec = age::Decryptor::new(input).map_err(|e| Open::Damaged(e.to_string()))?;
    dec.decrypt(ids.into_iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Open::WrongKey,
        other => Open::Other(other.to_string()),
    })
}

/// Opens an encrypted backup with any of `identities` (the ones the command was given, and a
/// replica generation's own).
pub fn decrypt<R: Read>(
    input: R,
    what: &str,
    path: &Path,
    identities: &[Identity],
) -> Result<age::stream::StreamReader<R>> {
    let shown = path.display();
    decrypt_with(input, identities).map_err(|e| match e {
        // Not a verdict on the file: nothing could be checked without the key.
        Open::NoKey => Error::config(format!(
            "{what}: {shown} is encrypted; pass --identity FILE (the age secret key it was encrypted to), or set [backup] identity_file"
        )),
        Open::Damaged(e) => Error::usage(format!(
            "{what}: {shown} is damaged: its age header does not read ({e})"
        )),
        // Not a verdict on the file either: it may be fine, for its own key.
        Open::WrongKey => Error::config(format!(
            "{what}: the identity given does not open {shown}: it was encrypted to another key"
        )),
        Open::Other(e) => Error::usage(format!("{what}: {shown} cannot be decrypted: {e}")),
    })
}

/// A writer that hashes (SHA-256) and counts what passes through it to `inner`.
pub struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        use sha2::Digest;
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex digest and the byte count of everything written.
    pub fn finish(self) -> (String, u64) {
        use sha2::Digest;
        (crate::fsutil::hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes = self.bytes.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
