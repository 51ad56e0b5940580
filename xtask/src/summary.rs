//! Counting checks: the pass/fail tally of a test run and cargo's `test result:` lines.
//!
//! Every part of `cargo xtask test` produces a [`Tally`]; the parts are added up and the very
//! last line printed is `N passed, M failed` ([`Tally`]'s `Display`).

use std::fmt;
use std::ops::{Add, AddAssign};

/// Checks passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

impl Tally {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

impl Add for Tally {
    type Output = Tally;

    fn add(self, other: Tally) -> Tally {
        Tally {
            passed: self.passed.saturating_add(other.passed),
            failed: self.failed.saturating_add(other.failed),
        }
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        *self = *self + other;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Parses a libtest summary line, e.g.
/// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...` or
/// `test result: FAILED. 3 passed; 1 failed; ...`.
pub fn parse_test_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_status, counts) = rest.split_once(". ")?;
    let mut tally = Tally::default();
    let (mut saw_passed, mut saw_failed) = (false, false);
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(count), Some(what)) = (words.next(), words.next()) else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        match what {
            "passed" => (tally.passed, saw_passed) = (count, true),
            "failed" => (tally.failed, saw_failed) = (count, true),
            _ => {}
        }
    }
    (saw_passed && saw_failed).then_some(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_parsed() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
                 finished in 0.01s"
            ),
            Some(Tally { passed: 12, failed: 0 })
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some(Tally { passed: 3, failed: 2 })
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
        assert_eq!(parse_test_result("test result: ok. garbage"), None);
    }

    #[test]
    fn all_result_lines_are_summed() {
        let output = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out

running 0 tests
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out

   Doc-tests abi
running 2 tests
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
";
        // Unit, integration and doc tests each print their own line: summing all of them
        // counts every test once.
        let sum = output.lines().filter_map(parse_test_result).fold(Tally::default(), Add::add);
        assert_eq!(sum, Tally { passed: 4, failed: 1 });
    }

    #[test]
    fn tallies_add_and_print() {
        let mut t = Tally { passed: 4, failed: 1 };
        t += Tally { passed: 10, failed: 0 };
        assert_eq!(t.to_string(), "14 passed, 1 failed");
        assert!(!t.ok());
        assert!(Tally::default().ok());
    }
}
