//! The fuzzing threads: one random system call after another, until their quota is done.
//!
//! Each call starts with every register random; the generators (`gen`) then fill the
//! registers the call reads with plausible values, and finally [`Policy`] rewrites the
//! few argument combinations that would destroy the fuzzer itself instead of testing the
//! kernel (the kernel would be right to obey them):
//!
//! * the fixed threads (roles) are never deleted, renamed, moved, re-paged or given a
//!   quantum, priority or redirector; ThreadControl, Schedule and SpaceControl on them
//!   only read or set nothing;
//! * ExchangeRegisters never moves the IP, SP or flags of M or of a fuzzer (victims get
//!   everything), and on M only aborts IPC or sets the user handle;
//! * new pool threads never join the root task's or U's space (they would run there);
//! * Unmap flushes the root task's own mappings only in its sandbox, and grants and
//!   writable maps leave a space only from its scratch pages or sandbox;
//! * the buffer registers of a thread only name its sink and its sandbox.
//!
//! Everything else goes to the kernel as generated, including stale and foreign thread
//! ids, undefined control bits, overlong messages and malformed typed items.

use core::sync::atomic::Ordering;

use abi::fpage::{Fpage, Rights};
use abi::msg::{MsgTag, StringItemHeader, TypedItem, TypedItemReader};
use abi::syscall::{
    EXREGS_ABORT_RECEIVE, EXREGS_ABORT_SEND, EXREGS_APPLY_HALT, EXREGS_DELIVER, EXREGS_HALT, EXREGS_SET_FLAGS,
    EXREGS_SET_FS_BASE, EXREGS_SET_IP, EXREGS_SET_PAGER, EXREGS_SET_SP, EXREGS_SET_USER_HANDLE, UNCHANGED,
};
use abi::thread_id::ThreadId;
use abi::utcb::UTCB_MR0_OFFSET;

use crate::gen::Ctx;
use crate::raw::{self, Regs};
use crate::rng::Rng;
use crate::world::{self, Range, Space, SHARED};

/// What a call is (index into the counters).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Kind {
    Ipc = 0,
    Lipc,
    ExchangeRegisters,
    ThreadControl,
    SpaceControl,
    Schedule,
    ThreadSwitch,
    Unmap,
    SystemClock,
    ProcessorControl,
    MemoryControl,
    KernelInterface,
    Null,
    StartMessage,
}

const KINDS: [Kind; world::KINDS] = [
    Kind::Ipc,
    Kind::Lipc,
    Kind::ExchangeRegisters,
    Kind::ThreadControl,
    Kind::SpaceControl,
    Kind::Schedule,
    Kind::ThreadSwitch,
    Kind::Unmap,
    Kind::SystemClock,
    Kind::ProcessorControl,
    Kind::MemoryControl,
    Kind::KernelInterface,
    Kind::Null,
    Kind::StartMessage,
];

/// How often each kind is chosen (relative weights, `KINDS` order).
const WEIGHTS: [u32; world::KINDS] = [30, 5, 12, 10, 4, 8, 5, 10, 2, 2, 2, 1, 1, 4];

/// Index of the bench-only Null stub in the stub page (32 bytes apart; not in the KIP).
const NULL_STUB_INDEX: u64 = 10;

/// The index of fuzzer `role` among [`world::FUZZERS`].
pub fn fuzzer_index(role: usize) -> usize {
    world::FUZZERS.iter().position(|&r| r == role).unwrap_or(0)
}

/// Where every fuzzer starts (through `l4_thread_trampoline`, argument: its role).
pub extern "C" fn fuzzer_main(role: usize) -> ! {
    restore_identity(role);
    let f = fuzzer_index(role);
    let seed = SHARED.seed.load(Ordering::Relaxed);
    let restarts = SHARED.restarts[f].load(Ordering::Relaxed);
    let mut c = Ctx { role, space: world::space_of(role), rng: Rng::new(seed, (role as u64) << 32 | restarts) };
    // Pager TCR: M (our page faults, e.g. in string copies, go there and are not served);
    // transfer timeouts 1 ms, so that such faults end soon.
    set_utcb(role, abi::utcb::PAGER, world::id_of(world::M).raw());
    let ms = abi::time::Time::period_us(1000).unwrap_or(abi::time::ZERO) as u64;
    set_utcb(role, abi::utcb::XFER_TIMEOUTS, ms << 16 | ms);
    let trace_from = SHARED.trace_from.load(Ordering::Relaxed);
    while SHARED.stop.load(Ordering::Relaxed) == 0
        && SHARED.progress[f].load(Ordering::Relaxed) < SHARED.quota[f].load(Ordering::Relaxed)
    {
        let n = SHARED.total.fetch_add(1, Ordering::Relaxed) + 1;
        step(&mut c, f, n, trace_from != 0 && n >= trace_from);
        SHARED.progress[f].fetch_add(1, Ordering::Relaxed);
    }
    SHARED.done[f].store(1, Ordering::Release);
    park()
}

