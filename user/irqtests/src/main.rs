//! `irqtests`: the interrupt and driver tests of Tern (issue 6), run as the root task of
//! the `interrupts` boot scenario.
//!
//! | module      | checks                                                              |
//! |-------------|---------------------------------------------------------------------|
//! | (here)      | σ0 hands out I/O ports                                              |
//! | `mechanism` | attach/detach/re-attach, sender id, masking while in service, one delivery after the acknowledgement, no loss under a burst, privilege, I/O page faults |
//! | `drivers`   | the UART driver (loopback echo, timeouts, large writes) and the RTC service (date, alarm), each in its own space |
//! | `rootsvc`   | the root-task protocol as `drvkit::rootsrv` serves it (the root task's code): attach/detach through the root task, refusals, lookup, register, list, ports, power off |
//! | `bench`     | `irq_rt`: device interrupt → user handler → acknowledging reply     |
//!
//! Each check prints `TERN-TEST ok|FAIL irq::<name>`; the program ends with
//! `TERN-TEST end:` and powers off with the failure count. No wait is unbounded, and
//! every check undoes what it set up (lines detached, threads deleted, UART loopback
//! off before any line is printed).

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A failed check carries its text in a fixed buffer (there is no heap), so the error
// variant is large by design.
#![allow(clippy::result_large_err)]

mod bench;
mod dev;
mod drivers;
mod env;
mod harness;
mod mechanism;
mod rootsvc;

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::Rights;
use abi::time::Time;

use crate::env::{faults, Worker};
use crate::harness::{ensure, wait_until, Check, Context, Runner};

static PROBE: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Touches one device's ports from a worker (whose pager is the pager thread, which only
/// records I/O faults: a missing port cannot block the main thread).
fn probe(device: usize) {
    let v = if device == 0 {
        dev::COM1.inb(drvkit::ns16550::reg::LSR)
    } else {
        rtc::service::read_reg(dev::CMOS, drvkit::cmos::reg::A)
    };
    PROBE[device].store(0x100 | v as u64, Ordering::Release);
}

/// Can this space use `device`'s ports (0 COM1, 1 CMOS)? Tried from a worker.
fn usable(device: usize) -> bool {
    let before = faults::io_count();
    let Ok(w) = Worker::local(probe, device, env::MAIN_PRIO) else {
        return false;
    };
    let done = wait_until(1_000_000, || PROBE[device].load(Ordering::Acquire) != 0);
    drop(w);

    done && faults::io_count() == before
}

/// The I/O privilege level of this thread (RFLAGS bits 12..13).
fn iopl() -> u64 {
    let flags: u64;
    // SAFETY: `pushfq; pop` copies RFLAGS through the stack, which it leaves balanced.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    (flags >> 12) & 3
}

fn ports_from_sigma0() -> Check {
    let t = Time::Period { us: 1_000_000 };
    let com1 = drvkit::sigma0::request_io(dev::COM1.fpage(Rights::RW), t);
    let cmos = drvkit::sigma0::request_io(dev::CMOS.fpage(Rights::RW), t);
    // Use what σ0 gave — or every port, with `tern.x2-compat-io` (IOPL 3) — if it works.
    let all = iopl() == 3;
    dev::set_have_ports((com1.is_ok() || all) && usable(0), (cmos.is_ok() || all) && usable(1));
    com1.ctx("σ0 request for COM1's ports")?;
    cmos.ctx("σ0 request for the clock's ports")?;
    ensure!(
        dev::have_com1() && dev::have_cmos(),
        "σ0 granted the ports, but using them faults"
    );
    Ok(())
}

fn main() {
    l4::println!(
        "irqtests: interrupt and driver tests, thread {:#x}",
        l4::utcb::my_global_id().raw()
    );
    let mut r = Runner::new(dev::quiet);
    if let Err(e) = env::init() {
        r.check("setup", || Err(e));
        r.finish();
    }
    // Let the other root servers run first (σ1 of the test archive reports a fault).
    harness::sleep_us(50_000);
    r.check("sigma0-grants-io-ports", ports_from_sigma0);
    mechanism::run(&mut r);
    drivers::run(&mut r);
    rootsvc::run(&mut r);
    bench::run(&mut r);
    r.finish()
}

l4::main!(main);
