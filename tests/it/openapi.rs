//! `docs/admin-api.yaml` (the OpenAPI document of the admin plane) against the code: the routes
//! and scopes against [`ROUTES`], the request bodies against the Rust types that parse them (by
//! round-tripping documented examples through [`Operation`], and by reading the private body
//! structs of `src/admin/api.rs`), the response objects against their structs, every example
//! against its schema, and every problem type against the source.

use serde_json::{json, Map, Value as Json};
use statusd::admin::api::{MAX_BATCH_BODY, MAX_BODY, ROUTES};
use statusd::issuer::auth::Scope;
use statusd::issuer::{ItemError, Operation, MAX_BATCH, MAX_REASON, MAX_REQUEST_ID};
use statusd::store::registry::MAX_CREDENTIAL_ID_LEN;
use statusd::store::MAX_ID_LEN;
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!("../../docs/admin-api.yaml");
const OPERATION_RS: &str = include_str!("../../src/issuer/operation.rs");
const VIEW_RS: &str = include_str!("../../src/issuer/view.rs");
const RECORD_RS: &str = include_str!("../../src/issuer/record.rs");
const API_RS: &str = include_str!("../../src/admin/api.rs");
const ADMIN_RS: &str = include_str!("../../src/admin/mod.rs");
const PROBLEM_RS: &str = include_str!("../../src/problem.rs");

const PROBLEM_PREFIX: &str = "urn:statusd:problem:";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The unauthenticated routes of `src/admin/mod.rs`.
const HEALTH: [&str; 3] = ["/metrics", "/livez", "/readyz"];

fn doc() -> Json {
    let doc: Json = serde_norway::from_str(DOC).expect("docs/admin-api.yaml is valid YAML");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "an OpenAPI 3.1 document"
    );
    doc
}

/// Follows `$ref`s (local JSON pointers) until an object without one.
fn deref<'a>(doc: &'a Json, mut v: &'a Json) -> &'a Json {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Json::as_str) else {
            return v;
        };
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: only local references"));
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{r} does not resolve"));
    }
    panic!("reference loop");
}

fn schema<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no schema {name}"))
}

fn ref_name(v: &Json) -> Option<&str> {
    v.get("$ref")?.as_str()?.rsplit('/').next()
}

fn strings(v: &Json) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An object schema's property names and `required` list.
fn props_required(s: &Json) -> (BTreeSet<String>, BTreeSet<String>) {
    let props = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("an object schema with properties: {s}"))
        .keys()
        .cloned()
        .collect();
    (props, strings(&s["required"]))
}

/// Every (METHOD, path) of the document, and the operation objects.
fn operations(doc: &Json) -> BTreeMap<(String, String), &Json> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, op) in item.as_object().expect("a path item") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_uppercase(), path.clone()), op);
            }
        }
    }
    out
}

fn expected_routes() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .chain(HEALTH.iter().map(|p| ("GET".to_owned(), (*p).to_owned())))
        .collect()
}

#[test]
fn documents_exactly_the_routes() {
    let doc = doc();
    let documented: BTreeSet<_> = operations(&doc).into_keys().collect();
    let expected = expected_routes();
    let undocumented: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        undocumented.is_empty() && extra.is_empty(),
        "docs/admin-api.yaml is out of sync with ROUTES: undocumented {undocumented:?}, \
         documented but not served {extra:?}"
    );
}

