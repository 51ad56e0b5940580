//! The kernel-generated IPC protocols: page faults (a child thread whose pager is the
//! main thread reads, writes and executes unmapped addresses; the main thread checks
//! each message and resolves it with a map reply), exceptions (`ud2`, a non-KDB `int3`,
//! a divide by zero: the AMD64 register message, and a reply that changes RIP, registers
//! and flags) and the thread start protocol.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{Fpage, Rights};
use abi::msg::{label, MsgTag, EXCEPTION_UNTYPED};
use abi::syscall::exception_mr as xmr;
use abi::syscall::ThreadState;
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::env::{in_image, is_page_fault, main_id, state, Space, Thread, PRIO};
use crate::harness::{ensure, fail, now, wait_until, Cells, Check, Context, Runner, Why};
use crate::jobs::{self, lane, EXTRA, OUT, PARAM, PARAM2, W};
use crate::wire::{self, expect_err, expect_ok, map_item, ms, tmo, LONG};

/// Runs the checks.
pub fn run(r: &mut Runner) {
    r.group("pagefault");
    let pf = pf_scenario();
    r.check("read-fault-message", || pf.fault(0, 4, "read"));
    r.check("write-fault-message", || pf.fault(1, 2, "write"));
    r.check("fetch-fault-message-ip-is-address", || {
        pf.fault(2, 1, "fetch")
    });
    r.check("from-is-faulting-thread-global-id", || pf.from());
    r.check("map-reply-resumes-thread", || pf.resumed());
    r.check("fault-in-same-space-from-local-id", fault_same_space);
    r.group("exception");
    let ud = exc_scenario(Kind::Ud2);
    r.check("ud2-message-label-u-rip-vector", || ud.message(6));
    r.check("message-carries-registers", || ud.registers());
    r.check("reply-sets-rip-registers-flags", || ud.resumed());
    r.check("reply-takes-only-user-flags", || ud.flags());
    let bp = exc_scenario(Kind::Int3);
    r.check("int3-not-kdb-is-breakpoint", || bp.message(3));
    let de = exc_scenario(Kind::Divide);
    r.check("divide-by-zero-vector-0", || de.message(0));
    r.check(
        "handler-in-other-space-sees-global-id",
        exception_from_child,
    );
    r.group("start");
    r.check("new-thread-waits-for-start", waits_for_start);
    r.check("start-message-sets-ip-sp", start_message);
    r.check("start-only-from-pager", start_only_from_pager);
    r.check("child-thread-runs-with-its-utcb", child_utcb);
}

// ------------------------------------------------------------------------------------
// Page faults

/// Where the page-fault child reads (+0), writes (+0x1000) and executes (+0x2000).
const PF_BASE: u64 = 0x6000_0000;

/// A page whose first word the main thread maps to the child's read address.
#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);
static PF_READ: Page = Page([const { AtomicU64::new(0) }; 512]);
static PF_WRITE: Page = Page([const { AtomicU64::new(0) }; 512]);
const PF_MARK: u64 = 0x0F0F_5A5A_0000_0001;
const PF_WRITTEN: u64 = 0x77AA_77AA;
const MAGIC: u64 = 0x4242_4242;

global_asm!(
    r#"
    .section .text.ipct_magic, "ax"
    .balign 64
    .global ipct_magic
ipct_magic:
    mov eax, 0x42424242
    ret
    .text
"#
);

extern "C" {
    /// Returns [`MAGIC`]; position-independent and inside one 64-byte block, so it runs
    /// from any page its page is mapped to.
    fn ipct_magic() -> u64;
}

fn page_addr<T>(p: &T) -> u64 {
    p as *const T as u64
}

/// Reads the word at `a`; returns it and the address of the reading instruction.
fn load_with_ip(a: u64) -> (u64, u64) {
    let (v, ip): (u64, u64);
    // SAFETY: reads a window address of this child space that the check chose; the page
    // is missing on purpose, and the X.2 page-fault protocol (the pager's map reply)
    // supplies it before the load completes. `ip` is written before `a` is read and is a
    // separate register (`out`, not `lateout`).
    unsafe {
        asm!(
            "lea {ip}, [rip + 2f]",
            "2: mov {v}, qword ptr [{a}]",
            a = in(reg) a,
            v = out(reg) v,
            ip = out(reg) ip,
            options(nostack, readonly),
        )
    };
    (v, ip)
}

