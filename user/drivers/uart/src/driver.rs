//! The 16550 driver: one thread that owns the UART's ports and interrupt line and serves
//! clients over IPC (protocol [`drvkit::wire::uart`]).
//!
//! ```text
//!            clients (call)                      interrupt thread (4, 1)
//!                 |                                       |
//!                 v                                       v
//!   +----------------------------------------------------------------+
//!   | driver thread: open receive, one message at a time              |
//!   |   WRITE -> tx ring -> THR (16 bytes per THRE interrupt)        |
//!   |   READ  <- rx ring <- RBR (drained on every RX interrupt)      |
//!   |   interrupt: drain IIR causes, then acknowledge in the next    |
//!   |              receive (Ipc to = interrupt thread, from = any)   |
//!   +----------------------------------------------------------------+
//! ```
//!
//! Blocking: a READ that finds no byte waits (as a pending reader, until its deadline);
//! a WRITE that does not fit waits (as a pending writer) until the transmitter has
//! drained enough. Replies are sent with a zero timeout — a client that gave up is
//! dropped, and the bytes it would have got stay for the next reader.
//!
//! Without an interrupt line (attach refused) the driver polls the UART every
//! [`POLL_US`] microseconds instead; the protocol is the same.
//!
//! # Invariants
//! * The UART's interrupt is acknowledged (`ack_due` cleared) in the IPC right after the
//!   one that delivered it, after every interrupt cause the IIR showed was served.
//! * IER.TX is on exactly when the transmit ring holds bytes (`tx_irq`).
//! * In loopback mode at most one transmit FIFO load is in flight, and only after the
//!   receive FIFO was drained, so looped-back bytes cannot overrun the receiver.

use abi::error::{IpcErrorCode, Phase};
use abi::fpage::Rights;
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::irq::{self, Line};
use drvkit::msg::reply;
use drvkit::ns16550::{self as hw, fcr, ier, lcr, lsr, mcr, reg, Cause, LineErrors};
use drvkit::port::Ports;
use drvkit::ring::Ring;
use drvkit::wire::{self, uart, Bytes, Status, Wait, MAX_BYTES};
use l4::ipc::{self, IpcFailure, Msg, Received};

/// The name the driver answers [`wire::IDENTIFY`] with.
pub const NAME: &str = "uart";
/// Polling period without an interrupt line.
pub const POLL_US: u64 = 2_000;
/// Receive buffer size.
const RX_SIZE: usize = 4096;
/// Transmit buffer size.
const TX_SIZE: usize = 8192;
/// Readers that may wait at once.
const READERS: usize = 8;
/// Writers that may wait at once.
const WRITERS: usize = 4;
/// Bytes written per THRE: one less than the FIFO, leaving room for a byte the kernel's
/// polled console may have put there.
const TX_BURST: usize = hw::TX_FIFO - 1;

/// How the driver gets its interrupt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Irq {
    /// Attach the line itself (directly, or through the root task).
    Attach(Line),
    /// The line is already attached to the driver thread by someone else.
    Given(Line),
    /// Poll; use no interrupt.
    Poll,
}

/// What the driver is told at start.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The UART's ports.
    pub ports: Ports,
    /// Its interrupt.
    pub irq: Irq,
    /// Ask for the ports first — the root task, else σ0 (`drvkit::root::get_ports`); if
    /// not, they come from the pager on the first access.
    pub request_ports: bool,
    /// Print what the driver does at start (on the kernel console).
    pub verbose: bool,
}

impl Config {
    /// COM1 at 0x3F8 with IRQ 4, ports asked for.
    pub fn com1() -> Self {
        Config {
            ports: COM1_PORTS,
            irq: match Line::try_from(hw::COM1_IRQ as u32) {
                Ok(l) => Irq::Attach(l),
                Err(_) => Irq::Poll,
            },
            request_ports: true,
            verbose: true,
        }
    }
}

/// COM1's eight ports (checked when the program is compiled).
pub const COM1_PORTS: Ports = match Ports::new(hw::COM1, hw::PORTS_LOG2) {
    Ok(p) => p,
    Err(_) => panic!("COM1's ports are an I/O fpage"),
};

