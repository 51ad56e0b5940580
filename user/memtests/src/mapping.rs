//! Checks of map, grant and unmap as seen from user space: rights, revocation down a
//! chain of spaces, accessed status, large pages, receive windows, kernel pages of the
//! receiver, faults to the pager, port I/O, and kernel memory over many cycles.
//!
//! Every check builds what it needs with fresh test spaces ([`Child`]) and pages from σ0
//! (in this task's physical window), so checks do not depend on each other.

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::msg::{Acceptor, MapItem};
use abi::time::Time;
use l4::ipc::{self, Msg};

use crate::harness::{ensure, fail, Check, Context, Tally, Why};
use crate::lab::{
    self, any, clear_faults, faulted, faulted_at, give, page, pass, peek, poke, Child, WINDOW,
};

/// Where test pages go in the test spaces.
const VA: u64 = 0x4000_0000;
/// A second and third place (other checks, other levels).
const VA2: u64 = 0x4010_0000;
const VA3: u64 = 0x4020_0000;
/// A 2 MiB aligned place.
const VA_BIG: u64 = 0x6000_0000;
/// `mov eax, 42; ret` — the code every test page starts with.
const CODE: [u8; 6] = [0xB8, 0x2A, 0, 0, 0, 0xC3];
/// Offset of the marker word in a test page.
const MARK_AT: u64 = 0x800;

/// The complete address space as a receive window.
fn anywhere_window() -> Fpage {
    Fpage::complete(Rights::NONE)
}

/// A fresh page from σ0: code at offset 0 (returns 42), `marker` at [`MARK_AT`].
fn test_page(marker: u64) -> Result<u64, Why> {
    let p = any(12)?;
    lab::fill(p, 0xC3);
    for (i, b) in CODE.iter().enumerate() {
        // SAFETY: the page is this task's, just obtained, in the window.
        unsafe { core::ptr::write_volatile((WINDOW + p + i as u64) as *mut u8, *b) };
    }
    poke(p + MARK_AT, marker);
    Ok(p)
}

/// Unmaps `fpage` from this space's derived mappings (`flush`: own mapping too) and
/// returns the accessed status the kernel reported.
fn unmap(fpage: Fpage, flush: bool) -> Result<Rights, Why> {
    let mut f = [fpage];
    l4::space::unmap(&mut f, flush).ctx("Unmap")?;
    ensure!(
        f[0].base() == fpage.base() && f[0].log2size() == fpage.log2size(),
        "Unmap gave back {:?} for {:?}",
        f[0],
        fpage
    );
    Ok(f[0].rights())
}

/// Which accesses of a child to `VA` fault after mapping page `p` with `rights`.
fn access_faults(p: u64, rights: Rights, revoke: Rights) -> Result<Rights, Why> {
    let c = Child::new()?;
    let mut faults = Rights::NONE;
    for access in [Rights::R, Rights::W, Rights::X] {
        // Map afresh for every access: a fault puts the pager's scratch page there.
        give(&c, page(p, rights), VA, anywhere_window(), false)?;
        if !revoke.is_empty() {
            unmap(page(p, revoke), false)?;
        }
        clear_faults();
        match access {
            Rights::R => {
                let v = c.read(VA + MARK_AT)?;
                if !faulted_at(VA) && v != peek(p + MARK_AT) {
                    fail!("read {:#x} instead of the marker", v);
                }
            }
            Rights::W => c.write(VA + MARK_AT + 8, 7)?,
            _ => {
                let v = c.exec(VA)?;
                if !faulted_at(VA) && v != 42 {
                    fail!("the code returned {:#x}", v);
                }
            }
        }
        if faulted(VA, access) {
            faults |= access;
        }
    }
    Ok(faults)
}

fn map_rights(rights: Rights) -> Check {
    let p = test_page(0x1111)?;
    let got = access_faults(p, rights, Rights::NONE)?;
    // x86: a present page is readable, so R is never refused.
    let want = Rights::RWX.difference(rights).difference(Rights::R);
    ensure!(
        got == want,
        "mapped {:?}: accesses {:?} faulted, expected {:?}",
        rights,
        got,
        want
    );
    Ok(())
}

