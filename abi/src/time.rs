//! Time values, the IPC timeouts word and absolute deadlines (§1.4).
//!
//! ```text
//! period:  15 | 14     10 | 9         0      point:  15 | 14   11 | 10 | 9        0
//!         +---+----------+------------+             +---+--------+----+-----------+
//!         | 0 |    e     |     m      |             | 1 |   e    | c  |     m     |
//!         +---+----------+------------+             +---+--------+----+-----------+
//!         duration = m * 2^e microseconds
//! ```
//!
//! Raw 0 is "never"; a period with m = 0 and e != 0 is zero time (canonical
//! form 0x0400). The clock is a 64-bit count of microseconds.

/// The never-expiring time value.
pub const NEVER: u16 = 0;
/// The canonical zero time value (m = 0, e = 1).
pub const ZERO: u16 = 0x0400;

/// Largest mantissa of a period or point.
const M_MAX: u64 = 0x3FF;
/// Largest exponent of a period.
const PERIOD_E_MAX: u32 = 31;
/// Largest exponent of a point.
const POINT_E_MAX: u32 = 15;
/// Bit 15: point (1) or period (0).
const POINT_BIT: u16 = 0x8000;

/// A decoded 16-bit X.2 time value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Time {
    /// Raw 0: no timeout.
    Never,
    /// A period of length zero: time out at once.
    Zero,
    /// A relative period of `us` microseconds (`us >= 1`).
    Period {
        /// Length in microseconds.
        us: u64,
    },
    /// An absolute time point; `raw` is the whole 16-bit value (bit 15 set).
    /// See [`Time::deadline_us`] for how it is read.
    Point {
        /// The encoded value.
        raw: u16,
    },
}

/// A time turned into an absolute clock value by [`Time::deadline_us`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Deadline {
    /// Never expires.
    Never,
    /// Already expired: behave like zero time.
    Now,
    /// Expires when the clock reaches this many microseconds.
    At(u64),
}

impl Time {
    /// Decode a 16-bit time value. Every value decodes.
    #[inline]
    pub const fn decode(raw: u16) -> Time {
        if raw & POINT_BIT != 0 {
            Time::Point { raw }
        } else if raw == NEVER {
            Time::Never
        } else {
            let m = (raw & M_MAX as u16) as u64;
            let e = (raw >> 10) as u32;
            if m == 0 {
                Time::Zero
            } else {
                Time::Period { us: m << e }
            }
        }
    }

    /// Encode: `Never` → 0, `Zero` → 0x0400, `Period` → [`encode_period`]
    /// (rounded up, [`NEVER`] if too long), `Point` → its raw value with bit
    /// 15 forced on.
    #[inline]
    pub const fn encode(self) -> u16 {
        match self {
            Time::Never => NEVER,
            Time::Zero => ZERO,
            Time::Period { us } => encode_period(us),
            Time::Point { raw } => raw | POINT_BIT,
        }
    }

    /// The best period encoding of `us` microseconds: the smallest exponent
    /// whose (rounded-up) mantissa fits in 10 bits, so the encoded duration
    /// is the shortest one not shorter than `us`. `0` gives [`ZERO`];
    /// `None` if `us` exceeds the longest period, `1023 * 2^31` µs.
    #[inline]
    pub const fn period_us(us: u64) -> Option<u16> {
        if us == 0 {
            return Some(ZERO);
        }
        let bits = u64::BITS - us.leading_zeros();
        let mut e = bits.saturating_sub(10);
        let round = (us & ((1u64 << e) - 1) != 0) as u64;
        let mut m = (us >> e) + round;
        if m > M_MAX {
            // Rounding up carried into bit 10: 1024 * 2^e = 512 * 2^(e+1).
            m >>= 1;
            e += 1;
        }
        if e > PERIOD_E_MAX {
            None
        } else {
            Some(((e as u16) << 10) | m as u16)
        }
    }

    /// Encode a time point for the absolute clock value `at_us`, as seen at
    /// clock value `now_us`: the smallest exponent `e` (0..=15) such that
    /// `at_us` rounded up to `2^e` lies less than `2^(e+10)` after `now_us`.
    /// Decoding it at `now_us` gives that rounded-up value. `None` if
    /// `at_us <= now_us` (use [`ZERO`]) or it is more than about 33.5 s
    /// ahead (use a period).
    pub const fn point_us(at_us: u64, now_us: u64) -> Option<u16> {
        if at_us <= now_us {
            return None;
        }
        let mut e = 0;
        while e <= POINT_E_MAX {
            let step = 1u64 << e;
            let Some(rounded) = at_us.checked_add(step - 1) else {
                return None;
            };
            let rounded = rounded & !(step - 1);
            if rounded - now_us < (1u64 << (e + 10)) {
                let m = (rounded >> e) & M_MAX;
                let c = (rounded >> (e + 10)) & 1;
                return Some(POINT_BIT | (e as u16) << 11 | (c as u16) << 10 | m as u16);
            }
            e += 1;
        }
        None
    }

