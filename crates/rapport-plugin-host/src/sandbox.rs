//! The state one call runs with: a WASI context with no files, environment or
//! arguments; networking filtered by the connector's policy (name lookups included); a
//! memory limiter that also draws on the host's shared budget; stdout and stderr that
//! feed the log; and the log forwarder. A new sandbox is built for every call.

use crate::config::{AccessToken, CallLimits, TokenError, TokenSource};
use crate::limits::LOG_LINE_BYTES_MAX;
use crate::network::{Denial, HttpHooks, NameGrants, NetworkPolicy, socket_check};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::ResourceLimiter;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{OutputStream, Pollable, SocketError, StreamError};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How much of a plugin's stderr is kept per call, for the message of a crash (the
/// end of it, where a panic's message is).
const STDERR_TAIL_BYTES_MAX: usize = 4 * 1024;
/// Most table elements (function references) one instance may hold.
const TABLE_ELEMENTS_MAX: usize = 100_000;
/// What a write to stdout or stderr is always allowed: the guest never waits and never
/// sees an error (a Rust guest's `println!` panics on one).
const OUTPUT_PERMIT_BYTES: usize = 64 * 1024;

pub(crate) struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HttpHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) denials: Arc<Mutex<Vec<Denial>>>,
    names: Arc<NameGrants>,
    pub(crate) log: Arc<Mutex<CallLog>>,
    /// Where `host.access-token` gets tokens; none outside an OAuth connection.
    tokens: Option<Arc<dyn TokenSource>>,
    /// The last access token handed to the guest this call: the one to report as
    /// refused when the call fails with `auth`.
    pub(crate) handed_token: Option<AccessToken>,
}

impl Sandbox {
    pub(crate) fn new(
        connector_id: &str,
        policy: Arc<NetworkPolicy>,
        names: NameGrants,
        secrets: Vec<String>,
        tokens: Option<Arc<dyn TokenSource>>,
        limits: &CallLimits,
        budget: Arc<MemoryBudget>,
    ) -> Sandbox {
        let denials = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(CallLog::new(connector_id, secrets, limits)));
        let mut builder = WasiCtxBuilder::new();
        // Nothing is inherited: no env, no args, no preopened directories, no stdin.
        builder
            .stdout(LogPipe {
                log: log.clone(),
                stream: Stream::Stdout,
            })
            .stderr(LogPipe {
                log: log.clone(),
                stream: Stream::Stderr,
            })
            // TCP and lookups are on, so that every attempt meets the checks below
            // (the socket check, `GuardedLookup`), which record a refusal that fails
            // the call; with them off a refused attempt would leave no trace.
            .allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(true)
            .socket_addr_check(socket_check(names.destinations(), denials.clone()));
        Sandbox {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: HttpHooks {
                policy,
                denials: denials.clone(),
                limits: limits.clone(),
            },
            limiter: MemoryLimiter {
                call_bytes_max: limits.memory_bytes_max,
                budget,
                reserved: 0,
                exceeded: false,
                budget_exhausted: false,
            },
            denials,
            names: Arc::new(names),
            log,
            tokens,
            handed_token: None,
        }
    }

    /// A current access token from the call's token source (`Err(None)`: there is
    /// none). The token joins the secrets scrubbed from the call's log and errors.
    pub(crate) async fn fetch_access_token(&mut self) -> Result<AccessToken, Option<TokenError>> {
        let tokens = self.tokens.clone().ok_or(None)?;
        let token = tokens.access_token().await.map_err(Some)?;
        self.log
            .lock()
            .expect("call log lock")
            .add_secret(token.token.clone());
        self.handed_token = Some(token.clone());
        Ok(token)
    }

    /// `text` with every secret value replaced, so a plugin cannot leak a secret into
    /// the host's logs or error messages, deliberately or not.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.log.lock().expect("call log lock").scrub(text)
    }

    /// Forwards one guest log line to `tracing`, tagged with the connector id.
    pub(crate) fn log(&mut self, level: tracing::Level, message: &str) {
        self.log
            .lock()
            .expect("call log lock")
            .line(level, "log", message.as_bytes());
    }

    /// What the plugin last wrote to stderr this call, scrubbed.
    pub(crate) fn captured_stderr(&self) -> String {
        let log = self.log.lock().expect("call log lock");
        let tail: Vec<u8> = log.stderr_tail.iter().copied().collect();
        log.scrub(String::from_utf8_lossy(&tail).trim())
    }

    /// Ends the call's log: forwards unfinished lines, and says what was dropped.
    pub(crate) fn finish_log(&self) {
        self.log.lock().expect("call log lock").finish();
    }
}

