//! The scheduler: 256 fixed priorities, round robin within a priority.
//!
//! Ready threads sit in one circular doubly linked list per priority, with a 256-bit map
//! of non-empty lists, so picking the next thread is a find-first-set and a pointer load.
//! The running thread stays at the head of its list; when its timeslice ends it moves to
//! the tail. The local APIC timer is armed, one shot, for the end of the running thread's
//! timeslice (or the nearest timeout, whichever comes first).
//!
//! **Delayed preemption** (X.2 Schedule's PreemptionControl, the UTCB PreemptFlags): a
//! thread whose scheduler gave it a maximum delay and a sensitive priority, and which has
//! set the `d` flag in its UTCB, keeps the processor when it would be preempted by a
//! thread of priority ≤ its sensitive priority (its own priority at least) — a higher
//! thread becoming ready, or the end of its timeslice — for up to the maximum delay. The
//! kernel sets the pending flag `I` in its UTCB when it defers; the thread is expected to
//! leave its critical section and call ThreadSwitch, which clears `I`, renews the
//! allowance and gives up the processor. One deferral per allowance: when the delay runs
//! out the thread is preempted anyway, and it gets no further deferral until it has
//! called ThreadSwitch. A thread above the sensitive priority preempts at once.
//!
//! ```text
//!   preemption due ── d set, allowance left, rival ≤ sensitive? ──no──► switch
//!         │ yes: set I, allowance spent, deadline = now + max delay
//!         ▼
//!   thread runs on ── ThreadSwitch ──► clear I, renew allowance, yield
//!         └────────── deadline (timer) ──► switch (I stays set)
//! ```
//!
//! # Invariants
//! - A thread is on a ready list iff its state is `Ready` and it is not halted.
//! - `BITMAP` bit p is set iff list p is non-empty.
//! - `defer_until != 0` only while `deferring` is the thread granted that deferral.
//! - A thread's delayed-preemption parameters live in its TCB (`preempt_*`), reset when
//!   it is created; `deferring` is cleared when that thread is deleted (`forget`).

use abi::utcb::{PREEMPT_DELAYED, PREEMPT_PENDING};

use crate::arch::{self, apic, cpu, gdt};
use crate::thread::{State, Tcb};
use crate::util::KCell;

/// Default timeslice (X.2 leaves it to the kernel).
pub const DEFAULT_TIMESLICE_US: u64 = 10_000;

struct Sched {
    heads: [*mut Tcb; 256],
    bitmap: [u64; 4],
    /// When the running thread was dispatched (for timeslice accounting).
    dispatched_at: u64,
    /// The idle context's saved stack pointer.
    idle_sp: u64,
    /// Absolute time (µs) the APIC timer is armed for (0 = disarmed).
    timer_target: u64,
    /// The thread holding a deferred preemption, and when the deferral ends (0 = none).
    deferring: *mut Tcb,
    defer_until: u64,
}

static SCHED: KCell<Sched> = KCell::new(Sched {
    heads: [core::ptr::null_mut(); 256],
    bitmap: [0; 4],
    dispatched_at: 0,
    idle_sp: 0,
    timer_target: 0,
    deferring: core::ptr::null_mut(),
    defer_until: 0,
});

/// The running thread, if any (none while idle).
#[inline(always)]
pub fn current() -> Option<&'static mut Tcb> {
    let c = gdt::current_tcb() as *mut Tcb;
    // SAFETY: `current` is null or a live TCB (a thread is never destroyed while running).
    (!c.is_null()).then(|| unsafe { &mut *c })
}

/// Makes `t` ready (appends it to its priority's list).
pub fn enqueue(t: &mut Tcb) {
    if !t.next.is_null() {
        return;
    }
    let s = SCHED.get_mut();
    let p = t.prio as usize;
    let head = s.heads[p];
    let tp = t as *mut Tcb;
    if head.is_null() {
        t.next = tp;
        t.prev = tp;
        s.heads[p] = tp;
        s.bitmap[p / 64] |= 1 << (p % 64);
    } else {
        // SAFETY: list members are live TCBs (invariant).
        unsafe {
            let tail = (*head).prev;
            t.next = head;
            t.prev = tail;
            (*tail).next = tp;
            (*head).prev = tp;
        }
    }
}

/// Removes `t` from its ready list (no-op if not queued).
pub fn dequeue(t: &mut Tcb) {
    if t.next.is_null() {
        return;
    }
    let s = SCHED.get_mut();
    let p = t.prio as usize;
    let tp = t as *mut Tcb;
    if t.next == tp {
        s.heads[p] = core::ptr::null_mut();
        s.bitmap[p / 64] &= !(1 << (p % 64));
    } else {
        // SAFETY: list members are live TCBs (invariant).
        unsafe {
            (*t.prev).next = t.next;
            (*t.next).prev = t.prev;
        }
        if s.heads[p] == tp {
            s.heads[p] = t.next;
        }
    }
    t.next = core::ptr::null_mut();
    t.prev = core::ptr::null_mut();
}

