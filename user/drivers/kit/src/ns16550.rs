//! The 16550 UART: register offsets and bits, and the decoding of what it reports
//! (interrupt identification, line status).
//!
//! ```text
//! offset  read                       write                      (LCR.DLAB = 1)
//!   0     RBR receive buffer         THR transmit holding        DLL divisor low
//!   1     IER interrupt enable       IER                         DLM divisor high
//!   2     IIR interrupt ident.       FCR FIFO control
//!   3     LCR line control           LCR
//!   4     MCR modem control          MCR
//!   5     LSR line status            -
//!   6     MSR modem status           -
//!   7     SCR scratch                SCR
//! ```

/// I/O port of COM1 and its interrupt line (ISA IRQ 4).
pub const COM1: u16 = 0x3F8;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u8 = 4;
/// Number of ports of one UART (an I/O fpage of 2^3 ports).
pub const PORTS_LOG2: u8 = 3;

/// Register offsets.
pub mod reg {
    /// Receive buffer (read) / transmit holding (write).
    pub const DATA: u16 = 0;
    /// Interrupt enable.
    pub const IER: u16 = 1;
    /// Interrupt identification (read) / FIFO control (write).
    pub const IIR_FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
    /// Modem status.
    pub const MSR: u16 = 6;
    /// Scratch.
    pub const SCR: u16 = 7;
    /// Divisor latch low (with LCR.DLAB).
    pub const DLL: u16 = 0;
    /// Divisor latch high (with LCR.DLAB).
    pub const DLM: u16 = 1;
}

/// IER bits.
pub mod ier {
    /// Received data available (and character timeout).
    pub const RX: u8 = 0x01;
    /// Transmit holding register empty.
    pub const TX: u8 = 0x02;
    /// Receiver line status.
    pub const LINE: u8 = 0x04;
    /// Modem status.
    pub const MODEM: u8 = 0x08;
}

/// FCR bits.
pub mod fcr {
    /// FIFOs on.
    pub const ENABLE: u8 = 0x01;
    /// Clear the receive FIFO.
    pub const CLEAR_RX: u8 = 0x02;
    /// Clear the transmit FIFO.
    pub const CLEAR_TX: u8 = 0x04;
    /// Receive trigger level 1 byte (bits 6..7 = 0).
    pub const TRIGGER_1: u8 = 0x00;
    /// Receive trigger level 14 bytes.
    pub const TRIGGER_14: u8 = 0xC0;
}

/// LCR bits.
pub mod lcr {
    /// 8 data bits, no parity, 1 stop bit.
    pub const BITS_8N1: u8 = 0x03;
    /// Divisor latch access.
    pub const DLAB: u8 = 0x80;
}

/// MCR bits.
pub mod mcr {
    /// Data terminal ready.
    pub const DTR: u8 = 0x01;
    /// Request to send.
    pub const RTS: u8 = 0x02;
    /// OUT2: on PCs, gates the UART's interrupt onto the ISA line.
    pub const OUT2: u8 = 0x08;
    /// Loopback: the transmitter feeds the receiver; nothing leaves the chip.
    pub const LOOP: u8 = 0x10;
}

/// LSR bits.
pub mod lsr {
    /// Data ready.
    pub const DR: u8 = 0x01;
    /// Overrun error (a received byte was lost).
    pub const OE: u8 = 0x02;
    /// Parity error.
    pub const PE: u8 = 0x04;
    /// Framing error.
    pub const FE: u8 = 0x08;
    /// Break interrupt.
    pub const BI: u8 = 0x10;
    /// Transmit holding register (FIFO) empty.
    pub const THRE: u8 = 0x20;
    /// Transmitter completely idle.
    pub const TEMT: u8 = 0x40;
}

/// Depth of the 16550A's transmit FIFO: bytes that may be written after THRE.
pub const TX_FIFO: usize = 16;

/// The UART's input clock divided by 16: the baud rate of divisor 1.
pub const BASE_BAUD: u32 = 115_200;

