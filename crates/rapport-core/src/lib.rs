//! The rapport domain: who works where, which client accounts exist, who is assigned to
//! them, who may see what, and what a timeline event is.
//!
//! # Layout
//! - [`staff`]: the reporting hierarchy (associate → manager → director → VP) and its rules.
//! - [`account`]: client accounts, their parent/child tree, domains, external ids, contacts.
//! - [`assignment`]: effective-dated owner/support assignments; exactly one current owner.
//! - [`visibility`]: the one rule that decides whether a staff member may see an account.
//! - [`permission`]: the permission table: who may do what, given what they see.
//! - [`sharing`]: who sees what a person's own connection (their mailbox) captured.
//! - [`matching`]: identity resolution — which account an event belongs to, and why.
//! - [`timeline`]: the event model every connector, note, task and handoff is written as.
//!
//! # What this crate must never know
//! No IO, no async, no SQL, no HTTP, no wasm. Every rule here is a plain function over
//! plain data, so the store, the sync engine and the server all enforce the same rules,
//! and the store's SQL can be tested against them (see `rapport-store`'s property tests).
//! Nothing here reads the clock: callers pass the instant a rule is evaluated at.

pub mod account;
pub mod assignment;
mod error;
pub mod health;
pub mod ids;
pub mod insight;
pub mod matching;
pub mod password;
pub mod permission;
pub mod revenue;
pub mod secret;
pub mod sharing;
pub mod sighting;
pub mod staff;
pub mod timeline;
pub mod token;
pub mod visibility;

pub use error::{DomainError, Result};
pub use ids::{AccountId, AssignmentId, EventId, StaffId};
