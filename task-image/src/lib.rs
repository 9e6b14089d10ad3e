//! The task binary's library: everything the Fargate container (or a local process) does.
//!
//! - [`kustomize`]: `kustomize edit set image` semantics as a format-preserving text edit, and
//!   kustomize's image matching for the preflight check.
//! - [`gitops`]: the gitops pull request job: configuration, git CLI, GitHub REST API, and the flow
//!   that ties them together and reports the outcome to the record store.
//! - [`remediation`]: the actions of a Port rule (exec, Port PATCH, Slack, gitops PR), in order,
//!   reported step by step to the record.
//!
//! No HTTP server code lives here: the task depends on `orchestrator-core`, never on the API.

pub mod gitops;
pub mod kustomize;
pub mod remediation;
