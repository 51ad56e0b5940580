//! The guest test of the cache-footprint plugin (tools/cacheplugin), run as the root task
//! of boot/cache.toml by `cargo xtask test`: loops whose every iteration reads a known set
//! of cache lines, so the plugin's report can be checked against known counts.
//!
//! | window | delimited by | lines read per iteration | steady L1D misses (32 KiB, 8-way) |
//! |---|---|---|---|
//! | 1 | marker 1 | 16 consecutive lines | 0 |
//! | 2 | marker 2 | 8 lines 4 KiB apart (one set, all 8 ways) | 0 |
//! | 3 | marker 3 | 9 lines 4 KiB apart (one set, one line too many) | 9 (0 fully associative) |
//! | 4 | the symbol `cacheloop_window4` (`--window-addr`) | 5 lines 128 bytes apart | 0 |
//!
//! Each loop is one `asm!` block using registers only, so the reads of [`BUF`] are its only
//! data accesses. A marker is the no-op `nopl 0x4d43NNNN(%rax)` (id NNNN) the plugin
//! recognises by its bytes. The program prints `cacheloop: done` and powers off.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use l4::println;

/// Iterations of every loop.
const ITERATIONS: u64 = 100;

#[repr(C, align(4096))]
struct Buf([u8; 9 * 4096]);

/// The lines the loops read.
static mut BUF: Buf = Buf([0; 9 * 4096]);

/// A loop of `n` (≥ 1) iterations, each reading `count` (≥ 1) bytes `stride` apart from
/// `base`; `$head` is the loop head's first instruction (a marker, or a global label).
macro_rules! read_loop {
    ($head:expr, $n:expr, $base:expr, $count:expr, $stride:expr) => {
        // SAFETY: the loop reads `count` bytes `stride` apart from `base`, all inside BUF
        // (the callers' arguments), and changes only the registers it declares.
        unsafe {
            core::arch::asm!(
                "2:",
                $head,
                "mov {p}, {base}",
                "mov {k}, {count}",
                "3:",
                "mov {t:l}, byte ptr [{p}]",
                "add {p}, {stride}",
                "dec {k}",
                "jnz 3b",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) $n => _,
                base = in(reg) $base,
                count = in(reg) $count,
                stride = in(reg) $stride,
                p = out(reg) _,
                k = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly)
            )
        }
    };
}

fn main() {
    let base = core::ptr::addr_of!(BUF) as u64;
    read_loop!(
        ".byte 0x0f, 0x1f, 0x80, 0x01, 0x00, 0x43, 0x4d",
        ITERATIONS,
        base,
        16u64,
        64u64
    );
    read_loop!(
        ".byte 0x0f, 0x1f, 0x80, 0x02, 0x00, 0x43, 0x4d",
        ITERATIONS,
        base,
        8u64,
        4096u64
    );
    read_loop!(
        ".byte 0x0f, 0x1f, 0x80, 0x03, 0x00, 0x43, 0x4d",
        ITERATIONS,
        base,
        9u64,
        4096u64
    );
    window4(base);
    println!("cacheloop: done");
    l4::kdb::power_off(0);
}

/// The fourth loop, whose head is the global symbol `cacheloop_window4`.
#[allow(
    named_asm_labels,
    reason = "the label is the symbol xtask looks up; this function is never inlined, so it is defined once"
)]
#[inline(never)]
fn window4(base: u64) {
    read_loop!(
        ".globl cacheloop_window4\ncacheloop_window4:\nnop",
        ITERATIONS,
        base,
        5u64,
        128u64
    );
}

l4::main!(main);
