//! The user thread control block (§3): 1 KB, 1 KB aligned, user-writable.
//!
//! A thread's local id is the address of its MR0, 512 bytes into the UTCB;
//! the TCRs and BRs lie below MR0 and are addressed at negative offsets.
//!
//! ```text
//! UTCB start  offset from MR0
//! 0x000       -512   kernel_private[16]  (word 0: Tern keeps the local id
//!                                          here so that `%gs:0` reads it)
//! 0x080       -384   BR32 ... BR1        (BRs grow downwards)
//! 0x180       -128   BR0 (acceptor)
//! 0x188       -120   MyGlobalId
//! 0x190       -112   ProcessorNo
//! 0x198       -104   UserDefinedHandle
//! 0x1A0        -96   Pager
//! 0x1A8        -88   ExceptionHandler
//! 0x1B0        -80   PreemptFlags (u8), CopFlags (u8), reserved [u8; 6]
//! 0x1B8        -72   ErrorCode
//! 0x1C0        -64   XferTimeouts
//! 0x1C8        -56   IntendedReceiver
//! 0x1D0        -48   VirtualSender / ActualSender
//! 0x1D8        -40   ThreadWord1
//! 0x1E0        -32   ThreadWord0
//! 0x1E8        -24   reserved[2]
//! 0x1F8         -8   WordSizeMask
//! 0x200          0   MR0 ... MR63
//! 0x400              end
//! ```
//!
//! Every word in here is written by user code, so the kernel reads them as
//! raw `u64` allegations and checks them like any other argument.

use core::mem::{align_of, offset_of, size_of};

/// Size and alignment of a UTCB.
pub const UTCB_SIZE: usize = 1024;
/// Offset of MR0 from the UTCB start (local id = UTCB start + this).
pub const UTCB_MR0_OFFSET: usize = 512;
/// Message registers.
pub const MR_COUNT: usize = 64;
/// Buffer registers.
pub const BR_COUNT: usize = 33;

/// Start of the kernel-private words (Pistachio: compatibility-mode flag).
pub const KERNEL_PRIVATE: isize = -512;
/// **Tern extension**: the word holding the thread's own local id, which
/// the kernel keeps current and points the GS base at, so `movq %gs:0`
/// yields the local id as the binding expects (§3.1).
pub const TERN_LOCAL_ID: isize = -512;
/// BR0, the acceptor.
pub const BR0: isize = -128;
/// MyGlobalId (the KIP stubs rely on this offset).
pub const MY_GLOBAL_ID: isize = -120;
/// ProcessorNo.
pub const PROCESSOR_NO: isize = -112;
/// UserDefinedHandle.
pub const USER_DEFINED_HANDLE: isize = -104;
/// Pager.
pub const PAGER: isize = -96;
/// ExceptionHandler.
pub const EXCEPTION_HANDLER: isize = -88;
/// PreemptFlags (one byte).
pub const PREEMPT_FLAGS: isize = -80;
/// CopFlags (one byte).
pub const COP_FLAGS: isize = -79;
/// ErrorCode.
pub const ERROR_CODE: isize = -72;
/// XferTimeouts.
pub const XFER_TIMEOUTS: isize = -64;
/// IntendedReceiver.
pub const INTENDED_RECEIVER: isize = -56;
/// VirtualSender (written by the user) / ActualSender (by the kernel).
pub const VIRTUAL_SENDER: isize = -48;
/// ActualSender: the same word as VirtualSender.
pub const ACTUAL_SENDER: isize = VIRTUAL_SENDER;
/// ThreadWord1 (user-only).
pub const THREAD_WORD1: isize = -40;
/// ThreadWord0 (user-only).
pub const THREAD_WORD0: isize = -32;
/// WordSizeMask (Pistachio addition; user code sets it to all ones).
pub const WORD_SIZE_MASK: isize = -8;
/// MR0, the message tag.
pub const MR0: isize = 0;

/// PreemptFlags bit 5: s, signal a preemption fault.
pub const PREEMPT_SIGNAL: u8 = 1 << 5;
/// PreemptFlags bit 6: d, delayed preemption requested.
pub const PREEMPT_DELAYED: u8 = 1 << 6;
/// PreemptFlags bit 7: I, a preemption is pending.
pub const PREEMPT_PENDING: u8 = 1 << 7;

