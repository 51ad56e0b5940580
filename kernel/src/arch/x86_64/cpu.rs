//! Processor features, control registers, MSRs and the per-CPU block.
//!
//! Boot enables every protection the processor offers: SMEP, SMAP, UMIP, NX (already on
//! from the entry code), write protection in ring 0, global pages, PCID and FSGSBASE
//! where present, and OSFXSR/OSXSAVE so user threads can use SSE/AVX (the kernel itself
//! is built soft-float and never touches vector registers). It also programs the page
//! attribute table (IA32_PAT) with the layout `abi::syscall::PAT_LAYOUT`, which
//! MemoryControl's caching attributes select through the PAT/PCD/PWT bits of leaves.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};

use crate::util::KCell;

/// MSR numbers.
pub mod msr {
    pub const EFER: u32 = 0xC000_0080;
    pub const STAR: u32 = 0xC000_0081;
    pub const LSTAR: u32 = 0xC000_0082;
    pub const SFMASK: u32 = 0xC000_0084;
    pub const FS_BASE: u32 = 0xC000_0100;
    pub const GS_BASE: u32 = 0xC000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
    pub const APIC_BASE: u32 = 0x1B;
    pub const TSC_DEADLINE: u32 = 0x6E0;
    pub const PAT: u32 = 0x277;
}

/// Reads an MSR.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the kernel only reads MSRs it knows exist on this processor (callers
    // check the CPUID feature first); reading has no side effect.
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value must keep the kernel's invariants (e.g. the
/// syscall MSRs must point at the kernel's entry code).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller's contract.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { _rdtsc() }
}

/// Processor features Tern uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct Features {
    pub vendor: [u8; 12],
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
    pub pcid: bool,
    pub invpcid: bool,
    pub fsgsbase: bool,
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub xsave: bool,
    pub page1g: bool,
    pub invariant_tsc: bool,
    /// Page attribute table (CPUID.1:EDX bit 16).
    pub pat: bool,
    /// XCR0 bits the processor supports (x87, SSE, AVX, opmask, ZMM, ...).
    pub xcr0_supported: u64,
    /// Size of the XSAVE area for all supported components.
    pub xsave_size: u32,
}

static FEATURES: KCell<Features> = KCell::new(Features {
    vendor: [0; 12],
    smep: false,
    smap: false,
    umip: false,
    pcid: false,
    invpcid: false,
    fsgsbase: false,
    x2apic: false,
    tsc_deadline: false,
    xsave: false,
    page1g: false,
    invariant_tsc: false,
    pat: false,
    xcr0_supported: 0,
    xsave_size: 512,
});

/// The detected features (valid after [`detect`]).
pub fn features() -> &'static Features {
    FEATURES.get()
}

/// Reads CPUID into [`features`].
pub fn detect() {
    // CPUID is available on every x86_64 processor; leaves beyond the maximum reported
    // ones are not queried.
    let f = {
        let l0 = __cpuid(0);
        let mut f = Features::default();
        f.vendor[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
        f.vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        f.vendor[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = __cpuid(1);
        f.pcid = l1.ecx & (1 << 17) != 0;
        f.x2apic = l1.ecx & (1 << 21) != 0;
        f.tsc_deadline = l1.ecx & (1 << 24) != 0;
        f.xsave = l1.ecx & (1 << 26) != 0;
        f.pat = l1.edx & (1 << 16) != 0;
        if l0.eax >= 7 {
            let l7 = __cpuid_count(7, 0);
            f.fsgsbase = l7.ebx & 1 != 0;
            f.smep = l7.ebx & (1 << 7) != 0;
            f.invpcid = l7.ebx & (1 << 10) != 0;
            f.smap = l7.ebx & (1 << 20) != 0;
            f.umip = l7.ecx & (1 << 2) != 0;
        }
        if f.xsave && l0.eax >= 0xD {
            let d = __cpuid_count(0xD, 0);
            f.xcr0_supported = (d.edx as u64) << 32 | d.eax as u64;
        }
        let ext = __cpuid(0x8000_0000);
        if ext.eax >= 0x8000_0001 {
            f.page1g = __cpuid(0x8000_0001).edx & (1 << 26) != 0;
        }
        if ext.eax >= 0x8000_0007 {
            f.invariant_tsc = __cpuid(0x8000_0007).edx & (1 << 8) != 0;
        }
        f
    };
    *FEATURES.get_mut() = f;
}

/// CR4 bits.
mod cr4 {
    pub const PGE: u64 = 1 << 7;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
}

/// Which user-visible XSAVE components are enabled (XCR0).
pub fn xcr0() -> u64 {
    XCR0.get().0
}
static XCR0: KCell<(u64,)> = KCell::new((0,));

/// Enables the processor protections and extensions listed in the module docs.
/// Must run after [`detect`] and while CR3's PCID field is 0.
pub fn enable_protections() {
    let f = *features();
    let mut c4: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) c4, options(nomem, nostack, preserves_flags)) };
    c4 |= cr4::PGE | cr4::OSFXSR | cr4::OSXMMEXCPT;
    if f.smep {
        c4 |= cr4::SMEP;
    }
    if f.smap {
        c4 |= cr4::SMAP;
    }
    if f.umip {
        c4 |= cr4::UMIP;
    }
    if f.fsgsbase {
        c4 |= cr4::FSGSBASE;
    }
    if f.pcid {
        c4 |= cr4::PCIDE;
    }
    if f.xsave {
        c4 |= cr4::OSXSAVE;
    }
    // SAFETY: every bit set is supported (checked above); the kernel never runs user
    // pages (SMEP) and brackets user accesses with stac/clac (SMAP); CR3 has PCID 0.
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) c4, options(nostack, preserves_flags)) };
    if f.xsave {
        // x87 | SSE | AVX | opmask | ZMM_Hi256 | Hi16_ZMM; nothing the kernel would have to manage
        // differently (no AMX: it needs permission handshakes; no supervisor states).
        let wanted = 0b1110_0111u64;
        let x = f.xcr0_supported & wanted;
        // SAFETY: XSETBV with a subset of the supported XCR0 bits (x87 and SSE always set).
        unsafe { core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") x as u32, in("edx") (x >> 32) as u32, options(nomem, nostack, preserves_flags)) };
        XCR0.get_mut().0 = x;
        // CPUID leaf 0xD exists when XSAVE is supported.
        let size = __cpuid_count(0xD, 0).ebx;
        FEATURES.get_mut().xsave_size = size;
    }
    if f.pat {
        program_pat();
    }
    // CR0: clear EM, set MP and NE (native FPU error reporting), set TS (lazy FPU).
    let mut c0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) c0, options(nomem, nostack, preserves_flags)) };
    c0 &= !(1 << 2);
    c0 |= (1 << 1) | (1 << 5) | (1 << 3);
    // SAFETY: standard FPU configuration; TS makes the first FPU use trap (#NM).
    unsafe { core::arch::asm!("mov cr0, {}", in(reg) c0, options(nostack, preserves_flags)) };
}

