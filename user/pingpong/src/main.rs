//! IPC ping-pong benchmark, run as the root task by `cargo xtask bench`.
//!
//! It measures call/reply-wait round trips between two threads of one space (intra) and
//! between two spaces (inter), with 0 and 8 untyped words, by reading the TSC around a
//! loop of calls. Under QEMU's `-icount shift=0` the TSC counts guest instructions, so
//! the numbers are exact instruction counts (user stub + kernel + return). Results are
//! printed as `TERN-BENCH <metric> <value>` lines for the harness.
//!
//! The second space is built the X.2 way: ThreadControl + SpaceControl create it, the
//! root task acts as its pager and resolves its page faults with map items of its own
//! pages (the server runs this very program image).

#![no_std]
#![no_main]

use abi::msg::MsgTag;
use abi::thread_id::ThreadId;
use l4::println;

const ITERATIONS: u64 = 2000;
const REPEATS: usize = 3;

/// One Ipc through the KIP stub, MR0..MR7 in the binding's registers.
#[inline(always)]
fn ipc(to: u64, from: u64, timeouts: u64, mrs: &mut [u64; 8]) -> u64 {
    let stub = l4::kip::get().syscalls.ipc;
    let utcb = l4::utcb::my_local_id().raw();
    let result_from: u64;
    // SAFETY: AMD64 binding of Ipc: RSI=to, RDX=from, R8=timeouts, R9=MR0, RAX/RBX/R10/
    // R12..R15=MR1..MR7, RDI=UTCB; every register but RSP is an output or clobbered
    // (RBX and RBP are saved and restored around the call here).
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "mov rbx, [rcx + 16]",
            "push rcx",
            "call r11",
            "pop rcx",
            "mov [rcx + 16], rbx",
            "pop rbx",
            "pop rbp",
            inout("rcx") mrs.as_mut_ptr() => _,
            inout("r11") stub => _,
            inout("rsi") to => result_from,
            inout("rdx") from => _,
            inout("r8") timeouts => _,
            inout("r9") mrs[0] => mrs[0],
            inout("rax") mrs[1] => mrs[1],
            inout("r10") mrs[3] => mrs[3],
            inout("r12") mrs[4] => mrs[4],
            inout("r13") mrs[5] => mrs[5],
            inout("r14") mrs[6] => mrs[6],
            inout("r15") mrs[7] => mrs[7],
            inout("rdi") utcb => _,
        )
    };
    result_from
}

fn tag_error(mrs: &[u64; 8]) -> bool {
    MsgTag(mrs[0]).error()
}

static mut SERVER_STACK: [[u8; 16384]; 2] = [[0; 16384]; 2];

/// The echo server: receive from anyone, then reply with the received message and wait
/// for the next, forever — a tight loop around the Ipc stub.
extern "C" fn server() -> ! {
    let mut mrs = [0u64; 8];
    let client = ipc(0, ThreadId::ANY.raw(), 0, &mut mrs);
    let stub = l4::kip::get().syscalls.ipc;
    let utcb = l4::utcb::my_local_id().raw();
    // SAFETY: Ipc binding: RSI = To (the client, as returned in RSI by the previous
    // receive), RDX = anythread, R8 = never/never, R9 = the received tag sent back, RDI =
    // UTCB; all registers are outputs or clobbered, and the loop never returns.
    unsafe {
        core::arch::asm!(
            "push {stub}",
            "2:",
            "mov rdx, -1",
            "xor r8d, r8d",
            "call qword ptr [rsp]",
            "jmp 2b",
            stub = in(reg) stub,
            in("rsi") client,
            in("r9") mrs[0],
            in("rdi") utcb,
            options(noreturn)
        )
    }
}

