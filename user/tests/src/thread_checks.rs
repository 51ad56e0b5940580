//! ThreadControl (argument validation and the thread life cycle), the thread start
//! protocol, and ExchangeRegisters (validation, read-back, halting, redirecting).
//!
//! Expected error codes follow `shared/x2-amd64-abi.md` §4.3 (ThreadControl,
//! ExchangeRegisters) and `abi::syscall` for Tern's control-word checks.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::error::SysError;
use abi::syscall::{ThreadState, USER_FLAGS_MASK};
use abi::thread_id::ThreadId;
use abi::time::Time;
use l4::ipc::{self, Msg};
use l4::thread::{self, ExRegs};

use crate::harness::{
    ensure, expect_sys, fail, ipc_code, wait_until, yield_for, Board, Check, Context, Tally, Why,
};
use crate::workers::{
    bulk_utcb, fresh_id, me, sigma0, thread_info, Owned, Worker, UTCB_AREA, UTCB_AREA_LOG2,
};

static B: Board = Board::new();

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("tc::dest-local-id", dest_local);
    s.run("tc::dest-kernel-thread", dest_kernel_thread);
    s.run("tc::delete-self", delete_self);
    s.run("tc::create-nil-scheduler", create_nil_scheduler);
    s.run("tc::create-unknown-space", create_unknown_space);
    s.run("tc::create-active-in-new-space", create_active_new_space);
    s.run("tc::create-active-utcb-unaligned", utcb_unaligned);
    s.run("tc::create-active-utcb-outside-area", utcb_outside);
    s.run("tc::create-active-without-utcb", utcb_missing);
    s.run(
        "tc::failed-create-leaves-no-thread",
        failed_create_leaves_nothing,
    );
    s.run("tc::create-inactive", create_inactive);
    s.run("tc::activate-inactive", activate_inactive);
    s.run("tc::modify-utcb-of-active-thread", modify_utcb_active);
    s.run("tc::delete", delete);
    s.run("tc::reuse-number-with-new-version", reuse_number);
    s.run("thread::start-by-exregs", start_by_exregs);
    s.run("thread::start-by-message", start_by_message);
    s.run("thread::start-waits-for-pager-only", start_from_pager_only);
    s.run("thread::ids-of-new-thread", ids_of_new_thread);
    s.run("thread::pager-tcr-of-new-thread", pager_tcr);
    s.run("exregs::global-id-gives-local-id", exregs_global_to_local);
    s.run("exregs::local-id-gives-global-id", exregs_local_to_global);
    s.run("exregs::self", exregs_self);
    s.run("exregs::read-back-sp-ip", exregs_sp_ip);
    s.run("exregs::read-back-flags-user-bits-only", exregs_flags);
    s.run("exregs::read-back-user-handle", exregs_user_handle);
    s.run("exregs::read-back-pager", exregs_pager);
    s.run("exregs::user-handle-and-pager-reach-utcb", exregs_tcrs);
    s.run("exregs::halt-and-resume", exregs_halt_resume);
    s.run("exregs::redirect-sp-ip", exregs_redirect);
    s.run("exregs::fs-base", exregs_fs_base);
    s.run("space::syscall-becomes-exception-ipc", syscall_emulation);
    s.run("exregs::nonexistent", exregs_nonexistent);
    s.run("exregs::stale-version", exregs_stale);
    s.run("exregs::other-space", exregs_other_space);
    s.run("exregs::unknown-control-bits", exregs_unknown_bits);
}

/// ThreadControl creating an active thread in the root task's space at bulk UTCB 0.
fn create_active(id: ThreadId) -> Result<Owned, l4::Error> {
    thread::create_thread(id, me(), me(), me(), Some(bulk_utcb(0))).map(|()| Owned(id))
}

fn dest_local() -> Check {
    // X.2: dest must be a global id, else "unavailable thread" (2). (Pistachio answers
    // "invalid space", §4.3; Tern follows X.2.)
    let local = ThreadId::local(bulk_utcb(0) + 512);
    expect_sys(
        thread::create_thread(local, me(), me(), me(), Some(bulk_utcb(0))),
        SysError::InvalidThread,
    )
}

