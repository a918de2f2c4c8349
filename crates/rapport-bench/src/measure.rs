//! Timing and the tables the benchmarks print (Markdown, so a run pastes straight into
//! BENCHMARKS.md).

use std::future::Future;
use std::time::{Duration, Instant};

/// The spread of repeated timings of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The median.
    pub median: Duration,
    /// The 95th percentile.
    pub p95: Duration,
}

/// Runs `operation` `warmup` times untimed, then `runs` times timed.
pub async fn repeat<F, Fut, T>(warmup: usize, runs: usize, mut operation: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    for _ in 0..warmup {
        std::hint::black_box(operation().await);
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        std::hint::black_box(operation().await);
        times.push(started.elapsed());
    }
    times.sort();
    Timing {
        median: times[times.len() / 2],
        p95: times[(times.len() * 95 / 100).min(times.len() - 1)],
    }
}

/// A duration in the unit that reads best.
pub fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A Markdown table of measurements, each beside the peer it is compared with.
#[derive(Debug)]
pub struct Table {
    title: String,
    rows: Vec<[String; 4]>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// A read timed against its peer: medians, p95s and how many times slower.
    pub fn read(&mut self, what: &str, timing: Timing, peer_name: &str, peer: Timing) {
        self.rows.push([
            what.to_owned(),
            format!("{} (p95 {})", show(timing.median), show(timing.p95)),
            format!(
                "{peer_name}: {} (p95 {})",
                show(peer.median),
                show(peer.p95)
            ),
            ratio(timing.median, peer.median),
        ]);
    }

    /// A bulk write of `events` timed against its peer writing the same events.
    pub fn write(
        &mut self,
        what: &str,
        elapsed: Duration,
        peer_name: &str,
        peer: Duration,
        events: u64,
    ) {
        let rate = |time: Duration| events as f64 / time.as_secs_f64();
        self.rows.push([
            what.to_owned(),
            format!(
                "{} — {} events/s",
                show(elapsed),
                count(rate(elapsed) as u64)
            ),
            format!(
                "{peer_name}: {} — {} events/s",
                show(peer),
                count(rate(peer) as u64)
            ),
            ratio(elapsed, peer),
        ]);
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("\n### {}\n", self.title);
        println!("| what | measured | peer (same run) | ratio |");
        println!("|---|---|---|---:|");
        for [what, measured, peer, ratio] in &self.rows {
            println!("| {what} | {measured} | {peer} | {ratio} |");
        }
    }
}

/// `time / peer` as "2.3×".
fn ratio(time: Duration, peer: Duration) -> String {
    let ratio = time.as_secs_f64() / peer.as_secs_f64().max(1e-9);
    if ratio < 0.1 {
        format!("{ratio:.3}×")
    } else {
        format!("{ratio:.2}×")
    }
}
