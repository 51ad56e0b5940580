//! M, the main thread: builds the fuzzer's world, serves its page faults, revives stuck
//! fuzzers, and at the end takes everything down and judges the run.
//!
//! ```text
//!  setup     R threads (FP0 FP1 RV0 RV1) created, kernel memory measured, then U (with
//!            its keeper), the canary spaces A and B; all started
//!  run       loop: receive (10 ms) -> serve page faults of U, A, B by mapping the
//!            root task's pages (policy: `rights_for`); every 20 ms supervise:
//!              a fuzzer without progress for 300 ms is aborted and resumed (R) or
//!              deleted and created anew (U); the canary must keep moving
//!  teardown  stop; U, A, B and every pool thread deleted, interrupts detached, R's
//!            sandbox flushed; kernel memory measured again
//! ```
//!
//! M never answers a fault it has no policy for: the faulting thread stays blocked until
//! it is revived or deleted.

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use abi::fpage::{Fpage, Rights};
use abi::msg::{label, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};
use l4::println;
use l4::thread::{self, ExRegs};

use crate::calls;
use crate::canary;
use crate::victim;
use crate::world::{self, Space, SHARED};

/// Guest time a fuzzer may go without progress before M steps in.
const STALL_US: u64 = 60_000;
/// Guest time the canary may go without a round trip before it counts as stalled.
const CANARY_STALL_US: u64 = 5_000_000;
/// How often M looks for dead victims.
const VICTIM_CHECK_US: u64 = 100_000;
/// How often M supervises.
const SUPERVISE_EVERY_US: u64 = 20_000;

/// A setup failure.
pub struct Failure(Text);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A short message in a fixed buffer.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; 96],
    len: usize,
}

