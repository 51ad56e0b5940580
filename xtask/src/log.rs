//! The serial-output protocol of Tern and its tests, and how a test log is judged.
//!
//! Lines the kernel and guest print (each may be preceded by other text on the same line,
//! except the banner):
//!
//! ```text
//!   Tern 0.1.0 booting                                   banner (line starts with "Tern ")
//!   KERNEL PANIC: <message>                              then register lines, then
//!   backtrace:                                           then entries
//!     #<n> 0x<16 hex digits>
//!   USER FAULT: thread <id> (<program>) <kind> addr=0x<hex> ip=0x<hex>   then register lines
//!   TERN-TEST ok <name>
//!   TERN-TEST FAIL <name>: <message>
//!   TERN-TEST end: <N> passed, <M> failed
//! ```
//!
//! [`parse_line`] classifies one line; [`judge_suite`] and [`judge_panic`] turn a whole log
//! plus QEMU's exit into checks passed and failed.

use crate::qemu::GuestExit;

const PANIC_MARK: &str = "KERNEL PANIC:";
const USER_FAULT_MARK: &str = "USER FAULT:";
const TEST_MARK: &str = "TERN-TEST ";

/// A `USER FAULT` line, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFault<'a> {
    pub thread: &'a str,
    /// The program's archive entry name.
    pub program: &'a str,
    pub kind: &'a str,
    pub addr: Option<u64>,
    pub ip: Option<u64>,
}

/// What one serial line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// The boot banner.
    Banner,
    /// `KERNEL PANIC: <message>`.
    KernelPanic { message: &'a str },
    /// `backtrace:`.
    BacktraceHeader,
    /// `#<n> 0x<hex>`.
    BacktraceEntry { index: u32, addr: u64 },
    /// A well-formed `USER FAULT` line.
    UserFault(UserFault<'a>),
    /// `TERN-TEST ok <name>`.
    TestOk { name: &'a str },
    /// `TERN-TEST FAIL <name>: <message>`.
    TestFail { name: &'a str, message: &'a str },
    /// `TERN-TEST end: <N> passed, <M> failed`.
    TestEnd { passed: u64, failed: u64 },
    /// A line with a protocol marker that does not follow the protocol.
    Malformed { marker: &'static str },
    /// Anything else.
    Other,
}

/// Classifies one line (without its line terminator; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Line<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with("Tern ") {
        return Line::Banner;
    }
    if let Some(at) = line.find(PANIC_MARK) {
        return Line::KernelPanic { message: line[at + PANIC_MARK.len()..].trim() };
    }
    if let Some(at) = line.find(USER_FAULT_MARK) {
        return match parse_user_fault(&line[at + USER_FAULT_MARK.len()..]) {
            Some(fault) => Line::UserFault(fault),
            None => Line::Malformed { marker: USER_FAULT_MARK },
        };
    }
    if let Some(at) = line.find(TEST_MARK) {
        return parse_test(&line[at + TEST_MARK.len()..])
            .unwrap_or(Line::Malformed { marker: "TERN-TEST" });
    }
    let trimmed = line.trim();
    if trimmed == "backtrace:" {
        return Line::BacktraceHeader;
    }
    if let Some(entry) = parse_backtrace_entry(trimmed) {
        return entry;
    }
    Line::Other
}

/// ` thread <id> (<program>) <kind> addr=0x<hex> ip=0x<hex> [more key=value words]`; the
/// kind is every word before the first `key=value` word (e.g. `page fault (write)`).
fn parse_user_fault(rest: &str) -> Option<UserFault<'_>> {
    let rest = rest.trim_start().strip_prefix("thread ")?;
    let (thread, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix('(')?;
    let (program, rest) = rest.split_once(')')?;
    let rest = rest.trim_start();
    let mut kind_end = rest.len();
    let mut pos = 0;
    for word in rest.split(' ') {
        if word.contains('=') {
            kind_end = pos;
            break;
        }
        pos += word.len() + 1;
    }
    let kind = rest[..kind_end].trim();
    let (mut addr, mut ip) = (None, None);
    for word in rest[kind_end..].split_whitespace() {
        if let Some(v) = word.strip_prefix("addr=") {
            addr = Some(parse_hex(v)?);
        } else if let Some(v) = word.strip_prefix("ip=") {
            ip = Some(parse_hex(v)?);
        }
    }
    if thread.is_empty() || program.is_empty() || kind.is_empty() {
        return None;
    }
    Some(UserFault { thread, program, kind, addr, ip })
}

/// The text after `TERN-TEST `.
fn parse_test(rest: &str) -> Option<Line<'_>> {
    if let Some(name) = rest.strip_prefix("ok ") {
        let name = name.trim();
        return (!name.is_empty() && !name.contains(char::is_whitespace))
            .then_some(Line::TestOk { name });
    }
    if let Some(rest) = rest.strip_prefix("FAIL ") {
        // The name is the first word, ending in ':' (names may contain "::").
        let rest = rest.trim_start();
        let (word, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let name = word.strip_suffix(':')?;
        return (!name.is_empty()).then_some(Line::TestFail { name, message: message.trim() });
    }
    let rest = rest.strip_prefix("end:")?;
    let (passed, failed) = rest.split_once(',')?;
    let passed = passed.trim().strip_suffix("passed")?.trim().parse().ok()?;
    let failed = failed.trim().strip_suffix("failed")?.trim().parse().ok()?;
    Some(Line::TestEnd { passed, failed })
}

/// `#<n> 0x<hex>` (already trimmed).
fn parse_backtrace_entry(trimmed: &str) -> Option<Line<'static>> {
    let rest = trimmed.strip_prefix('#')?;
    let (index, addr) = rest.split_once(char::is_whitespace)?;
    let index = index.parse().ok()?;
    let addr = parse_hex(addr.trim())?;
    Some(Line::BacktraceEntry { index, addr })
}

