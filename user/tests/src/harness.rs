//! The suite runner and the helpers every check uses: failure messages without a heap
//! ([`Text`], [`fail!`], [`ensure!`]), error expectations, and bounded waiting on the
//! system clock.
//!
//! Output protocol (read by `cargo xtask test`):
//!
//! ```text
//! TERN-TEST ok <name>
//! TERN-TEST FAIL <name>: <why>
//! TERN-TEST end: <N> passed, <M> failed
//! ```
//!
//! No wait here is unbounded: each ends at a clock deadline *and* after a fixed number of
//! iterations, so a kernel whose clock stands still cannot hang the suite either.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use abi::error::SysError;
use l4::println;

/// A failure message in a fixed buffer (cut at [`Text::CAPACITY`] bytes).
#[derive(Clone)]
pub struct Text {
    buf: [u8; Text::CAPACITY],
    len: usize,
}

impl Text {
    /// Longest message kept.
    pub const CAPACITY: usize = 240;

    /// An empty message.
    pub const fn new() -> Self {
        Self {
            buf: [0; Self::CAPACITY],
            len: 0,
        }
    }

    /// The formatted message.
    pub fn from_args(args: fmt::Arguments) -> Self {
        let mut t = Self::new();
        let _ = t.write_fmt(args);
        t
    }

    /// The text (whole characters only).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(Self::CAPACITY - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The result of one check.
pub type Check = Result<(), Text>;

/// Fails the enclosing check with a formatted message.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::harness::Text::from_args(format_args!($($arg)*)))
    };
}

/// Fails the enclosing check unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            fail!($($arg)*);
        }
    };
}

pub(crate) use {ensure, fail};

/// Adds context to an error, turning it into a failure message.
pub trait Context<T> {
    /// `Err(e)` becomes the message "`what`: `e:?`".
    fn ctx(self, what: &str) -> Result<T, Text>;
}

impl<T, E: fmt::Debug> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Text> {
        self.map_err(|e| Text::from_args(format_args!("{}: {:?}", what, e)))
    }
}

/// Passes if `r` is exactly the X.2 error `want`.
pub fn expect_sys<T: fmt::Debug>(r: Result<T, l4::Error>, want: SysError) -> Check {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => fail!("expected error {:?}, got {:?}", want, e),
        Ok(v) => fail!("expected error {:?}, the call succeeded ({:?})", want, v),
    }
}

/// Counts and reports checks.
pub struct Suite {
    passed: u64,
    failed: u64,
}

impl Suite {
    /// No checks run yet.
    pub const fn new() -> Self {
        Self {
            passed: 0,
            failed: 0,
        }
    }

    /// Runs one check and prints its line.
    pub fn run(&mut self, name: &str, check: impl FnOnce() -> Check) {
        match check() {
            Ok(()) => {
                self.passed += 1;
                println!("TERN-TEST ok {}", name);
            }
            Err(why) => {
                self.failed += 1;
                println!("TERN-TEST FAIL {}: {}", name, why);
            }
        }
    }

    /// Prints the end line and powers off with the failure count as status. If the
    /// kernel does not power off, parks.
    pub fn finish(self) -> ! {
        println!(
            "TERN-TEST end: {} passed, {} failed",
            self.passed, self.failed
        );
        l4::kdb::power_off(self.failed);
        println!("tests: power off returned; parking");
        l4::thread::park()
    }
}

/// The system clock, µs.
pub fn now() -> u64 {
    l4::syscall::system_clock()
}

/// Most iterations any bounded loop makes, whatever the clock says.
pub const MAX_SPINS: u64 = 400_000;

/// Waits until `cond` holds, yielding between tests, for at most `timeout_us` (and
/// [`MAX_SPINS`] iterations). Returns whether it held.
pub fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = now().saturating_add(timeout_us);
    for _ in 0..MAX_SPINS {
        if cond() {
            return true;
        }
        if now() >= deadline {
            return cond();
        }
        l4::thread::yield_now();
    }
    cond()
}

/// Yields until `us` microseconds have passed (bounded by [`MAX_SPINS`]).
pub fn yield_for(us: u64) {
    let _ = wait_until(us, || false);
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
pub struct Board([AtomicU64; Board::SIZE]);

impl Board {
    /// Number of words.
    pub const SIZE: usize = 32;

    /// All zero.
    pub const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; Self::SIZE])
    }

    /// Sets every word to zero.
    pub fn reset(&self) {
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

    /// Adds to word `i` (ignored past the end).
    pub fn add(&self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.fetch_add(v, Ordering::SeqCst);
        }
    }
}

/// An IPC outcome as one word: 0 success, else the ErrorCode value (an undecodable one
/// with bit 63 set).
pub fn ipc_code<T>(r: &Result<T, l4::ipc::IpcFailure>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(l4::ipc::IpcFailure::Ipc(e)) => e.encode(),
        Err(l4::ipc::IpcFailure::Unknown(x)) => x | 1 << 63,
    }
}

/// A system-call outcome as one word: 0 success, else the error code (an undefined one
/// with bit 63 set, an undefined result with bit 62 set).
pub fn sys_code<T>(r: &Result<T, l4::Error>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(l4::Error::Sys(e)) => e.code(),
        Err(l4::Error::Unknown(x)) => x | 1 << 63,
        Err(l4::Error::UnknownResult(x)) => x | 1 << 62,
    }
}
