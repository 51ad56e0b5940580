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
use super::gdt::PERCPU_TSS_RSP0;
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

    .section .extable, "a"
    .quad tern_fastpath_load, tern_fastpath_fixup
    .section .text
    .p2align 4
    .global tern_syscall_entry
tern_syscall_entry:
    /* RBP is free in every system call (the binding saves it around the stub call).
     * Switch to the thread's kernel stack, whose top is its TCB; the user frame ends
     * there: rip at -40, rflags at -24, rsp at -16. */
    swapgs
    movq %gs:{rsp0}, %rbp
    movq %rsp, -16(%rbp)
    movq %rbp, %rsp
    cmpq %gs:{ipc_ret}, %rcx
    jne .Lnot_ipc

    /* ---- IPC fast path: a straight run of guards, then the switch. ----
     * Scratch registers: RCX, R11, RBP (the binding declares them clobbered).
     * First, To as a global id in RBP: a local id names a UTCB of our space, whose
     * MyGlobalId word (MR0 - 120) is read with a recovering load (the thread found
     * must then have exactly that local id). */
    testb $0x3F, %sil
    jnz 7f
    movq %rsi, %rbp
    shrq $47, %rbp
    jnz .Lslow
    testq %rsi, %rsi
    jz .Lslow
    subq $64, %rsp                    /* a fault's trap frame must not hit the user RSP at -16 */
    stac
    .global tern_fastpath_load
tern_fastpath_load:
    movq -120(%rsi), %rbp
    clac
    addq $64, %rsp
    jmp 8f
7:  movq %rsi, %rbp
8:  movq %rcx, -40(%rsp)
    movq %r11, -24(%rsp)
    movzwl %r9w, %r11d                /* untyped words <= 8, no typed items, no flags */
    cmpl $8, %r11d
    ja .Lslow_restore
    movq %rbp, %rcx
    shrq $32, %rcx
    andl ${thread_mask}, %ecx         /* numbers beyond the table fail the id check */
    btq %rcx, {slots}(%rip)           /* the thread exists */
    jnc .Lslow_restore
    shlq ${slot_shift}, %rcx
    movabsq ${tcb_base}, %r11
    addq %r11, %rcx                   /* RCX = destination TCB */
    cmpq %rbp, {t_id}(%rcx)           /* same version */
    jne .Lslow_restore
    cmpq %rbp, %rsi                   /* given as a local id: it must be exactly that one */
    je 9f
    cmpq %rsi, {t_local}(%rcx)
    jne .Lslow_restore
    movq {t_space}(%rcx), %r11
    cmpq %r11, {t_space}(%rsp)
    jne .Lslow_restore
9:  testw %r8w, %r8w                  /* receive timeout: never */
    jnz .Lslow_restore
    cmpq %rsi, %rdx                   /* call (receive from To) ... */
    je 1f
    cmpq $-1, %rdx                    /* ... or reply-and-wait for anyone */
    jne .Lslow_restore
    cmpq $0, {t_sendq}(%rsp)          /* with nobody already waiting to send to us */
    jne .Lslow_restore
1:  cmpb $0, {t_fast}(%rcx)           /* partner waits in a fast-resumable receive */
    je .Lslow_restore
    movq {t_partner}(%rcx), %r11      /* ... from us or from anyone */
    cmpq %r11, {t_id}(%rsp)
    je 2f
    cmpq $-1, %r11
    jne .Lslow_restore
2:  movq {t_space}(%rsp), %r11
    movq {t_space}(%rcx), %rbp
    cmpq %r11, %rbp
    je 3f
    cmpq $0, {s_slow_tx}(%r11)        /* our space: not confined, no I/O ports */
    jne .Lslow_restore
    cmpq $0, {s_slow_rx}(%rbp)        /* its space: TLB entries usable as they are, no ports */
    jne .Lslow_restore
    movq {s_cr3}(%rbp), %rbp
    movq %rbp, %cr3
    movq {t_id}(%rsp), %rbp           /* From: our global id */
    jmp 4f
3:  movq {t_local}(%rsp), %rbp        /* From: our local id */

4:  /* ---- commit: we wait (fast-resumable), the partner runs. ---- */
    cmpb $8, %r9b                     /* MR8 travels from UTCB to UTCB */
    jne 11f
    movq {t_ukern}(%rsp), %r11
    movq {mr8}(%r11), %r11
    pushq %rcx
    movq {t_ukern}(%rcx), %rcx
    movq %r11, {mr8}(%rcx)
    popq %rcx
11: cmpq %rsi, %rdx
    jne 10f
    movq {t_id}(%rcx), %rdx           /* closed receive from To: kept as its global id */
