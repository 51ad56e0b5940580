//! Kernel invariant checker, compiled in with the `invariants` feature (fuzz builds) and
//! run after every full-path system call (`syscall::dispatch`). A violation is a kernel
//! panic naming the invariant, the thread whose call it followed, and that call.
//!
//! Every check reads only what the modules publish (TCB fields, counts, the earliest
//! deadline); nothing here changes kernel state except the checker's own scratch marks,
//! which are cleared again before it returns.
//!
//! | class            | what must hold                                                    |
//! |------------------|-------------------------------------------------------------------|
//! | thread table     | slot bits, ids and the live count agree; TCBs sit in their slots  |
//! | spaces           | every thread's space counts exactly its threads; the live-space count agrees |
//! | scheduler        | ready-list links are mutual and stay within one priority; every runnable thread but the running one is queued; the running thread is runnable |
//! | IPC send queues  | each queue links live senders that send to its owner, each once; fast-path marks only on plain receivers |
//! | timeout list     | one chain, sorted by deadline, holding exactly the queued threads, whose head is the armed deadline |
//! | kernel memory    | free ≤ pool; the frames in use cover at least the objects that exist |
//!
//! The mapping database has its own checker (`mapdb::Mdb::check_invariants`), which the
//! kernel runs after every mapping operation with `tern.mapdb-check=on`; fuzz boots set it.
//!
//! # Cost
//! One scan of the thread-slot bitmap, which stops once it has found every live thread
//! (the list is kept for all the passes), plus a constant amount of work per live thread
//! and per queued entry: linear in the number of threads, so fuzz builds only (the
//! 10,000-thread stress test would make it quadratic).

use core::fmt;

use crate::kprintln;
use crate::space::Space;
use crate::thread::{self, State, Tcb, MAX_THREADS};
use crate::util::KCell;

/// Checks run so far.
static CHECKS: KCell<u64> = KCell::new(0);

/// Most threads the list of live threads holds; with more, every pass walks the thread
/// table itself.
const LIST_CAPACITY: usize = 8192;

/// The live threads of the current check (the first `LIST.1` entries).
static LIST: KCell<([*mut Tcb; LIST_CAPACITY], usize)> = KCell::new(([core::ptr::null_mut(); LIST_CAPACITY], 0));

/// Scans the slot bitmap for the live threads, stopping when all `thread::count()` are
/// found; false if they do not fit the list.
fn collect() -> bool {
    let want = thread::count();
    let (list, len) = LIST.get_mut();
    *len = 0;
    if want > LIST_CAPACITY {
        return false;
    }
    for (w, &bits) in thread::SLOTS.get().iter().enumerate() {
        if *len == want {
            break;
        }
        let mut b = bits;
        while b != 0 && *len < LIST_CAPACITY {
            let n = (w * 64) as u32 + b.trailing_zeros();
            b &= b - 1;
            list[*len] = thread::tcb_addr(n) as *mut Tcb;
            *len += 1;
        }
    }
    true
}

/// Visits every live thread: from the list when it holds them all, else through the
/// thread table.
fn each(listed: bool, mut f: impl FnMut(&Tcb)) {
    if !listed {
        thread::for_each(|t| f(t));
        return;
    }
    let (list, len) = LIST.get();
    for &p in &list[..*len] {
        // SAFETY: `collect` took `p` from a set slot bit in this check, and the checker
        // changes no thread state; a TCB lives there (thread module invariant). Read only.
        f(unsafe { &*p });
    }
}

/// Scratch marks, one bit per thread slot, all clear between checks.
static MARKS: KCell<[u64; MAX_THREADS / 64]> = KCell::new([0; MAX_THREADS / 64]);

/// Space bookkeeping of one check: an open-addressing table from space object address to
/// the number of threads seen in it. `epoch` tells this check's entries from old ones, so
/// the table is never cleared.
struct SpaceTable {
    epoch: u32,
    entries: [SpaceEntry; SPACE_SLOTS],
}

