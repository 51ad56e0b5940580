//! The time-stamp counter, for timing (cycles; guest instructions under QEMU's
//! `-icount`).

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` reads the time-stamp counter into EDX:EAX; it touches no memory
    // and user mode may execute it (CR4.TSD is clear on Tern).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}