fn unmap_rights(revoke: Rights) -> Check {
    let p = test_page(0x2222)?;
    let got = access_faults(p, Rights::RWX, revoke)?;
    // Revoking R removes the mapping (x86 cannot keep a page that is not readable).
    let want = if revoke.contains(Rights::R) {
        Rights::RWX
    } else {
        revoke
    };
    ensure!(
        got == want,
        "revoked {:?}: accesses {:?} faulted, expected {:?}",
        revoke,
        got,
        want
    );
    Ok(())
}

/// A child flushing its own mapping loses it; unmap without the flush bit keeps it.
fn flush_own(flush: bool) -> Check {
    let p = test_page(0x3333)?;
    let c = Child::new()?;
    give(&c, page(p, Rights::RWX), VA, anywhere_window(), false)?;
    let back = c.unmap(Fpage::new(VA, 12, Rights::RWX), flush)?;
    ensure!(back.base() == VA, "the child's Unmap gave back {:?}", back);
    clear_faults();
    let v = c.read(VA + MARK_AT)?;
    if flush {
        ensure!(
            faulted_at(VA),
            "the child still reads its flushed page ({:#x})",
            v
        );
    } else {
        ensure!(
            !faulted_at(VA) && v == 0x3333,
            "unmap without flush took the child's own page (read {:#x})",
            v
        );
    }
    Ok(())
}

/// Unmap reports the accessed status: R after a read, W after a write, X after running
/// code — and resets it.
fn status(access: Rights) -> Check {
    let p = test_page(0x4444)?;
    let c = Child::new()?;
    let rights = if access == Rights::X {
        Rights::RX
    } else {
        Rights::RW
    };
    give(&c, page(p, rights), VA, anywhere_window(), false)?;
    unmap(page(p, Rights::NONE), false)?;
    let quiet = unmap(page(p, Rights::NONE), false)?;
    ensure!(quiet.is_empty(), "status right after a reset: {:?}", quiet);
    clear_faults();
    match access {
        Rights::R => {
            c.read(VA + MARK_AT)?;
        }
        Rights::W => c.write(VA + MARK_AT, 5)?,
        _ => {
            c.exec(VA)?;
        }
    }
    ensure!(!faulted_at(VA), "the access faulted");
    let s = unmap(page(p, Rights::NONE), false)?;
    let ok = match access {
        Rights::R => s.contains(Rights::R) && !s.contains(Rights::W),
        Rights::W => s.contains(Rights::W),
        _ => s.contains(Rights::X),
    };
    ensure!(ok, "after {:?} the status is {:?}", access, s);
    Ok(())
}

/// B grants what it got from this task to C.
fn grant() -> Result<[Check; 3], Why> {
    let p = test_page(0x5555)?;
    let b = Child::new()?;
    let c = Child::new()?;
    give(&b, page(p, Rights::RWX), VA, anywhere_window(), false)?;
    pass(
        &b,
        &c,
        Fpage::new(VA, 12, Rights::RWX),
        VA2,
        anywhere_window(),
        true,
    )?;
    clear_faults();
    let v = c.read(VA2 + MARK_AT)?;
    let received = if !faulted_at(VA2) && v == 0x5555 {
        Ok(())
    } else {
        Err(Why::new(format_args!("the grantee read {:#x}", v)))
    };
    clear_faults();
    b.read(VA + MARK_AT)?;
    let lost = if faulted_at(VA) {
        Ok(())
    } else {
        Err(Why::new(format_args!("the granter still has the page")))
    };
    unmap(page(p, Rights::RWX), false)?;
    clear_faults();
    c.read(VA2 + MARK_AT)?;
    let revoked = if faulted_at(VA2) {
        Ok(())
    } else {
        Err(Why::new(format_args!(
            "unmap by the first mapper missed the granted page"
        )))
    };
    Ok([received, lost, revoked])
}

/// This task → B → C → D: revocation reaches every level.
fn chain() -> Result<(Child, Child, Child, u64), Why> {
    let p = test_page(0x6666)?;
    let b = Child::new()?;
    let c = Child::new()?;
    let d = Child::new()?;
    give(&b, page(p, Rights::RWX), VA, anywhere_window(), false)?;
    pass(
        &b,
        &c,
        Fpage::new(VA, 12, Rights::RWX),
        VA2,
        anywhere_window(),
        false,
    )?;
    pass(
        &c,
        &d,
        Fpage::new(VA2, 12, Rights::RWX),
        VA3,
        anywhere_window(),
        false,
    )?;
    Ok((b, c, d, p))
}

