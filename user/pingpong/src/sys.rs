//! The measured code: system calls through the KIP stubs as tight assembly loops, and the
//! few raw calls the benchmark makes between the TSC reads.
//!
//! Every loop here reads the TSC itself, before and after, so that nothing but the loop
//! lies between the two reads, and has an *empty* twin — the same instructions without the
//! `call` of the stub — whose cost the caller subtracts: a result is the cost of the
//! system call itself (the `call` into the stub, the stub, the kernel and the way back). The loops keep
//! their state in memory (on the stack) because a system call may clobber any register the
//! binding declares clobbered; RBX and RBP are saved around them by hand (LLVM reserves
//! RBX, and the binding lets the stub clobber RBP).
//!
//! Why these calls are not `l4`'s: what runs between two TSC reads is the measurement, so
//! it must stay the same instructions. `l4::syscall::ipc` and `l4::syscall::unmap` load
//! MR1..MR7 (Unmap: MR0..MR7) from the UTCB before the call and store all eight back
//! after it, as Pistachio's binding does; [`ipc`] here keeps the MRs in registers (an
//! array on the stack) and [`unmap1`] passes one fpage in R9 and stores nothing, so the
//! measured sinks, pagers and handlers (`map_unmap_4k`, `string_ipc_*`, `pagefault_rt`,
//! `unmap_chain_1000`, `irq_rt`) cost what the kernel costs. The timed loops, RDTSC and
//! port I/O have no counterpart in `l4`. Thread and space creation and the start message,
//! which no measurement includes, use `l4`; the other set-up messages share the message
//! arrays of the measured ones and so go through [`ipc`] too.

use abi::msg::MsgTag;
use abi::syscall::UnmapControl;

/// Reads the time-stamp counter (under QEMU `-icount shift=0`: instructions executed).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// One Ipc through the KIP stub with MR0..MR7 in the binding's registers (R9, RAX, RBX,
/// R10, R12..R15); returns `From` (RSI) and leaves the received MR0..MR7 in `mrs`.
#[inline(always)]
pub fn ipc(to: u64, from: u64, timeouts: u64, mrs: &mut [u64; 8]) -> u64 {
    let stub = l4::kip::get().syscalls.ipc;
    let utcb = l4::utcb::my_local_id().raw();
    let result_from: u64;
    // SAFETY: AMD64 binding of Ipc: RSI = To, RDX = FromSpecifier, R8 = timeouts, R9 = MR0,
    // RAX/RBX/R10/R12..R15 = MR1..MR7, RDI = UTCB. Every register but RSP is an output or
    // clobbered; RBX (MR2, passed through `mrs[2]` in memory) and RBP are saved and
    // restored around the call, and RCX keeps the address of `mrs` on the stack.
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "mov rbx, [rcx + 16]",
            "push rcx",
            "call r11",
            "pop rcx",
            "mov [rcx + 16], rbx",
            "pop rbx",
            "pop rbp",
            inout("rcx") mrs.as_mut_ptr() => _,
            inout("r11") stub => _,
            inout("rsi") to => result_from,
            inout("rdx") from => _,
            inout("r8") timeouts => _,
            inout("r9") mrs[0] => mrs[0],
            inout("rax") mrs[1] => mrs[1],
            inout("r10") mrs[3] => mrs[3],
            inout("r12") mrs[4] => mrs[4],
            inout("r13") mrs[5] => mrs[5],
            inout("r14") mrs[6] => mrs[6],
            inout("r15") mrs[7] => mrs[7],
            inout("rdi") utcb => _,
        )
    };
    result_from
}

/// Whether a received tag has the error flag set.
pub fn failed(mrs: &[u64; 8]) -> bool {
    MsgTag(mrs[0]).error()
}