#[derive(Clone, Copy)]
struct SpaceEntry {
    space: u64,
    epoch: u32,
    threads: u32,
}

/// Slots of the space table (a power of two, above any space count a fuzz run reaches;
/// with more spaces the per-space counts are skipped, see `SpaceTable::count`).
const SPACE_SLOTS: usize = 1024;

static SPACES: KCell<SpaceTable> =
    KCell::new(SpaceTable { epoch: 0, entries: [SpaceEntry { space: 0, epoch: 0, threads: 0 }; SPACE_SLOTS] });

impl SpaceTable {
    /// Counts one thread of `space`; false if the table is full.
    fn count(&mut self, space: u64) -> bool {
        let mut i = ((space >> 12) as usize).wrapping_mul(0x9E37_79B9) % SPACE_SLOTS;
        for _ in 0..SPACE_SLOTS {
            let e = &mut self.entries[i];
            if e.epoch != self.epoch {
                *e = SpaceEntry { space, epoch: self.epoch, threads: 1 };
                return true;
            }
            if e.space == space {
                e.threads += 1;
                return true;
            }
            i = (i + 1) % SPACE_SLOTS;
        }
        false
    }
}

/// Reports a broken invariant with the context of the call it followed, then panics.
#[cold]
#[inline(never)]
fn broken(what: fmt::Arguments) -> ! {
    if let Some(t) = crate::sched::current() {
        let id = t.id.raw();
        let name = t.name();
        let f = t.frame();
        let call = crate::arch::syscall::stub_from_return(f.rcx);
        kprintln!(
            "invariant check {} failed after {:?} by thread {:#x} ({}); registers after the call: rax={:#x} rdi={:#x} rsi={:#x} rdx={:#x} r8={:#x} r9={:#x} r10={:#x}",
            *CHECKS.get(),
            call,
            id,
            name.as_str(),
            f.rax,
            f.rdi,
            f.rsi,
            f.rdx,
            f.r8,
            f.r9,
            f.r10
        );
    }
    panic!("kernel invariant broken: {}", what)
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            broken(format_args!($($arg)*));
        }
    };
}

/// The TCB at `p` if it is a live thread's (in its slot of the thread table). Shared
/// access only: the checker may look at one TCB through several links at once.
fn live(p: *mut Tcb) -> Option<&'static Tcb> {
    let a = p as u64;
    let n = a.wrapping_sub(thread::tcb_addr(0)) / crate::arch::layout::TCB_SLOT;
    if p.is_null() || n >= MAX_THREADS as u64 || thread::tcb_addr(n as u32) != a || !thread::number_in_use(n as u32) {
        return None;
    }
    // SAFETY: the slot is in use, so a TCB lives at its address (thread module invariant);
    // the checker only reads it.
    Some(unsafe { &*p })
}

fn slot(t: &Tcb) -> usize {
    t.id.number() as usize
}

/// Sets the mark of `t`'s slot; returns whether it was already set.
fn mark(t: &Tcb) -> bool {
    let m = MARKS.get_mut();
    let (w, b) = (slot(t) / 64, 1u64 << (slot(t) % 64));
    let was = m[w] & b != 0;
    m[w] |= b;
    was
}

fn unmark(t: &Tcb) {
    MARKS.get_mut()[slot(t) / 64] &= !(1u64 << (slot(t) % 64));
}

/// Checks the kernel's invariants; panics on the first violation.
pub fn after_syscall() {
    let checks = CHECKS.get_mut();
    if *checks == 0 {
        kprintln!("invariants: checker active (thread table, spaces, scheduler, IPC send queues, timeout list, kernel memory), after every system call");
    }
    *checks += 1;
    if checks.is_multiple_of(1 << 20) {
        kprintln!("invariants: {} checks passed", *checks);
    }
    let listed = collect();
    threads_and_spaces(listed);
    send_queues(listed);
    timeouts(listed);
    memory();
}

