//! The server side of the root-task protocol ([`crate::wire::root`]): decodes a request,
//! asks the [`Registry`] whether the sender may have what it asks for, does the
//! privileged part (ThreadControl on the interrupt thread, ports from σ0 mapped on,
//! power off) and replies.
//!
//! It runs in a privileged space — the root task (`user/roottask`), or the interrupt
//! test suite standing in for it (`user/irqtests`) — and leaves what differs between
//! them to a [`Host`]: how ports are obtained for this space, and what powering off
//! means.
//!
//! ```text
//!   request ──TryFrom──► Request ──Registry (policy, check)──► kernel / σ0 ──► Registry (record)
//!                            │ malformed: BadRequest             │ refused: Kernel + error code
//!                            ▼                                   ▼ (registry step undone)
//!                        reply (zero send timeout: a client that gave up is dropped)
//! ```

use abi::fpage::{Fpage, IoFpage};
use abi::kip::ThreadInfo;
use abi::msg::MapItem;
use abi::thread_id::ThreadId;
use l4::ipc::{self, Msg, Received};

use crate::irq::{self, Line};
use crate::msg::{reply, reply_msg};
use crate::registry::{Refusal, Registry};
use crate::wire::root::{self, Holdings, Name, Request, MAX_PORT_RANGES};
use crate::wire::{self, Status};

/// What the root task's space does on behalf of the service.
pub trait Host {
    /// Makes sure this space has the ports of `io` (so they can be mapped on); false if
    /// they cannot be had.
    fn obtain_ports(&mut self, io: IoFpage) -> bool;

    /// Powers the machine off with exit `status`; returns only if that did not happen
    /// (the reply then says `Kernel`), or where powering off is only recorded (the tests:
    /// the reply then says `Ok`), with `true`.
    fn power_off(&mut self, status: u64) -> bool;
}

/// Names the registry has room for.
pub const NAMES: usize = 32;

/// The service: the registry and the host.
pub struct RootService<H: Host> {
    /// Who holds what.
    pub registry: Registry<NAMES>,
    host: H,
}

/// What [`RootService::serve`] made of a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Served {
    /// A root-protocol request, answered (the request and how it went).
    Answered(u64, Status),
    /// Not a root-protocol message (left to the caller).
    NotMine,
}

/// The number of interrupt lines (the KIP's SystemBase).
fn lines() -> u32 {
    ThreadInfo::decode(l4::kip::get().thread_info).system_base as u32
}

/// The word a `Kernel` status carries: the X.2 error code (all ones if there is none).
fn error_word(e: l4::Error) -> u64 {
    match e {
        l4::Error::Sys(s) => s as u64,
        _ => u64::MAX,
    }
}

/// Is `label` one of the protocol's requests?
pub const fn is_root_label(label: u64) -> bool {
    matches!(
        label,
        root::ATTACH_IRQ
            | root::DETACH_IRQ
            | root::LOOKUP
            | root::LIST
            | root::POWER_OFF
            | root::REGISTER
            | root::REQUEST_IO
            | wire::PING
            | wire::IDENTIFY
    )
}

impl<H: Host> RootService<H> {
    /// An empty registry served for `host`.
    pub const fn new(host: H) -> Self {
        Self {
            registry: Registry::new(),
            host,
        }
    }

    /// The host.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// Enters a program the caller starts (before it runs, so that its first requests
    /// find it).
    pub fn add_program(&mut self, id: ThreadId, name: &str) -> Result<(), Refusal> {
        let name = Name::try_from(name.as_bytes()).map_err(|_| Refusal::NoSuchName)?;
        self.registry.add_program(id, name)
    }

    /// Forgets thread `id` (stopped or deleted): its names, and the lines it held, which
    /// are detached in the kernel.
    pub fn forget(&mut self, id: ThreadId) {
        let held = self.registry.remove(id);
        for n in 0..64 {
            if held & (1 << n) != 0 {
                if let Ok(l) = Line::try_from(n) {
                    let _ = irq::detach(l);
                }
            }
        }
    }

    /// An I/O page fault of program `from` at the ports of `io`: grants them (the reply
    /// maps them) if the policy allows; false if not (nothing was sent).
    pub fn io_fault(&mut self, from: ThreadId, io: IoFpage) -> bool {
        self.grant_ports(from, io).is_ok()
    }