/// Changes a thread's priority, keeping it queued if it was.
pub fn set_priority(t: &mut Tcb, prio: u8) {
    let queued = !t.next.is_null();
    dequeue(t);
    t.prio = prio;
    if queued {
        enqueue(t);
    }
}

/// Highest-priority ready thread. Ready lists are maintained lazily (Liedtke): the IPC
/// fast path blocks and unblocks threads without touching them, so threads found here
/// that are no longer runnable are dropped on the way.
#[inline]
fn pick() -> Option<*mut Tcb> {
    loop {
        let s = SCHED.get();
        let mut head = None;
        for w in (0..4).rev() {
            if s.bitmap[w] != 0 {
                let p = w * 64 + 63 - s.bitmap[w].leading_zeros() as usize;
                head = Some(s.heads[p]);
                break;
            }
        }
        let h = head?;
        // SAFETY: list members are live TCBs (invariant).
        let t = unsafe { &mut *h };
        if t.state == State::Ready && !t.halted {
            return Some(h);
        }
        dequeue(t);
    }
}

/// Puts the running thread back on its list if the fast path left it off, at the head
/// (it is the one running).
fn requeue_current() {
    if let Some(c) = current() {
        if c.state == State::Ready && !c.halted && c.next.is_null() {
            enqueue(c);
            let s = SCHED.get_mut();
            s.heads[c.prio as usize] = c;
        }
    }
}

/// Moves the running thread to the tail of its list (end of timeslice or yield).
pub fn rotate(t: &mut Tcb) {
    let s = SCHED.get_mut();
    let p = t.prio as usize;
    if s.heads[p] == t as *mut Tcb {
        s.heads[p] = t.next;
    }
}

/// Charges the running thread for the time since it was dispatched.
fn account() {
    let s = SCHED.get_mut();
    let now = apic::now_us();
    if let Some(c) = current() {
        let used = now.saturating_sub(s.dispatched_at);
        c.remaining_us = c.remaining_us.saturating_sub(used);
        if c.quantum_us != 0 {
            c.quantum_us = c.quantum_us.saturating_sub(used);
            if c.quantum_us == 0 {
                // Total quantum used up: no more processor time until Schedule grants more.
                c.quantum_expired = true;
                c.halted = true;
                c.fast_wait = 0;
            }
        }
    }
    s.dispatched_at = now;
}

/// Timer interrupt: ends the running thread's timeslice if it is used up, and fires
/// expired timeouts.
pub fn timer_tick() {
    SCHED.get_mut().timer_target = 0;
    requeue_current();
    account();
    end_expired_deferral(apic::now_us());
    crate::timeout::expire(apic::now_us());
    if let Some(c) = current() {
        if c.timeslice_us != 0 && c.remaining_us == 0 {
            c.remaining_us = c.timeslice_us;
            rotate(c);
        }
    }
    reschedule();
}

/// Gives up the rest of the timeslice (ThreadSwitch to nil).
pub fn yield_now() {
    requeue_current();
    if let Some(c) = current() {
        account();
        c.remaining_us = c.timeslice_us;
        rotate(c);
    }
    reschedule_with(false);
}

/// Switches to the best ready thread if it is not the running one. Returns when the
/// caller's thread runs again. A running thread that asked for delayed preemption may
/// keep the processor (see the module documentation).
pub fn reschedule() {
    reschedule_with(true)
}

#[inline(always)]
fn reschedule_with(may_defer: bool) {
    requeue_current();
    let next = pick();
    let cur = gdt::current_tcb() as *mut Tcb;
    match next {
        Some(n) if n == cur => arm_timer(),
        Some(n) => {
            // SAFETY: `n` is on a ready list, hence a live TCB.
            let rival = unsafe { (*n).prio };
            // Only a thread that was given a maximum delay can defer (one field read on
            // the IPC path for all others).
            // SAFETY: `cur`, when not null, is the running thread's live TCB.
            let may_defer = may_defer && !cur.is_null() && unsafe { (*cur).preempt_max_delay_us } != 0;
            if may_defer && defers(rival) {
                arm_timer();
                return;
            }
            // SAFETY: as above. (The running thread was requeued above.)
            switch_to_requeued(unsafe { &mut *n })
        }
        None if cur.is_null() => {}
        None => switch_to_idle(),
    }
}

/// Programs the one-shot timer for the earlier of the running thread's timeslice end and
/// the nearest timeout. Timeouts already due fire first. The timer is reprogrammed only
/// when the target changes (re-arming on every yield would postpone it forever).
fn arm_timer() {
    arm_timer_at(apic::now_us())
}

