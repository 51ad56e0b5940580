//! The clock and waiting that always ends.
//!
//! # Invariants
//! No wait here is unbounded: every loop ends at a clock deadline *and* after a fixed
//! number of rounds, so a kernel whose clock stands still cannot hang a test program.

use abi::time::Time;

/// The system clock, µs since boot.
pub fn now() -> u64 {
    l4::syscall::system_clock()
}

/// Sleeps about `us` microseconds (an IPC receive from nobody with that timeout).
pub fn sleep_us(us: u64) {
    let _ = l4::ipc::sleep(Time::Period { us });
}

/// How a program's waiting loops pace themselves: each round tests the condition, then
/// yields (the first `yield_rounds` rounds: threads of the same priority run) or sleeps
/// [`Pace::SLEEP_US`] (later rounds: lower priorities run too), for at most `rounds`
/// rounds whatever the clock says.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Most rounds of one wait.
    pub rounds: u32,
    /// Rounds that yield before the wait starts sleeping (≥ `rounds`: it never sleeps).
    pub yield_rounds: u32,
}

impl Pace {
    /// The sleep of a round past `yield_rounds`, µs.
    pub const SLEEP_US: u64 = 500;

    /// Waits until `cond` holds, for at most `timeout_us` (and [`Pace::rounds`] rounds).
    /// Returns whether `cond` held.
    pub fn wait_until(&self, timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = now().saturating_add(timeout_us);
        for round in 0..self.rounds {
            if cond() {
                return true;
            }
            if now() >= deadline {
                break;
            }
            if round < self.yield_rounds {
                l4::thread::yield_now();
            } else {
                sleep_us(Self::SLEEP_US);
            }
        }
        cond()
    }

    /// Lets the other threads run for about `us` microseconds (a wait for nothing).
    pub fn pause(&self, us: u64) {
        let _ = self.wait_until(us, || false);
    }
}
