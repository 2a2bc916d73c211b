//! A set of whole numbers for the salvage's key lists: a bitmap for the dense run from 0 that
//! rowids and ledger ids form (one bit per id: 2.5 MB for 20 million), sorted numbers for the
//! rest. The bitmap only grows to 64 bits per number added (plus a first megabit), so a stray
//! huge id never costs more than the sorted list would. Pure.

/// The first bits the bitmap may take before any number is added.
const HEADROOM: u64 = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct IntSet {
    bits: Vec<u64>,
    /// Numbers outside the bitmap, sorted and unique once [`IntSet::seal`]ed.
    others: Vec<i64>,
    added: u64,
}

impl IntSet {
    pub fn add(&mut self, i: i64) {
        self.added += 1;
        let limit = self.added.saturating_mul(64).saturating_add(HEADROOM);
        match u64::try_from(i) {
            Ok(u) if u < limit => {
                let w = (u / 64) as usize;
                if w >= self.bits.len() {
                    self.bits.resize(w + 1, 0);
                }
                self.bits[w] |= 1 << (u % 64);
            }
            _ => self.others.push(i),
        }
    }

    /// Sorts the numbers outside the bitmap, drops repeats and those the bitmap holds.
    pub fn seal(&mut self) {
        self.others.sort_unstable();
        self.others.dedup();
        let bits = std::mem::take(&mut self.bits);
        self.others.retain(|i| !in_bits(&bits, *i));
        self.bits = bits;
    }

    pub fn contains(&self, i: i64) -> bool {
        in_bits(&self.bits, i) || self.others.binary_search(&i).is_ok()
    }

    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            + self.others.len()
    }

    pub fn max(&self) -> Option<i64> {
        let from_bits = self
            .bits
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| (i as i64) * 64 + 63 - i64::from(w.leading_zeros()));
        from_bits.max(self.others.last().copied())
    }

    /// Every number, the bitmap's in order, then the others in order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.bits
            .iter()
            .enumerate()
            .flat_map(|(i, w)| {
                (0..64)
                    .filter(move |b| w & (1 << b) != 0)
                    .map(move |b| i as i64 * 64 + b)
            })
            .chain(self.others.iter().copied())
    }
}

fn in_bits(bits: &[u64], i: i64) -> bool {
    u64::try_from(i).is_ok_and(|u| {
        bits.get((u / 64) as usize)
            .is_some_and(|w| w & (1 << (u % 64)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Dense ids go to the bitmap, negative and far ones to the list; each once, however often
    // added; a far id does not grow the bitmap.
    #[test]
    fn numbers_are_held_once_wherever_they_land() {
        let mut s = IntSet::default();
        for i in [5, 3, 5, 0, 63, 64, -7, 1 << 40, 3, 1 << 40] {
            s.add(i);
        }
        s.seal();
        assert_eq!(s.len(), 7);
        for i in [0, 3, 5, 63, 64, -7, 1 << 40] {
            assert!(s.contains(i), "{i}");
        }
        assert!(!s.contains(4) && !s.contains(65) && !s.contains(-1));
        assert_eq!(s.max(), Some(1 << 40));
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 3, 5, 63, 64, -7, 1 << 40]);
        assert!(s.bits.len() <= (HEADROOM as usize / 64) + 10 * 64);
        let mut d = IntSet::default();
        for i in 1..=2_000_000 {
            d.add(i);
        }
        d.seal();
        assert_eq!((d.len(), d.max()), (2_000_000, Some(2_000_000)));
        assert!(d.bits.len() * 8 < 300_000, "{} bytes", d.bits.len() * 8);
        assert!(d.others.is_empty());
    }
}
