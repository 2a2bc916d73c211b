//! Encryption of the replica, when `[backup] encrypt_to` names an age public key: what leaves
//! the box on the replica disk can only be read by whoever holds the matching secret key.
//!
//! Each generation has its own 32-byte key K, derived from the database's replica secret
//! (`replica_state.seal_secret`, random, made when encryption is turned on or its public key
//! changes, cleared when it is turned off) and the generation's salt. From K:
//! - every record's changes are sealed with XChaCha20-Poly1305 under a record key, a random
//!   24-byte nonce per record, the record's header as associated data (see `format`);
//! - the base is an age file (`base.db.gz.age`) encrypted to two recipients: the configured
//!   public key and a generation identity derived from K;
//! - `key.age` holds K, encrypted to the configured public key only.
//!
//! So the box (which holds the secret, as it holds the data itself) appends to and verifies its
//! replica without the secret key, and anyone with the secret key (`--identity`) restores it on
//! a new machine. base.json keeps the salt, the public key and a short check of K, never K.
//! Commit times, sizes and ledger ids stay readable; the changes themselves do not. Never
//! writes K or the secret anywhere but the database and `key.age`, never logs them.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::file::backup::keys;
use crate::store::connection::Tuning;

use super::dir::{BaseMeta, Generation};

/// The file in a generation that holds its key, encrypted to the public key.
pub const KEY_FILE: &str = "key.age";
/// Bytes a sealed record's changes grow by: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Largest `key.age` read (it holds 64 hex characters).
const MAX_KEY_FILE: u64 = 16 * 1024;

fn derive(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0]);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(std::io::Error::other)?;
    Ok(b)
}

/// The key of one generation.
#[derive(Clone)]
pub struct GenKey {
    k: [u8; 32],
}

impl std::fmt::Debug for GenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GenKey(..)")
    }
}

impl GenKey {
    /// K of generation `generation` of database `database_id`, from the database's secret.
    pub fn derive(secret: &[u8], database_id: &str, generation: u64, salt: &str) -> GenKey {
        GenKey {
            k: derive(
                "ora replica generation key",
                &[
                    secret,
                    database_id.as_bytes(),
                    &generation.to_le_bytes(),
                    salt.as_bytes(),
                ],
            ),
        }
    }

    /// A short public check of K (base.json), to tell a wrong key from a damaged file.
    pub fn check(&self) -> String {
        crate::fsutil::hex(&derive("ora replica key check", &[&self.k])[..8])
    }

    pub fn records(&self) -> RecordKey {
        let k = derive("ora replica records", &[&self.k]);
        RecordKey(XChaCha20Poly1305::new(&k.into()))
    }

    /// The generation's own age identity (one of the base's two recipients).
    pub fn base_identity(&self) -> std::io::Result<age::x25519::Identity> {
        use bech32::ToBase32;
        let sk = derive("ora replica base identity", &[&self.k]);
        // Any 32 bytes are an X25519 secret key; written the way age writes one.
        let text = bech32::encode("age-secret-key-", sk.to_base32(), bech32::Variant::Bech32)
            .map_err(std::io::Error::other)?
            .to_uppercase();
        age::x25519::Identity::from_str(&text).map_err(std::io::Error::other)
    }

    /// `key.age`: K encrypted to `to`.
    pub fn wrap(&self, to: &age::x25519::Recipient) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = keys::encrypt(to, &mut out)?;
        w.write_all(crate::fsutil::hex(&self.k).as_bytes())?;
        w.finish()?;
        Ok(out)
    }

    fn unwrap(
        bytes: &[u8],
        identities: &[age::x25519::Identity],
    ) -> std::result::Result<GenKey, keys::Open> {
        let r = keys::decrypt_with(bytes, identities)?;
        let mut text = String::new();
        r.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|e| keys::Open::Damaged(format!("it cannot be decrypted ({e})")))?;
        let k = crate::fsutil::unhex32(text.trim())
            .ok_or_else(|| keys::Open::Damaged("it does not hold a key".into()))?;
        Ok(GenKey { k })
    }
}

/// Seals and opens the changes of records.
pub struct RecordKey(XChaCha20Poly1305);

impl RecordKey {
    /// nonce | ciphertext | tag of `plain`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> std::io::Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let ct = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| std::io::Error::other("record encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The changes inside `sealed`, or None when it was not sealed with this key for `aad`
    /// (a damaged byte, or another key).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.0
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
    }
}

/// What a new generation is sealed with.
pub struct Sealing {
    pub to: age::x25519::Recipient,
    pub to_text: String,
    pub salt: String,
    pub key: GenKey,
}

