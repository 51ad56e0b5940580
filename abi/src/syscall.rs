//! Typed views over system-call arguments (§4.3) and protocol constants
//! (§5): control words, the Schedule argument words, message-register
//! indices of kernel messages, and the kernel-debugger operation codes.
//!
//! Each view has a `from_raw` taking the raw argument words in the order
//! §4.3 lists them; views whose words may hold invalid values check them
//! there and fail with the X.2 error code ([`SysError`]) the call returns.

use crate::error::SysError;
use crate::fpage::Fpage;
use crate::thread_id::ThreadId;
use crate::time::Time;

/// The bytes of the KernelInterface "system call": `lock; nop`, which
/// raises #UD; the kernel answers it and skips the two bytes (§2.1).
pub const KERNEL_INTERFACE_OPCODE: [u8; 2] = [0xF0, 0x90];

/// "Leave unchanged" in the Schedule and ThreadControl argument words.
pub const UNCHANGED: u64 = !0;

/// ExchangeRegisters control bit 0 (h): halt (with [`EXREGS_APPLY_HALT`]).
pub const EXREGS_HALT: u64 = 1 << 0;
/// Bit 1 (r): abort a receive in progress.
pub const EXREGS_ABORT_RECEIVE: u64 = 1 << 1;
/// Bit 2 (s): abort a send in progress.
pub const EXREGS_ABORT_SEND: u64 = 1 << 2;
/// Bit 3: set SP.
pub const EXREGS_SET_SP: u64 = 1 << 3;
/// Bit 4: set IP.
pub const EXREGS_SET_IP: u64 = 1 << 4;
/// Bit 5: set FLAGS (only the user bits, [`USER_FLAGS_MASK`]).
pub const EXREGS_SET_FLAGS: u64 = 1 << 5;
/// Bit 6: set UserDefinedHandle.
pub const EXREGS_SET_USER_HANDLE: u64 = 1 << 6;
/// Bit 7: set the pager.
pub const EXREGS_SET_PAGER: u64 = 1 << 7;
/// Bit 8 (H): apply bit h — halt if h = 1, resume if h = 0.
pub const EXREGS_APPLY_HALT: u64 = 1 << 8;
/// Bit 9 (d): X.2 "deliver" (Pistachio always returns old values).
pub const EXREGS_DELIVER: u64 = 1 << 9;
/// Bit 12: set the exception handler (declared by X.2, not acted on).
pub const EXREGS_SET_EXCEPTION_HANDLER: u64 = 1 << 12;
/// Bit 13: set the scheduler (declared by X.2, not acted on).
pub const EXREGS_SET_SCHEDULER: u64 = 1 << 13;
/// **Tern extension**, bit 16: set the thread's FS base. The new value
/// travels in the UserDefinedHandle argument (R10), which is why it may
/// not be combined with [`EXREGS_SET_USER_HANDLE`]. The returned R10 is
/// still the old UserDefinedHandle.
pub const EXREGS_SET_FS_BASE: u64 = 1 << 16;
/// Every control bit Tern knows.
pub const EXREGS_KNOWN: u64 = 0x33FF | EXREGS_SET_FS_BASE;

/// RFLAGS bits a user may set through ExchangeRegisters or an exception
/// reply: CF, PF, AF, ZF, SF, OF.
pub const USER_FLAGS_MASK: u64 = 0x8D5;

/// The ExchangeRegisters control word (RSI in).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ExRegsControl(pub u64);