    /// The absolute deadline of this time value when the clock reads
    /// `now_us`.
    ///
    /// * `Never` → [`Deadline::Never`]; `Zero` (and a zero-length `Period`)
    ///   → [`Deadline::Now`]; `Period { us }` → `At(now + us)` (`Never` if
    ///   that overflows the clock).
    /// * `Point`: how Tern reads X.2. With exponent `e`, mantissa `m` and
    ///   clock bit `c`, the point names the clock value whose bits below
    ///   `e` are zero, whose bits `e..e+10` equal `m` and whose bit `e+10`
    ///   equals `c`, taken in the current `2^(e+10)` window of the clock if
    ///   the clock's own bit `e+10` equals `c`, else in the next window:
    ///
    ///   ```text
    ///   W = now >> (e+10);  if (W & 1) != c { W += 1 }
    ///   point = W << (e+10) | m << e
    ///   ```
    ///
    ///   So a point is never more than two windows ahead. A point that is
    ///   not after `now` has passed: [`Deadline::Now`].
    #[inline]
    pub const fn deadline_us(self, now_us: u64) -> Deadline {
        match self {
            Time::Never => Deadline::Never,
            Time::Zero | Time::Period { us: 0 } => Deadline::Now,
            Time::Period { us } => match now_us.checked_add(us) {
                Some(at) => Deadline::At(at),
                None => Deadline::Never,
            },
            Time::Point { raw } => {
                let m = (raw as u64) & M_MAX;
                let c = ((raw >> 10) & 1) as u64;
                let e = ((raw >> 11) & 0xF) as u32;
                let shift = e + 10;
                let window = (now_us >> shift) as u128;
                let window = window + ((window as u64 & 1) ^ c) as u128;
                let point = (window << shift) | ((m as u128) << e);
                if point > u64::MAX as u128 {
                    Deadline::Never
                } else if point as u64 <= now_us {
                    Deadline::Now
                } else {
                    Deadline::At(point as u64)
                }
            }
        }
    }
}

/// The best period encoding of `us`, never shorter than asked: see
/// [`Time::period_us`]; a duration too long for any period becomes
/// [`NEVER`].
#[inline]
pub const fn encode_period(us: u64) -> u16 {
    match Time::period_us(us) {
        Some(t) => t,
        None => NEVER,
    }
}

/// The IPC timeouts word (R8 for Ipc) and the XferTimeouts TCR: receive
/// timeout in bits 0..15, send timeout in bits 16..31, bits 32..63 unused.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Timeouts(pub u64);

impl Timeouts {
    /// Both timeouts never.
    pub const NEVER: Self = Self(0);

    /// `snd << 16 | rcv`.
    #[inline]
    pub const fn new(snd: u16, rcv: u16) -> Self {
        Self(((snd as u64) << 16) | rcv as u64)
    }

