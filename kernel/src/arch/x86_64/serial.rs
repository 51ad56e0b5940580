//! The kernel's polled debug console on COM1 (16550 UART at port 0x3F8).
//!
//! Only the kernel debugger interface and kernel reports use it. A user-level driver may
//! own the UART's interrupt later; the kernel keeps this polled output path.

use super::port::{inb, outb};

const COM1: u16 = 0x3F8;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: COM1 is the kernel's debug console; nothing else drives it during boot.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1 = 115200
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

/// Sends one byte, waiting for the transmitter.
pub fn write_byte(b: u8) {
    // SAFETY: reading the line-status register and writing the data register of the
    // kernel's own debug UART has no effect beyond transmitting `b`.
    unsafe {
        while inb(COM1 + 5) & 0x20 == 0 {}
        outb(COM1, b);
    }
}

/// Returns a received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    // SAFETY: as in `write_byte`; reading the data register consumes one received byte.
    unsafe {
        if inb(COM1 + 5) & 1 != 0 {
            Some(inb(COM1))
        } else {
            None
        }
    }
}
