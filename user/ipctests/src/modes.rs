//! IPC modes and the message registers: send, receive, call, reply-and-wait, closed and
//! open receive, anylocalthread, Lipc; local and global ids in From; the binding's
//! register rules (RDI, MR0..MR7 in registers on every return); MR8..MR63 through the
//! UTCB; message overflow.

use abi::error::{IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::env::{main_local, state, wait_blocked, Space, Thread, PRIO};
use crate::harness::{ensure, fail, pause, Check, Runner};
use crate::jobs::{
    self, lane, lane_label, lane_words, FROM, OUT, PARAM, PARAM2, RDI, SELF, TAG, W,
};
use crate::wire::{self, expect_err, expect_ok, ms, tmo, Shown, LONG, OK};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("mode");
    r.check("send-to-waiting-receiver", send_to_waiting);
    r.check("send-waits-for-receiver", send_waits);
    r.check("empty-message", empty_message);
    r.check("call-reply", call_reply);
    r.check("reply-and-wait-serves-five-calls", reply_wait_loop);
    r.check("reply-and-wait-takes-queued-caller", reply_wait_queued);
    r.check("closed-receive-picks-its-partner", closed_picks_partner);
    r.check("open-receive-any-thread", open_receive);
    r.check("anylocal-accepts-same-space", anylocal_same);
    r.check("anylocal-ignores-other-space", anylocal_other);
    r.check("from-local-id-same-space", from_local);
    r.check("from-global-id-other-space", from_global);
    r.check("receive-from-local-id", receive_from_local_spec);
    r.check("send-to-local-id", send_to_local_id);
    r.check("lipc-call-local", lipc_call);
    r.check("label-48-bits-and-counts", label_bits);
    r.group("regs");
    r.check("rdi-after-every-return", rdi_every_return);
    r.check("rdi-in-other-thread", rdi_other_thread);
    r.check("mr0-7-after-send-only", mrs_after_send);
    r.check("mr0-7-after-error", mrs_after_error);
    r.check("mr8-63-through-utcb", mrs_utcb);
    r.check("message-overflow-sender", overflow_sender);
    r.check("message-overflow-receiver", overflow_receiver);
}

/// Fails unless lane `i` received the lane-`k` sender message.
fn got_lane_message(i: usize, k: usize) -> Check {
    let l = lane(i);
    expect_ok(l.get(OUT), "the receive")?;
    let tag = MsgTag(l.get(TAG));
    let words = [l.get(W), l.get(W + 1), l.get(W + 2)];
    ensure!(
        tag.label() == lane_label(k)
            && tag.untyped() == 3
            && tag.typed() == 0
            && words == lane_words(k),
        "received tag {:#x} words {:x?}; sent label {:#x} words {:x?}",
        tag.raw(),
        words,
        lane_label(k),
        lane_words(k)
    );
    Ok(())
}

/// Sends label/words from the main thread with `timeout` to `to`.
fn send_words(to: ThreadId, label: u64, words: &[u64], timeout: Time) -> wire::Ret {
    let tag = wire::load(label, words, &[]);
    wire::ipc(to, ThreadId::NIL, tmo(timeout, Time::Never), tag)
}

/// Receives from `from` on the main thread with `timeout`.
fn receive(from: ThreadId, timeout: Time) -> wire::Ret {
    wire::ipc(ThreadId::NIL, from, tmo(Time::Never, timeout), MsgTag::NIL)
}

fn send_to_waiting() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, crate::env::main_id(), 0)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never waited (state {:?})",
        state(w.id())
    );
    // A zero send timeout: the receiver is waiting, so the send must not time out.
    let r = send_words(
        w.id(),
        0x77,
        &[10, 20, 30, 40, 50, 60, 70, 80, 90],
        Time::Zero,
    );
    expect_ok(r.outcome(), "send with zero timeout to a waiting receiver")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    let l = lane(0);
    expect_ok(l.get(OUT), "the receive")?;
    let tag = MsgTag(l.get(TAG));
    ensure!(
        tag.label() == 0x77 && tag.untyped() == 9,
        "received tag {:#x}",
        tag.raw()
    );
    for k in 0..9 {
        ensure!(
            l.get(W + k) == 10 * (k as u64 + 1),
            "MR{} = {}",
            k + 1,
            l.get(W + k)
        );
    }
    Ok(())
}

