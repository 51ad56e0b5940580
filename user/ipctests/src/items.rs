//! Map and grant items with receive windows (the acceptor in BR0).
//!
//! The main thread maps or grants pages of its own image (static, page-aligned areas
//! with a marker word per page) to a thread of a child space, which receives them into a
//! window at [`WIN`] (an address nothing else uses there) and then reads a list of
//! addresses: a page that arrived shows its marker; a page that did not makes the child
//! fault, which the pager thread records in the fault log (the child then stays blocked
//! until the check deletes it). Granted pages are verified gone from the root space by a
//! root thread reading them (its fault is recorded too), and granted back.
//!
//! # Invariants
//! The main thread never touches [`GRANT`] unless the last grant-back restored it
//! ([`GRANT_HOME`]): a missing page of the root space would fault to σ0.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::error::{IpcErrorCode, Phase};
use abi::fpage::{Fpage, Rights};
use abi::msg::{Acceptor, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::env::{faults, main_id, wait_blocked, Space, Thread, PRIO};
use crate::harness::{ensure, fail, wait_until, Check, Runner, Why};
use crate::jobs::{self, lane, EXTRA, LANE_WORDS, OUT, PARAM, PARAM2, TAG, W};
use crate::wire::{self, expect_err, expect_ok, map_item, tmo, LONG};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("map");
    r.check("page-into-larger-window-at-send-base", into_larger_window);
    r.check("larger-fpage-into-window-send-base-selects", larger_fpage);
    r.check("into-complete-space-window", complete_window);
    r.check("two-items-and-untyped-words", two_items);
    r.check("rights-shrink-to-the-item", rights_shrink);
    r.check("rights-never-widen", rights_widen);
    r.check("nil-fpage-maps-nothing", nil_fpage);
    let na = no_acceptor();
    r.check("no-acceptor-sender-error", || {
        na.as_ref().map_err(Why::clone)?.sender()
    });
    r.check("no-acceptor-receiver-error", || {
        na.as_ref().map_err(Why::clone)?.receiver()
    });
    let g = grant_scenario();
    r.group("grant");
    r.check("grant-item-delivers-page", || g.delivered());
    r.check("grant-removes-page-from-granter", || g.removed());
    r.check("grant-back-restores-page", || g.restored());
}

/// The receive window in child spaces (16 KiB, aligned).
const WIN: u64 = 0x4000_0000;
/// Another window, for the complete-space acceptor.
const WIN2: u64 = 0x5123_4000;

/// A 16 KiB, 16 KiB-aligned area of four pages; word 0 of page `k` holds a marker.
#[repr(C, align(16384))]
struct Area([AtomicU64; 2048]);

impl Area {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; 2048])
    }

    fn base(&self) -> u64 {
        self as *const Area as u64
    }

    fn set_markers(&self, seed: u64) {
        for k in 0..4 {
            self.0[k * 512].store(marker(seed, k), Ordering::SeqCst);
        }
    }

    fn word(&self, page: usize) -> u64 {
        self.0[page * 512].load(Ordering::SeqCst)
    }
}

/// The marker of page `k` for `seed`.
const fn marker(seed: u64, k: usize) -> u64 {
    seed ^ (0x1111 * (k as u64 + 1))
}

static SRC: Area = Area::new();

/// A read-only page of the image (in .rodata: the root space has it without write).
#[repr(C, align(4096))]
struct RoPage([u64; 512]);
static RO: RoPage = RoPage([RO_MARK; 512]);
const RO_MARK: u64 = 0x0EAD_0000_0000_0001;

/// The page that is granted away and back.
#[repr(C, align(4096))]
struct GrantPage([AtomicU64; 512]);
static GRANT: GrantPage = GrantPage([const { AtomicU64::new(0) }; 512]);
/// Is [`GRANT`] mapped in the root space (see the module invariants)?
static GRANT_HOME: AtomicBool = AtomicBool::new(true);

/// Lane words of the receiver job (beyond the common ones).
mod w {
    /// Number of addresses to read after the receive.
    pub const PROBE_N: usize = 30;
    /// The addresses.
    pub const PROBE_ADDR: usize = 31;
    /// The values read.
    pub const PROBE_VAL: usize = 50;
    /// Most probes.
    pub const PROBES: usize = 16;
    /// Address to write after the probes (0: none).
    pub const WRITE_ADDR: usize = 70;
    /// Set once the write went through.
    pub const WRITE_DONE: usize = 71;
    /// Page to grant back to PARAM after the probes (0: none).
    pub const GRANT_BACK: usize = 72;
    /// Outcome of the grant back.
    pub const GRANT_OUT: usize = 73;
}

