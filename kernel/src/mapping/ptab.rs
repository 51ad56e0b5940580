//! The hardware half of the mapping database: [`mapdb::Tables`] over the x86_64 page
//! tables of every address space, with a *shadow tree* that links each user leaf to the
//! mapdb node describing it.
//!
//! ```text
//!  Space.pml4   ──► PML4 ──► PDPT ──► PD ──► PT          hardware tables (pool frames)
//!  Space.shadow ──► S4   ──► S3   ──► S2 ──► S1          one shadow frame per table
//!
//!  shadow slot i of a table:
//!    entry i points to a table    → the frame number of that table's shadow
//!    entry i is a mapdb leaf      → the node's NodeId (index + 1, never 0)
//!    entry i is a kernel leaf     → 0 (the KIP page and UTCB pages: no node)
//!    entry i is empty             → 0
//!  shadow `used` = number of present entries of the table
//! ```
//!
//! Finding the node of `(space, vaddr)` is the page-table walk itself (four steps), so
//! every mapdb operation costs what it touches, whatever the size of memory.
//!
//! Leaves carry the X.2 rights (R, W, X) in the three software bits 9..11 so that a
//! W-only or X-only mapping (which x86 cannot express: present implies readable) reads
//! back exactly as mapdb made it. The hardware grants R always, W if W, execute if X.
//! Accessed status: A → referenced (and executed, if the mapping is executable: x86 does
//! not tell reads from instruction fetches), D → written.
//!
//! Caching attributes (PAT/PCD/PWT, set by MemoryControl through
//! `paging::set_cache_range`) belong to the leaf they were set on: a rights change keeps
//! them, a split hands them to every piece, and a leaf installed by map or grant starts
//! with the default (write-back).
//!
//! Page-table frames for one mapdb step come from a list of *spares* filled by
//! [`Tables::reserve`]; tables emptied by a removal go back to the spares, so a step that
//! frees a table and then needs one again never allocates beyond its reservation. The
//! spares return to the kernel pool at the end of each operation ([`trim`]).
//!
//! TLB: every change invalidates what it changed — `invlpg` when the space is the current
//! one (which also drops the paging-structure caches of the current PCID), otherwise the
//! space is marked to flush its PCID on its next activation (`Space::needs_flush`).
//!
//! # Invariants
//! - Every user-half table of a space has exactly one shadow, reached through the shadow
//!   slot of the entry pointing to the table; the PML4's shadow is `Space::shadow`.
//! - `used` counts the present entries; a table below the PML4 whose `used` drops to 0 is
//!   freed at once (with its shadow), so empty tables never linger.
//! - Non-present entries and their shadow slots are 0.

use mapdb::{HwMapping, NodeId, OutOfMemory, PageSize, Rights, SpaceId, TableNeed, Tables};

use crate::arch::layout::{phys_to_virt, USER_END};
use crate::arch::paging::{self, pte};
use crate::kmem;
use crate::space::Space;
use crate::util::KCell;

/// Entries per table.
const ENTRIES: usize = 512;
/// PML4 entries of the user half.
const USER_PML4_ENTRIES: usize = crate::arch::layout::KERNEL_PML4_FIRST;
/// Bytes covered by one entry at each level (index = level; level 1 = PT).
const SPAN: [u64; 5] = [0, 1 << 12, 1 << 21, 1 << 30, 1 << 39];
/// Where leaves keep the X.2 rights (software-available bits 9..11).
const RIGHTS_SHIFT: u64 = 9;
/// Flags of an entry that points to a lower table (rights live in leaves).
const TABLE_FLAGS: u64 = pte::PRESENT | pte::WRITE | pte::USER;

/// The shadow of one page-table frame.
#[repr(C)]
struct Shadow {
    slot: [u32; ENTRIES],
    used: u32,
}

const _: () = assert!(core::mem::size_of::<Shadow>() <= kmem::FRAME_SIZE as usize);

