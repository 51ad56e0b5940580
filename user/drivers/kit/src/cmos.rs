//! The MC146818-compatible CMOS real-time clock: its registers, the periodic-interrupt
//! rates, status register C, and the decoding of its date and time (BCD or binary,
//! 12- or 24-hour).
//!
//! The clock is reached through two ports: write a register number to [`INDEX`], then
//! read or write [`DATA`]. It raises ISA interrupt 8 and keeps the line raised until
//! register C is read, so a handler must read C for every interrupt or get no more.

/// The index port (bit 7 written as 1 would also mask NMIs; Tern leaves it 0).
pub const INDEX: u16 = 0x70;
/// The data port.
pub const DATA: u16 = 0x71;
/// First port of the clock's I/O fpage (2^1 ports: 0x70 and 0x71).
pub const PORTS_LOG2: u8 = 1;
/// The clock's ISA interrupt line.
pub const IRQ: u8 = 8;

/// Register numbers.
pub mod reg {
    /// Seconds.
    pub const SECONDS: u8 = 0x00;
    /// Minutes.
    pub const MINUTES: u8 = 0x02;
    /// Hours (bit 7: PM in 12-hour mode).
    pub const HOURS: u8 = 0x04;
    /// Day of the month.
    pub const DAY: u8 = 0x07;
    /// Month.
    pub const MONTH: u8 = 0x08;
    /// Year within the century.
    pub const YEAR: u8 = 0x09;
    /// Status A: update in progress, divider, rate.
    pub const A: u8 = 0x0A;
    /// Status B: interrupt enables and data mode.
    pub const B: u8 = 0x0B;
    /// Status C: interrupt flags (read-only; reading clears them).
    pub const C: u8 = 0x0C;
    /// Century (by PC convention; not every clock has it).
    pub const CENTURY: u8 = 0x32;
}

/// Status A bits.
pub mod a {
    /// An update cycle is (about to be) in progress: the time registers may be torn.
    pub const UIP: u8 = 0x80;
    /// The rate-select field (bits 0..3).
    pub const RATE_MASK: u8 = 0x0F;
}

/// Status B bits.
pub mod b {
    /// Updates stopped.
    pub const SET: u8 = 0x80;
    /// Periodic interrupt enable.
    pub const PIE: u8 = 0x40;
    /// Alarm interrupt enable.
    pub const AIE: u8 = 0x20;
    /// Update-ended interrupt enable.
    pub const UIE: u8 = 0x10;
    /// Binary (not BCD) data mode.
    pub const BINARY: u8 = 0x04;
    /// 24-hour mode.
    pub const H24: u8 = 0x02;
}

/// Status register C, as read (reading it acknowledges the clock's interrupt).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StatusC(pub u8);

impl StatusC {
    /// IRQF: the clock raised its interrupt line (some enabled flag below is set).
    pub const IRQF: u8 = 0x80;
    /// PF: a periodic tick happened.
    pub const PF: u8 = 0x40;
    /// AF: the alarm time was reached.
    pub const AF: u8 = 0x20;
    /// UF: an update cycle ended.
    pub const UF: u8 = 0x10;

    /// Did the clock raise its interrupt?
    pub const fn irq(self) -> bool {
        self.0 & Self::IRQF != 0
    }

    /// Was it (also) a periodic tick?
    pub const fn periodic(self) -> bool {
        self.0 & Self::PF != 0
    }
}

/// A periodic-interrupt rate: the value of status A's rate field, 3..=15, giving
/// `32768 >> (rate - 1)` interrupts per second (8192 Hz down to 2 Hz). Rates 1 and 2
/// (which the MC146818 maps to 256 and 128 Hz) and 0 (off) are not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rate(u8);

/// A rate-select value or frequency the clock cannot produce.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadRate(pub u32);

impl TryFrom<u8> for Rate {
    type Error = BadRate;

    fn try_from(rs: u8) -> Result<Self, BadRate> {
        if (3..=15).contains(&rs) {
            Ok(Rate(rs))
        } else {
            Err(BadRate(rs as u32))
        }
    }
}

impl Rate {
    /// The rate with `hz` interrupts per second (a power of two from 2 to 8192).
    pub const fn from_hz(hz: u32) -> Result<Self, BadRate> {
        if !hz.is_power_of_two() || hz < 2 || hz > 8192 {
            return Err(BadRate(hz));
        }
        // 32768 >> (rs - 1) == hz  <=>  rs = 16 - log2(hz)
        Ok(Rate((16 - hz.trailing_zeros()) as u8))
    }

    /// The rate-select field value.
    pub const fn select(self) -> u8 {
        self.0
    }

    /// Interrupts per second.
    pub const fn hz(self) -> u32 {
        32768 >> (self.0 - 1)
    }

    /// Microseconds between two interrupts (rounded down).
    pub const fn period_us(self) -> u64 {
        1_000_000 / self.hz() as u64
    }
}

