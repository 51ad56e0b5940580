//! Four-level x86_64 page tables.
//!
//! ```text
//!  CR3 ─► PML4 ──► PDPT ──► PD ──► PT ──► 4 KiB frame
//!         [9 bits] [9]  │    [9] │  [9]    [12 bits offset]
//!                       └ PS: 1 GiB page └ PS: 2 MiB page
//! ```
//! Page-table frames come from the kernel pool. Tables for the user half belong to one
//! address space and are built and freed by `mapping` (which keeps a shadow table next to
//! each, linking entries to mapping-database nodes); this module maps kernel-half pages
//! and reads translations. The kernel half (PML4 slots 256..511) points to tables shared
//! by all.
//!
//! Caching attributes (MemoryControl) live in leaves only, as a PAT entry index (see
//! `cpu::PAT_VALUE`) spread over three bits whose places differ by page size:
//!
//! ```text
//!   4 KiB leaf:  PAT = bit 7   PCD = bit 4   PWT = bit 3     index = PAT<<2 | PCD<<1 | PWT
//!   2 MiB/1 GiB: PAT = bit 12  PCD = bit 4   PWT = bit 3     (bit 7 is PS there)
//! ```
//!
//! # Invariants
//! - Intermediate entries for user addresses have U, W and P set (rights live in leaves),
//!   and never PAT, PCD or PWT.
//! - A user-half table frame is referenced by exactly one parent entry.

use super::layout::{phys_to_virt, USER_END};
use crate::kmem::{self, OutOfMemory};

/// Page-table entry bits.
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    pub const HUGE: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    pub const NX: u64 = 1 << 63;
    /// PAT bit of a 4 KiB leaf (the PS bit's place in upper levels).
    pub const PAT_4K: u64 = 1 << 7;
    /// PAT bit of a 2 MiB or 1 GiB leaf (lowest address bit of a 4 KiB frame).
    pub const PAT_LARGE: u64 = 1 << 12;
    /// Physical-address bits of an entry.
    pub const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
}

