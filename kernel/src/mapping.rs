//! Mappings between address spaces: map, grant, unmap (flush), σ0's idempotent roots and
//! the kernel's own pages in user space (KIP, UTCBs) — the kernel side of the `mapdb`
//! crate.
//!
//! ```text
//!   IPC map/grant item ── ipc_items (X.2 window / send-base matching)
//!                              │ transfer(from, to, src, log2, dst, rights, grant)
//!   Unmap system call ─────────┤ unmap_syscall
//!   σ0 page fault ─────────────┤ sigma0_fault
//!   boot (root-server images) ─┤ map_boot_image
//!   space deletion ────────────┘ release_space
//!                              ▼
//!          one global Mdb<Slab, PageTables> (mapdb: derivation tree, rules)
//!             ├── slab::Slab        nodes in kernel-pool frames
//!             └── ptab::PageTables  the spaces' page tables + shadow tree
//! ```
//!
//! Here the X.2 decoding becomes mapdb's terms: user fpages are clipped to the user area;
//! a destination never covers the receiver's KIP or UTCB area (those hold kernel leaves,
//! which mapdb never sees); the rest is cut into naturally aligned blocks, each a mapdb
//! [`Region`]. A space is named by the frame number of its object ([`id_of`]).
//!
//! σ0's space holds the roots: idempotent mappings of all physical memory below
//! [`phys_limit`] except the kernel's (the zero page, the kernel image, the kernel pool)
//! and σ0's own KIP and UTCB areas. Roots are made on demand — when σ0 touches a page, or
//! maps or grants one it never touched — as large as alignment and the exclusions allow
//! (1 GiB, 2 MiB, 4 KiB), so their number stays small.
//!
//! Every operation ends with [`finish`]: unused reservations go back to the kernel pool
//! (so kernel memory returns to its start value once the mappings made since are gone),
//! and with `tern.mapdb-check=on` on the command line the database checks all its
//! invariants and panics on the first broken one.
//!
//! See docs/memory.md for the design.

mod ptab;
mod slab;

use abi::fpage::{Fpage, IoFpage};
use mapdb::{Config, Mdb, PageSize, Region, Rights, SpaceId, Store};

use crate::arch::layout::{virt_to_phys, USER_END};
use crate::ipc;
use crate::kmem::{self, OutOfMemory};
use crate::space::Space;
use crate::thread::Tcb;
use crate::util::{align_up, KCell};

pub use ptab::KernelPageError;

/// The database as the kernel instantiates it.
type Db = Mdb<slab::Slab, ptab::PageTables>;

/// The one database (single processor: a KCell). `None` until σ0's space exists, and
/// again after it is deleted.
static DB: KCell<Option<Db>> = KCell::new(None);

/// Physical ranges that never become σ0 roots: the zero page, the kernel image, the
/// kernel pool, and σ0's KIP and UTCB areas (virtual = physical in σ0's space).
static EXCLUDED: KCell<[(u64, u64); 5]> = KCell::new([(0, 0); 5]);

/// Check the database's invariants after every operation (`tern.mapdb-check=on`).
static CHECK: KCell<bool> = KCell::new(false);

/// The name of `space` in the database: the frame number of its object.
pub fn id_of(space: &Space) -> SpaceId {
    SpaceId((virt_to_phys(space as *const Space as u64) >> 12) as u32)
}

/// End of the physical address space σ0 owns: the RAM's end or 4 GiB (the PC's device
/// window), whichever is higher, rounded up to 1 GiB and at most the direct map — the
/// same extent the kernel maps physical memory with. The KIP describes nothing above.
pub fn phys_limit() -> u64 {
    let info = crate::boot::info();
    let ram_end = info.memmap[..info.memmap_len]
        .iter()
        .filter(|e| e.2 == bootfmt::pvh::MemmapEntry::RAM)
        .map(|e| e.0.saturating_add(e.1))
        .max()
        .unwrap_or(0);
    align_up(ram_end.max(4 << 30), 1 << 30).min(crate::arch::layout::PHYS_MAP_SIZE)
}

