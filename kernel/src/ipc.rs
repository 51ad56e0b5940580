//! Inter-process communication: X.2 Ipc (and Lipc, the same call on amd64).
//!
//! An Ipc is an optional send phase followed by an optional receive phase. A thread that
//! must wait blocks *inside* this module on its own kernel stack; whoever completes its
//! IPC — the partner, the timeout, an ExchangeRegisters abort, a deletion — writes the
//! result straight into the blocked thread's saved registers (or its kernel message
//! buffer) and makes it runnable. When it runs again it simply returns to user mode.
//!
//! Message registers: MR0..MR7 travel in the AMD64 binding's registers (R9, RAX, RBX,
//! R10, R12–R15), which are the thread's saved frame while it is in the kernel; MR8..
//! live in the UTCB. Kernel-generated IPC (thread start, page faults, exceptions) uses the
//! thread's `kmsg` buffer instead, so user registers are never disturbed.
//!
//! # Invariants
//! - A thread is on exactly one send queue iff its state is `Sending` (the queue of
//!   `partner`).
//! - A thread in state `Sending`/`Receiving` is not on a ready queue.

use abi::error::{IpcError, IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::{Deadline, Time, Timeouts};

use crate::arch::apic;
use crate::sched;
use crate::thread::{self, State, Tcb};
use crate::timeout;

/// Number of message registers.
pub const MRS: usize = 64;

/// Reads message register `i` of `t`.
#[inline]
pub fn mr(t: &mut Tcb, i: usize) -> u64 {
    if t.kernel_ipc {
        return t.kmsg.get(i).copied().unwrap_or(0);
    }
    let f = t.frame();
    match i {
        0 => f.r9,
        1 => f.rax,
        2 => f.rbx,
        3 => f.r10,
        4 => f.r12,
        5 => f.r13,
        6 => f.r14,
        7 => f.r15,
        _ => t.utcb().map_or(0, |u| u.mr[i]),
    }
}

/// Writes message register `i` of `t`.
#[inline]
pub fn set_mr(t: &mut Tcb, i: usize, v: u64) {
    if t.kernel_ipc {
        if let Some(slot) = t.kmsg.get_mut(i) {
            *slot = v;
        }
        return;
    }
    let f = t.frame();
    match i {
        0 => f.r9 = v,
        1 => f.rax = v,
        2 => f.rbx = v,
        3 => f.r10 = v,
        4 => f.r12 = v,
        5 => f.r13 = v,
        6 => f.r14 = v,
        7 => f.r15 = v,
        _ => {
            if let Some(u) = t.utcb() {
                u.mr[i] = v;
            }
        }
    }
}

/// How `t` names `other` in a result: the local id within one space, else the global id.
fn id_as_seen_by(t: &Tcb, other: &Tcb) -> ThreadId {
    if t.space == other.space && other.utcb_user != 0 {
        other.local_id()
    } else {
        other.id
    }
}

/// Resolves a thread id given by `caller` (global, or local within its space).
pub fn resolve(caller: &Tcb, id: ThreadId) -> Option<&'static mut Tcb> {
    if id.is_global() {
        return thread::lookup(id);
    }
    if !id.is_local() {
        return None;
    }
    let space = caller.space();
    let utcb = id.raw().wrapping_sub(abi::utcb::UTCB_MR0_OFFSET as u64);
    if !space.in_utcb_area(utcb, abi::utcb::UTCB_SIZE as u64) || utcb % abi::utcb::UTCB_SIZE as u64 != 0 {
        return None;
    }
    let leaf = crate::arch::paging::translate(space.pml4, utcb)?;
    // SAFETY: the UTCB page is a kernel pool frame mapped by the direct map; reading the
    // MyGlobalId word, which the kernel wrote (a user overwrite only names another
    // thread, which is then checked like any global id).
    let global = unsafe { *((crate::arch::layout::phys_to_virt(leaf.phys) + 0x188) as *const u64) };
    let t = thread::lookup(ThreadId(global))?;
    (t.space == caller.space && t.utcb_user == utcb).then_some(t)
}

/// Whether a receiver waiting with specifier `spec` accepts a message from `sender`.
fn accepts(receiver: &Tcb, spec: ThreadId, sender: &Tcb) -> bool {
    spec.is_any() || (spec.is_any_local() && sender.space == receiver.space) || spec == sender.id
}

