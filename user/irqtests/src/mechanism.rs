//! Checks of the kernel's interrupt mechanism: attaching, delivery, acknowledgement,
//! masking while in service, coalescing without loss, privilege, and I/O page faults.
//!
//! The main thread (privileged: this is the root task) is the handler in most checks:
//! it attaches itself, makes the device interrupt, and receives with a bounded timeout.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::error::{IpcErrorCode, Phase, SysError};
use abi::fpage::{IoFpage, Rights};
use abi::kip::ThreadInfo;
use abi::msg::{label, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::irq::{self, Line};
use drvkit::ns16550::lsr;
use l4::ipc;

use crate::dev;
use crate::env::{self, faults, Space, Worker};
use crate::harness::{ensure, fail, now, sleep_us, wait_until, Check, Context, Runner};

/// Receive timeout of a delivery that must come.
const COME: Time = Time::Period { us: 500_000 };
/// Receive timeout of a delivery that must not come.
const STAY: Time = Time::Period { us: 100_000 };

fn line(n: u32) -> Result<Line, crate::harness::Why> {
    Line::try_from(n).ctx("interrupt line")
}

fn me() -> ThreadId {
    l4::utcb::my_global_id()
}

/// Receives one message from anyone within `t`; checks it is `line`'s interrupt.
fn expect_interrupt(l: Line, t: Time) -> Check {
    let r = ipc::receive(ThreadId::ANY, t).ctx("receive")?;
    ensure!(
        r.from == l.id(),
        "sender {:#x}, expected the interrupt thread {:#x}",
        r.from.raw(),
        l.id().raw()
    );
    let tag = r.msg.tag();
    ensure!(
        tag.label() == label::INTERRUPT && tag.untyped() == 0 && tag.typed() == 0,
        "tag {:#x}: not an interrupt message (label {:#x}, u 0, t 0)",
        tag.raw(),
        label::INTERRUPT
    );
    Ok(())
}

/// A closed receive from `l` that must end in the receive timeout.
fn expect_none(l: Line, t: Time) -> Check {
    match ipc::receive(l.id(), t) {
        Err(e) if e.is(IpcErrorCode::Timeout, Phase::Receive) => Ok(()),
        Err(e) => fail!("receive failed otherwise: {:?}", e),
        Ok(r) => fail!("a message came (tag {:#x} from {:#x})", r.msg.tag().raw(), r.from.raw()),
    }
}

/// ThreadControl on interrupt thread `n` with `handler`.
fn raw_attach(n: u32, handler: ThreadId) -> Result<(), l4::Error> {
    l4::thread::thread_control(ThreadId::interrupt(n), ThreadId::NIL, ThreadId::NIL, handler, None)
}

// ---------------------------------------------------------------------------------------
// Attaching

fn attach_rejects_bad_lines() -> Check {
    let ti = ThreadInfo::decode(l4::kip::get().thread_info);
    let r = raw_attach(2, me());
    ensure!(
        r == Err(l4::Error::Sys(SysError::InvalidThread)),
        "line 2 (cascade): {:?}",
        r
    );
    let r = raw_attach(ti.system_base as u32, me());
    ensure!(
        r == Err(l4::Error::Sys(SysError::InvalidThread)),
        "line {} (= SystemBase): {:?}",
        ti.system_base,
        r
    );
    let nobody = ThreadId::global(ti.user_base as u32 + 4000, 1);
    let r = raw_attach(8, nobody);
    ensure!(
        r == Err(l4::Error::Sys(SysError::InvalidThread)),
        "line 8 to a thread that does not exist: {:?}",
        r
    );
    Ok(())
}

/// The RTC checks share the attached line; each leaves it as the next expects.
fn rtc_delivery_from_irq_8() -> Check {
    let l = line(8)?;
    irq::attach(l, me()).ctx("attach line 8")?;
    dev::rtc_status_c();
    dev::rtc_periodic(64, true);
    expect_interrupt(l, COME)?;
    let c = dev::rtc_status_c();
    ensure!(c.irq() && c.periodic(), "status C {:#x} has no periodic interrupt", c.0);
    irq::ack(l).ctx("acknowledge")
}

fn rtc_each_delivery_is_a_device_interrupt() -> Check {
    let l = line(8)?;
    let t0 = now();
    for i in 0..16 {
        irq::wait(l, COME).map_err(|e| crate::harness::Why::new(format_args!("delivery {}: {:?}", i, e)))?;
        let c = dev::rtc_status_c();
        ensure!(
            c.irq() && c.periodic(),
            "delivery {}: status C {:#x} shows no interrupt",
            i,
            c.0
        );
        irq::ack(l).ctx("acknowledge")?;
    }
    let ms = (now() - t0) / 1000;
    ensure!(ms < 2000, "16 ticks at 64 Hz took {} ms", ms);
    Ok(())
}

fn detach_stops_delivery() -> Check {
    let l = line(8)?;
    irq::detach(l).ctx("detach")?;
    dev::rtc_status_c();
    // The clock keeps ticking (and raising its line) at 64 Hz: about 19 ticks in 300 ms.
    match ipc::receive(ThreadId::ANY, Time::Period { us: 300_000 }) {
        Err(e) if e.is(IpcErrorCode::Timeout, Phase::Receive) => Ok(()),
        Err(e) => fail!("receive failed otherwise: {:?}", e),
        Ok(r) => fail!(
            "a message came after detach (tag {:#x} from {:#x})",
            r.msg.tag().raw(),
            r.from.raw()
        ),
    }
}

fn reattach_resumes_delivery() -> Check {
    let l = line(8)?;
    irq::attach(l, me()).ctx("attach again")?;
    dev::rtc_status_c();
    expect_interrupt(l, COME)?;
    dev::rtc_status_c();
    irq::ack(l).ctx("acknowledge")?;
    Ok(())
}

fn ack_by_others_refused_worker(_: usize) {
    let r = ipc::ipc(
        ThreadId::interrupt(8),
        ThreadId::NIL,
        ipc::timeouts(Time::Zero, Time::Never),
        MsgTag::NIL,
    );
    let code = match r {
        Ok(_) => 1,
        Err(e) if e.is(IpcErrorCode::NotExist, Phase::Send) => 2,
        Err(_) => 3,
    };
    CELL[0].store(code, Ordering::Release);
}

fn ack_by_non_handler_refused() -> Check {
    CELL[0].store(0, Ordering::Release);
    let w = Worker::local(ack_by_others_refused_worker, 0, env::MAIN_PRIO)?;
    ensure!(
        wait_until(1_000_000, || CELL[0].load(Ordering::Acquire) != 0),
        "the worker did not finish"
    );
    drop(w);
    match CELL[0].load(Ordering::Acquire) {
        2 => Ok(()),
        1 => fail!("a thread that is not the handler acknowledged line 8"),
        _ => fail!("the send failed with another error than non-existing partner"),
    }
}

fn rtc_off() -> Check {
    dev::rtc_periodic(64, false);
    dev::rtc_status_c();
    irq::detach(line(8)?).ctx("detach")
}

// ---------------------------------------------------------------------------------------
// Delivery and acknowledgement, with interrupts made on demand by UART loopback.

/// Delivery, masking while in service, and one delivery after the acknowledgement, on
/// line 4 with the UART in loopback (no FIFO). One sequence (the UART must stay in
/// loopback between the steps, and nothing may be printed meanwhile), reported as three
/// checks: the results of the steps.
fn uart_sequence() -> [Check; 3] {
    let mut out = [Ok(()), Ok(()), Ok(())];
    let l = match line(4) {
        Ok(l) => l,
        Err(e) => {
            out[0] = Err(e);
            return out;
        }
    };
    dev::loopback(false);
    out[0] = uart_delivery(l);
    out[1] = if out[0].is_ok() {
        no_delivery_while_unacknowledged(l)
    } else {
        Err(not_run())
    };
    out[2] = if out[1].is_ok() {
        one_delivery_after_acknowledge(l)
    } else {
        Err(not_run())
    };
    let _ = irq::detach(l);
    dev::quiet();
    out
}

fn not_run() -> crate::harness::Why {
    crate::harness::Why::new(format_args!("not run: the step before failed"))
}

fn uart_delivery(l: Line) -> Check {
    irq::attach(l, me()).ctx("attach line 4")?;
    dev::send(b'A');
    expect_interrupt(l, COME)?;
    let got = dev::recv();
    ensure!(got == Some(b'A'), "received {:?}, sent 'A'", got);
    Ok(())
}

fn no_delivery_while_unacknowledged(l: Line) -> Check {
    // Line 4 is in service (not acknowledged). The UART raises it again now.
    dev::send(b'B');
    expect_none(l, STAY)
}

fn one_delivery_after_acknowledge(l: Line) -> Check {
    irq::ack(l).ctx("acknowledge")?;
    irq::wait(l, COME).ctx("the interrupt raised while in service")?;
    let got = dev::recv();
    ensure!(got == Some(b'B'), "received {:?}, sent 'B'", got);
    irq::ack(l).ctx("acknowledge")?;
    // The UART is quiet now: a second delivery would be a doubled interrupt.
    expect_none(l, STAY)
}

/// Shared words of the burst check: [deliveries, bytes, bytes in order?, stop, overruns].
static CELL: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
/// Set once a handler thread's line is attached to it.
static GO: AtomicU64 = AtomicU64::new(0);
/// Bytes of each burst, and bursts.
const BURST: usize = 4;
const BURSTS: usize = 4;

/// The slow handler: on each delivery takes every byte there is, then dawdles 50 ms
/// before acknowledging.
fn slow_handler(_: usize) {
    let Ok(l) = Line::try_from(4) else { return };
    // Wait until the main thread has attached the line to this thread.
    if !wait_until(1_000_000, || GO.load(Ordering::Acquire) != 0) {
        return;
    }
    let mut r = irq::wait(l, Time::Period { us: 2_000_000 });
    let mut expect = 0u8;
    while r.is_ok() && CELL[3].load(Ordering::Acquire) == 0 {
        CELL[0].fetch_add(1, Ordering::AcqRel);
        while let Some(b) = dev::recv() {
            if b != expect {
                CELL[2].store(1, Ordering::Release);
            }
            expect = expect.wrapping_add(1);
            CELL[1].fetch_add(1, Ordering::AcqRel);
        }
        if dev::line_status() & lsr::OE != 0 {
            CELL[4].fetch_add(1, Ordering::AcqRel);
        }
        sleep_us(50_000);
        r = irq::ack_and_wait(l, Time::Period { us: 1_000_000 });
    }
}

fn burst_while_slow_loses_nothing() -> Check {
    for c in &CELL {
        c.store(0, Ordering::Release);
    }
    GO.store(0, Ordering::Release);
    let l = line(4)?;
    dev::loopback(true);
    let mut h = Worker::local(slow_handler, 0, env::MAIN_PRIO + 10)?;
    irq::attach(l, h.id()).ctx("attach line 4 to the handler")?;
    GO.store(1, Ordering::Release);
    sleep_us(2_000);
    let total = (BURST * BURSTS) as u64;
    let mut b = 0u8;
    for _ in 0..BURSTS {
        for _ in 0..BURST {
            dev::send(b);
            b += 1;
        }
        sleep_us(5_000);
    }
    let all = wait_until(2_000_000, || CELL[1].load(Ordering::Acquire) >= total);
    CELL[3].store(1, Ordering::Release);
    let deliveries = CELL[0].load(Ordering::Acquire);
    let bytes = CELL[1].load(Ordering::Acquire);
    h.delete().ctx("delete the handler")?;
    ensure!(
        all,
        "the handler got {} of {} bytes in {} deliveries: an interrupt raised while it was busy was lost",
        bytes,
        total,
        deliveries
    );
    ensure!(CELL[2].load(Ordering::Acquire) == 0, "bytes out of order");
    ensure!(
        CELL[4].load(Ordering::Acquire) == 0,
        "the UART overran (the check sent too fast)"
    );
    ensure!(
        deliveries >= 2 && deliveries <= BURSTS as u64 + 1,
        "{} deliveries for {} bursts sent while the handler was busy",
        deliveries,
        BURSTS
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Privilege and ports

/// The port the I/O-fault check reads, and where its `in` instruction is.
const FAULT_PORT: u16 = 0x71;
static IN_IP: AtomicU64 = AtomicU64::new(0);

fn child_attach(_: usize) {
    let r = match Line::try_from(8) {
        Ok(l) => irq::attach(l, l4::utcb::my_global_id()),
        Err(_) => Ok(()),
    };
    CELL[5].store(
        match r {
            Ok(()) => 1,
            Err(e) if e == SysError::NoPrivilege => 2,
            Err(_) => 3,
        },
        Ordering::Release,
    );
}

fn unprivileged_attach_refused() -> Check {
    CELL[5].store(0, Ordering::Release);
    let mut s = Space::new()?;
    let w = s.spawn(child_attach, 0, env::MAIN_PRIO)?;
    ensure!(
        wait_until(1_000_000, || CELL[5].load(Ordering::Acquire) != 0),
        "the child thread did not finish"
    );
    drop(w);
    match CELL[5].load(Ordering::Acquire) {
        2 => Ok(()),
        1 => {
            let _ = irq::detach(line(8)?);
            fail!("a thread of an unprivileged space attached line 8")
        }
        _ => fail!("refused, but not for lack of privilege"),
    }
}

/// Reads `FAULT_PORT` with an `in` whose address it publishes first.
fn child_in(_: usize) {
    let v: u8;
    let ip: u64;
    // SAFETY: `lea` takes the address of the `in` below; `in al, dx` reads a port,
    // touching no memory (without the port the kernel sends an I/O page fault to the
    // pager, which is what the check wants).
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip + 2f]",
            "mov [{cell}], {ip}",
            "2:",
            "in al, dx",
            ip = out(reg) ip,
            cell = in(reg) IN_IP.as_ptr(),
            in("dx") FAULT_PORT,
            out("al") v,
            options(nostack, preserves_flags)
        )
    };
    let _ = ip;
    CELL[6].store(0x100 | v as u64, Ordering::Release);
}

