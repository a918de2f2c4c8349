//! Plugin host costs, each against a peer measured in the same run:
//! - instantiate + call: pooling allocator vs on-demand;
//! - returning 1 / 100 / 1,000 events;
//! - 1,000 events through the host vs the same events built natively;
//! - a CPU-bound guest under our epoch deadline (yielding every tick) vs the same guest
//!   on a plain engine without epoch interruption;
//! - loading a component: compiling it vs taking it from the on-disk cache.
//!
//! Run: `cargo bench -p rapport-plugin-host --bench host`

use chrono::DateTime;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rapport_core::timeline::{EventKind, NewEvent};
use rapport_plugin_host::{CallLimits, Connector, Grants, HostConfig, PluginHost};
use std::hint::black_box;
use std::time::Duration;
use tokio::runtime::Runtime;
use wasmtime::component::{Component, Linker, ResourceTable, Val};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

const SPIN_ITERATIONS: u64 = 200_000_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn host(pooling: bool) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: None,
        pooling,
        concurrent_calls_max: 4,
        limits: CallLimits::default(),
        ..HostConfig::default()
    })
    .unwrap()
}

fn hostile(runtime: &Runtime, host: &PluginHost, settings: &[(&str, &str)]) -> Connector {
    let plugin = runtime
        .block_on(host.load(std::path::Path::new(rapport_testkit::HOSTILE)))
        .unwrap();
    plugin
        .connector(Grants {
            connector_id: "bench".into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Grants::default()
        })
        .unwrap()
}

fn instantiate_and_call(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("instantiate_and_call");
    for (name, pooling) in [("pooling", true), ("on_demand", false)] {
        let connector = hostile(&runtime, &host(pooling), &[("attack", "none")]);
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(connector.sync(None).await.unwrap()) })
        });
    }
    group.finish();
}

fn events_returned(c: &mut Criterion) {
    let runtime = runtime();
    let host = host(true);
    let mut group = c.benchmark_group("events_returned");
    for count in [1usize, 100, 1_000] {
        let connector = hostile(
            &runtime,
            &host,
            &[("attack", "flood"), ("count", &count.to_string())],
        );
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, &count| {
            b.to_async(&runtime).iter(|| async {
                let page = connector.sync(None).await.unwrap();
                assert_eq!(page.events.len(), count);
                black_box(page)
            })
        });
    }
    group.finish();
}

/// The same 1,000 events the `flood` guest maps, built and validated natively.
fn native_events(count: usize) -> Vec<NewEvent> {
    let kind = EventKind::parse("hostile.probe").unwrap();
    let epoch = DateTime::from_timestamp_micros(0).unwrap();
    (0..count)
        .map(|index| {
            let event = NewEvent::new("bench", index.to_string(), kind.clone(), epoch, "x");
            event.validate().unwrap();
            event
        })
        .collect()
}

fn per_thousand_events(c: &mut Criterion) {
    let runtime = runtime();
    let host = host(true);
    let connector = hostile(&runtime, &host, &[("attack", "flood"), ("count", "1000")]);
    let mut group = c.benchmark_group("per_1k_events");
    group.bench_function("through_plugin", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(connector.sync(None).await.unwrap()) })
    });
    group.bench_function("native", |b| b.iter(|| black_box(native_events(1_000))));
    group.finish();
}

/// A plain engine without epoch interruption, for the epoch-overhead peer.
struct Plain {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
}

impl WasiView for Plain {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Plain {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

async fn spin_without_epochs(
    engine: &Engine,
    linker: &Linker<Plain>,
    component: &Component,
) -> Val {
    let mut store = Store::new(
        engine,
        Plain {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
        },
    );
    let instance = linker
        .instantiate_async(&mut store, component)
        .await
        .unwrap();
    let interface = instance
        .get_export_index(&mut store, None, "rapport:connector/plugin@0.1.0")
        .unwrap();
    let sync = instance
        .get_export_index(&mut store, Some(&interface), "sync")
        .unwrap();
    let sync = instance.get_func(&mut store, sync).unwrap();
    let entry = |key: &str, value: &str| {
        Val::Record(vec![
            ("key".into(), Val::String(key.into())),
            ("value".into(), Val::String(value.into())),
        ])
    };
    let config = Val::Record(vec![
        (
            "settings".into(),
            Val::List(vec![
                entry("attack", "spin"),
                entry("iterations", &SPIN_ITERATIONS.to_string()),
            ]),
        ),
        ("secrets".into(), Val::List(Vec::new())),
    ]);
    let mut results = [Val::Bool(false)];
    sync.call_async(&mut store, &[config, Val::Option(None)], &mut results)
        .await
        .unwrap();
    results[0].clone()
}

fn epoch_overhead(c: &mut Criterion) {
    let runtime = runtime();
    let host = host(true);
    let connector = hostile(
        &runtime,
        &host,
        &[
            ("attack", "spin"),
            ("iterations", &SPIN_ITERATIONS.to_string()),
        ],
    );
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, rapport_testkit::HOSTILE).unwrap();
    let mut linker: Linker<Plain> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    // The contract's one host import; logs are discarded here.
    linker
        .instance("rapport:connector/host@0.1.0")
        .unwrap()
        .func_new("log", |_, _, _, _| Ok(()))
        .unwrap();

    let mut group = c.benchmark_group("cpu_bound_guest_200M_rounds");
    group.sample_size(20);
    group.bench_function("rapport_host_epochs_yield_every_10ms", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(connector.sync(None).await.unwrap()) })
    });
    group.bench_function("plain_engine_no_epochs", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(spin_without_epochs(&engine, &linker, &component).await) })
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let runtime = runtime();
    let path = std::path::Path::new(rapport_testkit::HOSTILE);
    let cache = tempfile::tempdir().unwrap();
    let cached = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..HostConfig::default()
    })
    .unwrap();
    runtime.block_on(cached.load(path)).unwrap();
    let uncached = host(true);
    let mut group = c.benchmark_group("load_290kb_component");
    group.sample_size(10);
    group.bench_function("compile", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(uncached.load(path).await.unwrap()) })
    });
    group.bench_function("from_disk_cache", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cached.load(path).await.unwrap()) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = instantiate_and_call, events_returned, per_thousand_events, epoch_overhead, load
}
criterion_main!(benches);
