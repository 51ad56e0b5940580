//! Running checks and reporting them in the protocol `cargo xtask test` reads:
//!
//! ```text
//! TERN-TEST ok <name>
//! TERN-TEST FAIL <name>: <why>
//! TERN-TEST end: <N> passed, <M> failed
//! ```
//!
//! A failure message is formatted into a fixed buffer ([`Why`]): the program has no heap.

use core::fmt::{self, Write};

use l4::println;

/// A failure message (cut at 200 bytes).
pub struct Why {
    buf: [u8; 200],
    len: usize,
}

impl Why {
    /// The formatted message.
    pub fn new(args: fmt::Arguments) -> Self {
        let mut w = Why {
            buf: [0; 200],
            len: 0,
        };
        let _ = w.write_fmt(args);
        w
    }

    fn text(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Why {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// What a check returns.
pub type Check = Result<(), Why>;

/// Fails the enclosing check with a formatted message.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::harness::Why::new(format_args!($($arg)*)))
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

/// Turns any error into a failure message naming the step.
pub trait Step<T> {
    /// `Err(e)` becomes "`what`: `e:?`".
    fn step(self, what: &str) -> Result<T, Why>;
}

impl<T, E: fmt::Debug> Step<T> for Result<T, E> {
    fn step(self, what: &str) -> Result<T, Why> {
        self.map_err(|e| Why::new(format_args!("{}: {:?}", what, e)))
    }
}

impl<T> Step<T> for Option<T> {
    fn step(self, what: &str) -> Result<T, Why> {
        self.ok_or_else(|| Why::new(format_args!("{}", what)))
    }
}

/// Counts checks and prints their lines.
pub struct Suite {
    passed: u64,
    failed: u64,
}

impl Suite {
    /// Nothing run yet.
    pub const fn new() -> Self {
        Suite {
            passed: 0,
            failed: 0,
        }
    }

    /// Prints the line of a check that has run.
    pub fn report(&mut self, name: &str, result: Check) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("TERN-TEST ok {}", name);
            }
            Err(why) => {
                self.failed += 1;
                println!("TERN-TEST FAIL {}: {}", name, why.text());
            }
        }
    }

    /// Prints the end line and powers off with the number of failures as the status.
    pub fn finish(self) -> ! {
        println!(
            "TERN-TEST end: {} passed, {} failed",
            self.passed, self.failed
        );
        l4::kdb::power_off(self.failed);
        println!("memtests: power off returned; parking");
        l4::thread::park()
    }
}