#[derive(Clone, Copy)]
struct Reader {
    client: ThreadId,
    max: usize,
    /// Absolute deadline (µs), `None`: forever.
    deadline: Option<u64>,
}

struct Writer {
    client: ThreadId,
    data: Bytes,
    /// Bytes of `data` already queued.
    done: usize,
}

/// The driver's state.
pub struct Driver {
    ports: Ports,
    line: Option<Line>,
    rx: Ring<RX_SIZE>,
    tx: Ring<TX_SIZE>,
    readers: [Option<Reader>; READERS],
    writers: [Option<Writer>; WRITERS],
    mcr: u8,
    ier: u8,
    tx_irq: bool,
    loopback: bool,
    ack_due: bool,
    errors: LineErrors,
    stats: uart::Stats,
}

fn now() -> u64 {
    l4::syscall::system_clock()
}

impl Driver {
    /// Sets the UART up as `cfg` says (ports, line, 115200 8N1, FIFOs) and returns the
    /// driver, ready to [`Driver::serve`].
    pub fn start(cfg: Config) -> Self {
        let me = l4::utcb::my_global_id();
        if cfg.request_ports {
            match drvkit::root::get_ports(cfg.ports.fpage(Rights::RW), Time::Period { us: 1_000_000 }) {
                Ok(from) if cfg.verbose => l4::println!("uart: ports {:#x}.. from {:?}", cfg.ports.base(), from),
                Ok(_) => {}
                Err((root, s0)) => {
                    l4::println!("uart: no ports ({}; σ0: {:?}); relying on the pager", root, s0)
                }
            }
        }
        let mut d = Driver {
            ports: cfg.ports,
            line: None,
            rx: Ring::new(),
            tx: Ring::new(),
            readers: [None; READERS],
            writers: [const { None }; WRITERS],
            mcr: mcr::DTR | mcr::RTS | mcr::OUT2,
            ier: 0,
            tx_irq: false,
            loopback: false,
            ack_due: false,
            errors: LineErrors::default(),
            stats: uart::Stats::default(),
        };
        d.init_hw();
        d.line = match cfg.irq {
            Irq::Given(l) => Some(l),
            Irq::Poll => None,
            Irq::Attach(l) => match irq::attach_here(l) {
                Ok(how) => {
                    if cfg.verbose {
                        l4::println!("uart: IRQ {} attached ({:?})", l.number(), how);
                    }
                    Some(l)
                }
                Err(e) => {
                    l4::println!(
                        "uart: cannot attach IRQ {} ({}); polling every {} µs",
                        l.number(),
                        e,
                        POLL_US
                    );
                    None
                }
            },
        };
        d.stats.polling = d.line.is_none() as u64;
        if cfg.verbose {
            l4::println!(
                "uart: 16550 at {:#x} served by thread {:#x}",
                cfg.ports.base(),
                me.raw()
            );
        }
        d
    }

    fn init_hw(&mut self) {
        let p = self.ports;
        let div = hw::divisor(115_200).unwrap_or(1);
        p.outb(reg::IER, 0);
        p.outb(reg::LCR, lcr::DLAB);
        p.outb(reg::DLL, div as u8);
        p.outb(reg::DLM, (div >> 8) as u8);
        p.outb(reg::LCR, lcr::BITS_8N1);
        p.outb(
            reg::IIR_FCR,
            fcr::ENABLE | fcr::CLEAR_RX | fcr::CLEAR_TX | fcr::TRIGGER_1,
        );
        p.outb(reg::MCR, self.mcr);
        // Drop whatever waited in the receiver and clear pending causes.
        for _ in 0..32 {
            if p.inb(reg::LSR) & lsr::DR == 0 {
                break;
            }
            p.inb(reg::DATA);
        }
        p.inb(reg::IIR_FCR);
        p.inb(reg::MSR);
        self.ier = ier::RX | ier::LINE;
        p.outb(reg::IER, self.ier);
    }

    fn set_tx_irq(&mut self, on: bool) {
        if on != self.tx_irq {
            self.tx_irq = on;
            self.ier = if on { self.ier | ier::TX } else { self.ier & !ier::TX };
            self.ports.outb(reg::IER, self.ier);
        }
    }