pub(crate) fn scrub(secrets: &[String], text: &str) -> String {
    let mut scrubbed = text.to_owned();
    for secret in secrets {
        if scrubbed.contains(secret.as_str()) {
            scrubbed = scrubbed.replace(secret.as_str(), "<redacted>");
        }
    }
    scrubbed
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The memory all running calls share: each call's growth is drawn from it and given
/// back when the call's store is dropped.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit_bytes: usize,
    used_bytes: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(limit_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            limit_bytes,
            used_bytes: AtomicUsize::new(0),
        }
    }

    pub(crate) fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// What running calls hold now.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Acquire)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= self.limit_bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Caps each call's linear memory, draws its growth from the shared budget, and
/// remembers which limit a failed growth hit, so the trap that follows (a Rust guest
/// aborts when allocation fails) is reported as what it is.
pub(crate) struct MemoryLimiter {
    call_bytes_max: usize,
    budget: Arc<MemoryBudget>,
    reserved: usize,
    pub(crate) exceeded: bool,
    pub(crate) budget_exhausted: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.reserved.saturating_add(growth) > self.call_bytes_max {
            self.exceeded = true;
            return Ok(false);
        }
        if !self.budget.try_reserve(growth) {
            self.budget_exhausted = true;
            return Ok(false);
        }
        self.reserved += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// One call's log: lines from the `log` import and from stdout and stderr, within
/// one budget of lines and bytes, secrets scrubbed, long lines cut.
pub(crate) struct CallLog {
    connector_id: String,
    /// Values never to appear in anything the host writes down.
    secrets: Vec<String>,
    lines: u32,
    lines_max: u32,
    bytes: usize,
    bytes_max: usize,
    pub(crate) dropped: u32,
    stdout_partial: Vec<u8>,
    stderr_partial: Vec<u8>,
    stderr_tail: VecDeque<u8>,
}

impl CallLog {
    fn new(connector_id: &str, secrets: Vec<String>, limits: &CallLimits) -> CallLog {
        CallLog {
            connector_id: connector_id.to_owned(),
            secrets: secrets
                .into_iter()
                .filter(|secret| secret.len() >= 4)
                .collect(),
            lines: 0,
            lines_max: limits.log_lines_max,
            bytes: 0,
            bytes_max: limits.log_bytes_max,
            dropped: 0,
            stdout_partial: Vec::new(),
            stderr_partial: Vec::new(),
            stderr_tail: VecDeque::new(),
        }
    }

    fn scrub(&self, text: &str) -> String {
        scrub(&self.secrets, text)
    }

    fn add_secret(&mut self, secret: String) {
        if secret.len() >= 4 && !self.secrets.contains(&secret) {
            self.secrets.push(secret);
        }
    }

