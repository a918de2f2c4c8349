//! The JSON API and the web UI driven through the router (no socket), on both backends.

mod support;

mod audit;
mod auth;
mod flows;
mod fuzz;
mod openapi;
mod permissions;
mod resilience;
mod surface;
mod visibility;
mod web;
