//! The in-guest conformance suite of Tern, run as the root task in test boots.
//!
//! It checks the kernel's X.2 interface from user mode — KIP, system-call argument
//! validation, thread life cycle, ExchangeRegisters, scheduling, FPU isolation, IPC,
//! address spaces and privilege, leaks — printing one `TERN-TEST ok|FAIL <name>` line per
//! check and a closing `TERN-TEST end:` line, then powers the machine off with the number
//! of failures as its status (see [`harness`]).
//!
//! Every check cleans up the threads it made, even when it fails, and no check can wait
//! forever: a kernel that lacks a feature makes checks fail, never the suite hang.
//!
//! | module          | checks                                                      |
//! |-----------------|-------------------------------------------------------------|
//! | `kip_checks`    | KernelInterface, KIP fields and memory map, clock, KDB      |
//! | `thread_checks` | ThreadControl, start protocol, ExchangeRegisters            |
//! | `ipc_checks`    | send / receive / call / reply, timeouts, IPC errors         |
//! | `sched_checks`  | Schedule, priorities, timeslices, ThreadSwitch              |
//! | `preempt_checks`| delayed preemption (PreemptionControl, UTCB PreemptFlags)   |
//! | `fpu_checks`    | XMM / YMM state isolation between threads                   |
//! | `space_checks`  | SpaceControl, an unprivileged space, Unmap, privilege       |
//! | `memctl_checks` | MemoryControl: caching attributes, its argument checks      |
//! | `stress`        | 10,000 threads created and deleted without a leak           |

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A failed check carries its message in a fixed buffer (there is no heap), so every
// `Check` has a large error type by design.
#![allow(clippy::result_large_err)]

mod harness;
mod workers;

mod fpu_checks;
mod ipc_checks;
mod kip_checks;
mod memctl_checks;
mod preempt_checks;
mod sched_checks;
mod space_checks;
mod stress;
mod thread_checks;

use l4::println;

fn main() {
    println!(
        "tests: the Tern conformance suite, thread {:#x}",
        l4::utcb::my_global_id().raw()
    );
    workers::init();
    // Let the other root servers run first (in test boots σ1 is a program that faults;
    // the harness checks that its fault is reported before this suite ends).
    for _ in 0..8 {
        l4::thread::yield_now();
    }
    if let Err(e) = l4::thread::set_priority(workers::me(), workers::MAIN_PRIO) {
        println!(
            "tests: cannot set the main thread's priority ({:?}); scheduling checks will tell",
            e
        );
    }
    let mut s = harness::Tally::new("tests");
    kip_checks::run(&mut s);
    thread_checks::run(&mut s);
    ipc_checks::run(&mut s);
    sched_checks::run(&mut s);
    preempt_checks::run(&mut s);
    fpu_checks::run(&mut s);
    space_checks::run(&mut s);
    memctl_checks::run(&mut s);
    stress::run(&mut s);
    s.finish()
}

l4::main!(main);
