//! The `rapport` command line: argument definitions and what each subcommand does.
//!
//! `main.rs` only parses arguments and installs logging; everything else is here so
//! it can be driven in-process by tests. Output goes to the writer passed to [`run`].
//! This crate talks to the store through its public API only; it never writes SQL.

pub mod demo;
mod import;
mod plugins;
mod progress;
mod sample_activity;
mod scaffold;
mod secrets;
mod signin;
mod timeline;
mod tokens;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rapport_server::{Config, Server};
use rapport_store::Store;
use rapport_sync::{Next, RunOutcome};
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
    /// Run a node: the sync engine on every enabled connector's schedule, and the HTTP
    /// server (the JSON API under /api/v1 with its document at /api/openapi.json,
    /// webhooks at /hooks/<connector>, /healthz, /readyz, /metrics). Stops on SIGTERM or
    /// ctrl-c after in-flight work reaches a safe point.
    Serve(ConfigArgs),
    /// Run one connector now, until it has nothing more, showing each committed page.
    Sync(SyncArgs),
    /// Show each connector's status (state, last success, last error, next run, events,
    /// lag) and what waits in the unmatched inbox.
    Status(StatusArgs),
    /// Check a configuration file (and the plugins it names) without starting anything.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with configured connectors.
    Connector {
        /// What to do.
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Show an account's unified timeline, newest first: every source interleaved by
    /// time.
    Timeline(TimelineArgs),
    /// Work with connector plugins (WebAssembly components).
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Import staff, accounts or contacts from a CSV file. Every row is checked first;
    /// if any is bad, all bad rows are listed by line and nothing is written. Rows
    /// already in the database are left as they are, so an import can be re-run.
    Import {
        /// What to import.
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print a one-time link that signs a member of staff in to the web UI (it works
    /// once, for 15 minutes).
    Signin(SigninArgs),
    /// Set a member of staff's web UI password, read from the first line of stdin
    /// (`--remove` takes it away); every browser they are signed in on is signed out.
    Password(PasswordArgs),
    /// Issue, list and revoke staff API tokens (`Authorization: Bearer rpt_...`).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The key ring that seals connection tokens at rest (`RAPPORT_SECRET_KEY` or
    /// `RAPPORT_SECRET_KEY_FILE`): make a key, see what the stored tokens need, rotate.
    Secrets {
        /// What to do.
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// List and revoke connections: the credentials connectors run with, the
    /// organisation's or one person's.
    Connection {
        /// What to do.
        #[command(subcommand)]
        command: ConnectionCommand,
    },
}

/// `rapport secrets` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a new random key ring entry (`<id>:<base64 key>`). Put it first in the
    /// key ring to make it the primary key; keep the old entries after it until
    /// `rotate` has re-sealed everything.
    GenerateKey {
        /// The key's id (default: today's date).
        #[arg(long)]
        id: Option<String>,
    },
    /// Show the configured key ring and how many stored tokens each key sealed; fails
    /// when some need a key the ring lacks.
    Status {
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Re-seal every stored token under the key ring's primary key.
    Rotate {
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `rapport connection` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// List connections: connector, owner, status, when their tokens were refreshed.
    List {
        /// Only this staff member's connections (by work email).
        #[arg(long)]
        staff: Option<String>,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh a connection's tokens now (checks its grant is still good): needs the
    /// deployment's configuration, for the provider and the key ring.
    Refresh {
        /// The connection's id (from `rapport connection list`).
        id: i64,
        /// The deployment's configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a connection by id: its tokens are deleted.
    Revoke {
        /// The connection's id (from `rapport connection list`).
        id: i64,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `rapport plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin as the server would and report its contract version, what it is,
    /// the events it emits, the settings and secrets it takes and the hosts it needs.
    Check(PluginCheckArgs),
    /// Start a new connector: a Rust crate that builds for wasm32-wasip2 with
    /// rapport-pdk, recorded fixtures, and a README saying how to build, test and enable
    /// it.
    New(PluginNewArgs),
    /// Run a connector against recorded HTTP responses (a fixtures directory) instead of
    /// its real upstream, page by page, and print the events it emits.
    Test(PluginTestArgs),
    /// List the connectors that ship inside rapport (`plugin = "builtin:<name>"`).
    List,
    /// Write a built-in connector out as a `.wasm` file, to inspect or adapt.
    Export(PluginExportArgs),
}

/// Options of `rapport plugin export`.
#[derive(Debug, Args)]
pub struct PluginExportArgs {
    /// The built-in connector, e.g. `billing-stripe` (or `builtin:billing-stripe`).
    pub name: String,
    /// Where to write it (default: `./<name>.wasm`); must not exist yet.
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
}

/// Options of `rapport plugin new`.
#[derive(Debug, Args)]
pub struct PluginNewArgs {
    /// Its name: lower-case letters, digits and `-`, starting with a letter
    /// (e.g. `acme-crm`).
    pub name: String,
    /// Where to create it (default: `./<name>`); must not exist yet.
    #[arg(long)]
    pub path: Option<std::path::PathBuf>,
    /// The rapport-pdk crate to build against (default: found by looking up from here
    /// for `crates/rapport-pdk`, as in a checkout of rapport).
    #[arg(long)]
    pub pdk: Option<std::path::PathBuf>,
}

/// Options of `rapport plugin test`.
#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The component to run: a `.wasm` file, or `builtin:<name>`.
    pub plugin: String,
    /// A directory of recorded responses, one JSON file each:
    /// `{"request": {"method", "path", "query"}, "response": {"status", "headers", "body"}}`.
    #[arg(long)]
    pub fixtures: std::path::PathBuf,
    /// A setting, `name=value`; `{upstream}` in a value becomes the fixtures server's
    /// URL. `base_url` defaults to that URL when the plugin takes one.
    #[arg(long = "setting", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// A secret, `name=value` (for tests only: real secrets come from the environment).
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// Start from this checkpoint instead of the beginning.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Stop after this many pages.
    #[arg(long, default_value_t = 20)]
    pub pages: u32,
    /// Print the events as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `rapport plugin check`.
#[derive(Debug, Args)]
pub struct PluginCheckArgs {
    /// The component: a `.wasm` file (e.g. `acme-crm.wasm`), or a connector rapport
    /// ships (e.g. `builtin:billing-stripe`; see `rapport plugin list`).
    pub plugin: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rapport import` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Staff: columns `name,email,level` and optional `manager_email,admin`
    /// (level is associate, manager, director or vp; a manager may be in the same file).
    Staff(ImportArgs),
    /// Client accounts: columns `name,owner_email` and optional
    /// `parent,domains,external_ids,lifecycle,renewal_date` (lists separated by `;`;
    /// external ids as `system:id`; a parent, by name, may be in the same file).
    Accounts(ImportArgs),
    /// Contacts at clients: columns `account,email` and optional `name,title`
    /// (the account by its exact name).
    Contacts(ImportArgs),
}

/// Options of `rapport import ...`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file (UTF-8, with a header row).
    pub file: std::path::PathBuf,
    /// Check every row and say what would be added, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Options of `rapport signin`.
#[derive(Debug, Args)]
pub struct SigninArgs {
    /// Their work email.
    pub email: String,
    /// Where people reach the server (the link starts with it). Default: the
    /// configuration's listen address, else `http://127.0.0.1:8080`.
    #[arg(long, env = "RAPPORT_URL")]
    pub url: Option<String>,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Options of `rapport password`.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Their work email.
    pub email: String,
    /// Take the password away (sign-in links still work).
    #[arg(long)]
    pub remove: bool,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `rapport token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token acting as a member of staff; it is printed once, never stored.
    Create(TokenCreateArgs),
    /// List tokens (their ids, names and first characters, never the tokens).
    List(TokenListArgs),
    /// Revoke a token by id; it stops working at once.
    Revoke(TokenRevokeArgs),
}

/// Options of `rapport token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The work email of the staff member it acts as.
    #[arg(long)]
    pub staff: String,
    /// What it is for, e.g. "weekly report script".
    #[arg(long)]
    pub name: String,
    /// Let it expire after this long: `90d`, `12h`, ... (default: never).
    #[arg(long)]
    pub expires_in: Option<String>,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Options of `rapport token list`.
#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Only this staff member's tokens (by work email).
    #[arg(long)]
    pub staff: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Options of `rapport token revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id, as `rapport token list` shows it.
    pub id: i64,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `rapport config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Report every problem in the file with file:line:column, or that it is valid.
    Check(ConfigCheckArgs),
}

/// Options of `rapport config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also run each enabled connector's own check (its settings and credentials,
    /// e.g. one cheap request to its upstream). Touches no database.
    #[arg(long)]
    pub online: bool,
}

/// `rapport connector` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Run a connector's own check now (settings and credentials, e.g. one cheap
    /// request to its upstream) and record the result on its status.
    Check(SyncArgs),
}

/// Where the configuration is.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (see rapport.example.toml).
    #[arg(long, env = "RAPPORT_CONFIG", default_value = "rapport.toml")]
    pub config: std::path::PathBuf,
}

/// Options of `rapport status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Read this database instead of the configuration's (then no configuration
    /// file is needed).
    #[arg(long)]
    pub database: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `rapport sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The connector's id, as in its [[connector]] entry.
    pub connector: String,
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Where the database is.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://path/to/rapport.db` (created if missing) or
    /// `postgres://user@host/db`.
    #[arg(long, env = "RAPPORT_DATABASE")]
    pub database: Option<String>,
    /// Or the deployment's configuration, whose `[server] database` is used when
    /// --database is not given (default: `rapport.toml` here, if there is one).
    #[arg(long = "config", env = "RAPPORT_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl DatabaseArgs {
    /// The database these options name.
    pub fn url(&self) -> anyhow::Result<String> {
        match (&self.database, self.config_file()?) {
            (Some(database), _) => Ok(database.clone()),
            (None, Some(config)) => Ok(Config::essentials(config)?.database),
            (None, None) => anyhow::bail!(
                "which database? Pass --database sqlite://rapport.db (or postgres://...), or --config with the deployment's rapport.toml"
            ),
        }
    }

    /// The configuration file in play: --config, else `rapport.toml` here if there is
    /// one, unless --database names the database directly.
    pub fn config_file(&self) -> anyhow::Result<Option<&std::path::Path>> {
        if self.database.is_some() && self.config.is_none() {
            return Ok(None);
        }
        let here = std::path::Path::new("rapport.toml");
        Ok(match &self.config {
            Some(config) => Some(config.as_path()),
            None if here.is_file() => Some(here),
            None => None,
        })
    }
}

/// Options of `rapport timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The account: its id, or (part of) its name or a domain.
    pub account: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Also show its subsidiaries' events.
    #[arg(long)]
    pub children: bool,
    /// Only these connectors (repeat, or separate with commas; `rapport` for notes,
    /// tasks and handoffs).
    #[arg(long)]
    pub source: Vec<String>,
    /// Only kinds equal to or under this prefix, e.g. `billing` or `support.ticket`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events since this date (2026-11-01) or instant (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// How many events at most (1 to 10000).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Print the events as JSON instead.
    #[arg(long)]
    pub json: bool,
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
    /// Then serve the web UI and the API on the demo data, and print a one-time
    /// sign-in link (runs until ctrl-c or SIGTERM).
    #[arg(long)]
    pub serve: bool,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&args, out).await,
        Command::Migrate(args) => migrate(&args, out).await,
        Command::Serve(args) => serve(&args).await,
        Command::Sync(args) => sync(&args, out).await,
        Command::Status(args) => status(&args, out).await,
        Command::Config {
            command: ConfigCommand::Check(args),
        } => check_config(&args, out).await,
        Command::Connector {
            command: ConnectorCommand::Check(args),
        } => check_connector(&args, out).await,
        Command::Timeline(args) => timeline::run(&args, out).await,
        Command::Plugin { command } => match command {
            PluginCommand::Check(args) => plugins::check(&args, out).await,
            PluginCommand::New(args) => scaffold::new_connector(&args, out),
            PluginCommand::Test(args) => plugins::test(&args, out).await,
            PluginCommand::List => plugins::list(out),
            PluginCommand::Export(args) => plugins::export(&args, out),
        },
        Command::Token { command } => tokens::run(command, out).await,
        Command::Secrets { command } => secrets::run(command, out).await,
        Command::Connection { command } => secrets::connections(command, out).await,
        Command::Import { command } => import::run(command, out).await,
        Command::Signin(args) => signin::link(&args, out).await,
        Command::Password(args) => signin::password(&args, &mut std::io::stdin().lock(), out).await,
    }
}

async fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let server = Server::start(config).await?;
    // The server stops on SIGTERM or ctrl-c; nothing else asks it to.
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    server.serve(shutdown).await
}

async fn sync(args: &SyncArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let config = Config::load(&args.config.config)?;
    // `mailbox:42` is staff member 42's connection of the person-scoped `mailbox`.
    let configured = args
        .connector
        .split_once(':')
        .map_or(args.connector.as_str(), |(connector, _)| connector);
    if let Some(template) = config.connectors.iter().find(|connector| {
        connector.id == args.connector
            && connector.scope == rapport_plugin_host::ConnectionScope::Person
    }) {
        anyhow::bail!(
            "`{}` is synced per person: name one person's connection as `{}:<staff id>` (`rapport connection list` shows them)",
            template.id,
            template.id
        );
    }
    if !config
        .connectors
        .iter()
        .any(|connector| connector.id == configured)
    {
        let known: Vec<&str> = config
            .connectors
            .iter()
            .map(|connector| connector.id.as_str())
            .collect();
        anyhow::bail!(
            "there is no connector `{}` in {}; configured: {}",
            args.connector,
            args.config.config.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    let server = Server::start(config).await?;
    // Progress lines go straight to stdout as pages commit (the closure must be
    // shareable, `out` is not), with a running count on a terminal.
    let running = progress::Running::new(format!("syncing {}", args.connector));
    let print = |progress: rapport_sync::PageProgress<'_>| {
        let summary = &progress.commit.summary;
        let line = format!(
            "page {}: {} new, {} updated, {} unchanged, {} deleted, {} waiting for a match",
            progress.page,
            summary.inserted,
            summary.updated,
            summary.unchanged,
            progress.commit.deleted,
            progress.commit.waiting
        );
        running.line(
            &line,
            summary.inserted + summary.updated + summary.unchanged,
        );
    };
    let report = server.engine.run_now(&args.connector, &print).await;
    running.finish();
    let report = report?;
    writeln!(
        out,
        "{}: {} pages, {} new, {} updated, {} unchanged, {} deleted, {} waiting for a match",
        report.connector,
        report.pages,
        report.inserted,
        report.updated,
        report.unchanged,
        report.deleted,
        report.waiting
    )?;
    server.engine.store().close().await;
    match report.outcome {
        RunOutcome::Completed => Ok(()),
        RunOutcome::Yielded => {
            writeln!(
                out,
                "stopped at the per-run page cap; run it again to continue"
            )?;
            Ok(())
        }
        RunOutcome::Failed {
            kind,
            message,
            next,
        } => anyhow::bail!(
            "connector `{}` failed ({}): {message}{}",
            report.connector,
            kind.as_str(),
            match next {
                Next::Stop => " — it stays stopped until its configuration changes".to_owned(),
                Next::RetryAt(at) => format!(" — a server would retry at {}", at.to_rfc3339()),
            }
        ),
        RunOutcome::LeaseLost => anyhow::bail!(
            "another node took over connector `{}` mid-run; it continues from the last committed page",
            report.connector
        ),
        RunOutcome::ShutDown => anyhow::bail!("interrupted"),
    }
}

async fn status(args: &StatusArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    // With --database no file is needed; with one, its connectors are marked configured.
    let config = match &args.database {
        Some(_) if !args.config.config.exists() => None,
        _ => Some(Config::load(&args.config.config)?),
    };
    let database = match (&args.database, &config) {
        (Some(database), _) => database.clone(),
        (None, Some(config)) => config.database.clone(),
        (None, None) => unreachable!("a configuration is loaded unless --database is given"),
    };
    let configured = |id: &str| {
        config
            .as_ref()
            .is_some_and(|config| config.connectors.iter().any(|connector| connector.id == id))
    };
    let store = tokens::open_existing(&database).await?;
    let statuses = store.connector_statuses().await?;
    let waiting = store.unmatched_counts().await?;
    store.close().await;
    let now = chrono::Utc::now();
    if args.json {
        let connectors: Vec<serde_json::Value> = statuses
            .iter()
            .map(|status| {
                let mut value = serde_json::to_value(status).expect("status serialises");
                value["lag_seconds"] = status
                    .lag(now)
                    .map_or(serde_json::Value::Null, |lag| lag.num_seconds().into());
                value["configured"] = configured(&status.connector).into();
                value
            })
            .collect();
        let inbox: serde_json::Map<String, serde_json::Value> = waiting
            .iter()
            .map(|(connector, count)| (connector.clone(), (*count).into()))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({ "connectors": connectors, "unmatched": inbox })
        )?;
        return Ok(());
    }
    if statuses.is_empty() {
        writeln!(
            out,
            "no connector has run yet; start `rapport serve` or run `rapport sync <id>`"
        )?;
    }
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(
            || "-".to_owned(),
            |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    writeln!(
        out,
        "{:<16} {:<12} {:<20} {:<20} {:>9} {:>8}  last error",
        "connector", "state", "last success", "next run", "events", "lag"
    )?;
    for status in &statuses {
        let lag = status.lag(now).map_or_else(
            || "-".to_owned(),
            |lag| {
                let seconds = lag.num_seconds().max(0);
                match seconds {
                    0..120 => format!("{seconds}s"),
                    120..7_200 => format!("{}m", seconds / 60),
                    _ => format!("{}h", seconds / 3_600),
                }
            },
        );
        let error = status.last_error.as_ref().map_or_else(
            || "-".to_owned(),
            |error| {
                format!(
                    "{} at {}: {}{}",
                    error.kind,
                    when(Some(error.at)),
                    error.message,
                    error
                        .source_id
                        .as_ref()
                        .map(|id| format!(" [event {id}]"))
                        .unwrap_or_default()
                )
            },
        );
        writeln!(
            out,
            "{:<16} {:<12} {:<20} {:<20} {:>9} {:>8}  {error}",
            status.connector,
            status.state.as_str(),
            when(status.last_success_at),
            when(status.next_run_at),
            status.events_ingested,
            lag,
        )?;
        if let Some(check) = status.last_check.as_ref().filter(|check| !check.ok) {
            writeln!(
                out,
                "{:<16} check failed at {}: {}",
                "",
                when(Some(check.at)),
                check.message.as_deref().unwrap_or("-")
            )?;
        }
        if let (Some(holder), Some(until)) = (&status.lease_holder, status.lease_expires_at) {
            writeln!(
                out,
                "{:<16} held by {holder} until {}",
                "",
                when(Some(until))
            )?;
        }
    }
    let total: i64 = waiting.iter().map(|(_, count)| count).sum();
    write!(out, "unmatched inbox: {total} event(s) waiting")?;
    if total > 0 {
        let parts: Vec<String> = waiting
            .iter()
            .map(|(connector, count)| format!("{connector} {count}"))
            .collect();
        write!(out, " ({})", parts.join(", "))?;
    }
    writeln!(out)?;
    Ok(())
}

async fn check_config(args: &ConfigCheckArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let path = &args.config.config;
    let config = Config::load(path)?;
    let host = rapport_plugin_host::PluginHost::new(
        config
            .plugins
            .host_config(Some(config.plugin_cache_dir.clone())),
    )?;
    let specs = config.bind_connectors(&host).await?;
    writeln!(
        out,
        "{} is valid: database {}, listening on {}, {} connector(s)",
        path.display(),
        redact(&config.database),
        config.listen,
        specs.len()
    )?;
    let mut failed = Vec::new();
    for spec in &specs {
        let plugin = spec.connector.plugin();
        writeln!(
            out,
            "  {} — {} {} ({}), {}{}",
            spec.id(),
            plugin.manifest().name,
            plugin.manifest().version,
            plugin.contract_version().as_str(),
            spec.schedule,
            if spec.enabled { "" } else { ", disabled" }
        )?;
        if args.online && spec.enabled {
            match spec.connector.check().await {
                Ok(()) => writeln!(out, "    check: ok")?,
                Err(error) => {
                    writeln!(out, "    check failed: {error}")?;
                    failed.push(spec.id().to_owned());
                }
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the check of {} failed (above); fix their settings or credentials",
            failed.join(", ")
        );
    }
    Ok(())
}

async fn check_connector(args: &SyncArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let config = Config::load(&args.config.config)?;
    let server = Server::start(config).await?;
    let outcome = server.engine.check_now(&args.connector).await;
    server.engine.store().close().await;
    match outcome? {
        Ok(()) => {
            writeln!(out, "{}: check passed", args.connector)?;
            Ok(())
        }
        Err(error) => anyhow::bail!("connector `{}` failed its check: {error}", args.connector),
    }
}

/// A database URL with any password hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn migrate(args: &DatabaseArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let database = args.url()?;
    let store = Store::connect(&database)
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