impl ExRegsControl {
    /// Any word, unchecked.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    #[inline]
    const fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }

    /// Bit 0, h.
    #[inline]
    pub const fn halt(self) -> bool {
        self.has(EXREGS_HALT)
    }
    /// Bit 1, r.
    #[inline]
    pub const fn abort_receive(self) -> bool {
        self.has(EXREGS_ABORT_RECEIVE)
    }
    /// Bit 2, s.
    #[inline]
    pub const fn abort_send(self) -> bool {
        self.has(EXREGS_ABORT_SEND)
    }
    /// Bit 3.
    #[inline]
    pub const fn set_sp(self) -> bool {
        self.has(EXREGS_SET_SP)
    }
    /// Bit 4.
    #[inline]
    pub const fn set_ip(self) -> bool {
        self.has(EXREGS_SET_IP)
    }
    /// Bit 5.
    #[inline]
    pub const fn set_flags(self) -> bool {
        self.has(EXREGS_SET_FLAGS)
    }
    /// Bit 6.
    #[inline]
    pub const fn set_user_handle(self) -> bool {
        self.has(EXREGS_SET_USER_HANDLE)
    }
    /// Bit 7.
    #[inline]
    pub const fn set_pager(self) -> bool {
        self.has(EXREGS_SET_PAGER)
    }
    /// Bit 8, H.
    #[inline]
    pub const fn apply_halt(self) -> bool {
        self.has(EXREGS_APPLY_HALT)
    }
    /// Bit 9, d.
    #[inline]
    pub const fn deliver(self) -> bool {
        self.has(EXREGS_DELIVER)
    }
    /// Bit 12.
    #[inline]
    pub const fn set_exception_handler(self) -> bool {
        self.has(EXREGS_SET_EXCEPTION_HANDLER)
    }
    /// Bit 13.
    #[inline]
    pub const fn set_scheduler(self) -> bool {
        self.has(EXREGS_SET_SCHEDULER)
    }
    /// Bit 16 (Tern).
    #[inline]
    pub const fn set_fs_base(self) -> bool {
        self.has(EXREGS_SET_FS_BASE)
    }

    /// Bits Tern does not know (CtrlXfer bits 10..11 included: amd64 has no
    /// CtrlXfer).
    #[inline]
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !EXREGS_KNOWN
    }
}

impl TryFrom<u64> for ExRegsControl {
    type Error = SysError;
    /// Unknown bits, or FS base together with UserDefinedHandle, give
    /// [`SysError::InvalidParam`].
    fn try_from(raw: u64) -> Result<Self, SysError> {
        let c = Self(raw);
        if c.unknown_bits() != 0 || (c.set_fs_base() && c.set_user_handle()) {
            Err(SysError::InvalidParam)
        } else {
            Ok(c)
        }
    }
}

/// The ExchangeRegisters arguments.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ExRegsArgs {
    /// Destination thread (local or global id).
    pub dest: ThreadId,
    /// Checked control word.
    pub control: ExRegsControl,
    /// New SP (if `set_sp`).
    pub sp: u64,
    /// New IP (if `set_ip`).
    pub ip: u64,
    /// New FLAGS (if `set_flags`; masked with [`USER_FLAGS_MASK`]).
    pub flags: u64,
    /// New UserDefinedHandle, or FS base with [`EXREGS_SET_FS_BASE`].
    pub user_handle: u64,
    /// New pager (if `set_pager`).
    pub pager: ThreadId,
}

impl ExRegsArgs {
    /// From the words RAX (dest), RSI (control), RDX (SP), R8 (IP),
    /// R9 (FLAGS), R10 (UserDefinedHandle), RDI (pager).
    pub fn from_raw(
        dest: u64,
        control: u64,
        sp: u64,
        ip: u64,
        flags: u64,
        user_handle: u64,
        pager: u64,
    ) -> Result<Self, SysError> {
        Ok(Self {
            dest: ThreadId(dest),
            control: ExRegsControl::try_from(control)?,
            sp,
            ip,
            flags,
            user_handle,
            pager: ThreadId(pager),
        })
    }
}

/// The state ExchangeRegisters returns in place of the control word.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ExRegsState(pub u64);

impl ExRegsState {
    /// Bit 0: the thread was halted.
    pub const HALTED: u64 = 1;
    /// Bit 1: it was receiving.
    pub const RECEIVING: u64 = 2;
    /// Bit 2: it was sending.
    pub const SENDING: u64 = 4;

    /// The word.
    #[inline]
    pub const fn new(halted: bool, receiving: bool, sending: bool) -> Self {
        Self(halted as u64 | (receiving as u64) << 1 | (sending as u64) << 2)
    }

