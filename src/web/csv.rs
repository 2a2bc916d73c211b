//! Lists as CSV: `?format=csv` or `Accept: text/csv` on a list route turns its JSON array into
//! RFC 4180 CSV (the `csv` crate's writer: a header row, CRLF line ends, fields quoted when
//! they hold a comma, quote or line break), columns in a fixed order per list. A text field that a spreadsheet would run
//! as a formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading
//! `'`; numbers are written as numbers. Pure: turns one reply into another.

use serde_json::Value;

use super::fault::{Fault, Result};
use super::http::Request;
use super::reply::Reply;
use super::request::Target;

/// Whether the client asked for CSV: `?format=csv|json` first, then the Accept header.
pub fn wanted(req: &Request, t: &Target) -> Result<bool> {
    match t.param("format") {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(Fault::invalid(format!(
            "format must be csv or json, got {:?}",
            crate::model::clip(other)
        ))),
        None => Ok(req
            .header("accept")
            .is_some_and(|a| a.split(',').any(|m| m.trim().starts_with("text/csv")))),
    }
}

/// The columns first in each list, in order; any other field follows, by name.
fn leading(label: &str) -> &'static [&'static str] {
    match label {
        "/api/inventory" | "/api/products" => &[
            "sku",
            "product_name",
            "current_quantity",
            "reorder_point",
            "alert_level",
            "shortage",
            "last_updated",
        ],
        "/api/transactions" => &[
            "id",
            "date",
            "sku",
            "type",
            "quantity",
            "actor",
            "order",
            "lot",
            "notes",
            "request_id",
            "created_at",
        ],
        "/api/kpis" => &[
            "snapshot_date",
            "orders_today",
            "shipments_sent",
            "pending_uploads",
            "system_status",
            "updated_at",
        ],
        _ => &[],
    }
}

/// The JSON reply of a list route, as CSV (other replies, errors included, pass unchanged).
pub fn convert(label: &str, reply: Reply) -> Reply {
    if reply.status != 200 || reply.content_type != "application/json" {
        return reply;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&reply.body) else {
        return reply;
    };
    // `/api/inventory?as_of=` answers {"as_of", "stock": [...]}.
    let rows = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("stock") {
            Some(Value::Array(a)) => a,
            _ => return reply,
        },
        _ => return reply,
    };
    let mut columns: Vec<String> = leading(label).iter().map(|c| c.to_string()).collect();
    let mut rest: Vec<String> = rows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.keys().cloned())
        .filter(|k| !columns.contains(k))
        .collect();
    rest.sort();
    rest.dedup();
    columns.extend(rest);
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let written = w.write_record(&columns).and_then(|()| {
        rows.iter().try_for_each(|r| {
            w.write_record(
                columns
                    .iter()
                    .map(|c| cell(r.get(c).unwrap_or(&Value::Null)).into_owned()),
            )
        })
    });
    let body = match written
        .map_err(|e| e.to_string())
        .and_then(|()| w.into_inner().map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            return Reply::error(&Fault::App(crate::error::Error::failed(format!(
                "could not write the CSV: {e}"
            ))))
        }
    };
    let mut csv = Reply::text(200, "text/csv; charset=utf-8", String::new());
    csv.body = body;
    csv.headers = reply.headers;
    csv
}

fn cell(v: &Value) -> std::borrow::Cow<'static, str> {
    match v {
        Value::Null => "".into(),
        Value::Bool(b) => b.to_string().into(),
        Value::Number(n) => n.to_string().into(),
        Value::String(s) => {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}").into()
            } else {
                s.clone().into()
            }
        }
        other => other.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_become_quoted_csv_with_formulas_defused() {
        let body = serde_json::json!([
            {"sku": "A-1", "product_name": "Lamp, \"big\"", "current_quantity": -2, "x": null},
            {"sku": "B-2", "product_name": "=cmd|' /C calc'!A0", "current_quantity": 3, "x": "line\nbreak"}
        ]);
        let r = convert("/api/products", Reply::json(200, &body));
        assert_eq!(r.content_type, "text/csv; charset=utf-8");
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(
            text,
            "sku,product_name,current_quantity,reorder_point,alert_level,shortage,last_updated,x\r\n\
             A-1,\"Lamp, \"\"big\"\"\",-2,,,,,\r\n\
             B-2,'=cmd|' /C calc'!A0,3,,,,,\"line\nbreak\"\r\n"
        );
        let err = Reply::json(400, &serde_json::json!({"error": "x"}));
        assert_eq!(convert("/api/products", err).status, 400);
    }
}