/// Parses `0x<1..=16 hex digits>` exactly.
pub fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The outcome of one scenario: checks passed and failed, with a message per failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub passed: u64,
    pub failed: u64,
    /// One message per failed check.
    pub failures: Vec<String>,
}

impl Verdict {
    fn problem(&mut self, problems: Vec<String>) {
        if !problems.is_empty() {
            self.failed += 1;
            self.failures.push(problems.join("; "));
        }
    }
}

/// Judges an in-guest suite run (`expect = "suite"`).
///
/// Each `TERN-TEST ok` is a passed check and each `FAIL` a failed one. Anything else that
/// went wrong (no `end` line, an `end` line that disagrees with the lines counted, a kernel
/// panic, a hang, a reset, a malformed `TERN-TEST` line, an exit status that disagrees with
/// the result) adds exactly one failed check whose message lists every problem.
pub fn judge_suite(log: &str, exit: GuestExit) -> Verdict {
    let mut verdict = Verdict::default();
    let mut problems = Vec::new();
    let mut end = None;
    for line in log.lines() {
        match parse_line(line) {
            Line::TestOk { .. } => verdict.passed += 1,
            Line::TestFail { name, message } => {
                verdict.failed += 1;
                verdict.failures.push(format!("{name}: {message}"));
            }
            Line::TestEnd { passed, failed } => {
                let previous = end.replace((passed, failed));
                if previous.is_some() {
                    problems.push("more than one TERN-TEST end line".to_owned());
                }
            }
            Line::KernelPanic { message } => problems.push(format!("kernel panic: {message}")),
            Line::Malformed { marker: "TERN-TEST" } => {
                problems.push(format!("malformed line {:?}", line.trim()));
            }
            _ => {}
        }
    }
    match end {
        None => problems.push(match exit {
            GuestExit::Reset => {
                "guest reset or triple-faulted before the TERN-TEST end line".into()
            }
            GuestExit::TimedOut => "timed out (hang) before the TERN-TEST end line".into(),
            _ => "no TERN-TEST end line".to_owned(),
        }),
        Some((passed, failed)) => {
            if (passed, failed) != (verdict.passed, verdict.failed) {
                problems.push(format!(
                    "end line says {passed} passed, {failed} failed but the log has {} ok and {} \
                     FAIL lines",
                    verdict.passed, verdict.failed
                ));
            }
            let expected = if failed == 0 { GuestExit::Success } else { GuestExit::Failure };
            let comparable =
                matches!(exit, GuestExit::Success | GuestExit::Failure | GuestExit::Reset);
            if comparable && exit != expected {
                problems.push(format!("expected the guest to exit with {expected}, got: {exit}"));
            }
        }
    }
    match exit {
        GuestExit::TimedOut if end.is_some() => {
            problems.push("timed out (hang) after the end line".into());
        }
        GuestExit::Panic if !problems.iter().any(|p| p.starts_with("kernel panic")) => {
            problems.push("kernel panic exit without a KERNEL PANIC line".into());
        }
        GuestExit::Other(_) | GuestExit::Killed => problems.push(exit.to_string()),
        _ => {}
    }
    verdict.problem(problems);
    verdict
}

