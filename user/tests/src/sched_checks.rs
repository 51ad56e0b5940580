//! Scheduling: Schedule's argument checks and the thread states it reports, strict
//! priorities (a higher-priority thread preempts a lower one the moment it becomes
//! ready), timeslicing among equal priorities, and ThreadSwitch donating the timeslice.
//!
//! The main thread runs at [`MAIN_PRIO`]. Spinning workers always end at a clock deadline
//! of their own, so a kernel that never preempts cannot hang the suite.

use abi::error::SysError;
use abi::syscall::ThreadState;
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, ms, Msg};
use l4::thread::{self, Sched};

use crate::harness::{
    ensure, expect_sys, fail, ipc_code, now, spin_for, wait_until, yield_for, Board, Check,
    Context, Tally,
};
use crate::workers::{deadline_in, fresh_id, me, Worker, MAIN_PRIO};

static B: Board = Board::new();

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("sched::set-own-priority", set_own_priority);
    s.run("sched::state-running-self", state_self);
    s.run("sched::state-running-ready-thread", state_ready);
    s.run("sched::state-waiting", state_waiting);
    s.run("sched::state-pending-send", state_pending_send);
    s.run("sched::nonexistent", nonexistent);
    s.run("sched::stale-version", stale);
    s.run("sched::priority-out-of-range", prio_range);
    s.run("sched::time-control-reserved-bits", time_bits);
    let p = preemption_scenario();
    s.run("sched::higher-priority-preempts", || p.preempts());
    s.run("sched::strict-priority-while-higher-runs", || p.strict());
    let t = switch_scenario();
    s.run("sched::lower-priority-waits-while-higher-ready", || {
        t.waited()
    });
    s.run("sched::thread-switch-donates-timeslice", || t.donated());
    s.run("sched::equal-priorities-share-cpu", equal_share);
    s.run(
        "sched::thread-switch-to-nonexistent-returns",
        switch_nonexistent,
    );
}

fn set_own_priority() -> Check {
    let st = thread::set_priority(me(), MAIN_PRIO).ctx("Schedule (own priority)")?;
    ensure!(st == ThreadState::Running, "own state {:?}", st);
    Ok(())
}

fn state_self() -> Check {
    let st = thread::state_of(me()).ctx("Schedule")?;
    ensure!(
        st == ThreadState::Running,
        "own state {:?}, expected running",
        st
    );
    Ok(())
}

/// Board word that stops spinning workers.
const STOP: usize = 31;

/// Counts in board word `idx` until [`STOP`] is set or 1.5 s pass.
fn w_spin(idx: usize) {
    let deadline = deadline_in(1_500_000);
    let mut i = 0u64;
    while B.get(STOP) == 0 {
        B.add(idx, 1);
        i += 1;
        if i.is_multiple_of(256) && now() > deadline {
            break;
        }
    }
}

fn state_ready() -> Check {
    B.clear();
    let w = Worker::spawn(w_spin, 0, None)?;
    ensure!(
        wait_until(1_000_000, || B.get(0) > 0),
        "the worker never ran"
    );
    let st = thread::state_of(w.id()).ctx("Schedule");
    B.set(STOP, 1);
    let st = st?;
    ensure!(
        st == ThreadState::Running,
        "a ready (spinning) thread is {:?}",
        st
    );
    Ok(())
}

fn w_park(_: usize) {
    l4::thread::park()
}

fn state_waiting() -> Check {
    let w = Worker::spawn(w_park, 0, None)?;
    yield_for(20_000);
    let st = thread::state_of(w.id()).ctx("Schedule")?;
    ensure!(
        st == ThreadState::Waiting,
        "a thread blocked in receive is {:?}, expected waiting",
        st
    );
    Ok(())
}

fn w_send_forever(_: usize) {
    let r = ipc::send(me(), &Msg::new(0x99), Time::Never);
    B.set(1, 1 + ipc_code(&r));
}

fn state_pending_send() -> Check {
    B.clear();
    let w = Worker::spawn(w_send_forever, 0, None)?;
    yield_for(20_000);
    let st = thread::state_of(w.id()).ctx("Schedule")?;
    ensure!(
        B.get(1) == 0,
        "the worker's send returned ({:#x}) though nobody received",
        B.get(1).wrapping_sub(1)
    );
    ensure!(
        st == ThreadState::PendingSend,
        "a thread blocked in send is {:?}, expected pending send",
        st
    );
    Ok(())
}

