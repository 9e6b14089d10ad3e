//! Intake: turning a raw delivery into a validated event and a derived job. Pure functions, no IO.

pub mod circleci;
pub mod derive;
pub mod dry_run;
pub mod events;
pub mod orb;
pub mod port;

/// A payload that failed validation, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("field `{0}` is required")]
    MissingField(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}