fn recursive(s: &mut Tally) -> Check {
    let (b, c, d, p) = chain()?;
    clear_faults();
    let v = d.read(VA3 + MARK_AT)?;
    s.report(
        "recursive::third-level-sees-page",
        if !faulted_at(VA3) && v == 0x6666 {
            Ok(())
        } else {
            Err(Why::new(format_args!("read {:#x}", v)))
        },
    );
    unmap(page(p, Rights::W), false)?;
    clear_faults();
    let v = d.read(VA3 + MARK_AT)?;
    d.write(VA3 + MARK_AT, 1)?;
    let r = if faulted(VA3, Rights::W) && v == 0x6666 {
        Ok(())
    } else {
        Err(Why::new(format_args!(
            "read {:#x}; write faulted: {}",
            v,
            faulted(VA3, Rights::W)
        )))
    };
    s.report("recursive::write-revoked-at-third-level", r);
    unmap(page(p, Rights::RWX), false)?;
    clear_faults();
    b.read(VA + MARK_AT)?;
    c.read(VA2 + MARK_AT)?;
    let r = if faulted_at(VA) && faulted_at(VA2) {
        Ok(())
    } else {
        Err(Why::new(format_args!(
            "level 1 kept it: {}, level 2 kept it: {}",
            !faulted_at(VA),
            !faulted_at(VA2)
        )))
    };
    s.report("recursive::unmap-revokes-levels-1-and-2", r);
    drop((b, c, d));
    let (_b, _c, d, p) = chain()?;
    unmap(page(p, Rights::RWX), false)?;
    clear_faults();
    d.read(VA3 + MARK_AT)?;
    ensure!(faulted_at(VA3), "the third level kept the page");
    Ok(())
}

/// A 2 MiB mapping: one large page; a 4 KiB piece revoked; memory back after unmap.
fn big(s: &mut Tally) -> Check {
    let b = any(21)?;
    for off in [0u64, 0x5000, 0x6000, 0x1F_F000] {
        poke(b + off, 0xB16_0000 + off);
    }
    let big = Fpage::new(WINDOW + b, 21, Rights::RWX);
    // Memory accounting first, in a child that never faults on the big page.
    let c1 = Child::new()?;
    clear_faults();
    c1.read(VA)?; // warm up the read path (and the scratch page at VA)
    let before = l4::kdb::kernel_memory().0;
    give(&c1, big, VA_BIG, anywhere_window(), false)?;
    let cost = before.saturating_sub(l4::kdb::kernel_memory().0);
    s.report(
        "big::2m-mapping-is-one-large-page",
        if cost <= 4 {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "mapping 2 MiB took {} frames of kernel memory",
                cost
            )))
        },
    );
    unmap(Fpage::new(WINDOW + b + 0x5000, 12, Rights::RWX), false)?;
    clear_faults();
    let (x, y, z) = (
        c1.read(VA_BIG)?,
        c1.read(VA_BIG + 0x6000)?,
        c1.read(VA_BIG + 0x1F_F000)?,
    );
    let r =
        if !faulted_at(VA_BIG) && x == 0xB16_0000 && y == 0xB16_6000 && z == 0xB16_0000 + 0x1F_F000
        {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "after revoking one piece the rest reads {:#x} {:#x} {:#x}",
                x, y, z
            )))
        };
    s.report("big::rest-of-split-page-kept", r);
    unmap(big, false)?;
    let after = l4::kdb::kernel_memory().0;
    s.report(
        "big::split-memory-returned",
        if after == before {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "free frames {} before, {} after",
                before, after
            )))
        },
    );
    // The revoked piece faults.
    let c2 = Child::new()?;
    give(&c2, big, VA_BIG, anywhere_window(), false)?;
    unmap(Fpage::new(WINDOW + b + 0x5000, 12, Rights::RWX), false)?;
    clear_faults();
    c2.read(VA_BIG + 0x5000)?;
    let piece = faulted_at(VA_BIG + 0x5000);
    let other = c2.read(VA_BIG + 0x4000)?;
    ensure!(
        piece && !faulted_at(VA_BIG + 0x4000),
        "revoked piece faulted: {}; neighbour read {:#x}",
        piece,
        other
    );
    Ok(())
}

