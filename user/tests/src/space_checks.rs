//! Address spaces: SpaceControl's argument checks on fresh spaces, a thread running in a
//! second, unprivileged space whose memory the main thread serves as its pager (the
//! privilege checks of X.2 are made from there), Unmap, ProcessorControl and the leak
//! check of a space's life.
//!
//! The child space reuses the root task's image: the main thread answers each of the
//! child's page faults by mapping its own page at the same address, so the child runs
//! the same code and shares its data pages (that is how it gets its stack and how the
//! probe value below travels).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::error::SysError;
use abi::fpage::{Fpage, Rights};
use abi::msg::{label, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, ms, Msg};
use l4::space;
use l4::thread::{self, ExRegs, Sched};

use crate::harness::{ensure, expect_sys, fail, now, sys_code, Check, Context, Tally, Why};
use crate::workers::{fresh_id, me, Owned};

/// Where the child's KIP and UTCB areas go (the root task's own placement).
const KIP_AREA: u64 = 0xBFF0_0000;
const UTCB_AREA: u64 = 0xBF00_0000;

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("space::control-unknown-space", unknown_space);
    s.run("space::control-stale-id", stale_space);
    s.run("space::utcb-area-too-small", utcb_small);
    s.run("space::utcb-area-in-kernel-half", utcb_kernel);
    s.run("space::kip-area-too-small", kip_small);
    s.run("space::kip-area-in-kernel-half", kip_kernel);
    s.run("space::kip-area-overlaps-utcb-area", kip_overlap);
    s.run("space::active-thread-needs-initialised-space", needs_init);
    s.run("space::control-valid-areas", valid_areas);
    s.run("space::utcb-outside-new-area", utcb_outside_new_area);
    s.run("space::unmap-without-rights-keeps-fpage", unmap_noop);
    s.run("proc::control-invalid-processor", processor_invalid);
    let c = child_scenario();
    s.run("space::child-runs-on-pager-mappings", || c.ran());
    s.run("ipc::from-is-global-id-across-spaces", || c.sender_ids());
    s.run("priv::thread-control", || {
        c.expect(c::TC, SysError::NoPrivilege)
    });
    s.run("priv::space-control", || {
        c.expect(c::SC, SysError::NoPrivilege)
    });
    s.run("priv::processor-control", || {
        c.expect(c::PC, SysError::NoPrivilege)
    });
    s.run("priv::memory-control", || {
        c.expect(c::MC, SysError::NoPrivilege)
    });
    s.run("priv::schedule-other-space", || {
        c.expect(c::SCHED, SysError::NoPrivilege)
    });
    s.run("priv::exregs-other-space", || {
        c.expect(c::EXREGS, SysError::InvalidThread)
    });
    s.run("space::unmap-revokes-derived-mapping", || c.unmapped());
    s.run("space::shared-frame-visible-in-child", || c.shared());
    s.run("space::deleting-last-thread-frees-space", || c.no_leak());
}

/// A thread in a new space of its own (created inactive), deleted with its space when
/// dropped.
fn new_space() -> Result<Owned, Why> {
    let id = fresh_id();
    thread::create_thread(id, id, me(), ThreadId::NIL, None).ctx("ThreadControl (new space)")?;
    Ok(Owned(id))
}

fn kip_area() -> Fpage {
    Fpage::new(KIP_AREA, 12, Rights::NONE)
}

fn utcb_area() -> Fpage {
    Fpage::new(UTCB_AREA, 12, Rights::NONE)
}

fn control(space: ThreadId, kip: Fpage, utcb: Fpage) -> Result<u64, l4::Error> {
    space::space_control(space, 0, kip, utcb, ThreadId::ANY)
}

fn unknown_space() -> Check {
    expect_sys(
        control(fresh_id(), kip_area(), utcb_area()),
        SysError::InvalidSpace,
    )
}

fn stale_space() -> Check {
    let t = new_space()?;
    let stale = ThreadId::global(t.0.number(), t.0.version() + 1);
    expect_sys(
        control(stale, kip_area(), utcb_area()),
        SysError::InvalidSpace,
    )
}

fn utcb_small() -> Check {
    let t = new_space()?;
    expect_sys(
        control(t.0, kip_area(), Fpage::new(UTCB_AREA, 10, Rights::NONE)),
        SysError::UtcbArea,
    )
}

