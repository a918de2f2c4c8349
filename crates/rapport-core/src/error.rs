//! Domain errors: business outcomes a person can act on, never IO.

use crate::assignment::Role;
use crate::staff::Level;
use crate::{AccountId, EventId, StaffId};

/// Result of a domain rule check.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// A domain rule was broken. Each message says what was wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A staff member was referenced who does not exist.
    #[error("{0} does not exist")]
    UnknownStaff(StaffId),

    /// An account was referenced that does not exist (or is not visible to the caller).
    #[error("{0} does not exist")]
    UnknownAccount(AccountId),

    /// The person acting may not do this (see `permission`); nothing was written.
    #[error("{0}")]
    NotPermitted(String),

    /// A task was assigned to someone who cannot see its account.
    #[error(
        "{staff} cannot see {account}, so cannot do its task: assign it to someone on the account"
    )]
    TaskAssigneeCannotSee {
        /// The proposed assignee.
        staff: StaffId,
        /// The task's account.
        account: AccountId,
    },

    /// `reports_to` must point at someone of a strictly higher level.
    #[error(
        "{} cannot report to {}: reports_to must point at someone more senior (associate → manager → director → VP)",
        staff_level.with_article(),
        manager_level.with_article()
    )]
    ReportsToNotSenior {
        /// Level of the person whose manager is being set.
        staff_level: Level,
        /// Level of the proposed manager.
        manager_level: Level,
    },

    /// The VP of account management is the top of the hierarchy.
    #[error("a VP reports to nobody: leave reports_to empty for a VP")]
    VpHasManager,

    /// Someone was asked to report to themselves.
    #[error("{0} cannot report to themselves")]
    ReportsToSelf(StaffId),

    /// The proposed manager is (transitively) one of the person's own reports.
    #[error(
        "{staff} cannot report to {manager}: {manager} already reports (directly or indirectly) to {staff}"
    )]
    HierarchyCycle {
        /// The person whose manager is being set.
        staff: StaffId,
        /// The proposed manager.
        manager: StaffId,
    },

    /// Changing a level would leave a direct report no longer junior to their manager.
    #[error(
        "{staff} cannot become a {new_level} while {report} (a {report_level}) reports to them: move {report} to another manager first"
    )]
    LevelChangeStrandsReport {
        /// The person whose level is changing.
        staff: StaffId,
        /// The requested level.
        new_level: Level,
        /// A direct report who would no longer be junior.
        report: StaffId,
        /// That report's level.
        report_level: Level,
    },

    /// Inactive staff cannot manage, own or support anything.
    #[error("{0} is deactivated: reactivate them or pick someone else")]
    StaffInactive(StaffId),

    /// Someone already has as many live API tokens as one person may.
    #[error(
        "{staff} already has {max} live API tokens, the most one person may have: revoke one they no longer use (`rapport token list`, then `rapport token revoke`)"
    )]
    TooManyTokens {
        /// Whose tokens.
        staff: StaffId,
        /// The cap.
        max: usize,
    },

    /// A timeline event was referenced that does not exist (or is not visible).
    #[error("{0} does not exist")]
    UnknownEvent(EventId),

    /// The event is not in the state the change needs, e.g. placing an event that is
    /// already on an account, or completing a task that is done.
    #[error("{event} cannot be changed: {reason}")]
    EventNotChangeable {
        /// The event.
        event: EventId,
        /// Why, and what to do instead.
        reason: String,
    },

    /// An API token id was referenced that does not exist.
    #[error("there is no API token with id {0} (`rapport token list` shows them)")]
    UnknownToken(i64),

    /// Deactivating someone who still owns accounts would orphan those accounts.
    #[error(
        "{staff} still owns {count} account(s): reassign them to another owner before deactivating"
    )]
    StillOwnsAccounts {
        /// The person being deactivated.
        staff: StaffId,
        /// How many accounts they own right now.
        count: u64,
    },

    /// Deactivating a manager with active reports would orphan those reports.
    #[error(
        "{staff} still has {count} active direct report(s): move them to another manager before deactivating"
    )]
    StillHasReports {
        /// The person being deactivated.
        staff: StaffId,
        /// How many active people report to them.
        count: u64,
    },

    /// A staff email is already used by someone else.
    #[error("the email {0} already belongs to another staff member")]
    StaffEmailTaken(String),

    /// An account cannot be its own parent.
    #[error("{0} cannot be its own parent")]
    AccountParentSelf(AccountId),

    /// The proposed parent is a descendant of the account.
    #[error(
        "{account} cannot have {parent} as parent: {parent} is already a subsidiary of {account}"
    )]
    AccountCycle {
        /// The account being moved.
        account: AccountId,
        /// The proposed parent.
        parent: AccountId,
    },

    /// The client hierarchy may not be arbitrarily deep.
    #[error(
        "moving {account} there would make the client hierarchy {depth} levels deep; the limit is {max}"
    )]
    AccountTreeTooDeep {
        /// The account being moved.
        account: AccountId,
        /// The depth it would create.
        depth: usize,
        /// The limit.
        max: usize,
    },

    /// A domain name could not be understood.
    #[error("`{input}` is not a valid domain name: {reason}")]
    InvalidDomain {
        /// What was given.
        input: String,
        /// Why it was refused and what to write instead.
        reason: String,
    },

    /// An email address could not be understood.
    #[error("`{input}` is not a valid email address: {reason}")]
    InvalidEmail {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// An external id was malformed.
    #[error("`{input}` is not a valid external id: {reason}")]
    InvalidExternalId {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// An external id identifies exactly one account.
    #[error("the external id {external_id} already belongs to {account}: remove it there first")]
    ExternalIdTaken {
        /// The external id, as `system:id`.
        external_id: String,
        /// The account that holds it.
        account: AccountId,
    },

    /// A required text field was empty or too long.
    #[error("{field} {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it, e.g. "must not be empty".
        reason: String,
    },

    /// A lifecycle or level name was not recognised.
    #[error("`{input}` is not a valid {what}; expected one of: {expected}")]
    UnknownName {
        /// What kind of name (level, role, lifecycle status).
        what: &'static str,
        /// What was given.
        input: String,
        /// The accepted names.
        expected: &'static str,
    },

    /// An account already has its one owner.
    #[error(
        "{account} already has an owner ({owner}): reassign the account instead of adding a second owner"
    )]
    AccountAlreadyOwned {
        /// The account.
        account: AccountId,
        /// Its current owner.
        owner: StaffId,
    },

    /// Associates support accounts; owning one takes a manager or above.
    #[error(
        "{0} is an associate: associates support accounts, owners must be a manager, director or VP"
    )]
    AssociateCannotOwn(StaffId),

    /// Reassigning to the current owner changes nothing.
    #[error("{staff} already owns {account}")]
    AlreadyOwner {
        /// The account.
        account: AccountId,
        /// Its owner.
        staff: StaffId,
    },

    /// The staff member already holds that role on the account.
    #[error("{staff} is already assigned to {account} as {role}")]
    AlreadyAssigned {
        /// The account.
        account: AccountId,
        /// The staff member.
        staff: StaffId,
        /// The role they hold.
        role: Role,
    },

    /// There is no such current assignment to end.
    #[error("{staff} is not currently assigned to {account} as {role}")]
    NotAssigned {
        /// The account.
        account: AccountId,
        /// The staff member.
        staff: StaffId,
        /// The role asked about.
        role: Role,
    },

    /// Accounts need an owner at all times, so the owner row cannot simply be ended.
    #[error("{0} must always have an owner: reassign it to someone else instead")]
    OwnerRequired(AccountId),

    /// An event kind was malformed.
    #[error("`{input}` is not a valid event kind: {reason}")]
    InvalidEventKind {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A connector id was malformed.
    #[error(
        "`{0}` is not a valid connector id: use 1 to 64 lower-case letters, digits, `-` or `_` (for one person's connection, followed by `:` and their staff id)"
    )]
    InvalidConnectorId(String),
}