impl Text {
    fn new(args: fmt::Arguments) -> Self {
        let mut t = Text { buf: [0; 96], len: 0 };
        let _ = t.write_fmt(args);
        t
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

macro_rules! failure {
    ($($arg:tt)*) => { Failure(Text::new(format_args!($($arg)*))) };
}

/// M's state.
pub struct Supervisor {
    /// Kernel free frames after the R threads existed (the reference for the end).
    memory_start: u64,
    memory_end: u64,
    /// Per fuzzer: progress at the last look, guest time without progress, revival level.
    last: [u64; 4],
    stalled_us: [u64; 4],
    level: [u32; 4],
    pub restarts: u64,
    pub faults_served: u64,
    pub faults_refused: u64,
    stray: u64,
    canary_last: u64,
    canary_still_us: u64,
    canary_stalls: u64,
    pub victims_recreated: u64,
    /// Victims blocked in a page fault M does not answer (bit per role).
    stuck_victims: u32,
    /// Call count at which the next progress line is printed.
    next_progress: u64,
    /// Times a fuzzer made no progress while ready to run.
    pub slow: u64,
    since_victims_us: u64,
    /// Stalls by the kind of the call the fuzzer was in.
    pub stalls_by_kind: [u32; world::KINDS],
    /// Fuzzers that never finished their quota.
    unfinished: u32,
    teardown_errors: u32,
    first_teardown_error: Option<Text>,
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor {
            memory_start: 0,
            memory_end: 0,
            last: [0; 4],
            stalled_us: [0; 4],
            level: [0; 4],
            restarts: 0,
            faults_served: 0,
            faults_refused: 0,
            stray: 0,
            canary_last: 0,
            canary_still_us: 0,
            canary_stalls: 0,
            victims_recreated: 0,
            stuck_victims: 0,
            next_progress: 1,
            slow: 0,
            since_victims_us: 0,
            stalls_by_kind: [0; world::KINDS],
            unfinished: 0,
            teardown_errors: 0,
            first_teardown_error: None,
        }
    }

    // -----------------------------------------------------------------------------------
    // Setup

    pub fn setup(&mut self) -> Result<(), Failure> {
        let me = l4::utcb::my_global_id();
        SHARED.ids[world::M].store(me.raw(), Ordering::Release);
        thread::set_priority(me, crate::M_PRIO).map_err(|e| failure!("Schedule (M's priority): {:?}", e))?;
        for k in 0..2 {
            let sum = canary::fill(k, SHARED.seed.load(Ordering::Relaxed));
            SHARED.canary_sum[k].store(sum, Ordering::Relaxed);
        }
        for role in [world::FP0, world::FP1, world::RV0, world::RV1] {
            self.create(role, me)?;
        }
        self.memory_start = l4::kdb::kernel_memory().0;
        // U: a keeper (never activated) holds the space while its threads come and go.
        let keep = self.id_for(world::KEEP, 1);
        thread::create_thread(keep, keep, me, ThreadId::NIL, None).map_err(|e| failure!("ThreadControl (U's keeper): {:?}", e))?;
        SHARED.ids[world::KEEP].store(keep.raw(), Ordering::Release);
        init_space(keep)?;
        for role in [world::FU0, world::FU1, world::UV0, world::UV1] {
            self.create(role, keep)?;
        }
        for role in [world::CA, world::CB] {
            let id = self.id_for(role, 1);
            thread::create_thread(id, id, me, ThreadId::NIL, None).map_err(|e| failure!("ThreadControl (canary space): {:?}", e))?;
            SHARED.ids[role].store(id.raw(), Ordering::Release);
            init_space(id)?;
            thread::thread_control(id, id, me, me, Some(world::utcb_of(role))).map_err(|e| failure!("ThreadControl (canary): {:?}", e))?;
            set_sched(id)?;
        }
        for role in [world::CB, world::CA, world::RV0, world::RV1, world::UV0, world::UV1, world::FP0, world::FP1, world::FU0, world::FU1] {
            self.start(role)?;
        }
        Ok(())
    }

    fn id_for(&self, role: usize, version: u32) -> ThreadId {
        ThreadId::global(world::number_of(role), version)
    }

    /// Creates `role` in the space of `space` (waiting for its start), priority FUZZ_PRIO.
    fn create(&mut self, role: usize, space: ThreadId) -> Result<(), Failure> {
        let me = world::id_of(world::M);
        let old = world::id_of(role);
        let id = self.id_for(role, next_version(old));
        SHARED.ids[role].store(0, Ordering::Release);
        thread::create_thread(id, space, me, me, Some(world::utcb_of(role))).map_err(|e| failure!("ThreadControl (create role {}): {:?}", role, e))?;
        set_sched(id)?;
        SHARED.ids[role].store(id.raw(), Ordering::Release);
        Ok(())
    }

    /// Starts `role` at its entry on its stack: R threads with ExchangeRegisters, the
    /// others with the start message (M is their pager).
    fn start(&mut self, role: usize) -> Result<(), Failure> {
        let entry: l4::thread::Entry = match role {
            world::CA => canary::caller,
            world::CB => canary::echo,
            _ => calls::fuzzer_main,
        };
        let (sp, ip) = if world::VICTIMS.contains(&role) {
            victim::prepare(role);
            victim::restart_point(role)
        } else {
            let top = world::stack_of(role).end as *mut u8;
            // SAFETY: the role's stack is used by this role's thread only, which is not
            // running (just created, or being restarted: its old frames are abandoned).
            unsafe { l4::thread::prepare_entry(top, entry, role) }
        };
        let id = world::id_of(role);
        if world::space_of(role) == Space::R {
            ExRegs::new().resume().abort_send().abort_receive().sp(sp).ip(ip).apply(id).map_err(|e| failure!("ExchangeRegisters (start role {}): {:?}", role, e))?;
        } else {
            thread::start_message(id, sp, ip, Time::Period { us: 1_000_000 }).map_err(|e| failure!("start message (role {}): {:?}", role, e))?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Run

    /// Serves and supervises until every fuzzer is done.
    pub fn run(&mut self) {
        let mut last = l4::syscall::system_clock();
        loop {
            if let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Period { us: 10_000 }) {
                self.serve(rx.from, &rx.msg);
            }
            let now = l4::syscall::system_clock();
            if now.saturating_sub(last) >= SUPERVISE_EVERY_US {
                let dt = now - last;
                last = now;
                if self.supervise(dt) {
                    return;
                }
            }
        }
    }

    /// Answers a page fault of a thread of U, A or B whose policy allows the page.
    fn serve(&mut self, from: ThreadId, msg: &Msg) {
        let tag = msg.tag();
        if tag.label() & !0xF != label::PAGE_FAULT || tag.untyped() != 2 || tag.typed() != 0 {
            self.stray += 1;
            return;
        }
        let Some(role) = (0..world::ROLES).find(|&r| world::id_of(r) == from && world::space_of(r) != Space::R) else {
            // A thread of R (named by its local id): M maps nothing in its own space. A
            // victim stuck this way is made anew.
            if let Some(r) = calls::Policy::role_named(Space::R, from.raw()) {
                if world::VICTIMS.contains(&r) {
                    self.stuck_victims |= 1 << r;
                }
            }
            self.faults_refused += 1;
            return;
        };
        let addr = msg.word(0).unwrap_or(0);
        let write = tag.label() & 2 != 0;
        let Some(rights) = rights_for(world::space_of(role), addr, write) else {
            if world::VICTIMS.contains(&role) {
                self.stuck_victims |= 1 << role;
            }
            self.faults_refused += 1;
            return;
        };
        let page = addr & !0xFFF;
        let mut m = Msg::new(0);
        if m.push_map(MapItem::map(Fpage::new(page, 12, rights), page)).is_ok() && ipc::reply(from, &m).is_ok() {
            self.faults_served += 1;
        }
    }

    /// Revives stuck fuzzers, watches the canary; true when every fuzzer is done.
    fn supervise(&mut self, dt: u64) -> bool {
        let total = SHARED.total.load(Ordering::Relaxed);
        if total >= self.next_progress {
            let all: u64 = SHARED.quota.iter().map(|q| q.load(Ordering::Relaxed)).sum();
            println!("fuzz: progress {} of {} calls ({} restarts, kernel memory {} free frames)", total, all, self.restarts, l4::kdb::kernel_memory().0);
            self.next_progress = total - total % (all / 20).max(1) + (all / 20).max(1);
        }
        let mut all_done = true;
        for f in 0..4 {
            if SHARED.done[f].load(Ordering::Acquire) != 0 {
                continue;
            }
            all_done = false;
            let p = SHARED.progress[f].load(Ordering::Relaxed);
            if p != self.last[f] {
                self.last[f] = p;
                self.stalled_us[f] = 0;
                self.level[f] = 0;
                continue;
            }
            self.stalled_us[f] += dt;
            if self.stalled_us[f] >= STALL_US {
                self.stalled_us[f] = 0;
                // Ready but not run for a while (round robin behind busy threads after
                // page faults) is slow, not stuck.
                if thread::state_of(world::id_of(world::FUZZERS[f])) == Ok(abi::syscall::ThreadState::Running) {
                    self.slow += 1;
                } else {
                    self.revive(f);
                }
            }
        }
        self.since_victims_us += dt;
        if self.since_victims_us >= VICTIM_CHECK_US {
            self.since_victims_us = 0;
            self.revive_victims();
        }
        let rt = SHARED.canary_rt.load(Ordering::Relaxed) + SHARED.canary_ipc_errors.load(Ordering::Relaxed);
        if rt != self.canary_last {
            self.canary_last = rt;
            self.canary_still_us = 0;
        } else {
            self.canary_still_us += dt;
            if self.canary_still_us >= CANARY_STALL_US {
                self.canary_still_us = 0;
                self.canary_stalls += 1;
                println!("fuzz: the canary made no round trip for {} ms", CANARY_STALL_US / 1000);
            }
        }
        all_done
    }

    /// Gets fuzzer `f` going again: an R fuzzer first has its IPC aborted and is resumed,
    /// then is started afresh at its entry, then deleted and created anew; a U fuzzer is
    /// deleted and created anew at once.
    fn revive(&mut self, f: usize) {
        let role = world::FUZZERS[f];
        let id = world::id_of(role);
        let kind = SHARED.current[f].load(Ordering::Relaxed) as usize;
        self.stalls_by_kind[kind.min(world::KINDS - 1)] += 1;
        let level = self.level[f];
        self.level[f] += 1;
        if world::space_of(role) == Space::R && level == 0 {
            let _ = ExRegs::new().resume().abort_send().abort_receive().apply(id);
            return;
        }
        SHARED.restarts[f].fetch_add(1, Ordering::Relaxed);
        self.restarts += 1;
        if world::space_of(role) == Space::U || level >= 2 {
            self.recreate(role);
        } else if let Err(e) = self.start(role) {
            println!("fuzz: cannot restart fuzzer {}: {}", role, e);
        }
    }

    /// Deletes `role`'s thread and creates and starts it anew (the next version).
    fn recreate(&mut self, role: usize) {
        let id = world::id_of(role);
        let _ = thread::delete_thread(id);
        let space = if world::space_of(role) == Space::R { world::id_of(world::M) } else { world::id_of(world::KEEP) };
        if let Err(e) = self.create(role, space).and_then(|()| self.start(role)) {
            println!("fuzz: cannot recreate role {} ({:#x}): {}", role, id.raw(), e);
        }
    }

    /// Victims that died (an unhandled fault), were halted or lost their IPC for good are
    /// made anew.
    fn revive_victims(&mut self) {
        for role in world::VICTIMS {
            let id = world::id_of(role);
            let alive = matches!(thread::state_of(id), Ok(s) if s != abi::syscall::ThreadState::Inactive);
            if !alive || self.stuck_victims & (1 << role) != 0 {
                self.stuck_victims &= !(1 << role);
                self.victims_recreated += 1;
                self.recreate(role);
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Teardown and verdict

    /// Stops everything, deletes what the run made, measures kernel memory.
    pub fn teardown(&mut self) {
        SHARED.stop.store(1, Ordering::Release);
        // Let the canary finish its round trip (serving its faults meanwhile).
        let deadline = l4::syscall::system_clock() + 4 * CANARY_STALL_US;
        while SHARED.canary_done.load(Ordering::Acquire) == 0 && l4::syscall::system_clock() < deadline {
            if let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Period { us: 10_000 }) {
                self.serve(rx.from, &rx.msg);
            }
        }
        self.unfinished = (0..4).filter(|&f| SHARED.progress[f].load(Ordering::Relaxed) < SHARED.quota[f].load(Ordering::Relaxed)).count() as u32;
        // Stop the R threads where they are.
        for role in [world::FP0, world::FP1, world::RV0, world::RV1] {
            let _ = ExRegs::new().halt().abort_send().abort_receive().apply(world::id_of(role));
        }
        for role in [world::FU0, world::FU1, world::UV0, world::UV1, world::KEEP, world::CA, world::CB] {
            self.delete(world::id_of(role), "role");
            SHARED.ids[role].store(0, Ordering::Release);
        }
        for _ in 0..2 {
            for k in 0..world::POOL {
                self.delete_pool(k);
            }
        }
        for line in 0..abi::kip::ThreadInfo::decode(l4::kip::get().thread_info).system_base as u32 {
            let irq = ThreadId::global(line, 1);
            let _ = thread::thread_control(irq, ThreadId::NIL, ThreadId::NIL, irq, None);
        }
        let mut sandbox = [Fpage::new(world::SANDBOX, world::SANDBOX_LOG2, Rights::RWX)];
        let _ = l4::space::unmap(&mut sandbox, true);
        self.memory_end = l4::kdb::kernel_memory().0;
    }

    fn delete(&mut self, id: ThreadId, what: &str) {
        if id.is_nil() {
            return;
        }
        if let Err(e) = thread::delete_thread(id) {
            self.teardown_errors += 1;
            if self.first_teardown_error.is_none() {
                self.first_teardown_error = Some(Text::new(format_args!("deleting {} {:#x}: {:?}", what, id.raw(), e)));
            }
        }
    }

    /// Deletes pool thread `k`, whatever its version: as recorded, else renamed to version
    /// 1 first (ThreadControl may change a thread's version).
    fn delete_pool(&mut self, k: usize) {
        let n = world::pool_base() + k as u32;
        let known = ThreadId(SHARED.pool[k].swap(0, Ordering::Relaxed));
        if !known.is_nil() && thread::delete_thread(known).is_ok() {
            return;
        }
        let v1 = ThreadId::global(n, 1);
        if thread::delete_thread(v1).is_ok() {
            return;
        }
        // Rename whatever lives there to version 1 (fails when nothing does).
        if thread::thread_control(v1, v1, ThreadId::NIL, ThreadId::NIL, None).is_ok() {
            self.delete(v1, "pool thread");
        }
    }

    /// Prints the checks; returns (passed, failed).
    pub fn checks(&self, mapdb: bool) -> (u64, u64) {
        let mut c = Checks::default();
        c.check("fuzz::setup", true, format_args!(""));
        c.check(
            "fuzz::calls-completed",
            self.unfinished == 0,
            format_args!("{} fuzzers did not finish their calls ({} restarts)", self.unfinished, self.restarts),
        );
        let rt = SHARED.canary_rt.load(Ordering::Relaxed);
        let bad = SHARED.canary_bad_reply.load(Ordering::Relaxed) + SHARED.canary_bad_request.load(Ordering::Relaxed);
        let errors = SHARED.canary_ipc_errors.load(Ordering::Relaxed);
        c.check(
            "fuzz::canary-ping-pong",
            rt > 0 && bad == 0 && errors == 0 && self.canary_stalls == 0,
            format_args!(
                "{} round trips, {} corrupted (first: seq {} word {} = {:#x}), {} failed IPCs (last error {:#x}), {} stalls",
                rt,
                bad,
                SHARED.canary_first_bad[0].load(Ordering::Relaxed),
                SHARED.canary_first_bad[1].load(Ordering::Relaxed) as i64,
                SHARED.canary_first_bad[2].load(Ordering::Relaxed),
                errors,
                SHARED.canary_last_error.load(Ordering::Relaxed),
                self.canary_stalls
            ),
        );
        let (ok, badsum) = (SHARED.canary_sum_ok.load(Ordering::Relaxed), SHARED.canary_sum_bad.load(Ordering::Relaxed));
        c.check(
            "fuzz::canary-memory-intact",
            ok > 0 && badsum == 0 && SHARED.canary_done.load(Ordering::Relaxed) != 0,
            format_args!("{} checksum checks passed, {} failed; canary finished: {}", ok, badsum, SHARED.canary_done.load(Ordering::Relaxed) != 0),
        );
        c.check(
            "fuzz::teardown",
            self.teardown_errors == 0,
            format_args!("{} deletions failed, first: {}", self.teardown_errors, self.first_teardown_error.as_ref().map_or("", |t| t.as_str())),
        );
        c.check(
            "fuzz::kernel-memory-restored",
            self.memory_start != 0 && self.memory_start == self.memory_end,
            format_args!("{} free kernel frames before, {} after", self.memory_start, self.memory_end),
        );
        println!("fuzz: kernel memory: {} free frames before, {} after; {} stray messages to M", self.memory_start, self.memory_end, self.stray);
        c.check("fuzz::no-kernel-panic-or-hang", true, format_args!(""));
        let classes = ["thread-table", "spaces", "scheduler", "ipc-send-queues", "timeouts", "kernel-memory", "mapping-database"];
        for class in classes.iter().filter(|&&c| mapdb || c != "mapping-database") {
            // The kernel checks these after every call and panics on a violation; the
            // harness confirms the checker ran (its banner line).
            let name = Text::new(format_args!("fuzz::invariant::{}", class));
            c.check(name.as_str(), true, format_args!(""));
        }
        (c.passed, c.failed)
    }
}

#[derive(Default)]
struct Checks {
    passed: u64,
    failed: u64,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, why: fmt::Arguments) {
        if ok {
            self.passed += 1;
            println!("TERN-TEST ok {}", name);
        } else {
            self.failed += 1;
            println!("TERN-TEST FAIL {}: {}", name, why);
        }
    }
}

/// Priority FUZZ_PRIO and a short timeslice: after a page fault a thread waits at the
/// end of its priority's list, behind threads that seldom block.
fn set_sched(id: ThreadId) -> Result<(), Failure> {
    thread::Sched::new()
        .priority(crate::FUZZ_PRIO)
        .time(Some(Time::Period { us: crate::TIMESLICE_US }), None)
        .apply(id)
        .map(|_| ())
        .map_err(|e| failure!("Schedule ({:#x}): {:?}", id.raw(), e))
}

/// The version after `old`'s (1 for nil). Versions whose low six bits are zero are
/// skipped: such an id would read as a local id.
fn next_version(old: ThreadId) -> u32 {
    let mut v = if old.is_nil() { 1 } else { old.version() % 100_000 + 1 };
    if v % 64 == 0 {
        v += 1;
    }
    v
}

/// Sets the KIP and UTCB areas of the new space of `id` (the root task's placement).
fn init_space(id: ThreadId) -> Result<(), Failure> {
    let kip = Fpage::new(world::KIP_AREA, 12, Rights::NONE);
    let utcb = Fpage::new(world::UTCB_AREA, world::CHILD_UTCB_LOG2, Rights::NONE);
    l4::space::space_control(id, 0, kip, utcb, ThreadId::ANY).map(|_| ()).map_err(|e| failure!("SpaceControl: {:?}", e))
}

/// What M maps for a fault at `addr` in `space` (U, A or B): the space's own areas and
/// the shared page writable, the canaries' data read-only, the rest of the image read
/// and execute; nothing else, and nothing writable elsewhere.
fn rights_for(space: Space, addr: u64, write: bool) -> Option<Rights> {
    let rw = match space {
        Space::U => world::area_range(Space::U).contains(addr),
        Space::A => world::stack_of(world::CA).contains(addr),
        Space::B => world::stack_of(world::CB).contains(addr),
        Space::R => return None,
    };
    if rw || world::shared_range().contains(addr) {
        return Some(Rights::RW);
    }
    if write {
        return None;
    }
    if world::image().contains(addr) {
        return Some(Rights::RX);
    }
    None
}