/// Completes `t`'s IPC with an error and makes it runnable.
pub fn fail(t: &mut Tcb, code: IpcErrorCode, phase: Phase) {
    fail_at(t, code, phase, 0);
}

/// As [`fail`], with the number of bytes transferred before the error (codes ≥ 4).
pub fn fail_at(t: &mut Tcb, code: IpcErrorCode, phase: Phase, offset: u64) {
    timeout::remove(t);
    let mut e = IpcError::new(code, phase);
    if code.has_offset() {
        e.offset = offset.min(abi::error::IPC_MAX_OFFSET);
    }
    let err = e.encode();
    if t.kernel_ipc {
        t.kmsg_error = err;
    } else {
        if let Some(u) = t.utcb() {
            u.error_code = err;
        }
        let local = t.local_id().raw();
        let f = t.frame();
        f.r9 = MsgTag(0).with_error(true).raw();
        f.rsi = ThreadId::NIL.raw();
        f.rdi = local;
    }
    t.then_receive = ThreadId::NIL;
    sched::wake(t);
}

/// Completes `t`'s receive of a message from `from` and makes it runnable.
fn succeed(t: &mut Tcb, from: ThreadId) {
    timeout::remove(t);
    if t.kernel_ipc {
        t.kmsg_from = from;
        t.kmsg_error = 0;
    } else {
        let local = t.local_id().raw();
        let f = t.frame();
        f.rsi = from.raw();
        f.rdi = local;
    }
    sched::wake(t);
}

/// Why a message transfer failed: the error as the copying (current) thread sees it,
/// the bytes moved before it, and whether the other party was deleted meanwhile (then
/// nothing may touch it any more).
struct Failure {
    code: IpcErrorCode,
    offset: u64,
    gone: bool,
}

impl From<IpcErrorCode> for Failure {
    fn from(code: IpcErrorCode) -> Self {
        Self { code, offset: 0, gone: false }
    }
}

/// Copies the message of `src` to `dst`. `flags` are the tag flags the receiver gets
/// (p and r; x and e are always clear on delivery).
fn transfer(src: &mut Tcb, dst: &mut Tcb, flags: u8) -> Result<(), Failure> {
    let tag = MsgTag(mr(src, 0));
    let (u, t) = (tag.untyped() as usize, tag.typed() as usize);
    if u + t >= MRS {
        return Err(IpcErrorCode::Overflow.into());
    }
    copy_register_words(src, dst, u.min(7));
    if u >= 8 {
        copy_utcb_words(src, dst, 8, u);
    }
    if t > 0 {
        let mut words = [0u64; MRS];
        for i in 0..t {
            words[i] = mr(src, u + 1 + i);
        }
        transfer_typed(src, dst, &words[..t], u + 1)?;
    }
    set_mr(dst, 0, tag.with_flags(flags).raw());
    Ok(())
}

/// Copies MR1..=MR`n` (`n` ≤ 7, the words that travel in registers) from `src` to `dst`:
/// frame to frame for user IPC, word by word when either side uses its kernel buffer.
/// Registers above MR`n` are left as they are.
#[inline(always)]
fn copy_register_words(src: &mut Tcb, dst: &mut Tcb, n: usize) {
    if src.kernel_ipc || dst.kernel_ipc {
        for i in 1..=n {
            let v = mr(src, i);
            set_mr(dst, i, v);
        }
        return;
    }
    let s = src.frame();
    let d = dst.frame();
    if n >= 7 {
        (d.rax, d.rbx, d.r10, d.r12, d.r13, d.r14, d.r15) = (s.rax, s.rbx, s.r10, s.r12, s.r13, s.r14, s.r15);
        return;
    }
    let words = [s.rax, s.rbx, s.r10, s.r12, s.r13, s.r14];
    let slots = [&mut d.rax, &mut d.rbx, &mut d.r10, &mut d.r12, &mut d.r13, &mut d.r14];
    for (slot, v) in slots.into_iter().zip(words).take(n) {
        *slot = v;
    }
}