/// Unmap of one fpage (MR0 in R9), with or without flushing the caller's own mapping.
#[inline(always)]
pub fn unmap1(fpage: u64, flush: bool) {
    let stub = l4::kip::get().syscalls.unmap;
    let utcb = l4::utcb::my_local_id().raw();
    let control = UnmapControl::new(0, flush).0;
    // SAFETY: AMD64 binding of Unmap: RDX = control, R9/RAX/RBX/R10/R12..R15 = MR0..MR7,
    // RDI = UTCB; MR0..MR7 come back in the same registers (all declared clobbered here,
    // RBX saved and restored by hand), RCX RDX RSI R8 R11 RBP clobbered.
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "call r11",
            "pop rbx",
            "pop rbp",
            inout("r11") stub => _,
            inout("rdx") control => _,
            inout("r9") fpage => _,
            inout("rdi") utcb => _,
            out("rax") _, out("rcx") _, out("rsi") _, out("r8") _, out("r10") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}

/// The TSC into RAX (RDX clobbered): the start of every timed loop below.
macro_rules! tsc_to_rax {
    () => {
        "rdtsc\n shl rdx, 32\n or rax, rdx"
    };
}

/// A loop of calls to `server` with message tag `tag` (call: send to `server`, closed
/// receive from it) around the Ipc stub — the shape of Pistachio's ping-pong client —
/// timed inside the assembly, so the code between the two TSC reads is the loop alone.
/// Without a `call` argument it is the same loop with the call left out.
macro_rules! ipc_loop {
    ($server:expr, $tag:expr, $n:expr $(, $call:literal)?) => {{
        let stub = l4::kip::get().syscalls.ipc;
        let utcb = l4::utcb::my_local_id().raw();
        let mut state = [$server, $tag, stub, $n, 0];
        // SAFETY: Ipc binding as in `ipc`; the loop state lives in `state` (server, tag,
        // stub, count, start time), whose address stays on the stack across iterations;
        // RBX and RBP are saved and restored; every other register is declared clobbered.
        unsafe {
            core::arch::asm!(
                "push rbp",
                "push rbx",
                "push rcx",
                tsc_to_rax!(),
                "mov [rcx + 32], rax",
                "2:",
                "mov rcx, [rsp]",
                "mov rsi, [rcx]",
                "mov rdx, rsi",
                "xor r8d, r8d",
                "mov r9, [rcx + 8]",
                $($call,)?
                "mov rcx, [rsp]",
                "dec qword ptr [rcx + 24]",
                "jnz 2b",
                tsc_to_rax!(),
                "sub rax, [rcx + 32]",
                "mov [rcx + 32], rax",
                "pop rcx",
                "pop rbx",
                "pop rbp",
                inout("rcx") state.as_mut_ptr() => _,
                inout("rdi") utcb => _,
                out("rax") _, out("rdx") _, out("rsi") _, out("r8") _, out("r9") _,
                out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            )
        };
        state[4]
    }};
}

/// `n` (≥ 1) calls to `server` with tag `tag`; returns the TSC ticks they took.
pub fn call_loop(server: u64, tag: u64, n: u64) -> u64 {
    ipc_loop!(server, tag, n, "call qword ptr [rcx + 16]")
}

/// [`call_loop`] without the `call`: the cost subtracted from it.
pub fn empty_call_loop(server: u64, tag: u64, n: u64) -> u64 {
    ipc_loop!(server, tag, n)
}

/// A loop of calls of the stub at `stub` with no arguments (SystemClock, the bench-only
/// null stub, or any stub in the syscall-floor mode), timed inside the assembly; without a
/// `call` argument, the same loop with the call left out.
macro_rules! stub_loop {
    ($stub:expr, $n:expr $(, $call:literal)?) => {{
        let mut state = [$stub, $n, 0];
        // SAFETY: the stubs take no arguments here and may clobber any register but RSP
        // (all declared clobbered; RBX and RBP saved and restored); the loop state (stub,
        // count, start time) is in `state`, whose address stays on the stack.
        unsafe {
            core::arch::asm!(
                "push rbp",
                "push rbx",
                "push rcx",
                tsc_to_rax!(),
                "mov [rcx + 16], rax",
                "2:",
                $($call,)?
                "mov rcx, [rsp]",
                "dec qword ptr [rcx + 8]",
                "jnz 2b",
                tsc_to_rax!(),
                "sub rax, [rcx + 16]",
                "mov [rcx + 16], rax",
                "pop rcx",
                "pop rbx",
                "pop rbp",
                inout("rcx") state.as_mut_ptr() => _,
                out("rax") _, out("rdx") _, out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            )
        };
        state[2]
    }};
}

