//! IPC basics between the main thread and workers of the same space: send, receive,
//! call and reply, reply-and-wait, the MR transfer, timeouts, errors for missing
//! partners, the binding's register rules, and cancelling a receive.
//!
//! Workers report through the board `B`; every check resets it first.

use abi::error::{IpcError, IpcErrorCode, Phase};
use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, ms, IpcFailure, Msg};

use crate::harness::{
    ensure, fail, ipc_code, now, wait_until, yield_for, Board, Check, Context, Tally,
};
use crate::workers::{fresh_id, main_local, me, Worker};

static B: Board = Board::new();

/// Board words.
const STATUS: usize = 0;
const LABEL: usize = 1;
const COUNT: usize = 2;
const FROM: usize = 3;
const WORDS: usize = 4; // WORDS.. : received words (up to 8)

/// A worker's generous timeout.
const LONG: Time = ms(2000);

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("ipc::send-receive", send_receive);
    s.run("ipc::send-to-local-id", send_to_local_id);
    s.run("ipc::from-is-local-id-in-same-space", from_is_local);
    s.run("ipc::call-reply", call_reply);
    s.run("ipc::call-63-words", call_many_words);
    s.run("ipc::reply-wait-server", reply_wait_server);
    s.run("ipc::receive-any-local", receive_any_local);
    s.run("ipc::lipc-call-local", lipc_call);
    s.run("ipc::send-only-keeps-mr1-7", send_keeps_mrs);
    s.run("ipc::rdi-is-local-id-after-ipc", rdi_preserved);
    s.run("ipc::receive-timeout", receive_timeout);
    s.run("ipc::send-timeout", send_timeout);
    s.run("ipc::send-zero-timeout", send_zero_timeout);
    s.run("ipc::call-receive-timeout", call_receive_timeout);
    s.run("ipc::send-to-nonexistent", send_nonexistent);
    s.run("ipc::send-to-stale-version", send_stale);
    s.run("ipc::receive-from-nonexistent", receive_nonexistent);
    s.run("ipc::sleep", sleep);
    s.run("ipc::exregs-abort-receive-cancels", abort_receive);
    s.run("ipc::exregs-abort-send-cancels", abort_send);
    s.run("ipc::flags-rxe-cleared-on-delivery", flags_cleared);
}

/// Records a received message (or the failure) on the board.
fn record(r: &Result<ipc::Received, IpcFailure>) {
    B.set(STATUS, 1 + ipc_code(r));
    if let Ok(rx) = r {
        B.set(LABEL, rx.msg.label());
        B.set(COUNT, rx.msg.untyped().len() as u64);
        B.set(FROM, rx.from.raw());
        for (i, &w) in rx.msg.untyped().iter().take(8).enumerate() {
            B.set(WORDS + i, w);
        }
    }
}

/// What the board says the worker received: fails unless it received without error.
fn received(w: &Worker) -> Check {
    ensure!(w.wait_done(2_000_000), "the worker did not finish");
    match B.get(STATUS) {
        1 => Ok(()),
        0 => fail!("the worker recorded nothing"),
        s => fail!("the worker's receive failed: {:?}", IpcError::decode(s - 1)),
    }
}

fn w_receive_from_main(_: usize) {
    record(&ipc::receive(me(), LONG));
}

fn send_receive() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_from_main, 0, None)?;
    let msg = Msg::with_words(0x1234, &[0xAAAA, 0xBBBB, 0xCCCC]).ctx("message")?;
    ipc::send(w.id(), &msg, LONG).ctx("send")?;
    received(&w)?;
    let got = (
        B.get(LABEL),
        B.get(COUNT),
        B.get(WORDS),
        B.get(WORDS + 1),
        B.get(WORDS + 2),
    );
    ensure!(
        got == (0x1234, 3, 0xAAAA, 0xBBBB, 0xCCCC),
        "worker received label/u/words {:x?}",
        got
    );
    Ok(())
}

fn send_to_local_id() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_from_main, 0, None)?;
    let msg = Msg::with_words(7, &[42]).ctx("message")?;
    ipc::send(w.local(), &msg, LONG).ctx("send to the local id")?;
    received(&w)?;
    ensure!(
        B.get(LABEL) == 7 && B.get(WORDS) == 42,
        "worker received label {} word {}",
        B.get(LABEL),
        B.get(WORDS)
    );
    Ok(())
}

