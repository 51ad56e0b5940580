//! Tern: an L4 X.2 microkernel for x86_64.
//!
//! The kernel provides address spaces, threads, synchronous IPC, unique thread ids and
//! interrupts as messages — and nothing that could live outside it (Liedtke 1995).
//! See docs/architecture.md for the boot flow, memory layout and module map.
//!
//! Module map: `arch::x86_64` (everything processor specific), `boot` (from the PVH
//! start info to the root servers), `kmem` (kernel memory pool), `space`, `thread`,
//! `sched`, `timeout`, `fpu`, `ipc`, `syscall`, `trap`, `kip`, `kdb`, `panic`.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "arch/x86_64/mod.rs"]
pub mod arch;
pub mod boot;
#[cfg(feature = "invariants")]
pub mod check;
pub mod console;
pub mod fpu;
pub mod ipc;
pub mod ipc_items;
pub mod ipc_string;
pub mod ioport;
pub mod irq;
pub mod kdb;
pub mod kip;
pub mod kmem;
pub mod mapping;
pub mod panic;
pub mod sched;
pub mod space;
pub mod syscall;
pub mod thread;
pub mod timeout;
pub mod trap;
pub mod util;

use arch::{apic, cpu, gdt, serial};

/// Kernel version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Called by the PVH entry code on the boot stack, with the physical address of the
/// PVH start info.
#[no_mangle]
pub extern "C" fn kmain(start_info: u32) -> ! {
    serial::init();
    kprintln!("\nTern {} booting", VERSION);
    cpu::detect();
    gdt::init();
    arch::trap::init();
    boot::init_memory(start_info as u64);
    cpu::enable_protections();
    let archive = boot::init_pool_and_images();
    apic::init();
    let lines = arch::ioapic::init(boot::info().rsdp);
    kprintln!("interrupts: I/O APIC with {} lines (from the ACPI MADT)", lines);
    arch::syscall::init();
    print_cpu();
    kip::init();
    match boot::info().option("tern.test") {
        Some("panic") => panic!("deliberate panic requested on the command line (tern.test=panic)"),
        Some("stack-overflow") => {
            kprintln!("overflowing the boot stack (tern.test=stack-overflow)");
            recurse(0);
        }
        _ => {}
    }
    match archive {
        Some(a) => boot::start_root_servers(&a),
        None => kprintln!("no boot archive: nothing to run"),
    }
    kprintln!("kernel ready: {} threads, {} KiB kernel memory free", thread::count(), kmem::free_frames() * 4);
    sched::idle_loop()
}

fn print_cpu() {
    let f = cpu::features();
    kprintln!(
        "cpu: {} | smep={} smap={} umip={} pcid={} invpcid={} fsgsbase={} x2apic={} xsave={} (xcr0={:#x}, area {} B) 1g-pages={}",
        core::str::from_utf8(&f.vendor).unwrap_or("?"),
        f.smep,
        f.smap,
        f.umip,
        f.pcid,
        f.invpcid,
        f.fsgsbase,
        apic::is_x2apic(),
        f.xsave,
        cpu::xcr0(),
        f.xsave_size,
        f.page1g
    );
    kprintln!("clock: TSC {} kHz, APIC timer {} kHz", apic::tsc_khz(), apic::timer_khz());
}

#[inline(never)]
#[allow(unconditional_recursion)] // deliberate: the stack-overflow self-test
fn recurse(depth: u64) -> u64 {
    let buf = [depth; 64];
    // black_box keeps the frame from being optimised away.
    core::hint::black_box(&buf);
    recurse(depth + 1) + core::hint::black_box(buf[3])
}