/// Writes `v` at `a`; returns the address of the writing instruction.
fn store_with_ip(a: u64, v: u64) -> u64 {
    let ip: u64;
    // SAFETY: as in `load_with_ip`: a window address supplied by the pager on the fault.
    unsafe {
        asm!(
            "lea {ip}, [rip + 2f]",
            "2: mov qword ptr [{a}], {v}",
            a = in(reg) a,
            v = in(reg) v,
            ip = out(reg) ip,
            options(nostack),
        )
    };
    ip
}

/// The child of the page-fault scenario: makes the main thread (PARAM) its pager, then
/// reads, writes and executes at PARAM2 + 0, + 0x1000, + 0x2000.
fn pf_child(i: usize) {
    let l = lane(i);
    let base = l.get(PARAM2);
    l4::utcb::set_pager(ThreadId(l.get(PARAM)));
    let (v, ip) = load_with_ip(base);
    l.set(W, v);
    l.set(W + 1, ip);
    let ipw = store_with_ip(base + 0x1000, PF_WRITTEN);
    l.set(W + 2, ipw);
    let entry = base + 0x2000 + (ipct_magic as *const () as u64 & 0xFFF);
    l.set(W + 3, entry);
    // SAFETY: `entry` is where the pager maps the page holding `ipct_magic` (same page
    // offset), a complete `extern "C" fn() -> u64` that uses no memory.
    let f = unsafe { core::mem::transmute::<usize, extern "C" fn() -> u64>(entry as usize) };
    l.set(W + 4, f());
    l.set(EXTRA, 1);
}

/// One page fault the main thread saw.
#[derive(Clone, Copy, Default)]
struct Seen {
    tag: u64,
    addr: u64,
    ip: u64,
    from: u64,
}

/// What the page-fault scenario observed.
struct Pf {
    error: Option<Why>,
    seen: [Option<Seen>; 3],
    child: ThreadId,
}

/// Serves the child's faults as its pager (image faults 1:1, the three scenario faults
/// with their pages) until it is done or 3 s passed.
fn pf_scenario() -> Pf {
    let mut pf = Pf {
        error: None,
        seen: [None; 3],
        child: ThreadId::NIL,
    };
    if let Err(e) = run_pf(&mut pf) {
        pf.error = Some(e);
    }
    pf
}

fn run_pf(pf: &mut Pf) -> Check {
    jobs::clear_all();
    PF_READ.0[0].store(PF_MARK, Ordering::SeqCst);
    PF_WRITE.0[0].store(0, Ordering::SeqCst);
    let mut space = Space::new()?;
    let c = jobs::child(&mut space, pf_child, 0, main_id(), PF_BASE)?;
    pf.child = c.id();
    let deadline = now() + 3_000_000;
    let mut n = 0;
    for _ in 0..64 {
        if lane(0).get(EXTRA) != 0 {
            return Ok(());
        }
        let left = deadline.saturating_sub(now());
        if left == 0 {
            break;
        }
        let r = wire::ipc(
            ThreadId::NIL,
            c.id(),
            tmo(
                Time::Never,
                Time::Period {
                    us: left.min(50_000),
                },
            ),
            MsgTag::NIL,
        );
        if r.failed() {
            continue;
        }
        let addr = l4::utcb::mr(1).unwrap_or(0);
        let ip = l4::utcb::mr(2).unwrap_or(0);
        if !is_page_fault(r.tag) {
            fail!(
                "the child sent tag {:#x} where a page fault was due",
                r.tag.raw()
            );
        }
        let page = addr & !0xFFF;
        let (src, rights) = if in_image(addr) {
            (page, Rights::RWX)
        } else {
            if n < 3 {
                pf.seen[n] = Some(Seen {
                    tag: r.tag.raw(),
                    addr,
                    ip,
                    from: r.from.raw(),
                });
            }
            n += 1;
            match page.wrapping_sub(PF_BASE) {
                0 => (page_addr(&PF_READ), Rights::R),
                0x1000 => (page_addr(&PF_WRITE), Rights::RW),
                0x2000 => (ipct_magic as *const () as u64 & !0xFFF, Rights::RX),
                _ => fail!("the child faulted at {:#x} (ip {:#x})", addr, ip),
            }
        };
        let item = map_item(Fpage::new(src, 12, rights), page, false, false);
        let tag = wire::load(0, &[], &item);
        let s = wire::ipc(c.id(), ThreadId::NIL, tmo(Time::Zero, Time::Never), tag);
        expect_ok(s.outcome(), "the map reply")?;
    }
    if lane(0).get(EXTRA) != 0 {
        return Ok(());
    }
    fail!("the child did not finish ({} scenario faults seen)", n)
}

