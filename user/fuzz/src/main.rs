//! `fuzz`: a system-call fuzzer for Tern, run as the root task (`cargo xtask fuzz`, and
//! the `fuzz-short` scenario of `cargo xtask test`).
//!
//! Four fuzzing threads — two in the privileged root space, two in an unprivileged space
//! paged by the root task — make random system calls with every register chosen (see
//! `calls` and `gen`), against each other, against *victim* threads that only wait for
//! messages, against *pool* threads and spaces they create and delete themselves, and
//! against the kernel's own limits. Meanwhile a *canary* pair in two further spaces keeps
//! a checked ping-pong going and checks its memory, and the main thread M serves page
//! faults, revives stuck fuzzers, and at the end takes everything down again and checks
//! that the kernel's memory is back where it started. Every call is made with the kernel
//! checking its own invariants afterwards (kernel feature `invariants`): a broken
//! invariant, like any kernel panic or hang, ends the run with the kernel's report.
//!
//! Arguments (embedded by xtask, see `args`): `seed=S` (default 1), `iterations=N`
//! (default 100000: calls in all), `trace_from=K` (print calls numbered K and later),
//! `avoid=<finding>,...|all` (keep away from the calls of known findings: see
//! [`Finding`]), `mapdb=on` (the kernel also runs the mapping database's own
//! check: xtask sets it together with `tern.mapdb-check=on`, which the program cannot
//! see).
//! With the same seed, program and kernel, a run under QEMU `-icount` repeats exactly.
//!
//! Output: `fuzz:` progress lines, a `FUZZ-RESULT` line for xtask, and one `TERN-TEST`
//! line per check, then `TERN-TEST end:` and power-off.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
mod calls;
mod canary;
mod gen;
mod raw;
mod rng;
mod sup;
mod victim;
mod world;

use core::sync::atomic::Ordering;

use l4::println;

use crate::world::SHARED;

/// Priority of the fuzzers, victims, canaries and pool threads (no fuzzer raises one
/// above it).
pub const FUZZ_PRIO: u8 = 100;
/// Timeslice of the fuzzers, victims and canaries.
pub const TIMESLICE_US: u64 = 2_000;
/// Priority of M (pager and supervisor: above everyone it serves).
pub const M_PRIO: u8 = 120;

/// Kernel bugs this fuzzer found, each with the calls that trigger it. All are fixed;
/// a run can still be told to keep away from one (argument `avoid=<name>,...` or
/// `avoid=all`, `cargo xtask fuzz --avoid`), so that while a new finding is being fixed a
/// run can go past it to find others: add its variant here when that happens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Finding {
    /// `huge-utcb-area`: UTCB areas of SpaceControl are cut to 16 MiB. (Deleting a space
    /// walked its whole UTCB area page by page, so a 2^46-byte area took 2^34 steps with
    /// interrupts off: the kernel hung. Fixed: only present pages are visited.)
    HugeUtcbArea = 1,
    /// `migration`: ThreadControl does not move a (recorded) existing pool thread to
    /// another space. (Moving the last thread out of a space left the space alive with
    /// no thread: leaked. Fixed: the space dies with its last thread.)
    Migration = 2,
    /// `faulting-strings`: string copies never fault. Only the root task sends and
    /// receives strings, from and into memory that stays mapped (not U, whose pages come
    /// and go; not the sandbox; no wild source addresses). (While a copy waited for a
    /// page fault, the partner's IPC could time out, be aborted, or the partner be
    /// deleted, and the transfer then completed on a thread that had moved on. Fixed: the
    /// partner is locked during a transfer, which only an abort or a deletion breaks.)
    FaultingStrings = 4,
}

impl Finding {
    const ALL: [(Finding, &'static str); 3] =
        [(Finding::HugeUtcbArea, "huge-utcb-area"), (Finding::Migration, "migration"), (Finding::FaultingStrings, "faulting-strings")];
}

/// Whether the generators keep away from `f` (see [`Finding`]).
pub fn avoid(f: Finding) -> bool {
    SHARED.avoid.load(Ordering::Relaxed) & f as u64 != 0
}

/// The set of findings to avoid, from the `avoid` argument.
fn avoided(avoid: Option<&str>) -> u64 {
    let mut bits = 0;
    for name in avoid.unwrap_or("").split(',').filter(|n| !n.is_empty()) {
        for (f, n) in Finding::ALL {
            if n == name || name == "all" {
                bits |= f as u64;
            }
        }
    }
    bits
}

fn main() {
    let args = args::Args::read();
    let seed = args.number("seed", 1);
    let iterations = args.number("iterations", 100_000).max(4);
    let trace_from = args.number("trace_from", 0);
    let mapdb = args.get("mapdb") == Some("on");
    SHARED.avoid.store(avoided(args.get("avoid")), Ordering::Relaxed);
    println!("fuzz: seed {:#x}, {} calls (arguments: {:?})", seed, iterations, args.text());
    SHARED.seed.store(seed, Ordering::Relaxed);
    SHARED.trace_from.store(trace_from, Ordering::Relaxed);
    for (f, q) in SHARED.quota.iter().enumerate() {
        q.store(iterations / 4 + u64::from(f == 0) * (iterations % 4), Ordering::Relaxed);
    }
    let mut s = sup::Supervisor::new();
    let setup = s.setup();
    let checks = match setup {
        Ok(()) => {
            let started = l4::syscall::system_clock();
            println!("fuzz: start");
            s.run();
            let us = l4::syscall::system_clock().saturating_sub(started).max(1);
            println!("fuzz: done");
            let calls = SHARED.total.load(Ordering::Relaxed);
            println!(
                "fuzz: {} calls in {} ms guest time: {} calls/s (guest clock); {} fuzzer restarts, {} slow spells, {} victims made anew, {} page faults served, {} left unanswered",
                calls,
                us / 1000,
                calls * 1_000_000 / us,
                s.restarts,
                s.slow,
                s.victims_recreated,
                s.faults_served,
                s.faults_refused
            );
            println!("FUZZ-RESULT calls={} guest_us={} seed={:#x}", calls, us, seed);
            report_counts();
            println!("fuzz:   stalls by call kind: {:?}", s.stalls_by_kind);
            s.teardown();
            s.checks(mapdb)
        }
        Err(e) => {
            println!("TERN-TEST FAIL fuzz::setup: {}", e);
            (0, 1)
        }
    };
    println!("TERN-TEST end: {} passed, {} failed", checks.0, checks.1);
    l4::kdb::power_off(checks.1);
    calls::park()
}

/// Calls and failures per kind.
fn report_counts() {
    for (k, name) in world::KIND_NAMES.iter().enumerate() {
        println!(
            "fuzz:   {:<18} {:>9} calls {:>9} failed",
            name,
            SHARED.calls[k].load(Ordering::Relaxed),
            SHARED.failures[k].load(Ordering::Relaxed)
        );
    }
    let v: [u64; 4] = core::array::from_fn(|k| SHARED.victim_rx[k].load(Ordering::Relaxed));
    println!("fuzz:   victims received {:?} messages", v);
    let e: [u64; 16] = core::array::from_fn(|k| SHARED.ipc_errors[k].load(Ordering::Relaxed));
    println!("fuzz:   failed IPCs by error code << 1 | phase: {:?}", e);
}

l4::main!(main);
