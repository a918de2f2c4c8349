//! Misbehaves on purpose: a test program, never shipped. The setting `attack` picks
//! how `sync` misbehaves (and `webhook_attack` how `handle-webhook` does):
//!
//! Containing a call:
//! - `none`: behaves (returns one event), the baseline;
//! - `loop`: spins forever;
//! - `memory`: allocates until it cannot;
//! - `hold`: allocates `mb` MiB and spins until its deadline (memory held, not growing);
//! - `recursion`: recurses with small frames until the wasm stack overflows;
//! - `shadow-recursion`: recurses with large frames, which live on the guest's own
//!   stack in linear memory, until that overflows;
//! - `spin`: computes for `iterations` rounds, then returns (CPU-bound, bounded);
//! - `panic`: panics;
//! - `flood`: returns `count` events (default 10 million);
//! - `huge`: returns one event with a `bytes`-long summary;
//! - `stdout`: prints `lines` lines of `bytes` bytes each to stdout, then behaves;
//!
//! What it returns (each refused by the host or the store):
//! - `float`: a float attribute of `value` (`nan`, `inf`, `-inf`);
//! - `money`: two subscription-like events with `mrr` of i64::MAX minor units;
//! - `kind`: an event of the kind in the setting `kind` (undeclared, or rapport's own);
//! - `checkpoint`: a checkpoint of `bytes` bytes;
//! - `attribute`: a text attribute of `bytes` bytes;
//! - `nul`: NUL and other control characters in the title, summary and an attribute;
//! - `nul-id`: a NUL in the source id;
//! - `nul-checkpoint`: a NUL in the checkpoint;
//!
//! The network:
//! - `http`: requests `url` (a host it was not granted);
//! - `tcp`: connects to `address` (an address it was not granted);
//! - `dns`: looks up `name` (a name no grant covers) and reports what it got;
//! - `snoop`: looks for environment variables, arguments and files, and reports what
//!   it found in an event's summary.
//!
//! It declares one kind, `hostile.probe`, and the hosts `127.0.0.1:*` and
//! `localhost:*`.

use rapport_pdk::prelude::*;
use rapport_pdk::{Attribute, Money};
use std::hint::black_box;

struct Hostile;

/// The one kind it declares.
const KIND: &str = "hostile.probe";

impl Connector for Hostile {
    fn describe() -> Manifest {
        manifest("hostile", "0.1.0", "Misbehaves on purpose")
            .emits(&[KIND])
            .setting("attack", "What sync does", true)
            .setting("webhook_attack", "What handle-webhook does", false)
            .setting("iterations", "Rounds for `spin`", false)
            .setting("count", "Events for `flood`", false)
            .setting(
                "bytes",
                "Sizes for `huge`, `stdout`, `checkpoint`, `attribute`",
                false,
            )
            .setting("lines", "Lines for `stdout`", false)
            .setting("mb", "MiB for `hold`", false)
            .setting("limit", "Depth for `recursion`", false)
            .setting("value", "The float for `float`", false)
            .setting("kind", "The kind for `kind`", false)
            .setting("url", "Where `http` goes", false)
            .setting("address", "Where `tcp` goes", false)
            .setting("name", "What `dns` looks up", false)
            .needs_host("127.0.0.1:*")
            .needs_host("localhost:*")
            .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        match config.get("attack") {
            Some("check-fails") => Err(ConnectorError::Auth(
                "the hostile check refuses, as asked".into(),
            )),
            _ => Ok(()),
        }
    }

    fn sync(config: Config, _: Option<String>) -> Result<Page, ConnectorError> {
        let attack = config.require("attack")?.to_owned();
        misbehave(&config, &attack)
    }

    fn handle_webhook(config: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        match config.get("webhook_attack") {
            None | Some("none") => Ok(vec![probe("hook", "delivered")]),
            // A good event first, so a test sees the bad one refused alone.
            Some(attack) => misbehave(&config, attack).map(|page| {
                let mut events = vec![probe("hook", "delivered")];
                events.extend(page.events);
                events
            }),
        }
    }
}

