//! Who runs where: the fuzzer's threads, spaces and memory, and the page everyone shares.
//!
//! ```text
//!  space R (root task, privileged)    space U (unprivileged)          spaces A, B (canaries)
//!  ─────────────────────────────      ─────────────────────────       ─────────────────────
//!  slot 0  M    main: pager,          slot 5  FU0  fuzzer             slot 9  CA  caller
//!               supervisor, report    slot 6  FU1  fuzzer             slot 10 CB  echo
//!  slot 1  FP0  fuzzer                slot 7  UV0  victim
//!  slot 2  FP1  fuzzer                slot 8  UV1  victim             pool spaces: made,
//!  slot 3  RV0  victim                KEEP (inactive: holds U)        changed and deleted
//!  slot 4  RV1  victim                                                by the fuzzers
//! ```
//!
//! A *role* names one fixed thread; its UTCB slot is its role number (slots are unique
//! across spaces, so a slot tells the role) and its thread number is `UserBase + 8 +
//! role` (M is the root task, `UserBase + 2`). *Pool* thread numbers (`UserBase + 32 ..`)
//! belong to the fuzzers, which create, modify and delete them at will.
//!
//! Memory: every space runs the root task's image, which M maps into the other spaces as
//! their pager (read and execute), except the areas each space owns writable: its
//! stacks, its string *sink* (receive buffers, overwritten at random), its *scratch*
//! (pages it may map and grant writable to anyone; its own code never touches them) and
//! the [`Shared`] page. Mappings a space receives land in its *sandbox* window, where
//! none of its own memory lives.
//!
//! # Invariants
//! * Only M writes `Shared::ids`; fuzzers write only their own slots of the counters.
//! * A region's owner is the only space that gets it mapped writable (scratch pages also
//!   travel onward writable, by design).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::thread_id::ThreadId;

/// UTCB area of every space (the root task's X.2 placement, also used for the others).
pub const UTCB_AREA: u64 = 0xBF00_0000;
/// log2 size of the UTCB area of U and the canary spaces (16 slots).
pub const CHILD_UTCB_LOG2: u8 = 14;
/// KIP area of every space (the library's KIP pointer stays valid in all of them).
pub const KIP_AREA: u64 = 0xBFF0_0000;
/// Size of a UTCB.
pub const UTCB_SIZE: u64 = 1024;
/// Where received mappings may land: 1 GiB at 1 TiB, the same in every space.
pub const SANDBOX: u64 = 0x100_0000_0000;
/// log2 size of the sandbox.
pub const SANDBOX_LOG2: u8 = 30;

/// Roles (also UTCB slots).
pub const M: usize = 0;
pub const FP0: usize = 1;
pub const FP1: usize = 2;
pub const RV0: usize = 3;
pub const RV1: usize = 4;
pub const FU0: usize = 5;
pub const FU1: usize = 6;
pub const UV0: usize = 7;
pub const UV1: usize = 8;
pub const CA: usize = 9;
pub const CB: usize = 10;
pub const KEEP: usize = 11;
/// Number of roles.
pub const ROLES: usize = 12;

/// The fuzzing threads, by fuzzer index.
pub const FUZZERS: [usize; 4] = [FP0, FP1, FU0, FU1];
/// The victims.
pub const VICTIMS: [usize; 4] = [RV0, RV1, UV0, UV1];

/// Pool thread numbers: `pool_base() .. pool_base() + POOL`.
pub const POOL: usize = 48;

/// The spaces of the fixed threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Space {
    /// The root task's.
    R,
    /// The unprivileged fuzzers'.
    U,
    /// Canary caller's / echo's.
    A,
    B,
}

/// The space of `role`.
pub const fn space_of(role: usize) -> Space {
    match role {
        M | FP0 | FP1 | RV0 | RV1 => Space::R,
        CA => Space::A,
        CB => Space::B,
        _ => Space::U,
    }
}

/// The KIP's UserBase.
pub fn user_base() -> u32 {
    abi::kip::ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32
}

/// Thread number of `role`.
pub fn number_of(role: usize) -> u32 {
    if role == M {
        user_base() + 2
    } else {
        user_base() + 8 + role as u32
    }
}

/// First pool thread number.
pub fn pool_base() -> u32 {
    user_base() + 32
}

/// The user address of the UTCB of `role`.
pub const fn utcb_of(role: usize) -> u64 {
    UTCB_AREA + role as u64 * UTCB_SIZE
}

/// The local id of `role` (within its space).
pub const fn local_of(role: usize) -> ThreadId {
    ThreadId::local(utcb_of(role) + abi::utcb::UTCB_MR0_OFFSET as u64)
}

