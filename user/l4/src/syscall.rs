//! The raw system calls: one `call` through a KIP stub address per function, with the
//! registers of the AMD64 binding (`shared/x2-amd64-abi.md` §4.3).
//!
//! These functions move words in and out of registers and nothing more: they do not
//! interpret results (see [`crate::ipc`], [`crate::thread`], [`crate::space`] for the
//! typed wrappers). Common to every call:
//!
//! * the stub is reached with `call`; RBP is pushed and popped around it, as the binding
//!   does (the stub and the kernel may clobber it);
//! * RBX is saved and restored by hand where the binding lets the call clobber it (LLVM
//!   reserves RBX, so it cannot be named as an operand);
//! * every register the binding declares clobbered is declared clobbered here, so the
//!   calls stay correct against any kernel that keeps the binding, not just Tern's.
//!
//! Ipc and Unmap exchange MR0..MR7 in registers. As Pistachio's binding does, the asm
//! loads MR1..MR7 (Unmap: MR0..MR7) from the UTCB before the call and stores all eight
//! back into the UTCB afterwards — through the UTCB address saved on the stack, so that a
//! kernel returning a wrong RDI is reported (in [`IpcRegs::rdi`]) instead of followed.

use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Timeouts;

use crate::kip;
use crate::utcb;

/// What Ipc and Lipc return in registers (the MRs went back to the UTCB).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpcRegs {
    /// MR0 (R9): the received message's tag, or the result tag of a send-only IPC.
    pub tag: MsgTag,
    /// RSI: the sender of the received message (meaningful after a receive phase).
    pub from: ThreadId,
    /// RDI as returned: the binding requires it to equal the caller's local id.
    pub rdi: u64,
}

/// Ipc: RSI = to, RDX = FromSpecifier, R8 = timeouts, R9 = MR0, MR1..MR7 from the UTCB.
pub fn ipc(to: ThreadId, from_spec: ThreadId, timeouts: Timeouts, tag: MsgTag) -> IpcRegs {
    ipc_through(kip::get().syscalls.ipc, to, from_spec, timeouts, tag)
}

/// Lipc: the same registers as Ipc, through the Lipc stub (the same stub on amd64).
pub fn lipc(to: ThreadId, from_spec: ThreadId, timeouts: Timeouts, tag: MsgTag) -> IpcRegs {
    ipc_through(kip::get().syscalls.lipc, to, from_spec, timeouts, tag)
}

fn ipc_through(
    stub: u64,
    to: ThreadId,
    from_spec: ThreadId,
    timeouts: Timeouts,
    tag: MsgTag,
) -> IpcRegs {
    let mr0 = utcb::my_local_id().raw();
    let (tag_out, from, rdi): (u64, u64, u64);
    // SAFETY: the Ipc binding (§4.3): RSI to, RDX from, R8 timeouts, R9 MR0, RAX RBX R10
    // R12..R15 = MR1..MR7 (loaded here from the caller's own UTCB at RDI), RDI = UTCB
    // pointer; out RSI from, R9 MR0, MR1..MR7 in the same registers (stored back into the
    // UTCB through the pointer saved on the stack); RCX RDX R8 R11 RBP clobbered. RBX and
    // RBP are saved and restored around the call. The stack is balanced on exit.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push rdi",
            "mov rax, [rdi + 8]",
            "mov rbx, [rdi + 16]",
            "mov r10, [rdi + 24]",
            "mov r12, [rdi + 32]",
            "mov r13, [rdi + 40]",
            "mov r14, [rdi + 48]",
            "mov r15, [rdi + 56]",
            "call rcx",
            "pop rcx",
            "mov [rcx], r9",
            "mov [rcx + 8], rax",
            "mov [rcx + 16], rbx",
            "mov [rcx + 24], r10",
            "mov [rcx + 32], r12",
            "mov [rcx + 40], r13",
            "mov [rcx + 48], r14",
            "mov [rcx + 56], r15",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rsi") to.raw() => from,
            inout("rdx") from_spec.raw() => _,
            inout("r8") timeouts.0 => _,
            inout("r9") tag.raw() => tag_out,
            inout("rdi") mr0 => rdi,
            out("rax") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    IpcRegs {
        tag: MsgTag(tag_out),
        from: ThreadId(from),
        rdi,
    }
}

