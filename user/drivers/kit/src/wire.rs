//! The driver protocols on the wire: labels, word layouts, and the checked decoding of
//! requests (every request a server receives goes through one `TryFrom`; unknown labels,
//! missing words and out-of-range values are errors, not panics).
//!
//! Every request is a call: the client sends and waits for the reply. A reply has
//! label 0 and at least one word, the [`Status`]; the words after it depend on the
//! request. Bytes travel packed eight to a word, little endian (byte `i` in bits
//! `8 * (i % 8)..` of word `i / 8`).
//!
//! | service   | label          | request words                      | reply words after the status |
//! |-----------|----------------|------------------------------------|------------------------------|
//! | any       | `PING`         | —                                  | —                            |
//! | any       | `IDENTIFY`     | —                                  | n, n name bytes              |
//! | UART      | `uart::WRITE`  | n, n bytes (1 ≤ n ≤ [`MAX_BYTES`]) | n (all bytes are queued before the reply) |
//! | UART      | `uart::READ`   | max, wait µs (0 poll, !0 forever)  | n, n bytes (n ≥ 1 unless status `TIMEOUT`) |
//! | UART      | `uart::CONTROL`| operation ([`uart::Control`])      | —                            |
//! | UART      | `uart::STATS`  | —                                  | [`uart::Stats`] words        |
//! | RTC       | `rtc::NOW`     | —                                  | date-time (packed), ticks, Hz |
//! | RTC       | `rtc::SLEEP`   | µs                                 | ticks at wake-up             |
//! | RTC       | `rtc::TICKS`   | —                                  | ticks, Hz, interrupts        |
//! | root task | `root::ATTACH_IRQ` | line (handler = the sender)    | —                            |
//! | root task | `root::DETACH_IRQ` | line                           | —                            |
//! | root task | `root::LOOKUP` | n, n name bytes                    | thread id                    |
//! | root task | `root::LIST`   | index                              | thread id, n, n name bytes (status `NOT_FOUND` past the end) |
//! | root task | `root::POWER_OFF` | exit status                     | (no reply if it worked)      |
//! | root task | `root::REGISTER` | n, n name bytes (names the sender) | —                          |
//! | root task | `root::REQUEST_IO` | I/O fpage                      | — and a map item of the ports |
//!
//! A `LIST` reply goes on after the name with the entry's kind (0 program, 1 service), the
//! interrupt lines it holds (bit n = line n) and its port ranges (count, I/O fpages).

use core::fmt;

/// Label of the liveness request every service answers at once (for round-trip timing).
pub const PING: u64 = 0x5049_4E47;

/// Label of the request every service answers with its name (status, then the name as
/// count and packed bytes): how a client that cannot ask the root task finds a service.
pub const IDENTIFY: u64 = 0x4944_4E54;

/// Most bytes one message carries (62 words after the count word).
pub const MAX_BYTES: usize = 62 * 8;

/// Status word of every reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// The wait given in the request ended first.
    Timeout = 1,
    /// The request was malformed (unknown label, bad words).
    BadRequest = 2,
    /// The server has no room for the request now; try again.
    Busy = 3,
    /// The device or resource is not there.
    NoDevice = 4,
    /// Not allowed for this sender.
    Denied = 5,
    /// No such name or index.
    NotFound = 6,
    /// The kernel refused the operation (the X.2 error code follows in the next word).
    Kernel = 7,
}

/// A status word with no meaning.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadStatus(pub u64);

impl TryFrom<u64> for Status {
    type Error = BadStatus;

    fn try_from(w: u64) -> Result<Self, BadStatus> {
        Ok(match w {
            0 => Status::Ok,
            1 => Status::Timeout,
            2 => Status::BadRequest,
            3 => Status::Busy,
            4 => Status::NoDevice,
            5 => Status::Denied,
            6 => Status::NotFound,
            7 => Status::Kernel,
            _ => return Err(BadStatus(w)),
        })
    }
}

/// Why a request or reply could not be decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WireError {
    /// The label names no request of this protocol.
    UnknownLabel(u64),
    /// Fewer words than the request needs.
    Short,
    /// A word holds a value outside its range.
    Value(u64),
    /// More bytes than [`MAX_BYTES`], or fewer words than the byte count needs.
    Length(u64),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnknownLabel(l) => write!(f, "unknown label {l:#x}"),
            WireError::Short => write!(f, "message too short"),
            WireError::Value(v) => write!(f, "value {v:#x} out of range"),
            WireError::Length(n) => write!(f, "bad byte count {n}"),
        }
    }
}

