//! JSON request bodies into the handlers' types, with refusals built from data. The body is
//! read as a `serde_json::Value` first: a syntax error is a 400 that names its line, column
//! and what stands there (from the body's own bytes); a body that is not an object is a 422.
//! The value then goes through [`Json`], a deserializer whose error is [`Problem`]: serde hands
//! it the field, what was found and what the type wanted, and [`words`] builds the sentence
//! from those. Never reads the text of a `serde_json::Error`; never panics on a body.

use std::cell::RefCell;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

use super::fault::{Fault, Result};

/// Parses `body` as one JSON object (400 when it is not JSON, 422 when it is not an object
/// or an object in it names a key twice, which parsers read differently).
pub fn object(body: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let twice = RefCell::new(None);
    let read = de::DeserializeSeed::deserialize(Strict { twice: &twice }, &mut de);
    if let Some(key) = twice.into_inner() {
        return Err(Fault::invalid(format!(
            "the key {:?} is given twice in one object; give each field once",
            crate::model::clip(&key)
        )));
    }
    let value = read.map_err(|e| syntax(body, &e))?;
    if de.end().is_err() {
        let (line, column) = position_after(body);
        return Err(Fault::usage(format!(
            "the body is not valid JSON: there is more after the JSON value (line {line}, column {column})"
        )));
    }
    let got = match &value {
        Value::Object(_) => return Ok(value),
        Value::Array(_) => "a list",
        Value::String(_) => "text",
        Value::Bool(_) => "true or false",
        Value::Null => "null",
        Value::Number(_) => "a number",
    };
    Err(Fault::invalid(format!(
        "the body must be a JSON object ({{\"field\": value, ...}}), got {got}"
    )))
}

/// Reads a JSON value as `T`; a value of the wrong shape is a 422 that names the field.
pub fn shape<T: de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_path_to_error::deserialize(Json(value)).map_err(|e| {
        let path = e.path().to_string();
        Fault::invalid(words(&path, &e.into_inner()))
    })
}

/// A syntax error in words, with its place and what stands there.
fn syntax(body: &[u8], e: &serde_json::Error) -> Fault {
    let (line, column) = (e.line(), e.column());
    if e.classify() == serde_json::error::Category::Eof {
        return Fault::usage(format!(
            "the body is not valid JSON: it ends too early (line {line}, column {column})"
        ));
    }
    let at = offset(body, line, column);
    let near = &body[at.saturating_sub(1).min(body.len())..(at + 12).min(body.len())];
    let what = if near.first().is_some_and(|b| *b < 0x20 && *b != b'\n') {
        "a string holds a raw control character (escape it)".to_string()
    } else {
        format!(
            "something unexpected near {:?}",
            String::from_utf8_lossy(near)
        )
    };
    Fault::usage(format!(
        "the body is not valid JSON: {what} (line {line}, column {column})"
    ))
}

/// The byte offset of a 1-based (line, column) in `body`.
fn offset(body: &[u8], line: usize, column: usize) -> usize {
    let start = body
        .split_inclusive(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum::<usize>();
    start.saturating_add(column).min(body.len())
}

/// The (line, column) of the first byte after the JSON value (the first that is not white
/// space, after the value's end: serde says only that something follows).
fn position_after(body: &[u8]) -> (usize, usize) {
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = <de::IgnoredAny as serde::Deserialize>::deserialize(&mut de);
    let e = de.end().err();
    e.map_or((1, 1), |e| (e.line(), e.column()))
}

/// What a value did not have, as serde reports it to [`Json`].
#[derive(Debug)]
pub enum Problem {
    /// A value of another type, or out of the type's range: what it was, what was wanted (the
    /// type's own description, such as `i64` or `a string`).
    Type {
        got: String,
        want: String,
    },
    /// A list of another length.
    Length {
        len: usize,
        want: String,
    },
    Missing(&'static str),
    Unknown {
        field: String,
        known: &'static [&'static str],
    },
    /// The type's own refusal (a movement type that does not exist, ...), in its own words.
    Refused(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&words("", self))
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Problem::Refused(msg.to_string())
    }
    fn invalid_type(got: Unexpected<'_>, want: &dyn de::Expected) -> Self {
        Problem::Type {
            got: found(&got),
            want: want.to_string(),
        }
    }
    fn invalid_value(got: Unexpected<'_>, want: &dyn de::Expected) -> Self {
        Problem::invalid_type(got, want)
    }
    fn invalid_length(len: usize, want: &dyn de::Expected) -> Self {
        Problem::Length {
            len,
            want: want.to_string(),
        }
    }
    fn unknown_field(field: &str, known: &'static [&'static str]) -> Self {
        Problem::Unknown {
            field: field.to_string(),
            known,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        Problem::Missing(field)
    }
}

/// What was found, in words.
fn found(got: &Unexpected<'_>) -> String {
    match got {
        Unexpected::Bool(b) => b.to_string(),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Char(c) => format!("the text {:?}", c.to_string()),
        Unexpected::Str(s) => format!("the text {s:?}"),
        Unexpected::Unit | Unexpected::Option => "null".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map | Unexpected::StructVariant => "an object".into(),
        _ => "a value of another kind".into(),
    }
}

/// What a type wants, in words (serde describes it by the type's name: `i64`, `a string`).
fn wanted(t: &str) -> String {
    match t.trim() {
        "i64" | "i32" | "i16" | "i8" | "u64" | "u32" | "u16" | "u8" | "usize" | "isize" => {
            "a whole number".into()
        }
        "f64" | "f32" => "a number".into(),
        "a string" => "text".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        "option" => "a value or null".into(),
        t if t.starts_with("struct ") || t == "a map" => "an object".into(),
        t => t.replace('`', ""),
    }
}

