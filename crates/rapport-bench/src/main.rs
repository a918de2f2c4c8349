//! `rapport-bench`: end-to-end benchmarks at scale. Every figure is printed beside the
//! peer it is compared with, measured in the same run, as Markdown tables for
//! BENCHMARKS.md. Build it (and the server, for `nodes`, `memory` and `flood`) in release:
//!
//! ```text
//! cargo build --release -p rapport-bench -p rapport-cli
//! target/release/rapport-bench scale --accounts 10000 --events 1000000
//! target/release/rapport-bench nodes --postgres postgres://postgres@127.0.0.1:5432/postgres
//! target/release/rapport-bench people --postgres postgres://postgres@127.0.0.1:5432/postgres
//! target/release/rapport-bench memory --database sqlite://bench/scale.db
//! target/release/rapport-bench flood
//! target/release/rapport-bench pages --database sqlite://bench/scale.db
//! ```

mod flood;
mod measure;
mod memory;
mod nodes;
mod pages;
mod people;
mod scale;
mod serve;
mod synth;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "rapport-bench",
    about = "rapport's end-to-end benchmarks at scale"
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// A synthetic org and history: ingest, re-ingest, timelines, roll-ups and feeds,
    /// each against its peer.
    Scale {
        /// Client accounts.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Events in all.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Heavy accounts (the first ones; the first is also a parent of 20).
        #[arg(long, default_value_t = 5)]
        heavy: usize,
        /// Events on each heavy account.
        #[arg(long, default_value_t = 100_000)]
        heavy_events: u64,
        /// Where the SQLite files go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the SQLite database in `--dir` afterwards (for `memory`).
        #[arg(long, requires = "dir")]
        keep: bool,
        /// Also run on this PostgreSQL server (scratch databases are created and dropped).
        #[arg(long, env = "RAPPORT_BENCH_DATABASE_URL")]
        postgres: Option<String>,
        /// Only PostgreSQL.
        #[arg(long, requires = "postgres")]
        postgres_only: bool,
        /// Keep the PostgreSQL scratch database afterwards (its URL is printed), to
        /// read plans with EXPLAIN on the data that was timed.
        #[arg(long, requires = "postgres")]
        keep_postgres: bool,
    },
    /// One, two and three `rapport serve` nodes on one PostgreSQL: throughput, how the
    /// work spreads, and the handoff after a node is killed.
    Nodes {
        /// The PostgreSQL server (scratch databases are created and dropped).
        #[arg(long, env = "RAPPORT_BENCH_DATABASE_URL")]
        postgres: String,
        /// Connectors configured.
        #[arg(long, default_value_t = 12)]
        connectors: usize,
        /// Items per connector.
        #[arg(long, default_value_t = 5_000)]
        items: usize,
        /// Items per upstream page.
        #[arg(long, default_value_t = 100)]
        page_size: usize,
        /// Upstream latency per page, in milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// The nodes' lease TTL, in seconds.
        #[arg(long, default_value_t = 5)]
        lease_ttl_s: u64,
    },
    /// Hundreds of people's own connections (a person-scoped OAuth connector) synced
    /// by one, two and three `rapport serve` nodes on one PostgreSQL.
    People {
        /// The PostgreSQL server (scratch databases are created and dropped).
        #[arg(long, env = "RAPPORT_BENCH_DATABASE_URL")]
        postgres: String,
        /// People, each with their own connection.
        #[arg(long, default_value_t = 300)]
        people: usize,
        /// Items in each person's upstream account.
        #[arg(long, default_value_t = 100)]
        items: usize,
        /// Items per upstream page.
        #[arg(long, default_value_t = 50)]
        page_size: usize,
        /// Upstream latency per page, in milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
    },
    /// A webhook flood at one connector: the server's memory idle and at its peak, how
    /// the flood is answered, and how others are served meanwhile; against the same
    /// server without the per-connector cap and the shared memory budget.
    Flood {
        /// Concurrent deliveries.
        #[arg(long, default_value_t = 64)]
        webhooks: usize,
        /// MiB each flooded call holds.
        #[arg(long, default_value_t = 120)]
        mb: usize,
    },
    /// Peak resident memory of the server: empty vs a large database with connectors.
    Memory {
        /// The large database, e.g. the one `scale --dir bench --keep` leaves.
        #[arg(long)]
        database: String,
        /// Connectors to load.
        #[arg(long, default_value_t = 20)]
        connectors: usize,
        /// Items each connector syncs.
        #[arg(long, default_value_t = 2_000)]
        items: usize,
        /// Pages of 200 to walk per reader.
        #[arg(long, default_value_t = 100)]
        pages: usize,
    },
    /// The pages that score a whole book (book, Team, attention) for a manager and
    /// the VP, through `rapport serve` on a database `scale --keep` left.
    Pages {
        /// The database, e.g. `sqlite://bench/scale.db`.
        #[arg(long)]
        database: String,
        /// The `rapport` binary to serve with (default: the one beside this), e.g. a
        /// build of an earlier commit, for a before/after.
        #[arg(long)]
        rapport: Option<PathBuf>,
        /// Timed requests per page.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Bench::Scale {
                accounts,
                events,
                heavy,
                heavy_events,
                dir,
                keep,
                postgres,
                postgres_only,
                keep_postgres,
            } => {
                let heavy = heavy.min(accounts);
                // The heavy accounts take at most half of the history.
                let heavy_events = heavy_events.min(events / 2 / heavy.max(1) as u64);
                scale::run(scale::ScaleOptions {
                    shape: synth::Shape {
                        accounts,
                        events,
                        heavy,
                        heavy_events,
                    },
                    dir,
                    postgres,
                    postgres_only,
                    keep,
                    keep_postgres,
                })
                .await
            }
            Bench::Nodes {
                postgres,
                connectors,
                items,
                page_size,
                latency_ms,
                lease_ttl_s,
            } => {
                nodes::run(nodes::NodesOptions {
                    postgres,
                    connectors,
                    items,
                    page_size,
                    latency: Duration::from_millis(latency_ms),
                    lease_ttl: Duration::from_secs(lease_ttl_s),
                })
                .await
            }
            Bench::People {
                postgres,
                people,
                items,
                page_size,
                latency_ms,
            } => {
                people::run(people::PeopleOptions {
                    postgres,
                    people,
                    items,
                    page_size,
                    latency: Duration::from_millis(latency_ms),
                })
                .await
            }
            Bench::Flood { webhooks, mb } => flood::run(flood::FloodOptions { webhooks, mb }).await,
            Bench::Memory {
                database,
                connectors,
                items,
                pages,
            } => {
                memory::run(memory::MemoryOptions {
                    database,
                    connectors,
                    items,
                    pages,
                })
                .await
            }
            Bench::Pages {
                database,
                rapport,
                runs,
            } => {
                pages::run(pages::PagesOptions {
                    database,
                    rapport,
                    runs,
                })
                .await
            }
        }
    })
}
