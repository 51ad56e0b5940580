//! The Linux side of `cargo xtask bench --compare linux`: a static program that runs as
//! `/init` of a tiny initramfs under Debian's stock kernel (in the same QEMU mode as Tern,
//! one CPU), measures what Tern's benchmark measures in Linux's terms, prints the same
//! `TERN-BENCH <metric> <value>` lines and powers the machine off.
//!
//! | metric | one iteration |
//! |---|---|
//! | `linux_syscall_null` | getppid through the `syscall` instruction (empty loop subtracted) |
//! | `linux_futex_rt_proc` | futex ping-pong round trip between two processes sharing a page |
//! | `linux_futex_rt_thread` | the same between two threads (private futex) |
//! | `linux_pipe_rt` | 1-byte ping-pong round trip over two pipes between two processes |
//! | `linux_pagefault` | a write to fresh anonymous memory (minor fault; the same writes to the now mapped pages subtracted) |
//!
//! Each value is the best of [`REPEATS`] timed runs (after one warm-up run), read with
//! `rdtsc`: under QEMU `-icount shift=0` that counts guest instructions. Run as an
//! ordinary process (not PID 1) it measures and prints the same, but does not power off.

#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Timed runs per metric; the best is reported.
const REPEATS: usize = 3;
/// Iterations per run of `linux_syscall_null`.
const SYSCALLS: u64 = 2000;
/// Round trips per run of the ping-pong metrics.
const ROUND_TRIPS: u64 = 500;
/// Fresh pages per run of `linux_pagefault`.
const FAULT_PAGES: u64 = 1000;

const PAGE: usize = 4096;

/// The futex word's values in the ping-pong.
const PARENT_TURN: u32 = 0;
const CHILD_TURN: u32 = 1;
const STOP: u32 = 2;

/// Reads the time-stamp counter (under QEMU `-icount shift=0`: instructions executed).
fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A result in hundredths per iteration, for every run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Measured {
    runs: Vec<u64>,
}

impl Measured {
    /// From each run's total and the cost of an empty run, for `n` iterations each.
    fn from_totals(totals: &[u64], empty: u64, n: u64) -> Self {
        Measured { runs: totals.iter().map(|t| (t.saturating_sub(empty) * 100 + n / 2) / n).collect() }
    }

    fn best(&self) -> u64 {
        self.runs.iter().copied().min().unwrap_or(0)
    }

    /// The `TERN-BENCH` line, and a note line when the runs disagree.
    fn lines(&self, name: &str) -> Vec<String> {
        let mut out = vec![format!("TERN-BENCH {name} {}", hundredths(self.best()))];
        if self.runs.iter().any(|r| *r != self.runs[0]) {
            let runs: Vec<String> = self.runs.iter().map(|r| hundredths(*r)).collect();
            out.push(format!("TERN-BENCH-NOTE {name} runs differ: {}", runs.join(" ")));
        }
        out
    }
}

/// Hundredths as a decimal number (no fraction when whole).
fn hundredths(v: u64) -> String {
    if v.is_multiple_of(100) {
        format!("{}", v / 100)
    } else {
        format!("{}.{:02}", v / 100, v % 100)
    }
}

/// Times `run(n)` after one warm-up run, [`REPEATS`] times.
fn timed(n: u64, mut run: impl FnMut(u64)) -> Vec<u64> {
    run(n);
    (0..REPEATS)
        .map(|_| {
            let t0 = rdtsc();
            run(n);
            rdtsc() - t0
        })
        .collect()
}

/// The last OS error as text.
fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// `n` getppid system calls (`n` ≥ 1).
fn getppid_loop(n: u64) {
    // SAFETY: getppid has no arguments and no side effects; `syscall` clobbers RCX and R11,
    // the result lands in RAX — all declared.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov eax, {nr}",
            "syscall",
            "dec {n}",
            "jnz 2b",
            nr = const libc::SYS_getppid,
            n = inout(reg) n => _,
            out("rax") _, out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
}

/// [`getppid_loop`] without the `syscall`.
fn empty_getppid_loop(n: u64) {
    // SAFETY: register arithmetic only.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov eax, {nr}",
            "dec {n}",
            "jnz 2b",
            nr = const libc::SYS_getppid,
            n = inout(reg) n => _,
            out("rax") _,
            options(nostack, nomem)
        )
    };
}

fn syscall_null() -> Result<Measured, String> {
    let empty = timed(SYSCALLS, empty_getppid_loop).into_iter().min().unwrap_or(0);
    Ok(Measured::from_totals(&timed(SYSCALLS, getppid_loop), empty, SYSCALLS))
}

/// FUTEX_WAIT on `word` while it holds `expected`.
fn futex_wait(word: &AtomicU32, expected: u32, private: bool) {
    let op = libc::FUTEX_WAIT | if private { libc::FUTEX_PRIVATE_FLAG } else { 0 };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; no timeout.
    // A spurious or interrupted return is fine: every caller re-checks the word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, expected, std::ptr::null::<libc::timespec>()) };
}

