//! Interrupt descriptor table, trap entry/exit, and the saved user register frame.
//!
//! Every vector has a 16-byte stub that pushes a uniform `(error code, vector)` pair and
//! jumps to `trap_common`, which saves all general-purpose registers into a
//! [`Frame`], switches GS when coming from user mode, and calls [`trap_dispatch`]. The
//! `syscall` entry (see `syscall.rs`) builds the very same frame, so the kernel has one
//! register layout for every way into it: the top of each thread's kernel stack holds
//! its user state while it is in the kernel.

use core::arch::global_asm;

use super::gdt::{self, KERNEL_CS};

/// The saved register state of an interrupted context (user or kernel).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number, or [`VECTOR_SYSCALL`] for the `syscall` entry.
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of [`Frame`] in bytes.
pub const FRAME_SIZE: u64 = core::mem::size_of::<Frame>() as u64;
const _: () = assert!(FRAME_SIZE == 22 * 8);

/// Pseudo vector recorded by the `syscall` entry path.
pub const VECTOR_SYSCALL: u64 = 0x100;

impl Frame {
    /// Whether the frame was interrupted in user mode.
    #[inline(always)]
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Exception vectors.
pub mod vector {
    pub const DIVIDE: u64 = 0;
    pub const DEBUG: u64 = 1;
    pub const NMI: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const INVALID_OPCODE: u64 = 6;
    pub const DEVICE_NOT_AVAILABLE: u64 = 7;
    pub const DOUBLE_FAULT: u64 = 8;
    pub const GENERAL_PROTECTION: u64 = 13;
    pub const PAGE_FAULT: u64 = 14;
    pub const MACHINE_CHECK: u64 = 18;
    /// First vector used for device interrupts (I/O APIC lines map to 0x20 + line).
    pub const IRQ_BASE: u64 = 0x20;
    /// Local APIC timer.
    pub const TIMER: u64 = 0xF0;
    /// Local APIC spurious vector.
    pub const SPURIOUS: u64 = 0xFF;
}

/// Human-readable exception names.
pub fn vector_name(v: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range", "invalid opcode",
        "device not available", "double fault", "coprocessor overrun", "invalid TSS", "segment not present",
        "stack fault", "general protection", "page fault", "reserved", "x87 floating point", "alignment check",
        "machine check", "SIMD floating point", "virtualization", "control protection",
    ];
    NAMES.get(v as usize).copied().unwrap_or("interrupt")
}

global_asm!(
    r#"
    .section .text
    .p2align 4
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .p2align 4
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

    .p2align 4
trap_common:
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
    testb $3, 18*8(%rsp)
    jz 1f
    swapgs
1:  cld
    movq %rsp, %rdi
    /* Frame-pointer chain for backtraces: link to the interrupted RBP/RIP. */
    pushq 17*8(%rsp)
    pushq 8*8+8(%rsp)
    movq %rsp, %rbp
    call {dispatch}
    addq $16, %rsp
    .global trap_return
trap_return:
    testb $3, 18*8(%rsp)
    jz 2f
    swapgs
2:  popq %r15
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
    addq $16, %rsp
    iretq
"#,
    dispatch = sym trap_dispatch,
    options(att_syntax)
);

extern "C" {
    static trap_stubs: [u8; 256 * 16];
    /// Restores a [`Frame`] at RSP and returns to it with `iretq`.
    pub fn trap_return();
}

#[repr(C, align(16))]
struct Idt([u128; 256]);
static IDT: crate::util::KCell<Idt> = crate::util::KCell::new(Idt([0; 256]));

fn gate(handler: u64, ist: u8, dpl: u8) -> u128 {
    let low = (handler & 0xFFFF)
        | (KERNEL_CS as u64) << 16
        | (ist as u64) << 32
        | (0x8E | (dpl as u64) << 5) << 40 // present, interrupt gate
        | ((handler >> 16) & 0xFFFF) << 48;
    low as u128 | ((handler >> 32) as u128) << 64
}

