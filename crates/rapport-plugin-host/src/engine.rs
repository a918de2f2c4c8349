//! The wasmtime engine and the linker every plugin is instantiated with.

use crate::config::HostConfig;
use crate::contract;
use crate::error::{PluginError, Result};
use crate::plugin::Plugin;
use crate::sandbox::{GuardedLookupData, MemoryBudget, Sandbox, guarded_lookup};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How often the engine's epoch advances. A call's deadline is counted in these ticks,
/// so a runaway plugin is stopped within one tick after its deadline.
pub const EPOCH_TICK_MS: u64 = 10;

/// Most wasm stack one call may use. Runaway recursion traps here, well before the
/// host's own stack is at risk.
const WASM_STACK_BYTES_MAX: usize = 1024 * 1024;

/// Runs connectors. Cheap to clone; clones share the engine, linker and cache.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<Sandbox>,
    pub(crate) config: HostConfig,
    /// One permit per pooling slot: a call waits for one instead of failing when the
    /// pool is full.
    pub(crate) calls: Arc<tokio::sync::Semaphore>,
    /// The memory every running call draws from.
    pub(crate) budget: Arc<MemoryBudget>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    /// Sets up the engine: component model, epoch interruption, a stack cap, the pooling
    /// allocator (or on-demand), and the compiled-component cache.
    pub fn new(config: HostConfig) -> Result<PluginHost> {
        let host_error =
            |what: &str, error: wasmtime::Error| PluginError::Host(format!("{what}: {error}"));
        let mut wasmtime_config = Config::new();
        wasmtime_config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(WASM_STACK_BYTES_MAX);
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| PluginError::Read {
                path: dir.display().to_string(),
                source,
            })?;
            let mut cache_config = CacheConfig::new();
            cache_config.with_directory(dir);
            let cache = Cache::new(cache_config)
                .map_err(|error| host_error("cannot open the compile cache", error))?;
            wasmtime_config.cache(Some(cache));
        }
        if config.pooling {
            let slots = config.concurrent_calls_max.max(1);
            let mut pooling = PoolingAllocationConfig::new();
            // A Rust connector is one component of a few core instances (its code, the
            // WASI adapter, shims) with one or two memories and tables each.
            pooling
                .total_component_instances(slots)
                .total_core_instances(slots * 8)
                .total_memories(slots * 4)
                .total_tables(slots * 8)
                .total_stacks(slots)
                .max_core_instances_per_component(16)
                .max_memories_per_component(4)
                .max_tables_per_component(8)
                .max_memory_size(config.limits.memory_bytes_max);
            wasmtime_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        let engine = Engine::new(&wasmtime_config)
            .map_err(|error| host_error("cannot start wasmtime", error))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|error| host_error("cannot link WASI", error))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|error| host_error("cannot link wasi:http", error))?;
        // Name lookups answer only for granted names (see `GuardedLookup`): linked over
        // WASI's own, which would resolve anything.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::add_to_linker::<
            Sandbox,
            GuardedLookupData,
        >(&mut linker, guarded_lookup)
        .map_err(|error| host_error("cannot link the guarded name lookup", error))?;
        linker.allow_shadowing(false);
        contract::add_to_linker(&mut linker)
            .map_err(|error| host_error("cannot link the contract", error))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        let calls = Arc::new(tokio::sync::Semaphore::new(
            config.concurrent_calls_max.max(1) as usize,
        ));
        let budget = Arc::new(MemoryBudget::new(config.memory_bytes_max));
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                calls,
                budget,
                ticker_stop,
            }),
        })
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Loads a connector from a `.wasm` file: compiles it (or takes it from the cache),
    /// checks it implements a supported contract version, and reads its manifest.
    pub async fn load(&self, path: &Path) -> Result<Plugin> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| PluginError::Read {
                path: path.display().to_string(),
                source,
            })?;
        self.load_bytes(&path.display().to_string(), &bytes).await
    }

    /// Loads a connector from bytes; `name` appears in errors and logs.
    pub async fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin> {
        let engine = self.inner.engine.clone();
        let owned = bytes.to_vec();
        // Compiling takes seconds for a large component: keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .map_err(|error| PluginError::Host(format!("compiler task failed: {error}")))?
            .map_err(|error| PluginError::Compile {
                name: name.to_owned(),
                message: format!("{error:#}"),
            })?;
        Plugin::new(self.clone(), name, component).await
    }
}

/// Advances the engine's epoch every tick until the host is dropped.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("rapport-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawn the epoch thread");
}
