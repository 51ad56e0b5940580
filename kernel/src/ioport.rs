//! I/O ports as flexpages: per-space port rights, the TSS I/O permission bitmap, and the
//! X.2 I/O page-fault protocol.
//!
//! A space's port rights are a 64 Ki-bit bitmap (two pool frames; bit clear = allowed,
//! the hardware's sense), created when it first receives an I/O fpage. σ0's space starts
//! with every port. Switching to a space without ports only moves the TSS's bitmap offset
//! past its limit (all ports denied); switching to a space with ports copies its bitmap
//! into the TSS unless it is already there. Port rights travel in map/grant items whose
//! fpage is an I/O fpage and are revoked by Unmap like memory: from every space that got
//! them from the caller, directly or further on, and with the flush bit from the caller
//! too; a dying space's ports are revoked the same way.
//!
//! Derivation is kept apart from the mapping database, which is about frames: an edge
//! table records "space `to` got ports `first..=last` from space `from`". Each (space,
//! port) has at most one incoming edge: receiving ports a space already holds first
//! flushes its old holding of them (with everything derived from it), as a new memory
//! mapping replaces an old one; a grant moves the granter's place in the tree to the
//! receiver. σ0 holds every port at boot with no incoming edge. The table has a fixed
//! size ([`EDGES`]); a map or grant that would need more fails as out of memory (the
//! IPC reports a message overflow), and an unmap that cannot split an edge for lack of
//! room revokes that whole edge (more than asked, never less).
//!
//! The `tern.x2-compat-io` boot option gives every thread IOPL 3 instead, as
//! L4Ka::Pistachio does by default (unmodified Pistachio programs drive the serial port
//! directly); it is off by default.

use abi::fpage::{IoFpage, Rights};

use crate::arch::gdt;
use crate::arch::layout::phys_to_virt;
use crate::kmem::{self, OutOfMemory};
use crate::space::Space;
use crate::util::KCell;

/// Bytes of a port bitmap (one bit per port).
pub const BITMAP_BYTES: usize = 8192;
/// Bytes of one of its two frames.
const HALF: usize = 4096;

/// Whose bitmap is in the TSS now (null: none, all ports denied).
static LOADED: KCell<*const Space> = KCell::new(core::ptr::null());

/// Whether `tern.x2-compat-io` is on.
pub fn compat_iopl() -> bool {
    crate::boot::info().cmdline().split_whitespace().any(|w| w == "tern.x2-compat-io")
}

/// The two halves of a space's bitmap, if it has one.
fn halves(space: &Space) -> Option<[&'static mut [u8; HALF]; 2]> {
    if space.io_bitmap[0] == 0 {
        return None;
    }
    // SAFETY: both frames are pool frames owned by the space's bitmap (allocated in
    // `ensure_bitmap`, freed in `release`), reached through the direct map.
    Some(space.io_bitmap.map(|f| unsafe { &mut *(phys_to_virt(f) as *mut [u8; HALF]) }))
}

fn byte(space: &Space, port: u32) -> Option<&'static mut u8> {
    let [lo, hi] = halves(space)?;
    let i = (port / 8) as usize;
    Some(if i < HALF { &mut lo[i] } else { &mut hi[i - HALF] })
}

/// Gives the space a bitmap with every port denied, if it has none.
fn ensure_bitmap(space: &mut Space) -> Result<(), OutOfMemory> {
    if space.io_bitmap[0] != 0 {
        return Ok(());
    }
    let lo = kmem::alloc_frame()?;
    let hi = match kmem::alloc_frame() {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: `lo` was just allocated and is unused.
            unsafe { kmem::free_frame(lo) };
            return Err(e);
        }
    };
    space.io_bitmap = [lo, hi];
    for h in halves(space).expect("just created") {
        h.fill(0xFF);
    }
    space.update_slow_flags();
    Ok(())
}

/// Gives σ0's space every port.
pub fn give_all(space: &mut Space) -> Result<(), OutOfMemory> {
    ensure_bitmap(space)?;
    for h in halves(space).expect("present") {
        h.fill(0);
    }
    Ok(())
}

/// Whether `space` may use `port`.
fn allowed(space: &Space, port: u32) -> bool {
    byte(space, port).is_some_and(|b| *b & (1 << (port % 8)) == 0)
}

fn set(space: &Space, port: u32, allow: bool) {
    if let Some(b) = byte(space, port) {
        if allow {
            *b &= !(1 << (port % 8));
        } else {
            *b |= 1 << (port % 8);
        }
    }
}

/// Most derivation edges (24 bytes each, in the kernel image).
pub const EDGES: usize = 1024;

/// "Space `to` got ports `first..=last` from space `from`"; `from` null: a free slot.
#[derive(Clone, Copy)]
struct Edge {
    from: *const Space,
    to: *const Space,
    first: u16,
    last: u16,
    /// Revocation marks (see [`revoke_derived`]).
    mark: u8,
}

