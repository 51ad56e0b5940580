//! The stress test: four client/server pairs — across two child spaces, inside the root
//! space, root to child and child to root — exchange 10^6 messages in all (calls and
//! replies), each carrying the pair, a sequence number, payload words and a checksum,
//! while a low-priority thread spins. Servers use reply-and-wait; every eighth message is
//! long enough to need the UTCB (MR8 and up); all others fit the registers, so both the
//! fast and the full path carry traffic.
//!
//! Servers check that each request is the next in sequence (no loss, no duplicate), comes
//! from their own client and is intact; clients check each reply the same way. Waits use
//! timeout never (the fast path's case); the main thread bounds the whole run and aborts
//! every IPC of the pairs if it takes too long.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::println;

use crate::env::{Space, Thread, PRIO};
use crate::harness::{ensure, now, Cells, Check, Runner, Why};
use crate::wire::{self, tmo};

/// Client/server pairs.
const PAIRS: usize = 4;
/// Calls per pair: PAIRS * CALLS * 2 = 10^6 messages.
const CALLS: u64 = 125_000;
/// Messages in all.
const MESSAGES: u64 = PAIRS as u64 * CALLS * 2;
/// Priority of the spinning thread (below everyone).
const SPIN_PRIO: u8 = 10;
/// The longest the run may take (guest µs) before the main thread aborts it: a bound
/// against hangs only (the run takes about 10 s with the fast path and 25 s without, in
/// TCG on an idle host).
const BOUND_US: u64 = 150_000_000;
/// Every this many messages one is long (MR1..MR20).
const LONG_EVERY: u64 = 8;
/// Words of a long message.
const LONG_WORDS: usize = 20;

/// Per-pair words.
mod p {
    /// Calls the client completed correctly.
    pub const CALLS_OK: usize = 0;
    /// Requests the server handled.
    pub const SERVED: usize = 1;
    /// Sequence errors (a request or reply out of order: lost or duplicated).
    pub const SEQ_ERR: usize = 2;
    /// Checksum errors (corruption).
    pub const SUM_ERR: usize = 3;
    /// Sender errors (From not the partner).
    pub const FROM_ERR: usize = 4;
    /// IPC failures (the first one's outcome word).
    pub const IPC_ERR: usize = 5;
    /// The server's id as the client names it.
    pub const SERVER: usize = 6;
    /// The client's id as the server sees it in From.
    pub const CLIENT_FROM: usize = 7;
    /// The server's id as the client sees it in From.
    pub const SERVER_FROM: usize = 8;
    /// The client has finished.
    pub const CLIENT_END: usize = 9;
    /// The server has finished.
    pub const SERVER_END: usize = 10;
    /// Words per pair.
    pub const WORDS: usize = 12;
}

static PAIR: [Cells<{ p::WORDS }>; PAIRS] = [const { Cells::new() }; PAIRS];
static SPINS: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

/// Runs the stress test and its checks.
pub fn run(r: &mut Runner) {
    r.group("stress");
    let res = stress();
    let rep = res.as_ref();
    r.check("all-messages-delivered", || {
        rep.map_err(Why::clone)?.delivered()
    });
    r.check("no-loss-or-duplication", || {
        rep.map_err(Why::clone)?.sum(p::SEQ_ERR, "sequence")
    });
    r.check("no-corruption", || {
        rep.map_err(Why::clone)?.sum(p::SUM_ERR, "checksum")
    });
    r.check("senders-identified", || {
        rep.map_err(Why::clone)?.sum(p::FROM_ERR, "From")
    });
    r.check("no-ipc-failure", || rep.map_err(Why::clone)?.ipc());
}

