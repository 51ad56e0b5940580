//! The running thread's UTCB: its local id through `%gs:0`, and typed access to its
//! message registers (MRs), buffer registers (BRs) and thread control registers (TCRs).
//!
//! Every accessor reads or writes one word of the current thread's own UTCB through a raw
//! pointer (no `&mut Utcb` is ever handed out, so a system call that writes the UTCB
//! behind the compiler's back cannot invalidate a live reference). Offsets come from
//! [`abi::utcb`] and are relative to MR0, whose address is the local id.

use abi::thread_id::ThreadId;
use abi::utcb::{self as layout, BadIndex, BR_COUNT, MR_COUNT};

/// The running thread's local id (the address of MR0 of its UTCB).
#[inline(always)]
pub fn my_local_id() -> ThreadId {
    let id: u64;
    // SAFETY: the kernel points the GS base at the running thread's UTCB, whose first word
    // holds the local id (Tern extension, `abi::utcb::TERN_LOCAL_ID`); reading it has no
    // side effect.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags))
    };
    ThreadId(id)
}

/// Address of the UTCB word at `offset` bytes from MR0.
#[inline(always)]
fn word(offset: isize) -> *mut u64 {
    (my_local_id().raw() as i64).wrapping_add(offset as i64) as u64 as *mut u64
}

/// Reads the UTCB word at `offset` from MR0 (an offset inside the UTCB: callers pass
/// only `abi::utcb` constants or checked MR/BR offsets).
#[inline(always)]
fn read(offset: isize) -> u64 {
    // SAFETY: the address lies inside the running thread's UTCB (offset within -512..512,
    // 8-byte aligned), which the kernel keeps mapped read-write for the thread's life;
    // only this thread uses its UTCB between system calls.
    unsafe { core::ptr::read_volatile(word(offset)) }
}

/// Writes the UTCB word at `offset` from MR0 (see [`read`]).
#[inline(always)]
fn write(offset: isize, value: u64) {
    // SAFETY: as in `read`; the word is the thread's own, user-writable UTCB word.
    unsafe { core::ptr::write_volatile(word(offset), value) }
}

/// Message register `i`, or `None` for `i >= 64`.
#[inline]
pub fn mr(i: usize) -> Option<u64> {
    (i < MR_COUNT).then(|| read(layout::mr_offset(i)))
}

/// Sets message register `i`.
#[inline]
pub fn set_mr(i: usize, value: u64) -> Result<(), BadIndex> {
    if i >= MR_COUNT {
        return Err(BadIndex(i));
    }
    write(layout::mr_offset(i), value);
    Ok(())
}

/// Buffer register `i`, or `None` for `i >= 33`.
#[inline]
pub fn br(i: usize) -> Option<u64> {
    (i < BR_COUNT).then(|| read(layout::br_offset(i)))
}

/// Sets buffer register `i` (BR0 is the acceptor).
#[inline]
pub fn set_br(i: usize, value: u64) -> Result<(), BadIndex> {
    if i >= BR_COUNT {
        return Err(BadIndex(i));
    }
    write(layout::br_offset(i), value);
    Ok(())
}

/// The running thread's global id (MyGlobalId TCR, written by the kernel).
pub fn my_global_id() -> ThreadId {
    ThreadId(read(layout::MY_GLOBAL_ID))
}

/// The ErrorCode TCR.
pub fn error_code() -> u64 {
    read(layout::ERROR_CODE)
}

/// Sets the ErrorCode TCR (the wrappers clear it before each call, so that a kernel that
/// fails without setting it is noticed).
pub fn set_error_code(value: u64) {
    write(layout::ERROR_CODE, value)
}

/// The ProcessorNo TCR.
pub fn processor_no() -> u64 {
    read(layout::PROCESSOR_NO)
}

/// The UserDefinedHandle TCR.
pub fn user_handle() -> u64 {
    read(layout::USER_DEFINED_HANDLE)
}

/// Sets the UserDefinedHandle TCR.
pub fn set_user_handle(value: u64) {
    write(layout::USER_DEFINED_HANDLE, value)
}

/// The Pager TCR.
pub fn pager() -> ThreadId {
    ThreadId(read(layout::PAGER))
}

/// Sets the Pager TCR.
pub fn set_pager(id: ThreadId) {
    write(layout::PAGER, id.raw())
}

/// The ExceptionHandler TCR.
pub fn exception_handler() -> ThreadId {
    ThreadId(read(layout::EXCEPTION_HANDLER))
}

/// Sets the ExceptionHandler TCR.
pub fn set_exception_handler(id: ThreadId) {
    write(layout::EXCEPTION_HANDLER, id.raw())
}

/// The XferTimeouts TCR.
pub fn xfer_timeouts() -> abi::time::Timeouts {
    abi::time::Timeouts(read(layout::XFER_TIMEOUTS))
}

/// Sets the XferTimeouts TCR.
pub fn set_xfer_timeouts(t: abi::time::Timeouts) {
    write(layout::XFER_TIMEOUTS, t.0)
}

/// The VirtualSender / ActualSender TCR.
pub fn virtual_sender() -> ThreadId {
    ThreadId(read(layout::VIRTUAL_SENDER))
}

/// Sets the VirtualSender TCR (for propagated IPC).
pub fn set_virtual_sender(id: ThreadId) {
    write(layout::VIRTUAL_SENDER, id.raw())
}

/// The IntendedReceiver TCR.
pub fn intended_receiver() -> ThreadId {
    ThreadId(read(layout::INTENDED_RECEIVER))
}

/// The PreemptFlags byte of the running thread's UTCB (`abi::utcb::PREEMPT_*` bits).
pub fn preempt_flags() -> u8 {
    // SAFETY: the byte lies inside the running thread's own UTCB (see `read`).
    unsafe { core::ptr::read_volatile(word(layout::PREEMPT_FLAGS) as *const u8) }
}

/// Sets the PreemptFlags byte (the CopFlags byte next to it is left alone).
pub fn set_preempt_flags(flags: u8) {
    // SAFETY: as in `preempt_flags`; the byte is user-writable.
    unsafe { core::ptr::write_volatile(word(layout::PREEMPT_FLAGS) as *mut u8, flags) }
}

/// Asks for (`true`) or ends (`false`) delayed preemption: while the `d` flag is set, a
/// preemption by threads up to the sensitive priority Schedule gave this thread is
/// deferred for up to its maximum delay, and the kernel sets the pending flag.
pub fn set_delay_preemption(on: bool) {
    let f = preempt_flags();
    set_preempt_flags(if on { f | layout::PREEMPT_DELAYED } else { f & !layout::PREEMPT_DELAYED });
}

/// Whether the kernel deferred a preemption of this thread (the pending flag `I`); the
/// thread should call ThreadSwitch soon, which clears it.
pub fn preemption_pending() -> bool {
    preempt_flags() & layout::PREEMPT_PENDING != 0
}
