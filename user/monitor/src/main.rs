//! `monitor`: Tern's interactive console (until a Unix server replaces it).
//!
//! Started by the root task in its own address space, it finds the UART driver and the
//! RTC service by name through the root task, then reads lines through the UART driver
//! and answers commands (`help` lists them): the threads and spaces user level can know
//! of, an IPC ping-pong, kernel memory use, the clock, power off. Typing works as on a
//! terminal: characters echo, Backspace/DEL erase, Ctrl-U kills the line, Ctrl-C drops
//! it (and stops a running ping-pong).
//!
//! Without a UART driver it falls back to the kernel debugger console (polled input),
//! and without an RTC service the clock commands say so.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod console;

use core::fmt::Write;

use abi::fpage::Rights;
use abi::kip::ThreadInfo;
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::cmd::{Command, HELP};
use drvkit::line::{Event, LineEditor};
use drvkit::root;
use drvkit::tsc::rdtsc;
use drvkit::wire::Wait;
use rtc::Rtc;
use uart::Uart;

use crate::console::{Console, Out};

/// The prompt.
const PROMPT: &str = "tern> ";
/// How long the monitor looks for the driver and the service at start.
const FIND_US: u64 = 6_000_000;

/// What the monitor found at start.
struct Monitor {
    console: Console,
    rtc: Option<Rtc>,
    /// Bytes typed while a command ran (read while checking for Ctrl-C).
    typeahead: [u8; 64],
    typeahead_len: usize,
}

/// Finds a service by name (through the root task, or by asking likely threads),
/// retrying for [`FIND_US`]: it may not be serving yet.
fn find(name: &str) -> Option<ThreadId> {
    let deadline = l4::syscall::system_clock() + FIND_US;
    loop {
        if let Some(id) = root::find(name) {
            return Some(id);
        }
        if l4::syscall::system_clock() >= deadline {
            l4::println!("monitor: no '{}' service found", name);
            return None;
        }
        let _ = l4::ipc::sleep(Time::Period { us: 100_000 });
    }
}

/// A short text formatted on the stack (cut at 32 bytes), for padded columns.
struct Text {
    buf: [u8; 32],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text { buf: [0; 32], len: 0 }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn thread_info() -> ThreadInfo {
    ThreadInfo::decode(l4::kip::get().thread_info)
}

/// What Schedule says of a thread the monitor does not schedule: it exists (the call is
/// refused for lack of privilege), it does not, or its state (a privileged caller).
fn presence(id: ThreadId) -> &'static str {
    use abi::error::SysError;
    use abi::syscall::ThreadState as S;
    match l4::thread::state_of(id) {
        Err(e) if e == SysError::NoPrivilege => "exists",
        Err(e) if e == SysError::InvalidThread => "gone",
        Err(_) => "?",
        Ok(S::Running) => "running",
        Ok(S::Waiting | S::Receiving) => "receiving",
        Ok(S::PendingSend | S::Sending) => "sending",
        Ok(S::Inactive) => "inactive",
        Ok(_) => "other",
    }
}

