//! The task binary's library: everything the Fargate container (or a local process) does.
//!
//! - [`gitops`]: the gitops pull request job: configuration, git CLI, GitHub REST API, and the flow
//!   that ties them together and reports the outcome to the record store.
//! - [`remediation`]: the actions of a Port rule (exec, Port PATCH, Slack, gitops PR), in order,
//!   reported step by step to the record.
//! - [`port_run`]: a Port-invoked job's reports to its Port action run.
//!
//! Notifications (`orchestrator-notify`): `run` reports through a store that sends the message
//! of each transition it writes (the outcome), after the write.
//!
//! The overlay edit and the preflight's image matching are the `kustomize-set-image` crate.
//! No HTTP server code lives here: the task depends on `orchestrator-core`, never on the API.

pub mod gitops;
pub mod port_run;
pub mod remediation;

/// What the task's store tells about the transitions it writes.
pub type Notifier = std::sync::Arc<dyn orchestrator_notify::Notify>;