const _: () = assert!(w::GRANT_OUT < LANE_WORDS && w::PROBE_ADDR + w::PROBES <= w::PROBE_VAL);

/// Reads the word at `addr` of the running thread's space.
fn read_at(addr: u64) -> u64 {
    // SAFETY: `addr` is an 8-byte aligned address the check chose in a window of this
    // space that nothing else uses; if no page is there the access becomes an X.2 page
    // fault to this thread's pager, which maps a page or leaves the thread blocked.
    unsafe { core::ptr::read_volatile((addr & !7) as *const u64) }
}

/// Writes `v` at `addr` of the running thread's space (see [`read_at`]).
fn write_at(addr: u64, v: u64) {
    // SAFETY: as in `read_at`: a window word the check chose, used by nothing else.
    unsafe { core::ptr::write_volatile((addr & !7) as *mut u64, v) }
}

/// Receives from PARAM with acceptor PARAM2, then reads the probe addresses, writes the
/// write address and grants the grant-back page, as the lane says.
fn receiver(i: usize) {
    let l = lane(i);
    let _ = l4::utcb::set_br(0, l.get(PARAM2));
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId(l.get(PARAM)),
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    jobs::record(l, &r);
    if r.failed() {
        return;
    }
    for k in 0..(l.get(w::PROBE_N) as usize).min(w::PROBES) {
        let v = read_at(l.get(w::PROBE_ADDR + k));
        l.set(w::PROBE_VAL + k, v);
        l.set(EXTRA, k as u64 + 1);
    }
    let wa = l.get(w::WRITE_ADDR);
    if wa != 0 {
        write_at(wa, 0x5757);
        l.set(w::WRITE_DONE, 1);
    }
    let ga = l.get(w::GRANT_BACK);
    if ga != 0 {
        let item = map_item(Fpage::new(ga, 12, Rights::RW), 0, true, false);
        let tag = wire::load(0x6B, &[], &item);
        let r = wire::ipc(
            ThreadId(l.get(PARAM)),
            ThreadId::NIL,
            tmo(LONG, Time::Never),
            tag,
        );
        l.set(w::GRANT_OUT, r.outcome());
    }
}

/// A receiver in a new child space, waiting with `acceptor`, that will read `probes`.
struct Child {
    _space: Space,
    t: Thread,
}

fn child(acceptor: Acceptor, probes: &[u64]) -> Result<Child, Why> {
    jobs::clear_all();
    let l = lane(0);
    l.set(PARAM, main_id().raw());
    l.set(PARAM2, acceptor.raw());
    l.set(w::PROBE_N, probes.len() as u64);
    for (k, &a) in probes.iter().enumerate().take(w::PROBES) {
        l.set(w::PROBE_ADDR + k, a);
    }
    let mut space = Space::new()?;
    let t = space.thread(PRIO)?;
    space.start(&t, receiver, 0)?;
    ensure!(
        wait_blocked(t.id(), true, 2_000_000),
        "the child never waited for the message"
    );
    Ok(Child { _space: space, t })
}

/// Sends the typed words `items` (after `untyped`) to `to`.
fn send_items(to: ThreadId, untyped: &[u64], items: &[u64]) -> u64 {
    let tag = wire::load(0x3A, untyped, items);
    wire::ipc(to, ThreadId::NIL, tmo(LONG, Time::Never), tag).outcome()
}

/// A window acceptor of `log2` bytes at `base`.
fn window(base: u64, log2: u8) -> Acceptor {
    Acceptor::new(Fpage::new(base, log2, Rights::NONE), false)
}

/// Waits until the child has read `n` probes; fails naming what is missing.
fn probes_done(c: &Child, n: u64, mark: u64) -> Check {
    let l = lane(0);
    let _ = wait_until(2_000_000, || l.get(OUT) != 0);
    expect_ok(l.get(OUT), "the child's receive")?;
    if wait_until(2_000_000, || l.get(EXTRA) >= n) {
        return Ok(());
    }
    let k = l.get(EXTRA) as usize;
    let a = l.get(w::PROBE_ADDR + k);
    match faults::find_since(mark, |f| !f.resolved && f.from == c.t.id()) {
        Some(f) => fail!(
            "the child faulted reading {:#x} (probe {}): nothing was mapped there (fault at {:#x})",
            a,
            k,
            f.addr
        ),
        None => fail!("the child read {} of {} probes", k, n),
    }
}