impl Pf {
    fn early(&self) -> Check {
        match &self.error {
            Some(e) => fail!("{}", e),
            None => Ok(()),
        }
    }

    /// Fault `k` (0 read, 1 write, 2 fetch) with access bits `rwx`.
    fn fault(&self, k: usize, rwx: u64, what: &str) -> Check {
        let Some(s) = self.seen[k] else {
            self.early()?;
            fail!("no {} fault reached the pager", what);
        };
        let want_addr = PF_BASE + k as u64 * 0x1000;
        let tag = MsgTag(s.tag);
        let want_label = label::PAGE_FAULT | rwx;
        ensure!(
            tag.label() == want_label && tag.untyped() == 2 && tag.typed() == 0 && tag.flags() == 0,
            "{} fault tag {:#x}: expected label {:#x}, u 2, t 0",
            what,
            s.tag,
            want_label
        );
        let l = lane(0);
        let (addr_ok, want_ip) = match k {
            0 => (s.addr == want_addr, l.get(W + 1)),
            1 => (s.addr == want_addr, l.get(W + 2)),
            _ => (s.addr == l.get(W + 3), l.get(W + 3)),
        };
        ensure!(
            addr_ok,
            "{} fault at MR1 {:#x}, expected on {:#x}",
            what,
            s.addr,
            want_addr
        );
        ensure!(
            s.ip == want_ip,
            "{} fault MR2 (IP) {:#x}, the instruction is at {:#x}",
            what,
            s.ip,
            want_ip
        );
        Ok(())
    }

    fn from(&self) -> Check {
        let Some(s) = self.seen[0] else {
            self.early()?;
            fail!("no fault reached the pager");
        };
        ensure!(
            s.from == self.child.raw(),
            "the fault came From {:#x}, the child is {:?}",
            s.from,
            self.child
        );
        Ok(())
    }

    fn resumed(&self) -> Check {
        self.early()?;
        let l = lane(0);
        ensure!(l.get(EXTRA) == 1, "the child did not finish");
        ensure!(
            l.get(W) == PF_MARK,
            "the child read {:#x} from the mapped page",
            l.get(W)
        );
        let written = PF_WRITE.0[0].load(Ordering::SeqCst);
        ensure!(
            written == PF_WRITTEN,
            "the child's write left {:#x} in the page mapped for it",
            written
        );
        ensure!(
            l.get(W + 4) == MAGIC,
            "the code mapped for the fetch returned {:#x}",
            l.get(W + 4)
        );
        Ok(())
    }
}

/// Makes PARAM its pager, then reads PARAM2 (a page nobody maps).
fn fault_and_stop(i: usize) {
    let l = lane(i);
    l4::utcb::set_pager(ThreadId(l.get(PARAM)));
    let (v, _) = load_with_ip(l.get(PARAM2));
    l.set(W, v);
}

