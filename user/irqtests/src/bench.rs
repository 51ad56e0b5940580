//! `irq_rt`: the cost of a device interrupt reaching its user-level handler and the
//! handler's acknowledging reply, in time-stamp-counter cycles (guest instructions
//! under QEMU's `-icount`, as `cargo xtask bench` runs).
//!
//! ```text
//!   main (prio 100)                      kernel                    handler (prio 130)
//!   t0 = rdtsc
//!   out THR  (UART loopback: the byte is received, IRQ 4 raised)
//!        ------ interrupt ------------> deliver to the handler ---> t1 = rdtsc
//!                                                                   in RBR (device ack)
//!        <----------------------------- acknowledge + wait <------- Ipc(to = irq, from = irq)
//!   t2 = rdtsc
//! ```
//!
//! `irq_rt` = t2 − t0 (the whole round: interrupt entry, delivery, switch to the handler,
//! its device access and acknowledging IPC, and the switch back); `irq_to_handler` =
//! t1 − t0. Each is the median of [`ROUNDS`] rounds. Printed as `TERN-BENCH` lines (the
//! format `cargo xtask bench` reads).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::time::Time;
use drvkit::irq::{self, Line};
use drvkit::tsc::rdtsc;

use crate::dev;
use crate::env::{self, Worker};
use crate::harness::{ensure, sleep_us, wait_until, Check, Context, Runner};

/// Rounds measured (after [`WARMUP`] unmeasured ones).
const ROUNDS: usize = 64;
const WARMUP: usize = 8;
/// Most spins of the sender waiting for the handler.
const SPIN_MAX: u32 = 100_000;

static T1: [AtomicU64; ROUNDS + WARMUP] = [const { AtomicU64::new(0) }; ROUNDS + WARMUP];
static SEEN: AtomicU64 = AtomicU64::new(0);
static GO: AtomicU64 = AtomicU64::new(0);

fn handler(_: usize) {
    let Ok(l) = Line::try_from(4) else { return };
    if !wait_until(1_000_000, || GO.load(Ordering::Acquire) != 0) {
        return;
    }
    let mut r = irq::wait(l, Time::Period { us: 1_000_000 });
    while r.is_ok() {
        let t1 = rdtsc();
        let i = SEEN.load(Ordering::Relaxed) as usize;
        if let Some(slot) = T1.get(i) {
            slot.store(t1, Ordering::Relaxed);
        }
        dev::recv();
        SEEN.store(i as u64 + 1, Ordering::Release);
        r = irq::ack_and_wait(l, Time::Period { us: 1_000_000 });
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn measure() -> Check {
    SEEN.store(0, Ordering::Release);
    GO.store(0, Ordering::Release);
    dev::loopback(false);
    let l = Line::try_from(4).ctx("line 4")?;
    let mut h = Worker::local(handler, 0, env::MAIN_PRIO + 30)?;
    irq::attach(l, h.id()).ctx("attach")?;
    GO.store(1, Ordering::Release);
    sleep_us(2_000);
    let mut rt = [0u64; ROUNDS];
    let mut lat = [0u64; ROUNDS];
    let mut late = 0;
    for i in 0..ROUNDS + WARMUP {
        let t0 = rdtsc();
        dev::send(i as u8);
        // The interrupt is taken at the next instruction boundary the CPU checks (under
        // QEMU's TCG: the end of the translated block), so spin briefly for the handler.
        let mut spins = 0u32;
        while SEEN.load(Ordering::Acquire) as usize <= i && spins < SPIN_MAX {
            core::hint::spin_loop();
            spins += 1;
        }
        let t2 = rdtsc();
        if spins == SPIN_MAX {
            // The handler did not run while the sender spun: not preempted at once.
            late += 1;
            let _ = wait_until(100_000, || SEEN.load(Ordering::Acquire) as usize > i);
            SEEN.store(i as u64 + 1, Ordering::Release);
            continue;
        }
        if i >= WARMUP {
            rt[i - WARMUP] = t2 - t0;
            lat[i - WARMUP] = T1[i].load(Ordering::Acquire).wrapping_sub(t0);
        }
    }
    h.delete().ctx("delete the handler")?;
    dev::quiet();
    ensure!(
        late == 0,
        "{} of {} interrupts did not preempt the sender at once",
        late,
        ROUNDS + WARMUP
    );
    let (rt, lat) = (median(&mut rt), median(&mut lat));
    l4::println!("TERN-BENCH irq_rt {}", rt);
    l4::println!("TERN-BENCH irq_to_handler {}", lat);
    Ok(())
}

/// Runs the measurement as a check (it fails if interrupts do not preempt at once).
pub fn run(r: &mut Runner) {
    if dev::have_com1() {
        r.check("irq-round-trip-measured", measure);
    } else {
        r.skip_failed("irq-round-trip-measured", "no device ports");
    }
}