/// What ExchangeRegisters returns: RAX, RSI, RDX, R8, R9, R10, RDI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExRegsRegs {
    /// RAX: the result id (nil on error).
    pub id: u64,
    /// RSI: the old control (state bits).
    pub control: u64,
    /// RDX: old SP.
    pub sp: u64,
    /// R8: old IP.
    pub ip: u64,
    /// R9: old FLAGS.
    pub flags: u64,
    /// R10: old UserDefinedHandle.
    pub user_handle: u64,
    /// RDI: old pager.
    pub pager: u64,
}

/// ExchangeRegisters: RAX dest, RSI control, RDX SP, R8 IP, R9 FLAGS, R10
/// UserDefinedHandle, RDI pager.
pub fn exchange_registers(
    dest: u64,
    control: u64,
    sp: u64,
    ip: u64,
    flags: u64,
    user_handle: u64,
    pager: u64,
) -> ExRegsRegs {
    let stub = kip::get().syscalls.exchange_registers;
    let mut r = ExRegsRegs {
        id: dest,
        control,
        sp,
        ip,
        flags,
        user_handle,
        pager,
    };
    // SAFETY: the ExchangeRegisters binding (§4.3): arguments and results in RAX RSI RDX
    // R8 R9 R10 RDI; RBX RCX R11..R15 RBP clobbered (RBX and RBP saved here).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "call rcx",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rax") r.id,
            inout("rsi") r.control,
            inout("rdx") r.sp,
            inout("r8") r.ip,
            inout("r9") r.flags,
            inout("r10") r.user_handle,
            inout("rdi") r.pager,
            out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    r
}