/// Expects probe `k` to have read `want`.
fn probe_is(k: usize, want: u64, what: &str) -> Check {
    let got = lane(0).get(w::PROBE_VAL + k);
    ensure!(
        got == want,
        "{}: read {:#x}, expected {:#x}",
        what,
        got,
        want
    );
    Ok(())
}

/// Expects the child to fault at `addr` next (a page that must not be mapped).
fn faults_at(c: &Child, mark: u64, addr: u64, what: &str) -> Check {
    match faults::wait_page(mark, addr, 2_000_000) {
        Some(f) if f.from == c.t.id() => Ok(()),
        Some(f) => fail!(
            "{}: a fault at {:#x} came from {:?}, not the child",
            what,
            f.addr,
            f.from
        ),
        None => {
            let k = lane(0).get(EXTRA) as usize;
            fail!(
                "{}: the child read {:#x} there instead of faulting (probes done: {})",
                what,
                lane(0).get(w::PROBE_VAL + k.saturating_sub(1)),
                k
            )
        }
    }
}

fn into_larger_window() -> Check {
    SRC.set_markers(0xA1_0000);
    let mark = faults::count();
    // Window 16 KiB; a 4 KiB fpage with send base 0x2000 lands at WIN + 0x2000.
    let c = child(window(WIN, 14), &[WIN + 0x2000, WIN])?;
    let item = map_item(Fpage::new(SRC.base(), 12, Rights::RW), 0x2000, false, false);
    expect_ok(send_items(c.t.id(), &[], &item), "send the map item")?;
    probes_done(&c, 1, mark)?;
    probe_is(0, marker(0xA1_0000, 0), "window + 0x2000")?;
    let tag = MsgTag(lane(0).get(TAG));
    ensure!(
        tag.untyped() == 0 && tag.typed() == 2,
        "received tag {:#x}",
        tag.raw()
    );
    faults_at(&c, mark, WIN, "window + 0 (outside the mapped part)")
}

fn larger_fpage() -> Check {
    SRC.set_markers(0xB2_0000);
    let mark = faults::count();
    // A 16 KiB fpage into an 8 KiB window: send base 0x2000 selects pages 2 and 3.
    let c = child(window(WIN, 13), &[WIN, WIN + 0x1000, WIN + 0x2000])?;
    let item = map_item(Fpage::new(SRC.base(), 14, Rights::RW), 0x2000, false, false);
    expect_ok(send_items(c.t.id(), &[], &item), "send the map item")?;
    probes_done(&c, 2, mark)?;
    probe_is(0, marker(0xB2_0000, 2), "window + 0 (page 2 of the fpage)")?;
    probe_is(
        1,
        marker(0xB2_0000, 3),
        "window + 0x1000 (page 3 of the fpage)",
    )?;
    faults_at(
        &c,
        mark,
        WIN + 0x2000,
        "window + 0x2000 (outside the window)",
    )
}

fn complete_window() -> Check {
    SRC.set_markers(0xC3_0000);
    let mark = faults::count();
    let c = child(Acceptor::complete(), &[WIN2])?;
    let item = map_item(
        Fpage::new(SRC.base() + 0x1000, 12, Rights::RW),
        WIN2,
        false,
        false,
    );
    expect_ok(send_items(c.t.id(), &[], &item), "send the map item")?;
    probes_done(&c, 1, mark)?;
    probe_is(
        0,
        marker(0xC3_0000, 1),
        "the send base in a complete-space window",
    )
}

fn two_items() -> Check {
    SRC.set_markers(0xD4_0000);
    let mark = faults::count();
    let c = child(window(WIN, 14), &[WIN, WIN + 0x3000])?;
    let a = map_item(
        Fpage::new(SRC.base() + 0x2000, 12, Rights::RW),
        0,
        false,
        true,
    );
    let b = map_item(
        Fpage::new(SRC.base() + 0x1000, 12, Rights::RW),
        0x3000,
        false,
        false,
    );
    let items = [a[0], a[1], b[0], b[1]];
    expect_ok(
        send_items(c.t.id(), &[0xAA, 0xBB], &items),
        "send two map items",
    )?;
    probes_done(&c, 2, mark)?;
    probe_is(0, marker(0xD4_0000, 2), "first item (window + 0)")?;
    probe_is(1, marker(0xD4_0000, 1), "second item (window + 0x3000)")?;
    let l = lane(0);
    let tag = MsgTag(l.get(TAG));
    ensure!(
        tag.untyped() == 2 && tag.typed() == 4 && l.get(W) == 0xAA && l.get(W + 1) == 0xBB,
        "received tag {:#x} words {:#x} {:#x}",
        tag.raw(),
        l.get(W),
        l.get(W + 1)
    );
    Ok(())
}

