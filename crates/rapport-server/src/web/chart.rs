//! Small charts drawn on the server as inline SVG: no script, readable without colour
//! (each has a text title and description for screen readers), sized by CSS.

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const PAD_LEFT: f64 = 56.0;
const PAD_BOTTOM: f64 = 24.0;
const PAD_TOP: f64 = 12.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open(out: &mut String, id: &str, title: &str, description: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        escape(title),
        escape(description)
    );
}

fn axis_label(out: &mut String, x: f64, y: f64, anchor: &str, text: &str) {
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" class="axis">{}</text>"#,
        escape(text)
    );
}

/// The y axis both charts share: `top` at the top, 0 at the baseline, and the line.
fn y_axis(out: &mut String, top: &str) {
    let baseline = HEIGHT - PAD_BOTTOM;
    axis_label(out, PAD_LEFT - 6.0, PAD_TOP + 10.0, "end", top);
    axis_label(out, PAD_LEFT - 6.0, baseline, "end", "0");
    let _ = write!(
        out,
        r#"<line class="baseline" x1="{PAD_LEFT}" y1="{baseline:.1}" x2="{:.1}" y2="{baseline:.1}"/>"#,
        WIDTH - 8.0
    );
}

/// Bars, one per week, for event counts: `weeks` is (week start, count), oldest first.
pub(crate) fn weekly_bars(id: &str, weeks: &[(NaiveDate, i64)]) -> String {
    let total = weeks
        .iter()
        .fold(0i64, |total, (_, count)| total.saturating_add(*count));
    let max = weeks
        .iter()
        .map(|(_, count)| *count)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = String::new();
    let description = match (weeks.first(), weeks.last()) {
        (Some((first, _)), Some((last, _))) => format!(
            "{total} events in the {} weeks from {} to the week of {}; busiest week {} events.",
            weeks.len(),
            first.format("%-d %b %Y"),
            last.format("%-d %b %Y"),
            weeks.iter().map(|(_, c)| *c).max().unwrap_or(0)
        ),
        _ => "No weeks to show.".to_owned(),
    };
    open(&mut out, id, "Activity by week", &description);
    let plot_width = WIDTH - PAD_LEFT - 8.0;
    let plot_height = HEIGHT - PAD_BOTTOM - PAD_TOP;
    let slot = plot_width / weeks.len().max(1) as f64;
    y_axis(&mut out, &max.to_string());
    for (i, (week, count)) in weeks.iter().enumerate() {
        let height = plot_height * (*count as f64) / (max as f64);
        let x = PAD_LEFT + slot * i as f64 + slot * 0.15;
        let _ = write!(
            out,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}"><title>Week of {}: {count} events</title></rect>"#,
            PAD_TOP + plot_height - height,
            slot * 0.7,
            week.format("%-d %b")
        );
    }
    if let (Some((first, _)), Some((last, _))) = (weeks.first(), weeks.last()) {
        axis_label(
            &mut out,
            PAD_LEFT,
            HEIGHT - 6.0,
            "start",
            &first.format("%-d %b").to_string(),
        );
        axis_label(
            &mut out,
            WIDTH - 8.0,
            HEIGHT - 6.0,
            "end",
            &last.format("%-d %b").to_string(),
        );
    }
    out.push_str("</svg>");
    out
}

/// A step line of monthly revenue over time in one currency: `points` are (when it
/// changed, new MRR in minor units), oldest first; the line runs on to `now`.
pub(crate) fn mrr_steps(
    id: &str,
    currency: &str,
    points: &[(DateTime<Utc>, i64)],
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let unit = currency.to_uppercase();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        open(&mut out, id, "Monthly revenue", "No billing history.");
        out.push_str("</svg>");
        return out;
    };
    let description = format!(
        "Monthly revenue in {unit}: {} on {}, {} now, {} changes.",
        super::page::grouped(first.1 / 100),
        first.0.format("%-d %b %Y"),
        super::page::grouped(last.1 / 100),
        points.len()
    );
    open(
        &mut out,
        id,
        &format!("Monthly revenue ({unit})"),
        &description,
    );
    let start = first.0.timestamp() as f64;
    let end = (now.timestamp() as f64).max(start + 86_400.0);
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let plot_width = WIDTH - PAD_LEFT - 8.0;
    let plot_height = HEIGHT - PAD_BOTTOM - PAD_TOP;
    let x = |at: f64| PAD_LEFT + plot_width * (at - start) / (end - start);
    let y = |value: i64| PAD_TOP + plot_height - plot_height * value as f64 / max;
    y_axis(
        &mut out,
        &super::page::grouped((max / 100.0).round() as i64),
    );
    let mut path = format!("M{:.1},{:.1}", x(start), y(first.1));
    for window in points.windows(2) {
        let (at, value) = window[1];
        let _ = write!(path, " H{:.1} V{:.1}", x(at.timestamp() as f64), y(value));
    }
    let _ = write!(path, " H{:.1}", x(end));
    let _ = write!(out, r#"<path class="line" d="{path}"/>"#);
    for (at, value) in points {
        let _ = write!(
            out,
            r#"<circle class="dot" cx="{:.1}" cy="{:.1}" r="3"><title>{}: {} {}</title></circle>"#,
            x(at.timestamp() as f64),
            y(*value),
            at.format("%-d %b %Y"),
            escape(&unit),
            super::page::grouped(value / 100)
        );
    }
    axis_label(
        &mut out,
        PAD_LEFT,
        HEIGHT - 6.0,
        "start",
        &first.0.format("%b %Y").to_string(),
    );
    axis_label(
        &mut out,
        WIDTH - 8.0,
        HEIGHT - 6.0,
        "end",
        &now.format("%b %Y").to_string(),
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn bars_scale_to_the_busiest_week_and_describe_themselves() {
        let start = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let weeks: Vec<(NaiveDate, i64)> = (0..4)
            .map(|i| {
                (
                    start + chrono::Duration::days(7 * i),
                    [0, 4, 2, 8][i as usize],
                )
            })
            .collect();
        let svg = weekly_bars("a", &weeks);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("14 events in the 4 weeks"), "{svg}");
        assert!(
            svg.contains(r#"height="124.0""#),
            "the busiest bar is full height: {svg}"
        );
        assert!(svg.contains("Week of 12 Jan: 4 events"));
    }

    #[test]
    fn revenue_steps_run_to_now_and_escape_nothing_unsafe() {
        let at = |d| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap();
        let svg = mrr_steps("m", "usd<", &[(at(1), 10_000), (at(11), 25_000)], at(21));
        assert!(svg.contains("USD&lt;"), "{svg}");
        assert!(!svg.contains("USD<"));
        assert!(svg.contains("100 on 1 Jan 2026, 250 now, 2 changes"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(mrr_steps("m", "usd", &[], at(2)).contains("No billing history"));
    }
}
