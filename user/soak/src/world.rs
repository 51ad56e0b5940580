//! The soak test's threads, spaces, memory and counters.
//!
//! Roles (UTCB slot = role; thread number `UserBase + 8 + role`), one space per group:
//!
//! ```text
//!   0  M        root task: pager of everything, watchdog, report
//!   1  S0       server space SA          2  S1   server space SB
//!   3  C0 4 C1  client space CA          5  C2 6 C3  client space CB   7 C4 8 C5  CC
//!   9  P0       mapper space PA          10 P1   mapper space PB
//!   11 Q0       receiver space QA        12 Q1   receiver space QB
//! ```
//!
//! Every space runs the root task's image (mapped by M, read and execute), its stacks
//! writable, the shared page writable; a mapper also its four pages, which it maps on to
//! its receiver's sandbox window.
//!
//! # Invariants
//! Counters in [`Shared`] are written by one worker each (its own index); M only reads
//! them, except `ids` (M only) and the probe slots (see `workers::mapper`).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::thread;

/// UTCB area and KIP area of every space (the root task's placement).
pub const UTCB_AREA: u64 = 0xBF00_0000;
pub const UTCB_LOG2: u8 = 14;
pub const KIP_AREA: u64 = 0xBFF0_0000;
/// Receivers' mapping window: 1 GiB at 1 TiB.
pub const SANDBOX: u64 = 0x100_0000_0000;
pub const SANDBOX_LOG2: u8 = 30;

pub const M: usize = 0;
pub const SERVERS: [usize; 2] = [1, 2];
pub const CLIENTS: [usize; 6] = [3, 4, 5, 6, 7, 8];
pub const MAPPERS: [usize; 2] = [9, 10];
pub const RECEIVERS: [usize; 2] = [11, 12];
pub const ROLES: usize = 13;

/// Each group of roles shares a space; the first one's id names it.
pub const SPACES: [&[usize]; 9] = [&[1], &[2], &[3, 4], &[5, 6], &[7, 8], &[9], &[10], &[11], &[12]];

/// Which kind of space a role runs in (for messages).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Space {
    Server,
    Client,
    Mapper,
    Receiver,
}

/// Counters and coordination words, on one page every space maps writable.
#[repr(C, align(4096))]
pub struct Shared {
    pub stop: AtomicU64,
    pub seed: AtomicU64,
    pub quota_rt: AtomicU64,
    pub quota_maps: AtomicU64,
    pub ids: [AtomicU64; ROLES],
    pub done: [AtomicU64; ROLES],
    /// Per client: round trips completed, lost (IPC failed), corrupted replies.
    pub rt: [AtomicU64; 6],
    pub lost: [AtomicU64; 6],
    pub corrupted: [AtomicU64; 6],
    /// Per server: requests with wrong contents.
    pub bad_requests: [AtomicU64; 2],
    pub first_bad: [AtomicU64; 3],
    pub last_error: AtomicU64,
    /// Per mapper: cycles, errors, probes made, probes that faulted.
    pub cycles: [AtomicU64; 2],
    pub map_errors: [AtomicU64; 2],
    pub probes: [AtomicU64; 2],
    pub probe_faults: [AtomicU64; 2],
    pub last_map_error: AtomicU64,
    /// Per pair: the receiver's address being probed (0: none) and the mapper's page
    /// behind it (M maps that page when the probe faults).
    pub probe_dest: [AtomicU64; 2],
    pub probe_src: [AtomicU64; 2],
}

const _: () = assert!(core::mem::size_of::<Shared>() <= 4096);

