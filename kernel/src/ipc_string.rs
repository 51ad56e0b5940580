//! String items: copying bytes from the sender's memory into the receiver's buffers.
//!
//! The sender's string items (MRs) name substrings in its space; the receiver's buffer
//! registers (BR1.., after the acceptor in BR0) name where they may land. Strings are
//! matched in order; a compound string (flag c) continues in the next item on either
//! side. The bytes travel page by page through the kernel's direct map, so neither space
//! has to be current.
//!
//! A page missing in the *current* thread's space is requested from its pager with a
//! page-fault IPC (the thread's own IPC state is kept aside meanwhile), bounded by its
//! transfer timeout. A page missing in the *partner's* space is resolved by the partner
//! itself: the copying thread asks it for help and waits (state XferWait); the partner,
//! blocked in its IPC, runs just long enough to send its own page-fault IPC to its own
//! pager (bounded by its transfer timeout), wakes the copier and goes back to waiting.
//! If the page is still missing, the IPC fails with a transfer timeout in that space.

use abi::error::IpcErrorCode;
use abi::msg::{StringItemHeader, TypedItem, TypedItemReader};

use crate::arch::layout::{phys_to_virt, USER_END};
use crate::arch::paging::{self, pte};
use crate::sched;
use crate::thread::{State, Tcb};

/// Most substrings gathered for one (compound) string on either side. (Kernel stacks
/// are 8 KiB: these lists live on the stack only while strings are copied.)
const MAX_PIECES: usize = 16;
/// Most receive-buffer strings looked at.
const MAX_BUFFERS: usize = 4;

/// One contiguous range of user memory.
#[derive(Clone, Copy, Default)]
struct Piece {
    addr: u64,
    len: u64,
}

/// A string as a list of pieces.
struct Gathered {
    pieces: [Piece; MAX_PIECES],
    n: usize,
}

impl Gathered {
    fn new() -> Self {
        Self { pieces: [Piece::default(); MAX_PIECES], n: 0 }
    }

    fn add(&mut self, h: &StringItemHeader, ptrs: &[u64]) -> Result<(), IpcErrorCode> {
        for &p in ptrs.iter().take(h.substrings as usize) {
            if self.n == MAX_PIECES {
                return Err(IpcErrorCode::Overflow);
            }
            self.pieces[self.n] = Piece { addr: p, len: h.length };
            self.n += 1;
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.pieces[..self.n].iter().map(|p| p.len).sum()
    }
}

/// Where a transfer of string `index` stopped.
pub struct Failed {
    pub code: IpcErrorCode,
    pub offset: u64,
}

/// Reads the receiver's buffer strings (BR1..BR32) into a list of strings.
fn receive_buffers(dst: &mut Tcb, out: &mut [Gathered]) -> usize {
    let Some(u) = dst.utcb() else { return 0 };
    let mut words = [0u64; 32];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u.br(i + 1).unwrap_or(0);
    }
    let mut count = 0;
    let mut current = Gathered::new();
    let mut open = false;
    for item in TypedItemReader::new(&words) {
        let Ok(item) = item else { break };
        let TypedItem::String(h) = item.item else { break };
        if current.add(&h, item.substrings()).is_err() {
            break;
        }
        open = true;
        if !h.compound {
            if count == out.len() {
                break;
            }
            out[count] = core::mem::replace(&mut current, Gathered::new());
            count += 1;
            open = false;
        }
        if !h.more && !h.compound {
            break;
        }
    }
    if open && count < out.len() {
        out[count] = current;
        count += 1;
    }
    count
}

/// Translates `va` in `t`'s space for the access, asking the pager if `t` is the
/// current thread. Returns the physical address.
fn page_of(t: &mut Tcb, va: u64, write: bool, current: bool, side: IpcErrorCode) -> Result<u64, IpcErrorCode> {
    if va >= USER_END {
        return Err(side);
    }
    for _ in 0..2 {
        if let Some(leaf) = paging::translate(t.space().pml4, va) {
            let ok = leaf.flags & pte::USER != 0 && (!write || leaf.flags & pte::WRITE != 0);
            if ok {
                return Ok(leaf.phys);
            }
        }
        if !current || !fault_in(t, va, write) {
            return Err(side);
        }
    }
    Err(side)
}

