//! String items: simple strings, gather (several substrings) and scatter (several
//! buffer substrings), compound strings, several strings, receive buffers in the BRs,
//! message overflow (too long, or no string acceptance), and page faults during the copy
//! on either side — resolved by the pager of the space the fault is in, whichever thread
//! runs the copy — bounded by the transfer timeouts (XferTimeouts TCR).
//!
//! Root-space buffers are static, page-aligned byte areas; the buffers of child-space
//! threads are pages of the image the child has not touched yet, so the copy finds them
//! unmapped in the child's space and must have them mapped by the child's pager (the
//! pager thread maps the root task's own frame, so the main thread sees the bytes).

use core::sync::atomic::{AtomicU8, Ordering};

use abi::error::{IpcErrorCode, Phase};
use abi::msg::{Acceptor, MsgTag, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time::{Time, Timeouts};

use crate::env::{faults, main_id, wait_blocked, Space, Thread, Watchdog, PRIO};
use crate::harness::{ensure, fail, now, wait_until, Check, Runner, Why};
use crate::jobs::{self, lane, OUT, PARAM, T0, T1, TAG, W};
use crate::timeouts::within;
use crate::wire::{self, expect_err, expect_ok, ms, string_item, tmo, Shown, LONG};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("string");
    r.check("simple-string", simple);
    r.check("received-mrs-hold-string-item", received_item);
    r.check("gather-three-substrings", gather);
    r.check("scatter-into-two-buffer-substrings", scatter);
    r.check("compound-string", compound);
    r.check("two-strings-two-buffers", two_strings);
    r.check("untyped-words-and-string", with_untyped);
    let o = too_long();
    r.check("too-long-overflow-sender", || {
        o.as_ref()
            .map_err(Why::clone)
            .and_then(|o| expect_err(o.0, IpcErrorCode::Overflow, Phase::Send))
    });
    r.check("too-long-overflow-receiver", || {
        o.as_ref()
            .map_err(Why::clone)
            .and_then(|o| expect_err(o.1, IpcErrorCode::Overflow, Phase::Receive))
    });
    r.check("no-string-acceptance-overflow", no_acceptance);
    r.check("fault-sender-space-sender-copies", || fault_sender(true));
    r.check("fault-sender-space-receiver-copies", || fault_sender(false));
    r.check("fault-receiver-space-receiver-copies", || {
        fault_receiver(true)
    });
    r.check("fault-receiver-space-sender-copies", || {
        fault_receiver(false)
    });
    let x = xfer_timeout();
    r.check("xfer-timeout-receiver-partner-code", || {
        x.as_ref().map_err(Why::clone)?.receiver()
    });
    r.check("xfer-timeout-sender-current-code", || {
        x.as_ref().map_err(Why::clone)?.sender()
    });
    r.check("receive-timeout-does-not-cut-a-transfer", receive_timeout_in_transfer);
    r.check("abort-during-transfer-both-aborted", abort_in_transfer);
    r.check("copier-deleted-during-transfer-partner-not-exist", copier_deleted);
    r.check("helping-partner-deleted-copier-not-exist", helper_deleted);
}

/// A page of bytes.
#[repr(C, align(4096))]
struct Bytes([AtomicU8; 4096]);

impl Bytes {
    const fn new() -> Self {
        Self([const { AtomicU8::new(0) }; 4096])
    }

    fn addr(&self) -> u64 {
        self.0[0].as_ptr() as u64
    }

    /// Fills `len` bytes at `off` with the pattern of `seed` (byte `i` of the pattern at
    /// `off + i`), and zeroes the rest.
    fn fill(&self, off: usize, len: usize, seed: u8) {
        for (i, b) in self.0.iter().enumerate() {
            let v = if (off..off + len).contains(&i) {
                pattern(seed, i - off)
            } else {
                0
            };
            b.store(v, Ordering::SeqCst);
        }
    }

    fn clear(&self) {
        self.fill(0, 0, 0);
    }

    /// Does `self[off..off+len]` hold pattern bytes `from..from+len` of `seed`?
    /// Returns the first bad index.
    fn holds(&self, off: usize, len: usize, seed: u8, from: usize) -> Result<(), (usize, u8, u8)> {
        for i in 0..len {
            let got = self.0[off + i].load(Ordering::SeqCst);
            let want = pattern(seed, from + i);
            if got != want {
                return Err((off + i, got, want));
            }
        }
        Ok(())
    }

