//! FPU/vector state isolation: two threads fill all sixteen XMM (or YMM) registers with
//! their own patterns, yield to each other between writing and reading them back, and
//! must always read their own values.
//!
//! The program is built soft-float, so the compiler never touches vector registers; the
//! patterns are written, the yield made and the registers read back inside one `asm!`
//! block each, so nothing but the kernel can disturb them. Vector instructions run only
//! in worker threads: if the kernel has not enabled them, a worker faults and the check
//! fails, while the main thread carries on.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::harness::{ensure, fail, wait_until, Board, Check, Tally};
use crate::workers::{Worker, MAIN_PRIO};

static B: Board = Board::new();

/// Rounds each worker makes.
const ROUNDS: u64 = 200;

/// Board words: per worker `k` (0 or 1): rounds done, mismatches, rounds in which the
/// peer made progress; word 8 = first mismatch detail.
const fn rounds(k: usize) -> usize {
    k * 4
}
const fn mismatches(k: usize) -> usize {
    k * 4 + 1
}
const fn interleaved(k: usize) -> usize {
    k * 4 + 2
}
const DETAIL: usize = 8;

/// Which register width the workers test (set before they start).
static WIDE: AtomicU64 = AtomicU64::new(0);

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("fpu::xmm-isolation", || isolation(false));
    s.run("fpu::ymm-isolation", ymm);
}

/// `pattern` into XMM0..15, ThreadSwitch(nil), XMM0..15 into `out`.
fn xmm_round(pattern: &[u64; 32], out: &mut [u64; 32]) {
    let stub = l4::kip::get().syscalls.thread_switch;
    // SAFETY: loads XMM0..15 from `pattern` (256 readable bytes), calls the ThreadSwitch
    // stub with RDI = nil (binding: every GPR but RSP may change; RBX and RBP are saved
    // here, the out pointer is kept on the stack), and stores XMM0..15 to `out` (256
    // writable bytes). The vector registers are not declared: the program is soft-float,
    // so the compiler holds nothing in them.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push rdx",
            "movdqu xmm0, [rsi]",
            "movdqu xmm1, [rsi + 16]",
            "movdqu xmm2, [rsi + 32]",
            "movdqu xmm3, [rsi + 48]",
            "movdqu xmm4, [rsi + 64]",
            "movdqu xmm5, [rsi + 80]",
            "movdqu xmm6, [rsi + 96]",
            "movdqu xmm7, [rsi + 112]",
            "movdqu xmm8, [rsi + 128]",
            "movdqu xmm9, [rsi + 144]",
            "movdqu xmm10, [rsi + 160]",
            "movdqu xmm11, [rsi + 176]",
            "movdqu xmm12, [rsi + 192]",
            "movdqu xmm13, [rsi + 208]",
            "movdqu xmm14, [rsi + 224]",
            "movdqu xmm15, [rsi + 240]",
            "xor edi, edi",
            "call rcx",
            "pop rdx",
            "movdqu [rdx], xmm0",
            "movdqu [rdx + 16], xmm1",
            "movdqu [rdx + 32], xmm2",
            "movdqu [rdx + 48], xmm3",
            "movdqu [rdx + 64], xmm4",
            "movdqu [rdx + 80], xmm5",
            "movdqu [rdx + 96], xmm6",
            "movdqu [rdx + 112], xmm7",
            "movdqu [rdx + 128], xmm8",
            "movdqu [rdx + 144], xmm9",
            "movdqu [rdx + 160], xmm10",
            "movdqu [rdx + 176], xmm11",
            "movdqu [rdx + 192], xmm12",
            "movdqu [rdx + 208], xmm13",
            "movdqu [rdx + 224], xmm14",
            "movdqu [rdx + 240], xmm15",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rsi") pattern.as_ptr() => _,
            inout("rdx") out.as_mut_ptr() => _,
            out("rax") _, out("rdi") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}

/// `pattern` into YMM0..15, ThreadSwitch(nil), YMM0..15 into `out`.
fn ymm_round(pattern: &[u64; 64], out: &mut [u64; 64]) {
    let stub = l4::kip::get().syscalls.thread_switch;
    // SAFETY: as in `xmm_round`, with 32-byte YMM registers (512 bytes each way); only
    // called after CPUID and XCR0 showed that AVX state is enabled.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push rdx",
            "vmovdqu ymm0, [rsi]",
            "vmovdqu ymm1, [rsi + 32]",
            "vmovdqu ymm2, [rsi + 64]",
            "vmovdqu ymm3, [rsi + 96]",
            "vmovdqu ymm4, [rsi + 128]",
            "vmovdqu ymm5, [rsi + 160]",
            "vmovdqu ymm6, [rsi + 192]",
            "vmovdqu ymm7, [rsi + 224]",
            "vmovdqu ymm8, [rsi + 256]",
            "vmovdqu ymm9, [rsi + 288]",
            "vmovdqu ymm10, [rsi + 320]",
            "vmovdqu ymm11, [rsi + 352]",
            "vmovdqu ymm12, [rsi + 384]",
            "vmovdqu ymm13, [rsi + 416]",
            "vmovdqu ymm14, [rsi + 448]",
            "vmovdqu ymm15, [rsi + 480]",
            "xor edi, edi",
            "call rcx",
            "pop rdx",
            "vmovdqu [rdx], ymm0",
            "vmovdqu [rdx + 32], ymm1",
            "vmovdqu [rdx + 64], ymm2",
            "vmovdqu [rdx + 96], ymm3",
            "vmovdqu [rdx + 128], ymm4",
            "vmovdqu [rdx + 160], ymm5",
            "vmovdqu [rdx + 192], ymm6",
            "vmovdqu [rdx + 224], ymm7",
            "vmovdqu [rdx + 256], ymm8",
            "vmovdqu [rdx + 288], ymm9",
            "vmovdqu [rdx + 320], ymm10",
            "vmovdqu [rdx + 352], ymm11",
            "vmovdqu [rdx + 384], ymm12",
            "vmovdqu [rdx + 416], ymm13",
            "vmovdqu [rdx + 448], ymm14",
            "vmovdqu [rdx + 480], ymm15",
            "pop rbp",
            "pop rbx",
            inout("rcx") stub => _,
            inout("rsi") pattern.as_ptr() => _,
            inout("rdx") out.as_mut_ptr() => _,
            out("rax") _, out("rdi") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        )
    };
}

