//! System calls through the KIP's stub addresses (AMD64 binding register conventions).

use abi::thread_id::ThreadId;

use crate::kip;

/// SystemClock: microseconds since boot.
pub fn system_clock() -> u64 {
    let t: u64;
    // SAFETY: calling the kernel's SystemClock stub; the binding declares every register
    // but RSP/RBP clobbered, and so does this call.
    unsafe {
        core::arch::asm!(
            "push rbp", "call {f}", "pop rbp",
            f = in(reg) kip::get().syscalls.system_clock,
            out("rax") t, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        )
    };
    t
}

/// ThreadSwitch: donate the rest of the timeslice to `dest`, or yield (nil).
pub fn thread_switch(dest: ThreadId) {
    // SAFETY: calling the kernel's ThreadSwitch stub with RDI = dest; everything the
    // kernel may change is declared clobbered.
    unsafe {
        core::arch::asm!(
            "push rbp", "call {f}", "pop rbp",
            f = in(reg) kip::get().syscalls.thread_switch,
            inout("rdi") dest.raw() => _, out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        )
    };
}