    /// Checks, obtains and maps the ports of `io` to `to` in a reply (extra untyped
    /// words first: the status for a `REQUEST_IO`, none for an I/O page fault).
    fn grant_ports_reply(&mut self, to: ThreadId, io: IoFpage, status_word: bool) -> Result<(), Status> {
        self.registry.check_ports(to, io).map_err(Refusal::status)?;
        if !self.host.obtain_ports(io) {
            return Err(Status::NoDevice);
        }
        let mut m = if status_word {
            reply_msg(Status::Ok, &[])
        } else {
            Msg::new(0)
        };
        let _ = m.push_map(MapItem::map(Fpage::from(io), 0));
        ipc::reply(to, &m).map_err(|_| Status::Timeout)?;
        // Cannot fail after the check above (nothing ran in between); recorded once the
        // ports are the client's.
        let _ = self.registry.grant_ports(to, io);
        Ok(())
    }

    fn grant_ports(&mut self, to: ThreadId, io: IoFpage) -> Result<(), Status> {
        self.grant_ports_reply(to, io, false)
    }

    /// Serves one received message if it belongs to the protocol.
    pub fn serve(&mut self, rx: &Received) -> Served {
        let tag = rx.msg.tag();
        let label = tag.label();
        if !is_root_label(label) {
            return Served::NotMine;
        }
        let from = rx.from;
        if label == wire::IDENTIFY {
            let _ = crate::msg::reply_name(from, "roottask");
            return Served::Answered(label, Status::Ok);
        }
        let req = match Request::try_from((label, rx.msg.untyped())) {
            Ok(r) if tag.typed() == 0 => r,
            _ => {
                let _ = reply(from, Status::BadRequest, &[]);
                return Served::Answered(label, Status::BadRequest);
            }
        };
        let status = self.handle(from, req);
        Served::Answered(label, status)
    }

    /// Does what `req` asks and replies; returns the status sent.
    fn handle(&mut self, from: ThreadId, req: Request) -> Status {
        let answer = |status: Status, words: &[u64]| {
            let _ = reply(from, status, words);
            status
        };
        let refused = |r: Refusal| {
            let detail = match r {
                Refusal::LineHeld(h) | Refusal::PortsHeld(h) => h.raw(),
                _ => 0,
            };
            answer(r.status(), &[detail])
        };
        match req {
            Request::Ping => answer(Status::Ok, &[]),
            Request::AttachIrq(n) => {
                let Ok(line) = Line::try_from(n) else {
                    return refused(Refusal::NoSuchLine);
                };
                match self.registry.claim_line(from, n, lines()) {
                    Err(r) => refused(r),
                    Ok(new) => match irq::attach(line, from) {
                        Ok(()) => answer(Status::Ok, &[]),
                        Err(e) => {
                            if new {
                                let _ = self.registry.release_line(from, n);
                            }
                            answer(Status::Kernel, &[error_word(e)])
                        }
                    },
                }
            }
            Request::DetachIrq(n) => {
                let Ok(line) = Line::try_from(n) else {
                    return refused(Refusal::NoSuchLine);
                };
                if self.registry.holder(n) != Some(from) {
                    return refused(Refusal::NotHolder);
                }
                match irq::detach(line) {
                    Ok(()) => {
                        let _ = self.registry.release_line(from, n);
                        answer(Status::Ok, &[])
                    }
                    Err(e) => answer(Status::Kernel, &[error_word(e)]),
                }
            }
            Request::Lookup(name) => match self.registry.lookup(&name) {
                Ok(id) => answer(Status::Ok, &[id.raw()]),
                Err(r) => refused(r),
            },
            Request::List(i) => match self.registry.list(i) {
                Some(l) => {
                    let mut w = [0u64; 1 + 1 + root::MAX_NAME / 8 + 3 + MAX_PORT_RANGES];
                    w[0] = l.id.raw();
                    let n = 1 + l.name.bytes().encode(&mut w[1..]);
                    let m = n + Holdings::encode(&l.holdings, &mut w[n..]);
                    answer(Status::Ok, &w[..m])
                }
                None => answer(Status::NotFound, &[]),
            },
            Request::Register(name) => match self.registry.register(from, name) {
                Ok(()) => answer(Status::Ok, &[]),
                Err(r) => refused(r),
            },
            Request::PowerOff(status) => {
                if !self.registry.is_program(from) {
                    return refused(Refusal::NotAProgram);
                }
                if self.host.power_off(status) {
                    answer(Status::Ok, &[])
                } else {
                    answer(Status::Kernel, &[])
                }
            }
            Request::RequestIo(io) => match self.registry.check_ports(from, io) {
                // Refused with the holder's id after the status (docs/drivers.md §4).
                Err(r) => refused(r),
                Ok(()) => match self.grant_ports_reply(from, io, true) {
                    Ok(()) => Status::Ok,
                    // The client gave up before the reply: nothing to answer.
                    Err(Status::Timeout) => Status::Timeout,
                    Err(s) => answer(s, &[]),
                },
            },
        }
    }
}
