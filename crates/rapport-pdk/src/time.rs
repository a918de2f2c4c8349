//! Instants as the contract carries them: microseconds since the Unix epoch, UTC.

use crate::{ConnectorError, Timestamp};
use chrono::DateTime;

/// Parses an RFC 3339 timestamp such as `2026-03-01T12:00:00Z` or with an offset.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, ConnectorError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.timestamp_micros())
        .map_err(|error| {
            ConnectorError::Fatal(format!("`{text}` is not an RFC 3339 time: {error}"))
        })
}

/// Converts Unix seconds (as Stripe and many APIs send them).
pub fn from_unix_seconds(seconds: i64) -> Timestamp {
    seconds.saturating_mul(1_000_000)
}

/// Converts Unix milliseconds.
pub fn from_unix_millis(millis: i64) -> Timestamp {
    millis.saturating_mul(1_000)
}

/// The UTC calendar date of an instant, as `2026-03-01`, for titles and summaries.
pub fn date(at: Timestamp) -> String {
    DateTime::from_timestamp_micros(at)
        .map(|at| at.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("{at} µs after the epoch"))
}

/// An instant as RFC 3339 in UTC with seconds, `2026-03-01T12:00:00Z`, as APIs take
/// it in queries.
pub fn rfc3339(at: Timestamp) -> String {
    DateTime::from_timestamp_micros(at)
        .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The current time, from the WASI wall clock.
pub fn now() -> Timestamp {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_converts() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:01+01:00").unwrap(),
            1_000_000
        );
        assert_eq!(from_unix_seconds(2), 2_000_000);
        assert_eq!(from_unix_millis(2), 2_000);
        assert_eq!(date(from_unix_seconds(1_772_366_400)), "2026-03-01");
        assert!(format!("{:?}", parse_rfc3339("yesterday").unwrap_err()).contains("yesterday"));
    }
}