    /// Any word.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// Bit 0.
    #[inline]
    pub const fn halted(self) -> bool {
        self.0 & Self::HALTED != 0
    }
    /// Bit 1.
    #[inline]
    pub const fn receiving(self) -> bool {
        self.0 & Self::RECEIVING != 0
    }
    /// Bit 2.
    #[inline]
    pub const fn sending(self) -> bool {
        self.0 & Self::SENDING != 0
    }
}

/// The Unmap control word (RDX): k in bits 0..5 (fpages in MR0..MRk),
/// f in bit 6 (flush the caller's own mapping too).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct UnmapControl(pub u64);

impl UnmapControl {
    /// Bit 6.
    pub const FLUSH: u64 = 1 << 6;

    /// `k` cut to 6 bits, plus the flush bit.
    #[inline]
    pub const fn new(k: u8, flush: bool) -> Self {
        Self((k & 0x3F) as u64 | (flush as u64) << 6)
    }

    /// Any word, unchecked.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// k: index of the last MR holding an fpage.
    #[inline]
    pub const fn k(self) -> u8 {
        (self.0 & 0x3F) as u8
    }

    /// Number of fpages, k + 1.
    #[inline]
    pub const fn count(self) -> usize {
        self.k() as usize + 1
    }

    /// f.
    #[inline]
    pub const fn flush(self) -> bool {
        self.0 & Self::FLUSH != 0
    }

    /// Bits 7..63, which X.2 does not define.
    #[inline]
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !0x7F
    }
}

/// Schedule's TimeControl word: timeslice in bits 16..31, total quantum in
/// bits 0..15, as the user library packs it (Pistachio's kernel reads
/// other bits, §4.3; Tern follows the library). All ones leaves both
/// unchanged, and so does a half of 0xFFFF for that half.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TimeControl {
    /// New timeslice length.
    pub timeslice: Option<Time>,
    /// New total quantum.
    pub total_quantum: Option<Time>,
}

impl TimeControl {
    /// Decode; bits 32..63 set (other than all ones) are
    /// [`SysError::InvalidParam`].
    pub const fn from_raw(raw: u64) -> Result<Self, SysError> {
        if raw == UNCHANGED {
            return Ok(Self {
                timeslice: None,
                total_quantum: None,
            });
        }
        if raw >> 32 != 0 {
            return Err(SysError::InvalidParam);
        }
        Ok(Self {
            timeslice: Self::half((raw >> 16) as u16),
            total_quantum: Self::half(raw as u16),
        })
    }

    #[inline]
    const fn half(v: u16) -> Option<Time> {
        if v == 0xFFFF {
            None
        } else {
            Some(Time::decode(v))
        }
    }

    /// The word Schedule returns (old values): `ts << 16 | tq`.
    #[inline]
    pub const fn encode(timeslice: u16, total_quantum: u16) -> u64 {
        (timeslice as u64) << 16 | total_quantum as u64
    }
}

/// Schedule's PreemptionControl word.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PreemptionControl {
    /// Maximum delay of a delayed preemption, µs (bits 0..15).
    pub max_delay: u16,
    /// Sensitive priority (bits 16..23).
    pub sensitive_prio: u8,
}

impl PreemptionControl {
    /// The word.
    #[inline]
    pub const fn encode(self) -> u64 {
        self.max_delay as u64 | (self.sensitive_prio as u64) << 16
    }
}

/// The Schedule arguments, checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ScheduleArgs {
    /// Destination thread.
    pub dest: ThreadId,
    /// New priority (PrioControl bits 0..7), `None` = unchanged.
    pub priority: Option<u8>,
    /// New timeslice / total quantum.
    pub time: TimeControl,
    /// New processor (bits 0..15), `None` = unchanged.
    pub processor: Option<u16>,
    /// New preemption parameters, `None` = unchanged.
    pub preemption: Option<PreemptionControl>,
}