fn from_is_local() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_from_main, 0, None)?;
    ipc::send(w.id(), &Msg::new(1), LONG).ctx("send")?;
    received(&w)?;
    let from = ThreadId(B.get(FROM));
    ensure!(
        from == main_local(),
        "From = {:?}; the main thread's local id is {:?}",
        from,
        main_local()
    );
    Ok(())
}

/// Echo server for one request: answers label + 1 and each word + 1.
fn w_echo_once(_: usize) {
    let r = ipc::receive(ThreadId::ANY, LONG);
    record(&r);
    if let Ok(rx) = r {
        let mut answer = Msg::new(rx.msg.label() + 1);
        for &w in rx.msg.untyped() {
            let _ = answer.push(w.wrapping_add(1));
        }
        let _ = ipc::reply(rx.from, &answer);
    }
}

fn call_reply() -> Check {
    B.clear();
    let w = Worker::spawn(w_echo_once, 0, None)?;
    let msg = Msg::with_words(0x40, &[1, 2]).ctx("message")?;
    let answer = ipc::call(w.id(), &msg, LONG, LONG).ctx("call")?;
    ensure!(
        answer.label() == 0x41 && answer.untyped() == [2, 3],
        "answer label {:#x} words {:x?}",
        answer.label(),
        answer.untyped()
    );
    ensure!(
        answer.typed().is_empty() && !answer.tag().error(),
        "answer tag {:#x}",
        answer.tag().raw()
    );
    Ok(())
}

fn call_many_words() -> Check {
    B.clear();
    let w = Worker::spawn(w_echo_once, 0, None)?;
    let words: [u64; 63] = core::array::from_fn(|i| 0x1000 + (i as u64) * 0x101);
    let msg = Msg::with_words(5, &words).ctx("message")?;
    let answer = ipc::call(w.id(), &msg, LONG, LONG).ctx("call")?;
    ensure!(
        answer.untyped().len() == 63,
        "answer has {} words",
        answer.untyped().len()
    );
    for (i, (&a, &q)) in answer.untyped().iter().zip(words.iter()).enumerate() {
        ensure!(
            a == q + 1,
            "MR{}: sent {:#x}, echoed {:#x}",
            i + 1,
            q,
            a.wrapping_sub(1)
        );
    }
    Ok(())
}

/// A server: answers three requests with reply-and-wait, each with the word doubled.
fn w_server(_: usize) {
    let mut r = ipc::receive(ThreadId::ANY, LONG);
    for _ in 0..3 {
        let Ok(rx) = r else { break };
        B.add(COUNT, 1);
        let answer = Msg::with_words(0, &[rx.msg.word(0).unwrap_or(0) * 2]).unwrap_or(Msg::new(0));
        r = ipc::reply_wait(rx.from, &answer, ms(500));
    }
}

fn reply_wait_server() -> Check {
    B.clear();
    let w = Worker::spawn(w_server, 0, None)?;
    for v in [3u64, 5, 7] {
        let msg = Msg::with_words(0, &[v]).ctx("message")?;
        let answer = ipc::call(w.id(), &msg, LONG, LONG).ctx("call")?;
        ensure!(
            answer.word(0) == Some(v * 2),
            "asked {}, answered {:?}",
            v,
            answer.word(0)
        );
    }
    ensure!(
        B.get(COUNT) == 3,
        "server counted {} requests",
        B.get(COUNT)
    );
    Ok(())
}

fn w_send_to_main(_: usize) {
    let msg = Msg::with_words(0x77, &[0x1111]).unwrap_or(Msg::new(0));
    let r = ipc::send(me(), &msg, LONG);
    B.set(STATUS, 1 + ipc_code(&r));
}

fn receive_any_local() -> Check {
    B.clear();
    let w = Worker::spawn(w_send_to_main, 0, None)?;
    let rx = ipc::receive(ThreadId::ANY_LOCAL, LONG).ctx("receive from anylocalthread")?;
    ensure!(
        rx.from == w.local(),
        "From = {:?}, the worker's local id is {:?}",
        rx.from,
        w.local()
    );
    ensure!(
        rx.msg.label() == 0x77 && rx.msg.untyped() == [0x1111],
        "received label {:#x} words {:x?}",
        rx.msg.label(),
        rx.msg.untyped()
    );
    Ok(())
}