fn rights_shrink() -> Check {
    SRC.set_markers(0xE5_0000);
    let mark = faults::count();
    let c = child(window(WIN, 14), &[WIN])?;
    lane(0).set(w::WRITE_ADDR, WIN);
    let item = map_item(Fpage::new(SRC.base(), 12, Rights::R), 0, false, false);
    expect_ok(
        send_items(c.t.id(), &[], &item),
        "send a read-only map item",
    )?;
    probes_done(&c, 1, mark)?;
    probe_is(0, marker(0xE5_0000, 0), "the read-only page")?;
    let f = faults::wait_page(mark, WIN, 2_000_000);
    ensure!(
        lane(0).get(w::WRITE_DONE) == 0,
        "the child wrote to a page mapped read-only"
    );
    let Some(f) = f else {
        fail!("the child's write to the read-only page neither faulted nor finished");
    };
    ensure!(
        f.rwx & 2 != 0,
        "the write fault reported access {:#x} (w expected)",
        f.rwx
    );
    ensure!(
        SRC.word(0) == marker(0xE5_0000, 0),
        "the source page changed: {:#x}",
        SRC.word(0)
    );
    Ok(())
}

fn rights_widen() -> Check {
    let mark = faults::count();
    let c = child(window(WIN, 14), &[WIN])?;
    lane(0).set(w::WRITE_ADDR, WIN);
    // The root space has RO read-only; asking for rwx gives no more than that.
    let ro = &RO as *const RoPage as u64;
    let item = map_item(Fpage::new(ro, 12, Rights::RWX), 0, false, false);
    expect_ok(send_items(c.t.id(), &[], &item), "send the map item")?;
    probes_done(&c, 1, mark)?;
    probe_is(0, RO_MARK, "the read-only page")?;
    let f = faults::wait_page(mark, WIN, 2_000_000);
    ensure!(
        lane(0).get(w::WRITE_DONE) == 0,
        "the child could write a page its mapper has read-only"
    );
    ensure!(
        f.is_some(),
        "the child's write neither faulted nor finished"
    );
    // SAFETY: reading a static through a volatile read, so the compiler cannot assume
    // the constant initialiser.
    let now = unsafe { core::ptr::read_volatile(&RO.0[0]) };
    ensure!(now == RO_MARK, "the read-only page changed: {:#x}", now);
    Ok(())
}

fn nil_fpage() -> Check {
    let c = child(window(WIN, 14), &[])?;
    let item = map_item(Fpage::NIL, 0, false, false);
    expect_ok(send_items(c.t.id(), &[7], &item), "send a nil map item")?;
    ensure!(
        wait_until(2_000_000, || lane(0).get(OUT) != 0),
        "the child did not receive"
    );
    expect_ok(lane(0).get(OUT), "the child's receive")
}

/// Outcomes of a map item sent to a receiver without a window.
struct NoAcceptor {
    sender: u64,
    receiver: u64,
}

impl NoAcceptor {
    fn sender(&self) -> Check {
        expect_err(self.sender, IpcErrorCode::Overflow, Phase::Send)
    }

    fn receiver(&self) -> Check {
        expect_err(self.receiver, IpcErrorCode::Overflow, Phase::Receive)
    }
}

fn no_acceptor() -> Result<NoAcceptor, Why> {
    SRC.set_markers(0xF6_0000);
    let c = child(Acceptor::UNTYPED, &[])?;
    let item = map_item(Fpage::new(SRC.base(), 12, Rights::RW), 0, false, false);
    let sender = send_items(c.t.id(), &[], &item);
    ensure!(
        wait_until(2_000_000, || lane(0).get(OUT) != 0),
        "the child's receive did not return"
    );
    Ok(NoAcceptor {
        sender,
        receiver: lane(0).get(OUT),
    })
}

/// Reads the word at PARAM into W and sets EXTRA (a root thread checking a page).
fn peek(i: usize) {
    let l = lane(i);
    let v = read_at(l.get(PARAM));
    l.set(W, v);
    l.set(EXTRA, 1);
}

