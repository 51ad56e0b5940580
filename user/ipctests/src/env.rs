//! The threads and spaces the checks run on.
//!
//! * **Threads of the root space** ([`Thread::local`]): created with ThreadControl, a UTCB
//!   slot of the root task's UTCB area and a stack from [`STACKS`], started with
//!   ExchangeRegisters.
//! * **Child spaces** ([`Space`]): a new address space running the root task's own
//!   image. Their threads are paged by the *pager thread*, which maps each faulting page
//!   of the image 1:1 from the root space, so a child thread runs the same code and
//!   shares the root task's data pages (that is how it reports results: through the
//!   same statics). Child threads are started with the X.2 start message, by the pager
//!   thread (or by the main thread where a check makes it their pager).
//! * **The pager thread**: answers image faults of child threads; records every other
//!   fault in the fault log ([`faults`]) without answering it (the faulting thread
//!   stays blocked until its check deletes it). It also starts child threads on request.
//!
//! Every [`Thread`] is deleted when dropped, so a failing check leaves nothing behind.
//!
//! # Invariants
//! * A stack or UTCB slot is marked busy from the creation of the thread using it until
//!   that thread has been deleted; if deletion fails both stay busy for good.
//! * `JOB_FN[k]` and `JOB_ARG[k]` are written before the thread on stack `k` starts and
//!   are not changed while it runs.
//! * The fault log is written only by the pager thread.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::kip::ThreadInfo;
use abi::msg::{label, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::println;

use crate::harness::{Context, Why};
use crate::wire::{self, ms};

/// Priority of the main thread and of every check thread unless a check says otherwise.
pub const PRIO: u8 = 100;
/// Priority of the pager thread (above everyone, so faults are served at once).
pub const PAGER_PRIO: u8 = 120;

/// The root task's UTCB area (X.2 root-server placement): 256 slots of 1 KiB.
const ROOT_UTCB_AREA: u64 = 0xBF00_0000;
/// Root UTCB slots usable by threads: 1..=ROOT_SLOTS (slot 0 is the main thread's).
const ROOT_SLOTS: usize = 254;
/// A root UTCB slot no thread ever uses (its local id names nobody).
pub const UNUSED_ROOT_SLOT: usize = 255;
/// Size of a UTCB.
const UTCB_SIZE: u64 = 1024;

/// Where a child space's UTCB area and KIP go (the root task's own placement: the
/// library's KIP pointer, shared with the children, stays valid).
const CHILD_UTCB_AREA: u64 = 0xBF00_0000;
/// log2 of a child's UTCB area: 16 slots.
const CHILD_UTCB_LOG2: u8 = 14;
/// Slots of a child's UTCB area.
const CHILD_SLOTS: usize = 16;
const CHILD_KIP_AREA: u64 = 0xBFF0_0000;

/// Number of thread stacks.
pub const STACKS: usize = 32;
/// Size of each stack.
const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; STACK_SIZE]);

/// The stacks (only reached through raw pointers, by [`Thread::entry`]).
static mut STACK_MEM: [Stack; STACKS] = [const { Stack([0; STACK_SIZE]) }; STACKS];
static STACK_BUSY: [AtomicBool; STACKS] = [const { AtomicBool::new(false) }; STACKS];
static SLOT_BUSY: [AtomicBool; ROOT_SLOTS] = [const { AtomicBool::new(false) }; ROOT_SLOTS];
static JOB_FN: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];
static JOB_ARG: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];
static JOB_DONE: [AtomicBool; STACKS] = [const { AtomicBool::new(false) }; STACKS];

static MAIN: AtomicU64 = AtomicU64::new(0);
static PAGER: AtomicU64 = AtomicU64::new(0);
static NEXT_NUMBER: AtomicU32 = AtomicU32::new(0);

/// The main thread's global id.
pub fn main_id() -> ThreadId {
    ThreadId(MAIN.load(Ordering::Acquire))
}

/// The main thread's local id (root UTCB slot 0).
pub fn main_local() -> ThreadId {
    root_local_id(0)
}

/// The pager thread's global id.
pub fn pager_id() -> ThreadId {
    ThreadId(PAGER.load(Ordering::Acquire))
}

fn thread_info() -> ThreadInfo {
    ThreadInfo::decode(l4::kip::get().thread_info)
}

