//! `rapport signin` and `rapport password`: getting people into the web UI.

use crate::tokens::{open, staff_by_email};
use crate::{PasswordArgs, SigninArgs};
use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use rapport_core::password;
use rapport_server::SIGN_IN_LINK_MINUTES;
use std::io::{BufRead, Write};

/// Prints a one-time sign-in link.
pub(crate) async fn link(args: &SigninArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let base = match (&args.url, args.database.config_file()?) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(config)) => served_at(rapport_server::Config::essentials(config)?.listen),
        (None, None) => "http://127.0.0.1:8080".to_owned(),
    };
    let base = base.as_str();
    let parsed = url::Url::parse(base)
        .with_context(|| format!("--url `{base}` is not a URL like http://rapport.example.com"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url `{base}` must start with http:// or https://");
    }
    let store = open(&args.database.url()?).await?;
    let staff = staff_by_email(&store, &args.email).await?;
    if !staff.active {
        bail!("{} has been deactivated, so cannot sign in", staff.email);
    }
    let now = Utc::now();
    let secret = store
        .create_sign_in_link(staff.id, now + Duration::minutes(SIGN_IN_LINK_MINUTES), now)
        .await?;
    store.close().await;
    writeln!(
        out,
        "Sign-in link for {} ({}), works once in the next {SIGN_IN_LINK_MINUTES} minutes:",
        staff.name, staff.email
    )?;
    writeln!(out, "{base}/signin/{secret}")?;
    Ok(())
}

/// The URL of a server listening on `listen`, as reached from this machine: a wildcard
/// address (`0.0.0.0`, `::`) is reached on loopback.
fn served_at(listen: std::net::SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

/// Sets (or removes) a password read from the first line of `input`.
pub(crate) async fn password(
    args: &PasswordArgs,
    input: &mut dyn BufRead,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let store = open(&args.database.url()?).await?;
    let staff = staff_by_email(&store, &args.email).await?;
    let stored = if args.remove {
        None
    } else {
        let mut line = String::new();
        input
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let chosen = line.trim_end_matches(['\r', '\n']);
        if chosen.is_empty() {
            bail!(
                "no password on stdin: pipe one in, e.g. `read -rs PW && printf '%s\\n' \"$PW\" | rapport password {}`",
                staff.email
            );
        }
        Some(password::hash(chosen)?)
    };
    store
        .set_password_hash(staff.id, stored.as_deref(), Utc::now())
        .await?;
    store.close().await;
    match stored {
        Some(_) => writeln!(
            out,
            "Password set for {} ({}); they were signed out everywhere.",
            staff.name, staff.email
        )?,
        None => writeln!(
            out,
            "Password removed for {} ({}); they sign in with a link from `rapport signin`.",
            staff.name, staff.email
        )?,
    }
    Ok(())
}