/// Sets up the database once σ0's space exists (with its KIP and UTCB areas set).
pub fn init(sigma0: &Space) {
    let max_page = if crate::arch::cpu::features().page1g { PageSize::Size1G } else { PageSize::Size2M };
    let (kstart, kend) = crate::boot::kernel_image_phys();
    let (pstart, pend) = kmem::pool_range();
    let kip = (sigma0.kip_base, sigma0.kip_base + (1u64 << sigma0.kip_log2));
    let utcb = (sigma0.utcb_base, sigma0.utcb_base + (1u64 << sigma0.utcb_log2));
    *EXCLUDED.get_mut() = [(0, 0x1000), (kstart & !0xFFF, align_up(kend, 0x1000)), (pstart, pend), kip, utcb];
    *CHECK.get_mut() = crate::boot::info().option("tern.mapdb-check") == Some("on");
    *DB.get_mut() = Some(Mdb::new(slab::Slab, ptab::PageTables, Config { sigma0: id_of(sigma0), max_page }));
}

fn db() -> Option<&'static mut Db> {
    DB.get_mut().as_mut()
}

/// Ends an operation: returns unused reservations to the pool; checks the invariants if
/// asked to.
fn finish() {
    slab::trim();
    ptab::trim();
    if *CHECK.get() {
        if let Some(db) = db() {
            if let Err(v) = db.check_invariants() {
                panic!("mapping database invariant broken: {} (node {:?})", v.what, v.node);
            }
        }
    }
}

/// Live mapping nodes and the slab frames holding them.
pub fn stats() -> (usize, usize) {
    slab::stats()
}

/// X.2 rights → mapdb rights (the same three bits).
fn rights(r: abi::fpage::Rights) -> Rights {
    Rights::from_low_bits(r.bits() as u64)
}

// ---------------------------------------------------------------------------------------
// σ0's roots

fn excluded_at(a: u64) -> Option<u64> {
    EXCLUDED.get().iter().find(|&&(s, e)| a >= s && a < e).map(|&(_, e)| e)
}

fn excluded_in(a: u64, b: u64) -> bool {
    EXCLUDED.get().iter().any(|&(s, e)| s < b && a < e)
}

/// Makes σ0 roots cover every page of `[start, end)` that σ0 owns (see the module doc).
fn ensure_roots(db: &mut Db, start: u64, end: u64) -> Result<(), mapdb::Error> {
    let s0 = db.config().sigma0;
    let max_page = db.config().max_page;
    let limit = phys_limit();
    let end = end.min(limit);
    let mut a = start & !0xFFF;
    while a < end {
        if let Some(e) = excluded_at(a) {
            a = e;
            continue;
        }
        if let Some(h) = mapdb::Tables::find(db.tables(), s0, a, a + 0x1000) {
            a = h.vaddr + h.size.bytes();
            continue;
        }
        let mut step = 0x1000;
        for size in [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K] {
            let b = size.bytes();
            if size > max_page || a % b != 0 || a + b > limit || excluded_in(a, a + b) {
                continue;
            }
            if mapdb::Tables::find(db.tables(), s0, a, a + b).is_some() {
                continue;
            }
            db.add_root(a, size, Rights::ALL)?;
            step = b;
            break;
        }
        a += step;
    }
    Ok(())
}

/// Resolves a page fault of σ0 at `addr` with its idempotent root (X.2: σ0 owns all
/// memory but the kernel's). False for kernel memory, the zero page, addresses beyond
/// [`phys_limit`], or when the kernel pool is exhausted.
pub fn sigma0_fault(space: &Space, addr: u64) -> bool {
    let Some(db) = db() else { return false };
    let s0 = db.config().sigma0;
    if id_of(space) != s0 || addr >= USER_END {
        return false;
    }
    let page = addr & !0xFFF;
    let _ = ensure_roots(db, page, page + 0x1000);
    let ok = mapdb::Tables::find(db.tables(), s0, page, page + 0x1000).is_some();
    finish();
    ok
}

// ---------------------------------------------------------------------------------------
// Map and grant

