//! Access to the running thread's UTCB through `%gs:0` (its local id = MR0 address).

use abi::thread_id::ThreadId;
use abi::utcb::Utcb;

/// The running thread's local id.
#[inline(always)]
pub fn my_local_id() -> ThreadId {
    let id: u64;
    // SAFETY: the kernel points the GS base at the thread's UTCB, whose first word holds
    // the local id (docs/abi.md).
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags)) };
    ThreadId(id)
}

/// The running thread's UTCB.
#[inline(always)]
pub fn utcb() -> &'static mut Utcb {
    let base = my_local_id().raw() - abi::utcb::UTCB_MR0_OFFSET as u64;
    // SAFETY: the local id is MR0's address inside this thread's 1 KiB UTCB, which the
    // kernel maps read-write for the thread's lifetime; only this thread uses it.
    unsafe { &mut *(base as *mut Utcb) }
}

/// The running thread's global id.
pub fn my_global_id() -> ThreadId {
    ThreadId(utcb().my_global_id)
}
