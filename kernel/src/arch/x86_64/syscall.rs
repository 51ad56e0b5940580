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
use crate::space::Space;
use crate::thread::{State, Tcb};

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
    cmpq %gs:{ipc_ret}, %rcx
    jne .Lslow

    /* ---- IPC fast path: a straight run of guards, then the switch. ----
     * RSP = the caller's TCB (its kernel stack top); the user frame ends there:
     * rip at -40, rflags at -24, rsp at -16. Scratch registers: RCX, R11, RBP
     * (the binding declares them clobbered). */
    movq %rcx, -40(%rsp)
    movq %r11, -24(%rsp)
    movq %gs:{scratch}, %rcx
    movq %rcx, -16(%rsp)
    testl $0xFFF8, %r9d               /* untyped words <= 7, no typed items, no flags */
    jnz .Lslow_restore
    testb $0x3F, %sil                 /* To is a global id */
    jz .Lslow_restore
    movq %rsi, %rcx
    shrq $32, %rcx
    cmpl ${max_threads}, %ecx
    jae .Lslow_restore
    btq %rcx, {slots}(%rip)           /* the thread exists */
    jnc .Lslow_restore
    shlq ${slot_shift}, %rcx
    movabsq ${tcb_base}, %r11
    addq %r11, %rcx                   /* RCX = destination TCB */
    cmpq %rsi, {t_id}(%rcx)           /* same version */
    jne .Lslow_restore
    testw %r8w, %r8w                  /* receive timeout: never */
    jnz .Lslow_restore
    cmpq %rsi, %rdx                   /* call (receive from To) ... */
    je 1f
    cmpq $-1, %rdx                    /* ... or reply-and-wait for anyone */
    jne .Lslow_restore
    cmpq $0, {t_sendq}(%rsp)          /* with nobody already waiting to send to us */
    jne .Lslow_restore
1:  cmpq $1, {t_fast}(%rcx)           /* partner waits in a fast-resumable receive */
    jne .Lslow_restore
    movq {t_partner}(%rcx), %r11      /* ... from us or from anyone */
    cmpq %r11, {t_id}(%rsp)
    je 2f
    cmpq $-1, %r11
    jne .Lslow_restore
2:  movq {t_space}(%rsp), %r11
    movq {t_space}(%rcx), %rbp
    cmpq %r11, %rbp
    je 3f
    cmpq $0, {s_flush}(%rbp)          /* its TLB entries may be used as they are */
    jne .Lslow_restore
    movq {s_redir}(%r11), %r11        /* our space is not confined by a redirector */
    incq %r11
    cmpq $1, %r11
    ja .Lslow_restore
    movq {s_cr3}(%rbp), %rbp
    movq %rbp, %cr3
    movq {t_id}(%rsp), %rbp           /* From: our global id */
    jmp 4f
3:  movq {t_local}(%rsp), %rbp        /* From: our local id */

4:  /* ---- commit: we wait (fast-resumable), the partner runs. ---- */
    movq %rdx, {t_partner}(%rsp)
    movb ${receiving}, {t_state}(%rsp)
    movq $1, {t_fast}(%rsp)
    leaq -({frame}+8+48)(%rsp), %r11
    movq %r11, {t_ksp}(%rsp)
    movq $tern_syscall_return, -({frame}+8)(%rsp)
    rdfsbase %r11
    movq %r11, {t_fs}(%rsp)
    movq {t_fs}(%rcx), %r11
    wrfsbase %r11
    movq {t_utcb}(%rcx), %r11
    swapgs
    wrgsbase %r11
    swapgs
    movb ${ready}, {t_state}(%rcx)
    movq $0, {t_fast}(%rcx)
    movq %rcx, %gs:{current}
    movq %rcx, %gs:{kstack}
    movq %rcx, %gs:{rsp0}
    cmpq {fpu_owner}(%rip), %rcx
    je 5f
    movq %cr0, %r11
    orq $8, %r11
    movq %r11, %cr0
    jmp 6f
5:  clts
6:  movq %rbp, %rsi
    movq {t_local}(%rcx), %rdi
    movq %rcx, %rsp
    movq -40(%rsp), %rcx
    movq -24(%rsp), %r11
    movq -16(%rsp), %rsp
    swapgs
    sysretq

.Lslow_restore:
    movq -40(%rsp), %rcx
    movq -24(%rsp), %r11
.Lslow:
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
    ipc_ret = const super::gdt::PERCPU_IPC_RETURN,
    current = const super::gdt::PERCPU_CURRENT,
    rsp0 = const super::gdt::PERCPU_TSS_RSP0,
    max_threads = const crate::thread::MAX_THREADS,
    slots = sym crate::thread::SLOTS,
    slot_shift = const 14,
    tcb_base = const super::layout::TCB_AREA + super::layout::TCB_OFFSET,
    t_id = const core::mem::offset_of!(Tcb, id),
    t_sendq = const core::mem::offset_of!(Tcb, send_queue),
    t_fast = const core::mem::offset_of!(Tcb, fast_wait),
    t_partner = const core::mem::offset_of!(Tcb, partner),
    t_space = const core::mem::offset_of!(Tcb, space),
    t_local = const core::mem::offset_of!(Tcb, local),
    t_state = const core::mem::offset_of!(Tcb, state),
    t_ksp = const core::mem::offset_of!(Tcb, kernel_sp),
    t_fs = const core::mem::offset_of!(Tcb, fs_base),
    t_utcb = const core::mem::offset_of!(Tcb, utcb_user),
    s_flush = const core::mem::offset_of!(Space, needs_flush),
    s_redir = const core::mem::offset_of!(Space, redirector),
    s_cr3 = const core::mem::offset_of!(Space, cr3_value),
    receiving = const State::Receiving as u8,
    ready = const State::Ready as u8,
    frame = const super::trap::FRAME_SIZE,
    fpu_owner = sym crate::fpu::OWNER,
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
    // The fast path uses RD/WRFSBASE and WRGSBASE; without them every IPC takes the
    // full path.
    if cpu::features().fsgsbase && !crate::boot::info().option("tern.fastpath").is_some_and(|v| v == "off") {
        super::gdt::PERCPU.get_mut().ipc_return = stub_address(Stub::Ipc) + 2;
    }
}

extern "C" fn syscall_dispatch(frame: &mut Frame) {
    crate::syscall::dispatch(frame);
}
