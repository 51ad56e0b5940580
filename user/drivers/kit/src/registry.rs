//! The root task's registry: which programs it started (by name), which further names
//! they registered, which interrupt lines and which ports it handed to whom — and the
//! policy that decides every request of the root-task protocol ([`crate::wire::root`]).
//!
//! Pure bookkeeping, host-tested: the l4 side (`rootsrv`) asks the registry first and
//! only then makes the kernel call ("check, then change"), undoing the registry's step
//! if the kernel refuses.
//!
//! Policy:
//! * Only a **program** (a thread the root task started and entered with
//!   [`Registry::add_program`]) may attach lines, take ports, register names and power
//!   off. Anyone may look names up and list the registry.
//! * An interrupt line has at most one holder; the holder asking again is fine, a second
//!   claimant is refused, and only the holder may detach it.
//! * A port belongs to at most one program: a request overlapping another program's
//!   ranges is refused; a range inside the requester's own is granted again.
//! * Names are unique over programs and services.
//!
//! # Invariants
//! * No two entries have the same name.
//! * `lines[n]` is nil or the thread of a `Program` entry.
//! * The port ranges of different programs do not overlap; ports are kept only in
//!   `Program` entries.

use abi::fpage::IoFpage;
use abi::thread_id::ThreadId;

use crate::wire::root::{Holdings, Kind, Name, MAX_PORT_RANGES};
use crate::wire::Status;

/// Most interrupt lines the registry tracks (bits of a word).
pub const MAX_LINES: u32 = 64;

/// Why the registry refuses a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// The sender is no program of the root task.
    NotAProgram,
    /// The line does not exist (or cannot be attached).
    NoSuchLine,
    /// The line is held by another thread (its holder follows).
    LineHeld(ThreadId),
    /// The sender does not hold the line.
    NotHolder,
    /// Some of the ports belong to another program (it follows).
    PortsHeld(ThreadId),
    /// The name is taken.
    NameTaken,
    /// No such name.
    NoSuchName,
    /// A table is full.
    Full,
}

impl Refusal {
    /// The reply status that reports the refusal.
    pub const fn status(self) -> Status {
        match self {
            Refusal::NotAProgram
            | Refusal::LineHeld(_)
            | Refusal::NotHolder
            | Refusal::PortsHeld(_)
            | Refusal::NameTaken => Status::Denied,
            Refusal::NoSuchLine => Status::NoDevice,
            Refusal::NoSuchName => Status::NotFound,
            Refusal::Full => Status::Busy,
        }
    }
}

#[derive(Clone)]
struct Entry {
    id: ThreadId,
    name: Name,
    kind: Kind,
    ports: [Option<IoFpage>; MAX_PORT_RANGES],
}

/// One entry as `LIST` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The entry's thread.
    pub id: ThreadId,
    /// Its name.
    pub name: Name,
    /// What it holds (lines and ports: those of the thread, for either kind).
    pub holdings: Holdings,
}

/// The registry, with room for `N` names.
pub struct Registry<const N: usize> {
    entries: [Option<Entry>; N],
    lines: [ThreadId; MAX_LINES as usize],
}

/// Do the port ranges of `x` and `y` overlap?
fn overlaps(x: IoFpage, y: IoFpage) -> bool {
    let (xs, xe) = (x.port() as u64, x.port() as u64 + x.count());
    let (ys, ye) = (y.port() as u64, y.port() as u64 + y.count());
    xs < ye && ys < xe
}

/// Does `outer` cover all of `inner`?
fn covers(outer: IoFpage, inner: IoFpage) -> bool {
    outer.port() as u64 <= inner.port() as u64
        && inner.port() as u64 + inner.count() <= outer.port() as u64 + outer.count()
}