/// Words needed for `n` packed bytes.
pub const fn words_for(n: usize) -> usize {
    n.div_ceil(8)
}

/// Packs `bytes` into `out` (eight per word, little endian); returns the words used.
/// Bytes that do not fit in `out` are left out.
pub fn pack(bytes: &[u8], out: &mut [u64]) -> usize {
    let n = words_for(bytes.len()).min(out.len());
    for (i, w) in out[..n].iter_mut().enumerate() {
        let mut v = [0u8; 8];
        let chunk = &bytes[i * 8..bytes.len().min(i * 8 + 8)];
        v[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(v);
    }
    n
}

/// A byte string of at most [`MAX_BYTES`] that travelled as (count, packed words).
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes {
    len: usize,
    buf: [u8; MAX_BYTES],
}

impl Bytes {
    /// The empty string.
    pub const fn empty() -> Self {
        Self {
            len: 0,
            buf: [0; MAX_BYTES],
        }
    }

    /// Copies `b` (cut at [`MAX_BYTES`]).
    pub fn copy_from(b: &[u8]) -> Self {
        let mut s = Self::empty();
        s.len = b.len().min(MAX_BYTES);
        s.buf[..s.len].copy_from_slice(&b[..s.len]);
        s
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Number of bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// No bytes?
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The count word and the packed words, written to `out` (which needs
    /// `1 + words_for(len)` words); returns the words used.
    pub fn encode(&self, out: &mut [u64]) -> usize {
        if out.is_empty() {
            return 0;
        }
        out[0] = self.len as u64;
        1 + pack(self.as_slice(), &mut out[1..])
    }

    /// Decodes (count, packed words) from the front of `words`; returns the bytes and the
    /// words consumed.
    pub fn decode(words: &[u64]) -> Result<(Self, usize), WireError> {
        let &n = words.first().ok_or(WireError::Short)?;
        if n > MAX_BYTES as u64 {
            return Err(WireError::Length(n));
        }
        let n = n as usize;
        let need = words_for(n);
        if words.len() < 1 + need {
            return Err(WireError::Length(n as u64));
        }
        let mut s = Self::empty();
        s.len = n;
        for (i, w) in words[1..1 + need].iter().enumerate() {
            let chunk = w.to_le_bytes();
            let end = n.min(i * 8 + 8);
            s.buf[i * 8..end].copy_from_slice(&chunk[..end - i * 8]);
        }
        Ok((s, 1 + need))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bytes({:?})",
            core::str::from_utf8(self.as_slice()).unwrap_or("<binary>")
        )
    }
}

/// How long a request may wait: a word of microseconds, 0 = do not wait, all ones =
/// forever.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wait {
    /// Answer at once.
    Poll,
    /// Wait at most this many microseconds.
    For(u64),
    /// Wait as long as it takes.
    Forever,
}

impl Wait {
    /// The word.
    pub const fn encode(self) -> u64 {
        match self {
            Wait::Poll => 0,
            Wait::For(0) => 1,
            Wait::For(us) if us == u64::MAX => u64::MAX - 1,
            Wait::For(us) => us,
            Wait::Forever => u64::MAX,
        }
    }

    /// Reads the word (every value is meaningful).
    pub const fn decode(w: u64) -> Self {
        match w {
            0 => Wait::Poll,
            u64::MAX => Wait::Forever,
            us => Wait::For(us),
        }
    }

    /// The absolute deadline for a request received at `now_us` (`None`: forever).
    pub const fn deadline(self, now_us: u64) -> Option<u64> {
        match self {
            Wait::Poll => Some(now_us),
            Wait::For(us) => Some(now_us.saturating_add(us)),
            Wait::Forever => None,
        }
    }
}

/// The UART driver's protocol.
pub mod uart {
    use super::{Bytes, Wait, WireError, MAX_BYTES};

    /// Queue bytes for transmission.
    pub const WRITE: u64 = 0x5541_0001;
    /// Take received bytes.
    pub const READ: u64 = 0x5541_0002;
    /// Change a setting ([`Control`]).
    pub const CONTROL: u64 = 0x5541_0003;
    /// Counters ([`Stats`]).
    pub const STATS: u64 = 0x5541_0004;

    /// Settings a client may change.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Control {
        /// Loopback on (MCR bit 4): what is written is received, nothing leaves.
        LoopbackOn,
        /// Loopback off.
        LoopbackOff,
        /// Drop everything received and not yet read.
        FlushRx,
    }

    impl Control {
        /// The operation word.
        pub const fn encode(self) -> u64 {
            match self {
                Control::LoopbackOn => 1,
                Control::LoopbackOff => 2,
                Control::FlushRx => 3,
            }
        }
    }

    impl TryFrom<u64> for Control {
        type Error = WireError;

        fn try_from(w: u64) -> Result<Self, WireError> {
            match w {
                1 => Ok(Control::LoopbackOn),
                2 => Ok(Control::LoopbackOff),
                3 => Ok(Control::FlushRx),
                _ => Err(WireError::Value(w)),
            }
        }
    }

    /// A decoded request to the UART driver.
    // A WRITE carries its bytes inline: there is no heap to box them on.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub enum Request {
        /// [`super::PING`].
        Ping,
        /// [`WRITE`]: at least one byte.
        Write(Bytes),
        /// [`READ`]: up to `max` (1..=[`MAX_BYTES`]) bytes, waiting as `wait` says for
        /// the first.
        Read {
            /// Most bytes wanted.
            max: usize,
            /// How long to wait for the first byte.
            wait: Wait,
        },
        /// [`CONTROL`].
        Control(Control),
        /// [`STATS`].
        Stats,
    }

    impl TryFrom<(u64, &[u64])> for Request {
        type Error = WireError;

        /// Decodes `(label, untyped words)`.
        fn try_from((label, w): (u64, &[u64])) -> Result<Self, WireError> {
            match label {
                super::PING => Ok(Request::Ping),
                WRITE => {
                    let (b, _) = Bytes::decode(w)?;
                    if b.is_empty() {
                        return Err(WireError::Length(0));
                    }
                    Ok(Request::Write(b))
                }
                READ => {
                    let (&max, &wait) = (w.first().ok_or(WireError::Short)?, w.get(1).ok_or(WireError::Short)?);
                    if max == 0 || max > MAX_BYTES as u64 {
                        return Err(WireError::Length(max));
                    }
                    Ok(Request::Read {
                        max: max as usize,
                        wait: Wait::decode(wait),
                    })
                }
                CONTROL => Ok(Request::Control(Control::try_from(
                    *w.first().ok_or(WireError::Short)?,
                )?)),
                STATS => Ok(Request::Stats),
                other => Err(WireError::UnknownLabel(other)),
            }
        }
    }

    /// The driver's counters.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct Stats {
        /// Interrupt messages handled.
        pub interrupts: u64,
        /// Bytes received from the UART.
        pub rx_bytes: u64,
        /// Bytes handed to the UART.
        pub tx_bytes: u64,
        /// Line errors (overrun, parity, framing, break).
        pub line_errors: u64,
        /// Received bytes dropped because the receive buffer was full.
        pub rx_dropped: u64,
        /// 1 if the driver polls (no interrupt line), else 0.
        pub polling: u64,
    }

    impl Stats {
        /// Words in a reply.
        pub const WORDS: usize = 6;

        /// The reply words.
        pub const fn encode(&self) -> [u64; Self::WORDS] {
            [
                self.interrupts,
                self.rx_bytes,
                self.tx_bytes,
                self.line_errors,
                self.rx_dropped,
                self.polling,
            ]
        }

        /// Reads the reply words.
        pub fn decode(w: &[u64]) -> Result<Self, WireError> {
            if w.len() < Self::WORDS {
                return Err(WireError::Short);
            }
            Ok(Stats {
                interrupts: w[0],
                rx_bytes: w[1],
                tx_bytes: w[2],
                line_errors: w[3],
                rx_dropped: w[4],
                polling: w[5],
            })
        }
    }
}