fn dest_kernel_thread() -> Check {
    let ti = thread_info();
    let kernel = ThreadId::global(ti.system_base as u32, 1);
    expect_sys(
        thread::create_thread(kernel, me(), me(), me(), Some(bulk_utcb(0))),
        SysError::InvalidThread,
    )
}

fn delete_self() -> Check {
    expect_sys(thread::delete_thread(me()), SysError::InvalidThread)
}

fn create_nil_scheduler() -> Check {
    // X.2: a new thread needs a scheduler, else "invalid scheduler" (4). (Pistachio
    // answers "invalid thread", §4.3; Tern follows X.2.)
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, me(), ThreadId::NIL, me(), Some(bulk_utcb(0))),
        SysError::InvalidScheduler,
    )
}

fn create_unknown_space() -> Check {
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, fresh_id(), me(), ThreadId::NIL, None),
        SysError::InvalidSpace,
    )
}

fn create_active_new_space() -> Check {
    // An active thread needs an initialised space; a new one (space == dest) is not.
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, id, me(), me(), Some(bulk_utcb(0))),
        SysError::InvalidSpace,
    )
}

fn utcb_unaligned() -> Check {
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, me(), me(), me(), Some(bulk_utcb(0) + 0x100)),
        SysError::UtcbArea,
    )
}

fn utcb_outside() -> Check {
    let id = fresh_id();
    let _guard = Owned(id);
    let outside = UTCB_AREA + (1 << UTCB_AREA_LOG2);
    expect_sys(
        thread::create_thread(id, me(), me(), me(), Some(outside)),
        SysError::UtcbArea,
    )
}

fn utcb_missing() -> Check {
    let id = fresh_id();
    let _guard = Owned(id);
    expect_sys(
        thread::create_thread(id, me(), me(), me(), None),
        SysError::UtcbArea,
    )
}

/// Is `id` gone: Schedule says invalid thread, or "dead"?
fn gone(id: ThreadId) -> Check {
    match thread::state_of(id) {
        Err(e) if e == SysError::InvalidThread => Ok(()),
        Ok(ThreadState::Dead) => Ok(()),
        other => fail!(
            "Schedule on {:?}: {:?}, expected invalid thread (or dead)",
            id,
            other
        ),
    }
}

fn failed_create_leaves_no_thread_inner(id: ThreadId) -> Check {
    expect_sys(
        thread::create_thread(id, me(), me(), me(), Some(bulk_utcb(0) + 8)),
        SysError::UtcbArea,
    )?;
    gone(id)
}

fn failed_create_leaves_nothing() -> Check {
    let id = fresh_id();
    let _guard = Owned(id);
    failed_create_leaves_no_thread_inner(id)
}

fn create_inactive() -> Check {
    let id = fresh_id();
    thread::create_thread(id, me(), me(), ThreadId::NIL, None)
        .ctx("ThreadControl (create inactive)")?;
    let _guard = Owned(id);
    let st = thread::state_of(id).ctx("Schedule")?;
    ensure!(
        st == ThreadState::Inactive,
        "state {:?}, expected inactive",
        st
    );
    Ok(())
}

fn activate_inactive() -> Check {
    let id = fresh_id();
    thread::create_thread(id, me(), me(), ThreadId::NIL, None)
        .ctx("ThreadControl (create inactive)")?;
    let _guard = Owned(id);
    thread::thread_control(id, me(), ThreadId::NIL, me(), Some(bulk_utcb(1)))
        .ctx("ThreadControl (activate)")?;
    let st = thread::state_of(id).ctx("Schedule")?;
    ensure!(
        st == ThreadState::Waiting,
        "state {:?}, expected waiting (for the start message)",
        st
    );
    let local = thread::local_id_of(id).ctx("ExchangeRegisters")?;
    ensure!(
        local.raw() == bulk_utcb(1) + 512,
        "local id {:?}, UTCB at {:#x}",
        local,
        bulk_utcb(1)
    );
    Ok(())
}

