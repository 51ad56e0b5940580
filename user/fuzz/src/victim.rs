//! Victims: threads that exist to be targets. Each waits for messages from anyone (with a
//! random timeout), now and then answers, and counts what it got. Fuzzers in the same
//! space may halt them, abort their IPC, move their stack or IP anywhere; a victim sent
//! back to [`restart_point`] starts over.
//!
//! A victim accepts mappings into its space's sandbox and strings into its sink only.

use core::sync::atomic::Ordering;

use abi::fpage::{Fpage, Rights};
use abi::msg::{Acceptor, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::rng::Rng;
use crate::world::{self, SHARED};

/// The `(sp, ip)` that starts victim `role` afresh: its stack top keeps the trampoline
/// frame (argument and entry) that M wrote when it first started it.
pub fn restart_point(role: usize) -> (u64, u64) {
    let top = world::stack_of(role).end & !15;
    extern "C" {
        fn l4_thread_trampoline();
    }
    (top - 16, l4_thread_trampoline as *const () as u64)
}

/// A victim's life.
pub extern "C" fn victim_main(role: usize) -> ! {
    let k = world::VICTIMS.iter().position(|&r| r == role).unwrap_or(0);
    let mut rng = Rng::new(SHARED.seed.load(Ordering::Relaxed), 0x7000 + role as u64);
    let space = world::space_of(role);
    let sink = world::sink_of(space);
    let part = sink.len() / 4;
    let window = Fpage::new(world::SANDBOX, world::SANDBOX_LOG2, Rights::NONE);
    l4::ipc::set_acceptor(Acceptor::new(window, true));
    let _ = l4::utcb::set_br(1, StringItemHeader::simple(part).encode());
    let _ = l4::utcb::set_br(2, sink.start + k as u64 * part);
    let mut pending = l4::ipc::receive(ThreadId::ANY, timeout(&mut rng));
    loop {
        match pending {
            Ok(rx) => {
                SHARED.victim_rx[k].fetch_add(1, Ordering::Relaxed);
                if rng.percent(97) {
                    // Reply and wait in one call (the IPC fast path's reply-and-wait when
                    // the reply is short and the wait has no timeout).
                    let n = rng.below(10) as usize;
                    let mut words = [0u64; 10];
                    for w in words.iter_mut().take(n) {
                        *w = rng.next();
                    }
                    if let Ok(m) = l4::ipc::Msg::with_words(rng.below(64), &words[..n]) {
                        m.load();
                        let t = l4::ipc::timeouts(Time::Zero, timeout(&mut rng));
                        pending = l4::ipc::ipc(rx.from, ThreadId::ANY, t, m.tag())
                            .map(|(_, from)| l4::ipc::Received { from, msg: l4::ipc::Msg::from_utcb() });
                        continue;
                    }
                }
            }
            Err(_) => l4::thread::yield_now(),
        }
        pending = l4::ipc::receive(ThreadId::ANY, timeout(&mut rng));
    }
}

/// A victim's receive timeout: often none.
fn timeout(rng: &mut Rng) -> Time {
    match rng.below(10) {
        0..=4 => Time::Never,
        5 => Time::Period { us: 1 + rng.below(1000) },
        6..=8 => Time::Period { us: 1 + rng.below(50_000) },
        _ => Time::Zero,
    }
}