fn send_waits() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::send, 0, crate::env::main_id(), 0)?;
    ensure!(
        wait_blocked(w.id(), false, 2_000_000),
        "the sender never blocked (state {:?})",
        state(w.id())
    );
    ensure!(
        lane(0).get(OUT) == 0,
        "the send returned before anyone received: {}",
        Shown(lane(0).get(OUT))
    );
    let r = receive(w.id(), Time::Zero);
    expect_ok(r.outcome(), "zero-timeout receive of a pending message")?;
    ensure!(
        w.wait_done(2_000_000),
        "the sender did not return after the receive"
    );
    expect_ok(lane(0).get(OUT), "the send")?;
    let words = [
        l4::utcb::mr(1).unwrap_or(0),
        l4::utcb::mr(2).unwrap_or(0),
        l4::utcb::mr(3).unwrap_or(0),
    ];
    ensure!(
        r.tag.label() == lane_label(0) && words == lane_words(0),
        "received tag {:#x} words {:x?}",
        r.tag.raw(),
        words
    );
    Ok(())
}

fn empty_message() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, ThreadId::ANY, 0)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never waited"
    );
    let r = send_words(w.id(), 0, &[], LONG);
    expect_ok(r.outcome(), "send")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "the receive")?;
    ensure!(
        lane(0).get(TAG) == 0,
        "an empty message arrived with tag {:#x}",
        lane(0).get(TAG)
    );
    Ok(())
}

fn call_reply() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::echo, 0, ThreadId::NIL, 0)?;
    let tag = wire::load(0x40, &[1, 2, 3], &[]);
    let r = wire::ipc(w.id(), w.id(), tmo(LONG, LONG), tag);
    expect_ok(r.outcome(), "call")?;
    let words = [
        l4::utcb::mr(1).unwrap_or(0),
        l4::utcb::mr(2).unwrap_or(0),
        l4::utcb::mr(3).unwrap_or(0),
    ];
    ensure!(
        r.tag.label() == 0x41 && r.tag.untyped() == 3 && words == [2, 3, 4],
        "answer tag {:#x} words {:?}",
        r.tag.raw(),
        words
    );
    ensure!(
        r.from == w.local_id(),
        "answer From {:?}, the server is {:?}",
        r.from,
        w.local_id()
    );
    Ok(())
}

/// Serves PARAM2 calls with reply-and-wait: each answer is the request's word * 3.
fn server_loop(i: usize) {
    let l = lane(i);
    let rounds = l.get(PARAM2);
    let mut r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    for _ in 0..rounds {
        if r.failed() {
            l.set(OUT, r.outcome());
            return;
        }
        l.add(jobs::EXTRA, 1);
        let v = l4::utcb::mr(1).unwrap_or(0);
        let tag = wire::load(0, &[v * 3], &[]);
        r = wire::ipc(r.from, ThreadId::ANY, tmo(Time::Zero, ms(300)), tag);
    }
    // The last reply-and-wait ends in its receive timeout (no sixth call).
    l.set(OUT, r.outcome());
}

fn reply_wait_loop() -> Check {
    jobs::clear_all();
    let w = jobs::local(server_loop, 0, ThreadId::NIL, 5)?;
    for v in 1..=5u64 {
        let tag = wire::load(0, &[v], &[]);
        let r = wire::ipc(w.id(), w.id(), tmo(LONG, LONG), tag);
        expect_ok(r.outcome(), "call")?;
        let a = l4::utcb::mr(1).unwrap_or(0);
        ensure!(
            r.tag.untyped() == 1 && a == v * 3,
            "call {}: answer {} (tag {:#x})",
            v,
            a,
            r.tag.raw()
        );
    }
    ensure!(w.wait_done(2_000_000), "the server did not end");
    ensure!(
        lane(0).get(jobs::EXTRA) == 5,
        "the server counted {} calls",
        lane(0).get(jobs::EXTRA)
    );
    expect_err(lane(0).get(OUT), IpcErrorCode::Timeout, Phase::Receive)
}