    fn byte(&self, i: usize) -> u8 {
        self.0[i].load(Ordering::SeqCst)
    }
}

const fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(7))
        .wrapping_add((i >> 8) as u8)
}

static SRC: Bytes = Bytes::new();
static DST: Bytes = Bytes::new();
static DST2: Bytes = Bytes::new();
/// Pages child threads use as buffers (untouched in a new child space).
static FRESH_SRC: Bytes = Bytes::new();
static FRESH_DST: Bytes = Bytes::new();

/// Fails unless `buf[off..off+len]` holds pattern bytes `from..` of `seed`.
fn expect_bytes(buf: &Bytes, off: usize, len: usize, seed: u8, from: usize, what: &str) -> Check {
    match buf.holds(off, len, seed, from) {
        Ok(()) => Ok(()),
        Err((i, got, want)) => fail!("{}: byte {} is {:#x}, expected {:#x}", what, i, got, want),
    }
}

/// Lane words of the string jobs.
mod w {
    /// BR0 for the receiver job.
    pub const ACCEPT: usize = 60;
    /// Number of buffer words (BR1..).
    pub const NBR: usize = 61;
    /// The buffer words.
    pub const BR: usize = 62;
    /// Most buffer words.
    pub const BRS: usize = 8;
    /// XferTimeouts for the job.
    pub const XFER: usize = 71;
    /// Source address (sender job).
    pub const SRC: usize = 72;
    /// Length (sender job).
    pub const LEN: usize = 73;
    /// µs to sleep before the IPC.
    pub const DELAY: usize = 74;
}

/// The buffer registers BR1.. for buffers `(length, pointers, compound)`: returns the
/// words and their count.
fn buffers(list: &[(u64, &[u64], bool)]) -> ([u64; 16], usize) {
    let mut out = [0u64; 16];
    let mut n = 0;
    for (k, &(len, ptrs, compound)) in list.iter().enumerate() {
        let more = k + 1 < list.len();
        let (words, used) = string_item(len, ptrs, compound, more);
        out[n..n + used].copy_from_slice(&words[..used]);
        n += used;
    }
    (out, n)
}

/// Sets BR0 = `acceptor` and BR1.. = `brs`.
fn set_brs(acceptor: u64, brs: &[u64]) {
    let _ = l4::utcb::set_br(0, acceptor);
    for (k, &b) in brs.iter().enumerate() {
        let _ = l4::utcb::set_br(k + 1, b);
    }
}

/// Receives from PARAM with the lane's acceptor, buffers and XferTimeouts, after the
/// lane's delay; records the message.
fn rx_job(i: usize) {
    let l = lane(i);
    let mut brs = [0u64; w::BRS];
    let n = (l.get(w::NBR) as usize).min(w::BRS);
    for (k, b) in brs.iter_mut().enumerate().take(n) {
        *b = l.get(w::BR + k);
    }
    set_brs(l.get(w::ACCEPT), &brs[..n]);
    l4::utcb::set_xfer_timeouts(Timeouts(l.get(w::XFER)));
    let d = l.get(w::DELAY);
    if d != 0 {
        let _ = l4::ipc::sleep(Time::Period { us: d });
    }
    l.set(T0, now());
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId(l.get(PARAM)),
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    jobs::record(l, &r);
}

/// Sends a simple string (SRC, LEN) to PARAM with the lane's XferTimeouts, after the
/// lane's delay; records the outcome and the times.
fn tx_job(i: usize) {
    let l = lane(i);
    l4::utcb::set_xfer_timeouts(Timeouts(l.get(w::XFER)));
    let d = l.get(w::DELAY);
    if d != 0 {
        let _ = l4::ipc::sleep(Time::Period { us: d });
    }
    let (item, n) = string_item(l.get(w::LEN), &[l.get(w::SRC)], false, false);
    let tag = wire::load(0x57, &[], &item[..n]);
    l.set(T0, now());
    let r = wire::ipc(
        ThreadId(l.get(PARAM)),
        ThreadId::NIL,
        tmo(LONG, Time::Never),
        tag,
    );
    l.set(T1, now());
    l.set(OUT, r.outcome());
}