const FREE: Edge = Edge { from: core::ptr::null(), to: core::ptr::null(), first: 0, last: 0, mark: 0 };
const DOOMED: u8 = 1;
const EXPANDED: u8 = 2;

static TABLE: KCell<[Edge; EDGES]> = KCell::new([FREE; EDGES]);

fn table() -> &'static mut [Edge; EDGES] {
    TABLE.get_mut()
}

fn free_slots() -> usize {
    table().iter().filter(|e| e.from.is_null()).count()
}

fn add_edge(from: *const Space, to: *const Space, first: u16, last: u16) -> Result<usize, OutOfMemory> {
    let i = table().iter().position(|e| e.from.is_null()).ok_or(OutOfMemory)?;
    table()[i] = Edge { from, to, first, last, mark: 0 };
    Ok(i)
}

/// Makes `a..=b` (which overlaps edge `i`) an edge of its own: the parts of edge `i`
/// outside it become separate edges. Returns the index of the overlap's edge.
fn isolate(i: usize, a: u16, b: u16) -> Result<usize, OutOfMemory> {
    let e = table()[i];
    let (lo, hi) = (e.first.max(a), e.last.min(b));
    let needed = usize::from(e.first < lo) + usize::from(hi < e.last);
    if needed > free_slots() {
        return Err(OutOfMemory);
    }
    if e.first < lo {
        add_edge(e.from, e.to, e.first, lo - 1)?;
    }
    if hi < e.last {
        add_edge(e.from, e.to, hi + 1, e.last)?;
    }
    table()[i].first = lo;
    table()[i].last = hi;
    Ok(i)
}

fn overlaps(e: &Edge, a: u16, b: u16) -> bool {
    !e.from.is_null() && e.first <= b && a <= e.last
}

fn set_range(space: &Space, a: u16, b: u16, allow: bool) {
    for p in a as u32..=b as u32 {
        set(space, p, allow);
    }
}

/// Revokes ports `a..=b` from every space that got them from `root`, directly or
/// further on (not from `root` itself), and forgets those edges.
fn revoke_derived(root: *const Space, a: u16, b: u16) {
    for i in 0..EDGES {
        let e = table()[i];
        if e.from == root && overlaps(&e, a, b) {
            let j = isolate(i, a, b).unwrap_or(i);
            table()[j].mark = DOOMED;
        }
    }
    // Follow the tree down (no recursion: the chain may be long), one level per pass.
    loop {
        let mut grew = false;
        for i in 0..EDGES {
            let d = table()[i];
            if d.from.is_null() || d.mark != DOOMED {
                continue;
            }
            table()[i].mark = EXPANDED;
            grew = true;
            for k in 0..EDGES {
                let f = table()[k];
                if f.mark == 0 && f.from == d.to && overlaps(&f, d.first, d.last) {
                    let j = isolate(k, d.first, d.last).unwrap_or(k);
                    table()[j].mark = DOOMED;
                }
            }
        }
        if !grew {
            break;
        }
    }
    for e in table().iter_mut().filter(|e| !e.from.is_null() && e.mark != 0) {
        // SAFETY: an edge names live spaces only (`release` removes a dying space's).
        let to = unsafe { &*e.to };
        set_range(to, e.first, e.last, false);
        invalidate(to);
        *e = FREE;
    }
}

/// Takes ports `a..=b` from `space` itself, with everything derived from them.
fn flush(space: &Space, a: u16, b: u16) {
    revoke_derived(space, a, b);
    set_range(space, a, b, false);
    invalidate(space);
    let me = space as *const Space;
    for i in 0..EDGES {
        let e = table()[i];
        if e.to == me && overlaps(&e, a, b) {
            match isolate(i, a, b) {
                Ok(j) => table()[j] = FREE,
                // No room to keep the part outside `a..=b`: keep the whole edge (it then
                // also names ports `space` no longer has, which a later revocation clears
                // again, harmlessly).
                Err(OutOfMemory) => {}
            }
        }
    }
}

/// Map/grant of an I/O fpage from `from` to `to`: the ports `from` has in the range,
/// run by run.
pub fn map(from: &mut Space, to: &mut Space, f: IoFpage, grant: bool) -> Result<(), OutOfMemory> {
    if f.rights() == Rights::NONE || core::ptr::eq(from, to) {
        return Ok(());
    }
    let (first, last) = (f.port() as u32, f.last_port() as u32);
    let mut p = first;
    while p <= last {
        if !allowed(from, p) {
            p += 1;
            continue;
        }
        let mut q = p;
        while q < last && allowed(from, q + 1) {
            q += 1;
        }
        map_run(from, to, p as u16, q as u16, grant)?;
        p = q + 1;
    }
    Ok(())
}

