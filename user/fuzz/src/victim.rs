//! Victims: threads that exist to be targets. Each waits for messages from anyone (with a
//! random timeout), now and then answers, and counts what it got. Fuzzers in the same
//! space may halt them, abort their IPC, move their stack or IP anywhere; a victim sent
//! back to [`restart_point`] starts over.
//!
//! A victim accepts mappings into its space's sandbox and strings into its sink only.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::msg::{Acceptor, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::rng::Rng;
use crate::world::{self, SHARED};

/// Stack tops of the victims, by role (written by M before it starts any victim; read
/// by [`fuzz_victim_restart`] in R and U).
pub static VICTIM_TOPS: [AtomicU64; world::ROLES] = [const { AtomicU64::new(0) }; world::ROLES];

core::arch::global_asm!(
    ".section .text.fuzz_victim_restart, \"ax\"",
    ".global fuzz_victim_restart",
    // Where a victim starts, and restarts whatever its registers hold: its role is its
    // UTCB slot (from the local id at %gs:0), its stack the role's own.
    "fuzz_victim_restart:",
    "    mov rdi, gs:[0]",
    "    mov rax, {mr0}",
    "    sub rdi, rax",
    "    shr rdi, 10",
    "    cmp rdi, {roles}",
    "    jae 2f",
    "    lea rax, [rip + {tops}]",
    "    mov rsp, [rax + rdi * 8]",
    "    test rsp, rsp",
    "    jz 2f",
    "    xor ebp, ebp",
    "    call {main}",
    "2:  ud2",
    ".text",
    mr0 = const world::UTCB_AREA + abi::utcb::UTCB_MR0_OFFSET as u64,
    roles = const world::ROLES,
    tops = sym VICTIM_TOPS,
    main = sym victim_main,
);

extern "C" {
    /// The victims' entry (see the `global_asm!` above).
    fn fuzz_victim_restart();
}

/// Records `role`'s stack top for [`fuzz_victim_restart`] (M, before starting it).
pub fn prepare(role: usize) {
    VICTIM_TOPS[role].store(world::stack_of(role).end & !15, Ordering::Release);
}

/// The `(sp, ip)` that starts victim `role` afresh (the SP is not used: the entry takes
/// the role's own stack).
pub fn restart_point(role: usize) -> (u64, u64) {
    ((world::stack_of(role).end & !15) - 16, fuzz_victim_restart as *const () as u64)
}

/// A victim's life.
extern "C" fn victim_main(role: usize) -> ! {
    let k = world::VICTIMS.iter().position(|&r| r == role).unwrap_or(0);
    let mut rng = Rng::new(SHARED.seed.load(Ordering::Relaxed), 0x7000 + role as u64);
    let space = world::space_of(role);
    let sink = world::sink_of(space);
    let part = sink.len() / 4;
    let window = Fpage::new(world::SANDBOX, world::SANDBOX_LOG2, Rights::NONE);
    // Strings into U's sink could fault (see `crate::Finding`).
    let strings = space == world::Space::R || !crate::avoid(crate::Finding::FaultingStrings);
    l4::ipc::set_acceptor(Acceptor::new(window, strings));
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
