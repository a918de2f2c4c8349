//! Typed identifiers. Each is a database row id; the newtype keeps a staff id from ever
//! being passed where an account id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A member of staff (associate, manager, director or VP).
    StaffId,
    "staff #"
);
id_type!(
    /// A client account.
    AccountId,
    "account #"
);
id_type!(
    /// One row of assignment history.
    AssignmentId,
    "assignment #"
);
id_type!(
    /// A stored timeline event.
    EventId,
    "event #"
);