#[test]
fn operations_name_their_scope_and_errors() {
    let doc = doc();
    let ops = operations(&doc);
    let bearer = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    let mut operation_ids = BTreeSet::new();
    for ((method, path), op) in &ops {
        let at = format!("{method} {path}");
        assert!(op["summary"].is_string(), "{at}: summary");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{at}"));
        assert!(operation_ids.insert(id), "{at}: operationId {id} twice");
        // Every template parameter is declared, at the path or the operation.
        let declared: BTreeSet<String> = doc["paths"][path]["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| deref(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().expect("a name").to_owned())
            .collect();
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, templated, "{at}: path parameters");

        let responses = op["responses"].as_object().expect("responses");
        for (code, resp) in responses {
            let resp = deref(&doc, resp);
            assert!(resp["description"].is_string(), "{at} {code}: description");
            if code.starts_with('4') || code.starts_with('5') {
                assert!(
                    resp["content"]["application/problem+json"]["schema"].is_object(),
                    "{at} {code}: errors are application/problem+json"
                );
            }
        }
        let has = |code: &str| responses.contains_key(code);
        assert!(has("405"), "{at}: 405");
        if HEALTH.contains(&path.as_str()) {
            assert_eq!(op["security"], json!([]), "{at}: unauthenticated");
            assert!(op.get("x-statusd-scope").is_none(), "{at}: no scope");
            assert!(has("200"), "{at}: 200");
            continue;
        }
        let scope = ROUTES
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, s)| *s)
            .expect("documented routes are served (see documents_exactly_the_routes)");
        assert_eq!(
            op["x-statusd-scope"],
            scope.as_str(),
            "{at}: x-statusd-scope"
        );
        assert_eq!(
            op["security"],
            json!([{ "bearerAuth": [scope.as_str()] }]),
            "{at}: security"
        );
        assert!(has("401"), "{at}: 401");
        assert!(has("503"), "{at}: 503 (the store)");
        // Every token has at least `read`: only higher scopes can be refused.
        assert_eq!(has("403"), scope > Scope::Read, "{at}: 403 iff above read");
        assert!(
            responses.iter().any(|(c, r)| c.starts_with('2')
                && deref(&doc, r)["content"]["application/json"]["schema"].is_object()),
            "{at}: a JSON success response"
        );
        if path.contains('{') {
            assert!(has("400"), "{at}: 400 for a malformed percent-escape");
        }
        if method == "POST" {
            for code in ["400", "413", "415"] {
                assert!(has(code), "{at}: {code}");
            }
            let body = deref(&doc, &op["requestBody"]);
            assert_eq!(body["required"], true, "{at}: the body is required");
            let limit = if path.ends_with("/batch") {
                format!("{} MiB", MAX_BATCH_BODY >> 20)
            } else {
                format!("{} KiB", MAX_BODY >> 10)
            };
            assert!(
                body["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&limit)),
                "{at}: the body limit ({limit}) is documented"
            );
        }
    }
    // A new registration is 201, its idempotent retry 200.
    let register = &ops[&("POST".to_owned(), "/v1/credentials".to_owned())]["responses"];
    assert!(register.get("201").is_some() && register.get("200").is_some());
    let create = &ops[&("POST".to_owned(), "/v1/lists".to_owned())]["responses"];
    assert!(create.get("201").is_some());
}

/// A value for a property: its `const`, its first `examples` entry, or its reference's.
fn example_value(doc: &Json, prop: &Json) -> Json {
    if let Some(c) = prop.get("const") {
        return c.clone();
    }
    if let Some(e) = prop.get("examples").and_then(|e| e.get(0)) {
        return e.clone();
    }
    if prop.get("$ref").is_some() {
        return example_value(doc, deref(doc, prop));
    }
    if let Some(e) = prop.get("enum").and_then(|e| e.get(0)) {
        return e.clone();
    }
    panic!("property without const, examples or enum: {prop}")
}

