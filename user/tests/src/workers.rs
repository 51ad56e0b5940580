//! Test threads in the root task's own space ("workers"): created with ThreadControl,
//! started with ExchangeRegisters (or the X.2 start message), deleted when dropped.
//!
//! A worker shares the root task's code and data; it gets one of [`STACKS`] static
//! stacks and a UTCB slot in the root task's UTCB area (slot `k` at
//! `0xBF00_0000 + k * 1024`; slot 0 is the main thread's). Its pager is the main thread
//! and its scheduler the root task.
//!
//! # Invariants
//! * A stack or UTCB slot is marked busy from the creation of the thread using it until
//!   that thread is deleted; if deletion fails, both stay busy for good (the thread may
//!   still run on them).
//! * `JOB_FN[k]` / `JOB_ARG[k]` are written before the thread on stack `k` is started and
//!   not changed while it runs.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::kip::ThreadInfo;
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::println;

use crate::harness::{now, wait_until, Context, Why};

/// The main thread's priority for the whole suite (set at start).
pub const MAIN_PRIO: u8 = 100;

/// The root task's UTCB area (X.2 root-server placement).
pub const UTCB_AREA: u64 = 0xBF00_0000;
/// log2 of its size: 256 slots of 1 KiB.
pub const UTCB_AREA_LOG2: u8 = 18;
/// Size of a UTCB.
pub const UTCB_SIZE: u64 = 1024;

/// UTCB slots used by workers: 1..=WORKER_SLOTS.
const WORKER_SLOTS: usize = 63;
/// First UTCB slot of the bulk thread tests (they use slots from here on).
pub const BULK_FIRST_SLOT: usize = 64;
/// Slots the bulk thread tests may use.
pub const BULK_SLOTS: usize = 128;

/// Worker stacks.
pub const STACKS: usize = 12;
/// Size of each stack.
const STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; STACK_SIZE]);

/// The stacks; only [`Worker::entry`] touches them (through raw pointers).
static mut STACK_MEM: [Stack; STACKS] = [const { Stack([0; STACK_SIZE]) }; STACKS];
static STACK_BUSY: [AtomicBool; STACKS] = [const { AtomicBool::new(false) }; STACKS];
static SLOT_BUSY: [AtomicBool; WORKER_SLOTS] = [const { AtomicBool::new(false) }; WORKER_SLOTS];
static JOB_FN: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];
static JOB_ARG: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];
static JOB_DONE: [AtomicBool; STACKS] = [const { AtomicBool::new(false) }; STACKS];
static NEXT_NUMBER: AtomicU32 = AtomicU32::new(0);
static MAIN_ID: AtomicU64 = AtomicU64::new(0);

/// Records the main thread's id (call once, from the main thread, before any worker).
pub fn init() {
    MAIN_ID.store(l4::utcb::my_global_id().raw(), Ordering::Release);
}

/// The main thread's global id (from any thread).
pub fn me() -> ThreadId {
    ThreadId(MAIN_ID.load(Ordering::Acquire))
}

/// The main thread's local id (UTCB slot 0).
pub fn main_local() -> ThreadId {
    local_id_of_slot(0)
}

/// The KIP's ThreadInfo.
pub fn thread_info() -> ThreadInfo {
    ThreadInfo::decode(l4::kip::get().thread_info)
}

/// σ0's global id (UserBase, version 1).
pub fn sigma0() -> ThreadId {
    ThreadId::global(thread_info().user_base as u32, 1)
}

/// A global id no thread has had yet: thread numbers from UserBase + 64 up, version 1.
pub fn fresh_id() -> ThreadId {
    ThreadId::global(
        thread_info().user_base as u32 + 64 + NEXT_NUMBER.fetch_add(1, Ordering::Relaxed),
        1,
    )
}

/// The UTCB location of slot `slot` of the root task's area.
pub const fn utcb_location(slot: usize) -> u64 {
    UTCB_AREA + slot as u64 * UTCB_SIZE
}

/// The local id a thread with its UTCB in slot `slot` has.
pub const fn local_id_of_slot(slot: usize) -> ThreadId {
    ThreadId::local(utcb_location(slot) + abi::utcb::UTCB_MR0_OFFSET as u64)
}

