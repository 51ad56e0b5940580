//! The threads and spaces the checks use, and the pager thread.
//!
//! * [`Worker::local`]: a thread of this (the root task's, privileged) space, on a stack
//!   from [`STACK_MEM`] and a UTCB slot of the root UTCB area, started with
//!   ExchangeRegisters; its pager is the pager thread.
//! * [`Space`] and [`Space::spawn`]: a new, unprivileged address space running this
//!   program's image: the pager thread maps each page of the image the child touches
//!   1:1 from this space, so child threads run the same code and share the statics
//!   (that is how they report back). Child threads are started by the pager thread
//!   (the X.2 start message must come from a thread's pager).
//! * The pager thread ([`pager_main`]): answers image page faults; records every other
//!   page fault and every I/O page fault ([`faults`]); answers an I/O page fault with a
//!   map item of the ports only while [`grant_ports`] allows it (else the thread stays
//!   blocked until its check deletes it).
//!
//! # Invariants
//! * A stack (and a root UTCB slot) is busy from the creation of the thread using it to
//!   that thread's deletion; a thread that cannot be deleted keeps it for good.
//! * `JOB_FN[k]`/`JOB_ARG[k]` are written before the thread on stack `k` starts.
//! * The fault records are written only by the pager thread.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::kip::ThreadInfo;
use abi::msg::{label, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};

use crate::harness::{Context, Why};

/// Priority of the main thread.
pub const MAIN_PRIO: u8 = 100;
/// Priority of the pager thread (above every check thread).
pub const PAGER_PRIO: u8 = 140;

const UTCB_AREA: u64 = 0xBF00_0000;
const UTCB_SIZE: u64 = 1024;
/// Root UTCB slots for workers (slot 0 is the main thread's).
const ROOT_SLOTS: usize = 32;
/// Child UTCB area: 2^14 bytes, 16 slots.
const CHILD_UTCB_LOG2: u8 = 14;
const CHILD_SLOTS: usize = 16;
const KIP_AREA: u64 = 0xBFF0_0000;

/// Number of thread stacks.
const STACKS: usize = 10;
/// Size of one stack (the UART driver keeps its 12 KiB of buffers on it).
const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; STACK_SIZE]);

/// The stacks (only reached through raw pointers).
static mut STACK_MEM: [Stack; STACKS] = [const { Stack([0; STACK_SIZE]) }; STACKS];
static STACK_BUSY: [AtomicBool; STACKS] = [const { AtomicBool::new(false) }; STACKS];
static SLOT_BUSY: [AtomicBool; ROOT_SLOTS] = [const { AtomicBool::new(false) }; ROOT_SLOTS];
static JOB_FN: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];
static JOB_ARG: [AtomicUsize; STACKS] = [const { AtomicUsize::new(0) }; STACKS];

static MAIN: AtomicU64 = AtomicU64::new(0);
static PAGER: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The main thread.
pub fn main_id() -> ThreadId {
    ThreadId(MAIN.load(Ordering::Acquire))
}

/// The pager thread.
pub fn pager_id() -> ThreadId {
    ThreadId(PAGER.load(Ordering::Acquire))
}

/// A thread id no thread has had (numbers from UserBase + 64 up, version 1).
fn fresh_id() -> ThreadId {
    let ub = ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32;
    ThreadId::global(ub + 64 + NEXT.fetch_add(1, Ordering::Relaxed), 1)
}

