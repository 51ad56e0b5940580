//! Timeouts in every X.2 form: never, zero, relative periods (in several mantissa and
//! exponent forms) and absolute time points, for the send and the receive phase
//! separately. A timeout must never fire early and must fire within [`slack`] of its
//! time; both are measured with SystemClock.

use abi::error::{IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::{Time, Timeouts};

use crate::env::{main_id, Thread, Watchdog, PRIO};
use crate::harness::{ensure, fail, now, Check, Runner, Why};
use crate::jobs::{self, lane, OUT, PARAM, PARAM2, T0, T1};
use crate::wire::{self, expect_err, expect_ok, ms, tmo};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("timeout");
    r.check("receive-zero-nothing-pending", receive_zero);
    r.check("receive-zero-open-nothing-pending", receive_zero_open);
    r.check("send-zero-receiver-not-waiting", send_zero);
    r.check("receive-period-2ms", || receive_period(2_000));
    r.check("receive-period-15ms", || receive_period(15_000));
    r.check("receive-period-60ms", || receive_period(60_000));
    r.check("send-period-20ms", send_period);
    r.check("call-send-phase-timeout", call_send_phase);
    r.check("call-receive-phase-timeout", call_receive_phase);
    r.check("receive-never-waits-for-sender", receive_never);
    r.check("send-never-waits-for-receiver", send_never);
    r.check("receive-point", receive_point);
    r.check("send-point", send_point);
    r.check("receive-point-300ms", receive_point_far);
    r.check("period-mantissa-exponent-forms", period_forms);
    r.check("zero-time-any-exponent", zero_forms);
    r.check("satisfied-timeout-does-not-fire-later", stale_timeout);
    r.check("timeouts-fire-in-deadline-order", fire_order);
}

/// How late a timeout of `us` may fire: 100 ms plus half the period. Generous on
/// purpose: a TCG guest shares the host's cores, and its clock runs on while QEMU waits
/// for a CPU. Early is never allowed.
pub fn slack(us: u64) -> u64 {
    100_000 + us / 2
}

/// Fails unless an interval `dt` that should last `want` µs is not shorter and at most
/// [`slack`] longer.
pub fn within(dt: u64, want: u64, what: &str) -> Check {
    ensure!(
        dt >= want,
        "{} ended after {} µs, earlier than its {} µs",
        what,
        dt,
        want
    );
    ensure!(
        dt <= want + slack(want),
        "{} ended after {} µs, asked {} µs (slack {} µs)",
        what,
        dt,
        want,
        slack(want)
    );
    Ok(())
}

/// A thread that exists and never sends or receives anything useful.
fn silent() -> Result<Thread, Why> {
    Thread::spawn(jobs::park, 0, PRIO)
}

/// Receives from `from` with the raw timeouts word; returns the outcome and the duration.
fn timed_receive(from: ThreadId, t: Timeouts) -> (u64, u64) {
    let t0 = now();
    let r = wire::ipc(ThreadId::NIL, from, t, MsgTag::NIL);
    (r.outcome(), now() - t0)
}

/// Sends an empty message to `to` with the raw timeouts word.
fn timed_send(to: ThreadId, t: Timeouts) -> (u64, u64) {
    let tag = wire::load(1, &[], &[]);
    let t0 = now();
    let r = wire::ipc(to, ThreadId::NIL, t, tag);
    (r.outcome(), now() - t0)
}

/// Receive-only timeouts word with receive time `t`.
fn rcv(t: Time) -> Timeouts {
    tmo(Time::Never, t)
}

/// Send-only timeouts word with send time `t`.
fn snd(t: Time) -> Timeouts {
    tmo(t, Time::Never)
}

/// A zero timeout must end at once (well within the slack of a zero period).
fn immediate(dt: u64, what: &str) -> Check {
    ensure!(dt <= slack(0), "{} took {} µs", what, dt);
    Ok(())
}

fn receive_zero() -> Check {
    let s = silent()?;
    let (out, dt) = timed_receive(s.id(), rcv(Time::Zero));
    expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
    immediate(dt, "a zero receive timeout")
}

fn receive_zero_open() -> Check {
    let (out, dt) = timed_receive(ThreadId::ANY, rcv(Time::Zero));
    expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
    immediate(dt, "a zero open receive")
}

fn send_zero() -> Check {
    let s = silent()?;
    let (out, dt) = timed_send(s.id(), snd(Time::Zero));
    expect_err(out, IpcErrorCode::Timeout, Phase::Send)?;
    immediate(dt, "a zero send timeout")
}

