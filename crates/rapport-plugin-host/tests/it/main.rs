//! The plugin host's integration suite: real components built from `plugins/`, run
//! through the real host, against loopback upstreams.

mod support;

mod boundary;
mod containment;
mod contracts;
mod loading;
mod network;
mod oauth;
mod sync;
