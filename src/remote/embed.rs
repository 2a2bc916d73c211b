//! The built-in embedding of a product name: hashed character n-grams. The name is normalised
//! (lower case, letters and digits, single spaces); its character trigrams (with word
//! boundaries, and again with the spaces removed, so "bluewidget" meets "blue widget"), its
//! bigrams and its whole words are hashed into a fixed number of signed buckets and the vector
//! is L2-normalised. Misspellings change a few n-grams and keep most, swapped words keep
//! nearly all. Deterministic, no model, no I/O.

/// Dimensions of the vector (and of the Qdrant collection).
pub const DIM: usize = 256;

/// Lower case, letters and digits only, single spaces.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    out.trim_end().to_string()
}

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn add(v: &mut [f32], gram: &str, seed: u64, weight: f32) {
    let h = fnv(gram.as_bytes(), seed);
    let i = (h % v.len() as u64) as usize;
    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
    v[i] += sign * weight;
}

fn grams(v: &mut [f32], s: &str, n: usize, seed: u64, weight: f32) {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < n {
        if !chars.is_empty() {
            add(v, s, seed, weight);
        }
        return;
    }
    let mut buf = String::new();
    for w in chars.windows(n) {
        buf.clear();
        buf.extend(w);
        add(v, &buf, seed, weight);
    }
}

/// The embedding of `text` (a unit vector of [`DIM`] floats; all zeros for empty text).
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    let norm = normalize(text);
    if norm.is_empty() {
        return v;
    }
    let bounded = format!(" {norm} ");
    grams(&mut v, &bounded, 3, 3, 1.0);
    let joined: String = norm.chars().filter(|c| *c != ' ').collect();
    grams(&mut v, &joined, 3, 3, 1.0);
    grams(&mut v, &joined, 2, 2, 0.5);
    for w in norm.split(' ') {
        add(&mut v, w, 1, 1.0);
    }
    let len = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if len > 0.0 {
        for x in &mut v {
            *x /= len;
        }
    }
    v
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_vectors_and_tolerate_typos_and_order() {
        let a = embed("Heavy-duty steel shelf bracket 40 cm");
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let typo = embed("heavy duty stel shelf brakcet 40cm");
        let swapped = embed("steel heavy-duty bracket shelf 40 cm");
        let other = embed("Compact oak ladder XL");
        assert!(cosine(&a, &typo) > cosine(&a, &other) + 0.3);
        assert!(cosine(&a, &swapped) > 0.8);
        assert_eq!(embed(""), vec![0.0; DIM]);
        assert_eq!(normalize("  Blue--Widget,  XL "), "blue widget xl");
    }
}
