//! Running the interrupt checks. The shared parts come from `testkit` (the `TERN-TEST`
//! lines, failure texts kept without a heap, the clock); kept here are this program's own:
//! the `irq::` group, the hook that runs before every line is printed, checks reported as
//! not run, and its pace of waiting.
//!
//! ```text
//! TERN-TEST ok irq::<name>
//! TERN-TEST FAIL irq::<name>: <why>
//! TERN-TEST end: <passed> passed, <failed> failed
//! ```
//!
//! # Invariants
//! No wait here is unbounded: every loop stops at a clock deadline and after a fixed
//! number of rounds, whatever the clock does.

pub use testkit::{ensure, fail, now, sleep_us, Check, Context, Why};

use testkit::{Pace, Tally};

/// Counts and reports checks.
pub struct Runner {
    tally: Tally,
    /// Run before each report line (turns UART loopback off so that the line is seen).
    before_print: fn(),
}

impl Runner {
    /// No checks yet.
    pub const fn new(before_print: fn()) -> Self {
        let mut tally = Tally::new("irqtests");
        tally.set_group("irq");
        Runner {
            tally,
            before_print,
        }
    }

    /// Runs one check and reports it.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Check) {
        let r = f();
        (self.before_print)();
        self.tally.report(name, r);
    }

    /// Reports `name` failed without running it (a prerequisite is missing).
    pub fn skip_failed(&mut self, name: &str, why: &str) {
        self.check(name, || fail!("not run: {}", why));
    }

    /// Prints the closing line and powers off with the failure count.
    pub fn finish(self) -> ! {
        (self.before_print)();
        self.tally.finish()
    }
}

/// The pace of every wait: 100 rounds of yielding, then sleeps; 100,000 rounds at most.
const PACE: Pace = Pace {
    rounds: 100_000,
    yield_rounds: 100,
};

/// Waits until `cond` holds, at most `timeout_us` (see `PACE`). Returns whether `cond`
/// held.
pub fn wait_until(timeout_us: u64, cond: impl FnMut() -> bool) -> bool {
    PACE.wait_until(timeout_us, cond)
}
