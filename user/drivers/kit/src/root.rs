//! The root task's services (see [`crate::wire::root`]): what a program outside the
//! privileged spaces asks of the root task — an interrupt line attached to it, its I/O
//! ports, the thread id of another program by name, a further name for itself, the list
//! of what the root task knows, power off. The server side is [`crate::rootsrv`].

use core::fmt;

use abi::fpage::{Fpage, IoFpage};
use abi::kip::ThreadInfo;
use abi::msg::{Acceptor, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};

use crate::irq::Line;
use crate::msg::{self, CallError};
pub use crate::wire::root::{Holdings, Kind};
use crate::wire::{self, root, Bytes, Status, MAX_BYTES};

/// How long a root-task request may wait for the root task to receive it (it may be busy
/// starting programs).
const TIMEOUT: Time = Time::Period { us: 2_000_000 };
/// How long it may wait for the answer (the root task answers at once, if it serves the
/// request at all).
const ANSWER: Time = Time::Period { us: 500_000 };

/// The root task's thread id: (UserBase + 2, 1), from the KIP.
pub fn root_task_id() -> ThreadId {
    let ti = ThreadInfo::decode(l4::kip::get().thread_info);
    ThreadId::global(ti.user_base as u32 + 2, 1)
}

/// Why a root-task request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RootError {
    /// The request itself failed.
    Call(CallError),
    /// The kernel refused (when trying directly).
    Kernel(l4::Error),
    /// A name that is no program name.
    BadName,
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::Call(e) => write!(f, "root task: {e}"),
            RootError::Kernel(e) => write!(f, "kernel: {e:?}"),
            RootError::BadName => write!(f, "not a program name"),
        }
    }
}

fn ask(label: u64, words: &[u64]) -> Result<msg::Reply, RootError> {
    msg::call(root_task_id(), label, words, TIMEOUT, ANSWER, &[])
        .map(|(_, r)| r)
        .map_err(RootError::Call)
}

/// Asks the root task to attach `line` to the calling thread.
pub fn attach_irq(line: Line) -> Result<(), RootError> {
    ask(root::ATTACH_IRQ, &[line.number() as u64]).map(|_| ())
}

/// Asks the root task to detach `line` (the caller must be its handler).
pub fn detach_irq(line: Line) -> Result<(), RootError> {
    ask(root::DETACH_IRQ, &[line.number() as u64]).map(|_| ())
}

/// The thread id of the program called `name`.
pub fn lookup(name: &str) -> Result<ThreadId, RootError> {
    let name = root::Name::try_from(name.as_bytes()).map_err(|_| RootError::BadName)?;
    let mut w = [0u64; 1 + root::MAX_NAME / 8];
    let n = name.bytes().encode(&mut w);
    ask(root::LOOKUP, &w[..n]).map(|r| ThreadId(r.word(0)))
}

/// Asks the root task to register the calling thread under the further name `name`.
pub fn register(name: &str) -> Result<(), RootError> {
    let name = root::Name::try_from(name.as_bytes()).map_err(|_| RootError::BadName)?;
    let mut w = [0u64; 1 + root::MAX_NAME / 8];
    let n = name.bytes().encode(&mut w);
    ask(root::REGISTER, &w[..n]).map(|_| ())
}

/// Asks the root task for the ports of `io`, mapped into the caller's space.
pub fn request_io(io: IoFpage) -> Result<(), RootError> {
    let req = Msg::with_words(root::REQUEST_IO, &[io.raw()]).map_err(|_| RootError::Call(CallError::TooLong))?;
    ipc::set_acceptor(Acceptor::complete());
    let r = ipc::call(root_task_id(), &req, TIMEOUT, ANSWER);
    ipc::set_acceptor(Acceptor::UNTYPED);
    let m = r.map_err(|e| RootError::Call(CallError::Ipc(e)))?;
    let tag = m.tag();
    let bad = RootError::Call(CallError::BadReply(tag.raw()));
    let status = m.word(0).and_then(|w| Status::try_from(w).ok()).ok_or(bad)?;
    if tag.label() != 0 {
        return Err(bad);
    }
    if status != Status::Ok {
        return Err(RootError::Call(CallError::Status(status, m.word(1).unwrap_or(0))));
    }
    let t = m.typed();
    let item = (t.len() >= 2).then(|| MapItem::decode([t[0], t[1]])).flatten().ok_or(bad)?;
    match IoFpage::try_from(item.fpage) {
        Ok(got) if item.fpage != Fpage::NIL && got.port() == io.port() => Ok(()),
        _ => Err(bad),
    }
}

