//! Deterministic sample data for benchmarks and tests: a warehouse with `skus` products and
//! `rows` ledger movements over two years, recorded orders for one Ship in six, a KPI row per day
//! and a few workflows, consistent with every invariant `ora verify` checks. Writes straight
//! to a new file with journaling off for speed; never used on a real database.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::model::{self, TxType};
use crate::store::{schema, OpenMode, Store, StoreOptions};
use crate::store::{Result, SqlContext, StoreError};

/// Words for realistic product names ("Heavy-duty steel shelf bracket 40 cm").
const ADJECTIVES: &[&str] = &[
    "Heavy-duty",
    "Compact",
    "Industrial",
    "Foldable",
    "Reinforced",
    "Stackable",
    "Waterproof",
    "Insulated",
    "Adjustable",
    "Lightweight",
    "Galvanized",
    "Ergonomic",
    "Transparent",
    "Anti-slip",
    "Magnetic",
    "Portable",
    "Recycled",
    "Flame-retardant",
    "Cordless",
    "Padded",
];
const MATERIALS: &[&str] = &[
    "steel",
    "aluminium",
    "oak",
    "plastic",
    "rubber",
    "cotton",
    "nylon",
    "brass",
    "copper",
    "glass",
    "ceramic",
    "bamboo",
    "leather",
    "polyester",
    "carbon",
    "zinc",
    "pine",
    "wool",
];
const NOUNS: &[&str] = &[
    "shelf bracket",
    "storage bin",
    "pallet wrap",
    "safety gloves",
    "cable ties",
    "hand truck",
    "label printer",
    "packing tape",
    "shipping box",
    "barcode scanner",
    "ladder",
    "tool chest",
    "work lamp",
    "drill bit set",
    "hose reel",
    "padlock",
    "mop bucket",
    "extension cord",
    "fire blanket",
    "first aid kit",
    "bubble wrap",
    "strapping band",
    "cargo net",
    "drum pump",
    "wheel chock",
    "spill kit",
    "floor mat",
    "wall hook",
    "tarpaulin",
    "stretch film",
];
const SIZES: &[&str] = &[
    "S", "M", "L", "XL", "10 cm", "25 cm", "40 cm", "1 m", "2 m", "5 kg",
];

/// A small deterministic PRNG (splitmix64): the same seed gives the same database.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The sku of product number `i`.
pub fn sku(i: usize) -> String {
    format!("SKU-{i:05}")
}

/// A realistic product name for product number `i` (deterministic).
pub fn product_name(i: usize) -> String {
    let mut r = Rng::new(0xA5A5_0000 + i as u64);
    format!(
        "{} {} {} {}",
        r.pick(ADJECTIVES),
        r.pick(MATERIALS),
        r.pick(NOUNS),
        r.pick(SIZES)
    )
}

/// Days the sample spans, from [`start`].
const DAYS: u64 = 730;

fn start() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2024, 11, 22).unwrap_or_default()
}

const CTX: &str = "sample: insert";

/// Writes a new sample database at `path` (which must not exist).
pub fn generate(path: &Path, rows: u64, skus: usize, seed: u64) -> Result<()> {
    if path.exists() {
        return Err(StoreError::invalid(format!(
            "sample: {} already exists; sample data only goes into a new file",
            path.display()
        )));
    }
    Store::open(&StoreOptions::new(path), OpenMode::Create)?.close();
    let conn = crate::store::connection::open_plain(path).ctx("sample: open")?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -200000;
         PRAGMA foreign_keys = OFF; BEGIN;",
    )
    .ctx("sample: tune")?;
    let skus = skus.max(1);
    let mut rng = Rng::new(seed);
    let reorder: Vec<i64> = (0..skus).map(|_| 5 + rng.below(46) as i64).collect();
    let stock = insert_ledger(&conn, &mut rng, rows, skus)?;
    let now = model::now_utc();
    insert_current(&conn, &stock, &reorder, &now)?;
    insert_kpis(&conn, &mut rng, &now)?;
    for (name, status) in [
        ("nightly-upload", "done"),
        ("label-print", "running"),
        ("carrier-sync", "done"),
        ("returns-intake", "paused"),
    ] {
        conn.execute(
            "INSERT INTO workflows (name, status, details, version, updated_at) VALUES (?1, ?2, NULL, 1, ?3)",
            params![name, status, now],
        )
        .ctx(CTX)?;
    }
    conn.execute_batch(&format!(
        "COMMIT; PRAGMA journal_mode = WAL; PRAGMA user_version = {}; ANALYZE;",
        schema::latest_version()
    ))
    .ctx("sample: finish")?;
    Ok(())
}

/// One generated ledger movement.
struct Movement {
    date: String,
    created: String,
    sku: String,
    kind: TxType,
    qty: i64,
    notes: Option<String>,
    request_id: Option<String>,
    /// It belongs to a recorded order (one Ship in six; the rest are counter sales).
    ordered: bool,
}

