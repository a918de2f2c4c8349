//! Misbehaves on purpose. The setting `attack` picks how:
//!
//! - `none`: behaves (returns one event), the baseline;
//! - `loop`: spins forever;
//! - `memory`: allocates until it cannot;
//! - `recursion`: recurses with small frames until the wasm stack overflows;
//! - `shadow-recursion`: recurses with large frames, which live on the guest's own
//!   stack in linear memory, until that overflows;
//! - `spin`: computes for `iterations` rounds, then returns (CPU-bound, bounded);
//! - `panic`: panics;
//! - `flood`: returns `count` events (default 10 million);
//! - `huge`: returns one event with a `bytes`-long summary;
//! - `http`: requests `url` (a host it was not granted);
//! - `tcp`: connects to `address` (an address it was not granted);
//! - `snoop`: looks for environment variables, arguments and files, and reports what
//!   it found in an event's summary.

use rapport_pdk::prelude::*;
use std::hint::black_box;

struct Hostile;

impl Connector for Hostile {
    fn describe() -> Manifest {
        manifest("hostile", "0.1.0", "Misbehaves on purpose")
            .emits(&["note"])
            .setting("attack", "What to do", true)
            .needs_host("127.0.0.1:*")
            .into()
    }

    fn check(_: Config) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn sync(config: Config, _: Option<String>) -> Result<Page, ConnectorError> {
        let number = |key: &str, default: usize| {
            config
                .get(key)
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        match config.require("attack")? {
            "none" => Ok(Page::done(vec![event("ok", "note", 0, "all good")])),
            "loop" => {
                let mut counter: u64 = 0;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1024 * 1024]);
                    black_box(&hoard);
                }
            }
            "recursion" => {
                // The limit comes from outside, so the compiler cannot bound the depth.
                let limit = config
                    .get("limit")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX);
                Ok(Page::done(vec![event(
                    "deep",
                    "note",
                    0,
                    &format!("depth {}", recurse(0, limit)),
                )]))
            }
            "shadow-recursion" => Ok(Page::done(vec![event(
                "deep",
                "note",
                0,
                &format!("depth {}", recurse_with_big_frames(black_box(0))),
            )])),
            "spin" => {
                let mut state: u64 = 0x2545_f491_4f6c_dd1d;
                for round in 0..number("iterations", 10_000_000) as u64 {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(round);
                }
                Ok(Page::done(vec![event(
                    "spin",
                    "note",
                    0,
                    &state.to_string(),
                )]))
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "flood" => {
                let count = number("count", 10_000_000);
                let events = (0..count)
                    .map(|index| event(&index.to_string(), "note", 0, "x"))
                    .collect();
                Ok(Page::done(events))
            }
            "huge" => {
                let bytes = number("bytes", 64 * 1024 * 1024);
                Ok(Page::done(vec![
                    event("huge", "note", 0, "huge").summary(&"x".repeat(bytes)),
                ]))
            }
            "http" => {
                let outcome = http::get(config.require("url")?).send();
                let summary = match outcome {
                    Ok(response) => format!("reached it: HTTP {}", response.status),
                    Err(error) => format!("refused: {error}"),
                };
                Ok(Page::done(vec![
                    event("http", "note", 0, "http").summary(&summary),
                ]))
            }
            "tcp" => {
                let summary = match std::net::TcpStream::connect(config.require("address")?) {
                    Ok(_) => "connected".to_owned(),
                    Err(error) => format!("refused: {error}"),
                };
                Ok(Page::done(vec![
                    event("tcp", "note", 0, "tcp").summary(&summary),
                ]))
            }
            "snoop" => {
                let env: Vec<String> = std::env::vars().map(|(key, _)| key).collect();
                let args: Vec<String> = std::env::args().collect();
                let files: Vec<String> = ["/etc/passwd", "/proc/self/environ", ".", "/"]
                    .iter()
                    .filter_map(|path| {
                        std::fs::read(path)
                            .ok()
                            .map(|_| path.to_string())
                            .or_else(|| {
                                std::fs::read_dir(path)
                                    .ok()
                                    .map(|_| format!("{path} (dir)"))
                            })
                    })
                    .collect();
                let summary = format!("env={env:?} args={args:?} files={files:?}");
                Ok(Page::done(vec![
                    event("snoop", "note", 0, "snoop").summary(&summary),
                ]))
            }
            other => Err(ConnectorError::Config(format!("unknown attack `{other}`"))),
        }
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Ok(Vec::new())
    }
}

/// Small frames: locals stay in wasm locals, so each call uses the wasm stack.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    // Not a plain accumulator, so it cannot be turned into a loop.
    recurse(depth + 1, limit).wrapping_mul(3) ^ depth
}

/// Large frames: the array lives on the shadow stack in linear memory.
#[inline(never)]
fn recurse_with_big_frames(depth: u64) -> u64 {
    let padding = black_box([depth; 64]);
    if black_box(depth) == u64::MAX {
        return padding[0];
    }
    recurse_with_big_frames(depth + 1).wrapping_add(padding[1])
}

rapport_pdk::export_connector!(Hostile);