    /// Forwards one line, unless the call's budget is spent.
    fn line(&mut self, level: tracing::Level, stream: &'static str, line: &[u8]) {
        if self.lines >= self.lines_max || self.bytes >= self.bytes_max {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.lines += 1;
        let cut = line.len().min(LOG_LINE_BYTES_MAX);
        self.bytes = self.bytes.saturating_add(cut);
        let mut message = self.scrub(&String::from_utf8_lossy(&line[..cut]));
        message.retain(|c| !c.is_control() || c == '\t');
        if cut < line.len() {
            message.push('…');
        }
        let connector = self.connector_id.as_str();
        match level {
            tracing::Level::TRACE => {
                tracing::trace!(target: "rapport::plugin", connector, stream, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "rapport::plugin", connector, stream, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "rapport::plugin", connector, stream, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "rapport::plugin", connector, stream, "{message}")
            }
            tracing::Level::ERROR => {
                tracing::error!(target: "rapport::plugin", connector, stream, "{message}")
            }
        }
    }

    /// Takes bytes the guest wrote to stdout or stderr: complete lines are forwarded,
    /// an unfinished one waits for its end (or is cut at the line limit).
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        if stream == Stream::Stderr {
            self.stderr_tail.extend(bytes);
            let excess = self.stderr_tail.len().saturating_sub(STDERR_TAIL_BYTES_MAX);
            self.stderr_tail.drain(..excess);
        }
        let (level, name) = match stream {
            Stream::Stdout => (tracing::Level::INFO, "stdout"),
            Stream::Stderr => (tracing::Level::WARN, "stderr"),
        };
        let mut partial = std::mem::take(match stream {
            Stream::Stdout => &mut self.stdout_partial,
            Stream::Stderr => &mut self.stderr_partial,
        });
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    partial.extend_from_slice(&rest[..end]);
                    self.line(level, name, &partial);
                    partial.clear();
                    rest = &rest[end + 1..];
                }
                None => {
                    // Keep no more of an endless line than the log would show.
                    let room = (LOG_LINE_BYTES_MAX + 1).saturating_sub(partial.len());
                    partial.extend_from_slice(&rest[..rest.len().min(room)]);
                    rest = &[];
                }
            }
        }
        *match stream {
            Stream::Stdout => &mut self.stdout_partial,
            Stream::Stderr => &mut self.stderr_partial,
        } = partial;
    }

    fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let partial = std::mem::take(match stream {
                Stream::Stdout => &mut self.stdout_partial,
                Stream::Stderr => &mut self.stderr_partial,
            });
            if !partial.is_empty() {
                let (level, name) = match stream {
                    Stream::Stdout => (tracing::Level::INFO, "stdout"),
                    Stream::Stderr => (tracing::Level::WARN, "stderr"),
                };
                self.line(level, name, &partial);
            }
        }
        if self.dropped > 0 {
            tracing::warn!(
                target: "rapport::plugin",
                connector = %self.connector_id,
                dropped = self.dropped,
                lines_max = self.lines_max,
                bytes_max = self.bytes_max,
                "the plugin wrote more log than one call may; the rest was dropped"
            );
        }
    }
}

/// A guest's stdout or stderr: always writable, never failing, feeding [`CallLog`].
#[derive(Clone)]
struct LogPipe {
    log: Arc<Mutex<CallLog>>,
    stream: Stream,
}