fn modify_utcb_active() -> Check {
    let id = fresh_id();
    let _t = create_active(id).ctx("ThreadControl (create active)")?;
    expect_sys(
        thread::thread_control(id, me(), ThreadId::NIL, ThreadId::NIL, Some(bulk_utcb(2))),
        SysError::UtcbArea,
    )
}

fn delete() -> Check {
    let id = fresh_id();
    let t = create_active(id).ctx("ThreadControl (create)")?;
    thread::delete_thread(id).ctx("ThreadControl (delete)")?;
    core::mem::forget(t);
    gone(id)?;
    expect_sys(ExRegs::new().apply(id), SysError::InvalidThread)
}

fn reuse_number() -> Check {
    let v1 = fresh_id();
    let v2 = ThreadId::global(v1.number(), 2);
    thread::create_thread(v1, me(), me(), ThreadId::NIL, None).ctx("ThreadControl (create v1)")?;
    thread::delete_thread(v1).ctx("ThreadControl (delete v1)")?;
    thread::create_thread(v2, me(), me(), ThreadId::NIL, None)
        .ctx("ThreadControl (create v2 of the same number)")?;
    let _guard = Owned(v2);
    let st = thread::state_of(v2).ctx("Schedule (v2)")?;
    ensure!(st == ThreadState::Inactive, "v2 state {:?}", st);
    gone(v1)
}

/// Worker body: records that it ran, and the ids and TCRs it sees.
fn w_report(_: usize) {
    B.set(0, 1);
    B.set(1, l4::utcb::my_global_id().raw());
    B.set(2, l4::utcb::my_local_id().raw());
    B.set(3, l4::utcb::pager().raw());
    B.set(4, l4::utcb::user_handle());
}

fn start_by_exregs() -> Check {
    B.clear();
    let w = Worker::spawn(w_report, 0, None)?;
    ensure!(w.wait_done(2_000_000), "the worker did not run");
    ensure!(B.get(0) == 1, "the worker did not record");
    Ok(())
}

fn start_by_message() -> Check {
    B.clear();
    let w = Worker::create(None)?;
    w.start_by_message(w_report, 0)?;
    ensure!(
        w.wait_done(2_000_000),
        "the worker did not run after the start message"
    );
    ensure!(B.get(0) == 1, "the worker did not record");
    Ok(())
}

/// Sends to the thread on the board (word 8) with a zero timeout; records the outcome.
fn w_send_to_board_thread(_: usize) {
    let r = ipc::send(
        ThreadId(B.get(8)),
        &Msg::with_words(0, &[0, 0]).unwrap_or(Msg::new(0)),
        Time::Zero,
    );
    B.set(9, 1 + ipc_code(&r));
}

fn start_from_pager_only() -> Check {
    B.clear();
    let waiting = Worker::create(None)?;
    B.set(8, waiting.id().raw());
    let sender = Worker::spawn(w_send_to_board_thread, 0, None)?;
    ensure!(
        sender.wait_done(2_000_000),
        "the sending worker did not finish"
    );
    let code = B.get(9).wrapping_sub(1);
    let timeout =
        abi::error::IpcError::new(abi::error::IpcErrorCode::Timeout, abi::error::Phase::Send)
            .encode();
    ensure!(code == timeout, "a start message from a thread other than the pager ended with {:#x}, expected a send timeout", code);
    ensure!(B.get(0) == 0, "the stranger's message started the thread");
    // The thread still waits for its pager: the pager's start message starts it.
    waiting.start_by_message(w_report, 0)?;
    ensure!(
        waiting.wait_done(2_000_000),
        "the pager's start message after the stranger's did not start the thread"
    );
    Ok(())
}

fn ids_of_new_thread() -> Check {
    B.clear();
    let w = Worker::spawn(w_report, 0, None)?;
    ensure!(w.wait_done(2_000_000), "the worker did not run");
    let (g, l) = (ThreadId(B.get(1)), ThreadId(B.get(2)));
    ensure!(
        g == w.id() && l == w.local(),
        "the worker sees itself as {:?} / {:?}, created as {:?} / {:?}",
        g,
        l,
        w.id(),
        w.local()
    );
    Ok(())
}