fn port_access_without_fpage_faults() -> Check {
    env::grant_ports(None);
    CELL[6].store(0, Ordering::Release);
    IN_IP.store(0, Ordering::Release);
    let before = faults::io_count();
    let mut s = Space::new()?;
    let w = s.spawn(child_in, 0, env::MAIN_PRIO)?;
    let id = w.id();
    let came = wait_until(1_000_000, || faults::io_count() > before);
    let done = CELL[6].load(Ordering::Acquire);
    drop(w);
    ensure!(
        came,
        "the pager got no I/O page fault (the thread {})",
        if done != 0 { "read the port" } else { "is stuck" }
    );
    let (from, lab, fpage, ip) = faults::last_io();
    ensure!(
        ThreadId(from) == id,
        "sender {:#x}, the faulting thread is {:#x}",
        from,
        id.raw()
    );
    ensure!(
        lab == label::IO_PAGE_FAULT | Rights::RW.bits() as u64,
        "label {:#x}, expected {:#x}",
        lab,
        label::IO_PAGE_FAULT | 6
    );
    let f = IoFpage(fpage);
    ensure!(
        f.port() == FAULT_PORT && f.log2count() == 0,
        "MR1 {:?}: expected port {:#x}, one port",
        f,
        FAULT_PORT
    );
    let want = IN_IP.load(Ordering::Acquire);
    ensure!(ip == want, "MR2 (IP) {:#x}, the `in` is at {:#x}", ip, want);
    Ok(())
}