/// The RTC time/alarm service's protocol.
pub mod rtc {
    use super::WireError;

    /// Date and time, tick count, tick rate.
    pub const NOW: u64 = 0x5243_0001;
    /// Reply after the given number of microseconds (counted in ticks).
    pub const SLEEP: u64 = 0x5243_0002;
    /// Tick count, rate and interrupt count.
    pub const TICKS: u64 = 0x5243_0003;

    /// Longest sleep accepted: one day.
    pub const MAX_SLEEP_US: u64 = 86_400_000_000;

    /// A decoded request to the RTC service.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Request {
        /// [`super::PING`].
        Ping,
        /// [`NOW`].
        Now,
        /// [`SLEEP`] for 1..=[`MAX_SLEEP_US`] microseconds.
        Sleep {
            /// Microseconds.
            us: u64,
        },
        /// [`TICKS`].
        Ticks,
    }

    impl TryFrom<(u64, &[u64])> for Request {
        type Error = WireError;

        fn try_from((label, w): (u64, &[u64])) -> Result<Self, WireError> {
            match label {
                super::PING => Ok(Request::Ping),
                NOW => Ok(Request::Now),
                SLEEP => {
                    let us = *w.first().ok_or(WireError::Short)?;
                    if us == 0 || us > MAX_SLEEP_US {
                        return Err(WireError::Value(us));
                    }
                    Ok(Request::Sleep { us })
                }
                TICKS => Ok(Request::Ticks),
                other => Err(WireError::UnknownLabel(other)),
            }
        }
    }
}

