//! The time/alarm service: one thread that owns the CMOS clock's ports and its interrupt
//! line (ISA 8), counts the clock's periodic interrupts as ticks, reads the date and
//! time, and wakes sleeping clients (protocol [`drvkit::wire::rtc`]).
//!
//! Each interrupt message is served by reading status register C — which lowers the
//! clock's interrupt line; without that read the clock raises no further interrupt — and
//! acknowledged in the next receive. A sleep of `us` microseconds becomes a wake-up tick
//! (rounded up), and the reply goes out from the interrupt that reaches it.
//!
//! Without an interrupt line (attach refused) the service derives its ticks from the
//! system clock instead, and checks its sleepers once per tick period.
//!
//! # Invariants
//! * With a line, `ticks` counts the periodic flags (PF) read from register C since
//!   start; without, the tick periods elapsed since start.
//! * Every sleeper's wake-up tick is after the tick count at which it was queued.

use abi::error::{IpcErrorCode, Phase};
use abi::fpage::Rights;
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::cmos::{self, a, b, reg, DateTime, Rate, RawTime, StatusC};
use drvkit::irq::{self, Line};
use drvkit::msg::reply;
use drvkit::port::Ports;
use drvkit::wire::{rtc, Status};
use l4::ipc::{self, IpcFailure, Msg, Received};

/// The name the service answers [`drvkit::wire::IDENTIFY`] with.
pub const NAME: &str = "rtc";
/// Clients that may sleep at once.
const SLEEPERS: usize = 16;

/// The clock's two ports (checked when the program is compiled).
pub const CMOS_PORTS: Ports = match Ports::new(cmos::INDEX, cmos::PORTS_LOG2) {
    Ok(p) => p,
    Err(_) => panic!("the CMOS ports are an I/O fpage"),
};

/// How the service gets its interrupt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Irq {
    /// Attach the line itself (directly, or through the root task).
    Attach(Line),
    /// Already attached to the service thread by someone else.
    Given(Line),
    /// Poll register C.
    Poll,
}

/// What the service is told at start.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Its interrupt.
    pub irq: Irq,
    /// Periodic interrupt rate.
    pub rate: Rate,
    /// Ask for the ports first (the root task, else σ0: `drvkit::root::get_ports`).
    pub request_ports: bool,
    /// Print what the service does at start.
    pub verbose: bool,
}

impl Config {
    /// IRQ 8 at 64 Hz, ports asked for.
    pub fn standard() -> Self {
        Config {
            irq: match Line::try_from(cmos::IRQ as u32) {
                Ok(l) => Irq::Attach(l),
                Err(_) => Irq::Poll,
            },
            rate: RATE_64,
            request_ports: true,
            verbose: true,
        }
    }
}

/// 64 Hz (checked when the program is compiled).
const RATE_64: Rate = match Rate::from_hz(64) {
    Ok(r) => r,
    Err(_) => panic!("64 Hz is a clock rate"),
};

#[derive(Clone, Copy)]
struct Sleeper {
    client: ThreadId,
    wake_tick: u64,
}

/// The service's state.
pub struct Service {
    ports: Ports,
    line: Option<Line>,
    rate: Rate,
    ticks: u64,
    interrupts: u64,
    sleepers: [Option<Sleeper>; SLEEPERS],
    ack_due: bool,
}

/// Reads CMOS register `r`.
pub fn read_reg(p: Ports, r: u8) -> u8 {
    p.outb(0, r);
    p.inb(1)
}

/// Writes CMOS register `r`.
pub fn write_reg(p: Ports, r: u8, v: u8) {
    p.outb(0, r);
    p.outb(1, v);
}

/// Sets the periodic rate and turns the periodic interrupt on (`on`) or off, keeping the
/// clock's other settings; reads C to clear what was pending.
pub fn set_periodic(p: Ports, rate: Rate, on: bool) {
    let old_a = read_reg(p, reg::A);
    write_reg(p, reg::A, (old_a & !a::RATE_MASK) | rate.select());
    let old_b = read_reg(p, reg::B);
    let new_b = if on { old_b | b::PIE } else { old_b & !b::PIE };
    write_reg(p, reg::B, new_b);
    read_reg(p, reg::C);
}

/// Reads the date and time: waits (bounded) for no update in progress, then reads the
/// registers twice until two reads agree.
pub fn read_time(p: Ports) -> Result<DateTime, cmos::BadTime> {
    let mut last = RawTime::default();
    for attempt in 0..8 {
        for _ in 0..10_000 {
            if read_reg(p, reg::A) & a::UIP == 0 {
                break;
            }
        }
        let r = RawTime {
            seconds: read_reg(p, reg::SECONDS),
            minutes: read_reg(p, reg::MINUTES),
            hours: read_reg(p, reg::HOURS),
            day: read_reg(p, reg::DAY),
            month: read_reg(p, reg::MONTH),
            year: read_reg(p, reg::YEAR),
            century: read_reg(p, reg::CENTURY),
            status_b: read_reg(p, reg::B),
        };
        if attempt > 0 && r == last {
            break;
        }
        last = r;
    }
    DateTime::try_from(last)
}

fn now() -> u64 {
    l4::syscall::system_clock()
}