/// Prepares lane `i` for [`rx_job`] with `buffers`.
fn rx_lane(i: usize, from: ThreadId, acceptor: Acceptor, list: &[(u64, &[u64], bool)]) {
    let l = lane(i);
    l.set(PARAM, from.raw());
    l.set(w::ACCEPT, acceptor.raw());
    let (brs, n) = buffers(list);
    l.set(w::NBR, n as u64);
    for (k, &b) in brs.iter().enumerate().take(n.min(w::BRS)) {
        l.set(w::BR + k, b);
    }
}

/// A root thread receiving from the main thread into `list`; returns once it waits.
fn root_receiver(acceptor: Acceptor, list: &[(u64, &[u64], bool)]) -> Result<Thread, Why> {
    jobs::clear_all();
    rx_lane(0, main_id(), acceptor, list);
    let t = Thread::spawn(rx_job, 0, PRIO)?;
    ensure!(
        wait_blocked(t.id(), true, 2_000_000),
        "the receiver never waited"
    );
    Ok(t)
}

/// Sends `untyped` and the typed `items` from the main thread to `to`.
fn send(to: ThreadId, untyped: &[u64], items: &[u64]) -> u64 {
    let tag = wire::load(0x57, untyped, items);
    wire::ipc(to, ThreadId::NIL, tmo(LONG, Time::Never), tag).outcome()
}

/// Waits for the receiver and checks that its receive succeeded.
fn received(t: &Thread) -> Check {
    ensure!(t.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "the receive")
}

fn simple() -> Check {
    SRC.fill(0, 100, 0x10);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(256, &[DST.addr()], false)])?;
    let (item, n) = string_item(100, &[SRC.addr()], false, false);
    expect_ok(send(t.id(), &[], &item[..n]), "send")?;
    received(&t)?;
    expect_bytes(&DST, 0, 100, 0x10, 0, "the buffer")?;
    ensure!(
        DST.byte(100) == 0,
        "byte 100 of the buffer was written ({:#x})",
        DST.byte(100)
    );
    Ok(())
}

fn received_item() -> Check {
    SRC.fill(0, 77, 0x11);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(256, &[DST.addr()], false)])?;
    let (item, n) = string_item(77, &[SRC.addr()], false, false);
    expect_ok(send(t.id(), &[5], &item[..n]), "send")?;
    received(&t)?;
    let l = lane(0);
    let tag = MsgTag(l.get(TAG));
    ensure!(
        tag.untyped() == 1 && tag.typed() == 2,
        "received tag {:#x} (u 1, t 2 expected)",
        tag.raw()
    );
    let Some(h) = StringItemHeader::decode(l.get(W + 1)) else {
        fail!("MR2 {:#x} is not a string item", l.get(W + 1));
    };
    // Whether the pointer then names the sender's string or the receiver's buffer is not
    // settled between X.2 and Pistachio (which copies the sender's item); the length of a
    // whole delivery is the same either way.
    ensure!(
        h.length == 77 && h.substrings == 1,
        "the received item says {} bytes in {} pieces; 77 arrived in one",
        h.length,
        h.substrings
    );
    expect_bytes(&DST, 0, 77, 0x11, 0, "the buffer")
}

fn gather() -> Check {
    SRC.fill(0, 4096, 0x20);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(512, &[DST.addr()], false)])?;
    // Three substrings of 32 bytes at SRC+0, SRC+1000, SRC+2000.
    let ptrs = [SRC.addr(), SRC.addr() + 1000, SRC.addr() + 2000];
    let (item, n) = string_item(32, &ptrs, false, false);
    expect_ok(send(t.id(), &[], &item[..n]), "send")?;
    received(&t)?;
    expect_bytes(&DST, 0, 32, 0x20, 0, "substring 1")?;
    expect_bytes(&DST, 32, 32, 0x20, 1000, "substring 2")?;
    expect_bytes(&DST, 64, 32, 0x20, 2000, "substring 3")
}

fn scatter() -> Check {
    SRC.fill(0, 128, 0x30);
    DST.clear();
    // Two buffer substrings of 64 bytes: DST+0 and DST+2048.
    let t = root_receiver(
        Acceptor::STRINGS,
        &[(64, &[DST.addr(), DST.addr() + 2048], false)],
    )?;
    let (item, n) = string_item(128, &[SRC.addr()], false, false);
    expect_ok(send(t.id(), &[], &item[..n]), "send")?;
    received(&t)?;
    expect_bytes(&DST, 0, 64, 0x30, 0, "buffer substring 1")?;
    expect_bytes(&DST, 2048, 64, 0x30, 64, "buffer substring 2")
}