fn utcb_kernel() -> Check {
    let t = new_space()?;
    expect_sys(
        control(
            t.0,
            kip_area(),
            Fpage::new(0xFFFF_8000_0000_0000, 12, Rights::NONE),
        ),
        SysError::UtcbArea,
    )
}

fn kip_small() -> Check {
    let t = new_space()?;
    expect_sys(
        control(t.0, Fpage::new(KIP_AREA, 11, Rights::NONE), utcb_area()),
        SysError::KipArea,
    )
}

fn kip_kernel() -> Check {
    let t = new_space()?;
    expect_sys(
        control(
            t.0,
            Fpage::new(0xFFFF_8000_0010_0000, 12, Rights::NONE),
            utcb_area(),
        ),
        SysError::KipArea,
    )
}

fn kip_overlap() -> Check {
    let t = new_space()?;
    expect_sys(
        control(
            t.0,
            Fpage::new(UTCB_AREA + 0x1000, 12, Rights::NONE),
            Fpage::new(UTCB_AREA, 14, Rights::NONE),
        ),
        SysError::KipArea,
    )
}

fn needs_init() -> Check {
    let t = new_space()?;
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, t.0, me(), me(), Some(UTCB_AREA)),
        SysError::InvalidSpace,
    )
}

fn valid_areas() -> Check {
    let t = new_space()?;
    control(t.0, kip_area(), utcb_area()).ctx("SpaceControl")?;
    let id = fresh_id();
    thread::create_thread(id, t.0, me(), me(), Some(UTCB_AREA + 0x400))
        .ctx("ThreadControl (active thread in the new space)")?;
    let _guard = Owned(id);
    Ok(())
}

fn utcb_outside_new_area() -> Check {
    let t = new_space()?;
    control(t.0, kip_area(), utcb_area()).ctx("SpaceControl")?;
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, t.0, me(), me(), Some(UTCB_AREA + 0x1000)),
        SysError::UtcbArea,
    )
}

/// A page of the root task's data, for the Unmap checks.
#[repr(C, align(4096))]
struct Probe(AtomicU64);

static PROBE: Probe = Probe(AtomicU64::new(0x0BE5_0001));

fn probe_page() -> u64 {
    &PROBE as *const Probe as u64
}

fn unmap_noop() -> Check {
    let page = Fpage::new(probe_page(), 12, Rights::NONE);
    let mut fp = [page];
    let rdi = space::unmap(&mut fp, false).ctx("Unmap")?;
    ensure!(
        rdi == l4::utcb::my_local_id().raw(),
        "RDI after Unmap {:#x}",
        rdi
    );
    ensure!(
        fp[0].base() == page.base() && fp[0].log2size() == 12,
        "Unmap returned fpage {:?}",
        fp[0]
    );
    // The page is still ours.
    ensure!(PROBE.0.load(Ordering::SeqCst) != 0, "probe page lost");
    Ok(())
}

fn processor_invalid() -> Check {
    let cpus = abi::kip::ProcessorInfo::decode(l4::kip::get().processor_info).cpus as u64;
    expect_sys(
        thread::processor_control(cpus, !0, !0, !0),
        SysError::InvalidParam,
    )
}

/// Board words the child reports in its first message (MR indices - 1).
mod c {
    pub const TC: usize = 0;
    pub const SC: usize = 1;
    pub const PC: usize = 2;
    pub const MC: usize = 3;
    pub const SCHED: usize = 4;
    pub const EXREGS: usize = 5;
    pub const PROBE: usize = 6;
    pub const WORDS: usize = 7;
}

/// Labels of the child protocol.
const DONE1: u64 = 0xC1;
const GO2: u64 = 0xC2;
const DONE2: u64 = 0xC3;

/// Size of the child's stack.
const CHILD_STACK_SIZE: usize = 32 * 1024;

/// The child's stack (in the root task's image, so the pager maps it like any page).
#[repr(C, align(4096))]
struct ChildStack([u8; CHILD_STACK_SIZE]);
static mut CHILD_STACK: ChildStack = ChildStack([0; CHILD_STACK_SIZE]);

