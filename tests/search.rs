//! Search quality on realistic product names: queries with one or two typos, swapped words or
//! missing spaces must find the right sku in the top 3 in at least 90% of cases, through the
//! local index and through the embedding alone (what Qdrant ranks by).

use ora::remote::{embed, search};
use ora::store::products::NewProduct;
use ora::store::{OpenMode, Store, StoreOptions, WriteOp, WriteRequest};

use crate::util::{Rng, Sandbox};

pub const PRODUCTS: usize = 600;

/// 600 distinct realistic names (from the sample generator's vocabulary).
pub fn catalog() -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < PRODUCTS {
        let name = ora::sample::product_name(i);
        if seen.insert(name.clone()) {
            out.push((format!("P-{:04}", out.len()), name));
        }
        i += 1;
    }
    out
}

/// A damaged query: typos, swapped words or missing spaces (chosen by `kind`).
pub fn perturb(name: &str, kind: u64, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = name.to_lowercase().chars().collect();
    let letter_positions =
        |c: &Vec<char>| -> Vec<usize> { (0..c.len()).filter(|i| c[*i].is_alphabetic()).collect() };
    match kind % 4 {
        0 | 1 => {
            // One (kind 0) or two (kind 1) typos: substitution, deletion, insertion, transposition.
            for _ in 0..=kind % 4 {
                let pos = letter_positions(&chars);
                let p = pos[rng.below(pos.len() as u64) as usize];
                match rng.below(4) {
                    0 => chars[p] = (b'a' + rng.below(26) as u8) as char,
                    1 => {
                        chars.remove(p);
                    }
                    2 => chars.insert(p, (b'a' + rng.below(26) as u8) as char),
                    _ => {
                        if p + 1 < chars.len() {
                            chars.swap(p, p + 1);
                        }
                    }
                }
            }
            chars.into_iter().collect()
        }
        2 => {
            // Two words swapped.
            let mut words: Vec<&str> = name.split(' ').collect();
            let i = rng.below(words.len() as u64 - 1) as usize;
            words.swap(i, i + 1);
            words.join(" ")
        }
        _ => {
            // A missing space.
            let spaces: Vec<usize> = name.match_indices(' ').map(|(i, _)| i).collect();
            let s = spaces[rng.below(spaces.len() as u64) as usize];
            format!("{}{}", &name[..s], &name[s + 1..])
        }
    }
}

fn top3_rate(products: &[(String, String)], mut find: impl FnMut(&str) -> Vec<String>) -> f64 {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut hits = 0;
    for (i, (sku, name)) in products.iter().enumerate() {
        let q = perturb(name, i as u64, &mut rng);
        if find(&q).iter().take(3).any(|s| s == sku) {
            hits += 1;
        }
    }
    hits as f64 / products.len() as f64
}

// Local index: at least 90% of damaged queries find their product in the top 3.
#[test]
fn local_search_finds_misspelled_products() {
    let s = Sandbox::new();
    let store = Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).unwrap();
    let products = catalog();
    for (sku, name) in &products {
        let p = NewProduct {
            sku: sku.clone(),
            product_name: name.clone(),
            reorder_point: 0,
            initial_quantity: 0,
        };
        store
            .write(WriteRequest::new(WriteOp::ProductAdd(p)))
            .unwrap();
    }
    let conn = store.read().unwrap();
    let rate = top3_rate(&products, |q| {
        search::local(&conn, q, 3)
            .unwrap()
            .into_iter()
            .map(|h| h.sku)
            .collect()
    });
    eprintln!(
        "local search: {:.1}% of {} damaged queries found in the top 3",
        rate * 100.0,
        products.len()
    );
    assert!(rate >= 0.9, "local search top-3 rate {rate:.3}");
    // An exact sku is found first.
    assert_eq!(search::local(&conn, "P-0042", 1).unwrap()[0].sku, "P-0042");
}

// The embedding alone (cosine over all products, as Qdrant ranks): at least 90% too.
#[test]
fn embedding_finds_misspelled_products() {
    let products = catalog();
    let vectors: Vec<Vec<f32>> = products.iter().map(|(_, n)| embed::embed(n)).collect();
    let rate = top3_rate(&products, |q| {
        let v = embed::embed(q);
        let mut scored: Vec<(f32, &String)> = vectors
            .iter()
            .zip(&products)
            .map(|(p, (sku, _))| (embed::cosine(&v, p), sku))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(3).map(|(_, s)| s.clone()).collect()
    });
    eprintln!(
        "embedding search: {:.1}% of {} damaged queries found in the top 3",
        rate * 100.0,
        products.len()
    );
    assert!(rate >= 0.9, "embedding top-3 rate {rate:.3}");
}