fn lipc_call() -> Check {
    B.clear();
    let w = Worker::spawn(w_echo_once, 0, None)?;
    let msg = Msg::with_words(0x10, &[9]).ctx("message")?;
    msg.load();
    l4::utcb::set_error_code(0);
    let t = ipc::timeouts(LONG, LONG);
    let r = l4::syscall::lipc(w.local(), w.local(), t, msg.tag());
    ensure!(
        !r.tag.error(),
        "Lipc failed: {:?}",
        IpcError::decode(l4::utcb::error_code())
    );
    let answer = Msg::from_utcb();
    ensure!(
        answer.label() == 0x11 && answer.untyped() == [10],
        "answer label {:#x} words {:x?}",
        answer.label(),
        answer.untyped()
    );
    ensure!(
        r.from == w.local(),
        "From = {:?}, expected the worker's local id {:?}",
        r.from,
        w.local()
    );
    Ok(())
}

fn send_keeps_mrs() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_from_main, 0, None)?;
    let words = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
    let msg = Msg::with_words(3, &words).ctx("message")?;
    ipc::send(w.id(), &msg, LONG).ctx("send")?;
    for (i, &v) in words.iter().enumerate() {
        let now = l4::utcb::mr(i + 1).unwrap_or(0);
        ensure!(now == v, "after the send MR{} = {:#x}, was {:#x} (the binding stores R9..R15 back into the UTCB)", i + 1, now, v);
    }
    received(&w)
}

fn rdi_preserved() -> Check {
    let t = ipc::timeouts(Time::Never, Time::Zero);
    let r = l4::syscall::ipc(ThreadId::NIL, me(), t, MsgTag::NIL);
    let local = l4::utcb::my_local_id().raw();
    ensure!(
        r.rdi == local,
        "RDI after Ipc = {:#x}, local id {:#x}",
        r.rdi,
        local
    );
    Ok(())
}

/// Expects `r` to be exactly `code` in `phase`.
fn expect_ipc<T>(r: Result<T, IpcFailure>, code: IpcErrorCode, phase: Phase) -> Check {
    match r {
        Err(e) if e.is(code, phase) => Ok(()),
        Err(e) => fail!("expected {:?} in the {:?} phase, got {:?}", code, phase, e),
        Ok(_) => fail!(
            "expected {:?} in the {:?} phase, the IPC succeeded",
            code,
            phase
        ),
    }
}

fn w_park(_: usize) {
    l4::thread::park()
}

fn receive_timeout() -> Check {
    let w = Worker::spawn(w_park, 0, None)?;
    let t0 = now();
    let r = ipc::receive(w.id(), ms(20));
    let dt = now() - t0;
    expect_ipc(r, IpcErrorCode::Timeout, Phase::Receive)?;
    ensure!(
        (20_000..1_000_000).contains(&dt),
        "timed out after {} µs, asked 20000",
        dt
    );
    Ok(())
}

fn send_timeout() -> Check {
    let w = Worker::spawn(w_park, 0, None)?;
    let t0 = now();
    let r = ipc::send(w.id(), &Msg::new(1), ms(20));
    let dt = now() - t0;
    expect_ipc(r, IpcErrorCode::Timeout, Phase::Send)?;
    ensure!(
        (20_000..1_000_000).contains(&dt),
        "timed out after {} µs, asked 20000",
        dt
    );
    Ok(())
}

fn send_zero_timeout() -> Check {
    let w = Worker::spawn(w_park, 0, None)?;
    let t0 = now();
    let r = ipc::send(w.id(), &Msg::new(1), Time::Zero);
    let dt = now() - t0;
    expect_ipc(r, IpcErrorCode::Timeout, Phase::Send)?;
    ensure!(dt < 500_000, "a zero timeout took {} µs", dt);
    Ok(())
}

/// Receives one message from the main thread and never answers.
fn w_receive_and_park(_: usize) {
    let _ = ipc::receive(me(), LONG);
    l4::thread::park()
}

fn call_receive_timeout() -> Check {
    let w = Worker::spawn(w_receive_and_park, 0, None)?;
    let t0 = now();
    let r = ipc::call(w.id(), &Msg::new(1), LONG, ms(20));
    let dt = now() - t0;
    expect_ipc(r, IpcErrorCode::Timeout, Phase::Receive)?;
    ensure!(
        (20_000..1_000_000).contains(&dt),
        "the call timed out after {} µs, asked 20000 for the receive",
        dt
    );
    Ok(())
}

