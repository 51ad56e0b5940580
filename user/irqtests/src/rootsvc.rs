//! Checks of the root-task protocol (`drvkit::wire::root`) as the root task serves it:
//! the server is `drvkit::rootsrv` — the code `user/roottask` runs — served here by the
//! main thread (this program is the scenario's root task, so the clients' requests to the
//! root task's thread id come here), with a test [`Host`] that records power-off instead
//! of doing it. The clients are threads of unprivileged child spaces using the real client
//! stubs (`drvkit::root`, `drvkit::irq::attach_here`):
//!
//! | client | space | registry entry       |
//! |--------|-------|----------------------|
//! | A      | 1     | program `drv-a`      |
//! | B      | 2     | program `drv-b`      |
//! | C      | 2     | none (unknown)       |
//!
//! Each client runs [`client_main`]: it waits for an operation in its [`Slot`], performs
//! it and posts the result; the main thread posts operations with [`Clients::ask`] and
//! serves root-protocol requests until the result is posted (bounded).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{IoFpage, Rights};
use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::irq::{self, Attached, Line};
use drvkit::msg::CallError;
use drvkit::root::{self, RootError};
use drvkit::rootsrv::{Host, RootService};
use drvkit::wire::{self, Status};
use l4::ipc;

use crate::dev;
use crate::env::{self, faults, Space, Worker};
use crate::harness::{ensure, now, wait_until, Check, Context, Runner, Why};

/// The test host: ports as this task has them (from σ0), power-off only recorded.
struct TestHost {
    /// Power-off requests granted: count, last status.
    power_offs: (u64, u64),
}

impl Host for TestHost {
    fn obtain_ports(&mut self, io: IoFpage) -> bool {
        drvkit::sigma0::request_io(io, Time::Period { us: 1_000_000 }).is_ok()
    }

    fn power_off(&mut self, status: u64) -> bool {
        self.power_offs = (self.power_offs.0 + 1, status);
        true
    }
}

/// The service (too big for the main thread's stack).
struct Shared(UnsafeCell<RootService<TestHost>>);

// SAFETY: only the main thread reaches the cell (through `service`, called from the
// checks of this module, which the main thread runs one at a time; no caller keeps the
// reference across another call).
unsafe impl Sync for Shared {}

static SERVICE: Shared = Shared(UnsafeCell::new(RootService::new(TestHost { power_offs: (0, 0) })));

/// The service. Only the main thread may call this, and it must not keep the reference
/// across another call of `service`.
fn service() -> &'static mut RootService<TestHost> {
    // SAFETY: see `Shared`: one thread, one reference at a time.
    unsafe { &mut *SERVICE.0.get() }
}

/// Names the operations use (by index).
const NAMES: [&str; 5] = ["drv-a", "drv-b", "nosuch", "svc-a", "svc-c"];

/// Operations a client performs (operation in bits 0..8, argument above).
mod op {
    /// Attach line `arg` to itself (`attach_here` for a line the KIP has, else a raw
    /// request); result 0 if it went through the root task.
    pub const ATTACH: u64 = 1;
    /// Wait (1 s) for line `arg`'s interrupt and acknowledge it.
    pub const WAIT_IRQ: u64 = 2;
    /// Detach line `arg`.
    pub const DETACH: u64 = 3;
    /// Look up name `arg`; result: the thread id.
    pub const LOOKUP: u64 = 4;
    /// Register under name `arg`.
    pub const REGISTER: u64 = 5;
    /// List the registry; result: bit i for each of `NAMES[i]` seen, bits 8.. the lines
    /// listed for `drv-a`, bit 63 if an entry had no holdings.
    pub const LIST: u64 = 6;
    /// Power off with status `arg`.
    pub const POWER_OFF: u64 = 7;
    /// Take the clock's ports from the root task and read register A.
    pub const CMOS_PORTS: u64 = 8;
}

/// Result flag: the operation failed; the low bits say how ([`code`]).
const FAILED: u64 = 1 << 62;

/// One client's mailbox: the operation (0: none), and the result (posted with bit 63).
struct Slot {
    op: AtomicU64,
    result: AtomicU64,
}

const POSTED: u64 = 1 << 63;

static SLOTS: [Slot; 3] = [const {
    Slot {
        op: AtomicU64::new(0),
        result: AtomicU64::new(0),
    }
}; 3];

/// A client error as a result word: `FAILED` | status, or `FAILED | 0xFF` for an IPC or
/// other failure.
fn code(e: RootError) -> u64 {
    match e {
        RootError::Call(CallError::Status(s, _)) => FAILED | s as u64,
        _ => FAILED | 0xFF,
    }
}

/// The result word expected for a refusal with `s`.
const fn refused(s: Status) -> u64 {
    FAILED | s as u64
}

