//! `GET /openapi.json`: the API described in OpenAPI 3.1, served as written in
//! `functions/openapi.json` (`tests/openapi.rs` checks it against the routes and types).

use axum::http::header;
use axum::response::IntoResponse;

/// The document, kept in `functions/openapi.json` and checked against the code by tests.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
