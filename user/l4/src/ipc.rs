//! IPC: messages ([`Msg`]) and the X.2 operations built from the one Ipc system call —
//! [`send`], [`receive`], [`call`], [`reply`], [`reply_wait`], [`sleep`].
//!
//! A [`Msg`] is a tag and its words; [`Msg::load`] writes it into the current thread's
//! MRs and [`Msg::from_utcb`] reads a received one back. Timeouts are [`abi::time::Time`]
//! values. A failed IPC (tag flag e) is reported with the decoded ErrorCode TCR.
//!
//! Rules the wrappers follow (X.2):
//! * a send-only IPC passes `from = nil` (no receive phase); a receive-only IPC passes
//!   `to = nil` (no send phase);
//! * `From` is the partner's local id when it lives in the caller's space, its global id
//!   otherwise — the wrappers report it as the kernel gives it.

use abi::error::{IpcError, IpcErrorCode, Phase};
use abi::msg::{Acceptor, MapItem, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::{Time, Timeouts};
use abi::utcb::MR_COUNT;

use crate::syscall;
use crate::utcb;

/// Words after MR0 a message can carry (MR1..MR63).
pub const MAX_WORDS: usize = MR_COUNT - 1;

/// A message that does not fit in MR1..MR63, or untyped words added after typed ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MsgFull;

/// A message: the tag (MR0) and its `u + t` words (MR1..).
///
/// # Invariants
/// `tag.untyped() + tag.typed() <= MAX_WORDS`; `words[..u]` are the untyped words and
/// `words[u..u + t]` the typed ones.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Msg {
    tag: MsgTag,
    words: [u64; MAX_WORDS],
}

impl Msg {
    /// An empty message with `label` (48 bits kept).
    pub const fn new(label: u64) -> Self {
        Self {
            tag: MsgTag::new(label, 0, 0),
            words: [0; MAX_WORDS],
        }
    }

    /// A message with `label` and the untyped words `words`.
    pub fn with_words(label: u64, words: &[u64]) -> Result<Self, MsgFull> {
        let mut m = Self::new(label);
        for &w in words {
            m.push(w)?;
        }
        Ok(m)
    }

    /// The tag (MR0).
    pub const fn tag(&self) -> MsgTag {
        self.tag
    }

    /// The label.
    pub const fn label(&self) -> u64 {
        self.tag.label()
    }

    /// The untyped words (MR1..MRu).
    pub fn untyped(&self) -> &[u64] {
        &self.words[..self.tag.untyped() as usize]
    }

    /// The typed words (MR(u+1)..MR(u+t)).
    pub fn typed(&self) -> &[u64] {
        let u = self.tag.untyped() as usize;
        &self.words[u..u + self.tag.typed() as usize]
    }

    /// Untyped word `i` (0-based: MR `i + 1`), if present.
    pub fn word(&self, i: usize) -> Option<u64> {
        self.untyped().get(i).copied()
    }

    /// Appends an untyped word (only before any typed word).
    pub fn push(&mut self, w: u64) -> Result<(), MsgFull> {
        let (u, t) = (self.tag.untyped() as usize, self.tag.typed() as usize);
        if t != 0 || u + 1 > MAX_WORDS {
            return Err(MsgFull);
        }
        self.words[u] = w;
        self.tag = self.tag.with_untyped(u as u8 + 1);
        Ok(())
    }

    /// Appends a map or grant item (two typed words).
    pub fn push_map(&mut self, item: MapItem) -> Result<(), MsgFull> {
        let (u, t) = (self.tag.untyped() as usize, self.tag.typed() as usize);
        if u + t + 2 > MAX_WORDS {
            return Err(MsgFull);
        }
        let [w0, w1] = item.encode();
        self.words[u + t] = w0;
        self.words[u + t + 1] = w1;
        self.tag = self.tag.with_typed(t as u8 + 2);
        Ok(())
    }

    /// The same message with other tag flags (bits 12..15; normally 0).
    pub fn with_flags(mut self, flags: u8) -> Self {
        self.tag = self.tag.with_flags(flags);
        self
    }

    /// Writes the message into the current thread's MR0..MR(u+t).
    pub fn load(&self) {
        let _ = utcb::set_mr(0, self.tag.raw());
        for (i, &w) in self.words[..self.tag.words()].iter().enumerate() {
            let _ = utcb::set_mr(i + 1, w);
        }
    }

    /// The message in the current thread's MRs: the tag in MR0 and its `u + t` words
    /// (cut to MR63 if the tag claims more; the tag is kept as received).
    pub fn from_utcb() -> Self {
        let tag = MsgTag(utcb::mr(0).unwrap_or(0));
        let mut m = Self {
            tag,
            words: [0; MAX_WORDS],
        };
        let n = tag.words().min(MAX_WORDS);
        for (i, w) in m.words[..n].iter_mut().enumerate() {
            *w = utcb::mr(i + 1).unwrap_or(0);
        }
        m
    }
}

