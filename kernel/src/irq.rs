//! Interrupts as IPC: one interrupt thread per line, with the X.2 thread ids (line, 1).
//!
//! A privileged thread attaches a handler with ThreadControl(dest = interrupt id, pager =
//! handler) and detaches it with pager = the interrupt id itself. When the line fires,
//! the kernel sends the handler a message from the interrupt thread (label −1 << 4,
//! no words). The handler acknowledges by sending any message to the interrupt thread
//! (e.g. the send phase of its next reply-and-wait); until then the interrupt counts as
//! in service: a level-triggered line stays masked, an edge-triggered one stays enabled
//! and a new edge is remembered (coalesced) and delivered right after the
//! acknowledgement — never lost, never doubled. The kernel knows nothing else of
//! devices.
//!
//! # Invariants
//! - A line with no handler is masked.
//! - `in_service` implies the handler got a message that it has not acknowledged.

use abi::error::{IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;

use crate::arch::ioapic::{self, MAX_LINES};
use crate::ipc;
use crate::thread::{self, State, Tcb};
use crate::util::KCell;

#[derive(Clone, Copy)]
struct Line {
    handler: ThreadId,
    pending: bool,
    in_service: bool,
}

static LINES: KCell<[Line; MAX_LINES]> = KCell::new([Line { handler: ThreadId::NIL, pending: false, in_service: false }; MAX_LINES]);

/// Bit n set iff line n's `pending` is: a receive from anyone tells with one load that no
/// interrupt waits for delivery (the common case on the IPC path).
static PENDING: KCell<u64> = KCell::new(0);
const _: () = assert!(MAX_LINES <= 64);

/// Sets line `n`'s pending flag, keeping [`PENDING`] in step.
fn set_pending(n: usize, on: bool) {
    LINES.get_mut()[n].pending = on;
    let m = PENDING.get_mut();
    if on {
        *m |= 1 << n;
    } else {
        *m &= !(1 << n);
    }
}

/// Resets line `n` to `handler` (NIL: detached), nothing pending or in service.
fn reset(n: usize, handler: ThreadId) {
    LINES.get_mut()[n] = Line { handler, pending: false, in_service: false };
    set_pending(n, false);
}

/// The line number of an interrupt thread id, if `id` is one.
pub fn line_of(id: ThreadId) -> Option<usize> {
    let n = id.number() as usize;
    (id.is_global() && id.version() == 1 && n < ioapic::lines() as usize && n < crate::kip::SYSTEM_BASE as usize).then_some(n)
}

/// ThreadControl on an interrupt thread: attach `pager` as handler, or detach when
/// `pager` is the interrupt thread itself. Errors: invalid thread (2).
pub fn attach(irq: ThreadId, pager: ThreadId) -> Result<(), abi::error::SysError> {
    let n = line_of(irq).ok_or(abi::error::SysError::InvalidThread)?;
    if pager == irq {
        reset(n, ThreadId::NIL);
        ioapic::set_masked(n as u32, true);
        return Ok(());
    }
    thread::lookup(pager).ok_or(abi::error::SysError::InvalidThread)?;
    // ISA line 2 is the PIC cascade (it shares line 0's input on PCs): not attachable.
    if n == 2 {
        return Err(abi::error::SysError::InvalidThread);
    }
    reset(n, pager);
    ioapic::set_masked(n as u32, false);
    Ok(())
}

/// The line raised its vector.
pub fn fire(gsi: u32) {
    let Some(n) = ioapic::line_of_gsi(gsi) else { return };
    let n = n as usize;
    let l = &mut LINES.get_mut()[n];
    if l.handler.is_nil() {
        ioapic::set_masked(n as u32, true);
        return;
    }
    let level = ioapic::line(n as u32).is_some_and(|r| r.level);
    if level {
        ioapic::set_masked(n as u32, true);
    }
    let in_service = l.in_service;
    set_pending(n, true);
    if !in_service {
        try_deliver(n);
    }
}

fn irq_id(n: usize) -> ThreadId {
    ThreadId::global(n as u32, 1)
}

/// Delivers line `n`'s pending interrupt if its handler waits for it.
fn try_deliver(n: usize) -> bool {
    let l = &mut LINES.get_mut()[n];
    let Some(h) = thread::lookup(l.handler) else { return false };
    if h.state != State::Receiving || h.halted || !(h.partner.is_any() || h.partner == irq_id(n)) {
        return false;
    }
    l.in_service = true;
    set_pending(n, false);
    ipc::deliver_kernel_message(h, MsgTag::interrupt().raw(), irq_id(n));
    true
}

/// A thread entering a receive: delivers a pending interrupt of a line it handles.
/// Returns true if it got one.
pub fn receive_pending(t: &mut Tcb, spec: ThreadId) -> bool {
    if *PENDING.get() == 0 {
        return false;
    }
    for n in 0..MAX_LINES {
        let l = LINES.get()[n];
        if l.pending && !l.in_service && l.handler == t.id && (spec.is_any() || spec == irq_id(n)) {
            LINES.get_mut()[n].in_service = true;
            set_pending(n, false);
            ipc::deliver_kernel_message(t, MsgTag::interrupt().raw(), irq_id(n));
            return true;
        }
    }
    false
}

/// Whether `spec` names an interrupt thread `t` handles (a valid closed-receive partner).
pub fn handled_by(t: &Tcb, spec: ThreadId) -> bool {
    line_of(spec).is_some_and(|n| LINES.get()[n].handler == t.id)
}

/// A send to an interrupt thread: the handler's acknowledgement. Returns the IPC error
/// if `t` is not its handler.
pub fn acknowledge(t: &mut Tcb, irq: ThreadId) -> Result<(), (IpcErrorCode, Phase)> {
    let Some(n) = line_of(irq) else { return Err((IpcErrorCode::NotExist, Phase::Send)) };
    let l = &mut LINES.get_mut()[n];
    if l.handler != t.id {
        return Err((IpcErrorCode::NotExist, Phase::Send));
    }
    l.in_service = false;
    ioapic::set_masked(n as u32, false);
    if l.pending {
        // An edge arrived while in service: it goes out as soon as the handler receives.
        try_deliver(n);
    }
    Ok(())
}

/// A handler thread is deleted: its lines are detached.
pub fn thread_deleted(id: ThreadId) {
    for n in 0..MAX_LINES {
        if LINES.get()[n].handler == id {
            reset(n, ThreadId::NIL);
            ioapic::set_masked(n as u32, true);
        }
    }
}