fn fault_same_space() -> Check {
    jobs::clear_all();
    let w = jobs::local(fault_and_stop, 1, main_id(), 0x6100_0000)?;
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    expect_ok(r.outcome(), "receiving the fault")?;
    ensure!(is_page_fault(r.tag), "tag {:#x}", r.tag.raw());
    ensure!(
        l4::utcb::mr(1) == Some(0x6100_0000),
        "MR1 {:#x?}",
        l4::utcb::mr(1)
    );
    ensure!(
        r.from == w.local_id(),
        "From {:?}; the thread's local id is {:?}",
        r.from,
        w.local_id()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------
// Exceptions

/// What the exception job does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ud2,
    Int3,
    Divide,
}

/// Register values the `ud2` job loads (MR index → value), in the message's order.
const REG: [(usize, u64); 15] = [
    (xmr::RBX, 0x0B0B_0000_0000_0002),
    (xmr::R10, 0x0A10_0000_0000_0003),
    (xmr::R12, 0x0A12_0000_0000_0004),
    (xmr::R13, 0x0A13_0000_0000_0005),
    (xmr::R14, 0x0A14_0000_0000_0006),
    (xmr::R15, 0x0A15_0000_0000_0007),
    (xmr::RAX, 0x0AAA_0000_0000_0008),
    (xmr::RCX, 0x0CCC_0000_0000_0009),
    (xmr::RDX, 0x0DDD_0000_0000_000A),
    (xmr::RSI, 0x051_0000_0000_000B),
    (xmr::RDI, 0x0D1_0000_0000_000C),
    (xmr::RBP, 0x0B9_0000_0000_000D),
    (xmr::R8, 0x0A08_0000_0000_000E),
    (xmr::R9, 0x0A09_0000_0000_000F),
    (xmr::R11, 0x0A11_0000_0000_0010),
];

const fn reg(i: usize) -> u64 {
    REG[i].1
}

/// What the reply sets: RAX, RBX, and CF plus TF (which must not be taken).
const NEW_RAX: u64 = 0x600D;
const NEW_RBX: u64 = 0xB0B0_FEED;
const FLAG_CF: u64 = 1;
const FLAG_TF: u64 = 1 << 8;

/// Result words of the exception jobs (written by their assembly).
static EXC: Cells<8> = Cells::new();
const X_RIP: usize = 0;
const X_RSP: usize = 1;
const X_RAX: usize = 2;
const X_FLAGS: usize = 3;
const X_RBX: usize = 4;
const X_RESUME: usize = 5;
const X_DONE: usize = 6;

/// Loads [`REG`] into the registers and executes `ud2`; after the handler's reply
/// stores RAX, RBX and RFLAGS.
fn ud2_regs() {
    let out = EXC.as_ptr();
    // SAFETY: `out` points to `EXC` (8 words). The block saves RBX, RBP and RDI on the
    // stack, records the address of its `ud2` and RSP, loads every other register, and
    // raises #UD: the kernel sends the exception message and, on the handler's reply,
    // resumes the thread at the RIP the reply gives (the instruction after `ud2`) with
    // the registers it gives. Then the block reloads `out` from the stack, stores the
    // results and restores RDI, RBP and RBX. Every other register is declared clobbered.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push rdi",
            "lea rax, [rip + 2f]",
            "mov [rdi], rax",
            "mov [rdi + 8], rsp",
            "lea rax, [rip + 3f]",
            "mov [rdi + 40], rax",
            "mov rbx, {rbx}",
            "mov r10, {r10}",
            "mov r12, {r12}",
            "mov r13, {r13}",
            "mov r14, {r14}",
            "mov r15, {r15}",
            "mov rax, {rax}",
            "mov rcx, {rcx}",
            "mov rdx, {rdx}",
            "mov rsi, {rsi}",
            "mov rbp, {rbp}",
            "mov r8, {r8}",
            "mov r9, {r9}",
            "mov r11, {r11}",
            "mov rdi, {rdi}",
            "2: ud2",
            "3: mov rcx, [rsp]",
            "mov [rcx + 16], rax",
            "mov [rcx + 32], rbx",
            "pushfq",
            "pop rdx",
            "mov [rcx + 24], rdx",
            "pop rdi",
            "pop rbp",
            "pop rbx",
            rbx = const reg(0),
            r10 = const reg(1),
            r12 = const reg(2),
            r13 = const reg(3),
            r14 = const reg(4),
            r15 = const reg(5),
            rax = const reg(6),
            rcx = const reg(7),
            rdx = const reg(8),
            rsi = const reg(9),
            rdi = const reg(10),
            rbp = const reg(11),
            r8 = const reg(12),
            r9 = const reg(13),
            r11 = const reg(14),
            inout("rdi") out => _,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}

/// Executes `int3` followed by `add rax, 0` (no KDB marker: not `cmp al`, `jmp` or the
/// `nop` Tern skips): a breakpoint.
fn int3_plain() {
    let out = EXC.as_ptr();
    // SAFETY: records the address after `int3` (where the trap is reported and resumes)
    // in `EXC`, then raises #BP; the handler's reply resumes the thread at the RIP it
    // gives. No register but RAX (declared) changes.
    unsafe {
        asm!(
            "lea rax, [rip + 3f]",
            "mov [rdi], rax",
            "mov [rdi + 40], rax",
            "int3",
            "3: add rax, 0",
            in("rdi") out,
            out("rax") _,
        )
    };
}

/// Divides by zero; records the address of the `div` and of the next instruction.
fn divide_by_zero() {
    let out = EXC.as_ptr();
    // SAFETY: records the addresses of the `div` (a fault reports it) and of the next
    // instruction in `EXC`, then raises #DE with RCX = 0; the handler's reply resumes at
    // the next instruction. RAX, RCX and RDX are declared clobbered.
    unsafe {
        asm!(
            "lea rax, [rip + 2f]",
            "mov [rdi], rax",
            "lea rax, [rip + 3f]",
            "mov [rdi + 40], rax",
            "xor ecx, ecx",
            "xor edx, edx",
            "mov eax, 1",
            "2: div rcx",
            "3: nop",
            in("rdi") out,
            out("rax") _, out("rcx") _, out("rdx") _,
        )
    };
}

/// Sets its exception handler to PARAM and raises the exception PARAM2 names.
fn exception_job(i: usize) {
    let l = lane(i);
    l4::utcb::set_exception_handler(ThreadId(l.get(PARAM)));
    match l.get(PARAM2) {
        0 => ud2_regs(),
        1 => int3_plain(),
        _ => divide_by_zero(),
    }
    EXC.set(X_DONE, 1);
}

/// What an exception scenario observed.
struct Exc {
    error: Option<Why>,
    kind: Kind,
    msg: [u64; 20],
    from: ThreadId,
    thread: ThreadId,
}

/// Runs the exception job of `kind` in a root thread whose handler is the main thread,
/// and answers its message (RIP = the resume address; for `ud2` also new RAX, RBX and
/// flags CF and TF).
fn exc_scenario(kind: Kind) -> Exc {
    let mut x = Exc {
        error: None,
        kind,
        msg: [0; 20],
        from: ThreadId::NIL,
        thread: ThreadId::NIL,
    };
    if let Err(e) = run_exc(&mut x) {
        x.error = Some(e);
    }
    x
}

fn run_exc(x: &mut Exc) -> Check {
    jobs::clear_all();
    EXC.clear();
    let which = match x.kind {
        Kind::Ud2 => 0,
        Kind::Int3 => 1,
        Kind::Divide => 2,
    };
    let w = jobs::local(exception_job, 0, main_id(), which)?;
    x.thread = w.local_id();
    let r = wire::ipc(ThreadId::NIL, w.id(), tmo(Time::Never, LONG), MsgTag::NIL);
    expect_ok(r.outcome(), "receiving the exception message")?;
    x.from = r.from;
    x.msg[0] = r.tag.raw();
    for k in 1..20 {
        x.msg[k] = l4::utcb::mr(k).unwrap_or(0);
    }
    if r.tag.protocol() != label::EXCEPTION {
        fail!(
            "the thread sent tag {:#x}, not an exception message",
            r.tag.raw()
        );
    }
    let mut reply = [0u64; 19];
    reply.copy_from_slice(&x.msg[1..20]);
    reply[xmr::RIP - 1] = EXC.get(X_RESUME);
    if x.kind == Kind::Ud2 {
        reply[xmr::RAX - 1] = NEW_RAX;
        reply[xmr::RBX - 1] = NEW_RBX;
        reply[xmr::RFLAGS - 1] |= FLAG_CF | FLAG_TF;
    }
    let tag = wire::load(0, &reply, &[]);
    let s = wire::ipc(r.from, ThreadId::NIL, tmo(Time::Zero, Time::Never), tag);
    expect_ok(s.outcome(), "the reply")?;
    ensure!(
        wait_until(2_000_000, || EXC.get(X_DONE) != 0),
        "the thread did not continue after the reply"
    );
    // A TF the kernel wrongly took would raise #DB: a second message.
    let r = wire::ipc(ThreadId::NIL, w.id(), tmo(Time::Never, ms(20)), MsgTag::NIL);
    if !r.failed() {
        fail!(
            "a second exception message {:#x} (vector {:?}) after the reply",
            r.tag.raw(),
            l4::utcb::mr(xmr::VECTOR)
        );
    }
    Ok(())
}

impl Exc {
    fn early(&self) -> Check {
        match &self.error {
            Some(e) => fail!("{}", e),
            None => Ok(()),
        }
    }

    fn message(&self, vector: u64) -> Check {
        if self.msg[0] == 0 {
            self.early()?;
        }
        let tag = MsgTag(self.msg[0]);
        ensure!(
            tag.label() == label::EXCEPTION
                && tag.untyped() == EXCEPTION_UNTYPED
                && tag.typed() == 0,
            "tag {:#x}: expected label {:#x}, u 19, t 0",
            tag.raw(),
            label::EXCEPTION
        );
        ensure!(
            self.msg[xmr::VECTOR] == vector,
            "MR19 (vector) {}, expected {}",
            self.msg[xmr::VECTOR],
            vector
        );
        let rip = EXC.get(X_RIP);
        ensure!(
            self.msg[xmr::RIP] == rip,
            "MR1 (RIP) {:#x}, expected {:#x}",
            self.msg[xmr::RIP],
            rip
        );
        ensure!(
            self.from == self.thread,
            "From {:?}, the thread's local id is {:?}",
            self.from,
            self.thread
        );
        self.early()
    }

    fn registers(&self) -> Check {
        if self.msg[0] == 0 {
            self.early()?;
        }
        for &(k, v) in REG.iter() {
            ensure!(
                self.msg[k] == v,
                "MR{} = {:#x}, the register held {:#x}",
                k,
                self.msg[k],
                v
            );
        }
        let rsp = EXC.get(X_RSP);
        ensure!(
            self.msg[xmr::RSP] == rsp,
            "MR17 (RSP) {:#x}, expected {:#x}",
            self.msg[xmr::RSP],
            rsp
        );
        let fl = self.msg[xmr::RFLAGS];
        ensure!(
            fl & 0x202 == 0x202,
            "MR18 (RFLAGS) {:#x}: IF and bit 1 expected",
            fl
        );
        Ok(())
    }

    fn resumed(&self) -> Check {
        self.early()?;
        ensure!(EXC.get(X_DONE) == 1, "the thread did not continue");
        ensure!(
            EXC.get(X_RAX) == NEW_RAX,
            "RAX after the reply {:#x}, the reply set {:#x}",
            EXC.get(X_RAX),
            NEW_RAX
        );
        ensure!(
            EXC.get(X_RBX) == NEW_RBX,
            "RBX after the reply {:#x}, the reply set {:#x}",
            EXC.get(X_RBX),
            NEW_RBX
        );
        ensure!(
            EXC.get(X_FLAGS) & FLAG_CF != 0,
            "CF not set after the reply (RFLAGS {:#x})",
            EXC.get(X_FLAGS)
        );
        Ok(())
    }

    fn flags(&self) -> Check {
        self.early()?;
        let fl = EXC.get(X_FLAGS);
        ensure!(
            fl & FLAG_TF == 0,
            "TF taken from the reply (RFLAGS {:#x})",
            fl
        );
        ensure!(fl & 0x200 != 0, "IF lost (RFLAGS {:#x})", fl);
        Ok(())
    }
}

fn exception_from_child() -> Check {
    jobs::clear_all();
    EXC.clear();
    let mut space = Space::new()?;
    let c = jobs::child(&mut space, exception_job, 0, main_id(), 0)?;
    let r = wire::ipc(
        ThreadId::NIL,
        ThreadId::ANY,
        tmo(Time::Never, LONG),
        MsgTag::NIL,
    );
    expect_ok(r.outcome(), "receiving the exception message")?;
    ensure!(
        r.tag.protocol() == label::EXCEPTION,
        "tag {:#x}",
        r.tag.raw()
    );
    ensure!(
        r.from == c.id(),
        "From {:?}; the child is {:?}",
        r.from,
        c.id()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------
// Thread start

fn waits_for_start() -> Check {
    let t = Thread::local(PRIO)?;
    let s = state(t.id());
    ensure!(
        matches!(s, ThreadState::Waiting | ThreadState::Receiving),
        "a new thread is {:?}; X.2: it waits to receive its start message",
        s
    );
    Ok(())
}

/// Records `%gs:0`, the MyGlobalId TCR and the stack pointer.
fn whoami(i: usize) {
    let l = lane(i);
    let sp: u64;
    // SAFETY: reads RSP into a register; no memory access.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    l.set(W, l4::utcb::my_local_id().raw());
    l.set(W + 1, l4::utcb::my_global_id().raw());
    l.set(W + 2, sp);
    l.set(EXTRA, 1);
}

fn start_message() -> Check {
    jobs::clear_all();
    // The main thread is its pager, so the start message comes from here.
    let t = Thread::local_paged_by(PRIO, main_id())?;
    let (sp, ip) = t.entry(whoami, 0);
    l4::thread::start_message(t.id(), sp, ip, LONG).ctx("start message")?;
    ensure!(t.wait_done(2_000_000), "the thread did not run");
    let l = lane(0);
    ensure!(
        l.get(W + 1) == t.id().raw(),
        "MyGlobalId {:#x}, expected {:?}",
        l.get(W + 1),
        t.id()
    );
    ensure!(
        l.get(W) == t.local_id().raw(),
        "local id {:#x}, expected {:?}",
        l.get(W),
        t.local_id()
    );
    ensure!(
        l.get(W + 2) < sp && sp - l.get(W + 2) < 4096,
        "RSP {:#x} in the job; started with {:#x}",
        l.get(W + 2),
        sp
    );
    Ok(())
}

fn start_only_from_pager() -> Check {
    jobs::clear_all();
    let t = Thread::local_paged_by(PRIO, main_id())?;
    let (sp, ip) = t.entry(whoami, 0);
    // Another thread (not the pager) sends a well-formed start message.
    lane(1).set(PARAM, t.id().raw());
    lane(1).set(PARAM2, 30_000);
    let impostor = Thread::spawn(impostor_start, 1, PRIO)?;
    ensure!(
        impostor.wait_done(2_000_000),
        "the impostor's send did not end"
    );
    expect_err(
        lane(1).get(OUT),
        abi::error::IpcErrorCode::Timeout,
        abi::error::Phase::Send,
    )?;
    ensure!(
        lane(0).get(EXTRA) == 0,
        "the thread started on a message from a thread that is not its pager"
    );
    l4::thread::start_message(t.id(), sp, ip, LONG).ctx("the pager's start message")?;
    ensure!(
        t.wait_done(2_000_000),
        "the thread did not run after its pager's start message"
    );
    Ok(())
}

/// Sends a start-shaped message (u = 2) to PARAM with timeout PARAM2.
fn impostor_start(i: usize) {
    let l = lane(i);
    let tag = wire::load(0, &[whoami as *const () as u64, 0x1000], &[]);
    let r = wire::ipc(
        ThreadId(l.get(PARAM)),
        ThreadId::NIL,
        tmo(Time::Period { us: l.get(PARAM2) }, Time::Never),
        tag,
    );
    l.set(OUT, r.outcome());
}

fn child_utcb() -> Check {
    jobs::clear_all();
    let mut space = Space::new()?;
    let t = space.spawn(whoami, 0, PRIO)?;
    ensure!(
        wait_until(2_000_000, || lane(0).get(EXTRA) != 0),
        "the child thread did not run"
    );
    let l = lane(0);
    ensure!(
        l.get(W + 1) == t.id().raw(),
        "MyGlobalId {:#x}, expected {:?}",
        l.get(W + 1),
        t.id()
    );
    ensure!(
        l.get(W) == t.local_id().raw(),
        "local id {:#x}, expected {:?}",
        l.get(W),
        t.local_id()
    );
    Ok(())
}
