//! The API's one error type and its one JSON shape:
//! `{"error": {"code": "<stable code>", "message": "<for humans>"}}`, plus `record_id` when a
//! record exists. 5xx are logged here; their message never carries internal details.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orchestrator_core::RecordId;
use orchestrator_core::store::StoreError;
use serde_json::json;

use crate::dispatch::DispatchError;
use crate::intake::PayloadError;
use crate::sources::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid token is required (query parameter `token` or `Authorization: Bearer`)")]
    Unauthorized,
    /// An audit route without a valid audit or admin credential (names the setting).
    #[error(
        "a valid {0} is required (`Authorization: Bearer <token>`, or the HTTP Basic password; \
         on AWS, SigV4 with an authorized IAM identity)"
    )]
    CredentialRequired(&'static str),
    /// A valid credential that does not grant this operation (names the one that does).
    #[error("this operation needs {0}; the credential given cannot do it")]
    Forbidden(&'static str),
    /// The credential a route needs is not configured: the route is closed.
    #[error("{0} is not configured on this deployment: these routes are closed")]
    CredentialNotConfigured(&'static str),
    #[error("the request signature is missing, invalid or stale")]
    BadSignature,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read")]
    BodyUnreadable,
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("query parameter `{param}` is invalid: {reason}")]
    InvalidQuery { param: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("no route for this method and path")]
    NoRoute,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
    /// The reason (AWS's error text, which can name accounts and roles) goes to the log and to
    /// the record, never into the answer.
    #[error("the task could not be launched; the record (now `dispatch_failed`) says why")]
    DispatchFailed { record_id: RecordId, reason: String },
    #[error("the request took too long")]
    Timeout,
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => ApiError::InvalidQuery {
                param: "cursor",
                reason: e.to_string(),
            },
            StoreError::NotFound(id) => ApiError::NotFound(format!("record {id}")),
            StoreError::InFlight { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A webhook source's refusal, as the API answers it.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotConfigured(what) => ApiError::NotConfigured(what),
            Refusal::Unauthorized => ApiError::Unauthorized,
            Refusal::BadSignature => ApiError::BadSignature,
        }
    }
}

/// The application layer's outcomes, as the API answers them.
impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::NotFound(id) => ApiError::NotFound(format!("record {id}")),
            DispatchError::Conflict(why) => ApiError::Conflict(why),
            DispatchError::LaunchFailed { record_id, reason } => {
                ApiError::DispatchFailed { record_id, reason }
            }
            DispatchError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::BadSignature | ApiError::CredentialRequired(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) | ApiError::CredentialNotConfigured(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyUnreadable | ApiError::Payload(_) | ApiError::InvalidQuery { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DispatchFailed { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized | ApiError::CredentialRequired(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CredentialNotConfigured(_) => "credential_not_configured",
            ApiError::BadSignature => "bad_signature",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyUnreadable => "body_unreadable",
            ApiError::Payload(PayloadError::MalformedJson(_)) => "malformed_json",
            ApiError::Payload(PayloadError::NotAnObject) => "invalid_body",
            ApiError::Payload(PayloadError::MissingField(_)) => "missing_field",
            ApiError::Payload(PayloadError::InvalidField { .. }) => "invalid_field",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::NotFound(_) => "not_found",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotConfigured(_) => "not_configured",
            ApiError::DispatchFailed { .. } => "dispatch_failed",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The setting that names the credential a refused request needed.
    fn credential(&self) -> Option<&'static str> {
        match self {
            ApiError::CredentialRequired(c)
            | ApiError::Forbidden(c)
            | ApiError::CredentialNotConfigured(c) => Some(c),
            _ => None,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::Payload(PayloadError::MissingField(f))
            | ApiError::Payload(PayloadError::InvalidField { field: f, .. }) => Some(f),
            ApiError::InvalidQuery { param, .. } => Some(param),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            match &self {
                ApiError::Internal(detail) => {
                    tracing::error!(code = self.code(), %detail, "request failed")
                }
                ApiError::DispatchFailed { record_id, reason } => {
                    tracing::error!(code = self.code(), %record_id, %reason, "request failed")
                }
                other => tracing::error!(code = other.code(), error = %other, "request failed"),
            }
        }
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        if let Some(f) = self.field() {
            error["field"] = json!(f);
        }
        if let Some(c) = self.credential() {
            error["credential"] = json!(c);
        }
        let mut body = json!({ "error": error });
        if let ApiError::DispatchFailed { record_id, .. } = &self {
            body["record_id"] = json!(record_id.to_string());
        }
        (status, Json(body)).into_response()
    }
}
