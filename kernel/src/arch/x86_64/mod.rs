//! Architecture layer: everything specific to x86_64 lives below this module.
//!
//! Generic kernel code uses only the names exported here.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod gdt;
pub mod ioapic;
pub mod layout;
pub mod paging;
pub mod port;
pub mod serial;
pub mod syscall;
pub mod trap;

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text
    .p2align 4
    /* tern_switch(save_sp: *mut u64 (rdi), new_sp: u64 (rsi)) */
    .global tern_switch
tern_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
"#,
    options(att_syntax)
);

global_asm!(
    r#"
    .section .text
    .p2align 4
    /* First code of every thread: RSP points at its user frame. */
    .global tern_thread_entry
tern_thread_entry:
    call {first}
    jmp trap_return
"#,
    first = sym crate::thread::first_entry,
    options(att_syntax)
);

global_asm!(
    r#"
    .section .text
    .p2align 4
    /* A fast-blocked thread asked to serve its partner's page fault: RSP points at its
     * user frame; afterwards it leaves like any system call. */
    .global tern_help_entry
tern_help_entry:
    call {help}
    jmp tern_syscall_return
"#,
    help = sym crate::ipc_string::help_entry,
    options(att_syntax)
);

extern "C" {
    #[link_name = "tern_help_entry"]
    /// Entry of a fast-blocked thread serving a partner's fault (see `ipc_string`).
    pub fn help_entry();
    #[link_name = "tern_thread_entry"]
    /// Entry point of a new thread's kernel stack (see `thread::reset_stack`).
    pub fn thread_entry();
    fn tern_switch(save_sp: *mut u64, new_sp: u64);
}

/// Number of words [`switch_stacks`] keeps on a suspended stack below the return address.
pub const SWITCH_SAVED_WORDS: usize = 6;

/// Saves the callee-saved registers and stack pointer of the running kernel context into
/// `*save_sp` and resumes the context whose stack pointer is `new_sp`.
///
/// # Safety
/// `new_sp` must be a stack pointer saved by this function, or a stack prepared with
/// [`SWITCH_SAVED_WORDS`] zero words followed by a return address; `save_sp` must be
/// valid for writes and stay valid until this context is resumed.
#[inline(always)]
pub unsafe fn switch_stacks(save_sp: *mut u64, new_sp: u64) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { tern_switch(save_sp, new_sp) }
}

/// Sets the user FS and GS bases of the thread about to run.
///
/// GS: while in the kernel, the user GS base lives in `KERNEL_GS_BASE` (swapped on
/// entry), so that is the MSR to write.
#[inline(always)]
pub fn set_user_segment_bases(fs: u64, gs: u64) {
    // SAFETY: both bases are user-chosen or kernel-chosen addresses with no effect on
    // kernel execution (the kernel never uses FS; its GS base is separate).
    unsafe {
        cpu::wrmsr(cpu::msr::FS_BASE, fs);
        cpu::wrmsr(cpu::msr::KERNEL_GS_BASE, gs);
    }
}

/// Reads the running thread's user FS base (it may have changed it with `wrfsbase`).
#[inline(always)]
pub fn user_fs_base() -> u64 {
    cpu::rdmsr(cpu::msr::FS_BASE)
}
