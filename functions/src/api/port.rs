//! `POST /webhooks/port`: Port changelog events. (Being implemented; see issue 5.)

use axum::extract::{Request, State};
use axum::response::Response;

use super::error::ApiError;
use crate::AppState;

/// Receives a signed Port changelog delivery.
pub async fn receive(State(_state): State<AppState>, _req: Request) -> Result<Response, ApiError> {
    Err(ApiError::NoRoute)
}