/// A small fpage lands at the send base's offset inside a large window.
fn window_small_fpage() -> Check {
    let p = test_page(0x7777)?;
    let c = Child::new()?;
    let win = Fpage::new(0x5000_0000, 24, Rights::NONE);
    let code = give(&c, page(p, Rights::RW), 0x1234_5000, win, false)?;
    ensure!(code == 0, "receive failed: {:#x}", code);
    clear_faults();
    let at = 0x5000_0000 + (0x1234_5000 & 0xFF_FFFF);
    let v = c.read(at + MARK_AT)?;
    ensure!(
        !faulted_at(at) && v == 0x7777,
        "at {:#x} the child read {:#x}",
        at,
        v
    );
    Ok(())
}

/// A large fpage: only the window-sized part the send base selects arrives.
fn window_large_fpage() -> Check {
    let p = any(16)?;
    for i in 0..16u64 {
        poke(p + i * 0x1000 + MARK_AT, 0x8800 + i);
    }
    let c = Child::new()?;
    let win = Fpage::new(0x5100_0000, 13, Rights::NONE);
    give(
        &c,
        Fpage::new(WINDOW + p, 16, Rights::RW),
        0x3000,
        win,
        false,
    )?;
    clear_faults();
    let (a, b) = (
        c.read(0x5100_0000 + MARK_AT)?,
        c.read(0x5100_1000 + MARK_AT)?,
    );
    let outside_before = faulted_at(0x5100_0000) || faulted_at(0x5100_1000);
    c.read(0x5100_2000 + MARK_AT)?;
    ensure!(
        !outside_before && a == 0x8802 && b == 0x8803 && faulted_at(0x5100_2000),
        "window pages read {:#x} {:#x}; the page after the window faulted: {}",
        a,
        b,
        faulted_at(0x5100_2000)
    );
    Ok(())
}

/// A receiver accepting no mappings gets message overflow, and so does the sender.
fn window_none() -> Check {
    let p = test_page(0x9999)?;
    let c = Child::new()?;
    let me = l4::utcb::my_global_id();
    c.begin(lab::cmd::RECV_MAP, &[me.raw(), Acceptor::UNTYPED.raw()])?;
    let mut m = Msg::new(0x11);
    m.push_map(MapItem::map(page(p, Rights::RW), VA))
        .ctx("item")?;
    let sent = ipc::send(c.id, &m, Time::Period { us: 1_000_000 });
    let got = c.wait()?;
    let overflow = |code: u64| (code >> 1) & 7 == 4;
    ensure!(
        overflow(crate::harness::ipc_code(&sent)) && overflow(got[0]),
        "sender got {:#x}, receiver {:#x} (want message overflow)",
        crate::harness::ipc_code(&sent),
        got[0]
    );
    Ok(())
}

/// Mapping over an existing mapping replaces it.
fn overmap() -> Check {
    let (x, y) = (test_page(0xAAAA)?, test_page(0xBBBB)?);
    let c = Child::new()?;
    give(&c, page(x, Rights::RW), VA, anywhere_window(), false)?;
    let first = c.read(VA + MARK_AT)?;
    give(&c, page(y, Rights::RW), VA, anywhere_window(), false)?;
    let second = c.read(VA + MARK_AT)?;
    ensure!(
        first == 0xAAAA && second == 0xBBBB,
        "read {:#x} then {:#x}",
        first,
        second
    );
    Ok(())
}

/// A map item aimed at the receiver's KIP area leaves its KIP in place.
fn kip_untouched() -> Check {
    let p = test_page(0xCCCC)?;
    let c = Child::new()?;
    give(
        &c,
        page(p, Rights::RW),
        lab::CHILD_KIP,
        anywhere_window(),
        false,
    )?;
    clear_faults();
    let magic = c.read(lab::CHILD_KIP)?;
    ensure!(
        magic as u32 == abi::kip::KIP_MAGIC && !faulted_at(lab::CHILD_KIP),
        "the child's KIP area reads {:#x}",
        magic
    );
    Ok(())
}

/// Touching memory nobody mapped is a page fault sent to the pager.
fn never_given() -> Check {
    let c = Child::new()?;
    clear_faults();
    c.read(0x7000_0000)?;
    c.write(0x7100_0000, 1)?;
    ensure!(
        faulted(0x7000_0000, Rights::R) && faulted(0x7100_0000, Rights::W),
        "faults seen: {:?}",
        lab::faults().0[..lab::faults().1.min(4)].as_ref()
    );
    Ok(())
}