/// Receives one call, waits until PARAM (a second caller) is blocked sending, then
/// answers with a zero-timeout reply-and-wait, records what that receive got, and
/// answers it too.
fn server_sees_queue(i: usize) {
    let l = lane(i);
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    if r.failed() {
        l.set(OUT, r.outcome());
        return;
    }
    let second = ThreadId(l.get(PARAM));
    let _ = wait_blocked(second, false, 2_000_000);
    let tag = wire::load(1, &[], &[]);
    let r2 = wire::ipc(r.from, ThreadId::ANY, tmo(Time::Zero, Time::Zero), tag);
    l.set(FROM, r2.from.raw());
    l.set(TAG, r2.tag.raw());
    l.set(OUT, r2.outcome());
    if !r2.failed() {
        let tag = wire::load(2, &[], &[]);
        let _ = wire::ipc(r2.from, ThreadId::NIL, tmo(Time::Zero, Time::Never), tag);
    }
}

fn reply_wait_queued() -> Check {
    jobs::clear_all();
    let server = jobs::local(server_sees_queue, 0, crate::env::main_id(), 0)?;
    // The first caller; once its call is in, the main thread's call queues behind it.
    let first = jobs::local(jobs::call, 1, server.id(), 0)?;
    ensure!(
        wait_blocked(first.id(), true, 2_000_000),
        "the first call never reached its receive phase"
    );
    let r = wire::ipc(
        server.id(),
        server.id(),
        tmo(LONG, LONG),
        wire::load(0x99, &[], &[]),
    );
    expect_ok(r.outcome(), "the queued call")?;
    ensure!(
        r.tag.label() == 2,
        "the queued call got label {:#x}",
        r.tag.label()
    );
    ensure!(
        first.wait_done(2_000_000),
        "the first caller did not return"
    );
    expect_ok(lane(1).get(OUT), "the first call")?;
    expect_ok(lane(0).get(OUT), "the server's zero-timeout reply-and-wait")?;
    ensure!(
        lane(0).get(FROM) == main_local().raw() && MsgTag(lane(0).get(TAG)).label() == 0x99,
        "the reply-and-wait received tag {:#x} from {:#x}; the queued caller is {:?}",
        lane(0).get(TAG),
        lane(0).get(FROM),
        main_local()
    );
    Ok(())
}

fn closed_picks_partner() -> Check {
    jobs::clear_all();
    let a = jobs::local(jobs::send, 0, crate::env::main_id(), 0)?;
    ensure!(
        wait_blocked(a.id(), false, 2_000_000),
        "sender A never blocked"
    );
    let b = jobs::local(jobs::send, 1, crate::env::main_id(), 0)?;
    ensure!(
        wait_blocked(b.id(), false, 2_000_000),
        "sender B never blocked"
    );
    // A queued first; a closed receive from B must take B's message.
    let r = receive(b.id(), Time::Zero);
    expect_ok(r.outcome(), "receive from B")?;
    ensure!(
        r.from == b.local_id() && r.tag.label() == lane_label(1),
        "the closed receive from B got tag {:#x} from {:?} (A {:?}, B {:?})",
        r.tag.raw(),
        r.from,
        a.local_id(),
        b.local_id()
    );
    ensure!(
        lane(0).get(OUT) == 0,
        "A's send ended though nobody received from A"
    );
    let r = receive(a.id(), Time::Zero);
    expect_ok(r.outcome(), "receive from A")?;
    ensure!(
        r.tag.label() == lane_label(0),
        "from A came tag {:#x}",
        r.tag.raw()
    );
    Ok(())
}

fn open_receive() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::send, 2, crate::env::main_id(), 0)?;
    let r = receive(ThreadId::ANY, LONG);
    expect_ok(r.outcome(), "open receive")?;
    ensure!(
        r.from == w.local_id(),
        "From {:?}, the sender is {:?}",
        r.from,
        w.local_id()
    );
    ensure!(r.tag.label() == lane_label(2), "tag {:#x}", r.tag.raw());
    Ok(())
}

