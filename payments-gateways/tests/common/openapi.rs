//! Checks a JSON request body against a schema of pagoPA's published OpenAPI files
//! (`gpd.json`, `paCreatePosition.json`, …) field by field: the schema's rules (required
//! fields, types, lengths, patterns, formats, enums) with `jsonschema`, and no property
//! the schema does not declare (the files do not forbid them, but a misspelt field would
//! be ignored by pagoPA and lost).
//!
//! The files are read from `PAGOPA_OPENAPI_DIR`, or else beside the XSD folder
//! (`$PAGOPA_XSD_DIR/../openapi`), or else `../shared/specs/pagopa/openapi` beside the
//! workspace. Without them the check says SKIPPED loudly, unless `PAYMENTS_REQUIRE_XSD` is
//! set (CI sets it): then it fails.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use serde_json::{Value, json};

fn spec_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAGOPA_OPENAPI_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xsd) = std::env::var_os("PAGOPA_XSD_DIR") {
        return PathBuf::from(xsd).join("../openapi");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/pagopa/openapi")
}

/// The OpenAPI file `file`, or `None` (having said SKIPPED) when it is not there.
pub fn spec(file: &str) -> Option<Value> {
    let path = spec_dir().join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("an OpenAPI file is JSON")),
        Err(_) if std::env::var_os("PAYMENTS_REQUIRE_XSD").is_some() => {
            panic!(
                "pagoPA's OpenAPI file {} is required and missing",
                path.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: pagoPA's OpenAPI file {} is not here (set PAGOPA_OPENAPI_DIR): \
                 requests are not checked against it",
                path.display()
            );
            None
        }
    }
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().expect("a reference names a schema");
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Every property of `value` is declared by `schema`, at every depth; answers the paths of
/// those that are not.
fn undeclared(spec: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    match value {
        Value::Object(map) => {
            // A free-form object (`{"type": "object"}` alone) declares nothing to check.
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, v) in map {
                match properties.get(k) {
                    Some(s) => undeclared(spec, s, v, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    undeclared(spec, s, v, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Removes `pattern` from the schemas of numbers: JSON Schema applies a pattern to strings
/// only, so this changes no verdict, and FdR's (`^\\d{1,2147483647}…`) has a repetition
/// bound no regex engine compiles.
fn drop_number_patterns(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if matches!(
                map.get("type").and_then(Value::as_str),
                Some("number" | "integer")
            ) {
                map.remove("pattern");
            }
            map.values_mut().for_each(drop_number_patterns);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_number_patterns),
        _ => {}
    }
}

/// Asserts that `body` is a valid `schema` of the OpenAPI `file` and sends no property it
/// does not declare; answers whether the check ran.
pub fn assert_valid(file: &str, schema: &str, body: &Value) -> bool {
    let Some(spec) = spec(file) else {
        return false;
    };
    assert!(
        spec["components"]["schemas"].get(schema).is_some(),
        "{file} has no schema {schema}"
    );
    // OpenAPI 3.0's schemas are JSON Schema draft 4 with extensions (`example`, `readOnly`),
    // which draft 4 validators ignore; `exclusiveMaximum: true` is draft 4's form.
    let mut components = spec["components"].clone();
    drop_number_patterns(&mut components);
    let root = json!({
        "$ref": format!("#/components/schemas/{schema}"),
        "components": components,
    });
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{file}#{schema} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the body is not a valid {schema} of {file}:\n{}\n{body:#}",
        errors.join("\n")
    );
    let mut extra = Vec::new();
    undeclared(
        &spec,
        &spec["components"]["schemas"][schema],
        body,
        schema,
        &mut extra,
    );
    assert!(
        extra.is_empty(),
        "{file}#{schema} declares no {}:\n{body:#}",
        extra.join(", ")
    );
    true
}