/// The IA32_PAT value: entry i holds `abi::syscall::PAT_LAYOUT[i]`.
pub const PAT_VALUE: u64 = {
    let mut v = 0u64;
    let mut i = 0;
    while i < 8 {
        v |= (abi::syscall::PAT_LAYOUT[i] as u64) << (8 * i);
        i += 1;
    }
    v
};

/// Programs IA32_PAT. Entries 0..3 keep their reset values (WB, WT, UC-, UC), so every
/// mapping made before (none uses the PAT bit) keeps its memory type; no leaf selects
/// entries 4..7 yet, so no cached data of another type exists for them.
fn program_pat() {
    // SAFETY: the PAT MSR exists (CPUID checked by the caller); the value holds only
    // valid memory types (0, 1, 4, 5, 6, 7) and leaves entries 0..3 as they were.
    unsafe { wrmsr(msr::PAT, PAT_VALUE) };
}

/// Writes back and invalidates all caches (after a page became uncached or
/// write-combining, so that no line of another memory type lingers for it).
pub fn wbinvd() {
    // SAFETY: WBINVD only writes dirty lines back and empties the caches; memory contents
    // are unchanged. Ring 0 only, which the kernel is.
    unsafe { core::arch::asm!("wbinvd", options(nostack, preserves_flags)) };
}

/// Sets CR0.TS so that the next FPU instruction raises #NM.
#[inline(always)]
pub fn set_ts() {
    // SAFETY: toggling TS only changes when #NM is raised.
    unsafe {
        core::arch::asm!("mov {t}, cr0", "or {t}, 8", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack))
    };
}

/// Clears CR0.TS (`clts`).
#[inline(always)]
pub fn clear_ts() {
    // SAFETY: as for `set_ts`.
    unsafe { core::arch::asm!("clts", options(nomem, nostack, preserves_flags)) };
}

/// Halts until the next interrupt, with interrupts enabled only while halted.
#[inline]
pub fn idle_halt() {
    // SAFETY: `sti; hlt` is the standard race-free idle sequence; interrupts are
    // disabled again before we return into non-reentrant kernel code.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// Disables interrupts and halts forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping the processor.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Powers the machine off through QEMU's `isa-debug-exit` device (port 0xF4), which
/// makes QEMU exit with status `(code << 1) | 1`. Without that device, halts.
pub fn debug_exit(code: u8) -> ! {
    // SAFETY: port 0xF4 is QEMU's debug-exit device; on other machines the write is ignored.
    unsafe { super::port::outl(0xF4, code as u32) };
    halt_forever()
}

/// Exit codes written to the debug-exit device (see the xtask protocol).
pub mod exit {
    pub const SUCCESS: u8 = 0x10;
    pub const FAILURE: u8 = 0x11;
    pub const PANIC: u8 = 0x12;
}

/// Opens a window for kernel access to user pages (SMAP).
#[inline(always)]
pub fn user_access_begin() {
    if features().smap {
        // SAFETY: STAC only permits supervisor accesses to user pages until `clac`.
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    }
}

/// Closes the window opened by [`user_access_begin`].
#[inline(always)]
pub fn user_access_end() {
    if features().smap {
        // SAFETY: CLAC restores SMAP protection.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
