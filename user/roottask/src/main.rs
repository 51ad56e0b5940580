//! The root task of `cargo xtask run`: greets, then loads every program module of the
//! boot archive into a new address space, starts its thread and serves its page faults.
//!
//! ```text
//!   KIP memory descriptor 0xE/3 (boot module) ──σ0 request by address──► archive pages
//!   archive entry <name> (ELF) ──► pages from σ0 ("anywhere"), segments copied in
//!   new space: SpaceControl (KIP 0xBFF0_0000, UTCBs 0xBF00_0000), thread, start message
//!   its page faults ──► this task maps the loaded page (segment rights) at the address
//!                       the program was linked for
//!   its I/O page faults ──► the ports from σ0, mapped on (refused: the program stops)
//! ```
//!
//! All memory this task gets from σ0 lands in its *physical window*: the receive window
//! `WINDOW` of 2^40 bytes, where σ0's answer (mapped at its physical address `p`) appears
//! at `WINDOW + p`. So the task never has to guess where free virtual space is.
//!
//! Archive entries: `sigma0`, `roottask` and `sigma1` are the kernel's business and are
//! skipped; `<name>.args` is the text of module `<name>`'s arguments (shown when the
//! module starts; passing them to the program is not defined yet).
//!
//! Not served yet: the services drivers ask of the root task (`docs/drivers.md`: attach an
//! interrupt line, look programs up by name, power off); drivers fall back without them.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod loader;
mod sigma0;

use core::cell::UnsafeCell;

use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc;
use l4::println;

/// The loader's tables: too big for the stack, so a static. This task has one thread.
struct Tables(UnsafeCell<loader::Loader>);

// SAFETY: the root task runs a single thread; the cell is only reached from `main`.
unsafe impl Sync for Tables {}

static LOADER: Tables = Tables(UnsafeCell::new(loader::Loader::new()));

fn main() {
    let me = l4::utcb::my_global_id();
    println!("roottask: hello from user mode (thread {:#x})", me.raw());
    // SAFETY: the only reference to the loader, taken once by the only thread.
    let loader = unsafe { &mut *LOADER.0.get() };
    loader.set_me(me);
    match sigma0::boot_archive() {
        Some(archive) => loader.start_all(&archive),
        None => println!("roottask: no boot archive found in the KIP"),
    }
    if loader.running() == 0 {
        println!("roottask: no programs to start; idle");
    } else {
        println!(
            "roottask: {} program(s) started; serving their page faults",
            loader.running()
        );
    }
    loop {
        match ipc::receive(ThreadId::ANY, Time::Never) {
            Ok(rx) => loader.serve(rx),
            Err(_) => continue,
        }
    }
}

l4::main!(main);
