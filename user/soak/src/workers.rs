//! What the soak workers do: servers answer, clients call and check, mappers map, check
//! and unmap, receivers check what they were given.
//!
//! Every message's words are a function of who sent it and its sequence number, so the
//! receiving side can tell a lost, reordered or corrupted message from a good one.

use core::sync::atomic::Ordering;

use abi::fpage::{Fpage, Rights};
use abi::msg::{Acceptor, MapItem, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc;

use crate::world::{self, SHARED};

/// Longest message (untyped words).
const MAX_WORDS: u64 = 12;
/// How long a client or mapper waits for its partner before counting the message lost.
const PATIENCE: Time = Time::Period { us: 10_000_000 };
/// Map cycles between two probes of a revoked page.
pub const PROBE_EVERY: u64 = 1024;
/// Labels of the mapping protocol.
const MAP: u64 = 0x3A9;
const PROBE: u64 = 0x3AB;
const OK: u64 = 0x0C;
const BAD: u64 = 0xBAD;
/// Where probes look: past the addresses the map cycles use.
const PROBE_BASE: u64 = world::SANDBOX + (1 << 24);

/// Word `i` of client `c`'s request `seq`.
fn request_word(c: u64, seq: u64, i: usize) -> u64 {
    (c << 56 ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7 * i as u32 + 1) ^ i as u64
}

/// Word `i` of the reply.
fn reply_word(c: u64, seq: u64, i: usize) -> u64 {
    !request_word(c, seq, i).rotate_right(13)
}

/// The reply label for a request label (both 48 bits).
fn reply_label(l: u64) -> u64 {
    l ^ abi::msg::label::LABEL_MASK
}

/// Pattern of mapper `k`'s page in cycle `c`, and the receiver's answer.
fn pattern(k: u64, c: u64) -> u64 {
    (k << 60 | c).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

fn answer(k: u64, c: u64) -> u64 {
    pattern(k, c).rotate_left(17) ^ 0xA5A5
}

fn read(a: u64) -> u64 {
    // SAFETY: callers pass an address in this space's sandbox that the protocol says is
    // mapped now (or whose fault the pager resolves), or a mapper page; 8-byte aligned.
    unsafe { core::ptr::read_volatile(a as *const u64) }
}

fn write(a: u64, v: u64) {
    // SAFETY: as in `read`, for pages mapped writable.
    unsafe { core::ptr::write_volatile(a as *mut u64, v) }
}

fn load(n: u64, f: impl Fn(usize) -> u64) {
    for i in 0..n as usize {
        let _ = l4::utcb::set_mr(i + 1, f(i));
    }
}

/// Waits for good.
pub fn park() -> ! {
    loop {
        let _ = ipc::sleep(Time::Never);
    }
}

/// A server: answers any client, checking the request.
pub extern "C" fn server(role: usize) -> ! {
    let k = world::SERVERS.iter().position(|&r| r == role).unwrap_or(0);
    let mut next = ipc::ipc(ThreadId::NIL, ThreadId::ANY, ipc::timeouts(Time::Never, Time::Never), MsgTag::NIL);
    loop {
        let (tag, from) = match next {
            Ok(x) => x,
            Err(_) => {
                next = ipc::ipc(ThreadId::NIL, ThreadId::ANY, ipc::timeouts(Time::Never, Time::Never), MsgTag::NIL);
                continue;
            }
        };
        let l = tag.label();
        let (c, seq) = (l >> 32, l & 0xFFFF_FFFF);
        let n = tag.untyped() as u64;
        let mut ok = n == seq % (MAX_WORDS + 1) && tag.typed() == 0;
        for i in 0..n.min(MAX_WORDS) as usize {
            ok &= l4::utcb::mr(i + 1).unwrap_or(0) == request_word(c, seq, i);
        }
        if !ok {
            SHARED.bad_requests[k].fetch_add(1, Ordering::Relaxed);
        }
        let n = n.min(MAX_WORDS);
        load(n, |i| reply_word(c, seq, i));
        let reply = MsgTag::new(reply_label(l), n as u8, 0);
        next = ipc::ipc(from, ThreadId::ANY, ipc::timeouts(Time::Zero, Time::Never), reply);
    }
}

/// A client: its share of round trips to one server.
pub extern "C" fn client(role: usize) -> ! {
    let k = world::CLIENTS.iter().position(|&r| r == role).unwrap_or(0);
    let server = world::id_of(world::SERVERS[k % 2]);
    let c = k as u64 + 1;
    for seq in 1..=world::client_quota(k) {
        if SHARED.stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        let n = seq % (MAX_WORDS + 1);
        load(n, |i| request_word(c, seq, i));
        let l = c << 32 | (seq & 0xFFFF_FFFF);
        match ipc::ipc(server, server, ipc::timeouts(PATIENCE, PATIENCE), MsgTag::new(l, n as u8, 0)) {
            Ok((tag, _)) => {
                let mut bad = None;
                if tag.label() != reply_label(l) || tag.untyped() as u64 != n || tag.typed() != 0 {
                    bad = Some(u64::MAX);
                }
                for i in 0..n as usize {
                    if bad.is_none() && l4::utcb::mr(i + 1).unwrap_or(0) != reply_word(c, seq, i) {
                        bad = Some(i as u64);
                    }
                }
                if let Some(i) = bad {
                    if SHARED.corrupted[k].fetch_add(1, Ordering::Relaxed) == 0 {
                        SHARED.first_bad[0].store(c, Ordering::Relaxed);
                        SHARED.first_bad[1].store(seq, Ordering::Relaxed);
                        SHARED.first_bad[2].store(i, Ordering::Relaxed);
                    }
                }
                SHARED.rt[k].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                SHARED.lost[k].fetch_add(1, Ordering::Relaxed);
                SHARED.last_error.store(
                    match e {
                        ipc::IpcFailure::Ipc(x) => x.encode(),
                        ipc::IpcFailure::Unknown(x) => x,
                    },
                    Ordering::Relaxed,
                );
            }
        }
    }
    SHARED.done[role].store(1, Ordering::Release);
    park()
}

fn map_error(k: usize, what: u64) {
    SHARED.map_errors[k].fetch_add(1, Ordering::Relaxed);
    SHARED.last_map_error.store(what, Ordering::Relaxed);
}

/// A mapper: map a page to the receiver, let it check, check its answer, unmap; now and
/// then map to a fresh address, unmap, and let the receiver touch it (it must fault).
pub extern "C" fn mapper(role: usize) -> ! {
    let k = world::MAPPERS.iter().position(|&r| r == role).unwrap_or(0);
    let q = world::id_of(world::RECEIVERS[k]);
    let t = ipc::timeouts(PATIENCE, PATIENCE);
    for c in 1..=world::mapper_quota(k) {
        if SHARED.stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        let probe = c % PROBE_EVERY == 0;
        let page = world::map_page(k, (c % world::MAP_PAGES as u64) as usize);
        let dest = if probe { PROBE_BASE + (c / PROBE_EVERY % 4096) * 4096 } else { world::SANDBOX + (c % 64) * 4096 };
        write(page, pattern(k as u64, c));
        write(page + 4088, pattern(k as u64, c));
        write(page + 8, 0);
        let _ = l4::utcb::set_mr(1, c);
        let _ = l4::utcb::set_mr(2, dest);
        let [w0, w1] = MapItem::map(Fpage::new(page, 12, Rights::RW), dest).encode();
        let _ = l4::utcb::set_mr(3, w0);
        let _ = l4::utcb::set_mr(4, w1);
        match ipc::ipc(q, q, t, MsgTag::new(MAP, 2, 2)) {
            Ok((tag, _)) if tag.label() == OK => {
                if read(page + 8) != answer(k as u64, c) {
                    map_error(k, 1 << 32 | c);
                }
            }
            Ok((tag, _)) => map_error(k, 2 << 32 | tag.label()),
            Err(_) => map_error(k, 3 << 32 | c),
        }
        let mut fp = [Fpage::new(page, 12, Rights::RWX)];
        if l4::space::unmap(&mut fp, false).is_err() {
            map_error(k, 4 << 32 | c);
        }
        if probe {
            // The receiver's mapping is revoked: touching `dest` must fault now. M serves
            // that fault with our page (and counts it).
            SHARED.probe_src[k].store(page, Ordering::Release);
            SHARED.probe_dest[k].store(dest, Ordering::Release);
            SHARED.probes[k].fetch_add(1, Ordering::Relaxed);
            let _ = l4::utcb::set_mr(1, c);
            let _ = l4::utcb::set_mr(2, dest);
            match ipc::ipc(q, q, t, MsgTag::new(PROBE, 2, 0)) {
                Ok((tag, _)) if tag.label() == OK => {}
                Ok((tag, _)) => map_error(k, 5 << 32 | tag.label()),
                Err(_) => map_error(k, 6 << 32 | c),
            }
            SHARED.probe_dest[k].store(0, Ordering::Release);
        }
        SHARED.cycles[k].fetch_add(1, Ordering::Relaxed);
    }
    SHARED.done[role].store(1, Ordering::Release);
    park()
}

/// A receiver: checks each page it is given (and answers in it), and touches probed
/// addresses when asked.
pub extern "C" fn receiver(role: usize) -> ! {
    let k = world::RECEIVERS.iter().position(|&r| r == role).unwrap_or(0) as u64;
    let p = world::id_of(world::MAPPERS[k as usize]);
    ipc::set_acceptor(Acceptor::new(Fpage::new(world::SANDBOX, world::SANDBOX_LOG2, Rights::NONE), false));
    let mut next = ipc::receive(p, Time::Never).map(|rx| rx.msg.tag());
    loop {
        let tag = match next {
            Ok(t) => t,
            Err(_) => {
                next = ipc::receive(p, Time::Never).map(|rx| rx.msg.tag());
                continue;
            }
        };
        let c = l4::utcb::mr(1).unwrap_or(0);
        let dest = l4::utcb::mr(2).unwrap_or(0) & !0xFFF;
        let in_window = (world::SANDBOX..world::SANDBOX + (1 << world::SANDBOX_LOG2)).contains(&dest);
        let ok = match tag.label() {
            MAP if in_window => {
                let good = read(dest) == pattern(k, c) && read(dest + 4088) == pattern(k, c);
                if good {
                    write(dest + 8, answer(k, c));
                }
                good
            }
            PROBE if in_window => read(dest) == pattern(k, c),
            _ => false,
        };
        next = ipc::ipc(p, p, ipc::timeouts(Time::Zero, Time::Never), MsgTag::new(if ok { OK } else { BAD }, 0, 0)).map(|(t, _)| t);
    }
}