/// What a root thread saw at `addr`: `Some(value)`, or `None` if it faulted.
fn root_peek(i: usize, addr: u64) -> Result<(Option<u64>, Thread), Why> {
    let l = lane(i);
    l.set(PARAM, addr);
    l.set(EXTRA, 0);
    let mark = faults::count();
    let t = Thread::spawn(peek, i, PRIO)?;
    let mut result = None;
    let decided = wait_until(2_000_000, || {
        if l.get(EXTRA) != 0 {
            result = Some(Some(l.get(W)));
        } else if faults::find_since(mark, |f| !f.resolved && f.addr & !0xFFF == addr & !0xFFF)
            .is_some()
        {
            result = Some(None);
        }
        result.is_some()
    });
    match (decided, result) {
        (true, Some(r)) => Ok((r, t)),
        _ => Err(Why::new(format_args!(
            "a root thread reading {:#x} neither read nor faulted",
            addr
        ))),
    }
}

/// The grant scenario's findings.
struct Grant {
    error: Option<Why>,
    sent: u64,
    child_saw: Option<u64>,
    root_after_grant: Option<Option<u64>>,
    back: u64,
    root_after_back: Option<Option<u64>>,
}

const GRANT_MARK: u64 = 0x6A6A_0000_0000_0007;

fn grant_scenario() -> Grant {
    let mut g = Grant {
        error: None,
        sent: 0,
        child_saw: None,
        root_after_grant: None,
        back: 0,
        root_after_back: None,
    };
    if !GRANT_HOME.load(Ordering::SeqCst) {
        g.error = Some(Why::new(format_args!("the grant page was lost earlier")));
        return g;
    }
    if let Err(e) = run_grant(&mut g) {
        g.error = Some(e);
    }
    // Only a root thread's read proves the page is back.
    GRANT_HOME.store(matches!(g.root_after_back, Some(Some(_))), Ordering::SeqCst);
    let _ = l4::utcb::set_br(0, 0);
    g
}

fn run_grant(g: &mut Grant) -> Check {
    GRANT.0[0].store(GRANT_MARK, Ordering::SeqCst);
    let page = &GRANT as *const GrantPage as u64;
    let mark = faults::count();
    let c = child(window(WIN, 14), &[WIN + 0x1000])?;
    lane(0).set(w::GRANT_BACK, WIN + 0x1000);
    let item = map_item(Fpage::new(page, 12, Rights::RW), 0x1000, true, false);
    g.sent = send_items(c.t.id(), &[], &item);
    expect_ok(g.sent, "send the grant item")?;
    probes_done(&c, 1, mark)?;
    g.child_saw = Some(lane(0).get(w::PROBE_VAL));
    let (seen, _stuck) = root_peek(1, page)?;
    g.root_after_grant = Some(seen);
    // Take the page back: the child grants it into a one-page window at its old place.
    let _ = l4::utcb::set_br(0, window(page, 12).raw());
    let r = wire::ipc(ThreadId::NIL, c.t.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    let _ = l4::utcb::set_br(0, 0);
    g.back = r.outcome();
    let (seen, _t) = root_peek(2, page)?;
    g.root_after_back = Some(seen);
    Ok(())
}

impl Grant {
    fn failed_early(&self) -> Check {
        match &self.error {
            Some(e) => fail!("{}", e),
            None => Ok(()),
        }
    }

    fn delivered(&self) -> Check {
        expect_ok(self.sent, "the grant")?;
        match self.child_saw {
            Some(v) => {
                ensure!(
                    v == GRANT_MARK,
                    "the child read {:#x} in the granted page",
                    v
                );
                Ok(())
            }
            None => self.failed_early(),
        }
    }

    fn removed(&self) -> Check {
        match self.root_after_grant {
            Some(None) => Ok(()),
            Some(Some(v)) => fail!(
                "after the grant the root space still reads the page ({:#x})",
                v
            ),
            None => self.failed_early(),
        }
    }

    fn restored(&self) -> Check {
        expect_ok(self.back, "the grant back")?;
        match self.root_after_back {
            Some(Some(v)) => {
                ensure!(v == GRANT_MARK, "the page came back holding {:#x}", v);
                Ok(())
            }
            Some(None) => fail!("after the grant back the root space faults on the page"),
            None => self.failed_early(),
        }
    }
}