/// A shape problem in words, naming the field by its path.
fn words(path: &str, p: &Problem) -> String {
    let field = if path.is_empty() || path == "." {
        "the body".to_string()
    } else {
        path.to_string()
    };
    let within = |name: &str| {
        if field == "the body" {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    match p {
        Problem::Type { got, want } => format!("{field} must be {}, got {got}", wanted(want)),
        Problem::Length { len, want } => format!(
            "{field} has the wrong number of items ({len}, wanted {})",
            wanted(want)
        ),
        Problem::Missing(name) => format!("{} is missing", within(name)),
        // The path already ends at the unknown field (when there is one).
        Problem::Unknown { field: name, known } => {
            let name = if path.is_empty() { name } else { &field };
            if known.is_empty() {
                format!("{name} is not a field here")
            } else {
                format!(
                    "{name} is not a field here; the fields are {}",
                    known.join(", ")
                )
            }
        }
        Problem::Refused(why) => format!("{field}: {why}"),
    }
}

/// Reads any JSON value as serde_json does, but an object that names a key twice stops the
/// read and leaves the key in `twice`.
struct Strict<'a> {
    twice: &'a RefCell<Option<String>>,
}

impl<'de> de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(x) = seq.next_element_seed(Strict { twice: self.twice })? {
            items.push(x);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                self.twice.replace(Some(key));
                return Err(de::Error::custom("a key given twice"));
            }
            let value = map.next_value_seed(Strict { twice: self.twice })?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// A JSON value as a deserializer whose error is a [`Problem`].
struct Json(Value);

impl<'de> IntoDeserializer<'de, Problem> for Json {
    type Deserializer = Json;
    fn into_deserializer(self) -> Json {
        self
    }
}

impl<'de> Deserializer<'de> for Json {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Problem> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => v.visit_i64(i),
                (None, Some(u), _) => v.visit_u64(u),
                (None, None, f) => v.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => v.visit_string(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Json));
                let out = v.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Object(fields) => {
                let mut map = MapDeserializer::new(fields.into_iter().map(|(k, x)| (k, Json(x))));
                let out = v.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Problem> {
        match self.0 {
            Value::Null => v.visit_none(),
            other => v.visit_some(Json(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> std::result::Result<V::Value, Problem> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        sku: String,
        quantity: i64,
        #[serde(rename = "type")]
        kind: crate::model::TxType,
        #[serde(default)]
        lots: Option<Vec<u32>>,
    }

    fn message(body: &str) -> String {
        object(body.as_bytes())
            .and_then(shape::<Shape>)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn shape_errors_are_in_words_and_name_the_field() {
        let m = message(r#"{"sku":"A-1","quantity":"5","type":"ship"}"#);
        assert_eq!(m, "quantity must be a whole number, got the text \"5\"");
        let m = message(r#"{"sku":"A-1","quantity":5.5,"type":"ship"}"#);
        assert_eq!(m, "quantity must be a whole number, got the number 5.5");
        let m = message(r#"{"sku":"A-1","quantity":1e30,"type":"ship"}"#);
        assert!(m.starts_with("quantity must be a whole number"), "{m}");
        let m = message(r#"{"sku":"A-1","quantity":5,"type":"steal"}"#);
        assert!(
            m.starts_with("type: unknown movement type \"steal\""),
            "{m}"
        );
        assert_eq!(
            message(r#"{"sku":"A-1","type":"ship"}"#),
            "quantity is missing"
        );
        let m = message(r#"{"sku":"A-1","quantity":1,"type":"ship","colour":1}"#);
        assert_eq!(
            m,
            "colour is not a field here; the fields are sku, quantity, type, lots"
        );
        let m = message(r#"{"sku":"A-1","quantity":1,"type":"ship","lots":[1,-2]}"#);
        assert_eq!(m, "lots[1] must be a whole number, got the number -2");
        let m = message(r#"{"sku":null,"quantity":1,"type":"ship"}"#);
        assert_eq!(m, "sku must be text, got null");
        let m = message(r#"{"sku":"A","quantity":1,"quantity":2,"type":"ship"}"#);
        assert_eq!(
            m,
            "the key \"quantity\" is given twice in one object; give each field once"
        );
        let m = message(r#"{"sku":"A","n":{"a":1,"a":1}}"#);
        assert!(m.contains("\"a\" is given twice"), "{m}");
        for (typed, want) in [("ship", "Ship"), ("adjust_down", "Adjust Down")] {
            let body = format!(r#"{{"sku":"A-1","quantity":1,"type":"{typed}"}}"#);
            let s: Shape = object(body.as_bytes()).and_then(shape).unwrap();
            assert_eq!(s.kind.as_str(), want);
        }
    }

    #[test]
    fn syntax_errors_name_the_place_and_what_stands_there() {
        let m = message("{x}");
        assert_eq!(
            m,
            "the body is not valid JSON: something unexpected near \"x}\" (line 1, column 2)"
        );
        let m = message(r#"{"sku":"A-1""#);
        assert!(m.contains("ends too early"), "{m}");
        let m = message("{\"sku\":\"A-1\"}\n  x");
        assert_eq!(
            m,
            "the body is not valid JSON: there is more after the JSON value (line 2, column 3)"
        );
        let m = message("{\"sku\":\"a\u{7}b\"}");
        assert!(m.contains("raw control character"), "{m}");
        for (body, got) in [("[1]", "a list"), ("\"x\"", "text"), ("3", "a number")] {
            assert_eq!(
                message(body),
                format!("the body must be a JSON object ({{\"field\": value, ...}}), got {got}")
            );
        }
        // Too deep for the parser: refused, not a crash.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(message(&deep).starts_with("the body is not valid JSON"));
    }
}
