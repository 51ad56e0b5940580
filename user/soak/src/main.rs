//! `soak`: a long, steady load on IPC and mappings, run as the root task by
//! `cargo xtask soak`. It counts every message lost or corrupted (there must be none) and
//! checks that the kernel's memory is back at its start value when everything it made is
//! gone.
//!
//! ```text
//!  clients (3 spaces x 2 threads) ──call──▶ servers (2 spaces, reply-and-wait)
//!     request: label = client << 32 | seq, 0..=12 words f(client, seq, i)
//!     reply:   label = !request label,     the same count of words g(client, seq, i)
//!
//!  mappers (2 spaces) ──map item (page p, rw)──▶ receivers (2 spaces), sandbox window
//!     the receiver checks the page's pattern for cycle c, writes an answer word, replies;
//!     the mapper checks the answer in its own mapping, then Unmaps the page (revoking
//!     the receiver's mapping). Every PROBE_EVERY cycles the receiver then touches the
//!     revoked page: it must fault (M, the pager of everything, counts and serves it).
//! ```
//!
//! Arguments (embedded by xtask): `ipcs=N` round trips (default 10^7; each is two
//! messages), `maps=M` map/unmap cycles (default 10^6), `seed=S`.
//! Output: `soak:` progress lines, `SOAK-RESULT` for xtask, `TERN-TEST` lines, power off.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "../../fuzz/src/args.rs"]
mod args;
mod world;
mod workers;

use core::sync::atomic::Ordering;

use abi::fpage::Fpage;
use abi::msg::{label, MapItem};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};
use l4::println;
use l4::thread;

use crate::world::SHARED;

/// Priority of the workers.
pub const PRIO: u8 = 100;
/// Priority of M (pager, supervisor).
pub const M_PRIO: u8 = 120;
/// A run without progress for this long (guest time) is reported as stalled.
const STALL_US: u64 = 20_000_000;

fn main() {
    let args = args::Args::read();
    let ipcs = args.number("ipcs", 10_000_000);
    let maps = args.number("maps", 1_000_000);
    let seed = args.number("seed", 1);
    println!("soak: {} IPC round trips, {} map/unmap cycles (arguments: {:?})", ipcs, maps, args.text());
    SHARED.seed.store(seed, Ordering::Relaxed);
    world::set_quotas(ipcs, maps);
    let me = l4::utcb::my_global_id();
    SHARED.ids[world::M].store(me.raw(), Ordering::Release);
    let mut checks = Checks::default();
    if let Err(e) = thread::set_priority(me, M_PRIO) {
        println!("soak: Schedule (own priority): {:?}", e);
    }
    let before = l4::kdb::kernel_memory().0;
    let started = l4::syscall::system_clock();
    let setup = world::setup();
    let mut m = Pager::default();
    let mut stalled = false;
    if let Err(e) = &setup {
        println!("soak: setup failed: {}", e);
    } else {
        println!("soak: start");
        stalled = !m.run();
        println!("soak: done");
    }
    let guest_us = l4::syscall::system_clock().saturating_sub(started).max(1);
    SHARED.stop.store(1, Ordering::Release);
    let teardown_errors = world::teardown();
    let after = l4::kdb::kernel_memory().0;
    let rt = world::sum(&SHARED.rt);
    let lost = world::sum(&SHARED.lost);
    let corrupted = world::sum(&SHARED.corrupted) + world::sum(&SHARED.bad_requests);
    let cycles = world::sum(&SHARED.cycles);
    let map_errors = world::sum(&SHARED.map_errors);
    let probes = world::sum(&SHARED.probes);
    let probe_faults = world::sum(&SHARED.probe_faults);
    println!(
        "SOAK-RESULT round_trips={} messages={} lost={} corrupted={} map_cycles={} map_errors={} probes={} probe_faults={} kmem_before={} kmem_after={} guest_us={} faults_served={}",
        rt,
        2 * rt,
        lost,
        corrupted,
        cycles,
        map_errors,
        probes,
        probe_faults,
        before,
        after,
        guest_us,
        m.served
    );
    checks.check("soak::setup", setup.is_ok(), format_args!("{}", setup.err().unwrap_or("")));
    checks.check("soak::no-stall", !stalled, format_args!("no progress for {} s", STALL_US / 1_000_000));
    checks.check(
        "soak::ipc-round-trips-complete",
        rt == ipcs && lost == 0,
        format_args!("{} of {} round trips, {} lost (last IPC error {:#x})", rt, ipcs, lost, SHARED.last_error.load(Ordering::Relaxed)),
    );
    checks.check(
        "soak::ipc-no-corruption",
        corrupted == 0,
        format_args!("{} corrupted messages (first: client {} seq {} word {})", corrupted, SHARED.first_bad[0].load(Ordering::Relaxed), SHARED.first_bad[1].load(Ordering::Relaxed), SHARED.first_bad[2].load(Ordering::Relaxed) as i64),
    );
    checks.check(
        "soak::map-unmap-cycles-complete",
        cycles == maps && map_errors == 0,
        format_args!("{} of {} cycles, {} errors (last: {:#x})", cycles, maps, map_errors, SHARED.last_map_error.load(Ordering::Relaxed)),
    );
    checks.check(
        "soak::unmap-revokes",
        probes > 0 && probe_faults == probes,
        format_args!("{} probes of revoked pages, {} faulted", probes, probe_faults),
    );
    checks.check("soak::teardown", teardown_errors == 0, format_args!("{} deletions failed", teardown_errors));
    checks.check("soak::kernel-memory-restored", before != 0 && before == after, format_args!("{} free kernel frames before, {} after", before, after));
    println!("TERN-TEST end: {} passed, {} failed", checks.passed, checks.failed);
    l4::kdb::power_off(checks.failed);
    workers::park()
}

