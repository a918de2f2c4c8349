//! Reading back rows that may not decode. A value written by an older build, or changed
//! by hand, must cost only its own field: the row is shown with what could be read and
//! marked unreadable, and never fails the page, feed or report it is on.

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

/// A column that decodes to `T`, or to why it did not.
#[derive(Debug)]
pub(crate) struct Lenient<T>(pub(crate) Result<T, String>);

impl<'r, DB: Database, T: Decode<'r, DB>> Decode<'r, DB> for Lenient<T> {
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Lenient(T::decode(value).map_err(|error| error.to_string())))
    }
}

impl<DB: Database, T: Type<DB>> Type<DB> for Lenient<T> {
    fn type_info() -> DB::TypeInfo {
        T::type_info()
    }

    /// Whatever the column holds is handed to `decode`, which records a mismatch as
    /// this field's failure instead of failing the row.
    fn compatible(_ty: &DB::TypeInfo) -> bool {
        true
    }
}

impl<T> Lenient<T> {
    /// The decoded value mapped, the failure kept.
    pub(crate) fn map_ok<U>(self, f: impl FnOnce(T) -> U) -> Lenient<U> {
        Lenient(self.0.map(f))
    }
}

/// The reasons a row's fields could not be read, joined for the `unreadable` mark.
#[derive(Debug, Default)]
pub(crate) struct Unreadable(Vec<String>);

impl Unreadable {
    /// `field`'s value, or `fallback` with the failure noted.
    pub(crate) fn take<T>(&mut self, field: &str, value: Lenient<T>, fallback: T) -> T {
        match value.0 {
            Ok(value) => value,
            Err(error) => {
                self.note(field, &error);
                fallback
            }
        }
    }

    /// Notes that `field` could not be read, and why.
    pub(crate) fn note(&mut self, field: &str, error: &str) {
        self.0.push(format!("{field}: {error}"));
    }

    /// `None` when everything was read, else what was not.
    pub(crate) fn finish(self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.join("; "))
    }
}
