//! The benchmark binary at a tiny size, so it keeps working between the runs that fill
//! BENCHMARKS.md: every table it prints must come out, with a ratio in each row. (Only
//! that it runs and reports; speed is never asserted in tests.)

use std::process::Command;

fn scale(extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rapport-bench"))
        .args([
            "scale",
            "--accounts",
            "60",
            "--events",
            "3000",
            "--heavy",
            "2",
        ])
        .args(["--heavy-events", "500"])
        .args(extra)
        .env_remove("RAPPORT_BENCH_DATABASE_URL")
        .output()
        .expect("run rapport-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "rapport-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn check_tables(stdout: &str, backend: &str) {
    for table in [
        "writes",
        "a heavy account's timeline",
        "feeds across a book",
    ] {
        assert!(
            stdout.contains(&format!("### {backend}")) && stdout.contains(table),
            "no `{table}` table for {backend} in:\n{stdout}"
        );
    }
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| what"))
        .collect();
    assert!(rows.len() >= 20, "too few rows:\n{stdout}");
    for row in rows {
        assert!(
            row.trim_end().ends_with("× |"),
            "a row without a ratio: {row}"
        );
    }
}

#[test]
fn scale_runs_on_sqlite() {
    check_tables(&scale(&[]), "SQLite");
}

#[test]
fn scale_runs_on_postgres() {
    let Some(url) = rapport_testkit::database::postgres_admin_url() else {
        return;
    };
    check_tables(
        &scale(&["--postgres", &url, "--postgres-only"]),
        "PostgreSQL",
    );
}
