//! σ0's bookkeeping: what kind each physical range is (from the KIP memory descriptors),
//! who got which memory and which I/O ports, and the rules for giving them out.
//!
//! | kind (KIP)                      | given to                                           |
//! |---------------------------------|----------------------------------------------------|
//! | conventional                    | the first client asking (by address, "anywhere", or by faulting on it) |
//! | dedicated, boot loader, arch    | the first client asking for it by address          |
//! | shared (device memory)          | any client asking for it by address or faulting on it, any number of times |
//! | reserved (the kernel's)         | nobody                                             |
//! | not described (non-existent)    | nobody                                             |
//!
//! A client may ask again for what it owns (idempotent). The privileged clients — the
//! root task and σ1 — may also get memory already given to another client (never σ0's
//! own, never the kernel's). σ0's image belongs to σ0, the root task's and σ1's images to
//! them from the start. σ0's KIP and UTCB areas are no memory σ0 can give: in σ0's
//! idempotent space those addresses hold kernel pages.
//!
//! Everything is kept as ranges, so the tables stay small whatever the memory size.

use abi::fpage::IoFpage;
use abi::kip::{Kip, MemKind};
use abi::thread_id::ThreadId;

use crate::ranges::RangeMap;

/// What a physical range is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Conventional,
    Reserved,
    Dedicated,
    Shared,
    /// Boot-loader specific, with its subtype (2: root-server image, 3: boot module).
    BootLoader(u8),
    /// Architecture specific, with its subtype (the E820 type on a PC).
    Arch(u8),
}

/// Who has a range: a thread's raw global id.
type Owner = u64;

/// Ports the kernel drives itself: the 8259 PICs (kept masked) and the PIT (its clock
/// calibration). The serial ports are given out: a user-level driver may own COM1 (the
/// kernel's console only writes to it).
const KERNEL_PORTS: [(u64, u64); 3] = [(0x20, 0x22), (0x40, 0x44), (0xA0, 0xA2)];

/// σ0's view of memory and ports.
pub struct Memory {
    kinds: RangeMap<Kind, 128>,
    owners: RangeMap<Owner, 1024>,
    ports: RangeMap<Owner, 128>,
    sigma0: ThreadId,
    sigma1: ThreadId,
    root: ThreadId,
}

/// Page size σ0 works in.
const PAGE: u64 = 4096;

const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

impl Memory {
    /// An empty view; [`Memory::init`] fills it.
    pub const fn new() -> Self {
        Self {
            kinds: RangeMap::new(Kind::Reserved),
            owners: RangeMap::new(0),
            ports: RangeMap::new(0),
            sigma0: ThreadId::NIL,
            sigma1: ThreadId::NIL,
            root: ThreadId::NIL,
        }
    }

    /// Reads the KIP: memory descriptors (later ones override earlier ones; virtual
    /// ones are not about physical memory) and the root servers' images; σ0's own areas
    /// (`kip_area`, `utcb_area` as `[start, end)`) become σ0's.
    pub fn init(&mut self, kip: &Kip, me: ThreadId, kip_area: (u64, u64), utcb_area: (u64, u64)) {
        let ti = abi::kip::ThreadInfo::decode(kip.thread_info);
        self.sigma0 = me;
        self.sigma1 = ThreadId::global(ti.user_base as u32 + 1, 1);
        self.root = ThreadId::global(ti.user_base as u32 + 2, 1);
        let mut i = 0;
        while let Some(d) = kip.mem_desc(i) {
            i += 1;
            let Ok(d) = d else { continue };
            if d.virtual_ {
                continue;
            }
            let start = d.low & !(PAGE - 1);
            let end = align_up(d.high.saturating_add(1).min(u64::MAX - PAGE), PAGE);
            let kind = match d.kind {
                MemKind::Undefined => None,
                MemKind::Conventional => Some(Kind::Conventional),
                MemKind::Reserved => Some(Kind::Reserved),
                MemKind::Dedicated => Some(Kind::Dedicated),
                MemKind::Shared => Some(Kind::Shared),
                MemKind::BootLoader => Some(Kind::BootLoader(d.subtype)),
                MemKind::Arch => Some(Kind::Arch(d.subtype)),
            };
            let _ = self.kinds.set(start, end, kind);
        }
        let image = |rs: abi::kip::RootServer| (rs.low & !(PAGE - 1), align_up(rs.high, PAGE));
        for (range, owner) in [
            (image(kip.sigma0), me),
            (image(kip.root_server), self.root),
            (image(kip.sigma1), self.sigma1),
        ] {
            let _ = self.owners.set(range.0, range.1, Some(owner.raw()));
        }
        let _ = self.owners.set(kip_area.0, kip_area.1, Some(me.raw()));
        let _ = self.owners.set(utcb_area.0, utcb_area.1, Some(me.raw()));
        for (s, e) in KERNEL_PORTS {
            let _ = self.ports.set(s, e, Some(me.raw()));
        }
    }

    /// Whether `client` is the root task.
    pub fn is_root(&self, client: ThreadId) -> bool {
        client == self.root
    }

    /// The root task and σ1.
    fn privileged(&self, client: ThreadId) -> bool {
        client == self.root || client == self.sigma1
    }

