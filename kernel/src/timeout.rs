//! Kernel timeouts: threads waiting with a deadline (IPC timeouts, sleeps).
//!
//! Waiting threads with a deadline sit in one list sorted by deadline; the scheduler
//! arms the APIC timer for the head, so when no timeout is pending the mechanism costs
//! nothing but a null check.
//!
//! # Invariants
//! - The list is sorted by `Tcb::wakeup_at`, ascending; a thread is on it at most once.

use crate::thread::Tcb;
use crate::util::KCell;

/// What expiry does to a waiting thread.
pub type ExpireFn = fn(&mut Tcb);

struct Timeouts {
    head: *mut Tcb,
}

static TIMEOUTS: KCell<Timeouts> = KCell::new(Timeouts { head: core::ptr::null_mut() });

/// The earliest pending deadline (µs), if any.
#[inline]
pub fn next_deadline() -> Option<u64> {
    let h = TIMEOUTS.get().head;
    // SAFETY: list members are live TCBs (removed before a thread dies).
    (!h.is_null()).then(|| unsafe { (*h).wakeup_at })
}

/// Adds `t` with deadline `at` (µs).
pub fn add(t: &mut Tcb, at: u64) {
    remove(t);
    t.wakeup_at = at;
    t.timeout_queued = true;
    let tp = t as *mut Tcb;
    let mut link: *mut *mut Tcb = &mut TIMEOUTS.get_mut().head;
    // SAFETY: walking the list of live TCBs (invariant) through their `timeout_next` links.
    unsafe {
        while !(*link).is_null() && (**link).wakeup_at <= at {
            link = &mut (**link).timeout_next;
        }
        t.timeout_next = *link;
        *link = tp;
    }
}

/// Removes `t` if it is waiting for a timeout.
pub fn remove(t: &mut Tcb) {
    if !t.timeout_queued {
        return;
    }
    let tp = t as *mut Tcb;
    let mut link: *mut *mut Tcb = &mut TIMEOUTS.get_mut().head;
    // SAFETY: as in `add`.
    unsafe {
        while !(*link).is_null() {
            if *link == tp {
                *link = t.timeout_next;
                break;
            }
            link = &mut (**link).timeout_next;
        }
    }
    t.timeout_next = core::ptr::null_mut();
    t.timeout_queued = false;
}

/// Fires every timeout whose deadline is at or before `now`.
pub fn expire(now: u64) {
    loop {
        let h = TIMEOUTS.get().head;
        if h.is_null() {
            return;
        }
        // SAFETY: list members are live TCBs.
        let t = unsafe { &mut *h };
        if t.wakeup_at > now {
            return;
        }
        remove(t);
        crate::ipc::timeout_expired(t);
    }
}