fn receive_period(us: u64) -> Check {
    let s = silent()?;
    let (out, dt) = timed_receive(s.id(), rcv(Time::Period { us }));
    expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
    within(dt, us, "the receive")
}

fn send_period() -> Check {
    let s = silent()?;
    let (out, dt) = timed_send(s.id(), snd(ms(20)));
    expect_err(out, IpcErrorCode::Timeout, Phase::Send)?;
    within(dt, 20_000, "the send")
}

fn call_send_phase() -> Check {
    let s = silent()?;
    let tag = wire::load(1, &[], &[]);
    let t0 = now();
    let r = wire::ipc(s.id(), s.id(), tmo(ms(10), Time::Never), tag);
    let dt = now() - t0;
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Send)?;
    within(dt, 10_000, "the call's send phase")
}

/// Receives one message from PARAM, then never answers.
fn receive_then_park(i: usize) {
    jobs::receive(i);
    l4::thread::park()
}

fn call_receive_phase() -> Check {
    jobs::clear_all();
    let w = jobs::local(receive_then_park, 0, main_id(), 0)?;
    let tag = wire::load(1, &[], &[]);
    let t0 = now();
    let r = wire::ipc(w.id(), w.id(), tmo(Time::Never, ms(15)), tag);
    let dt = now() - t0;
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Receive)?;
    expect_ok(lane(0).get(OUT), "the partner's receive (the send phase)")?;
    within(dt, 15_000, "the call's receive phase")
}

/// Sleeps PARAM2 µs, then sends the lane's message to PARAM.
fn sleep_then_send(i: usize) {
    let _ = l4::ipc::sleep(Time::Period {
        us: lane(i).get(PARAM2),
    });
    lane(i).set(PARAM2, 0);
    jobs::send(i);
}

/// Sleeps PARAM2 µs, then receives from PARAM.
fn sleep_then_receive(i: usize) {
    let _ = l4::ipc::sleep(Time::Period {
        us: lane(i).get(PARAM2),
    });
    lane(i).set(PARAM2, 0);
    jobs::receive(i);
}

fn receive_never() -> Check {
    jobs::clear_all();
    let w = jobs::local(sleep_then_send, 0, main_id(), 40_000)?;
    let dog = Watchdog::arm(main_id(), 3_000_000)?;
    let (out, dt) = timed_receive(w.id(), rcv(Time::Never));
    if dog.disarm() {
        fail!(
            "no message after 3 s (a watchdog aborted the receive: {})",
            wire::Shown(out)
        );
    }
    expect_ok(out, "receive with timeout never")?;
    ensure!(
        dt >= 40_000,
        "the receive returned after {} µs, before the sender sent",
        dt
    );
    Ok(())
}

fn send_never() -> Check {
    jobs::clear_all();
    let w = jobs::local(sleep_then_receive, 0, main_id(), 40_000)?;
    let dog = Watchdog::arm(main_id(), 3_000_000)?;
    let (out, dt) = timed_send(w.id(), snd(Time::Never));
    if dog.disarm() {
        fail!(
            "the send did not end in 3 s (a watchdog aborted it: {})",
            wire::Shown(out)
        );
    }
    expect_ok(out, "send with timeout never")?;
    ensure!(
        dt >= 40_000,
        "the send returned after {} µs, before the receiver received",
        dt
    );
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "the receive")
}

/// A time point `us` from now: the encoded value and the absolute clock value it names
/// (rounded up by the encoding, never earlier than asked).
fn point(us: u64) -> Result<(Time, u64), Why> {
    let t = now();
    let at = t + us;
    let Some(raw) = Time::point_us(at, t) else {
        fail!("cannot encode a time point {} µs ahead", us);
    };
    Ok((Time::Point { raw }, at))
}

fn receive_point() -> Check {
    let s = silent()?;
    let (p, at) = point(20_000)?;
    let r = wire::ipc(ThreadId::NIL, s.id(), rcv(p), MsgTag::NIL);
    let end = now();
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Receive)?;
    ensure!(
        end >= at,
        "the receive ended at {} µs, before the point {} µs",
        end,
        at
    );
    ensure!(
        end <= at + slack(20_000),
        "the receive ended at {} µs, {} µs after the point",
        end,
        end - at
    );
    Ok(())
}

