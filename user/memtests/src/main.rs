//! `memtests`: in-guest checks of recursive address spaces — map, grant and unmap with
//! each rights combination, revocation through a chain of spaces, accessed status, large
//! pages and their splitting, receive windows, the σ0 protocol, and kernel memory over
//! 100,000 map/unmap cycles. It boots as the root task (test scenario "memory") and
//! reports `TERN-TEST` lines, then powers off with the number of failures.
//!
//! Modules: `harness` (reporting), `lab` (σ0 memory, the pager thread, test spaces),
//! `mapping` and `sigma0` (the checks).

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Failure messages travel by value in a fixed buffer (no heap); they are rare and short-
// lived, so their size in `Result` costs nothing that matters.
#![allow(clippy::result_large_err)]

mod harness;
mod lab;
mod mapping;
mod sigma0;

use harness::Tally;

fn main() {
    l4::println!(
        "memtests: memory checks, thread {:#x}",
        l4::utcb::my_global_id().raw()
    );
    let mut s = Tally::new("memtests");
    match lab::init() {
        Ok(_) => {
            sigma0::run(&mut s);
            mapping::run(&mut s);
        }
        Err(e) => s.report("setup", Err(e)),
    }
    s.finish()
}

l4::main!(main);