fn send_stale() -> Check {
    let w = Worker::spawn(w_park, 0, None)?;
    let stale = ThreadId::global(w.id().number(), w.id().version() + 1);
    expect_ipc(
        ipc::send(stale, &Msg::new(1), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Send,
    )
}

fn send_nonexistent() -> Check {
    expect_ipc(
        ipc::send(fresh_id(), &Msg::new(1), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Send,
    )
}

fn receive_nonexistent() -> Check {
    expect_ipc(
        ipc::receive(fresh_id(), ms(20)),
        IpcErrorCode::NotExist,
        Phase::Receive,
    )
}

fn sleep() -> Check {
    let t0 = now();
    ipc::sleep(ms(30)).ctx("sleep")?;
    let dt = now() - t0;
    ensure!(
        (30_000..1_000_000).contains(&dt),
        "slept {} µs, asked 30000",
        dt
    );
    Ok(())
}

fn w_receive_forever(_: usize) {
    let r = ipc::receive(me(), Time::Never);
    B.set(STATUS, 1 + ipc_code(&r));
}

fn abort_receive() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_forever, 0, None)?;
    // The worker has the main thread's priority: yielding lets it run into its receive.
    yield_for(20_000);
    let out = l4::thread::ExRegs::new()
        .abort_receive()
        .apply(w.id())
        .ctx("ExchangeRegisters (abort receive)")?;
    ensure!(
        out.state.receiving() && !out.state.sending(),
        "old state {:#x}: expected 'receiving'",
        out.state.0
    );
    ensure!(
        wait_until(1_000_000, || B.get(STATUS) != 0),
        "the worker's receive did not return"
    );
    let e = B.get(STATUS) - 1;
    let want = IpcError::new(IpcErrorCode::Cancelled, Phase::Receive).encode();
    ensure!(
        e == want,
        "the receive ended with {:#x} ({:?}), expected cancelled/receive",
        e,
        IpcError::decode(e)
    );
    Ok(())
}

fn abort_send() -> Check {
    B.clear();
    // Sends to the main thread, which does not receive (2 s timeout).
    let w = Worker::spawn(w_send_to_main, 0, None)?;
    yield_for(20_000);
    let out = l4::thread::ExRegs::new()
        .abort_send()
        .apply(w.id())
        .ctx("ExchangeRegisters (abort send)")?;
    ensure!(
        out.state.sending() && !out.state.receiving(),
        "old state {:#x}: expected 'sending'",
        out.state.0
    );
    ensure!(
        wait_until(1_000_000, || B.get(STATUS) != 0),
        "the worker's send did not return"
    );
    let e = B.get(STATUS) - 1;
    let want = IpcError::new(IpcErrorCode::Cancelled, Phase::Send).encode();
    ensure!(
        e == want,
        "the send ended with {:#x} ({:?}), expected cancelled/send",
        e,
        IpcError::decode(e)
    );
    Ok(())
}

/// Receives one message from the main thread and records its raw tag.
fn w_receive_raw_tag(_: usize) {
    let r = ipc::ipc(
        ThreadId::NIL,
        me(),
        ipc::timeouts(Time::Never, LONG),
        MsgTag::NIL,
    );
    B.set(STATUS, 1 + ipc_code(&r));
    B.set(LABEL, l4::utcb::mr(0).unwrap_or(0));
}

fn flags_cleared() -> Check {
    B.clear();
    let w = Worker::spawn(w_receive_raw_tag, 0, None)?;
    // Flags r, x and e set by the sender; X.2: the kernel clears them on delivery.
    let msg = Msg::with_words(0x55, &[1])
        .ctx("message")?
        .with_flags(MsgTag::REDIRECTED | MsgTag::CROSS_CPU | MsgTag::ERROR);
    let sent = ipc::send(w.id(), &msg, LONG);
    ensure!(
        w.wait_done(2_000_000),
        "the worker did not finish (send: {:?})",
        sent
    );
    ensure!(
        B.get(STATUS) == 1,
        "the worker's receive failed ({:#x}): it saw the error flag?",
        B.get(STATUS).wrapping_sub(1)
    );
    let tag = MsgTag(B.get(LABEL));
    ensure!(
        tag.flags() == 0 && tag.label() == 0x55 && tag.untyped() == 1,
        "delivered tag {:#x}",
        tag.raw()
    );
    Ok(())
}
