//! Typed message items: map and grant (flexpages into the receiver's acceptor window).
//!
//! A map item establishes, in the receiver's space, mappings of the sender's pages in the
//! sent fpage, with rights no wider than the sender's own; a grant item additionally
//! removes them from the sender. The fpage and the receive window are matched as X.2
//! prescribes: the smaller of the two determines the size, and the send base selects
//! the position inside the larger:
//!
//! ```text
//!   fpage 2^f ≥ window 2^w:  src = fpage.base + (snd_base mod 2^f) rounded down to 2^w
//!                            dst = window.base                       size 2^w
//!   fpage 2^f < window 2^w:  src = fpage.base                         size 2^f
//!                            dst = window.base + (snd_base mod 2^w) rounded down to 2^f
//! ```
//!
//! What follows — clipping to the user area, keeping the receiver's KIP and UTCB areas
//! out, the derivation tree and the page tables — is `mapping::transfer`'s business.
//! Items carrying I/O fpages (x86 port ranges) are taken by `ipc` to `ioport` before
//! they reach this module; should one arrive here, it transfers nothing.

use abi::error::IpcErrorCode;
use abi::fpage::Fpage;
use abi::msg::{Acceptor, MapItem, TypedItem, TypedItemReader};
use mapdb::SpaceId;

use crate::ipc::set_mr;
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
                let (from, to) = (crate::mapping::id_of(src.space()), crate::mapping::id_of(dst.space()));
                map_item(from, to, m, acceptor.window());
            }
            TypedItem::String(_) | TypedItem::CtrlXfer(_) => return Err(IpcErrorCode::Overflow),
        }
    }
    for (i, w) in words.iter().enumerate() {
        set_mr(dst, first + i, *w);
    }
    Ok(())
}

/// Where a map item goes: source base, log2 size, destination base.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Placement {
    src: u64,
    log2: u8,
    dst: u64,
}

/// `x mod 2^l` (for `l` up to 64).
const fn low_bits(x: u64, l: u8) -> u64 {
    if l >= 64 {
        x
    } else {
        x & ((1u64 << l) - 1)
    }
}

/// X.2's matching of a sent fpage against a receive window (module docs). `None` if
/// either is nil or not a memory fpage.
fn place(fpage: Fpage, snd_base: u64, window: Fpage) -> Option<Placement> {
    let f = fpage.try_validate().ok()?;
    let w = window.try_validate().ok()?;
    let (fl, wl) = (f.log2size(), w.log2size());
    let (fbase, wbase) = (f.base(), w.base());
    Some(if fl >= wl {
        let off = low_bits(snd_base, fl) & !low_bits(u64::MAX, wl);
        Placement { src: fbase + off, log2: wl, dst: wbase }
    } else {
        let off = low_bits(snd_base, wl) & !low_bits(u64::MAX, fl);
        Placement { src: fbase, log2: fl, dst: wbase + off }
    })
}

/// Maps (or grants) the item's fpage of space `from` into `window` of space `to`.
fn map_item(from: SpaceId, to: SpaceId, item: MapItem, window: Fpage) {
    if let Some(p) = place(item.fpage, item.snd_base, window) {
        crate::mapping::transfer(from, to, p.src, p.log2, p.dst, item.fpage.rights(), item.grant);
    }
}
