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
//! `avoid=off` (also generate the calls of known, reported findings: see
//! [`avoid_findings`]), `mapdb=on` (the kernel also runs the mapping database's own
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

/// Whether the generators keep away from kernel weaknesses found and reported but not
/// fixed yet, so that a run can go on to find others (argument `avoid=off` turns this
/// off, to check a fix). Each use names its finding:
/// * UTCB areas of SpaceControl are cut to 16 MiB: deleting a space walks its whole
///   UTCB area page by page (`Space::destroy`), so a 2^46-byte area takes 2^34 steps
///   with interrupts off — the kernel hangs.
/// * ThreadControl does not move a (recorded) existing pool thread to another space:
///   moving the last thread out of a space leaves the space alive with no thread (leaked;
///   the invariant checker reports "N spaces have threads, N+1 exist").
/// * ThreadControl does not give a (recorded) existing pool thread a new version: the
///   rename leaves senders queued on it with the old id as partner (the checker reports
///   "sends to a dead partner"; unqueueing them later misses, a use after free).
pub fn avoid_findings() -> bool {
    SHARED.avoid.load(Ordering::Relaxed) != 0
}

fn main() {
    let args = args::Args::read();
    let seed = args.number("seed", 1);
    let iterations = args.number("iterations", 100_000).max(4);
    let trace_from = args.number("trace_from", 0);
    let mapdb = args.get("mapdb") == Some("on");
    SHARED.avoid.store(u64::from(args.get("avoid") != Some("off")), Ordering::Relaxed);
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
