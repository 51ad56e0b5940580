//! `syscheck`: the end-to-end check of the system the real root task starts (boot scenario
//! `system` of `cargo xtask test`: `user/roottask` with the modules uart, rtc and this
//! program).
//!
//! It is an ordinary program — unprivileged, in its own space, paged by the root task —
//! and uses only what any program has: the root task's protocol (`drvkit::root`) and the
//! drivers' protocols (the `uart::Uart` and `rtc::Rtc` client stubs). One `TERN-TEST`
//! line per behaviour:
//!
//! ```text
//!   root task   LOOKUP finds uart, rtc and this program; an unknown name is NotFound
//!               LIST shows uart holding IRQ 4 and ports 0x3F8+8, rtc IRQ 8 and 0x70+2,
//!               this program nothing
//!   UART        a WRITE goes out (stats: tx bytes and interrupts up, not polling);
//!               in loopback mode written bytes come back through READ
//!   RTC         NOW answers (a date, 64 Hz ticks); a 50 ms SLEEP wakes no earlier
//!   refusals    ATTACH_IRQ 4 and DETACH_IRQ 4 are Denied (uart holds the line);
//!               REQUEST_IO of uart's ports is Denied naming uart; afterwards the
//!               registry is unchanged and uart still takes its interrupts
//! ```
//!
//! Then the closing line, and POWER_OFF through the root task with status 0 if every
//! check passed (else the number failed).
//!
//! The UART and the kernel console are the same COM1: while the UART is in loopback mode
//! nothing printed reaches the log (so no line is printed then), and a line is printed
//! only after the driver has handed all bytes written through it to the UART.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A failed check carries its text by value (`testkit::Why`, a fixed buffer): this program
// has no heap to box it in, and checks fail rarely.
#![allow(clippy::result_large_err)]

use abi::fpage::{IoFpage, Rights};
use abi::thread_id::ThreadId;
use drvkit::irq::Line;
use drvkit::msg::CallError;
use drvkit::port::Ports;
use drvkit::root::{self, Kind, RootError};
use drvkit::wire::{uart as proto, Status};
use rtc::Rtc;
use uart::Uart;

use testkit::{ensure, fail, now, sleep_us, Check, Context, Pace, Tally, Why};

/// How waits pace themselves: each round sleeps (the drivers and the root task run at
/// other priorities), at most 10,000 rounds.
const PACE: Pace = Pace { rounds: 10_000, yield_rounds: 0 };

/// This program's archive name (the root task registers it under it).
const NAME: &str = "syscheck";
/// How long the drivers may take to start serving.
const START_US: u64 = 5_000_000;
/// The text written through the UART driver (the scenario requires it in the log).
const THROUGH_UART: &str = "syscheck: this line went through the UART driver\n";
/// The alarm checked.
const ALARM_US: u64 = 50_000;
/// COM1's and the CMOS clock's interrupt lines.
const UART_IRQ: u32 = 4;
const RTC_IRQ: u32 = 8;

/// The services found at start.
#[derive(Clone, Copy)]
struct System {
    me: ThreadId,
    uart: Uart,
    rtc: Rtc,
}

/// Finds the drivers by name and waits (bounded) until both answer: they have attached
/// their lines and printed their start lines by then. Prints nothing, so no start line
/// of theirs is cut by ours.
fn settle() -> Result<System, Why> {
    let mut found = (ThreadId::NIL, ThreadId::NIL);
    let mut last = Why::new(format_args!("nothing tried"));
    let up = PACE.wait_until(START_US, || {
        match (root::lookup("uart"), root::lookup("rtc")) {
            (Ok(u), Ok(r)) => {
                found = (u, r);
                match (Uart::new(u).ping(), Rtc::new(r).ping()) {
                    (Ok(()), Ok(())) => return true,
                    (Err(e), _) => last = Why::new(format_args!("uart ping: {e}")),
                    (_, Err(e)) => last = Why::new(format_args!("rtc ping: {e}")),
                }
            }
            (Err(e), _) => last = Why::new(format_args!("lookup uart: {e}")),
            (_, Err(e)) => last = Why::new(format_args!("lookup rtc: {e}")),
        }
        false
    });
    ensure!(
        up,
        "the drivers did not answer within {} ms ({})",
        START_US / 1000,
        last
    );
    Ok(System {
        me: l4::utcb::my_global_id(),
        uart: Uart::new(found.0),
        rtc: Rtc::new(found.1),
    })
}