/// Thread table, per-thread state, scheduler links, spaces.
fn threads_and_spaces(listed: bool) {
    let current = crate::sched::current().map_or(core::ptr::null_mut(), |c| c as *mut Tcb);
    let table = SPACES.get_mut();
    table.epoch = table.epoch.wrapping_add(1).max(1);
    let mut threads = 0usize;
    let mut spaces_ok = true;
    each(listed, |t| {
        threads += 1;
        let id = t.id.raw();
        ensure!(t.id.is_global(), "thread table: slot holds a non-global id {:#x}", id);
        ensure!(
            t as *const Tcb as u64 == thread::tcb_addr(t.id.number()),
            "thread table: TCB of {:#x} is not in slot {}",
            id,
            t.id.number()
        );
        ensure!(!t.space.is_null(), "spaces: thread {:#x} has no space", id);
        spaces_ok &= table.count(t.space as u64);
        ensure!(
            (t.state == State::Inactive) != t.active,
            "thread {:#x}: state {:?} but active = {}",
            id,
            t.state,
            t.active
        );
        if t.fast_wait != 0 {
            ensure!(
                t.state == State::Receiving && !t.halted && !t.timeout_queued && !t.kernel_ipc,
                "fast path: {:#x} marked fast-resumable (mark {}) while {:?}, halted {}, timeout queued {}, kernel IPC {}",
                id,
                t.fast_wait,
                t.state,
                t.halted,
                t.timeout_queued,
                t.kernel_ipc
            );
        }
        transfer_link(t);
        match t.state {
            State::Sending => {
                ensure!(thread::lookup(t.partner).is_some(), "IPC: {:#x} sends to a dead partner {:#x}", id, t.partner.raw());
            }
            State::Receiving => receiver(t),
            _ => ensure!(t.send_next.is_null(), "IPC: {:#x} ({:?}) is linked into a send queue", id, t.state),
        }
        ready_links(t, current);
    });
    ensure!(threads == thread::count(), "thread table: {} live slots found, count says {}", threads, thread::count());
    if let Some(c) = crate::sched::current() {
        ensure!(c.state == State::Ready && !c.halted, "scheduler: the running thread {:#x} is {:?} (halted {})", c.id.raw(), c.state, c.halted);
    }
    if spaces_ok {
        let mut spaces = 0usize;
        for e in table.entries.iter().filter(|e| e.epoch == table.epoch) {
            spaces += 1;
            // SAFETY: a live thread's space outlives it (space module), so the object is
            // live; only its thread count is read.
            let s = unsafe { &*(e.space as *const Space) };
            ensure!(s.threads == e.threads, "spaces: space {:#x} counts {} threads, {} point to it", e.space, s.threads, e.threads);
        }
        ensure!(spaces == crate::space::count(), "spaces: {} spaces have threads, {} exist", spaces, crate::space::count());
        // Port derivation names live spaces only, and the receiver holds what it got.
        let known = |sp: *const Space| table.entries.iter().any(|e| e.epoch == table.epoch && e.space == sp as u64);
        crate::ioport::for_each_edge(|from, to, first, last| {
            ensure!(known(from) && known(to), "I/O ports: an edge {:#x}..={:#x} names a dead space", first, last);
        });
    }
}

/// A string transfer in progress links its two parties both ways; the locked one waits
/// for the copier and nothing else.
fn transfer_link(t: &Tcb) {
    let id = t.id.raw();
    if t.xfer_peer.is_null() {
        ensure!(t.state != State::Locked, "IPC: {:#x} is locked in a transfer without a partner", id);
        return;
    }
    let Some(p) = live(t.xfer_peer) else { broken(format_args!("IPC: {:#x} transfers with a dead thread", id)) };
    ensure!(
        core::ptr::eq(p.xfer_peer, t),
        "IPC: {:#x} transfers with {:#x}, which transfers with someone else",
        id,
        p.id.raw()
    );
    ensure!(t.xfer_copier != p.xfer_copier, "IPC: {:#x} and {:#x} both (or neither) copy", id, p.id.raw());
    ensure!(t.xfer_sender != p.xfer_sender, "IPC: {:#x} and {:#x} both (or neither) send", id, p.id.raw());
    if !t.xfer_copier {
        ensure!(
            t.state == State::Locked || t.help_pending || !t.help_for.is_null(),
            "IPC: {:#x} is the waiting side of a transfer but {:?}",
            id,
            t.state
        );
        ensure!(
            t.state != State::Locked || !t.timeout_queued,
            "IPC: {:#x} waits for a transfer with an IPC timeout queued",
            id
        );
    }
}

