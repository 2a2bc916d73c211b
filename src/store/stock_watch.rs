//! Stock changed outside ora, noticed as it happens rather than at the nightly `ora verify`:
//! the `stock_outside_update` trigger (schema step 15) keeps the sku of any change to a stock
//! that no ledger row explains, with the stock before and after. [`changed_outside`] reads
//! those skus and confirms each against its ledger (one index walk per sku, never the whole
//! ledger), so a stock set back by hand, or mended by `ora stock reconcile`, stops being
//! reported. Reads only, except [`forget`], which ora's own mending writes call inside their
//! transaction.

use rusqlite::Connection;
use serde::Serialize;

use super::error::{Result, SqlContext};

/// The most skus one read confirms (the rest are counted, not named).
pub const MAX_CONFIRMED: usize = 50;

/// A sku whose stock disagrees with its ledger after a change outside ora.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutsideChange {
    pub sku: String,
    pub product_name: String,
    /// The stock as it is now.
    pub stock: i64,
    /// What the ledger adds up to.
    pub ledger: i64,
    /// When the change was noticed (UTC, RFC 3339).
    pub at: String,
}

/// The skus changed outside ora whose stock still disagrees with the ledger, oldest change
/// first, at most [`MAX_CONFIRMED`], and how many flagged skus were not confirmed.
pub fn changed_outside(conn: &Connection) -> Result<(Vec<OutsideChange>, usize)> {
    let ctx = "read stock changed outside ora";
    let mut st = conn
        .prepare_cached(
            "SELECT o.sku, p.product_name, p.current_quantity, o.at,
                    (SELECT coalesce(sum(CASE WHEN t.transaction_type = 'Receive' OR t.transaction_type = 'Adjust Up'
                                              THEN t.quantity ELSE -t.quantity END), 0)
                       FROM inventory_transactions AS t WHERE t.sku = o.sku)
               FROM stock_outside AS o JOIN inventory_current AS p ON p.sku = o.sku
              ORDER BY o.at, o.sku LIMIT ?1",
        )
        .ctx(ctx)?;
    let limit = i64::try_from(MAX_CONFIRMED).unwrap_or(50);
    let rows = st
        .query_map([limit], |r| {
            Ok(OutsideChange {
                sku: r.get(0)?,
                product_name: r.get(1)?,
                stock: r.get(2)?,
                at: r.get(3)?,
                ledger: r.get(4)?,
            })
        })
        .ctx(ctx)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(ctx)?;
    let flagged: i64 = conn
        .prepare_cached("SELECT count(*) FROM stock_outside")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx(ctx)?;
    let unconfirmed = usize::try_from(flagged)
        .unwrap_or(0)
        .saturating_sub(rows.len());
    Ok((
        rows.into_iter().filter(|c| c.stock != c.ledger).collect(),
        unconfirmed,
    ))
}

/// Forgets a sku's outside change: its stock was just set from its ledger, in the caller's
/// transaction.
pub(super) fn forget(conn: &Connection, sku: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM stock_outside WHERE sku = ?1")
        .and_then(|mut st| st.execute([sku]))
        .ctx("forget a stock changed outside ora")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TxType;
    use crate::store::ledger::{self, Movement, Rules};

    fn db() -> Connection {
        crate::store::products::tests::test_db("A-1", "Lamp", 0)
    }

    // ora's own movements never flag a sku; a change by hand does, until the stock agrees
    // with the ledger again (set back by hand, or reconciled, which forgets it).
    #[test]
    fn a_stock_changed_by_hand_is_noticed_and_a_reconcile_forgets_it() {
        let conn = db();
        for (kind, q) in [
            (TxType::Receive, 10),
            (TxType::Ship, 3),
            (TxType::AdjustUp, 1),
        ] {
            ledger::apply(
                &conn,
                &Movement::new("A-1", kind, q),
                None,
                Rules::default(),
            )
            .unwrap();
        }
        assert_eq!(changed_outside(&conn).unwrap(), (Vec::new(), 0));
        conn.execute(
            "UPDATE inventory_current SET current_quantity = 40 WHERE sku = 'A-1'",
            [],
        )
        .unwrap();
        let (found, more) = changed_outside(&conn).unwrap();
        assert_eq!(more, 0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].stock, found[0].ledger), (40, 8));
        assert_eq!(found[0].product_name, "Lamp");
        conn.execute(
            "UPDATE inventory_current SET current_quantity = 8 WHERE sku = 'A-1'",
            [],
        )
        .unwrap();
        assert!(changed_outside(&conn).unwrap().0.is_empty());
        conn.execute(
            "UPDATE inventory_current SET current_quantity = 7 WHERE sku = 'A-1'",
            [],
        )
        .unwrap();
        assert_eq!(changed_outside(&conn).unwrap().0.len(), 1);
        ledger::reconcile(&conn, &["A-1".to_string()]).unwrap();
        assert_eq!(changed_outside(&conn).unwrap(), (Vec::new(), 0));
    }
}