/// Waits for good (a receive from nobody; M deletes or halts us at the end).
pub fn park() -> ! {
    loop {
        let _ = l4::ipc::sleep(abi::time::Time::Never);
        l4::thread::yield_now();
    }
}

/// Writes our UTCB's identity words back (a call may have been cut short while they were
/// scribbled over).
pub fn restore_identity(role: usize) {
    let local = world::local_of(role).raw();
    // SAFETY: our own UTCB (the kernel maps it for our whole life); word 0 is the
    // local id the kernel stored (Tern's `%gs:0` extension).
    unsafe { core::ptr::write_volatile(world::utcb_of(role) as *mut u64, local) };
    set_utcb(role, abi::utcb::MY_GLOBAL_ID, world::id_of(role).raw());
}

/// Writes the UTCB word at `offset` from MR0 of `role`'s own UTCB.
fn set_utcb(role: usize, offset: isize, v: u64) {
    let a = (world::utcb_of(role) + UTCB_MR0_OFFSET as u64).wrapping_add(offset as u64);
    // SAFETY: `offset` is an `abi::utcb` offset or an MR/BR offset inside the UTCB; the
    // UTCB is the calling thread's own.
    unsafe { core::ptr::write_volatile(a as *mut u64, v) };
}

fn get_utcb(role: usize, offset: isize) -> u64 {
    let a = (world::utcb_of(role) + UTCB_MR0_OFFSET as u64).wrapping_add(offset as u64);
    // SAFETY: as in `set_utcb`.
    unsafe { core::ptr::read_volatile(a as *const u64) }
}

