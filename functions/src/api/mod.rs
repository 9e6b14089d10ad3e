//! HTTP handlers and the pieces every endpoint shares (auth, body reading, errors).

pub mod auth;
pub mod body;
pub mod circleci;
pub mod error;
pub mod openapi;
pub mod port;
pub mod pullrequests;