/// The thread in the child space. `pager` is the main thread's global id.
extern "C" fn child_main(pager: usize) -> ! {
    let pager = ThreadId(pager as u64);
    let me = l4::utcb::my_global_id();
    let mut r = [0u64; c::WORDS];
    r[c::TC] = sys_code(&thread::create_thread(
        ThreadId::global(me.number() + 1, 1),
        me,
        me,
        ThreadId::NIL,
        None,
    ));
    r[c::SC] = sys_code(&space::space_control(
        me,
        0,
        Fpage::new(KIP_AREA, 12, Rights::NONE),
        Fpage::new(UTCB_AREA, 12, Rights::NONE),
        ThreadId::ANY,
    ));
    r[c::PC] = sys_code(&thread::processor_control(0, !0, !0, !0));
    r[c::MC] = sys_code(&space::memory_control(
        &[Fpage::new(probe_page(), 12, Rights::NONE)],
        [0; 4],
    ));
    r[c::SCHED] = sys_code(&Sched::new().priority(10).apply(pager));
    r[c::EXREGS] = sys_code(&ExRegs::new().apply(pager));
    r[c::PROBE] = PROBE.0.load(Ordering::SeqCst);
    if let Ok(m) = Msg::with_words(DONE1, &r) {
        let _ = ipc::send(pager, &m, ms(5000));
    }
    if let Ok(rx) = ipc::receive(pager, ms(5000)) {
        if rx.msg.label() == GO2 {
            let v = PROBE.0.load(Ordering::SeqCst);
            if let Ok(m) = Msg::with_words(DONE2, &[v]) {
                let _ = ipc::send(pager, &m, ms(5000));
            }
        }
    }
    thread::park()
}

/// What the child scenario saw.
struct Child {
    /// Why the scenario stopped early, if it did.
    error: Option<Why>,
    /// The child's first report (its MR1..).
    report: Option<[u64; c::WORDS]>,
    /// Faults on the probe page after the unmap.
    probe_faults_after_unmap: u32,
    /// The probe value the child read after the unmap (and the one it should read).
    second_read: Option<(u64, u64)>,
    /// Kernel free frames before the scenario and after the child was deleted.
    memory: (u64, u64),
    /// A `From` of a message from the child that was not its global id, if any.
    bad_from: Option<ThreadId>,
}

/// The root task image's range (from the KIP), where the pager maps from.
fn image() -> (u64, u64) {
    let rs = l4::kip::get().root_server;
    (rs.low, rs.high)
}

/// Serves the child's page faults until it sends a message labelled `until`, for at most
/// `timeout_us`. Counts faults on the probe page into `probe_faults`.
fn serve(
    child: ThreadId,
    until: u64,
    timeout_us: u64,
    probe_faults: &mut u32,
    bad_from: &mut Option<ThreadId>,
) -> Result<Msg, Why> {
    let deadline = now() + timeout_us;
    let (low, high) = image();
    for _ in 0..512 {
        let left = deadline.saturating_sub(now());
        if left == 0 {
            break;
        }
        let rx = ipc::receive(child, Time::Period { us: left }).ctx("receive from the child")?;
        if rx.from != child {
            bad_from.get_or_insert(rx.from);
        }
        let tag = rx.msg.tag();
        if tag.label() == until {
            return Ok(rx.msg);
        }
        if tag.protocol() != label::PAGE_FAULT || tag.untyped() != 2 {
            return Err(Why::new(format_args!(
                "unexpected message from the child: tag {:#x}",
                tag.raw()
            )));
        }
        let addr = rx.msg.word(0).unwrap_or(0);
        let ip = rx.msg.word(1).unwrap_or(0);
        if addr < low || addr > high {
            return Err(Why::new(format_args!(
                "child faulted at {:#x} (ip {:#x}) outside the image {:#x}..{:#x}",
                addr, ip, low, high
            )));
        }
        let page = addr & !0xFFF;
        if page == probe_page() {
            *probe_faults += 1;
        }
        let mut answer = Msg::new(0);
        answer
            .push_map(MapItem::map(Fpage::new(page, 12, Rights::RWX), page))
            .ctx("map item")?;
        ipc::reply(child, &answer).ctx("page-fault reply")?;
    }
    Err(Why::new(format_args!(
        "no message {:#x} from the child in time",
        until
    )))
}

/// Creates the child space and thread, serves it, runs the Unmap step, deletes it.
fn child_scenario() -> Child {
    let mut out = Child {
        error: None,
        report: None,
        probe_faults_after_unmap: 0,
        second_read: None,
        memory: (0, 0),
        bad_from: None,
    };
    let free_before = l4::kdb::kernel_memory().0;
    if let Err(e) = run_child(&mut out) {
        out.error = Some(e);
    }
    out.memory = (free_before, l4::kdb::kernel_memory().0);
    out
}