/// Judges a panic scenario (`expect = "panic"` or `"panic:<text>"`): one check, passed iff
/// the log has a `KERNEL PANIC` line (containing `containing`, if given) and the run ended
/// with the panic exit status or a reset.
pub fn judge_panic(log: &str, exit: GuestExit, containing: Option<&str>) -> Verdict {
    let panics: Vec<&str> = log
        .lines()
        .filter_map(|line| match parse_line(line) {
            Line::KernelPanic { message } => Some(message),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    match (panics.is_empty(), containing) {
        (true, _) => problems.push("no KERNEL PANIC line".to_owned()),
        (false, Some(text)) if !panics.iter().any(|m| m.contains(text)) => problems.push(format!(
            "no KERNEL PANIC line contains {text:?} (panicked with {:?})",
            panics[0]
        )),
        _ => {}
    }
    if !matches!(exit, GuestExit::Panic | GuestExit::Reset) {
        problems.push(format!("expected the run to end with a panic exit or reset, got: {exit}"));
    }
    let mut verdict = Verdict::default();
    if problems.is_empty() {
        verdict.passed = 1;
    }
    verdict.problem(problems);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified() {
        assert_eq!(parse_line("Tern 0.1.0 booting\r"), Line::Banner);
        assert_eq!(
            parse_line("[cpu0] KERNEL PANIC: kernel stack overflow"),
            Line::KernelPanic { message: "kernel stack overflow" }
        );
        assert_eq!(parse_line("backtrace:"), Line::BacktraceHeader);
        assert_eq!(
            parse_line("  #3 0xffffffff80001234"),
            Line::BacktraceEntry { index: 3, addr: 0xffff_ffff_8000_1234 }
        );
        assert_eq!(parse_line("TERN-TEST ok ipc::send"), Line::TestOk { name: "ipc::send" });
        assert_eq!(
            parse_line("TERN-TEST FAIL ipc::recv: expected 3, got 4: see x"),
            Line::TestFail { name: "ipc::recv", message: "expected 3, got 4: see x" }
        );
        assert_eq!(
            parse_line("TERN-TEST end: 12 passed, 1 failed"),
            Line::TestEnd { passed: 12, failed: 1 }
        );
        assert_eq!(parse_line("rip=0x1000 rsp=0x2000"), Line::Other);
        assert_eq!(parse_line("#notanumber 0x1"), Line::Other);
    }

    #[test]
    fn user_fault_is_taken_apart() {
        let line = "USER FAULT: thread 0x1c001 (roottask) page-fault addr=0xdead ip=0x400123";
        assert_eq!(
            parse_line(line),
            Line::UserFault(UserFault {
                thread: "0x1c001",
                program: "roottask",
                kind: "page-fault",
                addr: Some(0xdead),
                ip: Some(0x400123),
            })
        );
        let kernel_style = "USER FAULT: thread 0x40001 (sigma0) page fault (write) \
                            addr=0x00000000deadbeef ip=0x0000000000400123 error=0x6";
        assert_eq!(
            parse_line(kernel_style),
            Line::UserFault(UserFault {
                thread: "0x40001",
                program: "sigma0",
                kind: "page fault (write)",
                addr: Some(0xdead_beef),
                ip: Some(0x400123),
            })
        );
        assert_eq!(
            parse_line("USER FAULT: thread 5 (x) addr=0x1 ip=0x2"),
            Line::Malformed { marker: USER_FAULT_MARK }
        );
        assert_eq!(
            parse_line("USER FAULT: thread 5 roottask gp"),
            Line::Malformed { marker: USER_FAULT_MARK }
        );
        assert_eq!(
            parse_line("USER FAULT: thread 5 (x) pf addr=0xzz ip=0x1"),
            Line::Malformed { marker: USER_FAULT_MARK }
        );
    }

    #[test]
    fn malformed_test_lines_are_flagged() {
        for line in [
            "TERN-TEST okay x",
            "TERN-TEST ok ",
            "TERN-TEST FAIL no colon",
            "TERN-TEST FAIL :",
            "TERN-TEST end: x passed, 0 failed",
            "TERN-TEST end: 1 passed",
        ] {
            assert_eq!(parse_line(line), Line::Malformed { marker: "TERN-TEST" }, "{line}");
        }
    }

    #[test]
    fn hex_parsing_is_strict() {
        assert_eq!(parse_hex("0xFFff"), Some(0xffff));
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("ff"), None);
        assert_eq!(parse_hex("0x10000000000000000"), None);
        assert_eq!(parse_hex("0x12g"), None);
    }

    const GOOD: &str = "Tern 0.1.0 booting\nTERN-TEST ok a\nTERN-TEST ok b\n\
                        TERN-TEST end: 2 passed, 0 failed\n";

    #[test]
    fn clean_suite_passes() {
        let v = judge_suite(GOOD, GuestExit::Success);
        assert_eq!(v, Verdict { passed: 2, failed: 0, failures: vec![] });
    }

    #[test]
    fn failing_suite_counts_each_failure() {
        let log = "TERN-TEST ok a\nTERN-TEST FAIL b: boom\nTERN-TEST FAIL c: bang\n\
                   TERN-TEST end: 1 passed, 2 failed\n";
        let v = judge_suite(log, GuestExit::Failure);
        assert_eq!((v.passed, v.failed), (1, 2));
        assert_eq!(v.failures, ["b: boom", "c: bang"]);
    }

    #[test]
    fn missing_end_line_is_one_extra_failure() {
        let v = judge_suite("TERN-TEST ok a\n", GuestExit::Success);
        assert_eq!((v.passed, v.failed), (1, 1));
        assert!(v.failures[0].contains("no TERN-TEST end line"));
    }

    #[test]
    fn panic_in_suite_is_one_extra_failure() {
        let log = "TERN-TEST ok a\nKERNEL PANIC: oops\nbacktrace:\n  #0 0x1\n";
        let v = judge_suite(log, GuestExit::Panic);
        assert_eq!((v.passed, v.failed), (1, 1));
        assert!(v.failures[0].contains("kernel panic: oops"));
        assert!(v.failures[0].contains("no TERN-TEST end line"));
    }

    #[test]
    fn hang_and_triple_fault_are_failures() {
        let hang = judge_suite("TERN-TEST ok a\n", GuestExit::TimedOut);
        assert_eq!((hang.passed, hang.failed), (1, 1));
        assert!(hang.failures[0].contains("timed out"));
        let reset = judge_suite("TERN-TEST ok a\n", GuestExit::Reset);
        assert_eq!(reset.failed, 1);
        assert!(reset.failures[0].contains("triple-faulted"));
        // A reset after a complete, clean report is still a wrong exit.
        assert_eq!(judge_suite(GOOD, GuestExit::Reset).failed, 1);
    }

    #[test]
    fn inconsistent_reports_are_failures() {
        let wrong_count = "TERN-TEST ok a\nTERN-TEST end: 2 passed, 0 failed\n";
        assert_eq!(judge_suite(wrong_count, GuestExit::Success).failed, 1);
        // Failures reported but the guest claims success.
        let log = "TERN-TEST FAIL a: x\nTERN-TEST end: 0 passed, 1 failed\n";
        let v = judge_suite(log, GuestExit::Success);
        assert_eq!((v.passed, v.failed), (0, 2));
        // Clean report but the guest exits with failure.
        assert_eq!(judge_suite(GOOD, GuestExit::Failure).failed, 1);
        let twice = format!("{GOOD}TERN-TEST end: 2 passed, 0 failed\n");
        assert!(judge_suite(&twice, GuestExit::Success).failures[0].contains("more than one"));
        let garbled = format!("TERN-TEST okk a\n{GOOD}");
        assert!(judge_suite(&garbled, GuestExit::Success).failures[0].contains("malformed"));
        assert_eq!(judge_suite(GOOD, GuestExit::Other(1)).failed, 1);
    }

    #[test]
    fn panic_scenarios_are_one_check() {
        let log = "Tern 0.1.0\nKERNEL PANIC: kernel stack overflow at 0x10\nbacktrace:\n";
        assert_eq!(judge_panic(log, GuestExit::Panic, None).passed, 1);
        assert_eq!(judge_panic(log, GuestExit::Reset, Some("stack overflow")).passed, 1);
        let wrong_text = judge_panic(log, GuestExit::Panic, Some("double fault"));
        assert_eq!((wrong_text.passed, wrong_text.failed), (0, 1));
        assert!(wrong_text.failures[0].contains("double fault"));
        let hang = judge_panic(log, GuestExit::TimedOut, None);
        assert_eq!((hang.passed, hang.failed), (0, 1));
        let none = judge_panic("Tern 0.1.0\n", GuestExit::Panic, None);
        assert!(none.failures[0].contains("no KERNEL PANIC"));
        assert_eq!(judge_panic(log, GuestExit::Success, None).failed, 1);
    }
}