/// The field names an unknown-field or unknown-variant error of serde says it expects.
fn expected_names(err: &str) -> BTreeSet<String> {
    let (_, expected) = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("not an unknown-field error: {err}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The batch operations: `op` → schema name, from the discriminator.
fn operation_schemas(doc: &Json) -> BTreeMap<String, String> {
    let operation = schema(doc, "Operation");
    let mapping = operation["discriminator"]["mapping"]
        .as_object()
        .expect("a discriminator mapping");
    assert_eq!(operation["discriminator"]["propertyName"], "op");
    let one_of: BTreeSet<&str> = operation["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| ref_name(v).expect("a $ref"))
        .collect();
    let mapped: BTreeMap<String, String> = mapping
        .iter()
        .map(|(op, r)| {
            let name = r.as_str().expect("a $ref").rsplit('/').next().unwrap();
            (op.clone(), name.to_owned())
        })
        .collect();
    assert_eq!(
        one_of,
        mapped.values().map(String::as_str).collect(),
        "Operation: oneOf and the discriminator mapping agree"
    );
    mapped
}

#[test]
fn batch_operations_match_the_rust_operation() {
    let doc = doc();
    let ops = operation_schemas(&doc);
    // The document's `op`s are exactly the enum's variants.
    let err = serde_json::from_value::<Operation>(json!({"op": "no-such-op"}))
        .expect_err("an unknown op")
        .to_string();
    assert_eq!(
        expected_names(&err),
        ops.keys().cloned().collect(),
        "the documented ops are Operation's variants ({err})"
    );
    for (op, name) in &ops {
        let s = schema(&doc, name);
        assert_eq!(s["type"], "object", "{name}");
        assert_eq!(
            s["additionalProperties"], false,
            "{name}: unknown fields are rejected"
        );
        let (props, required) = props_required(s);
        assert_eq!(s["properties"]["op"]["const"], op.as_str(), "{name}: op");
        assert!(required.contains("op"), "{name}: op is required");
        let all: Map<String, Json> = props
            .iter()
            .map(|p| (p.clone(), example_value(&doc, &s["properties"][p])))
            .collect();
        let minimal: Map<String, Json> = all
            .iter()
            .filter(|(k, _)| required.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (what, body) in [("every property", &all), ("the required ones", &minimal)] {
            let parsed: Operation = serde_json::from_value(Json::Object(body.clone()))
                .unwrap_or_else(|e| panic!("{name} with {what}: Operation rejects it: {e}"));
            assert_eq!(parsed.name(), op, "{name}");
            // Nothing documented is dropped or renamed on the way.
            assert_eq!(
                serde_json::to_value(&parsed).unwrap(),
                Json::Object(body.clone()),
                "{name} with {what}: round trip"
            );
        }
        // Required in the document = required by the Rust type.
        for r in required.iter().filter(|r| *r != "op") {
            let mut without = minimal.clone();
            without.remove(r);
            let err = serde_json::from_value::<Operation>(Json::Object(without))
                .expect_err(&format!("{name}: {r} is documented as required"))
                .to_string();
            assert!(
                err.contains(&format!("missing field `{r}`")),
                "{name}: {err}"
            );
        }
        // The Rust type knows exactly the documented properties, and rejects others.
        let mut extra = all.clone();
        extra.insert("undocumented".into(), json!("x"));
        let err = serde_json::from_value::<Operation>(Json::Object(extra))
            .expect_err(&format!(
                "{name} says additionalProperties: false; Operation must reject an unknown field"
            ))
            .to_string();
        let mut documented = props.clone();
        documented.remove("op");
        assert_eq!(expected_names(&err), documented, "{name}: fields ({err})");
    }
}

/// The schema name of a POST route's JSON request body.
fn request_schema<'a>(doc: &'a Json, path: &str) -> &'a str {
    let body = deref(doc, &doc["paths"][path]["post"]["requestBody"]);
    ref_name(&body["content"]["application/json"]["schema"])
        .unwrap_or_else(|| panic!("POST {path}: the body schema is a $ref"))
}

/// A property's type for comparison: its `$ref`, or itself without prose.
fn shape(p: &Json) -> Json {
    if let Some(r) = p.get("$ref") {
        return r.clone();
    }
    let mut p = p.clone();
    if let Some(m) = p.as_object_mut() {
        m.remove("description");
        m.remove("examples");
    }
    p
}

#[test]
fn route_bodies_are_their_operation_without_path_fields() {
    let doc = doc();
    let ops = operation_schemas(&doc);
    for (_, path, _) in ROUTES.iter().filter(|(m, _, _)| *m == "POST") {
        // The operation a route runs, and the fields its path provides.
        let (op, from_path): (&str, &[&str]) = match path.rsplit_once('/') {
            Some(("/v1/credentials/{credential_id}", action)) => {
                (action, &["op", "credential_id"][..])
            }
            Some(("/v1", "credentials")) => ("register", &["op"][..]),
            _ => continue, // /v1/lists and the batch: checked against their structs below
        };
        let body_name = request_schema(&doc, path);
        let body = schema(&doc, body_name);
        let op_name = ops
            .get(op)
            .unwrap_or_else(|| panic!("POST {path}: no batch operation {op:?}"));
        let op_schema = schema(&doc, op_name);
        assert_eq!(body["additionalProperties"], false, "{body_name}");
        let (props, required) = props_required(body);
        let (op_props, op_required) = props_required(op_schema);
        let strip = |s: BTreeSet<String>| -> BTreeSet<String> {
            s.into_iter()
                .filter(|p| !from_path.contains(&p.as_str()))
                .collect()
        };
        assert_eq!(props, strip(op_props), "{path}: {body_name} properties");
        assert_eq!(required, strip(op_required), "{path}: {body_name} required");
        for p in &props {
            assert_eq!(
                shape(&body["properties"][p]),
                shape(&op_schema["properties"][p]),
                "{path}: {body_name}.{p} has the type of {op_name}.{p}"
            );
        }
        // Its documented examples, completed as the server does, are operations.
        let examples = deref(&doc, &doc["paths"][path]["post"]["requestBody"])["content"]
            ["application/json"]["examples"]
            .as_object()
            .unwrap_or_else(|| panic!("POST {path}: request examples"));
        for (ex, e) in examples {
            let mut v = deref(&doc, e)["value"].clone();
            v["op"] = json!(op);
            if from_path.contains(&"credential_id") {
                v["credential_id"] = json!("urn:example:from-the-path");
            }
            let parsed: Operation = serde_json::from_value(v)
                .unwrap_or_else(|e| panic!("POST {path} example {ex}: {e}"));
            assert_eq!(parsed.name(), op);
        }
    }
    assert_eq!(request_schema(&doc, "/v1/credentials/batch"), "BatchBody");
    assert_eq!(request_schema(&doc, "/v1/lists"), "CreateListBody");
    let batch = schema(&doc, "BatchBody");
    assert_eq!(
        ref_name(&batch["properties"]["operations"]["items"]),
        Some("Operation")
    );
    let batch_examples = doc["paths"]["/v1/credentials/batch"]["post"]["requestBody"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("batch examples");
    for (ex, e) in batch_examples {
        for item in e["value"]["operations"].as_array().expect("operations") {
            serde_json::from_value::<Operation>(item.clone())
                .unwrap_or_else(|err| panic!("batch example {ex}: {item}: {err}"));
        }
    }
}

/// One field of a Rust struct, read from its source.
struct Field {
    name: String,
    /// `Option<…>` or `#[serde(default)]`: may be absent when deserialising.
    optional_in: bool,
    /// `skip_serializing_if`: may be absent when serialised.
    optional_out: bool,
}

/// The fields of `struct name` in `src`, and whether it denies unknown fields.
fn rust_struct(src: &str, name: &str) -> (Vec<Field>, bool) {
    let lines: Vec<&str> = src.lines().collect();
    let header = format!("struct {name} {{");
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i].trim_start();
            l == header || l.strip_prefix("pub ") == Some(header.as_str())
        })
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "struct {name}: found {} times",
        starts.len()
    );
    let start = starts[0];
    let deny = lines[..start]
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
        .any(|l| l.contains("deny_unknown_fields"));
    let mut fields = Vec::new();
    let mut attrs: Vec<&str> = Vec::new();
    for line in &lines[start + 1..] {
        let l = line.trim();
        if l == "}" {
            return (fields, deny);
        }
        if l.starts_with("//") || l.is_empty() {
            continue;
        }
        if l.starts_with("#[") {
            attrs.push(l);
            continue;
        }
        let (field, ty) = l
            .trim_start_matches("pub ")
            .split_once(':')
            .unwrap_or_else(|| panic!("struct {name}: cannot read {l:?}"));
        let renamed = attrs.iter().find_map(|a| {
            let (_, rest) = a.split_once("rename = \"")?;
            Some(rest.split('"').next()?.to_owned())
        });
        fields.push(Field {
            name: renamed.unwrap_or_else(|| field.trim().to_owned()),
            optional_in: ty.trim_start().starts_with("Option<")
                || attrs.iter().any(|a| a.contains("default")),
            optional_out: attrs.iter().any(|a| a.contains("skip_serializing_if")),
        });
        attrs.clear();
    }
    panic!("struct {name}: no closing brace")
}

