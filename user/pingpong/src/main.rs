//! The benchmark program of `cargo xtask bench`, run as the root task (boot/bench.toml).
//!
//! It measures, by reading the TSC around loops of many iterations (under QEMU's
//! `-icount shift=0` the TSC counts guest instructions, so the numbers are exact
//! instruction counts; under KVM they are cycles):
//!
//! | metric | what one iteration is |
//! |---|---|
//! | `syscall_null` | a call of the SystemClock stub: the cheapest complete X.2 system call |
//! | `syscall_null_full_path` | a call of the bench-only null stub: the kernel's full system-call path doing nothing |
//! | `syscall_floor` | (kernel option `tern.syscall-floor` only) `syscall` straight to `sysretq` |
//! | `ipc_rt_intra_<n>` | call + reply-and-wait round trip with `n` untyped words (0..=63) between two threads of this space |
//! | `ipc_rt_inter_<n>` | the same between this space and a second one |
//! | `pagefault_rt` | a write to a fresh page in the second space, resolved by its pager (this program) with a map item |
//! | `map_unmap_4k` | map a page into the second space by IPC; the receiver flushes it with Unmap and answers |
//! | `string_ipc_4k`, `string_ipc_64k` | a call to the second space carrying one string item of 4 KiB / 64 KiB, answered with an empty message |
//! | `unmap_chain_1000` | Unmap (no flush) of a page this program mapped into a chain of 1000 spaces, each mapping it on to the next |
//! | `irq_rt` | the keyboard controller raises IRQ 1 (two port writes); the kernel sends the interrupt IPC to the handler thread, which reads the byte and acknowledges with its next reply-and-wait |
//!
//! Each metric is the best of [`REPEATS`] runs (after a warm-up run), less the cost of the
//! same loop without the system call ("empty loop") where one exists. The loops read the
//! TSC inside their assembly, so the code between the reads is the loop alone. Results are printed for the harness as
//!
//! ```text
//! TERN-BENCH <metric> <value>              value per iteration, up to 2 decimals
//! TERN-BENCH-NOTE <metric> <text>          e.g. repeats that disagree
//! TERN-BENCH done                          everything was printed
//! ```
//!
//! and the program powers the machine off (KDB `int3; cmp al, 0x10`).
//!
//! In the syscall-floor mode (the KIP lists the feature `tern-syscall-floor`) no system
//! call reaches the kernel, so the program measures only `syscall_floor` and stops.
//!
//! The second space is built the X.2 way: ThreadControl + SpaceControl create it, and this
//! program, its pager, resolves its page faults with map items of its own pages — so the
//! second space runs this very program image, sharing its frames. Its threads:
//! an echo server, a faulter (for `pagefault_rt`), a map sink (for `map_unmap_4k`) and a
//! string sink (for `string_ipc_*`).
//!
//! A metric that cannot be measured gets a `TERN-BENCH-NOTE` line saying why.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod sys;

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::kip::{Kip, PROC_DESC_OFFSET};
use abi::msg::{Acceptor, MapItem, MsgTag, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time::{encode_period, Time, Timeouts};
use l4::println;

use crate::sys::{ipc, rdtsc};

/// Runs of every measurement; the best is reported.
const REPEATS: usize = 3;
/// Iterations per run for IPC with up to 8 words (the registers) and system calls.
const ITERATIONS: u64 = 2000;
/// Iterations per run for IPC with more words (the full path, slower to simulate).
const ITERATIONS_LONG: u64 = 400;
/// Fresh pages touched per run of `pagefault_rt`.
const FAULT_PAGES: u64 = 1000;
/// Map/unmap cycles per run of `map_unmap_4k`.
const MAP_CYCLES: u64 = 1000;
/// Copies per run of `string_ipc_4k` and `string_ipc_64k`.
const STRING_COPIES: [(u64, u64, &str); 2] = [(4096, 500, "string_ipc_4k"), (65536, 100, "string_ipc_64k")];
/// Size of the string buffers.
const STRING_MAX: usize = 65536;
/// Highest number of untyped words in the IPC series.
const MAX_WORDS: u8 = 63;

/// Where the faulter's fresh pages start (run `r` uses `FRESH_BASE * (r + 1)`): 64 GiB
/// apart, so each run builds the same page-table structure from nothing.
const FRESH_BASE: u64 = 0x10_0000_0000;
/// The 4 KiB receive window of the map sink.
const SINK_WINDOW: u64 = 0x8_0000_0000;

/// Spaces in the chain of `unmap_chain_1000`.
const CHAIN: u32 = 1000;
/// Thread number of the first relay of the chain, above the user base (relay `i`,
/// 1..=CHAIN, is `user_base + RELAY_NUMBER + i`).
const RELAY_NUMBER: u32 = 100;
/// Where each relay's stack page is (a page of [`RELAY_STACKS`], one per relay).
const RELAY_STACK: u64 = 0x20_0000_0000;
/// Where each relay receives the page and maps it on from.
const RELAY_WINDOW: u64 = 0x30_0000_0000;

/// Keyboard-controller interrupts per run of `irq_rt`.
const IRQ_ROUNDS: u64 = 200;
/// The keyboard controller's interrupt line (ISA IRQ 1).
const KBD_IRQ: u32 = 1;
/// The keyboard controller's ports: data 0x60, command/status 0x64 (an aligned block of 8).
const KBD_PORTS: (u16, u8) = (0x60, 3);

/// Label of the faulter's result message and of the sink's "ready" message.
const LABEL_RESULT: u64 = 0x7E57;

/// The KIP feature string of the syscall-floor mode.
const FLOOR_FEATURE: &[u8] = b"tern-syscall-floor";

/// Size of each helper thread's stack.
const STACK_SIZE: usize = 16384;
/// Stacks: 0 intra server, 1 inter server, 2 faulter, 3 map sink, 4 string sink,
/// 5 interrupt handler, 6 interrupt trigger.
const STACKS: usize = 7;

#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; STACKS]);

/// The helper threads' stacks. The second space sees the same frames (mapped by this
/// program); each stack is used by exactly one thread.
static mut STACK: Stacks = Stacks([[0; STACK_SIZE]; STACKS]);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The page mapped at every fresh address of the faulter and into the sink's window.
static mut SCRATCH: Page = Page([0; 4096]);

#[repr(C, align(4096))]
struct Buffer([u8; STRING_MAX]);

/// The strings sent (from this space).
static mut SEND_BUFFER: Buffer = Buffer([0; STRING_MAX]);
/// The string sink's receive buffer (in the second space, where these frames are mapped
/// at the same address).
static mut RECEIVE_BUFFER: Buffer = Buffer([0; STRING_MAX]);

/// One stack page per relay of the chain (mapped at [`RELAY_STACK`] in its space).
static mut RELAY_STACKS: [Page; CHAIN as usize] = [const { Page([0; 4096]) }; CHAIN as usize];

/// The page mapped along the chain and unmapped by `unmap_chain_1000`.
static mut CHAIN_PAGE: Page = Page([0; 4096]);

/// Interrupts the handler has taken (it and the trigger run in this space).
static IRQS_TAKEN: AtomicU64 = AtomicU64::new(0);

/// A measured value in hundredths per iteration, with every run's value.
#[derive(Clone, Copy)]
struct Measured {
    runs: [u64; REPEATS],
}

impl Measured {
    /// From each run's total and the (best) empty-loop total, for `n` iterations.
    fn from_totals(totals: [u64; REPEATS], empty: u64, n: u64) -> Self {
        let per = |t: u64| (t.saturating_sub(empty) * 100 + n / 2) / n;
        Measured { runs: totals.map(per) }
    }

    fn best(&self) -> u64 {
        self.runs.iter().copied().min().unwrap_or(0)
    }

    /// Prints the result line (and a note when the runs disagree).
    fn report(&self, name: &str) {
        println!("TERN-BENCH {} {}", name, Hundredths(self.best()));
        if self.runs.iter().any(|&r| r != self.runs[0]) {
            l4::print!("TERN-BENCH-NOTE {} runs differ:", name);
            for r in self.runs {
                l4::print!(" {}", Hundredths(r));
            }
            println!();
        }
    }
}

/// Formats hundredths as a decimal number (no fraction when it is whole).
struct Hundredths(u64);

impl core::fmt::Display for Hundredths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            write!(f, "{whole}.{frac:02}")
        }
    }
}

