//! Reusable jobs for check threads, the lanes they report through, and [`local`] /
//! [`child`] to start a job in the root space or in a child space.
//!
//! A lane is a row of shared words: the check sets the job's parameters in it before it
//! starts the thread, the job writes what happened (outcome, tag, From, RDI, clock
//! readings, received words). Threads in child spaces write the same lanes (shared data
//! pages). Every check clears the lanes it uses first.

use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::env::{Space, Thread, PRIO};
use crate::harness::{now, Cells, Why};
use crate::wire::{self, LONG};

/// Words of a lane.
pub const LANE_WORDS: usize = 80;
/// Number of lanes.
pub const LANES: usize = 4;

/// Outcome word of the job's (last) IPC ([`wire::OK`] or an error word).
pub const OUT: usize = 0;
/// Raw tag the job received.
pub const TAG: usize = 1;
/// From the job's receive returned.
pub const FROM: usize = 2;
/// RDI the job's IPC returned.
pub const RDI: usize = 3;
/// Parameter: the partner (raw thread id).
pub const PARAM: usize = 4;
/// Parameter: a timeout in µs (0: [`LONG`]) or a job-specific value.
pub const PARAM2: usize = 5;
/// Clock when the job started its IPC.
pub const T0: usize = 6;
/// Clock when the IPC returned.
pub const T1: usize = 7;
/// The job's own local id (as `%gs:0` gives it).
pub const SELF: usize = 8;
/// A job-specific word.
pub const EXTRA: usize = 9;
/// First received word (MR1); MR i is at `W + i - 1`.
pub const W: usize = 10;

static LANE: [Cells<LANE_WORDS>; LANES] = [const { Cells::new() }; LANES];

/// Lane `i` (`i < LANES`; larger indices wrap).
pub fn lane(i: usize) -> &'static Cells<LANE_WORDS> {
    &LANE[i % LANES]
}

/// Clears every lane.
pub fn clear_all() {
    for l in &LANE {
        l.clear();
    }
}

/// The timeout a job takes from its PARAM2 word.
fn timeout_of(l: &Cells<LANE_WORDS>) -> Time {
    match l.get(PARAM2) {
        0 => LONG,
        us => Time::Period { us },
    }
}

/// Records an IPC's return and the received message (from this thread's MRs) in `l`.
pub fn record(l: &Cells<LANE_WORDS>, r: &wire::Ret) {
    l.set(T1, now());
    l.set(TAG, r.tag.raw());
    l.set(FROM, r.from.raw());
    l.set(RDI, r.rdi);
    l.set(SELF, l4::utcb::my_local_id().raw());
    if !r.failed() {
        let n = r.tag.words().min(LANE_WORDS - W);
        for i in 0..n {
            l.set(W + i, l4::utcb::mr(i + 1).unwrap_or(0));
        }
    }
    l.set(OUT, r.outcome());
}

/// The label a lane's sender jobs use.
pub const fn lane_label(i: usize) -> u64 {
    0x5E00 + i as u64
}

/// The words a lane's sender jobs send.
pub const fn lane_words(i: usize) -> [u64; 3] {
    let b = (i as u64 + 1) * 0x1111_0000;
    [b + 1, b + 2, b + 3]
}

/// Receives from PARAM (any specifier) with timeout PARAM2 and records it.
pub fn receive(i: usize) {
    let l = lane(i);
    let spec = ThreadId(l.get(PARAM));
    l.set(T0, now());
    let r = wire::ipc(
        ThreadId::NIL,
        spec,
        wire::tmo(Time::Never, timeout_of(l)),
        MsgTag::NIL,
    );
    record(l, &r);
}

/// Sends the lane's message to PARAM with send timeout PARAM2; records the outcome.
pub fn send(i: usize) {
    let l = lane(i);
    let to = ThreadId(l.get(PARAM));
    let tag = wire::load(lane_label(i), &lane_words(i), &[]);
    l.set(T0, now());
    let r = wire::ipc(
        to,
        ThreadId::NIL,
        wire::tmo(timeout_of(l), Time::Never),
        tag,
    );
    l.set(T1, now());
    l.set(RDI, r.rdi);
    l.set(OUT, r.outcome());
}

/// Calls PARAM with the lane's message (send and receive timeout PARAM2) and records
/// the answer.
pub fn call(i: usize) {
    let l = lane(i);
    let to = ThreadId(l.get(PARAM));
    let tag = wire::load(lane_label(i), &lane_words(i), &[]);
    l.set(T0, now());
    let t = timeout_of(l);
    let r = wire::ipc(to, to, wire::tmo(t, t), tag);
    record(l, &r);
}

/// Serves one request from anyone (timeout PARAM2): answers label + 1 with every word + 1.
pub fn echo(i: usize) {
    let l = lane(i);
    l.set(T0, now());
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        wire::tmo(Time::Never, timeout_of(l)),
        MsgTag::NIL,
    );
    record(l, &r);
    if r.failed() {
        return;
    }
    let u = r.tag.untyped() as usize;
    let mut words = [0u64; 63];
    for (k, w) in words.iter_mut().enumerate().take(u) {
        *w = l4::utcb::mr(k + 1).unwrap_or(0).wrapping_add(1);
    }
    let tag = wire::load(r.tag.label() + 1, &words[..u], &[]);
    let s = wire::ipc(
        r.from,
        ThreadId::NIL,
        wire::tmo(Time::Zero, Time::Never),
        tag,
    );
    l.set(EXTRA, s.outcome());
}

/// Starts a root-space thread running `job` on lane `i` with `partner` and `param2`.
pub fn local(job: fn(usize), i: usize, partner: ThreadId, param2: u64) -> Result<Thread, Why> {
    lane(i).set(PARAM, partner.raw());
    lane(i).set(PARAM2, param2);
    Thread::spawn(job, i, PRIO)
}

/// Starts a thread of `space` running `job` on lane `i` with `partner` and `param2`.
pub fn child(
    space: &mut Space,
    job: fn(usize),
    i: usize,
    partner: ThreadId,
    param2: u64,
) -> Result<Thread, Why> {
    lane(i).set(PARAM, partner.raw());
    lane(i).set(PARAM2, param2);
    space.spawn(job, i, PRIO)
}

/// Blocks for good (receives from itself, never answered).
pub fn park(_: usize) {
    l4::thread::park()
}