fn claim(flags: &[AtomicBool]) -> Option<usize> {
    flags.iter().position(|f| {
        f.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Is `addr` in this program's image (from the KIP)?
fn in_image(addr: u64) -> bool {
    let rs = l4::kip::get().root_server;
    (rs.low..=rs.high).contains(&addr)
}

/// A thread made by a check; deleted when dropped.
pub struct Worker {
    id: ThreadId,
    stack: usize,
    slot: Option<usize>,
    deleted: bool,
}

impl Worker {
    /// A thread of this space running `f(arg)` at `prio`, paged by the pager thread.
    pub fn local(f: fn(usize), arg: usize, prio: u8) -> Result<Worker, Why> {
        let stack = claim(&STACK_BUSY).ok_or_else(|| Why::new(format_args!("no free stack")))?;
        let Some(slot) = claim(&SLOT_BUSY) else {
            STACK_BUSY[stack].store(false, Ordering::Release);
            return Err(Why::new(format_args!("no free UTCB slot")));
        };
        let id = fresh_id();
        let utcb = UTCB_AREA + (slot as u64 + 1) * UTCB_SIZE;
        if let Err(e) = l4::thread::create_thread(id, main_id(), main_id(), pager_id(), Some(utcb)) {
            STACK_BUSY[stack].store(false, Ordering::Release);
            SLOT_BUSY[slot].store(false, Ordering::Release);
            return Err(Why::new(format_args!("ThreadControl (create): {e:?}")));
        }
        let w = Worker {
            id,
            stack,
            slot: Some(slot),
            deleted: false,
        };
        l4::thread::set_priority(id, prio).ctx("Schedule (priority)")?;
        let (sp, ip) = w.prepare(f, arg);
        l4::thread::start(id, sp, ip).ctx("ExchangeRegisters (start)")?;
        Ok(w)
    }

    /// The thread's global id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    fn prepare(&self, f: fn(usize), arg: usize) -> (u64, u64) {
        JOB_FN[self.stack].store(f as usize, Ordering::Release);
        JOB_ARG[self.stack].store(arg, Ordering::Release);
        // SAFETY: one past the end of stack `self.stack`, computed without a reference.
        let top = unsafe { (core::ptr::addr_of_mut!(STACK_MEM[self.stack]) as *mut u8).add(STACK_SIZE) };
        // SAFETY: the stack is this thread's (busy flag) and the thread has not started;
        // nothing else uses the stack until the thread is deleted. Child threads see the
        // same memory at the same address (the pager maps the image 1:1).
        unsafe { l4::thread::prepare_entry(top, entry, self.stack) }
    }

    /// Deletes the thread now.
    pub fn delete(&mut self) -> Result<(), l4::Error> {
        if self.deleted {
            return Ok(());
        }
        l4::thread::delete_thread(self.id)?;
        self.deleted = true;
        STACK_BUSY[self.stack].store(false, Ordering::Release);
        if let Some(s) = self.slot {
            SLOT_BUSY[s].store(false, Ordering::Release);
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            l4::println!("irqtests: cannot delete {:?} ({:?}); its stack stays taken", self.id, e);
        }
    }
}

/// Where every worker starts (through the library's trampoline).
extern "C" fn entry(stack: usize) -> ! {
    let f = JOB_FN[stack].load(Ordering::Acquire);
    let arg = JOB_ARG[stack].load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: `JOB_FN[stack]` holds a `fn(usize)` stored by `Worker::prepare` before
        // the thread started (module invariant); fn pointers and `usize` have one size.
        let f = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(arg);
    }
    l4::thread::park()
}

/// A new, unprivileged address space running this image, paged by the pager thread.
/// It lives while it has threads: its first thread is deleted when the `Space` is
/// dropped unless a spawned [`Worker`] took it over.
pub struct Space {
    first: ThreadId,
    first_used: bool,
    next_slot: usize,
}

impl Space {
    /// Makes the space (KIP and UTCB areas as this task's).
    pub fn new() -> Result<Space, Why> {
        let first = fresh_id();
        l4::thread::create_thread(first, first, main_id(), ThreadId::NIL, None).ctx("ThreadControl (new space)")?;
        let s = Space {
            first,
            first_used: false,
            next_slot: 0,
        };
        l4::space::space_control(
            first,
            0,
            Fpage::new(KIP_AREA, 12, Rights::NONE),
            Fpage::new(UTCB_AREA, CHILD_UTCB_LOG2, Rights::NONE),
            ThreadId::ANY,
        )
        .ctx("SpaceControl")?;
        Ok(s)
    }

    /// Starts a thread of the space running `f(arg)` at `prio`.
    pub fn spawn(&mut self, f: fn(usize), arg: usize, prio: u8) -> Result<Worker, Why> {
        if self.next_slot >= CHILD_SLOTS {
            return Err(Why::new(format_args!("child space full")));
        }
        let stack = claim(&STACK_BUSY).ok_or_else(|| Why::new(format_args!("no free stack")))?;
        let utcb = UTCB_AREA + self.next_slot as u64 * UTCB_SIZE;
        let id = if self.first_used { fresh_id() } else { self.first };
        let made = if self.first_used {
            l4::thread::create_thread(id, self.first, main_id(), pager_id(), Some(utcb))
        } else {
            l4::thread::thread_control(id, self.first, main_id(), pager_id(), Some(utcb))
        };
        if let Err(e) = made {
            STACK_BUSY[stack].store(false, Ordering::Release);
            return Err(Why::new(format_args!("ThreadControl (child thread): {e:?}")));
        }
        self.first_used = true;
        self.next_slot += 1;
        let w = Worker {
            id,
            stack,
            slot: None,
            deleted: false,
        };
        l4::thread::set_priority(id, prio).ctx("Schedule (priority)")?;
        let (sp, ip) = w.prepare(f, arg);
        start_by_pager(id, sp, ip)?;
        Ok(w)
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        if !self.first_used {
            let _ = l4::thread::delete_thread(self.first);
        }
    }
}

/// Label of the start request the main thread sends the pager thread.
const START: u64 = 0x5354_4152;

fn start_by_pager(dest: ThreadId, sp: u64, ip: u64) -> Result<(), Why> {
    let m = Msg::with_words(START, &[dest.raw(), ip, sp]).ctx("start request")?;
    let t = Time::Period { us: 2_000_000 };
    let r = ipc::call(pager_id(), &m, t, t).ctx("start request to the pager")?;
    match r.word(0) {
        Some(0) => Ok(()),
        other => Err(Why::new(format_args!("the pager could not start {dest:?} ({other:?})"))),
    }
}

/// What the pager thread saw, for the checks to inspect.
pub mod faults {
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Page faults outside the image: count, then the last one's sender, address, IP.
    pub static PAGE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
    /// I/O page faults: count, then the last one's sender, label, MR1 (I/O fpage), MR2 (IP).
    pub static IO: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

    /// The last I/O page fault seen: (sender, label, fpage word, IP).
    pub fn last_io() -> (u64, u64, u64, u64) {
        let g = |i: usize| IO[i].load(Ordering::Acquire);
        (g(1), g(2), g(3), g(4))
    }

    /// Number of I/O page faults seen.
    pub fn io_count() -> u64 {
        IO[0].load(Ordering::Acquire)
    }
}

/// The ports the pager maps on an I/O page fault inside them (raw I/O fpage; 0: none).
static GRANT: AtomicU64 = AtomicU64::new(0);

/// From now on, answer I/O page faults inside `ports` with a map item of all of
/// `ports` (`None`: answer none).
pub fn grant_ports(ports: Option<abi::fpage::IoFpage>) {
    GRANT.store(ports.map_or(0, |p| p.raw()), Ordering::Release);
}

fn record(table: &[AtomicU64], words: &[u64]) {
    for (i, &w) in words.iter().enumerate() {
        table[i + 1].store(w, Ordering::Release);
    }
    table[0].fetch_add(1, Ordering::AcqRel);
}

/// The pager thread's loop (see the module comment).
fn pager_main(_: usize) {
    let mut last = (0u64, 0u64);
    loop {
        let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Never) else {
            continue;
        };
        let tag = rx.msg.tag();
        let w = |i: usize| rx.msg.word(i).unwrap_or(0);
        if tag.label() == START && tag.untyped() == 3 {
            let r = l4::thread::start_message(ThreadId(w(0)), w(2), w(1), Time::Period { us: 1_000_000 });
            let _ = ipc::reply(
                rx.from,
                &Msg::with_words(0, &[r.is_err() as u64]).unwrap_or(Msg::new(0)),
            );
            continue;
        }
        if tag.untyped() != 2 || tag.typed() != 0 {
            continue;
        }
        let this = (rx.from.raw(), w(0));
        let repeated = this == last;
        last = this;
        match tag.protocol() {
            label::PAGE_FAULT => {
                let addr = w(0);
                if rx.from.is_local() || !in_image(addr) || repeated {
                    record(&faults::PAGE, &[rx.from.raw(), addr, w(1)]);
                    continue;
                }
                let page = addr & !0xFFF;
                let mut m = Msg::new(0);
                let _ = m.push_map(MapItem::map(Fpage::new(page, 12, Rights::RWX), page));
                let _ = ipc::reply(rx.from, &m);
            }
            label::IO_PAGE_FAULT => {
                record(&faults::IO, &[rx.from.raw(), tag.label(), w(0), w(1)]);
                let grant = abi::fpage::IoFpage(GRANT.load(Ordering::Acquire));
                let port = abi::fpage::IoFpage(w(0)).port();
                if grant.raw() == 0 || repeated || !(grant.port()..=grant.last_port()).contains(&port) {
                    continue;
                }
                let mut m = Msg::new(0);
                let _ = m.push_map(MapItem::map(Fpage(grant.raw()), 0));
                let _ = ipc::reply(rx.from, &m);
            }
            _ => {}
        }
    }
}

/// Records the main thread, sets its priority, starts the pager thread. Once, first.
pub fn init() -> Result<(), Why> {
    MAIN.store(l4::utcb::my_global_id().raw(), Ordering::Release);
    l4::thread::set_priority(main_id(), MAIN_PRIO).ctx("Schedule (main)")?;
    // The pager pages nothing of its own (this space's image is mapped from the start),
    // so it may be its own worker: its pager entry is never used.
    PAGER.store(main_id().raw(), Ordering::Release);
    let p = Worker::local(pager_main, 0, PAGER_PRIO)?;
    PAGER.store(p.id().raw(), Ordering::Release);
    // The pager runs for good: its stack and slot stay taken.
    core::mem::forget(p);
    Ok(())
}