/// [`arm_timer`] with the current time already read (by [`activate`]).
#[inline(always)]
fn arm_timer_at(now: u64) {
    let mut next = crate::timeout::next_deadline();
    if next.is_some_and(|d| d <= now) {
        crate::timeout::expire(now);
        next = crate::timeout::next_deadline();
    }
    let s = SCHED.get_mut();
    // A thread with timeslice "never" (0) runs until it blocks or is preempted.
    let mut slice_end = current().filter(|c| c.timeslice_us != 0).map(|c| s.dispatched_at + c.remaining_us.max(1));
    // A deferred preemption becomes due at the end of its delay.
    if s.defer_until > now && !s.deferring.is_null() && s.deferring as u64 == gdt::current_tcb() {
        slice_end = Some(slice_end.map_or(s.defer_until, |e| e.min(s.defer_until)));
    }
    let target = match (slice_end, next) {
        (None, None) => 0,
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => a.min(b),
    };
    if target == s.timer_target {
        return;
    }
    s.timer_target = target;
    apic::set_timer_us(if target == 0 { 0 } else { target.saturating_sub(now).max(1) });
}

/// Loads the processor state for running `to` (address space, kernel stack, segment
/// bases, lazy FPU) — everything except the register switch itself. Returns the time
/// of the dispatch.
#[inline(always)]
fn activate(to: &mut Tcb) -> u64 {
    let s = SCHED.get_mut();
    if let Some(from) = current() {
        from.fs_base = arch::user_fs_base();
    }
    let space = to.space();
    if crate::arch::paging::read_cr3() & 0x000F_FFFF_FFFF_F000 != space.pml4 || space.needs_flush != 0 {
        let cr3 = space.cr3_for_switch();
        // SAFETY: every space's PML4 carries the shared kernel half.
        unsafe { crate::arch::paging::write_cr3(cr3) };
    }
    crate::ioport::activate(space);
    gdt::set_kernel_stack(to.stack_top());
    arch::set_user_segment_bases(to.fs_base, to.utcb_user);
    crate::fpu::switch_to(to);
    let now = apic::now_us();
    s.dispatched_at = now;
    now
}

fn switch_to(to: &mut Tcb) {
    requeue_current();
    switch_to_requeued(to);
}

/// [`switch_to`] once the running thread, if still runnable, is on its ready list.
#[inline(always)]
fn switch_to_requeued(to: &mut Tcb) {
    let s = SCHED.get_mut();
    let from_sp: *mut u64 = match current() {
        Some(f) => &mut f.kernel_sp,
        None => &mut s.idle_sp,
    };
    let now = activate(to);
    arm_timer_at(now);
    // SAFETY: `to.kernel_sp` was saved by `switch_stacks` or prepared by
    // `thread::reset_stack`; `from_sp` lives in a TCB or in SCHED, both outliving the switch.
    unsafe { arch::switch_stacks(from_sp, to.kernel_sp) };
}

fn switch_to_idle() {
    let s = SCHED.get_mut();
    let Some(from) = current() else { return };
    from.fs_base = arch::user_fs_base();
    gdt::set_kernel_stack(0);
    arm_timer();
    // SAFETY: the idle context saved its stack pointer when it last switched away.
    unsafe { arch::switch_stacks(&mut from.kernel_sp, s.idle_sp) };
}

/// The idle loop: runs ready threads, halts the processor when there are none.
pub fn idle_loop() -> ! {
    loop {
        match pick() {
            Some(n) => {
                let s = SCHED.get_mut();
                // SAFETY: `n` is on a ready list, hence a live TCB.
                let to = unsafe { &mut *n };
                let now = activate(to);
                arm_timer_at(now);
                // SAFETY: as in `switch_to`; the idle context resumes here.
                unsafe { arch::switch_stacks(&mut s.idle_sp, to.kernel_sp) };
            }
            None => {
                arm_timer();
                cpu::idle_halt();
            }
        }
    }
}

/// Marks `t` blocked/stopped (not runnable) and switches away if it is running.
pub fn block(t: &mut Tcb, state: State) {
    t.state = state;
    dequeue(t);
    if gdt::current_tcb() == t as *mut Tcb as u64 {
        if t.state != State::Ready || t.halted {
            reschedule_blocked();
        } else {
            reschedule();
        }
    }
}

/// [`reschedule`] for a running thread that has just left the ready lists and is not
/// runnable (not `Ready`, or halted): there is nothing to requeue, and such a thread
/// cannot defer a preemption (`defers` says no), so the best ready thread runs next, or
/// the idle context.
#[inline(always)]
fn reschedule_blocked() {
    match pick() {
        // SAFETY: `n` is on a ready list, hence a live TCB; it is not the running thread
        // (which is off the lists).
        Some(n) => switch_to_requeued(unsafe { &mut *n }),
        None => switch_to_idle(),
    }
}