fn compound() -> Check {
    SRC.fill(0, 4096, 0x40);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(256, &[DST.addr()], false)])?;
    // 40 bytes from SRC+100, continued (flag c) by 60 bytes from SRC+3000: one string.
    let (a, na) = string_item(40, &[SRC.addr() + 100], true, true);
    let (b, nb) = string_item(60, &[SRC.addr() + 3000], false, false);
    let mut items = [0u64; 8];
    items[..na].copy_from_slice(&a[..na]);
    items[na..na + nb].copy_from_slice(&b[..nb]);
    expect_ok(send(t.id(), &[], &items[..na + nb]), "send")?;
    received(&t)?;
    expect_bytes(&DST, 0, 40, 0x40, 100, "the first part")?;
    expect_bytes(&DST, 40, 60, 0x40, 3000, "the continuation")
}

fn two_strings() -> Check {
    SRC.fill(0, 4096, 0x50);
    DST.clear();
    DST2.clear();
    let t = root_receiver(
        Acceptor::STRINGS,
        &[(128, &[DST.addr()], false), (128, &[DST2.addr()], false)],
    )?;
    let (a, na) = string_item(50, &[SRC.addr()], false, true);
    let (b, nb) = string_item(70, &[SRC.addr() + 500], false, false);
    let mut items = [0u64; 8];
    items[..na].copy_from_slice(&a[..na]);
    items[na..na + nb].copy_from_slice(&b[..nb]);
    expect_ok(send(t.id(), &[], &items[..na + nb]), "send")?;
    received(&t)?;
    expect_bytes(&DST, 0, 50, 0x50, 0, "string 1 in buffer 1")?;
    expect_bytes(&DST2, 0, 70, 0x50, 500, "string 2 in buffer 2")
}

fn with_untyped() -> Check {
    SRC.fill(0, 64, 0x60);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(64, &[DST.addr()], false)])?;
    let (item, n) = string_item(64, &[SRC.addr()], false, false);
    expect_ok(send(t.id(), &[0xA, 0xB, 0xC], &item[..n]), "send")?;
    received(&t)?;
    let l = lane(0);
    let words = [l.get(W), l.get(W + 1), l.get(W + 2)];
    ensure!(words == [0xA, 0xB, 0xC], "untyped words {:x?}", words);
    expect_bytes(&DST, 0, 64, 0x60, 0, "the buffer")
}

/// A 200-byte string into a 64-byte buffer: the sender's and the receiver's outcomes.
fn too_long() -> Result<(u64, u64), Why> {
    SRC.fill(0, 200, 0x70);
    DST.clear();
    let t = root_receiver(Acceptor::STRINGS, &[(64, &[DST.addr()], false)])?;
    let (item, n) = string_item(200, &[SRC.addr()], false, false);
    let sender = send(t.id(), &[], &item[..n]);
    ensure!(
        t.wait_done(2_000_000),
        "the receiver did not return (sender: {})",
        Shown(sender)
    );
    Ok((sender, lane(0).get(OUT)))
}

fn no_acceptance() -> Check {
    SRC.fill(0, 16, 0x71);
    let t = root_receiver(Acceptor::UNTYPED, &[(64, &[DST.addr()], false)])?;
    let (item, n) = string_item(16, &[SRC.addr()], false, false);
    let sender = send(t.id(), &[], &item[..n]);
    ensure!(t.wait_done(2_000_000), "the receiver did not return");
    expect_err(sender, IpcErrorCode::Overflow, Phase::Send)?;
    expect_err(lane(0).get(OUT), IpcErrorCode::Overflow, Phase::Receive)
}