/// FUTEX_WAKE of one waiter on `word`.
fn futex_wake(word: &AtomicU32, private: bool) {
    let op = libc::FUTEX_WAKE | if private { libc::FUTEX_PRIVATE_FLAG } else { 0 };
    // SAFETY: `word` is a valid, aligned u32; waking touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, 1) };
}

/// The parent's side: `n` round trips (hand the turn over, wait for it back).
fn ping(word: &AtomicU32, n: u64, private: bool) {
    for _ in 0..n {
        word.store(CHILD_TURN, Ordering::SeqCst);
        futex_wake(word, private);
        while word.load(Ordering::SeqCst) == CHILD_TURN {
            futex_wait(word, CHILD_TURN, private);
        }
    }
}

/// The other side: answer every turn until told to stop.
fn pong(word: &AtomicU32, private: bool) {
    loop {
        match word.load(Ordering::SeqCst) {
            CHILD_TURN => {
                word.store(PARENT_TURN, Ordering::SeqCst);
                futex_wake(word, private);
            }
            STOP => return,
            other => futex_wait(word, other, private),
        }
    }
}

/// Ends the ping-pong: tells the other side to stop.
fn stop(word: &AtomicU32, private: bool) {
    word.store(STOP, Ordering::SeqCst);
    futex_wake(word, private);
}

/// One benchmark: its result, or why there is none.
type Bench = fn() -> Result<Measured, String>;

/// Pins this process (and what it forks) to CPU 0.
fn pin_to_cpu0() -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity only reads it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        return Err(os_error("sched_setaffinity"));
    }
    Ok(())
}

/// Forks; the child runs `child` and exits (without unwinding or flushing anything).
fn fork_child(child: impl FnOnce()) -> Result<libc::pid_t, String> {
    // SAFETY: this program has a single thread when it forks; the child only makes system
    // calls and touches atomics or its own copies of file descriptors, then `_exit`s.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(os_error("fork")),
        0 => {
            child();
            // SAFETY: ends the child at once, as a forked child of a Rust program must.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

fn wait_child(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(os_error("waitpid"));
    }
    Ok(())
}

fn futex_rt_proc() -> Result<Measured, String> {
    // SAFETY: a fresh shared anonymous mapping; the result is checked below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(os_error("mmap (shared)"));
    }
    // SAFETY: the mapping is page-aligned, zeroed, shared with the child after fork and
    // never unmapped while either process uses it; AtomicU32 has u32's layout.
    let word: &AtomicU32 = unsafe { &*(page as *const AtomicU32) };
    let pid = fork_child(|| pong(word, false))?;
    let totals = timed(ROUND_TRIPS, |n| ping(word, n, false));
    stop(word, false);
    wait_child(pid)?;
    Ok(Measured::from_totals(&totals, 0, ROUND_TRIPS))
}

fn futex_rt_thread() -> Result<Measured, String> {
    let word = Arc::new(AtomicU32::new(PARENT_TURN));
    let other = Arc::clone(&word);
    let thread = std::thread::Builder::new()
        .spawn(move || pong(&other, true))
        .map_err(|e| format!("spawning a thread: {e}"))?;
    let totals = timed(ROUND_TRIPS, |n| ping(&word, n, true));
    stop(&word, true);
    thread.join().map_err(|_| "the pong thread panicked".to_owned())?;
    Ok(Measured::from_totals(&totals, 0, ROUND_TRIPS))
}

/// A pipe as (read end, write end).
fn pipe() -> Result<(libc::c_int, libc::c_int), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("pipe"));
    }
    Ok((fds[0], fds[1]))
}

/// Reads or writes one byte; false at end of file or on an error.
fn byte(fd: libc::c_int, write: bool) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `b` is a valid one-byte buffer for the call.
    let n = unsafe {
        if write {
            libc::write(fd, b.as_ptr().cast(), 1)
        } else {
            libc::read(fd, b.as_mut_ptr().cast(), 1)
        }
    };
    n == 1
}

fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this program opened and no longer uses.
    unsafe { libc::close(fd) };
}

fn pipe_rt() -> Result<Measured, String> {
    let (to_child_r, to_child_w) = pipe()?;
    let (to_parent_r, to_parent_w) = pipe()?;
    let pid = fork_child(|| {
        close(to_child_w);
        close(to_parent_r);
        while byte(to_child_r, false) && byte(to_parent_w, true) {}
    })?;
    close(to_child_r);
    close(to_parent_w);
    let mut broken = false;
    let totals = timed(ROUND_TRIPS, |n| {
        for _ in 0..n {
            broken |= !(byte(to_child_w, true) && byte(to_parent_r, false));
        }
    });
    close(to_child_w);
    close(to_parent_r);
    wait_child(pid)?;
    if broken {
        return Err("the pipe ping-pong broke off".to_owned());
    }
    Ok(Measured::from_totals(&totals, 0, ROUND_TRIPS))
}