pub static SHARED: Shared = Shared {
    stop: AtomicU64::new(0),
    seed: AtomicU64::new(0),
    quota_rt: AtomicU64::new(0),
    quota_maps: AtomicU64::new(0),
    ids: [const { AtomicU64::new(0) }; ROLES],
    done: [const { AtomicU64::new(0) }; ROLES],
    rt: [const { AtomicU64::new(0) }; 6],
    lost: [const { AtomicU64::new(0) }; 6],
    corrupted: [const { AtomicU64::new(0) }; 6],
    bad_requests: [const { AtomicU64::new(0) }; 2],
    first_bad: [const { AtomicU64::new(0) }; 3],
    last_error: AtomicU64::new(0),
    cycles: [const { AtomicU64::new(0) }; 2],
    map_errors: [const { AtomicU64::new(0) }; 2],
    probes: [const { AtomicU64::new(0) }; 2],
    probe_faults: [const { AtomicU64::new(0) }; 2],
    last_map_error: AtomicU64::new(0),
    probe_dest: [const { AtomicU64::new(0) }; 2],
    probe_src: [const { AtomicU64::new(0) }; 2],
};

/// Sum of a counter array.
pub fn sum(a: &[AtomicU64]) -> u64 {
    a.iter().map(|x| x.load(Ordering::Relaxed)).sum()
}

/// Splits the work: round trips over the clients, cycles over the mappers.
pub fn set_quotas(ipcs: u64, maps: u64) {
    SHARED.quota_rt.store(ipcs, Ordering::Relaxed);
    SHARED.quota_maps.store(maps, Ordering::Relaxed);
}

/// Round trips client `k` makes.
pub fn client_quota(k: usize) -> u64 {
    let q = SHARED.quota_rt.load(Ordering::Relaxed);
    q / 6 + u64::from(k == 0) * (q % 6)
}

/// Cycles mapper `k` makes.
pub fn mapper_quota(k: usize) -> u64 {
    let q = SHARED.quota_maps.load(Ordering::Relaxed);
    q / 2 + u64::from(k == 0) * (q % 2)
}

/// Whether every client and mapper is done.
pub fn all_done() -> bool {
    CLIENTS.iter().chain(MAPPERS.iter()).all(|&r| SHARED.done[r].load(Ordering::Acquire) != 0)
}

/// The current id of `role`.
pub fn id_of(role: usize) -> ThreadId {
    ThreadId(SHARED.ids[role].load(Ordering::Acquire))
}

/// The role of the thread `id`.
pub fn role_of(id: ThreadId) -> Option<usize> {
    (1..ROLES).find(|&r| id_of(r) == id)
}

/// The kind of space of `role`.
pub fn space_of(role: usize) -> Space {
    match role {
        1 | 2 => Space::Server,
        3..=8 => Space::Client,
        9 | 10 => Space::Mapper,
        _ => Space::Receiver,
    }
}

fn user_base() -> u32 {
    abi::kip::ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32
}

fn number_of(role: usize) -> u32 {
    user_base() + 8 + role as u32
}

/// The UTCB of `role` (user address).
pub const fn utcb_of(role: usize) -> u64 {
    UTCB_AREA + role as u64 * 1024
}

/// A 4 KiB page.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// Pages of a worker's stack.
pub const STACK_PAGES: usize = 4;
/// Pages each mapper maps around.
pub const MAP_PAGES: usize = 4;

#[repr(C)]
struct Memory {
    stacks: [[Page; STACK_PAGES]; ROLES],
    map_pages: [[Page; MAP_PAGES]; 2],
}

/// The workers' memory (only reached through raw pointers).
static mut MEMORY: Memory = Memory {
    stacks: [const { [const { Page([0; 4096]) }; STACK_PAGES] }; ROLES],
    map_pages: [const { [const { Page([0; 4096]) }; MAP_PAGES] }; 2],
};

/// `[start, end)` of `role`'s stack.
pub fn stack_of(role: usize) -> (u64, u64) {
    let m = &raw const MEMORY;
    // SAFETY: `m` points to the static; only the element's address is computed.
    let s = unsafe { &raw const (*m).stacks[role % ROLES] } as u64;
    (s, s + (STACK_PAGES * 4096) as u64)
}

/// Address of page `p` of mapper `k`.
pub fn map_page(k: usize, p: usize) -> u64 {
    let m = &raw const MEMORY;
    // SAFETY: as in `stack_of`.
    unsafe { &raw const (*m).map_pages[k & 1][p % MAP_PAGES] as u64 }
}

