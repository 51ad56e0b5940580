//! Checks of the drivers themselves: the UART driver and the RTC time service, each run
//! in its own unprivileged address space (a child space paged by the pager thread, which
//! maps the device's ports when the driver first touches them), with its interrupt line
//! attached to it by this task, and used through its IPC protocol.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::Rights;
use abi::thread_id::ThreadId;
use drvkit::cmos;
use drvkit::irq::{self, Line};
use drvkit::wire::{uart as proto, Wait};
use rtc::Rtc;
use uart::Uart;

use crate::dev;
use crate::env::{self, Space, Worker};
use crate::harness::{ensure, now, wait_until, Check, Context, Runner, Why};

/// Set once the driver's line is attached (the driver waits for it).
static GO: AtomicU64 = AtomicU64::new(0);

fn wait_go() {
    let _ = wait_until(2_000_000, || GO.load(Ordering::Acquire) != 0);
}

fn uart_driver_main(_: usize) {
    wait_go();
    let Ok(l) = Line::try_from(4) else { return };
    let cfg = uart::driver::Config {
        ports: dev::COM1,
        irq: uart::driver::Irq::Given(l),
        request_ports: false,
        verbose: false,
    };
    let mut d = uart::driver::Driver::start(cfg);
    d.serve()
}

fn rtc_service_main(_: usize) {
    wait_go();
    let Ok(l) = Line::try_from(8) else { return };
    let Ok(rate) = cmos::Rate::from_hz(64) else { return };
    let cfg = rtc::service::Config {
        irq: rtc::service::Irq::Given(l),
        rate,
        request_ports: false,
        verbose: false,
    };
    let mut s = rtc::service::Service::start(cfg);
    s.serve()
}

/// A driver running in a child space with `line` attached to it.
struct Running {
    worker: Worker,
    _space: Space,
}

fn launch(f: fn(usize), line: u32, ports: abi::fpage::IoFpage) -> Result<Running, Why> {
    GO.store(0, Ordering::Release);
    env::grant_ports(Some(ports));
    let mut space = Space::new()?;
    let worker = space.spawn(f, 0, env::MAIN_PRIO + 10)?;
    let l = Line::try_from(line).ctx("line")?;
    irq::attach(l, worker.id()).ctx("attach the driver's line")?;
    GO.store(1, Ordering::Release);
    Ok(Running { worker, _space: space })
}

fn server(r: &Running) -> ThreadId {
    r.worker.id()
}

/// Waits (bounded) until the driver answers a ping.
fn up(ping: impl Fn() -> bool) -> Check {
    ensure!(wait_until(2_000_000, ping), "the driver does not answer");
    Ok(())
}

/// Reads `sent` back in loopback (bounded by 3 s), comparing.
fn read_back(u: Uart, sent: &[u8]) -> Check {
    u.read_back(sent, 3_000_000).ctx("read back")
}

fn pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = b"Tern loopback 0123456789 abcdefghijklmnopqrstuvwxyz\n"[i % 52];
    }
}