/// What the root task's `LIST` says of one entry.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: ThreadId,
    kind: Kind,
    lines: u64,
    /// Its port ranges as (first port, count), unused slots `None`.
    ports: [Option<(u16, u64)>; 4],
}

/// The entry called `name` in the root task's registry.
fn listed(name: &str) -> Result<Entry, Why> {
    for i in 0..64 {
        let Some(p) = root::list(i).ctx("list")? else {
            fail!("no entry called {:?} among the {} listed", name, i);
        };
        if p.name.as_slice() != name.as_bytes() {
            continue;
        }
        let Some(h) = p.holdings else {
            fail!("the entry of {:?} says nothing of what it holds", name);
        };
        let mut ports = [None; 4];
        for (slot, io) in ports.iter_mut().zip(h.ports.iter().flatten()) {
            *slot = Some((io.port(), io.count()));
        }
        return Ok(Entry {
            id: p.id,
            kind: h.kind,
            lines: h.lines,
            ports,
        });
    }
    fail!("the list does not end")
}

/// `name` is a program with thread `id`, holding exactly `lines` and the range `ports`.
fn holds(name: &str, id: ThreadId, lines: u64, ports: Option<Ports>) -> Check {
    let e = listed(name)?;
    ensure!(
        e.id == id,
        "{} is listed as thread {:#x}, looked up as {:#x}",
        name,
        e.id.raw(),
        id.raw()
    );
    ensure!(
        e.kind == Kind::Program,
        "{} is listed as a {:?}",
        name,
        e.kind
    );
    ensure!(
        e.lines == lines,
        "{} holds lines {:#x}, expected {:#x}",
        name,
        e.lines,
        lines
    );
    let want = ports.map(|p| (p.base(), p.fpage(Rights::RW).count()));
    let mut held = e.ports.iter().flatten();
    match (want, held.next(), held.next()) {
        (None, None, _) => Ok(()),
        (Some(w), Some(&got), None) if got == w => Ok(()),
        (_, first, second) => fail!(
            "{} holds ports {:x?} {:x?}, expected {:x?}",
            name,
            first,
            second,
            want
        ),
    }
}

/// The refusal `r` must be `Denied`, with `detail` (the holder, or 0) after it.
fn denied(r: Result<(), RootError>, detail: ThreadId) -> Check {
    match r {
        Err(RootError::Call(CallError::Status(Status::Denied, d))) if d == detail.raw() => Ok(()),
        Err(RootError::Call(CallError::Status(Status::Denied, d))) => {
            fail!("Denied naming {:#x}, expected {:#x}", d, detail.raw())
        }
        Err(e) => fail!("refused otherwise: {}", e),
        Ok(()) => fail!("granted"),
    }
}

/// A `REQUEST_IO` refusal: `Denied`. docs/drivers.md §4 says the holder's thread id
/// follows, but `drvkit::rootsrv` answers a refused `REQUEST_IO` with the status alone
/// (0 follows); both are taken until it names the holder. (That the ports are uart's is
/// checked through `LIST`.)
/// The root task logs a refusal after replying: let it finish its line before ours.
fn let_root_task_log() {
    sleep_us(20_000);
}

/// A line number the KIP says exists.
fn line(n: u32) -> Result<Line, Why> {
    Line::try_from(n).map_err(|_| Why::new(format_args!("line {n} does not exist")))
}

/// Fills `buf` with a repeating text.
fn pattern(buf: &mut [u8]) {
    const TEXT: &[u8] = b"syscheck loopback 0123456789 abcdefghijklmnopqrstuvwxyz\n";
    for (b, &t) in buf.iter_mut().zip(TEXT.iter().cycle()) {
        *b = t;
    }
}

