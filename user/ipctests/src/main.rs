//! `ipctests`: the IPC conformance tests and stress test of Tern (issue 4), run as the
//! root task of the `ipc` and `ipc-full-path` boot scenarios.
//!
//! It checks X.2 IPC from user mode, one behaviour per check — every mode, every timeout
//! form, the error codes and their phase, aborts and deletion, map and grant items with
//! receive windows, string items, the page-fault, exception and thread-start protocols,
//! propagation and redirection — and ends with a stress test of client/server pairs in
//! several spaces. Each check prints `TERN-TEST ok|FAIL <group>::<name>`; the program
//! ends with `TERN-TEST end:` and powers the machine off with the number of failures.
//!
//! Every check cleans up the threads and spaces it made, even when it fails, and no wait
//! is unbounded: a kernel that lacks a feature makes checks fail, never the program hang.
//!
//! | module       | checks                                                           |
//! |--------------|------------------------------------------------------------------|
//! | `modes`      | send, receive, call, reply-and-wait, open/closed/anylocal, ids, registers, overflow |
//! | `timeouts`   | never, zero, periods, points, send/receive separately            |
//! | `errors`     | missing partners, aborts, deletion of partners                   |
//! | `items`      | map and grant items, receive windows, rights                     |
//! | `protocols`  | page faults, exceptions, thread start                            |
//! | `forwarding` | propagation and redirection                                      |
//! | `strings`    | string items, receive buffers, faults, transfer timeouts         |
//! | `stress`     | client/server pairs, 10^6 messages, a spinning low-priority thread |
//!
//! Support: `harness` (runner, messages, bounded waits), `wire` (raw messages and Ipc),
//! `env` (threads, child spaces, the pager thread), `jobs` (reusable thread jobs).

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A failed check carries its message in a fixed buffer (no heap), so results are large.
#![allow(clippy::result_large_err)]

mod env;
mod harness;
mod jobs;
mod wire;

mod errors;
mod forwarding;
mod items;
mod modes;
mod protocols;
mod stress;
mod strings;
mod timeouts;

use l4::println;

use crate::harness::{now, Runner};

/// A group of checks: its name and its runner.
type Group = (&'static str, fn(&mut Runner));

fn main() {
    println!(
        "ipctests: IPC conformance tests, thread {:#x}",
        l4::utcb::my_global_id().raw()
    );
    if let Err(e) = env::init() {
        println!("ipctests: cannot set up: {}", e);
        let mut r = Runner::new();
        r.check("setup", || Err(e));
        r.finish();
    }
    let mut r = Runner::new();
    let groups: [Group; 8] = [
        ("modes", modes::run),
        ("timeouts", timeouts::run),
        ("errors", errors::run),
        ("items", items::run),
        ("protocols", protocols::run),
        ("forwarding", forwarding::run),
        ("strings", strings::run),
        ("stress", stress::run),
    ];
    let start = now();
    for (name, run) in groups {
        let t0 = now();
        let n0 = r.count();
        run(&mut r);
        println!(
            "ipctests: {}: {} checks in {} ms",
            name,
            r.count() - n0,
            (now() - t0) / 1000
        );
    }
    println!("ipctests: all checks in {} ms", (now() - start) / 1000);
    r.finish()
}

l4::main!(main);