impl Monitor {
    fn out(&self) -> Out<'_> {
        Out::new(&self.console)
    }

    /// Reads input, taking typed-ahead bytes first.
    fn read(&mut self, buf: &mut [u8], wait: Wait) -> usize {
        if self.typeahead_len > 0 {
            let n = self.typeahead_len.min(buf.len());
            buf[..n].copy_from_slice(&self.typeahead[..n]);
            self.typeahead.copy_within(n..self.typeahead_len, 0);
            self.typeahead_len -= n;
            return n;
        }
        self.console.read(buf, wait)
    }

    /// Has Ctrl-C been typed? (Other bytes are kept for the next line.)
    fn interrupted(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let n = self.console.read(&mut buf, Wait::Poll);
        let mut stop = false;
        for &b in &buf[..n] {
            if b == 0x03 {
                stop = true;
            } else if self.typeahead_len < self.typeahead.len() {
                self.typeahead[self.typeahead_len] = b;
                self.typeahead_len += 1;
            }
        }
        stop
    }

    fn help(&self) {
        let mut o = self.out();
        let _ = writeln!(o, "commands:");
        for (usage, what) in HELP {
            let _ = writeln!(o, "  {:<14} {}", usage, what);
        }
        let _ = writeln!(o, "keys: Backspace erases, Ctrl-U kills the line, Ctrl-C cancels");
    }

    fn threads(&self) {
        let mut o = self.out();
        let ti = thread_info();
        let ub = ti.user_base as u32;
        let _ = writeln!(
            o,
            "interrupt threads: numbers 0..{} (one per interrupt line)",
            ti.system_base
        );
        let _ = writeln!(o, "{:<12} {:<22} {:<9} space / holds", "thread", "name", "state");
        let row = |o: &mut Out, id: ThreadId, name: &str, space: &str| {
            let mut num = Text::new();
            let _ = write!(num, "{}.{}", id.number(), id.version());
            let _ = writeln!(o, "{:<12} {:<22} {:<9} {}", num.as_str(), name, presence(id), space);
        };
        // What a registry entry holds: "own", or "(name of ...)", then IRQs and ports.
        let holds = |h: Option<root::Holdings>| {
            let mut t = Text::new();
            let Some(h) = h else {
                let _ = write!(t, "own");
                return t;
            };
            let _ = write!(t, "{}", if h.kind == root::Kind::Program { "own" } else { "(alias)" });
            for n in 0..64 {
                if h.lines & (1 << n) != 0 {
                    let _ = write!(t, " irq{}", n);
                }
            }
            for p in h.ports.iter().flatten() {
                let _ = write!(t, " io{:#x}+{}", p.port(), p.count());
            }
            t
        };
        row(
            &mut o,
            ThreadId::global(ub, 1),
            "sigma0 (root pager)",
            "own (privileged)",
        );
        row(&mut o, ThreadId::global(ub + 1, 1), "sigma1", "own (privileged)");
        row(&mut o, root::root_task_id(), "root task", "own (privileged)");
        let mut listed = 0;
        for i in 0..64 {
            match root::list(i) {
                Ok(Some(p)) => {
                    let name = core::str::from_utf8(p.name.as_slice()).unwrap_or("?");
                    row(&mut o, p.id, name, holds(p.holdings).as_str());
                    listed += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = writeln!(o, "(the root task lists no programs: {})", e);
                    break;
                }
            }
        }
        let me = l4::utcb::my_global_id();
        let _ = writeln!(
            o,
            "this monitor is thread {}.{}; {} entries from the root task's registry",
            me.number(),
            me.version(),
            listed
        );
        let _ = writeln!(
            o,
            "(the kernel has no call to enumerate threads or spaces: this is what the KIP and the root task tell)"
        );
    }

    fn ping(&mut self, n: u32) {
        let (target, name): (Option<ThreadId>, &str) = match (self.rtc, self.console) {
            (Some(r), _) => (Some(r.server()), "rtc service"),
            (None, Console::Uart(u)) => (Some(u.server()), "uart driver"),
            (None, Console::Kdb) => (None, ""),
        };
        let Some(target) = target else {
            let _ = writeln!(self.out(), "ping: no server to ping");
            return;
        };
        let _ = writeln!(
            self.out(),
            "ping-pong with the {} ({} round trips, Ctrl-C stops)...",
            name,
            n
        );
        let t0 = l4::syscall::system_clock();
        let c0 = rdtsc();
        let mut done = 0u32;
        let mut failed = None;
        while done < n {
            let batch = (n - done).min(1000);
            for _ in 0..batch {
                if let Err(e) = drvkit::msg::call(
                    target,
                    drvkit::wire::PING,
                    &[],
                    Time::Period { us: 1_000_000 },
                    Time::Period { us: 1_000_000 },
                    &[],
                ) {
                    failed = Some(e);
                    break;
                }
                done += 1;
            }
            if failed.is_some() || self.interrupted() {
                break;
            }
        }
        let cycles = rdtsc() - c0;
        let us = l4::syscall::system_clock() - t0;
        let mut o = self.out();
        if let Some(e) = failed {
            let _ = writeln!(o, "ping failed after {} round trips: {}", done, e);
        }
        if done > 0 {
            let _ = writeln!(
                o,
                "{} round trips in {} us: {} cycles and {}.{:03} us per round trip",
                done,
                us,
                cycles / done as u64,
                us / done as u64,
                (us * 1000 / done as u64) % 1000
            );
        }
        if done < n && failed.is_none() {
            let _ = writeln!(o, "^C (stopped)");
        }
    }

    fn mem(&self) {
        let (free, total) = l4::kdb::kernel_memory();
        let mut o = self.out();
        if total == 0 {
            let _ = writeln!(o, "the kernel does not report its memory");
            return;
        }
        let used = total - free.min(total);
        let _ = writeln!(
            o,
            "kernel pool: {} KiB used of {} KiB ({} of {} frames, {}%), {} KiB free",
            used * 4,
            total * 4,
            used,
            total,
            used * 100 / total,
            free * 4
        );
    }

    fn uptime(&self) {
        let us = l4::syscall::system_clock();
        let s = us / 1_000_000;
        let mut o = self.out();
        let _ = writeln!(
            o,
            "up {}:{:02}:{:02}.{:03} (system clock)",
            s / 3600,
            s / 60 % 60,
            s % 60,
            us / 1000 % 1000
        );
        match self.rtc.map(|r| r.ticks()) {
            Some(Ok(t)) => {
                let _ = writeln!(
                    o,
                    "rtc: {} ticks at {} Hz ({} s), {} interrupts",
                    t.ticks,
                    t.hz,
                    t.ticks / t.hz.max(1),
                    t.interrupts
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "rtc: {}", e);
            }
            None => {
                let _ = writeln!(o, "rtc: no RTC service");
            }
        }
    }

    fn date(&self) {
        let mut o = self.out();
        match self.rtc.map(|r| r.now()) {
            Some(Ok(n)) => {
                let _ = writeln!(o, "{} (unix time {})", n.time, n.time.unix_seconds());
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "date: {}", e);
            }
            None => {
                let _ = writeln!(o, "date: no RTC service");
            }
        }
    }

    fn sleep(&self, ms: u32) {
        let Some(r) = self.rtc else {
            let _ = writeln!(self.out(), "sleep: no RTC service");
            return;
        };
        let t0 = l4::syscall::system_clock();
        let res = r.sleep(ms as u64 * 1000);
        let took = (l4::syscall::system_clock() - t0) / 1000;
        let mut o = self.out();
        match res {
            Ok(tick) => {
                let _ = writeln!(o, "alarm at tick {} after {} ms", tick, took);
            }
            Err(e) => {
                let _ = writeln!(o, "sleep: {}", e);
            }
        }
    }

    fn uart(&self) {
        let mut o = self.out();
        match self.console {
            Console::Uart(u) => match u.stats() {
                Ok(s) => {
                    let _ = writeln!(
                        o,
                        "uart: {} interrupts, {} bytes in, {} bytes out, {} line errors, {} dropped{}",
                        s.interrupts,
                        s.rx_bytes,
                        s.tx_bytes,
                        s.line_errors,
                        s.rx_dropped,
                        if s.polling != 0 { " (polling)" } else { "" }
                    );
                }
                Err(e) => {
                    let _ = writeln!(o, "uart: {}", e);
                }
            },
            Console::Kdb => {
                let _ = writeln!(o, "uart: no UART driver (this console is the kernel's)");
            }
        }
    }

    fn power_off(&self) {
        let _ = writeln!(self.out(), "powering off");
        let e = root::power_off(0);
        // A privileged monitor could power off itself (the kernel ignores this call
        // from other spaces).
        l4::kdb::power_off(0);
        // QEMU's isa-debug-exit device (port 0xf4; value 0x10 = success), which every
        // Tern QEMU configuration has: the last resort of a monitor without privilege.
        if let Ok(p) = drvkit::port::Ports::new(0xF4, 2) {
            if drvkit::sigma0::request_io(p.fpage(Rights::RW), Time::Period { us: 500_000 }).is_ok() {
                p.outb(0, 0x10);
            }
        }
        let _ = writeln!(self.out(), "power off failed ({})", e);
    }

    fn run(&mut self, cmd: Command) {
        match cmd {
            Command::Empty => {}
            Command::Help => self.help(),
            Command::Threads => self.threads(),
            Command::Ping(n) => self.ping(n),
            Command::Mem => self.mem(),
            Command::Date => self.date(),
            Command::Uptime => self.uptime(),
            Command::Sleep(ms) => self.sleep(ms),
            Command::Uart => self.uart(),
            Command::Echo(text) => {
                let _ = writeln!(self.out(), "{}", text);
            }
            Command::PowerOff => self.power_off(),
        }
    }
}

