//! [`Tally`]: runs or receives the outcome of each check, prints its `TERN-TEST` line, and
//! at the end prints the closing line and powers the machine off with the number of
//! failures as the exit status.
//!
//! Other programs may print on the same console (drivers, the root task), so every line
//! is formatted first and printed with one console call: another program's output cannot
//! split it.

use core::fmt::{self, Write};

use crate::Check;

/// One output line, formatted in a fixed buffer (what does not fit is cut off).
struct Line {
    bytes: [u8; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 512;

    /// Formats `args` and a newline, and prints it in one piece.
    fn print(args: fmt::Arguments) {
        let mut l = Line { bytes: [0; Self::CAPACITY], len: 0 };
        let _ = l.write_fmt(args);
        let _ = l.write_str("\n");
        let b = &l.bytes[..l.len];
        let text = match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        };
        l4::kdb::print(text);
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep room for the newline.
        let n = s.len().min(Self::CAPACITY - 1 - self.len.min(Self::CAPACITY - 1));
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Counts checks and prints their lines.
pub struct Tally {
    /// The program's name, for its own messages.
    program: &'static str,
    /// The prefix of the names that follow (`<group>::<name>`); empty: none.
    group: &'static str,
    passed: u64,
    failed: u64,
}

/// A check's name as printed: `<group>::<name>`, or `<name>` without a group.
struct Name<'a>(&'a str, &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(self.1)
        } else {
            write!(f, "{}::{}", self.0, self.1)
        }
    }
}

impl Tally {
    /// No checks yet; `program` names the program in its own messages.
    pub const fn new(program: &'static str) -> Self {
        Tally {
            program,
            group: "",
            passed: 0,
            failed: 0,
        }
    }

    /// Prints the names of the checks that follow as `<group>::<name>` (empty: plain).
    pub const fn set_group(&mut self, group: &'static str) {
        self.group = group;
    }

    /// Counts a check that has run and prints its line.
    pub fn report(&mut self, name: &str, result: Check) {
        let name = Name(self.group, name);
        match result {
            Ok(()) => {
                self.passed += 1;
                Line::print(format_args!("TERN-TEST ok {}", name));
            }
            Err(why) => {
                self.failed += 1;
                Line::print(format_args!("TERN-TEST FAIL {}: {}", name, why));
            }
        }
    }

    /// Runs one check and reports it.
    pub fn run(&mut self, name: &str, check: impl FnOnce() -> Check) {
        let result = check();
        self.report(name, result);
    }

    /// Checks reported so far.
    pub fn count(&self) -> u64 {
        self.passed + self.failed
    }

    /// Checks failed so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Prints the closing line (for a program that powers off its own way).
    pub fn end(&self) {
        Line::print(format_args!("TERN-TEST end: {} passed, {} failed", self.passed, self.failed));
    }

    /// Prints the closing line and powers the machine off with the number of failures as
    /// its status; parks should the kernel not power off.
    pub fn finish(self) -> ! {
        self.end();
        l4::kdb::power_off(self.failed);
        Line::print(format_args!("{}: power off returned; parking", self.program));
        l4::thread::park()
    }
}
