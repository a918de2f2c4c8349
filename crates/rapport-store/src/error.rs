//! Store errors: a domain rule refused the change, the database could not be reached,
//! or it answered with something this build cannot read.

use rapport_core::DomainError;

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A domain rule refused the change; nothing was written.
    #[error(transparent)]
    Domain(#[from] DomainError),

    /// The database URL could not be understood.
    #[error("database URL `{url}` is not usable: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No connector with this id has been registered.
    #[error("there is no connector `{0}`: check the id against `[[connector]]` in rapport.toml")]
    UnknownConnector(String),

    /// This node's lease on a connector lapsed or was taken over; nothing was written.
    #[error(
        "this node no longer holds the lease on connector `{0}`; another node continues its sync"
    )]
    LeaseLost(String),

    /// The database could not be opened or reached.
    #[error("cannot connect to {what}: {reason}")]
    Connect {
        /// Which database, e.g. `PostgreSQL at db:5432 (database `rapport`)`.
        what: String,
        /// Why, in the driver's words, e.g. `connection refused`.
        reason: String,
    },

    /// A command that only reads found a database this build must first migrate.
    #[error(
        "the database at `{url}` is at schema version {version}, and this build needs {latest}: run `rapport migrate --database {url}` (or start `rapport serve`) first"
    )]
    SchemaBehind {
        /// The URL, password redacted.
        url: String,
        /// Its newest applied migration (0 when it has none).
        version: i64,
        /// What this build migrates to.
        latest: i64,
    },

    /// The database has migrations this build does not know: it was written by a newer
    /// rapport. Refusing protects it from being read or written with an older schema.
    #[error(
        "the database schema (migration {0}) is newer than this build of rapport: upgrade rapport, or point it at another database"
    )]
    SchemaTooNew(i64),

    /// An applied migration's file differs from what was applied.
    #[error(
        "migration {0} was changed after it was applied: restore the original file; fix schemas with a new migration instead"
    )]
    MigrationChanged(i64),

    /// A migration failed to apply.
    #[error("migrating the database failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// Another writer changed the same record at the same moment; retrying is safe.
    #[error("another change to {0} was committed at the same time: retry the request")]
    Conflict(String),

    /// The person's connection whose events these are was disconnected; nothing was
    /// written.
    #[error(
        "the connection `{0}` was disconnected by its owner or an admin: its events are no longer stored until it is connected again"
    )]
    ConnectionClosed(String),

    /// A stored value could not be read back into the domain model.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),

    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    pub(crate) fn from_migrate(error: sqlx::migrate::MigrateError) -> Error {
        use sqlx::migrate::MigrateError;
        match error {
            MigrateError::VersionMissing(version) => Error::SchemaTooNew(version),
            MigrateError::VersionMismatch(version) => Error::MigrationChanged(version),
            other => Error::Migrate(other),
        }
    }

    /// Whether the database refused a write because of a unique index.
    pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
        error
            .as_database_error()
            .is_some_and(|db| db.is_unique_violation())
    }
}

/// Turns a stored text value back into a domain value, reporting corruption clearly.
pub(crate) fn decode<T>(
    what: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, DomainError>,
) -> Result<T> {
    parse(value).map_err(|error| Error::Corrupt(format!("{what} `{value}`: {error}")))
}