impl<const N: usize> Registry<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            entries: [const { None }; N],
            lines: [ThreadId::NIL; MAX_LINES as usize],
        }
    }

    fn position(&self, name: &Name) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.name == *name))
    }

    fn program_mut(&mut self, id: ThreadId) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .flatten()
            .find(|e| e.kind == Kind::Program && e.id == id)
    }

    fn insert(&mut self, id: ThreadId, name: Name, kind: Kind) -> Result<(), Refusal> {
        if self.position(&name).is_some() {
            return Err(Refusal::NameTaken);
        }
        let slot = self.entries.iter_mut().find(|e| e.is_none()).ok_or(Refusal::Full)?;
        *slot = Some(Entry {
            id,
            name,
            kind,
            ports: [None; MAX_PORT_RANGES],
        });
        Ok(())
    }

    /// Enters a program the root task is starting: thread `id`, called `name`.
    pub fn add_program(&mut self, id: ThreadId, name: Name) -> Result<(), Refusal> {
        if id.is_nil() || self.is_program(id) {
            return Err(Refusal::NameTaken);
        }
        self.insert(id, name, Kind::Program)
    }

    /// Is `id` a program's thread?
    pub fn is_program(&self, id: ThreadId) -> bool {
        self.entries
            .iter()
            .flatten()
            .any(|e| e.kind == Kind::Program && e.id == id)
    }

    /// Forgets thread `id`: its entries, and the lines it held (returned as a bit set,
    /// for the caller to detach in the kernel).
    pub fn remove(&mut self, id: ThreadId) -> u64 {
        for e in self.entries.iter_mut() {
            if e.as_ref().is_some_and(|e| e.id == id) {
                *e = None;
            }
        }
        let mut held = 0;
        for (n, h) in self.lines.iter_mut().enumerate() {
            if *h == id {
                *h = ThreadId::NIL;
                held |= 1 << n;
            }
        }
        held
    }

    /// `REGISTER`: program `sender` takes the further name `name`.
    pub fn register(&mut self, sender: ThreadId, name: Name) -> Result<(), Refusal> {
        if !self.is_program(sender) {
            return Err(Refusal::NotAProgram);
        }
        self.insert(sender, name, Kind::Service)
    }

    /// `LOOKUP`: the thread called `name`.
    pub fn lookup(&self, name: &Name) -> Result<ThreadId, Refusal> {
        self.position(name)
            .and_then(|i| self.entries[i].as_ref())
            .map(|e| e.id)
            .ok_or(Refusal::NoSuchName)
    }

    /// The lines `id` holds, as a bit set.
    pub fn lines_of(&self, id: ThreadId) -> u64 {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, &h)| h == id && !id.is_nil())
            .fold(0, |m, (n, _)| m | 1 << n)
    }

    /// `LIST`: the `index`-th entry (in table order, skipping empty slots).
    pub fn list(&self, index: u64) -> Option<Listing> {
        let e = self.entries.iter().flatten().nth(usize::try_from(index).ok()?)?;
        let ports = self
            .entries
            .iter()
            .flatten()
            .find(|p| p.kind == Kind::Program && p.id == e.id)
            .map_or([None; MAX_PORT_RANGES], |p| p.ports);
        Some(Listing {
            id: e.id,
            name: e.name.clone(),
            holdings: Holdings {
                kind: e.kind,
                lines: self.lines_of(e.id),
                ports,
            },
        })
    }

    /// The thread holding line `n`, if any.
    pub fn holder(&self, n: u32) -> Option<ThreadId> {
        self.lines.get(n as usize).copied().filter(|h| !h.is_nil())
    }

    /// `ATTACH_IRQ`, the registry's part: may `sender` have line `n` of `lines` (the
    /// KIP's count; line 2, the cascade, never)? Records it as the holder. `Ok(true)`:
    /// newly claimed; `Ok(false)`: the sender held it already.
    pub fn claim_line(&mut self, sender: ThreadId, n: u32, lines: u32) -> Result<bool, Refusal> {
        if n >= lines.min(MAX_LINES) || n == 2 {
            return Err(Refusal::NoSuchLine);
        }
        if !self.is_program(sender) {
            return Err(Refusal::NotAProgram);
        }
        match self.holder(n) {
            Some(h) if h == sender => Ok(false),
            Some(h) => Err(Refusal::LineHeld(h)),
            None => {
                self.lines[n as usize] = sender;
                Ok(true)
            }
        }
    }

    /// `DETACH_IRQ`, the registry's part (and the undo of a claim the kernel refused):
    /// `sender` gives line `n` up.
    pub fn release_line(&mut self, sender: ThreadId, n: u32) -> Result<(), Refusal> {
        match self.holder(n) {
            Some(h) if h == sender => {
                self.lines[n as usize] = ThreadId::NIL;
                Ok(())
            }
            _ if n >= MAX_LINES => Err(Refusal::NoSuchLine),
            _ => Err(Refusal::NotHolder),
        }
    }

    /// The program holding any of the ports of `io`, other than `except`.
    pub fn ports_holder(&self, io: IoFpage, except: ThreadId) -> Option<ThreadId> {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.kind == Kind::Program && e.id != except)
            .find(|e| e.ports.iter().flatten().any(|&p| overlaps(p, io)))
            .map(|e| e.id)
    }

    /// Does program `id` hold all of `io` already?
    pub fn holds_ports(&self, id: ThreadId, io: IoFpage) -> bool {
        self.entries
            .iter()
            .flatten()
            .any(|e| e.kind == Kind::Program && e.id == id && e.ports.iter().flatten().any(|&p| covers(p, io)))
    }

    /// `REQUEST_IO` (and an I/O page fault), the registry's part: may program `sender`
    /// have the ports of `io`? Checks only; [`Registry::grant_ports`] records.
    pub fn check_ports(&self, sender: ThreadId, io: IoFpage) -> Result<(), Refusal> {
        if !self.is_program(sender) {
            return Err(Refusal::NotAProgram);
        }
        if let Some(h) = self.ports_holder(io, sender) {
            return Err(Refusal::PortsHeld(h));
        }
        if self.holds_ports(sender, io) {
            return Ok(());
        }
        let room = self
            .entries
            .iter()
            .flatten()
            .find(|e| e.kind == Kind::Program && e.id == sender)
            .is_some_and(|e| e.ports.iter().any(Option::is_none));
        if room {
            Ok(())
        } else {
            Err(Refusal::Full)
        }
    }

    /// Records that `sender` now has the ports of `io` (after [`Registry::check_ports`]
    /// and the mapping succeeded).
    pub fn grant_ports(&mut self, sender: ThreadId, io: IoFpage) -> Result<(), Refusal> {
        self.check_ports(sender, io)?;
        if self.holds_ports(sender, io) {
            return Ok(());
        }
        let e = self.program_mut(sender).ok_or(Refusal::NotAProgram)?;
        let slot = e.ports.iter_mut().find(|p| p.is_none()).ok_or(Refusal::Full)?;
        *slot = Some(io);
        Ok(())
    }
}