fn perform(op: u64, arg: u64) -> u64 {
    let name = NAMES.get(arg as usize).copied().unwrap_or("?");
    match op {
        op::ATTACH => match Line::try_from(arg as u32) {
            Ok(l) => match irq::attach_here(l) {
                Ok(Attached::ByRootTask) => 0,
                Ok(Attached::Directly) => FAILED | 0xFE,
                Err(e) => code(e),
            },
            Err(_) => match drvkit::msg::call(
                root::root_task_id(),
                wire::root::ATTACH_IRQ,
                &[arg],
                Time::Period { us: 1_000_000 },
                Time::Period { us: 1_000_000 },
                &[],
            ) {
                Ok(_) => 0,
                Err(e) => code(RootError::Call(e)),
            },
        },
        op::WAIT_IRQ => match Line::try_from(arg as u32) {
            Ok(l) => match irq::wait(l, Time::Period { us: 1_000_000 }) {
                Ok(()) => {
                    let _ = irq::ack(l);
                    0
                }
                Err(_) => FAILED | 0xFD,
            },
            Err(_) => FAILED | 0xFC,
        },
        op::DETACH => match Line::try_from(arg as u32) {
            Ok(l) => root::detach_irq(l).map_or_else(code, |()| 0),
            Err(_) => FAILED | 0xFC,
        },
        op::LOOKUP => root::lookup(name).map_or_else(code, |id| id.raw() & !(FAILED | POSTED)),
        op::REGISTER => root::register(name).map_or_else(code, |()| 0),
        op::LIST => {
            let mut seen = 0u64;
            for i in 0..64 {
                match root::list(i) {
                    Ok(Some(p)) => {
                        if let Some(j) = NAMES.iter().position(|n| n.as_bytes() == p.name.as_slice()) {
                            seen |= 1 << j;
                        }
                        match p.holdings {
                            Some(h) if p.name.as_slice() == b"drv-a" => seen |= (h.lines & 0xFFFF) << 8,
                            Some(_) => {}
                            None => seen |= 1 << 61,
                        }
                    }
                    Ok(None) => return seen,
                    Err(e) => return code(e),
                }
            }
            FAILED | 0xFB
        }
        op::POWER_OFF => match root::power_off(arg) {
            // The test host only records: the root task answers `Ok`.
            RootError::Call(CallError::Status(Status::Ok, _)) => 0,
            e => code(e),
        },
        op::CMOS_PORTS => match root::request_io(dev::CMOS.fpage(Rights::RW)) {
            Ok(()) => {
                // Without the ports this faults to the pager, which does not answer:
                // the result is then never posted.
                let _ = rtc::service::read_reg(dev::CMOS, drvkit::cmos::reg::A);
                0
            }
            Err(e) => code(e),
        },
        _ => FAILED | 0xFA,
    }
}

/// A client thread: performs the operations posted in `SLOTS[k]` for good.
fn client_main(k: usize) {
    let slot = &SLOTS[k];
    loop {
        let _ = wait_until(10_000_000, || slot.op.load(Ordering::Acquire) != 0);
        let w = slot.op.swap(0, Ordering::AcqRel);
        if w == 0 {
            continue;
        }
        let r = perform(w & 0xFF, w >> 8);
        slot.result.store(POSTED | (r & !POSTED), Ordering::Release);
    }
}

/// The three clients, their spaces, and the main thread serving them.
struct Clients {
    // Dropped in this order: the threads, then the spaces.
    workers: [Worker; 3],
    _spaces: (Space, Space),
}

impl Clients {
    fn start() -> Result<Clients, Why> {
        for s in SLOTS.iter() {
            s.op.store(0, Ordering::Release);
            s.result.store(0, Ordering::Release);
        }
        let mut one = Space::new()?;
        let mut two = Space::new()?;
        let a = one.spawn(client_main, 0, env::MAIN_PRIO + 10)?;
        let b = two.spawn(client_main, 1, env::MAIN_PRIO + 10)?;
        let c = two.spawn(client_main, 2, env::MAIN_PRIO + 10)?;
        let svc = service();
        svc.add_program(a.id(), NAMES[0]).ctx("enter drv-a")?;
        svc.add_program(b.id(), NAMES[1]).ctx("enter drv-b")?;
        Ok(Clients {
            workers: [a, b, c],
            _spaces: (one, two),
        })
    }

    fn id(&self, k: usize) -> ThreadId {
        self.workers[k].id()
    }