/// Runs the timed loop `run(n)` [`REPEATS`] times after one warm-up run and subtracts the
/// best time of the empty loop `empty(n)` (both return the TSC ticks they took).
fn measure(n: u64, run: impl Fn(u64) -> u64, empty: impl Fn(u64) -> u64) -> Measured {
    let empty_best = (0..REPEATS).map(|_| empty(n)).min().unwrap_or(0);
    run(n);
    let mut totals = [0; REPEATS];
    for total in &mut totals {
        *total = run(n);
    }
    Measured::from_totals(totals, empty_best, n)
}

/// Times `n` (≥ 1) calls to `to` carrying `msg` (a call: closed receive from `to`).
/// Returns the TSC ticks and the number of failed calls. Not inlined, so that every run
/// executes the same instructions between the two TSC reads.
#[inline(never)]
fn timed_calls(to: u64, msg: &[u64; 8], n: u64) -> (u64, u64) {
    let mut errors = 0;
    let t0 = rdtsc();
    for _ in 0..n {
        let mut m = *msg;
        ipc(to, to, 0, &mut m);
        errors += u64::from(sys::failed(&m));
    }
    (rdtsc() - t0, errors)
}

/// Runs [`timed_calls`] [`REPEATS`] times after a warm-up run and reports it as `name`
/// (no empty loop: the loop's own instructions are a handful against thousands).
fn measure_calls(name: &str, to: u64, msg: &[u64; 8], n: u64) {
    let (_, mut errors) = timed_calls(to, msg, n);
    let mut totals = [0; REPEATS];
    for total in &mut totals {
        let (ticks, failed) = timed_calls(to, msg, n);
        *total = ticks;
        errors += failed;
    }
    if errors == 0 {
        Measured::from_totals(totals, 0, n).report(name);
    } else {
        println!("TERN-BENCH-NOTE {} {} IPC errors: {:#x}", name, errors, l4::utcb::error_code());
        l4::utcb::set_error_code(0);
    }
}