/// Copies MR`first`..=MR`last` (all in UTCBs, or kernel buffers) from `src` to `dst`.
fn copy_utcb_words(src: &mut Tcb, dst: &mut Tcb, first: usize, last: usize) {
    if src.kernel_ipc || dst.kernel_ipc || src.utcb_kernel == 0 || dst.utcb_kernel == 0 {
        for i in first..=last {
            let v = mr(src, i);
            set_mr(dst, i, v);
        }
        return;
    }
    // SAFETY: both UTCBs are live kernel-mapped UTCB pages of two different threads
    // (a thread never sends to itself through a waiting receive), so the slices do not
    // overlap; indices are below MRS (checked by the caller: u + t < 64).
    unsafe {
        let s = (src.utcb_kernel as *const abi::utcb::Utcb).cast::<u8>().add(core::mem::offset_of!(abi::utcb::Utcb, mr)) as *const u64;
        let d = (dst.utcb_kernel as *mut abi::utcb::Utcb).cast::<u8>().add(core::mem::offset_of!(abi::utcb::Utcb, mr)) as *mut u64;
        let n = last + 1 - first;
        if n <= 8 {
            // A few words: copied inline (a call of `memcpy` costs more than the copy).
            for i in first..=last {
                d.add(i).write_volatile(s.add(i).read_volatile());
            }
        } else {
            core::ptr::copy_nonoverlapping(s.add(first), d.add(first), n);
        }
    }
}

/// Typed items: map and grant items go to `ipc_items`, string items to `ipc_string`,
/// each at its own position in the message.
#[inline(never)]
fn transfer_typed(src: &mut Tcb, dst: &mut Tcb, words: &[u64], first: usize) -> Result<(), Failure> {
    let has_strings = transfer_typed_inner(src, dst, words, first)?;
    if has_strings {
        // A kernel-generated IPC (a page-fault or exception reply, the start message)
        // has no buffers, and its receiver may be in a transfer of its own: no strings.
        let accepts = !dst.kernel_ipc && !src.kernel_ipc && dst.utcb().is_some_and(|u| abi::msg::Acceptor(u.br(0).unwrap_or(0)).strings());
        if !accepts {
            return Err(IpcErrorCode::Overflow.into());
        }
        transfer_strings_locked(src, dst, words, first)?;
    }
    Ok(())
}

/// String copies may block the copying (current) thread in page faults, on its own side
/// or, through `ipc_string`'s help protocol, on the other. Meanwhile the other party is
/// `Locked`: off every queue, its IPC timeouts no longer run (X.2: the transfer timeouts
/// bound a transfer in progress), no other sender can reach it. From outside, a
/// transfer can only be broken: an ExchangeRegisters abort of either side's phase
/// (`abort`: both get "aborted") or the deletion of either party (`release_partners`).
/// The copier looks for that after every step that may block.
#[inline(never)]
fn transfer_strings_locked(src: &mut Tcb, dst: &mut Tcb, words: &[u64], first: usize) -> Result<(), Failure> {
    let src_is_current = sched::current().is_some_and(|c| core::ptr::eq(c, src));
    {
        let (copier, peer) = if src_is_current { (&mut *src, &mut *dst) } else { (&mut *dst, &mut *src) };
        peer.xfer_saved_state = peer.state;
        peer.xfer_saved_fast = peer.fast_wait;
        peer.fast_wait = 0;
        timeout::remove(peer);
        peer.state = State::Locked;
        peer.xfer_peer = copier;
        peer.xfer_copier = false;
        peer.xfer_error = 0;
        copier.xfer_peer = peer;
        copier.xfer_copier = true;
        copier.xfer_error = 0;
    }
    src.xfer_sender = true;
    dst.xfer_sender = false;
    let result = crate::ipc_string::transfer_strings(src, dst, words, first);
    let copier = if src_is_current { src } else { dst };
    if copier.xfer_peer.is_null() {
        // The other party was deleted (`release_partners` has unlinked it).
        copier.xfer_copier = false;
        copier.xfer_error = 0;
        return Err(Failure { code: IpcErrorCode::NotExist, offset: 0, gone: true });
    }
    let broken = copier.xfer_error;
    unlock_transfer(copier);
    match (result, IpcErrorCode::try_from(broken)) {
        (Ok(()), Err(_)) => Ok(()),
        (Ok(()), Ok(code)) => Err(Failure { code, offset: 0, gone: false }),
        (Err(f), broken) => Err(Failure { code: broken.unwrap_or(f.code), offset: f.offset, gone: false }),
    }
}