fn anylocal_same() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::send, 0, crate::env::main_id(), 0)?;
    let r = receive(ThreadId::ANY_LOCAL, LONG);
    expect_ok(r.outcome(), "receive from anylocalthread")?;
    ensure!(
        r.from == w.local_id(),
        "From {:?}, the sender is {:?}",
        r.from,
        w.local_id()
    );
    Ok(())
}

fn anylocal_other() -> Check {
    jobs::clear_all();
    let mut space = Space::new()?;
    let c = jobs::child(&mut space, jobs::send, 0, crate::env::main_id(), 2_000_000)?;
    ensure!(
        wait_blocked(c.id(), false, 2_000_000),
        "the child's send never blocked (state {:?})",
        state(c.id())
    );
    let r = receive(ThreadId::ANY_LOCAL, ms(30));
    if !r.failed() {
        fail!(
            "anylocalthread accepted a message from {:?} (tag {:#x}), a thread of another space",
            r.from,
            r.tag.raw()
        );
    }
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Receive)?;
    let r = receive(ThreadId::ANY, Time::Zero);
    expect_ok(r.outcome(), "the open receive after it")?;
    ensure!(
        r.from == c.id(),
        "From {:?}, the child is {:?}",
        r.from,
        c.id()
    );
    Ok(())
}

fn from_local() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::send, 0, crate::env::main_id(), 0)?;
    // A closed receive named by the global id still reports the local id.
    let r = receive(w.id(), LONG);
    expect_ok(r.outcome(), "receive")?;
    ensure!(
        r.from == w.local_id(),
        "From {:?}; the sender's local id is {:?}",
        r.from,
        w.local_id()
    );
    Ok(())
}

fn from_global() -> Check {
    jobs::clear_all();
    let mut space = Space::new()?;
    let c = jobs::child(&mut space, jobs::send, 0, crate::env::main_id(), 0)?;
    let r = receive(c.id(), LONG);
    expect_ok(r.outcome(), "receive from the child")?;
    ensure!(
        r.from == c.id(),
        "From {:?}; the child's global id is {:?}",
        r.from,
        c.id()
    );
    ensure!(r.tag.label() == lane_label(0), "tag {:#x}", r.tag.raw());
    // And the other way: the child sees the main thread's global id.
    let rx = jobs::child(&mut space, jobs::receive, 1, crate::env::main_id(), 0)?;
    ensure!(
        wait_blocked(rx.id(), true, 2_000_000),
        "the child receiver never waited"
    );
    expect_ok(
        send_words(rx.id(), 5, &[], LONG).outcome(),
        "send to the child",
    )?;
    ensure!(rx.wait_done(2_000_000), "the child receiver did not return");
    expect_ok(lane(1).get(OUT), "the child's receive")?;
    ensure!(
        lane(1).get(FROM) == crate::env::main_id().raw(),
        "the child saw From {:#x}; the main thread is {:?}",
        lane(1).get(FROM),
        crate::env::main_id()
    );
    Ok(())
}

fn receive_from_local_spec() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::send, 0, crate::env::main_id(), 0)?;
    let r = receive(w.local_id(), LONG);
    expect_ok(r.outcome(), "receive from a local id")?;
    ensure!(
        r.from == w.local_id(),
        "From {:?}, expected {:?}",
        r.from,
        w.local_id()
    );
    Ok(())
}

fn send_to_local_id() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, main_local(), 0)?;
    expect_ok(
        send_words(w.local_id(), lane_label(3), &lane_words(3), LONG).outcome(),
        "send to the local id",
    )?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    got_lane_message(0, 3)?;
    ensure!(
        lane(0).get(FROM) == main_local().raw(),
        "From {:#x}, expected the main thread's local id",
        lane(0).get(FROM)
    );
    Ok(())
}

fn lipc_call() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::echo, 0, ThreadId::NIL, 0)?;
    let tag = wire::load(0x10, &[9], &[]);
    l4::utcb::set_error_code(0);
    let r = l4::syscall::lipc(w.local_id(), w.local_id(), tmo(LONG, LONG), tag);
    ensure!(
        !r.tag.error(),
        "Lipc failed: ErrorCode {:#x}",
        l4::utcb::error_code()
    );
    let a = l4::utcb::mr(1).unwrap_or(0);
    ensure!(
        r.tag.label() == 0x11 && a == 10,
        "answer tag {:#x} word {}",
        r.tag.raw(),
        a
    );
    ensure!(r.from == w.local_id(), "From {:?}", r.from);
    ensure!(
        r.rdi == l4::utcb::my_local_id().raw(),
        "RDI after Lipc {:#x}",
        r.rdi
    );
    Ok(())
}

