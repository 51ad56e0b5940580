//! System-call dispatch and the X.2 calls other than Ipc (see `ipc.rs`).
//!
//! Every handler has the same shape: decode the registers into a typed argument view
//! (`abi::syscall`), check every argument and report the first error in the ErrorCode
//! TCR *before* changing any state, then act and write the results into the frame.
//! Register conventions are the AMD64 binding's (docs/abi.md).

use abi::error::SysError;
use abi::syscall::{ExRegsArgs, ExRegsState, ScheduleArgs, SpaceControlArgs, ThreadControlArgs, ThreadState, USER_FLAGS_MASK};
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::arch::apic;
use crate::arch::layout::USER_END;
use crate::arch::syscall::{stub_from_return, Stub};
use crate::arch::trap::Frame;
use crate::ipc;
use crate::kip;
use crate::sched;
use crate::space::Space;
use crate::thread::{self, State, Tcb};

/// Entry from the architecture layer for every `syscall`.
pub fn dispatch(frame: &mut Frame) {
    let Some(t) = sched::current() else { return };
    let Some(stub) = stub_from_return(frame.rcx) else {
        // `syscall` executed outside the stub page: not an X.2 call. In a space marked
        // for system-call emulation (Tern extension) it goes to the thread's exception
        // handler as an exception IPC with the full register state: RIP is the return
        // address (RCX), RFLAGS is in R11, vector SYSCALL_VECTOR.
        frame.rip = frame.rcx;
        frame.rflags = frame.r11;
        if t.space().syscall_exceptions && crate::trap::exception_ipc(t, SYSCALL_VECTOR, 0) {
            return;
        }
        crate::kprintln!("thread {:#x} ({}): syscall outside the KIP stubs at {:#x}", t.id.raw(), t.name().as_str(), frame.rcx);
        sched::block(t, State::Faulted);
        return;
    };
    match stub {
        Stub::Ipc => ipc::sys_ipc(t),
        Stub::SystemClock => {
            frame.rax = apic::now_us();
            frame.rdx = 0;
        }
        Stub::ThreadSwitch => thread_switch(t),
        Stub::ExchangeRegisters => exchange_registers(t),
        Stub::ThreadControl => {
            let r = thread_control(t);
            result(t, r)
        }
        Stub::SpaceControl => space_control(t),
        Stub::Schedule => schedule(t),
        Stub::ProcessorControl => {
            let r = processor_control(t);
            result(t, r)
        }
        Stub::MemoryControl => memory_control(t),
        Stub::Unmap => unmap(t),
        Stub::Null => {}
    }
    #[cfg(feature = "invariants")]
    crate::check::after_syscall();
    sched::preempt_check();
}

/// The vector reported in the exception IPC of a `syscall` in a space marked for
/// system-call emulation (SpaceControl control bit [`SPACE_SYSCALL_EXCEPTIONS`]).
pub const SYSCALL_VECTOR: u64 = 0x100;
/// SpaceControl control bit (Tern extension): `syscall` outside the KIP stubs becomes an
/// exception IPC.
pub const SPACE_SYSCALL_EXCEPTIONS: u64 = 1 << 0;

/// Writes a 1/0 result into RAX and the error, if any, into ErrorCode.
fn result(t: &mut Tcb, r: Result<(), SysError>) {
    match r {
        Ok(()) => t.frame().rax = 1,
        Err(e) => {
            set_error(t, e);
            t.frame().rax = 0;
        }
    }
}

fn set_error(t: &mut Tcb, e: SysError) {
    if let Some(u) = t.utcb() {
        u.error_code = e.code();
    }
}

fn privileged(t: &Tcb) -> bool {
    t.space().privileged
}

/// A user address is canonical and below the kernel half.
fn user_address(a: u64) -> bool {
    a < USER_END
}

// ---------------------------------------------------------------------------------------
// ThreadSwitch