/// The raw bytes of the clock's date and time registers, read in one update-free
/// window.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RawTime {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04.
    pub hours: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09.
    pub year: u8,
    /// Register 0x32 (0 if the clock has none).
    pub century: u8,
    /// Status B (data mode and hour format).
    pub status_b: u8,
}

/// A calendar date and time of day (UTC, as PCs keep their clocks in QEMU).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DateTime {
    /// Full year (e.g. 2025).
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31 (checked against the month).
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// Which register read did not hold a valid value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BadTime {
    /// A BCD byte with a nibble above 9.
    Bcd(u8),
    /// A field outside its range (name, decoded value).
    Range(&'static str, u8),
}

/// Decodes one BCD byte (two decimal digits).
pub fn from_bcd(v: u8) -> Result<u8, BadTime> {
    let (hi, lo) = (v >> 4, v & 0xF);
    if hi > 9 || lo > 9 {
        return Err(BadTime::Bcd(v));
    }
    Ok(hi * 10 + lo)
}

fn field(v: u8, binary: bool) -> Result<u8, BadTime> {
    if binary {
        Ok(v)
    } else {
        from_bcd(v)
    }
}

fn check(name: &'static str, v: u8, range: core::ops::RangeInclusive<u8>) -> Result<u8, BadTime> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(BadTime::Range(name, v))
    }
}

/// Days in `month` of `year` (Gregorian).
pub const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 31,
    }
}

impl TryFrom<RawTime> for DateTime {
    type Error = BadTime;

    /// Checks and decodes the registers: BCD unless status B says binary, 12-hour
    /// (bit 7 of the hours = PM) unless it says 24-hour; a missing or invalid century
    /// register means the 21st century.
    fn try_from(r: RawTime) -> Result<Self, BadTime> {
        let binary = r.status_b & b::BINARY != 0;
        let second = check("second", field(r.seconds, binary)?, 0..=59)?;
        let minute = check("minute", field(r.minutes, binary)?, 0..=59)?;
        let hour = if r.status_b & b::H24 != 0 {
            check("hour", field(r.hours, binary)?, 0..=23)?
        } else {
            let pm = r.hours & 0x80 != 0;
            let h = check("hour", field(r.hours & 0x7F, binary)?, 1..=12)?;
            (h % 12) + if pm { 12 } else { 0 }
        };
        let month = check("month", field(r.month, binary)?, 1..=12)?;
        let yy = check("year", field(r.year, binary)?, 0..=99)?;
        let century = field(r.century, binary)
            .ok()
            .filter(|c| (19..=99).contains(c))
            .unwrap_or(20);
        let year = century as u16 * 100 + yy as u16;
        let day = check("day", field(r.day, binary)?, 1..=days_in_month(year, month))?;
        Ok(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }
}

impl DateTime {
    /// Days since 1970-01-01 of the date (proleptic Gregorian calendar).
    pub fn days_since_epoch(&self) -> i64 {
        // Count whole years, then whole months of this year, then days.
        let y = self.year as i64;
        let leaps = |y: i64| (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
        let mut days = (y - 1970) * 365 + (leaps(y) - leaps(1970));
        for m in 1..self.month {
            days += days_in_month(self.year, m) as i64;
        }
        days + self.day as i64 - 1
    }

    /// Seconds since 1970-01-01 00:00:00.
    pub fn unix_seconds(&self) -> i64 {
        self.days_since_epoch() * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64
    }

    /// Packs the fields into one word (year 16 bits, then month, day, hour, minute,
    /// second a byte each) for the RTC protocol.
    pub const fn pack(&self) -> u64 {
        (self.year as u64) << 40
            | (self.month as u64) << 32
            | (self.day as u64) << 24
            | (self.hour as u64) << 16
            | (self.minute as u64) << 8
            | self.second as u64
    }

    /// Unpacks a word made by [`DateTime::pack`], checking every field.
    pub fn unpack(w: u64) -> Result<Self, BadTime> {
        let byte = |shift: u32| (w >> shift) as u8;
        let year = (w >> 40) as u16;
        let month = check("month", byte(32), 1..=12)?;
        let d = DateTime {
            year,
            month,
            day: check("day", byte(24), 1..=days_in_month(year, month))?,
            hour: check("hour", byte(16), 0..=23)?,
            minute: check("minute", byte(8), 0..=59)?,
            second: check("second", byte(0), 0..=59)?,
        };
        if w >> 56 != 0 {
            return Err(BadTime::Range("year", (w >> 56) as u8));
        }
        Ok(d)
    }
}

impl core::fmt::Display for DateTime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_bcd_24h() -> RawTime {
        RawTime {
            seconds: 0x59,
            minutes: 0x07,
            hours: 0x23,
            day: 0x31,
            month: 0x12,
            year: 0x24,
            century: 0x20,
            status_b: b::H24,
        }
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::try_from(3).map(Rate::hz), Ok(8192));
        assert_eq!(Rate::try_from(6).map(Rate::hz), Ok(1024));
        assert_eq!(Rate::try_from(15).map(Rate::hz), Ok(2));
        for bad in [0u8, 1, 2, 16, 0xFF] {
            assert_eq!(Rate::try_from(bad), Err(BadRate(bad as u32)));
        }
        for hz in [2u32, 64, 1024, 8192] {
            assert_eq!(Rate::from_hz(hz).unwrap().hz(), hz);
        }
        for bad in [0u32, 1, 3, 100, 16384] {
            assert_eq!(Rate::from_hz(bad), Err(BadRate(bad)));
        }
        assert_eq!(Rate::from_hz(64).unwrap().select(), 10);
        assert_eq!(Rate::from_hz(1024).unwrap().period_us(), 976);
    }

