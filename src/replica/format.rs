//! The byte format of the replica's log segments: pure encoding and decoding, no I/O. Every
//! size read from a file is checked before it is used, so a damaged or hostile segment is
//! reported, never trusted.
//!
//! A segment is a 64-byte header then records, back to back:
//!
//! ```text
//! header:  "ORA-REPLICA-SEG1" | database id (32 ASCII hex) | generation u64 | first seq i64
//! record:  "ORAR" | changeset length u32 | seq i64 | committed ms i64 | flags u32
//!          | first ledger id i64 | last ledger id i64 | previous hash [32] | header check [4]
//!          | changeset | hash [32]
//! ```
//!
//! All integers little-endian. The hash is [`Record::compute_hash`]: SHA-256 over the previous
//! record's hash and everything else, so the records of a generation form a chain that starts
//! at its base's hash; a flipped byte anywhere breaks it. The header check (the first four
//! bytes of SHA-256 over the 76 header bytes before it) tells a damaged length field from a
//! record cut short.
//!
//! After the last record a segment may hold zeros: space allotted ahead of the records so that
//! an append's fsync has no file size to write (`segment`). A crash while an append was
//! written leaves a torn tail (never acknowledged): a record whose bytes end with the file, or
//! one that fails its checks with some of its sectors still reading zero, followed by nothing
//! but zeros past [`APPEND_MAX`]. Anything else that does not check out is damage: a flipped
//! or rotten byte leaves no sector of zeros behind.
//!
//! In an encrypted generation the changeset field holds the changes sealed (`seal`: nonce,
//! ciphertext, tag; the 76 header bytes are its associated data), the length counts those
//! bytes, and the hash is still over the plain record, checked once it is decrypted.

use super::seal::{self, RecordKey};
use crate::store::capture::Record;

const SEGMENT_MAGIC: &[u8; 16] = b"ORA-REPLICA-SEG1";
pub const HEADER_LEN: usize = 64;
const RECORD_MAGIC: &[u8; 4] = b"ORAR";
/// Bytes of a record's header before its check.
const HEAD_CHECKED: usize = 4 + 4 + 8 + 8 + 4 + 8 + 8 + 32;
/// Bytes of a record before its changeset.
const RECORD_HEAD: usize = HEAD_CHECKED + 4;
/// Bytes after the changeset.
const RECORD_TAIL: usize = 32;
/// Largest changeset a record may carry (a group of 100,000 movements is far below).
const MAX_CHANGESET: usize = 256 * 1024 * 1024;
/// Most bytes one append writes into space allotted ahead of the records (a larger one grows
/// the file instead): an interrupted append's bytes lie within this many of where it began.
pub const APPEND_MAX: usize = 256 * 1024;
/// The unit a disk writes whole or not at all when the power goes: a torn append leaves
/// whole sectors unwritten, still zero.
const SECTOR: usize = 512;

