//! The monitor's terminal: the UART driver when there is one, else the kernel debugger's
//! console (polled), so that the monitor is usable even without the driver.

use core::fmt;

use abi::time::Time;
use drvkit::wire::Wait;
use uart::Uart;

/// Where the monitor reads and writes.
#[derive(Clone, Copy)]
pub enum Console {
    /// Through the UART driver (interrupt driven).
    Uart(Uart),
    /// Through the kernel debugger interface: output printed by the kernel, input polled.
    Kdb,
}

/// Polling interval of the KDB console's input.
const KDB_POLL_US: u64 = 10_000;

impl Console {
    /// Writes bytes as they are.
    pub fn write(&self, b: &[u8]) {
        match self {
            Console::Uart(u) => {
                if u.write(b).is_err() {
                    // The driver is gone: say it where it can still be seen.
                    l4::kdb::print("monitor: UART write failed\n");
                }
            }
            Console::Kdb => {
                for &c in b {
                    l4::kdb::print_char(c);
                }
            }
        }
    }

    /// Reads up to `buf.len()` bytes, waiting as `wait` says; 0 if none came.
    pub fn read(&self, buf: &mut [u8], wait: Wait) -> usize {
        match self {
            Console::Uart(u) => u.read(buf, wait).unwrap_or_else(|_| {
                let _ = l4::ipc::sleep(Time::Period { us: 100_000 });
                0
            }),
            Console::Kdb => {
                let deadline = wait.deadline(l4::syscall::system_clock());
                loop {
                    let mut n = 0;
                    while n < buf.len() {
                        match l4::kdb::read_char() {
                            Some(c) => {
                                buf[n] = c;
                                n += 1;
                            }
                            None => break,
                        }
                    }
                    if n > 0 || deadline.is_some_and(|d| l4::syscall::system_clock() >= d) {
                        return n;
                    }
                    let _ = l4::ipc::sleep(Time::Period { us: KDB_POLL_US });
                }
            }
        }
    }

    /// What the console is, for the banner.
    pub fn describe(&self) -> &'static str {
        match self {
            Console::Uart(_) => "UART driver",
            Console::Kdb => "kernel debugger console (no UART driver found)",
        }
    }
}

/// `fmt::Write` over the console, buffered: text goes out in one driver request per
/// [`Out::flush`] or full buffer, with `\n` turned into `\r\n`.
pub struct Out<'a> {
    console: &'a Console,
    buf: [u8; 480],
    len: usize,
}

impl<'a> Out<'a> {
    /// An empty buffer over `console`.
    pub fn new(console: &'a Console) -> Self {
        Self {
            console,
            buf: [0; 480],
            len: 0,
        }
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            self.console.write(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Buffers bytes as they are (no `\n` translation).
    pub fn raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.put(b);
        }
    }

    fn put(&mut self, b: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        self.buf[self.len] = b;
        self.len += 1;
    }
}

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