/// Offset of MR `i` from MR0 (meaningful for `i < MR_COUNT`).
#[inline]
pub const fn mr_offset(i: usize) -> isize {
    (i * 8) as isize
}

/// Offset of BR `i` from MR0 (meaningful for `i < BR_COUNT`).
#[inline]
pub const fn br_offset(i: usize) -> isize {
    BR0 - (i * 8) as isize
}

/// An index past the end of the MRs or BRs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadIndex(pub usize);

/// The UTCB, laid out exactly as §3.2 (checked at compile time below).
#[repr(C, align(1024))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Utcb {
    /// Kernel-private words; word 0 holds the local id (Tern, see
    /// [`TERN_LOCAL_ID`]).
    pub kernel_private: [u64; 16],
    /// Buffer registers in memory order: `br[0]` is BR32, `br[32]` is BR0.
    /// Use [`Utcb::br`] / [`Utcb::set_br`].
    pub br: [u64; BR_COUNT],
    /// MyGlobalId.
    pub my_global_id: u64,
    /// ProcessorNo.
    pub processor_no: u64,
    /// UserDefinedHandle.
    pub user_handle: u64,
    /// Pager.
    pub pager: u64,
    /// ExceptionHandler.
    pub exception_handler: u64,
    /// PreemptFlags (see `PREEMPT_*`).
    pub preempt_flags: u8,
    /// CopFlags: bit n = coprocessor n in use.
    pub cop_flags: u8,
    /// Reserved.
    pub reserved: [u8; 6],
    /// ErrorCode.
    pub error_code: u64,
    /// XferTimeouts (receive bits 0..15, send bits 16..31).
    pub xfer_timeouts: u64,
    /// IntendedReceiver.
    pub intended_receiver: u64,
    /// VirtualSender / ActualSender.
    pub virtual_sender: u64,
    /// ThreadWord1.
    pub thread_word1: u64,
    /// ThreadWord0.
    pub thread_word0: u64,
    /// Reserved.
    pub reserved2: [u64; 2],
    /// WordSizeMask.
    pub word_size_mask: u64,
    /// Message registers MR0..MR63.
    pub mr: [u64; MR_COUNT],
}

impl Utcb {
    /// A UTCB with every byte zero.
    pub const fn zeroed() -> Self {
        Self {
            kernel_private: [0; 16],
            br: [0; BR_COUNT],
            my_global_id: 0,
            processor_no: 0,
            user_handle: 0,
            pager: 0,
            exception_handler: 0,
            preempt_flags: 0,
            cop_flags: 0,
            reserved: [0; 6],
            error_code: 0,
            xfer_timeouts: 0,
            intended_receiver: 0,
            virtual_sender: 0,
            thread_word1: 0,
            thread_word0: 0,
            reserved2: [0; 2],
            word_size_mask: 0,
            mr: [0; MR_COUNT],
        }
    }

    /// BR `i`, or `None` if `i >= BR_COUNT`.
    #[inline]
    pub fn br(&self, i: usize) -> Option<u64> {
        let slot = (BR_COUNT - 1).checked_sub(i)?;
        self.br.get(slot).copied()
    }

    /// Set BR `i`.
    #[inline]
    pub fn set_br(&mut self, i: usize, value: u64) -> Result<(), BadIndex> {
        let slot = (BR_COUNT - 1).checked_sub(i).ok_or(BadIndex(i))?;
        let br = self.br.get_mut(slot).ok_or(BadIndex(i))?;
        *br = value;
        Ok(())
    }

    /// MR `i`, or `None` if `i >= MR_COUNT`.
    #[inline]
    pub fn mr(&self, i: usize) -> Option<u64> {
        self.mr.get(i).copied()
    }

    /// Set MR `i`.
    #[inline]
    pub fn set_mr(&mut self, i: usize, value: u64) -> Result<(), BadIndex> {
        let mr = self.mr.get_mut(i).ok_or(BadIndex(i))?;
        *mr = value;
        Ok(())
    }
}

/// Offset of a field from MR0, for the layout checks.
const fn rel(offset: usize) -> isize {
    offset as isize - UTCB_MR0_OFFSET as isize
}

