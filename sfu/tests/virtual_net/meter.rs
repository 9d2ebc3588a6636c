//! Counting the engine's own instructions under Callgrind.
//!
//! `loadtest/scripts/instructions.sh` runs the bed under
//! `valgrind --tool=callgrind --collect-atstart=no`. With the meter on, the bed switches
//! Callgrind's collection on just before each call into the engine and off again just after, so
//! the count is the server's work alone: not the clients', not the bed's. Without Valgrind the
//! switch is a few rotations of a register that leave it as it was.

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// Starts (or stops) counting the engine's calls from the next one on.
pub fn set_metering(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Runs `f` (a call into the engine) with Callgrind's collection on, when metering.
#[inline(always)]
pub fn metered<R>(f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    toggle_collect();
    let r = f();
    toggle_collect();
    r
}

/// Callgrind's `TOGGLE_COLLECT` client request: the tool code ('C', 'T') in the top half, the
/// request's number (2) in the bottom.
const TOGGLE_COLLECT: u64 = ((b'C' as u64) << 24 | (b'T' as u64) << 16) + 2;

/// Issues a Valgrind client request: the four rotations of `rdi` (by 128 bits in all, so it
/// ends unchanged) followed by `xchg rbx, rbx` are the marker Valgrind looks for; `rax` points at
/// the request and its five arguments, `rdx` carries the default answer in and the answer out.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn toggle_collect() {
    let request: [u64; 6] = [TOGGLE_COLLECT, 0, 0, 0, 0, 0];
    // SAFETY: the sequence leaves every register as it was but `rdx` (declared) and the flags
    // (clobbered by default); the request block lives on the stack for the whole sequence.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") request.as_ptr(),
            // The default answer in, Valgrind's answer (unused) out.
            inout("rdx") 0u64 => _,
            options(nostack),
        );
    }
}

/// Elsewhere nothing is counted.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn toggle_collect() {}