fn pager_tcr() -> Check {
    B.clear();
    let w = Worker::spawn(w_report, 0, None)?;
    ensure!(w.wait_done(2_000_000), "the worker did not run");
    ensure!(
        ThreadId(B.get(3)) == me(),
        "pager TCR {:#x}, the pager is {:?}",
        B.get(3),
        me()
    );
    Ok(())
}

fn exregs_global_to_local() -> Check {
    let w = Worker::create(None)?;
    let out = ExRegs::new().apply(w.id()).ctx("ExchangeRegisters")?;
    ensure!(
        out.id == w.local(),
        "result id {:?}, local id {:?}",
        out.id,
        w.local()
    );
    Ok(())
}

fn exregs_local_to_global() -> Check {
    let w = Worker::create(None)?;
    let out = ExRegs::new().apply(w.local()).ctx("ExchangeRegisters")?;
    ensure!(
        out.id == w.id(),
        "result id {:?}, global id {:?}",
        out.id,
        w.id()
    );
    Ok(())
}

fn exregs_self() -> Check {
    let out = ExRegs::new()
        .apply(me())
        .ctx("ExchangeRegisters on the caller")?;
    ensure!(out.id == l4::utcb::my_local_id(), "result id {:?}", out.id);
    ensure!(!out.state.halted(), "the caller is reported halted");
    Ok(())
}

fn exregs_sp_ip() -> Check {
    let w = Worker::create(None)?;
    ExRegs::new()
        .halt()
        .sp(0x1234_5670)
        .ip(0x1000_0abc)
        .apply(w.id())
        .ctx("ExchangeRegisters (set)")?;
    let out = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?;
    ensure!(
        out.sp == 0x1234_5670 && out.ip == 0x1000_0abc,
        "read back SP {:#x} IP {:#x}",
        out.sp,
        out.ip
    );
    ensure!(
        out.state.halted(),
        "state {:#x} does not say halted",
        out.state.0
    );
    Ok(())
}

fn exregs_flags() -> Check {
    let w = Worker::create(None)?;
    let before = ExRegs::new()
        .halt()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?
        .flags;
    ExRegs::new()
        .flags(!0)
        .apply(w.id())
        .ctx("ExchangeRegisters (set all flags)")?;
    let all = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?
        .flags;
    ensure!(
        all & USER_FLAGS_MASK == USER_FLAGS_MASK,
        "set all: user bits {:#x}",
        all & USER_FLAGS_MASK
    );
    ensure!(
        all & !USER_FLAGS_MASK == before & !USER_FLAGS_MASK,
        "set all: system bits changed {:#x} -> {:#x}",
        before,
        all
    );
    ExRegs::new()
        .flags(0)
        .apply(w.id())
        .ctx("ExchangeRegisters (clear flags)")?;
    let none = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?
        .flags;
    ensure!(
        none & USER_FLAGS_MASK == 0,
        "clear all: user bits {:#x}",
        none & USER_FLAGS_MASK
    );
    ensure!(
        none & !USER_FLAGS_MASK == before & !USER_FLAGS_MASK,
        "clear all: system bits changed {:#x} -> {:#x}",
        before,
        none
    );
    Ok(())
}

fn exregs_user_handle() -> Check {
    let w = Worker::create(None)?;
    ExRegs::new()
        .user_handle(0xDEAD_BEEF_0123)
        .apply(w.id())
        .ctx("ExchangeRegisters (set)")?;
    let out = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?;
    ensure!(
        out.user_handle == 0xDEAD_BEEF_0123,
        "read back {:#x}",
        out.user_handle
    );
    Ok(())
}

fn exregs_pager() -> Check {
    let w = Worker::create(None)?;
    let old = ExRegs::new()
        .pager(sigma0())
        .apply(w.id())
        .ctx("ExchangeRegisters (set)")?;
    ensure!(
        old.pager == me(),
        "old pager {:?}, expected {:?}",
        old.pager,
        me()
    );
    let out = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?;
    ensure!(out.pager == sigma0(), "read back pager {:?}", out.pager);
    Ok(())
}

