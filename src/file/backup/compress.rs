//! Parallel gzip: a stream of chunks is compressed on several threads into independent gzip
//! members, written in order (concatenated members are one valid .gz for gzip, zcat and
//! flate2's MultiGzDecoder) while the output is hashed with SHA-256. Owns no files.
//!
//! Compression is libdeflate's: at its level 2 it is the fastest of the codecs measured for an
//! output only slightly larger than `gzip -6`'s (the figures are in benches/RESULTS.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Size of one independently compressed chunk: big enough to lose almost nothing in ratio
/// against one stream, small enough to keep both cores busy.
pub const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// What was compressed.
#[derive(Debug, Clone)]
pub struct Compressed {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// SHA-256 of the bytes written to `out`, lowercase hex.
    pub sha256: String,
}

/// Compresses every chunk produced by `produce` (which calls its argument once per chunk, in
/// order) at `level` on `threads` threads into `out`. The producer runs on the calling thread
/// (it may own a database connection).
///
/// Kept whole: the producer, the worker threads and the in-order writer share the channels and one
/// thread scope.
pub fn compress<W, P, E>(
    out: &mut W,
    level: u32,
    threads: usize,
    produce: P,
) -> Result<Compressed, E>
where
    W: Write + Send,
    P: FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<(), E>) -> Result<(), E>,
    E: From<std::io::Error> + Send,
{
    let threads = threads.max(1);
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, std::io::Result<Vec<u8>>)>(threads * 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx) = (Arc::clone(&work_rx), done_tx.clone());
            s.spawn(move || {
                let lvl =
                    libdeflater::CompressionLvl::new(level.clamp(1, 12) as i32).unwrap_or_default();
                let mut enc = libdeflater::Compressor::new(lvl);
                loop {
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, chunk)) = next else { return };
                    let mut member = vec![0u8; enc.gzip_compress_bound(chunk.len())];
                    let member = enc
                        .gzip_compress(&chunk, &mut member)
                        .map(|n| {
                            member.truncate(n);
                            member
                        })
                        .map_err(|e| std::io::Error::other(format!("compression failed: {e:?}")));
                    if tx.send((seq, member)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = s.spawn(move || -> std::io::Result<(u64, String)> {
            let mut pending = BTreeMap::new();
            let (mut next, mut written) = (0u64, 0u64);
            let mut hash = Sha256::new();
            for (seq, member) in done_rx {
                pending.insert(seq, member?);
                while let Some(m) = pending.remove(&next) {
                    out.write_all(&m)?;
                    hash.update(&m);
                    written += m.len() as u64;
                    next += 1;
                }
            }
            out.flush()?;
            Ok((written, crate::fsutil::hex(&hash.finalize())))
        });
        let mut seq = 0u64;
        let mut bytes_in = 0u64;
        let mut send = |chunk: Vec<u8>| -> Result<(), E> {
            bytes_in += chunk.len() as u64;
            work_tx
                .send((seq, chunk))
                .map_err(|_| E::from(std::io::Error::other("the compression threads stopped")))?;
            seq += 1;
            Ok(())
        };
        let produced = produce(&mut send);
        drop(work_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the output thread panicked")));
        produced?;
        let (bytes_out, sha256) = written.map_err(E::from)?;
        Ok(Compressed {
            bytes_in,
            bytes_out,
            sha256,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_concatenate_into_one_stream_in_order() {
        let chunks: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 100_000 + i as usize]).collect();
        let mut out = Vec::new();
        let r = compress(&mut out, 3, 3, |send| {
            for c in chunks.clone() {
                send(c)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .expect("compress");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("decompress");
        assert_eq!(back, chunks.concat());
        assert_eq!(r.bytes_in as usize, back.len());
        assert_eq!(r.bytes_out as usize, out.len());
        assert_eq!(r.sha256, crate::fsutil::hex(&Sha256::digest(&out)));
    }
}