/// `n` calls to `server` with message tag `tag`, as a tight loop around the Ipc stub
/// (the same shape as Pistachio's ping-pong client).
fn call_loop(server: u64, tag: u64, n: u64) {
    let stub = l4::kip::get().syscalls.ipc;
    let utcb = l4::utcb::my_local_id().raw();
    let state = [server, tag, stub, n];
    // SAFETY: Ipc binding as in `ipc`; loop state lives in `state` (pointed to by RCX
    // across iterations via the stack); RBX and RBP are saved and restored.
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "push rcx",
            "2:",
            "mov rcx, [rsp]",
            "mov rsi, [rcx]",
            "mov rdx, rsi",
            "xor r8d, r8d",
            "mov r9, [rcx + 8]",
            "call qword ptr [rcx + 16]",
            "mov rcx, [rsp]",
            "dec qword ptr [rcx + 24]",
            "jnz 2b",
            "pop rcx",
            "pop rbx",
            "pop rbp",
            inout("rcx") state.as_ptr() => _,
            inout("rdi") utcb => _,
            out("rax") _, out("rdx") _, out("rsi") _, out("r8") _, out("r9") _,
            out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Round-trip cost of calls to `server` with `words` untyped words: the best of
/// `REPEATS` runs of `ITERATIONS` calls, less the cost of the same loop making no call.
fn measure(server: u64, words: u8) -> u64 {
    let tag = MsgTag::new(0, words, 0).raw();
    let mut best = u64::MAX;
    for _ in 0..REPEATS {
        let t0 = rdtsc();
        call_loop(server, tag, ITERATIONS);
        let t1 = rdtsc();
        best = best.min((t1 - t0) / ITERATIONS);
    }
    let error = l4::utcb::error_code();
    if error != 0 {
        println!("pingpong: IPC error {:#x}", error);
    }
    best
}

fn thread_control(dest: u64, space: u64, scheduler: u64, pager: u64, utcb: u64) -> bool {
    let stub = l4::kip::get().syscalls.thread_control;
    let r: u64;
    // SAFETY: AMD64 binding of ThreadControl (RDI dest, RSI pager, RDX scheduler, R8 space,
    // R9 UTCB; result in RAX; everything else clobbered).
    unsafe {
        core::arch::asm!(
            "push rbp", "push rbx", "call r11", "pop rbx", "pop rbp",
            inout("r11") stub => _,
            inout("rdi") dest => _, inout("rsi") pager => _, inout("rdx") scheduler => _,
            inout("r8") space => _, inout("r9") utcb => _, out("rax") r, out("rcx") _,
            out("r10") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    r == 1
}

fn space_control(space: u64, kip: u64, utcb: u64) -> bool {
    let stub = l4::kip::get().syscalls.space_control;
    let r: u64;
    // SAFETY: AMD64 binding of SpaceControl (RDI space, RSI control, RDX KIP area, R8 UTCB
    // area, R9 redirector; RAX result, RDX old control; everything else clobbered).
    unsafe {
        core::arch::asm!(
            "push rbp", "push rbx", "call r11", "pop rbx", "pop rbp",
            inout("r11") stub => _,
            inout("rdi") space => _, inout("rsi") 0u64 => _, inout("rdx") kip => _,
            inout("r8") utcb => _, inout("r9") 0u64 => _, out("rax") r, out("rcx") _,
            out("r10") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
    r == 1
}

fn main() {
    let kip = l4::kip::get();
    let ti = abi::kip::ThreadInfo::decode(kip.thread_info);
    let me = l4::utcb::my_global_id();
    let base = ti.user_base as u32;
    // SAFETY: the stacks are used by exactly one server thread each.
    let stack_top = |i: usize| unsafe { (core::ptr::addr_of_mut!(SERVER_STACK[i]) as u64) + 16384 - 8 };

    // Intra-space server: a thread in this space, started by the start message.
    let intra = ThreadId::global(base + 10, 1);
    if !thread_control(intra.raw(), me.raw(), me.raw(), me.raw(), 0xBF00_0000 + 1024) {
        println!("pingpong: ThreadControl (intra) failed: {}", l4::utcb::error_code());
    }
    let mut mrs = [MsgTag::new(0, 2, 0).raw(), server as usize as u64, stack_top(0), 0, 0, 0, 0, 0];
    ipc(intra.raw(), 0, 0, &mut mrs);

    // Inter-space server: a new space, paged by us with our own pages.
    let inter = ThreadId::global(base + 11, 1);
    let ok = thread_control(inter.raw(), inter.raw(), me.raw(), 0, u64::MAX)
        && space_control(inter.raw(), abi::fpage::Fpage::new(0xBFF0_0000, 12, abi::fpage::Rights::NONE).raw(), abi::fpage::Fpage::new(0xBF00_0000, 12, abi::fpage::Rights::NONE).raw())
        && thread_control(inter.raw(), inter.raw(), me.raw(), me.raw(), 0xBF00_0000);
    if !ok {
        println!("pingpong: creating the second space failed: {}", l4::utcb::error_code());
    }
    let mut mrs = [MsgTag::new(0, 2, 0).raw(), server as usize as u64, stack_top(1), 0, 0, 0, 0, 0];
    ipc(inter.raw(), 0, 0, &mut mrs);
    // Serve its page faults until it waits for calls (then a call gets through).
    l4::utcb::set_br(0, abi::msg::Acceptor::UNTYPED.raw()).ok();
    let mut faults = 0;
    loop {
        let mut m = [0u64; 8];
        let from = ipc(0, inter.raw(), abi::time::Timeouts::new(0, abi::time::encode_period(20_000)).0, &mut m);
        if tag_error(&m) {
            break; // timed out: the server is waiting for a call
        }
        let tag = MsgTag(m[0]);
        if tag.label() >> 4 != abi::msg::label::PAGE_FAULT >> 4 {
            break;
        }
        let page = m[1] & !0xFFF;
        let fp = abi::fpage::Fpage::new(page, 12, abi::fpage::Rights::RWX);
        let item = abi::msg::MapItem::map(fp, page).encode();
        let mut r = [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0];
        ipc(from, 0, 0, &mut r);
        faults += 1;
    }
    println!("pingpong: second space ready after {} page faults", faults);

    for (name, server, words) in [
        ("ipc_rt_intra_0", intra, 0u8),
        ("ipc_rt_intra_8", intra, 8),
        ("ipc_rt_inter_0", inter, 0),
        ("ipc_rt_inter_8", inter, 8),
    ] {
        let v = measure(server.raw(), words);
        println!("TERN-BENCH {} {}", name, v);
    }
    println!("TERN-BENCH done");
    l4::kdb::power_off(0);
}

l4::main!(main);
