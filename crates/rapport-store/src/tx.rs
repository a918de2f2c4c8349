//! Checks shared by write transactions. They are macros rather than functions because
//! each expands inside a `with_backend!` body, on that backend's concrete connection.

/// Fails with `DomainError::UnknownAccount` unless `$account` exists; evaluates to
/// `Result<()>`.
macro_rules! require_account {
    ($conn:expr, $account:expr) => {{
        let account: rapport_core::AccountId = $account;
        let found: std::result::Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                .bind(account.0)
                .fetch_optional($conn)
                .await;
        match found {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err($crate::Error::from(
                rapport_core::DomainError::UnknownAccount(account),
            )),
            Err(error) => Err($crate::Error::from(error)),
        }
    }};
}
pub(crate) use require_account;

/// Loads one staff member; evaluates to `Result<Staff>`.
macro_rules! load_staff {
    ($conn:expr, $id:expr) => {{
        let id: rapport_core::StaffId = $id;
        let row: std::result::Result<Option<$crate::staff::StaffRow>, sqlx::Error> =
            sqlx::query_as(
                "SELECT id, name, email, level, reports_to, active, is_admin FROM staff WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional($conn)
            .await;
        match row {
            Ok(Some(row)) => row.into_staff(),
            Ok(None) => Err($crate::Error::from(rapport_core::DomainError::UnknownStaff(id))),
            Err(error) => Err($crate::Error::from(error)),
        }
    }};
}
pub(crate) use load_staff;