fn thread_switch(t: &mut Tcb) {
    // A thread that was granted a delayed preemption gives the processor back here.
    sched::delay_yield(t);
    let dest = ThreadId(t.frame().rdi);
    if !dest.is_nil() {
        if let Some(d) = ipc::resolve(t, dest) {
            if d.state == State::Ready && !d.halted && d.id != t.id {
                sched::donate(t, d);
                return;
            }
        }
    }
    sched::yield_now();
}

// ---------------------------------------------------------------------------------------
// ExchangeRegisters

fn exchange_registers(t: &mut Tcb) {
    let f = t.frame();
    let raw = (f.rax, f.rsi, f.rdx, f.r8, f.r9, f.r10, f.rdi);
    let args = match ExRegsArgs::from_raw(raw.0, raw.1, raw.2, raw.3, raw.4, raw.5, raw.6) {
        Ok(a) => a,
        Err(e) => return exregs_fail(t, e),
    };
    let Some(d) = ipc::resolve(t, args.dest) else {
        return exregs_fail(t, SysError::InvalidThread);
    };
    if d.space != t.space || !d.active {
        return exregs_fail(t, SysError::InvalidThread);
    }
    let c = args.control;
    if c.set_ip() && !user_address(args.ip) {
        return exregs_fail(t, SysError::InvalidParam);
    }
    // Old values.
    let in_xfer = matches!(d.state, State::Locked | State::XferWait);
    let receiving = d.state == State::Receiving || (in_xfer && !d.xfer_sender);
    let sending = d.state == State::Sending || (in_xfer && d.xfer_sender);
    let state = ExRegsState::new(d.halted, receiving, sending);
    let (old_sp, old_ip, old_flags) = {
        let df = d.frame();
        (df.rsp, df.rip, df.rflags)
    };
    let (old_handle, old_pager) = d.utcb().map_or((0, 0), |u| (u.user_handle, u.pager));
    // Changes.
    if c.abort_send() || c.abort_receive() {
        ipc::abort(d, c.abort_send(), c.abort_receive());
    }
    {
        let df = d.frame();
        if c.set_sp() {
            df.rsp = args.sp;
        }
        if c.set_ip() {
            df.rip = args.ip;
        }
        if c.set_flags() {
            df.rflags = (df.rflags & !USER_FLAGS_MASK) | (args.flags & USER_FLAGS_MASK);
        }
    }
    if c.set_fs_base() {
        d.fs_base = args.user_handle;
        if d.id == t.id {
            crate::arch::set_user_segment_bases(d.fs_base, d.utcb_user);
        }
    }
    if let Some(u) = d.utcb() {
        if c.set_user_handle() {
            u.user_handle = args.user_handle;
        }
        if c.set_pager() {
            u.pager = args.pager.raw();
        }
    }
    if c.apply_halt() {
        if c.halt() {
            d.halted = true;
            // The fast path must not complete a halted thread's receive.
            crate::thread::clear_fast_mark(d);
            sched::dequeue(d);
        } else if d.halted {
            d.halted = false;
            if d.state == State::Ready {
                sched::enqueue(d);
            }
        }
    }
    let result = if args.dest.is_local() { d.id } else { d.local_id() };
    let f = t.frame();
    f.rax = result.raw();
    f.rsi = state.0;
    f.rdx = old_sp;
    f.r8 = old_ip;
    f.r9 = old_flags;
    f.r10 = old_handle;
    f.rdi = old_pager;
    if d.id == t.id && c.apply_halt() && c.halt() {
        sched::block(t, State::Ready);
    }
}

fn exregs_fail(t: &mut Tcb, e: SysError) {
    set_error(t, e);
    t.frame().rax = ThreadId::NIL.raw();
}

// ---------------------------------------------------------------------------------------
// ThreadControl