/// Kinds of system calls the fuzzers make (for counting).
pub const KINDS: usize = 14;
/// Their names, in `Kind` order.
pub const KIND_NAMES: [&str; KINDS] = [
    "Ipc", "Lipc", "ExchangeRegisters", "ThreadControl", "SpaceControl", "Schedule", "ThreadSwitch", "Unmap",
    "SystemClock", "ProcessorControl", "MemoryControl", "KernelInterface", "Null", "StartMessage",
];

/// The page every space maps writable: ids, progress, counters, canary results.
#[repr(C, align(4096))]
pub struct Shared {
    /// Set by M when the fuzzers must stop.
    pub stop: AtomicU64,
    /// The run's seed.
    pub seed: AtomicU64,
    /// `trace_from` argument: calls numbered from here on are printed (0: none).
    pub trace_from: AtomicU64,
    /// The known findings to keep away from (bits of `crate::Finding`).
    pub avoid: AtomicU64,
    /// Calls made by all fuzzers (numbers every call).
    pub total: AtomicU64,
    /// Current global id of each role (0 while it does not exist).
    pub ids: [AtomicU64; ROLES],
    /// Last known global id of each pool number (0: none), as the fuzzers saw their
    /// ThreadControl calls succeed.
    pub pool: [AtomicU64; POOL],
    /// Per fuzzer: calls done, calls to make, restarts, done flag.
    pub progress: [AtomicU64; 4],
    pub quota: [AtomicU64; 4],
    pub restarts: [AtomicU64; 4],
    pub done: [AtomicU64; 4],
    /// Per fuzzer: the kind of the call in progress.
    pub current: [AtomicU64; 4],
    /// Calls and failures per kind.
    pub calls: [AtomicU64; KINDS],
    pub failures: [AtomicU64; KINDS],
    /// Failed IPCs by ErrorCode (code << 1 | phase, 0..16).
    pub ipc_errors: [AtomicU64; 16],
    /// Messages the victims received, per victim.
    pub victim_rx: [AtomicU64; 4],
    /// Canary: round trips, wrong replies, failed IPCs, checksum checks passed / failed,
    /// first wrong reply (sequence number, word index, value), done flag; expected
    /// checksums of A's and B's data; B's wrong requests.
    pub canary_rt: AtomicU64,
    pub canary_bad_reply: AtomicU64,
    pub canary_ipc_errors: AtomicU64,
    pub canary_sum_ok: AtomicU64,
    pub canary_sum_bad: AtomicU64,
    pub canary_first_bad: [AtomicU64; 3],
    pub canary_done: AtomicU64,
    pub canary_sum: [AtomicU64; 2],
    pub canary_bad_request: AtomicU64,
    pub canary_last_error: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Shared>() <= 4096);

/// The shared page.
pub static SHARED: Shared = Shared {
    stop: AtomicU64::new(0),
    seed: AtomicU64::new(0),
    trace_from: AtomicU64::new(0),
    avoid: AtomicU64::new(0),
    total: AtomicU64::new(0),
    ids: [const { AtomicU64::new(0) }; ROLES],
    pool: [const { AtomicU64::new(0) }; POOL],
    progress: [const { AtomicU64::new(0) }; 4],
    quota: [const { AtomicU64::new(0) }; 4],
    restarts: [const { AtomicU64::new(0) }; 4],
    done: [const { AtomicU64::new(0) }; 4],
    current: [const { AtomicU64::new(0) }; 4],
    calls: [const { AtomicU64::new(0) }; KINDS],
    failures: [const { AtomicU64::new(0) }; KINDS],
    ipc_errors: [const { AtomicU64::new(0) }; 16],
    victim_rx: [const { AtomicU64::new(0) }; 4],
    canary_rt: AtomicU64::new(0),
    canary_bad_reply: AtomicU64::new(0),
    canary_ipc_errors: AtomicU64::new(0),
    canary_sum_ok: AtomicU64::new(0),
    canary_sum_bad: AtomicU64::new(0),
    canary_first_bad: [const { AtomicU64::new(0) }; 3],
    canary_done: AtomicU64::new(0),
    canary_sum: [const { AtomicU64::new(0) }; 2],
    canary_bad_request: AtomicU64::new(0),
    canary_last_error: AtomicU64::new(0),
};

/// The current global id of `role`.
pub fn id_of(role: usize) -> ThreadId {
    ThreadId(SHARED.ids[role].load(Ordering::Acquire))
}

/// Whether `n` is the thread number of σ0, σ1, the root task or a role.
pub fn protected_number(n: u32) -> bool {
    let ub = user_base();
    n == ub || n == ub + 1 || n == ub + 2 || (n >= ub + 8 && n < ub + 8 + ROLES as u32)
}

/// Whether `n` is a pool thread number.
pub fn pool_number(n: u32) -> bool {
    n >= pool_base() && n < pool_base() + POOL as u32
}

