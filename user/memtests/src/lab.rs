//! The test bench: memory from σ0 in a physical window, a pager thread for the test
//! spaces, and the test spaces themselves ([`Child`]: one thread in a new space that
//! runs commands sent to it).
//!
//! ```text
//!   root task space (this program)                 child spaces (one thread each)
//!   ┌──────────────────────────────┐               ┌────────────────────────────┐
//!   │ main thread: runs the checks │── commands ──►│ child_main: READ, WRITE,   │
//!   │                              │◄── results ───│ EXEC, SEND_MAP, RECV_MAP,  │
//!   │ pager thread: page faults    │◄─ faults ─────│ UNMAP, SIGMA0, IN, SINK    │
//!   │  and I/O faults of children  │── map items ─►│                            │
//!   │ window: physical p at W + p  │               │ code/stack: this image,    │
//!   └──────────────────────────────┘               │ mapped 1:1 by the pager    │
//!                                                  └────────────────────────────┘
//! ```
//!
//! The pager maps pages of this program's image 1:1 (children run this program's code on
//! stacks in its data), records every other fault (address and access) for the checks to
//! inspect, and resolves it with the *scratch page*: a page full of `ret` instructions, so
//! that a child that faulted on a read, a write or a jump goes on harmlessly. I/O page
//! faults of children are recorded and not answered.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::msg::{label, Acceptor, MapItem, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};

use crate::harness::{fail, ipc_code, Context, Why};

/// Base of the physical window: physical `p` is at `WINDOW + p` in this space.
pub const WINDOW: u64 = 0x1000_0000_0000;
/// log2 of the window's size.
pub const WINDOW_LOG2: u8 = 40;

/// Where every test space has its KIP and its UTCB.
pub const CHILD_KIP: u64 = 0xBFF0_0000;
pub const CHILD_UTCB: u64 = 0xBF00_0000;

/// The root task's UTCB area (X.2 binding) and UTCB size.
const MY_UTCB_AREA: u64 = 0xBF00_0000;
const UTCB_SIZE: u64 = 1024;

/// Commands a child runs (message labels).
pub mod cmd {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXEC: u64 = 3;
    pub const SEND_MAP: u64 = 4;
    pub const RECV_MAP: u64 = 5;
    pub const UNMAP: u64 = 6;
    pub const SIGMA0: u64 = 7;
    pub const IN: u64 = 8;
    pub const SINK: u64 = 9;
    pub const TOUCH: u64 = 10;
    /// Pager thread: start a child (words: thread, sp, ip).
    pub const START: u64 = 100;
}

/// σ0's thread id.
pub fn sigma0() -> ThreadId {
    ThreadId::global(user_base(), 1)
}

/// UserBase from the KIP.
pub fn user_base() -> u32 {
    abi::kip::ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32
}

/// Sends the σ0 request for `fpage` with `window` as the receive window; returns the
/// fpage σ0 answered with (nil: refused).
pub fn sigma0_request(fpage: Fpage, window: Fpage) -> Result<Fpage, Why> {
    ipc::set_acceptor(Acceptor::new(window, false));
    let m = Msg::with_words(label::SIGMA0, &[fpage.raw(), 0]).ctx("message")?;
    let r = ipc::call(
        sigma0(),
        &m,
        Time::Period { us: 1_000_000 },
        Time::Period { us: 1_000_000 },
    );
    ipc::set_acceptor(Acceptor::UNTYPED);
    let r = r.ctx("σ0 request IPC")?;
    let tag: MsgTag = r.tag();
    if tag.typed() != 2 || tag.untyped() != 0 {
        fail!("σ0 answered with tag {:#x}", tag.raw());
    }
    Ok(Fpage(r.typed()[1]))
}

/// The window fpage (all of it).
pub fn window() -> Fpage {
    Fpage::new(WINDOW, WINDOW_LOG2, Rights::NONE)
}