fn number(config: &Config, key: &str, default: usize) -> usize {
    config
        .get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn probe(id: &str, title: &str) -> Event {
    event(id, KIND, 1_767_225_600_000_000, title)
}

fn misbehave(config: &Config, attack: &str) -> Result<Page, ConnectorError> {
    match attack {
        "none" | "check-fails" => Ok(Page::done(vec![probe("ok", "all good")])),
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
        "hold" => {
            let held = vec![1u8; number(config, "mb", 100) * 1024 * 1024];
            black_box(&held);
            let mut counter: u64 = 0;
            loop {
                counter =
                    black_box(counter.wrapping_add(u64::from(held[counter as usize % held.len()])));
            }
        }
        "recursion" => {
            // The limit comes from outside, so the compiler cannot bound the depth.
            let limit = config
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            Ok(Page::done(vec![probe(
                "deep",
                &format!("depth {}", recurse(0, limit)),
            )]))
        }
        "shadow-recursion" => Ok(Page::done(vec![probe(
            "deep",
            &format!("depth {}", recurse_with_big_frames(black_box(0))),
        )])),
        "spin" => {
            let mut state: u64 = 0x2545_f491_4f6c_dd1d;
            for round in 0..number(config, "iterations", 10_000_000) as u64 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(round);
            }
            Ok(Page::done(vec![probe("spin", &state.to_string())]))
        }
        "panic" => panic!("hostile plugin panicked on purpose"),
        "flood" => {
            let count = number(config, "count", 10_000_000);
            let events = (0..count)
                .map(|index| probe(&index.to_string(), "x"))
                .collect();
            Ok(Page::done(events))
        }
        "huge" => {
            // Past the builder, which would cut the summary to the limit.
            let mut event = probe("huge", "huge");
            event.summary = "x".repeat(number(config, "bytes", 64 * 1024 * 1024));
            Ok(Page::done(vec![event]))
        }
        "stdout" => {
            let line = "o".repeat(number(config, "bytes", 1024));
            for _ in 0..number(config, "lines", 1_000) {
                println!("{line}");
            }
            eprint!("{line}");
            Ok(Page::done(vec![probe("printed", "printed")]))
        }
        "float" => {
            let value = match config.get("value").unwrap_or("nan") {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                _ => f64::NAN,
            };
            Ok(Page::done(vec![
                probe("float", "a float").attribute("ratio", AttributeValue::Float(value)),
            ]))
        }
        "money" => {
            let subscription = |id: &str| {
                probe(id, "subscription")
                    .text("subscription_id", id)
                    .attribute(
                        "mrr",
                        AttributeValue::Money(Money {
                            minor_units: i64::MAX,
                            currency: "USD".into(),
                        }),
                    )
            };
            Ok(Page::done(vec![
                subscription("sub_a"),
                subscription("sub_b"),
            ]))
        }
        "kind" => {
            let kind = config.require("kind")?;
            Ok(Page::done(vec![event(
                "forged",
                kind,
                1_767_225_600_000_000,
                "forged",
            )]))
        }
        "checkpoint" => Ok(Page::with_checkpoint(
            vec![probe("ok", "all good")],
            "c".repeat(number(config, "bytes", 100 * 1024 * 1024)),
            false,
        )),
        "attribute" => {
            // Past the builder, which would cut the text to the limit.
            let mut event = probe("attribute", "a big attribute");
            event.attributes.push(Attribute {
                name: "blob".into(),
                value: AttributeValue::Text("a".repeat(number(config, "bytes", 30 * 1024 * 1024))),
            });
            Ok(Page::done(vec![event]))
        }
        "nul" => Ok(Page::done(vec![
            probe("nul", "Invoice\0 paid \u{1b}[31m")
                .summary("line\0one\nline two")
                .text("plan", "pro\0"),
        ])),
        "nul-id" => Ok(Page::done(vec![probe("nul\0id", "a NUL in the id")])),
        "nul-checkpoint" => Ok(Page::with_checkpoint(
            vec![probe("ok", "all good")],
            "after\0here".into(),
            false,
        )),
        "http" => {
            let outcome = http::get(config.require("url")?).send();
            let summary = match outcome {
                Ok(response) => format!("reached it: HTTP {}", response.status),
                Err(error) => format!("refused: {error}"),
            };
            Ok(Page::done(vec![probe("http", "http").summary(&summary)]))
        }
        "tcp" => {
            let summary = match std::net::TcpStream::connect(config.require("address")?) {
                Ok(_) => "connected".to_owned(),
                Err(error) => format!("refused: {error}"),
            };
            Ok(Page::done(vec![probe("tcp", "tcp").summary(&summary)]))
        }
        "dns" => {
            use std::net::ToSocketAddrs;
            let name = config.require("name")?;
            let summary = match (name, 80).to_socket_addrs() {
                Ok(addresses) => format!(
                    "resolved: {:?}",
                    addresses.map(|a| a.ip().to_string()).collect::<Vec<_>>()
                ),
                Err(error) => format!("refused: {error}"),
            };
            Ok(Page::done(vec![probe("dns", "dns").summary(&summary)]))
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
            Ok(Page::done(vec![probe("snoop", "snoop").summary(&summary)]))
        }
        other => Err(ConnectorError::Config(format!("unknown attack `{other}`"))),
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