/// Naturally aligned power-of-two blocks covering `[a, b)` (both 4 KiB aligned), in
/// ascending order, as `(base, log2 size)`.
struct Blocks {
    a: u64,
    b: u64,
}

impl Iterator for Blocks {
    type Item = (u64, u8);
    fn next(&mut self) -> Option<(u64, u8)> {
        if self.a >= self.b {
            return None;
        }
        let align = if self.a == 0 { 63 } else { self.a.trailing_zeros() };
        let fit = 63 - (self.b - self.a).leading_zeros();
        let k = align.min(fit);
        let block = (self.a, k as u8);
        self.a += 1 << k;
        Some(block)
    }
}

/// `[lo, hi)` without the `holes` (each `[s, e)`), as at most `holes.len() + 1` pieces.
fn without(lo: u64, hi: u64, holes: &mut [(u64, u64); 2]) -> [(u64, u64); 3] {
    holes.sort_unstable();
    let mut out = [(0, 0); 3];
    let mut cursor = lo;
    for (n, &(s, e)) in holes.iter().enumerate() {
        if e <= cursor || s >= hi || s >= e {
            continue;
        }
        if s > cursor {
            out[n] = (cursor, s);
        }
        cursor = cursor.max(e);
    }
    if cursor < hi {
        out[2] = (cursor, hi);
    }
    out
}

/// A map (or, with `grant`, grant) item after X.2's window matching: the `2^log2` bytes at
/// `src` in space `from` go to `dst` in space `to` with at most `rights`. `src` and `dst`
/// are aligned to the size (`log2` up to 64 for the complete space). What lies outside the
/// user area, or over the receiver's KIP or UTCB area, is not transferred; nothing is
/// transferred into a space whose areas are not set yet. Running out of kernel memory
/// stops the transfer where it was (X.2 has no error for it).
///
/// The spaces are named by id (see [`id_of`]), not by reference: the operation changes
/// their page tables and TLB state.
pub fn transfer(from: SpaceId, to: SpaceId, src: u64, log2: u8, dst: u64, r: abi::fpage::Rights, grant: bool) {
    let Some(db) = db() else { return };
    let rights = rights(r);
    let Some(mut holes) = ptab::areas(to) else { return };
    if log2 < Region::MIN_LOG2 || src >= USER_END || dst >= USER_END || rights.is_empty() {
        return;
    }
    let size = 1u64 << log2.min(47);
    let s0 = db.config().sigma0;
    'pieces: for (a, b) in without(dst, dst + size, &mut holes) {
        for (o, k) in (Blocks { a, b }) {
            let s = src + (o - dst);
            if from == s0 && ensure_roots(db, s, s + (1u64 << k)).is_err() {
                break 'pieces;
            }
            let Ok(region) = Region::new(s, k) else { break 'pieces };
            let r = if grant { db.grant(from, region, to, o, rights) } else { db.map(from, region, to, o, rights) };
            if r.is_err() {
                break 'pieces;
            }
        }
    }
    finish();
}

/// Maps a root server's image at boot: `len` bytes at `vaddr` of `space` backed by
/// physical `paddr` (page aligned), with R plus W and X as given. For σ0 this is its own
/// idempotent roots (`vaddr` must equal `paddr`); for the others, mappings derived from
/// σ0's roots, as if σ0 had mapped them.
pub fn map_boot_image(space: &Space, vaddr: u64, paddr: u64, len: u64, w: bool, x: bool) -> Result<(), &'static str> {
    let Some(db) = db() else { return Err("no sigma0: nothing to map memory from") };
    let s0 = db.config().sigma0;
    let id = id_of(space);
    let mut r = Rights::R;
    if w {
        r |= Rights::W;
    }
    if x {
        r |= Rights::X;
    }
    let mut result = Ok(());
    if id == s0 {
        if vaddr != paddr {
            result = Err("sigma0 must be linked at its physical address");
        } else if ensure_roots(db, paddr, paddr + len).is_err() {
            result = Err("out of kernel memory");
        }
    } else {
        let mut off = 0;
        while off < len && result.is_ok() {
            let p = paddr + off;
            let region = Region::new(p, 12).map_err(|_| "misaligned image");
            result = region.and_then(|region| {
                ensure_roots(db, p, p + 0x1000).map_err(|_| "out of kernel memory")?;
                if mapdb::Tables::find(db.tables(), s0, p, p + 0x1000).is_none() {
                    return Err("image in kernel memory");
                }
                db.map(s0, region, id, vaddr + off, r).map_err(|_| "out of kernel memory")
            });
            off += 0x1000;
        }
    }
    finish();
    result
}

