//! Address spaces.
//!
//! A space is a page table (user half private, kernel half shared), a PCID that tags its
//! TLB entries so switching spaces does not flush, and the X.2 per-space settings: the
//! KIP area and UTCB area fpages fixed by the first SpaceControl, and the redirector.
//! A space lives as long as it has threads; deleting its last thread destroys it and
//! returns its page tables and UTCB pages to the kernel pool.
//!
//! # Invariants
//! - `threads` counts the threads whose `space` points here.
//! - Every UTCB page mapped in the UTCB area came from the kernel pool and is freed with
//!   the space (UTCB pages are kernel memory lent to the user).

use crate::arch::layout::phys_to_virt;
use crate::arch::paging;
use crate::kmem::{self, OutOfMemory};
use crate::util::{KCell, Name};

/// An address space object (occupies one pool frame). `repr(C)`: the IPC fast path
/// reads `cr3_value`, `needs_flush` and `redirector` at fixed offsets.
#[repr(C)]
pub struct Space {
    /// The CR3 value that activates the space without a flush (PCID + no-flush bit).
    pub cr3_value: u64,
    /// Non-zero while the next activation must flush this space's TLB entries.
    pub needs_flush: u64,
    /// X.2 redirector (raw global thread id; nil = none, ANY = unconfined).
    pub redirector: u64,
    /// Non-zero if a redirector confines the space (its IPC to other spaces is
    /// redirected).
    pub confined: u64,
    /// The IPC fast path leaves IPC *from* this space to another space to the full path
    /// when non-zero: confined, or owning I/O ports (the TSS bitmap must change).
    pub slow_as_sender: u64,
    /// ... and IPC *into* this space from another: stale TLB entries, or I/O ports.
    pub slow_as_receiver: u64,
    /// Physical frames of the I/O permission bitmap (0: no ports).
    pub io_bitmap: [u64; 2],
    /// Physical address of the PML4.
    pub pml4: u64,
    /// Physical address of the PML4's shadow (the mapping code's links from page-table
    /// entries to mapping-database nodes; see `mapping`).
    pub shadow: u64,
    /// Process-context identifier (0 if PCIDs are not in use).
    pub pcid: u16,
    /// KIP area: base and log2 size (size 0 = not yet initialised by SpaceControl).
    pub kip_base: u64,
    pub kip_log2: u8,
    /// UTCB area: base and log2 size.
    pub utcb_base: u64,
    pub utcb_log2: u8,
    /// Number of threads in the space.
    pub threads: u32,
    /// One of the three privileged root-server spaces (σ0, σ1, root task).
    pub privileged: bool,
    /// σ0's space: its page faults are resolved by the kernel with idempotent mappings.
    pub sigma0: bool,
    /// Tern extension (SpaceControl control bit 0): `syscall` outside the KIP stubs is
    /// delivered to the exception handler (system-call emulation, e.g. Linux binaries).
    pub syscall_exceptions: bool,
    /// Program name, for fault reports.
    pub name: Name,
}

static KERNEL_PML4: KCell<u64> = KCell::new(0);
static NEXT_PCID: KCell<u16> = KCell::new(1);
static SPACES: KCell<usize> = KCell::new(0);

/// Records the boot page table whose kernel half every space shares.
pub fn set_kernel_pml4(pa: u64) {
    *KERNEL_PML4.get_mut() = pa;
}

/// The kernel's own page table (used while no user space is current).
pub fn kernel_pml4() -> u64 {
    *KERNEL_PML4.get()
}

/// Number of live spaces.
pub fn count() -> usize {
    *SPACES.get()
}

