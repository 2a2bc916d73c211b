//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every route the router serves, made
//! from the router's own table (path, methods, query parameters, summary), so a route cannot
//! exist without being described. Bodies and answers are described by kind (JSON, CSV, HTML,
//! the error object); their fields are in the HTTP API's documentation. Pure.

use serde_json::{json, Map, Value};

/// One route as the router knows it.
pub struct Described {
    /// The path, with `{name}` for a path parameter.
    pub path: &'static str,
    /// "GET, POST" and the like.
    pub methods: &'static str,
    /// The query parameters its GET takes.
    pub params: &'static [&'static str],
    pub summary: &'static str,
    /// Which token its writes need: "writes" (`[server] token(s)`) or "standby".
    pub token: &'static str,
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn content(path: &str, method: &str) -> Value {
    let html = matches!(path, "/" | "/search") || path.starts_with("/products/");
    if html {
        json!({"text/html": {"schema": {"type": "string"}}})
    } else if path == "/metrics" {
        json!({"text/plain": {"schema": {"type": "string"}}})
    } else if method == "get" && path.starts_with("/api/") {
        json!({"application/json": {"schema": {}}, "text/csv": {"schema": {"type": "string"}}})
    } else {
        json!({"application/json": {"schema": {}}})
    }
}

fn operation(d: &Described, method: &str) -> Value {
    let mut params = path_params(d.path);
    if method == "get" {
        params.extend(d.params.iter().map(
            |p| json!({"name": p, "in": "query", "required": false, "schema": {"type": "string"}}),
        ));
    }
    let mut op = json!({
        "summary": d.summary,
        "operationId": format!("{method} {}", d.path),
        "parameters": params,
        "responses": {
            "200": {"description": "the answer", "content": content(d.path, method)},
            "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    });
    if matches!(method, "post" | "put") {
        op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    if method != "get" || d.token == "standby" {
        op["security"] = json!([{ d.token: [] }]);
    }
    op
}

/// The document.
pub fn document(routes: &[Described]) -> Value {
    let mut paths = Map::new();
    for d in routes {
        let mut item = Map::new();
        for m in d.methods.split(", ") {
            let m = m.to_ascii_lowercase();
            item.insert(m.clone(), operation(d, &m));
        }
        paths.insert(d.path.to_string(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ora",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A warehouse ledger in one SQLite file. Lists take ?format=csv; unknown query parameters are refused with 400.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": {"type": "string", "description": "what happened and what to do"},
                        "code": {"type": "string", "description": "a stable name for the kind of error"},
                        "problems": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "securitySchemes": {
                "writes": {"type": "http", "scheme": "bearer", "description": "[server] token or tokens"},
                "standby": {"type": "http", "scheme": "bearer", "description": "[standby] token"},
            },
        },
    })
}