/// One entry of the root task's registry: a program it started, or a further name a
/// program registered.
pub struct Program {
    /// Its thread.
    pub id: ThreadId,
    /// Its name.
    pub name: Bytes,
    /// What it is and holds (`None` from a root task that does not say).
    pub holdings: Option<Holdings>,
}

/// The `index`-th entry of the root task's registry, or `None` past the last.
pub fn list(index: u64) -> Result<Option<Program>, RootError> {
    match msg::call(
        root_task_id(),
        root::LIST,
        &[index],
        TIMEOUT,
        ANSWER,
        &[Status::NotFound],
    ) {
        Ok((Status::NotFound, _)) => Ok(None),
        Ok((_, r)) => {
            let words = r.words();
            let (name, used) =
                Bytes::decode(words.get(1..).unwrap_or(&[])).map_err(|_| RootError::Call(CallError::BadReply(0)))?;
            if name.len() > MAX_BYTES {
                return Err(RootError::BadName);
            }
            let holdings = Holdings::decode(words.get(1 + used..).unwrap_or(&[])).ok();
            Ok(Some(Program {
                id: ThreadId(r.word(0)),
                name,
                holdings,
            }))
        }
        Err(e) => Err(RootError::Call(e)),
    }
}

/// Asks the root task to power the machine off with exit `status`; returns only if
/// that failed.
pub fn power_off(status: u64) -> RootError {
    match ask(root::POWER_OFF, &[status]) {
        Ok(_) => RootError::Call(CallError::Status(wire::Status::Ok, 0)),
        Err(e) => e,
    }
}

/// Asks thread `id` for its name ([`wire::IDENTIFY`]) without waiting for it to receive;
/// `None` if it does not answer within `answer`.
pub fn identify(id: ThreadId, answer: Time) -> Option<Bytes> {
    let (_, r) = msg::call(id, wire::IDENTIFY, &[], Time::Zero, answer, &[]).ok()?;
    Bytes::decode(r.words()).ok().map(|(b, _)| b)
}

/// Thread numbers (after UserBase) searched by [`find`] when the root task keeps no
/// registry: the first few after the root servers, and the block from 0x100 where
/// Tern's root task numbers the programs it starts.
const SEARCH: [(u32, u32); 2] = [(3, 35), (0x100, 0x120)];

/// The thread of the program or service called `name`: asked of the root task
/// ([`lookup`]); if the root task does not answer, searched for among likely thread
/// numbers with [`identify`].
pub fn find(name: &str) -> Option<ThreadId> {
    match lookup(name) {
        Ok(id) if !id.is_nil() => return Some(id),
        Ok(_) | Err(RootError::Call(CallError::Status(..))) | Err(RootError::BadName) => return None,
        Err(_) => {}
    }
    let ub = ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32;
    let me = l4::utcb::my_global_id();
    for (lo, hi) in SEARCH {
        for n in lo..hi {
            let id = ThreadId::global(ub + n, 1);
            if id == me {
                continue;
            }
            if identify(id, Time::Period { us: 20_000 }).is_some_and(|b| b.as_slice() == name.as_bytes()) {
                return Some(id);
            }
        }
    }
    None
}

/// Who gave a driver its ports ([`get_ports`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortsFrom {
    /// The root task ([`request_io`]), which keeps the table of who holds which ports.
    RootTask,
    /// σ0 directly (the root task did not give them).
    Sigma0,
}

/// Gets the ports of `io` for the calling space: from the root task, or, if it does not
/// give them (another root task, or its refusal), from σ0, waiting at most `timeout`
/// for σ0. The error is σ0's, with the root task's reason.
pub fn get_ports(io: IoFpage, timeout: Time) -> Result<PortsFrom, (RootError, crate::sigma0::Sigma0Error)> {
    match request_io(io) {
        Ok(()) => Ok(PortsFrom::RootTask),
        Err(why) => match crate::sigma0::request_io(io, timeout) {
            Ok(()) => Ok(PortsFrom::Sigma0),
            Err(e) => Err((why, e)),
        },
    }
}