/// One page table and its shadow (physical addresses).
///
/// # Invariants
/// Only built (by this module) for a live table of some space and that table's shadow,
/// both pool frames mapped by the direct map and owned by the space.
#[derive(Clone, Copy)]
struct Table {
    pa: u64,
    shadow: u64,
}

impl Table {
    fn entry(self, i: usize) -> u64 {
        debug_assert!(i < ENTRIES);
        // SAFETY: `pa` is a live table frame (type invariant) and i < 512.
        unsafe { (phys_to_virt(self.pa) as *const u64).add(i).read_volatile() }
    }

    fn set_entry(self, i: usize, v: u64) {
        debug_assert!(i < ENTRIES);
        // SAFETY: as in `entry`; the table belongs to the space being changed, and the
        // kernel is the only writer (single processor, not preemptible).
        unsafe { (phys_to_virt(self.pa) as *mut u64).add(i).write_volatile(v) }
    }

    fn sh(self) -> *mut Shadow {
        phys_to_virt(self.shadow) as *mut Shadow
    }

    fn slot(self, i: usize) -> u32 {
        // SAFETY: `shadow` is this table's live shadow frame (type invariant).
        unsafe { (*self.sh()).slot[i] }
    }

    fn set_slot(self, i: usize, v: u32) {
        // SAFETY: as in `slot`.
        unsafe { (*self.sh()).slot[i] = v }
    }

    fn used(self) -> u32 {
        // SAFETY: as in `slot`.
        unsafe { (*self.sh()).used }
    }

    fn add_used(self, delta: i32) {
        // SAFETY: as in `slot`.
        unsafe { (*self.sh()).used = (*self.sh()).used.wrapping_add_signed(delta) }
    }

    /// The table entry `i` points to (entry present and not a leaf).
    fn child(self, i: usize) -> Table {
        Table { pa: self.entry(i) & pte::ADDR, shadow: (self.slot(i) as u64) << 12 }
    }
}

/// Index of `va` in the table at `level`.
const fn index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// The table level holding leaves of `size`.
const fn level_of(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 1,
        PageSize::Size2M => 2,
        PageSize::Size1G => 3,
    }
}

const fn size_at(level: usize) -> PageSize {
    match level {
        1 => PageSize::Size4K,
        2 => PageSize::Size2M,
        _ => PageSize::Size1G,
    }
}

/// Whether entry `e` at `level` is a leaf.
const fn is_leaf(e: u64, level: usize) -> bool {
    level == 1 || e & pte::HUGE != 0
}

/// A leaf entry.
fn leaf(phys: u64, level: usize, rights: Rights, accessed: Rights) -> u64 {
    let mut e = phys | pte::PRESENT | pte::USER | ((rights.bits() as u64) << RIGHTS_SHIFT);
    if rights.contains(Rights::W) {
        e |= pte::WRITE;
    }
    if !rights.contains(Rights::X) {
        e |= pte::NX;
    }
    if level > 1 {
        e |= pte::HUGE;
    }
    if !accessed.is_empty() {
        e |= pte::ACCESSED;
    }
    if accessed.contains(Rights::W) {
        e |= pte::DIRTY;
    }
    e
}

/// The X.2 rights a leaf was made with.
const fn rights_of(e: u64) -> Rights {
    Rights::from_low_bits(e >> RIGHTS_SHIFT)
}

/// The accessed status of a leaf: A → R (and X if executable), D → W.
fn status_of(e: u64) -> Rights {
    let mut s = Rights::NONE;
    if e & pte::ACCESSED != 0 {
        s |= Rights::R;
        if rights_of(e).contains(Rights::X) {
            s |= Rights::X;
        }
    }
    if e & pte::DIRTY != 0 {
        s |= Rights::W | Rights::R;
    }
    s
}

const fn phys_of(e: u64, level: usize) -> u64 {
    e & pte::ADDR & !(SPAN[level] - 1)
}

/// The space named by `id` (the frame number of its object).
fn space_ptr(id: SpaceId) -> *mut Space {
    phys_to_virt((id.0 as u64) << 12) as *mut Space
}