fn exregs_tcrs() -> Check {
    B.clear();
    let w = Worker::create(None)?;
    ExRegs::new()
        .user_handle(0x5151)
        .apply(w.id())
        .ctx("ExchangeRegisters (set handle)")?;
    w.start(w_report, 0)?;
    ensure!(w.wait_done(2_000_000), "the worker did not run");
    ensure!(B.get(4) == 0x5151, "UserDefinedHandle TCR {:#x}", B.get(4));
    ensure!(ThreadId(B.get(3)) == me(), "Pager TCR {:#x}", B.get(3));
    Ok(())
}

/// Counts in board word 0 until board word 1 is set (or 2 s pass).
fn w_count(_: usize) {
    let deadline = crate::workers::deadline_in(2_000_000);
    let mut i = 0u64;
    while B.get(1) == 0 {
        B.add(0, 1);
        i += 1;
        if i.is_multiple_of(256) && crate::harness::now() > deadline {
            break;
        }
    }
}

fn exregs_halt_resume() -> Check {
    B.clear();
    let w = Worker::spawn(w_count, 0, None)?;
    ensure!(
        wait_until(1_000_000, || B.get(0) > 0),
        "the worker never counted"
    );
    let out = thread::stop(w.id()).ctx("ExchangeRegisters (halt)")?;
    ensure!(!out.state.halted(), "a running thread was reported halted");
    yield_for(5_000);
    let a = B.get(0);
    yield_for(30_000);
    let b = B.get(0);
    ensure!(a == b, "a halted thread went on counting ({} -> {})", a, b);
    let st = ExRegs::new()
        .deliver()
        .apply(w.id())
        .ctx("ExchangeRegisters (read)")?
        .state;
    ensure!(st.halted(), "state {:#x} does not say halted", st.0);
    ExRegs::new()
        .resume()
        .apply(w.id())
        .ctx("ExchangeRegisters (resume)")?;
    ensure!(
        wait_until(1_000_000, || B.get(0) > b),
        "the resumed thread did not count"
    );
    B.set(1, 1);
    Ok(())
}

fn w_mark(arg: usize) {
    B.set(2, arg as u64);
}

fn exregs_redirect() -> Check {
    B.clear();
    let w = Worker::spawn(w_count, 0, None)?;
    ensure!(
        wait_until(1_000_000, || B.get(0) > 0),
        "the worker never counted"
    );
    thread::stop(w.id()).ctx("ExchangeRegisters (halt)")?;
    let (sp, ip) = w.entry(w_mark, 0x77);
    ExRegs::new()
        .sp(sp)
        .ip(ip)
        .resume()
        .apply(w.id())
        .ctx("ExchangeRegisters (new SP/IP, resume)")?;
    ensure!(
        w.wait_done(1_000_000),
        "the redirected thread did not run its new code"
    );
    ensure!(B.get(2) == 0x77, "board {:#x}", B.get(2));
    Ok(())
}

/// The word the FS-base worker must read through `fs:[0]`.
static FS_PROBE: AtomicU64 = AtomicU64::new(0x0F5B_A5E0_1234_5678);

fn w_read_fs(_: usize) {
    let v: u64;
    // SAFETY: reads one word at FS base + 0; the check set the FS base to the address of
    // `FS_PROBE` (if the kernel did not, the read faults and this worker is stopped).
    unsafe {
        core::arch::asm!("mov {}, fs:[0]", out(reg) v, options(nostack, readonly, preserves_flags))
    };
    B.set(5, v);
}

fn exregs_fs_base() -> Check {
    B.clear();
    let w = Worker::create(None)?;
    ExRegs::new()
        .fs_base(FS_PROBE.as_ptr() as u64)
        .apply(w.id())
        .ctx("ExchangeRegisters (set FS base, Tern bit 16)")?;
    w.start(w_read_fs, 0)?;
    ensure!(
        w.wait_done(1_000_000),
        "the worker did not finish (fault through FS?)"
    );
    let v = B.get(5);
    ensure!(
        v == FS_PROBE.load(Ordering::Relaxed),
        "fs:[0] read {:#x}",
        v
    );
    Ok(())
}

