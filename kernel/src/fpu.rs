//! Per-thread FPU/SSE/AVX state, switched lazily.
//!
//! The kernel is built soft-float and never touches x87/vector registers, so their
//! contents always belong to the thread that used them last (the *owner*). Switching
//! to another thread sets CR0.TS; the thread's first FPU instruction raises #NM, and only
//! then is the owner's state saved (XSAVE of every component enabled in XCR0) and the
//! new thread's restored. A thread that never touches the FPU costs nothing.
//!
//! The save area lives in the thread's TCB page, after the TCB (the kernel restricts
//! XCR0 to components whose XSAVE size fits there).
//!
//! # Invariants
//! - `OWNER` is null or a live thread whose registers are in the FPU right now.
//! - A thread with `fpu_area != 0` that is not the owner has its state in that area.

use crate::arch::cpu;
use crate::thread::Tcb;
use crate::util::KCell;

/// Offset of the save area inside the TCB page.
pub const AREA_OFFSET: u64 = 1024;
/// Room for the save area.
pub const AREA_MAX: u64 = 3072;

pub(crate) static OWNER: KCell<*mut Tcb> = KCell::new(core::ptr::null_mut());

/// Called on every switch: arms the #NM trap unless `to` owns the FPU.
#[inline(always)]
pub fn switch_to(to: &mut Tcb) {
    if *OWNER.get() == to as *mut Tcb {
        cpu::clear_ts();
    } else {
        cpu::set_ts();
    }
}

fn save(area: u64) {
    if cpu::features().xsave {
        // SAFETY: `area` is a 64-byte aligned, AREA_MAX-byte region in a TCB page; XSAVE
        // writes at most the size CPUID reported, which fits (checked at boot).
        unsafe { core::arch::asm!("xsave64 [{}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack)) };
    } else {
        // SAFETY: as above; FXSAVE writes 512 bytes.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
    }
}

fn restore(area: u64) {
    if cpu::features().xsave {
        // SAFETY: `area` holds a state saved by `save` or a zeroed header (init state).
        unsafe { core::arch::asm!("xrstor64 [{}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack)) };
    } else {
        // SAFETY: as above.
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack)) };
    }
}

/// #NM: the running thread touched the FPU while it was not the owner.
pub fn device_not_available(current: &mut Tcb) {
    cpu::clear_ts();
    let owner = *OWNER.get();
    if owner == current as *mut Tcb {
        return;
    }
    if !owner.is_null() {
        // SAFETY: the owner is a live thread (invariant).
        save(unsafe { (*owner).fpu_area });
    }
    if current.fpu_area == 0 {
        let area = current as *mut Tcb as u64 + AREA_OFFSET;
        // Fresh state: a zeroed XSAVE header means "initial configuration" for XRSTOR;
        // FXRSTOR needs a valid MXCSR.
        // SAFETY: the area lies in the thread's own TCB page, which nothing else uses.
        unsafe {
            core::ptr::write_bytes(area as *mut u8, 0, AREA_MAX as usize);
            *((area + 24) as *mut u32) = 0x1F80; // MXCSR default
            *(area as *mut u16) = 0x037F; // x87 FCW default
        }
        current.fpu_area = area;
    }
    restore(current.fpu_area);
    *OWNER.get_mut() = current;
}

/// Forgets a dying thread's FPU state.
pub fn release(t: &mut Tcb) {
    if *OWNER.get() == t as *mut Tcb {
        *OWNER.get_mut() = core::ptr::null_mut();
    }
    t.fpu_area = 0;
}