fn thread_control(t: &mut Tcb) -> Result<(), SysError> {
    let f = t.frame();
    let a = ThreadControlArgs::from_raw(f.rdi, f.rsi, f.rdx, f.r8, f.r9);
    if !privileged(t) {
        return Err(SysError::NoPrivilege);
    }
    let resolve_opt = |id: ThreadId| -> Result<Option<ThreadId>, SysError> {
        if id.is_nil() {
            Ok(None)
        } else if id.is_local() {
            ipc::resolve(t, id).map(|x| Some(x.id)).ok_or(SysError::InvalidThread)
        } else {
            Ok(Some(id))
        }
    };
    let dest = a.dest;
    if !dest.is_global() {
        return Err(SysError::InvalidThread);
    }
    if dest.number() < kip::SYSTEM_BASE {
        // Interrupt threads: the pager is the handler (or the thread itself: detach).
        let pager = if a.pager.is_local() { ipc::resolve(t, a.pager).map(|p| p.id).ok_or(SysError::InvalidThread)? } else { a.pager };
        return crate::irq::attach(dest, pager);
    }
    if dest.number() < kip::user_base() || dest.number() as usize >= thread::MAX_THREADS {
        return Err(SysError::InvalidThread);
    }
    let pager = resolve_opt(a.pager)?;
    let scheduler = resolve_opt(a.scheduler)?;
    let space_spec = resolve_opt(a.space)?;
    let Some(space_spec) = space_spec else {
        return delete_thread(t, dest);
    };
    // Is there a thread with this number (any version)?
    let existing = thread::lookup_number(dest.number());
    match existing {
        Some(d) => modify_thread(t, d, dest, space_spec, scheduler, pager, a.utcb_location),
        None => create_thread(t, dest, space_spec, scheduler, pager, a.utcb_location),
    }
}

fn delete_thread(t: &mut Tcb, dest: ThreadId) -> Result<(), SysError> {
    let d = thread::lookup(dest).ok_or(SysError::InvalidThread)?;
    if d.id == t.id {
        return Err(SysError::InvalidThread);
    }
    destroy(d);
    Ok(())
}

/// Deletes a thread: ends its IPC, releases its partners, frees its memory and, with the
/// last thread, its space.
pub fn destroy(d: &mut Tcb) {
    crate::irq::thread_deleted(d.id);
    sched::forget(d);
    ipc::release_partners(d);
    crate::timeout::remove(d);
    sched::dequeue(d);
    let space = d.space();
    // SAFETY: the thread is not running (the caller is another thread), it is off every
    // queue, and no partner refers to it any more.
    unsafe { thread::destroy(d) };
    if space.threads == 0 {
        // SAFETY: no thread refers to the space; it is not the current space because the
        // caller runs in another one (a thread cannot delete itself).
        unsafe { space.destroy() };
    }
}

fn check_utcb(space: &Space, utcb: u64) -> Result<(), SysError> {
    if utcb % abi::utcb::UTCB_SIZE as u64 != 0 || !space.in_utcb_area(utcb, abi::utcb::UTCB_SIZE as u64) {
        return Err(SysError::UtcbArea);
    }
    // No other thread of the space may use it.
    let mut clash = false;
    let sp = space as *const Space;
    thread::for_each(|x| {
        if x.space as *const Space == sp && x.utcb_user == utcb {
            clash = true;
        }
    });
    if clash {
        return Err(SysError::UtcbArea);
    }
    Ok(())
}