fn main() {
    l4::println!("monitor: looking for the UART driver and the RTC service");
    let console = match find("uart") {
        Some(id) => Console::Uart(Uart::new(id)),
        None => Console::Kdb,
    };
    let rtc = find("rtc").map(Rtc::new);
    let mut m = Monitor {
        console,
        rtc,
        typeahead: [0; 64],
        typeahead_len: 0,
    };
    {
        let mut o = m.out();
        let _ = writeln!(
            o,
            "\nTern monitor on the {}. Type 'help' for commands.",
            m.console.describe()
        );
        let _ = write!(o, "{}", PROMPT);
    }
    let mut ed: LineEditor<120> = LineEditor::new();
    let mut buf = [0u8; 64];
    loop {
        let n = m.read(&mut buf, Wait::Forever);
        let console = m.console;
        for &b in &buf[..n] {
            let ev = {
                let mut echo = Out::new(&console);
                let ev = ed.feed(b, |s| echo.raw(s));
                echo.flush();
                ev
            };
            match ev {
                Event::None => continue,
                Event::Cancel => {}
                Event::Line => match Command::parse(ed.line()) {
                    Ok(cmd) => m.run(cmd),
                    Err(e) => {
                        let _ = writeln!(m.out(), "{}", e);
                    }
                },
            }
            let _ = write!(m.out(), "{}", PROMPT);
        }
    }
}

l4::main!(main);