/// Makes `t` runnable.
pub fn wake(t: &mut Tcb) {
    if t.fast_wait == crate::thread::FAST_WAIT_BLOCKED_FAST {
        // Blocked by the fast path, which left no kernel continuation: resume it
        // through the ordinary system-call exit with the registers in its frame.
        crate::thread::prepare_syscall_return(t);
    }
    t.fast_wait = 0;
    t.state = State::Ready;
    if !t.halted {
        enqueue(t);
    }
}

/// Invalidates the TLB entry for `va` if `space` is the one loaded in CR3. (Other spaces
/// are flushed on switch: without PCIDs every CR3 load flushes; with PCIDs a space whose
/// mappings shrank is marked `fresh` so that its next load flushes.)
pub fn flush_if_current(space: &mut crate::space::Space, va: u64) {
    if crate::arch::paging::read_cr3() & 0x000F_FFFF_FFFF_F000 == space.pml4 {
        crate::arch::paging::invlpg(va);
    } else {
        space.mark_flush();
    }
}

/// Switches away if a thread of higher priority than the running one is ready.
pub fn preempt_check() {
    let Some(c) = current() else { return };
    if let Some(n) = pick() {
        // SAFETY: `n` is on a ready list, hence a live TCB.
        if unsafe { (*n).prio } > c.prio || c.state != State::Ready {
            reschedule();
        }
    }
}

/// ThreadSwitch to `to`: the caller gives up its timeslice and `to` runs next.
pub fn donate(from: &mut Tcb, to: &mut Tcb) {
    requeue_current();
    account();
    from.remaining_us = from.timeslice_us;
    rotate(from);
    switch_to(to);
}

// ---------------------------------------------------------------------------------------
// Delayed preemption

/// Whether the running thread keeps the processor against a ready rival of priority
/// `rival` that would preempt it now (a higher priority, or an equal one at the end of
/// the timeslice). Grants a deferral (and sets the pending flag) if the thread asked for
/// one and may have it; answers yes during a granted deferral; no otherwise.
#[inline(never)]
fn defers(rival: u8) -> bool {
    let Some(c) = current() else { return false };
    if c.state != State::Ready || c.halted {
        return false;
    }
    let cp: *mut Tcb = c;
    let (max_delay, sensitive, spent) = (c.preempt_max_delay_us, c.preempt_sensitive.max(c.prio), c.preempt_spent);
    if max_delay == 0 || rival > sensitive {
        return false;
    }
    let Some(u) = c.utcb() else { return false };
    if u.preempt_flags & PREEMPT_DELAYED == 0 {
        return false;
    }
    let s = SCHED.get_mut();
    let now = apic::now_us();
    if s.deferring == cp && s.defer_until != 0 {
        if now < s.defer_until {
            return true;
        }
        // The delay ran out: preempted now; no deferral before the next ThreadSwitch.
        s.deferring = core::ptr::null_mut();
        s.defer_until = 0;
        return false;
    }
    if spent {
        return false;
    }
    u.preempt_flags |= PREEMPT_PENDING;
    c.preempt_spent = true;
    s.deferring = cp;
    s.defer_until = now + max_delay as u64;
    true
}

/// Ends a deferral whose delay has run out (the timer fired for it), so that the
/// preemption it held back happens now.
fn end_expired_deferral(now: u64) {
    let s = SCHED.get_mut();
    if s.defer_until != 0 && now >= s.defer_until {
        s.defer_until = 0;
        s.deferring = core::ptr::null_mut();
    }
}

/// ThreadSwitch by `t`: a deferred preemption is over. Clears the pending flag in its
/// UTCB and renews its allowance.
pub fn delay_yield(t: &mut Tcb) {
    let tp: *mut Tcb = t;
    if let Some(u) = t.utcb() {
        u.preempt_flags &= !PREEMPT_PENDING;
    }
    t.preempt_spent = false;
    let s = SCHED.get_mut();
    if s.deferring == tp {
        s.deferring = core::ptr::null_mut();
        s.defer_until = 0;
    }
}

/// Schedule's PreemptionControl for `t`: maximum delay (µs) and sensitive priority. A
/// zero delay removes the parameters (no deferral possible).
pub fn set_preemption(t: &mut Tcb, max_delay_us: u16, sensitive: u8) {
    t.preempt_max_delay_us = max_delay_us;
    t.preempt_sensitive = sensitive;
    t.preempt_spent = false;
    forget(t);
}

/// `t` holds no deferral any more (its parameters changed, or it is being deleted).
pub fn forget(t: &Tcb) {
    let s = SCHED.get_mut();
    if s.deferring as *const Tcb == t as *const Tcb {
        s.deferring = core::ptr::null_mut();
        s.defer_until = 0;
    }
}