#[test]
fn request_bodies_match_the_structs_that_parse_them() {
    let doc = doc();
    // The bodies the routes of src/admin/api.rs parse (private, so read from the source).
    for (schema_name, rust) in [
        ("CreateListBody", "CreateList"),
        ("BatchBody", "Batch"),
        ("HoldBody", "HoldBody"),
        ("RevokeBody", "RevokeBody"),
        ("ReissueBody", "ReissueBody"),
    ] {
        let (fields, deny) = rust_struct(API_RS, rust);
        let s = schema(&doc, schema_name);
        let (props, required) = props_required(s);
        let names: BTreeSet<String> = fields.iter().map(|f| f.name.clone()).collect();
        let needed: BTreeSet<String> = fields
            .iter()
            .filter(|f| !f.optional_in)
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(props, names, "{schema_name}: the fields of {rust}");
        assert_eq!(
            required, needed,
            "{schema_name}: the non-Option fields of {rust}"
        );
        assert_eq!(
            s["additionalProperties"] == false,
            deny,
            "{schema_name}: additionalProperties: false iff {rust} denies unknown fields"
        );
    }
    // The registration body is the whole Registration (the route adds `op`).
    let (fields, deny) = rust_struct(OPERATION_RS, "Registration");
    let (props, required) = props_required(schema(&doc, "RegistrationBody"));
    assert!(deny);
    assert_eq!(props, fields.iter().map(|f| f.name.clone()).collect());
    assert_eq!(
        required,
        fields
            .iter()
            .filter(|f| !f.optional_in)
            .map(|f| f.name.clone())
            .collect()
    );
    // The documented limits are the code's.
    let max = |name: &str, key: &str| schema(&doc, name)[key].as_u64();
    assert_eq!(
        schema(&doc, "BatchBody")["properties"]["operations"]["maxItems"].as_u64(),
        Some(MAX_BATCH as u64)
    );
    assert_eq!(max("Reason", "maxLength"), Some(MAX_REASON as u64));
    assert_eq!(max("OptionalReason", "maxLength"), Some(MAX_REASON as u64));
    assert_eq!(max("RequestId", "maxLength"), Some(MAX_REQUEST_ID as u64));
    assert_eq!(
        max("CredentialIdValue", "maxLength"),
        Some(MAX_CREDENTIAL_ID_LEN as u64)
    );
    assert!(schema(&doc, "PoolId")["pattern"]
        .as_str()
        .is_some_and(|p| p.ends_with(&format!("{{1,{MAX_ID_LEN}}}$"))));
}