/// The checksum of a message: label, sequence number and payload words.
fn checksum(label: u64, seq: u64, words: &[u64]) -> u64 {
    let mut acc = 0x6A09_E667_F3BC_C908u64 ^ label;
    for &w in core::iter::once(&seq).chain(words.iter()) {
        acc = (acc.rotate_left(13) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    acc
}

/// The payload word `k` of message `seq` of pair `pair` (`reply`: the server's).
fn payload(pair: usize, seq: u64, k: usize, reply: bool) -> u64 {
    let x = (pair as u64) << 56 | seq << 8 | k as u64 | (reply as u64) << 55;
    x.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17)
}

/// Message layout: MR1 = seq, MR2..MR(n-1) payload, MRn = checksum; n = 4 or
/// LONG_WORDS. Loads it and returns the tag.
fn load(pair: usize, seq: u64, reply: bool) -> MsgTag {
    let n = if seq.is_multiple_of(LONG_EVERY) {
        LONG_WORDS
    } else {
        4
    };
    let mut w = [0u64; LONG_WORDS];
    w[0] = seq;
    for (k, slot) in w.iter_mut().enumerate().take(n - 1).skip(1) {
        *slot = payload(pair, seq, k, reply);
    }
    let label = pair as u64 + 1;
    w[n - 1] = checksum(label, seq, &w[1..n - 1]);
    wire::load(label, &w[..n], &[])
}

/// Checks the received message (in the MRs) against `pair`, `seq`, `reply`; adds to the
/// pair's error counters. Returns whether it was right.
fn verify(c: &Cells<{ p::WORDS }>, pair: usize, seq: u64, reply: bool, tag: MsgTag) -> bool {
    let n = tag.untyped() as usize;
    let label = pair as u64 + 1;
    if tag.label() != label || !(n == 4 || n == LONG_WORDS) || tag.typed() != 0 {
        c.add(p::SUM_ERR, 1);
        return false;
    }
    let mut w = [0u64; LONG_WORDS];
    for (k, slot) in w.iter_mut().enumerate().take(n) {
        *slot = l4::utcb::mr(k + 1).unwrap_or(0);
    }
    if w[0] != seq {
        c.add(p::SEQ_ERR, 1);
        return false;
    }
    let want_n = if seq.is_multiple_of(LONG_EVERY) {
        LONG_WORDS
    } else {
        4
    };
    let payload_ok = (1..n - 1).all(|k| w[k] == payload(pair, seq, k, reply));
    if n != want_n || !payload_ok || w[n - 1] != checksum(label, seq, &w[1..n - 1]) {
        c.add(p::SUM_ERR, 1);
        return false;
    }
    true
}

/// Notes an IPC failure (the first one's outcome).
fn ipc_failed(c: &Cells<{ p::WORDS }>, r: &wire::Ret) {
    if c.get(p::IPC_ERR) == 0 {
        c.set(p::IPC_ERR, r.outcome());
    }
}

/// The client of pair `pair`: CALLS calls with timeouts never.
fn client(pair: usize) {
    let c = &PAIR[pair];
    let server = ThreadId(c.get(p::SERVER));
    let server_from = c.get(p::SERVER_FROM);
    for seq in 1..=CALLS {
        let tag = load(pair, seq, false);
        let r = wire::ipc(server, server, tmo(Time::Never, Time::Never), tag);
        if r.failed() {
            ipc_failed(c, &r);
            break;
        }
        if r.from.raw() != server_from {
            c.add(p::FROM_ERR, 1);
        }
        if verify(c, pair, seq, true, r.tag) {
            c.add(p::CALLS_OK, 1);
        }
    }
    c.set(p::CLIENT_END, 1);
}

/// The server of pair `pair`: receives from anyone, answers with reply-and-wait.
fn server(pair: usize) {
    let c = &PAIR[pair];
    let client_from = c.get(p::CLIENT_FROM);
    let mut r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, Time::Never),
        MsgTag::NIL,
    );
    let mut expect = 1;
    loop {
        if r.failed() {
            ipc_failed(c, &r);
            break;
        }
        if r.from.raw() != client_from {
            c.add(p::FROM_ERR, 1);
        }
        let seq = l4::utcb::mr(1).unwrap_or(0);
        if seq != expect {
            c.add(p::SEQ_ERR, 1);
        }
        let _ = verify(c, pair, seq, false, r.tag);
        expect = seq + 1;
        c.add(p::SERVED, 1);
        let tag = load(pair, seq, true);
        if seq >= CALLS {
            // The last answer: send only.
            let s = wire::ipc(r.from, ThreadId::NIL, tmo(Time::Zero, Time::Never), tag);
            if s.failed() {
                ipc_failed(c, &s);
            }
            break;
        }
        r = wire::ipc(r.from, ThreadId::ANY, tmo(Time::Zero, Time::Never), tag);
    }
    c.set(p::SERVER_END, 1);
}