fn label_bits() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, ThreadId::ANY, 0)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never waited"
    );
    let label = 0xA5C3_1234_5678u64;
    let words: [u64; 12] = core::array::from_fn(|k| k as u64 ^ 0x5555);
    expect_ok(send_words(w.id(), label, &words, LONG).outcome(), "send")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    expect_ok(lane(0).get(OUT), "receive")?;
    let tag = MsgTag(lane(0).get(TAG));
    ensure!(
        tag.label() == label && tag.untyped() == 12 && tag.typed() == 0 && tag.flags() == 0,
        "sent label {:#x} u 12, received tag {:#x}",
        label,
        tag.raw()
    );
    Ok(())
}

fn rdi_every_return() -> Check {
    jobs::clear_all();
    let me = l4::utcb::my_local_id().raw();
    let w = jobs::local(jobs::echo, 0, ThreadId::NIL, 0)?;
    // Call (send + receive).
    let r = wire::ipc(w.id(), w.id(), tmo(LONG, LONG), wire::load(1, &[1], &[]));
    ensure!(
        r.rdi == me,
        "RDI after a call {:#x}, local id {:#x}",
        r.rdi,
        me
    );
    expect_ok(r.outcome(), "call")?;
    // Send only.
    let rx = jobs::local(jobs::receive, 1, main_local(), 0)?;
    let r = send_words(rx.id(), 2, &[], LONG);
    ensure!(r.rdi == me, "RDI after a send {:#x}", r.rdi);
    expect_ok(r.outcome(), "send")?;
    // Receive only.
    let tx = jobs::local(jobs::send, 2, crate::env::main_id(), 0)?;
    let r = receive(tx.id(), LONG);
    ensure!(r.rdi == me, "RDI after a receive {:#x}", r.rdi);
    expect_ok(r.outcome(), "receive")?;
    // Errors: a receive timeout, a send timeout, a missing partner.
    let r = receive(tx.id(), Time::Zero);
    ensure!(r.rdi == me, "RDI after a receive timeout {:#x}", r.rdi);
    ensure!(r.failed(), "the zero receive succeeded");
    let r = send_words(tx.id(), 3, &[], Time::Zero);
    ensure!(r.rdi == me, "RDI after a send timeout {:#x}", r.rdi);
    let r = send_words(crate::env::fresh_id(), 3, &[], Time::Zero);
    ensure!(r.rdi == me, "RDI after a send to nobody {:#x}", r.rdi);
    // Nil to, nil from: nothing to do.
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::NIL,
        tmo(Time::Zero, Time::Zero),
        MsgTag::NIL,
    );
    ensure!(r.rdi == me, "RDI after an empty Ipc {:#x}", r.rdi);
    Ok(())
}

fn rdi_other_thread() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, main_local(), 0)?;
    expect_ok(send_words(w.id(), 1, &[], LONG).outcome(), "send")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    let l = lane(0);
    ensure!(
        l.get(SELF) == w.local_id().raw(),
        "%gs:0 in the thread {:#x}, expected {:?}",
        l.get(SELF),
        w.local_id()
    );
    ensure!(
        l.get(RDI) == l.get(SELF),
        "RDI after its receive {:#x}, its local id {:#x}",
        l.get(RDI),
        l.get(SELF)
    );
    Ok(())
}

/// MR1..MR7 values used by the register checks.
const REG_WORDS: [u64; 7] = [
    0x0101_0101_0101_0101,
    0x0202_0202_0202_0202,
    0x0303_0303_0303_0303,
    0x0404_0404_0404_0404,
    0x0505_0505_0505_0505,
    0x0606_0606_0606_0606,
    0x0707_0707_0707_0707,
];