/// Ends the transfer of `copier`: the locked party gets its IPC state back.
fn unlock_transfer(copier: &mut Tcb) {
    // SAFETY: while a transfer is linked, both parties are live (deletion unlinks it).
    let peer = unsafe { &mut *copier.xfer_peer };
    restore_locked(peer);
    for t in [&mut *peer, &mut *copier] {
        t.xfer_peer = core::ptr::null_mut();
        t.xfer_copier = false;
        t.xfer_error = 0;
    }
}

/// The locked party of a transfer gets back the IPC state it had before it.
fn restore_locked(peer: &mut Tcb) {
    if peer.state == State::Locked {
        peer.state = peer.xfer_saved_state;
        peer.fast_wait = peer.xfer_saved_fast;
        if peer.halted {
            // Halted meanwhile: no fast-path mark (as `ExchangeRegisters` halt does).
            thread::clear_fast_mark(peer);
        }
    }
}

/// The phase `t`'s IPC is in as a party of a transfer.
pub fn xfer_phase(t: &Tcb) -> Phase {
    if t.xfer_sender {
        Phase::Send
    } else {
        Phase::Receive
    }
}

/// Map, grant and I/O items (strings come after, see `transfer_typed`); returns whether
/// the message has string items.
fn transfer_typed_inner(src: &mut Tcb, dst: &mut Tcb, words: &[u64], first: usize) -> Result<bool, IpcErrorCode> {
    let mut pos = 0;
    let mut strings = false;
    for item in abi::msg::TypedItemReader::new(words) {
        let item = item.map_err(|_| IpcErrorCode::Overflow)?;
        let n = item.consumed();
        match item.item {
            abi::msg::TypedItem::String(_) => strings = true,
            abi::msg::TypedItem::Map(m) | abi::msg::TypedItem::Grant(m) if m.fpage.is_io() => {
                let accepts = dst.kernel_ipc || dst.utcb().is_some_and(|u| abi::msg::Acceptor(u.br(0).unwrap_or(0)).accepts_maps());
                if !accepts {
                    return Err(IpcErrorCode::Overflow);
                }
                if let Ok(io) = abi::fpage::IoFpage::try_from(m.fpage) {
                    crate::ioport::map(src.space(), dst.space(), io, m.grant).map_err(|_| IpcErrorCode::Overflow)?;
                }
                for (i, w) in words[pos..pos + n].iter().enumerate() {
                    set_mr(dst, first + pos + i, *w);
                }
            }
            _ => crate::ipc_items::transfer_items(src, dst, &words[pos..pos + n], first + pos)?,
        }
        pos += n;
    }
    Ok(strings)
}

/// Propagation (X.2): a sender may send on behalf of a virtual sender (tag flag p and
/// the VirtualSender TCR) if the virtual sender lives in its own space or the sender is
/// the redirector of the virtual sender's space. Returns the virtual sender if allowed.
fn propagation(sender: &mut Tcb) -> Option<&'static mut Tcb> {
    if sender.kernel_ipc || !MsgTag(mr(sender, 0)).propagated() {
        return None;
    }
    let vs = ThreadId(sender.utcb()?.virtual_sender);
    let v = resolve(sender, vs)?;
    let allowed = v.space == sender.space || v.space().redirector == sender.id.raw();
    allowed.then_some(v)
}

/// Delivers a kernel-made message (interrupts) with no words but the tag to the waiting
/// `receiver`, from `from`.
pub fn deliver_kernel_message(receiver: &mut Tcb, tag: u64, from: ThreadId) {
    set_mr(receiver, 0, tag);
    succeed(receiver, from);
}