/// The calls with up to five arguments in RDI RSI RDX R8 R9 and results in RAX and RDX
/// (ThreadControl, SpaceControl, Schedule, ProcessorControl). Everything else is declared
/// clobbered, as the binding does for ThreadControl.
fn call5(stub: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> (u64, u64) {
    let (rax, rdx): (u64, u64);
    // SAFETY: the binding of these calls (§4.3) passes RDI RSI RDX R8 R9 and returns RAX
    // (and RDX); every other register but RSP may change and is declared clobbered here,
    // RBX and RBP being saved and restored around the call.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "call rcx",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rdi") a1 => _,
            inout("rsi") a2 => _,
            inout("rdx") a3 => rdx,
            inout("r8") a4 => _,
            inout("r9") a5 => _,
            out("rax") rax,
            out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    (rax, rdx)
}

/// ThreadControl: RDI dest, RSI pager, RDX scheduler, R8 space specifier, R9 UTCB
/// location; returns RAX (1 success, 0 failure).
pub fn thread_control(
    dest: u64,
    pager: u64,
    scheduler: u64,
    space: u64,
    utcb_location: u64,
) -> u64 {
    call5(
        kip::get().syscalls.thread_control,
        dest,
        pager,
        scheduler,
        space,
        utcb_location,
    )
    .0
}

/// SpaceControl: RDI space specifier, RSI control, RDX KIP area, R8 UTCB area, R9
/// redirector; returns (RAX result, RDX old control).
pub fn space_control(
    space: u64,
    control: u64,
    kip_area: u64,
    utcb_area: u64,
    redirector: u64,
) -> (u64, u64) {
    call5(
        kip::get().syscalls.space_control,
        space,
        control,
        kip_area,
        utcb_area,
        redirector,
    )
}

/// Schedule: RDI dest, RSI PrioControl, RDX TimeControl, R8 ProcessorControl, R9
/// PreemptionControl; returns (RAX thread state, RDX old TimeControl).
pub fn schedule(dest: u64, prio: u64, time: u64, processor: u64, preemption: u64) -> (u64, u64) {
    call5(
        kip::get().syscalls.schedule,
        dest,
        prio,
        time,
        processor,
        preemption,
    )
}

/// ProcessorControl: RDI processor, RSI internal frequency, RDX external frequency, R8
/// voltage; returns RAX (1 success, 0 failure).
pub fn processor_control(
    processor: u64,
    internal_khz: u64,
    external_khz: u64,
    voltage: u64,
) -> u64 {
    call5(
        kip::get().syscalls.processor_control,
        processor,
        internal_khz,
        external_khz,
        voltage,
        0,
    )
    .0
}

/// MemoryControl with Pistachio's binding registers as that binding really loads them:
/// RDX control, RCX / RSI / R8 / R11 attributes 0..3, R9 a copy of attribute 0 (the
/// binding copies RCX into R9 after loading attribute 0 there), RAX RBX R12..R15 MR1, MR2,
/// MR4..MR7 (loaded from the UTCB), RDI the UTCB pointer — plus, for Tern, attribute 3 in
/// R10 (which the kernel reads only with control bit 6, `MemoryControlWord::ATTR3_IN_R10`;
/// `syscall` destroys RCX and R11). The fpages themselves are read from the UTCB.
/// Returns RAX (1 success, 0 failure; RDX holds the same).
pub fn memory_control(control: u64, attributes: [u64; 4]) -> u64 {
    let stub = kip::get().syscalls.memory_control;
    let mr0 = utcb::my_local_id().raw();
    let result: u64;
    // SAFETY: the MemoryControl binding (§4.3) as above; the stub address is kept on the
    // stack for an indirect call because every other register carries an argument. The
    // MRs are read from the caller's own UTCB. RBX and RBP are saved and restored, the
    // stub slot is dropped after the call, and everything else is declared clobbered.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push rax",
            "mov r9, rcx",
            "mov rax, [rdi + 8]",
            "mov rbx, [rdi + 16]",
            "mov r12, [rdi + 32]",
            "mov r13, [rdi + 40]",
            "mov r14, [rdi + 48]",
            "mov r15, [rdi + 56]",
            "call qword ptr [rsp]",
            "add rsp, 8",
            "pop rbp",
            "pop rbx",
            inout("rax") stub => result,
            inout("rdi") mr0 => _,
            inout("rdx") control => _,
            inout("rcx") attributes[0] => _,
            inout("rsi") attributes[1] => _,
            inout("r8") attributes[2] => _,
            inout("r10") attributes[3] => _,
            inout("r11") attributes[3] => _,
            out("r9") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    result
}

/// Unmap: RDX control, MR0..MR7 in R9 RAX RBX R10 R12..R15 (loaded from the UTCB and
/// stored back after the call), RDI the UTCB pointer. Returns the RDI the kernel gave back
/// (the binding requires the caller's local id).
pub fn unmap(control: u64) -> u64 {
    let stub = kip::get().syscalls.unmap;
    let mr0 = utcb::my_local_id().raw();
    let rdi: u64;
    // SAFETY: the Unmap binding (§4.3): RDX control, MR0..MR7 in R9 RAX RBX R10 R12..R15 in
    // and out, RDI the UTCB pointer in and out; RCX RDX RSI R8 R11 clobbered. The MRs are
    // loaded from and stored back to the caller's own UTCB through the pointer saved on the
    // stack; RBX and RBP are saved and restored.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push rdi",
            "mov r9, [rdi]",
            "mov rax, [rdi + 8]",
            "mov rbx, [rdi + 16]",
            "mov r10, [rdi + 24]",
            "mov r12, [rdi + 32]",
            "mov r13, [rdi + 40]",
            "mov r14, [rdi + 48]",
            "mov r15, [rdi + 56]",
            "call rcx",
            "pop rcx",
            "mov [rcx], r9",
            "mov [rcx + 8], rax",
            "mov [rcx + 16], rbx",
            "mov [rcx + 24], r10",
            "mov [rcx + 32], r12",
            "mov [rcx + 40], r13",
            "mov [rcx + 48], r14",
            "mov [rcx + 56], r15",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rdx") control => _,
            inout("rdi") mr0 => rdi,
            out("rax") _, out("rsi") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    rdi
}

/// SystemClock: microseconds since boot (RAX).
pub fn system_clock() -> u64 {
    let stub = kip::get().syscalls.system_clock;
    let t: u64;
    // SAFETY: the SystemClock binding (§4.3): result in RAX, every other register but RSP
    // declared clobbered (RBX and RBP saved and restored here).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "call rcx",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            out("rax") t, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    t
}

/// ThreadSwitch: donate the rest of the timeslice to `dest`, or yield (nil).
pub fn thread_switch(dest: ThreadId) {
    let stub = kip::get().syscalls.thread_switch;
    // SAFETY: the ThreadSwitch binding (§4.3): RDI = dest, no result, every other register
    // but RSP declared clobbered (RBX and RBP saved and restored here).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "call rcx",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rdi") dest.raw() => _,
            out("rax") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}