/// Spins until told to stop.
fn spinner(_: usize) {
    while !STOP.load(Ordering::Relaxed) {
        SPINS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where a pair's client and server live.
#[derive(Clone, Copy)]
enum Place {
    Root,
    Child1,
    Child2,
}

/// Creates a thread (not started) at `place`.
fn create(place: Place, s1: &mut Space, s2: &mut Space) -> Result<Thread, Why> {
    match place {
        Place::Root => Thread::local(PRIO),
        Place::Child1 => s1.thread(PRIO),
        Place::Child2 => s2.thread(PRIO),
    }
}

/// What the run produced.
struct Report {
    pairs: [[u64; p::WORDS]; PAIRS],
}

fn stress() -> Result<Report, Why> {
    for c in &PAIR {
        c.clear();
    }
    STOP.store(false, Ordering::SeqCst);
    SPINS.store(0, Ordering::SeqCst);
    let mut s1 = Space::new()?;
    let mut s2 = Space::new()?;
    let plan = [
        (Place::Child1, Place::Child2),
        (Place::Root, Place::Root),
        (Place::Root, Place::Child1),
        (Place::Child2, Place::Root),
    ];
    let mut servers: [Option<Thread>; PAIRS] = [const { None }; PAIRS];
    let mut clients: [Option<Thread>; PAIRS] = [const { None }; PAIRS];
    for (k, &(cp, sp)) in plan.iter().enumerate() {
        let srv = create(sp, &mut s1, &mut s2)?;
        let cli = create(cp, &mut s1, &mut s2)?;
        let same = matches!((cp, sp), (Place::Root, Place::Root));
        let c = &PAIR[k];
        c.set(p::SERVER, srv.id().raw());
        c.set(
            p::CLIENT_FROM,
            if same {
                cli.local_id().raw()
            } else {
                cli.id().raw()
            },
        );
        c.set(
            p::SERVER_FROM,
            if same {
                srv.local_id().raw()
            } else {
                srv.id().raw()
            },
        );
        servers[k] = Some(srv);
        clients[k] = Some(cli);
    }
    let spin = Thread::spawn(spinner, 0, SPIN_PRIO)?;
    let start_one = |t: &Thread,
                     place: Place,
                     f: fn(usize),
                     k: usize,
                     s1: &Space,
                     s2: &Space|
     -> Result<(), Why> {
        match place {
            Place::Root => {
                let (sp, ip) = t.entry(f, k);
                l4::thread::start(t.id(), sp, ip)
                    .map(|_| ())
                    .map_err(|e| Why::new(format_args!("start: {:?}", e)))
            }
            Place::Child1 => s1.start(t, f, k),
            Place::Child2 => s2.start(t, f, k),
        }
    };
    for (k, &(_, sp)) in plan.iter().enumerate() {
        if let Some(t) = &servers[k] {
            start_one(t, sp, server, k, &s1, &s2)?;
        }
    }
    crate::harness::allow(BOUND_US + 30_000_000);
    let t0 = now();
    for (k, &(cp, _)) in plan.iter().enumerate() {
        if let Some(t) = &clients[k] {
            start_one(t, cp, client, k, &s1, &s2)?;
        }
    }
    let all_done = || {
        PAIR.iter()
            .all(|c| c.get(p::CLIENT_END) != 0 && c.get(p::SERVER_END) != 0)
    };
    let mut aborted = false;
    while !all_done() {
        if now() - t0 > BOUND_US {
            aborted = true;
            break;
        }
        let _ = l4::ipc::sleep(Time::Period { us: 20_000 });
    }
    let elapsed = now() - t0;
    crate::harness::allow(crate::harness::DEFAULT_ALLOWANCE_US);
    STOP.store(true, Ordering::SeqCst);
    if aborted {
        for t in servers.iter().chain(clients.iter()).flatten() {
            let _ = l4::thread::ExRegs::new()
                .abort_send()
                .abort_receive()
                .apply(t.id());
        }
    }
    drop(spin);
    let delivered: u64 = PAIR
        .iter()
        .map(|c| c.get(p::CALLS_OK) + c.get(p::SERVED))
        .sum();
    println!(
        "ipctests: stress: {} messages ({} pairs x {} calls, 2 messages each) delivered of {} in {} ms{}; the low-priority thread spun {} rounds",
        delivered,
        PAIRS,
        CALLS,
        MESSAGES,
        elapsed / 1000,
        if aborted { " (ABORTED at the bound)" } else { "" },
        SPINS.load(Ordering::SeqCst)
    );
    let mut rep = Report {
        pairs: [[0; p::WORDS]; PAIRS],
    };
    for (k, c) in PAIR.iter().enumerate() {
        for i in 0..p::WORDS {
            rep.pairs[k][i] = c.get(i);
        }
    }
    Ok(rep)
}

impl Report {
    fn delivered(&self) -> Check {
        for (k, w) in self.pairs.iter().enumerate() {
            ensure!(
                w[p::CALLS_OK] == CALLS && w[p::SERVED] == CALLS,
                "pair {}: {} calls answered correctly, {} requests served, of {}",
                k,
                w[p::CALLS_OK],
                w[p::SERVED],
                CALLS
            );
        }
        Ok(())
    }

    fn sum(&self, i: usize, what: &str) -> Check {
        for (k, w) in self.pairs.iter().enumerate() {
            ensure!(w[i] == 0, "pair {}: {} {} errors", k, w[i], what);
        }
        Ok(())
    }

    fn ipc(&self) -> Check {
        for (k, w) in self.pairs.iter().enumerate() {
            ensure!(
                w[p::IPC_ERR] == 0,
                "pair {}: an IPC failed: {}",
                k,
                wire::Shown(w[p::IPC_ERR])
            );
        }
        Ok(())
    }
}
