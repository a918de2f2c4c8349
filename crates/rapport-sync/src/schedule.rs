//! When a connector runs: every fixed interval (`every 5m`) or on a cron expression
//! (`*/15 * * * *`, evaluated in UTC).

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The shortest interval a schedule may ask for: a connector polled more often would
/// mostly measure its own overhead (on-demand runs are always available).
pub const INTERVAL_MIN: Duration = Duration::from_secs(10);

/// A connector's schedule.
#[derive(Clone)]
pub enum Schedule {
    /// A fixed interval after the previous run finished.
    Every(Duration),
    /// A cron expression (five fields, or six with seconds), in UTC.
    Cron(Box<croner::Cron>, String),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(interval) => write!(f, "every {}", format_interval(*interval)),
            Schedule::Cron(_, spelled) => f.write_str(spelled),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Why a schedule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{spelled}` is not valid: {reason}")]
pub struct ScheduleError {
    /// What was written.
    pub spelled: String,
    /// What to fix.
    pub reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Reads `every <n><unit>` (units `s`, `m`, `h`, `d`; e.g. `every 90s`,
    /// `every 5m`, `every 1h`) or a cron expression.
    fn from_str(spelled: &str) -> Result<Schedule, ScheduleError> {
        let error = |reason: String| ScheduleError {
            spelled: spelled.to_owned(),
            reason,
        };
        let trimmed = spelled.trim();
        if let Some(interval) = trimmed.strip_prefix("every ") {
            let interval = parse_interval(interval.trim()).map_err(error)?;
            if interval < INTERVAL_MIN {
                return Err(error(format!(
                    "the shortest interval is {}; use `rapport sync <connector>` for an immediate run",
                    format_interval(INTERVAL_MIN)
                )));
            }
            return Ok(Schedule::Every(interval));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(trimmed)
            .map_err(|cron_error| {
                error(format!(
                    "{cron_error}; write an interval such as `every 5m`, or a cron expression such as `*/15 * * * *`"
                ))
            })?;
        Ok(Schedule::Cron(Box::new(cron), trimmed.to_owned()))
    }
}

impl Schedule {
    /// When to run next, for a run that finished at `finished`.
    pub fn next_after(&self, finished: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(interval) => {
                finished + chrono::Duration::from_std(*interval).unwrap_or(chrono::Duration::MAX)
            }
            Schedule::Cron(cron, _) => cron
                .find_next_occurrence(&finished, false)
                // A pattern with no future occurrence (e.g. a past year) never runs
                // again by schedule; on-demand runs still work.
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// Reads a duration written as a whole number and a unit: `90s`, `5m`, `1h`, `2d`
/// (also `500ms`). The error says what to write.
pub fn parse_duration(spelled: &str) -> Result<Duration, String> {
    if let Some(millis) = spelled.trim().strip_suffix("ms") {
        return millis
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                format!("`{spelled}` must be a whole number of milliseconds, e.g. `500ms`")
            });
    }
    parse_interval(spelled.trim())
}

fn parse_interval(spelled: &str) -> Result<Duration, String> {
    let split = spelled
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{spelled}` has no unit: write e.g. `5m` (s, m, h or d)"))?;
    let (number, unit) = spelled.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{spelled}` must start with a whole number, e.g. `5m`"))?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unit `{other}` is not one of s, m, h, d (e.g. `every 5m`)"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{spelled}` is too long"))
}

fn format_interval(interval: Duration) -> String {
    let seconds = interval.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn intervals_and_cron_expressions() {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 10, 7, 30).unwrap();
        let every: Schedule = "every 5m".parse().unwrap();
        assert_eq!(every.next_after(at), at + chrono::Duration::minutes(5));
        assert_eq!(every.to_string(), "every 5m");
        assert_eq!(
            "every 90s".parse::<Schedule>().unwrap().to_string(),
            "every 90s"
        );
        let cron: Schedule = "*/15 * * * *".parse().unwrap();
        assert_eq!(
            cron.next_after(at),
            Utc.with_ymd_and_hms(2026, 1, 5, 10, 15, 0).unwrap()
        );
        let nightly: Schedule = "0 2 * * *".parse().unwrap();
        assert_eq!(
            nightly.next_after(at),
            Utc.with_ymd_and_hms(2026, 1, 6, 2, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        for (spelled, expected) in [
            ("every 5", "has no unit"),
            ("every 5 minutes", "unit `minutes` is not one of s, m, h, d"),
            ("every 1s", "the shortest interval is 10s"),
            ("every many", "must start with a whole number"),
            ("61 * * * *", "write an interval such as `every 5m`"),
            ("hourly-ish", "or a cron expression"),
        ] {
            let error = spelled.parse::<Schedule>().unwrap_err().to_string();
            assert!(error.contains(expected), "{spelled}: {error}");
        }
    }
}