/// Delivers `sender`'s message to the waiting `receiver`. On failure the receiver got
/// the error, and the sender's is returned (the caller reports it): the same code and
/// offset, with "current" and "partner" space swapped for the other side; `None` when
/// the sender was deleted during the transfer (nothing to report, nothing to touch).
fn deliver(sender: &mut Tcb, receiver: &mut Tcb) -> Result<(), Option<(IpcErrorCode, u64)>> {
    let mut flags = 0u8;
    // (The tag check first: most messages are not propagated.)
    if !sender.kernel_ipc && MsgTag(mr(sender, 0)).propagated() && propagation(sender).is_some() {
        flags |= 1; // p
    }
    let intended = core::mem::replace(&mut sender.intended, ThreadId::NIL);
    if !intended.is_nil() {
        flags |= 2; // r
    }
    match transfer(sender, receiver, flags) {
        Ok(()) => {
            let actual = id_as_seen_by(receiver, sender);
            // (Looked up after the transfer, which may have blocked.)
            let virtual_sender = if flags & 1 != 0 { propagation(sender) } else { None };
            let propagated = flags & 1 != 0;
            let from = match virtual_sender {
                Some(v) => {
                    // The virtual sender, if it waits for the propagator's reply, now
                    // waits for the receiver's.
                    if v.state == State::Receiving && v.partner == sender.id {
                        v.partner = receiver.id;
                    }
                    id_as_seen_by(receiver, v)
                }
                None => actual,
            };
            let user_receiver = !receiver.kernel_ipc;
            if let Some(u) = receiver.utcb().filter(|_| user_receiver) {
                if propagated {
                    u.virtual_sender = actual.raw(); // the ActualSender TCR
                }
                if !intended.is_nil() {
                    u.intended_receiver = intended.raw();
                }
            }
            succeed(receiver, from);
            Ok(())
        }
        Err(Failure { code, offset, gone }) => {
            // `code` is from the copying (current) thread's point of view.
            let current_is_receiver = crate::sched::current().is_some_and(|c| core::ptr::eq(c, receiver));
            if gone {
                // The other party was deleted while strings were copied.
                if current_is_receiver {
                    fail(receiver, IpcErrorCode::NotExist, Phase::Receive);
                    return Err(None);
                }
                return Err(Some((IpcErrorCode::NotExist, 0)));
            }
            let (for_receiver, for_sender) = if current_is_receiver { (code, swap_side(code)) } else { (swap_side(code), code) };
            fail_at(receiver, for_receiver, Phase::Receive, offset);
            Err(Some((for_sender, offset)))
        }
    }
}

/// Transfer timeouts name a space relative to the thread that sees the error.
fn swap_side(code: IpcErrorCode) -> IpcErrorCode {
    match code {
        IpcErrorCode::XferTimeoutCurrent => IpcErrorCode::XferTimeoutPartner,
        IpcErrorCode::XferTimeoutPartner => IpcErrorCode::XferTimeoutCurrent,
        c => c,
    }
}

/// The deadline of a relative or absolute timeout; "never" needs no clock reading.
#[inline]
fn deadline(raw: u16) -> Deadline {
    match Time::decode(raw) {
        Time::Never => Deadline::Never,
        t => t.deadline_us(apic::now_us()),
    }
}

/// Blocks `t` in `state` until someone completes its IPC or the deadline passes.
fn wait(t: &mut Tcb, state: State, dl: Deadline) {
    match dl {
        Deadline::At(at) => timeout::add(t, at),
        // A user receive without timeout may be completed by the fast path, which
        // returns to user mode directly: nothing in this kernel continuation remains to
        // be done once the message has arrived.
        _ if state == State::Receiving && !t.kernel_ipc => t.fast_wait = thread::FAST_WAIT_BLOCKED_SLOW,
        _ => {}
    }
    sched::block(t, state);
    // While waiting, a partner copying strings may ask us to fault in one of our pages.
    while t.help_pending {
        crate::ipc_string::help(t);
    }
}

/// Removes `t` from the send queue of `partner`.
fn unqueue_sender(t: &mut Tcb) {
    if let Some(p) = thread::lookup(t.partner) {
        let mut link: *mut *mut Tcb = &mut p.send_queue;
        // SAFETY: send queues link live TCBs (invariant).
        unsafe {
            while !(*link).is_null() {
                if *link == t as *mut Tcb {
                    *link = t.send_next;
                    break;
                }
                link = &mut (**link).send_next;
            }
        }
    }
    t.send_next = core::ptr::null_mut();
}

fn enqueue_sender(t: &mut Tcb, dest: &mut Tcb) {
    t.send_next = core::ptr::null_mut();
    let mut link: *mut *mut Tcb = &mut dest.send_queue;
    // SAFETY: send queues link live TCBs (invariant).
    unsafe {
        while !(*link).is_null() {
            link = &mut (**link).send_next;
        }
        *link = t;
    }
}