10: movq %rdx, {t_partner}(%rsp)
    movw ${recv_fast}, {t_state}(%rsp) /* state = Receiving, fast_wait = blocked fast */
    rdfsbase %r11
    movq %r11, {t_fs}(%rsp)
    movq {t_fs}(%rcx), %r11
    wrfsbase %r11
    movq {t_utcb}(%rcx), %r11
    swapgs
    wrgsbase %r11
    swapgs
    movw ${ready}, {t_state}(%rcx)    /* state = Ready, fast_wait = 0 */
    movq %rcx, %gs:{rsp0}
    /* Lazy FPU: CR0.TS is set iff the running thread is not the FPU owner. */
    movq {fpu_owner}(%rip), %r11
    cmpq %r11, %rcx
    je 5f
    cmpq %r11, %rsp
    jne 6f
    movq %cr0, %r11
    orq $8, %r11
    movq %r11, %cr0
    jmp 6f
5:  clts
6:  movq %rbp, %rsi
    movq {t_local}(%rcx), %rdi
    movq -24(%rcx), %r11
    movq -16(%rcx), %rsp
    movq -40(%rcx), %rcx
    swapgs
    sysretq

.Lnot_ipc:
    /* SystemClock: microseconds = TSC × (2^32 · 1000 / kHz) >> 32, nothing else. */
    cmpq %gs:{clock_ret}, %rcx
    jne .Lslow
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    mulq %gs:{tsc_mult}
    shrdq $32, %rdx, %rax
    xorl %edx, %edx
    movq -16(%rsp), %rsp
    swapgs
    sysretq

    /* Bench-only entry (`tern.syscall-floor`): the bare cost of entering and leaving. */
    .global tern_floor_entry
tern_floor_entry:
    sysretq

.Lslow_restore:
    movq -40(%rsp), %rcx
    movq -24(%rsp), %r11
    jmp .Lslow
    .global tern_fastpath_fixup
tern_fastpath_fixup:
    clac
    addq $64, %rsp
.Lslow:
    /* The full path: complete the frame (user RSP is already at -16). */
    movq ${user_ss}, -8(%rsp)
    movq %r11, -24(%rsp)
    movq ${user_cs}, -32(%rsp)
    movq %rcx, -40(%rsp)
    subq $40, %rsp
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
    rsp0 = const PERCPU_TSS_RSP0,
    ipc_ret = const super::gdt::PERCPU_IPC_RETURN,
    clock_ret = const super::gdt::PERCPU_CLOCK_RETURN,
    tsc_mult = const super::gdt::PERCPU_TSC_MULT,
    thread_mask = const crate::thread::MAX_THREADS - 1,
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
    t_fs = const core::mem::offset_of!(Tcb, fs_base),
    t_utcb = const core::mem::offset_of!(Tcb, utcb_user),
    s_slow_tx = const core::mem::offset_of!(Space, slow_as_sender),
    s_slow_rx = const core::mem::offset_of!(Space, slow_as_receiver),
    t_ukern = const core::mem::offset_of!(Tcb, utcb_kernel),
    mr8 = const abi::utcb::UTCB_MR0_OFFSET + 8 * 8,
    s_cr3 = const core::mem::offset_of!(Space, cr3_value),
    recv_fast = const State::Receiving as u16 | (crate::thread::FAST_WAIT_BLOCKED_FAST as u16) << 8,
    ready = const State::Ready as u8,
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
    fn tern_floor_entry();
    /// Restores a syscall [`Frame`] at RSP and returns with `sysretq`.
    pub fn tern_syscall_return();
}

/// Address of the system-call exit path (restores a syscall frame, `sysretq`).
pub fn syscall_return_address() -> u64 {
    tern_syscall_return as *const () as u64
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
    // The fast path uses RD/WRFSBASE, WRGSBASE and STAC/CLAC; without them every IPC
    // takes the full path. `tern.fastpath=off` on the command line disables it too.
    let fast = !crate::boot::info().option("tern.fastpath").is_some_and(|v| v == "off");
    let p = super::gdt::PERCPU.get_mut();
    if cpu::features().fsgsbase && cpu::features().smap && fast {
        p.ipc_return = stub_address(Stub::Ipc) + 2;
    }
    if fast {
        p.clock_return = stub_address(Stub::SystemClock) + 2;
    }
    p.tsc_mult = super::apic::tsc_mult();
    if syscall_floor() {
        // SAFETY: bench mode: `syscall` returns at once; nothing else enters this way.
        unsafe { cpu::wrmsr(msr::LSTAR, tern_floor_entry as *const () as u64) };
    }
}

/// Whether the bench-only `tern.syscall-floor` mode is on.
pub fn syscall_floor() -> bool {
    crate::boot::info().cmdline().split_whitespace().any(|w| w == "tern.syscall-floor")
}

extern "C" fn syscall_dispatch(frame: &mut Frame) {
    crate::syscall::dispatch(frame);
}