    /// Send timeout (bits 16..31).
    #[inline]
    pub const fn send(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// Receive timeout (bits 0..15).
    #[inline]
    pub const fn receive(self) -> u16 {
        self.0 as u16
    }

    /// Send timeout, decoded.
    #[inline]
    pub const fn send_time(self) -> Time {
        Time::decode(self.send())
    }

    /// Receive timeout, decoded.
    #[inline]
    pub const fn receive_time(self) -> Time {
        Time::decode(self.receive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decode_forms() {
        assert_eq!(Time::decode(NEVER), Time::Never);
        assert_eq!(Time::decode(ZERO), Time::Zero);
        assert_eq!(Time::decode(0x7C00), Time::Zero); // m = 0, e = 31
        assert_eq!(Time::decode(1), Time::Period { us: 1 });
        assert_eq!(Time::decode(0x3FF), Time::Period { us: 1023 });
        assert_eq!(Time::decode(0x7FFF), Time::Period { us: 1023 << 31 });
        assert_eq!(Time::decode(0x8000), Time::Point { raw: 0x8000 });
        assert_eq!(Time::decode(0xFFFF), Time::Point { raw: 0xFFFF });
    }

    #[test]
    fn period_encoding() {
        assert_eq!(Time::period_us(0), Some(ZERO));
        assert_eq!(Time::period_us(1), Some(1));
        assert_eq!(Time::period_us(1023), Some(1023));
        assert_eq!(Time::period_us(1024), Some(1 << 10 | 512));
        assert_eq!(Time::period_us(1025), Some(1 << 10 | 513)); // 1026 µs, rounded up
        assert_eq!(Time::period_us(2047), Some(2 << 10 | 512)); // 2048 µs: carry
        assert_eq!(Time::period_us(1023 << 31), Some(0x7FFF));
        assert_eq!(Time::period_us((1023 << 31) + 1), None);
        assert_eq!(Time::period_us(u64::MAX), None);
        assert_eq!(encode_period(u64::MAX), NEVER);
        assert_eq!(encode_period(10_000), Time::Period { us: 10_000 }.encode());
        assert_eq!(Time::Never.encode(), NEVER);
        assert_eq!(Time::Zero.encode(), ZERO);
        assert_eq!(Time::Point { raw: 0x1234 }.encode(), 0x9234);
    }

    #[test]
    fn deadlines() {
        assert_eq!(Time::Never.deadline_us(5), Deadline::Never);
        assert_eq!(Time::Zero.deadline_us(5), Deadline::Now);
        assert_eq!(Time::Period { us: 0 }.deadline_us(5), Deadline::Now);
        assert_eq!(Time::Period { us: 10 }.deadline_us(5), Deadline::At(15));
        assert_eq!(
            Time::Period { us: 10 }.deadline_us(u64::MAX - 5),
            Deadline::Never
        );

        // e = 0: windows of 1024 µs. now = 0x1_0010 (window 0x40, bit 10 = 0).
        let now = 0x1_0010;
        let pt = |c: u16, m: u16| Time::decode(0x8000 | c << 10 | m);
        assert_eq!(pt(0, 0x20).deadline_us(now), Deadline::At(0x1_0020));
        assert_eq!(pt(0, 0x10).deadline_us(now), Deadline::Now); // exactly now
        assert_eq!(pt(0, 0x05).deadline_us(now), Deadline::Now); // passed
        assert_eq!(pt(1, 0x05).deadline_us(now), Deadline::At(0x1_0405)); // next window
                                                                          // Clock bit set: c = 0 means the window after.
        let now = 0x1_0410;
        assert_eq!(pt(0, 0x05).deadline_us(now), Deadline::At(0x1_0805));
        assert_eq!(pt(1, 0x20).deadline_us(now), Deadline::At(0x1_0420));
        // Exponent 3.
        let t = Time::decode(0x8000 | 3 << 11 | 0x100);
        assert_eq!(t.deadline_us(0), Deadline::At(0x800));
        // Near the end of the clock the next window does not exist.
        assert_eq!(
            Time::decode(0xFBFF).deadline_us(u64::MAX - 1),
            Deadline::Never
        );
        assert_eq!(
            Time::decode(0xFFFF).deadline_us(u64::MAX - 1),
            Deadline::Now
        );
    }

    #[test]
    fn point_encoding() {
        assert_eq!(Time::point_us(5, 5), None);
        assert_eq!(Time::point_us(4, 5), None);
        assert_eq!(Time::point_us(u64::MAX, 0), None);
        let p = Time::point_us(0x1_0020, 0x1_0010).unwrap();
        assert_eq!(p, 0x8000 | 0x20);
        let p = Time::point_us(0x1_0405, 0x1_0010).unwrap();
        assert_eq!(p, 0x8000 | 1 << 10 | 0x05);
        // About 33.5 s is the limit.
        assert!(Time::point_us((1023 << 15) + 1000, 1000).is_some());
        assert!(Time::point_us((2048 << 15) + 1000, 1000).is_none());
    }

    #[test]
    fn timeouts_word() {
        let t = Timeouts::new(ZERO, 0x1234);
        assert_eq!(t.0, 0x0400_1234);
        assert_eq!((t.send(), t.receive()), (ZERO, 0x1234));
        assert_eq!(t.send_time(), Time::Zero);
        assert_eq!(Timeouts::NEVER.receive_time(), Time::Never);
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(raw: u16) {
            let t = Time::decode(raw);
            prop_assert_eq!(Time::decode(t.encode()), t);
        }

        #[test]
        fn period_is_tight_and_not_shorter(us in 1u64..=(1023u64 << 31)) {
            let raw = Time::period_us(us).unwrap();
            let Time::Period { us: got } = Time::decode(raw) else { panic!("not a period") };
            prop_assert!(got >= us);
            // The smallest exponent was used: one step less precise is wrong.
            let e = (raw >> 10) as u32;
            if e > 0 {
                prop_assert!(us.div_ceil(1 << (e - 1)) > 1023);
            }
            prop_assert!(got - us < (1 << e));
        }

        #[test]
        fn point_round_trip(now in 0u64..(1 << 62), ahead in 1u64..(1023u64 << 15)) {
            let at = now + ahead;
            let raw = Time::point_us(at, now).unwrap();
            let e = ((raw >> 11) & 0xF) as u32;
            let rounded = at.div_ceil(1 << e) << e;
            prop_assert_eq!(Time::decode(raw).deadline_us(now), Deadline::At(rounded));
        }

        #[test]
        fn timeouts_round_trip(snd: u16, rcv: u16) {
            let t = Timeouts::new(snd, rcv);
            prop_assert_eq!((t.send(), t.receive()), (snd, rcv));
        }
    }
}