/// Whether the KIP lists `feature` among its feature strings (after the kernel
/// descriptor's four words and the version string; the list ends with an empty string).
fn has_feature(kip: &Kip, feature: &[u8]) -> bool {
    let Some(start) = (kip.kernel_desc_ptr as usize).checked_add(32) else { return false };
    let Some(strings) = start.checked_sub(PROC_DESC_OFFSET).and_then(|i| kip.rest.get(i..)) else {
        return false;
    };
    // The first string is the version string; an empty string ends the list.
    let mut list = strings.split(|&b| b == 0);
    list.next();
    list.take_while(|s| !s.is_empty()).any(|s| s == feature)
}

/// Top of helper stack `i`.
fn stack_top(i: usize) -> u64 {
    // SAFETY: only the address of the static is taken.
    let base = unsafe { core::ptr::addr_of_mut!(STACK.0[i]) } as u64;
    base + STACK_SIZE as u64 - 8
}

fn scratch_page() -> u64 {
    core::ptr::addr_of_mut!(SCRATCH) as u64
}

/// Writes every page of the stacks and the scratch page, so this space has them mapped
/// before it maps them onward.
fn touch_own_pages() {
    for i in 0..STACKS {
        let base = stack_top(i) + 8 - STACK_SIZE as u64;
        // SAFETY: the stacks are this program's memory and no helper thread runs yet.
        unsafe { sys::touch_pages(base, (STACK_SIZE / 4096) as u64) };
    }
    // SAFETY: the scratch page is this program's memory; its contents do not matter.
    unsafe { sys::touch_pages(scratch_page(), 1) };
    let relay_stacks = core::ptr::addr_of_mut!(RELAY_STACKS) as u64;
    // SAFETY: the relay stacks and the chain page are this program's memory, unused yet.
    unsafe { sys::touch_pages(relay_stacks, u64::from(CHAIN)) };
    // SAFETY: as above.
    unsafe { sys::touch_pages(core::ptr::addr_of_mut!(CHAIN_PAGE) as u64, 1) };
    for buffer in [send_buffer(), receive_buffer()] {
        // SAFETY: the string buffers are this program's memory and nothing uses them yet.
        unsafe { sys::touch_pages(buffer, (STRING_MAX / 4096) as u64) };
    }
}

fn send_buffer() -> u64 {
    core::ptr::addr_of_mut!(SEND_BUFFER) as u64
}

fn receive_buffer() -> u64 {
    core::ptr::addr_of_mut!(RECEIVE_BUFFER) as u64
}