// ---------------------------------------------------------------------------------------
// Unmap

/// The Unmap system call: the fpages in MR0..MRk of the caller. Each memory fpage's
/// rights are revoked from every mapping derived from the caller's mappings in it
/// (recursively), with the flush bit also from the caller's own; each MR comes back as
/// the fpage with the accessed status (R referenced, W written, X executed) in its rights
/// field. An I/O fpage revokes those ports the same way (`ioport`, which keeps their
/// derivation apart from the mapping database); its status reads as nothing.
pub fn unmap_syscall(t: &mut Tcb) {
    let control = abi::syscall::UnmapControl::from_raw(t.frame().rdx);
    let id = id_of(t.space());
    for i in 0..control.count() {
        let raw = ipc::mr(t, i);
        let fpage = Fpage(raw);
        let status = match fpage.try_validate() {
            Ok(v) => unmap_one(id, v, control.flush()),
            Err(_) => {
                if let Ok(io) = IoFpage::try_from(fpage) {
                    crate::ioport::unmap(t.space(), io, control.flush());
                }
                Rights::NONE
            }
        };
        ipc::set_mr(t, i, (raw & !0xF) | status.bits() as u64);
    }
    finish();
    let local = t.local_id().raw();
    t.frame().rdi = local;
}

fn unmap_one(id: SpaceId, v: abi::fpage::ValidFpage, flush: bool) -> Rights {
    let Some(db) = db() else { return Rights::NONE };
    let base = v.base();
    if base >= USER_END {
        return Rights::NONE;
    }
    // An fpage reaching beyond the user area starts at 0 (it is aligned): clip it.
    let Ok(region) = Region::new(base, v.log2size().min(47)) else { return Rights::NONE };
    // x86 cannot keep a present page unreadable: revoking R revokes everything, so that
    // an unmap is never weaker than asked.
    let mut revoke = rights(v.rights());
    if revoke.contains(Rights::R) {
        revoke = Rights::ALL;
    }
    match db.unmap(id, region, revoke, flush) {
        Ok(status) => status,
        Err(mapdb::Error::OutOfMemory { accessed, .. }) => accessed,
        Err(_) => Rights::NONE,
    }
}

// ---------------------------------------------------------------------------------------
// Kernel pages and space deletion

/// Enters one 4 KiB kernel page (the KIP, a UTCB page) at user address `va` of `space`.
/// Such pages are not mappings: no map, grant or unmap ever touches them.
pub fn map_kernel_page(space: &Space, va: u64, pa: u64, writable: bool, executable: bool) -> Result<(), OutOfMemory> {
    let mut r = Rights::R;
    if writable {
        r |= Rights::W;
    }
    if executable {
        r |= Rights::X;
    }
    ptab::map_kernel_page(space, va, pa, r).map_err(|_| OutOfMemory)
}

/// Takes a space's memory apart before it is deleted: flushes all its mappings (and
/// everything derived from them, in every space), then frees its page tables. Deleting
/// σ0's space revokes every mapping there is (all derive from σ0) and ends the database.
///
/// The caller frees the kernel pages (UTCBs) first and the PML4 and object afterwards.
pub fn release_space(space: &Space) {
    if let Some(db) = db() {
        let id = id_of(space);
        let _ = db.flush_space(id);
        if id == db.config().sigma0 {
            let mut store = slab::Slab;
            ptab::for_each_node(space, |n| store.free(n));
            *DB.get_mut() = None;
        }
    }
    finish();
    ptab::free_user_tables(space);
}