/// The string source is a page the sending child has not touched. `sender_copies`:
/// the main thread waits first, so the sender runs the copy; else the sender blocks
/// first and the main thread's receive runs it.
fn fault_sender(sender_copies: bool) -> Check {
    jobs::clear_all();
    FRESH_SRC.fill(1000, 300, 0x80);
    DST.clear();
    let l = lane(0);
    l.set(PARAM, main_id().raw());
    l.set(w::SRC, FRESH_SRC.addr() + 1000);
    l.set(w::LEN, 300);
    l.set(w::XFER, tmo(ms(1000), ms(1000)).0);
    l.set(w::DELAY, if sender_copies { 30_000 } else { 0 });
    let mut space = Space::new()?;
    let mark = faults::count();
    let c = space.spawn(tx_job, 0, PRIO)?;
    if !sender_copies {
        ensure!(
            wait_blocked(c.id(), false, 2_000_000),
            "the child's send never blocked"
        );
    }
    let (brs, n) = buffers(&[(512, &[DST.addr()], false)]);
    set_brs(Acceptor::STRINGS.raw(), &brs[..n]);
    l4::utcb::set_xfer_timeouts(tmo(ms(1000), ms(1000)));
    let dog = Watchdog::arm(main_id(), 4_000_000)?;
    let r = wire::ipc(ThreadId::NIL, c.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    let fired = dog.disarm();
    set_brs(0, &[]);
    l4::utcb::set_xfer_timeouts(Timeouts(0));
    ensure!(
        !fired,
        "the receive did not end in 4 s (a watchdog aborted it: {})",
        Shown(r.outcome())
    );
    expect_ok(r.outcome(), "the receive")?;
    ensure!(
        wait_until(2_000_000, || l.get(OUT) != 0),
        "the child's send did not return"
    );
    expect_ok(l.get(OUT), "the child's send")?;
    expect_bytes(&DST, 0, 300, 0x80, 0, "the buffer")?;
    resolved_fault(mark, c.id(), FRESH_SRC.addr() + 1000)
}

/// Fails unless the pager thread resolved a fault of `t` on the page of `addr` since
/// `mark` (so the copy really met a missing page and had it mapped).
fn resolved_fault(mark: u64, t: ThreadId, addr: u64) -> Check {
    let page = addr & !0xFFF;
    match faults::find_since(mark, |f| {
        f.resolved && f.from == t && f.addr & !0xFFF == page
    }) {
        Some(_) => Ok(()),
        None => fail!(
            "the pager resolved no fault of the child on {:#x}: the copy did not fault",
            page
        ),
    }
}

/// The receive buffer is a page the receiving child has not touched. `receiver_copies`:
/// the main thread sends first, so the receiver runs the copy; else the receiver waits
/// first and the main thread's send runs it.
fn fault_receiver(receiver_copies: bool) -> Check {
    jobs::clear_all();
    SRC.fill(0, 300, 0x90);
    FRESH_DST.clear();
    rx_lane(
        0,
        main_id(),
        Acceptor::STRINGS,
        &[(1024, &[FRESH_DST.addr() + 2000], false)],
    );
    let l = lane(0);
    l.set(w::XFER, tmo(ms(1000), ms(1000)).0);
    l.set(w::DELAY, if receiver_copies { 30_000 } else { 0 });
    let mut space = Space::new()?;
    let mark = faults::count();
    let c = space.spawn(rx_job, 0, PRIO)?;
    if !receiver_copies {
        ensure!(
            wait_blocked(c.id(), true, 2_000_000),
            "the child never waited"
        );
    }
    l4::utcb::set_xfer_timeouts(tmo(ms(1000), ms(1000)));
    let (item, n) = string_item(300, &[SRC.addr()], false, false);
    let dog = Watchdog::arm(main_id(), 4_000_000)?;
    let out = send(c.id(), &[], &item[..n]);
    let fired = dog.disarm();
    l4::utcb::set_xfer_timeouts(Timeouts(0));
    ensure!(
        !fired,
        "the send did not end in 4 s (a watchdog aborted it: {})",
        Shown(out)
    );
    expect_ok(out, "the send")?;
    ensure!(
        wait_until(2_000_000, || l.get(OUT) != 0),
        "the child's receive did not return"
    );
    expect_ok(l.get(OUT), "the child's receive")?;
    expect_bytes(&FRESH_DST, 2000, 300, 0x90, 0, "the child's buffer")?;
    resolved_fault(mark, c.id(), FRESH_DST.addr() + 2000)
}

/// The outcomes of a copy whose source page the sender's pager never supplies.
struct Xfer {
    receiver: u64,
    sender: u64,
    sender_time: u64,
}

impl Xfer {
    fn receiver(&self) -> Check {
        expect_err(
            self.receiver,
            IpcErrorCode::XferTimeoutPartner,
            Phase::Receive,
        )
    }

    fn sender(&self) -> Check {
        expect_err(self.sender, IpcErrorCode::XferTimeoutCurrent, Phase::Send)?;
        within(
            self.sender_time,
            20_000,
            "the sender's IPC (20 ms transfer timeout)",
        )
    }
}

fn xfer_timeout() -> Result<Xfer, Why> {
    jobs::clear_all();
    DST.clear();
    let l = lane(0);
    l.set(PARAM, main_id().raw());
    // Outside the image: the pager thread records the fault and never answers it.
    l.set(w::SRC, 0x7000_0000);
    l.set(w::LEN, 64);
    l.set(w::XFER, tmo(ms(20), ms(20)).0);
    l.set(w::DELAY, 30_000);
    let mut space = Space::new()?;
    let c = space.spawn(tx_job, 0, PRIO)?;
    let (brs, n) = buffers(&[(512, &[DST.addr()], false)]);
    set_brs(Acceptor::STRINGS.raw(), &brs[..n]);
    l4::utcb::set_xfer_timeouts(tmo(ms(20), ms(20)));
    let dog = Watchdog::arm(main_id(), 4_000_000)?;
    let r = wire::ipc(ThreadId::NIL, c.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    let fired = dog.disarm();
    set_brs(0, &[]);
    l4::utcb::set_xfer_timeouts(Timeouts(0));
    ensure!(
        !fired,
        "the receive did not end in 4 s: the transfer timeout never fired (watchdog: {})",
        Shown(r.outcome())
    );
    ensure!(
        wait_until(2_000_000, || l.get(OUT) != 0),
        "the child's send did not return"
    );
    Ok(Xfer {
        receiver: r.outcome(),
        sender: l.get(OUT),
        sender_time: l.get(T1).saturating_sub(l.get(T0)),
    })
}

/// Never answered by the pager thread (outside the image): a copy touching it waits
/// until its transfer timeout.
const STUCK: u64 = 0x7000_0000;

/// Starts a child that sends 64 bytes from [`STUCK`] to the main thread after 30 ms
/// with transfer timeouts of `xfer_ms`, and sets up the main thread's buffer for it.
fn stuck_sender(space: &mut Space, xfer_ms: u64) -> Result<Thread, Why> {
    jobs::clear_all();
    DST.clear();
    let l = lane(0);
    l.set(PARAM, main_id().raw());
    l.set(w::SRC, STUCK);
    l.set(w::LEN, 64);
    l.set(w::XFER, tmo(ms(xfer_ms), ms(xfer_ms)).0);
    l.set(w::DELAY, 30_000);
    let c = space.spawn(tx_job, 0, PRIO)?;
    let (brs, n) = buffers(&[(512, &[DST.addr()], false)]);
    set_brs(Acceptor::STRINGS.raw(), &brs[..n]);
    l4::utcb::set_xfer_timeouts(tmo(ms(xfer_ms), ms(xfer_ms)));
    Ok(c)
}

/// Undoes the main thread's settings of [`stuck_sender`].
fn unset_buffers() {
    set_brs(0, &[]);
    l4::utcb::set_xfer_timeouts(Timeouts(0));
}

/// A root thread that deletes PARAM after DELAY µs (lane `i`); OUT: 1 deleted, 2 refused.
fn deleter_job(i: usize) {
    let l = lane(i);
    let _ = l4::ipc::sleep(Time::Period { us: l.get(w::DELAY).max(1) });
    let r = l4::thread::delete_thread(ThreadId(l.get(PARAM)));
    l.set(OUT, if r.is_ok() { 1 } else { 2 });
}

/// Starts [`deleter_job`] on lane 1 for `victim` after `after_us`.
fn deleter(victim: ThreadId, after_us: u64) -> Result<Thread, Why> {
    let l = lane(1);
    l.set(PARAM, victim.raw());
    l.set(w::DELAY, after_us);
    Thread::spawn(deleter_job, 1, PRIO + 2)
}

/// The main thread waits with a 100 ms receive timeout; the sender arrives at 30 ms and
/// its copy waits 300 ms for a page that never comes: the receive ends with the
/// transfer timeout (partner's space), not with the receive timeout.
fn receive_timeout_in_transfer() -> Check {
    let mut space = Space::new()?;
    let c = stuck_sender(&mut space, 300)?;
    let t0 = now();
    let r = wire::ipc(ThreadId::NIL, c.id(), tmo(Time::Never, ms(100)), MsgTag::NIL);
    let dt = now() - t0;
    unset_buffers();
    ensure!(
        wait_until(2_000_000, || lane(0).get(OUT) != 0),
        "the child's send did not return"
    );
    expect_err(r.outcome(), IpcErrorCode::XferTimeoutPartner, Phase::Receive)?;
    ensure!(dt >= 300_000, "the receive ended after {} µs, before the 300 ms transfer timeout", dt);
    expect_err(lane(0).get(OUT), IpcErrorCode::XferTimeoutCurrent, Phase::Send)
}

/// The sender's copy waits for a page (5 s transfer timeout); 200 ms in, a watchdog
/// aborts the main thread's receive: both IPCs end with "aborted" at once.
fn abort_in_transfer() -> Check {
    let mut space = Space::new()?;
    let c = stuck_sender(&mut space, 5_000)?;
    let dog = Watchdog::arm(main_id(), 200_000)?;
    let t0 = now();
    let r = wire::ipc(ThreadId::NIL, c.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    let dt = now() - t0;
    let fired = dog.disarm();
    unset_buffers();
    ensure!(fired, "the watchdog did not fire: the receive ended first ({})", Shown(r.outcome()));
    ensure!(dt < 1_000_000, "the aborted receive took {} µs to end", dt);
    expect_err(r.outcome(), IpcErrorCode::Aborted, Phase::Receive)?;
    ensure!(
        wait_until(1_000_000, || lane(0).get(OUT) != 0),
        "the sender's IPC did not end within 1 s of the abort"
    );
    expect_err(lane(0).get(OUT), IpcErrorCode::Aborted, Phase::Send)
}

/// The sender copies and waits for a page; 200 ms in, another thread deletes it: the
/// main thread's receive ends with "non-existing partner".
fn copier_deleted() -> Check {
    let mut space = Space::new()?;
    let mut c = stuck_sender(&mut space, 5_000)?;
    let mut d = deleter(c.id(), 200_000)?;
    let dog = Watchdog::arm(main_id(), 4_000_000)?;
    let r = wire::ipc(ThreadId::NIL, c.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    let fired = dog.disarm();
    unset_buffers();
    ensure!(d.wait_done(1_000_000), "the deleter did not finish");
    let _ = d.delete();
    ensure!(lane(1).get(OUT) == 1, "the deleter could not delete the sender");
    ensure!(c.deleted_elsewhere(), "the sender still exists after its deletion");
    ensure!(!fired, "the receive did not end after the sender's deletion (watchdog: {})", Shown(r.outcome()));
    expect_err(r.outcome(), IpcErrorCode::NotExist, Phase::Receive)
}

/// The main thread sends and copies; the child's buffer page never comes, so the child
/// (asked to fault it in) waits for its pager. 200 ms in, another thread deletes the
/// child: the main thread's send ends with "non-existing partner".
fn helper_deleted() -> Check {
    jobs::clear_all();
    SRC.fill(0, 300, 0xA0);
    rx_lane(0, main_id(), Acceptor::STRINGS, &[(1024, &[STUCK], false)]);
    let l = lane(0);
    l.set(w::XFER, tmo(ms(5_000), ms(5_000)).0);
    let mut space = Space::new()?;
    let mut c = space.spawn(rx_job, 0, PRIO)?;
    ensure!(wait_blocked(c.id(), true, 2_000_000), "the child never waited");
    l4::utcb::set_xfer_timeouts(tmo(ms(5_000), ms(5_000)));
    let mut d = deleter(c.id(), 200_000)?;
    let (item, n) = string_item(300, &[SRC.addr()], false, false);
    let dog = Watchdog::arm(main_id(), 4_000_000)?;
    let out = send(c.id(), &[], &item[..n]);
    let fired = dog.disarm();
    l4::utcb::set_xfer_timeouts(Timeouts(0));
    ensure!(d.wait_done(1_000_000), "the deleter did not finish");
    let _ = d.delete();
    ensure!(lane(1).get(OUT) == 1, "the deleter could not delete the receiver");
    ensure!(c.deleted_elsewhere(), "the receiver still exists after its deletion");
    ensure!(!fired, "the send did not end after the receiver's deletion (watchdog: {})", Shown(out));
    expect_err(out, IpcErrorCode::NotExist, Phase::Send)
}
