//! Whether this node can write to its database: what `/readyz` reports. A write that
//! fails because of the storage itself (a full disk, an I/O error, a read-only file or
//! standby) is remembered until a write of data (a page, a batch of events) succeeds
//! again, or for [`WRITE_FAILURE_MEMORY`] without one being tried; a small probe write
//! tells the rest.

use crate::time::to_us;
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a storage failure keeps the node unready when no write has been tried
/// since (a connector backing off, say). A successful write clears it at once.
pub const WRITE_FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// The last storage failure of this store's writes, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failure: Mutex<Option<(Instant, DateTime<Utc>, String)>>,
}

/// Why the store cannot write, as `/readyz` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// When the failure was seen.
    pub at: DateTime<Utc>,
    /// What the database said.
    pub message: String,
}

impl Store {
    /// Remembers a storage failure of a write; a success clears it only when
    /// `clears` — for the writes that carry data (pages, batches). A small bookkeeping
    /// write (a lease, a status record) can succeed on a disk too full for a page, and
    /// must not make the node look healthy.
    pub(crate) fn observe_write<T>(&self, result: &Result<T>, clears: bool) {
        let mut failure = self
            .health
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) if clears => *failure = None,
            Ok(_) => {}
            Err(error) if error.is_storage_failure() => {
                *failure = Some((Instant::now(), Utc::now(), error.to_string()));
            }
            Err(_) => {}
        }
    }

    /// A storage failure of a recent write that no write has succeeded since.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        let failure = self
            .health
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failure
            .as_ref()
            .filter(|(seen, _, _)| seen.elapsed() < WRITE_FAILURE_MEMORY)
            .map(|(_, at, message)| WriteFailure {
                at: *at,
                message: message.clone(),
            })
    }

    /// Writes one small row, to tell whether the database takes writes at all now.
    pub async fn probe_write(&self) -> Result<()> {
        let at_us = to_us(Utc::now());
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            sqlx::query("UPDATE write_probe SET at_us = $1 WHERE id = 1")
                .bind(at_us)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

impl Error {
    /// Whether the failure lies in the storage itself — the disk is full, an I/O
    /// error, a read-only file or server, the database unreachable — rather than in
    /// what was written.
    pub fn is_storage_failure(&self) -> bool {
        let sqlx_error = match self {
            Error::Database(error) => error,
            Error::Connect { .. } => return true,
            _ => return false,
        };
        match sqlx_error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(database) => {
                let code = database.code().unwrap_or_default();
                // SQLite reports its result code (primary or extended) as a number:
                // IOERR 10, READONLY 8, CORRUPT 11, FULL 13, CANTOPEN 14, PROTOCOL 15,
                // NOTADB 26. PostgreSQL reports an SQLSTATE: class 53 (insufficient
                // resources: disk full, out of memory), 58 (system error: I/O), 25006
                // (a read-only transaction, as on a standby).
                match code.parse::<i64>() {
                    Ok(number) if code.len() < 5 => {
                        matches!(number & 0xff, 8 | 10 | 11 | 13 | 14 | 15 | 26)
                    }
                    _ => code.starts_with("53") || code.starts_with("58") || code == "25006",
                }
            }
            _ => false,
        }
    }
}