/// Hardware page sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The table level the leaf lives in (1 = PT, 2 = PD, 3 = PDPT).
    const fn level(self) -> usize {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

/// A leaf found by [`translate`].
#[derive(Debug, Clone, Copy)]
pub struct Leaf {
    pub phys: u64,
    pub size: PageSize,
    pub flags: u64,
}

#[inline(always)]
fn table(pa: u64) -> *mut u64 {
    phys_to_virt(pa) as *mut u64
}

#[inline(always)]
fn index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// Returns a pointer to the entry for `va` at `level`, creating missing intermediate
/// tables with `inter_flags` when `create` is set.
fn walk(root: u64, va: u64, level: usize, create: bool, inter_flags: u64) -> Result<Option<*mut u64>, OutOfMemory> {
    let mut t = root;
    let mut lvl = 4;
    loop {
        // SAFETY: `t` is a page-table frame (root or reached through present entries),
        // mapped by the direct map; the index is < 512.
        let entry = unsafe { table(t).add(index(va, lvl)) };
        if lvl == level {
            return Ok(Some(entry));
        }
        // SAFETY: `entry` points into a live table (above).
        let e = unsafe { *entry };
        if e & pte::PRESENT == 0 {
            if !create {
                return Ok(None);
            }
            let new = kmem::alloc_frame()?;
            // SAFETY: as above; installing a fresh zeroed table.
            unsafe { *entry = new | inter_flags };
            t = new;
        } else if e & pte::HUGE != 0 {
            return Ok(None);
        } else {
            t = e & pte::ADDR;
        }
        lvl -= 1;
    }
}

/// Maps `va` → `pa` with a page of `size` and leaf `flags` (PRESENT is added).
/// Replaces any previous leaf at that slot. Missing tables are allocated.
pub fn map(root: u64, va: u64, pa: u64, size: PageSize, flags: u64) -> Result<(), OutOfMemory> {
    let inter = if va < USER_END { pte::PRESENT | pte::WRITE | pte::USER } else { pte::PRESENT | pte::WRITE | (flags & pte::USER) };
    let entry = walk(root, va, size.level(), true, inter)?.ok_or(OutOfMemory)?;
    let huge = if size == PageSize::Size4K { 0 } else { pte::HUGE };
    // SAFETY: `walk` returned a pointer into a live table.
    unsafe { *entry = pa | flags | huge | pte::PRESENT };
    Ok(())
}

/// Finds the leaf mapping `va`.
pub fn translate(root: u64, va: u64) -> Option<Leaf> {
    let mut t = root;
    for lvl in (1..=4).rev() {
        // SAFETY: `t` is a live table frame reached through present entries.
        let e = unsafe { *table(t).add(index(va, lvl)) };
        if e & pte::PRESENT == 0 {
            return None;
        }
        let size = match lvl {
            3 if e & pte::HUGE != 0 => Some(PageSize::Size1G),
            2 if e & pte::HUGE != 0 => Some(PageSize::Size2M),
            1 => Some(PageSize::Size4K),
            _ => None,
        };
        if let Some(size) = size {
            let base = e & pte::ADDR & !(size.bytes() - 1);
            return Some(Leaf { phys: base + (va & (size.bytes() - 1)), size, flags: e & !pte::ADDR });
        }
        t = e & pte::ADDR;
    }
    None
}

/// The first present leaf entry that maps an address in `[va, end)`: the leaf's first
/// address, a pointer to the entry and the page size. Absent tables are skipped whole, so
/// the cost grows with the tables present, not with the size of the range.
fn next_leaf_entry(root: u64, mut va: u64, end: u64) -> Option<(u64, *mut u64, PageSize)> {
    'range: while va < end {
        let mut t = root;
        for lvl in (1..=4).rev() {
            let span = 1u64 << (12 + 9 * (lvl - 1));
            // SAFETY: `t` is a live table frame reached through present entries; the index
            // is < 512.
            let entry = unsafe { table(t).add(index(va, lvl)) };
            // SAFETY: as above.
            let e = unsafe { *entry };
            if e & pte::PRESENT == 0 {
                va = (va & !(span - 1)).checked_add(span)?;
                continue 'range;
            }
            if lvl == 1 || (lvl <= 3 && e & pte::HUGE != 0) {
                let size = match lvl {
                    1 => PageSize::Size4K,
                    2 => PageSize::Size2M,
                    _ => PageSize::Size1G,
                };
                return Some((va & !(span - 1), entry, size));
            }
            t = e & pte::ADDR;
        }
    }
    None
}

/// The first present leaf that maps an address in `[va, end)`: its first address and
/// the leaf (physical address of its start). See [`next_leaf_entry`].
pub fn next_leaf(root: u64, va: u64, end: u64) -> Option<(u64, Leaf)> {
    let (at, entry, size) = next_leaf_entry(root, va, end)?;
    // SAFETY: `entry` points at the present leaf just found.
    let e = unsafe { *entry };
    Some((at, Leaf { phys: e & pte::ADDR & !(size.bytes() - 1), size, flags: e & !pte::ADDR }))
}

/// Removes the leaf mapping `va` and returns it (with its accessed/dirty bits).
pub fn unmap(root: u64, va: u64) -> Option<Leaf> {
    let leaf = translate(root, va)?;
    let entry = walk(root, va, leaf.size.level(), false, 0).ok().flatten()?;
    // SAFETY: `entry` points at the present leaf found above.
    unsafe { *entry = 0 };
    Some(leaf)
}

/// Copies the kernel half of `from` into the PML4 `to`.
pub fn copy_kernel_half(from: u64, to: u64) {
    for i in super::layout::KERNEL_PML4_FIRST..512 {
        // SAFETY: both are live PML4 frames; kernel-half entries are shared by design.
        unsafe { *table(to).add(i) = *table(from).add(i) };
    }
}

