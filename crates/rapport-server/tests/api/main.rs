//! The JSON API and the web UI driven through the router (no socket), on both backends.

mod support;

mod auth;
mod flows;
mod fuzz;
mod openapi;
mod resilience;
mod visibility;
mod web;
