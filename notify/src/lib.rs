//! Notifications of record transitions: a Slack message and a signed JSON webhook when a record
//! reaches a status people want to hear about (a pull request opened or updated, no change, a
//! task, a launch or a remediation that failed, a dry run planned).
//!
//! - [`config`]: the rules document (`NOTIFY_RULES_FILE` or `NOTIFY_RULES`): which events of which
//!   service/environment go to which targets, checked at start with errors naming the line.
//! - [`event`]: which event, if any, a successful store transition is.
//! - [`message`]: the message of an event: the Slack text and the webhook's JSON body.
//! - [`send`]: [`Notifier`], the sender (short timeout, failures logged, never raised), and
//!   [`send::sign`], the webhook signature.
//! - [`store`]: [`Notifying`], a [`RecordStore`](orchestrator_core::store::RecordStore) that
//!   notifies after each transition its inner store accepted, and only then: a refused write
//!   (already in that state, superseded, stale) sends nothing, so a retried report is one message.
//! - [`settings`]: the settings every binary reads ([`NotifyArgs`]).
//!
//! Secrets (the Slack webhook URL, the webhook signing secret) are held in
//! [`Secret`](orchestrator_core::Secret) and never logged or recorded; a delivery error is logged
//! without the URL.

pub mod config;
pub mod event;
pub mod message;
pub mod send;
pub mod settings;
pub mod store;

pub use config::{ConfigError, Rules, TargetKind};
pub use event::Event;
pub use message::Notification;
pub use send::{Delivery, Notifier, WebhookTarget};
pub use settings::NotifyArgs;
pub use store::{Notify, Notifying};