/// A 4 KiB page of memory.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// Pages per thread stack.
pub const STACK_PAGES: usize = 4;
/// Pages of a sink and of a scratch area.
pub const SINK_PAGES: usize = 4;
pub const SCRATCH_PAGES: usize = 8;
/// Pages of a canary's checksummed data.
pub const CANARY_PAGES: usize = 4;

/// Memory owned by one space (writable there only). Reached through raw pointers only.
#[repr(C)]
pub struct Area {
    pub stacks: [[Page; STACK_PAGES]; 5],
    pub sink: [Page; SINK_PAGES],
    pub scratch: [Page; SCRATCH_PAGES],
}

/// Memory of a canary space.
#[repr(C)]
pub struct CanaryArea {
    pub stack: [Page; STACK_PAGES],
    pub data: [Page; CANARY_PAGES],
}

/// R's area: stacks of FP0, FP1, RV0, RV1 (index = role - 1).
pub static mut R_AREA: Area = Area {
    stacks: [const { [const { Page([0; 4096]) }; STACK_PAGES] }; 5],
    sink: [const { Page([0; 4096]) }; SINK_PAGES],
    scratch: [const { Page([0; 4096]) }; SCRATCH_PAGES],
};

/// U's area: stacks of FU0, FU1, UV0, UV1 (index = role - FU0).
pub static mut U_AREA: Area = Area {
    stacks: [const { [const { Page([0; 4096]) }; STACK_PAGES] }; 5],
    sink: [const { Page([0; 4096]) }; SINK_PAGES],
    scratch: [const { Page([0; 4096]) }; SCRATCH_PAGES],
};

/// The canaries' areas (A, B).
pub static mut CANARY: [CanaryArea; 2] = [const {
    CanaryArea { stack: [const { Page([0; 4096]) }; STACK_PAGES], data: [const { Page([0; 4096]) }; CANARY_PAGES] }
}; 2];

/// A range of user addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    fn of<T>(p: *const T) -> Self {
        let start = p as u64;
        Range { start, end: start + core::mem::size_of::<T>() as u64 }
    }

    /// Whether `a` lies inside.
    pub fn contains(self, a: u64) -> bool {
        a >= self.start && a < self.end
    }

    /// Its size in bytes.
    pub fn len(self) -> u64 {
        self.end - self.start
    }
}

/// The area of `space` (R or U).
pub fn area(space: Space) -> *mut Area {
    match space {
        Space::U => &raw mut U_AREA,
        _ => &raw mut R_AREA,
    }
}

/// The stack of `role` (R, U and canary roles).
pub fn stack_of(role: usize) -> Range {
    let (a, i) = match space_of(role) {
        Space::A => return canary_field(0, false),
        Space::B => return canary_field(1, false),
        Space::R => (area(Space::R), role.wrapping_sub(FP0) % 5),
        Space::U => (area(Space::U), role.wrapping_sub(FU0) % 5),
    };
    // SAFETY: `a` points to a static `Area` and `i < 5`; only the address of the element
    // is computed, no reference is created.
    Range::of(unsafe { &raw const (*a).stacks[i] })
}

/// Canary `k`'s stack or data pages.
fn canary_field(k: usize, data: bool) -> Range {
    let c = (&raw const CANARY).cast::<CanaryArea>().wrapping_add(k & 1);
    // SAFETY: `c` points to element `k & 1` of the static array; only field addresses are
    // computed, no reference is created.
    unsafe {
        if data {
            Range::of(&raw const (*c).data)
        } else {
            Range::of(&raw const (*c).stack)
        }
    }
}

/// The sink of `space` (R or U).
pub fn sink_of(space: Space) -> Range {
    // SAFETY: `area` is a valid pointer to a static; only the address of the field is
    // computed, no reference is created.
    Range::of(unsafe { &raw const (*area(space)).sink })
}

/// The scratch area of `space` (R or U).
pub fn scratch_of(space: Space) -> Range {
    // SAFETY: as in `sink_of`.
    Range::of(unsafe { &raw const (*area(space)).scratch })
}

/// The whole writable area of `space` (R or U).
pub fn area_range(space: Space) -> Range {
    Range::of(area(space) as *const Area)
}

/// The data pages of canary `k` (0 = A, 1 = B).
pub fn canary_data(k: usize) -> Range {
    canary_field(k, true)
}

/// The shared page.
pub fn shared_range() -> Range {
    Range::of(&SHARED as *const Shared)
}

/// The root task's image (from the KIP's root-server descriptor).
pub fn image() -> Range {
    let rs = l4::kip::get().root_server;
    Range { start: rs.low & !0xFFF, end: (rs.high | 0xFFF) + 1 }
}
