//! Interrupt lines as X.2 presents them: interrupt thread (n, 1) for line n; a
//! privileged thread attaches a handler with ThreadControl(dest = that id, pager =
//! handler) and detaches with pager = the id itself; the interrupt arrives as a message
//! from that id (label −1 << 4, no words); the handler acknowledges it by sending any
//! message to that id, after which the line may interrupt again.
//!
//! A thread outside the privileged spaces cannot attach: it asks the root task
//! ([`crate::root::attach_irq`]); [`attach_here`] tries one and then the other.

use abi::error::SysError;
use abi::kip::ThreadInfo;
use abi::msg::{label, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, IpcFailure, Received};

/// An interrupt line that exists (below the KIP's SystemBase) and is attachable (not
/// ISA line 2, the cascade).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Line(u32);

/// A line number that names no attachable line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadLine(pub u32);

impl TryFrom<u32> for Line {
    type Error = BadLine;

    fn try_from(n: u32) -> Result<Self, BadLine> {
        let lines = ThreadInfo::decode(l4::kip::get().thread_info).system_base as u32;
        if n >= lines || n == 2 {
            return Err(BadLine(n));
        }
        Ok(Line(n))
    }
}

impl Line {
    /// The line number.
    pub const fn number(self) -> u32 {
        self.0
    }

    /// The interrupt thread's id, (n, 1).
    pub const fn id(self) -> ThreadId {
        ThreadId::interrupt(self.0)
    }

    /// Is `r` this line's interrupt message?
    pub fn is_interrupt(self, r: &Received) -> bool {
        r.from == self.id() && is_interrupt_tag(r.msg.tag())
    }
}

/// Is `tag` an interrupt message (label −1 << 4, no words)?
pub const fn is_interrupt_tag(tag: MsgTag) -> bool {
    tag.label() == label::INTERRUPT && tag.untyped() == 0 && tag.typed() == 0
}

/// Attaches `handler` to `line` (privileged spaces only).
pub fn attach(line: Line, handler: ThreadId) -> Result<(), l4::Error> {
    l4::thread::thread_control(line.id(), ThreadId::NIL, ThreadId::NIL, handler, None)
}

/// Detaches `line`'s handler (privileged spaces only); the line is masked.
pub fn detach(line: Line) -> Result<(), l4::Error> {
    l4::thread::thread_control(line.id(), ThreadId::NIL, ThreadId::NIL, line.id(), None)
}

/// How [`attach_here`] got the line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attached {
    /// By the caller's own ThreadControl (a privileged space).
    Directly,
    /// Through the root task.
    ByRootTask,
}

/// Attaches the calling thread to `line`: directly if its space is privileged, else
/// through the root task.
pub fn attach_here(line: Line) -> Result<Attached, crate::root::RootError> {
    let me = l4::utcb::my_global_id();
    match attach(line, me) {
        Ok(()) => Ok(Attached::Directly),
        Err(e) if e == SysError::NoPrivilege => crate::root::attach_irq(line).map(|()| Attached::ByRootTask),
        Err(e) => Err(crate::root::RootError::Kernel(e)),
    }
}

/// Waits at most `timeout` for `line`'s interrupt (closed receive from its thread).
pub fn wait(line: Line, timeout: Time) -> Result<(), IpcFailure> {
    let r = ipc::receive(line.id(), timeout)?;
    if is_interrupt_tag(r.msg.tag()) {
        Ok(())
    } else {
        Err(IpcFailure::Unknown(r.msg.tag().raw()))
    }
}

/// Acknowledges `line`'s interrupt (a send-only message to its thread).
pub fn ack(line: Line) -> Result<(), IpcFailure> {
    ipc::ipc(
        line.id(),
        ThreadId::NIL,
        ipc::timeouts(Time::Zero, Time::Never),
        MsgTag::NIL,
    )
    .map(|_| ())
}

/// Acknowledges `line`'s interrupt and waits at most `timeout` for the next one, in
/// one IPC.
pub fn ack_and_wait(line: Line, timeout: Time) -> Result<(), IpcFailure> {
    let (tag, _) = ipc::ipc(line.id(), line.id(), ipc::timeouts(Time::Zero, timeout), MsgTag::NIL)?;
    if is_interrupt_tag(tag) {
        Ok(())
    } else {
        Err(IpcFailure::Unknown(tag.raw()))
    }
}
