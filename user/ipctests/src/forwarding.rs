//! Propagation and redirection.
//!
//! * **Propagation** (tag flag p and the VirtualSender TCR): where X.2 allows it (the
//!   virtual sender lives in the propagator's space, or the propagator is the redirector
//!   of the virtual sender's space) the receiver sees the virtual sender as From, flag p,
//!   and the actual sender in its ActualSender TCR; a virtual sender waiting for the
//!   propagator's reply now waits for the receiver's. Where it is not allowed (virtual
//!   sender, propagator and receiver in three spaces) the message arrives as an ordinary
//!   one from the actual sender.
//! * **Redirection** (SpaceControl's redirector): IPC from a confined space to a thread
//!   outside it arrives at the redirector instead, with flag r and the IntendedReceiver
//!   TCR; IPC inside the space, to the redirector itself and into the space is not
//!   redirected; removing the redirector ends it.
//!
//! In the redirection scenario the main thread is both the redirector and the pager of
//! the confined space (so no page fault of it has to leave the space through someone
//! else): while it waits it maps the image pages its threads fault on.

use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::env::{in_image, is_page_fault, main_id, main_local, wait_blocked, Space, Thread, PRIO};
use crate::harness::{ensure, fail, now, Check, Runner, Why};
use crate::jobs::{self, lane, lane_label, lane_words, FROM, OUT, PARAM, PARAM2, TAG, W};
use crate::wire::{self, expect_ok, map_item, tmo, LONG};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("propagate");
    let p = same_space();
    r.check("receiver-sees-virtual-sender", || {
        p.as_ref().map_err(Why::clone)?.virtual_from()
    });
    r.check("flag-p-delivered", || {
        p.as_ref().map_err(Why::clone)?.flag_p()
    });
    r.check("actual-sender-tcr", || {
        p.as_ref().map_err(Why::clone)?.actual()
    });
    r.check("not-allowed-delivers-as-actual-sender", not_allowed);
    r.check("virtual-sender-gets-receivers-reply", propagated_call);
    r.group("redirect");
    let rd = redirect_scenario();
    r.check("outside-ipc-goes-to-redirector", || rd.redirected());
    r.check("intended-receiver-tcr", || rd.intended());
    r.check("redirector-propagates-to-intended", || rd.forwarded());
    r.check("same-space-not-redirected", || rd.same_space());
    r.check("to-redirector-not-redirected", || rd.to_redirector());
    r.check("into-confined-space-not-redirected", || rd.inward());
    r.check("redirected-call-answered-by-intended", || rd.call());
    r.check("removed-redirector-no-redirection", || rd.removed());
}

/// Lane words of [`receive_tcrs`].
const ACTUAL: usize = 60;
const INTENDED: usize = 61;

/// Receives from PARAM (any specifier) and records the message and both TCRs.
fn receive_tcrs(i: usize) {
    let l = lane(i);
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId(l.get(PARAM)),
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    jobs::record(l, &r);
    l.set(ACTUAL, l4::utcb::virtual_sender().raw());
    l.set(INTENDED, l4::utcb::intended_receiver().raw());
}

/// Sends `label`/`words` to `to` propagated on behalf of `vs` (send timeout LONG).
fn propagate(to: ThreadId, vs: ThreadId, label: u64, words: &[u64]) -> wire::Ret {
    l4::utcb::set_virtual_sender(vs);
    let tag = wire::load(label, words, &[]).with_propagated(true);
    wire::ipc(to, ThreadId::NIL, tmo(LONG, Time::Never), tag)
}

/// Is `got` thread `t` (by its global or local id)?
fn names(got: u64, t: &Thread) -> bool {
    got == t.id().raw() || got == t.local_id().raw()
}

/// What a same-space propagation delivered.
struct Prop {
    tag: MsgTag,
    from: u64,
    actual: u64,
    vs: (ThreadId, ThreadId),
}