    #[test]
    fn status_c_flags() {
        assert!(StatusC(0xC0).irq() && StatusC(0xC0).periodic());
        assert!(!StatusC(0x40).irq());
        assert!(!StatusC(0x90).periodic());
    }

    #[test]
    fn bcd() {
        assert_eq!(from_bcd(0x00), Ok(0));
        assert_eq!(from_bcd(0x59), Ok(59));
        assert_eq!(from_bcd(0x99), Ok(99));
        assert_eq!(from_bcd(0x5A), Err(BadTime::Bcd(0x5A)));
        assert_eq!(from_bcd(0xA0), Err(BadTime::Bcd(0xA0)));
    }

    #[test]
    fn decodes_bcd_24_hour() {
        let d = DateTime::try_from(raw_bcd_24h()).unwrap();
        assert_eq!(
            d,
            DateTime {
                year: 2024,
                month: 12,
                day: 31,
                hour: 23,
                minute: 7,
                second: 59
            }
        );
        assert_eq!(format!("{d}"), "2024-12-31 23:07:59 UTC");
    }

    #[test]
    fn decodes_binary_12_hour() {
        let r = RawTime {
            seconds: 5,
            minutes: 0,
            hours: 0x80 | 12,
            day: 1,
            month: 1,
            year: 99,
            century: 0,
            status_b: b::BINARY,
        };
        let d = DateTime::try_from(r).unwrap();
        assert_eq!((d.year, d.hour), (2099, 12));
        let midnight = RawTime { hours: 12, ..r };
        assert_eq!(DateTime::try_from(midnight).unwrap().hour, 0);
        let one_pm = RawTime { hours: 0x80 | 1, ..r };
        assert_eq!(DateTime::try_from(one_pm).unwrap().hour, 13);
    }

    #[test]
    fn rejects_invalid_fields() {
        let r = raw_bcd_24h();
        assert_eq!(
            DateTime::try_from(RawTime { seconds: 0x60, ..r }),
            Err(BadTime::Range("second", 60))
        );
        assert_eq!(
            DateTime::try_from(RawTime { hours: 0x24, ..r }),
            Err(BadTime::Range("hour", 24))
        );
        assert_eq!(
            DateTime::try_from(RawTime { month: 0x13, ..r }),
            Err(BadTime::Range("month", 13))
        );
        assert_eq!(
            DateTime::try_from(RawTime {
                month: 0x02,
                day: 0x30,
                ..r
            }),
            Err(BadTime::Range("day", 30))
        );
        assert_eq!(
            DateTime::try_from(RawTime { minutes: 0x7F, ..r }),
            Err(BadTime::Bcd(0x7F))
        );
        let twelve = RawTime {
            status_b: 0,
            hours: 0x00,
            ..r
        };
        assert_eq!(DateTime::try_from(twelve), Err(BadTime::Range("hour", 0)));
    }

    #[test]
    fn leap_years() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        let r = RawTime {
            month: 0x02,
            day: 0x29,
            year: 0x00,
            century: 0x20,
            ..raw_bcd_24h()
        };
        assert!(DateTime::try_from(r).is_ok());
    }

    #[test]
    fn unix_time() {
        let d = |year, month, day, hour, minute, second| DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        };
        assert_eq!(d(1970, 1, 1, 0, 0, 0).unix_seconds(), 0);
        assert_eq!(d(2000, 3, 1, 0, 0, 0).unix_seconds(), 951_868_800);
        assert_eq!(d(2024, 12, 31, 23, 7, 59).unix_seconds(), 1_735_686_479);
        assert_eq!(d(1969, 12, 31, 23, 59, 59).unix_seconds(), -1);
    }

    #[test]
    fn pack_round_trip() {
        let d = DateTime::try_from(raw_bcd_24h()).unwrap();
        assert_eq!(DateTime::unpack(d.pack()), Ok(d));
        assert!(DateTime::unpack(0).is_err());
        assert!(DateTime::unpack(d.pack() | 1 << 60).is_err());
    }
}