fn send_point() -> Check {
    let s = silent()?;
    let (p, at) = point(25_000)?;
    let tag = wire::load(1, &[], &[]);
    let r = wire::ipc(s.id(), ThreadId::NIL, snd(p), tag);
    let end = now();
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Send)?;
    ensure!(
        end >= at,
        "the send ended at {} µs, before the point {} µs",
        end,
        at
    );
    ensure!(
        end <= at + slack(25_000),
        "the send ended at {} µs, {} µs after the point",
        end,
        end - at
    );
    Ok(())
}

fn receive_point_far() -> Check {
    let s = silent()?;
    let (p, at) = point(300_000)?;
    let r = wire::ipc(ThreadId::NIL, s.id(), rcv(p), MsgTag::NIL);
    let end = now();
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Receive)?;
    ensure!(
        end >= at,
        "the receive ended at {} µs, before the point {} µs",
        end,
        at
    );
    ensure!(
        end <= at + slack(300_000),
        "the receive ended {} µs after the point",
        end - at
    );
    Ok(())
}

/// A raw period: mantissa `m`, exponent `e`.
const fn period(m: u16, e: u16) -> u16 {
    (e << 10) | m
}

fn period_forms() -> Check {
    let s = silent()?;
    // 32 ms three ways: 1000 * 2^5, 500 * 2^6, 125 * 2^8.
    for (m, e) in [(1000, 5), (500, 6), (125, 8)] {
        let (out, dt) = timed_receive(s.id(), Timeouts::new(0, period(m, e)));
        expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
        within(dt, 32_000, "a 32 ms receive period")?;
    }
    // The send timeout sits in bits 16..31: 8 ms as 1 * 2^13.
    let tag = wire::load(1, &[], &[]);
    let t0 = now();
    let r = wire::ipc(s.id(), ThreadId::NIL, Timeouts::new(period(1, 13), 0), tag);
    let dt = now() - t0;
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Send)?;
    within(dt, 8_192, "an 8 ms send period (1 * 2^13)")
}

fn zero_forms() -> Check {
    let s = silent()?;
    // m = 0 is zero time whatever the exponent.
    for e in [1u16, 7, 20, 31] {
        let (out, dt) = timed_receive(s.id(), Timeouts::new(0, period(0, e)));
        expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
        immediate(dt, "a zero period")?;
    }
    Ok(())
}

fn stale_timeout() -> Check {
    jobs::clear_all();
    let w = jobs::local(sleep_then_send, 0, main_id(), 5_000)?;
    let (out, dt) = timed_receive(w.id(), rcv(ms(60)));
    expect_ok(out, "a receive satisfied before its timeout")?;
    ensure!(dt < 60_000, "the message came only after {} µs", dt);
    // If the first timeout were left armed it would cut this sleep short.
    let s = silent()?;
    let (out, dt) = timed_receive(s.id(), rcv(ms(150)));
    expect_err(out, IpcErrorCode::Timeout, Phase::Receive)?;
    within(dt, 150_000, "the next receive")
}

/// Receives from a thread that never sends, with timeout PARAM2 µs; records T0/T1.
fn receive_silent(i: usize) {
    let l = lane(i);
    let t = Time::Period { us: l.get(PARAM2) };
    l.set(T0, now());
    let r = wire::ipc(ThreadId::NIL, ThreadId(l.get(PARAM)), rcv(t), MsgTag::NIL);
    l.set(T1, now());
    l.set(OUT, r.outcome());
}

fn fire_order() -> Check {
    jobs::clear_all();
    let s = silent()?;
    let periods = [45_000u64, 15_000, 30_000];
    let mut threads: [Option<Thread>; 3] = [None, None, None];
    for (i, &p) in periods.iter().enumerate() {
        threads[i] = Some(jobs::local(receive_silent, i, s.id(), p)?);
    }
    for (i, t) in threads.iter().enumerate() {
        if let Some(t) = t {
            ensure!(t.wait_done(2_000_000), "thread {} did not time out", i);
        }
    }
    for (i, &p) in periods.iter().enumerate() {
        let l = lane(i);
        expect_err(l.get(OUT), IpcErrorCode::Timeout, Phase::Receive)?;
        within(l.get(T1) - l.get(T0), p, "a receive")?;
    }
    let (a, b, c) = (lane(1).get(T1), lane(2).get(T1), lane(0).get(T1));
    ensure!(
        a <= b && b <= c,
        "the 15/30/45 ms timeouts ended at {} / {} / {} µs",
        a,
        b,
        c
    );
    Ok(())
}