    /// Moves received bytes from the UART into the receive ring.
    fn drain_rx(&mut self) {
        for _ in 0..256 {
            let s = self.ports.inb(reg::LSR);
            self.errors.note(s);
            if s & lsr::DR == 0 {
                break;
            }
            let b = self.ports.inb(reg::DATA);
            self.stats.rx_bytes += 1;
            if !self.rx.push(b) {
                self.stats.rx_dropped += 1;
            }
        }
    }

    /// Feeds the transmitter from the transmit ring if it is empty.
    fn fill_tx(&mut self) {
        if self.tx.is_empty() {
            self.set_tx_irq(false);
            return;
        }
        let s = self.ports.inb(reg::LSR);
        self.errors.note(s);
        if s & lsr::THRE != 0 && !(self.loopback && s & lsr::DR != 0) {
            for _ in 0..TX_BURST {
                let Some(b) = self.tx.pop() else { break };
                self.ports.outb(reg::DATA, b);
                self.stats.tx_bytes += 1;
            }
        }
        let more = !self.tx.is_empty();
        self.set_tx_irq(more);
    }

    /// Serves every interrupt cause the UART shows, then drains and feeds once more
    /// (which is all there is to do when polling).
    fn service(&mut self) {
        for _ in 0..64 {
            match Cause::try_from(self.ports.inb(reg::IIR_FCR)) {
                Ok(Cause::None) => break,
                Ok(Cause::LineStatus) => {
                    let s = self.ports.inb(reg::LSR);
                    self.errors.note(s);
                }
                Ok(Cause::RxData | Cause::RxTimeout) => self.drain_rx(),
                Ok(Cause::TxEmpty) => self.fill_tx(),
                Ok(Cause::Modem) => {
                    self.ports.inb(reg::MSR);
                }
                Err(_) => {
                    self.drain_rx();
                    self.fill_tx();
                }
            }
        }
        self.drain_rx();
        self.fill_tx();
        self.stats.line_errors = self.errors.total();
    }

    /// Hands received bytes to waiting readers, oldest reader first.
    fn serve_readers(&mut self) {
        for i in 0..READERS {
            if self.rx.is_empty() {
                return;
            }
            let Some(r) = self.readers[i] else { continue };
            self.readers[i] = None;
            let mut buf = [0u8; MAX_BYTES];
            let n = self.rx.peek(&mut buf[..r.max]);
            if send_bytes(r.client, Status::Ok, &buf[..n]).is_ok() {
                self.rx.consume(n);
            }
        }
    }

    /// Answers readers whose wait is over.
    fn expire_readers(&mut self, now: u64) {
        for slot in self.readers.iter_mut() {
            if let Some(r) = *slot {
                if r.deadline.is_some_and(|d| d <= now) {
                    *slot = None;
                    let _ = send_bytes(r.client, Status::Timeout, &[]);
                }
            }
        }
    }

    /// Queues the rest of each waiting writer's bytes; answers those now done.
    fn serve_writers(&mut self) {
        for slot in self.writers.iter_mut() {
            let Some(w) = slot else { continue };
            w.done += self.tx.push_slice(&w.data.as_slice()[w.done..]);
            if w.done < w.data.len() {
                break;
            }
            let _ = reply(w.client, Status::Ok, &[w.data.len() as u64]);
            *slot = None;
        }
        // Keep the waiting writers in arrival order at the front.
        let mut k = 0;
        for i in 0..WRITERS {
            if self.writers[i].is_some() {
                self.writers.swap(k, i);
                k += 1;
            }
        }
    }

    /// The receive timeout: the nearest reader deadline, or the polling period.
    fn timeout(&self, now: u64) -> Time {
        let mut t = self.readers.iter().flatten().filter_map(|r| r.deadline).min();
        if self.line.is_none() {
            t = Some(t.map_or(now + POLL_US, |d| d.min(now + POLL_US)));
        }
        match t {
            None => Time::Never,
            Some(d) if d <= now => Time::Zero,
            Some(d) => Time::Period { us: d - now },
        }
    }