/// Writes one byte to each of `n` pages from `base` (`n` ≥ 1).
///
/// # Safety
/// The `n` pages from `base` must be writable memory of this process.
unsafe fn touch_pages(base: *mut u8, n: u64) {
    // SAFETY: the caller guarantees the pages may be written.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov byte ptr [{p}], 1",
            "add {p}, 4096",
            "dec {n}",
            "jnz 2b",
            p = inout(reg) base => _,
            n = inout(reg) n => _,
            options(nostack)
        )
    };
}

fn pagefault() -> Result<Measured, String> {
    let len = FAULT_PAGES as usize * PAGE;
    let mut faulting = Vec::new();
    let mut mapped = Vec::new();
    for _ in 0..=REPEATS {
        // SAFETY: a fresh private anonymous mapping; the result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_error("mmap"));
        }
        // SAFETY: advice on our own fresh mapping: 4 KiB pages, one fault per page.
        unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
        let t0 = rdtsc();
        // SAFETY: the pages are this mapping's, writable.
        unsafe { touch_pages(base.cast(), FAULT_PAGES) };
        let t1 = rdtsc();
        // SAFETY: the same pages, now present.
        unsafe { touch_pages(base.cast(), FAULT_PAGES) };
        let t2 = rdtsc();
        // SAFETY: unmaps the mapping made above, no longer used.
        unsafe { libc::munmap(base, len) };
        faulting.push(t1 - t0);
        mapped.push(t2 - t1);
    }
    // The first round is the warm-up.
    let empty = mapped[1..].iter().copied().min().unwrap_or(0);
    Ok(Measured::from_totals(&faulting[1..], empty, FAULT_PAGES))
}

/// As PID 1: makes sure the console is on descriptors 0..2 (the kernel opened
/// /dev/console from the initramfs for us; if it could not, this is the second try).
fn console_for_init() {
    // SAFETY: fcntl(F_GETFD) only queries descriptor 1.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } != -1 {
        return;
    }
    // SAFETY: plain system calls on paths and descriptors this program owns; failures
    // leave the descriptors as they were (there is then nowhere to report anything).
    unsafe {
        libc::mount(c"devtmpfs".as_ptr(), c"/dev".as_ptr(), c"devtmpfs".as_ptr(), 0, std::ptr::null());
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            for target in 0..3 {
                libc::dup2(fd, target);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// As PID 1: powers the machine off (QEMU then exits).
fn power_off() -> ! {
    // SAFETY: sync and reboot(RB_POWER_OFF) as PID 1 (which may do so); reboot returns
    // only on failure, and then PID 1 must not exit: it waits forever.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::park();
    }
}

fn main() {
    let init = std::process::id() == 1;
    if init {
        console_for_init();
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = pin_to_cpu0() {
        let _ = writeln!(out, "TERN-BENCH-NOTE linux_futex_rt_proc not pinned to one CPU: {e}");
    }
    let benches: [(&str, Bench); 5] = [
        ("linux_syscall_null", syscall_null),
        ("linux_futex_rt_proc", futex_rt_proc),
        ("linux_pipe_rt", pipe_rt),
        ("linux_pagefault", pagefault),
        // Last: after it the process has a second thread, and nothing forks any more.
        ("linux_futex_rt_thread", futex_rt_thread),
    ];
    for (name, bench) in benches {
        let lines = match bench() {
            Ok(m) => m.lines(name),
            Err(e) => vec![format!("TERN-BENCH-NOTE {name} failed: {e}")],
        };
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    let _ = writeln!(out, "TERN-BENCH done");
    let _ = out.flush();
    drop(out);
    if init {
        power_off();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_hundredths() {
        assert_eq!(hundredths(17400), "174");
        assert_eq!(hundredths(17425), "174.25");
        assert_eq!(hundredths(5), "0.05");
    }

    #[test]
    fn measured_subtracts_and_reports_differences() {
        let m = Measured::from_totals(&[10_000, 12_000], 2_000, 100);
        assert_eq!(m.runs, [8000, 10000]);
        assert_eq!(m.lines("x"), ["TERN-BENCH x 80", "TERN-BENCH-NOTE x runs differ: 80 100"]);
        assert_eq!(Measured::from_totals(&[300], 0, 2).lines("y"), ["TERN-BENCH y 150"]);
    }

    #[test]
    fn ping_pong_between_threads_ends() {
        let word = Arc::new(AtomicU32::new(PARENT_TURN));
        let other = Arc::clone(&word);
        let t = std::thread::spawn(move || pong(&other, true));
        ping(&word, 100, true);
        stop(&word, true);
        t.join().unwrap();
        assert_eq!(word.load(Ordering::SeqCst), STOP);
    }
}
