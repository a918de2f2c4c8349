//! Paths of the connectors in `plugins/`, built for wasm32-wasip2 by this crate's build
//! script: `EXAMPLE_FEED` (a small, well-behaved connector) and `HOSTILE` (one that
//! misbehaves on purpose, to prove containment).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
