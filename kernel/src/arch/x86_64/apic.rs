//! Local APIC (x2APIC when present), the legacy PIC (masked), and time.
//!
//! The TSC is the kernel's clock: at boot its frequency is measured against the PIT
//! (channel 2, gated, no interrupts), and the microsecond clock of X.2's SystemClock is
//! `tsc / (tsc_khz / 1000)`. The local APIC timer, in one-shot mode, ends timeslices and
//! fires IPC timeouts; its rate is measured against the TSC in the same calibration.

use super::cpu::{self, msr, rdmsr, wrmsr};
use super::layout::phys_to_virt;
use super::port::{inb, outb};
use super::trap::vector;
use crate::util::KCell;

struct Apic {
    x2: bool,
    mmio: u64,
    tsc_khz: u64,
    /// APIC timer ticks per microsecond × 1024.
    timer_per_us_1024: u64,
}

static APIC: KCell<Apic> = KCell::new(Apic { x2: false, mmio: 0, tsc_khz: 0, timer_per_us_1024: 0 });

mod reg {
    pub const ID: u32 = 0x02;
    pub const EOI: u32 = 0x0B;
    pub const SVR: u32 = 0x0F;
    pub const LVT_TIMER: u32 = 0x32;
    pub const LVT_LINT0: u32 = 0x35;
    pub const LVT_LINT1: u32 = 0x36;
    pub const LVT_ERROR: u32 = 0x37;
    pub const TIMER_INIT: u32 = 0x38;
    pub const TIMER_CUR: u32 = 0x39;
    pub const TIMER_DIV: u32 = 0x3E;
}

fn write(r: u32, v: u32) {
    let a = APIC.get();
    if a.x2 {
        // SAFETY: x2APIC registers are MSRs 0x800 + index; enabled in `init`.
        unsafe { wrmsr(0x800 + r, v as u64) };
    } else {
        // SAFETY: the xAPIC page is mapped through the direct map; registers are 16 bytes apart.
        unsafe { core::ptr::write_volatile((a.mmio + (r as u64) * 16) as *mut u32, v) };
    }
}

fn read(r: u32) -> u32 {
    let a = APIC.get();
    if a.x2 {
        rdmsr(0x800 + r) as u32
    } else {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile((a.mmio + (r as u64) * 16) as *const u32) }
    }
}

/// Masks every line of both 8259 PICs (they stay masked: interrupts come via the APICs).
fn mask_pic() {
    // SAFETY: standard 8259 re-initialisation to vectors 0x20..0x2F, then masking all lines,
    // so a stray legacy interrupt cannot alias an exception vector.
    unsafe {
        outb(0x20, 0x11);
        outb(0xA0, 0x11);
        outb(0x21, 0x20);
        outb(0xA1, 0x28);
        outb(0x21, 4);
        outb(0xA1, 2);
        outb(0x21, 1);
        outb(0xA1, 1);
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
}

/// Busy-waits `ms` milliseconds on PIT channel 2 and returns (TSC delta, APIC timer delta).
fn pit_measure(ms: u64) -> (u64, u64) {
    let count = (1_193_182 * ms / 1000) as u16;
    // SAFETY: PIT channel 2 with the speaker gate (port 0x61) is free for calibration:
    // no driver uses it during boot, and the speaker output stays off.
    unsafe {
        let gate = inb(0x61);
        outb(0x61, (gate & !0x02) | 0x01);
        outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
        let t0 = cpu::rdtsc();
        let a0 = read(reg::TIMER_CUR);
        while inb(0x61) & 0x20 == 0 {}
        let t1 = cpu::rdtsc();
        let a1 = read(reg::TIMER_CUR);
        outb(0x61, gate);
        (t1 - t0, a0.wrapping_sub(a1) as u64)
    }
}

/// Enables the local APIC, masks the PIC and calibrates the TSC and APIC timer.
pub fn init() {
    mask_pic();
    let f = cpu::features();
    let base = rdmsr(msr::APIC_BASE);
    {
        let a = APIC.get_mut();
        a.x2 = f.x2apic;
        a.mmio = phys_to_virt(base & 0xF_FFFF_F000);
    }
    let enable = base | (1 << 11) | if f.x2apic { 1 << 10 } else { 0 };
    // SAFETY: enabling the (x2)APIC that CPUID reported.
    unsafe { wrmsr(msr::APIC_BASE, enable) };
    write(reg::SVR, 0x100 | vector::SPURIOUS as u32);
    write(reg::LVT_LINT0, 1 << 16);
    write(reg::LVT_LINT1, 1 << 16);
    write(reg::LVT_ERROR, 1 << 16);
    write(reg::TIMER_DIV, 0b1011); // divide by 1
    write(reg::LVT_TIMER, (1 << 16) | vector::TIMER as u32);
    write(reg::TIMER_INIT, u32::MAX);
    // Three 20 ms measurements, the median of each rate (the first run also warms up
    // emulators, whose timing of the very first pass is unreliable).
    let mut runs = [(0u64, 0u64); 3];
    for r in runs.iter_mut() {
        write(reg::TIMER_INIT, u32::MAX);
        *r = pit_measure(20);
    }
    write(reg::TIMER_INIT, 0);
    let mut tsc = runs.map(|r| r.0);
    let mut timer = runs.map(|r| r.1);
    tsc.sort_unstable();
    timer.sort_unstable();
    let a = APIC.get_mut();
    a.tsc_khz = (tsc[1] / 20).max(1);
    a.timer_per_us_1024 = (timer[1] * 1024 / 20_000).max(1);
    write(reg::LVT_TIMER, vector::TIMER as u32);
}

/// Measured TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    APIC.get().tsc_khz
}

/// Measured APIC timer rate in kHz.
pub fn timer_khz() -> u64 {
    APIC.get().timer_per_us_1024 * 1000 / 1024
}

/// Whether the x2APIC interface is in use.
pub fn is_x2apic() -> bool {
    APIC.get().x2
}

/// The local APIC id.
pub fn id() -> u32 {
    let v = read(reg::ID);
    if APIC.get().x2 {
        v
    } else {
        v >> 24
    }
}

/// 2^32 · 1000 / TSC kHz: converts TSC ticks to microseconds (32.32 fixed point).
pub fn tsc_mult() -> u64 {
    ((1000u128 << 32) / APIC.get().tsc_khz as u128) as u64
}

/// The kernel's microsecond clock (the same formula as SystemClock's fast exit).
#[inline]
pub fn now_us() -> u64 {
    ((cpu::rdtsc() as u128 * tsc_mult() as u128) >> 32) as u64
}

/// Arms the one-shot timer to fire in `us` microseconds (0 disarms it).
pub fn set_timer_us(us: u64) {
    let ticks = if us == 0 { 0 } else { (us.saturating_mul(APIC.get().timer_per_us_1024) / 1024).clamp(1, u32::MAX as u64) };
    write(reg::TIMER_INIT, ticks as u32);
}

/// Signals end of interrupt.
#[inline]
pub fn eoi() {
    write(reg::EOI, 0);
}