impl LogPipe {
    fn take(&self, bytes: &[u8]) {
        if let Ok(mut log) = self.log.lock() {
            log.write(self.stream, bytes);
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(OUTPUT_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `wasi:sockets/ip-name-lookup`, answering only for names the connector's grants
/// cover. A lookup is itself traffic: a connector that could resolve any name could
/// spell what it knows into a name and send it to any DNS server. So a granted name
/// is answered from the addresses the host resolved (and checked) at the start of the
/// call, an address literal is answered as itself, and any other name is refused and
/// fails the call — no query ever leaves the host for it.
pub(crate) struct GuardedLookup<'a> {
    sockets: WasiSocketsCtxView<'a>,
    names: Arc<NameGrants>,
    denials: Arc<Mutex<Vec<Denial>>>,
}

/// The [`HasData`] that links [`GuardedLookup`].
pub(crate) struct GuardedLookupData;

impl HasData for GuardedLookupData {
    type Data<'a> = GuardedLookup<'a>;
}

/// What the linker calls to get the lookup view of a call's sandbox.
pub(crate) fn guarded_lookup(sandbox: &mut Sandbox) -> GuardedLookup<'_> {
    let names = Arc::clone(&sandbox.names);
    let denials = Arc::clone(&sandbox.denials);
    GuardedLookup {
        sockets: sandbox.sockets(),
        names,
        denials,
    }
}

impl ip_name_lookup::Host for GuardedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ip_name_lookup::ResolveAddressStream>, SocketError> {
        if crate::network::parse_ip_literal(&name).is_some() {
            return ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name);
        }
        match self.names.addresses_of(&name) {
            // The first checked address, as a literal: no second query, so no
            // answer can differ from what was checked.
            Some(addresses) => match addresses.first() {
                Some(address) => ip_name_lookup::Host::resolve_addresses(
                    &mut self.sockets,
                    network,
                    address.to_string(),
                ),
                None => Err(ErrorCode::NameUnresolvable.into()),
            },
            None => {
                self.denials.lock().expect("denials lock").push(Denial {
                    target: format!("dns://{}", name.chars().take(255).collect::<String>()),
                    reason: "the plugin tried to look up a name none of its granted hosts covers"
                        .into(),
                });
                Err(ErrorCode::PermanentResolverFailure.into())
            }
        }
    }
}

/// `ip-name-lookup` uses `network`'s types; linking it asks for `network`'s host
/// functions on the same view, which are WASI's own.
impl network::Host for GuardedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, error)
    }
}

impl network::HostNetwork for GuardedLookup<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl ip_name_lookup::HostResolveAddressStream for GuardedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.sockets, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<wasmtime_wasi::p2::DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.sockets, stream)
    }

    fn drop(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_everywhere() {
        let secrets = vec!["sk_live_123456".to_owned()];
        assert_eq!(
            super::scrub(&secrets, "using key sk_live_123456 for sk_live_123456"),
            "using key <redacted> for <redacted>"
        );
        assert_eq!(super::scrub(&secrets, "nothing here"), "nothing here");
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Arc::new(MemoryBudget::new(100));
        let limiter = |budget: &Arc<MemoryBudget>| MemoryLimiter {
            call_bytes_max: 80,
            budget: budget.clone(),
            reserved: 0,
            exceeded: false,
            budget_exhausted: false,
        };
        let mut first = limiter(&budget);
        let mut second = limiter(&budget);
        assert!(first.memory_growing(0, 60, None).unwrap());
        // Past the call's own cap.
        assert!(!second.memory_growing(0, 81, None).unwrap());
        assert!(second.exceeded && !second.budget_exhausted);
        // Within its cap, past what is left of the budget.
        assert!(!second.memory_growing(0, 50, None).unwrap());
        assert!(second.budget_exhausted);
        assert!(second.memory_growing(0, 40, None).unwrap());
        assert_eq!(budget.used_bytes(), 100);
        drop(first);
        assert_eq!(budget.used_bytes(), 40);
        drop(second);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn output_is_split_into_lines_within_the_budget() {
        let limits = CallLimits {
            log_lines_max: 3,
            ..CallLimits::default()
        };
        let mut log = CallLog::new("x", Vec::new(), &limits);
        log.write(Stream::Stdout, b"one\ntw");
        log.write(Stream::Stdout, b"o\nthree\nfour\nfive");
        assert_eq!(log.lines, 3);
        assert_eq!(log.dropped, 1);
        assert_eq!(log.stdout_partial, b"five");
        log.finish();
        assert_eq!(log.dropped, 2);
        // An endless line keeps no more than the line limit.
        let mut log = CallLog::new("x", Vec::new(), &CallLimits::default());
        log.write(Stream::Stderr, &vec![b'x'; 1024 * 1024]);
        assert!(log.stderr_partial.len() <= LOG_LINE_BYTES_MAX + 1);
        assert!(log.stderr_tail.len() <= STDERR_TAIL_BYTES_MAX);
    }
}