/// The root task's services to drivers and the monitor.
pub mod root {
    use abi::fpage::{Fpage, IoFpage};

    use super::{Bytes, WireError};

    /// Attach interrupt line MR1 to the sender.
    pub const ATTACH_IRQ: u64 = 0x5254_0001;
    /// Detach interrupt line MR1 (the sender must be its handler).
    pub const DETACH_IRQ: u64 = 0x5254_0002;
    /// Thread id of the program with the given name.
    pub const LOOKUP: u64 = 0x5254_0003;
    /// The `index`-th program the root task started (name and thread id).
    pub const LIST: u64 = 0x5254_0004;
    /// Power the machine off with the given exit status.
    pub const POWER_OFF: u64 = 0x5254_0005;
    /// Register the sender under another name (a service name besides its program name).
    pub const REGISTER: u64 = 0x5254_0006;
    /// Map the ports of I/O fpage MR1 to the sender (the reply carries the map item).
    pub const REQUEST_IO: u64 = 0x5254_0007;

    /// Most port ranges a `LIST` reply names per entry.
    pub const MAX_PORT_RANGES: usize = 4;

    /// What a registry entry is.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Kind {
        /// A program the root task started (its main thread, under its archive name).
        Program,
        /// A name a program registered for itself with [`REGISTER`].
        Service,
    }

    impl Kind {
        /// The word.
        pub const fn encode(self) -> u64 {
            match self {
                Kind::Program => 0,
                Kind::Service => 1,
            }
        }
    }

    impl TryFrom<u64> for Kind {
        type Error = WireError;

        fn try_from(w: u64) -> Result<Self, WireError> {
            match w {
                0 => Ok(Kind::Program),
                1 => Ok(Kind::Service),
                _ => Err(WireError::Value(w)),
            }
        }
    }

    /// The words of a `LIST` reply after the thread id and the name: kind, interrupt lines
    /// held (bit n = line n), then the count of port ranges and their I/O fpages.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct Holdings {
        /// Program or service name.
        pub kind: Kind,
        /// Interrupt lines attached to the entry's thread through the root task.
        pub lines: u64,
        /// Port ranges the root task gave the entry's thread.
        pub ports: [Option<IoFpage>; MAX_PORT_RANGES],
    }

    impl Holdings {
        /// Writes the words to `out` (which needs `3 + MAX_PORT_RANGES`); returns the
        /// words used.
        pub fn encode(&self, out: &mut [u64]) -> usize {
            let n = self.ports.iter().flatten().count();
            if out.len() < 3 + n {
                return 0;
            }
            out[0] = self.kind.encode();
            out[1] = self.lines;
            out[2] = n as u64;
            for (o, p) in out[3..].iter_mut().zip(self.ports.iter().flatten()) {
                *o = p.raw();
            }
            3 + n
        }

        /// Reads the words (every port word must be an I/O fpage).
        pub fn decode(w: &[u64]) -> Result<Self, WireError> {
            if w.len() < 3 {
                return Err(WireError::Short);
            }
            let kind = Kind::try_from(w[0])?;
            let n = w[2];
            if n > MAX_PORT_RANGES as u64 || w.len() < 3 + n as usize {
                return Err(WireError::Length(n));
            }
            let mut ports = [None; MAX_PORT_RANGES];
            for (slot, &raw) in ports.iter_mut().zip(&w[3..3 + n as usize]) {
                *slot = Some(IoFpage::try_from(Fpage(raw)).map_err(|_| WireError::Value(raw))?);
            }
            Ok(Holdings {
                kind,
                lines: w[1],
                ports,
            })
        }
    }

    /// Longest program name.
    pub const MAX_NAME: usize = 32;

    /// A program name: 1..=[`MAX_NAME`] bytes of ASCII letters, digits, `-`, `_`, `.`.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct Name(Bytes);

    impl Name {
        /// The name as text.
        pub fn as_str(&self) -> &str {
            // Only ASCII is admitted (checked constructor).
            core::str::from_utf8(self.0.as_slice()).unwrap_or("")
        }

        /// The wire form (count, packed words).
        pub fn bytes(&self) -> &Bytes {
            &self.0
        }
    }

    impl TryFrom<&[u8]> for Name {
        type Error = WireError;

        fn try_from(b: &[u8]) -> Result<Self, WireError> {
            let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
            if b.is_empty() || b.len() > MAX_NAME || !b.iter().all(ok) {
                return Err(WireError::Length(b.len() as u64));
            }
            Ok(Name(Bytes::copy_from(b)))
        }
    }

    /// A decoded request to the root task.
    // A LOOKUP carries its name inline: there is no heap to box it on.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub enum Request {
        /// [`super::PING`].
        Ping,
        /// [`ATTACH_IRQ`]: line number (checked against the KIP by the server).
        AttachIrq(u32),
        /// [`DETACH_IRQ`].
        DetachIrq(u32),
        /// [`LOOKUP`].
        Lookup(Name),
        /// [`LIST`].
        List(u64),
        /// [`POWER_OFF`].
        PowerOff(u64),
        /// [`REGISTER`].
        Register(Name),
        /// [`REQUEST_IO`]: a valid I/O fpage.
        RequestIo(IoFpage),
    }

    fn line(w: &[u64]) -> Result<u32, WireError> {
        let &l = w.first().ok_or(WireError::Short)?;
        u32::try_from(l).map_err(|_| WireError::Value(l))
    }

    impl TryFrom<(u64, &[u64])> for Request {
        type Error = WireError;

        fn try_from((label, w): (u64, &[u64])) -> Result<Self, WireError> {
            match label {
                super::PING => Ok(Request::Ping),
                ATTACH_IRQ => Ok(Request::AttachIrq(line(w)?)),
                DETACH_IRQ => Ok(Request::DetachIrq(line(w)?)),
                LOOKUP => {
                    let (b, _) = Bytes::decode(w)?;
                    Ok(Request::Lookup(Name::try_from(b.as_slice())?))
                }
                LIST => Ok(Request::List(*w.first().ok_or(WireError::Short)?)),
                POWER_OFF => Ok(Request::PowerOff(*w.first().ok_or(WireError::Short)?)),
                REGISTER => {
                    let (b, _) = Bytes::decode(w)?;
                    Ok(Request::Register(Name::try_from(b.as_slice())?))
                }
                REQUEST_IO => {
                    let &raw = w.first().ok_or(WireError::Short)?;
                    let io = IoFpage::try_from(Fpage(raw)).map_err(|_| WireError::Value(raw))?;
                    Ok(Request::RequestIo(io))
                }
                other => Err(WireError::UnknownLabel(other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        for s in [
            Status::Ok,
            Status::Timeout,
            Status::BadRequest,
            Status::Busy,
            Status::NoDevice,
            Status::Denied,
            Status::NotFound,
            Status::Kernel,
        ] {
            assert_eq!(Status::try_from(s as u64), Ok(s));
        }
        assert_eq!(Status::try_from(8), Err(BadStatus(8)));
    }

    #[test]
    fn bytes_round_trip_every_length() {
        let src: Vec<u8> = (0..MAX_BYTES as u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..=MAX_BYTES {
            let b = Bytes::copy_from(&src[..n]);
            let mut w = [0u64; 64];
            let used = b.encode(&mut w);
            assert_eq!(used, 1 + words_for(n));
            let (back, consumed) = Bytes::decode(&w[..used]).unwrap();
            assert_eq!(consumed, used);
            assert_eq!(back.as_slice(), &src[..n]);
        }
    }

    #[test]
    fn bytes_decode_rejects_bad_counts() {
        assert_eq!(Bytes::decode(&[]), Err(WireError::Short));
        assert_eq!(
            Bytes::decode(&[MAX_BYTES as u64 + 1]),
            Err(WireError::Length(MAX_BYTES as u64 + 1))
        );
        assert_eq!(Bytes::decode(&[9, 0]), Err(WireError::Length(9)));
        assert_eq!(Bytes::decode(&[u64::MAX]), Err(WireError::Length(u64::MAX)));
    }

    #[test]
    fn packing_is_little_endian() {
        let mut w = [0u64; 2];
        assert_eq!(pack(b"abcdefghi", &mut w), 2);
        assert_eq!(w[0], u64::from_le_bytes(*b"abcdefgh"));
        assert_eq!(w[1], b'i' as u64);
        let mut small = [0u64; 1];
        assert_eq!(pack(b"abcdefghi", &mut small), 1);
    }

    #[test]
    fn wait_words() {
        assert_eq!(Wait::decode(0), Wait::Poll);
        assert_eq!(Wait::decode(u64::MAX), Wait::Forever);
        assert_eq!(Wait::decode(5), Wait::For(5));
        for w in [Wait::Poll, Wait::Forever, Wait::For(1), Wait::For(1000)] {
            assert_eq!(Wait::decode(w.encode()), w);
        }
        assert_eq!(Wait::For(0).encode(), 1);
        assert_eq!(Wait::For(10).deadline(100), Some(110));
        assert_eq!(Wait::For(u64::MAX - 1).deadline(100), Some(u64::MAX));
        assert_eq!(Wait::Poll.deadline(7), Some(7));
        assert_eq!(Wait::Forever.deadline(7), None);
    }

    #[test]
    fn uart_requests() {
        use uart::{Control, Request};
        let mut w = [0u64; 8];
        let n = Bytes::copy_from(b"hi").encode(&mut w);
        assert_eq!(
            Request::try_from((uart::WRITE, &w[..n])),
            Ok(Request::Write(Bytes::copy_from(b"hi")))
        );
        assert_eq!(Request::try_from((uart::WRITE, &[0u64][..])), Err(WireError::Length(0)));
        assert_eq!(
            Request::try_from((uart::READ, &[4, 0][..])),
            Ok(Request::Read {
                max: 4,
                wait: Wait::Poll
            })
        );
        assert_eq!(Request::try_from((uart::READ, &[0, 0][..])), Err(WireError::Length(0)));
        assert_eq!(
            Request::try_from((uart::READ, &[MAX_BYTES as u64 + 1, 0][..])),
            Err(WireError::Length(MAX_BYTES as u64 + 1))
        );
        assert_eq!(Request::try_from((uart::READ, &[4][..])), Err(WireError::Short));
        for c in [Control::LoopbackOn, Control::LoopbackOff, Control::FlushRx] {
            assert_eq!(
                Request::try_from((uart::CONTROL, &[c.encode()][..])),
                Ok(Request::Control(c))
            );
        }
        assert_eq!(Request::try_from((uart::CONTROL, &[9][..])), Err(WireError::Value(9)));
        assert_eq!(Request::try_from((uart::STATS, &[][..])), Ok(Request::Stats));
        assert_eq!(Request::try_from((PING, &[][..])), Ok(Request::Ping));
        assert_eq!(
            Request::try_from((0x1234, &[][..])),
            Err(WireError::UnknownLabel(0x1234))
        );
    }

    #[test]
    fn uart_stats_round_trip() {
        let s = uart::Stats {
            interrupts: 1,
            rx_bytes: 2,
            tx_bytes: 3,
            line_errors: 4,
            rx_dropped: 5,
            polling: 1,
        };
        assert_eq!(uart::Stats::decode(&s.encode()), Ok(s));
        assert_eq!(uart::Stats::decode(&[1, 2]), Err(WireError::Short));
    }

    #[test]
    fn rtc_requests() {
        use rtc::Request;
        assert_eq!(Request::try_from((rtc::NOW, &[][..])), Ok(Request::Now));
        assert_eq!(
            Request::try_from((rtc::SLEEP, &[1500][..])),
            Ok(Request::Sleep { us: 1500 })
        );
        assert_eq!(Request::try_from((rtc::SLEEP, &[0][..])), Err(WireError::Value(0)));
        assert_eq!(
            Request::try_from((rtc::SLEEP, &[rtc::MAX_SLEEP_US + 1][..])),
            Err(WireError::Value(rtc::MAX_SLEEP_US + 1))
        );
        assert_eq!(Request::try_from((rtc::SLEEP, &[][..])), Err(WireError::Short));
        assert_eq!(Request::try_from((rtc::TICKS, &[][..])), Ok(Request::Ticks));
        assert_eq!(
            Request::try_from((uart::READ, &[][..])),
            Err(WireError::UnknownLabel(uart::READ))
        );
    }

    #[test]
    fn root_requests() {
        use root::{Name, Request};
        assert_eq!(
            Request::try_from((root::ATTACH_IRQ, &[4][..])),
            Ok(Request::AttachIrq(4))
        );
        assert_eq!(
            Request::try_from((root::ATTACH_IRQ, &[1 << 40][..])),
            Err(WireError::Value(1 << 40))
        );
        assert_eq!(Request::try_from((root::DETACH_IRQ, &[][..])), Err(WireError::Short));
        let name = Name::try_from(&b"uart"[..]).unwrap();
        let mut w = [0u64; 8];
        let n = name.bytes().encode(&mut w);
        assert_eq!(
            Request::try_from((root::LOOKUP, &w[..n])),
            Ok(Request::Lookup(name.clone()))
        );
        assert_eq!(name.as_str(), "uart");
        assert!(Name::try_from(&b""[..]).is_err());
        assert!(Name::try_from(&b"a b"[..]).is_err());
        assert!(Name::try_from(&[b'a'; root::MAX_NAME + 1][..]).is_err());
        let bad = Bytes::copy_from(b"x/y");
        let n = bad.encode(&mut w);
        assert!(Request::try_from((root::LOOKUP, &w[..n])).is_err());
        assert_eq!(Request::try_from((root::LIST, &[3][..])), Ok(Request::List(3)));
        assert_eq!(Request::try_from((root::POWER_OFF, &[0][..])), Ok(Request::PowerOff(0)));
        let n = name.bytes().encode(&mut w);
        assert_eq!(
            Request::try_from((root::REGISTER, &w[..n])),
            Ok(Request::Register(name.clone()))
        );
        let com1 = abi::fpage::IoFpage::new(0x3F8, 3, abi::fpage::Rights::RW);
        assert_eq!(
            Request::try_from((root::REQUEST_IO, &[com1.raw()][..])),
            Ok(Request::RequestIo(com1))
        );
        // Unaligned ports, and a memory fpage, are no I/O fpages.
        let bad = abi::fpage::IoFpage::new(0x3F9, 3, abi::fpage::Rights::RW).raw();
        assert_eq!(
            Request::try_from((root::REQUEST_IO, &[bad][..])),
            Err(WireError::Value(bad))
        );
        let mem = abi::fpage::Fpage::new(0x1000, 12, abi::fpage::Rights::RW).raw();
        assert_eq!(
            Request::try_from((root::REQUEST_IO, &[mem][..])),
            Err(WireError::Value(mem))
        );
        assert_eq!(Request::try_from((root::REQUEST_IO, &[][..])), Err(WireError::Short));
    }

    #[test]
    fn root_holdings_round_trip() {
        use root::{Holdings, Kind, MAX_PORT_RANGES};
        let com1 = abi::fpage::IoFpage::new(0x3F8, 3, abi::fpage::Rights::RW);
        let mut ports = [None; MAX_PORT_RANGES];
        ports[0] = Some(com1);
        let h = Holdings {
            kind: Kind::Program,
            lines: 1 << 4,
            ports,
        };
        let mut w = [0u64; 3 + MAX_PORT_RANGES];
        let n = h.encode(&mut w);
        assert_eq!(n, 4);
        assert_eq!(Holdings::decode(&w[..n]), Ok(h));
        assert_eq!(Holdings::decode(&w[..2]), Err(WireError::Short));
        assert_eq!(Holdings::decode(&[2, 0, 0]), Err(WireError::Value(2)));
        assert_eq!(Holdings::decode(&[0, 0, 9]), Err(WireError::Length(9)));
        assert_eq!(Holdings::decode(&[1, 0, 1, 0x1000]), Err(WireError::Value(0x1000)));
    }
}
