//! Webhook sources: what differs between the senders the intake accepts, behind one trait, and
//! the list of them that [`register`] turns into routes. The one handler that runs every source is
//! `api::webhook::receive`; the application layer it hands records to is [`crate::dispatch`].
//!
//! A source says, for its deliveries: whether the deployment configured it, how a delivery proves
//! where it comes from (a token in the URL, a signature over the raw bytes), how the body decodes,
//! which key identifies a redelivery, and what record it becomes (a derived gitops job, or the
//! rule a Port event matched; `ignored` with the reason otherwise).
//!
//! Adding a source: one file here implementing [`WebhookSource`] (its payload parsing may live in
//! it or in `intake/`), one `mod` line and one line in [`register`], its settings in
//! `config.rs`, and its path in `openapi.json`.

pub mod circleci;
pub mod orb;
pub mod port;

use axum::Router;
use axum::http::request::Parts;
use axum::routing::post;
use orchestrator_core::Record;

use crate::intake::PayloadError;
use crate::{AppState, IntakeSettings};

/// Why a delivery was refused before its body was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The deployment did not configure this source (names the settings it needs).
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
    /// The token the URL or the `Authorization` header carries is missing or wrong.
    #[error("a valid token is required")]
    Unauthorized,
    /// The signature over the raw bytes is missing, invalid or stale.
    #[error("the request signature is missing, invalid or stale")]
    BadSignature,
}

/// One kind of webhook delivery. Every method is pure; the handler runs them in this order and
/// records nothing until all the checks pass: [`configured`](Self::configured) (503),
/// [`authenticate`](Self::authenticate) (401), the body's type and size (415, 413),
/// [`verify`](Self::verify) (401), [`decode`](Self::decode) (400), [`record`](Self::record)
/// (400 when the job cannot be derived).
pub trait WebhookSource: 'static {
    /// What the source needs from the settings, once it is known to be configured.
    type Config<'a>: Send + Sync;
    /// A decoded delivery.
    type Event: Send;

    /// The source's settings, or why it is not configured.
    fn configured(settings: &IntakeSettings) -> Result<Self::Config<'_>, Refusal>;

    /// Checks what the URL and the headers alone carry (a token), before the body is read.
    fn authenticate(_config: &Self::Config<'_>, _head: &Parts) -> Result<(), Refusal> {
        Ok(())
    }

    /// Checks the raw bytes, exactly as received, against the headers (a signature).
    fn verify(_config: &Self::Config<'_>, _head: &Parts, _body: &[u8]) -> Result<(), Refusal> {
        Ok(())
    }

    /// Parses and validates the body; the error names the field at fault.
    fn decode(body: &[u8]) -> Result<Self::Event, PayloadError>;

    /// Identifies the event: a second delivery with the same key returns the first record.
    fn dedupe_key(event: &Self::Event) -> String;

    /// The record to write: `received` with what to run, or `ignored` with why.
    fn record(config: &Self::Config<'_>, event: Self::Event) -> Result<Record, PayloadError>;
}

/// Adds the route of every source to `router`, each served by the one generic handler: the path
/// its deliveries are POSTed to, and the source.
pub fn register(router: Router<AppState>) -> Router<AppState> {
    use crate::api::webhook::receive;
    router
        .route("/pullrequests", post(receive::<orb::Orb>))
        .route("/webhooks/circleci", post(receive::<circleci::Native>))
        .route("/webhooks/port", post(receive::<port::Port>))
}