/// The root task's image.
fn image() -> (u64, u64) {
    let rs = l4::kip::get().root_server;
    (rs.low & !0xFFF, (rs.high | 0xFFF) + 1)
}

/// What M maps for a fault of `role` at `addr`: the source page in the root task and the
/// rights; a fault on the page a receiver is probing counts as that probe's fault.
pub fn fault_policy(role: usize, addr: u64, write: bool) -> Option<(u64, Rights)> {
    let page = addr & !0xFFF;
    let shared = &SHARED as *const Shared as u64;
    let (s0, s1) = stack_of(role);
    if page == shared || (addr >= s0 && addr < s1) {
        return Some((page, Rights::RW));
    }
    if let Some(k) = MAPPERS.iter().position(|&r| r == role) {
        if (0..MAP_PAGES).any(|p| map_page(k, p) == page) {
            return Some((page, Rights::RW));
        }
    }
    if let Some(k) = RECEIVERS.iter().position(|&r| r == role) {
        if SHARED.probe_dest[k].load(Ordering::Acquire) == page && page != 0 {
            SHARED.probe_faults[k].fetch_add(1, Ordering::Relaxed);
            return Some((SHARED.probe_src[k].load(Ordering::Acquire), Rights::RW));
        }
    }
    let (lo, hi) = image();
    (!write && addr >= lo && addr < hi).then_some((page, Rights::RX))
}

/// Creates every space and thread and starts them; an error names the step.
pub fn setup() -> Result<(), &'static str> {
    let me = id_of(M);
    for group in SPACES {
        let first = group[0];
        let id = ThreadId::global(number_of(first), 1);
        thread::create_thread(id, id, me, ThreadId::NIL, None).map_err(|_| "ThreadControl (new space)")?;
        SHARED.ids[first].store(id.raw(), Ordering::Release);
        let kip = Fpage::new(KIP_AREA, 12, Rights::NONE);
        let utcb = Fpage::new(UTCB_AREA, UTCB_LOG2, Rights::NONE);
        l4::space::space_control(id, 0, kip, utcb, ThreadId::ANY).map_err(|_| "SpaceControl")?;
        thread::thread_control(id, id, me, me, Some(utcb_of(first))).map_err(|_| "ThreadControl (activate)")?;
        for &role in &group[1..] {
            let other = ThreadId::global(number_of(role), 1);
            thread::create_thread(other, id, me, me, Some(utcb_of(role))).map_err(|_| "ThreadControl (second thread)")?;
            SHARED.ids[role].store(other.raw(), Ordering::Release);
        }
        for &role in group {
            thread::set_priority(id_of(role), crate::PRIO).map_err(|_| "Schedule")?;
        }
    }
    let order = SERVERS.iter().chain(RECEIVERS.iter()).chain(MAPPERS.iter()).chain(CLIENTS.iter());
    for &role in order {
        let entry: thread::Entry = match space_of(role) {
            Space::Server => crate::workers::server,
            Space::Client => crate::workers::client,
            Space::Mapper => crate::workers::mapper,
            Space::Receiver => crate::workers::receiver,
        };
        let top = stack_of(role).1 as *mut u8;
        // SAFETY: the stack belongs to this role's thread alone, which has not started.
        let (sp, ip) = unsafe { thread::prepare_entry(top, entry, role) };
        thread::start_message(id_of(role), sp, ip, Time::Period { us: 1_000_000 }).map_err(|_| "start message")?;
    }
    Ok(())
}

/// Deletes every worker (their spaces go with them); returns the failures.
pub fn teardown() -> u32 {
    let mut errors = 0;
    for role in 1..ROLES {
        let id = id_of(role);
        if !id.is_nil() && thread::delete_thread(id).is_err() {
            errors += 1;
        }
        SHARED.ids[role].store(0, Ordering::Release);
    }
    errors
}
