//! The canary: two threads in two spaces of their own (A calls, B answers) that keep a
//! ping-pong going for the whole run and check, on every round trip, that each message
//! arrived whole (every word a function of the sequence number), and now and then that
//! their memory still has the checksum M computed before they started. Their data pages
//! are mapped read-only; their stacks and the shared page writable (M is their pager).
//!
//! Message sizes cycle through 0..=12 untyped words, so both the fast path (up to 8)
//! and the full path carry them.

use core::sync::atomic::Ordering;

use abi::msg::MsgTag;
use abi::time::Time;

use crate::world::{self, SHARED};

/// Labels of requests and replies.
const REQUEST: u64 = 0xCA;
const REPLY: u64 = 0xCB;
/// Round trips between two checksum checks.
const CHECK_EVERY: u64 = 256;
/// Round trips between two pauses of A.
const PAUSE_EVERY: u64 = 16;
/// Most words in a message.
const MAX_WORDS: u64 = 12;
/// How long either side waits for the other.
const PATIENCE: Time = Time::Period { us: 3_000_000 };

/// Word `i` of request `seq`.
fn request_word(seq: u64, i: usize) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(i as u32 * 5) ^ i as u64
}

/// Word `i` of the reply to request `seq`.
fn reply_word(seq: u64, i: usize) -> u64 {
    !request_word(seq, i).rotate_right(7)
}

/// Checksum of `len` bytes at `start` (read as words).
pub fn checksum(start: u64, len: u64) -> u64 {
    let mut s = 0xCBF2_9CE4_8422_2325u64;
    let mut a = start;
    while a < start + len {
        // SAFETY: callers pass a canary data range: mapped (read-only at least) in the
        // caller's space for the whole run, word aligned.
        let w = unsafe { core::ptr::read_volatile(a as *const u64) };
        s = (s ^ w).wrapping_mul(0x100_0000_01B3);
        a += 8;
    }
    s
}

/// Fills canary `k`'s data with a pattern from `seed` and returns its checksum (M, before
/// the canary starts).
pub fn fill(k: usize, seed: u64) -> u64 {
    let r = world::canary_data(k);
    let mut rng = crate::rng::Rng::new(seed, 0xCA00 + k as u64);
    let mut a = r.start;
    while a < r.end {
        // SAFETY: the canary data pages are in the root task's image, writable there,
        // and used by nobody else before the canary starts.
        unsafe { core::ptr::write_volatile(a as *mut u64, rng.next()) };
        a += 8;
    }
    checksum(r.start, r.len())
}

fn check_memory(k: usize) {
    let r = world::canary_data(k);
    if checksum(r.start, r.len()) == SHARED.canary_sum[k].load(Ordering::Relaxed) {
        SHARED.canary_sum_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        SHARED.canary_sum_bad.fetch_add(1, Ordering::Relaxed);
    }
}

fn load(words: u64, f: impl Fn(usize) -> u64) {
    for i in 0..words as usize {
        let _ = l4::utcb::set_mr(i + 1, f(i));
    }
}

/// A: calls B until told to stop.
pub extern "C" fn caller(_role: usize) -> ! {
    let b = world::id_of(world::CB);
    let mut seq = 0u64;
    while SHARED.stop.load(Ordering::Relaxed) == 0 {
        seq += 1;
        let n = seq % (MAX_WORDS + 1);
        let mut words = [0u64; MAX_WORDS as usize];
        for (i, w) in words.iter_mut().enumerate().take(n as usize) {
            *w = request_word(seq, i);
        }
        // The sequence number travels in the label (the words are a function of it).
        let tag = MsgTag::new(REQUEST << 32 | (seq & 0xFFFF_FFFF), n as u8, 0);
        load(n, |i| words[i]);
        let t = l4::ipc::timeouts(PATIENCE, PATIENCE);
        match l4::ipc::ipc(b, b, t, tag) {
            Ok((rtag, _)) => {
                let ok_tag = rtag.label() == (REPLY << 32 | (seq & 0xFFFF_FFFF)) && rtag.untyped() as u64 == n && rtag.typed() == 0;
                let mut bad = None;
                for i in 0..n as usize {
                    let got = l4::utcb::mr(i + 1).unwrap_or(0);
                    if got != reply_word(seq, i) {
                        bad = Some((i, got));
                        break;
                    }
                }
                if (!ok_tag || bad.is_some()) && SHARED.canary_bad_reply.fetch_add(1, Ordering::Relaxed) == 0 {
                    let (i, got) = bad.unwrap_or((usize::MAX, rtag.raw()));
                    SHARED.canary_first_bad[0].store(seq, Ordering::Relaxed);
                    SHARED.canary_first_bad[1].store(i as u64, Ordering::Relaxed);
                    SHARED.canary_first_bad[2].store(got, Ordering::Relaxed);
                }
                SHARED.canary_rt.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                SHARED.canary_ipc_errors.fetch_add(1, Ordering::Relaxed);
                SHARED.canary_last_error.store(match e {
                    l4::ipc::IpcFailure::Ipc(x) => x.encode(),
                    l4::ipc::IpcFailure::Unknown(x) => x,
                }, Ordering::Relaxed);
            }
        }
        if seq.is_multiple_of(CHECK_EVERY) {
            check_memory(0);
        }
        if seq.is_multiple_of(PAUSE_EVERY) {
            // Leave the processor to the others now and then (a ping-pong never blocks).
            let _ = l4::ipc::sleep(Time::Period { us: 1000 });
        }
    }
    check_memory(0);
    SHARED.canary_done.store(1, Ordering::Release);
    crate::calls::park()
}

/// B: answers A.
pub extern "C" fn echo(_role: usize) -> ! {
    let a = world::id_of(world::CA);
    let mut answered = 0u64;
    let mut pending = l4::ipc::receive(a, Time::Never).map(|rx| rx.msg.tag());
    loop {
        let tag = match pending {
            Ok(t) => t,
            Err(_) => {
                pending = l4::ipc::receive(a, Time::Never).map(|rx| rx.msg.tag());
                continue;
            }
        };
        let seq = tag.label() & 0xFFFF_FFFF;
        let n = tag.untyped() as u64;
        let mut ok = tag.label() >> 32 == REQUEST && n <= MAX_WORDS && tag.typed() == 0 && n == seq % (MAX_WORDS + 1);
        for i in 0..n.min(MAX_WORDS) as usize {
            ok &= l4::utcb::mr(i + 1).unwrap_or(0) == request_word(seq, i);
        }
        if !ok {
            SHARED.canary_bad_request.fetch_add(1, Ordering::Relaxed);
        }
        load(n.min(MAX_WORDS), |i| reply_word(seq, i));
        let reply = MsgTag::new(REPLY << 32 | seq, n.min(MAX_WORDS) as u8, 0);
        answered += 1;
        if answered.is_multiple_of(CHECK_EVERY) {
            check_memory(1);
        }
        let t = l4::ipc::timeouts(Time::Zero, Time::Never);
        pending = l4::ipc::ipc(a, a, t, reply).map(|(t, _)| t);
    }
}