/// "Anywhere" (base all ones) of `2^log2` bytes.
pub fn anywhere(log2: u8) -> Fpage {
    Fpage::new(u64::MAX, log2, Rights::RWX)
}

/// Free memory of `2^log2` bytes from σ0: its physical address (at `WINDOW + p` here).
pub fn any(log2: u8) -> Result<u64, Why> {
    let f = sigma0_request(anywhere(log2), window())?;
    if f.is_nil() {
        fail!("σ0 has no free block of 2^{} bytes", log2);
    }
    Ok(f.base())
}

/// The word at physical `p` (which must be in the window).
pub fn peek(p: u64) -> u64 {
    // SAFETY: callers pass addresses of memory σ0 mapped into the window for this task.
    unsafe { core::ptr::read_volatile((WINDOW + p) as *const u64) }
}

/// Writes the word at physical `p` (in the window).
pub fn poke(p: u64, v: u64) {
    // SAFETY: as in `peek`; the memory is this task's test memory.
    unsafe { core::ptr::write_volatile((WINDOW + p) as *mut u64, v) }
}

/// Fills the page at physical `p` (in the window) with `byte`.
pub fn fill(p: u64, byte: u8) {
    // SAFETY: as in `poke`; a whole page of this task's test memory.
    unsafe { core::ptr::write_bytes((WINDOW + p) as *mut u8, byte, 4096) }
}

/// The fpage of the 4 KiB page at physical `p` as this task sees it (in the window).
pub fn page(p: u64, rights: Rights) -> Fpage {
    Fpage::new(WINDOW + p, 12, rights)
}

// ---------------------------------------------------------------------------------------
// The pager thread

/// The pager thread's id (children read it: they see this program's data).
static PAGER: AtomicU64 = AtomicU64::new(0);
/// Physical address of the scratch page.
static SCRATCH: AtomicU64 = AtomicU64::new(0);
/// This program's image (from the KIP): faults there are mapped 1:1.
static IMAGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

const MAX_FAULTS: usize = 32;
static FAULT_ADDR: [AtomicU64; MAX_FAULTS] = [const { AtomicU64::new(0) }; MAX_FAULTS];
static FAULT_KIND: [AtomicU64; MAX_FAULTS] = [const { AtomicU64::new(0) }; MAX_FAULTS];
static FAULTS: AtomicUsize = AtomicUsize::new(0);
static IO_FAULTS: AtomicU64 = AtomicU64::new(0);
static LAST_IO_FPAGE: AtomicU64 = AtomicU64::new(0);

/// A recorded page fault of a child: address and access (R, W or X).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fault {
    pub addr: u64,
    pub access: Rights,
}

/// Forgets the recorded faults and I/O faults.
pub fn clear_faults() {
    FAULTS.store(0, Ordering::SeqCst);
    IO_FAULTS.store(0, Ordering::SeqCst);
}

/// Page faults (outside this image) recorded since [`clear_faults`].
pub fn fault_count() -> usize {
    FAULTS.load(Ordering::SeqCst)
}

/// I/O page faults recorded since [`clear_faults`], and the last one's I/O fpage.
pub fn io_faults() -> (u64, Fpage) {
    (
        IO_FAULTS.load(Ordering::SeqCst),
        Fpage(LAST_IO_FPAGE.load(Ordering::SeqCst)),
    )
}

/// The faults recorded since [`clear_faults`] (at most 32).
pub fn faults() -> ([Fault; MAX_FAULTS], usize) {
    let n = FAULTS.load(Ordering::SeqCst).min(MAX_FAULTS);
    let mut out = [Fault {
        addr: 0,
        access: Rights::NONE,
    }; MAX_FAULTS];
    for (i, f) in out.iter_mut().enumerate().take(n) {
        *f = Fault {
            addr: FAULT_ADDR[i].load(Ordering::SeqCst),
            access: Rights::from_bits_truncate(FAULT_KIND[i].load(Ordering::SeqCst)),
        };
    }
    (out, n)
}

