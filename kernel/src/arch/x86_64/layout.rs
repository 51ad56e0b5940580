//! The kernel's virtual memory layout (identical in every address space's upper half).
//!
//! ```text
//! 0x0000_0000_0000_0000 ┬ user space (X.2 "user area"), per address space
//! 0x0000_7FFF_FFFF_FFFF ┘
//! 0xFFFF_8000_0000_0000 ─ direct map of all physical memory (1 GiB pages), PML4 slot 256
//! 0xFFFF_A000_0000_0000 ─ thread table: thread number n at TCB_AREA + n * TCB_SLOT, PML4 slot 320
//!                          each 16 KiB slot: [guard page][kernel stack 8 KiB][TCB page]
//! 0xFFFF_FFFF_8000_0000 ─ kernel image (text, rodata, data, bss), PML4 slot 511 / PDPT 510;
//!                          the system-call stub page inside it is user-executable
//! ```
//! The upper-half PML4 entries are created once at boot and copied into every new address
//! space, so everything below them is shared by all spaces.

/// Base of the direct map of physical memory.
pub const PHYS_MAP: u64 = 0xFFFF_8000_0000_0000;
/// Size of the direct map (one PML4 slot of 1 GiB pages).
pub const PHYS_MAP_SIZE: u64 = 512 << 30;
/// Base of the thread table.
pub const TCB_AREA: u64 = 0xFFFF_A000_0000_0000;
/// Virtual size of one thread's slot in the thread table.
pub const TCB_SLOT: u64 = 16 * 1024;
/// Offset of the TCB page inside a slot; the kernel stack ends here.
pub const TCB_OFFSET: u64 = 12 * 1024;
/// Where the kernel image is linked: virtual = KERNEL_VMA + physical.
pub const KERNEL_VMA: u64 = 0xFFFF_FFFF_8000_0000;
/// End (exclusive) of user-addressable memory.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The PML4 slots owned by the kernel: 256..512.
pub const KERNEL_PML4_FIRST: usize = 256;

/// Converts a physical address to its direct-map virtual address.
#[inline(always)]
pub const fn phys_to_virt(pa: u64) -> u64 {
    pa + PHYS_MAP
}

/// Converts a kernel-image virtual address to its physical address.
#[inline(always)]
pub const fn image_to_phys(va: u64) -> u64 {
    va - KERNEL_VMA
}

/// Converts a direct-map virtual address back to the physical address.
#[inline(always)]
pub const fn virt_to_phys(va: u64) -> u64 {
    va - PHYS_MAP
}
