//! Why a plugin call failed.

/// Result of a plugin operation.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// A failure the connector itself reported, as the contract types it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// Its configuration is wrong; retrying will not help until it changes.
    #[error("configuration problem: {0}")]
    Config(String),
    /// Its credentials were refused; retrying will not help until they change.
    #[error("authentication refused: {0}")]
    Auth(String),
    /// The source is rate limiting.
    #[error("rate limited, retry after {retry_after_ms} ms: {message}")]
    RateLimited {
        /// How long to wait.
        retry_after_ms: u64,
        /// The source's explanation.
        message: String,
    },
    /// A passing failure; retry with backoff.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// A failure retrying will not fix.
    #[error("failed: {0}")]
    Fatal(String),
}

/// Why loading or calling a plugin failed. Containment failures (deadline, memory,
/// stack, trap, output caps, network) are distinguished so status pages and the retry
/// policy can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read the plugin {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("{name} is not a valid WebAssembly component: {message}")]
    Compile {
        /// Where it came from.
        name: String,
        /// wasmtime's explanation.
        message: String,
    },

    /// The component does not export the rapport connector interface.
    #[error(
        "{name} is not a rapport connector: it exports {exports:?}, but a connector exports `rapport:connector/plugin@<version>`"
    )]
    NotAConnector {
        /// Where it came from.
        name: String,
        /// What it exports instead.
        exports: Vec<String>,
    },

    /// The component implements a contract version this host does not support.
    #[error(
        "{name} implements rapport:connector@{found}, which this build does not support; supported versions: {}",
        supported.join(", ")
    )]
    UnsupportedVersion {
        /// Where it came from.
        name: String,
        /// The version it implements.
        found: String,
        /// The versions this host can run.
        supported: Vec<String>,
    },

    /// The component needs imports the host does not provide, or failed to start.
    #[error("{name} cannot be instantiated: {message}")]
    Instantiate {
        /// Where it came from.
        name: String,
        /// wasmtime's explanation.
        message: String,
    },

    /// `describe` returned something unusable.
    #[error("{name} describes itself incorrectly: {reason}")]
    InvalidManifest {
        /// Where it came from.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// The call ran past its deadline and was interrupted.
    #[error("the call did not finish within its {deadline_ms} ms deadline and was stopped")]
    Timeout {
        /// The deadline.
        deadline_ms: u64,
    },

    /// The plugin tried to use more memory than allowed.
    #[error("the plugin tried to use more than {limit_bytes} bytes of memory and was stopped")]
    MemoryExceeded {
        /// The cap.
        limit_bytes: usize,
    },

    /// The plugin overflowed its stack (e.g. runaway recursion).
    #[error("the plugin overflowed its stack and was stopped")]
    StackOverflow,

    /// The plugin panicked or reached unreachable code.
    #[error("the plugin crashed (panic or unreachable code): {message}")]
    Crashed {
        /// The trap, with a wasm backtrace when available.
        message: String,
    },

    /// Any other trap.
    #[error("the plugin trapped: {message}")]
    Trapped {
        /// The trap.
        message: String,
    },

    /// The plugin returned more events than allowed.
    #[error("the plugin returned {count} events; at most {max} are allowed per call")]
    TooManyEvents {
        /// How many it returned.
        count: usize,
        /// The cap.
        max: usize,
    },

    /// The plugin returned more text than allowed.
    #[error("the plugin returned {bytes} bytes; at most {max} are allowed per call")]
    TooLarge {
        /// How much it returned.
        bytes: usize,
        /// The cap.
        max: usize,
    },

    /// The plugin tried to reach a host it was not allowed to reach.
    #[error("the plugin tried to reach {target}, which is not allowed: {reason}")]
    ForbiddenNetwork {
        /// Where it tried to go.
        target: String,
        /// Why it was refused.
        reason: String,
    },

    /// An event the plugin returned breaks the event model.
    #[error("event {index} ({source_id}) returned by the plugin is invalid: {reason}")]
    InvalidEvent {
        /// Its position in the page.
        index: usize,
        /// Its source id.
        source_id: String,
        /// What is wrong.
        reason: String,
    },

    /// A page the plugin returned breaks a limit or rule of the contract beyond its
    /// events (its checkpoint or its deletes).
    #[error("the page returned by the plugin is invalid: {reason}")]
    InvalidPage {
        /// What is wrong.
        reason: String,
    },

    /// Every call slot of this connector is taken (a flood of webhook deliveries, say);
    /// the call was not started. Other connectors are not affected.
    #[error(
        "connector `{connector}` is already running {running} calls, its limit; try again in {retry_after_ms} ms"
    )]
    Busy {
        /// The connector.
        connector: String,
        /// Its calls running now.
        running: u32,
        /// A fair wait before trying again.
        retry_after_ms: u64,
    },

    /// The calls running at once, together, used the whole memory budget of the host
    /// (not this plugin's fault): the call was stopped and may be retried.
    #[error(
        "the plugin host's memory budget of {budget_bytes} bytes for all running calls was exhausted; the call was stopped and will be retried"
    )]
    MemoryBudgetExhausted {
        /// The budget.
        budget_bytes: usize,
    },

    /// The plugin reported a failure of its own.
    #[error(transparent)]
    Connector(#[from] ConnectorError),

    /// The host itself failed (engine setup, an internal error).
    #[error("plugin host error: {0}")]
    Host(String),
}

impl PluginError {
    /// The source id of the event a failure is about, when it is about one.
    pub fn source_id(&self) -> Option<&str> {
        match self {
            PluginError::InvalidEvent { source_id, .. } => Some(source_id),
            _ => None,
        }
    }

    /// Whether the failure is the plugin's own doing — a bug, a crash, or output that
    /// breaks the contract — and would most likely happen again on the same input,
    /// as opposed to a passing condition (the network, the source, the host's load)
    /// or a failure the connector reported itself.
    pub fn is_plugin_fault(&self) -> bool {
        matches!(
            self,
            PluginError::InvalidManifest { .. }
                | PluginError::Instantiate { .. }
                | PluginError::Timeout { .. }
                | PluginError::MemoryExceeded { .. }
                | PluginError::StackOverflow
                | PluginError::Crashed { .. }
                | PluginError::Trapped { .. }
                | PluginError::TooManyEvents { .. }
                | PluginError::TooLarge { .. }
                | PluginError::InvalidEvent { .. }
                | PluginError::InvalidPage { .. }
        )
    }
}
