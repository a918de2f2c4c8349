//! Running the real server for the multi-process benchmarks: a `rapport.toml` with one
//! `example-feed` connector per loopback feed, and `rapport serve` as a child process.

use anyhow::{Context, Result, bail};
use rapport_testkit::feed::Feed;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `rapport` binary built beside this one (same profile).
pub fn rapport_binary() -> Result<PathBuf> {
    let binary = std::env::current_exe()?.with_file_name("rapport");
    if !binary.exists() {
        bail!(
            "{} does not exist: build the server in the same profile first, e.g. \
             `cargo build --release -p rapport-cli`",
            binary.display()
        );
    }
    Ok(binary)
}

/// Writes `dir/rapport.toml`: `server` and `sync` are the bodies of those sections
/// (`database` and the plugin cache are added), then connector `{prefix}{n}` for each
/// feed. The plugin is copied beside it.
pub fn write_config(
    dir: &Path,
    server: &str,
    sync: &str,
    cache: &Path,
    prefix: &str,
    feeds: &[Feed],
) -> Result<PathBuf> {
    std::fs::copy(rapport_testkit::EXAMPLE_FEED, dir.join("example-feed.wasm"))
        .with_context(|| format!("copying {}", rapport_testkit::EXAMPLE_FEED))?;
    let mut toml = format!(
        "[server]\n{server}\nplugin_cache_dir = \"{}\"\n\n[sync]\n{sync}\n",
        cache.display()
    );
    for (n, feed) in feeds.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[connector]]\nid = \"{prefix}{n}\"\nplugin = \"example-feed.wasm\"\nschedule = \"every 1h\"\n\
             allowed_hosts = [\"{}\"]\nallow_private_networks = true\n\n[connector.settings]\nbase_url = \"{}\"\n",
            feed.upstream.grant(),
            feed.upstream.url()
        ));
    }
    let path = dir.join("rapport.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// A `rapport serve` process, killed (SIGKILL: no shutdown, no lease release) when
/// dropped or asked.
#[derive(Debug)]
pub struct Serve(Option<Child>);

impl Serve {
    /// Starts `rapport serve --config config` as node `node_id`.
    pub fn start(rapport: &Path, config: &Path, node_id: &str) -> Result<Serve> {
        Serve::start_with_env(rapport, config, node_id, &[])
    }

    /// [`Serve::start`] with more environment variables (the secrets a config names).
    pub fn start_with_env(
        rapport: &Path,
        config: &Path,
        node_id: &str,
        env: &[(&str, &str)],
    ) -> Result<Serve> {
        let child = Command::new(rapport)
            .args(["serve", "--config"])
            .arg(config)
            .env("RAPPORT_NODE_ID", node_id)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", rapport.display()))?;
        Ok(Serve(Some(child)))
    }

    /// Its process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Sends one raw HTTP/1.1 request (loopback only; it should say `Connection: close`)
/// and reads the whole response: its status and the response text.
pub async fn request(address: &str, raw: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(raw.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .context("an HTTP status line")?;
    Ok((status, response))
}

/// Waits (up to five minutes: a first start may migrate a large database) until the
/// server at `address` answers `/readyz` with 200.
pub async fn wait_ready(address: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let probe = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    loop {
        if let Ok((200, _)) = request(address, &probe).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server at {address} did not become ready in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