fn claim(flags: &[AtomicBool]) -> Option<usize> {
    flags.iter().position(|f| {
        f.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// A thread of the root task's space, deleted when dropped.
pub struct Worker {
    id: ThreadId,
    /// UTCB slot (1..=WORKER_SLOTS).
    slot: usize,
    /// Stack index.
    stack: usize,
}

impl Worker {
    /// Creates an active thread waiting for its start message from the main thread. With
    /// `prio`, sets that priority (failing if Schedule fails); otherwise tries to set
    /// [`MAIN_PRIO`] and ignores failure.
    pub fn create(prio: Option<u8>) -> Result<Self, Why> {
        let Some(stack) = claim(&STACK_BUSY) else {
            return Err(Why::new(format_args!(
                "no free worker stack (a deleted worker leaked one?)"
            )));
        };
        let Some(s) = claim(&SLOT_BUSY) else {
            STACK_BUSY[stack].store(false, Ordering::Release);
            return Err(Why::new(format_args!("no free UTCB slot")));
        };
        let slot = s + 1;
        let id = fresh_id();
        if let Err(e) = l4::thread::create_thread(id, me(), me(), me(), Some(utcb_location(slot))) {
            STACK_BUSY[stack].store(false, Ordering::Release);
            SLOT_BUSY[s].store(false, Ordering::Release);
            return Err(Why::new(format_args!(
                "ThreadControl (create worker {:?}): {:?}",
                id, e
            )));
        }
        JOB_DONE[stack].store(false, Ordering::Release);
        let w = Worker { id, slot, stack };
        match prio {
            Some(p) => {
                l4::thread::set_priority(id, p).ctx("Schedule (worker priority)")?;
            }
            None => {
                let _ = l4::thread::set_priority(id, MAIN_PRIO);
            }
        }
        Ok(w)
    }

    /// Creates and starts a worker running `f(arg)`.
    pub fn spawn(f: fn(usize), arg: usize, prio: Option<u8>) -> Result<Self, Why> {
        let w = Self::create(prio)?;
        w.start(f, arg)?;
        Ok(w)
    }

    /// The global id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The local id (from the UTCB slot).
    pub fn local(&self) -> ThreadId {
        local_id_of_slot(self.slot)
    }

    /// Prepares the worker's stack for `f(arg)` and returns the `(sp, ip)` to start it
    /// with.
    pub fn entry(&self, f: fn(usize), arg: usize) -> (u64, u64) {
        JOB_FN[self.stack].store(f as usize, Ordering::Release);
        JOB_ARG[self.stack].store(arg, Ordering::Release);
        JOB_DONE[self.stack].store(false, Ordering::Release);
        // SAFETY: one past the end of stack `self.stack`, computed without a reference.
        let top =
            unsafe { (core::ptr::addr_of_mut!(STACK_MEM[self.stack]) as *mut u8).add(STACK_SIZE) };
        // SAFETY: the stack is this worker's (busy flag) and its thread is not running yet
        // (or is restarted from scratch); nothing else writes it until the thread is deleted.
        unsafe { l4::thread::prepare_entry(top, worker_entry, self.stack) }
    }

    /// Starts the worker at `f(arg)` with ExchangeRegisters (`L4_Start_SpIp`).
    pub fn start(&self, f: fn(usize), arg: usize) -> Result<(), Why> {
        let (sp, ip) = self.entry(f, arg);
        l4::thread::start(self.id, sp, ip)
            .ctx("ExchangeRegisters (start worker)")
            .map(|_| ())
    }

    /// Starts the worker at `f(arg)` with the X.2 start message from its pager (us).
    pub fn start_by_message(&self, f: fn(usize), arg: usize) -> Result<(), Why> {
        let (sp, ip) = self.entry(f, arg);
        l4::thread::start_message(self.id, sp, ip, Time::Period { us: 1_000_000 })
            .ctx("start message")
    }

    /// Has `f` returned?
    pub fn done(&self) -> bool {
        JOB_DONE[self.stack].load(Ordering::Acquire)
    }

    /// Waits (yielding) at most `timeout_us` for `f` to return.
    pub fn wait_done(&self, timeout_us: u64) -> bool {
        wait_until(timeout_us, || self.done())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        match l4::thread::delete_thread(self.id) {
            Ok(()) => {
                STACK_BUSY[self.stack].store(false, Ordering::Release);
                SLOT_BUSY[self.slot - 1].store(false, Ordering::Release);
            }
            Err(e) => println!(
                "tests: cannot delete worker {:?} ({:?}); its stack and UTCB slot stay reserved",
                self.id, e
            ),
        }
    }
}

/// Where every worker starts (through `l4_thread_trampoline`): runs its job, marks it
/// done and parks.
extern "C" fn worker_entry(stack: usize) -> ! {
    let f = JOB_FN[stack].load(Ordering::Acquire);
    let arg = JOB_ARG[stack].load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: `JOB_FN[stack]` was stored from a `fn(usize)` by `Worker::entry` before
        // this thread started (module invariant); fn pointers and `usize` have the same size.
        let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(arg);
    }
    JOB_DONE[stack].store(true, Ordering::Release);
    l4::thread::park()
}

/// A shared µs deadline for spinning workers: now + `us`.
pub fn deadline_in(us: u64) -> u64 {
    now().saturating_add(us)
}

/// A thread created directly with ThreadControl by a check; deleted (errors ignored) when
/// dropped, so that a failing check leaves nothing behind.
pub struct Owned(pub ThreadId);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = l4::thread::delete_thread(self.0);
    }
}

/// A UTCB location for threads of [`Owned`] (from the bulk slots; `i < BULK_SLOTS`).
pub const fn bulk_utcb(i: usize) -> u64 {
    utcb_location(BULK_FIRST_SLOT + i)
}