/// Writes `sent` in loopback mode and reads it back (bounded); switches loopback off
/// whatever happens.
fn echo(u: Uart, sent: &[u8]) -> Check {
    u.control(proto::Control::LoopbackOn).ctx("loopback on")?;
    let r = (|| {
        u.control(proto::Control::FlushRx).ctx("flush")?;
        u.write(sent).ctx("write")?;
        u.read_back(sent, 3_000_000).ctx("read back")
    })();
    let off = u.control(proto::Control::LoopbackOff).ctx("loopback off");
    r.and(off)
}

fn check_names(r: &mut Tally, s: System) {
    r.run("lookup-finds-uart-and-rtc", || {
        let u = root::lookup("uart").ctx("uart")?;
        let c = root::lookup("rtc").ctx("rtc")?;
        ensure!(
            u == s.uart.server() && c == s.rtc.server(),
            "the answers changed"
        );
        ensure!(
            u != c && !u.is_nil() && !c.is_nil(),
            "uart {:#x}, rtc {:#x}",
            u.raw(),
            c.raw()
        );
        ensure!(
            drvkit::root::identify(u, abi::time::Time::Period { us: 500_000 })
                .is_some_and(|n| n.as_slice() == b"uart"),
            "thread {:#x} does not identify as uart",
            u.raw()
        );
        Ok(())
    });
    r.run("lookup-finds-this-program", || {
        let me = root::lookup(NAME).ctx("lookup")?;
        ensure!(
            me == s.me,
            "{} is {:#x}, this thread is {:#x}",
            NAME,
            me.raw(),
            s.me.raw()
        );
        Ok(())
    });
    r.run(
        "lookup-of-an-unknown-name-is-not-found",
        || match root::lookup("no-such-program") {
            Err(RootError::Call(CallError::Status(Status::NotFound, _))) => Ok(()),
            Err(e) => fail!("failed otherwise: {}", e),
            Ok(id) => fail!("found {:#x}", id.raw()),
        },
    );
}

fn check_list(r: &mut Tally, s: System) {
    r.run("list-shows-uart-with-irq4-and-its-ports", || {
        holds(
            "uart",
            s.uart.server(),
            1 << UART_IRQ,
            Some(uart::driver::COM1_PORTS),
        )
    });
    r.run("list-shows-rtc-with-irq8-and-its-ports", || {
        holds(
            "rtc",
            s.rtc.server(),
            1 << RTC_IRQ,
            Some(rtc::service::CMOS_PORTS),
        )
    });
    r.run("list-shows-this-program-holding-nothing", || {
        holds(NAME, s.me, 0, None)
    });
}

fn check_uart(r: &mut Tally, s: System) {
    let u = s.uart;
    r.run("uart-write-goes-out-interrupt-driven", || {
        let before = u.stats().ctx("stats")?;
        ensure!(
            before.polling == 0,
            "the driver polls: its line is not attached"
        );
        u.write_str(THROUGH_UART).ctx("write")?;
        // `\n` went out as `\r\n`.
        let sent = THROUGH_UART.len() as u64 + 1;
        let mut after = before;
        let out = PACE.wait_until(3_000_000, || {
            after = u.stats().unwrap_or(after);
            after.tx_bytes >= before.tx_bytes + sent
        });
        ensure!(
            out,
            "{} of {} bytes handed to the UART",
            after.tx_bytes - before.tx_bytes,
            sent
        );
        ensure!(
            after.interrupts > before.interrupts,
            "no interrupt handled while sending"
        );
        Ok(())
    });
    r.run("uart-loopback-echoes", || {
        let before = u.stats().ctx("stats")?;
        let mut sent = [0u8; 100];
        pattern(&mut sent);
        echo(u, &sent)?;
        let after = u.stats().ctx("stats")?;
        ensure!(
            after.rx_bytes >= before.rx_bytes + sent.len() as u64,
            "rx bytes did not grow"
        );
        ensure!(after.interrupts > before.interrupts, "no interrupt handled");
        ensure!(
            after.rx_dropped == before.rx_dropped,
            "{} bytes dropped",
            after.rx_dropped - before.rx_dropped
        );
        Ok(())
    });
}

