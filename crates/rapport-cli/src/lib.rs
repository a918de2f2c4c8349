//! The `rapport` command line: argument definitions and what each subcommand does.
//!
//! `main.rs` only parses arguments and installs logging; everything else is here so
//! it can be driven in-process by tests. Output goes to the writer passed to [`run`].
//! This crate talks to the store through its public API only; it never writes SQL.

pub mod demo;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rapport_store::Store;
use std::io::Write;

/// The database `rapport demo` uses unless told otherwise.
pub const DEMO_DATABASE: &str = "sqlite://rapport-demo/rapport.db";

/// rapport: one timeline per client account, for the whole account team.
#[derive(Debug, Parser)]
#[command(name = "rapport", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Seed a realistic demo org into an embedded SQLite database and show it: who sees
    /// which accounts, and an account's unified timeline.
    Demo(DemoArgs),
    /// Create or upgrade the database schema, then report its version.
    Migrate(DatabaseArgs),
}

/// Where the database is.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://path/to/rapport.db` (created if missing) or
    /// `postgres://user@host/db`.
    #[arg(long, env = "RAPPORT_DATABASE")]
    pub database: String,
}

/// Options of `rapport demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Database URL to seed; a SQLite file is created (with its directory) if missing.
    #[arg(long, env = "RAPPORT_DATABASE", default_value = DEMO_DATABASE)]
    pub database: String,
    /// Delete an existing demo SQLite file first and seed from scratch.
    #[arg(long)]
    pub fresh: bool,
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&args, out).await,
        Command::Migrate(args) => migrate(&args, out).await,
    }
}

async fn migrate(args: &DatabaseArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let store = Store::connect(&args.database)
        .await
        .context("failed to open and migrate the database")?;
    let info = store
        .info()
        .await
        .context("failed to read the schema version")?;
    writeln!(
        out,
        "database is at schema version {} ({})",
        info.schema_version, info.dialect
    )?;
    store.close().await;
    Ok(())
}