impl ScheduleArgs {
    /// From RDI (dest), RSI (PrioControl), RDX (TimeControl),
    /// R8 (ProcessorControl), R9 (PreemptionControl). All ones means
    /// unchanged; any other value with bits outside its fields is
    /// [`SysError::InvalidParam`].
    pub const fn from_raw(
        dest: u64,
        prio: u64,
        time: u64,
        processor: u64,
        preempt: u64,
    ) -> Result<Self, SysError> {
        let time = match TimeControl::from_raw(time) {
            Ok(t) => t,
            Err(e) => return Err(e),
        };
        let priority = match prio {
            UNCHANGED => None,
            p if p <= 0xFF => Some(p as u8),
            _ => return Err(SysError::InvalidParam),
        };
        let processor = match processor {
            UNCHANGED => None,
            p if p <= 0xFFFF => Some(p as u16),
            _ => return Err(SysError::InvalidParam),
        };
        let preemption = match preempt {
            UNCHANGED => None,
            p if p >> 24 == 0 => Some(PreemptionControl {
                max_delay: p as u16,
                sensitive_prio: (p >> 16) as u8,
            }),
            _ => return Err(SysError::InvalidParam),
        };
        Ok(Self {
            dest: ThreadId(dest),
            priority,
            time,
            processor,
            preemption,
        })
    }
}

/// Schedule's result (RAX): the destination's state.
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ThreadState {
    /// 0: the call failed (ErrorCode says why).
    Error = 0,
    /// 1: no such thread.
    Dead = 1,
    /// 2: exists but not active.
    Inactive = 2,
    /// 3: running or ready.
    Running = 3,
    /// 4: waiting to send (send phase not started).
    PendingSend = 4,
    /// 5: sending.
    Sending = 5,
    /// 6: waiting to receive.
    Waiting = 6,
    /// 7: receiving.
    Receiving = 7,
}

impl TryFrom<u64> for ThreadState {
    type Error = crate::error::UnknownError;
    fn try_from(v: u64) -> Result<Self, crate::error::UnknownError> {
        Ok(match v {
            0 => ThreadState::Error,
            1 => Self::Dead,
            2 => Self::Inactive,
            3 => Self::Running,
            4 => Self::PendingSend,
            5 => Self::Sending,
            6 => Self::Waiting,
            7 => Self::Receiving,
            _ => return Err(crate::error::UnknownError(v)),
        })
    }
}

/// The SpaceControl arguments (raw views; the kernel checks them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SpaceControlArgs {
    /// A thread of the space (global id expected).
    pub space: ThreadId,
    /// Control word (Tern defines no bits; 0 is returned).
    pub control: u64,
    /// KernelInterfacePageArea fpage.
    pub kip_area: Fpage,
    /// UtcbArea fpage.
    pub utcb_area: Fpage,
    /// Redirector (ignored on amd64).
    pub redirector: ThreadId,
}

impl SpaceControlArgs {
    /// From RDI (space), RSI (control), RDX (KIP area), R8 (UTCB area),
    /// R9 (redirector).
    #[inline]
    pub const fn from_raw(
        space: u64,
        control: u64,
        kip_area: u64,
        utcb_area: u64,
        redirector: u64,
    ) -> Self {
        Self {
            space: ThreadId(space),
            control,
            kip_area: Fpage(kip_area),
            utcb_area: Fpage(utcb_area),
            redirector: ThreadId(redirector),
        }
    }
}

/// The ThreadControl arguments (raw views; the kernel checks them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ThreadControlArgs {
    /// Thread to create, modify or delete.
    pub dest: ThreadId,
    /// New pager (nil = unchanged / do not activate).
    pub pager: ThreadId,
    /// New scheduler (nil = unchanged).
    pub scheduler: ThreadId,
    /// Space specifier (nil = delete dest).
    pub space: ThreadId,
    /// UTCB location, `None` for all ones ("don't change").
    pub utcb_location: Option<u64>,
}

impl ThreadControlArgs {
    /// From RDI (dest), RSI (pager), RDX (scheduler), R8 (space
    /// specifier), R9 (UTCB location).
    #[inline]
    pub const fn from_raw(dest: u64, pager: u64, scheduler: u64, space: u64, utcb: u64) -> Self {
        Self {
            dest: ThreadId(dest),
            pager: ThreadId(pager),
            scheduler: ThreadId(scheduler),
            space: ThreadId(space),
            utcb_location: if utcb == UNCHANGED { None } else { Some(utcb) },
        }
    }
}

/// MR indices of the page-fault message (§5.1).
pub mod page_fault_mr {
    /// Faulting address.
    pub const ADDRESS: usize = 1;
    /// Faulting user IP.
    pub const IP: usize = 2;
}