/// Fills and loads the IDT.
pub fn init() {
    // SAFETY: `trap_stubs` is the static stub table defined above.
    let base = unsafe { trap_stubs.as_ptr() } as u64;
    let idt = IDT.get_mut();
    for v in 0..256u64 {
        let ist = match v {
            vector::DOUBLE_FAULT => gdt::IST_DOUBLE_FAULT,
            vector::NMI => gdt::IST_NMI,
            vector::MACHINE_CHECK => gdt::IST_MACHINE_CHECK,
            _ => 0,
        };
        // int3 is callable from user mode: it is the kernel-debugger interface.
        let dpl = if v == vector::BREAKPOINT { 3 } else { 0 };
        idt.0[v as usize] = gate(base + v * 16, ist, dpl);
    }
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let ptr = Ptr { limit: (256 * 16 - 1) as u16, base: idt.0.as_ptr() as u64 };
    // SAFETY: the IDT is static and every gate points at a stub above.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &ptr, options(nostack, preserves_flags)) };
}

/// Rust side of every trap: hands the frame to the kernel's trap policy.
extern "C" fn trap_dispatch(frame: &mut Frame) {
    crate::trap::handle(frame);
}

// ---------------------------------------------------------------------------------------
// User-memory access with fault recovery.
//
// Kernel code touches user memory only through the routines below. A fault inside one of
// them is found in the exception table (`.extable`: pairs of faulting RIP, recovery RIP);
// the page-fault handler first tries to resolve it like a user fault, and otherwise
// resumes at the recovery address, which makes the routine return failure.

global_asm!(
    r#"
    .section .text
    /* user_copy(dst: rdi, src: rsi, len: rdx) -> rax = 0 ok, 1 fault */
    .global tern_user_copy
tern_user_copy:
    movq %rdx, %rcx
    .global tern_user_copy_insn
tern_user_copy_insn:
    rep movsb
    xorl %eax, %eax
    ret
tern_user_copy_fixup:
    movl $1, %eax
    ret

    .section .extable, "a"
    .quad tern_user_copy_insn, tern_user_copy_fixup
    .text
"#,
    options(att_syntax)
);

extern "C" {
    fn tern_user_copy(dst: *mut u8, src: *const u8, len: usize) -> u64;
    static __extable_start: [u64; 0];
    static __extable_end: [u64; 0];
}

/// Copies `len` bytes between kernel and user memory in the current address space.
/// Returns `false` if a page could not be made present.
///
/// # Safety
/// The kernel side of the copy must be valid for `len` bytes; the user side must be a
/// user address range (checked by the caller to lie below `USER_END`).
pub unsafe fn user_copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    super::cpu::user_access_begin();
    // SAFETY: forwarded to the caller's contract; faults are recovered via `.extable`.
    let r = unsafe { tern_user_copy(dst, src, len) };
    super::cpu::user_access_end();
    r == 0
}

extern "C" {
    static tern_user_copy_insn: u8;
}

/// Whether `rip` is the user-copy instruction (whose faults may be resolved by pagers).
pub fn is_user_copy(rip: u64) -> bool {
    // SAFETY: taking the address of a symbol.
    rip == unsafe { &tern_user_copy_insn as *const u8 as u64 }
}

/// Looks up a recovery address for a fault at kernel `rip`.
pub fn extable_fixup(rip: u64) -> Option<u64> {
    // SAFETY: the linker script brackets the `.extable` section with these symbols; it
    // holds pairs of u64 written by the assembly above.
    let (start, end) = unsafe { (__extable_start.as_ptr(), __extable_end.as_ptr()) };
    let mut p = start;
    while p < end {
        // SAFETY: `p` and `p + 1` lie inside the table (pairs).
        let (fault, fix) = unsafe { (*p, *p.add(1)) };
        if fault == rip {
            return Some(fix);
        }
        // SAFETY: stepping to the next pair within the table.
        p = unsafe { p.add(2) };
    }
    None
}