/// A pattern word: distinct per worker, round and position.
const fn pattern_word(k: usize, round: u64, i: usize) -> u64 {
    ((k as u64 + 1) << 56)
        ^ (round << 32)
        ^ (i as u64).wrapping_mul(0x9E37_79B9)
        ^ 0x5A5A_0000_0000_A5A5
}

/// Worker `k`: ROUNDS rounds of write, yield, read back, compare.
fn w_vector(k: usize) {
    let wide = WIDE.load(Ordering::Acquire) != 0;
    let peer = 1 - k;
    for round in 0..ROUNDS {
        let peer_before = B.get(rounds(peer));
        let bad = if wide {
            let pattern: [u64; 64] = core::array::from_fn(|i| pattern_word(k, round, i));
            let mut out = [0u64; 64];
            ymm_round(&pattern, &mut out);
            out.iter()
                .zip(pattern.iter())
                .position(|(a, b)| a != b)
                .map(|i| (i, out[i], pattern[i]))
        } else {
            let pattern: [u64; 32] = core::array::from_fn(|i| pattern_word(k, round, i));
            let mut out = [0u64; 32];
            xmm_round(&pattern, &mut out);
            out.iter()
                .zip(pattern.iter())
                .position(|(a, b)| a != b)
                .map(|i| (i, out[i], pattern[i]))
        };
        if B.get(rounds(peer)) != peer_before {
            B.add(interleaved(k), 1);
        }
        if let Some((i, got, want)) = bad {
            if B.get(mismatches(k)) == 0 {
                B.set(
                    DETAIL,
                    (k as u64) << 62 | (i as u64) << 48 | (got ^ want) & 0xFFFF_FFFF_FFFF,
                );
            }
            B.add(mismatches(k), 1);
        }
        B.add(rounds(k), 1);
    }
}

fn isolation(wide: bool) -> Check {
    B.clear();
    WIDE.store(wide as u64, Ordering::Release);
    let a = Worker::spawn(w_vector, 0, Some(MAIN_PRIO))?;
    let b = Worker::spawn(w_vector, 1, Some(MAIN_PRIO))?;
    let finished = wait_until(10_000_000, || a.done() && b.done());
    ensure!(
        finished,
        "workers did not finish ({} and {} rounds; a fault on a vector instruction?)",
        B.get(rounds(0)),
        B.get(rounds(1))
    );
    for k in 0..2 {
        let bad = B.get(mismatches(k));
        if bad != 0 {
            let d = B.get(DETAIL);
            fail!("worker {} read foreign values in {} of {} rounds (first: register word {}, xor {:#x})", k, bad, ROUNDS, (d >> 48) & 0x3FFF, d & 0xFFFF_FFFF_FFFF);
        }
    }
    let inter = B.get(interleaved(0)) + B.get(interleaved(1));
    ensure!(
        inter > 0,
        "the two threads never ran between each other's write and read"
    );
    Ok(())
}

/// CPUID leaf `leaf` (subleaf 0): (eax, ebx, ecx, edx).
fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: CPUID only reads processor information; RBX, which LLVM reserves, is moved
    // to a scratch register and restored.
    unsafe {
        core::arch::asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") 0u32 => c,
            out("edx") d,
            options(nostack, preserves_flags),
        )
    };
    (a, b, c, d)
}

fn ymm() -> Check {
    let (_, _, ecx, _) = cpuid(1);
    let avx = ecx & (1 << 28) != 0;
    let osxsave = ecx & (1 << 27) != 0;
    if !avx {
        l4::println!("tests: the processor has no AVX; YMM isolation has nothing to check");
        return Ok(());
    }
    if !osxsave {
        l4::println!("tests: the kernel has not enabled XSAVE (CR4.OSXSAVE); AVX is unusable, nothing to check");
        return Ok(());
    }
    let xcr0: u64;
    // SAFETY: XGETBV with ECX = 0 reads XCR0; CPUID said CR4.OSXSAVE is set, so it does
    // not fault.
    unsafe {
        let (lo, hi): (u32, u32);
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nostack, nomem, preserves_flags));
        xcr0 = (hi as u64) << 32 | lo as u64;
    }
    if xcr0 & 0b110 != 0b110 {
        l4::println!(
            "tests: XCR0 = {:#x} does not enable AVX state; nothing to check",
            xcr0
        );
        return Ok(());
    }
    isolation(true)
}
