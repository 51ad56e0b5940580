//! Typed message items: map and grant (flexpages into the receiver's acceptor window).
//!
//! A map item establishes, in the receiver's space, mappings of the sender's pages in the
//! sent fpage, with rights no wider than the sender's own; a grant item additionally
//! removes them from the sender. The fpage and the receive window are matched as X.2
//! prescribes: the smaller of the two determines the size, and the send base selects
//! the position inside the larger.
//!
//! Pages are installed directly into the receiver's page table here; the recursive
//! derivation tree that makes Unmap revoke derived mappings belongs to the mapping
//! database (issue 5) and will be wired in at this one place.

use abi::error::IpcErrorCode;
use abi::fpage::{Fpage, Rights};
use abi::msg::{Acceptor, TypedItem, TypedItemReader};

use crate::arch::layout::USER_END;
use crate::arch::paging::{self, pte, PageSize};
use crate::ipc::set_mr;
use crate::space::Space;
use crate::thread::Tcb;

/// Transfers the typed items `words` (MR `first`..) from `src` to `dst`.
pub fn transfer_items(src: &mut Tcb, dst: &mut Tcb, words: &[u64], first: usize) -> Result<(), IpcErrorCode> {
    let acceptor = if dst.kernel_ipc { Acceptor::complete() } else { Acceptor(dst.utcb().map_or(0, |u| u.br(0).unwrap_or(0))) };
    for item in TypedItemReader::new(words) {
        let item = item.map_err(|_| IpcErrorCode::Overflow)?;
        match item.item {
            TypedItem::Map(m) | TypedItem::Grant(m) => {
                if !acceptor.accepts_maps() {
                    return Err(IpcErrorCode::Overflow);
                }
                map_fpage(src.space(), dst.space(), m.fpage, m.snd_base, acceptor.window(), m.grant)?;
            }
            TypedItem::String(_) | TypedItem::CtrlXfer(_) => return Err(IpcErrorCode::Overflow),
        }
    }
    for (i, w) in words.iter().enumerate() {
        set_mr(dst, first + i, *w);
    }
    Ok(())
}

/// Log2 size of an fpage (64 for the complete space), or None if it is nil.
fn log2(f: Fpage) -> Option<u8> {
    f.try_validate().ok().map(|v| v.log2size())
}

/// Maps (or grants) `fpage` of `from` into `window` of `to`.
fn map_fpage(from: &mut Space, to: &mut Space, fpage: Fpage, snd_base: u64, window: Fpage, grant: bool) -> Result<(), IpcErrorCode> {
    let (Some(fl), Some(wl)) = (log2(fpage), log2(window)) else {
        return Ok(()); // a nil fpage or window transfers nothing
    };
    let fbase = if fl >= 64 { 0 } else { fpage.base() };
    let wbase = if wl >= 64 { 0 } else { window.base() };
    let size_log2 = fl.min(wl).min(47);
    let size = 1u64 << size_log2;
    let (src, dst) = if fl > wl {
        // Only the window-sized part of the fpage selected by the send base travels.
        let off = snd_base & ((1u64 << fl.min(63)) - 1) & !(size - 1);
        (fbase + off, wbase)
    } else {
        let off = snd_base & ((1u64 << wl.min(63)) - 1) & !(size - 1);
        (fbase, wbase + off)
    };
    if src >= USER_END || dst >= USER_END {
        return Ok(());
    }
    let end = (src + size).min(USER_END);
    let rights = fpage.rights();
    let mut off = 0;
    while src + off < end {
        let va = src + off;
        let step = map_one(from, to, va, dst + off, rights, grant, end - va);
        off += step;
    }
    Ok(())
}

/// Maps the page at `va` of `from` to `dva` in `to`; returns how many bytes it covered.
fn map_one(from: &mut Space, to: &mut Space, va: u64, dva: u64, rights: Rights, grant: bool, left: u64) -> u64 {
    let leaf = match paging::translate(from.pml4, va) {
        Some(l) => Some((l.phys, l.flags, l.size)),
        None if from.sigma0 => crate::boot::sigma0_source(va),
        None => None,
    };
    let Some((phys, flags, size)) = leaf else {
        return 4096;
    };
    // Use a large page only where both sides are aligned and the whole page is covered.
    let big = size != PageSize::Size4K && va % (1 << 21) == 0 && dva % (1 << 21) == 0 && left >= 1 << 21;
    let (page, bytes) = if big { (PageSize::Size2M, 1u64 << 21) } else { (PageSize::Size4K, 4096) };
    let phys = phys & !(bytes - 1);
    let mut f = pte::USER | pte::NX;
    if rights.contains(Rights::W) && flags & pte::WRITE != 0 {
        f |= pte::WRITE;
    }
    if rights.contains(Rights::X) && flags & pte::NX == 0 {
        f &= !pte::NX;
    }
    if !rights.contains(Rights::R) && !rights.contains(Rights::W) && !rights.contains(Rights::X) {
        return bytes;
    }
    if paging::map(to.pml4, dva, phys, page, f).is_err() {
        return bytes;
    }
    crate::sched::flush_if_current(to, dva);
    if grant {
        paging::unmap(from.pml4, va);
        crate::sched::flush_if_current(from, va);
    }
    bytes
}