/// Whether a fault at `addr` (same page) with `access` was recorded.
pub fn faulted(addr: u64, access: Rights) -> bool {
    let (f, n) = faults();
    f[..n]
        .iter()
        .any(|f| f.addr & !0xFFF == addr & !0xFFF && f.access.contains(access))
}

/// Whether any fault on the page of `addr` was recorded.
pub fn faulted_at(addr: u64) -> bool {
    let (f, n) = faults();
    f[..n].iter().any(|f| f.addr & !0xFFF == addr & !0xFFF)
}

#[repr(C, align(16))]
struct Stack([u8; 16384]);

/// Stacks of the helper threads of this space (slots 0 and 1: UTCB slots 1 and 2) and of
/// the children (a child's stack lies in this program's data; its pager maps it to the
/// child 1:1).
const STACKS: usize = 12;
static mut STACKS_MEM: [Stack; STACKS] = [const { Stack([0; 16384]) }; STACKS];
static NEXT_STACK: AtomicUsize = AtomicUsize::new(0);

/// The top of a fresh stack (stacks are not reused: there are few threads).
fn stack_top(slot: usize) -> *mut u8 {
    // SAFETY: address arithmetic only, inside the static (slot < STACKS, checked by callers).
    unsafe {
        (core::ptr::addr_of_mut!(STACKS_MEM) as *mut Stack)
            .add(slot)
            .add(1) as *mut u8
    }
}

/// A stack slot for a child; children get slots 2.. round robin (two live children never
/// share one: at most STACKS - 2 exist at a time).
fn child_stack() -> *mut u8 {
    let n = NEXT_STACK.fetch_add(1, Ordering::SeqCst);
    stack_top(2 + n % (STACKS - 2))
}

/// Thread numbers of threads this program makes: UserBase + 64 + n.
static NEXT_NUMBER: AtomicU32 = AtomicU32::new(0);

/// A fresh global thread id.
pub fn fresh_id() -> ThreadId {
    ThreadId::global(
        user_base() + 64 + NEXT_NUMBER.fetch_add(1, Ordering::SeqCst),
        1,
    )
}

/// Sets up the bench: the scratch page, and the pager thread. Returns the pager's id.
pub fn init() -> Result<ThreadId, Why> {
    let me = l4::utcb::my_global_id();
    let kip = l4::kip::get();
    IMAGE[0].store(kip.root_server.low, Ordering::SeqCst);
    IMAGE[1].store(kip.root_server.high, Ordering::SeqCst);
    let scratch = any(12)?;
    fill(scratch, 0xC3);
    SCRATCH.store(scratch, Ordering::SeqCst);
    let pager = fresh_id();
    start_local(pager, 1, pager_main, l4::utcb::pager(), me.raw() as usize)?;
    PAGER.store(pager.raw(), Ordering::SeqCst);
    Ok(pager)
}

/// Creates a thread of this space in UTCB slot `slot` (1 or 2; stack `slot - 1`) running
/// `entry(arg)`, with `pager` as its pager.
pub fn start_local(
    id: ThreadId,
    slot: usize,
    entry: l4::thread::Entry,
    pager: ThreadId,
    arg: usize,
) -> Result<(), Why> {
    if !(1..=2).contains(&slot) {
        fail!("no local thread slot {}", slot);
    }
    let me = l4::utcb::my_global_id();
    let utcb = MY_UTCB_AREA + slot as u64 * UTCB_SIZE;
    l4::thread::create_thread(id, me, me, pager, Some(utcb)).ctx("ThreadControl (local thread)")?;
    // SAFETY: stack slot `slot - 1` is used by this thread only (one thread per slot at a
    // time: the callers delete the thread before reusing its slot).
    let (sp, ip) = unsafe { l4::thread::prepare_entry(stack_top(slot - 1), entry, arg) };
    l4::thread::start(id, sp, ip).ctx("start (local thread)")?;
    Ok(())
}