/// A page-fault IPC for the current thread in the middle of its own IPC, bounded by its
/// transfer timeout (XferTimeouts: the send part while it sends, the receive part while
/// it receives).
fn fault_in(t: &mut Tcb, va: u64, write: bool) -> bool {
    let xfer = abi::time::Timeouts(t.utcb().map_or(0, |u| u.xfer_timeouts));
    let timeout = if write { xfer.receive() } else { xfer.send() };
    // Keep the IPC state of the interrupted operation aside.
    let saved = (t.partner, t.then_receive, t.then_timeout, t.intended, t.kmsg, t.state);
    let ok = crate::trap::resolve_user_fault_within(t, va, if write { 2 } else { 0 }, timeout);
    t.partner = saved.0;
    t.then_receive = saved.1;
    t.then_timeout = saved.2;
    t.intended = saved.3;
    t.kmsg = saved.4;
    t.state = saved.5;
    if t.state != State::Ready {
        sched::dequeue(t);
    }
    ok
}

/// Asks the blocked `partner` to resolve a page fault at `va` in its own space (through
/// its own pager, bounded by its transfer timeout), waiting until it has. Returns whether
/// the page is now there to be used.
fn partner_fault(me: &mut Tcb, partner: &mut Tcb, va: u64, write: bool) -> bool {
    if partner.kernel_ipc || partner.state != State::Locked || partner.help_pending {
        return false;
    }
    partner.help_pending = true;
    partner.help_addr = va;
    partner.help_write = write;
    partner.help_for = me;
    partner.help_saved_state = State::Locked;
    if partner.xfer_saved_fast == crate::thread::FAST_WAIT_BLOCKED_FAST {
        // Blocked by the fast path: give it a kernel continuation to help from (it keeps
        // it once the transfer ends).
        crate::thread::prepare_help_entry(partner);
        partner.xfer_saved_fast = 0;
    }
    partner.state = State::Ready;
    sched::enqueue(partner);
    me.help_result = false;
    sched::block(me, State::XferWait);
    me.help_result
}

/// Runs in a blocked thread that a partner asked for help: resolves the fault, wakes the
/// partner, and goes back to waiting in its IPC.
pub fn help(t: &mut Tcb) {
    t.help_pending = false;
    let ok = !t.xfer_peer.is_null() && fault_in(t, t.help_addr, t.help_write);
    let asker = t.help_for;
    t.help_for = core::ptr::null_mut();
    if !asker.is_null() {
        // SAFETY: the asking thread waits in XferWait for this answer; were it deleted,
        // `ipc::release_partners` would have cleared `help_for`.
        let a = unsafe { &mut *asker };
        if a.state == State::XferWait {
            a.help_result = ok;
            sched::wake(a);
        }
    }
    if t.xfer_peer.is_null() {
        // The copier was deleted meanwhile: this thread's IPC ends here.
        t.xfer_error = 0;
        crate::ipc::fail(t, IpcErrorCode::NotExist, crate::ipc::xfer_phase(t));
        return;
    }
    let state = t.help_saved_state;
    sched::block(t, state);
}

/// First code of a fast-blocked thread asked for help (see `thread::prepare_help_entry`).
pub extern "C" fn help_entry() {
    let Some(t) = sched::current() else { return };
    while t.help_pending {
        help(t);
    }
}

/// Whether the transfer `me` copies was broken from outside (see `ipc::abort` and
/// `ipc::release_partners`), and the error to end it with.
fn broken(me: &Tcb) -> Option<IpcErrorCode> {
    if me.xfer_peer.is_null() {
        return Some(IpcErrorCode::NotExist);
    }
    IpcErrorCode::try_from(me.xfer_error).ok()
}

/// Makes the page at `va` present for the copy: in the source's space (`of_src`, read)
/// or the destination's (write), faulting it in through the current thread's pager or
/// through the partner's help. Returns its physical address and whether this blocked.
/// Every step that may block is followed by a look at whether the transfer was broken
/// meanwhile; then the partner may be gone and is not touched again.
fn present(src: &mut Tcb, dst: &mut Tcb, src_is_current: bool, of_src: bool, va: u64, offset: u64) -> Result<(u64, bool), Failed> {
    let write = !of_src;
    let mine = of_src == src_is_current;
    let side = if mine { IpcErrorCode::XferTimeoutCurrent } else { IpcErrorCode::XferTimeoutPartner };
    let (me, other) = if src_is_current { (src, dst) } else { (dst, src) };
    let owner = if mine { &mut *me } else { &mut *other };
    if let Ok(p) = page_of(owner, va, write, false, side) {
        return Ok((p, false));
    }
    let result = if mine {
        page_of(me, va, write, true, side)
    } else if partner_fault(me, other, va, write) && broken(me).is_none() {
        page_of(other, va, write, false, side)
    } else {
        Err(side)
    };
    if let Some(code) = broken(me) {
        return Err(Failed { code, offset });
    }
    result.map(|p| (p, true)).map_err(|code| Failed { code, offset })
}

