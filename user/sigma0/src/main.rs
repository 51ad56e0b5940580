//! σ0: the root pager, owner of all physical memory and I/O ports at boot.
//!
//! σ0's address space is idempotent (virtual = physical): the kernel makes σ0's pages
//! on demand, so mapping the fpage at physical address `p` out of σ0's space hands out
//! physical memory `p`. σ0 serves, in one loop (X.2 σ0 protocol):
//!
//! | message (label)            | words                         | answer                       |
//! |----------------------------|-------------------------------|------------------------------|
//! | page fault (−2 << 4 \| rwx) | addr, ip                      | the page containing `addr`, at `addr` (conventional memory, or memory the client owns); none if refused |
//! | σ0 request (−6 << 4)       | fpage, attributes [, high]    | the fpage at its physical address, or "anywhere" (base all ones): free conventional memory of that size; an I/O fpage: those ports |
//! | I/O page fault (−8 << 4)   | I/O fpage, ip                 | those ports                  |
//! | extended (−1001 << 4)      | 1 = verbosity (MR2), 2 = dump (reply if MR2 ≠ 0) | root task only   |
//!
//! A refused request is answered with a map item carrying the nil fpage. A page fault
//! σ0 cannot resolve is not answered: the thread stays blocked in it (answering nil
//! would only make it fault again at once). Who may get what: see `memory`.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod memory;
mod ranges;

/// Prints one line in one piece (formatted into a buffer first), so that the lines of
/// other programs do not land in the middle of σ0's.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = $crate::Line::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        line.print();
    }};
}
pub(crate) use say;

/// A line of output being formatted (cut at 160 bytes).
pub(crate) struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    pub(crate) const fn new() -> Self {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }

    /// Prints the line and a newline with one kernel-debugger call (lines are shorter
    /// than its 127-byte chunks) or a few.
    pub(crate) fn print(mut self) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
        let text = match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(t) => t,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        };
        l4::kdb::print(text);
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

use core::cell::UnsafeCell;

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::msg::{label, Acceptor, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};

use memory::Memory;

/// σ0's UTCB area (fixed for root servers by the AMD64 binding).
const UTCB_AREA: (u64, u64) = (0xBF00_0000, 0xBF00_0000 + (1 << 18));

/// σ0's tables: too big for its stack, so a static. σ0 has exactly one thread.
struct Tables(UnsafeCell<Memory>);

// SAFETY: σ0 runs a single thread; the cell is only reached from `main`.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables(UnsafeCell::new(Memory::new()));

/// How much σ0 says: 0 quiet, 1 refusals, 2 every request.
static mut VERBOSE: u64 = 1;

fn verbose() -> u64 {
    // SAFETY: single-threaded program; a plain read of a word.
    unsafe { core::ptr::addr_of!(VERBOSE).read() }
}

fn set_verbose(v: u64) {
    // SAFETY: single-threaded program; a plain write of a word.
    unsafe { core::ptr::addr_of_mut!(VERBOSE).write(v) }
}

fn main() {
    let me = l4::utcb::my_global_id();
    // SAFETY: the only reference to the tables, taken once by the only thread.
    let mem = unsafe { &mut *TABLES.0.get() };
    let kip_area = l4::kip::kernel_interface().kip as u64;
    mem.init(l4::kip::get(), me, (kip_area, kip_area + 4096), UTCB_AREA);
    say!(
        "sigma0: running as thread {:#x}; {} MiB of conventional memory to give",
        me.raw(),
        mem.free_conventional() >> 20
    );
    ipc::set_acceptor(Acceptor::UNTYPED);
    let mut rx = ipc::receive(ThreadId::ANY, Time::Never);
    loop {
        let r = match rx {
            Ok(r) => r,
            Err(_) => {
                rx = ipc::receive(ThreadId::ANY, Time::Never);
                continue;
            }
        };
        rx = match handle(mem, r.from, &r.msg) {
            Some(answer) => ipc::reply_wait(r.from, &answer, Time::Never),
            None => ipc::receive(ThreadId::ANY, Time::Never),
        };
    }
}

