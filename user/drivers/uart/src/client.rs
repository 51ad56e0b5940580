//! The client side of the UART protocol: write bytes and text, read with a wait.

use core::fmt;

use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::msg::{self, CallError};
use drvkit::wire::{self, uart, Bytes, Status, Wait, MAX_BYTES};

/// How long a request may wait to be received by the driver.
const SEND_TIMEOUT: Time = Time::Period { us: 2_000_000 };
/// How long a write may wait for room in the driver's transmit buffer.
const WRITE_TIMEOUT: Time = Time::Period { us: 10_000_000 };
/// Extra time a read gives the driver beyond the wait it asks for.
const READ_SLACK_US: u64 = 1_000_000;

/// A UART driver, by its thread id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Uart {
    server: ThreadId,
}

impl Uart {
    /// The driver served by thread `server`.
    pub const fn new(server: ThreadId) -> Self {
        Self { server }
    }

    /// The driver's thread.
    pub const fn server(self) -> ThreadId {
        self.server
    }

    /// Sends up to [`MAX_BYTES`] bytes; returns once the driver has queued all of them.
    fn write_chunk(self, chunk: &[u8]) -> Result<(), CallError> {
        let mut w = [0u64; 1 + wire::words_for(MAX_BYTES)];
        let n = Bytes::copy_from(chunk).encode(&mut w);
        for _ in 0..1000 {
            match msg::call(self.server, uart::WRITE, &w[..n], SEND_TIMEOUT, WRITE_TIMEOUT, &[]) {
                Err(CallError::Status(Status::Busy, 0)) => {
                    let _ = l4::ipc::sleep(Time::Period { us: 1000 });
                }
                Err(CallError::Status(Status::Busy, done)) => {
                    return self.write_chunk(&chunk[(done as usize).min(chunk.len())..])
                }
                r => return r.map(|_| ()),
            }
        }
        Err(CallError::Status(Status::Busy, 0))
    }

    /// Writes `bytes` as they are.
    pub fn write(self, bytes: &[u8]) -> Result<(), CallError> {
        for chunk in bytes.chunks(MAX_BYTES) {
            self.write_chunk(chunk)?;
        }
        Ok(())
    }

    /// Writes text, turning each `\n` into `\r\n` for terminals.
    pub fn write_str(self, s: &str) -> Result<(), CallError> {
        let mut buf = [0u8; MAX_BYTES];
        let mut n = 0;
        for &b in s.as_bytes() {
            if n + 2 > buf.len() {
                self.write(&buf[..n])?;
                n = 0;
            }
            if b == b'\n' {
                buf[n] = b'\r';
                n += 1;
            }
            buf[n] = b;
            n += 1;
        }
        if n > 0 {
            self.write(&buf[..n])?;
        }
        Ok(())
    }

    /// Reads until `sent.len()` bytes came back, for at most `within_us` (each read waits
    /// at most 200 ms), and compares them with `sent`: the check of a loopback test.
    pub fn read_back(self, sent: &[u8], within_us: u64) -> Result<(), ReadBack> {
        let mut got = 0;
        let mut buf = [0u8; 256];
        let end = l4::syscall::system_clock().saturating_add(within_us);
        while got < sent.len() && l4::syscall::system_clock() < end {
            let n = self.read(&mut buf, Wait::For(200_000)).map_err(ReadBack::Call)?;
            for (i, &b) in buf[..n].iter().enumerate() {
                let at = got + i;
                let Some(&want) = sent.get(at) else { return Err(ReadBack::Extra(got + n - sent.len())) };
                if b != want {
                    return Err(ReadBack::Differs { at, got: b, sent: want });
                }
            }
            got += n;
        }
        if got == sent.len() {
            Ok(())
        } else {
            Err(ReadBack::Short { got, sent: sent.len() })
        }
    }

    /// Reads up to `buf.len()` bytes (at most [`MAX_BYTES`]), waiting as `wait` says for
    /// the first; returns how many came (0 if the wait ended first).
    pub fn read(self, buf: &mut [u8], wait: Wait) -> Result<usize, CallError> {
        let max = buf.len().min(MAX_BYTES);
        if max == 0 {
            return Ok(0);
        }
        let rcv = match wait {
            Wait::Forever => Time::Never,
            Wait::Poll => Time::Period { us: READ_SLACK_US },
            Wait::For(us) => Time::Period {
                us: us.saturating_add(READ_SLACK_US),
            },
        };
        let (status, r) = msg::call(
            self.server,
            uart::READ,
            &[max as u64, wait.encode()],
            SEND_TIMEOUT,
            rcv,
            &[Status::Timeout],
        )?;
        if status == Status::Timeout {
            return Ok(0);
        }
        let (bytes, _) = Bytes::decode(r.words()).map_err(|_| CallError::BadReply(0))?;
        let n = bytes.len().min(max);
        buf[..n].copy_from_slice(&bytes.as_slice()[..n]);
        Ok(n)
    }

    /// Changes a setting.
    pub fn control(self, c: uart::Control) -> Result<(), CallError> {
        msg::call(
            self.server,
            uart::CONTROL,
            &[c.encode()],
            SEND_TIMEOUT,
            SEND_TIMEOUT,
            &[],
        )
        .map(|_| ())
    }

    /// The driver's counters.
    pub fn stats(self) -> Result<uart::Stats, CallError> {
        let (_, r) = msg::call(self.server, uart::STATS, &[], SEND_TIMEOUT, SEND_TIMEOUT, &[])?;
        uart::Stats::decode(r.words()).map_err(|_| CallError::BadReply(0))
    }

    /// One round trip to the driver.
    pub fn ping(self) -> Result<(), CallError> {
        msg::call(self.server, wire::PING, &[], SEND_TIMEOUT, SEND_TIMEOUT, &[]).map(|_| ())
    }
}

/// `fmt::Write` over a UART (text with `\n` → `\r\n`); errors are kept, not lost.
pub struct Writer {
    /// The driver.
    pub uart: Uart,
    /// The first error, if a write failed.
    pub error: Option<CallError>,
}

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.uart.write_str(s) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.error.get_or_insert(e);
                Err(fmt::Error)
            }
        }
    }
}

/// Why [`Uart::read_back`] failed.
#[derive(Debug)]
pub enum ReadBack {
    /// A read failed.
    Call(CallError),
    /// More bytes came than were sent (this many).
    Extra(usize),
    /// Byte `at` differs.
    Differs { at: usize, got: u8, sent: u8 },
    /// Only `got` of `sent` bytes came back in time.
    Short { got: usize, sent: usize },
}

impl fmt::Display for ReadBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadBack::Call(e) => write!(f, "read: {e}"),
            ReadBack::Extra(n) => write!(f, "{n} bytes more than were sent"),
            ReadBack::Differs { at, got, sent } => write!(f, "byte {at} is {got:#x}, sent {sent:#x}"),
            ReadBack::Short { got, sent } => write!(f, "{got} of {sent} bytes came back"),
        }
    }
}