/// Copies `src`'s string (its pieces) into `dst`'s buffer; returns the bytes copied.
fn copy(src: &mut Tcb, from: &Gathered, dst: &mut Tcb, to: &Gathered, src_is_current: bool) -> Result<u64, Failed> {
    if from.total() > to.total() {
        return Err(Failed { code: IpcErrorCode::Overflow, offset: 0 });
    }
    let (mut si, mut so) = (0usize, 0u64);
    let (mut di, mut d_off) = (0usize, 0u64);
    let mut done = 0u64;
    let side = |mine: bool| if mine { IpcErrorCode::XferTimeoutCurrent } else { IpcErrorCode::XferTimeoutPartner };
    while si < from.n {
        let s = from.pieces[si];
        if so == s.len {
            si += 1;
            so = 0;
            continue;
        }
        let d = to.pieces[di];
        if d_off == d.len {
            di += 1;
            d_off = 0;
            continue;
        }
        let sva = s.addr.wrapping_add(so);
        let dva = d.addr.wrapping_add(d_off);
        let n = (s.len - so).min(d.len - d_off).min(4096 - (sva & 0xFFF)).min(4096 - (dva & 0xFFF));
        // Make both pages present (either step may block). If the destination's step
        // blocked, the source page found before may have gone meanwhile: look it up
        // again without faulting (if it went, this step starts over).
        let (sp, _) = present(src, dst, src_is_current, true, sva, done)?;
        let (dp, blocked) = present(src, dst, src_is_current, false, dva, done)?;
        let sp = if blocked {
            match page_of(src, sva, false, false, side(src_is_current)) {
                Ok(p) => p,
                Err(_) => continue,
            }
        } else {
            sp
        };
        // SAFETY: both physical ranges lie within one present user page each (checked
        // by `page_of`), reached through the direct map; they may overlap only if both
        // spaces map the same frame, which `copy` (memmove) tolerates.
        unsafe { core::ptr::copy(phys_to_virt(sp) as *const u8, phys_to_virt(dp) as *mut u8, n as usize) };
        so += n;
        d_off += n;
        done += n;
    }
    Ok(done)
}

/// Transfers the string items among `words` (the sender's typed words, at MR `first`)
/// into `dst`'s buffers, and writes the received-string items into `dst`'s MRs.
#[inline(never)]
pub fn transfer_strings(src: &mut Tcb, dst: &mut Tcb, words: &[u64], first: usize) -> Result<(), Failed> {
    let current = crate::sched::current().map(|c| c as *mut Tcb);
    let src_is_current = current == Some(src as *mut Tcb);
    let mut buffers: [Gathered; MAX_BUFFERS] = core::array::from_fn(|_| Gathered::new());
    let nbuf = receive_buffers(dst, &mut buffers);
    let mut next_buffer = 0;
    let mut string = Gathered::new();
    let mut string_start = 0usize;
    let mut pos = 0usize;
    for item in TypedItemReader::new(words) {
        let Ok(item) = item else { return Err(Failed { code: IpcErrorCode::Overflow, offset: 0 }) };
        let len = item.consumed();
        if let TypedItem::String(h) = item.item {
            if string.n == 0 {
                string_start = pos;
            }
            string.add(&h, item.substrings()).map_err(|code| Failed { code, offset: 0 })?;
            if !h.compound {
                if next_buffer == nbuf {
                    return Err(Failed { code: IpcErrorCode::Overflow, offset: 0 });
                }
                let copied = copy(src, &string, dst, &buffers[next_buffer], src_is_current)?;
                // The receiver's MRs describe what arrived: one simple string item with
                // the length received and the first buffer address.
                let buf = buffers[next_buffer].pieces[0].addr;
                let mut head = StringItemHeader::simple(copied);
                head.more = h.more;
                crate::ipc::set_mr(dst, first + string_start, head.encode());
                crate::ipc::set_mr(dst, first + string_start + 1, buf);
                next_buffer += 1;
                string = Gathered::new();
            }
        }
        pos += len;
    }
    Ok(())
}