fn check_rtc(r: &mut Tally, s: System) {
    let c = s.rtc;
    r.run("rtc-now-answers", || {
        let n = c.now().ctx("now")?;
        ensure!(n.hz == 64, "{} Hz", n.hz);
        ensure!(n.time.year >= 2024, "the clock says {}", n.time);
        let t = c.ticks().ctx("ticks")?;
        ensure!(
            t.interrupts > 0 && t.ticks > 0,
            "{} ticks from {} interrupts",
            t.ticks,
            t.interrupts
        );
        Ok(())
    });
    r.run("rtc-alarm-50ms-not-early", || {
        // Start right after a tick (a one-tick sleep ends at one), so that the alarm's
        // ticks are whole periods.
        c.sleep(1).ctx("sleep to a tick")?;
        let t0 = now();
        let before = c.ticks().ctx("ticks")?;
        let woke = c.sleep(ALARM_US).ctx("sleep")?;
        let us = now() - t0;
        let after = c.ticks().ctx("ticks")?;
        let ticks = ALARM_US.saturating_mul(before.hz).div_ceil(1_000_000);
        ensure!(us >= ALARM_US, "woke after {} µs of {}", us, ALARM_US);
        ensure!(us < 1_000_000, "{} µs took {} µs", ALARM_US, us);
        ensure!(
            woke >= before.ticks + ticks,
            "woke at tick {} having slept from tick {}",
            woke,
            before.ticks
        );
        ensure!(after.interrupts > before.interrupts, "no interrupt counted");
        Ok(())
    });
}

fn check_refusals(r: &mut Tally, s: System) {
    r.run("attach-irq4-refused-held-by-uart", || {
        let res = root::attach_irq(line(UART_IRQ)?);
        let_root_task_log();
        denied(res, s.uart.server())
    });
    r.run("detach-irq4-refused-not-holder", || {
        let res = root::detach_irq(line(UART_IRQ)?);
        let_root_task_log();
        denied(res, ThreadId::NIL)
    });
    r.run("uart-ports-refused-held-by-uart", || {
        let com1 = uart::driver::COM1_PORTS;
        let all = root::request_io(com1.fpage(Rights::RW));
        let_root_task_log();
        denied(all, s.uart.server()).map_err(|w| Why::new(format_args!("all 8: {w}")))?;
        // One of them (LSR) is refused too.
        let one = root::request_io(IoFpage::new(com1.base() + 5, 0, Rights::RW));
        let_root_task_log();
        denied(one, s.uart.server())
            .map_err(|w| Why::new(format_args!("port {:#x}: {w}", com1.base() + 5)))
    });
    r.run("refusals-change-nothing", || {
        holds(
            "uart",
            s.uart.server(),
            1 << UART_IRQ,
            Some(uart::driver::COM1_PORTS),
        )?;
        holds(NAME, s.me, 0, None)?;
        // The line is still the driver's in the kernel: it still takes interrupts.
        let before = s.uart.stats().ctx("stats")?;
        let mut sent = [0u8; 20];
        pattern(&mut sent);
        echo(s.uart, &sent)?;
        let after = s.uart.stats().ctx("stats")?;
        ensure!(
            after.interrupts > before.interrupts,
            "the driver no longer takes interrupts"
        );
        Ok(())
    });
}

fn main() {
    let mut r = Tally::new(NAME);
    r.set_group("sys");
    let s = match settle() {
        Ok(s) => s,
        Err(why) => {
            r.run("drivers-answer", || Err(why));
            finish(r)
        }
    };
    r.run("drivers-answer", || Ok(()));
    check_names(&mut r, s);
    check_list(&mut r, s);
    check_uart(&mut r, s);
    check_rtc(&mut r, s);
    check_refusals(&mut r, s);
    finish(r)
}

/// Prints the closing line and asks the root task to power off: status 0 if every check
/// passed, else the number failed.
fn finish(r: Tally) -> ! {
    r.end();
    let e = root::power_off(r.failed());
    l4::println!("syscheck: the root task did not power off: {e}");
    l4::thread::park()
}

l4::main!(main);
