//! Shared model of the orchestrator: the identifiers a job is made of ([`ident`]), what a record
//! is, how its status may move, the contract that carries a job from the launcher to the task
//! binary, and the [`store::RecordStore`] port with its adapters (DynamoDB for AWS, SQLite for
//! local mode).
//!
//! This crate has no HTTP, git or YAML code: both the Lambda functions and the task binary depend
//! on it, and neither should compile what the other runs. Remediation actions ([`action`]) and,
//! with the `cel` feature, the CEL expressions and templates of rules ([`expr`]) live here
//! because the intake checks them and the task runs them.

pub mod action;
pub mod contract;
#[cfg(feature = "cel")]
pub mod expr;
pub mod ident;
pub mod record;
pub mod secret;
pub mod store;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use action::{ActionSpec, ActionType};
pub use contract::{ContractError, LaunchContract};
pub use ident::{Environment, ImageName, InvalidIdent, Service, Tag};
pub use record::{
    EntityRef, HistoryEntry, Job, PortRun, PortRunKind, Record, RecordId, Source, Status,
    TransitionError,
};
pub use secret::Secret;
