//! IPC errors exactly as X.2 defines them: "non-existing partner" for nil-version,
//! stale, deleted and bad local ids; "cancelled" from ExchangeRegisters aborts, each in
//! the phase it hit (and only the phase it names); and deletion: a deleted thread
//! releases every partner blocked on it with "non-existing partner", and a thread
//! blocked in IPC can be deleted.

use abi::error::{IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::thread::ExRegs;

use crate::env::{
    fresh_id, main_id, root_local_id, state, wait_blocked, Space, Thread, Watchdog, PRIO,
    UNUSED_ROOT_SLOT,
};
use crate::harness::{ensure, fail, pause, Check, Context, Runner};
use crate::jobs::{self, lane, OUT, PARAM, PARAM2};
use crate::wire::{self, expect_err, expect_ok, ms, tmo, OK};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("error");
    r.check("send-nonexistent-thread", send_nonexistent);
    r.check("send-nil-version", send_nil_version);
    r.check("send-stale-version", send_stale);
    r.check("send-deleted-thread", send_deleted);
    r.check("send-unused-local-id", send_bad_local);
    r.check("send-local-id-outside-utcb-area", send_local_outside);
    r.check("receive-nonexistent-thread", receive_nonexistent);
    r.check("receive-unused-local-id", receive_bad_local);
    r.check("call-nonexistent-fails-in-send-phase", call_nonexistent);
    r.group("abort");
    r.check("abort-receive-cancels-receive", abort_receive);
    r.check("abort-send-cancels-send", abort_send);
    r.check("abort-send-in-call-send-phase", abort_call_send);
    r.check("halted-fast-blocked-caller-aborted-then-resumed", abort_halted_fast_blocked);
    r.check("abort-receive-in-call-receive-phase", abort_call_receive);
    r.check("abort-receive-spares-a-send", abort_receive_spares_send);
    r.check("abort-send-spares-a-receive", abort_send_spares_receive);
    r.group("delete");
    r.check("receiver-deleted-releases-queued-senders", delete_receiver);
    r.check("sender-deleted-releases-closed-receiver", delete_sender);
    r.check("unrelated-deletion-spares-open-receiver", delete_unrelated);
    r.check("thread-blocked-in-receive-can-be-deleted", delete_receiving);
    r.check("thread-blocked-in-send-leaves-no-message", delete_sending);
    r.check("caller-deleted-reply-fails", delete_caller);
    r.check("callee-deleted-releases-caller", delete_callee);
    r.check(
        "receiver-in-other-space-deleted-releases-sender",
        delete_child_receiver,
    );
}

fn send_to(to: ThreadId, timeout: Time) -> u64 {
    let tag = wire::load(1, &[1], &[]);
    wire::ipc(to, ThreadId::NIL, tmo(timeout, Time::Never), tag).outcome()
}

fn receive_from(from: ThreadId, timeout: Time) -> u64 {
    wire::ipc(ThreadId::NIL, from, tmo(Time::Never, timeout), MsgTag::NIL).outcome()
}