const _: () = {
    assert!(size_of::<Utcb>() == UTCB_SIZE);
    assert!(align_of::<Utcb>() == UTCB_SIZE);
    assert!(rel(offset_of!(Utcb, kernel_private)) == KERNEL_PRIVATE);
    assert!(rel(offset_of!(Utcb, kernel_private)) == TERN_LOCAL_ID);
    assert!(rel(offset_of!(Utcb, br)) == br_offset(BR_COUNT - 1));
    assert!(rel(offset_of!(Utcb, br) + 8 * (BR_COUNT - 1)) == BR0);
    assert!(rel(offset_of!(Utcb, my_global_id)) == MY_GLOBAL_ID);
    assert!(rel(offset_of!(Utcb, processor_no)) == PROCESSOR_NO);
    assert!(rel(offset_of!(Utcb, user_handle)) == USER_DEFINED_HANDLE);
    assert!(rel(offset_of!(Utcb, pager)) == PAGER);
    assert!(rel(offset_of!(Utcb, exception_handler)) == EXCEPTION_HANDLER);
    assert!(rel(offset_of!(Utcb, preempt_flags)) == PREEMPT_FLAGS);
    assert!(rel(offset_of!(Utcb, cop_flags)) == COP_FLAGS);
    assert!(rel(offset_of!(Utcb, reserved)) == -78);
    assert!(rel(offset_of!(Utcb, error_code)) == ERROR_CODE);
    assert!(rel(offset_of!(Utcb, xfer_timeouts)) == XFER_TIMEOUTS);
    assert!(rel(offset_of!(Utcb, intended_receiver)) == INTENDED_RECEIVER);
    assert!(rel(offset_of!(Utcb, virtual_sender)) == VIRTUAL_SENDER);
    assert!(rel(offset_of!(Utcb, thread_word1)) == THREAD_WORD1);
    assert!(rel(offset_of!(Utcb, thread_word0)) == THREAD_WORD0);
    assert!(rel(offset_of!(Utcb, reserved2)) == -24);
    assert!(rel(offset_of!(Utcb, word_size_mask)) == WORD_SIZE_MASK);
    assert!(rel(offset_of!(Utcb, mr)) == MR0);
    assert!(offset_of!(Utcb, mr) == UTCB_MR0_OFFSET);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(mr_offset(0), 0);
        assert_eq!(mr_offset(63), 504);
        assert_eq!(br_offset(0), -128);
        assert_eq!(br_offset(32), -384);
        assert_eq!(ACTUAL_SENDER, -48);
    }

    #[test]
    fn br_accessors_follow_memory_order() {
        let mut u = Utcb::zeroed();
        u.set_br(0, 0xAC).unwrap();
        u.set_br(32, 0x32).unwrap();
        u.set_br(1, 0x01).unwrap();
        assert_eq!(u.br[32], 0xAC);
        assert_eq!(u.br[0], 0x32);
        assert_eq!(u.br[31], 0x01);
        assert_eq!(
            (u.br(0), u.br(1), u.br(32)),
            (Some(0xAC), Some(0x01), Some(0x32))
        );
        assert_eq!(u.br(33), None);
        assert_eq!(u.set_br(33, 0), Err(BadIndex(33)));
        assert_eq!(u.set_br(usize::MAX, 0), Err(BadIndex(usize::MAX)));
    }

    #[test]
    fn mr_accessors() {
        let mut u = Utcb::zeroed();
        u.set_mr(7, 0x77).unwrap();
        u.set_mr(63, 0x63).unwrap();
        assert_eq!((u.mr[7], u.mr(7), u.mr(63)), (0x77, Some(0x77), Some(0x63)));
        assert_eq!(u.mr(64), None);
        assert_eq!(u.set_mr(64, 1), Err(BadIndex(64)));
    }

    #[test]
    fn word_index_of_each_br_matches_offset() {
        // `br[k]` sits at UTCB byte 0x80 + 8k; BR i must be at 0x200 + br_offset(i).
        for i in 0..BR_COUNT {
            let k = BR_COUNT - 1 - i;
            let byte = offset_of!(Utcb, br) + 8 * k;
            assert_eq!(byte as isize - UTCB_MR0_OFFSET as isize, br_offset(i));
        }
    }
}
