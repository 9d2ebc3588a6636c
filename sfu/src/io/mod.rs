//! Threads and sockets around the sans-IO [`core`](crate::core).
//!
//! - [`udp`]: the media socket, batched receive and send.
//! - [`worker`]: a thread owning an engine, its rooms and its socket.
//! - [`handle`]: what the signalling side calls; places rooms on workers.

pub mod handle;
pub mod udp;
pub mod worker;
