//! GDT, TSS and the per-CPU block reached through the kernel's GS base.
//!
//! Segment selectors follow the `syscall`/`sysret` layout that Pistachio's binding
//! expects: kernel code 0x08, kernel data 0x10, user data 0x23, user code 0x2B.
//! The TSS gives ring-0 entries from user mode their stack (`rsp0` = top of the current
//! thread's kernel stack) and separate IST stacks for NMI, double fault and machine
//! check, so a kernel stack overflow (which double-faults) is still reported.

use core::mem::size_of;

use crate::util::KCell;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x23;
pub const USER_CS: u16 = 0x2B;
const TSS_SEL: u16 = 0x30;

/// IST slots (1-based as the IDT encodes them).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// The 64-bit task-state segment.
#[repr(C, packed(4))]
pub struct Tss {
    reserved0: u32,
    pub rsp0: u64,
    rsp1: u64,
    rsp2: u64,
    reserved1: u64,
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

/// Per-processor data at the kernel GS base. The assembly entry paths use the
/// `PERCPU_*` offsets below.
#[repr(C, align(64))]
pub struct PerCpu {
    /// Scratch slot (unused by the entry paths).
    pub scratch: u64,
    /// Return address of the Ipc stub's `syscall` (0 disables the IPC fast path).
    pub ipc_return: u64,
    /// Return address of the SystemClock stub's `syscall` (0: full path).
    pub clock_return: u64,
    /// 2^32 · 1000 / TSC kHz: TSC ticks to microseconds as a 32.32 fixed-point factor.
    pub tsc_mult: u64,
    pub _pad: [u64; 4],
    pub tss: Tss,
    /// The I/O permission bitmap the TSS points at (when `iomap_base` is in range),
    /// plus the terminating all-ones byte the processor requires.
    pub iomap: [u8; 8192 + 1],
}

/// Offset of `scratch` in [`PerCpu`].
pub const PERCPU_SCRATCH: usize = 0;
/// Offset of `ipc_return` in [`PerCpu`].
pub const PERCPU_IPC_RETURN: usize = 8;
/// Offset of `clock_return` in [`PerCpu`].
pub const PERCPU_CLOCK_RETURN: usize = 16;
/// Offset of `tsc_mult` in [`PerCpu`].
pub const PERCPU_TSC_MULT: usize = 24;
/// Offset of `tss.rsp0` in [`PerCpu`]: the running thread's kernel stack top, which is
/// also its TCB address (0 while idle) — the one record of "current".
pub const PERCPU_TSS_RSP0: usize = core::mem::offset_of!(PerCpu, tss) + 4;

const _: () = assert!(core::mem::offset_of!(PerCpu, scratch) == PERCPU_SCRATCH);
const _: () = assert!(core::mem::offset_of!(PerCpu, ipc_return) == PERCPU_IPC_RETURN);
const _: () = assert!(core::mem::offset_of!(PerCpu, clock_return) == PERCPU_CLOCK_RETURN);
const _: () = assert!(core::mem::offset_of!(PerCpu, tsc_mult) == PERCPU_TSC_MULT);

pub static PERCPU: KCell<PerCpu> = KCell::new(PerCpu {
    scratch: 0,
    ipc_return: 0,
    clock_return: 0,
    tsc_mult: 0,
    _pad: [0; 4],
    tss: Tss {
        reserved0: 0,
        rsp0: 0,
        rsp1: 0,
        rsp2: 0,
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: IOMAP_NONE,
    },
    iomap: [0xFF; 8192 + 1],
});

/// `iomap_base` beyond the TSS limit: every port access from user mode faults.
const IOMAP_NONE: u16 = 0xFFFF;

/// Loads a space's port bitmap (two 4 KiB halves) into the TSS, or denies all ports.
pub fn set_io_bitmap(halves: Option<(&[u8; 4096], &[u8; 4096])>) {
    let p = PERCPU.get_mut();
    match halves {
        None => p.tss.iomap_base = IOMAP_NONE,
        Some((lo, hi)) => {
            p.iomap[..4096].copy_from_slice(lo);
            p.iomap[4096..8192].copy_from_slice(hi);
            p.tss.iomap_base = size_of::<Tss>() as u16;
        }
    }
}

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; 3]);
static IST_STACKS: KCell<IstStacks> = KCell::new(IstStacks([[0; IST_STACK_SIZE]; 3]));

static GDT: KCell<[u64; 8]> = KCell::new([
    0,
    0x00AF_9A00_0000_FFFF, // 0x08 kernel code, 64-bit
    0x00CF_9200_0000_FFFF, // 0x10 kernel data
    0x00CF_FA00_0000_FFFF, // 0x18 user code, 32-bit (unused; sysret layout)
    0x00CF_F200_0000_FFFF, // 0x20 user data
    0x00AF_FA00_0000_FFFF, // 0x28 user code, 64-bit
    0,                     // 0x30 TSS (low)
    0,                     // 0x38 TSS (high)
]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads the GDT and TSS, reloads the segment registers and sets the kernel GS base.
pub fn init() {
    let percpu = PERCPU.get_mut();
    let stacks = IST_STACKS.get_mut();
    for (i, s) in stacks.0.iter().enumerate() {
        percpu.tss.ist[i] = s.as_ptr() as u64 + IST_STACK_SIZE as u64;
    }
    let tss_addr = &percpu.tss as *const Tss as u64;
    // The limit covers the TSS and the I/O bitmap with its terminator byte.
    let limit = (size_of::<Tss>() + 8192 + 1 - 1) as u64;
    const _: () = assert!(core::mem::offset_of!(PerCpu, iomap) == core::mem::offset_of!(PerCpu, tss) + size_of::<Tss>());
    let gdt = GDT.get_mut();
    gdt[6] = limit & 0xFFFF
        | (tss_addr & 0xFF_FFFF) << 16
        | 0x89 << 40 // present, 64-bit TSS (available)
        | ((limit >> 16) & 0xF) << 48
        | ((tss_addr >> 24) & 0xFF) << 56;
    gdt[7] = tss_addr >> 32;
    let ptr = DescriptorPointer { limit: (size_of::<[u64; 8]>() - 1) as u16, base: gdt.as_ptr() as u64 };
    // SAFETY: the GDT is static and laid out as the selectors above say; reloading CS
    // through a far return and the data segments keeps the flat model; the TSS
    // descriptor points at a static TSS.
    unsafe {
        core::arch::asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:x}",
            "mov gs, {tmp:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = in(reg) KERNEL_CS as u64,
            ds = in(reg) KERNEL_DS as u64,
            tss = in(reg) TSS_SEL as u64,
            tmp = out(reg) _,
        );
        super::cpu::wrmsr(super::cpu::msr::GS_BASE, percpu as *mut PerCpu as u64);
        super::cpu::wrmsr(super::cpu::msr::KERNEL_GS_BASE, 0);
    }
}

/// Records the kernel stack top used on the next entry from user mode.
#[inline(always)]
pub fn set_kernel_stack(top: u64) {
    PERCPU.get_mut().tss.rsp0 = top;
}

/// The running thread's TCB address (its kernel stack top), 0 while idle.
#[inline(always)]
pub fn current_tcb() -> u64 {
    PERCPU.get().tss.rsp0
}

/// The IST stack ranges (for reporting which stack a fault ran on).
pub fn ist_stack_range(ist: u8) -> (u64, u64) {
    let s = &IST_STACKS.get().0[(ist - 1) as usize];
    (s.as_ptr() as u64, s.as_ptr() as u64 + IST_STACK_SIZE as u64)
}