fn send_nonexistent() -> Check {
    expect_err(
        send_to(fresh_id(), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Send,
    )
}

fn send_nil_version() -> Check {
    // A thread number in use with version 0: not a valid global id of that thread.
    let w = Thread::spawn(jobs::park, 0, PRIO)?;
    let id = ThreadId::global(w.id().number(), 0);
    expect_err(send_to(id, ms(20)), IpcErrorCode::NotExist, Phase::Send)
}

fn send_stale() -> Check {
    let w = Thread::spawn(jobs::park, 0, PRIO)?;
    let id = ThreadId::global(w.id().number(), w.id().version() + 1);
    expect_err(send_to(id, ms(20)), IpcErrorCode::NotExist, Phase::Send)
}

fn send_deleted() -> Check {
    let mut w = Thread::spawn(jobs::park, 0, PRIO)?;
    let id = w.id();
    w.delete().ctx("ThreadControl (delete)")?;
    expect_err(send_to(id, ms(20)), IpcErrorCode::NotExist, Phase::Send)
}

/// A local id of a root UTCB slot no thread of this program uses.
fn unused_local() -> ThreadId {
    root_local_id(UNUSED_ROOT_SLOT)
}

fn send_bad_local() -> Check {
    expect_err(
        send_to(unused_local(), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Send,
    )
}

fn send_local_outside() -> Check {
    // Low six bits zero (a local id), but not the MR0 address of any UTCB.
    let id = ThreadId::local(0x0200_0200);
    expect_err(send_to(id, ms(20)), IpcErrorCode::NotExist, Phase::Send)
}

fn receive_nonexistent() -> Check {
    expect_err(
        receive_from(fresh_id(), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Receive,
    )
}

fn receive_bad_local() -> Check {
    expect_err(
        receive_from(unused_local(), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Receive,
    )
}

fn call_nonexistent() -> Check {
    let id = fresh_id();
    let tag = wire::load(1, &[], &[]);
    let r = wire::ipc(id, id, tmo(ms(20), ms(20)), tag);
    expect_err(r.outcome(), IpcErrorCode::NotExist, Phase::Send)
}

/// Receives from PARAM with timeout never (records the outcome).
fn receive_never(i: usize) {
    let l = lane(i);
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId(l.get(PARAM)),
        tmo(Time::Never, Time::Never),
        MsgTag::NIL,
    );
    jobs::record(l, &r);
}

/// Sends to PARAM with timeout never.
fn send_never(i: usize) {
    let l = lane(i);
    let tag = wire::load(jobs::lane_label(i), &jobs::lane_words(i), &[]);
    let r = wire::ipc(
        ThreadId(l.get(PARAM)),
        ThreadId::NIL,
        tmo(Time::Never, Time::Never),
        tag,
    );
    l.set(OUT, r.outcome());
}

/// Calls PARAM with timeouts never.
fn call_never(i: usize) {
    let l = lane(i);
    let to = ThreadId(l.get(PARAM));
    let tag = wire::load(jobs::lane_label(i), &jobs::lane_words(i), &[]);
    let r = wire::ipc(to, to, tmo(Time::Never, Time::Never), tag);
    jobs::record(l, &r);
}

/// Aborts `t`'s IPC with `req` once it is blocked (`receiving` or sending); checks the
/// old state ExchangeRegisters reports.
fn abort(t: &Thread, receiving: bool, req: ExRegs) -> Check {
    ensure!(
        wait_blocked(t.id(), receiving, 2_000_000),
        "the thread never blocked (state {:?})",
        state(t.id())
    );
    let out = req.apply(t.id()).ctx("ExchangeRegisters (abort)")?;
    ensure!(
        out.state.receiving() == receiving && out.state.sending() != receiving,
        "ExchangeRegisters reported old state {:#x}; the thread was {}",
        out.state.0,
        if receiving { "receiving" } else { "sending" }
    );
    Ok(())
}

/// Waits for lane `i`'s outcome and checks it.
fn outcome_is(t: &Thread, i: usize, code: IpcErrorCode, phase: Phase) -> Check {
    ensure!(
        t.wait_done(2_000_000),
        "the IPC did not return (lane outcome {})",
        wire::Shown(lane(i).get(OUT))
    );
    expect_err(lane(i).get(OUT), code, phase)
}

fn abort_receive() -> Check {
    jobs::clear_all();
    let w = jobs::local(receive_never, 0, main_id(), 0)?;
    abort(&w, true, ExRegs::new().abort_receive())?;
    outcome_is(&w, 0, IpcErrorCode::Cancelled, Phase::Receive)
}

fn abort_send() -> Check {
    jobs::clear_all();
    let w = jobs::local(send_never, 0, main_id(), 0)?;
    abort(&w, false, ExRegs::new().abort_send())?;
    outcome_is(&w, 0, IpcErrorCode::Cancelled, Phase::Send)
}

fn abort_call_send() -> Check {
    jobs::clear_all();
    let w = jobs::local(call_never, 0, main_id(), 0)?;
    abort(&w, false, ExRegs::new().abort_send().abort_receive())?;
    outcome_is(&w, 0, IpcErrorCode::Cancelled, Phase::Send)
}

/// A caller whose call went through the fast path waits with no kernel continuation.
/// It is halted, its receive aborted, then resumed: the full path resumes it, and its
/// IPC ends with "cancelled" (before the fix, halting dropped the mark that it needed
/// the system-call exit prepared, and it resumed on a stale kernel stack).
fn abort_halted_fast_blocked() -> Check {
    jobs::clear_all();
    let w = jobs::local(call_never, 0, main_id(), 0)?;
    // A receive without timeout, so that the call can take the fast path.
    let dog = Watchdog::arm(main_id(), 2_000_000)?;
    let r = wire::ipc(ThreadId::NIL, w.id(), tmo(Time::Never, Time::Never), MsgTag::NIL);
    let fired = dog.disarm();
    ensure!(!fired, "the call never came (watchdog)");
    expect_ok(r.outcome(), "receiving the call")?;
    ExRegs::new().halt().apply(w.id()).ctx("ExchangeRegisters (halt)")?;
    abort(&w, true, ExRegs::new().abort_receive())?;
    ExRegs::new().resume().apply(w.id()).ctx("ExchangeRegisters (resume)")?;
    outcome_is(&w, 0, IpcErrorCode::Cancelled, Phase::Receive)
}

fn abort_call_receive() -> Check {
    jobs::clear_all();
    let w = jobs::local(call_never, 0, main_id(), 0)?;
    // Take the call (the caller moves on to its receive phase) and do not answer.
    expect_ok(receive_from(w.id(), ms(2000)), "receiving the call")?;
    abort(&w, true, ExRegs::new().abort_send().abort_receive())?;
    outcome_is(&w, 0, IpcErrorCode::Cancelled, Phase::Receive)
}

fn abort_receive_spares_send() -> Check {
    jobs::clear_all();
    let w = jobs::local(send_never, 0, main_id(), 0)?;
    ensure!(
        wait_blocked(w.id(), false, 2_000_000),
        "the sender never blocked"
    );
    ExRegs::new()
        .abort_receive()
        .apply(w.id())
        .ctx("ExchangeRegisters (abort receive)")?;
    pause(2_000);
    ensure!(
        lane(0).get(OUT) == 0,
        "aborting a receive ended a send: {}",
        wire::Shown(lane(0).get(OUT))
    );
    expect_ok(
        receive_from(w.id(), ms(2000)),
        "receiving the message after the abort",
    )?;
    ensure!(w.wait_done(2_000_000), "the sender did not return");
    expect_ok(lane(0).get(OUT), "the send")
}

fn abort_send_spares_receive() -> Check {
    jobs::clear_all();
    let w = jobs::local(receive_never, 0, main_id(), 0)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never blocked"
    );
    ExRegs::new()
        .abort_send()
        .apply(w.id())
        .ctx("ExchangeRegisters (abort send)")?;
    pause(2_000);
    ensure!(
        lane(0).get(OUT) == 0,
        "aborting a send ended a receive: {}",
        wire::Shown(lane(0).get(OUT))
    );
    expect_ok(send_to(w.id(), ms(2000)), "sending after the abort")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "the receive")
}

fn delete_receiver() -> Check {
    jobs::clear_all();
    // The receiver waits for the main thread only, so the senders stay queued.
    let mut r = jobs::local(receive_never, 0, main_id(), 0)?;
    let s1 = jobs::local(send_never, 1, r.id(), 0)?;
    let s2 = jobs::local(send_never, 2, r.id(), 0)?;
    ensure!(
        wait_blocked(s1.id(), false, 2_000_000),
        "sender 1 never blocked"
    );
    ensure!(
        wait_blocked(s2.id(), false, 2_000_000),
        "sender 2 never blocked"
    );
    r.delete().ctx("ThreadControl (delete the receiver)")?;
    outcome_is(&s1, 1, IpcErrorCode::NotExist, Phase::Send)?;
    outcome_is(&s2, 2, IpcErrorCode::NotExist, Phase::Send)
}

fn delete_sender() -> Check {
    jobs::clear_all();
    let mut s = Thread::spawn(jobs::park, 0, PRIO)?;
    let r = jobs::local(receive_never, 1, s.id(), 0)?;
    ensure!(
        wait_blocked(r.id(), true, 2_000_000),
        "the receiver never blocked"
    );
    s.delete()
        .ctx("ThreadControl (delete the awaited sender)")?;
    outcome_is(&r, 1, IpcErrorCode::NotExist, Phase::Receive)
}

fn delete_unrelated() -> Check {
    jobs::clear_all();
    let r = jobs::local(receive_never, 0, ThreadId::ANY, 0)?;
    ensure!(
        wait_blocked(r.id(), true, 2_000_000),
        "the receiver never blocked"
    );
    let mut x = Thread::spawn(jobs::park, 0, PRIO)?;
    x.delete().ctx("ThreadControl (delete)")?;
    pause(2_000);
    ensure!(
        lane(0).get(OUT) == 0,
        "deleting an unrelated thread ended an open receive: {}",
        wire::Shown(lane(0).get(OUT))
    );
    expect_ok(send_to(r.id(), ms(2000)), "send")?;
    ensure!(r.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "the open receive")
}

fn delete_receiving() -> Check {
    jobs::clear_all();
    let mut r = jobs::local(receive_never, 0, main_id(), 0)?;
    ensure!(
        wait_blocked(r.id(), true, 2_000_000),
        "the receiver never blocked"
    );
    let id = r.id();
    r.delete()
        .ctx("ThreadControl (delete a receiving thread)")?;
    expect_err(send_to(id, Time::Zero), IpcErrorCode::NotExist, Phase::Send)
}

fn delete_sending() -> Check {
    jobs::clear_all();
    let mut s = jobs::local(send_never, 0, main_id(), 0)?;
    ensure!(
        wait_blocked(s.id(), false, 2_000_000),
        "the sender never blocked"
    );
    s.delete().ctx("ThreadControl (delete a sending thread)")?;
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, Time::Zero),
        MsgTag::NIL,
    );
    if !r.failed() {
        fail!(
            "a deleted sender's message still arrived (tag {:#x} from {:?})",
            r.tag.raw(),
            r.from
        );
    }
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Receive)
}

