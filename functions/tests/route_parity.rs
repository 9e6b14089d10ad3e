//! Route parity: the API that `template.yaml` deploys and the Router the `api` function serves
//! have exactly the same operations (method and path).
//!
//! On AWS, API Gateway answers 403 to a method and path it has no event for, whatever the Router
//! would have done; a template event the Router does not serve is a deployed 404. So:
//!
//! - the template side is every `Api` / `HttpApi` event of the function built from the `api`
//!   binary (and no such event on any other function: only `api` serves the Router);
//! - the Router side is what the real Router answers: every candidate path is probed in-process
//!   with every method, and an operation is served when the answer is neither `no_route` nor 405.
//!   Candidate paths are the template's, `functions/openapi.json`'s and every `.route("...")`
//!   literal in `functions/src/` (so a route added anywhere in the crate is probed).
//!
//! HEAD is not probed: axum answers it for every GET route, and API Gateway needs no event for it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use orchestrator::IntakeSettings;
use orchestrator::api::openapi::DOCUMENT;
use orchestrator_core::RecordId;
use serde_json::Value;
use yaml_serde::Value as Yaml;

const PROBED: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(METHOD, path)` of one operation.
type Op = (String, String);

/// The API events of `template.yaml`: those of the `api` function, and those of any other.
fn template_operations() -> (BTreeSet<Op>, Vec<String>) {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let doc: Yaml = yaml_serde::from_str(&text).expect("template.yaml is YAML");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    let (mut ops, mut elsewhere) = (BTreeSet::new(), Vec::new());
    let mut api_functions = 0;
    for (name, res) in resources {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or("?");
        let is_api = res["Metadata"]["BuildProperties"]["Binary"].as_str() == Some("api");
        api_functions += usize::from(is_api);
        let Some(events) = res["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (event, spec) in events {
            if !matches!(spec["Type"].as_str(), Some("Api" | "HttpApi")) {
                continue;
            }
            let props = &spec["Properties"];
            let (Some(method), Some(path)) = (props["Method"].as_str(), props["Path"].as_str())
            else {
                panic!("{name}.{event:?}: an API event needs a literal Method and Path");
            };
            let op = (method.to_uppercase(), path.to_owned());
            if is_api {
                assert!(ops.insert(op.clone()), "{op:?} is declared twice");
            } else {
                elsewhere.push(format!("{name}: {} {}", op.0, op.1));
            }
        }
    }
    assert_eq!(
        api_functions, 1,
        "exactly one function is built from the `api` binary"
    );
    (ops, elsewhere)
}

/// Every `.route("<path>"` string literal in the crate's sources.
fn route_literals(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            route_literals(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let src = std::fs::read_to_string(&path).unwrap();
            for (at, _) in src.match_indices(".route(") {
                let rest = src[at + ".route(".len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    out.insert(lit[..lit.find('"').unwrap()].to_owned());
                }
            }
        }
    }
}

fn candidate_paths(template: &BTreeSet<Op>) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = template.iter().map(|(_, p)| p.clone()).collect();
    let openapi: Value = serde_json::from_str(DOCUMENT).unwrap();
    paths.extend(openapi["paths"].as_object().unwrap().keys().cloned());
    let before = paths.len();
    let mut literals = BTreeSet::new();
    route_literals(&root().join("functions/src"), &mut literals);
    assert!(
        literals.len() >= 5,
        "the .route(\"..\") scan of functions/src found only {literals:?}: has the Router's layout changed?"
    );
    paths.extend(literals);
    assert!(paths.len() >= before);
    paths
}

/// The operations the real Router serves among `paths`.
async fn served_operations(paths: &BTreeSet<String>) -> BTreeSet<Op> {
    let t = common::sqlite_app(IntakeSettings::default());
    let mut served = BTreeSet::new();
    for path in paths {
        // API Gateway and axum 0.8 write path parameters alike (`{id}`); any value routes.
        let uri = path.replace("{id}", &RecordId::new().to_string());
        for method in PROBED {
            let req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let (status, body) = common::send(&t.state, req).await;
            let code = body.pointer("/error/code").and_then(Value::as_str);
            if code != Some("no_route") && status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((method.to_string(), path.clone()));
            }
        }
    }
    served
}

#[tokio::test]
async fn template_api_events_and_the_router_serve_the_same_operations() {
    let (template, elsewhere) = template_operations();
    assert!(
        elsewhere.is_empty(),
        "API events on functions that do not serve the Router: {elsewhere:?}"
    );
    let served = served_operations(&candidate_paths(&template)).await;
    let undeployed: Vec<_> = served.difference(&template).collect();
    let unserved: Vec<_> = template.difference(&served).collect();
    assert!(
        undeployed.is_empty() && unserved.is_empty(),
        "template.yaml and the Router differ.\n  served by the Router, no API event in \
         template.yaml (API Gateway answers 403): {undeployed:?}\n  API events in template.yaml \
         the Router does not serve: {unserved:?}"
    );
    eprintln!(
        "route parity: {} operations, template.yaml and the Router agree",
        served.len()
    );
}
