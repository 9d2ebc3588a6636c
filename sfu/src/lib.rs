//! A WebRTC selective forwarding unit.
//!
//! - [`core`]: the sans-IO media engine (rooms, participants, forwarding); no clock, no sockets.
//! - [`io`]: worker threads that own engines and their UDP sockets, and the handle the signalling
//!   side talks to.
//! - [`config`]: the server's settings (file, environment, flags).
//! - [`ops`]: `/readyz`, `/metrics`, shutdown signals and TLS.
//! - [`listener`]: the HTTP listener's connection caps and timeouts.
//! - [`server`]: `sfu serve`, wiring workers, webhooks and the HTTP server.
//! - [`cli`]: the command line, with the `token` and `room` client commands.

pub mod cli;
pub mod cluster_api;
pub mod config;
pub mod core;
pub mod io;
pub mod listener;
pub mod ops;
pub mod server;