fn exregs_nonexistent() -> Check {
    expect_sys(ExRegs::new().apply(fresh_id()), SysError::InvalidThread)
}

fn exregs_stale() -> Check {
    let w = Worker::create(None)?;
    let stale = ThreadId::global(w.id().number(), w.id().version() + 1);
    expect_sys(ExRegs::new().apply(stale), SysError::InvalidThread)
}

fn exregs_other_space() -> Check {
    expect_sys(ExRegs::new().apply(sigma0()), SysError::InvalidThread)
}

fn exregs_unknown_bits() -> Check {
    let w = Worker::create(None)?;
    expect_sys(
        ExRegs::new().raw_bits(1 << 10).apply(w.id()),
        SysError::InvalidParam,
    )
}

/// Worker for [`syscall_emulation`]: makes the main thread its exception handler, then
/// executes a bare `syscall` (outside the KIP stubs) with RAX = 0x1234 and records the
/// RAX it resumes with.
fn w_syscall(_: usize) {
    l4::utcb::set_exception_handler(me());
    let rax: u64;
    // SAFETY: in a space marked for system-call emulation the kernel turns this `syscall`
    // into an exception IPC; the handler's reply sets the registers (RCX and R11 are
    // clobbered by the instruction itself).
    unsafe { core::arch::asm!("syscall", inout("rax") 0x1234u64 => rax, out("rcx") _, out("r11") _) };
    B.set(0, rax);
}

/// Tern extension: with SpaceControl control bit 0, a `syscall` outside the KIP stubs
/// reaches the exception handler (vector 0x100, full registers), and the reply's
/// registers are what the thread resumes with.
fn syscall_emulation() -> Check {
    use abi::fpage::{Fpage, Rights};
    use abi::syscall::exception_mr as mr;
    B.clear();
    let kip = Fpage::new(0xBFF0_0000, 12, Rights::NONE);
    let utcb = Fpage::new(UTCB_AREA, UTCB_AREA_LOG2, Rights::NONE);
    l4::space::space_control(me(), 1, kip, utcb, ThreadId::NIL).ctx("SpaceControl (mark the space)")?;
    let w = Worker::spawn(w_syscall, 0, None);
    let got = match &w {
        Ok(w) => ipc::receive(w.id(), Time::Period { us: 1_000_000 }).map_err(|e| e),
        Err(_) => Err(ipc::IpcFailure::Unknown(0)),
    };
    let restore = l4::space::space_control(me(), 0, kip, utcb, ThreadId::NIL);
    let w = w?;
    let got = got.ctx("no exception IPC for the syscall")?;
    restore.ctx("SpaceControl (unmark the space)")?;
    let tag = got.msg.tag();
    ensure!(tag.label() == abi::msg::label::EXCEPTION && tag.untyped() == 19, "tag {:#x}", tag.raw());
    let mut words = [0u64; 19];
    for (i, w) in words.iter_mut().enumerate() {
        *w = l4::utcb::mr(i + 1).unwrap_or(0);
    }
    ensure!(words[mr::VECTOR - 1] == 0x100, "vector {:#x}, expected 0x100", words[mr::VECTOR - 1]);
    ensure!(words[mr::RAX - 1] == 0x1234, "RAX {:#x}, expected 0x1234", words[mr::RAX - 1]);
    words[mr::RAX - 1] = 0x5678;
    let reply = Msg::with_words(0, &words[..18]).map_err(|_| Why::new(format_args!("reply too long")))?;
    ipc::reply(w.local(), &reply).ctx("reply")?;
    ensure!(wait_until(1_000_000, || B.get(0) != 0), "the thread did not resume");
    ensure!(B.get(0) == 0x5678, "resumed with RAX {:#x}, expected 0x5678", B.get(0));
    Ok(())
}