/// The header of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub database_id: String,
    pub generation: u64,
    pub first_seq: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(SEGMENT_MAGIC);
        let mut id = [b'0'; 32];
        for (d, s) in id.iter_mut().zip(self.database_id.bytes()) {
            *d = s;
        }
        out.extend_from_slice(&id);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < HEADER_LEN {
            return Err(format!(
                "the segment header is cut short ({} of {HEADER_LEN} bytes)",
                b.len()
            ));
        }
        if &b[..16] != SEGMENT_MAGIC {
            return Err("not an ora replica segment (wrong magic bytes)".into());
        }
        let id = &b[16..48];
        if !id.iter().all(|c| c.is_ascii_hexdigit()) {
            return Err("the segment header's database id is damaged".into());
        }
        Ok(SegmentHeader {
            database_id: String::from_utf8_lossy(id).into_owned(),
            generation: u64_at(b, 48),
            first_seq: i64_at(b, 56),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(x)
}

/// Appends the bytes of `r` to `out`, its changes sealed with `key` when given.
pub fn encode_record(
    r: &Record,
    out: &mut Vec<u8>,
    key: Option<&RecordKey>,
) -> std::io::Result<()> {
    let stored = r.changeset.len() + if key.is_some() { seal::OVERHEAD } else { 0 };
    let stored_len = u32::try_from(stored)
        .map_err(|_| std::io::Error::other("a commit too large for one replica record"))?;
    out.reserve(RECORD_HEAD + stored + RECORD_TAIL);
    let begin = out.len();
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&stored_len.to_le_bytes());
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.committed_ms.to_le_bytes());
    out.extend_from_slice(&r.flags.to_le_bytes());
    out.extend_from_slice(&r.first_ledger.to_le_bytes());
    out.extend_from_slice(&r.last_ledger.to_le_bytes());
    out.extend_from_slice(&r.prev_hash);
    let check = head_check(&out[begin..]);
    out.extend_from_slice(&check);
    match key {
        None => out.extend_from_slice(&r.changeset),
        Some(k) => {
            let sealed = k.seal(&out[begin..begin + HEAD_CHECKED], &r.changeset)?;
            out.extend_from_slice(&sealed);
        }
    }
    out.extend_from_slice(&r.hash);
    Ok(())
}

fn head_check(head: &[u8]) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(head);
    [d[0], d[1], d[2], d[3]]
}

/// The bytes a record takes.
pub fn record_len(r: &Record, sealed: bool) -> usize {
    RECORD_HEAD + r.changeset.len() + RECORD_TAIL + if sealed { seal::OVERHEAD } else { 0 }
}

/// How the changes of the records of a segment are read.
#[derive(Clone, Copy)]
pub enum Open<'a> {
    /// Not encrypted: every record's hash is checked.
    Plain,
    /// Encrypted, opened with its generation's key: each record decrypted, then its hash
    /// checked.
    Key(&'a RecordKey),
    /// Encrypted and no key at hand: the structure only (header checks, lengths, the chain of
    /// the hashes as written); the changes stay sealed.
    Sealed,
}

/// How a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a whole, checked record, or is a zero after the last one.
    Clean,
    /// The records end at byte `at` with an append a crash interrupted: everything before is
    /// good.
    Torn { at: usize },
    /// The record at byte `at` is damaged: `why`.
    Damaged { at: usize, why: String },
}

/// The records of a segment, with the byte offset at which each ends.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub header: SegmentHeader,
    pub records: Vec<(Record, usize)>,
    pub tail: Tail,
}

/// Decodes a whole segment. Each record's own hash is checked (unless `open` is
/// [`Open::Sealed`]); whether records chain is the caller's business (it knows the base).
pub fn parse_segment(b: &[u8], open: Open) -> Result<Parsed, String> {
    let header = SegmentHeader::decode(b)?;
    let mut at = HEADER_LEN;
    let mut records = Vec::new();
    let tail = loop {
        if at == b.len() {
            break Tail::Clean;
        }
        match parse_record(&b[at..], open) {
            Ok((r, n)) => {
                at += n;
                records.push((r, at));
            }
            Err(RecordError::Short) => break Tail::Torn { at },
            Err(RecordError::Bad(why)) => break after_records(b, at, why),
        }
    };
    Ok(Parsed {
        header,
        records,
        tail,
    })
}

/// How a segment ends whose bytes from `at` on are not a record (`why`): zeros only are
/// space allotted ahead (clean); an append a crash interrupted is torn: its bytes lie within
/// [`APPEND_MAX`] of `at` and at least one sector of its span still reads zero from `at` on
/// (a sector it never wrote). Anything else is damage.
fn after_records(b: &[u8], at: usize, why: String) -> Tail {
    let rest = &b[at..];
    let Some(last) = rest.iter().rposition(|&x| x != 0) else {
        return Tail::Clean;
    };
    if last >= APPEND_MAX {
        return Tail::Damaged { at, why };
    }
    // The span the interrupted record covered: to its last written byte, or as far as its
    // intact header says it reaches.
    let span = record_head(rest)
        .map_or(0, |(_, total)| total)
        .max(last + 1)
        .min(rest.len());
    let end = at + span;
    let mut sector = at - at % SECTOR;
    while sector < end {
        let from = sector.max(at);
        let to = (sector + SECTOR).min(b.len());
        if b[from..to].iter().all(|&x| x == 0) {
            return Tail::Torn { at };
        }
        sector += SECTOR;
    }
    Tail::Damaged { at, why }
}