fn same_space() -> Result<Prop, Why> {
    jobs::clear_all();
    let v = Thread::spawn(jobs::park, 0, PRIO)?;
    let rcv = jobs::local(receive_tcrs, 1, ThreadId::ANY, 0)?;
    ensure!(
        wait_blocked(rcv.id(), true, 2_000_000),
        "the receiver never waited"
    );
    expect_ok(
        propagate(rcv.id(), v.id(), 0x70, &[1, 2]).outcome(),
        "the propagated send",
    )?;
    ensure!(rcv.wait_done(2_000_000), "the receiver did not return");
    let l = lane(1);
    expect_ok(l.get(OUT), "the receive")?;
    Ok(Prop {
        tag: MsgTag(l.get(TAG)),
        from: l.get(FROM),
        actual: l.get(ACTUAL),
        vs: (v.id(), v.local_id()),
    })
}

impl Prop {
    fn virtual_from(&self) -> Check {
        ensure!(
            self.from == self.vs.0.raw() || self.from == self.vs.1.raw(),
            "From {:#x}; the virtual sender is {:?} (local {:?}), the actual sender {:?}",
            self.from,
            self.vs.0,
            self.vs.1,
            main_id()
        );
        Ok(())
    }

    fn flag_p(&self) -> Check {
        ensure!(
            self.tag.propagated(),
            "received tag {:#x} without flag p",
            self.tag.raw()
        );
        ensure!(
            self.tag.label() == 0x70 && self.tag.untyped() == 2,
            "received tag {:#x}",
            self.tag.raw()
        );
        Ok(())
    }

    fn actual(&self) -> Check {
        ensure!(
            self.actual == main_id().raw() || self.actual == main_local().raw(),
            "ActualSender {:#x}; the propagator is {:?}",
            self.actual,
            main_id()
        );
        Ok(())
    }
}

fn not_allowed() -> Check {
    jobs::clear_all();
    let mut s1 = Space::new()?;
    let mut s2 = Space::new()?;
    let v = s1.spawn(jobs::park, 0, PRIO)?;
    let rcv = jobs::child(&mut s2, receive_tcrs, 1, ThreadId::ANY, 0)?;
    ensure!(
        wait_blocked(rcv.id(), true, 2_000_000),
        "the receiver never waited"
    );
    expect_ok(
        propagate(rcv.id(), v.id(), 0x71, &[3]).outcome(),
        "the send",
    )?;
    ensure!(
        crate::harness::wait_until(2_000_000, || lane(1).get(OUT) != 0),
        "the receiver did not return"
    );
    let l = lane(1);
    expect_ok(l.get(OUT), "the receive")?;
    let tag = MsgTag(l.get(TAG));
    ensure!(
        l.get(FROM) == main_id().raw(),
        "From {:#x}: a propagation on behalf of {:?} (another space, not redirected by us) was accepted",
        l.get(FROM),
        v.id()
    );
    ensure!(
        !tag.propagated(),
        "flag p delivered on a propagation that is not allowed (tag {:#x})",
        tag.raw()
    );
    Ok(())
}

/// Answers one request from anyone with label + 1, to the From it saw.
fn answer_from(i: usize) {
    jobs::echo(i)
}

