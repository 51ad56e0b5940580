//! System calls with every register chosen by the caller.
//!
//! The `l4` library's wrappers set the registers its binding names and load MR1..MR7 from
//! the UTCB; the fuzzer wants all of them, including the ones a call ignores and RDI,
//! which the binding makes the UTCB pointer. [`call`] loads all fifteen general registers
//! from a [`Regs`], calls a stub (any address in the stub page), and stores all fifteen
//! back, so the caller sees exactly what the kernel returned.
//!
//! RCX and R11 never reach the kernel (`syscall` overwrites them); they are loaded anyway.

/// The general registers around one call (the stub address in `stub`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Where to call.
    pub stub: u64,
}

const _: () = assert!(core::mem::size_of::<Regs>() == 16 * 8);

/// Calls `r.stub` with the registers of `r` and stores the registers it returns with
/// back into `r` (`stub` is kept).
///
/// # Safety
/// `r.stub` must be the address of a system-call stub of the KIP's stub page (code that
/// returns with `ret` and touches no user memory). The kernel may write the caller's
/// UTCB, and — for IPC with string items — the buffers its buffer registers name: the
/// caller must have pointed those at memory nothing else uses.
pub unsafe fn call(r: &mut Regs) {
    let p = r as *mut Regs;
    // SAFETY: the stack is balanced on exit (three pushes, one pop after the `add`,
    // two pops at the end); RBX and RBP are saved and restored by hand, every other
    // register is declared clobbered; the `Regs` at `p` (kept on the stack across the
    // call) is valid for reads and writes of 16 words. The stub's own contract is the
    // caller's (see above).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push r11",
            "push qword ptr [r11 + 120]",
            "mov rax, [r11 + 0]",
            "mov rbx, [r11 + 8]",
            "mov rcx, [r11 + 16]",
            "mov rdx, [r11 + 24]",
            "mov rsi, [r11 + 32]",
            "mov rdi, [r11 + 40]",
            "mov rbp, [r11 + 48]",
            "mov r8, [r11 + 56]",
            "mov r9, [r11 + 64]",
            "mov r10, [r11 + 72]",
            "mov r12, [r11 + 88]",
            "mov r13, [r11 + 96]",
            "mov r14, [r11 + 104]",
            "mov r15, [r11 + 112]",
            "mov r11, [r11 + 80]",
            "call qword ptr [rsp]",
            "lea rsp, [rsp + 8]",
            "xchg r11, [rsp]",
            "mov [r11 + 0], rax",
            "mov [r11 + 8], rbx",
            "mov [r11 + 16], rcx",
            "mov [r11 + 24], rdx",
            "mov [r11 + 32], rsi",
            "mov [r11 + 40], rdi",
            "mov [r11 + 48], rbp",
            "mov [r11 + 56], r8",
            "mov [r11 + 64], r9",
            "mov [r11 + 72], r10",
            "mov [r11 + 88], r12",
            "mov [r11 + 96], r13",
            "mov [r11 + 104], r14",
            "mov [r11 + 112], r15",
            "pop rax",
            "mov [r11 + 80], rax",
            "pop rbp",
            "pop rbx",
            inout("r11") p => _,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
}

/// KernelInterface (`lock; nop`): the KIP address.
pub fn kernel_interface() -> u64 {
    l4::kip::kernel_interface().kip as u64
}