/// A space's KIP and UTCB areas as `[start, end)`, or `None` before its first
/// SpaceControl. Read through the raw pointer, so that no reference to the space is held
/// while the tables (and its `needs_flush`) change.
pub fn areas(id: SpaceId) -> Option<[(u64, u64); 2]> {
    let sp = space_ptr(id);
    // SAFETY: as in `root`: a live Space object; plain field reads.
    let (kb, kl, ub, ul) = unsafe {
        (
            core::ptr::addr_of!((*sp).kip_base).read(),
            core::ptr::addr_of!((*sp).kip_log2).read(),
            core::ptr::addr_of!((*sp).utcb_base).read(),
            core::ptr::addr_of!((*sp).utcb_log2).read(),
        )
    };
    (ul != 0).then(|| [(kb, kb + (1u64 << kl)), (ub, ub + (1u64 << ul))])
}

/// The PML4 of a space and its shadow.
fn root(id: SpaceId) -> Table {
    let sp = space_ptr(id);
    // SAFETY: mapdb only names spaces the kernel gave it (live Space objects in pool
    // frames); the two fields are read through the raw pointer, without a reference.
    unsafe { Table { pa: core::ptr::addr_of!((*sp).pml4).read(), shadow: core::ptr::addr_of!((*sp).shadow).read() } }
}

/// Makes the TLB forget `va` of space `id`: `invlpg` if it is the current space, else a
/// full flush of its PCID at its next activation.
fn invalidate(id: SpaceId, va: u64) {
    let sp = space_ptr(id);
    // SAFETY: as in `root`.
    let pml4 = unsafe { core::ptr::addr_of!((*sp).pml4).read() };
    if paging::read_cr3() & pte::ADDR == pml4 {
        paging::invlpg(va);
    } else {
        // SAFETY: as in `root`; a plain store to a field the scheduler reads at switch.
        unsafe { core::ptr::addr_of_mut!((*sp).needs_flush).write(1) };
    }
}

/// Page-table frames set aside for the current step (a list linked through the first
/// word of each frame).
struct Spares {
    head: u64,
    count: usize,
}

static SPARES: KCell<Spares> = KCell::new(Spares { head: 0, count: 0 });

/// Makes sure `n` spare frames exist.
fn ensure_spares(n: usize) -> Result<(), OutOfMemory> {
    while SPARES.get().count < n {
        let pa = kmem::alloc_frame().map_err(|_| OutOfMemory)?;
        give(pa);
    }
    Ok(())
}

/// Puts a frame on the spare list.
fn give(pa: u64) {
    let s = SPARES.get_mut();
    // SAFETY: `pa` is a pool frame nothing else references (a fresh one, or a table or
    // shadow just unlinked from its space); its first word holds the link.
    unsafe { (phys_to_virt(pa) as *mut u64).write(s.head) };
    s.head = pa;
    s.count += 1;
}

/// Takes a zeroed frame from the spares. A step only takes what it reserved; should that
/// ever fail, the pool is tried, and only then is it a kernel bug.
///
/// Spare frames are zero but for their link word: fresh pool frames are zeroed by the
/// pool, emptied tables and shadows are zero by this module's invariants, and
/// [`free_below`] clears what it gives back.
fn take() -> u64 {
    let s = SPARES.get_mut();
    if s.head == 0 {
        return kmem::alloc_frame().unwrap_or_else(|_| panic!("mapdb used page-table memory it had not reserved"));
    }
    let pa = s.head;
    // SAFETY: `pa` is on the spare list (owned by it); clearing its link word hands it
    // out zeroed (see above).
    unsafe {
        let link = phys_to_virt(pa) as *mut u64;
        s.head = link.read();
        link.write(0);
    }
    s.count -= 1;
    pa
}

/// Returns every spare frame to the kernel pool (at the end of an operation).
pub fn trim() {
    let s = SPARES.get_mut();
    while s.head != 0 {
        let pa = s.head;
        // SAFETY: `pa` is on the spare list; after unlinking it nothing refers to it.
        unsafe {
            s.head = (phys_to_virt(pa) as *const u64).read();
            kmem::free_frame(pa);
        }
        s.count -= 1;
    }
}

