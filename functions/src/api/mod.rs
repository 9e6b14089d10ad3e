//! HTTP handlers and the pieces every endpoint shares (auth, body reading, errors): the audit
//! endpoints ([`pullrequests`]) and the one handler of every webhook source ([`webhook`]).

pub mod access;
pub mod auth;
pub mod body;
pub mod error;
pub mod openapi;
pub mod pullrequests;
pub mod webhook;