fn run_child(out: &mut Child) -> Check {
    let child = fresh_id();
    thread::create_thread(child, child, me(), ThreadId::NIL, None)
        .ctx("ThreadControl (child space)")?;
    let _guard = Owned(child);
    control(child, kip_area(), utcb_area()).ctx("SpaceControl (child)")?;
    thread::thread_control(child, child, me(), me(), Some(UTCB_AREA))
        .ctx("ThreadControl (activate child)")?;
    // SAFETY: one past the end of the child stack, computed without a reference.
    let top = unsafe { (core::ptr::addr_of_mut!(CHILD_STACK) as *mut u8).add(CHILD_STACK_SIZE) };
    // SAFETY: only the child uses `CHILD_STACK`, and only this scenario starts a child
    // (once; it is deleted before the function returns).
    let (sp, ip) = unsafe { thread::prepare_entry(top, child_main, me().raw() as usize) };
    thread::start_message(child, sp, ip, ms(1000)).ctx("start message to the child")?;
    let mut faults = 0;
    let m = serve(child, DONE1, 3_000_000, &mut faults, &mut out.bad_from)?;
    let mut r = [0u64; c::WORDS];
    for (i, w) in r.iter_mut().enumerate() {
        *w = m.word(i).unwrap_or(u64::MAX);
    }
    out.report = Some(r);
    // Revoke the child's mapping of the probe page (not ours), change the value, and let
    // the child read it again: it must fault, and then see the new value.
    let mut fp = [Fpage::new(probe_page(), 12, Rights::RWX)];
    space::unmap(&mut fp, false).ctx("Unmap")?;
    PROBE.0.store(0x0BE5_0002, Ordering::SeqCst);
    ipc::send(child, &Msg::new(GO2), ms(1000)).ctx("send GO2")?;
    let mut faults = 0;
    let m = serve(child, DONE2, 3_000_000, &mut faults, &mut out.bad_from)?;
    out.probe_faults_after_unmap = faults;
    out.second_read = Some((m.word(0).unwrap_or(0), 0x0BE5_0002));
    Ok(())
}

impl Child {
    fn ran(&self) -> Check {
        match (&self.report, &self.error) {
            (Some(_), _) => Ok(()),
            (None, Some(e)) => fail!("{}", e),
            (None, None) => fail!("no report from the child"),
        }
    }

    fn sender_ids(&self) -> Check {
        self.ran()?;
        match self.bad_from {
            None => Ok(()),
            Some(f) => fail!(
                "a message from the child came From {:?}, its global id is expected",
                f
            ),
        }
    }

    fn expect(&self, i: usize, want: SysError) -> Check {
        self.ran()?;
        let got = self.report.map_or(u64::MAX, |r| r[i]);
        ensure!(
            got == want.code(),
            "the unprivileged child got {:#x} ({:?}), expected {:?}",
            got,
            SysError::try_from(got).ok(),
            want
        );
        Ok(())
    }

    fn unmapped(&self) -> Check {
        self.ran()?;
        if self.second_read.is_none() {
            if let Some(e) = &self.error {
                fail!("{}", e);
            }
        }
        ensure!(
            self.probe_faults_after_unmap >= 1,
            "the child read the unmapped page without a page fault"
        );
        Ok(())
    }

    fn shared(&self) -> Check {
        self.ran()?;
        let first = self.report.map_or(0, |r| r[c::PROBE]);
        ensure!(
            first == 0x0BE5_0001,
            "the child read {:#x} from the probe page, expected 0xbe50001",
            first
        );
        match (&self.second_read, &self.error) {
            (Some((got, want)), _) => {
                ensure!(
                    got == want,
                    "after the change the child read {:#x}, expected {:#x}",
                    got,
                    want
                );
                Ok(())
            }
            (None, Some(e)) => fail!("{}", e),
            (None, None) => fail!("no second read"),
        }
    }

    fn no_leak(&self) -> Check {
        self.ran()?;
        let (before, after) = self.memory;
        ensure!(before > 0, "KDB kernel-memory info unavailable");
        ensure!(
            before == after,
            "kernel free frames {} before the child space, {} after deleting it",
            before,
            after
        );
        Ok(())
    }
}