#[test]
fn response_objects_match_their_structs() {
    let doc = doc();
    for (schema_name, src, rust) in [
        ("Outcome", OPERATION_RS, "Outcome"),
        ("Affected", OPERATION_RS, "Affected"),
        ("CredentialView", VIEW_RS, "CredentialView"),
        ("ListView", VIEW_RS, "ListView"),
        ("Event", RECORD_RS, "AuditEvent"),
    ] {
        let (fields, _) = rust_struct(src, rust);
        let (props, required) = props_required(schema(&doc, schema_name));
        assert_eq!(
            props,
            fields.iter().map(|f| f.name.clone()).collect(),
            "{schema_name}: the fields of {rust}"
        );
        assert_eq!(
            required,
            fields
                .iter()
                .filter(|f| !f.optional_out)
                .map(|f| f.name.clone())
                .collect(),
            "{schema_name}: the fields {rust} always serialises"
        );
    }
    // `Assignment` writes its claims itself (issue 16: no JSON trees per registration), so its
    // fields are those a real one serialises, every one of them always.
    let dir = crate::support::TempDir::new("openapi-assignment");
    let store = statusd::store::embedded::EmbeddedStore::open(&dir.0).expect("open");
    let issuer = statusd::issuer::Issuer::new(
        std::sync::Arc::new(statusd::store::any::AnyStore::Embedded(store)),
        crate::roundtrips::urls(),
        statusd::issuer::Settings::default(),
    );
    let at = statusd::store::registry::Location {
        list: "default-1".into(),
        idx: 7,
    };
    for size in [1024, 1 << 20] {
        let written = serde_json::to_value(issuer.assignment(&at, size)).expect("serialises");
        let fields: BTreeSet<String> = written
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        let (props, required) = props_required(schema(&doc, "Assignment"));
        assert_eq!(
            props, fields,
            "Assignment: the fields it writes ({size} entries)"
        );
        assert_eq!(
            required, fields,
            "Assignment: every field is always written"
        );
    }
}

