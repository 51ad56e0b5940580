//! Kernel panics and register dumps.
//!
//! A panic prints `KERNEL PANIC: <reason>`, the register state where there is one, and a
//! frame-pointer backtrace (`#n 0x…` lines that `cargo xtask` symbolizes), then stops the
//! machine with the debug-exit panic status.

use crate::arch::cpu;
use crate::arch::layout::{KERNEL_VMA, TCB_AREA, TCB_SLOT};
use crate::arch::trap::Frame;
use crate::kprintln;

/// Prints a register frame.
pub fn dump_frame(f: &Frame) {
    kprintln!("  rip={:#018x} rsp={:#018x} rflags={:#010x} cs={:#x} ss={:#x}", f.rip, f.rsp, f.rflags, f.cs, f.ss);
    kprintln!("  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}", f.rax, f.rbx, f.rcx, f.rdx);
    kprintln!("  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}", f.rsi, f.rdi, f.rbp, f.r8);
    kprintln!("  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}", f.r9, f.r10, f.r11, f.r12);
    kprintln!("  r13={:#018x} r14={:#018x} r15={:#018x} vector={} error={:#x}", f.r13, f.r14, f.r15, f.vector, f.error);
}

/// Walks the frame-pointer chain from `rbp` and prints return addresses.
pub fn backtrace(mut rbp: u64, first: Option<u64>) {
    kprintln!("backtrace:");
    let mut n = 0;
    if let Some(ip) = first {
        kprintln!("  #{} {:#018x}", n, ip);
        n += 1;
    }
    while n < 32 && rbp >= KERNEL_VMA.min(TCB_AREA) && rbp % 8 == 0 && is_readable_kernel(rbp) {
        // SAFETY: `rbp` points into a mapped kernel stack (checked by `is_readable_kernel`);
        // frame records are two words [saved rbp, return address].
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        kprintln!("  #{} {:#018x}", n, ret);
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

fn is_readable_kernel(va: u64) -> bool {
    crate::arch::paging::translate(crate::arch::paging::read_cr3() & 0x000F_FFFF_FFFF_F000, va).is_some()
        && crate::arch::paging::translate(crate::arch::paging::read_cr3() & 0x000F_FFFF_FFFF_F000, va + 8).is_some()
}

/// Whether `addr` lies in a kernel-stack guard page.
pub fn is_stack_guard(addr: u64) -> bool {
    if addr >= TCB_AREA && addr < TCB_AREA + (crate::thread::MAX_THREADS as u64) * TCB_SLOT {
        return (addr - TCB_AREA) % TCB_SLOT < 4096;
    }
    let boot = crate::boot::boot_stack_guard();
    addr >= boot && addr < boot + 4096
}

/// Panics with a register frame.
pub fn panic_frame(reason: &str, f: &Frame) -> ! {
    kprintln!("\nKERNEL PANIC: {} at rip={:#018x}", reason, f.rip);
    if f.vector == 14 || f.vector == 8 {
        kprintln!("  cr2={:#018x}", cpu::read_cr2());
    }
    dump_frame(f);
    backtrace(f.rbp, Some(f.rip));
    cpu::debug_exit(cpu::exit::PANIC)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("\nKERNEL PANIC: {}", info);
    let rbp: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    backtrace(rbp, None);
    cpu::debug_exit(cpu::exit::PANIC)
}