/// One random call.
fn step(c: &mut Ctx, f: usize, n: u64, trace: bool) {
    let kind = KINDS[c.rng.weighted(&WEIGHTS)];
    SHARED.current[f].store(kind as u64, Ordering::Relaxed);
    let mut r = Regs {
        rax: c.rng.next(),
        rbx: c.rng.next(),
        rcx: c.rng.next(),
        rdx: c.rng.next(),
        rsi: c.rng.next(),
        rdi: c.rng.next(),
        rbp: c.rng.next(),
        r8: c.rng.next(),
        r9: c.rng.next(),
        r10: c.rng.next(),
        r11: c.rng.next(),
        r12: c.rng.next(),
        r13: c.rng.next(),
        r14: c.rng.next(),
        r15: c.rng.next(),
        stub: 0,
    };
    let sc = l4::kip::get().syscalls;
    let mut pool_dest = None;
    r.stub = match kind {
        Kind::Ipc | Kind::Lipc => {
            ipc(c, &mut r);
            if kind == Kind::Ipc { sc.ipc } else { sc.lipc }
        }
        Kind::StartMessage => {
            start_message(c, &mut r);
            sc.ipc
        }
        Kind::ExchangeRegisters => {
            exregs(c, &mut r);
            sc.exchange_registers
        }
        Kind::ThreadControl => {
            pool_dest = thread_control(c, &mut r);
            sc.thread_control
        }
        Kind::SpaceControl => {
            space_control(c, &mut r);
            sc.space_control
        }
        Kind::Schedule => {
            schedule(c, &mut r);
            sc.schedule
        }
        Kind::ThreadSwitch => {
            r.rdi = c.tid();
            sc.thread_switch
        }
        Kind::Unmap => {
            unmap(c, &mut r);
            sc.unmap
        }
        Kind::SystemClock => sc.system_clock,
        Kind::ProcessorControl => {
            if c.rng.percent(50) {
                r.rdi = c.rng.below(3);
            }
            for v in [&mut r.rsi, &mut r.rdx, &mut r.r8] {
                if c.rng.percent(50) {
                    *v = UNCHANGED;
                }
            }
            sc.processor_control
        }
        Kind::MemoryControl => {
            memory_control(c, &mut r);
            sc.memory_control
        }
        Kind::KernelInterface | Kind::Null => 0,
    };
    if trace {
        l4::println!(
            "fuzz: #{} {} {:?} rax={:#x} rbx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} r8={:#x} r9={:#x} r10={:#x} r12={:#x}",
            n,
            c.role,
            kind,
            r.rax,
            r.rbx,
            r.rdx,
            r.rsi,
            r.rdi,
            r.r8,
            r.r9,
            r.r10,
            r.r12
        );
    }
    let failed = match kind {
        Kind::KernelInterface => {
            let _ = raw::kernel_interface();
            false
        }
        Kind::Null => {
            r.stub = sc.ipc + 32 * NULL_STUB_INDEX;
            call_scribbled(c, &mut r);
            false
        }
        _ => {
            call_scribbled(c, &mut r);
            match kind {
                Kind::Ipc | Kind::Lipc | Kind::StartMessage => MsgTag(r.r9).error(),
                Kind::ExchangeRegisters
                | Kind::ThreadControl
                | Kind::SpaceControl
                | Kind::Schedule
                | Kind::ProcessorControl
                | Kind::MemoryControl => r.rax == 0,
                _ => false,
            }
        }
    };
    if let Some((k, dest, deleted)) = pool_dest {
        if r.rax == 1 {
            SHARED.pool[k].store(if deleted { 0 } else { dest }, Ordering::Relaxed);
        }
    }
    SHARED.calls[kind as usize].fetch_add(1, Ordering::Relaxed);
    if failed {
        SHARED.failures[kind as usize].fetch_add(1, Ordering::Relaxed);
        if matches!(kind, Kind::Ipc | Kind::Lipc | Kind::StartMessage) {
            let e = get_utcb(c.role, abi::utcb::ERROR_CODE) & 0xF;
            SHARED.ipc_errors[e as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Makes the call, with the UTCB's identity words (the local id at `%gs:0` and
/// MyGlobalId) scribbled over now and then, and put back afterwards.
fn call_scribbled(c: &mut Ctx, r: &mut Regs) {
    let scribble = c.rng.percent(3);
    let (w0, gid) = (world::utcb_of(c.role) as *mut u64, get_utcb(c.role, abi::utcb::MY_GLOBAL_ID));
    if scribble {
        let (a, b) = (c.tid(), c.tid());
        // SAFETY: our own UTCB's word 0; `raw::call` does not read it, and it is written
        // back below before any library code runs.
        unsafe { core::ptr::write_volatile(w0, a) };
        set_utcb(c.role, abi::utcb::MY_GLOBAL_ID, b);
    }
    // SAFETY: `r.stub` is a stub of the KIP's stub page; the only memory the kernel may
    // write for us is our UTCB and the buffers our BRs name, which `ipc` pointed at our
    // sink and sandbox (module policy).
    unsafe { raw::call(r) };
    if scribble {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(w0, world::local_of(c.role).raw()) };
        set_utcb(c.role, abi::utcb::MY_GLOBAL_ID, gid);
    }
}

/// Sets MR `i` for a call: MR0..MR7 in the binding's registers, the rest in the UTCB.
fn set_mr(c: &Ctx, r: &mut Regs, i: usize, v: u64) {
    match i {
        0 => r.r9 = v,
        1 => r.rax = v,
        2 => r.rbx = v,
        3 => r.r10 = v,
        4 => r.r12 = v,
        5 => r.r13 = v,
        6 => r.r14 = v,
        7 => r.r15 = v,
        8..=63 => set_utcb(c.role, abi::utcb::mr_offset(i), v),
        _ => {}
    }
}

/// An untyped word: often an id, an address or a small number.
fn word(c: &mut Ctx) -> u64 {
    match c.rng.below(6) {
        0 => c.tid(),
        1 => c.address(),
        2 => c.rng.below(256),
        3 => c.fpage(),
        _ => c.rng.next(),
    }
}

// ---------------------------------------------------------------------------------------
// Ipc

fn ipc(c: &mut Ctx, r: &mut Regs) {
    // A third of the messages go to a victim, which is often waiting: the transfer of
    // typed items, strings and long messages needs a receiver.
    let victim = c.rng.percent(33);
    let to = if victim {
        let v = c.rng.pick(&world::VICTIMS);
        if world::space_of(v) == c.space && c.rng.percent(50) { world::local_of(v).raw() } else { world::id_of(v).raw() }
    } else {
        c.tid()
    };
    let from = c.receive_spec(to);
    let mut typed = [0u64; 63];
    let t = if c.rng.percent(35) {
        let room = c.rng.below(20) as usize + 2;
        let n = c.typed_items(&mut typed, room);
        Policy::items(c.space, &mut typed[..n]);
        n
    } else {
        0
    };
    let mut tag = c.tag(t as u8);
    if c.rng.percent(90) && tag.untyped() as usize + t > 63 {
        tag = tag.with_untyped((63 - t) as u8);
    }
    let u = tag.untyped() as usize;
    set_mr(c, r, 0, tag.raw());
    for i in 1..=u.min(63) {
        let w = word(c);
        set_mr(c, r, i, w);
    }
    for (k, &w) in typed[..t].iter().enumerate() {
        if u + 1 + k < 64 {
            set_mr(c, r, u + 1 + k, w);
        }
    }
    r.rsi = Policy::away_from_sigma0(to, 0);
    r.rdx = from;
    r.r8 = c.timeouts();
    if victim && c.rng.percent(70) {
        // Give the victim a moment to be waiting.
        let snd = abi::time::Time::period_us(50 + c.rng.below(2000)).unwrap_or(abi::time::ZERO) as u64;
        r.r8 = (r.r8 & 0xFFFF) | snd << 16;
    }
    if victim && c.rng.percent(40) {
        // Shaped for the IPC fast path: a call (or send and open wait) with a short
        // untyped message, no flags, no receive timeout; the victim answers.
        let u = c.rng.below(9) as u8;
        let label = c.rng.below(1 << 16);
        set_mr(c, r, 0, MsgTag::new(label, u, 0).raw());
        r.rdx = if c.rng.percent(75) { to } else { ThreadId::ANY.raw() };
        let snd = abi::time::Time::period_us(100 + c.rng.below(2000)).unwrap_or(abi::time::ZERO) as u64;
        let rcv = if c.rng.percent(60) { abi::time::NEVER as u64 } else { abi::time::Time::period_us(100 + c.rng.below(5000)).unwrap_or(abi::time::ZERO) as u64 };
        r.r8 = snd << 16 | rcv;
    }
    if c.rng.percent(80) {
        r.rdi = world::local_of(c.role).raw();
    }
    receive_buffers(c);
    tcrs(c);
}

/// The acceptor and string buffers for the receive phase: our sandbox and sink only.
fn receive_buffers(c: &mut Ctx) {
    if !c.rng.percent(40) {
        return;
    }
    // U accepts no strings while the known finding on faulting string copies is avoided:
    // its pages come and go (see `crate::Finding`).
    let strings = c.rng.percent(50) && (c.space == Space::R || !crate::avoid(crate::Finding::FaultingStrings));
    let acceptor = c.window() | strings as u64;
    set_utcb(c.role, abi::utcb::br_offset(0), acceptor);
    let mut i = 1;
    let buffers = c.rng.below(3);
    for b in 0..buffers {
        let (addr, len) = c.string_buffer();
        let h = StringItemHeader { length: len, substrings: 1, compound: c.rng.percent(10), more: b + 1 < buffers, cache_hint: 0 };
        set_utcb(c.role, abi::utcb::br_offset(i), h.encode());
        set_utcb(c.role, abi::utcb::br_offset(i + 1), addr);
        i += 2;
    }
    // Whatever follows is never read as a buffer unless a header says so: keep it from
    // naming memory outside the sink by clearing the next header.
    set_utcb(c.role, abi::utcb::br_offset(i), 0);
}

/// The thread control registers a message reads: transfer timeouts, the virtual sender
/// (propagation), the user handle, the exception handler.
fn tcrs(c: &mut Ctx) {
    if c.rng.percent(30) {
        // Mostly short: a string copy faulting on a page nobody maps waits that long.
        let t = if c.rng.percent(95) {
            let us = 1 + c.rng.below(5000);
            let p = abi::time::Time::period_us(us).unwrap_or(abi::time::ZERO) as u64;
            p << 16 | p
        } else {
            c.timeouts()
        };
        set_utcb(c.role, abi::utcb::XFER_TIMEOUTS, t);
    }
    if c.rng.percent(30) {
        let v = c.tid();
        set_utcb(c.role, abi::utcb::VIRTUAL_SENDER, v);
    }
    if c.rng.percent(10) {
        let h = c.rng.next();
        set_utcb(c.role, abi::utcb::USER_DEFINED_HANDLE, h);
    }
    if c.rng.percent(5) {
        let e = c.tid();
        set_utcb(c.role, abi::utcb::EXCEPTION_HANDLER, e);
    }
    if c.rng.percent(5) {
        let e = c.rng.next();
        set_utcb(c.role, abi::utcb::ERROR_CODE, e);
    }
}

/// The X.2 start message (u = 2: IP, SP) to a pool thread, from whoever we are.
fn start_message(c: &mut Ctx, r: &mut Regs) {
    let k = c.rng.below(world::POOL as u64) as usize;
    let known = SHARED.pool[k].load(Ordering::Relaxed);
    r.rsi = if known != 0 { known } else { ThreadId::global(world::pool_base() + k as u32, 1).raw() };
    r.rdx = ThreadId::NIL.raw();
    r.r8 = (abi::time::ZERO as u64) << 16;
    r.r9 = MsgTag::new(0, 2, 0).raw();
    r.rax = c.address();
    r.rbx = c.address();
}

// ---------------------------------------------------------------------------------------
// ExchangeRegisters

/// Every control bit X.2 (and Tern) defines.
const EXREGS_BITS: [u64; 11] = [
    EXREGS_HALT,
    EXREGS_ABORT_RECEIVE,
    EXREGS_ABORT_SEND,
    EXREGS_SET_SP,
    EXREGS_SET_IP,
    EXREGS_SET_FLAGS,
    EXREGS_SET_USER_HANDLE,
    EXREGS_SET_PAGER,
    EXREGS_APPLY_HALT,
    EXREGS_DELIVER,
    EXREGS_SET_FS_BASE,
];

fn exregs(c: &mut Ctx, r: &mut Regs) {
    let dest = if c.rng.percent(60) {
        let role = c.rng.pick(crate::gen::roles_in(c.space));
        if c.rng.percent(50) { world::local_of(role).raw() } else { world::id_of(role).raw() }
    } else {
        c.tid()
    };
    let mut control = 0;
    for &b in &EXREGS_BITS {
        if c.rng.percent(25) {
            control |= b;
        }
    }
    if c.rng.percent(4) {
        control |= 1 << (10 + c.rng.below(54));
    }
    r.rax = dest;
    r.rsi = control;
    r.r9 = c.rng.next();
    r.r10 = if c.rng.percent(50) { c.address() } else { c.rng.next() };
    r.rdi = Policy::away_from_sigma0(c.tid(), world::id_of(world::M).raw());
    let role = Policy::role_named(c.space, dest);
    let victim = role.is_some_and(|x| world::VICTIMS.contains(&x));
    if victim {
        // A victim may be restarted at its entry (its stack top keeps the trampoline
        // frame), or sent anywhere.
        let role = role.unwrap_or(world::RV0);
        let (sp, ip) = crate::victim::restart_point(role);
        // Its own stack or none that exists (the sandbox holds no memory of ours).
        r.rdx = match c.rng.below(20) {
            0 => 0,
            1 => world::SANDBOX + c.rng.below(1 << world::SANDBOX_LOG2),
            _ => sp,
        };
        // Never into the middle of the image: a victim running fuzzer code with a stray
        // stack could write the shared page (the fuzzers' own books).
        r.r8 = match c.rng.below(20) {
            0 => 0xFFFF_FFFF_8000_0000 + c.rng.below(1 << 20),
            1 => world::SANDBOX + c.rng.below(1 << world::SANDBOX_LOG2),
            _ => ip,
        };
    } else {
        r.rdx = c.address();
        r.r8 = c.address();
    }
    r.rsi = Policy::exregs_control(role, r.rsi);
    if victim {
        // A victim's pager stays M, or becomes nobody: a fuzzer as its pager could answer
        // its faults with mappings anywhere in the victim's space — which is R's or U's,
        // the fuzzer's own machinery.
        r.rdi = match c.rng.below(3) {
            0 => world::id_of(world::M).raw(),
            1 => ThreadId::NIL.raw(),
            _ => ThreadId::global(world::pool_base() + world::POOL as u32 + 8 + c.rng.below(64) as u32, 1).raw(),
        };
    }
    if role.is_some_and(|x| world::FUZZERS.contains(&x) || world::VICTIMS.contains(&x)) && c.rng.percent(90) {
        // A halted fuzzer or victim waits for M to notice: halt them seldom.
        r.rsi &= !EXREGS_HALT;
    }
}

// ---------------------------------------------------------------------------------------
// ThreadControl, SpaceControl, Schedule

/// Returns `(pool index, dest, deleted)` when `dest` is a pool thread, to record the
/// outcome.
fn thread_control(c: &mut Ctx, r: &mut Regs) -> Option<(usize, u64, bool)> {
    let pool_k = c.rng.below(world::POOL as u64) as u32;
    let mut dest = match c.rng.weighted(&[60, 8, 10, 22]) {
        0 => {
            let known = SHARED.pool[pool_k as usize].load(Ordering::Relaxed);
            if known != 0 && c.rng.percent(60) {
                known
            } else {
                ThreadId::global(world::pool_base() + pool_k, 1 + c.rng.below(3) as u32).raw()
            }
        }
        1 => world::id_of(c.rng.below(world::ROLES as u64) as usize).raw(),
        2 => ThreadId::global(c.rng.below(26) as u32, if c.rng.percent(80) { 1 } else { c.rng.below(3) as u32 }).raw(),
        _ => c.tid(),
    };
    let space = match c.rng.weighted(&[18, 30, 20, 32]) {
        0 => 0,
        1 => dest,
        2 => {
            let k = c.rng.below(world::POOL as u64) as usize;
            let known = SHARED.pool[k].load(Ordering::Relaxed);
            if known != 0 { known } else { ThreadId::global(world::pool_base() + k as u32, 1).raw() }
        }
        _ => c.tid(),
    };
    let scheduler = match c.rng.below(4) {
        0 => 0,
        1 => world::id_of(world::M).raw(),
        _ => c.tid(),
    };
    let pager = match c.rng.below(6) {
        0 | 1 => 0,
        2 => world::id_of(world::M).raw(),
        3 => world::id_of(c.role).raw(),
        _ => c.tid(),
    };
    let utcb = match c.rng.below(6) {
        0 | 1 => UNCHANGED,
        2..=4 => world::UTCB_AREA + c.rng.below(16) * world::UTCB_SIZE,
        _ => c.address(),
    };
    let (mut space, mut pager, mut utcb) = (space, pager, utcb);
    let pool = Policy::thread_control(c.space, &mut dest, &mut space, &mut pager, &mut utcb);
    r.rdi = dest;
    r.rsi = Policy::away_from_sigma0(pager, world::id_of(world::M).raw());
    r.rdx = scheduler;
    r.r8 = space;
    r.r9 = utcb;
    pool.map(|k| (k, dest, space == 0))
}

fn space_control(c: &mut Ctx, r: &mut Regs) {
    let space = if c.rng.percent(50) {
        let k = c.rng.below(world::POOL as u64) as usize;
        let known = SHARED.pool[k].load(Ordering::Relaxed);
        if known != 0 { known } else { c.tid() }
    } else {
        c.tid()
    };
    let control = if c.rng.percent(85) { 0 } else { c.rng.next() };
    let kip = match c.rng.below(4) {
        0 | 1 => Fpage::new(world::KIP_AREA, 12, Rights::NONE).raw(),
        2 => Fpage::new(c.address(), 12 + c.rng.below(3) as u8, Rights::NONE).raw(),
        _ => c.fpage(),
    };
    let utcb = match c.rng.below(4) {
        0 | 1 => Fpage::new(world::UTCB_AREA, 12 + c.rng.below(3) as u8, Rights::NONE).raw(),
        2 => Fpage::new(c.address(), 10 + c.rng.below(12) as u8, Rights::NONE).raw(),
        _ => c.fpage(),
    };
    let redirector = match c.rng.below(4) {
        0 => 0,
        1 => ThreadId::ANY.raw(),
        _ => c.tid(),
    };
    r.rdi = space;
    r.rsi = control;
    r.rdx = kip;
    r.r8 = Policy::utcb_area(utcb);
    r.r9 = Policy::away_from_sigma0(Policy::redirector(c.space, space, redirector), 0);
}

fn schedule(c: &mut Ctx, r: &mut Regs) {
    let dest = c.tid();
    let prio = match c.rng.below(4) {
        0 | 1 => UNCHANGED,
        2 => c.rng.below(256),
        _ => c.rng.next(),
    };
    let time = match c.rng.below(4) {
        0 | 1 => UNCHANGED,
        2 => abi::syscall::TimeControl::encode(c.time(), c.time()),
        _ => c.rng.next(),
    };
    let processor = match c.rng.below(3) {
        0 => UNCHANGED,
        1 => 0,
        _ => c.rng.next(),
    };
    r.rdi = dest;
    (r.rsi, r.rdx) = Policy::schedule(c.space, dest, prio, time);
    r.r8 = processor;
    if c.rng.percent(80) {
        r.r9 = UNCHANGED;
    }
}

// ---------------------------------------------------------------------------------------
// Unmap, MemoryControl

fn unmap(c: &mut Ctx, r: &mut Regs) {
    let k = match c.rng.below(4) {
        0 | 1 => c.rng.below(3),
        2 => c.rng.below(9),
        _ => c.rng.below(64),
    };
    let flush = c.rng.percent(40);
    let mut words = [0u64; 64];
    for w in words.iter_mut().take(k as usize + 1) {
        *w = if c.rng.percent(30) {
            // Around the sandbox, where the received mappings are.
            let l = 12 + c.rng.below(19) as u8;
            Fpage::new(world::SANDBOX + c.rng.below(1 << world::SANDBOX_LOG2), l, c.rights()).raw()
        } else {
            c.fpage()
        };
    }
    // U flushing its own code, stack or shared page is legal and tested, but costs it a
    // page fault per page afterwards: keep it rare.
    let flush = flush && Policy::may_flush(c.space, &words[..=k as usize]) && (c.rng.percent(5) || Policy::flush_is_cheap(c.space, &words[..=k as usize]));
    let mut control = k | if flush { abi::syscall::UnmapControl::FLUSH } else { 0 };
    if c.rng.percent(3) {
        control |= c.rng.next() & !0x7F;
    }
    for (i, &w) in words.iter().enumerate().take(k as usize + 1) {
        set_mr(c, r, i, w);
    }
    r.rdx = control;
    r.rdi = world::local_of(c.role).raw();
}

fn memory_control(c: &mut Ctx, r: &mut Regs) {
    let k = c.rng.below(8);
    for i in 0..=k as usize {
        let w = c.fpage();
        set_mr(c, r, i, w);
    }
    r.rdx = if c.rng.percent(90) { k } else { c.rng.next() };
    for a in [&mut r.rcx, &mut r.rsi, &mut r.r8, &mut r.r11] {
        *a = match c.rng.below(3) {
            0 => 0,
            1 => !0,
            _ => *a,
        };
    }
    r.rdi = world::local_of(c.role).raw();
}

// ---------------------------------------------------------------------------------------
// The policy

/// The rules that keep the fuzzer's machinery alive (see the module documentation).
pub struct Policy;

impl Policy {
    /// The role `id` names from `space` (a local id of a slot there, or a role's global
    /// id with its current version), if any.
    pub fn role_named(space: Space, id: u64) -> Option<usize> {
        let t = ThreadId(id);
        if t.is_local() {
            let utcb = id.wrapping_sub(UTCB_MR0_OFFSET as u64);
            let slot = utcb.wrapping_sub(world::UTCB_AREA) / world::UTCB_SIZE;
            let role = slot as usize;
            return (role < world::ROLES && world::space_of(role) == space && role != world::KEEP).then_some(role);
        }
        (0..world::ROLES).find(|&role| world::id_of(role).raw() == id)
    }

    /// Whether `id` names a fixed thread, or a thread of R or U through a local id, or
    /// carries the thread number of one (any version: a version change renames).
    fn protected(id: u64) -> bool {
        let t = ThreadId(id);
        t.is_local() || (t.is_global() && world::protected_number(t.number()))
    }

    /// `instead` for σ0's id, else `id`. σ0 makes its mapping-database roots on demand
    /// and keeps them (by design): memory it hands out would stay in the kernel's books,
    /// and the run could not end with kernel memory back at its start value. So no
    /// fuzzer talks to σ0, makes it a pager or a redirector.
    fn away_from_sigma0(id: u64, instead: u64) -> u64 {
        let t = ThreadId(id);
        if t.is_global() && t.number() == world::user_base() {
            instead
        } else {
            id
        }
    }

    /// ExchangeRegisters control bits allowed on `role` (None: not a fixed thread here).
    fn exregs_control(role: Option<usize>, control: u64) -> u64 {
        match role {
            Some(world::M) => control & (EXREGS_ABORT_RECEIVE | EXREGS_ABORT_SEND | EXREGS_DELIVER | EXREGS_SET_USER_HANDLE),
            // A fuzzer keeps its pager (M serves its faults: U's fuzzers flush their own
            // pages on purpose).
            Some(r) if world::FUZZERS.contains(&r) => control & !(EXREGS_SET_SP | EXREGS_SET_IP | EXREGS_SET_FLAGS | EXREGS_SET_PAGER),
            _ => control,
        }
    }

    /// ThreadControl arguments; returns the pool index when `dest` is a pool thread.
    fn thread_control(space: Space, dest: &mut u64, spec: &mut u64, pager: &mut u64, utcb: &mut u64) -> Option<usize> {
        // (Any scheduler is fine: a scheduler only decides who may call Schedule.)
        if space != Space::R {
            return None; // refused anyway: U is not privileged
        }
        let d = ThreadId(*dest);
        if !d.is_global() {
            return None;
        }
        let n = d.number();
        if world::protected_number(n) {
            // Read-only: the exact current id (σ0's is fixed; a role being recreated has
            // none: then an invalid id), its own space, nothing else changed.
            let exact = if n == world::user_base() {
                Some(ThreadId::global(n, 1))
            } else {
                (0..world::ROLES).map(world::id_of).find(|t| !t.is_nil() && t.number() == n)
            };
            *dest = exact.map_or(0, |t| t.raw());
            *spec = *dest;
            *pager = 0;
            *utcb = UNCHANGED;
            return None;
        }
        if n >= world::user_base() && !world::pool_number(n) {
            *dest = ThreadId::global(world::pool_base() + n % world::POOL as u32, d.version()).raw();
        }
        let d = ThreadId(*dest);
        if !world::pool_number(d.number()) {
            return None; // interrupt threads and kernel-reserved numbers
        }
        let k = (d.number() - world::pool_base()) as usize;
        if *spec != 0 && *spec != *dest && Self::protected(*spec) {
            *spec = *dest;
        }
        let recorded = SHARED.pool[k].load(Ordering::Relaxed);
        if crate::avoid(crate::Finding::Migration) && *spec != 0 && *spec != *dest && recorded != 0 {
            // Finding: moving an inactive thread to another space leaks its old space when
            // it was the last thread there. Only create threads in other spaces.
            *spec = *dest;
        }
        Some(k)
    }

    /// The UTCB-area fpage of SpaceControl (areas whose teardown takes too long are
    /// cut, see `crate::Finding`).
    fn utcb_area(f: u64) -> u64 {
        let fp = Fpage(f);
        if crate::avoid(crate::Finding::HugeUtcbArea) && fp.log2size() > 24 && fp.log2size() < 47 {
            return Fpage::new(fp.base(), 24, fp.rights()).raw();
        }
        f
    }

    /// SpaceControl's redirector: never set for R, U or the canaries' spaces.
    fn redirector(space: Space, spec: u64, redirector: u64) -> u64 {
        if space == Space::R && Self::protected(spec) {
            0
        } else {
            redirector
        }
    }

    /// Schedule's priority and time control: nothing changes on fixed threads; others
    /// get at most the fuzzers' priority.
    fn schedule(space: Space, dest: u64, prio: u64, time: u64) -> (u64, u64) {
        let t = ThreadId(dest);
        let fixed = match Self::role_named(space, dest) {
            Some(role) => !world::VICTIMS.contains(&role),
            None => t.is_local() || (t.is_global() && world::protected_number(t.number())),
        };
        if fixed {
            return (UNCHANGED, UNCHANGED);
        }
        let prio = if prio == UNCHANGED { prio } else { (prio & 0xFF).min(crate::FUZZ_PRIO as u64) };
        (prio, time)
    }

    /// Whether Unmap may flush the caller's own mappings of `fpages`.
    fn may_flush(space: Space, fpages: &[u64]) -> bool {
        space != Space::R || fpages.iter().all(|&f| Self::within(f, Self::sandbox()))
    }

    /// Whether flushing `fpages` leaves `space`'s code, stacks and shared page alone.
    fn flush_is_cheap(space: Space, fpages: &[u64]) -> bool {
        let cheap = |f: u64| Self::within(f, Self::sandbox()) || Self::within(f, world::scratch_of(space)) || Self::within(f, world::sink_of(space));
        fpages.iter().all(|&f| cheap(f))
    }

    fn sandbox() -> Range {
        Range { start: world::SANDBOX, end: world::SANDBOX + (1 << world::SANDBOX_LOG2) }
    }

    /// Whether the memory fpage `f` lies inside `range` (nil and I/O fpages: yes, they
    /// name no memory).
    fn within(f: u64, range: Range) -> bool {
        let fp = Fpage(f);
        if fp.is_nil() || fp.is_io() {
            return true;
        }
        match fp.try_validate() {
            Ok(v) if !v.is_complete() => v.base() >= range.start && v.base().saturating_add(v.size()) <= range.end,
            Ok(_) => false,
            Err(_) => true,
        }
    }

    /// Map and grant items as the kernel will read them: a grant leaves `space` only from
    /// its sandbox (and U's also from its scratch), write rights only from the scratch or
    /// the sandbox; otherwise a grant becomes a map and W is dropped.
    fn items(space: Space, words: &mut [u64]) {
        let mut fixes: [(usize, u64, u64); 32] = [(0, 0, 0); 32];
        let mut nfix = 0;
        let mut rd = TypedItemReader::new(words);
        while nfix < fixes.len() {
            let at = rd.position();
            let Some(Ok(item)) = rd.next() else { break };
            let (TypedItem::Map(m) | TypedItem::Grant(m)) = item.item else { continue };
            let fp = Fpage(item.words[1]);
            let in_sandbox = Self::within(fp.raw(), Self::sandbox());
            let in_scratch = Self::within(fp.raw(), world::scratch_of(space));
            let mut w0 = item.words[0];
            let mut w1 = fp.raw();
            if m.grant && !(in_sandbox || (space == Space::U && in_scratch)) {
                w0 = (w0 & !0xE) | 0x8;
            }
            if !(in_sandbox || in_scratch || fp.is_io()) {
                w1 &= !(Rights::W.bits() as u64);
            }
            fixes[nfix] = (at, w0, w1);
            nfix += 1;
        }
        for &(at, w0, w1) in &fixes[..nfix] {
            words[at] = w0;
            words[at + 1] = w1;
        }
        // (Messages carry at most 63 words: fewer than 32 two-word items.)
    }
}
