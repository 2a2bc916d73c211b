//! The bytes of the feed: a batch of the primary's records as one response body. A magic line,
//! then one frame per record (its length, its fields, its changeset), then a trailer with the
//! number of frames, so that a body cut short is never taken for a shorter batch. [`decode`]
//! checks everything before anything is applied: the magic, every length against what is left
//! and against [`MAX_RECORD`] (checked arithmetic), each record's own hash, and that the records
//! follow each other (sequence numbers and hash links). Never panics on bytes from the network.

use crate::store::capture::Record;

/// The first bytes of every body.
const MAGIC: &[u8] = b"ORA-FEED-1\n";
/// The length field of the trailer.
const TRAILER: u32 = u32::MAX;
/// Fixed fields of a frame: seq, committed_ms, flags, first and last ledger id, two hashes.
const FIXED: usize = 8 + 8 + 4 + 8 + 8 + 32 + 32;
/// The largest record accepted (a commit of a very large import stays far below).
pub const MAX_RECORD: usize = 256 << 20;
/// The most a primary sends in one answer by default, and the largest answer a standby takes
/// (one record larger than the default is sent alone).
pub const BATCH_BYTES: usize = 16 << 20;
pub const MAX_BATCH: usize = MAX_RECORD + BATCH_BYTES;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the primary's feed is damaged: {0}")]
pub struct Damaged(pub String);

fn damaged(why: impl Into<String>) -> Damaged {
    Damaged(why.into())
}

/// The body for `records`.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let size: usize = records.iter().map(|r| 4 + FIXED + r.changeset.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size + 8);
    out.extend_from_slice(MAGIC);
    for r in records {
        let len = u32::try_from(FIXED + r.changeset.len()).unwrap_or(u32::MAX - 1);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&r.seq.to_be_bytes());
        out.extend_from_slice(&r.committed_ms.to_be_bytes());
        out.extend_from_slice(&r.flags.to_be_bytes());
        out.extend_from_slice(&r.first_ledger.to_be_bytes());
        out.extend_from_slice(&r.last_ledger.to_be_bytes());
        out.extend_from_slice(&r.prev_hash);
        out.extend_from_slice(&r.hash);
        out.extend_from_slice(&r.changeset);
    }
    out.extend_from_slice(&TRAILER.to_be_bytes());
    out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(0).to_be_bytes());
    out
}

/// Reads fixed-size fields from a slice, refusing to go past its end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| damaged(format!("it ends inside a record (byte {})", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Damaged> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, Damaged> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Damaged> {
        Ok(i64::from_be_bytes(self.array()?))
    }
}

/// The records of a body, checked.
pub fn decode(body: &[u8]) -> Result<Vec<Record>, Damaged> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| damaged("it does not begin as a feed of records"))?;
    let mut r = Reader { b: rest, at: 0 };
    let mut out: Vec<Record> = Vec::new();
    loop {
        let len = r.u32()?;
        if len == TRAILER {
            let count = r.u32()?;
            if usize::try_from(count).ok() != Some(out.len()) {
                return Err(damaged(format!(
                    "it announces {count} records but holds {}",
                    out.len()
                )));
            }
            if r.at != rest.len() {
                return Err(damaged("there are bytes after its end"));
            }
            return Ok(out);
        }
        let len = usize::try_from(len).map_err(|_| damaged("a record length overflows"))?;
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Err(damaged(format!("a record of {len} bytes")));
        }
        let mut f = Reader {
            b: r.take(len)?,
            at: 0,
        };
        let rec = Record {
            seq: f.i64()?,
            committed_ms: f.i64()?,
            flags: f.u32()?,
            first_ledger: f.i64()?,
            last_ledger: f.i64()?,
            prev_hash: f.array()?,
            hash: f.array()?,
            changeset: f.take(len - FIXED)?.to_vec(),
        };
        if !rec.hash_ok() {
            return Err(damaged(format!(
                "record {} does not match its hash",
                rec.seq
            )));
        }
        if let Some(prev) = out.last() {
            if rec.seq != prev.seq.saturating_add(1) || rec.prev_hash != prev.hash {
                return Err(damaged(format!(
                    "record {} does not follow record {}",
                    rec.seq, prev.seq
                )));
            }
        }
        out.push(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::capture::ZERO_HASH;
    use proptest::prelude::*;

    fn chain(n: usize) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for i in 0..n {
            let prev = out.last().map_or(ZERO_HASH, |r| r.hash);
            let seq = i as i64 + 1;
            let changeset = vec![i as u8; 10 + i];
            let hash = Record::compute_hash(&prev, seq, 1_000 + seq, 0, (seq, seq), &changeset);
            out.push(Record {
                seq,
                committed_ms: 1_000 + seq,
                flags: 0,
                first_ledger: seq,
                last_ledger: seq,
                prev_hash: prev,
                hash,
                changeset,
            });
        }
        out
    }

    #[test]
    fn a_batch_reads_back_as_it_was_sent() {
        for n in [0, 1, 5] {
            let recs = chain(n);
            assert_eq!(decode(&encode(&recs)).unwrap(), recs);
        }
    }

    #[test]
    fn cut_reordered_duplicated_and_oversized_bodies_are_refused() {
        let recs = chain(4);
        let body = encode(&recs);
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut swapped = recs.clone();
        swapped.swap(1, 2);
        assert!(decode(&encode(&swapped)).is_err());
        let mut twice = recs.clone();
        twice.insert(2, recs[1].clone());
        assert!(decode(&encode(&twice)).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&(MAX_RECORD as u32 + 1).to_be_bytes());
        assert!(decode(&huge).unwrap_err().0.contains("bytes"));
        let mut trailing = body.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    proptest! {
        #[test]
        fn no_flipped_bit_goes_unnoticed(pos in 0usize..1000, bit in 0u8..8) {
            let body = encode(&chain(3));
            let mut bad = body.clone();
            let i = pos % bad.len();
            bad[i] ^= 1 << bit;
            prop_assert!(decode(&bad).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&bytes);
            let _ = decode(&body);
        }
    }
}