/// The send phase: returns false if the IPC ended (error reported into `t`).
fn send_phase(t: &mut Tcb, dest: &mut Tcb, snd_timeout: u16) -> bool {
    if dest.state == State::Receiving && !dest.halted && accepts(dest, dest.partner, t) {
        if let Err(e) = deliver(t, dest) {
            let (code, offset) = e.unwrap_or((IpcErrorCode::NotExist, 0));
            fail_at(t, code, Phase::Send, offset);
            return false;
        }
        return true;
    }
    let dl = deadline(snd_timeout);
    if dl == Deadline::Now {
        fail(t, IpcErrorCode::Timeout, Phase::Send);
        return false;
    }
    t.partner = dest.id;
    enqueue_sender(t, dest);
    wait(t, State::Sending, dl);
    // Woken: either the receiver took the message (and, for a call, moved us on to the
    // receive phase and completed it), or an error was reported.
    false
}

/// The receive phase.
fn receive_phase(t: &mut Tcb, spec: ThreadId, rcv_timeout: u16) {
    // A specific sender must exist (a thread, or an interrupt line this thread handles).
    let irq = crate::irq::handled_by(t, spec);
    if !spec.is_any() && !spec.is_any_local() && !irq && thread::lookup(spec).is_none() {
        fail(t, IpcErrorCode::NotExist, Phase::Receive);
        return;
    }
    if (spec.is_any() || irq) && crate::irq::receive_pending(t, spec) {
        return;
    }
    let mut cur = t.send_queue;
    while !cur.is_null() {
        // SAFETY: send queues link live TCBs (invariant).
        let s = unsafe { &mut *cur };
        if accepts(t, spec, s) {
            unqueue_from(t, s);
            match deliver(s, t) {
                Ok(()) => {}
                Err(Some((code, offset))) => {
                    fail_at(s, code, Phase::Send, offset);
                    return;
                }
                Err(None) => return,
            }
            continue_sender(s, t);
            return;
        }
        cur = s.send_next;
    }
    let dl = deadline(rcv_timeout);
    if dl == Deadline::Now {
        fail(t, IpcErrorCode::Timeout, Phase::Receive);
        return;
    }
    t.partner = spec;
    wait(t, State::Receiving, dl);
}

fn unqueue_from(receiver: &mut Tcb, s: &mut Tcb) {
    let mut link: *mut *mut Tcb = &mut receiver.send_queue;
    // SAFETY: send queues link live TCBs (invariant).
    unsafe {
        while !(*link).is_null() {
            if *link == s as *mut Tcb {
                *link = s.send_next;
                break;
            }
            link = &mut (**link).send_next;
        }
    }
    s.send_next = core::ptr::null_mut();
}

/// A queued sender's message was taken: go on to its receive phase, or finish its send.
fn continue_sender(s: &mut Tcb, receiver: &mut Tcb) {
    timeout::remove(s);
    let spec = s.then_receive;
    if spec.is_nil() {
        finish_send(s);
        return;
    }
    s.then_receive = ThreadId::NIL;
    // A call: the partner is normally the receiver, which has not replied yet. A
    // specific partner may have died while we were queued: then the receive fails.
    let _ = receiver;
    if !spec.is_any() && !spec.is_any_local() && thread::lookup(spec).is_none() && !crate::irq::handled_by(s, spec) {
        fail(s, IpcErrorCode::NotExist, Phase::Receive);
        return;
    }
    let dl = deadline(s.then_timeout);
    if dl == Deadline::Now {
        fail(s, IpcErrorCode::Timeout, Phase::Receive);
        return;
    }
    s.partner = spec;
    s.state = State::Receiving;
    match dl {
        Deadline::At(at) => timeout::add(s, at),
        // (Not while halted: the fast path must not complete a halted thread's receive.)
        _ if !s.kernel_ipc && !s.halted => s.fast_wait = thread::FAST_WAIT_BLOCKED_SLOW,
        _ => {}
    }
}

/// A send-only IPC finished successfully.
fn finish_send(s: &mut Tcb) {
    if !s.kernel_ipc {
        let local = s.local_id().raw();
        let f = s.frame();
        f.rsi = ThreadId::NIL.raw();
        f.rdi = local;
        // MR0 keeps the sent tag with its error flag clear.
        f.r9 &= !(1 << 15);
    }
    sched::wake(s);
}

/// The Ipc system call of the running thread `t` (registers in its frame).
pub fn sys_ipc(t: &mut Tcb) {
    let f = t.frame();
    let to = ThreadId(f.rsi);
    let from = ThreadId(f.rdx);
    let timeouts = Timeouts(f.r8);
    ipc(t, to, from, timeouts.send(), timeouts.receive());
    if t.state == State::Ready && !t.kernel_ipc {
        // Not blocked: results are in the frame already (or set here on plain success).
        let local = t.local_id().raw();
        t.frame().rdi = local;
    }
}