fn uart_checks(r: &mut Runner) {
    let running = match launch(uart_driver_main, 4, dev::COM1.fpage(Rights::RW)) {
        Ok(d) => d,
        Err(e) => {
            r.check("uart-driver-starts", || Err(e));
            return;
        }
    };
    let u = Uart::new(server(&running));
    r.check("uart-driver-starts", || {
        up(|| u.ping().is_ok())?;
        let s = u.stats().ctx("stats")?;
        ensure!(s.polling == 0, "the driver polls although its line is attached");
        Ok(())
    });
    r.check("uart-driver-echoes-through-loopback", || {
        u.control(proto::Control::LoopbackOn).ctx("loopback on")?;
        u.control(proto::Control::FlushRx).ctx("flush")?;
        let mut msg = [0u8; 200];
        pattern(&mut msg);
        let before = u.stats().ctx("stats")?;
        u.write(&msg).ctx("write")?;
        let r = read_back(u, &msg);
        let after = u.stats().ctx("stats")?;
        u.control(proto::Control::LoopbackOff).ctx("loopback off")?;
        r?;
        ensure!(after.interrupts > before.interrupts, "no interrupt was handled");
        ensure!(
            after.rx_dropped == 0 && after.line_errors == before.line_errors,
            "bytes dropped ({}) or line errors",
            after.rx_dropped
        );
        Ok(())
    });
    r.check("uart-driver-read-times-out", || {
        u.control(proto::Control::LoopbackOn).ctx("loopback on")?;
        u.control(proto::Control::FlushRx).ctx("flush")?;
        let t0 = now();
        let mut buf = [0u8; 8];
        let n = u.read(&mut buf, Wait::For(100_000));
        let us = now() - t0;
        u.control(proto::Control::LoopbackOff).ctx("loopback off")?;
        let n = n.ctx("read")?;
        ensure!(n == 0, "{} bytes came from nowhere", n);
        ensure!(us >= 100_000, "the read gave up after {} µs of 100 ms", us);
        ensure!(us < 1_000_000, "the read took {} µs to time out after 100 ms", us);
        let n = u.read(&mut buf, Wait::Poll).ctx("poll")?;
        ensure!(n == 0, "a poll got {} bytes", n);
        Ok(())
    });
    r.check("uart-driver-buffers-large-writes", || {
        u.control(proto::Control::LoopbackOn).ctx("loopback on")?;
        u.control(proto::Control::FlushRx).ctx("flush")?;
        let mut msg = [0u8; 3000];
        pattern(&mut msg);
        let w = u.write(&msg);
        let r = read_back(u, &msg);
        let s = u.stats();
        u.control(proto::Control::LoopbackOff).ctx("loopback off")?;
        w.ctx("write")?;
        r?;
        let s = s.ctx("stats")?;
        ensure!(s.rx_dropped == 0, "{} bytes dropped", s.rx_dropped);
        Ok(())
    });
    drop(running);
}

fn rtc_checks(r: &mut Runner) {
    let running = match launch(rtc_service_main, 8, dev::CMOS.fpage(Rights::RW)) {
        Ok(d) => d,
        Err(e) => {
            r.check("rtc-service-starts", || Err(e));
            return;
        }
    };
    let c = Rtc::new(server(&running));
    r.check("rtc-service-starts", || up(|| c.ping().is_ok()));
    r.check("rtc-service-reads-the-date", || {
        let n = c.now().ctx("now")?;
        ensure!(n.time.year >= 2024 && n.hz == 64, "{} at {} Hz", n.time, n.hz);
        Ok(())
    });
    r.check("rtc-service-alarm", || {
        let t0 = now();
        let before = c.ticks().ctx("ticks")?;
        let woke = c.sleep(100_000).ctx("sleep")?;
        let us = now() - t0;
        let after = c.ticks().ctx("ticks")?;
        ensure!(
            woke >= before.ticks + 7,
            "woke at tick {} having slept from tick {}",
            woke,
            before.ticks
        );
        ensure!((90_000..2_000_000).contains(&us), "100 ms took {} µs", us);
        ensure!(after.interrupts > before.interrupts, "no interrupt was counted");
        Ok(())
    });
    drop(running);
    dev::rtc_periodic(64, false);
    dev::rtc_status_c();
}

/// Runs the checks of this module.
pub fn run(r: &mut Runner) {
    if dev::have_com1() {
        uart_checks(r);
    } else {
        r.skip_failed(
            "uart-driver-starts",
            "this task cannot use COM1's ports to hand them on",
        );
    }
    if dev::have_cmos() {
        rtc_checks(r);
    } else {
        r.skip_failed(
            "rtc-service-starts",
            "this task cannot use the clock's ports to hand them on",
        );
    }
    env::grant_ports(None);
}
