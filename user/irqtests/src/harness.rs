//! Running checks: the `TERN-TEST` lines `cargo xtask test` reads, failure texts kept
//! without a heap, and bounded waiting.
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

use core::fmt::{self, Write};

use abi::time::Time;

/// A failure text in a fixed buffer (cut at [`Why::CAPACITY`] bytes).
pub struct Why {
    text: [u8; Why::CAPACITY],
    len: usize,
}

impl Why {
    /// Longest text kept.
    pub const CAPACITY: usize = 200;

    /// The text `args` formats to.
    pub fn new(args: fmt::Arguments) -> Self {
        let mut w = Why {
            text: [0; Self::CAPACITY],
            len: 0,
        };
        let _ = w.write_fmt(args);
        w
    }

    fn as_str(&self) -> &str {
        let b = &self.text[..self.len];
        core::str::from_utf8(b).unwrap_or_else(|e| core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""))
    }
}

impl Write for Why {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(Self::CAPACITY - self.len);
        self.text[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check returns.
pub type Outcome = Result<(), Why>;

/// Fails the enclosing check with a formatted text.
macro_rules! fail {
    ($($t:tt)*) => { return Err($crate::harness::Why::new(format_args!($($t)*))) };
}

/// Fails the enclosing check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => { if !($cond) { $crate::harness::fail!($($t)*); } };
}

pub(crate) use {ensure, fail};

/// `?` for any `Result` whose error is `Debug`: the error becomes "`what`: error".
pub trait Context<T> {
    /// Names the step that failed.
    fn ctx(self, what: &str) -> Result<T, Why>;
}

impl<T, E: fmt::Debug> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Why> {
        self.map_err(|e| Why::new(format_args!("{what}: {e:?}")))
    }
}

/// Counts and reports checks.
pub struct Runner {
    passed: u64,
    failed: u64,
    /// Run before each report line (turns UART loopback off so that the line is seen).
    before_print: fn(),
}

impl Runner {
    /// No checks yet.
    pub const fn new(before_print: fn()) -> Self {
        Runner {
            passed: 0,
            failed: 0,
            before_print,
        }
    }

    /// Runs one check and reports it.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        let r = f();
        (self.before_print)();
        match r {
            Ok(()) => {
                self.passed += 1;
                l4::println!("TERN-TEST ok irq::{}", name);
            }
            Err(why) => {
                self.failed += 1;
                l4::println!("TERN-TEST FAIL irq::{}: {}", name, why);
            }
        }
    }

    /// Reports `name` failed without running it (a prerequisite is missing).
    pub fn skip_failed(&mut self, name: &str, why: &str) {
        self.check(name, || fail!("not run: {}", why));
    }

    /// Prints the closing line and powers off with the failure count.
    pub fn finish(self) -> ! {
        (self.before_print)();
        l4::println!("TERN-TEST end: {} passed, {} failed", self.passed, self.failed);
        l4::kdb::power_off(self.failed);
        l4::thread::park()
    }
}

/// Microseconds since boot.
pub fn now() -> u64 {
    l4::syscall::system_clock()
}

/// Waits until `cond` holds, at most `timeout_us` (and 100,000 rounds): yields at
/// first, then sleeps 500 µs a round. Returns whether `cond` held.
pub fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = now().saturating_add(timeout_us);
    for round in 0..100_000u32 {
        if cond() {
            return true;
        }
        if now() >= end {
            break;
        }
        if round < 100 {
            l4::thread::yield_now();
        } else {
            let _ = l4::ipc::sleep(Time::Period { us: 500 });
        }
    }
    cond()
}

/// Sleeps `us` microseconds (an IPC receive timeout).
pub fn sleep_us(us: u64) {
    let _ = l4::ipc::sleep(Time::Period { us });
}