/// Why one record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RecordError {
    /// The bytes end before the record does.
    Short,
    Bad(String),
}

/// The checked header of the record at the start of `b`: its changeset's length and the bytes
/// the whole record takes (which `b` may not hold yet).
fn record_head(b: &[u8]) -> Result<(usize, usize), RecordError> {
    if b.len() < RECORD_HEAD {
        return Err(RecordError::Short);
    }
    if &b[..4] != RECORD_MAGIC {
        return Err(RecordError::Bad(
            "no record starts here (wrong magic bytes)".into(),
        ));
    }
    if head_check(&b[..HEAD_CHECKED]) != b[HEAD_CHECKED..RECORD_HEAD] {
        return Err(RecordError::Bad(
            "a record header fails its check (the file is damaged)".into(),
        ));
    }
    let len = u32_at(b, 4) as usize;
    if len > MAX_CHANGESET {
        return Err(RecordError::Bad(format!(
            "a record claims {len} bytes of changes, more than any record holds"
        )));
    }
    let total = RECORD_HEAD
        .checked_add(len)
        .and_then(|n| n.checked_add(RECORD_TAIL))
        .ok_or_else(|| RecordError::Bad("record length overflows".into()))?;
    Ok((len, total))
}

/// Decodes one record at the start of `b`; returns it and the bytes it took.
fn parse_record(b: &[u8], open: Open) -> Result<(Record, usize), RecordError> {
    let (len, total) = record_head(b)?;
    if b.len() < total {
        return Err(RecordError::Short);
    }
    let mut prev_hash = [0u8; 32];
    prev_hash.copy_from_slice(&b[44..76]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[RECORD_HEAD + len..total]);
    let stored = &b[RECORD_HEAD..RECORD_HEAD + len];
    let seq = i64_at(b, 8);
    let changeset = match open {
        Open::Plain | Open::Sealed => stored.to_vec(),
        Open::Key(k) => k.open(&b[..HEAD_CHECKED], stored).ok_or_else(|| {
            RecordError::Bad(format!(
                "record {seq} does not decrypt with its generation's key (the file is damaged)"
            ))
        })?,
    };
    let r = Record {
        seq,
        committed_ms: i64_at(b, 16),
        flags: u32_at(b, 24),
        first_ledger: i64_at(b, 28),
        last_ledger: i64_at(b, 36),
        prev_hash,
        hash,
        changeset,
    };
    if !matches!(open, Open::Sealed) && !r.hash_ok() {
        return Err(RecordError::Bad(format!(
            "record {} fails its checksum (the file is damaged)",
            r.seq
        )));
    }
    Ok((r, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::capture::ZERO_HASH;

    fn rec(seq: i64, prev: [u8; 32], cs: &[u8]) -> Record {
        let hash = Record::compute_hash(&prev, seq, 1000 + seq, 0, (seq, seq), cs);
        Record {
            seq,
            committed_ms: 1000 + seq,
            flags: 0,
            first_ledger: seq,
            last_ledger: seq,
            prev_hash: prev,
            hash,
            changeset: cs.to_vec(),
        }
    }

    fn key() -> RecordKey {
        seal::GenKey::derive(&[9u8; 32], "ab", 3, "salt").records()
    }

    fn segment_with(n: i64, k: Option<&RecordKey>) -> (Vec<u8>, Vec<Record>) {
        let mut out = SegmentHeader {
            database_id: "ab".repeat(16),
            generation: 3,
            first_seq: 1,
        }
        .encode();
        let mut prev = ZERO_HASH;
        let mut recs = Vec::new();
        for s in 1..=n {
            let r = rec(s, prev, format!("changes {s}").as_bytes());
            prev = r.hash;
            encode_record(&r, &mut out, k).unwrap();
            recs.push(r);
        }
        (out, recs)
    }

    fn segment(n: i64) -> (Vec<u8>, Vec<Record>) {
        segment_with(n, None)
    }

    /// Each test runs on a plain segment and on an encrypted one read with its key.
    fn both(n: i64, mut t: impl FnMut(&[u8], &[Record], Open)) {
        let (plain, recs) = segment(n);
        t(&plain, &recs, Open::Plain);
        let k = key();
        let (sealed, recs) = segment_with(n, Some(&k));
        t(&sealed, &recs, Open::Key(&k));
    }

    #[test]
    fn records_round_trip() {
        both(5, |bytes, recs, open| {
            let p = parse_segment(bytes, open).unwrap();
            assert_eq!(p.tail, Tail::Clean);
            assert_eq!(p.header.generation, 3);
            let got: Vec<Record> = p.records.into_iter().map(|(r, _)| r).collect();
            assert_eq!(got, recs);
        });
    }

    #[test]
    fn an_encrypted_segment_shows_its_structure_but_not_its_changes() {
        let k = key();
        let (bytes, recs) = segment_with(4, Some(&k));
        assert!(!bytes.windows(7).any(|w| w == b"changes"));
        let p = parse_segment(&bytes, Open::Sealed).unwrap();
        assert_eq!(p.tail, Tail::Clean);
        let seqs: Vec<i64> = p.records.iter().map(|(r, _)| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert_eq!(p.records[3].0.hash, recs[3].hash);
        // Another generation's key opens nothing.
        let other = seal::GenKey::derive(&[9u8; 32], "ab", 4, "salt").records();
        let p = parse_segment(&bytes, Open::Key(&other)).unwrap();
        assert!(p.records.is_empty());
        assert!(matches!(p.tail, Tail::Damaged { .. }), "{:?}", p.tail);
        // Read as plain, the sealed changes fail their hash.
        assert!(parse_segment(&bytes, Open::Plain)
            .unwrap()
            .records
            .is_empty());
    }

    #[test]
    fn a_cut_short_tail_is_torn_not_damage() {
        both(3, |bytes, _, open| {
            for cut in HEADER_LEN..bytes.len() {
                let p = parse_segment(&bytes[..cut], open).unwrap();
                assert!(
                    matches!(p.tail, Tail::Torn { .. } | Tail::Clean),
                    "cut at {cut}: {:?}",
                    p.tail
                );
                // Only whole records come back.
                assert!(p.records.iter().all(|(r, end)| *end <= cut && r.hash_ok()));
            }
            // Zeros after the last record are space allotted ahead, not a torn record.
            let mut zeros = bytes.to_vec();
            zeros.extend_from_slice(&[0u8; 4096]);
            let p = parse_segment(&zeros, open).unwrap();
            assert_eq!((p.tail, p.records.len()), (Tail::Clean, 3));
        });
    }

    /// A segment of `n` records whose last record is `big` bytes of changes, in `SECTOR`-aligned
    /// place, then a run of allotted zeros; and where that last record starts.
    fn with_allotted(n: i64, big: usize, k: Option<&RecordKey>) -> (Vec<u8>, usize) {
        let (mut b, recs) = segment_with(n - 1, k);
        let prev = recs.last().map_or(ZERO_HASH, |r| r.hash);
        let cs: Vec<u8> = (0..big).map(|i| (i % 251) as u8 | 1).collect();
        let start = b.len();
        encode_record(&rec(n, prev, &cs), &mut b, k).unwrap();
        b.extend_from_slice(&[0u8; 64 * 1024]);
        (b, start)
    }

    #[test]
    fn an_append_with_unwritten_sectors_is_torn_not_damage() {
        let k = key();
        for (key, open) in [(None, Open::Plain), (Some(&k), Open::Key(&k))] {
            let (b, start) = with_allotted(3, 3000, key);
            let whole = parse_segment(&b, open).unwrap();
            assert_eq!((whole.tail.clone(), whole.records.len()), (Tail::Clean, 3));
            let len = b[start..].iter().rposition(|&x| x != 0).unwrap() + 1;
            // Every sector of the last record left unwritten, one at a time and all but
            // the first: torn at the record's start, the two before intact.
            let first = start - start % SECTOR;
            for gone in (first..start + len).step_by(SECTOR) {
                for upto in [gone + SECTOR, start + len] {
                    let mut t = b.clone();
                    for x in &mut t[gone.max(start)..upto.min(start + len)] {
                        *x = 0;
                    }
                    let p = parse_segment(&t, open).unwrap();
                    let want = if t[start..].iter().all(|&x| x == 0) {
                        Tail::Clean
                    } else {
                        Tail::Torn { at: start }
                    };
                    assert_eq!(p.tail, want, "sectors {gone}..{upto} unwritten");
                    assert_eq!(p.records.len(), 2);
                }
            }
        }
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_before_allotted_zeros_is_damage() {
        let (b, start) = with_allotted(3, 3000, None);
        let len = b[start..].iter().rposition(|&x| x != 0).unwrap() + 1;
        for i in start..start + len {
            for bit in [0x01u8, 0x80] {
                let mut t = b.clone();
                t[i] ^= bit;
                if t[i] == 0 {
                    continue; // a byte turned to zero is what an unwritten sector looks like
                }
                let p = parse_segment(&t, Open::Plain).unwrap();
                assert!(
                    matches!(p.tail, Tail::Damaged { .. }),
                    "byte {i}: {:?}",
                    p.tail
                );
            }
        }
        // Stray bytes far past the records are damage too, not a torn append.
        let mut far = b.clone();
        far.extend_from_slice(&vec![0u8; APPEND_MAX]);
        let n = far.len();
        far[n - 1] = 7;
        assert!(matches!(
            parse_segment(&far, Open::Plain).unwrap().tail,
            Tail::Damaged { .. }
        ));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        both(3, |bytes, recs, open| {
            for i in HEADER_LEN..bytes.len() {
                let mut b = bytes.to_vec();
                b[i] ^= 0x01;
                let p = parse_segment(&b, open).unwrap();
                let whole: Vec<&Record> = p.records.iter().map(|(r, _)| r).collect();
                let intact = whole.len() == recs.len() && p.tail == Tail::Clean;
                assert!(!intact, "flipping byte {i} went unnoticed");
            }
            for i in 0..HEADER_LEN {
                let mut b = bytes.to_vec();
                b[i] ^= 0x01;
                if let Ok(p) = parse_segment(&b, open) {
                    // Only the generation and first seq fields can change without the magic
                    // or the hex id breaking; the caller compares those with the file's name.
                    assert!(
                        i >= 48 || p.header.database_id != "ab".repeat(16),
                        "byte {i}"
                    );
                }
            }
        });
    }

    #[test]
    fn hostile_lengths_are_refused() {
        both(1, |bytes, _, open| {
            let mut bytes = bytes.to_vec();
            bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_le_bytes());
            let p = parse_segment(&bytes, open).unwrap();
            assert!(p.records.is_empty());
            assert!(matches!(p.tail, Tail::Damaged { .. }), "{:?}", p.tail);
            assert!(parse_segment(b"short", open).is_err());
            assert!(parse_segment(&[0u8; 64], open).is_err());
        });
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let k = key();
        for (good, open) in [
            (segment(4).0, Open::Plain),
            (segment_with(4, Some(&k)).0, Open::Key(&k)),
            (segment_with(4, Some(&k)).0, Open::Sealed),
        ] {
            for round in 0..2000 {
                let mut b = good.clone();
                for _ in 0..(round % 7 + 1) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % b.len();
                    b[at] = (x >> 32) as u8;
                }
                let cut = (x as usize >> 8) % (b.len() + 1);
                let _ = parse_segment(&b[..cut], open);
            }
        }
    }
}