/// Movement `id` of `rows`, spread evenly over the sample's days; never takes a SKU's
/// stock below zero.
fn movement(rng: &mut Rng, id: u64, rows: u64, stock: &mut [i64]) -> Movement {
    let day = start() + chrono::Days::new(id * DAYS / rows.max(1));
    let date = day.format("%Y-%m-%d").to_string();
    let secs = rng.below(86_400);
    let created = format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rng.below(1000)
    );
    let s = rng.below(stock.len() as u64) as usize;
    let mut kind = match rng.below(100) {
        0..=39 => TxType::Receive,
        40..=89 => TxType::Ship,
        90..=94 => TxType::AdjustUp,
        _ => TxType::AdjustDown,
    };
    let mut qty = match kind {
        TxType::Receive => 10 + rng.below(200) as i64,
        TxType::Ship => 1 + rng.below(12) as i64,
        _ => 1 + rng.below(3) as i64,
    };
    if kind.sign() < 0 && stock[s] < qty {
        kind = TxType::Receive;
        qty = 50 + rng.below(150) as i64;
    }
    stock[s] += kind.sign() * qty;
    let ordered = kind == TxType::Ship && rng.below(6) == 0;
    let notes = match kind {
        TxType::Receive => Some(format!(
            "PO-{:06} dock {}",
            rng.below(1_000_000),
            1 + rng.below(6)
        )),
        TxType::Ship if ordered => Some(format!("order SO-{id:08}")),
        TxType::Ship => None,
        TxType::AdjustUp | TxType::AdjustDown => Some("cycle count".to_string()),
    };
    let request_id = (rng.below(4) == 0).then(|| format!("scan-{id:010}"));
    Movement {
        date,
        created,
        sku: sku(s),
        kind,
        qty,
        notes,
        request_id,
        ordered,
    }
}

/// Inserts `rows` chained movements (and the orders some of them belong to); returns each
/// SKU's resulting stock.
fn insert_ledger(conn: &Connection, rng: &mut Rng, rows: u64, skus: usize) -> Result<Vec<i64>> {
    let mut stock = vec![0i64; skus];
    let mut tx_ins = conn
        .prepare(
            "INSERT INTO inventory_transactions
                 (id, date, sku, quantity, transaction_type, notes, created_at, request_id, chain)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .ctx(CTX)?;
    let mut order_ins = conn
        .prepare(
            "INSERT INTO shipped_orders (order_number, ship_date, item_count, total_units, created_at)
             VALUES (?1, ?2, 1, ?3, ?4)",
        )
        .ctx(CTX)?;
    let mut item_ins = conn
        .prepare(
            "INSERT INTO shipped_items
                 (ship_date, sku_lot, base_sku, quantity_shipped, order_number, transaction_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .ctx(CTX)?;
    let mut prev_link: Vec<u8> = Vec::new();
    for id in 1..=rows {
        let m = movement(rng, id, rows, &mut stock);
        let link = crate::store::chain::hash(
            &prev_link,
            &crate::store::chain::Link {
                id: id as i64,
                date: &m.date,
                sku: &m.sku,
                quantity: m.qty,
                kind: m.kind.as_str(),
                notes: m.notes.as_deref(),
                created_at: &m.created,
                request_id: m.request_id.as_deref(),
                actor: None,
            },
        );
        tx_ins
            .execute(params![
                id as i64,
                m.date,
                m.sku,
                m.qty,
                m.kind.as_str(),
                m.notes,
                m.created,
                m.request_id,
                &link[..]
            ])
            .ctx(CTX)?;
        prev_link = link.to_vec();
        if m.ordered {
            let order = format!("SO-{id:08}");
            order_ins
                .execute(params![order, m.date, m.qty, m.created])
                .ctx(CTX)?;
            let lot = format!("{}-L{}", m.sku, rng.below(40));
            item_ins
                .execute(params![m.date, lot, m.sku, m.qty, order, id as i64])
                .ctx(CTX)?;
        }
    }
    Ok(stock)
}

/// The current stock of every SKU, with its name and reorder point.
fn insert_current(conn: &Connection, stock: &[i64], reorder: &[i64], now: &str) -> Result<()> {
    let mut inv = conn
        .prepare(
            "INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx(CTX)?;
    for (i, q) in stock.iter().enumerate() {
        inv.execute(params![sku(i), product_name(i), q, reorder[i], now])
            .ctx(CTX)?;
    }
    Ok(())
}

/// One KPI snapshot per day of the sample.
fn insert_kpis(conn: &Connection, rng: &mut Rng, now: &str) -> Result<()> {
    let mut kpi = conn
        .prepare(
            "INSERT INTO system_kpis (snapshot_date, orders_today, shipments_sent, pending_uploads, system_status, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .ctx(CTX)?;
    for d in 0..DAYS {
        let date = (start() + chrono::Days::new(d))
            .format("%Y-%m-%d")
            .to_string();
        let status = if rng.below(20) == 0 {
            "degraded"
        } else {
            "green"
        };
        kpi.execute(params![
            date,
            rng.below(400) as i64,
            rng.below(380) as i64,
            rng.below(10) as i64,
            status,
            now
        ])
        .ctx(CTX)?;
    }
    Ok(())
}