/// Many page faults, each resolved by the pager: all arrive; prints the round trip.
fn fault_round_trips(n: u64) -> Check {
    let c = Child::new()?;
    c.read(0x7200_0000)?; // warm up: the command path and the first tables
    clear_faults();
    let t0 = l4::syscall::system_clock();
    c.call(lab::cmd::TOUCH, &[lab::TIMING_RANGE.start, n.min(0x1000)])?;
    let t1 = l4::syscall::system_clock();
    l4::println!("memtests: {} page faults resolved by a user-level pager in {} µs ({} µs each: fault → pager IPC → map item → resume)", n, t1 - t0, (t1 - t0) / n.max(1));
    ensure!(
        lab::fault_count() as u64 == n,
        "{} faults for {} pages",
        lab::fault_count(),
        n
    );
    Ok(())
}

/// A child's port read without the port's rights is an I/O page fault to its pager.
fn port_without_fpage() -> Check {
    let c = Child::new()?;
    clear_faults();
    c.begin(lab::cmd::IN, &[0x80])?;
    let r = c.wait_for(Time::Period { us: 300_000 });
    let (n, f) = lab::io_faults();
    let io = IoFpage::try_from(f);
    ensure!(
        r.is_err() && n >= 1 && io.is_ok_and(|io| io.port() == 0x80),
        "port read finished: {}; {} I/O fault(s), last {:?}",
        r.is_ok(),
        n,
        f
    );
    Ok(())
}

/// Ports from σ0, mapped on to a child: its port reads work; after the child flushes the
/// I/O fpage they fault again.
fn port_with_fpage() -> Result<[Check; 2], Why> {
    let port = Fpage::from(IoFpage::new(0x80, 0, Rights::RW));
    let got = lab::sigma0_request(port, Fpage::complete(Rights::NONE))?;
    if got.is_nil() {
        fail!("σ0 refused port 0x80");
    }
    let c = Child::new()?;
    let code = give(&c, port, 0, anywhere_window(), false)?;
    clear_faults();
    c.begin(lab::cmd::IN, &[0x80])?;
    let r = c.wait_for(Time::Period { us: 500_000 });
    let works = if code == 0 && r.is_ok() && lab::io_faults().0 == 0 {
        Ok(())
    } else {
        Err(Why::new(format_args!(
            "receive {:#x}; the port read finished: {}; I/O faults {}",
            code,
            r.is_ok(),
            lab::io_faults().0
        )))
    };
    c.unmap(port, true)?;
    clear_faults();
    c.begin(lab::cmd::IN, &[0x80])?;
    let r = c.wait_for(Time::Period { us: 300_000 });
    let revoked = if r.is_err() && lab::io_faults().0 >= 1 {
        Ok(())
    } else {
        Err(Why::new(format_args!(
            "after the flush the port read finished: {}",
            r.is_ok()
        )))
    };
    Ok([works, revoked])
}

/// Whether `c`'s read of port 0x80 works (finishes without an I/O page fault).
fn port_works(c: &Child) -> Result<bool, Why> {
    clear_faults();
    c.begin(lab::cmd::IN, &[0x80])?;
    let r = c.wait_for(Time::Period { us: 300_000 });
    Ok(r.is_ok() && lab::io_faults().0 == 0)
}

/// Port 0x80 passed on root → b → c. Unmap (without flush) by b takes it from c but
/// not from b; unmap by the root then takes it from b.
fn port_recursive() -> Result<[Check; 3], Why> {
    let port = Fpage::from(IoFpage::new(0x80, 0, Rights::RW));
    let got = lab::sigma0_request(port, Fpage::complete(Rights::NONE))?;
    if got.is_nil() {
        fail!("σ0 refused port 0x80");
    }
    let b = Child::new()?;
    let c = Child::new()?;
    let code = give(&b, port, 0, anywhere_window(), false)?;
    if code != 0 {
        fail!("b did not receive the port: {:#x}", code);
    }
    pass(&b, &c, port, 0, anywhere_window(), false)?;
    let second = port_works(&c)?;
    let passed = if second { Ok(()) } else { Err(Why::new(format_args!("c's port read faulted"))) };
    b.unmap(port, false)?;
    let (c_lost, b_kept) = (!port_works(&c)?, port_works(&b)?);
    let middle = if c_lost && b_kept {
        Ok(())
    } else {
        Err(Why::new(format_args!("after b's unmap: c lost the port: {}, b kept it: {}", c_lost, b_kept)))
    };
    unmap(port, false)?;
    let b_lost = !port_works(&b)?;
    let root = if b_lost { Ok(()) } else { Err(Why::new(format_args!("after the root's unmap b still reads the port"))) };
    Ok([passed, middle, root])
}