/// The tables from the PML4 down to `level` along `va`: `path[l]` is the table at level
/// `l`. With `create`, missing tables are made from the spares; otherwise `None` if one is
/// missing. `None` also if a leaf sits above `level` on the way.
fn path(id: SpaceId, va: u64, level: usize, create: bool) -> Option<[Table; 5]> {
    let mut p = [root(id); 5];
    let mut t = p[4];
    let mut l = 4;
    while l > level {
        let i = index(va, l);
        let e = t.entry(i);
        if e & pte::PRESENT == 0 {
            if !create {
                return None;
            }
            let child = Table { pa: take(), shadow: take() };
            t.set_entry(i, child.pa | TABLE_FLAGS);
            t.set_slot(i, (child.shadow >> 12) as u32);
            t.add_used(1);
        } else if is_leaf(e, l) {
            return None;
        }
        t = t.child(i);
        l -= 1;
        p[l] = t;
    }
    Some(p)
}

/// Number of tables missing on the way from the PML4 to a leaf of `level` at `va`.
fn missing_tables(id: SpaceId, va: u64, level: usize) -> usize {
    let mut t = root(id);
    let mut l = 4;
    while l > level {
        let i = index(va, l);
        let e = t.entry(i);
        if e & pte::PRESENT == 0 {
            return l - level;
        }
        if is_leaf(e, l) {
            return 0;
        }
        t = t.child(i);
        l -= 1;
    }
    0
}

/// Frees a table (and its shadow) with everything below it into the spares. Leaves must
/// be gone already, except kernel leaves (none exist below a table the caller frees).
fn free_below(t: Table, level: usize, to_pool: bool) {
    for i in 0..ENTRIES {
        let e = t.entry(i);
        if e & pte::PRESENT != 0 && !is_leaf(e, level) {
            free_below(t.child(i), level - 1, to_pool);
        }
    }
    release_frame(t.pa, to_pool);
    release_frame(t.shadow, to_pool);
}

fn release_frame(pa: u64, to_pool: bool) {
    if to_pool {
        // SAFETY: the frame was a table or shadow of a space being torn down; it is
        // unlinked and nothing refers to it.
        unsafe { kmem::free_frame(pa) };
    } else {
        // SAFETY: as above; spares must be zero (see `take`), and this table may still
        // hold kernel leaves.
        unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, kmem::FRAME_SIZE as usize) };
        give(pa);
    }
}

/// Removes empty tables bottom-up along `p` from `level` (the table that lost an entry).
fn prune(p: &[Table; 5], va: u64, level: usize) {
    let mut l = level;
    while l < 4 && p[l].used() == 0 {
        let parent = p[l + 1];
        let i = index(va, l + 1);
        parent.set_entry(i, 0);
        parent.set_slot(i, 0);
        parent.add_used(-1);
        give(p[l].pa);
        give(p[l].shadow);
        l += 1;
    }
}

/// The leaf of `size` at `va` (which mapdb guarantees exists): its table and index.
fn leaf_at(id: SpaceId, va: u64, size: PageSize) -> Option<(Table, usize, [Table; 5])> {
    let level = level_of(size);
    let p = path(id, va, level, false)?;
    let i = index(va, level);
    let e = p[level].entry(i);
    if e & pte::PRESENT == 0 || !is_leaf(e, level) {
        debug_assert!(false, "mapdb named a missing {:?} leaf at {:#x}", size, va);
        return None;
    }
    Some((p[level], i, p))
}

/// The page tables of all spaces, as mapdb sees them. Stateless: the tables hang off the
/// spaces, the spares are global.
pub struct PageTables;

impl Tables for PageTables {
    fn reserve(&mut self, need: &TableNeed) -> Result<(), OutOfMemory> {
        let mut frames = need.splits.checked_mul(2).ok_or(OutOfMemory)?;
        if let Some((id, va, size)) = need.install {
            frames += 2 * missing_tables(id, va, level_of(size));
        }
        ensure_spares(frames)
    }