/// Where children only read, to time page faults (the scratch page is not refilled).
pub const TIMING_RANGE: core::ops::Range<u64> = 0x7300_0000..0x7400_0000;

/// The map item resolving a child's fault at `addr`: this image 1:1, else the scratch
/// page (refilled with `ret`s) after recording the fault.
fn resolve(addr: u64, access: Rights) -> MapItem {
    let page = addr & !0xFFF;
    let (lo, hi) = (
        IMAGE[0].load(Ordering::SeqCst),
        IMAGE[1].load(Ordering::SeqCst),
    );
    if addr >= lo && addr < hi {
        return MapItem::map(Fpage::new(page, 12, Rights::RWX), page);
    }
    let n = FAULTS.load(Ordering::SeqCst);
    if n < MAX_FAULTS {
        FAULT_ADDR[n].store(addr, Ordering::SeqCst);
        FAULT_KIND[n].store(access.bits() as u64, Ordering::SeqCst);
    }
    FAULTS.store(n + 1, Ordering::SeqCst);
    let scratch = SCRATCH.load(Ordering::SeqCst);
    // Faults in the timing range are reads only: no refill there, to time the kernel.
    if !TIMING_RANGE.contains(&addr) {
        fill(scratch, 0xC3);
    }
    MapItem::map(page_of(scratch, Rights::RWX), page)
}

fn page_of(p: u64, r: Rights) -> Fpage {
    page(p, r)
}