fn propagated_call() -> Check {
    jobs::clear_all();
    // A calls the main thread; the main thread passes the request on to B on A's behalf;
    // B answers "A", and that answer must end A's call.
    let b = jobs::local(answer_from, 1, ThreadId::NIL, 0)?;
    let a = jobs::local(jobs::call, 0, main_id(), 0)?;
    let r = wire::ipc(ThreadId::NIL, a.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    expect_ok(r.outcome(), "receiving A's call")?;
    ensure!(wait_blocked(b.id(), true, 2_000_000), "B never waited");
    expect_ok(
        propagate(b.id(), a.id(), lane_label(0), &lane_words(0)).outcome(),
        "the propagated send to B",
    )?;
    ensure!(b.wait_done(2_000_000), "B did not answer");
    expect_ok(lane(1).get(OUT), "B's receive")?;
    expect_ok(lane(1).get(jobs::EXTRA), "B's answer to the virtual sender")?;
    ensure!(
        a.wait_done(2_000_000),
        "A's call did not end after B's answer"
    );
    let l = lane(0);
    expect_ok(l.get(OUT), "A's call")?;
    ensure!(
        MsgTag(l.get(TAG)).label() == lane_label(0) + 1,
        "A got label {:#x}, B answers {:#x}",
        MsgTag(l.get(TAG)).label(),
        lane_label(0) + 1
    );
    ensure!(
        names(l.get(FROM), &b),
        "A's answer came From {:#x}; B is {:?}",
        l.get(FROM),
        b.id()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------
// Redirection

/// A message that reached the main thread while it served the confined space.
#[derive(Clone, Copy, Default)]
struct Got {
    tag: MsgTag,
    from: ThreadId,
    intended: ThreadId,
    w1: u64,
}

/// Serves image page faults of the confined space's threads (the main thread is their
/// pager) until `done()` holds (returns `None`) or another message arrives (returned),
/// for at most 2 s.
fn pump(mut done: impl FnMut() -> bool) -> Result<Option<Got>, Why> {
    let deadline = now() + 2_000_000;
    for _ in 0..256 {
        if done() {
            return Ok(None);
        }
        let left = deadline.saturating_sub(now());
        if left == 0 {
            break;
        }
        let r = wire::ipc(
            ThreadId::NIL,
            ThreadId::ANY,
            tmo(
                Time::Never,
                Time::Period {
                    us: left.min(20_000),
                },
            ),
            MsgTag::NIL,
        );
        if r.failed() {
            continue;
        }
        let addr = l4::utcb::mr(1).unwrap_or(0);
        if is_page_fault(r.tag) && in_image(addr) && !r.tag.redirected() {
            let page = addr & !0xFFF;
            let item = map_item(
                abi::fpage::Fpage::new(page, 12, abi::fpage::Rights::RWX),
                page,
                false,
                false,
            );
            let tag = wire::load(0, &[], &item);
            let _ = wire::ipc(r.from, ThreadId::NIL, tmo(Time::Zero, Time::Never), tag);
            continue;
        }
        return Ok(Some(Got {
            tag: r.tag,
            from: r.from,
            intended: l4::utcb::intended_receiver(),
            w1: addr,
        }));
    }
    if done() {
        return Ok(None);
    }
    Err(Why::new(format_args!("nothing arrived in 2 s")))
}

/// Waits (serving faults) for lane `i`'s outcome.
fn pump_lane(i: usize) -> Result<u64, Why> {
    match pump(|| lane(i).get(OUT) != 0)? {
        None => Ok(lane(i).get(OUT)),
        Some(g) => Err(Why::new(format_args!(
            "an unexpected message {:#x} from {:?} reached the redirector",
            g.tag.raw(),
            g.from
        ))),
    }
}

/// What the redirection scenario observed (each step's own failure, if it failed).
struct Redirect {
    first: Result<(Got, ThreadId, ThreadId), Why>,
    forwarded: Result<(), Why>,
    same_space: Result<(), Why>,
    to_redirector: Result<(), Why>,
    into_space: Result<(), Why>,
    call: Result<(), Why>,
    removed: Result<(), Why>,
}

fn redirect_scenario() -> Redirect {
    let mut rd = Redirect {
        first: Err(Why::new(format_args!("not run"))),
        forwarded: Err(Why::new(format_args!("not run"))),
        same_space: Err(Why::new(format_args!("not run"))),
        to_redirector: Err(Why::new(format_args!("not run"))),
        into_space: Err(Why::new(format_args!("not run"))),
        call: Err(Why::new(format_args!("not run"))),
        removed: Err(Why::new(format_args!("not run"))),
    };
    let mut space = match Space::new() {
        Ok(s) => s,
        Err(e) => {
            rd.first = Err(e);
            return rd;
        }
    };
    if let Err(e) = space.set_redirector(main_id()) {
        rd.first = Err(e);
        return rd;
    }
    rd.first = first_step(&mut space, &mut rd.forwarded);
    rd.same_space = same_space_step(&mut space);
    rd.to_redirector = to_redirector_step(&mut space);
    rd.into_space = into_space_step(&mut space);
    rd.call = call_step(&mut space);
    rd.removed = space
        .set_redirector(ThreadId::ANY)
        .and_then(|()| removed_step(&mut space));
    rd
}

/// Starts `job` on lane `i` in the confined space (paged by the main thread).
fn confined(space: &mut Space, job: fn(usize), i: usize, partner: ThreadId) -> Result<Thread, Why> {
    lane(i).set(PARAM, partner.raw());
    lane(i).set(PARAM2, 0);
    let t = space.thread_paged_by(PRIO, main_id())?;
    space.start_as_pager(&t, job, i)?;
    Ok(t)
}

/// X (confined) sends to W (root): the message must come to the main thread; the main
/// thread passes it on to W, propagated on X's behalf.
fn first_step(
    space: &mut Space,
    forwarded: &mut Result<(), Why>,
) -> Result<(Got, ThreadId, ThreadId), Why> {
    jobs::clear_all();
    let w = jobs::local(receive_tcrs, 1, ThreadId::ANY, 0)?;
    let x = confined(space, jobs::send, 0, w.id())?;
    let Some(got) = pump(|| false)? else {
        fail!("no message");
    };
    *forwarded = forward(&got, &x, &w);
    Ok((got, x.id(), w.id()))
}

fn forward(got: &Got, x: &Thread, w: &Thread) -> Check {
    let words = [
        l4::utcb::mr(1).unwrap_or(0),
        l4::utcb::mr(2).unwrap_or(0),
        l4::utcb::mr(3).unwrap_or(0),
    ];
    ensure!(
        got.from == x.id(),
        "the redirected message came From {:?}, not the confined thread",
        got.from
    );
    expect_ok(
        propagate(w.id(), x.id(), got.tag.label(), &words).outcome(),
        "the redirector's propagated send",
    )?;
    ensure!(
        w.wait_done(2_000_000),
        "the intended receiver did not receive"
    );
    let l = lane(1);
    expect_ok(l.get(OUT), "the intended receiver's receive")?;
    let tag = MsgTag(l.get(TAG));
    ensure!(
        l.get(FROM) == x.id().raw(),
        "the intended receiver saw From {:#x}; the confined sender is {:?}",
        l.get(FROM),
        x.id()
    );
    ensure!(
        tag.propagated(),
        "the intended receiver got tag {:#x} without flag p",
        tag.raw()
    );
    ensure!(
        l.get(ACTUAL) == main_id().raw() || l.get(ACTUAL) == main_local().raw(),
        "ActualSender {:#x}; the redirector is {:?}",
        l.get(ACTUAL),
        main_id()
    );
    ensure!(
        [l.get(W), l.get(W + 1), l.get(W + 2)] == lane_words(0),
        "the words arrived as {:x?}",
        [l.get(W), l.get(W + 1), l.get(W + 2)]
    );
    expect_ok(lane(0).get(OUT), "the confined thread's send")
}

fn same_space_step(space: &mut Space) -> Check {
    jobs::clear_all();
    let y = confined(space, receive_tcrs, 2, ThreadId::ANY)?;
    let _z = confined(space, jobs::send, 0, y.id())?;
    let out = pump_lane(2)?;
    expect_ok(out, "the receive inside the confined space")?;
    let l = lane(2);
    let tag = MsgTag(l.get(TAG));
    ensure!(
        !tag.redirected() && tag.label() == lane_label(0),
        "the message arrived with tag {:#x}",
        tag.raw()
    );
    Ok(())
}

fn to_redirector_step(space: &mut Space) -> Check {
    jobs::clear_all();
    let z = confined(space, jobs::send, 0, main_id())?;
    let Some(got) = pump(|| false)? else {
        fail!("no message");
    };
    ensure!(
        got.from == z.id(),
        "a message from {:?} arrived instead",
        got.from
    );
    ensure!(
        !got.tag.redirected(),
        "a message to the redirector itself arrived with flag r (tag {:#x})",
        got.tag.raw()
    );
    Ok(())
}

fn into_space_step(space: &mut Space) -> Check {
    jobs::clear_all();
    let y = confined(space, receive_tcrs, 2, ThreadId::ANY)?;
    let _w = jobs::local(jobs::send, 0, y.id(), 0)?;
    let out = pump_lane(2)?;
    expect_ok(out, "the confined thread's receive")?;
    let l = lane(2);
    ensure!(!MsgTag(l.get(TAG)).redirected(), "tag {:#x}", l.get(TAG));
    ensure!(
        MsgTag(l.get(TAG)).label() == lane_label(0),
        "tag {:#x}",
        l.get(TAG)
    );
    Ok(())
}

fn call_step(space: &mut Space) -> Check {
    jobs::clear_all();
    let w = jobs::local(answer_from, 1, ThreadId::NIL, 0)?;
    let x = confined(space, jobs::call, 0, w.id())?;
    let Some(got) = pump(|| false)? else {
        fail!("no message");
    };
    ensure!(
        got.tag.redirected() && got.from == x.id(),
        "the call arrived as tag {:#x} from {:?}",
        got.tag.raw(),
        got.from
    );
    let words = [
        l4::utcb::mr(1).unwrap_or(0),
        l4::utcb::mr(2).unwrap_or(0),
        l4::utcb::mr(3).unwrap_or(0),
    ];
    expect_ok(
        propagate(w.id(), x.id(), got.tag.label(), &words).outcome(),
        "passing the call on",
    )?;
    let out = pump_lane(0)?;
    expect_ok(out, "the confined thread's call")?;
    expect_ok(lane(1).get(jobs::EXTRA), "the intended receiver's answer")?;
    let l = lane(0);
    ensure!(
        MsgTag(l.get(TAG)).label() == lane_label(0) + 1,
        "the call got tag {:#x}",
        l.get(TAG)
    );
    ensure!(
        l.get(FROM) == w.id().raw(),
        "the answer came From {:#x}; the intended receiver is {:?}",
        l.get(FROM),
        w.id()
    );
    Ok(())
}

fn removed_step(space: &mut Space) -> Check {
    jobs::clear_all();
    let w = jobs::local(receive_tcrs, 1, ThreadId::ANY, 0)?;
    let x = confined(space, jobs::send, 0, w.id())?;
    let out = pump_lane(1)?;
    expect_ok(out, "the receive")?;
    let l = lane(1);
    ensure!(
        !MsgTag(l.get(TAG)).redirected(),
        "flag r after the redirector was removed (tag {:#x})",
        l.get(TAG)
    );
    ensure!(
        l.get(FROM) == x.id().raw(),
        "From {:#x}; the sender is {:?}",
        l.get(FROM),
        x.id()
    );
    Ok(())
}

impl Redirect {
    fn redirected(&self) -> Check {
        let (g, x, _) = self.first.as_ref().map_err(Why::clone)?;
        ensure!(
            g.tag.redirected(),
            "the redirector got tag {:#x} without flag r",
            g.tag.raw()
        );
        ensure!(
            g.from == *x,
            "From {:?}; the confined sender is {:?}",
            g.from,
            x
        );
        ensure!(
            g.tag.label() == lane_label(0),
            "tag {:#x} (word {:#x})",
            g.tag.raw(),
            g.w1
        );
        Ok(())
    }

    fn intended(&self) -> Check {
        let (g, _, w) = self.first.as_ref().map_err(Why::clone)?;
        ensure!(
            g.intended == *w,
            "IntendedReceiver {:?}; the message was sent to {:?}",
            g.intended,
            w
        );
        Ok(())
    }

    fn forwarded(&self) -> Check {
        self.first.as_ref().map_err(Why::clone)?;
        self.forwarded.clone()
    }

    fn same_space(&self) -> Check {
        self.same_space.clone()
    }

    fn to_redirector(&self) -> Check {
        self.to_redirector.clone()
    }

    fn inward(&self) -> Check {
        self.into_space.clone()
    }

    fn call(&self) -> Check {
        self.call.clone()
    }

    fn removed(&self) -> Check {
        self.removed.clone()
    }
}