    /// Has client `k` perform `op(arg)`, serving the root protocol meanwhile; its result
    /// (`Err` if none came within 3 s).
    fn ask(&self, k: usize, op: u64, arg: u64) -> Result<u64, Why> {
        let slot = &SLOTS[k];
        slot.result.store(0, Ordering::Release);
        slot.op.store(op | arg << 8, Ordering::Release);
        let end = now() + 3_000_000;
        let svc = service();
        while now() < end {
            let r = slot.result.load(Ordering::Acquire);
            if r & POSTED != 0 {
                return Ok(r & !POSTED);
            }
            if let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Period { us: 5_000 }) {
                let _ = svc.serve(&rx);
            }
        }
        Err(Why::new(format_args!(
            "client {} did not finish operation {} ({} I/O faults so far)",
            k,
            op,
            faults::io_count()
        )))
    }

    /// `ask` that must give `want`.
    fn expect(&self, k: usize, op: u64, arg: u64, want: u64, what: &str) -> Check {
        let got = self.ask(k, op, arg)?;
        ensure!(got == want, "{}: result {:#x}, expected {:#x}", what, got, want);
        Ok(())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for w in self.workers.iter() {
            service().forget(w.id());
        }
    }
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Runs the checks of this module.
pub fn run(r: &mut Runner) {
    let clients = match Clients::start() {
        Ok(c) => c,
        Err(e) => {
            r.check("root-attach-irq", || Err(e));
            return;
        }
    };
    let c = &clients;
    let have_cmos = dev::have_cmos();
    r.check("root-attach-irq", || {
        ensure!(have_cmos, "this task cannot drive the clock");
        dev::rtc_periodic(64, true);
        let attached = c.expect(A, op::ATTACH, 8, 0, "drv-a attaches line 8");
        let delivered = attached.and_then(|()| c.expect(A, op::WAIT_IRQ, 8, 0, "line 8 interrupts drv-a"));
        dev::rtc_periodic(64, false);
        dev::rtc_status_c();
        delivered?;
        ensure!(
            service().registry.holder(8) == Some(c.id(A)),
            "the registry does not show drv-a holding line 8"
        );
        Ok(())
    });
    r.check("root-attach-refused", || {
        c.expect(B, op::ATTACH, 8, refused(Status::Denied), "a second claimant of line 8")?;
        c.expect(B, op::ATTACH, 200, refused(Status::NoDevice), "line 200")?;
        c.expect(B, op::ATTACH, 2, refused(Status::NoDevice), "line 2 (the cascade)")?;
        c.expect(C, op::ATTACH, 9, refused(Status::Denied), "an unknown thread")?;
        ensure!(service().registry.holder(9).is_none(), "line 9 recorded for the unknown thread");
        Ok(())
    });
    r.check("root-lookup", || {
        c.expect(C, op::LOOKUP, 0, c.id(A).raw(), "drv-a")?;
        c.expect(A, op::LOOKUP, 1, c.id(B).raw(), "drv-b")?;
        c.expect(A, op::LOOKUP, 2, refused(Status::NotFound), "an unknown name")
    });
    r.check("root-register", || {
        c.expect(A, op::REGISTER, 3, 0, "drv-a registers svc-a")?;
        c.expect(B, op::LOOKUP, 3, c.id(A).raw(), "svc-a")?;
        c.expect(B, op::REGISTER, 3, refused(Status::Denied), "drv-b takes svc-a too")?;
        c.expect(C, op::REGISTER, 4, refused(Status::Denied), "an unknown thread registers")?;
        c.expect(B, op::LOOKUP, 4, refused(Status::NotFound), "svc-c")
    });
    r.check("root-list", || {
        // drv-a, drv-b and svc-a, with line 8 listed for drv-a; no unknown names.
        c.expect(C, op::LIST, 0, 0b1011 | (1 << 8) << 8, "the listing")
    });
    r.check("root-detach-irq", || {
        c.expect(B, op::DETACH, 8, refused(Status::Denied), "drv-b detaches drv-a's line")?;
        c.expect(A, op::DETACH, 8, 0, "drv-a detaches line 8")?;
        ensure!(service().registry.holder(8).is_none(), "line 8 still recorded");
        c.expect(B, op::ATTACH, 8, 0, "drv-b attaches the freed line")?;
        c.expect(B, op::DETACH, 8, 0, "drv-b detaches it")
    });
    r.check("root-grants-io-ports", || {
        ensure!(have_cmos, "this task cannot hand on the clock's ports");
        let before = faults::io_count();
        c.expect(A, op::CMOS_PORTS, 0, 0, "drv-a takes the clock's ports")?;
        ensure!(faults::io_count() == before, "drv-a faulted on ports the root task mapped");
        c.expect(B, op::CMOS_PORTS, 0, refused(Status::Denied), "drv-b takes drv-a's ports")?;
        c.expect(C, op::CMOS_PORTS, 0, refused(Status::Denied), "an unknown thread takes ports")
    });
    r.check("root-power-off", || {
        c.expect(C, op::POWER_OFF, 3, refused(Status::Denied), "an unknown thread")?;
        ensure!(service().host().power_offs.0 == 0, "powered off for an unknown thread");
        c.expect(A, op::POWER_OFF, 7, 0, "drv-a")?;
        let p = service().host().power_offs;
        ensure!(p == (1, 7), "power-off requests recorded: {:?}", p);
        Ok(())
    });
    drop(clients);
}