    fn find(&self, id: SpaceId, start: u64, end: u64) -> Option<HwMapping> {
        let end = end.min(USER_END);
        let mut va = start;
        'restart: while va < end {
            let mut t = root(id);
            let mut l = 4;
            loop {
                let i = index(va, l);
                let e = t.entry(i);
                let present = e & pte::PRESENT != 0;
                let leaf_here = present && is_leaf(e, l);
                if !present || (leaf_here && t.slot(i) == 0) {
                    // Nothing of mapdb's here: skip the entry.
                    let next = (va & !(SPAN[l] - 1)).checked_add(SPAN[l])?;
                    if next >= end {
                        return None;
                    }
                    va = next;
                    if index(va, l) == 0 || l == 4 {
                        continue 'restart;
                    }
                    continue;
                }
                if leaf_here {
                    let node = NodeId::from_index(t.slot(i) - 1)?;
                    return Some(HwMapping {
                        vaddr: va & !(SPAN[l] - 1),
                        size: size_at(l),
                        phys: phys_of(e, l),
                        rights: rights_of(e),
                        node,
                    });
                }
                t = t.child(i);
                l -= 1;
            }
        }
        None
    }

    fn install(&mut self, id: SpaceId, va: u64, size: PageSize, phys: u64, rights: Rights, accessed: Rights, node: NodeId) {
        let level = level_of(size);
        let Some(p) = path(id, va, level, true) else {
            debug_assert!(false, "mapdb installed under a leaf at {:#x}", va);
            return;
        };
        let t = p[level];
        let i = index(va, level);
        let old = t.entry(i);
        if old & pte::PRESENT != 0 {
            // Only a table can be here (mapdb installs where nothing is mapped); tables
            // are freed when they empty, so this one holds kernel leaves at most — which
            // the callers keep out of every destination. Drop it rather than stack a
            // large page on top.
            debug_assert!(!is_leaf(old, level), "mapdb installed over a leaf at {:#x}", va);
            if !is_leaf(old, level) {
                free_below(t.child(i), level - 1, false);
            }
            t.add_used(-1);
            invalidate(id, va);
        }
        t.set_entry(i, leaf(phys, level, rights, accessed));
        t.set_slot(i, node.index() + 1);
        t.add_used(1);
    }

    fn remove(&mut self, id: SpaceId, va: u64, size: PageSize) -> Rights {
        let Some((t, i, p)) = leaf_at(id, va, size) else { return Rights::NONE };
        let e = t.entry(i);
        t.set_entry(i, 0);
        t.set_slot(i, 0);
        t.add_used(-1);
        prune(&p, va, level_of(size));
        invalidate(id, va);
        status_of(e)
    }

    fn protect(&mut self, id: SpaceId, va: u64, size: PageSize, rights: Rights) {
        let Some((t, i, _)) = leaf_at(id, va, size) else { return };
        let e = t.entry(i);
        // Frame, status, page size and the caching bits (MemoryControl; the large-page
        // PAT bit lies inside ADDR, the 4 KiB one is HUGE's place).
        let keep = e & (pte::ADDR | pte::ACCESSED | pte::DIRTY | pte::HUGE | pte::PWT | pte::PCD);
        let fresh = leaf(0, level_of(size), rights, Rights::NONE) & !pte::HUGE;
        t.set_entry(i, keep | fresh);
        invalidate(id, va);
    }

    fn accessed(&mut self, id: SpaceId, va: u64, size: PageSize, clear: bool) -> Rights {
        let Some((t, i, _)) = leaf_at(id, va, size) else { return Rights::NONE };
        let e = t.entry(i);
        if clear && e & (pte::ACCESSED | pte::DIRTY) != 0 {
            t.set_entry(i, e & !(pte::ACCESSED | pte::DIRTY));
            invalidate(id, va);
        }
        status_of(e)
    }

    fn split(&mut self, id: SpaceId, va: u64, size: PageSize) {
        let Some((t, i, _)) = leaf_at(id, va, size) else { return };
        let level = level_of(size);
        if level < 2 {
            return;
        }
        let e = t.entry(i);
        let node = t.slot(i);
        let small = level - 1;
        // The pieces keep the caching bits; the PAT bit moves from bit 12 (large page)
        // to bit 7 in a 4 KiB leaf.
        let pat = e & pte::PAT_LARGE != 0;
        let mut flags = e & !pte::ADDR;
        if small == 1 {
            flags &= !pte::HUGE;
            if pat {
                flags |= pte::PAT_4K;
            }
        } else if pat {
            flags |= pte::PAT_LARGE;
        }
        let phys = phys_of(e, level);
        let child = Table { pa: take(), shadow: take() };
        for k in 0..ENTRIES {
            child.set_entry(k, (phys + k as u64 * SPAN[small]) | flags);
            child.set_slot(k, node);
        }
        child.add_used(ENTRIES as i32);
        t.set_entry(i, child.pa | TABLE_FLAGS);
        t.set_slot(i, (child.shadow >> 12) as u32);
        invalidate(id, va);
    }

    fn relink(&mut self, id: SpaceId, va: u64, size: PageSize, node: NodeId) {
        if let Some((t, i, _)) = leaf_at(id, va, size) {
            t.set_slot(i, node.index() + 1);
        }
    }
}