impl Service {
    /// Sets the clock up as `cfg` says and returns the service, ready to
    /// [`Service::serve`].
    pub fn start(cfg: Config) -> Self {
        let p = CMOS_PORTS;
        if cfg.request_ports {
            match drvkit::root::get_ports(p.fpage(Rights::RW), Time::Period { us: 1_000_000 }) {
                Ok(from) if cfg.verbose => l4::println!("rtc: ports {:#x}.. from {:?}", p.base(), from),
                Ok(_) => {}
                Err((root, s0)) => {
                    l4::println!("rtc: no ports ({}; σ0: {:?}); relying on the pager", root, s0)
                }
            }
        }
        let line = match cfg.irq {
            Irq::Given(l) => Some(l),
            Irq::Poll => None,
            Irq::Attach(l) => match irq::attach_here(l) {
                Ok(how) => {
                    if cfg.verbose {
                        l4::println!("rtc: IRQ {} attached ({:?})", l.number(), how);
                    }
                    Some(l)
                }
                Err(e) => {
                    l4::println!("rtc: cannot attach IRQ {} ({}); polling", l.number(), e);
                    None
                }
            },
        };
        // Without a line the periodic interrupt stays off: ticks then come from the
        // system clock. (A clock interrupting into a masked line is not harmless under
        // QEMU: its RTC re-injects "lost" ticks, and the guest's console input stalled.)
        set_periodic(p, cfg.rate, line.is_some());
        if cfg.verbose {
            match read_time(p) {
                Ok(t) => l4::println!(
                    "rtc: {} Hz ticks, clock says {}, thread {:#x}",
                    cfg.rate.hz(),
                    t,
                    l4::utcb::my_global_id().raw()
                ),
                Err(e) => l4::println!("rtc: {} Hz ticks, clock unreadable ({:?})", cfg.rate.hz(), e),
            }
        }
        Service {
            ports: p,
            line,
            rate: cfg.rate,
            ticks: 0,
            interrupts: 0,
            sleepers: [None; SLEEPERS],
            ack_due: false,
        }
    }

    /// Reads C and counts a tick if the periodic flag is set.
    fn tick(&mut self) {
        let c = StatusC(read_reg(self.ports, reg::C));
        if c.periodic() {
            self.ticks += 1;
        }
    }

    fn wake(&mut self) {
        for slot in self.sleepers.iter_mut() {
            if let Some(s) = *slot {
                if s.wake_tick <= self.ticks {
                    *slot = None;
                    let _ = reply(s.client, Status::Ok, &[self.ticks]);
                }
            }
        }
    }

    fn handle(&mut self, from: ThreadId, m: &Msg) {
        if m.label() == drvkit::wire::IDENTIFY {
            let _ = drvkit::msg::reply_name(from, NAME);
            return;
        }
        let req = match rtc::Request::try_from((m.label(), m.untyped())) {
            Ok(r) if m.tag().typed() == 0 => r,
            _ => {
                let _ = reply(from, Status::BadRequest, &[]);
                return;
            }
        };
        match req {
            rtc::Request::Ping => {
                let _ = reply(from, Status::Ok, &[]);
            }
            rtc::Request::Ticks => {
                let _ = reply(from, Status::Ok, &[self.ticks, self.rate.hz() as u64, self.interrupts]);
            }
            rtc::Request::Now => match read_time(self.ports) {
                Ok(t) => {
                    let _ = reply(from, Status::Ok, &[t.pack(), self.ticks, self.rate.hz() as u64]);
                }
                Err(_) => {
                    let _ = reply(from, Status::NoDevice, &[]);
                }
            },
            rtc::Request::Sleep { us } => {
                let hz = self.rate.hz() as u64;
                let n = (us.saturating_mul(hz)).div_ceil(1_000_000).max(1);
                let s = Sleeper {
                    client: from,
                    // The current tick is partly gone: count n whole ticks after it,
                    // so that a sleep never ends early.
                    wake_tick: self.ticks + n + 1,
                };
                match self.sleepers.iter_mut().find(|s| s.is_none()) {
                    Some(slot) => *slot = Some(s),
                    None => {
                        let _ = reply(from, Status::Busy, &[]);
                    }
                }
            }
        }
    }

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

    /// Serves interrupts and clients for good. Without a line, ticks are counted from
    /// the system clock (a polled flag would miss ticks between late polls), and sleepers
    /// are checked once per tick period.
    pub fn serve(&mut self) -> ! {
        let period = self.rate.period_us();
        let start = now();
        let mut next_poll = start + period;
        loop {
            let t = if self.line.is_some() {
                Time::Never
            } else {
                let n = now();
                if next_poll <= n {
                    Time::Zero
                } else {
                    Time::Period { us: next_poll - n }
                }
            };
            match self.receive(t) {
                Ok(r) => {
                    if self.line.is_some_and(|l| l.is_interrupt(&r)) {
                        self.interrupts += 1;
                        self.tick();
                        self.ack_due = true;
                    } else {
                        self.handle(r.from, &r.msg);
                    }
                }
                Err(e) if e.is(IpcErrorCode::Timeout, Phase::Receive) => {}
                Err(_) => {}
            }
            if self.line.is_none() {
                let n = now();
                self.ticks = (n - start) * self.rate.hz() as u64 / 1_000_000;
                if n >= next_poll {
                    next_poll = n + period;
                }
            }
            self.wake();
        }
    }
}