    fn handle(&mut self, from: ThreadId, m: &Msg) {
        if m.label() == wire::IDENTIFY {
            let _ = drvkit::msg::reply_name(from, NAME);
            return;
        }
        let req = match uart::Request::try_from((m.label(), m.untyped())) {
            Ok(r) if m.tag().typed() == 0 => r,
            _ => {
                let _ = reply(from, Status::BadRequest, &[]);
                return;
            }
        };
        match req {
            uart::Request::Ping => {
                let _ = reply(from, Status::Ok, &[]);
            }
            uart::Request::Stats => {
                self.stats.line_errors = self.errors.total();
                let _ = reply(from, Status::Ok, &self.stats.encode());
            }
            uart::Request::Control(c) => {
                match c {
                    uart::Control::LoopbackOn | uart::Control::LoopbackOff => {
                        self.loopback = c == uart::Control::LoopbackOn;
                        self.mcr = if self.loopback {
                            self.mcr | mcr::LOOP
                        } else {
                            self.mcr & !mcr::LOOP
                        };
                        self.ports.outb(reg::MCR, self.mcr);
                    }
                    uart::Control::FlushRx => {
                        self.drain_rx();
                        self.rx.clear();
                    }
                }
                let _ = reply(from, Status::Ok, &[]);
            }
            uart::Request::Write(data) => {
                let n = if self.writers[0].is_none() {
                    self.tx.push_slice(data.as_slice())
                } else {
                    0
                };
                if n == data.len() {
                    let _ = reply(from, Status::Ok, &[n as u64]);
                } else if let Some(slot) = self.writers.iter_mut().find(|w| w.is_none()) {
                    *slot = Some(Writer {
                        client: from,
                        data,
                        done: n,
                    });
                } else {
                    let _ = reply(from, Status::Busy, &[n as u64]);
                }
                self.fill_tx();
            }
            uart::Request::Read { max, wait } => {
                // A client asking again replaces its older wait (it gave up on it).
                for slot in self.readers.iter_mut() {
                    if slot.is_some_and(|r| r.client == from) {
                        *slot = None;
                    }
                }
                let waiting = self.readers.iter().any(Option::is_some);
                if !self.rx.is_empty() && !waiting {
                    let mut buf = [0u8; MAX_BYTES];
                    let n = self.rx.peek(&mut buf[..max]);
                    if send_bytes(from, Status::Ok, &buf[..n]).is_ok() {
                        self.rx.consume(n);
                    }
                } else if wait == Wait::Poll {
                    let _ = send_bytes(from, Status::Timeout, &[]);
                } else if let Some(slot) = self.readers.iter_mut().find(|r| r.is_none()) {
                    *slot = Some(Reader {
                        client: from,
                        max,
                        deadline: wait.deadline(now()),
                    });
                } else {
                    let _ = reply(from, Status::Busy, &[]);
                }
            }
        }
    }

    /// One receive: acknowledges a served interrupt in the same IPC if one is due.
    fn receive(&mut self, timeout: Time) -> Result<Received, IpcFailure> {
        let to = match (self.ack_due, self.line) {
            (true, Some(l)) => l.id(),
            _ => ThreadId::NIL,
        };
        self.ack_due = false;
        let (_, from) = ipc::ipc(to, ThreadId::ANY, ipc::timeouts(Time::Zero, timeout), MsgTag::NIL)?;
        Ok(Received {
            from,
            msg: Msg::from_utcb(),
        })
    }

    /// Serves interrupts and clients for good.
    pub fn serve(&mut self) -> ! {
        loop {
            let t = self.timeout(now());
            match self.receive(t) {
                Ok(r) => {
                    if self.line.is_some_and(|l| l.is_interrupt(&r)) {
                        self.stats.interrupts += 1;
                        self.service();
                        self.ack_due = true;
                    } else {
                        self.handle(r.from, &r.msg);
                    }
                }
                Err(e) if e.is(IpcErrorCode::Timeout, Phase::Receive) => {
                    if self.line.is_none() {
                        self.service();
                    }
                }
                Err(_) => {}
            }
            self.serve_readers();
            self.serve_writers();
            self.expire_readers(now());
        }
    }
}

/// Replies `status`, the byte count and the bytes.
fn send_bytes(to: ThreadId, status: Status, bytes: &[u8]) -> Result<(), IpcFailure> {
    let mut w = [0u64; 1 + wire::words_for(MAX_BYTES)];
    let n = Bytes::copy_from(bytes).encode(&mut w);
    reply(to, status, &w[..n])
}
