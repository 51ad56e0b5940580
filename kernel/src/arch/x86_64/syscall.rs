//! `syscall`/`sysret` entry and the user-visible system-call stub page.
//!
//! X.2 programs call the kernel through function pointers read from the KIP. On amd64
//! those are absolute addresses (see docs/abi.md), so the stubs live in one page of the
//! kernel image that is mapped user-executable, read-only and global in every space.
//! Each stub is `syscall; ret`, 32 bytes apart; the kernel tells which call was made from
//! the return address in RCX, so no register is spent on a call number.
//!
//! Entry builds the same [`Frame`](super::trap::Frame) as a trap, at the top of the
//! current thread's kernel stack; exit returns with `sysretq`.

use core::arch::global_asm;

use super::cpu::{self, msr};
use super::gdt::{PERCPU_KSTACK, PERCPU_SCRATCH};
use super::trap::{Frame, VECTOR_SYSCALL};

/// Stub order in the stub page (index = offset / 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stub {
    Ipc = 0,
    ExchangeRegisters = 1,
    ThreadControl = 2,
    SystemClock = 3,
    ThreadSwitch = 4,
    Schedule = 5,
    Unmap = 6,
    SpaceControl = 7,
    ProcessorControl = 8,
    MemoryControl = 9,
    /// Bench-only: enter and leave the kernel doing nothing (not published in the KIP).
    Null = 10,
}

/// Number of stubs.
pub const STUB_COUNT: u64 = 11;
/// Distance between stubs.
pub const STUB_ALIGN: u64 = 32;

global_asm!(
    r#"
    .section .stubs, "ax"
    .p2align 12
    .global tern_stubs
tern_stubs:
    .rept {count}
    .p2align 5
    syscall
    ret
    .endr

    .section .text
    .p2align 4
    .global tern_syscall_entry
tern_syscall_entry:
    swapgs
    movq %rsp, %gs:{scratch}
    movq %gs:{kstack}, %rsp
    pushq ${user_ss}
    pushq %gs:{scratch}
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq $0
    pushq ${vec}
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    pushq 17*8(%rsp)
    pushq $0
    movq %rsp, %rbp
    call {dispatch}
    addq $16, %rsp
    .global tern_syscall_return
tern_syscall_return:
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    movq 2*8(%rsp), %rcx
    movq 4*8(%rsp), %r11
    movq 5*8(%rsp), %rsp
    swapgs
    sysretq
"#,
    count = const STUB_COUNT,
    scratch = const PERCPU_SCRATCH,
    kstack = const PERCPU_KSTACK,
    user_ss = const super::gdt::USER_DS as u64,
    user_cs = const super::gdt::USER_CS as u64,
    vec = const VECTOR_SYSCALL,
    dispatch = sym syscall_dispatch,
    options(att_syntax)
);

extern "C" {
    static tern_stubs: [u8; 4096];
    fn tern_syscall_entry();
    /// Restores a syscall [`Frame`] at RSP and returns with `sysretq`.
    pub fn tern_syscall_return();
}

/// Address of a stub (what the KIP publishes).
pub fn stub_address(s: Stub) -> u64 {
    // SAFETY: taking the address of a static symbol.
    (unsafe { tern_stubs.as_ptr() } as u64) + s as u64 * STUB_ALIGN
}

/// Base of the stub page.
pub fn stub_page() -> u64 {
    // SAFETY: taking the address of a static symbol.
    unsafe { tern_stubs.as_ptr() as u64 }
}

/// Which stub a `syscall` came from, given the return RIP it left in RCX.
#[inline(always)]
pub fn stub_from_return(rip: u64) -> Option<Stub> {
    let off = rip.wrapping_sub(stub_page() + 2);
    if off % STUB_ALIGN != 0 || off / STUB_ALIGN >= STUB_COUNT {
        return None;
    }
    // SAFETY: `Stub` is `repr(u8)` with dense discriminants 0..STUB_COUNT (checked above).
    Some(unsafe { core::mem::transmute::<u8, Stub>((off / STUB_ALIGN) as u8) })
}

/// Programs the syscall MSRs.
pub fn init() {
    // SAFETY: STAR selects the GDT layout of gdt.rs (kernel CS 0x08, sysret base 0x18 so
    // user CS = 0x2B and SS = 0x23); LSTAR points at our entry; SFMASK clears IF, TF,
    // DF, AC and NT on entry; EFER.SCE enables the instructions.
    unsafe {
        cpu::wrmsr(msr::STAR, (0x18u64 << 48) | (0x08u64 << 32));
        cpu::wrmsr(msr::LSTAR, tern_syscall_entry as *const () as u64);
        cpu::wrmsr(msr::SFMASK, 0x4_7700);
        cpu::wrmsr(msr::EFER, cpu::rdmsr(msr::EFER) | 1);
    }
}

extern "C" fn syscall_dispatch(frame: &mut Frame) {
    crate::syscall::dispatch(frame);
}
