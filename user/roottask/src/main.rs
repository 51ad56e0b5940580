//! The root task of `cargo xtask run`: greets, then loads every program module of the
//! boot archive into a new address space, starts its thread and serves its page faults.
//!
//! ```text
//!   KIP memory descriptor 0xE/3 (boot module) ──σ0 request by address──► archive pages
//!   archive entry <name> (ELF) ──► pages from σ0 ("anywhere"), segments copied in
//!   new space: SpaceControl (KIP 0xBFF0_0000, UTCBs 0xBF00_0000), thread, start message
//!   its page faults ──► this task maps the loaded page (segment rights) at the address
//!                       the program was linked for
//!   its I/O page faults ──► the ports from σ0, mapped on if no other program holds them
//!                           (refused: the program stops)
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
//! It also serves the requests of the programs it started (`drvkit::rootsrv`, protocol
//! `drvkit::wire::root`, `docs/drivers.md` §4): interrupt lines attached to a driver
//! (ThreadControl, which only a privileged space may do), I/O ports from σ0 mapped on
//! (also on an I/O page fault), names looked up and registered, the registry listed, power
//! off. Every program is entered in the registry under its archive name before it runs.
//!
//! ```text
//!   receive (any) ──► page fault / I/O page fault of a program ──► loader (ports: registry)
//!                 └─► anything else ──► root service (root protocol, PING, IDENTIFY)
//! ```

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod loader;
mod sigma0;

use core::cell::UnsafeCell;

use abi::fpage::IoFpage;
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::rootsrv::{Host, RootService, Served};
use l4::ipc;
use l4::println;

/// What the root service needs of this task: ports from σ0, and powering off (this task
/// is privileged, so the kernel's power-off call works).
struct RootHost;

impl Host for RootHost {
    fn obtain_ports(&mut self, io: IoFpage) -> bool {
        sigma0::request_ports(io)
    }

    fn power_off(&mut self, status: u64) -> bool {
        println!("roottask: powering off (exit status {})", status);
        l4::kdb::power_off(status);
        false
    }
}

/// The loader's tables and the registry: too big for the stack, so statics. This task has
/// one thread.
struct Tables(UnsafeCell<(loader::Loader, RootService<RootHost>)>);

// SAFETY: the root task runs a single thread; the cell is only reached from `main`.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables(UnsafeCell::new((loader::Loader::new(), RootService::new(RootHost))));

fn main() {
    let me = l4::utcb::my_global_id();
    println!("roottask: hello from user mode (thread {:#x})", me.raw());
    // SAFETY: the only reference to the tables, taken once by the only thread.
    let (loader, service) = unsafe { &mut *TABLES.0.get() };
    loader.set_me(me);
    match sigma0::boot_archive() {
        Some(archive) => loader.start_all(&archive, service),
        None => println!("roottask: no boot archive found in the KIP"),
    }
    if loader.running() == 0 {
        println!("roottask: no programs to start; idle");
    } else {
        println!(
            "roottask: {} program(s) started; serving their faults and the root protocol",
            loader.running()
        );
    }
    loop {
        let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Never) else {
            continue;
        };
        match loader.serve_fault(&rx, |from, io| service.io_fault(from, io)) {
            loader::Fault::Served => {}
            loader::Fault::Stopped(id) => service.forget(id),
            loader::Fault::Other => {
                // Refusals of the policy are worth a line on the console; a name not found
                // (the end of a listing, a lookup that misses) is not.
                if let Served::Answered(label, status) = service.serve(&rx) {
                    use drvkit::wire::Status;
                    if matches!(status, Status::Denied | Status::BadRequest | Status::Kernel) {
                        println!(
                            "roottask: request {:#x} of {:#x} refused: {:?}",
                            label,
                            rx.from.raw(),
                            status
                        );
                    }
                }
            }
        }
    }
}

l4::main!(main);