/// MR indices of the thread start message from the pager (§5.6, u = 2).
pub mod start_mr {
    /// Initial IP.
    pub const IP: usize = 1;
    /// Initial SP.
    pub const SP: usize = 2;
}

/// MR indices of the amd64 exception message (§5.3); the reply carries the
/// registers back in MR1..MR18.
pub mod exception_mr {
    /// RIP.
    pub const RIP: usize = 1;
    /// RBX.
    pub const RBX: usize = 2;
    /// R10.
    pub const R10: usize = 3;
    /// R12.
    pub const R12: usize = 4;
    /// R13.
    pub const R13: usize = 5;
    /// R14.
    pub const R14: usize = 6;
    /// R15.
    pub const R15: usize = 7;
    /// RAX.
    pub const RAX: usize = 8;
    /// RCX.
    pub const RCX: usize = 9;
    /// RDX.
    pub const RDX: usize = 10;
    /// RSI.
    pub const RSI: usize = 11;
    /// RDI.
    pub const RDI: usize = 12;
    /// RBP.
    pub const RBP: usize = 13;
    /// R8.
    pub const R8: usize = 14;
    /// R9.
    pub const R9: usize = 15;
    /// R11.
    pub const R11: usize = 16;
    /// RSP.
    pub const RSP: usize = 17;
    /// RFLAGS.
    pub const RFLAGS: usize = 18;
    /// Exception vector number.
    pub const VECTOR: usize = 19;
    /// Hardware error code: written, but beyond u = 19, so not sent.
    pub const ERROR_CODE: usize = 20;
    /// Registers restored from the reply: MR1..=MR18.
    pub const REPLY_REGS: core::ops::RangeInclusive<usize> = RIP..=RFLAGS;
}

