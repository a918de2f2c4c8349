//! The state one call runs with: a WASI context with no files, environment or
//! arguments; networking filtered by the connector's policy; a memory limiter; captured
//! stdout/stderr; and the log forwarder. A new sandbox is built for every call.

use crate::config::CallLimits;
use crate::network::{Denial, HttpHooks, NetworkPolicy, socket_check};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How much of a plugin's stdout/stderr is kept per call (for crash reports).
const CAPTURED_OUTPUT_BYTES_MAX: usize = 64 * 1024;
/// Longest log line forwarded.
const LOG_LINE_BYTES_MAX: usize = 4 * 1024;
/// Most table elements (function references) one instance may hold.
const TABLE_ELEMENTS_MAX: usize = 100_000;

pub(crate) struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HttpHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) denials: Arc<Mutex<Vec<Denial>>>,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) connector_id: String,
    /// Values never to appear in anything the host writes down.
    secrets: Vec<String>,
    log_lines: u32,
    log_lines_max: u32,
    pub(crate) logs_dropped: u32,
}

impl Sandbox {
    pub(crate) fn new(
        connector_id: &str,
        policy: Arc<NetworkPolicy>,
        tcp_destinations: Vec<(IpAddr, Option<u16>)>,
        secrets: Vec<String>,
        limits: &CallLimits,
    ) -> Sandbox {
        let denials = Arc::new(Mutex::new(Vec::new()));
        let stdout = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES_MAX);
        let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES_MAX);
        let mut builder = WasiCtxBuilder::new();
        // Nothing is inherited: no env, no args, no preopened directories, no stdin.
        builder
            .stdout(stdout)
            .stderr(stderr.clone())
            .allow_tcp(!tcp_destinations.is_empty())
            .allow_udp(false)
            .allow_ip_name_lookup(!tcp_destinations.is_empty())
            .socket_addr_check(socket_check(Arc::new(tcp_destinations), denials.clone()));
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
                memory_bytes_max: limits.memory_bytes_max,
                exceeded: false,
            },
            denials,
            stderr,
            connector_id: connector_id.to_owned(),
            secrets: secrets
                .into_iter()
                .filter(|secret| secret.len() >= 4)
                .collect(),
            log_lines: 0,
            log_lines_max: limits.log_lines_max,
            logs_dropped: 0,
        }
    }

    /// `text` with every secret value replaced, so a plugin cannot leak a secret into
    /// the host's logs or error messages, deliberately or not.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(&self.secrets, text)
    }

    /// Forwards one guest log line to `tracing`, tagged with the connector id.
    pub(crate) fn log(&mut self, level: tracing::Level, message: &str) {
        if self.log_lines >= self.log_lines_max {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let mut message = self.scrub(message);
        if message.len() > LOG_LINE_BYTES_MAX {
            let mut cut = LOG_LINE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let connector = self.connector_id.as_str();
        match level {
            tracing::Level::TRACE => {
                tracing::trace!(target: "rapport::plugin", connector, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "rapport::plugin", connector, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "rapport::plugin", connector, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "rapport::plugin", connector, "{message}")
            }
            tracing::Level::ERROR => {
                tracing::error!(target: "rapport::plugin", connector, "{message}")
            }
        }
    }

    /// What the plugin wrote to stderr this call, scrubbed.
    pub(crate) fn captured_stderr(&self) -> String {
        self.scrub(String::from_utf8_lossy(&self.stderr.contents()).trim())
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

/// Caps each linear memory and remembers that a plugin hit the cap, so the trap that
/// follows (a Rust guest aborts when allocation fails) is reported as what it is.
pub(crate) struct MemoryLimiter {
    memory_bytes_max: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.exceeded = true;
            return Ok(false);
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_scrubbed_everywhere() {
        let secrets = vec!["sk_live_123456".to_owned()];
        assert_eq!(
            super::scrub(&secrets, "using key sk_live_123456 for sk_live_123456"),
            "using key <redacted> for <redacted>"
        );
        assert_eq!(super::scrub(&secrets, "nothing here"), "nothing here");
    }
}
