//! Delayed preemption: Schedule's PreemptionControl (maximum delay, sensitive priority)
//! and the PreemptFlags byte of the UTCB.
//!
//! Each scenario: L (priority 60) sets the `d` flag and spins in a "critical section";
//! H sleeps 20 ms and then wants the processor; the main thread (100) sleeps meanwhile.
//!
//! | scenario   | L's parameters            | H   | expected                                  |
//! |------------|---------------------------|-----|-------------------------------------------|
//! | cooperate  | delay 40 ms, sensitive 80 | 80  | H deferred, `I` set; L's ThreadSwitch runs H and clears `I` |
//! | overstay   | delay 20 ms, sensitive 80 | 80  | L ignores `I`: H runs about 20 ms late, before L ends |
//! | above      | delay 40 ms, sensitive 70 | 80  | H preempts at once, `I` never set          |

use abi::syscall::PreemptionControl;
use l4::ipc::{self, ms};
use l4::thread::Sched;
use l4::utcb;

use crate::harness::{ensure, fail, now, spin_for, wait_until, Board, Check, Context, Tally, Why};
use crate::workers::Worker;

static B: Board = Board::new();

/// Board words.
mod w {
    /// When H began its 20 ms sleep, and when it ran again.
    pub const H_SLEEP: usize = 0;
    pub const H_RAN_AT: usize = 1;
    /// When L first saw the pending flag (0 = never).
    pub const L_SAW_PENDING: usize = 2;
    /// Whether H had run when L saw the flag, and 5 ms later, just before L yielded.
    pub const H_RAN_WHEN_SEEN: usize = 3;
    pub const H_RAN_BEFORE_YIELD: usize = 4;
    /// After L's ThreadSwitch: H had run (1/0), the flag was still set (1/0).
    pub const H_RAN_AFTER_YIELD: usize = 5;
    pub const PENDING_AFTER_YIELD: usize = 6;
    /// When L ended its critical section (overstay / above).
    pub const L_DONE_AT: usize = 7;
}

const COOPERATE: usize = 0;
const OVERSTAY: usize = 1;
const ABOVE: usize = 2;

/// H: sleep 20 ms, note when it ran.
fn w_high(_: usize) {
    B.set(w::H_SLEEP, now());
    let _ = ipc::sleep(ms(20));
    B.set(w::H_RAN_AT, now());
}

fn h_ran() -> u64 {
    (B.get(w::H_RAN_AT) != 0) as u64
}

/// L: the critical section of each scenario.
fn w_low(mode: usize) {
    utcb::set_delay_preemption(true);
    let start = now();
    match mode {
        COOPERATE => {
            while !utcb::preemption_pending() && now() < start + 300_000 {}
            if utcb::preemption_pending() {
                B.set(w::L_SAW_PENDING, now());
            }
            B.set(w::H_RAN_WHEN_SEEN, h_ran());
            spin_for(5_000);
            B.set(w::H_RAN_BEFORE_YIELD, h_ran());
            utcb::set_delay_preemption(false);
            l4::thread::yield_now();
            B.set(w::H_RAN_AFTER_YIELD, h_ran());
            B.set(w::PENDING_AFTER_YIELD, utcb::preemption_pending() as u64);
        }
        _ => {
            // Ignore the flag: spin 150 ms, noting when it appeared.
            while now() < start + 150_000 {
                if B.get(w::L_SAW_PENDING) == 0 && utcb::preemption_pending() {
                    B.set(w::L_SAW_PENDING, now());
                }
            }
            B.set(w::L_DONE_AT, now());
            utcb::set_delay_preemption(false);
            l4::thread::yield_now();
        }
    }
}

/// What one scenario saw.
struct Seen {
    setup: Result<(), Why>,
    /// µs between the end of H's sleep and H running (None: H never ran).
    h_late: Option<u64>,
    saw_pending: Option<u64>,
    h_ran_when_seen: bool,
    h_ran_before_yield: bool,
    h_ran_after_yield: bool,
    pending_after_yield: bool,
    l_done_at: u64,
    h_ran_at: u64,
}