/// After the stub stored R9, RAX.. back into MR0..MR7: are MR1..MR7 still `REG_WORDS`?
fn mrs_kept(what: &str) -> Check {
    for (k, &v) in REG_WORDS.iter().enumerate() {
        let got = l4::utcb::mr(k + 1).unwrap_or(0);
        ensure!(
            got == v,
            "after {} MR{} = {:#x}, was {:#x} (the binding stores the registers back: the kernel must return MR1..MR7 in them)",
            what,
            k + 1,
            got,
            v
        );
    }
    Ok(())
}

fn mrs_after_send() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, main_local(), 0)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never waited"
    );
    let r = send_words(w.id(), 0x33, &REG_WORDS, LONG);
    expect_ok(r.outcome(), "send")?;
    ensure!(!r.tag.error(), "MR0 after the send {:#x}", r.tag.raw());
    mrs_kept("a send-only IPC")?;
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    for (k, &v) in REG_WORDS.iter().enumerate() {
        ensure!(
            lane(0).get(W + k) == v,
            "the receiver got MR{} = {:#x}",
            k + 1,
            lane(0).get(W + k)
        );
    }
    Ok(())
}

fn mrs_after_error() -> Check {
    let w = Thread::spawn(jobs::park, 0, PRIO)?;
    pause(5_000);
    let r = send_words(w.id(), 0x33, &REG_WORDS, Time::Zero);
    ensure!(
        r.tag.error(),
        "a zero-timeout send to a thread that does not receive succeeded (MR0 {:#x})",
        r.tag.raw()
    );
    expect_err(r.outcome(), IpcErrorCode::Timeout, Phase::Send)?;
    mrs_kept("a failed send")?;
    let _ = wire::load(0, &REG_WORDS, &[]);
    let r = wire::ipc(
        ThreadId::NIL,
        w.id(),
        tmo(Time::Never, Time::Zero),
        MsgTag::NIL,
    );
    ensure!(r.tag.error(), "the zero-timeout receive succeeded");
    mrs_kept("a failed receive")
}

fn mrs_utcb() -> Check {
    jobs::clear_all();
    let w = jobs::local(jobs::echo, 0, ThreadId::NIL, 0)?;
    let words: [u64; 63] = core::array::from_fn(|k| 0xC0DE_0000_0000 + (k as u64) * 0x1_0001);
    let r = wire::ipc(w.id(), w.id(), tmo(LONG, LONG), wire::load(2, &words, &[]));
    expect_ok(r.outcome(), "call with 63 words")?;
    ensure!(
        r.tag.untyped() == 63,
        "the answer has u = {}",
        r.tag.untyped()
    );
    for (k, &v) in words.iter().enumerate() {
        let got = lane(0).get(W + k);
        ensure!(
            got == v,
            "the server received MR{} = {:#x}, sent {:#x}",
            k + 1,
            got,
            v
        );
        let back = l4::utcb::mr(k + 1).unwrap_or(0);
        ensure!(
            back == v + 1,
            "the answer's MR{} = {:#x}, expected {:#x}",
            k + 1,
            back,
            v + 1
        );
    }
    Ok(())
}

/// Sends a message with u = 60 and t = 4 (u + t > 63) to a waiting receiver.
fn overflowing_send() -> Result<(u64, u64), crate::harness::Why> {
    jobs::clear_all();
    let w = jobs::local(jobs::receive, 0, main_local(), 1_000_000)?;
    ensure!(
        wait_blocked(w.id(), true, 2_000_000),
        "the receiver never waited"
    );
    let words = [7u64; 60];
    let tag = MsgTag::new(0x0F, 60, 4);
    let _ = wire::load(0x0F, &words, &[]);
    let r = wire::ipc(w.id(), ThreadId::NIL, tmo(ms(500), Time::Never), tag);
    ensure!(w.wait_done(2_000_000), "the receiver did not return");
    Ok((r.outcome(), lane(0).get(OUT)))
}

fn overflow_sender() -> Check {
    let (sender, _) = overflowing_send()?;
    expect_err(sender, IpcErrorCode::Overflow, Phase::Send)
}

fn overflow_receiver() -> Check {
    let (_, receiver) = overflowing_send()?;
    if receiver == OK {
        fail!("the receiver accepted a message with u + t = 64");
    }
    expect_err(receiver, IpcErrorCode::Overflow, Phase::Receive)
}