/// The echo server: receive from anyone, then reply with the received message and wait
/// for the next, forever — a tight loop around the Ipc stub.
extern "C" fn echo_server() -> ! {
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

/// The faulter (in the second space): per run, writes to [`FAULT_PAGES`] fresh pages, then
/// to the same pages again (now mapped: the empty loop), and calls its pager with both
/// times. After the last run the pager does not answer.
extern "C" fn faulter() -> ! {
    let pager = l4::utcb::pager().raw();
    for run in 0..REPEATS as u64 {
        let base = FRESH_BASE * (run + 1);
        // SAFETY: the pages are unmapped; each write faults and the pager maps a page.
        let faulting = unsafe { sys::touch_pages(base, FAULT_PAGES) };
        // SAFETY: the same pages, now mapped.
        let mapped = unsafe { sys::touch_pages(base, FAULT_PAGES) };
        let mut m = [MsgTag::new(LABEL_RESULT, 2, 0).raw(), faulting, mapped, 0, 0, 0, 0, 0];
        ipc(pager, pager, 0, &mut m);
    }
    loop {
        core::hint::spin_loop();
    }
}

/// The map sink (in the second space): says it is ready, then forever flushes the page
/// in its receive window and answers the pager (which sends the next page in its reply).
extern "C" fn map_sink() -> ! {
    let pager = l4::utcb::pager().raw();
    let window = Fpage::new(SINK_WINDOW, 12, Rights::NONE);
    let _ = l4::utcb::set_br(0, Acceptor::new(window, false).raw());
    let mut m = [MsgTag::new(LABEL_RESULT, 0, 0).raw(), 0, 0, 0, 0, 0, 0, 0];
    ipc(pager, pager, 0, &mut m);
    let flush = Fpage::new(SINK_WINDOW, 12, Rights::RWX).raw();
    loop {
        sys::unmap1(flush, true);
        let mut m = [0u64; 8];
        ipc(pager, pager, 0, &mut m);
    }
}

/// The string sink (in the second space): maps its receive buffer (by touching it),
/// accepts one string of up to [`STRING_MAX`] bytes there, says it is ready, then forever
/// answers each message with an empty one.
extern "C" fn string_sink() -> ! {
    let pager = l4::utcb::pager().raw();
    // SAFETY: the buffer is memory of this image; its pager maps each page on the fault.
    unsafe { sys::touch_pages(receive_buffer(), (STRING_MAX / 4096) as u64) };
    let _ = l4::utcb::set_br(0, Acceptor::STRINGS.raw());
    let _ = l4::utcb::set_br(1, StringItemHeader::simple(STRING_MAX as u64).encode());
    let _ = l4::utcb::set_br(2, receive_buffer());
    let mut m = [MsgTag::new(LABEL_RESULT, 0, 0).raw(), 0, 0, 0, 0, 0, 0, 0];
    ipc(pager, pager, 0, &mut m);
    loop {
        let mut m = [0u64; 8];
        ipc(pager, pager, 0, &mut m);
    }
}

/// A relay of the chain (each in a space of its own): says it is ready, then forever
/// receives a page from its predecessor (the root task for the first) at
/// [`RELAY_WINDOW`] and maps it on to its successor; the last one tells the root task.
extern "C" fn relay() -> ! {
    let root = l4::utcb::pager();
    let base = abi::kip::ThreadInfo::decode(l4::kip::get().thread_info).user_base as u32;
    let me = l4::utcb::my_global_id().number();
    let (first, last) = (base + RELAY_NUMBER + 1, base + RELAY_NUMBER + CHAIN);
    let predecessor = if me == first { root } else { ThreadId::global(me - 1, 1) };
    let window = Fpage::new(RELAY_WINDOW, 12, Rights::NONE);
    let _ = l4::utcb::set_br(0, Acceptor::new(window, false).raw());
    let mut m = [MsgTag::new(LABEL_RESULT, 0, 0).raw(), 0, 0, 0, 0, 0, 0, 0];
    ipc(root.raw(), 0, 0, &mut m);
    let item = MapItem::map(Fpage::new(RELAY_WINDOW, 12, Rights::RWX), RELAY_WINDOW).encode();
    loop {
        let mut m = [0u64; 8];
        ipc(0, predecessor.raw(), 0, &mut m);
        if me == last {
            m = [MsgTag::new(LABEL_RESULT, 0, 0).raw(), 0, 0, 0, 0, 0, 0, 0];
            ipc(root.raw(), 0, 0, &mut m);
        } else {
            m = [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0];
            ipc(ThreadId::global(me + 1, 1).raw(), 0, 0, &mut m);
        }
    }
}

/// Creates the chain's [`CHAIN`] spaces with a relay each, serves their page faults until
/// every relay is ready; false (with a note) if something failed.
fn build_chain(base: u32) -> bool {
    let relay_id = |i: u32| ThreadId::global(base + RELAY_NUMBER + i, 1);
    for i in 1..=CHAIN {
        let r = relay_id(i);
        if !create_space(r) {
            println!("TERN-BENCH-NOTE unmap_chain_1000 creating space {} of the chain failed: error {}", i, l4::utcb::error_code());
            return false;
        }
        let entry: extern "C" fn() -> ! = relay;
        // A relay that does not start shows in the count of ready relays below.
        let (sp, ip) = (RELAY_STACK + 4096 - 8, entry as usize as u64);
        let _ = l4::thread::start_message(r, sp, ip, Time::Never);
    }
    // Page faults (its stack page gets a page of RELAY_STACKS of its own; the rest is our
    // image) and ready messages, from any relay.
    let mut ready = 0;
    while ready < CHAIN {
        let mut m = [0u64; 8];
        let timeouts = Timeouts::new(0, encode_period(2_000_000)).0;
        let from = ThreadId(ipc(0, ThreadId::ANY.raw(), timeouts, &mut m));
        let index = from.number().wrapping_sub(base + RELAY_NUMBER + 1);
        if sys::failed(&m) || index >= CHAIN {
            println!("TERN-BENCH-NOTE unmap_chain_1000 the chain did not start: {} relays ready", ready);
            l4::utcb::set_error_code(0);
            return false;
        }
        if MsgTag(m[0]).protocol() != abi::msg::label::PAGE_FAULT {
            ready += 1;
            continue;
        }
        let page = m[1] & !0xFFF;
        let mut r = if page == RELAY_STACK {
            // SAFETY: only the address of the static is taken.
            let stack = unsafe { core::ptr::addr_of_mut!(RELAY_STACKS[index as usize]) } as u64;
            let item = MapItem::map(Fpage::new(stack, 12, Rights::RWX), page).encode();
            [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0]
        } else {
            fault_reply(m[1])
        };
        ipc(from.raw(), 0, 0, &mut r);
    }
    true
}

/// `unmap_chain_1000`: maps [`CHAIN_PAGE`] to the first relay, waits until the last has it,
/// and times the Unmap (without flush) that revokes it from all of them.
fn measure_unmap_chain(base: u32) {
    if !build_chain(base) {
        return;
    }
    let page = core::ptr::addr_of_mut!(CHAIN_PAGE) as u64;
    let first = ThreadId::global(base + RELAY_NUMBER + 1, 1);
    let last = ThreadId::global(base + RELAY_NUMBER + CHAIN, 1);
    let item = MapItem::map(Fpage::new(page, 12, Rights::RWX), RELAY_WINDOW).encode();
    let revoke = Fpage::new(page, 12, Rights::RWX).raw();
    let mut runs = [0u64; REPEATS + 1];
    for run in &mut runs {
        let mut m = [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0];
        ipc(first.raw(), 0, 0, &mut m);
        let mut done = [0u64; 8];
        let timeouts = Timeouts::new(0, encode_period(2_000_000)).0;
        ipc(0, last.raw(), timeouts, &mut done);
        if sys::failed(&m) || sys::failed(&done) {
            println!("TERN-BENCH-NOTE unmap_chain_1000 the page did not reach the end of the chain: error {:#x}", l4::utcb::error_code());
            l4::utcb::set_error_code(0);
            return;
        }
        let t0 = rdtsc();
        sys::unmap1(revoke, false);
        *run = rdtsc() - t0;
    }
    // runs[0] was the warm-up. Revoking 1000 mappings takes more than a few instructions
    // each; less means nothing was revoked.
    let m = Measured::from_totals([runs[1], runs[2], runs[3]], 0, 1);
    if m.best() < u64::from(CHAIN) * 10 * 100 {
        println!(
            "TERN-BENCH-NOTE unmap_chain_1000 not measured: Unmap took {} instructions for {} derived mappings, so it revoked nothing (no mapping database?)",
            Hundredths(m.best()),
            CHAIN
        );
    } else {
        m.report("unmap_chain_1000");
    }
}

/// The interrupt handler (this space, priority above the trigger's): waits for IRQ 1,
/// reads the byte from the keyboard controller (which ends its interrupt request), counts
/// it, and acknowledges with the send phase of its next reply-and-wait.
extern "C" fn irq_handler() -> ! {
    let irq = ThreadId::global(KBD_IRQ, 1).raw();
    let mut m = [0u64; 8];
    ipc(0, irq, 0, &mut m);
    loop {
        // SAFETY: the space holds the controller's ports (requested before this thread
        // started); reading the data port takes the byte the trigger put there.
        unsafe { sys::inb(KBD_PORTS.0) };
        IRQS_TAKEN.fetch_add(1, Ordering::Relaxed);
        let mut m = [0u64; 8];
        ipc(irq, irq, 0, &mut m);
    }
}

/// The interrupt trigger (this space, the lowest priority): times the interrupt loop and
/// its empty twin, and calls its pager (the main thread) with the totals: MR1..MR3 the
/// runs, MR4 the best empty loop.
extern "C" fn irq_trigger() -> ! {
    let pager = l4::utcb::pager().raw();
    let empty = (0..REPEATS).map(|_| sys::empty_kbd_interrupts(IRQ_ROUNDS)).min().unwrap_or(0);
    let mut runs = [0u64; REPEATS + 1];
    for run in &mut runs {
        // SAFETY: the ports were granted to this space and the handler waits for IRQ 1.
        *run = unsafe { sys::kbd_interrupts(IRQ_ROUNDS) };
    }
    // runs[0] was the warm-up.
    let mut m = [MsgTag::new(LABEL_RESULT, 4, 0).raw(), runs[1], runs[2], runs[3], empty, 0, 0, 0];
    ipc(pager, pager, 0, &mut m);
    loop {
        core::hint::spin_loop();
    }
}

/// Asks σ0 for the I/O ports `ports` (first port, log2 count) with the σ0 protocol;
/// true if they were mapped.
fn request_ports(sigma0: ThreadId, ports: (u16, u8)) -> bool {
    let io = Fpage::from(IoFpage::new(ports.0, ports.1, Rights::RWX));
    let _ = l4::utcb::set_br(0, Acceptor::complete().raw());
    let mut m = [MsgTag::new(abi::msg::label::SIGMA0, 2, 0).raw(), io.raw(), 0, 0, 0, 0, 0, 0];
    let timeouts = Timeouts::new(encode_period(1_000_000), encode_period(1_000_000)).0;
    ipc(sigma0.raw(), sigma0.raw(), timeouts, &mut m);
    let _ = l4::utcb::set_br(0, Acceptor::UNTYPED.raw());
    let granted = !sys::failed(&m) && MsgTag(m[0]).typed() == 2 && Fpage(m[2]).is_io();
    l4::utcb::set_error_code(0);
    granted
}

/// `irq_rt`: the handler and the trigger are threads of this space; the ports come from σ0.
fn measure_irq(base: u32, me: ThreadId) {
    let sigma0 = ThreadId::global(base, 1);
    if !request_ports(sigma0, KBD_PORTS) {
        println!("TERN-BENCH-NOTE irq_rt not measured: sigma0 did not grant the keyboard controller's ports");
        return;
    }
    // SAFETY: the ports are ours now. Empty the controller's output buffer (bounded),
    // then set its configuration byte: keyboard interrupt on, mouse interrupt off.
    unsafe {
        for _ in 0..32 {
            if sys::inb(0x64) & 1 == 0 {
                break;
            }
            sys::inb(0x60);
        }
        sys::outb(0x64, 0x60);
        sys::outb(0x60, 0x01);
    }
    let handler = ThreadId::global(base + 15, 1);
    let trigger = ThreadId::global(base + 16, 1);
    let irq = ThreadId::global(KBD_IRQ, 1);
    if !create(handler, me, 0xBF00_0800) {
        println!("TERN-BENCH-NOTE irq_rt creating the handler failed: {}", l4::utcb::error_code());
        return;
    }
    if l4::thread::thread_control(irq, ThreadId::NIL, ThreadId::NIL, handler, None).is_err() {
        println!("TERN-BENCH-NOTE irq_rt attaching IRQ {} failed: {}", KBD_IRQ, l4::utcb::error_code());
        return;
    }
    start(handler, irq_handler, 5);
    if !create(trigger, me, 0xBF00_0C00) || l4::thread::set_priority(trigger, 99).is_err() {
        println!("TERN-BENCH-NOTE irq_rt creating the trigger failed: {}", l4::utcb::error_code());
        return;
    }
    start(trigger, irq_trigger, 6);
    let mut m = [0u64; 8];
    let timeouts = Timeouts::new(0, encode_period(5_000_000)).0;
    ipc(0, trigger.raw(), timeouts, &mut m);
    let expected = (REPEATS as u64 + 1) * IRQ_ROUNDS;
    let taken = IRQS_TAKEN.load(Ordering::Relaxed);
    if sys::failed(&m) || MsgTag(m[0]).label() != LABEL_RESULT {
        println!("TERN-BENCH-NOTE irq_rt the trigger did not report (tag {:#x}, error {:#x})", m[0], l4::utcb::error_code());
        l4::utcb::set_error_code(0);
    } else if taken != expected {
        println!("TERN-BENCH-NOTE irq_rt {} interrupts taken of {} raised", taken, expected);
    } else {
        Measured::from_totals([m[1], m[2], m[3]], m[4], IRQ_ROUNDS).report("irq_rt");
    }
    // Detach the line (the handler is left waiting).
    let _ = l4::thread::thread_control(irq, ThreadId::NIL, ThreadId::NIL, irq, None);
}

/// Sends the X.2 start message (IP, SP) to a new thread waiting for it (set-up, not
/// timed: `l4`'s call through the UTCB serves).
fn start(thread: ThreadId, entry: extern "C" fn() -> !, stack: usize) {
    let (ip, sp) = (entry as usize as u64, stack_top(stack));
    if let Err(e) = l4::thread::start_message(thread, sp, ip, Time::Never) {
        println!(
            "pingpong: start message to {:#x} failed: {e:?}",
            thread.raw()
        );
    }
}

/// The reply to a page fault at `addr` in the second space: a page of ours, mapped at
/// the faulting page — the scratch page for the faulter's fresh pages, else our page at
/// the same address (the second space runs our image).
fn fault_reply(addr: u64) -> [u64; 8] {
    let page = addr & !0xFFF;
    let source = if page >= FRESH_BASE { scratch_page() } else { page };
    let item = MapItem::map(Fpage::new(source, 12, Rights::RWX), page).encode();
    [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0]
}

/// Acts as `thread`'s pager until it sends something other than a page fault; returns
/// that message (the thread then waits for our answer).
fn serve_until_message(thread: ThreadId) -> [u64; 8] {
    let mut m = [0u64; 8];
    ipc(0, thread.raw(), 0, &mut m);
    loop {
        if sys::failed(&m) || MsgTag(m[0]).protocol() != abi::msg::label::PAGE_FAULT {
            return m;
        }
        m = fault_reply(m[1]);
        ipc(thread.raw(), thread.raw(), 0, &mut m);
    }
}

/// ThreadControl: creates `dest` in `space`'s space, paged and scheduled by us.
fn create(dest: ThreadId, space: ThreadId, utcb: u64) -> bool {
    let me = l4::utcb::my_global_id();
    l4::thread::create_thread(dest, space, me, me, Some(utcb)).is_ok()
}

/// Creates a space with its first thread `first`, paged by us (UTCB area 0xBF000000,
/// 4 KiB: room for four threads; KIP at 0xBFF00000): the second space, and each space of
/// the chain.
fn create_space(first: ThreadId) -> bool {
    let me = l4::utcb::my_global_id();
    let kip_area = Fpage::new(0xBFF0_0000, 12, Rights::NONE);
    let utcb_area = Fpage::new(0xBF00_0000, 12, Rights::NONE);
    l4::thread::create_thread(first, first, me, ThreadId::NIL, None).is_ok()
        && l4::space::space_control(first, 0, kip_area, utcb_area, ThreadId::NIL).is_ok()
        && create(first, first, 0xBF00_0000)
}

/// The syscall-floor mode: only `syscall_floor` can be measured.
fn floor_mode(kip: &Kip) {
    let stub = kip.syscalls.system_clock;
    measure(ITERATIONS, |n| sys::stub_loop(stub, n), |n| sys::empty_stub_loop(stub, n))
        .report("syscall_floor");
}

fn main() {
    let kip = l4::kip::get();
    if has_feature(kip, FLOOR_FEATURE) {
        floor_mode(kip);
        println!("TERN-BENCH done");
        l4::kdb::power_off(0);
        return;
    }
    println!("TERN-BENCH-NOTE syscall_floor the kernel was booted without tern.syscall-floor");

    // System calls without IPC.
    let clock = kip.syscalls.system_clock;
    measure(ITERATIONS, |n| sys::stub_loop(clock, n), |n| sys::empty_stub_loop(clock, n))
        .report("syscall_null");
    let null = kip.syscalls.ipc + 10 * 32;
    measure(ITERATIONS, |n| sys::stub_loop(null, n), |n| sys::empty_stub_loop(null, n))
        .report("syscall_null_full_path");

    let base = abi::kip::ThreadInfo::decode(kip.thread_info).user_base as u32;
    let me = l4::utcb::my_global_id();
    touch_own_pages();

    // Intra-space server: a thread in this space.
    let intra = ThreadId::global(base + 10, 1);
    if !create(intra, me, 0xBF00_0400) {
        println!("pingpong: creating the intra-space server failed: {}", l4::utcb::error_code());
    }
    start(intra, echo_server, 0);

    // Inter-space server: the first thread of a new space, paged by us.
    let inter = ThreadId::global(base + 11, 1);
    if !create_space(inter) {
        println!("pingpong: creating the second space failed: {}", l4::utcb::error_code());
    }
    start(inter, echo_server, 1);
    // Serve its page faults until it waits for calls (then our receive times out).
    let _ = l4::utcb::set_br(0, Acceptor::UNTYPED.raw());
    let mut faults = 0;
    loop {
        let mut m = [0u64; 8];
        let timeouts = Timeouts::new(0, encode_period(20_000)).0;
        let from = ipc(0, inter.raw(), timeouts, &mut m);
        if sys::failed(&m) || MsgTag(m[0]).protocol() != abi::msg::label::PAGE_FAULT {
            break;
        }
        let mut r = fault_reply(m[1]);
        ipc(from, 0, 0, &mut r);
        faults += 1;
    }
    l4::utcb::set_error_code(0);
    println!("pingpong: second space ready after {} page faults", faults);

    // IPC round trips, 0..=63 words.
    for words in 0..=MAX_WORDS {
        let n = if words <= 8 { ITERATIONS } else { ITERATIONS_LONG };
        let tag = MsgTag::new(0, words, 0).raw();
        for (kind, server) in [("intra", intra), ("inter", inter)] {
            let s = server.raw();
            let m = measure(n, |n| sys::call_loop(s, tag, n), |n| sys::empty_call_loop(s, tag, n));
            let mut name = Name::new();
            let _ = core::fmt::Write::write_fmt(&mut name, format_args!("ipc_rt_{kind}_{words}"));
            m.report(name.as_str());
            let error = l4::utcb::error_code();
            if error != 0 {
                println!("TERN-BENCH-NOTE {} IPC error {:#x}", name.as_str(), error);
                l4::utcb::set_error_code(0);
            }
        }
    }

    // Page faults resolved by the pager, in the second space.
    let faulter_id = ThreadId::global(base + 12, 1);
    if create(faulter_id, inter, 0xBF00_0400) {
        start(faulter_id, faulter, 2);
        let mut faults_runs = [0; REPEATS];
        let mut empty_best = u64::MAX;
        let mut ok = true;
        for (i, total) in faults_runs.iter_mut().enumerate() {
            let m = serve_until_message(faulter_id);
            if sys::failed(&m) || MsgTag(m[0]).label() != LABEL_RESULT {
                println!("TERN-BENCH-NOTE pagefault_rt the faulter failed: tag {:#x}", m[0]);
                ok = false;
                break;
            }
            *total = m[1];
            empty_best = empty_best.min(m[2]);
            if i + 1 < REPEATS {
                // Answer the report; the next run's faults follow.
                let mut r = [0u64; 8];
                ipc(faulter_id.raw(), 0, 0, &mut r);
            }
        }
        if ok {
            Measured::from_totals(faults_runs, empty_best, FAULT_PAGES).report("pagefault_rt");
        }
    } else {
        println!("TERN-BENCH-NOTE pagefault_rt creating the faulter failed: {}", l4::utcb::error_code());
    }

    // Map a page into the second space by IPC; the receiver unmaps it.
    let sink = ThreadId::global(base + 13, 1);
    if create(sink, inter, 0xBF00_0800) {
        start(sink, map_sink, 3);
        let ready = serve_until_message(sink);
        if sys::failed(&ready) || MsgTag(ready[0]).label() != LABEL_RESULT {
            println!("TERN-BENCH-NOTE map_unmap_4k the sink failed: tag {:#x}", ready[0]);
        } else {
            let item = MapItem::map(Fpage::new(scratch_page(), 12, Rights::RW), 0).encode();
            let msg = [MsgTag::new(0, 0, 2).raw(), item[0], item[1], 0, 0, 0, 0, 0];
            measure_calls("map_unmap_4k", sink.raw(), &msg, MAP_CYCLES);
        }
    } else {
        println!("TERN-BENCH-NOTE map_unmap_4k creating the sink failed: {}", l4::utcb::error_code());
    }

    // String items copied into the second space.
    let string_sink_id = ThreadId::global(base + 14, 1);
    if create(string_sink_id, inter, 0xBF00_0C00) {
        start(string_sink_id, string_sink, 4);
        let ready = serve_until_message(string_sink_id);
        if sys::failed(&ready) || MsgTag(ready[0]).label() != LABEL_RESULT {
            println!("TERN-BENCH-NOTE string_ipc_4k the string sink failed: tag {:#x}", ready[0]);
        } else {
            for (bytes, n, name) in STRING_COPIES {
                let header = StringItemHeader::simple(bytes).encode();
                let msg = [MsgTag::new(0, 0, 2).raw(), header, send_buffer(), 0, 0, 0, 0, 0];
                measure_calls(name, string_sink_id.raw(), &msg, n);
            }
        }
    } else {
        println!("TERN-BENCH-NOTE string_ipc_4k creating the string sink failed: {}", l4::utcb::error_code());
    }

    measure_unmap_chain(base);
    measure_irq(base, me);
    println!("TERN-BENCH done");
    l4::kdb::power_off(0);
}

/// A metric name built on the stack.
struct Name {
    buf: [u8; 32],
    len: usize,
}

impl Name {
    fn new() -> Self {
        Name { buf: [0; 32], len: 0 }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

l4::main!(main);
