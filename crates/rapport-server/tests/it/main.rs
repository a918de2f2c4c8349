//! rapport-server's integration tests, one binary: the JSON API and the web UI driven
//! through the router (no socket) on both backends, webhook intake and health over HTTP
//! (`http`), and the configuration golden files (`config_golden`).

mod support;

mod audit;
mod auth;
mod config_golden;
mod connections;
mod contracts;
mod flows;
mod fuzz;
mod http;
mod openapi;
mod permissions;
mod resilience;
mod secrets;
mod sign_in;
mod surface;
mod visibility;
mod web;