/// Many map/unmap cycles leave kernel memory where it was.
fn cycles(n: u64) -> Check {
    let p = test_page(0xDDDD)?;
    let c = Child::new()?;
    let item = MapItem::map(page(p, Rights::RW), VA);
    let mut m = Msg::new(0x13);
    m.push_map(item).ctx("item")?;
    c.begin(
        lab::cmd::SINK,
        &[n + 1, Acceptor::new(anywhere_window(), false).raw()],
    )?;
    let cycle = |m: &Msg| -> Check {
        ipc::call(
            c.id,
            m,
            Time::Period { us: 1_000_000 },
            Time::Period { us: 1_000_000 },
        )
        .ctx("map to the child")?;
        unmap(page(p, Rights::RWX), false)?;
        Ok(())
    };
    cycle(&m)?;
    let before = l4::kdb::kernel_memory().0;
    let t0 = l4::syscall::system_clock();
    for _ in 0..n {
        cycle(&m)?;
    }
    let t1 = l4::syscall::system_clock();
    let after = l4::kdb::kernel_memory().0;
    l4::println!(
        "memtests: {} map/unmap cycles in {} ms ({} µs each, IPC with a map item + Unmap); kernel memory {} free frames before, {} after",
        n,
        (t1 - t0) / 1000,
        (t1 - t0) / n.max(1),
        before,
        after
    );
    ensure!(
        before == after,
        "free frames {} before, {} after",
        before,
        after
    );
    Ok(())
}

/// Runs the mapping checks.
pub fn run(s: &mut Tally) {
    for r in [Rights::R, Rights::RW, Rights::RX, Rights::RWX] {
        let name = match r.bits() {
            4 => "map::rights-r",
            6 => "map::rights-rw",
            5 => "map::rights-rx",
            _ => "map::rights-rwx",
        };
        s.report(name, map_rights(r));
    }
    for r in [Rights::W, Rights::X, Rights::R, Rights::RWX] {
        let name = match r.bits() {
            2 => "unmap::revoke-w",
            1 => "unmap::revoke-x",
            4 => "unmap::revoke-r-removes-page",
            _ => "unmap::revoke-all",
        };
        s.report(name, unmap_rights(r));
    }
    s.report("unmap::flush-own-mapping", flush_own(true));
    s.report("unmap::without-flush-keeps-own-mapping", flush_own(false));
    s.report("unmap::status-referenced", status(Rights::R));
    s.report("unmap::status-written", status(Rights::W));
    s.report("unmap::status-executed", status(Rights::X));
    match grant() {
        Ok([a, b, c]) => {
            s.report("grant::receiver-has-page", a);
            s.report("grant::granter-loses-page", b);
            s.report("grant::stays-derived-from-mapper", c);
        }
        Err(e) => s.report("grant::setup", Err(e)),
    }
    let r = recursive(s);
    s.report("recursive::unmap-revokes-level-3", r);
    let r = big(s);
    s.report("big::revoked-piece-faults", r);
    s.report("window::small-fpage-at-send-base", window_small_fpage());
    s.report("window::large-fpage-cut-to-window", window_large_fpage());
    s.report("window::no-acceptor-overflows", window_none());
    s.report("map::replaces-existing-mapping", overmap());
    s.report("map::receiver-kip-area-untouched", kip_untouched());
    s.report("fault::untouched-memory-faults-to-pager", never_given());
    s.report(
        "fault::1000-faults-resolved-by-pager",
        fault_round_trips(1000),
    );
    s.report(
        "io::port-without-fpage-faults-to-pager",
        port_without_fpage(),
    );
    match port_with_fpage() {
        Ok([a, b]) => {
            s.report("io::port-with-fpage-works", a);
            s.report("io::flushed-port-faults-again", b);
        }
        Err(e) => s.report("io::port-with-fpage-works", Err(e)),
    }
    match port_recursive() {
        Ok([a, b, c]) => {
            s.report("io::port-passed-on-works-at-second-level", a);
            s.report("io::unmap-revokes-ports-below-not-own", b);
            s.report("io::unmap-by-root-revokes-from-first-level", c);
        }
        Err(e) => s.report("io::port-passed-on-works-at-second-level", Err(e)),
    }
    s.report("memory::100000-map-unmap-cycles-no-leak", cycles(100_000));
}
