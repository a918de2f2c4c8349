//! `rapport sync`, `rapport config check` and `rapport serve` as an operator runs them,
//! against the fake feed upstream, including processes killed with SIGKILL mid-sync.

use rapport_store::Store;
use rapport_testkit::feed::{Feed, expected_ids};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn rapport(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .current_dir(dir)
        .env_remove("RAPPORT_DATABASE")
        .env_remove("RAPPORT_CONFIG")
        .env_remove("RAPPORT_LISTEN")
        .env_remove("RAPPORT_NODE_ID");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with the example-feed plugin and a rapport.toml pointing at `feed`.
fn stage(feed: &Feed, database: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("example-feed.wasm"),
    )
    .unwrap();
    let config = dir.path().join("rapport.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
database = "{database}"

[sync]
lease_ttl = "1s"
poll_interval = "50ms"
retry_base = "1s"
{extra}

[[connector]]
id = "feed"
plugin = "example-feed.wasm"
schedule = "every 10m"
allowed_hosts = ["{grant}"]
allow_private_networks = true

[connector.settings]
base_url = "{url}"
"#,
            grant = feed.upstream.grant(),
            url = feed.upstream.url(),
        ),
    )
    .unwrap();
    (dir, config)
}

async fn stored_ids(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page = store
        .unmatched_events(rapport_store::Reader::Operator, Some("feed"), None, 200)
        .await
        .unwrap();
    loop {
        ids.extend(
            page.events
                .iter()
                .map(|event| event.event.key.source_id.clone()),
        );
        let Some(next) = page.next else { break };
        page = store
            .unmatched_events(
                rapport_store::Reader::Operator,
                Some("feed"),
                Some(next),
                200,
            )
            .await
            .unwrap();
    }
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_runs_a_connector_and_reports_each_page() {
    let feed = Feed::start(23, 10).await;
    let (dir, _) = stage(&feed, "sqlite://rapport.db", "");
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .contains("page 1: 10 new, 0 updated, 0 unchanged, 0 deleted, 10 waiting for a match")
            && stdout.contains("page 3: 3 new"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "feed: 3 pages, 23 new, 0 updated, 0 unchanged, 0 deleted, 23 waiting for a match"
        ),
        "{stdout}"
    );

    // Again: nothing new, one request from the checkpoint.
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("feed: 1 pages, 0 new"),
        "{}",
        text(&output.stdout)
    );

    let output = run(rapport(dir.path()).args(["sync", "fed"])).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr)
            .contains("there is no connector `fed` in rapport.toml; configured: feed"),
        "{}",
        text(&output.stderr)
    );

    let output = run(rapport(dir.path()).args(["status"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let status = text(&output.stdout);
    let row = status
        .lines()
        .find(|line| line.starts_with("feed "))
        .unwrap_or_default();
    assert!(
        row.contains(" idle ") && row.contains(" 23 ") && row.ends_with("  -"),
        "{status}"
    );
    assert!(
        status.contains("unmatched inbox: 23 event(s) waiting (feed 23)"),
        "{status}"
    );

    // An upstream that refuses the credentials: a clear error and a non-zero exit.
    feed.fault(rapport_testkit::feed::Fault::Unauthorized);
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("connector `feed` failed (auth)")
            && stderr.contains("stays stopped until its configuration changes"),
        "{stderr}"
    );
    let output = run(rapport(dir.path()).args(["status", "--json"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let feed_status = &status["connectors"][0];
    assert_eq!(feed_status["connector"], "feed");
    assert_eq!(feed_status["state"], "stopped");
    assert_eq!(feed_status["last_error"]["kind"], "auth");
    assert_eq!(feed_status["events_ingested"], 23);
    assert_eq!(feed_status["configured"], true);
    assert_eq!(status["unmatched"]["feed"], 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reports_problems_with_positions() {
    let feed = Feed::start(1, 10).await;
    let (dir, config) = stage(&feed, "sqlite://rapport.db", "");
    let output = run(rapport(dir.path()).args(["config", "check"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("rapport.toml is valid"), "{stdout}");
    assert!(
        stdout.contains("feed — example-feed 0.1.0 (0.2.0), every 10m"),
        "{stdout}"
    );

    let broken = std::fs::read_to_string(&config).unwrap().replace(
        "schedule = \"every 10m\"",
        "schedule = \"every 10m\"\nshedule = \"every 5m\"",
    );
    std::fs::write(&config, broken).unwrap();
    let output = run(rapport(dir.path()).args(["config", "check"])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("rapport.toml:15:1: unknown key `shedule`"),
        "{stderr}"
    );
}

/// Runs a command to completion off the async runtime (the fake upstream lives on it).
async fn run(command: &mut Command) -> Output {
    let mut command = std::mem::replace(command, Command::new("true"));
    tokio::task::spawn_blocking(move || command.output().expect("run rapport"))
        .await
        .unwrap()
}

/// How an attempt to kill a sync went.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// Killed mid-run.
    Killed,
    /// It finished before the chosen page.
    Finished,
    /// A killed predecessor's lease had not lapsed yet.
    Busy,
}

/// Starts `rapport sync feed`, reads its page lines, and SIGKILLs it after `pages`
/// of them plus a pause of `pause`.
fn sync_and_kill(dir: &Path, pages: usize, pause: Duration) -> Attempt {
    let mut child: Child = rapport(dir)
        .args(["sync", "feed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rapport sync");
    let stdout = child.stdout.take().unwrap();
    let mut seen = 0;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with("page ") {
            seen += 1;
            if seen > pages {
                std::thread::sleep(pause);
                // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no commit.
                killed = child.kill().is_ok();
                break;
            }
        }
    }
    let output = child.wait_with_output().expect("reap rapport");
    if text(&output.stderr).contains("is being synced right now") {
        Attempt::Busy
    } else if killed && !output.status.success() {
        Attempt::Killed
    } else {
        Attempt::Finished
    }
}

/// Kills `rapport sync` at random points, many times; after each kill the store must
/// hold only events the upstream served, none twice, and everything before the
/// committed checkpoint; at the end, exactly the upstream's set.
async fn crash_consistency(database_url: &str, iterations: usize) {
    const PAGE: usize = 7;
    // The feed grows whenever a killed run got near its end, so every run has pages
    // left to be killed in.
    let mut items = 140;
    let feed = Feed::start(items, PAGE).await;
    feed.state.lock().unwrap().latency = Duration::from_millis(2);
    let (dir, _) = stage(&feed, database_url, "");
    let store = Store::connect(&resolve(database_url, dir.path()))
        .await
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed_cafe);
    let mut kills = 0;
    let mut checkpoint = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < iterations {
        assert!(Instant::now() < deadline, "crash loop took too long");
        let remaining_pages = (items - checkpoint).div_ceil(PAGE);
        if remaining_pages < 6 {
            items += 10 * PAGE;
            feed.set_items(items);
            continue;
        }
        // Kill after 0..remaining/2 committed pages, then 0-4 ms into the next one:
        // sometimes mid-request, sometimes mid-transaction.
        let pages = rng.usize(0..remaining_pages / 2);
        let pause = Duration::from_micros(rng.u64(0..4_000));
        let path = dir.path().to_path_buf();
        let attempt = tokio::task::spawn_blocking(move || sync_and_kill(&path, pages, pause))
            .await
            .unwrap();
        match attempt {
            Attempt::Busy => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Attempt::Killed => kills += 1,
            Attempt::Finished => panic!("the run finished before page {pages}"),
        }
        let stored = stored_ids(&store).await;
        let mut unique = stored.clone();
        unique.dedup();
        assert_eq!(unique, stored, "an event was stored twice");
        let expected = expected_ids(items);
        assert!(
            stored.iter().all(|id| expected.binary_search(id).is_ok()),
            "an event the upstream never served"
        );
        checkpoint = store
            .connector_status("feed")
            .await
            .unwrap()
            .and_then(|status| status.checkpoint)
            .map_or(0, |checkpoint| checkpoint.parse().unwrap());
        assert!(
            expected[..checkpoint]
                .iter()
                .all(|id| stored.binary_search(id).is_ok()),
            "the checkpoint ({checkpoint}) is ahead of the stored events ({} stored)",
            stored.len()
        );
    }
    // A last run, uninterrupted (once the dead run's lease lapses), completes the set.
    let finished = loop {
        let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
        if output.status.success() {
            break output;
        }
        assert!(
            text(&output.stderr).contains("is being synced right now"),
            "{}",
            text(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(finished.status.success());
    assert_eq!(stored_ids(&store).await, expected_ids(items));
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.checkpoint, Some(items.to_string()));
    assert_eq!(
        status.events_ingested, items as i64,
        "re-delivered pages after a crash are upserts, not new events"
    );
    store.close().await;
}

fn resolve(url: &str, dir: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(file) => format!("sqlite://{}", dir.join(file).display()),
        None => url.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing_on_sqlite() {
    crash_consistency("sqlite://rapport.db", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing_on_postgres() {
    let Some(database) = rapport_testkit::database::TestDatabase::postgres().await else {
        return;
    };
    crash_consistency(&database.url, 10).await;
    database.finish().await;
}

/// Sends SIGTERM (a graceful stop request) to a child.
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Two `rapport serve` nodes on one PostgreSQL share a connector; the one syncing is
/// SIGKILLed mid-run; the other — on the same machine, so it can see the holder's
/// process is gone — takes the lease over at once instead of waiting for it to lapse,
/// and finishes from the last committed page. Nothing is lost or doubled, and the
/// upstream never sees two requests at once (never two concurrent syncs of one
/// connector). (A node on another machine waits for the lapse: `leases_exclude_and_expire`
/// in the store's suite.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_finishes_what_a_killed_node_started() {
    let Some(database) = rapport_testkit::database::TestDatabase::postgres().await else {
        return;
    };
    const ITEMS: usize = 300;
    let feed = Feed::start(ITEMS, 5).await;
    feed.state.lock().unwrap().latency = Duration::from_millis(15);
    let (dir, _) = stage(&feed, &database.url, "");
    let logs = dir.path().to_path_buf();
    let start = |node: &str| -> Child {
        rapport(dir.path())
            .args(["serve"])
            .env("RAPPORT_NODE_ID", node)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join(format!("{node}.log"))).unwrap())
            .spawn()
            .expect("start rapport serve")
    };
    let mut nodes = [("node-a", start("node-a")), ("node-b", start("node-b"))];
    let store = &database.store;

    // Wait until one node is well into the sync, then kill it.
    let started = Instant::now();
    let holder = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no node started syncing"
        );
        let status = store.connector_status("feed").await.unwrap();
        if let Some(status) = status
            && status.pages_committed >= 8
            && let Some(holder) = status.lease_holder
        {
            break holder;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (victim, survivor) = if holder == "node-a" { (0, 1) } else { (1, 0) };
    nodes[victim].1.kill().expect("SIGKILL");
    nodes[victim].1.wait().unwrap();
    let killed_at = Instant::now();
    let committed_at_kill = store
        .connector_status("feed")
        .await
        .unwrap()
        .unwrap()
        .pages_committed;
    assert!(committed_at_kill < (ITEMS / 5) as i64, "killed mid-sync");

    let mut took_over = None;
    loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "the survivor did not finish: {:?}\n{}",
            store.connector_status("feed").await,
            std::fs::read_to_string(logs.join(format!("{}.log", nodes[survivor].0)))
                .unwrap_or_default()
        );
        let status = store.connector_status("feed").await.unwrap().unwrap();
        if took_over.is_none() && status.lease_holder.as_deref() == Some(nodes[survivor].0) {
            took_over = Some(killed_at.elapsed());
        }
        if status.checkpoint == Some(ITEMS.to_string())
            && status.state == rapport_store::ConnectorState::Idle
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = took_over.expect("the survivor held the lease");
    assert!(
        took_over < Duration::from_secs(1),
        "the survivor waited for the dead node's 1 s lease to lapse: {took_over:?}"
    );
    assert_eq!(stored_ids(store).await, expected_ids(ITEMS));
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(
        status.events_ingested, ITEMS as i64,
        "nothing ingested twice"
    );
    assert_eq!(feed.upstream.in_flight_max(), 1, "two syncs overlapped");
    eprintln!("lease handed over {took_over:?} after the kill");

    // SIGTERM stops the survivor gracefully.
    terminate(&nodes[survivor].1);
    let exit = tokio::task::spawn_blocking(move || {
        let (_, mut child) = std::mem::replace(
            &mut nodes[survivor],
            ("", Command::new("true").spawn().unwrap()),
        );
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    database.finish().await;
}

/// One HTTP/1.1 GET over a plain socket; the status code and body.
fn http_get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `rapport serve` on a real socket: the API answers a token made by `rapport token
/// create`, the connector's sync shows in its status and in `/metrics`, and SIGTERM
/// stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_api_with_a_cli_token_and_stops_on_sigterm() {
    let feed = Feed::start(12, 5).await;
    let (dir, _) = stage(&feed, "sqlite://rapport.db", "");
    let url = format!("sqlite://{}", dir.path().join("rapport.db").display());
    let store = Store::connect(&url).await.unwrap();
    store
        .create_staff(
            rapport_core::staff::NewStaff {
                name: "Vera Vance".into(),
                email: rapport_core::account::EmailAddress::parse("vera@rapport.example").unwrap(),
                level: rapport_core::staff::Level::Vp,
                reports_to: None,
                is_admin: true,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let made = rapport(dir.path())
        .args([
            "token",
            "create",
            "--staff",
            "vera@rapport.example",
            "--name",
            "test",
            "--database",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8(made.stdout)
        .unwrap()
        .lines()
        .find(|line| line.starts_with("rpt_"))
        .unwrap()
        .to_owned();

    let log = dir.path().join("serve.log");
    let mut child = rapport(dir.path())
        .args(["serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rapport serve");
    let started = Instant::now();
    let address = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("address=") {
            let rest = &text[at + "address=".len()..];
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never served:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, me) = http_get(&address, "/api/v1/me", Some(&token));
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("vera@rapport.example"), "{me}");
    let (status, _) = http_get(&address, "/api/v1/me", None);
    assert_eq!(status, 401);
    let (status, document) = http_get(&address, "/api/openapi.json", None);
    assert_eq!(status, 200);
    assert!(document.contains("\"openapi\": \"3.1.0\""));

    // The first sync runs on start; its status and metrics show it.
    let started = Instant::now();
    loop {
        let (_, connectors) = http_get(&address, "/api/v1/connectors", Some(&token));
        if connectors.contains("\"events_ingested\":12") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{connectors}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = http_get(&address, "/metrics", None);
    assert!(
        metrics.contains("rapport_sync_runs_total{connector=\"feed\",outcome=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rapport_connector_events_ingested{connector=\"feed\"} 12"));

    terminate(&child);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{}", std::fs::read_to_string(&log).unwrap());
}

/// One raw HTTP/1.1 GET with an optional cookie: the whole response, headers included.
fn raw_get(address: &str, path: &str, cookie: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cookie = cookie
        .map(|cookie| format!("Cookie: {cookie}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `rapport demo --serve`: seeds the org, starts sample upstreams on loopback (a
/// Stripe-style API, a Zendesk-style API, an IMAP mailbox, a sample Google and a
/// sample Microsoft 365 with two people's accounts connected), syncs every connector
/// from them, serves the web UI and the API and prints a sign-in link that works in a
/// browser. The API then returns a seeded account's timeline with events from billing,
/// support, the shared mailbox, and the manager's own calendar and Gmail; the book
/// shows her next meeting. SIGTERM stops it.
#[test]
fn demo_serve_syncs_three_connectors_and_prints_a_working_sign_in_link() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = rapport(dir.path())
        .args(["demo", "--serve", "--listen", &address])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rapport demo --serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let link = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the demo printed no sign-in link: {printed:?}"))
            .unwrap();
        printed.push(line.clone());
        if let Some(at) = line.find("/signin/rpl_") {
            break line[at..].trim().to_owned();
        }
    };
    // Then how to use the deployment it wrote down, up to the last line it prints.
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the demo stopped printing: {printed:?}"))
            .unwrap();
        printed.push(line.clone());
        if line == "Stop with ctrl-c." {
            break;
        }
    }
    // Every unit synced something: the organisation's connectors and each person's.
    for unit in [
        "stripe ",
        "zendesk ",
        "mail ",
        "google-calendar (Priya Raman)",
        "gmail (Priya Raman)",
        "outlook-calendar (Marcus Webb)",
        "outlook-mail (Marcus Webb)",
    ] {
        let line = printed
            .iter()
            .find(|line| line.trim_start().starts_with(unit))
            .unwrap_or_else(|| panic!("no sync line for {unit}: {printed:?}"));
        assert!(
            !line.contains(" 0 new") && line.contains("(completed)"),
            "{line}"
        );
    }
    let signed_in = raw_get(&address, &link, None);
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|cookie| cookie.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let book = raw_get(&address, "/", Some(&cookie));
    assert!(book.starts_with("HTTP/1.1 200"), "{book}");
    assert!(book.contains("<h1>My book</h1>") && book.contains("Northwind Group"));
    assert!(book.contains("Next meeting"), "{book}");
    let used = raw_get(&address, &link, None);
    assert!(used.starts_with("HTTP/1.1 410"), "the link works once");

    // Through the API, as Priya: Northwind Group's timeline has all three sources.
    let made = rapport(dir.path())
        .args([
            "token",
            "create",
            "--staff",
            "priya.raman@rapport-demo.example",
            "--name",
            "demo check",
            "--database",
            "sqlite://rapport-demo/rapport.db",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let token = text(&made.stdout)
        .lines()
        .find(|line| line.starts_with("rpt_"))
        .unwrap()
        .to_owned();
    let (status, book) = http_get(
        &address,
        "/api/v1/accounts?q=Northwind%20Group",
        Some(&token),
    );
    assert_eq!(status, 200, "{book}");
    let book: serde_json::Value = serde_json::from_str(&book).unwrap();
    let northwind = book["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|account| account["name"] == "Northwind Group")
        .expect("Northwind Group in Priya's book")["id"]
        .as_i64()
        .unwrap();
    let (status, timeline) = http_get(
        &address,
        &format!("/api/v1/accounts/{northwind}/timeline?limit=200"),
        Some(&token),
    );
    assert_eq!(status, 200, "{timeline}");
    let timeline: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    let events = timeline["events"].as_array().unwrap();
    let kinds_from = |source: &str| -> Vec<String> {
        events
            .iter()
            .filter(|event| event["source"] == source)
            .map(|event| event["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        kinds_from("stripe").contains(&"billing.invoice.payment_failed".to_owned()),
        "{timeline}"
    );
    assert!(
        kinds_from("zendesk").contains(&"support.ticket.created".to_owned()),
        "{timeline}"
    );
    assert!(
        kinds_from("mail").contains(&"email.received".to_owned()),
        "{timeline}"
    );
    assert!(
        kinds_from("mail").contains(&"email.sent".to_owned()),
        "{timeline}"
    );
    let from_priyas = |prefix: &str| -> Vec<String> {
        events
            .iter()
            .filter(|event| event["source"].as_str().unwrap().starts_with(prefix))
            .map(|event| event["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        from_priyas("google-calendar:").contains(&"Q3 business review".to_owned()),
        "a meeting held, from Priya's own calendar: {timeline}"
    );
    assert!(
        from_priyas("gmail:")
            .iter()
            .any(|title| title.contains("Renewal pricing for next year")),
        "mail from Priya's own Gmail: {timeline}"
    );
    // What no account claims waits in the inbox.
    let (_, inbox) = http_get(&address, "/api/v1/inbox", Some(&token));
    assert!(inbox.contains("BrightPath would like a pilot"), "{inbox}");

    // The rapport.toml it wrote works with the commands it printed, as printed.
    // A command line is `[NAME=value ...] rapport args...`.
    type Printed = (Vec<(String, String)>, Vec<String>);
    let printed_commands: Vec<Printed> = printed
        .iter()
        .filter_map(|line| {
            let command = line.trim().split("   #").next().unwrap();
            let mut words = command.split_whitespace();
            let mut env = Vec::new();
            for word in words.by_ref() {
                match word.split_once('=') {
                    Some((name, value)) if name.starts_with("RAPPORT_") => {
                        env.push((name.to_owned(), value.to_owned()))
                    }
                    _ if word == "rapport" => {
                        return Some((env, words.map(str::to_owned).collect()));
                    }
                    _ => return None,
                }
            }
            None
        })
        .collect();
    let run_printed = |name: &str| -> String {
        let (env, args) = printed_commands
            .iter()
            .find(|(_, args)| args[0] == name)
            .unwrap_or_else(|| panic!("the demo printed no `rapport {name}`: {printed:?}"));
        let output = rapport(dir.path())
            .envs(env.iter().map(|(name, value)| (name, value)))
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "rapport {}: {}",
            args.join(" "),
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    assert!(
        dir.path().join("rapport-demo/rapport.toml").is_file(),
        "{printed:?}"
    );
    let status = run_printed("status");
    for connector in ["stripe", "zendesk", "mail"] {
        assert!(
            status
                .lines()
                .any(|line| line.starts_with(connector) && line.contains("idle")),
            "{status}"
        );
    }
    assert!(
        run_printed("sync").contains("stripe: 1 pages"),
        "a sync from the written file reaches the sample upstream"
    );
    let victoria = run_printed("signin");
    let link = victoria
        .lines()
        .find_map(|line| line.strip_prefix(&format!("http://{address}")))
        .unwrap_or_else(|| panic!("a link to this demo's address: {victoria}"))
        .to_owned();
    let signed_in = raw_get(&address, &link, None);
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");

    terminate(&child);
    assert!(child.wait().unwrap().success(), "stops cleanly on SIGTERM");
    assert!(dir.path().join("rapport-demo/rapport.db").exists());
}

/// When the upstream or the database is down, `sync` and `status` say so, in a
/// sentence, with a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_status_say_what_is_down() {
    let feed = Feed::start(3, 10).await;
    let (dir, config) = stage(&feed, "sqlite://rapport.db", "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text_of = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_of
            .replace(&feed.upstream.url(), &format!("http://{closed}"))
            .replace(&feed.upstream.grant(), &closed.to_string()),
    )
    .unwrap();
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("connector `feed` failed (transient)")
            && stderr.contains("a server would retry at"),
        "{stderr}"
    );

    let down = dir.path().join("down.toml");
    std::fs::write(
        &down,
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"postgres://rapport@127.0.0.1:1/rapport\"\n",
    )
    .unwrap();
    let output =
        run(rapport(dir.path()).args(["status", "--config", down.to_str().unwrap()])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "cannot connect to PostgreSQL at 127.0.0.1:1 (database `rapport`): connection refused"
        ),
        "names the database it could not reach, and why: {stderr}"
    );
    assert_eq!(
        stderr.matches("connection refused").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

/// `rapport sync` killed mid-run leaves its lease behind; a rerun on the same machine
/// sees that process is gone and takes over at once, instead of waiting out the lease
/// (60 s here). A run that is alive is named instead: who, which process, until when,
/// and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_sync_is_taken_over_at_once_and_a_live_one_is_named() {
    let feed = Feed::start(400, 5).await;
    feed.state.lock().unwrap().latency = Duration::from_millis(20);
    let (dir, config) = stage(&feed, "sqlite://rapport.db", "");
    let long_lease = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lease_ttl = \"1s\"", "lease_ttl = \"60s\"");
    std::fs::write(&config, long_lease).unwrap();
    let path = dir.path().to_path_buf();
    let attempt = tokio::task::spawn_blocking(move || sync_and_kill(&path, 3, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(attempt, Attempt::Killed);

    // A live run, started in the background and left running.
    let mut live: Child = rapport(dir.path())
        .args(["sync", "feed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rapport sync");
    let mut lines = BufReader::new(live.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    })
    .await
    .unwrap();
    assert!(
        first
            .0
            .is_some_and(|line| line.unwrap().starts_with("page ")),
        "the rerun took over without waiting for the dead run's lease"
    );
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("is being synced right now by node-")
            && stderr.contains(&format!("(process {} on this machine)", live.id()))
            && stderr.contains(" until ")
            && stderr.contains("wait for it to finish, or stop that process"),
        "{stderr}"
    );
    live.kill().unwrap();
    live.wait().unwrap();
    drop(first.1);
}

/// Commands that only read never create a database, and a configuration refused when
/// its plugins load (a mistyped setting, a file that is not wasm) creates and migrates
/// none either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_creates_a_database_before_everything_else_is_checked() {
    let feed = Feed::start(3, 10).await;
    let (dir, config) = stage(&feed, "sqlite://rapport.db", "");
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite://{}", missing.display());
    for args in [
        vec!["status", "--database", url.as_str()],
        vec!["timeline", "Acme", "--database", url.as_str()],
        vec!["token", "list", "--database", url.as_str()],
    ] {
        let output = run(rapport(dir.path()).args(&args)).await;
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("does not exist") && stderr.contains("rapport migrate"),
            "{args:?}: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }

    // A setting the plugin does not know: refused before the database is touched.
    let typo = std::fs::read_to_string(&config)
        .unwrap()
        .replace("base_url =", "base_ulr =");
    std::fs::write(&config, typo).unwrap();
    for args in [vec!["sync", "feed"], vec!["serve"]] {
        let output = run(rapport(dir.path()).args(&args)).await;
        assert!(!output.status.success(), "{args:?}");
        assert!(
            text(&output.stderr).contains("has no setting `base_ulr`"),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            !dir.path().join("rapport.db").exists(),
            "{args:?} created the database"
        );
    }

    // The same on PostgreSQL: an empty database stays empty.
    let Some(database) = rapport_testkit::database::TestDatabase::postgres().await else {
        return;
    };
    let empty = format!("{}_empty", database.url);
    let admin = rapport_testkit::database::postgres_admin_url().unwrap();
    let name = empty.rsplit('/').next().unwrap().to_owned();
    rapport_testkit::database::execute_raw(&admin, &format!("CREATE DATABASE {name}")).await;
    let pointed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sqlite://rapport.db", &empty);
    std::fs::write(&config, pointed).unwrap();
    let output = run(rapport(dir.path()).args(["sync", "feed"])).await;
    assert!(!output.status.success());
    let output = run(rapport(dir.path()).args(["status", "--database", &empty])).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("is at schema version 0"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        rapport_testkit::database::postgres_table_count(&empty).await,
        0,
        "the empty database was left empty"
    );
    rapport_testkit::database::execute_raw(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
    database.finish().await;
}

/// One HTTP/1.1 POST over a plain socket; the status code and body.
fn http_post(address: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Starts `rapport serve` in `dir`, logging to `log`.
fn spawn_serve(dir: &Path, log: &Path) -> Child {
    rapport(dir)
        .args(["serve"])
        .env("FEED_HOOK_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start rapport serve")
}

/// The address a server says it serves on, read from its log.
async fn served_address(log: &Path) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("address=") {
            let rest = &text[at + "address=".len()..];
            return rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches(',')
                .to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never served:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small filesystem of our own, mounted for one test and gone after it (with the
/// server it hosts stopped first).
struct SmallDisk {
    mount: tempfile::TempDir,
    server: Option<Child>,
}

impl SmallDisk {
    /// A tmpfs of `mebibytes`, or `None` (with a note) where this user cannot mount
    /// one; under CI=true that is a failure: CI must run this test.
    fn mount(mebibytes: u32) -> Option<SmallDisk> {
        let mount = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mebibytes}m"), "tmpfs"])
            .arg(mount.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true, but a tmpfs could not be mounted: the disk-full test needs root"
            );
            eprintln!("skipped: the disk-full test needs to mount a tmpfs (run as root)");
            return None;
        }
        Some(SmallDisk {
            mount,
            server: None,
        })
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Writes zeros until the filesystem is full, then gives back `spare` bytes;
    /// returns the file, to free later.
    fn fill_leaving(&self, spare: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // Then the last few bytes a block did not fit.
        while file.write_all(&block[..512]).is_ok() {}
        let size = file.metadata().unwrap().len();
        file.set_len(size.saturating_sub(spare)).unwrap();
        file.sync_all().unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
    }
}

/// The disk under a SQLite database fills up mid-sync: the failure is reported on the
/// connector's status, `/readyz` says the store cannot write, webhooks get 503 — and
/// once space is freed the same node recovers by itself: the sync completes, webhooks
/// are stored, `/readyz` is ready, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_the_node_recovers_by_itself() {
    let Some(mut disk) = SmallDisk::mount(24) else {
        return;
    };
    let feed = Feed::start(20, 500).await;
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        disk.path().join("example-feed.wasm"),
    )
    .unwrap();
    std::fs::write(
        disk.path().join("rapport.toml"),
        format!(
            r#"[server]
listen = "127.0.0.1:0"
database = "sqlite://rapport.db"

[sync]
poll_interval = "50ms"
retry_base = "500ms"
retry_cap = "1s"

[[connector]]
id = "feed"
plugin = "example-feed.wasm"
schedule = "every 10s"
allowed_hosts = ["{grant}"]
allow_private_networks = true
[connector.settings]
base_url = "{url}"
[connector.secrets]
webhook_token = {{ env = "FEED_HOOK_TOKEN" }}
"#,
            grant = feed.upstream.grant(),
            url = feed.upstream.url(),
        ),
    )
    .unwrap();
    // The log lives off the small disk, so it can say what happened while it is full.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    disk.server = Some(spawn_serve(disk.path(), &log));
    let address = served_address(&log).await;
    let url = format!("sqlite://{}", disk.path().join("rapport.db").display());
    let wait_until =
        async |what: &str, done: &dyn Fn(&rapport_store::ConnectorStatus, u16) -> bool| {
            let store = Store::open_existing(&url).await.unwrap();
            let started = Instant::now();
            loop {
                let (ready, _) = http_get(&address, "/readyz", None);
                if let Some(status) = store.connector_status("feed").await.unwrap()
                    && done(&status, ready)
                {
                    store.close().await;
                    return status;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{what} did not happen: {:?}\n{}",
                    store.connector_status("feed").await,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
    wait_until("the first sync", &|status, ready| {
        status.events_ingested == 20 && ready == 200
    })
    .await;

    // Fill the disk but for a little room — enough for a lease or a status record at
    // first, not for a page — then give the connector far more to write than fits.
    let filler = disk.fill_leaving(192 * 1024);
    feed.set_items(20_000);
    let full = wait_until("the node saying it cannot write", &|_, ready| ready == 503).await;
    let (ready, why) = http_get(&address, "/readyz", None);
    assert_eq!(ready, 503);
    assert!(
        why.contains("cannot be written") && why.contains("full"),
        "{why}"
    );
    // Where the status could still be written, it says why.
    if let Some(error) = &full.last_error {
        assert!(error.message.contains("full"), "{error:?}");
    }
    let delivery =
        serde_json::json!({ "items": [rapport_testkit::feed::item_json(90_000)] }).to_string();
    let (hook, answer) = http_post(
        &address,
        "/hooks/feed",
        &[("x-feed-token", "s3cret")],
        &delivery,
    );
    assert_eq!(hook, 503, "the sender retries later: {answer}");

    // Space again: the same process recovers.
    std::fs::remove_file(&filler).unwrap();
    let recovered = wait_until("recovery", &|status, ready| {
        status.checkpoint.as_deref() == Some("20000") && ready == 200
    })
    .await;
    assert_eq!(recovered.events_ingested, 20_000);
    let (hook, answer) = http_post(
        &address,
        "/hooks/feed",
        &[("x-feed-token", "s3cret")],
        &delivery,
    );
    assert_eq!(hook, 200, "{answer}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains("non-zero transaction depth"),
        "a connection was reused inside a failed transaction:\n{log_text}"
    );
}

/// Sends `signal` (`STOP`, `CONT`, ...) to a child.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Two nodes on PostgreSQL; the one syncing is frozen (SIGSTOP) in the middle of a
/// page commit, its transaction open and the connector's state row locked. The other
/// node still takes over within the lease's lifetime (plus a poll and some slack for a
/// loaded machine): PostgreSQL ends the frozen session once it has idled in its
/// transaction for half the lease. Thawed, the old holder commits nothing more, and
/// nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_inside_a_commit_is_taken_over_within_the_lease() {
    let Some(database) = rapport_testkit::database::TestDatabase::postgres().await else {
        return;
    };
    const ITEMS: usize = 3_000;
    const LEASE: Duration = Duration::from_secs(2);
    let feed = Feed::start(ITEMS, 50).await;
    {
        // Every page after the first deletes 400 ids one statement at a time: the
        // commit stays open long enough to be caught in it.
        let mut state = feed.state.lock().unwrap();
        state.deleted = (0..400).map(|n| format!("gone-{n}")).collect();
        state.latency = Duration::from_millis(5);
    }
    let (dir, config) = stage(&feed, &database.url, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lease_ttl = \"1s\"", "lease_ttl = \"2s\"");
    std::fs::write(&config, text).unwrap();
    let logs = dir.path().to_path_buf();
    let url_of = |node: &str| {
        let separator = if database.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}application_name={node}", database.url)
    };
    let start = |node: &str| -> Child {
        rapport(dir.path())
            .args(["serve"])
            .env("RAPPORT_NODE_ID", node)
            .env("RAPPORT_DATABASE", url_of(node))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join(format!("{node}.log"))).unwrap())
            .spawn()
            .expect("start rapport serve")
    };
    let mut nodes = [("node-a", start("node-a")), ("node-b", start("node-b"))];
    let store = &database.store;

    // Catch the holder inside a page commit: stop it, and keep it stopped only if its
    // session is then idle inside a transaction (else let it go and try again).
    let started = Instant::now();
    let (victim, frozen_at) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never caught a node inside a commit"
        );
        let Some(holder) = store
            .connector_status("feed")
            .await
            .unwrap()
            .and_then(|status| status.lease_holder)
        else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let victim = if holder == "node-a" { 0 } else { 1 };
        let states =
            rapport_testkit::database::postgres_sessions_in_transaction(&database.url, &holder)
                .await;
        if states.is_empty() {
            continue;
        }
        signal(&nodes[victim].1, "STOP");
        let frozen_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let states =
            rapport_testkit::database::postgres_sessions_in_transaction(&database.url, &holder)
                .await;
        if states.iter().any(|state| state == "idle in transaction") {
            break (victim, frozen_at);
        }
        signal(&nodes[victim].1, "CONT");
    };
    let survivor = 1 - victim;
    let mut took_over = None;
    loop {
        assert!(
            frozen_at.elapsed() < Duration::from_secs(60),
            "the survivor did not finish: {:?}\n{}",
            store.connector_status("feed").await,
            std::fs::read_to_string(logs.join(format!("{}.log", nodes[survivor].0)))
                .unwrap_or_default()
        );
        let status = store.connector_status("feed").await.unwrap().unwrap();
        if took_over.is_none() && status.lease_holder.as_deref() == Some(nodes[survivor].0) {
            took_over = Some(frozen_at.elapsed());
            // Thaw the old holder: it must not commit over its successor.
            signal(&nodes[victim].1, "CONT");
        }
        if status.checkpoint == Some(ITEMS.to_string())
            && status.state == rapport_store::ConnectorState::Idle
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = took_over.expect("the survivor took the lease");
    eprintln!("took over {took_over:?} after the freeze");
    assert!(
        took_over < LEASE + Duration::from_millis(50) + Duration::from_secs(2),
        "takeover waited past the lease for the frozen node: {took_over:?}"
    );
    assert_eq!(stored_ids(store).await, expected_ids(ITEMS));
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(
        status.events_ingested, ITEMS as i64,
        "nothing ingested twice"
    );
    for (_, child) in &mut nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
    database.finish().await;
}
