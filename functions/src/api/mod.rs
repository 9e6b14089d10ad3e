//! HTTP handlers and the pieces every endpoint shares (auth, body reading, errors): the audit
//! endpoints ([`pullrequests`]), the one handler of every webhook source ([`webhook`]) and the
//! audit console's HTML pages ([`console`]).

pub mod access;
pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod openapi;
pub mod pullrequests;
pub mod webhook;