/// Performs an IPC for `t`: send to `to` (unless nil), then receive from `from` (unless
/// nil). Returns when `t`'s IPC is complete.
pub fn ipc(t: &mut Tcb, to: ThreadId, from: ThreadId, snd_timeout: u16, rcv_timeout: u16) {
    if !to.is_nil() && crate::irq::line_of(to).is_some() {
        // A message to an interrupt thread acknowledges the interrupt.
        if let Err((code, phase)) = crate::irq::acknowledge(t, to) {
            fail(t, code, phase);
            return;
        }
        if from.is_nil() {
            finish_send_running(t);
            return;
        }
    } else if !to.is_nil() {
        let Some(dest) = resolve(t, to) else {
            fail(t, IpcErrorCode::NotExist, Phase::Send);
            return;
        };
        if !dest.active {
            fail(t, IpcErrorCode::NotExist, Phase::Send);
            return;
        }
        // Redirection: IPC from a confined space to another space goes to its redirector.
        let sp = t.space();
        let dest = if sp.confined != 0 && dest.space != t.space && dest.id.raw() != sp.redirector {
            let Some(r) = thread::lookup(ThreadId(sp.redirector)) else {
                fail(t, IpcErrorCode::NotExist, Phase::Send);
                return;
            };
            t.intended = dest.id;
            r
        } else {
            t.intended = ThreadId::NIL;
            dest
        };
        // Resolve the receive specifier now: a local id becomes the thread's global id.
        let spec = match receive_spec(t, from) {
            Some(s) => s,
            // A receive specifier naming no thread: the send happens, the receive fails
            // (checked again when the receive phase starts).
            None => from,
        };
        t.then_receive = spec;
        t.then_timeout = rcv_timeout;
        if !send_phase(t, dest, snd_timeout) {
            return;
        }
        t.then_receive = ThreadId::NIL;
        if from.is_nil() {
            finish_send_running(t);
            return;
        }
    }
    if from.is_nil() {
        return;
    }
    let Some(spec) = receive_spec(t, from) else {
        fail(t, IpcErrorCode::NotExist, Phase::Receive);
        return;
    };
    receive_phase(t, spec, rcv_timeout);
}

fn finish_send_running(t: &mut Tcb) {
    if !t.kernel_ipc {
        let local = t.local_id().raw();
        let f = t.frame();
        f.rsi = ThreadId::NIL.raw();
        f.rdi = local;
        f.r9 &= !(1 << 15);
    }
}

/// Turns a user receive specifier into the form kept while waiting.
///
/// A global id is kept as it is, existing or not: the receive phase (and a queued call's
/// `continue_sender`) checks that it names a thread or a handled interrupt line before
/// anything else, failing with "non-existing partner" exactly as a failed lookup here
/// would, so looking it up here too would only repeat that check.
fn receive_spec(t: &Tcb, from: ThreadId) -> Option<ThreadId> {
    if from.is_nil() || from.is_any() || from.is_any_local() || from.is_global() {
        return Some(from);
    }
    resolve(t, from).map(|p| p.id)
}

/// Kernel-generated call: sends `t.kmsg` to `to` and waits for the reply into `t.kmsg`.
/// Returns the IPC error word (0 = success).
pub fn kernel_call(t: &mut Tcb, to: ThreadId, snd_timeout: u16, rcv_timeout: u16) -> u64 {
    t.kernel_ipc = true;
    t.kmsg_error = 0;
    ipc(t, to, to, snd_timeout, rcv_timeout);
    t.kernel_ipc = false;
    t.kmsg_error
}

/// Kernel-generated receive into `t.kmsg` (thread start protocol).
pub fn kernel_receive(t: &mut Tcb, from: ThreadId) -> u64 {
    t.kernel_ipc = true;
    t.kmsg_error = 0;
    ipc(t, ThreadId::NIL, from, 0, 0);
    t.kernel_ipc = false;
    t.kmsg_error
}

/// A waiting thread's timeout expired.
pub fn timeout_expired(t: &mut Tcb) {
    end_wait(t, IpcErrorCode::Timeout, true, true);
}