/// A thread waiting to receive waits for someone who can still send.
fn receiver(t: &Tcb) {
    let p = t.partner;
    if p.is_any() || p.is_any_local() || t.starting || crate::irq::line_of(p).is_some() {
        return;
    }
    ensure!(
        thread::lookup(p).is_some(),
        "IPC: {:#x} waits to receive from {:#x}, which does not exist (it would wait forever)",
        t.id.raw(),
        p.raw()
    );
}

/// Ready-list links of one thread (the lists' heads are the scheduler's own).
fn ready_links(t: &Tcb, current: *mut Tcb) {
    let id = t.id.raw();
    let me = t as *const Tcb as *mut Tcb;
    if t.next.is_null() || t.prev.is_null() {
        ensure!(t.next.is_null() && t.prev.is_null(), "scheduler: {:#x} has one ready-list link only", id);
        let runnable = t.state == State::Ready && !t.halted;
        ensure!(!runnable || me == current, "scheduler: {:#x} is runnable but on no ready list (it would never run)", id);
        return;
    }
    if t.next == me || t.prev == me {
        ensure!(t.next == me && t.prev == me, "scheduler: {:#x} links to itself one way only", id);
        return;
    }
    let prio = t.prio;
    let Some(n) = live(t.next) else { broken(format_args!("scheduler: {:#x} links to a dead thread on its ready list", id)) };
    ensure!(n.prev == me, "scheduler: ready list broken after {:#x} (next's prev does not point back)", id);
    ensure!(n.prio == prio, "scheduler: {:#x} (priority {}) links to {:#x} (priority {}) on its ready list", id, prio, n.id.raw(), n.prio);
    let Some(p) = live(t.prev) else { broken(format_args!("scheduler: {:#x} links back to a dead thread on its ready list", id)) };
    ensure!(p.next == me, "scheduler: ready list broken before {:#x} (prev's next does not point here)", id);
}

/// Send queues: every queued sender is live, sends to the queue's owner, and is queued
/// once.
fn send_queues(listed: bool) {
    each(listed, |owner| {
        let mut p = owner.send_queue;
        while !p.is_null() {
            let Some(s) = live(p) else {
                broken(format_args!("IPC: the send queue of {:#x} links a dead thread", owner.id.raw()))
            };
            ensure!(!mark(s), "IPC: {:#x} is queued twice (seen again in the queue of {:#x})", s.id.raw(), owner.id.raw());
            ensure!(
                s.state == State::Sending,
                "IPC: {:#x} is in the send queue of {:#x} while {:?} (partner {:#x}, kernel IPC {}, help pending {}, halted {}, timeout queued {})",
                s.id.raw(),
                owner.id.raw(),
                s.state,
                s.partner.raw(),
                s.kernel_ipc,
                s.help_pending,
                s.halted,
                s.timeout_queued
            );
            ensure!(
                s.partner == owner.id,
                "IPC: {:#x} is in the send queue of {:#x} but sends to {:#x}",
                s.id.raw(),
                owner.id.raw(),
                s.partner.raw()
            );
            p = s.send_next;
        }
    });
    // Clear the marks (the same walk; the queues are known to be well formed now).
    each(listed, |owner| {
        let mut p = owner.send_queue;
        while let Some(s) = live(p) {
            unmark(s);
            p = s.send_next;
        }
    });
}