/// KDB: print the character in AL (`int3; cmpb $0, %al`).
pub const KDB_PRINT_CHAR: u8 = 0x00;
/// KDB: print the NUL-terminated string at RAX.
pub const KDB_PRINT_STRING: u8 = 0x01;
/// KDB: clear the page (declared by the header, not handled by Pistachio).
pub const KDB_CLEAR_PAGE: u8 = 0x02;
/// KDB: toggle break-in checking.
pub const KDB_TOGGLE_BREAKIN: u8 = 0x03;
/// KDB: non-blocking read of a character into RAX (!0 if none).
pub const KDB_READ_CHAR: u8 = 0x08;
/// KDB: blocking read of a character into RAX.
pub const KDB_READ_CHAR_BLOCKED: u8 = 0x0D;
/// **Tern extension**: power the machine off; exit status in the low byte
/// of RAX. Honoured for privileged spaces only.
pub const KDB_POWER_OFF: u8 = 0x10;
/// The byte after `int3` that introduces an operation code (`cmpb $op, %al`).
pub const KDB_OP_PREFIX: u8 = 0x3C;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exregs_control() {
        // L4_Start, L4_Start_SpIp, L4_Stop.
        let start = ExRegsControl::try_from(0x106).unwrap();
        assert!(start.apply_halt() && !start.halt() && start.abort_send() && start.abort_receive());
        let spip = ExRegsControl::try_from(0x11E).unwrap();
        assert!(spip.set_sp() && spip.set_ip() && !spip.set_flags());
        let stop = ExRegsControl::try_from(0x301).unwrap();
        assert!(stop.halt() && stop.apply_halt() && stop.deliver());
        let all = ExRegsControl::from_raw(EXREGS_KNOWN & !EXREGS_SET_USER_HANDLE);
        assert!(
            all.set_pager()
                && all.set_exception_handler()
                && all.set_scheduler()
                && all.set_fs_base()
        );
        assert!(ExRegsControl::try_from(EXREGS_KNOWN & !EXREGS_SET_FS_BASE).is_ok());
        assert_eq!(
            ExRegsControl::try_from(1 << 10),
            Err(SysError::InvalidParam)
        );
        assert_eq!(
            ExRegsControl::try_from(1 << 63),
            Err(SysError::InvalidParam)
        );
        assert_eq!(
            ExRegsControl::try_from(EXREGS_SET_FS_BASE | EXREGS_SET_USER_HANDLE),
            Err(SysError::InvalidParam)
        );
        assert_eq!(ExRegsControl::from_raw(0xC00).unknown_bits(), 0xC00);

        let a = ExRegsArgs::from_raw(1, 0x18, 2, 3, 4, 5, 6).unwrap();
        assert_eq!(
            (a.dest, a.sp, a.ip, a.flags, a.user_handle, a.pager),
            (ThreadId(1), 2, 3, 4, 5, ThreadId(6))
        );
        assert!(ExRegsArgs::from_raw(1, 1 << 11, 0, 0, 0, 0, 0).is_err());
    }

    #[test]
    fn exregs_state() {
        let s = ExRegsState::new(true, false, true);
        assert_eq!(s.0, 5);
        assert!(s.halted() && !s.receiving() && s.sending());
        assert!(ExRegsState::from_raw(2).receiving());
    }

    #[test]
    fn unmap_control() {
        let u = UnmapControl::new(63, true);
        assert_eq!(u.0, 0x7F);
        assert_eq!((u.k(), u.count(), u.flush()), (63, 64, true));
        assert_eq!(UnmapControl::from_raw(0).count(), 1);
        assert_eq!(UnmapControl::from_raw(0x180).unknown_bits(), 0x180);
    }

    #[test]
    fn schedule_args() {
        let a = ScheduleArgs::from_raw(7, !0, !0, !0, !0).unwrap();
        assert_eq!(a.dest, ThreadId(7));
        assert_eq!((a.priority, a.processor, a.preemption), (None, None, None));
        assert_eq!(a.time, TimeControl::default());

        let tc = TimeControl::encode(crate::time::encode_period(10_000), 0);
        let a = ScheduleArgs::from_raw(7, 100, tc, 0, 0x05_1234).unwrap();
        assert_eq!(a.priority, Some(100));
        assert_eq!(a.time.timeslice, Some(Time::Period { us: 10_000 }));
        assert_eq!(a.time.total_quantum, Some(Time::Never));
        assert_eq!(a.processor, Some(0));
        assert_eq!(
            a.preemption,
            Some(PreemptionControl {
                max_delay: 0x1234,
                sensitive_prio: 5
            })
        );
        assert_eq!(a.preemption.unwrap().encode(), 0x05_1234);

        let half = ScheduleArgs::from_raw(7, !0, 0xFFFF_0400, !0, !0).unwrap();
        assert_eq!(
            half.time,
            TimeControl {
                timeslice: None,
                total_quantum: Some(Time::Zero)
            }
        );

        assert_eq!(
            ScheduleArgs::from_raw(7, 256, !0, !0, !0),
            Err(SysError::InvalidParam)
        );
        assert_eq!(
            ScheduleArgs::from_raw(7, !0, 1 << 32, !0, !0),
            Err(SysError::InvalidParam)
        );
        assert_eq!(
            ScheduleArgs::from_raw(7, !0, !0, 0x1_0000, !0),
            Err(SysError::InvalidParam)
        );
        assert_eq!(
            ScheduleArgs::from_raw(7, !0, !0, !0, 1 << 24),
            Err(SysError::InvalidParam)
        );
    }

    #[test]
    fn thread_states() {
        for v in 0..8 {
            assert_eq!(ThreadState::try_from(v).unwrap() as u64, v);
        }
        assert!(ThreadState::try_from(8).is_err());
    }

    #[test]
    fn control_args() {
        let t = ThreadControlArgs::from_raw(1, 2, 3, 4, !0);
        assert_eq!(
            (t.dest, t.pager, t.scheduler, t.space, t.utcb_location),
            (ThreadId(1), ThreadId(2), ThreadId(3), ThreadId(4), None)
        );
        assert_eq!(
            ThreadControlArgs::from_raw(1, 2, 3, 4, 0xBF00_0000).utcb_location,
            Some(0xBF00_0000)
        );
        let s = SpaceControlArgs::from_raw(1, 0, 0xBFF0_0000 | 12 << 4, 0xBF00_0000 | 18 << 4, 0);
        assert_eq!(
            (s.kip_area.base(), s.kip_area.log2size()),
            (0xBFF0_0000, 12)
        );
        assert_eq!(
            (s.utcb_area.base(), s.utcb_area.log2size()),
            (0xBF00_0000, 18)
        );
    }

    #[test]
    fn protocol_constants() {
        assert_eq!(exception_mr::VECTOR, crate::msg::EXCEPTION_UNTYPED as usize);
        assert_eq!(exception_mr::REPLY_REGS.count(), 18);
        assert_eq!(KDB_READ_CHAR_BLOCKED, 0x0D);
        assert_eq!(KERNEL_INTERFACE_OPCODE, [0xF0, 0x90]);
        assert_eq!(USER_FLAGS_MASK, 1 | 4 | 0x10 | 0x40 | 0x80 | 0x800);
    }

    proptest! {
        #[test]
        fn exregs_known_bits_accepted(raw: u64) {
            let r = ExRegsControl::try_from(raw);
            let ok = raw & !EXREGS_KNOWN == 0
                && raw & (EXREGS_SET_FS_BASE | EXREGS_SET_USER_HANDLE) != (EXREGS_SET_FS_BASE | EXREGS_SET_USER_HANDLE);
            prop_assert_eq!(r.is_ok(), ok);
        }

        #[test]
        fn unmap_round_trip(k in 0u8..64, flush: bool) {
            let u = UnmapControl::new(k, flush);
            prop_assert_eq!((u.k(), u.flush(), u.unknown_bits()), (k, flush, 0));
        }

        #[test]
        fn time_control_round_trip(ts in 0u16..0xFFFF, tq in 0u16..0xFFFF) {
            let t = TimeControl::from_raw(TimeControl::encode(ts, tq)).unwrap();
            prop_assert_eq!(t.timeslice, Some(Time::decode(ts)));
            prop_assert_eq!(t.total_quantum, Some(Time::decode(tq)));
        }
    }
}