/// Map/grant of ports `a..=b`, all of which `from` holds.
fn map_run(from: &mut Space, to: &mut Space, a: u16, b: u16, grant: bool) -> Result<(), OutOfMemory> {
    // Room for the worst case: every edge touching the run split twice, plus one.
    let touching = table().iter().filter(|e| overlaps(e, a, b) && (e.to == from as *const Space || e.from == from as *const Space)).count();
    if free_slots() < 2 * touching + 3 {
        return Err(OutOfMemory);
    }
    ensure_bitmap(to)?;
    // What `to` held of these ports goes first, with everything derived from it (which
    // may include `from`: then it has nothing left to give).
    flush(to, a, b);
    if !(a as u32..=b as u32).all(|p| allowed(from, p)) {
        return Ok(());
    }
    let (fp, tp) = (from as *const Space, to as *const Space);
    if grant {
        // The receiver takes the granter's place: its source and its derivations.
        for i in 0..EDGES {
            let e = table()[i];
            if overlaps(&e, a, b) && (e.to == fp || e.from == fp) {
                let j = isolate(i, a, b)?;
                if table()[j].to == fp {
                    table()[j].to = tp;
                } else {
                    table()[j].from = tp;
                }
            }
        }
        set_range(from, a, b, false);
    } else {
        add_edge(fp, tp, a, b)?;
    }
    set_range(to, a, b, true);
    invalidate(to);
    invalidate(from);
    Ok(())
}

/// Unmap of an I/O fpage by `space`: revokes its ports in the range from every space
/// that got them from it, and with `flush` from `space` itself too.
pub fn unmap(space: &mut Space, f: IoFpage, flush_own: bool) {
    let (a, b) = (f.port(), f.last_port());
    if flush_own {
        flush(space, a, b);
    } else {
        revoke_derived(space, a, b);
    }
}

/// Visits every derivation edge: `(from, to, first, last)` (for the invariant checker).
pub fn for_each_edge(mut f: impl FnMut(*const Space, *const Space, u16, u16)) {
    for e in table().iter().filter(|e| !e.from.is_null()) {
        f(e.from, e.to, e.first, e.last);
    }
}

/// Makes the next `activate` reload the TSS bitmap if it shows `space`'s.
fn invalidate(space: &Space) {
    if *LOADED.get() == space as *const Space {
        *LOADED.get_mut() = core::ptr::null();
        gdt::set_io_bitmap(None);
    }
}

/// Called on every full switch: makes the TSS bitmap match `space`.
#[inline]
pub fn activate(space: &Space) {
    let want = if space.io_bitmap[0] != 0 { space as *const Space } else { core::ptr::null() };
    if *LOADED.get() == want {
        return;
    }
    *LOADED.get_mut() = want;
    match halves(space) {
        None => gdt::set_io_bitmap(None),
        Some([lo, hi]) => gdt::set_io_bitmap(Some((lo, hi))),
    }
}

/// Frees a dying space's bitmap, after revoking what others got from it and forgetting
/// where it got its own.
pub fn release(space: &mut Space) {
    if space.io_bitmap[0] != 0 {
        revoke_derived(space, 0, u16::MAX);
    }
    let me = space as *const Space;
    for e in table().iter_mut().filter(|e| e.to == me || e.from == me) {
        *e = FREE;
    }
    if space.io_bitmap[0] != 0 {
        invalidate(space);
        for f in space.io_bitmap {
            // SAFETY: the frames belonged to the dying space's bitmap only.
            unsafe { kmem::free_frame(f) };
        }
        space.io_bitmap = [0, 0];
    }
}

/// Decodes the port instruction at `rip` (in the current space) for the I/O page-fault
/// protocol: returns (port, log2 size) for `in`/`out`/`ins`/`outs`.
pub fn decode(rip: u64, rdx: u64) -> Option<(u16, u8)> {
    let mut code = [0u8; 8];
    if !crate::kdb::read_user(rip, &mut code) {
        return None;
    }
    let mut i = 0;
    let mut opsize16 = false;
    while i < code.len() {
        match code[i] {
            0x66 => opsize16 = true,
            0xF2 | 0xF3 | 0x40..=0x4F => {}
            _ => break,
        }
        i += 1;
    }
    let op = *code.get(i)?;
    let wide = if opsize16 { 1 } else { 2 };
    match op {
        0xE4 | 0xE6 => Some((*code.get(i + 1)? as u16, 0)),
        0xE5 | 0xE7 => Some((*code.get(i + 1)? as u16, wide)),
        0xEC | 0xEE | 0x6C | 0x6E => Some((rdx as u16, 0)),
        0xED | 0xEF | 0x6D | 0x6F => Some((rdx as u16, wide)),
        _ => None,
    }
}