fn nonexistent() -> Check {
    expect_sys(thread::state_of(fresh_id()), SysError::InvalidThread)
}

fn stale() -> Check {
    let w = Worker::create(None)?;
    let stale = ThreadId::global(w.id().number(), w.id().version() + 1);
    expect_sys(thread::state_of(stale), SysError::InvalidThread)
}

fn prio_range() -> Check {
    let w = Worker::create(None)?;
    expect_sys(
        Sched::raw(256, !0, !0, !0).apply(w.id()),
        SysError::InvalidParam,
    )
}

fn time_bits() -> Check {
    let w = Worker::create(None)?;
    expect_sys(
        Sched::raw(!0, 1 << 40, !0, !0).apply(w.id()),
        SysError::InvalidParam,
    )
}

/// Board words of the preemption scenario.
mod p {
    pub const LOW: usize = 0;
    pub const L_DONE: usize = 2;
    pub const H_WOKE: usize = 3;
    pub const LOW_AT_WAKE: usize = 4;
    pub const LOW_AFTER_SPIN: usize = 5;
    pub const L_DONE_AT_WAKE: usize = 6;
    pub const WAKE_TIME: usize = 7;
    pub const SLEEP_CODE: usize = 8;
    pub const SLEEP_START: usize = 9;
    pub const LOW_WHEN_MAIN_WOKE: usize = 10;
}

/// The low-priority thread: counts until stopped or 1.5 s pass.
fn w_low(_: usize) {
    w_spin(p::LOW);
    B.set(p::L_DONE, 1);
}

/// The high-priority thread: sleeps 50 ms, then looks at the low one's counter, spins
/// 20 ms and looks again.
fn w_high(_: usize) {
    B.set(p::SLEEP_START, now());
    let r = ipc::sleep(ms(50));
    B.set(p::WAKE_TIME, now());
    B.set(p::SLEEP_CODE, 1 + ipc_code(&r));
    B.set(p::LOW_AT_WAKE, B.get(p::LOW));
    B.set(p::L_DONE_AT_WAKE, B.get(p::L_DONE));
    spin_for(20_000);
    B.set(p::LOW_AFTER_SPIN, B.get(p::LOW));
    B.set(p::H_WOKE, 1);
}

/// What the preemption scenario saw (or why it could not run).
struct Preemption {
    setup: Result<(), crate::harness::Why>,
    low_at_wake: u64,
    low_after_spin: u64,
    woke: bool,
    sleep_code: u64,
    latency: u64,
    low_done_at_wake: bool,
    /// The low thread's count when the main thread woke, and whether H had begun its sleep.
    low_total: u64,
    high_started: bool,
}

/// Main (100) sleeps 300 ms; meanwhile L (60) spins and H (80) sleeps 50 ms, then must
/// preempt L at once and keep it off the processor while H spins.
fn preemption_scenario() -> Preemption {
    B.clear();
    let setup = run_preemption();
    Preemption {
        setup,
        woke: B.get(p::H_WOKE) != 0,
        low_at_wake: B.get(p::LOW_AT_WAKE),
        low_after_spin: B.get(p::LOW_AFTER_SPIN),
        sleep_code: B.get(p::SLEEP_CODE),
        latency: B.get(p::WAKE_TIME).saturating_sub(B.get(p::SLEEP_START)),
        low_done_at_wake: B.get(p::L_DONE_AT_WAKE) != 0,
        low_total: B.get(p::LOW_WHEN_MAIN_WOKE),
        high_started: B.get(p::SLEEP_START) != 0,
    }
}

fn run_preemption() -> Check {
    let low = Worker::create(Some(60))?;
    // A long timeslice for L, so that a kernel which switches only at the end of L's
    // timeslice shows as a long wake-up latency (best effort: the check does not need it).
    let _ = Sched::new().time(Some(ms(400)), None).apply(low.id());
    let high = Worker::create(Some(80))?;
    low.start(w_low, 0)?;
    high.start(w_high, 0)?;
    let slept = ipc::sleep(ms(300));
    B.set(p::LOW_WHEN_MAIN_WOKE, B.get(p::LOW));
    B.set(STOP, 1);
    slept.ctx("the main thread cannot sleep (IPC receive timeout)")?;
    // H ends on its own; should it still be spinning, give it the time (it cannot run
    // while main yields, being lower, but it is bounded either way).
    let _ = wait_until(100_000, || B.get(p::H_WOKE) != 0);
    drop((low, high));
    Ok(())
}