// ---------------------------------------------------------------------------------------
// MemoryControl

/// MemoryControl's control word: bits 0..5 = k (the fpages are in MR0..MRk). Bit 6 is a
/// Tern extension ([`MemoryControlWord::ATTR3_IN_R10`]); any other bit set is
/// [`SysError::InvalidParam`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MemoryControlWord {
    /// Index of the last MR holding an fpage (k).
    pub last: u8,
    /// Attribute 3 arrives in R10 (Tern extension, since 0.1).
    pub attr3_in_r10: bool,
}

impl MemoryControlWord {
    /// Tern extension: attribute 3 is in R10 (which carries MR3 in Pistachio's binding;
    /// the kernel reads the fpages from the UTCB). Pistachio's binding loads attribute 3
    /// into R11, which `syscall` overwrites; without this bit an fpage selecting
    /// attribute 3 is refused.
    pub const ATTR3_IN_R10: u64 = 1 << 6;

    /// Decodes the control word (RDX).
    pub const fn from_raw(raw: u64) -> Result<Self, SysError> {
        if raw & !(0x3F | Self::ATTR3_IN_R10) != 0 {
            return Err(SysError::InvalidParam);
        }
        Ok(Self {
            last: (raw & 0x3F) as u8,
            attr3_in_r10: raw & Self::ATTR3_IN_R10 != 0,
        })
    }

    /// The word.
    pub const fn encode(self) -> u64 {
        self.last as u64 | if self.attr3_in_r10 { Self::ATTR3_IN_R10 } else { 0 }
    }
}

/// Which of attribute 0..3 an fpage in MemoryControl selects: its low two bits (where
/// the rights of a map fpage are).
#[inline]
pub const fn memory_attribute_selector(fpage: Fpage) -> usize {
    (fpage.0 & 3) as usize
}