impl Sealing {
    /// A new generation's sealing, from the database's secret.
    pub fn new(
        secret: &[u8],
        to_text: &str,
        database_id: &str,
        generation: u64,
    ) -> Result<Sealing> {
        let to = keys::recipient(to_text).map_err(|m| Error::config(format!("config: {m}")))?;
        let salt = crate::fsutil::hex(
            &random::<16>().map_err(|e| Error::io("replica: make a generation salt", e))?,
        );
        let key = GenKey::derive(secret, database_id, generation, &salt);
        Ok(Sealing {
            to,
            to_text: to_text.trim().to_string(),
            salt,
            key,
        })
    }
}

/// The database's replica secret and the public key it was made for.
#[derive(Clone, Default)]
pub struct Secret {
    pub bytes: Option<Vec<u8>>,
    pub to: Option<String>,
}

impl Secret {
    /// Whether this is the secret a generation encrypted to `to` needs (for no encryption:
    /// none at all).
    pub fn serves(&self, to: Option<&str>) -> bool {
        match to.map(str::trim) {
            Some(t) => self.bytes.is_some() && self.to.as_deref() == Some(t),
            None => self.bytes.is_none(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({:?})", self.to)
    }
}

/// Reads the secret (none on a database older than replica encryption).
pub fn read_secret(conn: &rusqlite::Connection) -> Secret {
    conn.query_row(
        "SELECT seal_secret, seal_to FROM replica_state WHERE id = 1",
        [],
        |r| {
            Ok(Secret {
                bytes: r.get::<_, Option<Vec<u8>>>(0)?.filter(|b| b.len() == 32),
                to: r.get(1)?,
            })
        },
    )
    .unwrap_or_default()
}

/// Makes the database's secret match the configuration for a replica that starts afresh
/// (`replica init`): a new one when encryption is on and there is none or it was made for
/// another public key, none when encryption is off (so a plain base never carries the secret
/// of an encrypted generation). Writes only when something changes.
pub fn prepare(db: &Path, tuning: &Tuning, to: Option<&str>) -> Result<()> {
    let current = {
        let c = crate::file::check::open_source(db, tuning, "replica")?;
        read_secret(&c)
    };
    if current.serves(to) {
        return Ok(());
    }
    set(db, tuning, to.map(str::trim))
}

/// Before a process starts shipping: a secret when encryption is on and the database has none
/// yet, so the shipper need not write one while a strict writer may hold the write lock.
/// Never replaces or removes one: the shipper does that when it hands the open generation
/// over to the next, which it can only continue while the secret is still there.
pub fn prepare_from(current: &Secret, db: &Path, tuning: &Tuning, to: Option<&str>) -> Result<()> {
    let to = to.map(str::trim);
    if to.is_none() || current.bytes.is_some() {
        return Ok(());
    }
    set(db, tuning, to)
}

fn set(db: &Path, tuning: &Tuning, to: Option<&str>) -> Result<()> {
    super::setup::set_state(
        db,
        tuning,
        Duration::from_secs(10),
        "store the replica secret",
        |c| store_secret(c, to),
    )?;
    if let Some(t) = to {
        log::info!("replica: new generations are encrypted to {t}");
    }
    Ok(())
}

/// Sets a new random secret for `to` (none when `to` is None), inside the caller's write
/// transaction.
pub fn store_secret(conn: &rusqlite::Connection, to: Option<&str>) -> rusqlite::Result<()> {
    let secret = match to {
        Some(_) => Some(
            random::<32>()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
                .to_vec(),
        ),
        None => None,
    };
    conn.execute(
        "UPDATE replica_state SET seal_secret = ?1, seal_to = ?2 WHERE id = 1",
        rusqlite::params![secret, to.map(str::trim)],
    )
    .map(|_| ())
}

/// The record key of `g` from the database's secret (None: `g` is not encrypted; an error:
/// the secret does not open it).
pub fn own_key(secret: &Secret, g: &Generation) -> std::result::Result<Option<RecordKey>, String> {
    if !g.sealed() {
        return Ok(None);
    }
    let s = secret
        .bytes
        .as_ref()
        .ok_or("the database has no replica secret")?;
    let k = GenKey::derive(s, &g.base.database_id, g.number, &g.base.key_salt);
    if k.check() != g.base.key_check {
        return Err(format!(
            "generation {} was encrypted with an earlier replica secret",
            g.number
        ));
    }
    Ok(Some(k.records()))
}

/// Where keys of a replica's generations come from: the database's secret (on the box), and
/// the identities the command was given (`--identity`, `[backup] identity_file`).
#[derive(Clone, Default, Debug)]
pub struct Keyring {
    pub secret: Secret,
    pub identities: keys::Identities,
}

/// Why a generation's key could not be had.
#[derive(Debug, Clone)]
pub enum NoKey {
    /// No key at hand opens it (not a verdict on the files).
    Locked(String),
    /// Its key file is damaged.
    Damaged(String),
}

impl NoKey {
    pub fn into_error(self) -> Error {
        match self {
            NoKey::Locked(m) => Error::config(m),
            NoKey::Damaged(m) => Error::check_failed(m),
        }
    }
}

impl Keyring {
    /// The secret of the database at `db`, when it is there and readable.
    pub fn of_database(db: &Path, tuning: &Tuning, identities: keys::Identities) -> Keyring {
        let secret = if db.is_file() {
            crate::file::check::open_source(db, tuning, "replica")
                .map(|c| read_secret(&c))
                .unwrap_or_default()
        } else {
            Secret::default()
        };
        Keyring { secret, identities }
    }

    /// The key of `g` (None when it is not encrypted).
    pub fn key_of(&self, g: &Generation) -> std::result::Result<Option<GenKey>, NoKey> {
        let Some(to) = g.base.encrypted_to.as_deref() else {
            return Ok(None);
        };
        if let Some(s) = &self.secret.bytes {
            let k = GenKey::derive(s, &g.base.database_id, g.number, &g.base.key_salt);
            if k.check() == g.base.key_check {
                return Ok(Some(k));
            }
        }
        let file = g.path.join(KEY_FILE);
        if self.identities.is_empty() {
            return Err(NoKey::Locked(format!(
                "generation {} of the replica is encrypted to {to}; pass --identity FILE (its age secret key), or set [backup] identity_file",
                g.number
            )));
        }
        let bytes = super::dir::read_checked(&file, MAX_KEY_FILE).map_err(|why| {
            NoKey::Damaged(format!(
                "the replica is damaged: generation {}'s key file {why}",
                g.number
            ))
        })?;
        let k = GenKey::unwrap(&bytes, self.identities.as_slice()).map_err(|e| match e {
            keys::Open::NoKey | keys::Open::WrongKey => NoKey::Locked(format!(
                "the identity given does not open generation {} of the replica: it is encrypted to {to}",
                g.number
            )),
            keys::Open::Damaged(why) | keys::Open::Other(why) => NoKey::Damaged(format!(
                "the replica is damaged: generation {}'s key file {}: {why}",
                g.number,
                file.display()
            )),
        })?;
        if k.check() != g.base.key_check {
            return Err(NoKey::Damaged(format!(
                "the replica is damaged: generation {}'s key does not match its base.json",
                g.number
            )));
        }
        Ok(Some(k))
    }
}

/// Whether `meta` was sealed for the public key `to` (None: not sealed).
pub fn sealed_for(meta: &BaseMeta, to: Option<&str>) -> bool {
    meta.encrypted_to.as_deref() == to.map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_seal_and_open_only_with_their_key_and_header() {
        let k = GenKey::derive(&[7u8; 32], "ab", 3, "salt").records();
        let sealed = k.seal(b"header", b"the changes").unwrap();
        assert_eq!(sealed.len(), b"the changes".len() + OVERHEAD);
        assert_eq!(k.open(b"header", &sealed).unwrap(), b"the changes");
        assert!(k.open(b"other header", &sealed).is_none());
        let other = GenKey::derive(&[7u8; 32], "ab", 4, "salt").records();
        assert!(other.open(b"header", &sealed).is_none());
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 0x20;
            assert!(k.open(b"header", &b).is_none(), "byte {i}");
        }
        assert!(k.open(b"header", &sealed[..OVERHEAD - 1]).is_none());
        // A fresh nonce each time: the same changes never seal to the same bytes.
        assert_ne!(sealed, k.seal(b"header", b"the changes").unwrap());
    }

    #[test]
    fn the_generation_identity_opens_what_is_encrypted_to_it() {
        let k = GenKey::derive(&[1u8; 32], "cd", 1, "s");
        let id = k.base_identity().unwrap();
        let again = GenKey::derive(&[1u8; 32], "cd", 1, "s")
            .base_identity()
            .unwrap();
        assert_eq!(id.to_public().to_string(), again.to_public().to_string());
        let mut out = Vec::new();
        let mut w = keys::encrypt(&id.to_public(), &mut out).unwrap();
        w.write_all(b"base").unwrap();
        w.finish().unwrap();
        let mut r = keys::decrypt_with(&out[..], &[id]).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "base");
        assert_ne!(
            k.check(),
            GenKey::derive(&[1u8; 32], "cd", 1, "t").check(),
            "the salt changes the key"
        );
    }
}