/// The pager thread: page faults and I/O page faults of the children, and start requests
/// from the main thread.
extern "C" fn pager_main(_main: usize) -> ! {
    loop {
        let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Never) else {
            continue;
        };
        let tag = rx.msg.tag();
        if tag.protocol() == label::PAGE_FAULT && tag.untyped() == 2 {
            let addr = rx.msg.word(0).unwrap_or(0);
            let access = Rights::from_bits_truncate(tag.label());
            let mut m = Msg::new(0);
            let _ = m.push_map(resolve(addr, access));
            let _ = ipc::reply(rx.from, &m);
        } else if tag.protocol() == label::IO_PAGE_FAULT {
            // Recorded, not answered: the thread stays blocked in its port access.
            LAST_IO_FPAGE.store(rx.msg.word(0).unwrap_or(0), Ordering::SeqCst);
            IO_FAULTS.fetch_add(1, Ordering::SeqCst);
        } else if tag.label() == cmd::START && rx.from.is_local() {
            let w = |i| rx.msg.word(i).unwrap_or(0);
            let r = l4::thread::start_message(
                ThreadId(w(0)),
                w(1),
                w(2),
                Time::Period { us: 1_000_000 },
            );
            let out = Msg::with_words(0, &[ipc_code(&r)]).unwrap_or(Msg::new(0));
            let _ = ipc::reply(rx.from, &out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Children

/// A thread in a new space of its own, paged by the pager thread and running
/// [`child_main`]. Deleted (with its space) when dropped.
pub struct Child {
    pub id: ThreadId,
}

/// How long the main thread waits for a child.
const WAIT: Time = Time::Period { us: 2_000_000 };

impl Child {
    /// Creates and starts a child.
    pub fn new() -> Result<Child, Why> {
        let me = l4::utcb::my_global_id();
        let pager = ThreadId(PAGER.load(Ordering::SeqCst));
        let id = fresh_id();
        l4::thread::create_thread(id, id, me, ThreadId::NIL, None)
            .ctx("ThreadControl (child space)")?;
        let child = Child { id };
        l4::space::space_control(
            id,
            0,
            Fpage::new(CHILD_KIP, 12, Rights::NONE),
            Fpage::new(CHILD_UTCB, 12, Rights::NONE),
            ThreadId::NIL,
        )
        .ctx("SpaceControl (child)")?;
        l4::thread::thread_control(id, id, me, pager, Some(CHILD_UTCB))
            .ctx("ThreadControl (activate child)")?;
        // SAFETY: the stack slot is this child's alone while it lives (see `child_stack`).
        let (sp, ip) =
            unsafe { l4::thread::prepare_entry(child_stack(), child_main, me.raw() as usize) };
        let m = Msg::with_words(cmd::START, &[id.raw(), sp, ip]).ctx("message")?;
        let r = ipc::call(pager, &m, WAIT, WAIT).ctx("start request to the pager")?;
        if r.word(0) != Some(0) {
            fail!(
                "pager could not start the child: error {:#x}",
                r.word(0).unwrap_or(0)
            );
        }
        Ok(child)
    }

    /// Sends a command without waiting for its result.
    pub fn begin(&self, label: u64, words: &[u64]) -> Result<(), Why> {
        let m = Msg::with_words(label, words).ctx("message")?;
        ipc::send(self.id, &m, WAIT).ctx("command to the child")
    }

    /// Waits for a command's result (its words).
    pub fn wait(&self) -> Result<[u64; 2], Why> {
        self.wait_for(WAIT)
    }

    /// Waits at most `time` for a command's result.
    pub fn wait_for(&self, time: Time) -> Result<[u64; 2], Why> {
        let r = ipc::receive(self.id, time).ctx("result from the child")?;
        Ok([r.msg.word(0).unwrap_or(0), r.msg.word(1).unwrap_or(0)])
    }

    /// Runs a command and returns its result.
    pub fn call(&self, label: u64, words: &[u64]) -> Result<[u64; 2], Why> {
        self.begin(label, words)?;
        self.wait()
    }

    /// Reads the word at `addr` in the child's space.
    pub fn read(&self, addr: u64) -> Result<u64, Why> {
        Ok(self.call(cmd::READ, &[addr])?[0])
    }

    /// Writes the word at `addr` in the child's space.
    pub fn write(&self, addr: u64, v: u64) -> Result<(), Why> {
        self.call(cmd::WRITE, &[addr, v]).map(|_| ())
    }

    /// Calls the code at `addr` in the child's space; returns RAX.
    pub fn exec(&self, addr: u64) -> Result<u64, Why> {
        Ok(self.call(cmd::EXEC, &[addr])?[0])
    }

    /// The child unmaps `fpage` (flushing its own mapping too with `flush`); returns the
    /// fpage the kernel gave back.
    pub fn unmap(&self, fpage: Fpage, flush: bool) -> Result<Fpage, Why> {
        Ok(Fpage(
            self.call(cmd::UNMAP, &[fpage.raw(), flush as u64])?[0],
        ))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = l4::thread::delete_thread(self.id);
    }
}

/// Maps (or grants) `fpage` of this space to `child`, whose receive window is `window`.
/// Returns the child's IPC outcome (0: received).
pub fn give(
    child: &Child,
    fpage: Fpage,
    snd_base: u64,
    window: Fpage,
    grant: bool,
) -> Result<u64, Why> {
    let me = l4::utcb::my_global_id();
    child.begin(
        cmd::RECV_MAP,
        &[me.raw(), Acceptor::new(window, false).raw()],
    )?;
    let mut m = Msg::new(0x11);
    let item = if grant {
        MapItem::grant(fpage, snd_base)
    } else {
        MapItem::map(fpage, snd_base)
    };
    m.push_map(item).ctx("map item")?;
    let sent = ipc::send(child.id, &m, WAIT);
    let r = child.wait()?;
    if r[0] == 0 {
        sent.ctx("sending the map item")?;
    }
    Ok(r[0])
}

/// `from` maps (or grants) its `fpage` to `to`, whose receive window is `window`.
pub fn pass(
    from: &Child,
    to: &Child,
    fpage: Fpage,
    snd_base: u64,
    window: Fpage,
    grant: bool,
) -> Result<(), Why> {
    to.begin(
        cmd::RECV_MAP,
        &[from.id.raw(), Acceptor::new(window, false).raw()],
    )?;
    let sent = from.call(
        cmd::SEND_MAP,
        &[to.id.raw(), fpage.raw(), snd_base, grant as u64],
    )?;
    let got = to.wait()?;
    if sent[0] != 0 || got[0] != 0 {
        fail!(
            "passing a mapping between children: send {:#x}, receive {:#x}",
            sent[0],
            got[0]
        );
    }
    Ok(())
}

/// A child: runs commands from `parent` until deleted.
extern "C" fn child_main(parent: usize) -> ! {
    let parent = ThreadId(parent as u64);
    loop {
        let Ok(rx) = ipc::receive(parent, Time::Never) else {
            continue;
        };
        let w = |i| rx.msg.word(i).unwrap_or(0);
        let out: [u64; 2] = match rx.msg.label() {
            // SAFETY: the checks pass addresses the child may touch; a fault there goes to
            // the pager, which resolves it.
            cmd::READ => [unsafe { core::ptr::read_volatile(w(0) as *const u64) }, 0],
            cmd::WRITE => {
                // SAFETY: as for READ.
                unsafe { core::ptr::write_volatile(w(0) as *mut u64, w(1)) };
                [0, 0]
            }
            cmd::EXEC => {
                // SAFETY: the checks place code there (or the pager's page of `ret`s).
                let f: extern "C" fn() -> u64 =
                    unsafe { core::mem::transmute::<usize, extern "C" fn() -> u64>(w(0) as usize) };
                [f(), 0]
            }
            cmd::SEND_MAP => {
                let item = if w(3) != 0 {
                    MapItem::grant(Fpage(w(1)), w(2))
                } else {
                    MapItem::map(Fpage(w(1)), w(2))
                };
                let mut m = Msg::new(0x12);
                let _ = m.push_map(item);
                [ipc_code(&ipc::send(ThreadId(w(0)), &m, WAIT)), 0]
            }
            cmd::RECV_MAP => {
                ipc::set_acceptor(Acceptor(w(1)));
                let r = ipc::receive(ThreadId(w(0)), WAIT);
                ipc::set_acceptor(Acceptor::UNTYPED);
                let t = r.as_ref().map_or(0, |r| r.msg.tag().typed() as u64);
                [ipc_code(&r), t]
            }
            cmd::UNMAP => {
                let mut f = [Fpage(w(0))];
                let _ = l4::space::unmap(&mut f, w(1) != 0);
                [f[0].raw(), 0]
            }
            cmd::SIGMA0 => match sigma0_request(Fpage(w(0)), Fpage(w(1))) {
                Ok(f) => [f.raw(), 1],
                Err(_) => [0, 0],
            },
            cmd::IN => {
                let v: u8;
                // SAFETY: a port read; without the port's rights it raises #GP, which the
                // kernel turns into an I/O page fault sent to the pager thread.
                unsafe {
                    core::arch::asm!("in al, dx", in("dx") w(0) as u16, out("al") v, options(nostack, nomem))
                };
                [v as u64, 0]
            }
            cmd::TOUCH => {
                let mut sum = 0u64;
                for i in 0..w(1) {
                    // SAFETY: as for READ: pages the pager resolves.
                    sum = sum.wrapping_add(unsafe {
                        core::ptr::read_volatile((w(0) + i * 0x1000) as *const u64)
                    });
                }
                [sum, 0]
            }
            cmd::SINK => {
                ipc::set_acceptor(Acceptor(w(1)));
                for _ in 0..w(0) {
                    if ipc::receive(parent, WAIT).is_err() {
                        break;
                    }
                    let _ = ipc::send(parent, &Msg::new(0), WAIT);
                }
                ipc::set_acceptor(Acceptor::UNTYPED);
                continue;
            }
            _ => [u64::MAX, 0],
        };
        if let Ok(m) = Msg::with_words(0, &out) {
            let _ = ipc::send(parent, &m, WAIT);
        }
    }
}
