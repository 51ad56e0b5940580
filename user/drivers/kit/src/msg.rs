//! Sending and answering the [`crate::wire`] requests: a call that checks the reply's
//! status, and the server's reply.

use core::fmt;

use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, IpcFailure, Msg};

use crate::wire::{BadStatus, Status};

/// Why a request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallError {
    /// The IPC failed (no such server, timeout, …).
    Ipc(IpcFailure),
    /// The server answered with this status (and the word after it, if any).
    Status(Status, u64),
    /// The answer was no reply of the protocol (its tag follows).
    BadReply(u64),
    /// The request does not fit in one message.
    TooLong,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Ipc(IpcFailure::Ipc(e)) => write!(f, "IPC failed: {:?} in the {:?} phase", e.code, e.phase),
            CallError::Ipc(IpcFailure::Unknown(c)) => write!(f, "IPC failed (error word {c:#x})"),
            CallError::Status(s, detail) => write!(f, "server said {s:?} ({detail:#x})"),
            CallError::BadReply(tag) => write!(f, "malformed reply (tag {tag:#x})"),
            CallError::TooLong => write!(f, "request too long"),
        }
    }
}

/// A reply with status [`Status::Ok`]: the words after the status.
pub struct Reply(Msg);

impl Reply {
    /// Word `i` after the status (0 if missing).
    pub fn word(&self, i: usize) -> u64 {
        self.0.word(i + 1).unwrap_or(0)
    }

    /// The words after the status.
    pub fn words(&self) -> &[u64] {
        self.0.untyped().get(1..).unwrap_or(&[])
    }
}

/// Checks a received answer: label 0, a known status word; `Ok` status gives the
/// reply, any other the error. `accept` lists statuses (besides `Ok`) that are
/// answers rather than failures, such as `Timeout` for a read.
pub fn check_reply(m: Msg, accept: &[Status]) -> Result<(Status, Reply), CallError> {
    let tag = m.tag();
    if tag.label() != 0 || tag.typed() != 0 {
        return Err(CallError::BadReply(tag.raw()));
    }
    let status = m.word(0).ok_or(CallError::BadReply(tag.raw()))?;
    let status = Status::try_from(status).map_err(|BadStatus(_)| CallError::BadReply(tag.raw()))?;
    if status == Status::Ok || accept.contains(&status) {
        Ok((status, Reply(m)))
    } else {
        Err(CallError::Status(status, m.word(1).unwrap_or(0)))
    }
}

/// Calls `server` with `label` and `words`; waits at most `send` for it to receive and
/// `receive` for the answer.
pub fn call(
    server: ThreadId,
    label: u64,
    words: &[u64],
    send: Time,
    receive: Time,
    accept: &[Status],
) -> Result<(Status, Reply), CallError> {
    let req = Msg::with_words(label, words).map_err(|_| CallError::TooLong)?;
    let m = ipc::call(server, &req, send, receive).map_err(CallError::Ipc)?;
    check_reply(m, accept)
}

/// A reply message: label 0, `status`, then `words` (cut to what fits).
pub fn reply_msg(status: Status, words: &[u64]) -> Msg {
    let mut m = Msg::new(0);
    let _ = m.push(status as u64);
    for &w in words {
        if m.push(w).is_err() {
            break;
        }
    }
    m
}

/// Sends a reply to `client`, which must be waiting for it (zero send timeout).
pub fn reply(client: ThreadId, status: Status, words: &[u64]) -> Result<(), IpcFailure> {
    ipc::reply(client, &reply_msg(status, words))
}

/// Answers an [`crate::wire::IDENTIFY`] request with the service's name.
pub fn reply_name(client: ThreadId, name: &str) -> Result<(), IpcFailure> {
    let mut w = [0u64; 1 + crate::wire::words_for(crate::wire::root::MAX_NAME)];
    let n =
        crate::wire::Bytes::copy_from(&name.as_bytes()[..name.len().min(crate::wire::root::MAX_NAME)]).encode(&mut w);
    reply(client, Status::Ok, &w[..n])
}