/// A caching attribute of MemoryControl. The values are those of Pistachio's x86 user
/// headers (`l4/ia32/specials.h`: write-back 1, write-through 2, uncacheable 4,
/// write-combining 5, write-protected 8) with 3 = "uncached minus" (UC-: uncached, but
/// an MTRR saying write-combining wins), the PAT entry Pistachio's x86 kernel puts
/// between them: the attribute minus one is the PAT entry (`glue/v4-x86/x32/memcontrol.cc`).
/// 6, 7 and anything above 8 are [`SysError::InvalidParam`].
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemoryAttribute {
    /// 0: the kernel's default for memory (write-back).
    Default = 0,
    /// 1: write-back.
    WriteBack = 1,
    /// 2: write-through.
    WriteThrough = 2,
    /// 3: uncached, overridable by a write-combining MTRR (UC-).
    UncachedMinus = 3,
    /// 4: uncached (UC).
    Uncached = 4,
    /// 5: write-combining.
    WriteCombining = 5,
    /// 8: write-protected.
    WriteProtected = 8,
}

impl MemoryAttribute {
    /// The PAT entry that gives this memory type in Tern's PAT layout
    /// ([`PAT_LAYOUT`]): 0 WB, 1 WT, 2 UC-, 3 UC, 4 WC, 7 WP.
    pub const fn pat_index(self) -> u8 {
        match self {
            Self::Default | Self::WriteBack => 0,
            Self::WriteThrough => 1,
            Self::UncachedMinus => 2,
            Self::Uncached => 3,
            Self::WriteCombining => 4,
            Self::WriteProtected => 7,
        }
    }
}

impl TryFrom<u64> for MemoryAttribute {
    type Error = SysError;

    fn try_from(raw: u64) -> Result<Self, SysError> {
        Ok(match raw {
            0 => Self::Default,
            1 => Self::WriteBack,
            2 => Self::WriteThrough,
            3 => Self::UncachedMinus,
            4 => Self::Uncached,
            5 => Self::WriteCombining,
            8 => Self::WriteProtected,
            _ => return Err(SysError::InvalidParam),
        })
    }
}

/// The memory types (x86 encodings) of PAT entries 0..7 as Tern programs IA32_PAT:
/// WB, WT, UC-, UC (the reset values of entries 0..3, so PCD/PWT alone keep their
/// meaning), WC, WT, UC-, WP (Pistachio's x86 layout).
pub const PAT_LAYOUT: [u8; 8] = [6, 4, 7, 0, 1, 4, 7, 5];

#[cfg(test)]
mod memory_control_tests {
    use super::*;

    #[test]
    fn control_word() {
        assert_eq!(
            MemoryControlWord::from_raw(5),
            Ok(MemoryControlWord { last: 5, attr3_in_r10: false })
        );
        let w = MemoryControlWord::from_raw(63 | MemoryControlWord::ATTR3_IN_R10).unwrap();
        assert_eq!((w.last, w.attr3_in_r10), (63, true));
        assert_eq!(w.encode(), 63 | 64);
        assert_eq!(MemoryControlWord::from_raw(1 << 7), Err(SysError::InvalidParam));
        assert_eq!(MemoryControlWord::from_raw(!0), Err(SysError::InvalidParam));
    }

    #[test]
    fn attributes() {
        for (raw, pat) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (8, 7)] {
            let a = MemoryAttribute::try_from(raw).unwrap();
            assert_eq!(a as u64, raw);
            assert_eq!(a.pat_index(), pat);
        }
        for raw in [6, 7, 9, 0x100, !0] {
            assert_eq!(MemoryAttribute::try_from(raw), Err(SysError::InvalidParam));
        }
        // The memory type each attribute ends up with (x86 encodings).
        let ty = |a: MemoryAttribute| PAT_LAYOUT[a.pat_index() as usize];
        assert_eq!(ty(MemoryAttribute::WriteBack), 6);
        assert_eq!(ty(MemoryAttribute::WriteThrough), 4);
        assert_eq!(ty(MemoryAttribute::UncachedMinus), 7);
        assert_eq!(ty(MemoryAttribute::Uncached), 0);
        assert_eq!(ty(MemoryAttribute::WriteCombining), 1);
        assert_eq!(ty(MemoryAttribute::WriteProtected), 5);
    }

    #[test]
    fn selector() {
        assert_eq!(memory_attribute_selector(Fpage(0x1000_0c03)), 3);
        assert_eq!(memory_attribute_selector(Fpage::new(0x4000, 12, crate::fpage::Rights::NONE)), 0);
    }
}