fn scenario(mode: usize, max_delay_us: u16, sensitive: u8) -> Seen {
    B.clear();
    let setup = run_scenario(mode, max_delay_us, sensitive);
    let wake = B.get(w::H_SLEEP) + 20_000;
    let ran = B.get(w::H_RAN_AT);
    Seen {
        setup,
        h_late: (ran != 0).then(|| ran.saturating_sub(wake)),
        saw_pending: (B.get(w::L_SAW_PENDING) != 0).then(|| B.get(w::L_SAW_PENDING)),
        h_ran_when_seen: B.get(w::H_RAN_WHEN_SEEN) != 0,
        h_ran_before_yield: B.get(w::H_RAN_BEFORE_YIELD) != 0,
        h_ran_after_yield: B.get(w::H_RAN_AFTER_YIELD) != 0,
        pending_after_yield: B.get(w::PENDING_AFTER_YIELD) != 0,
        l_done_at: B.get(w::L_DONE_AT),
        h_ran_at: ran,
    }
}

fn run_scenario(mode: usize, max_delay_us: u16, sensitive: u8) -> Check {
    let low = Worker::create(Some(60))?;
    Sched::new()
        .preemption(PreemptionControl {
            max_delay: max_delay_us,
            sensitive_prio: sensitive,
        })
        .apply(low.id())
        .ctx("Schedule (PreemptionControl)")?;
    let high = Worker::create(Some(80))?;
    // H starts first (it outranks L) and begins its sleep; then L spins.
    high.start(w_high, 0)?;
    low.start(w_low, mode)?;
    let slept = ipc::sleep(ms(300));
    let _ = wait_until(200_000, || high.done() && low.done());
    // Parameters go with the thread: clear them before it is deleted.
    let _ = Sched::new()
        .preemption(PreemptionControl {
            max_delay: 0,
            sensitive_prio: 0,
        })
        .apply(low.id());
    drop((low, high));
    slept.ctx("the main thread cannot sleep")?;
    Ok(())
}

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run(
        "sched::preemption-control-sensitive-out-of-range",
        sensitive_range,
    );
    let c = scenario(COOPERATE, 40_000, 80);
    s.run("sched::delayed-preemption-defers-and-sets-pending", || {
        c.deferred()
    });
    s.run(
        "sched::delayed-preemption-thread-switch-runs-preemptor",
        || c.yielded(),
    );
    let o = scenario(OVERSTAY, 20_000, 80);
    s.run(
        "sched::delayed-preemption-max-delay-exceeded-preempts",
        || o.overstayed(),
    );
    let a = scenario(ABOVE, 40_000, 70);
    s.run(
        "sched::delayed-preemption-above-sensitive-preempts-at-once",
        || a.above(),
    );
}

fn sensitive_range() -> Check {
    let w = Worker::create(None)?;
    crate::harness::expect_sys(
        Sched::raw(!0, !0, !0, 1 << 24).apply(w.id()),
        abi::error::SysError::InvalidParam,
    )
}

impl Seen {
    fn ran(&self) -> Check {
        if let Err(e) = &self.setup {
            fail!("scenario: {}", e);
        }
        ensure!(self.h_late.is_some(), "the high-priority thread never ran");
        Ok(())
    }

    fn deferred(&self) -> Check {
        self.ran()?;
        ensure!(
            self.saw_pending.is_some(),
            "L never saw the pending flag (H late by {:?} µs)",
            self.h_late
        );
        ensure!(
            !self.h_ran_when_seen,
            "H had run already when L saw the pending flag"
        );
        ensure!(
            !self.h_ran_before_yield,
            "H ran during L's critical section (before its ThreadSwitch)"
        );
        Ok(())
    }

    fn yielded(&self) -> Check {
        self.ran()?;
        ensure!(
            self.h_ran_after_yield,
            "H had not run when L's ThreadSwitch returned"
        );
        ensure!(
            !self.pending_after_yield,
            "the pending flag was still set after ThreadSwitch"
        );
        Ok(())
    }

    fn overstayed(&self) -> Check {
        self.ran()?;
        let late = self.h_late.unwrap_or(0);
        ensure!(
            self.saw_pending.is_some(),
            "the kernel never set the pending flag"
        );
        ensure!(
            (12_000..120_000).contains(&late),
            "H ran {} µs after its sleep ended (max delay 20 ms)",
            late
        );
        ensure!(
            self.l_done_at == 0 || self.h_ran_at < self.l_done_at,
            "H ran only after L left its 150 ms critical section"
        );
        Ok(())
    }

    fn above(&self) -> Check {
        self.ran()?;
        let late = self.h_late.unwrap_or(0);
        ensure!(
            late < 10_000,
            "H (above L's sensitive priority) ran {} µs after its sleep ended",
            late
        );
        ensure!(
            self.saw_pending.is_none(),
            "the pending flag was set for a rival above the sensitive priority"
        );
        Ok(())
    }
}