impl Preemption {
    fn ran(&self) -> Check {
        if let Err(e) = &self.setup {
            fail!("scenario: {}", e);
        }
        ensure!(
            self.woke,
            "the high-priority thread never woke from its 50 ms sleep (it {} its sleep; the low one had counted {} when main woke after 300 ms)",
            if self.high_started { "began" } else { "never began" },
            self.low_total
        );
        ensure!(
            self.sleep_code == 1,
            "its sleep ended with {:#x}, not a receive timeout",
            self.sleep_code.wrapping_sub(1)
        );
        Ok(())
    }

    fn preempts(&self) -> Check {
        self.ran()?;
        ensure!(
            self.low_at_wake > 0,
            "the low-priority thread never ran before the high one woke"
        );
        ensure!(
            !self.low_done_at_wake,
            "the high-priority thread ran only after the low one finished"
        );
        ensure!(
            (50_000..250_000).contains(&self.latency),
            "woke {} µs after a 50 ms sleep began (the low thread's timeslice is 400 ms)",
            self.latency
        );
        Ok(())
    }

    fn strict(&self) -> Check {
        self.ran()?;
        ensure!(
            self.low_after_spin == self.low_at_wake,
            "the low-priority thread counted {} while the high one spun",
            self.low_after_spin - self.low_at_wake
        );
        Ok(())
    }
}

/// Sets board word 0, then spins until [`STOP`] is set (1.5 s at most).
fn w_mark_and_spin(_: usize) {
    B.set(0, 1);
    w_spin(1);
}

/// What the ThreadSwitch scenario saw.
struct Switch {
    setup: Result<(), crate::harness::Why>,
    ran_before: bool,
    ran_after: bool,
}

/// A worker at priority 50 is ready but may not run while main (100) only yields; a
/// ThreadSwitch to it must run it.
fn switch_scenario() -> Switch {
    B.clear();
    let mut out = Switch {
        setup: Ok(()),
        ran_before: false,
        ran_after: false,
    };
    out.setup = run_switch(&mut out);
    B.set(STOP, 1);
    out
}

fn run_switch(out: &mut Switch) -> Check {
    let w = Worker::create(Some(50))?;
    w.start(w_mark_and_spin, 0)?;
    yield_for(20_000);
    out.ran_before = B.get(0) != 0;
    thread::thread_switch(w.id());
    out.ran_after = B.get(0) != 0;
    B.set(STOP, 1);
    Ok(())
}

impl Switch {
    fn waited(&self) -> Check {
        if let Err(e) = &self.setup {
            fail!("scenario: {}", e);
        }
        ensure!(
            !self.ran_before,
            "a priority-50 thread ran while the priority-100 main thread was ready"
        );
        Ok(())
    }

    fn donated(&self) -> Check {
        if let Err(e) = &self.setup {
            fail!("scenario: {}", e);
        }
        ensure!(
            self.ran_after,
            "ThreadSwitch to a ready lower-priority thread did not run it"
        );
        Ok(())
    }
}

fn equal_share() -> Check {
    B.clear();
    let a = Worker::spawn(w_spin, 0, Some(MAIN_PRIO))?;
    let b = Worker::spawn(w_spin, 1, Some(MAIN_PRIO))?;
    yield_for(150_000);
    let (a1, b1) = (B.get(0), B.get(1));
    yield_for(150_000);
    let (a2, b2) = (B.get(0), B.get(1));
    B.set(STOP, 1);
    drop((a, b));
    ensure!(
        a1 > 0 && b1 > 0,
        "after 150 ms the counters are {} and {}",
        a1,
        b1
    );
    ensure!(
        a2 > a1 && b2 > b1,
        "in the next 150 ms the counters went {} -> {} and {} -> {}",
        a1,
        a2,
        b1,
        b2
    );
    Ok(())
}

fn switch_nonexistent() -> Check {
    // X.2: a ThreadSwitch to a thread that cannot run behaves as a yield.
    let t0 = now();
    thread::thread_switch(fresh_id());
    let dt = now() - t0;
    ensure!(dt < 1_000_000, "took {} µs", dt);
    Ok(())
}
