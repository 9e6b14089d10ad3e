//! Reading a JSON request body: the content type must be JSON (415), the body at most
//! [`MAX_BODY`] bytes (413). The raw bytes are returned untouched, so signatures can be checked on
//! exactly what was sent.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;

use super::error::ApiError;

/// The largest body any endpoint accepts.
pub const MAX_BODY: usize = 256 * 1024;

/// `application/json`, with parameters, or any `+json` type.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Checks the content type, then reads at most [`MAX_BODY`] bytes.
pub async fn read_json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let too_large = ApiError::PayloadTooLarge { limit: MAX_BODY };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY) {
        return Err(too_large);
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        // `to_bytes` reports the limit through a boxed LengthLimitError.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge { limit: MAX_BODY };
            }
            source = err.source();
        }
        ApiError::BodyUnreadable
    })
}
