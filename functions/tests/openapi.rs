//! `functions/openapi.json` checked against the code, in-process:
//!
//! - every documented operation is routed (it answers neither `no_route` nor 405), and answers a
//!   probe with a status the document lists for it, in the documented shape;
//! - every route `lib.rs` registers is documented (the `.route(..)` calls are read from the
//!   source, so a new route without documentation fails here, naming it);
//! - every error code `ApiError::code()` can return is in the `ErrorCode` enum, and no other;
//! - the `Record`, `RecordSummary`, `Job` and `Page` schemas have exactly the fields serde produces, and the
//!   `Status` and `Source` enums exactly the values the code knows;
//! - real responses (an orb delivery, a signed CircleCI delivery, a listing, errors) validate
//!   against their documented schemas.
//!
//! The validator below implements the JSON Schema keywords the document uses, except `pattern`
//! and `format` (ignored: a `pattern` schema matches every string here); schemathesis
//! (`scripts/schemathesis.sh`) checks those against a live server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{fixture, sqlite_app};
use hmac::{KeyInit, Mac};
use orchestrator::api::openapi::DOCUMENT;
use orchestrator::api::pullrequests::Summary;
use orchestrator::intake::port::PortSettings;
use orchestrator::rules::RuleSet;
use orchestrator::{IntakeSettings, app};
use orchestrator_core::action::{ActionSpec, ActionType};
use orchestrator_core::store::{Page, RecordStore};
use orchestrator_core::{EntityRef, Job, Record, RecordId, Secret, Source, Status};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "openapi-test-token";
const CIRCLECI_SECRET: &str = "openapi-test-circleci-secret";

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).expect("functions/openapi.json is JSON")
}

const PORT_SECRET: &str = "openapi-test-port-secret";

