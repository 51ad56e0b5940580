//! The two devices the checks drive directly from this space: COM1 (in loopback mode,
//! where every byte written is received at once and raises the receive interrupt, so
//! interrupts can be made on demand) and the CMOS clock (periodic interrupt).
//!
//! While COM1 is in loopback mode nothing leaves the UART — including the kernel's
//! console output — so the checks print nothing then, and [`quiet`] (run before every
//! report line) puts the UART back as the kernel left it.

use core::sync::atomic::{AtomicBool, Ordering};

use drvkit::cmos::Rate;
use drvkit::ns16550::{fcr, ier, lsr, mcr, reg};
use drvkit::port::Ports;

/// COM1's ports.
pub const COM1: Ports = uart::driver::COM1_PORTS;
/// The CMOS clock's ports.
pub const CMOS: Ports = rtc::service::CMOS_PORTS;

/// This space can use COM1's ports.
static HAVE_COM1: AtomicBool = AtomicBool::new(false);
/// This space can use the clock's ports.
static HAVE_CMOS: AtomicBool = AtomicBool::new(false);

/// Records which devices' ports this space can use.
pub fn set_have_ports(com1: bool, cmos: bool) {
    HAVE_COM1.store(com1, Ordering::Release);
    HAVE_CMOS.store(cmos, Ordering::Release);
}

/// Can this space use COM1's ports?
pub fn have_com1() -> bool {
    HAVE_COM1.load(Ordering::Acquire)
}

/// Can this space use the clock's ports?
pub fn have_cmos() -> bool {
    HAVE_CMOS.load(Ordering::Acquire)
}

/// Puts COM1 back as the kernel's console wants it: no interrupts, no loopback, FIFOs
/// on; drops received bytes. Nothing if this space has no ports.
pub fn quiet() {
    if !have_com1() {
        return;
    }
    COM1.outb(reg::IER, 0);
    COM1.outb(reg::MCR, mcr::DTR | mcr::RTS);
    COM1.outb(
        reg::IIR_FCR,
        fcr::ENABLE | fcr::CLEAR_RX | fcr::CLEAR_TX | fcr::TRIGGER_14,
    );
    drain();
}

/// COM1 in loopback mode with the receive interrupt on; `fifo` selects FIFO mode
/// (trigger level 1) or the 16450's single byte.
pub fn loopback(fifo: bool) {
    COM1.outb(reg::IER, 0);
    COM1.outb(reg::MCR, mcr::DTR | mcr::RTS | mcr::OUT2 | mcr::LOOP);
    COM1.outb(
        reg::IIR_FCR,
        if fifo {
            fcr::ENABLE | fcr::CLEAR_RX | fcr::CLEAR_TX | fcr::TRIGGER_1
        } else {
            0
        },
    );
    drain();
    COM1.inb(reg::IIR_FCR);
    COM1.outb(reg::IER, ier::RX);
}

/// Reads and drops every received byte; returns how many.
pub fn drain() -> usize {
    let mut n = 0;
    while n < 64 && COM1.inb(reg::LSR) & lsr::DR != 0 {
        COM1.inb(reg::DATA);
        n += 1;
    }
    n
}

/// Sends one byte (in loopback mode: receives it).
pub fn send(b: u8) {
    COM1.outb(reg::DATA, b);
}

/// A received byte, if any.
pub fn recv() -> Option<u8> {
    (COM1.inb(reg::LSR) & lsr::DR != 0).then(|| COM1.inb(reg::DATA))
}

/// The line status register.
pub fn line_status() -> u8 {
    COM1.inb(reg::LSR)
}

/// The clock's periodic interrupt at `hz` (on), or off.
pub fn rtc_periodic(hz: u32, on: bool) {
    if let Ok(r) = Rate::from_hz(hz) {
        rtc::service::set_periodic(CMOS, r, on);
    }
}

/// Reads status register C (acknowledging the clock's interrupt).
pub fn rtc_status_c() -> drvkit::cmos::StatusC {
    drvkit::cmos::StatusC(rtc::service::read_reg(CMOS, drvkit::cmos::reg::C))
}
