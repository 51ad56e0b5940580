//! The suite's harness: the shared parts come from `testkit` (the `TERN-TEST` lines, failure
//! messages, error expectations; see that crate), and the suite's own pace of waiting is
//! kept here: it only ever yields, never sleeps (the scheduling checks depend on which
//! threads may run while the main thread waits), plus a busy wait and the [`Board`].
//!
//! No wait here is unbounded: each ends at a clock deadline *and* after [`MAX_SPINS`]
//! rounds, so a kernel whose clock stands still cannot hang the suite either.

pub use testkit::{
    ensure, expect_sys, fail, ipc_code, now, sys_code, Cells, Check, Context, Tally, Why,
};

use testkit::Pace;

/// Most iterations any bounded loop makes, whatever the clock says.
pub const MAX_SPINS: u64 = 400_000;

/// The suite's waits: yield every round, never sleep.
const PACE: Pace = Pace {
    rounds: MAX_SPINS as u32,
    yield_rounds: MAX_SPINS as u32,
};

/// Waits until `cond` holds, yielding between tests, for at most `timeout_us` (and
/// [`MAX_SPINS`] iterations). Returns whether it held.
pub fn wait_until(timeout_us: u64, cond: impl FnMut() -> bool) -> bool {
    PACE.wait_until(timeout_us, cond)
}

/// Yields until `us` microseconds have passed (bounded by [`MAX_SPINS`]).
pub fn yield_for(us: u64) {
    PACE.pause(us)
}

/// Busy-waits without yielding until `us` microseconds have passed (bounded by
/// [`MAX_SPINS`] clock reads).
pub fn spin_for(us: u64) {
    let deadline = now().saturating_add(us);
    for _ in 0..MAX_SPINS {
        if now() >= deadline {
            return;
        }
    }
}

/// Words shared between a check and its worker threads (results, counters, flags).
pub type Board = Cells<32>;
