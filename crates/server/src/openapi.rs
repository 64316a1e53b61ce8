//! The OpenAPI 3.1 document, generated from the route table.
//!
//! The router and this document are built from the same
//! [`RouteSpec`] list, so a route cannot exist
//! without being documented, and a documented route cannot be missing.

use serde_json::{Map, Value, json};

use crate::routes::{Body, Location, ParamType, RouteSpec};

/// Builds the OpenAPI document for `routes`.
pub fn document(routes: &[RouteSpec]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method.as_lower()] = operation(route);
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nexus-attack API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "MITRE ATT&CK as governed reference data: taxonomy reads, the dataset \
                lifecycle and the audit log. Every success is `{\"data\", \"meta\"}`, every \
                error `{\"error\": {\"code\", \"message\", \"details\"}}`. Lists are paginated \
                with an opaque `cursor` and a `limit` (default 50, at most 500)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" }
            },
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "required": ["data", "meta"],
                    "properties": {
                        "data": {},
                        "meta": {
                            "type": "object",
                            "properties": {
                                "next_cursor": { "type": ["string", "null"] }
                            },
                            "additionalProperties": true
                        }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                                "details": { "type": "object" }
                            }
                        }
                    }
                }
            },
            "responses": {
                "Error": {
                    "description": "Structured error",
                    "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/Error" } }
                    }
                }
            }
        }
    })
}

fn operation(route: &RouteSpec) -> Value {
    let parameters: Vec<Value> = route
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "in": match p.location { Location::Path => "path", Location::Query => "query" },
                "required": p.required || p.location == Location::Path,
                "description": p.description,
                "schema": param_schema(p.kind),
            })
        })
        .collect();

    let error = json!({ "$ref": "#/components/responses/Error" });
    let mut responses = Map::new();
    let success = if route.created { "201" } else { "200" };
    let mut successes = vec![(success, route.summary)];
    if route.may_continue {
        successes.push(("202", "Accepted: the work goes on after the answer"));
    }
    for (status, description) in successes {
        responses.insert(
            status.to_string(),
            json!({
                "description": description,
                "content": {
                    route.produces: { "schema": if route.produces == "application/json" {
                        json!({ "$ref": "#/components/schemas/Envelope" })
                    } else {
                        json!({ "type": "string" })
                    }}
                }
            }),
        );
    }
    for status in route.errors() {
        responses.insert(status.to_string(), error.clone());
    }

    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses,
        "x-tenancy": route.tenancy.as_str(),
    });
    if route.auth {
        op["security"] = json!([{ "bearer": [] }]);
    } else {
        op["security"] = json!([]);
    }
    if let Some(action) = route.action {
        op["x-required-action"] = json!(action.as_str());
    }
    match route.body {
        Body::None => {}
        Body::Json { schema, example } => {
            op["requestBody"] = json!({
                "required": true,
                "content": {
                    "application/json": { "schema": schema(), "example": example() }
                }
            });
        }
        Body::Ndjson { example } => {
            op["requestBody"] = json!({
                "required": true,
                "description": "One JSON document per line (NDJSON); blank lines are skipped",
                "content": {
                    "application/x-ndjson": {
                        "schema": { "type": "string" }, "example": example()
                    },
                    "text/plain": { "schema": { "type": "string" } }
                }
            });
        }
        Body::Bundle => {
            op["requestBody"] = json!({
                "required": true,
                "description": "An ATT&CK STIX 2.0 or 2.1 bundle, plain JSON or gzip",
                "content": {
                    "application/json": { "schema": { "type": "object" } },
                    "application/gzip": { "schema": { "type": "string", "format": "binary" } },
                    "application/octet-stream": {
                        "schema": { "type": "string", "format": "binary" }
                    }
                }
            });
        }
    }
    op
}

fn param_schema(kind: ParamType) -> Value {
    match kind {
        ParamType::String => json!({ "type": "string" }),
        ParamType::Integer { min, max } => {
            json!({ "type": "integer", "minimum": min, "maximum": max })
        }
        ParamType::Boolean => json!({ "type": "boolean" }),
        ParamType::Enum(values) => json!({ "type": "string", "enum": values }),
    }
}