impl Space {
    /// Creates an empty space. Allocates three frames (the object, the PML4 and its
    /// shadow).
    pub fn create(name: &str) -> Result<&'static mut Space, OutOfMemory> {
        let obj = kmem::alloc_frame()?;
        let (pml4, shadow) = match (kmem::alloc_frame(), kmem::alloc_frame()) {
            (Ok(p), Ok(s)) => (p, s),
            (p, s) => {
                // SAFETY: these frames were just allocated and are referenced nowhere.
                unsafe {
                    kmem::free_frame(obj);
                    if let Ok(p) = p {
                        kmem::free_frame(p);
                    }
                    if let Ok(s) = s {
                        kmem::free_frame(s);
                    }
                }
                return Err(OutOfMemory);
            }
        };
        paging::copy_kernel_half(kernel_pml4(), pml4);
        let pcid = if crate::arch::cpu::features().pcid {
            let n = NEXT_PCID.get_mut();
            let p = *n;
            *n = if *n >= 4095 { 1 } else { *n + 1 };
            p
        } else {
            0
        };
        let space = phys_to_virt(obj) as *mut Space;
        // SAFETY: `obj` is a fresh, zeroed pool frame big enough for a `Space`, mapped by
        // the direct map and owned by nobody else; it lives until `destroy`.
        unsafe {
            space.write(Space {
                cr3_value: if pcid != 0 { pml4 | pcid as u64 | 1 << 63 } else { pml4 },
                needs_flush: 1,
                confined: 0,
                slow_as_sender: 0,
                slow_as_receiver: 1,
                io_bitmap: [0, 0],
                pml4,
                shadow,
                pcid,
                kip_base: 0,
                kip_log2: 0,
                utcb_base: 0,
                utcb_log2: 0,
                redirector: 0,
                threads: 0,
                privileged: false,
                sigma0: false,
                syscall_exceptions: false,
                name: Name::new(name),
            });
            *SPACES.get_mut() += 1;
            Ok(&mut *space)
        }
    }

    /// Whether SpaceControl has set up the KIP and UTCB areas.
    pub fn initialised(&self) -> bool {
        self.utcb_log2 != 0
    }

    /// The CR3 value to load now: without the no-flush bit while stale entries may
    /// exist (then the flag is consumed).
    #[inline(always)]
    pub fn cr3_for_switch(&mut self) -> u64 {
        if self.needs_flush != 0 {
            self.needs_flush = 0;
            self.update_slow_flags();
            self.cr3_value & !(1 << 63)
        } else {
            self.cr3_value
        }
    }

    /// Marks the space's TLB entries stale (its next activation flushes).
    pub fn mark_flush(&mut self) {
        self.needs_flush = 1;
        self.update_slow_flags();
    }

    /// Recomputes the fast path's per-space guards from their causes.
    pub fn update_slow_flags(&mut self) {
        let ports = u64::from(self.io_bitmap[0] != 0);
        self.slow_as_sender = self.confined | ports;
        self.slow_as_receiver = self.needs_flush | ports;
    }

    /// Enters one 4 KiB kernel page (a UTCB page) at user address `va`: kernel memory
    /// lent to the user, outside the mapping database.
    pub fn map_page(&mut self, va: u64, pa: u64, writable: bool, executable: bool) -> Result<(), OutOfMemory> {
        crate::mapping::map_kernel_page(self, va, pa, writable, executable)
    }

    /// Whether `[addr, addr+len)` lies inside the UTCB area.
    pub fn in_utcb_area(&self, addr: u64, len: u64) -> bool {
        self.initialised() && addr >= self.utcb_base && addr.checked_add(len).is_some_and(|e| e <= self.utcb_base + (1u64 << self.utcb_log2))
    }

    /// Returns the kernel-visible address of the UTCB page at user address `page`
    /// (inside the UTCB area), allocating and mapping it on first use.
    pub fn utcb_page(&mut self, page: u64) -> Result<u64, OutOfMemory> {
        if let Some(leaf) = paging::translate(self.pml4, page) {
            return Ok(phys_to_virt(leaf.phys & !0xFFF));
        }
        let frame = kmem::alloc_frame()?;
        if let Err(e) = self.map_page(page, frame, true, false) {
            // SAFETY: the frame was never mapped.
            unsafe { kmem::free_frame(frame) };
            return Err(e);
        }
        Ok(phys_to_virt(frame))
    }

    /// Destroys the space: frees UTCB pages, flushes its mappings (with everything
    /// derived from them), frees page tables and the object itself.
    ///
    /// # Safety
    /// No thread may refer to the space any more and it must not be the current CR3.
    pub unsafe fn destroy(&mut self) {
        if self.initialised() {
            // Only the pages present in the area are visited (an area may span 2^47 bytes).
            let mut page = self.utcb_base;
            let end = self.utcb_base.saturating_add(1u64 << self.utcb_log2);
            while let Some((at, leaf)) = paging::next_leaf(self.pml4, page, end) {
                if leaf.size == paging::PageSize::Size4K && kmem::in_pool(leaf.phys) {
                    // SAFETY: UTCB pages come from the pool and die with the space.
                    unsafe { kmem::free_frame(leaf.phys) };
                }
                page = at + leaf.size.bytes();
            }
        }
        crate::ioport::release(self);
        crate::mapping::release_space(self);
        let (pml4, shadow) = (self.pml4, self.shadow);
        let obj = crate::arch::layout::virt_to_phys(self as *mut Space as u64);
        // SAFETY: the three frames belong to this space, which nobody references any more.
        unsafe {
            kmem::free_frame(pml4);
            kmem::free_frame(shadow);
            kmem::free_frame(obj);
        }
        *SPACES.get_mut() -= 1;
    }
}