/// The divisor for `baud`, if `baud` divides [`BASE_BAUD`] exactly.
pub const fn divisor(baud: u32) -> Option<u16> {
    if baud == 0 || !BASE_BAUD.is_multiple_of(baud) || BASE_BAUD / baud > u16::MAX as u32 {
        return None;
    }
    Some((BASE_BAUD / baud) as u16)
}

/// Why the UART interrupts: the decoded IIR.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cause {
    /// Bit 0 set: nothing pending.
    None,
    /// Receiver line status (overrun, parity, framing, break): cleared by reading LSR.
    LineStatus,
    /// Received data reached the trigger level: cleared by reading RBR below it.
    RxData,
    /// Received data waited four character times: cleared by reading RBR.
    RxTimeout,
    /// Transmit holding register empty: cleared by reading IIR or writing THR.
    TxEmpty,
    /// Modem status change: cleared by reading MSR.
    Modem,
}

/// An IIR value whose identification bits name no interrupt cause.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadIir(pub u8);

impl TryFrom<u8> for Cause {
    type Error = BadIir;

    /// Decodes IIR bits 0..3 (bits 4..7 — FIFO state — are ignored).
    fn try_from(iir: u8) -> Result<Self, BadIir> {
        if iir & 1 != 0 {
            return Ok(Cause::None);
        }
        match (iir >> 1) & 7 {
            0b011 => Ok(Cause::LineStatus),
            0b010 => Ok(Cause::RxData),
            0b110 => Ok(Cause::RxTimeout),
            0b001 => Ok(Cause::TxEmpty),
            0b000 => Ok(Cause::Modem),
            _ => Err(BadIir(iir)),
        }
    }
}

/// Line errors seen in LSR values, counted by the driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LineErrors {
    /// Overruns (bytes the UART dropped).
    pub overrun: u32,
    /// Parity errors.
    pub parity: u32,
    /// Framing errors.
    pub framing: u32,
    /// Breaks.
    pub breaks: u32,
}

impl LineErrors {
    /// Counts the error bits of one LSR value.
    pub fn note(&mut self, lsr_value: u8) {
        let bump = |c: &mut u32, bit: u8| {
            if lsr_value & bit != 0 {
                *c = c.saturating_add(1);
            }
        };
        bump(&mut self.overrun, lsr::OE);
        bump(&mut self.parity, lsr::PE);
        bump(&mut self.framing, lsr::FE);
        bump(&mut self.breaks, lsr::BI);
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        self.overrun as u64 + self.parity as u64 + self.framing as u64 + self.breaks as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iir_causes() {
        assert_eq!(Cause::try_from(0x01), Ok(Cause::None));
        assert_eq!(Cause::try_from(0xC1), Ok(Cause::None));
        assert_eq!(Cause::try_from(0xC6), Ok(Cause::LineStatus));
        assert_eq!(Cause::try_from(0xC4), Ok(Cause::RxData));
        assert_eq!(Cause::try_from(0xCC), Ok(Cause::RxTimeout));
        assert_eq!(Cause::try_from(0xC2), Ok(Cause::TxEmpty));
        assert_eq!(Cause::try_from(0x00), Ok(Cause::Modem));
    }

    #[test]
    fn unknown_iir_is_an_error() {
        for v in [0x08u8, 0x0A, 0x0E, 0xC8] {
            assert_eq!(Cause::try_from(v), Err(BadIir(v)));
        }
    }

    #[test]
    fn divisors() {
        assert_eq!(divisor(115_200), Some(1));
        assert_eq!(divisor(9600), Some(12));
        assert_eq!(divisor(0), None);
        assert_eq!(divisor(7), None);
        assert_eq!(divisor(1), None);
    }

    #[test]
    fn line_errors_are_counted_per_bit() {
        let mut e = LineErrors::default();
        e.note(lsr::DR | lsr::THRE);
        assert_eq!(e.total(), 0);
        e.note(lsr::OE | lsr::FE);
        e.note(lsr::OE | lsr::BI | lsr::PE);
        assert_eq!((e.overrun, e.parity, e.framing, e.breaks), (2, 1, 1, 1));
        assert_eq!(e.total(), 5);
    }
}
