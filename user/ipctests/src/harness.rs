//! The check runner and what every check uses: failure messages without a heap
//! ([`Msg`]), the `fail!` / `ensure!` macros, shared result words ([`Cells`]), the clock,
//! and bounded waiting.
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

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use abi::time::Time;
use l4::println;

/// A failure message, kept in a fixed buffer (there is no heap) and cut at
/// [`Msg::CAPACITY`] bytes.
#[derive(Clone)]
pub struct Msg {
    bytes: [u8; Msg::CAPACITY],
    len: usize,
}

impl Msg {
    /// Longest message kept.
    pub const CAPACITY: usize = 256;

    /// The message `args` formats to.
    pub fn format(args: fmt::Arguments) -> Self {
        let mut m = Msg {
            bytes: [0; Self::CAPACITY],
            len: 0,
        };
        let _ = m.write_fmt(args);
        m
    }

    /// The text, up to the last whole character.
    pub fn text(&self) -> &str {
        let b = &self.bytes[..self.len];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(Self::CAPACITY - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

/// What one check returns.
pub type Check = Result<(), Msg>;

/// Ends the enclosing check with a failure message.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::harness::Msg::format(format_args!($($arg)*)))
    };
}

/// Ends the enclosing check with a failure message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !($cond) {
            $crate::harness::fail!($($arg)*);
        }
    };
}

pub(crate) use {ensure, fail};

/// Turns any error into a failure message naming the step that failed.
pub trait Step<T> {
    /// `Err(e)` becomes "`what`: `e:?`".
    fn step(self, what: &str) -> Result<T, Msg>;
}

impl<T, E: fmt::Debug> Step<T> for Result<T, E> {
    fn step(self, what: &str) -> Result<T, Msg> {
        self.map_err(|e| Msg::format(format_args!("{}: {:?}", what, e)))
    }
}

/// Runs checks and counts them.
pub struct Runner {
    group: &'static str,
    passed: u64,
    failed: u64,
}

impl Runner {
    /// No check run yet.
    pub const fn new() -> Self {
        Self {
            group: "ipc",
            passed: 0,
            failed: 0,
        }
    }

    /// Names the group of the checks that follow (the prefix of their names).
    pub fn group(&mut self, group: &'static str) {
        self.group = group;
    }

    /// Runs `check` and prints its line.
    pub fn check(&mut self, name: &'static str, check: impl FnOnce() -> Check) {
        progress(name);
        let result = check();
        progress(name);
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("TERN-TEST ok {}::{}", self.group, name);
            }
            Err(why) => {
                self.failed += 1;
                println!("TERN-TEST FAIL {}::{}: {}", self.group, name, why);
            }
        }
    }

    /// Checks run so far.
    pub fn count(&self) -> u64 {
        self.passed + self.failed
    }

    /// Prints the closing line, powers the machine off with the number of failures as
    /// its status, and parks should the kernel not power off.
    pub fn finish(self) -> ! {
        println!(
            "TERN-TEST end: {} passed, {} failed",
            self.passed, self.failed
        );
        l4::kdb::power_off(self.failed);
        println!("ipctests: power off returned; parking");
        l4::thread::park()
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

/// The system clock in microseconds.
pub fn now() -> u64 {
    l4::syscall::system_clock()
}

/// Most rounds of any waiting loop, whatever the clock says.
const MAX_ROUNDS: u32 = 200_000;

/// Rounds of a waiting loop that yield before it starts sleeping (threads of the same
/// priority run on a yield; lower ones only while this thread sleeps).
const YIELD_ROUNDS: u32 = 200;

/// Waits until `cond` holds, for at most `timeout_us` (and [`MAX_ROUNDS`] rounds):
/// yields at first, then sleeps 500 µs per round. Returns whether `cond` held.
pub fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = now().saturating_add(timeout_us);
    for round in 0..MAX_ROUNDS {
        if cond() {
            return true;
        }
        if now() >= deadline {
            break;
        }
        if round < YIELD_ROUNDS {
            l4::thread::yield_now();
        } else {
            let _ = l4::ipc::sleep(Time::Period { us: 500 });
        }
    }
    cond()
}

/// Lets the other threads run for about `us` microseconds (yielding, then sleeping).
pub fn pause(us: u64) {
    let _ = wait_until(us, || false);
}

/// Words shared between a check and the threads it starts. Threads in child spaces see
/// the same words: the pager maps them the root task's own data pages.
pub struct Cells<const N: usize>([AtomicU64; N]);

impl<const N: usize> Cells<N> {
    /// All zero.
    pub const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; N])
    }

    /// Sets every word to zero.
    pub fn clear(&self) {
        for w in &self.0 {
            w.store(0, Ordering::SeqCst);
        }
    }

    /// Word `i` (0 past the end).
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |w| w.load(Ordering::SeqCst))
    }

    /// Sets word `i` (ignored past the end).
    pub fn set(&self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.store(v, Ordering::SeqCst);
        }
    }

    /// Adds `v` to word `i` (ignored past the end); returns the old value.
    pub fn add(&self, i: usize, v: u64) -> u64 {
        self.0
            .get(i)
            .map_or(0, |w| w.fetch_add(v, Ordering::SeqCst))
    }

    /// The address of the first word (for assembly that stores results directly).
    pub fn as_ptr(&self) -> *mut u64 {
        self.0[0].as_ptr()
    }
}