/// A global id no thread has had: thread numbers from UserBase + 100 up, version 1.
pub fn fresh_id() -> ThreadId {
    let n = NEXT_NUMBER.fetch_add(1, Ordering::Relaxed);
    ThreadId::global(thread_info().user_base as u32 + 100 + n, 1)
}

/// The local id of the root thread with UTCB slot `slot`.
pub const fn root_local_id(slot: usize) -> ThreadId {
    ThreadId::local(ROOT_UTCB_AREA + slot as u64 * UTCB_SIZE + abi::utcb::UTCB_MR0_OFFSET as u64)
}

/// The root task's image: `(first, last)` byte addresses, from the KIP.
pub fn image() -> (u64, u64) {
    let rs = l4::kip::get().root_server;
    (rs.low, rs.high)
}

/// Is `addr` inside the root task's image?
pub fn in_image(addr: u64) -> bool {
    let (low, high) = image();
    (low..=high).contains(&addr)
}

fn claim(flags: &[AtomicBool]) -> Option<usize> {
    flags.iter().position(|f| {
        f.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Where a thread lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Home {
    /// The root space, UTCB slot `k` (1..=ROOT_SLOTS).
    Root(usize),
    /// A child space.
    Child,
}

/// A thread made by a check; deleted when dropped.
pub struct Thread {
    id: ThreadId,
    local: ThreadId,
    stack: usize,
    home: Home,
    deleted: bool,
}

impl Thread {
    /// Creates a thread of the root space (waiting for its start) with priority `prio`,
    /// paged by the pager thread.
    pub fn local(prio: u8) -> Result<Self, Why> {
        let pager = match pager_id() {
            ThreadId::NIL => main_id(),
            p => p,
        };
        Self::local_paged_by(prio, pager)
    }

    /// Creates a thread of the root space (waiting for its start message from `pager`)
    /// with priority `prio`.
    pub fn local_paged_by(prio: u8, pager: ThreadId) -> Result<Self, Why> {
        let stack = claim(&STACK_BUSY).ok_or_else(|| Why::new(format_args!("no free stack")))?;
        let Some(s) = claim(&SLOT_BUSY) else {
            STACK_BUSY[stack].store(false, Ordering::Release);
            return Err(Why::new(format_args!("no free UTCB slot")));
        };
        let slot = s + 1;
        let id = fresh_id();
        let utcb = ROOT_UTCB_AREA + slot as u64 * UTCB_SIZE;
        if let Err(e) = l4::thread::create_thread(id, main_id(), main_id(), pager, Some(utcb)) {
            STACK_BUSY[stack].store(false, Ordering::Release);
            SLOT_BUSY[s].store(false, Ordering::Release);
            return Err(Why::new(format_args!(
                "ThreadControl (create {:?}): {:?}",
                id, e
            )));
        }
        let t = Thread {
            id,
            local: root_local_id(slot),
            stack,
            home: Home::Root(slot),
            deleted: false,
        };
        l4::thread::set_priority(id, prio).ctx("Schedule (priority)")?;
        Ok(t)
    }

    /// Creates a thread of the root space running `f(arg)` at priority `prio`.
    pub fn spawn(f: fn(usize), arg: usize, prio: u8) -> Result<Self, Why> {
        let t = Self::local(prio)?;
        let (sp, ip) = t.entry(f, arg);
        l4::thread::start(t.id, sp, ip).ctx("ExchangeRegisters (start)")?;
        Ok(t)
    }

    /// The global id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The local id (in its own space).
    pub fn local_id(&self) -> ThreadId {
        self.local
    }

    /// Prepares the thread's stack for `f(arg)`; returns the `(sp, ip)` to start with.
    pub fn entry(&self, f: fn(usize), arg: usize) -> (u64, u64) {
        JOB_FN[self.stack].store(f as usize, Ordering::Release);
        JOB_ARG[self.stack].store(arg, Ordering::Release);
        JOB_DONE[self.stack].store(false, Ordering::Release);
        // SAFETY: one past the end of stack `self.stack`, computed without a reference.
        let top =
            unsafe { (core::ptr::addr_of_mut!(STACK_MEM[self.stack]) as *mut u8).add(STACK_SIZE) };
        // SAFETY: the stack is this thread's (busy flag) and the thread has not started (or
        // starts over); nothing else writes the stack until the thread is deleted.
        unsafe { l4::thread::prepare_entry(top, thread_entry, self.stack) }
    }

    /// Has `f` returned?
    pub fn done(&self) -> bool {
        JOB_DONE[self.stack].load(Ordering::Acquire)
    }

    /// Waits at most `timeout_us` for `f` to return.
    pub fn wait_done(&self, timeout_us: u64) -> bool {
        crate::harness::wait_until(timeout_us, || self.done())
    }

    /// Deletes the thread now (dropping it later does nothing more).
    pub fn delete(&mut self) -> Result<(), l4::Error> {
        if self.deleted {
            return Ok(());
        }
        l4::thread::delete_thread(self.id)?;
        self.deleted = true;
        STACK_BUSY[self.stack].store(false, Ordering::Release);
        if let Home::Root(slot) = self.home {
            SLOT_BUSY[slot - 1].store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Records that someone else deleted the thread (a check's deleter thread): checks
    /// that the id is gone, then frees the stack and slot. Returns whether it was gone.
    pub fn deleted_elsewhere(&mut self) -> bool {
        if self.deleted {
            return true;
        }
        // Schedule on a deleted thread: state "dead", or the call fails (invalid thread).
        use abi::syscall::ThreadState as S;
        if !matches!(state(self.id), S::Dead | S::Error) {
            return false;
        }
        self.deleted = true;
        STACK_BUSY[self.stack].store(false, Ordering::Release);
        if let Home::Root(slot) = self.home {
            SLOT_BUSY[slot - 1].store(false, Ordering::Release);
        }
        true
    }

    /// Keeps the thread for the rest of the program (it is never deleted).
    pub fn keep(mut self) {
        self.deleted = true;
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            println!(
                "ipctests: cannot delete thread {:?} ({:?}); its stack stays reserved",
                self.id, e
            );
        }
    }
}

/// Where every thread starts (through the library's trampoline): runs its job, marks it
/// done and parks.
extern "C" fn thread_entry(stack: usize) -> ! {
    let f = JOB_FN[stack].load(Ordering::Acquire);
    let arg = JOB_ARG[stack].load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: `JOB_FN[stack]` holds a `fn(usize)` stored by `Thread::entry` before the
        // thread started (module invariant); fn pointers and `usize` have the same size.
        let f = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(arg);
    }
    JOB_DONE[stack].store(true, Ordering::Release);
    l4::thread::park()
}

/// A child address space running the root task's image, paged by the pager thread.
///
/// The space is made with an inactive first thread, its *anchor*, that only names the
/// space and keeps it alive: a space ends with its last thread, and the threads made by
/// [`Space::thread`] come and go (each is deleted when dropped). Dropping the `Space`
/// deletes the anchor.
pub struct Space {
    first: ThreadId,
    next_slot: usize,
}

impl Space {
    /// A new space (KIP and UTCB areas as the root task's) with no redirector.
    pub fn new() -> Result<Self, Why> {
        let first = fresh_id();
        l4::thread::create_thread(first, first, main_id(), ThreadId::NIL, None)
            .ctx("ThreadControl (new space)")?;
        let s = Space {
            first,
            next_slot: 0,
        };
        l4::space::space_control(
            first,
            0,
            Fpage::new(CHILD_KIP_AREA, 12, Rights::NONE),
            Fpage::new(CHILD_UTCB_AREA, CHILD_UTCB_LOG2, Rights::NONE),
            ThreadId::ANY,
        )
        .ctx("SpaceControl (child space)")?;
        Ok(s)
    }

    /// Sets the space's redirector (ANY: none).
    pub fn set_redirector(&self, redirector: ThreadId) -> Result<(), Why> {
        l4::space::space_control(
            self.first,
            0,
            Fpage::new(CHILD_KIP_AREA, 12, Rights::NONE),
            Fpage::new(CHILD_UTCB_AREA, CHILD_UTCB_LOG2, Rights::NONE),
            redirector,
        )
        .map(|_| ())
        .ctx("SpaceControl (redirector)")
    }

    /// Creates a thread in the space (waiting for its start message from the pager
    /// thread), priority `prio`.
    pub fn thread(&mut self, prio: u8) -> Result<Thread, Why> {
        self.thread_paged_by(prio, pager_id())
    }

    /// Creates a thread in the space paged by `pager` (and waiting for its start message
    /// from it), priority `prio`.
    pub fn thread_paged_by(&mut self, prio: u8, pager: ThreadId) -> Result<Thread, Why> {
        if self.next_slot >= CHILD_SLOTS {
            return Err(Why::new(format_args!("child space full")));
        }
        let stack = claim(&STACK_BUSY).ok_or_else(|| Why::new(format_args!("no free stack")))?;
        let slot = self.next_slot;
        let utcb = CHILD_UTCB_AREA + slot as u64 * UTCB_SIZE;
        let id = fresh_id();
        let r = l4::thread::create_thread(id, self.first, main_id(), pager, Some(utcb));
        if let Err(e) = r {
            STACK_BUSY[stack].store(false, Ordering::Release);
            return Err(Why::new(format_args!(
                "ThreadControl (thread {:?} in a child space): {:?}",
                id, e
            )));
        }
        self.next_slot += 1;
        let t = Thread {
            id,
            local: ThreadId::local(utcb + abi::utcb::UTCB_MR0_OFFSET as u64),
            stack,
            home: Home::Child,
            deleted: false,
        };
        l4::thread::set_priority(id, prio).ctx("Schedule (priority)")?;
        Ok(t)
    }

    /// Creates and starts a thread of the space running `f(arg)` at priority `prio`.
    pub fn spawn(&mut self, f: fn(usize), arg: usize, prio: u8) -> Result<Thread, Why> {
        let t = self.thread(prio)?;
        self.start(&t, f, arg)?;
        Ok(t)
    }

    /// Starts `t` (made by [`Space::thread_paged_by`] with the calling thread as pager)
    /// running `f(arg)`: the start message comes from the caller.
    pub fn start_as_pager(&self, t: &Thread, f: fn(usize), arg: usize) -> Result<(), Why> {
        let (sp, ip) = t.entry(f, arg);
        l4::thread::start_message(t.id, sp, ip, ms(2000)).ctx("start message")
    }

    /// Starts `t` (made by [`Space::thread`]) running `f(arg)`.
    pub fn start(&self, t: &Thread, f: fn(usize), arg: usize) -> Result<(), Why> {
        let (sp, ip) = t.entry(f, arg);
        start_by_pager(t.id, sp, ip)
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        let _ = l4::thread::delete_thread(self.first);
    }
}

/// Labels of the requests the pager thread serves besides page faults.
const START_REQUEST: u64 = 0x57A7;

/// Asks the pager thread to send the start message (`ip`, `sp`) to `dest`.
fn start_by_pager(dest: ThreadId, sp: u64, ip: u64) -> Result<(), Why> {
    let m = l4::ipc::Msg::with_words(START_REQUEST, &[dest.raw(), ip, sp])
        .map_err(|_| Why::new(format_args!("start request does not fit")))?;
    let answer =
        l4::ipc::call(pager_id(), &m, ms(2000), ms(4000)).ctx("start request to the pager")?;
    match answer.word(0) {
        Some(wire::OK) => Ok(()),
        Some(w) => Err(Why::new(format_args!(
            "the pager's start message to {:?}: {}",
            dest,
            wire::Shown(w)
        ))),
        None => Err(Why::new(format_args!("empty answer from the pager"))),
    }
}

/// The fault log: every page fault the pager thread received, resolved (an image page
/// mapped for a child thread) or not.
pub mod faults {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::thread_id::ThreadId;

    /// Entries kept (older ones are overwritten).
    const ENTRIES: usize = 256;

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static FROM: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
    static ADDR: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
    static IP: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
    static RWX: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
    static RESOLVED: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];

    /// One unresolved fault.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fault {
        /// The faulting thread as the pager saw it (From).
        pub from: ThreadId,
        /// MR1: the fault address.
        pub addr: u64,
        /// MR2: the faulting IP.
        pub ip: u64,
        /// The access (rwx bits of the label).
        pub rwx: u8,
        /// Did the pager answer it with a mapping?
        pub resolved: bool,
    }

    /// Records a fault (pager thread only).
    pub(super) fn record(f: Fault) {
        let i = COUNT.load(Ordering::Acquire) as usize % ENTRIES;
        FROM[i].store(f.from.raw(), Ordering::Release);
        ADDR[i].store(f.addr, Ordering::Release);
        IP[i].store(f.ip, Ordering::Release);
        RWX[i].store(f.rwx as u64, Ordering::Release);
        RESOLVED[i].store(f.resolved as u64, Ordering::Release);
        COUNT.fetch_add(1, Ordering::AcqRel);
    }

    /// Number of faults recorded so far.
    pub fn count() -> u64 {
        COUNT.load(Ordering::Acquire)
    }

    /// The first fault recorded since `mark` (a [`count`] value) that satisfies `pred`.
    pub fn find_since(mark: u64, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let end = count();
        let start = mark.max(end.saturating_sub(ENTRIES as u64));
        (start..end).map(entry).find(|f| pred(f))
    }

    fn entry(n: u64) -> Fault {
        let i = n as usize % ENTRIES;
        Fault {
            from: ThreadId(FROM[i].load(Ordering::Acquire)),
            addr: ADDR[i].load(Ordering::Acquire),
            ip: IP[i].load(Ordering::Acquire),
            rwx: RWX[i].load(Ordering::Acquire) as u8,
            resolved: RESOLVED[i].load(Ordering::Acquire) != 0,
        }
    }

    /// Waits (bounded) for an unresolved fault since `mark` on the page of `addr`.
    pub fn wait_page(mark: u64, addr: u64, timeout_us: u64) -> Option<Fault> {
        let page = addr & !0xFFF;
        let mut hit = None;
        crate::harness::wait_until(timeout_us, || {
            hit = find_since(mark, |f| !f.resolved && f.addr & !0xFFF == page);
            hit.is_some()
        });
        hit
    }
}

/// The pager thread's loop (see the module comment).
fn pager_main(_: usize) {
    let mut last: (u64, u64, u64) = (0, 0, 0);
    loop {
        let r = l4::ipc::receive(ThreadId::ANY, Time::Never);
        let Ok(rx) = r else { continue };
        let tag = rx.msg.tag();
        if tag.label() == START_REQUEST && tag.untyped() == 3 {
            let dest = ThreadId(rx.msg.word(0).unwrap_or(0));
            let ip = rx.msg.word(1).unwrap_or(0);
            let sp = rx.msg.word(2).unwrap_or(0);
            let res = l4::thread::start_message(dest, sp, ip, ms(1000));
            let answer =
                l4::ipc::Msg::with_words(0, &[wire::outcome(&res)]).unwrap_or(l4::ipc::Msg::new(0));
            let _ = l4::ipc::reply(rx.from, &answer);
            continue;
        }
        if tag.protocol() != label::PAGE_FAULT || tag.untyped() != 2 || tag.typed() != 0 {
            println!(
                "ipctests: pager: unexpected message {:#x} from {:?}",
                tag.raw(),
                rx.from
            );
            continue;
        }
        let addr = rx.msg.word(0).unwrap_or(0);
        let ip = rx.msg.word(1).unwrap_or(0);
        let rwx = (tag.label() & 7) as u8;
        let page = addr & !0xFFF;
        let this = (rx.from.raw(), page, rwx as u64);
        // Root-space threads never fault on the image (it is mapped from the start), a
        // repeated fault means the mapping did not help, and anything outside the image
        // is for a check to look at.
        let fault = faults::Fault {
            from: rx.from,
            addr,
            ip,
            rwx,
            resolved: false,
        };
        if rx.from.is_local() || !in_image(addr) || this == last {
            faults::record(fault);
            last = (0, 0, 0);
            continue;
        }
        last = this;
        faults::record(faults::Fault {
            resolved: true,
            ..fault
        });
        let item = wire::map_item(Fpage::new(page, 12, Rights::RWX), page, false, false);
        let t = wire::load(0, &[], &item);
        let _ = wire::ipc(
            rx.from,
            ThreadId::NIL,
            wire::tmo(Time::Zero, Time::Never),
            t,
        );
    }
}

/// Priority of the monitor thread (above the checks, below the pager thread).
const MONITOR_PRIO: u8 = 110;

/// The monitor: once a second, looks whether the program still makes progress; if not
/// (see [`crate::harness::stalled`]), reports the main thread's state and aborts the IPC
/// it is blocked in, so that the check fails instead of hanging the program.
fn monitor_main(_: usize) {
    loop {
        let _ = l4::ipc::sleep(Time::Period { us: 1_000_000 });
        let Some((dt, name)) = crate::harness::stalled() else {
            continue;
        };
        let ex = l4::thread::ExRegs::new().apply(main_id());
        println!(
            "ipctests: monitor: no progress for {} ms (last check: {}); main thread: Schedule state {:?}, ExchangeRegisters {:?}; aborting its IPC",
            dt / 1000,
            name,
            state(main_id()),
            ex.map(|o| (o.state, o.ip, o.sp))
        );
        let _ = l4::thread::ExRegs::new()
            .abort_send()
            .abort_receive()
            .apply(main_id());
        crate::harness::progress(name);
    }
}

/// Sets up the environment: records the main thread, sets its priority and starts the
/// pager and monitor threads. Call once, from the main thread, first.
pub fn init() -> Result<(), Why> {
    MAIN.store(l4::utcb::my_global_id().raw(), Ordering::Release);
    l4::thread::set_priority(main_id(), PRIO).ctx("Schedule (main thread)")?;
    let pager = Thread::spawn(pager_main, 0, PAGER_PRIO)?;
    PAGER.store(pager.id().raw(), Ordering::Release);
    pager.keep();
    crate::harness::progress("start");
    Thread::spawn(monitor_main, 0, MONITOR_PRIO)?.keep();
    Ok(())
}

/// Is `tag` a page-fault message (label −2 << 4 with rwx, u = 2, t = 0)?
pub fn is_page_fault(tag: MsgTag) -> bool {
    tag.protocol() == label::PAGE_FAULT && tag.untyped() == 2 && tag.typed() == 0
}

/// The state Schedule reports for `id` (`Error` if the call failed).
pub fn state(id: ThreadId) -> abi::syscall::ThreadState {
    l4::thread::state_of(id).unwrap_or(abi::syscall::ThreadState::Error)
}

/// Waits (bounded) until `id` is blocked in an IPC: waiting to receive if `receiving`,
/// else waiting to send. Returns whether it got there.
pub fn wait_blocked(id: ThreadId, receiving: bool, timeout_us: u64) -> bool {
    use abi::syscall::ThreadState as S;
    crate::harness::wait_until(timeout_us, || match state(id) {
        S::Waiting | S::Receiving => receiving,
        S::PendingSend | S::Sending => !receiving,
        _ => false,
    })
}

/// Words of the one watchdog: its target, delay and whether it fired.
static WATCH: crate::harness::Cells<3> = crate::harness::Cells::new();
const WATCH_TARGET: usize = 0;
const WATCH_AFTER: usize = 1;
const WATCH_FIRED: usize = 2;

/// Bounds a wait without timeout: a thread that, after a delay, aborts whatever IPC the
/// target is blocked in (ExchangeRegisters abort send and receive). Deleted when dropped.
pub struct Watchdog {
    thread: Thread,
}

impl Watchdog {
    /// Arms a watchdog over `target` that fires after `after_us`.
    pub fn arm(target: ThreadId, after_us: u64) -> Result<Self, Why> {
        WATCH.clear();
        WATCH.set(WATCH_TARGET, target.raw());
        WATCH.set(WATCH_AFTER, after_us);
        let thread = Thread::spawn(watchdog_main, 0, PRIO + 5)?;
        Ok(Self { thread })
    }

    /// Did it fire?
    pub fn fired(&self) -> bool {
        WATCH.get(WATCH_FIRED) != 0
    }

    /// Disarms it now.
    pub fn disarm(mut self) -> bool {
        let fired = self.fired();
        let _ = self.thread.delete();
        fired
    }
}

fn watchdog_main(_: usize) {
    let _ = l4::ipc::sleep(Time::Period {
        us: WATCH.get(WATCH_AFTER).max(1),
    });
    WATCH.set(WATCH_FIRED, 1);
    let _ = l4::thread::ExRegs::new()
        .abort_send()
        .abort_receive()
        .apply(ThreadId(WATCH.get(WATCH_TARGET)));
}
