//! The failure of one remediation step: why, and what it got done before failing. Every action
//! (`exec`, `port`, `slack`, `gitops`) returns it; it depends on nothing else in this module.

use orchestrator_core::expr;
use serde_json::Value;

/// A step that failed: why, and what it got done before failing.
#[derive(Debug)]
pub struct StepFailure {
    pub error: String,
    pub detail: Value,
}

impl StepFailure {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            detail: Value::Null,
        }
    }

    pub fn with_detail(error: impl Into<String>, detail: Value) -> Self {
        Self {
            error: error.into(),
            detail,
        }
    }
}

impl From<expr::ExprError> for StepFailure {
    fn from(e: expr::ExprError) -> Self {
        StepFailure::new(format!("template: {e}"))
    }
}