fn child_reads_clock(_: usize) {
    let a = rtc::service::read_reg(dev::CMOS, drvkit::cmos::reg::A);
    CELL[7].store(0x100 | a as u64, Ordering::Release);
}

fn io_fault_resolved_by_mapping() -> Check {
    env::grant_ports(Some(dev::CMOS.fpage(Rights::RW)));
    CELL[7].store(0, Ordering::Release);
    let before = faults::io_count();
    let mut s = Space::new()?;
    let w = s.spawn(child_reads_clock, 0, env::MAIN_PRIO)?;
    let done = wait_until(1_000_000, || CELL[7].load(Ordering::Acquire) != 0);
    env::grant_ports(None);
    drop(w);
    ensure!(
        done,
        "the thread did not get past its port accesses ({} I/O faults)",
        faults::io_count() - before
    );
    ensure!(
        faults::io_count() > before,
        "no I/O page fault: the space had the ports already"
    );
    let a = CELL[7].load(Ordering::Acquire) as u8;
    ensure!(
        (a >> 4) & 7 == 2,
        "status A read as {:#x}: divider bits are not the 32.768 kHz setting",
        a
    );
    Ok(())
}

/// A named check.
type CheckFn = fn() -> Check;

/// Runs the checks of this module.
pub fn run(r: &mut Runner) {
    r.check("attach-rejects-bad-lines-and-handlers", attach_rejects_bad_lines);
    let rtc: [(&str, CheckFn); 6] = [
        ("rtc-delivery-comes-from-irq-8", rtc_delivery_from_irq_8),
        (
            "rtc-each-delivery-is-a-device-interrupt",
            rtc_each_delivery_is_a_device_interrupt,
        ),
        ("detach-stops-delivery", detach_stops_delivery),
        ("reattach-resumes-delivery", reattach_resumes_delivery),
        ("ack-by-non-handler-refused", ack_by_non_handler_refused),
        ("rtc-off", rtc_off),
    ];
    for (name, f) in rtc {
        if dev::have_cmos() {
            r.check(name, f);
        } else {
            r.skip_failed(name, "this space cannot use the clock's ports");
        }
    }
    if dev::have_com1() {
        let [a, b, c] = uart_sequence();
        r.check("uart-delivery-comes-from-irq-4", || a);
        r.check("no-delivery-while-unacknowledged", || b);
        r.check("one-delivery-after-acknowledge", || c);
        r.check("burst-while-slow-loses-nothing", burst_while_slow_loses_nothing);
    } else {
        for name in [
            "uart-delivery-comes-from-irq-4",
            "no-delivery-while-unacknowledged",
            "one-delivery-after-acknowledge",
            "burst-while-slow-loses-nothing",
        ] {
            r.skip_failed(name, "this space cannot use COM1's ports");
        }
    }
    r.check("unprivileged-attach-refused", unprivileged_attach_refused);
    r.check("port-access-without-io-fpage-faults", port_access_without_fpage_faults);
    if dev::have_cmos() {
        r.check("io-page-fault-resolved-by-mapping", io_fault_resolved_by_mapping);
    } else {
        r.skip_failed("io-page-fault-resolved-by-mapping", "the pager has no ports to map");
    }
}
