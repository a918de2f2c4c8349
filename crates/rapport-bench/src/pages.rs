//! `rapport-bench pages`: the pages that score a whole book — the book (`/`), Team
//! (`/team`) and the attention list (`/api/v1/attention`) — as a manager (one book
//! of 50 accounts) and the VP (every account) see them, through a real `rapport serve`
//! on a database `scale --keep` left.
//!
//! Everything goes through the server binary under test (`--rapport`, default the one
//! beside this benchmark): `rapport migrate`, then `rapport token create` and
//! `rapport signin` for the two viewers, so the same command measures a build from
//! before a change and one from after it on the same database, without this binary
//! ever opening (or migrating) the database itself.

use crate::measure::{repeat, show};
use crate::serve::{self, Serve};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What `pages` measures on.
#[derive(Debug, Clone)]
pub struct PagesOptions {
    /// The database `scale` made (`sqlite://...` or `postgres://...`).
    pub database: String,
    /// The `rapport` binary to serve with (default: the one beside this benchmark).
    pub rapport: Option<PathBuf>,
    /// Timed requests per page.
    pub runs: usize,
}

/// The two viewers `scale`'s org has: its first manager (50 accounts) and the VP.
const VIEWERS: [(&str, &str); 2] = [
    ("manager (50 accounts)", "manager0@rapport.example"),
    ("VP (every account)", "vp@rapport.example"),
];

/// Runs the benchmark.
pub async fn run(options: PagesOptions) -> Result<()> {
    let rapport = match &options.rapport {
        Some(path) => path.clone(),
        None => serve::rapport_binary()?,
    };
    let database = options.database.as_str();

    // A build that adds a migration does its one-time work here, not in a timed page.
    let started = Instant::now();
    cli(&rapport, &["migrate", "--database", database])?;
    println!(
        "\n`rapport migrate` on the database: {}",
        show(started.elapsed())
    );

    let dir = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let port = serve::free_port()?;
    let address = format!("127.0.0.1:{port}");
    let config = serve::write_config(
        dir.path(),
        &format!("listen = \"{address}\"\ndatabase = \"{database}\""),
        "",
        cache.path(),
        "bench",
        &[],
    )?;
    let _server = Serve::start(&rapport, &config, "pages-bench")?;
    serve::wait_ready(&address).await?;

    println!("\n| viewer | page | status | p50 | p95 |");
    println!("|---|---|---:|---:|---:|");
    for (label, email) in VIEWERS {
        let token = issued(
            &cli(
                &rapport,
                &[
                    "token",
                    "create",
                    "--staff",
                    email,
                    "--name",
                    "pages bench",
                    "--database",
                    database,
                ],
            )?,
            "rpt_",
        )?;
        let link = issued(
            &cli(
                &rapport,
                &[
                    "signin",
                    email,
                    "--url",
                    &format!("http://{address}"),
                    "--database",
                    database,
                ],
            )?,
            "http://",
        )?;
        let path = link
            .strip_prefix(&format!("http://{address}"))
            .context("the sign-in link is on this server")?;
        let cookie = session_cookie(&address, path).await?;
        let pages = [
            ("book `/`", "/".to_owned(), format!("Cookie: {cookie}")),
            (
                "Team `/team`",
                "/team".to_owned(),
                format!("Cookie: {cookie}"),
            ),
            (
                "`GET /api/v1/attention`",
                "/api/v1/attention?limit=20".to_owned(),
                format!("Authorization: Bearer {token}"),
            ),
        ];
        for (page, path, credential) in pages {
            let (status, _) = get(&address, &credential, &path).await?;
            let timing = repeat(2, options.runs, || async {
                get(&address, &credential, &path)
                    .await
                    .map(|(status, _)| status)
            })
            .await;
            println!(
                "| {label} | {page} | {status} | {} | {} |",
                show(timing.median),
                show(timing.p95)
            );
        }
    }
    Ok(())
}

/// Runs `rapport args...` and returns what it printed, failing with what it said.
fn cli(rapport: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(rapport)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("running {}", rapport.display()))?;
    if !output.status.success() {
        bail!(
            "`rapport {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The word of `printed` that starts with `prefix` (a token, a link).
fn issued(printed: &str, prefix: &str) -> Result<String> {
    printed
        .split_whitespace()
        .find(|word| word.starts_with(prefix))
        .map(str::to_owned)
        .with_context(|| format!("no `{prefix}...` in {printed:?}"))
}

/// Follows a sign-in link and returns the session cookie it sets (`name=value`).
async fn session_cookie(address: &str, path: &str) -> Result<String> {
    let (status, head) = request(address, "", path).await?;
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .with_context(|| format!("GET {path} ({status}) set no cookie"))
}

/// A bare HTTP/1.1 GET with one header line (loopback only): the status and the body.
async fn get(address: &str, header: &str, path: &str) -> Result<(u16, usize)> {
    let (status, response) = request(address, header, path).await?;
    if status >= 500 {
        bail!("GET {path}: {status}");
    }
    Ok((status, response.len()))
}

/// Sends a GET with one header line (or none) and reads the whole response.
async fn request(address: &str, header: &str, path: &str) -> Result<(u16, String)> {
    let header = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    serve::request(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{header}Connection: close\r\n\r\n"),
    )
    .await
}