/// `n` (≥ 1) calls of the stub at `stub`; returns the TSC ticks they took.
pub fn stub_loop(stub: u64, n: u64) -> u64 {
    stub_loop!(stub, n, "call qword ptr [rcx]")
}

/// [`stub_loop`] without the `call`.
pub fn empty_stub_loop(stub: u64, n: u64) -> u64 {
    stub_loop!(stub, n)
}

/// Writes one byte to each of `n` (≥ 1) pages from `base` (4 KiB apart); returns the TSC
/// ticks the loop took (read inside the assembly).
///
/// # Safety
/// The `n` pages from `base` must be memory this program may write (page faults there are
/// resolved by the thread's pager).
pub unsafe fn touch_pages(base: u64, n: u64) -> u64 {
    let ticks: u64;
    // SAFETY: the caller guarantees the pages may be written; the loop changes only the
    // registers it declares.
    unsafe {
        core::arch::asm!(
            tsc_to_rax!(),
            "mov {t}, rax",
            "2:",
            "mov byte ptr [{p}], 1",
            "add {p}, 4096",
            "dec {n}",
            "jnz 2b",
            tsc_to_rax!(),
            "sub rax, {t}",
            p = inout(reg) base => _,
            n = inout(reg) n => _,
            t = out(reg) _,
            out("rax") ticks, out("rdx") _,
            options(nostack)
        )
    };
    ticks
}

/// Reads an I/O port.
///
/// # Safety
/// This space must hold the port (else the access faults to the pager), and reading it
/// must have no effect the caller does not intend.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller guarantees the port may be read.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nostack, nomem)) };
    v
}

/// Writes an I/O port.
///
/// # Safety
/// This space must hold the port, and the write must be one the device expects.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the port may be written.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack, nomem)) };
}

/// A loop that makes the keyboard controller (i8042) raise IRQ 1 once per iteration —
/// command 0xD2 ("write keyboard output buffer") at port 0x64, then a byte at port 0x60 —
/// timed inside the assembly; without the `out` arguments, the same loop without them.
macro_rules! kbd_loop {
    ($n:expr $(, $out:literal)*) => {{
        let ticks: u64;
        // SAFETY: with the `out` instructions, the space holds ports 0x60..0x67 (the
        // caller's contract) and each pair of writes puts one byte into the controller's
        // output buffer, which the interrupt handler reads; without them the loop only
        // counts. Only declared registers change.
        unsafe {
            core::arch::asm!(
                tsc_to_rax!(),
                "mov {t}, rax",
                "2:",
                $($out,)*
                "dec {n}",
                "jnz 2b",
                tsc_to_rax!(),
                "sub rax, {t}",
                n = inout(reg) $n => _,
                t = out(reg) _,
                out("rax") ticks, out("rdx") _,
                options(nostack, nomem)
            )
        };
        ticks
    }};
}

/// `n` (≥ 1) keyboard-controller interrupts, each handled before the loop goes on (the
/// handler has the higher priority); returns the TSC ticks.
///
/// # Safety
/// This space must hold ports 0x60..0x67, and a handler must take IRQ 1 and read port 0x60.
pub unsafe fn kbd_interrupts(n: u64) -> u64 {
    kbd_loop!(n, "mov al, 0xD2", "out 0x64, al", "mov al, 0x55", "out 0x60, al")
}

/// [`kbd_interrupts`] without the port writes.
pub fn empty_kbd_interrupts(n: u64) -> u64 {
    kbd_loop!(n, "mov al, 0xD2", "mov al, 0x55")
}
