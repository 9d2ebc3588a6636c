//! A deterministic test bed for the engine: str0m clients (the role browsers play), a virtual
//! clock and an in-memory network whose per-link loss can be set.

#![allow(dead_code)]

mod bed;
mod checks;
mod client;
mod media;
mod meter;
mod scenarios;

// Each test crate uses a part of the bed.
#[allow(unused_imports)]
pub use bed::*;
#[allow(unused_imports)]
pub use checks::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use media::*;
#[allow(unused_imports)]
pub use meter::set_metering;
#[allow(unused_imports)]
pub use scenarios::*;
