//! Threads and sockets around the sans-IO [`core`](crate::core).
//!
//! - [`udp`]: the media socket, batched receive and send (on Linux from a socket of its own,
//!   `send_socket`).
//! - [`worker`]: a thread owning an engine, its rooms and its socket.
//! - [`handle`]: what the signalling side calls; places rooms on workers.
//! - [`metrics`]: Prometheus metrics, published by each worker once a second.
//! - [`overload`]: what a worker does when it cannot keep up with its input.
//! - [`process`]: the `process_*` metrics, read from `/proc`.
//! - [`relay`]: the links between nodes that serve one room.
//! - [`rooms`]: the room registry and the placement of rooms and participants.
//! - [`service`]: the REST API's operations on rooms and participants.
//! - [`wire`]: the engine's events turned into protocol messages, webhooks and metrics.
//! - [`sessions`]: each participant's event queue; held messages and resume after a drop.
//! - [`webhook`]: the bounded webhook queue and its senders.

pub mod cluster;
pub mod handle;
pub mod metrics;
pub mod overload;
pub mod process;
pub mod relay;
pub mod rooms;
#[cfg(target_os = "linux")]
mod send_socket;
#[cfg(target_os = "linux")]
mod sendmmsg;
mod service;
pub mod sessions;
pub mod tcp;
pub mod turn;
pub mod udp;
pub mod webhook;
pub mod wire;
pub mod worker;
