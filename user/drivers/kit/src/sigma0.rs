//! Asking σ0 for I/O ports: the X.2 σ0 RPC (label −6 << 4, MR1 = the fpage wanted,
//! MR2 = attributes 0) with an I/O fpage; σ0 answers with a map item of the ports, or a
//! nil fpage if it refuses.

use abi::fpage::{Fpage, IoFpage};
use abi::kip::ThreadInfo;
use abi::msg::{label, Acceptor, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, IpcFailure, Msg};

/// σ0's thread id: (UserBase, 1), from the KIP.
pub fn sigma0_id() -> ThreadId {
    let ti = ThreadInfo::decode(l4::kip::get().thread_info);
    ThreadId::global(ti.user_base as u32, 1)
}

/// Why σ0 did not give the ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sigma0Error {
    /// The IPC failed (σ0 not receiving within the timeout, …).
    Ipc(IpcFailure),
    /// σ0 answered with a nil fpage: it refused.
    Refused,
    /// The answer was no map item (its tag follows).
    BadReply(u64),
}

/// Requests the ports of `f` from σ0 (mapped into the caller's space), waiting at most
/// `timeout` for each phase of the call.
pub fn request_io(f: IoFpage, timeout: Time) -> Result<(), Sigma0Error> {
    let req = Msg::with_words(label::SIGMA0, &[f.raw(), 0]).map_err(|_| Sigma0Error::BadReply(0))?;
    ipc::set_acceptor(Acceptor::complete());
    let r = ipc::call(sigma0_id(), &req, timeout, timeout);
    ipc::set_acceptor(Acceptor::UNTYPED);
    let reply = r.map_err(Sigma0Error::Ipc)?;
    let t = reply.typed();
    if t.len() < 2 {
        return Err(Sigma0Error::BadReply(reply.tag().raw()));
    }
    let item = MapItem::decode([t[0], t[1]]).ok_or(Sigma0Error::BadReply(reply.tag().raw()))?;
    // σ0 answers with the I/O fpage it mapped, or with the nil fpage.
    match IoFpage::try_from(item.fpage) {
        Ok(got) if item.fpage != Fpage::NIL && got.rights() != abi::fpage::Rights::NONE => Ok(()),
        _ => Err(Sigma0Error::Refused),
    }
}