/// Invalidates the TLB entry for `va` in the current address space.
#[inline]
pub fn invlpg(va: u64) {
    // SAFETY: invalidating a TLB entry has no memory-safety effect.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR3.
///
/// # Safety
/// `value` must name a PML4 whose kernel half maps the running kernel.
#[inline(always)]
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: forwarded to the caller's contract.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Frees the page table (last level) that maps `va` if none of its entries is present.
pub fn free_table_if_empty(root: u64, va: u64) {
    let Ok(Some(pde)) = walk(root, va, 2, false, 0) else { return };
    // SAFETY: `pde` points into a live page directory.
    let e = unsafe { *pde };
    if e & pte::PRESENT == 0 || e & pte::HUGE != 0 {
        return;
    }
    let pt = e & pte::ADDR;
    // SAFETY: `pt` is a live page-table frame.
    let empty = (0..512).all(|i| unsafe { *table(pt).add(i) } & pte::PRESENT == 0);
    if empty {
        // SAFETY: unlinking then freeing a table nothing maps through any more; the
        // paging-structure caches for the range are invalidated by `invlpg`.
        unsafe {
            *pde = 0;
            invlpg(va);
            kmem::free_frame(pt);
        }
    }
}

/// The caching bits of a leaf of `size` that select PAT entry `index` (0..7).
pub const fn cache_bits(index: u8, size: PageSize) -> u64 {
    let pat = match size {
        PageSize::Size4K => pte::PAT_4K,
        _ => pte::PAT_LARGE,
    };
    (if index & 1 != 0 { pte::PWT } else { 0 })
        | (if index & 2 != 0 { pte::PCD } else { 0 })
        | (if index & 4 != 0 { pat } else { 0 })
}

/// All caching bits of a leaf of `size`.
pub const fn cache_mask(size: PageSize) -> u64 {
    cache_bits(7, size)
}

/// The PAT entry a leaf `e` of `size` selects.
pub const fn cache_index(e: u64, size: PageSize) -> u8 {
    let pat = match size {
        PageSize::Size4K => pte::PAT_4K,
        _ => pte::PAT_LARGE,
    };
    (e & pte::PWT != 0) as u8 | ((e & pte::PCD != 0) as u8) << 1 | ((e & pat != 0) as u8) << 2
}

/// Gives every present leaf of the user page tables under `root` that intersects
/// `[start, end)` the caching bits of PAT entry `pat_index` (a large page partly inside takes
/// them as a whole: memory types are per hardware page). Returns how many leaves
/// changed. Their TLB entries are invalidated if `root` is the loaded address space;
/// otherwise the caller must have the space flushed before it runs.
///
/// Only leaf bits change: no table is created or freed, so the mapping database's
/// shadow tables stay as they are.
pub fn set_cache_range(root: u64, start: u64, end: u64, pat_index: u8) -> usize {
    let end = end.min(USER_END);
    let current = read_cr3() & pte::ADDR == root;
    let mut changed = 0;
    let mut va = start;
    while let Some((at, entry, size)) = next_leaf_entry(root, va, end) {
        // SAFETY: `entry` points at a present user leaf of the space (just found).
        let e = unsafe { *entry };
        let new = (e & !cache_mask(size)) | cache_bits(pat_index, size);
        if new != e {
            // SAFETY: rewriting the caching bits of that leaf; frame and rights stay, so
            // no mapping changes.
            unsafe { *entry = new };
            if current {
                invlpg(at);
            }
            changed += 1;
        }
        va = at + size.bytes();
    }
    changed
}

/// The PAT entry the leaf mapping `va` selects, if `va` is mapped.
pub fn cache_index_at(root: u64, va: u64) -> Option<u8> {
    let leaf = translate(root, va)?;
    let entry = walk(root, va, leaf.size.level(), false, 0).ok().flatten()?;
    // SAFETY: `entry` points at the present leaf found above.
    Some(cache_index(unsafe { *entry }, leaf.size))
}