/// The answer carrying `fpage` (nil: refused), to land at `snd_base` in the receive
/// window.
fn answer(fpage: Option<Fpage>, snd_base: u64) -> Msg {
    let mut m = Msg::new(0);
    let item = MapItem::map(fpage.unwrap_or(Fpage::NIL), snd_base);
    // Two typed words always fit in an empty message.
    let _ = m.push_map(item);
    m
}

/// Dispatches one message; `None`: no answer.
fn handle(mem: &mut Memory, from: ThreadId, msg: &Msg) -> Option<Msg> {
    let tag = msg.tag();
    if tag.typed() != 0 {
        return None;
    }
    let u = tag.untyped();
    let w = |i: usize| msg.word(i).unwrap_or(0);
    match tag.protocol() {
        label::PAGE_FAULT if u == 2 => {
            let page = w(0) & !0xFFF;
            if mem.request(from, page, 12, true) {
                if verbose() > 1 {
                    say!(
                        "sigma0: page fault of {:#x} at {:#x}: mapped",
                        from.raw(),
                        w(0)
                    );
                }
                Some(answer(Some(Fpage::new(page, 12, Rights::RWX)), page))
            } else {
                if verbose() > 0 {
                    say!("sigma0: page fault of {:#x} at {:#x} (ip {:#x}) refused; the thread stays blocked", from.raw(), w(0), w(1));
                }
                None
            }
        }
        label::IO_PAGE_FAULT if u == 2 => Some(ports(mem, from, Fpage(w(0)))),
        label::SIGMA0 if u == 2 || u == 3 => {
            let fpage = Fpage(w(0));
            if fpage.is_io() {
                return Some(ports(mem, from, fpage));
            }
            // MR2 (memory attributes) is not acted on: Tern maps all memory write-back.
            let log2 = fpage.log2size();
            // "Anywhere": the base is all ones (Pistachio's L4_Sigma0_GetAny leaves the
            // bits below the size set, other encoders clear them; both reach the top).
            let granted = if !fpage.is_complete() && fpage.end() == u64::MAX {
                mem.request_any(from, log2)
            } else {
                let mut base = fpage.base();
                if fpage.extended() && u == 3 {
                    base = (w(2) << 32) | (base & 0xFFFF_FFFF);
                }
                (!fpage.is_effectively_nil()
                    && !fpage.is_complete()
                    && mem.request(from, base, log2, false))
                .then_some(base)
            };
            if verbose() > 1 || (verbose() > 0 && granted.is_none()) {
                say!(
                    "sigma0: request of {:#x} for {:?}: {}",
                    from.raw(),
                    fpage,
                    if granted.is_some() {
                        "granted"
                    } else {
                        "refused"
                    }
                );
            }
            Some(match granted {
                Some(a) => answer(Some(Fpage::new(a, log2, Rights::RWX)), a),
                None => answer(None, 0),
            })
        }
        label::SIGMA0_EXT if mem.is_root(from) => match w(0) {
            1 => {
                set_verbose(w(1));
                None
            }
            2 => {
                mem.dump();
                (w(1) != 0).then(|| Msg::new(0))
            }
            _ => None,
        },
        _ => None,
    }
}

/// An I/O fpage request: the ports, or nil (an "anywhere" I/O fpage is refused).
fn ports(mem: &mut Memory, from: ThreadId, fpage: Fpage) -> Msg {
    let granted = match IoFpage::try_from(fpage) {
        Ok(io) if fpage.raw() >> 16 != u64::MAX >> 16 && mem.request_ports(from, io) => Some(io),
        _ => None,
    };
    if verbose() > 1 || (verbose() > 0 && granted.is_none()) {
        say!(
            "sigma0: I/O request of {:#x} for {:?}: {}",
            from.raw(),
            fpage,
            if granted.is_some() {
                "granted"
            } else {
                "refused"
            }
        );
    }
    match granted {
        Some(io) => answer(
            Some(Fpage::from(IoFpage::new(
                io.port(),
                io.log2count(),
                Rights::RWX,
            ))),
            0,
        ),
        None => answer(None, 0),
    }
}

l4::main!(main);