fn settings() -> IntakeSettings {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/rules.yaml"
    ))
    .unwrap();
    IntakeSettings {
        token: Some(Secret::new(TOKEN)),
        circleci_secret: Some(Secret::new(CIRCLECI_SECRET)),
        port: PortSettings {
            secret: Some(Secret::new(PORT_SECRET)),
            rules: Some(Arc::new(RuleSet::from_yaml(&rules).unwrap())),
            deploy_actions: Vec::new(),
        },
        ..IntakeSettings::default()
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(path, method)` of every documented operation.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            if METHODS.contains(&key.as_str()) {
                ops.insert((path.clone(), key.clone()));
            }
        }
    }
    ops
}

/// The `.route("<path>", <method>(..).<method>(..))` calls in `functions/src/lib.rs`.
/// The `.route(..)` calls of `lib.rs` (the audit endpoints) and of `sources/mod.rs` (one per
/// webhook source).
fn routes_in_lib_rs() -> BTreeSet<(String, String)> {
    let src = ["/src/lib.rs", "/src/sources/mod.rs"]
        .map(|f| std::fs::read_to_string(format!("{}{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .join("\n");
    let mut routes = BTreeSet::new();
    let mut from = 0;
    while let Some(found) = src[from..].find(".route(") {
        let open = from + found + ".route(".len();
        // The call's text, up to its closing parenthesis.
        let mut depth = 1;
        let len = src[open..]
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a .route( call is closed");
        let call = &src[open..open + len];
        from = open + len;
        let path = call
            .split('"')
            .nth(1)
            .expect("a .route( call starts with a string literal path");
        let handlers = &call[call.find(',').expect("a .route( call has a handler")..];
        let mut any = false;
        for m in METHODS {
            for (i, _) in handlers.match_indices(&format!("{m}(")) {
                let before = handlers[..i].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    routes.insert((path.to_owned(), m.to_owned()));
                    any = true;
                }
            }
        }
        assert!(any, "no method router found in `.route({call})`");
    }
    assert!(
        routes.len() >= 5,
        "the .route( scan of lib.rs found only {routes:?}: has the Router's layout changed?"
    );
    routes
}

/// A concrete URI for a path template: `{id}` becomes a fresh (unknown) record id.
fn concrete(path: &str) -> String {
    path.replace("{id}", &RecordId::new().to_string())
}

/// A request with the credential its route takes: the intake token for deliveries, the admin
/// token for the audit routes.
fn request(method: &str, uri: &str, body: Option<&[u8]>) -> Request<Body> {
    let delivery = method == "post" && !uri.ends_with("/dispatch");
    let token = if delivery { TOKEN } else { common::ADMIN_TOKEN };
    let mut b = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Body::from(body.unwrap_or_default().to_vec()))
        .unwrap()
}

async fn send(
    t: &common::TestApp,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app(t.state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String("<not JSON>".into()))
    };
    (status, headers, body)
}

// ---- a small JSON Schema validator (the keywords this document uses; no pattern/format) ----

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// The ways `v` violates `schema`, as JSON-pointer-ish messages.
fn violations(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let s = resolve(doc, schema);
    let mut out = Vec::new();
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => out.push(format!("{at}: not a {t}: {v}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)) => {
            out.push(format!("{at}: none of {ts:?}: {v}"))
        }
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        out.push(format!("{at}: {v} is not {c}"));
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                out.push(format!("{at}: missing required {r}"));
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => out.extend(violations(doc, ps, val, &format!("{at}/{k}"))),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at}: undocumented property {k}"))
                }
                None => {}
            }
        }
    }
    if let Some(text) = v.as_str() {
        let chars = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            out.push(format!("{at}: longer than {max}"));
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            out.push(format!("{at}: shorter than {min}"));
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(violations(doc, sub, v, at));
    }
    if let Some(cond) = s.get("if") {
        let branch = if violations(doc, cond, v, at).is_empty() {
            s.get("then")
        } else {
            s.get("else")
        };
        if let Some(b) = branch {
            out.extend(violations(doc, b, v, at));
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            out.extend(violations(doc, items, item, &format!("{at}/{i}")));
        }
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        out.push(format!("{at}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (s.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        out.push(format!("{at}: {n} > {max}"));
    }
    let matching = |key: &str| -> Option<(usize, usize)> {
        let subs = s.get(key)?.as_array()?;
        let ok = subs
            .iter()
            .filter(|sub| violations(doc, sub, v, at).is_empty())
            .count();
        Some((ok, subs.len()))
    };
    if let Some((ok, n)) = matching("anyOf")
        && ok == 0
    {
        out.push(format!("{at}: matches none of {n} anyOf schemas: {v}"));
    }
    if let Some((ok, n)) = matching("oneOf")
        && ok != 1
    {
        out.push(format!(
            "{at}: matches {ok} of {n} oneOf schemas (want 1): {v}"
        ));
    }
    if let Some(not) = s.get("not")
        && violations(doc, not, v, at).is_empty()
    {
        out.push(format!("{at}: matches a `not` schema: {v}"));
    }
    out
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn assert_valid(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let errs = violations(doc, schema, v, "");
    assert!(
        errs.is_empty(),
        "{what} does not match its schema:\n{}",
        errs.join("\n")
    );
}

/// The documented response for `status` of an operation (its schema, if it has a body).
fn documented_response<'a>(
    doc: &'a Value,
    path: &str,
    method: &str,
    status: StatusCode,
) -> Option<&'a Value> {
    let r = doc["paths"][path][method]["responses"].get(status.as_str())?;
    Some(resolve(doc, r))
}

/// Checks a live response against the operation's documentation: the status is listed, and a JSON
/// body matches the listed schema.
fn assert_documented(doc: &Value, path: &str, method: &str, status: StatusCode, body: &Value) {
    let r = documented_response(doc, path, method, status).unwrap_or_else(|| {
        panic!(
            "{} {path} answered {status}, which the document does not list: {body}",
            method.to_uppercase()
        )
    });
    match r.pointer("/content/application~1json/schema") {
        Some(s) => assert_valid(doc, s, body, &format!("{method} {path} {status}")),
        None => assert!(
            body.is_null(),
            "{method} {path} {status} has an undocumented body"
        ),
    }
}

// ---- the tests ----

#[tokio::test]
async fn the_document_is_openapi_3_1_and_served_as_is() {
    let d = doc();
    assert!(d["openapi"].as_str().unwrap().starts_with("3.1."));
    let t = sqlite_app(settings());
    let resp = app(t.state.clone())
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "served without a token");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bytes, DOCUMENT.as_bytes());
    // Every $ref resolves, and every operation has an id and documents its 401 where it needs auth.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&d, &mut all);
    for r in all {
        assert!(
            d.pointer(r.strip_prefix('#').unwrap()).is_some(),
            "dangling $ref {r}"
        );
    }
    for (path, method) in documented_operations(&d) {
        let op = &d["paths"][&path][&method];
        assert!(
            op["operationId"].is_string(),
            "{method} {path} has no operationId"
        );
        let secured = op
            .get("security")
            .unwrap_or(&d["security"])
            .as_array()
            .is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            op["responses"].get("401").is_some(),
            "{method} {path}: a secured operation documents 401, an open one does not"
        );
    }
}

#[tokio::test]
async fn every_route_in_lib_rs_is_documented_and_every_documented_operation_is_routed() {
    let d = doc();
    let documented = documented_operations(&d);
    let routed = routes_in_lib_rs();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "functions/src/lib.rs routes these, but functions/openapi.json does not document them: \
         {undocumented:?}"
    );
    let phantom: Vec<_> = documented.difference(&routed).collect();
    assert!(
        phantom.is_empty(),
        "functions/openapi.json documents these, but lib.rs has no such .route(..): {phantom:?}"
    );

    // And the Router agrees: each operation answers, in a documented way, to a minimal probe.
    let t = sqlite_app(settings());
    for (path, method) in &documented {
        let body = d["paths"][path][method]
            .get("requestBody")
            .map(|_| b"{}".as_slice());
        let (status, _, json) = send(&t, request(method, &concrete(path), body)).await;
        assert_ne!(
            json.pointer("/error/code").and_then(Value::as_str),
            Some("no_route"),
            "{method} {path} is documented but not routed"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_documented(&d, path, method, status, &json);
    }

    // A method a documented path does not serve is a 405 in the error shape.
    for path in d["paths"].as_object().unwrap().keys() {
        let (status, _, json) = send(&t, request("patch", &concrete(path), None)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "PATCH {path}");
        assert_valid(&d, &schema("Error"), &json, "a 405");
        assert_eq!(json["error"]["code"], "method_not_allowed");
    }
}

/// The string literals returned by `ApiError::code()`, read from its source.
fn codes_in_error_rs() -> BTreeSet<String> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/error.rs")).unwrap();
    let start = src
        .find("pub fn code(&self)")
        .expect("ApiError::code() in src/api/error.rs");
    let body = &src[start..];
    let body = &body[..body[1..]
        .find("\n    fn ")
        .or_else(|| body[1..].find("\n    pub fn "))
        .unwrap_or(body.len() - 1)
        + 1];
    let codes: BTreeSet<String> = body
        .split("=> \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    assert!(
        codes.len() >= 10,
        "read only {codes:?} from ApiError::code()"
    );
    codes
}

#[test]
fn the_error_code_enum_is_exactly_what_the_code_returns() {
    let d = doc();
    let documented: BTreeSet<String> = d["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let in_code = codes_in_error_rs();
    let missing: Vec<_> = in_code.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "ApiError::code() returns codes the ErrorCode enum lacks: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        stale.is_empty(),
        "ErrorCode lists codes the API never returns: {stale:?}"
    );
    // The scan sees what the running code returns.
    use orchestrator::api::error::ApiError;
    for e in [
        ApiError::Unauthorized,
        ApiError::NoRoute,
        ApiError::MethodNotAllowed,
        ApiError::Timeout,
    ] {
        assert!(documented.contains(e.code()), "{}", e.code());
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn schema_keys(d: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let s = &d["components"]["schemas"][name];
    let props = keys(&s["properties"]);
    let required = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (props, required)
}

fn full_record() -> Record {
    let mut r = Record::received(
        Source::CircleciOrb,
        json!({"reponame": "r"}),
        Some(Job::parse("s", "o/s", "dev", "abcdef0").unwrap()),
    );
    r.status = Status::Succeeded;
    r.status_reason = Some("done".into());
    r.dedupe_key = Some("k".into());
    r.task_arn = Some("arn".into());
    r.pr_url = Some("https://example.com/pr/1".into());
    r.branch = Some("b".into());
    r.outcome = Some(json!({"exit": 0}));
    r.task_version = Some(3);
    r.task_stop = Some(json!({"exitCode": 0}));
    r.entity = Some(EntityRef {
        blueprint: "vm".into(),
        entity: "vm-1".into(),
    });
    r.rule = Some("vm-free-storage-low".into());
    r.attempt = 2;
    r.retry_at = Some(r.received_at);
    r.history = vec![orchestrator_core::HistoryEntry {
        at: r.received_at,
        status: Status::DispatchFailed,
        attempt: 1,
        note: Some("capacity".into()),
    }];
    r.redacted_by = Some("admin-token".into());
    r.redacted_at = Some(r.updated_at);
    r.actions = vec![ActionSpec {
        id: "notify".into(),
        kind: ActionType::SlackPost,
        with: serde_json::Map::new(),
    }];
    r.port_run = Some(orchestrator_core::PortRun {
        id: "r_1".into(),
        kind: orchestrator_core::PortRunKind::Automation,
        identifier: Some("vm_free_storage_low".into()),
        user: None,
    });
    r
}

#[test]
fn record_job_and_page_schemas_have_exactly_the_serialised_fields() {
    let d = doc();
    for (name, value) in [
        ("Record", serde_json::to_value(full_record()).unwrap()),
        (
            "Record",
            serde_json::to_value(Record::received(Source::Port, json!({}), None)).unwrap(),
        ),
        (
            "Job",
            serde_json::to_value(full_record().job.unwrap()).unwrap(),
        ),
        (
            "EntityRef",
            serde_json::to_value(full_record().entity.unwrap()).unwrap(),
        ),
        (
            "HistoryEntry",
            serde_json::to_value(&full_record().history[0]).unwrap(),
        ),
        (
            "PortRun",
            serde_json::to_value(full_record().port_run.unwrap()).unwrap(),
        ),
        (
            "ActionSpec",
            serde_json::to_value(&full_record().actions[0]).unwrap(),
        ),
        (
            "RecordSummary",
            serde_json::to_value(Summary::of(&full_record())).unwrap(),
        ),
        (
            "Page",
            json!({
                "records": [serde_json::to_value(Summary::of(&full_record())).unwrap()],
                "next_cursor": Page { records: vec![], next_cursor: Some("c".into()) }.next_cursor,
            }),
        ),
    ] {
        let (props, required) = schema_keys(&d, name);
        assert_eq!(
            keys(&value),
            props,
            "the {name} schema's properties differ from what serde produces"
        );
        assert!(
            required.is_subset(&keys(&value)),
            "{name}: required fields serde omits: {:?}",
            required.difference(&keys(&value)).collect::<Vec<_>>()
        );
        assert_valid(&d, &schema(name), &value, name);
    }
}

#[test]
fn status_and_source_enums_match_the_code() {
    let d = doc();
    let enum_of = |name: &str| -> Vec<String> {
        d["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let statuses: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(enum_of("Status"), statuses, "Status enum");
    let sources = enum_of("Source");
    for s in &sources {
        let parsed: Source = s.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.as_str(), s);
    }
    // Exhaustive on purpose: a new source fails to compile here until it is documented.
    let all = |s: Source| match s {
        Source::CircleciOrb | Source::CircleciNative | Source::Port | Source::Eventbridge => {
            s.as_str().to_owned()
        }
    };
    let from_code: Vec<String> = [
        Source::CircleciOrb,
        Source::CircleciNative,
        Source::Port,
        Source::Eventbridge,
    ]
    .into_iter()
    .map(all)
    .collect();
    assert_eq!(sources, from_code, "Source enum");
    let action_types: Vec<String> = ActionType::ALL
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert_eq!(
        d["components"]["schemas"]["ActionSpec"]["properties"]["type"]["enum"],
        json!(action_types),
        "ActionSpec type enum"
    );
}

fn port_request(body: &[u8], secret: &str) -> Request<Body> {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Request::post("/webhooks/port")
        .header("content-type", "application/json")
        .header("x-port-timestamp", ts)
        .header("x-port-signature", format!("v1,{sig}"))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(CIRCLECI_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn live_responses_match_their_documented_schemas() {
    let d = doc();
    let t = sqlite_app(settings());

    // The orb fixture: 202, then the same delivery again: 200, same record.
    let orb = fixture("circleci-orb/success.json");
    let (status, headers, created) = send(&t, request("post", "/pullrequests", Some(&orb))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_documented(&d, "/pullrequests", "post", status, &created);
    assert!(headers.contains_key("location"));
    let (status, _, again) = send(&t, request("post", "/pullrequests", Some(&orb))).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &created["id"]));
    assert_documented(&d, "/pullrequests", "post", status, &again);

    // A signed CircleCI delivery.
    let native = fixture("circleci-native/workflow-completed.json");
    let req = Request::post("/webhooks/circleci")
        .header("content-type", "application/json")
        .header("circleci-signature", sign(&native))
        .body(Body::from(native.clone()))
        .unwrap();
    let (status, _, rec) = send(&t, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rec}");
    assert_documented(&d, "/webhooks/circleci", "post", status, &rec);

    // Signed Port deliveries: one a rule matches, one no rule matches; and a wrong secret.
    for name in [
        "port/changelog-vm-free-storage-low.json",
        "port/changelog-vm-create.json",
        "port/automation-deployment-health-degraded.json",
    ] {
        let body = fixture(name);
        let (status, _, rec) = send(&t, port_request(&body, PORT_SECRET)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {rec}");
        assert_documented(&d, "/webhooks/port", "post", status, &rec);
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_valid(&d, &schema("PortEvent"), &json, name);
    }
    let body = fixture("port/changelog-vm-create.json");
    let (status, _, err) = send(&t, port_request(&body, "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_documented(&d, "/webhooks/port", "post", status, &err);

    // Listing, one record, redispatch of a dispatched record (409), delete (204).
    let (_, _, page) = send(&t, request("get", "/pullrequests?limit=1", None)).await;
    assert!(
        page["next_cursor"].is_string(),
        "several records, pages of one"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, _, next) = send(
        &t,
        request(
            "get",
            &format!("/pullrequests?limit=100&cursor={cursor}"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_documented(&d, "/pullrequests", "get", status, &next);
    let id = created["id"].as_str().unwrap();
    // A finished record, which can be redacted (the dispatched one cannot: 409).
    let finished = Record::received(Source::CircleciOrb, json!({"a": 1}), None);
    t.store.create(&finished).await.unwrap();
    t.store
        .transition(
            finished.id,
            &orchestrator_core::store::Transition::to(Status::DispatchFailed),
        )
        .await
        .unwrap();
    let finished = finished.id;
    for (method, uri, path, expected) in [
        (
            "get",
            "/pullrequests?limit=1".to_owned(),
            "/pullrequests",
            StatusCode::OK,
        ),
        (
            "get",
            format!("/pullrequests/{id}"),
            "/pullrequests/{id}",
            StatusCode::OK,
        ),
        (
            "post",
            format!("/pullrequests/{id}/dispatch"),
            "/pullrequests/{id}/dispatch",
            StatusCode::CONFLICT,
        ),
        (
            "delete",
            format!("/pullrequests/{id}"),
            "/pullrequests/{id}",
            StatusCode::CONFLICT,
        ),
        (
            "delete",
            format!("/pullrequests/{finished}"),
            "/pullrequests/{id}",
            StatusCode::OK,
        ),
        (
            "get",
            format!("/pullrequests/{finished}"),
            "/pullrequests/{id}",
            StatusCode::OK,
        ),
        (
            "get",
            format!("/pullrequests/{}", RecordId::new()),
            "/pullrequests/{id}",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, _, body) = send(&t, request(method, &uri, None)).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert_documented(&d, path, method, status, &body);
    }

    // Errors, each in the one documented shape.
    let unauth = Request::get("/pullrequests").body(Body::empty()).unwrap();
    let (status, _, body) = send(&t, unauth).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_documented(&d, "/pullrequests", "get", status, &body);
    let mut intake_on_audit = request("get", "/pullrequests", None);
    intake_on_audit
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (status, _, body) = send(&t, intake_on_audit).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_documented(&d, "/pullrequests", "get", status, &body);
    let mut audit_on_admin = request(
        "delete",
        &format!("/pullrequests/{}", RecordId::new()),
        None,
    );
    audit_on_admin.headers_mut().insert(
        "authorization",
        format!("Bearer {}", common::AUDIT_TOKEN).parse().unwrap(),
    );
    let (status, _, body) = send(&t, audit_on_admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_documented(&d, "/pullrequests/{id}", "delete", status, &body);
    let (status, _, body) = send(&t, request("get", "/pullrequests?limit=0", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_documented(&d, "/pullrequests", "get", status, &body);
    let not_json = Request::post("/pullrequests")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "text/plain")
        .body(Body::from(orb.clone()))
        .unwrap();
    let (status, _, body) = send(&t, not_json).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_documented(&d, "/pullrequests", "post", status, &body);
    let big = vec![b' '; 300 * 1024];
    let (status, _, body) = send(&t, request("post", "/pullrequests", Some(&big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_documented(&d, "/pullrequests", "post", status, &body);
    let (status, _, body) = send(&t, request("post", "/webhooks/circleci", Some(&native))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "unsigned");
    assert_documented(&d, "/webhooks/circleci", "post", status, &body);
    let (status, _, body) = send(&t, request("get", "/nowhere", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_valid(&d, &schema("Error"), &body, "a 404 no_route");

    // Without secrets the signed endpoints are not configured: 503, documented.
    let bare = sqlite_app(IntakeSettings {
        token: Some(Secret::new(TOKEN)),
        ..IntakeSettings::default()
    });
    let (status, _, body) = send(&bare, request("post", "/webhooks/circleci", Some(&native))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_documented(&d, "/webhooks/circleci", "post", status, &body);
    let port = fixture("port/changelog-vm-create.json");
    let (status, _, body) = send(&bare, port_request(&port, PORT_SECRET)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_documented(&d, "/webhooks/port", "post", status, &body);

    // A request body documented as an object is one the code accepts: the fixtures validate.
    let orb_json: Value = serde_json::from_slice(&orb).unwrap();
    assert_valid(&d, &schema("OrbPayload"), &orb_json, "the orb fixture");
    let native_json: Value = serde_json::from_slice(&native).unwrap();
    assert_valid(
        &d,
        &schema("CircleciWebhook"),
        &native_json,
        "the CircleCI fixture",
    );
    let job: Value =
        serde_json::from_slice(&fixture("circleci-native/job-completed-github-app.json")).unwrap();
    assert_valid(
        &d,
        &schema("CircleciWebhook"),
        &job,
        "the CircleCI job fixture",
    );
}