/// The timeout list, seen through its links: the queued threads form one chain sorted by
/// deadline, starting at the deadline the timer module reports as the earliest.
fn timeouts(listed: bool) {
    let mut queued = 0usize;
    let mut linked = 0usize;
    each(listed, |t| {
        if !t.timeout_queued {
            ensure!(t.timeout_next.is_null(), "timeouts: {:#x} is not queued but links to another thread", t.id.raw());
            return;
        }
        queued += 1;
        ensure!(
            !matches!(t.state, State::Inactive | State::Faulted),
            "timeouts: {:#x} waits for a timeout while {:?}",
            t.id.raw(),
            t.state
        );
        ensure!(
            t.state != State::Ready || t.help_pending,
            "timeouts: {:#x} is runnable but still on the timeout list",
            t.id.raw()
        );
        if t.timeout_next.is_null() {
            return;
        }
        ensure!(!core::ptr::eq(t.timeout_next, t), "timeouts: {:#x} links to itself", t.id.raw());
        let Some(n) = live(t.timeout_next) else { broken(format_args!("timeouts: {:#x} links to a dead thread", t.id.raw())) };
        ensure!(n.timeout_queued, "timeouts: {:#x} links to {:#x}, which is not queued", t.id.raw(), n.id.raw());
        ensure!(
            n.wakeup_at >= t.wakeup_at,
            "timeouts: list not sorted: {:#x} (at {} µs) before {:#x} (at {} µs)",
            t.id.raw(),
            t.wakeup_at,
            n.id.raw(),
            n.wakeup_at
        );
        ensure!(!mark(n), "timeouts: {:#x} has two predecessors", n.id.raw());
        linked += 1;
    });
    // Exactly one queued thread has no predecessor: the head. Find it and walk the chain.
    let mut head: Option<*mut Tcb> = None;
    let mut heads = 0usize;
    each(listed, |t| {
        if t.timeout_queued && MARKS.get()[slot(t) / 64] & (1 << (slot(t) % 64)) == 0 {
            heads += 1;
            head = Some(t as *const Tcb as *mut Tcb);
        }
    });
    each(listed, |t| {
        if t.timeout_queued {
            unmark(t);
        }
    });
    if queued == 0 {
        ensure!(crate::timeout::next_deadline().is_none(), "timeouts: no thread is queued but a deadline is pending");
        return;
    }
    ensure!(heads == 1 && linked + 1 == queued, "timeouts: {} queued threads form {} chains ({} links)", queued, heads, linked);
    let Some(h) = head.and_then(live) else { broken(format_args!("timeouts: no head")) };
    ensure!(
        crate::timeout::next_deadline() == Some(h.wakeup_at),
        "timeouts: the earliest queued deadline is {} µs ({:#x}) but the list starts at {:?}",
        h.wakeup_at,
        h.id.raw(),
        crate::timeout::next_deadline()
    );
    let mut walked = 0usize;
    let mut p = h as *const Tcb as *mut Tcb;
    while let Some(t) = live(p) {
        walked += 1;
        if walked > queued {
            break;
        }
        p = t.timeout_next;
    }
    ensure!(walked == queued, "timeouts: the chain from the head reaches {} of {} queued threads", walked, queued);
}

/// Kernel memory accounting: the pool is consistent and covers what exists.
fn memory() {
    let (free, total) = (crate::kmem::free_frames(), crate::kmem::total_frames());
    ensure!(free <= total, "kernel memory: {} free frames in a pool of {}", free, total);
    let used = total - free;
    let (nodes, slab_frames) = crate::mapping::stats();
    // Each thread: stack (2) and TCB page; each space: object, PML4 and its shadow; the
    // KIP; the mapping database's slab frames. Page tables, UTCB pages and I/O bitmaps
    // come on top.
    let objects = 3 * thread::count() + 3 * crate::space::count() + 1 + slab_frames;
    ensure!(
        used >= objects,
        "kernel memory: {} frames in use, but {} threads, {} spaces and {} slab frames need at least {}",
        used,
        thread::count(),
        crate::space::count(),
        slab_frames,
        objects
    );
    ensure!(
        nodes <= slab_frames * (crate::kmem::FRAME_SIZE as usize / 8),
        "mapping database: {} live nodes in {} slab frames",
        nodes,
        slab_frames
    );
}