/// Why a kernel page could not be entered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KernelPageError {
    /// No pool memory for the page tables.
    OutOfMemory,
    /// A mapping made through mapdb covers the address.
    Occupied,
}

/// Enters a 4 KiB *kernel leaf* (no mapdb node: the KIP page, a UTCB page) at user
/// address `va` of `space`, replacing a kernel leaf that was there.
pub fn map_kernel_page(space: &Space, va: u64, pa: u64, rights: Rights) -> Result<(), KernelPageError> {
    let id = super::id_of(space);
    let need = 2 * missing_tables(id, va, 1);
    let r = ensure_spares(need).map_err(|_| KernelPageError::OutOfMemory).and_then(|()| {
        let p = path(id, va, 1, true).ok_or(KernelPageError::Occupied)?;
        let t = p[1];
        let i = index(va, 1);
        let old = t.entry(i);
        if old & pte::PRESENT != 0 {
            if t.slot(i) != 0 {
                return Err(KernelPageError::Occupied);
            }
        } else {
            t.add_used(1);
        }
        t.set_entry(i, leaf(pa, 1, rights, Rights::NONE));
        invalidate(id, va);
        Ok(())
    });
    trim();
    r
}

/// Calls `f(node)` for every mapdb leaf left in `space` (only σ0's roots survive a flush).
pub fn for_each_node(space: &Space, mut f: impl FnMut(NodeId)) {
    fn walk(t: Table, level: usize, entries: usize, f: &mut dyn FnMut(NodeId)) {
        for i in 0..entries {
            let e = t.entry(i);
            if e & pte::PRESENT == 0 {
                continue;
            }
            if is_leaf(e, level) {
                if let Some(n) = t.slot(i).checked_sub(1).and_then(NodeId::from_index) {
                    f(n);
                }
            } else {
                walk(t.child(i), level - 1, ENTRIES, f);
            }
        }
    }
    walk(root(super::id_of(space)), 4, USER_PML4_ENTRIES, &mut f);
}

/// Frees every user-half table of `space` and their shadows (the PML4 itself and its
/// shadow stay: they belong to the space object). Kernel leaves are simply dropped — the
/// caller has freed what they point to; mapdb leaves must be gone.
pub fn free_user_tables(space: &Space) {
    let r = root(super::id_of(space));
    for i in 0..USER_PML4_ENTRIES {
        let e = r.entry(i);
        if e & pte::PRESENT != 0 {
            free_below(r.child(i), 3, true);
            r.set_entry(i, 0);
            r.set_slot(i, 0);
        }
    }
    // SAFETY: the shadow is this space's live shadow frame; nothing is left in it.
    unsafe { (*r.sh()).used = 0 };
}