/// Ends `t`'s blocked send (if `send`) or receive (if `receive`) with `code`.
fn end_wait(t: &mut Tcb, code: IpcErrorCode, send: bool, receive: bool) {
    match t.state {
        State::Sending if send => {
            unqueue_sender(t);
            fail(t, code, Phase::Send);
        }
        State::Receiving if receive => fail(t, code, Phase::Receive),
        _ => {}
    }
}

/// ExchangeRegisters abort: cancels an ongoing send and/or receive. A transfer in
/// progress (strings being copied) is aborted: both parties get "aborted".
pub fn abort(t: &mut Tcb, send: bool, receive: bool) {
    if !t.xfer_peer.is_null() {
        if if t.xfer_sender { send } else { receive } {
            // SAFETY: while a transfer is linked, both parties are live.
            let peer = unsafe { &mut *t.xfer_peer };
            t.xfer_error = IpcErrorCode::Aborted as u8;
            peer.xfer_error = IpcErrorCode::Aborted as u8;
            // A page fault either side is resolving for the copy ends now; the copier
            // then sees the abort.
            cancel_fault_ipc(t);
            cancel_fault_ipc(peer);
        }
        return;
    }
    end_wait(t, IpcErrorCode::Cancelled, send, receive);
}

/// Ends a kernel-generated IPC (a page fault inside a transfer) that `t` waits in.
fn cancel_fault_ipc(t: &mut Tcb) {
    if t.kernel_ipc {
        end_wait(t, IpcErrorCode::Cancelled, true, true);
    }
}

/// The thread `dying` is deleted in the middle of a string transfer: the other party's
/// IPC ends with "non-existing partner".
fn break_transfer(dying: &mut Tcb) {
    // SAFETY: while a transfer is linked, both parties are live.
    let peer = unsafe { &mut *dying.xfer_peer };
    dying.xfer_peer = core::ptr::null_mut();
    peer.xfer_peer = core::ptr::null_mut();
    if peer.help_for == dying as *mut Tcb {
        peer.help_for = core::ptr::null_mut();
    }
    if !dying.xfer_copier {
        // The copier waits in a page fault of its own (it looks at `xfer_peer` when that
        // ends) or for the dying thread's help: wake it.
        if peer.state == State::XferWait {
            peer.help_result = false;
            sched::wake(peer);
        }
        return;
    }
    // The dying thread copied; the peer waits locked, or is just serving a page fault
    // for it (then `ipc_string::help` ends its IPC when the fault is done).
    peer.xfer_copier = false;
    if peer.state == State::Locked {
        restore_locked(peer);
        fail(peer, IpcErrorCode::NotExist, xfer_phase(peer));
    } else {
        peer.xfer_error = IpcErrorCode::NotExist as u8;
    }
}

/// A thread's id is about to change (ThreadControl with a new version): senders queued
/// for it and receivers waiting for exactly it fail with "non-existing partner"; its
/// own IPC is unaffected.
pub fn release_partners_of_id(t: &mut Tcb) {
    while !t.send_queue.is_null() {
        // SAFETY: send queues link live TCBs.
        let s = unsafe { &mut *t.send_queue };
        t.send_queue = s.send_next;
        s.send_next = core::ptr::null_mut();
        fail(s, IpcErrorCode::NotExist, Phase::Send);
    }
    let id = t.id;
    thread::for_each(|w| {
        if w.state == State::Receiving && w.partner == id {
            fail(w, IpcErrorCode::NotExist, Phase::Receive);
        }
    });
}

/// A thread is being deleted: release everyone blocked on it.
pub fn release_partners(dying: &mut Tcb) {
    if !dying.xfer_peer.is_null() {
        break_transfer(dying);
    }
    // Its own IPC ends.
    if dying.state == State::Sending {
        unqueue_sender(dying);
    }
    timeout::remove(dying);
    // Senders queued on it fail with "non-existing partner".
    while !dying.send_queue.is_null() {
        // SAFETY: send queues link live TCBs.
        let s = unsafe { &mut *dying.send_queue };
        dying.send_queue = s.send_next;
        s.send_next = core::ptr::null_mut();
        fail(s, IpcErrorCode::NotExist, Phase::Send);
    }
    // Receivers waiting for exactly this thread fail too.
    let id = dying.id;
    thread::for_each(|t| {
        if t.state == State::Receiving && t.partner == id {
            fail(t, IpcErrorCode::NotExist, Phase::Receive);
        }
    });
}