    /// Whether `client` may have a range owned by `owner` (`None`: nobody yet).
    fn may_have(&self, client: ThreadId, owner: Option<Owner>) -> bool {
        match owner {
            None => true,
            Some(o) if o == client.raw() => true,
            Some(o) if o == self.sigma0.raw() => false,
            Some(_) => self.privileged(client),
        }
    }

    /// Gives `[base, base + 2^log2)` to `client` if every part of it may be given (see
    /// the module doc); `only_conventional` restricts unowned, unshared parts to
    /// conventional memory (page faults). Records the new owner of unowned parts.
    pub fn request(
        &mut self,
        client: ThreadId,
        base: u64,
        log2: u8,
        only_conventional: bool,
    ) -> bool {
        if !(12..64).contains(&log2) || base & ((1u64 << log2) - 1) != 0 {
            return false;
        }
        let Some(end) = base.checked_add(1u64 << log2) else {
            return false;
        };
        // Every part must exist and be of a kind that is given out.
        let mut pieces = 0usize;
        let kinds_ok = self.kinds.pieces(base, end, |s, e, kind| match kind {
            None | Some(Kind::Reserved) => false,
            // Page faults included, as Pistachio's σ0 serves them.
            Some(Kind::Shared) => true,
            Some(k) => self.owners.pieces(s, e, |_, _, owner| {
                pieces += 1;
                match owner {
                    None => k == Kind::Conventional || !only_conventional,
                    o => self.may_have(client, o),
                }
            }),
        });
        if !kinds_ok || self.owners.room() < 2 * pieces + 2 {
            return false;
        }
        // Record: unowned, non-shared parts become the client's.
        let mut todo = [(0u64, 0u64); 16];
        let mut n = 0;
        let mut overflow = false;
        self.kinds.pieces(base, end, |s, e, kind| {
            if kind != Some(Kind::Shared) {
                self.owners.pieces(s, e, |ps, pe, owner| {
                    if owner.is_none() {
                        if n < todo.len() {
                            todo[n] = (ps, pe);
                            n += 1;
                        } else {
                            overflow = true;
                        }
                    }
                    true
                });
            }
            true
        });
        if overflow {
            return false;
        }
        for &(s, e) in &todo[..n] {
            if self.owners.set(s, e, Some(client.raw())).is_err() {
                return false;
            }
        }
        true
    }

    /// Gives `client` free conventional memory of `2^log2` bytes, aligned to its size;
    /// returns its address.
    pub fn request_any(&mut self, client: ThreadId, log2: u8) -> Option<u64> {
        if !(12..48).contains(&log2) {
            return None;
        }
        let size = 1u64 << log2;
        let mut found = None;
        for r in self.kinds.iter() {
            if r.value != Kind::Conventional {
                continue;
            }
            self.owners.pieces(r.start, r.end, |s, e, owner| {
                if owner.is_none() {
                    let a = align_up(s, size);
                    if a >= s && a.checked_add(size).is_some_and(|x| x <= e) {
                        found = Some(a);
                        return false;
                    }
                }
                true
            });
            if found.is_some() {
                break;
            }
        }
        let a = found?;
        self.owners.set(a, a + size, Some(client.raw())).ok()?;
        Some(a)
    }

    /// Gives `client` the ports of `io` if none is the kernel's and none is another
    /// client's (unless `client` is privileged).
    pub fn request_ports(&mut self, client: ThreadId, io: IoFpage) -> bool {
        let (s, e) = (io.port() as u64, io.port() as u64 + io.count());
        if !self
            .ports
            .pieces(s, e, |_, _, owner| self.may_have(client, owner))
            || self.ports.room() < 4
        {
            return false;
        }
        // Unowned parts become the client's (a privileged client taking another's ports
        // leaves them recorded as the other's).
        let mut todo = [(0u64, 0u64); 8];
        let mut n = 0;
        let fits = self.ports.pieces(s, e, |ps, pe, owner| {
            if owner.is_none() {
                if n == todo.len() {
                    return false;
                }
                todo[n] = (ps, pe);
                n += 1;
            }
            true
        });
        fits && todo[..n]
            .iter()
            .all(|&(ps, pe)| self.ports.set(ps, pe, Some(client.raw())).is_ok())
    }

    /// Prints the tables (extended protocol).
    pub fn dump(&self) {
        crate::say!("sigma0: memory kinds:");
        for r in self.kinds.iter() {
            crate::say!("sigma0:   {:#014x}-{:#014x} {:?}", r.start, r.end, r.value);
        }
        crate::say!("sigma0: owners:");
        for r in self.owners.iter() {
            crate::say!("sigma0:   {:#014x}-{:#014x} {:#x}", r.start, r.end, r.value);
        }
        crate::say!("sigma0: ports:");
        for r in self.ports.iter() {
            crate::say!("sigma0:   {:#06x}-{:#06x} {:#x}", r.start, r.end, r.value);
        }
    }

    /// Bytes of conventional memory not given to anybody yet.
    pub fn free_conventional(&self) -> u64 {
        let mut total = 0;
        for r in self.kinds.iter().filter(|r| r.value == Kind::Conventional) {
            self.owners.pieces(r.start, r.end, |s, e, o| {
                if o.is_none() {
                    total += e - s;
                }
                true
            });
        }
        total
    }
}
