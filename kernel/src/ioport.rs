//! I/O ports as flexpages: per-space port rights, the TSS I/O permission bitmap, and the
//! X.2 I/O page-fault protocol.
//!
//! A space's port rights are a 64 Ki-bit bitmap (two pool frames; bit clear = allowed,
//! the hardware's sense), created when it first receives an I/O fpage. σ0's space starts
//! with every port. Switching to a space without ports only moves the TSS's bitmap offset
//! past its limit (all ports denied); switching to a space with ports copies its bitmap
//! into the TSS unless it is already there. Port rights travel in map/grant items whose
//! fpage is an I/O fpage; Unmap of an I/O fpage revokes the ports from the caller's own
//! space (flush) — ports are not tracked in the mapping database.
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

/// Map/grant of an I/O fpage from `from` to `to`: the ports `from` has in the range.
pub fn map(from: &mut Space, to: &mut Space, f: IoFpage, grant: bool) -> Result<(), OutOfMemory> {
    let (first, last) = (f.port() as u32, f.last_port() as u32);
    if f.rights() == Rights::NONE || !(first..=last).any(|p| allowed(from, p)) {
        return Ok(());
    }
    ensure_bitmap(to)?;
    for p in first..=last {
        if allowed(from, p) {
            set(to, p, true);
            if grant && !core::ptr::eq(from, to) {
                set(from, p, false);
            }
        }
    }
    invalidate(to);
    invalidate(from);
    Ok(())
}

/// Unmap (flush) of an I/O fpage from the caller's own space.
pub fn unmap_own(space: &mut Space, f: IoFpage) {
    for p in f.port() as u32..=f.last_port() as u32 {
        set(space, p, false);
    }
    invalidate(space);
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

/// Frees a dying space's bitmap.
pub fn release(space: &mut Space) {
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
