//! The check runner of `ipctests` and what every check uses. The shared parts come from
//! `testkit` (failure messages [`Why`], `fail!` / `ensure!`, shared words [`Cells`], the
//! clock); kept here are this program's own: check groups, the progress record the
//! watchdog reads ([`stalled`]), and its pace of waiting.
//!
//! Output (read by `cargo xtask test`, one line each):
//!
//! ```text
//! TERN-TEST ok <group>::<name>
//! TERN-TEST FAIL <group>::<name>: <why>
//! TERN-TEST end: <passed> passed, <failed> failed
//! ```
//!
//! # Invariants
//! Nothing here waits without bound: every loop ends at a clock deadline *and* after a
//! fixed number of rounds, so a kernel whose clock stands still cannot hang the program.

use core::sync::atomic::{AtomicU64, Ordering};

pub use testkit::{ensure, fail, now, Cells, Check, Context, Why};

use testkit::{Pace, Tally};

/// Runs checks and counts them, noting progress before and after each.
pub struct Runner(Tally);

impl Runner {
    /// No check run yet (group "ipc").
    pub const fn new() -> Self {
        let mut t = Tally::new("ipctests");
        t.set_group("ipc");
        Self(t)
    }

    /// Names the group of the checks that follow (the prefix of their names).
    pub fn group(&mut self, group: &'static str) {
        self.0.set_group(group);
    }

    /// Runs `check` and prints its line.
    pub fn check(&mut self, name: &'static str, check: impl FnOnce() -> Check) {
        progress(name);
        let result = check();
        progress(name);
        self.0.report(name, result);
    }

    /// Checks run so far.
    pub fn count(&self) -> u64 {
        self.0.count()
    }

    /// Prints the closing line, powers the machine off with the number of failures as
    /// its status, and parks should the kernel not power off.
    pub fn finish(self) -> ! {
        self.0.finish()
    }
}

/// When the program last made progress (a check began or ended), µs.
static PROGRESS_AT: AtomicU64 = AtomicU64::new(0);
/// The name of the check that began or ended then (a `&'static str` as address and length).
static PROGRESS_NAME: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// How long the program may go without progress before the monitor steps in, µs.
static ALLOWANCE: AtomicU64 = AtomicU64::new(DEFAULT_ALLOWANCE_US);
/// The usual allowance: far above any check's own bounds.
pub const DEFAULT_ALLOWANCE_US: u64 = 15_000_000;

/// Notes progress: check `name` begins or ends now.
pub fn progress(name: &'static str) {
    PROGRESS_NAME[0].store(name.as_ptr() as u64, Ordering::SeqCst);
    PROGRESS_NAME[1].store(name.len() as u64, Ordering::SeqCst);
    PROGRESS_AT.store(now(), Ordering::SeqCst);
}

/// Sets how long the program may go without progress (for long runs: the stress test).
pub fn allow(us: u64) {
    ALLOWANCE.store(us, Ordering::SeqCst);
    PROGRESS_AT.store(now(), Ordering::SeqCst);
}

/// If the program has gone longer than its allowance without progress: for how long, and
/// the last check named.
pub fn stalled() -> Option<(u64, &'static str)> {
    let at = PROGRESS_AT.load(Ordering::SeqCst);
    let dt = now().saturating_sub(at);
    if at == 0 || dt <= ALLOWANCE.load(Ordering::SeqCst) {
        return None;
    }
    let (ptr, len) = (
        PROGRESS_NAME[0].load(Ordering::SeqCst),
        PROGRESS_NAME[1].load(Ordering::SeqCst),
    );
    let name = if ptr == 0 {
        ""
    } else {
        // SAFETY: `progress` stored the address and length of a `&'static str`, which
        // stays valid and unchanged for the whole program.
        let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
        core::str::from_utf8(bytes).unwrap_or("")
    };
    Some((dt, name))
}

/// The pace of every wait: 200 rounds of yielding (threads of the same priority run on a
/// yield), then sleeps (lower priorities run only while this thread sleeps); 200,000
/// rounds at most.
const PACE: Pace = Pace {
    rounds: 200_000,
    yield_rounds: 200,
};

/// Waits until `cond` holds, for at most `timeout_us` (see `PACE`). Returns whether
/// `cond` held.
pub fn wait_until(timeout_us: u64, cond: impl FnMut() -> bool) -> bool {
    PACE.wait_until(timeout_us, cond)
}

/// Lets the other threads run for about `us` microseconds (yielding, then sleeping).
pub fn pause(us: u64) {
    PACE.pause(us)
}