/// Why an IPC failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IpcFailure {
    /// The kernel reported this error (tag flag e, ErrorCode TCR).
    Ipc(IpcError),
    /// Tag flag e was set but ErrorCode holds no valid IPC error.
    Unknown(u64),
}

impl IpcFailure {
    /// The error code, if the failure was decodable.
    pub fn code(self) -> Option<IpcErrorCode> {
        match self {
            IpcFailure::Ipc(e) => Some(e.code),
            IpcFailure::Unknown(_) => None,
        }
    }

    /// The phase, if the failure was decodable.
    pub fn phase(self) -> Option<Phase> {
        match self {
            IpcFailure::Ipc(e) => Some(e.phase),
            IpcFailure::Unknown(_) => None,
        }
    }

    /// Is it exactly `code` in `phase`?
    pub fn is(self, code: IpcErrorCode, phase: Phase) -> bool {
        self.code() == Some(code) && self.phase() == Some(phase)
    }
}

/// A received message and its sender.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Received {
    /// The sender (local id if it is in the caller's space).
    pub from: ThreadId,
    /// The message.
    pub msg: Msg,
}

/// The Timeouts word for a send and a receive timeout.
pub const fn timeouts(send: Time, receive: Time) -> Timeouts {
    Timeouts::new(send.encode(), receive.encode())
}

/// A period of `ms` milliseconds.
pub const fn ms(ms: u64) -> Time {
    Time::Period { us: ms * 1000 }
}

/// A period of `us` microseconds.
pub const fn us(us: u64) -> Time {
    Time::Period { us }
}

/// One Ipc over the MRs already in the UTCB (MR0 = `tag`): the raw operation every other
/// function here is built on. Returns the result tag (also in MR0) and `From`.
pub fn ipc(
    to: ThreadId,
    from_spec: ThreadId,
    t: Timeouts,
    tag: MsgTag,
) -> Result<(MsgTag, ThreadId), IpcFailure> {
    utcb::set_error_code(0);
    let r = syscall::ipc(to, from_spec, t, tag);
    if r.tag.error() {
        let code = utcb::error_code();
        return Err(IpcError::decode(code).map_or(IpcFailure::Unknown(code), IpcFailure::Ipc));
    }
    Ok((r.tag, r.from))
}

/// Sends `msg` to `to`, waiting at most `timeout` for `to` to receive.
pub fn send(to: ThreadId, msg: &Msg, timeout: Time) -> Result<(), IpcFailure> {
    msg.load();
    ipc(to, ThreadId::NIL, timeouts(timeout, Time::Never), msg.tag()).map(|_| ())
}

/// Receives from `from` (a thread, [`ThreadId::ANY`] or [`ThreadId::ANY_LOCAL`]),
/// waiting at most `timeout`.
pub fn receive(from: ThreadId, timeout: Time) -> Result<Received, IpcFailure> {
    let (_, sender) = ipc(
        ThreadId::NIL,
        from,
        timeouts(Time::Never, timeout),
        MsgTag::NIL,
    )?;
    Ok(Received {
        from: sender,
        msg: Msg::from_utcb(),
    })
}

/// Sends `msg` to `to` and receives the answer from `to` (closed receive).
pub fn call(
    to: ThreadId,
    msg: &Msg,
    send_timeout: Time,
    receive_timeout: Time,
) -> Result<Msg, IpcFailure> {
    msg.load();
    ipc(to, to, timeouts(send_timeout, receive_timeout), msg.tag())?;
    Ok(Msg::from_utcb())
}

/// Sends `msg` to `to` if it is waiting for it now (zero send timeout).
pub fn reply(to: ThreadId, msg: &Msg) -> Result<(), IpcFailure> {
    send(to, msg, Time::Zero)
}

/// Replies `msg` to `to` (zero send timeout) and then waits for a message from anyone.
pub fn reply_wait(to: ThreadId, msg: &Msg, receive_timeout: Time) -> Result<Received, IpcFailure> {
    msg.load();
    let (_, sender) = ipc(
        to,
        ThreadId::ANY,
        timeouts(Time::Zero, receive_timeout),
        msg.tag(),
    )?;
    Ok(Received {
        from: sender,
        msg: Msg::from_utcb(),
    })
}

/// Sleeps for `time`: a receive from the caller itself, which never sends, ending in the
/// receive timeout. `Ok` if it ended that way; any other end is returned as the failure
/// (a "success" — which cannot happen — is reported as `Unknown(0)`).
pub fn sleep(time: Time) -> Result<(), IpcFailure> {
    match receive(utcb::my_global_id(), time) {
        Err(e) if e.is(IpcErrorCode::Timeout, Phase::Receive) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(IpcFailure::Unknown(0)),
    }
}

/// Sets the acceptor (BR0) for the next receives.
pub fn set_acceptor(a: Acceptor) {
    let _ = utcb::set_br(0, a.raw());
}