impl<const N: usize> Default for Registry<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::fpage::Rights;

    fn name(s: &str) -> Name {
        Name::try_from(s.as_bytes()).unwrap()
    }

    const A: ThreadId = ThreadId::global(0x100, 1);
    const B: ThreadId = ThreadId::global(0x101, 1);
    const C: ThreadId = ThreadId::global(0x102, 1);

    fn two() -> Registry<4> {
        let mut r = Registry::new();
        r.add_program(A, name("uart")).unwrap();
        r.add_program(B, name("rtc")).unwrap();
        r
    }

    #[test]
    fn names_are_unique_and_looked_up() {
        let mut r = two();
        assert_eq!(r.lookup(&name("uart")), Ok(A));
        assert_eq!(r.lookup(&name("rtc")), Ok(B));
        assert_eq!(r.lookup(&name("nosuch")), Err(Refusal::NoSuchName));
        assert_eq!(r.add_program(C, name("uart")), Err(Refusal::NameTaken));
        assert_eq!(r.register(A, name("console")), Ok(()));
        assert_eq!(r.lookup(&name("console")), Ok(A));
        assert_eq!(r.register(B, name("console")), Err(Refusal::NameTaken));
        assert_eq!(r.register(C, name("other")), Err(Refusal::NotAProgram));
        assert_eq!(r.add_program(C, name("c")), Ok(()));
        assert_eq!(r.add_program(ThreadId::global(9, 1), name("d")), Err(Refusal::Full));
    }

    #[test]
    fn lines_have_one_holder() {
        let mut r = two();
        assert_eq!(r.claim_line(A, 4, 24), Ok(true));
        assert_eq!(r.claim_line(A, 4, 24), Ok(false));
        assert_eq!(r.claim_line(B, 4, 24), Err(Refusal::LineHeld(A)));
        assert_eq!(r.claim_line(C, 8, 24), Err(Refusal::NotAProgram));
        assert_eq!(r.claim_line(B, 24, 24), Err(Refusal::NoSuchLine));
        assert_eq!(r.claim_line(B, 2, 24), Err(Refusal::NoSuchLine));
        assert_eq!(r.claim_line(B, 200, 255), Err(Refusal::NoSuchLine));
        assert_eq!(r.lines_of(A), 1 << 4);
        assert_eq!(r.release_line(B, 4), Err(Refusal::NotHolder));
        assert_eq!(r.release_line(A, 4), Ok(()));
        assert_eq!(r.holder(4), None);
        assert_eq!(r.claim_line(B, 4, 24), Ok(true));
        assert_eq!(r.remove(B), 1 << 4);
        assert_eq!(r.holder(4), None);
        assert_eq!(r.lookup(&name("rtc")), Err(Refusal::NoSuchName));
    }

    #[test]
    fn ports_belong_to_one_program() {
        let mut r = two();
        let com1 = IoFpage::new(0x3F8, 3, Rights::RW);
        let one = IoFpage::new(0x3FC, 0, Rights::RW);
        let cmos = IoFpage::new(0x70, 1, Rights::RW);
        assert_eq!(r.grant_ports(A, com1), Ok(()));
        assert_eq!(r.check_ports(A, one), Ok(()));
        assert_eq!(r.grant_ports(A, one), Ok(()));
        assert_eq!(r.check_ports(B, one), Err(Refusal::PortsHeld(A)));
        assert_eq!(r.check_ports(C, cmos), Err(Refusal::NotAProgram));
        assert_eq!(r.grant_ports(B, cmos), Ok(()));
        let l = r.list(0).unwrap();
        assert_eq!((l.id, l.holdings.ports[0], l.holdings.ports[1]), (A, Some(com1), None));
        for i in 0..3 {
            assert_eq!(r.grant_ports(A, IoFpage::new(0x100 + i * 8, 3, Rights::RW)), Ok(()));
        }
        assert_eq!(
            r.check_ports(A, IoFpage::new(0x200, 3, Rights::RW)),
            Err(Refusal::Full)
        );
    }

    #[test]
    fn list_walks_the_entries() {
        let mut r = two();
        r.register(A, name("console")).unwrap();
        r.claim_line(A, 4, 24).unwrap();
        let names: Vec<_> = (0..).map_while(|i| r.list(i)).map(|l| (l.name.as_str().to_owned(), l.holdings.kind, l.holdings.lines)).collect();
        assert_eq!(
            names,
            [
                ("uart".to_owned(), Kind::Program, 1 << 4),
                ("rtc".to_owned(), Kind::Program, 0),
                ("console".to_owned(), Kind::Service, 1 << 4)
            ]
        );
        assert!(r.list(u64::MAX).is_none());
    }

    #[test]
    fn refusals_have_statuses() {
        assert_eq!(Refusal::LineHeld(A).status(), Status::Denied);
        assert_eq!(Refusal::NoSuchLine.status(), Status::NoDevice);
        assert_eq!(Refusal::NoSuchName.status(), Status::NotFound);
        assert_eq!(Refusal::Full.status(), Status::Busy);
    }
}
