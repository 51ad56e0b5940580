//! MemoryControl: caching attributes of the root task's own pages.
//!
//! The suite runs as the root task, a privileged space, so it may call MemoryControl; the
//! refusal for an unprivileged caller is checked by `space_checks` (its child space). A
//! user program cannot read its page-table entries, so "applied" is checked as: the call
//! succeeds for every attribute, the memory reads back what was written under each one
//! (write-through, uncached, write-combining, write-protected, ...), and the debug kernel
//! asserts after each call that the leaf carries the requested PAT/PCD/PWT bits.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::error::SysError;
use abi::fpage::{Fpage, IoFpage, Rights};
use abi::syscall::{MemoryAttribute, MemoryControlWord};
use l4::space;

use crate::harness::{ensure, expect_sys, fail, Check, Tally};

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("memctl::attributes-applied-memory-works", applied);
    s.run("memctl::several-fpages-four-attributes", four_attributes);
    s.run("memctl::bad-attribute-refused", bad_attribute);
    s.run("memctl::bad-control-refused", bad_control);
    s.run("memctl::io-fpage-refused", io_fpage);
    s.run("memctl::attribute3-needs-tern-bit", attribute3_binding);
    s.run("memctl::nil-fpage-is-noop", nil_fpage);
}

/// Two pages of the root task's data whose caching the checks change (and restore).
#[repr(C, align(4096))]
struct Pages([AtomicU64; 1024]);

static PAGES: Pages = Pages([const { AtomicU64::new(0) }; 1024]);

fn base() -> u64 {
    &PAGES as *const Pages as u64
}

/// The first page (4 KiB fpage, selector `sel`).
fn page(i: u64, sel: u64) -> Fpage {
    Fpage(Fpage::new(base() + i * 4096, 12, Rights::NONE).raw() | sel)
}

/// Writes a pattern over both pages and reads it back.
fn exercise(seed: u64) -> Check {
    for (i, w) in PAGES.0.iter().enumerate() {
        w.store(
            seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            Ordering::SeqCst,
        );
    }
    for (i, w) in PAGES.0.iter().enumerate() {
        let want = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let got = w.load(Ordering::SeqCst);
        ensure!(
            got == want,
            "word {} reads {:#x}, wrote {:#x}",
            i,
            got,
            want
        );
    }
    Ok(())
}

fn restore() {
    let _ = space::memory_control(&[page(0, 0), page(1, 0)], [0; 4]);
}

fn applied() -> Check {
    exercise(1)?;
    let attrs = [
        MemoryAttribute::WriteThrough,
        MemoryAttribute::Uncached,
        MemoryAttribute::UncachedMinus,
        MemoryAttribute::WriteCombining,
        MemoryAttribute::WriteProtected,
        MemoryAttribute::WriteBack,
        MemoryAttribute::Default,
    ];
    for (n, a) in attrs.into_iter().enumerate() {
        let r = space::set_page_attribute(Fpage::new(base(), 13, Rights::RW), a);
        if let Err(e) = r {
            restore();
            fail!("L4_Set_PageAttribute({:?}): {:?}", a, e);
        }
        if let Err(e) = exercise(n as u64 + 2) {
            restore();
            return Err(e);
        }
    }
    restore();
    Ok(())
}

fn four_attributes() -> Check {
    // Page 0 through selector 3 (attribute 3 travels in R10, Tern's way), page 1 through
    // selector 1, a nil fpage through selector 2.
    let r = space::memory_control(
        &[page(0, 3), Fpage(2), page(1, 1)],
        [
            MemoryAttribute::Uncached as u64,
            MemoryAttribute::WriteCombining as u64,
            6, // not a valid attribute, but only the nil fpage selects it
            MemoryAttribute::WriteThrough as u64,
        ],
    );
    let mem = exercise(0x77);
    restore();
    r.map_err(|e| crate::harness::Why::new(format_args!("MemoryControl: {:?}", e)))?;
    mem
}

fn bad_attribute() -> Check {
    for bad in [6u64, 7, 9, 0x100, !0] {
        let r = space::memory_control(&[page(0, 0)], [bad, 0, 0, 0]);
        if r.is_ok() {
            restore();
        }
        expect_sys(r, SysError::InvalidParam)?;
    }
    Ok(())
}

/// The raw binding, control word as given; returns (result, ErrorCode).
fn raw(control: u64, fpage: Fpage, attrs: [u64; 4]) -> (u64, u64) {
    let _ = l4::utcb::set_mr(0, fpage.raw());
    l4::utcb::set_error_code(0);
    let r = l4::syscall::memory_control(control, attrs);
    (r, l4::utcb::error_code())
}

fn bad_control() -> Check {
    for control in [1u64 << 7, 1 << 32, !0 & !0x7F] {
        let (r, e) = raw(control, page(0, 0), [0; 4]);
        ensure!(
            r == 0 && e == SysError::InvalidParam.code(),
            "control {:#x}: result {}, ErrorCode {}",
            control,
            r,
            e
        );
    }
    Ok(())
}

fn io_fpage() -> Check {
    let io = Fpage(IoFpage::new(0x80, 0, Rights::NONE).raw());
    let (r, e) = raw(0, io, [0; 4]);
    ensure!(
        r == 0 && e == SysError::InvalidParam.code(),
        "result {}, ErrorCode {}",
        r,
        e
    );
    Ok(())
}

fn attribute3_binding() -> Check {
    // Pistachio's binding: attribute 3 is loaded into R11, which `syscall` destroys, so an
    // fpage selecting it is refused unless control bit 6 says it is in R10.
    let wt = MemoryAttribute::WriteThrough as u64;
    let (r, e) = raw(0, page(0, 3), [0, 0, 0, wt]);
    if r != 0 {
        restore();
        fail!("without control bit 6 an fpage selecting attribute 3 was accepted");
    }
    ensure!(
        e == SysError::InvalidParam.code(),
        "ErrorCode {}, expected 5",
        e
    );
    let (r, e) = raw(MemoryControlWord::ATTR3_IN_R10, page(0, 3), [0, 0, 0, wt]);
    restore();
    ensure!(r == 1, "with control bit 6: result {}, ErrorCode {}", r, e);
    Ok(())
}

fn nil_fpage() -> Check {
    // A nil fpage is skipped, whatever attribute it selects.
    let (r, e) = raw(0, Fpage::NIL, [7, 0, 0, 0]);
    ensure!(r == 1, "result {}, ErrorCode {}", r, e);
    Ok(())
}