fn create_thread(
    t: &mut Tcb,
    dest: ThreadId,
    space_spec: ThreadId,
    scheduler: Option<ThreadId>,
    pager: Option<ThreadId>,
    utcb: Option<u64>,
) -> Result<(), SysError> {
    let Some(scheduler) = scheduler else {
        return Err(SysError::InvalidScheduler);
    };
    thread::lookup(scheduler).ok_or(SysError::InvalidScheduler)?;
    let new_space = space_spec == dest;
    let space: &mut Space = if new_space {
        if pager.is_some() {
            // A new space is not initialised yet: it cannot run.
            return Err(SysError::InvalidSpace);
        }
        Space::create("task").map_err(|_| SysError::OutOfMemory)?
    } else {
        let owner = thread::lookup(space_spec).ok_or(SysError::InvalidSpace)?;
        owner.space()
    };
    if let Some(p) = pager {
        if !space.initialised() {
            return Err(SysError::InvalidSpace);
        }
        match utcb {
            Some(u) => check_utcb(space, u)?,
            None => return Err(SysError::UtcbArea),
        }
        let _ = p;
    }
    let prio = t.prio;
    let d = match thread::create(dest, space, prio) {
        Ok(d) => d,
        Err(_) => {
            if new_space {
                // SAFETY: the space was created above and has no thread.
                unsafe { space.destroy() };
            }
            return Err(SysError::OutOfMemory);
        }
    };
    d.scheduler = scheduler;
    d.pending_utcb = utcb.unwrap_or(0);
    if let Some(p) = pager {
        if let Err(e) = activate(d, utcb.unwrap_or(0), p) {
            destroy(d);
            return Err(e);
        }
    }
    Ok(())
}

/// Activates `d` with its UTCB at `utcb` and the start protocol from `pager`.
fn activate(d: &mut Tcb, utcb: u64, pager: ThreadId) -> Result<(), SysError> {
    thread::activate(d, utcb, pager).map_err(|_| SysError::OutOfMemory)?;
    d.starting = true;
    d.kernel_ipc = true;
    d.kmsg_error = 0;
    d.partner = pager;
    d.state = State::Receiving;
    Ok(())
}