/// Checks `v` against `s`: the subset of JSON Schema the document uses, except `pattern`,
/// `format` and `discriminator`.
fn check(doc: &Json, s: &Json, v: &Json, at: &str) -> Result<(), String> {
    let s = deref(doc, s);
    let fail = |why: String| Err(format!("{at}: {why}"));
    if let Some(all) = s.get("allOf").and_then(Json::as_array) {
        for sub in all {
            check(doc, sub, v, at)?;
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Json::as_array) {
        let ok: Vec<_> = one
            .iter()
            .filter(|sub| check(doc, sub, v, at).is_ok())
            .collect();
        if ok.len() != 1 {
            return fail(format!("{} of oneOf match {v}", ok.len()));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return fail(format!("{v} is not {c}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Json::as_array) {
        if !e.contains(v) {
            return fail(format!("{v} is not one of {e:?}"));
        }
    }
    let ty_ok = match s.get("type").and_then(Json::as_str) {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(t) => return fail(format!("unknown type {t}")),
    };
    if !ty_ok {
        return fail(format!("{v} is not of type {}", s["type"]));
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        if s.get("maxLength")
            .and_then(Json::as_u64)
            .is_some_and(|m| n > m)
            || s.get("minLength")
                .and_then(Json::as_u64)
                .is_some_and(|m| n < m)
        {
            return fail(format!("{v}: length"));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Json::as_f64)
            .is_some_and(|m| n < m)
            || s.get("maximum")
                .and_then(Json::as_f64)
                .is_some_and(|m| n > m)
        {
            return fail(format!("{v}: range"));
        }
    }
    if let Some(items) = v.as_array() {
        if s.get("maxItems")
            .and_then(Json::as_u64)
            .is_some_and(|m| items.len() as u64 > m)
        {
            return fail("too many items".into());
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(doc, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for r in strings(&s["required"]) {
            if !obj.contains_key(&r) {
                return fail(format!("missing {r}"));
            }
        }
        let props = s.get("properties").and_then(Json::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(p) => check(doc, p, val, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&json!(false)) => {
                    return fail(format!("unknown property {k}"))
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[test]
fn examples_match_their_schemas() {
    let doc = doc();
    let mut checked = 0;
    for ((method, path), op) in operations(&doc) {
        let mut media: Vec<(String, &Json)> = Vec::new();
        if let Some(body) = op.get("requestBody") {
            media.push(("request".into(), deref(&doc, body)));
        }
        for (code, resp) in op["responses"].as_object().expect("responses") {
            media.push((code.clone(), deref(&doc, resp)));
        }
        for (what, m) in media {
            let Some(content) = m.get("content").and_then(Json::as_object) else {
                continue;
            };
            for (ty, mt) in content {
                for (name, ex) in mt
                    .get("examples")
                    .and_then(Json::as_object)
                    .into_iter()
                    .flatten()
                {
                    let at = format!("{method} {path} {what} {ty} example {name}");
                    check(&doc, &mt["schema"], &deref(&doc, ex)["value"], &at)
                        .unwrap_or_else(|e| panic!("{e}"));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} examples");
    // Schema-level examples of properties, too (the values example_value uses).
    for (name, s) in doc["components"]["schemas"].as_object().expect("schemas") {
        for (p, ps) in s
            .get("properties")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            for e in ps
                .get("examples")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                check(&doc, ps, e, &format!("{name}.{p} example"))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// Every `urn:statusd:problem:<slug>` the document mentions.
fn documented_slugs(v: &Json, out: &mut BTreeSet<String>) {
    match v {
        Json::String(s) => {
            for (i, _) in s.match_indices(PROBLEM_PREFIX) {
                let slug: String = s[i + PROBLEM_PREFIX.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                // `urn:statusd:problem:<slug>` in prose is a placeholder.
                if !s[i + PROBLEM_PREFIX.len()..].starts_with('<') {
                    out.insert(slug);
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|x| documented_slugs(x, out)),
        Json::Object(m) => m.values().for_each(|x| documented_slugs(x, out)),
        _ => {}
    }
}

fn urn_enum(doc: &Json, name: &str) -> BTreeSet<String> {
    strings(&schema(doc, name)["enum"])
        .into_iter()
        .map(|u| {
            u.strip_prefix(PROBLEM_PREFIX)
                .unwrap_or_else(|| panic!("{name}: {u} is not a statusd problem type"))
                .to_owned()
        })
        .collect()
}

/// Item problem slugs the issuer can answer with: every [`ItemError`].
fn item_slugs_in_code() -> BTreeSet<String> {
    ItemError::ALL.iter().map(|e| e.slug().to_owned()).collect()
}

/// Problem types of the `Problem` variants the admin plane constructs, from `type_uri`.
fn plane_slugs_in_code() -> BTreeSet<String> {
    let mut variants = BTreeSet::new();
    for src in [API_RS, ADMIN_RS] {
        for (i, _) in src.match_indices("Problem::") {
            if src[..i].ends_with("Item") {
                continue;
            }
            let v: String = src[i + "Problem::".len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            variants.insert(v);
        }
    }
    let type_uri = PROBLEM_RS
        .split_once("fn type_uri(")
        .expect("Problem::type_uri")
        .1;
    let type_uri = &type_uri[..type_uri.find("\n    }\n").expect("its end")];
    let mut out = BTreeSet::new();
    for v in &variants {
        for line in type_uri.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(v.as_str()) else {
                continue;
            };
            if !rest.starts_with([' ', '(', '{']) {
                continue;
            }
            if let Some((_, urn)) = line.split_once(&format!("\"{PROBLEM_PREFIX}")) {
                let slug = urn.split('"').next().unwrap();
                if !slug.contains('{') {
                    out.insert(slug.to_owned());
                }
            }
        }
    }
    assert!(
        out.len() >= 10,
        "read the admin plane's problem types: {out:?}"
    );
    out
}

#[test]
fn problem_types_exist_in_the_code() {
    let doc = doc();
    let mut slugs = BTreeSet::new();
    documented_slugs(&doc, &mut slugs);
    assert!(!slugs.contains(""), "a problem type without a slug");
    let sources = [API_RS, PROBLEM_RS];
    for slug in &slugs {
        let literal = format!("\"{slug}\"");
        let urn = format!("\"{PROBLEM_PREFIX}{slug}\"");
        assert!(
            sources
                .iter()
                .any(|s| s.contains(&literal) || s.contains(&urn)),
            "the document names problem type {slug}, which the code never produces"
        );
    }
    let all = urn_enum(&doc, "ProblemType");
    assert_eq!(
        slugs, all,
        "ProblemType lists every problem type the document names"
    );

    // Issuer problems: the documented HTTP status is ItemError::status().
    let item = schema(&doc, "ItemProblemType");
    let statuses = item["x-statusd-status"]
        .as_object()
        .expect("x-statusd-status");
    let items = urn_enum(&doc, "ItemProblemType");
    assert_eq!(
        items,
        statuses.keys().cloned().collect(),
        "ItemProblemType: enum and x-statusd-status agree"
    );
    for (slug, status) in statuses {
        let error = ItemError::ALL.iter().find(|e| e.slug() == slug);
        assert_eq!(
            error.map(|e| u64::from(e.status().as_u16())),
            status.as_u64(),
            "ItemProblemType: the status of {slug}"
        );
    }
    assert_eq!(
        item_slugs_in_code(),
        items,
        "ItemProblemType lists exactly the issuer's item errors"
    );
    let plane = plane_slugs_in_code();
    let missing: Vec<_> = plane.difference(&all).collect();
    assert!(
        missing.is_empty(),
        "admin-plane problem types the document does not list: {missing:?}"
    );
    assert!(items.is_subset(&all));
}
