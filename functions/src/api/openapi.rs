//! `GET /openapi.json`: the API described in OpenAPI 3.1. (Being written; see issue 6.)

use axum::http::header;
use axum::response::IntoResponse;

/// The document, kept in `functions/openapi.json` and checked against the code by tests.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