fn modify_thread(
    t: &mut Tcb,
    d: &mut Tcb,
    dest: ThreadId,
    space_spec: ThreadId,
    scheduler: Option<ThreadId>,
    pager: Option<ThreadId>,
    utcb: Option<u64>,
) -> Result<(), SysError> {
    let _ = t;
    // Check everything first.
    if d.id != dest && thread::lookup(dest).is_none() && d.id.number() != dest.number() {
        return Err(SysError::InvalidThread);
    }
    let target_space: &mut Space = if space_spec == d.id || space_spec == dest {
        d.space()
    } else {
        thread::lookup(space_spec).ok_or(SysError::InvalidSpace)?.space()
    };
    let moving = target_space as *mut Space != d.space;
    if moving && d.active {
        // Migration of active threads between spaces is not offered (X.2 allows refusing).
        return Err(SysError::InvalidSpace);
    }
    if let Some(u) = utcb {
        if d.active && u != d.utcb_user {
            return Err(SysError::UtcbArea);
        }
    }
    if let Some(s) = scheduler {
        thread::lookup(s).ok_or(SysError::InvalidScheduler)?;
    }
    let activating = pager.is_some() && !d.active;
    if activating {
        if !target_space.initialised() {
            return Err(SysError::InvalidSpace);
        }
        let u = utcb.unwrap_or(d.pending_utcb);
        check_utcb(target_space, u)?;
    }
    // Now act.
    if moving {
        let old = d.space();
        old.threads -= 1;
        d.space = target_space;
        target_space.threads += 1;
        if old.threads == 0 {
            // Its last thread moved out: the space dies as if that thread were deleted.
            // SAFETY: no thread refers to it any more, and it is not the current space
            // (the caller runs in its own space, which still has the caller).
            unsafe { old.destroy() };
        }
    }
    if let Some(s) = scheduler {
        d.scheduler = s;
    }
    if let Some(u) = utcb {
        if !d.active {
            d.pending_utcb = u;
        }
    }
    if d.id != dest {
        // A new version renames the thread: the old id ceases to exist, so whoever waits
        // for it is released as if it had been deleted.
        ipc::release_partners_of_id(d);
        d.id = dest;
        if let Some(u) = d.utcb() {
            u.my_global_id = dest.raw();
        }
    }
    if let Some(p) = pager {
        if activating {
            let u = d.pending_utcb;
            activate(d, u, p)?;
        } else if let Some(u) = d.utcb() {
            u.pager = p.raw();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SpaceControl

fn space_control(t: &mut Tcb) {
    let f = t.frame();
    let a = SpaceControlArgs::from_raw(f.rdi, f.rsi, f.rdx, f.r8, f.r9);
    let r = space_control_checked(t, a);
    match r {
        Ok(old) => {
            let f = t.frame();
            f.rax = 1;
            f.rdx = old;
        }
        Err(e) => {
            set_error(t, e);
            t.frame().rax = 0;
        }
    }
}

fn space_control_checked(t: &mut Tcb, a: SpaceControlArgs) -> Result<u64, SysError> {
    if !privileged(t) {
        return Err(SysError::NoPrivilege);
    }
    let owner = if a.space.is_local() { ipc::resolve(t, a.space) } else { thread::lookup(a.space) };
    let owner = owner.ok_or(SysError::InvalidSpace)?;
    let space = owner.space();
    let redirector = if a.redirector.is_nil() || a.redirector.is_any() {
        a.redirector
    } else {
        ipc::resolve(t, a.redirector).map(|r| r.id).ok_or(SysError::InvalidThread)?
    };
    if a.control & !SPACE_SYSCALL_EXCEPTIONS != 0 {
        return Err(SysError::InvalidParam);
    }
    if !space.initialised() {
        let utcb = a.utcb_area.try_validate().map_err(|_| SysError::UtcbArea)?;
        let kipf = a.kip_area.try_validate().map_err(|_| SysError::KipArea)?;
        let (ub, ul) = (utcb.fpage().base(), utcb.log2size());
        let (kb, kl) = (kipf.fpage().base(), kipf.log2size());
        if ul < 12 || ul >= 47 || ub.checked_add(1 << ul).is_none_or(|e| e > USER_END) {
            return Err(SysError::UtcbArea);
        }
        if kl < 12 || kl >= 47 || kb.checked_add(1 << kl).is_none_or(|e| e > USER_END) {
            return Err(SysError::KipArea);
        }
        if kb < ub + (1 << ul) && ub < kb + (1 << kl) {
            return Err(SysError::KipArea);
        }
        space.utcb_base = ub;
        space.utcb_log2 = ul;
        space.kip_base = kb;
        space.kip_log2 = kl;
        if kip::map_into(space).is_err() {
            space.utcb_log2 = 0;
            return Err(SysError::OutOfMemory);
        }
    }
    if !a.redirector.is_nil() {
        space.redirector = redirector.raw();
        space.confined = u64::from(!redirector.is_any());
        space.update_slow_flags();
    }
    let old = if space.syscall_exceptions { SPACE_SYSCALL_EXCEPTIONS } else { 0 };
    space.syscall_exceptions = a.control & SPACE_SYSCALL_EXCEPTIONS != 0;
    Ok(old)
}

// ---------------------------------------------------------------------------------------
// Schedule

fn schedule(t: &mut Tcb) {
    let f = t.frame();
    let raw = (f.rdi, f.rsi, f.rdx, f.r8, f.r9);
    match schedule_checked(t, raw) {
        Ok((state, old_time)) => {
            let f = t.frame();
            f.rax = state as u64;
            f.rdx = old_time;
        }
        Err(e) => {
            set_error(t, e);
            let f = t.frame();
            f.rax = ThreadState::Error as u64;
        }
    }
}

fn us_to_time(us: u64) -> u16 {
    abi::time::encode_period(us)
}

fn schedule_checked(t: &mut Tcb, raw: (u64, u64, u64, u64, u64)) -> Result<(ThreadState, u64), SysError> {
    let dest = ipc::resolve(t, ThreadId(raw.0)).ok_or(SysError::InvalidThread)?;
    let a = ScheduleArgs::from_raw(raw.0, raw.1, raw.2, raw.3, raw.4)?;
    if dest.scheduler != t.id && !privileged(t) {
        return Err(SysError::NoPrivilege);
    }
    if let Some(p) = a.priority {
        if p > t.prio && !privileged(t) {
            return Err(SysError::NoPrivilege);
        }
    }
    if let Some(cpu) = a.processor {
        if cpu != 0 {
            return Err(SysError::InvalidParam);
        }
    }
    if let Some(pc) = a.preemption {
        // A scheduler may not shield its thread from priorities above its own.
        if pc.sensitive_prio > t.prio && !privileged(t) {
            return Err(SysError::NoPrivilege);
        }
    }
    let old = (us_to_time(dest.remaining_us) as u64) << 16 | us_to_time(dest.quantum_us) as u64;
    // Check everything before changing anything.
    let timeslice = match a.time.timeslice {
        None => None,
        Some(Time::Period { us }) if us > 0 => Some(us),
        Some(Time::Never) => Some(0),
        Some(_) => return Err(SysError::InvalidParam),
    };
    let quantum = match a.time.total_quantum {
        None => None,
        Some(Time::Period { us }) => Some(us),
        Some(Time::Never | Time::Zero) => Some(0),
        Some(_) => return Err(SysError::InvalidParam),
    };
    if let Some(us) = timeslice {
        dest.timeslice_us = us;
        if us > 0 {
            dest.remaining_us = dest.remaining_us.min(us);
        }
    }
    if let Some(us) = quantum {
        dest.quantum_us = us;
        if dest.quantum_expired {
            // A new quantum lets the thread run again.
            dest.quantum_expired = false;
            dest.halted = false;
            if dest.state == State::Ready {
                sched::enqueue(dest);
            }
        }
    }
    if let Some(p) = a.priority {
        sched::set_priority(dest, p);
    }
    if let Some(pc) = a.preemption {
        sched::set_preemption(dest, pc.max_delay, pc.sensitive_prio);
    }
    Ok((thread_state(dest), old))
}

fn thread_state(d: &Tcb) -> ThreadState {
    match d.state {
        _ if !d.active => ThreadState::Inactive,
        State::Ready if d.halted => ThreadState::Inactive,
        State::Ready => ThreadState::Running,
        // Blocked in IPC: X.2's "pending send" / "waiting"; a party of a string transfer
        // in progress that waits for the other: "sending" / "receiving".
        State::Sending => ThreadState::PendingSend,
        State::Receiving => ThreadState::Waiting,
        State::Inactive | State::Faulted => ThreadState::Inactive,
        State::XferWait | State::Locked if d.xfer_sender => ThreadState::Sending,
        State::XferWait | State::Locked => ThreadState::Receiving,
    }
}

// ---------------------------------------------------------------------------------------
// ProcessorControl, MemoryControl, Unmap

fn processor_control(t: &mut Tcb) -> Result<(), SysError> {
    if !privileged(t) {
        return Err(SysError::NoPrivilege);
    }
    if t.frame().rdi != 0 {
        return Err(SysError::InvalidParam);
    }
    Ok(())
}

fn memory_control(t: &mut Tcb) {
    // MemoryControl (privileged) sets the caching attributes of the fpages in MR0..k in
    // the caller's own page tables (docs/abi.md, "MemoryControl"). The binding passes
    // attribute 0 in R9 (Pistachio's stub copies RCX there before `syscall` destroys
    // RCX), attribute 1 in RSI, 2 in R8 and, with control bit 6 (Tern), 3 in R10; the
    // fpages are read from the UTCB, where both bindings keep them. Result in RAX and RDX.
    let r = memory_control_checked(t);
    if let Err(e) = r {
        set_error(t, e);
    }
    let ok = r.is_ok() as u64;
    let f = t.frame();
    f.rax = ok;
    f.rdx = ok;
}

/// One fpage of a MemoryControl call, checked: the user range and the PAT entry.
#[derive(Clone, Copy)]
struct CachePlan {
    start: u64,
    end: u64,
    pat: u8,
}

fn memory_control_checked(t: &mut Tcb) -> Result<(), SysError> {
    use abi::fpage::{Fpage, FpageError};
    use abi::syscall::{memory_attribute_selector, MemoryAttribute, MemoryControlWord};
    use crate::arch::paging;

    if !privileged(t) {
        return Err(SysError::NoPrivilege);
    }
    let f = t.frame();
    let control = MemoryControlWord::from_raw(f.rdx)?;
    let attrs = [Some(f.r9), Some(f.rsi), Some(f.r8), control.attr3_in_r10.then_some(f.r10)];
    let has_pat = crate::arch::cpu::features().pat;
    // Check every fpage and its attribute before changing anything.
    let mut plan = [None::<CachePlan>; abi::utcb::MR_COUNT];
    {
        let u = t.utcb().ok_or(SysError::InvalidParam)?;
        for (i, slot) in plan.iter_mut().enumerate().take(control.last as usize + 1) {
            let fpage = Fpage(u.mr[i]);
            let v = match fpage.try_validate() {
                Ok(v) => v,
                // X.2: nil fpages (and sizes below a page, which denote nil) are no-ops.
                Err(FpageError::Nil | FpageError::TooSmall(_)) => continue,
                Err(_) => return Err(SysError::InvalidParam),
            };
            let raw = attrs[memory_attribute_selector(fpage)].ok_or(SysError::InvalidParam)?;
            let attr = MemoryAttribute::try_from(raw)?;
            if attr.pat_index() >= 4 && !has_pat {
                return Err(SysError::InvalidParam);
            }
            if v.base() >= USER_END {
                continue;
            }
            *slot = Some(CachePlan { start: v.base(), end: v.end().saturating_add(1).min(USER_END), pat: attr.pat_index() });
        }
    }
    // The KIP and UTCB areas hold kernel pages (always write-back): they are left out.
    let space = t.space();
    let root = space.pml4;
    let holes = [
        (space.kip_base, space.kip_base + (1u64 << space.kip_log2)),
        (space.utcb_base, space.utcb_base + if space.utcb_log2 == 0 { 0 } else { 1u64 << space.utcb_log2 }),
    ];
    let mut flush_caches = false;
    for p in plan.iter().flatten() {
        let mut pieces = [(p.start, p.end); 3];
        let mut n = 1;
        for &(hs, he) in &holes {
            let mut next = [(0, 0); 3];
            let mut m = 0;
            for &(a, b) in &pieces[..n] {
                if he <= a || hs >= b || hs == he {
                    next[m] = (a, b);
                    m += 1;
                    continue;
                }
                if a < hs {
                    next[m] = (a, hs);
                    m += 1;
                }
                if he < b {
                    next[m] = (he, b);
                    m += 1;
                }
            }
            pieces = next;
            n = m;
        }
        for &(a, b) in &pieces[..n] {
            if paging::set_cache_range(root, a, b, p.pat) > 0 && p.pat != 0 {
                flush_caches = true;
            }
        }
    }
    if flush_caches {
        // Lines cached write-back for memory now uncached or write-combining must not
        // linger (the space is the current one: its TLB entries are already gone).
        crate::arch::cpu::wbinvd();
    }
    if cfg!(debug_assertions) {
        // The last fpage's first address has its attribute now (no later fpage of the
        // call can have changed it), unless it lies in a kernel area.
        if let Some(p) = plan.iter().flatten().last() {
            let in_hole = holes.iter().any(|&(hs, he)| p.start >= hs && p.start < he);
            if let (false, Some(idx)) = (in_hole, paging::cache_index_at(root, p.start)) {
                debug_assert_eq!(idx, p.pat, "MemoryControl left {:#x} with another caching type", p.start);
            }
        }
    }
    Ok(())
}

fn unmap(t: &mut Tcb) {
    crate::mapping::unmap_syscall(t);
}