fn delete_caller() -> Check {
    jobs::clear_all();
    let mut c = jobs::local(call_never, 0, main_id(), 0)?;
    expect_ok(receive_from(c.id(), ms(2000)), "receiving the call")?;
    ensure!(
        wait_blocked(c.id(), true, 2_000_000),
        "the caller is not waiting for the reply"
    );
    let id = c.id();
    c.delete().ctx("ThreadControl (delete the caller)")?;
    expect_err(send_to(id, Time::Zero), IpcErrorCode::NotExist, Phase::Send)
}

/// Waits PARAM2 µs, then deletes thread PARAM; records the result (OK or the error
/// code with bit 60).
fn deleter(i: usize) {
    let l = lane(i);
    let _ = l4::ipc::sleep(Time::Period { us: l.get(PARAM2) });
    let r = l4::thread::delete_thread(ThreadId(l.get(PARAM)));
    l.set(OUT, if r.is_ok() { OK } else { 1 << 60 });
}

fn delete_callee() -> Check {
    jobs::clear_all();
    // The callee takes the call and never answers; a third thread deletes it.
    let mut callee = jobs::local(receive_then_park, 0, main_id(), 0)?;
    let d = jobs::local(deleter, 1, callee.id(), 30_000)?;
    let dog = Watchdog::arm(main_id(), 3_000_000)?;
    let tag = wire::load(1, &[], &[]);
    let r = wire::ipc(callee.id(), callee.id(), tmo(Time::Never, Time::Never), tag);
    if dog.disarm() {
        fail!("the caller was not released in 3 s (a watchdog aborted it)");
    }
    ensure!(d.wait_done(2_000_000), "the deleter did not finish");
    expect_ok(lane(1).get(OUT), "deleting the callee")?;
    ensure!(callee.deleted_elsewhere(), "the callee still exists");
    expect_ok(lane(0).get(OUT), "the callee's receive of the call")?;
    expect_err(r.outcome(), IpcErrorCode::NotExist, Phase::Receive)
}

/// Receives one message from PARAM, then never answers.
fn receive_then_park(i: usize) {
    jobs::receive(i);
    l4::thread::park()
}

fn delete_child_receiver() -> Check {
    jobs::clear_all();
    let mut space = Space::new()?;
    // The child waits for a message from itself (never), so the main thread's send queues.
    let mut c = space.thread(PRIO)?;
    lane(0).set(PARAM, c.id().raw());
    space.start(&c, receive_never, 0)?;
    ensure!(
        wait_blocked(c.id(), true, 2_000_000),
        "the child never blocked (state {:?})",
        state(c.id())
    );
    let d = jobs::local(deleter, 1, c.id(), 30_000)?;
    let dog = Watchdog::arm(main_id(), 3_000_000)?;
    let out = send_to(c.id(), Time::Never);
    if dog.disarm() {
        fail!("the sender was not released in 3 s (a watchdog aborted it)");
    }
    ensure!(d.wait_done(2_000_000), "the deleter did not finish");
    expect_ok(lane(1).get(OUT), "deleting the child thread")?;
    ensure!(c.deleted_elsewhere(), "the child thread still exists");
    expect_err(out, IpcErrorCode::NotExist, Phase::Send)
}