#[derive(Default)]
struct Checks {
    passed: u64,
    failed: u64,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, why: core::fmt::Arguments) {
        if ok {
            self.passed += 1;
            println!("TERN-TEST ok {}", name);
        } else {
            self.failed += 1;
            println!("TERN-TEST FAIL {}: {}", name, why);
        }
    }
}

/// M as the pager of every soak space, and the run's watchdog.
#[derive(Default)]
struct Pager {
    served: u64,
    refused: u64,
}

impl Pager {
    /// Serves faults until every worker is done; false if the run stalled.
    fn run(&mut self) -> bool {
        let total = SHARED.quota_rt.load(Ordering::Relaxed) + SHARED.quota_maps.load(Ordering::Relaxed);
        let step = (total / 20).max(1);
        let mut next_report = step;
        let mut last_progress = 0;
        let mut last_change = l4::syscall::system_clock();
        loop {
            if let Ok(rx) = ipc::receive(ThreadId::ANY, Time::Period { us: 20_000 }) {
                self.serve(rx.from, &rx.msg);
            }
            let progress = world::sum(&SHARED.rt) + world::sum(&SHARED.cycles);
            let now = l4::syscall::system_clock();
            if progress != last_progress {
                last_progress = progress;
                last_change = now;
            } else if now.saturating_sub(last_change) > STALL_US {
                println!("soak: no progress for {} s", STALL_US / 1_000_000);
                return false;
            }
            if progress >= next_report {
                println!(
                    "soak: progress {} round trips, {} map cycles, kernel memory {} free frames",
                    world::sum(&SHARED.rt),
                    world::sum(&SHARED.cycles),
                    l4::kdb::kernel_memory().0
                );
                next_report += step;
            }
            if world::all_done() {
                return true;
            }
        }
    }

    /// Maps the page a worker faulted on: the root task's page at the same address (the
    /// image read and execute, the worker's own area writable), or, for a probe of a
    /// revoked page in a receiver's sandbox, the mapper's page it probes (counted).
    fn serve(&mut self, from: ThreadId, msg: &Msg) {
        let tag = msg.tag();
        if tag.label() & !0xF != label::PAGE_FAULT || tag.untyped() != 2 {
            self.refused += 1;
            return;
        }
        let Some(role) = world::role_of(from) else {
            self.refused += 1;
            return;
        };
        let addr = msg.word(0).unwrap_or(0);
        let write = tag.label() & 2 != 0;
        let page = addr & !0xFFF;
        let (src, rights) = match world::fault_policy(role, addr, write) {
            Some(x) => x,
            None => {
                self.refused += 1;
                println!("soak: fault of role {} at {:#x} (ip {:#x}) refused", role, addr, msg.word(1).unwrap_or(0));
                return;
            }
        };
        let mut m = Msg::new(0);
        let item = MapItem::map(Fpage::new(src, 12, rights), page);
        if m.push_map(item).is_ok() && ipc::reply(from, &m).is_ok() {
            self.served += 1;
        }
    }
}
l4::main!(main);
