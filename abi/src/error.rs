//! Values of the ErrorCode TCR (§1.10): system-call errors and IPC errors.
//!
//! ```text
//! IPC error word:
//!  63                                        4 3       1  0
//! +-------------------------------------------+---------+---+
//! |   offset (bytes transferred; codes 4..7)  |  code   | p |   p: 0 send, 1 receive
//! +-------------------------------------------+---------+---+
//! ```

/// Error of a non-IPC system call (value of ErrorCode; 0 means no error).
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SysError {
    /// 1: the caller lacks the privilege.
    NoPrivilege = 1,
    /// 2: a thread argument names no (acceptable) thread.
    InvalidThread = 2,
    /// 3: the space argument is not acceptable.
    InvalidSpace = 3,
    /// 4: the scheduler argument is not acceptable.
    InvalidScheduler = 4,
    /// 5: some other parameter is invalid.
    InvalidParam = 5,
    /// 6: UTCB area or UTCB location problem.
    UtcbArea = 6,
    /// 7: KIP area problem.
    KipArea = 7,
    /// 8: the kernel ran out of memory.
    OutOfMemory = 8,
}

impl SysError {
    /// The ErrorCode value.
    #[inline]
    pub const fn code(self) -> u64 {
        self as u64
    }
}

/// A word that is not a known error value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct UnknownError(pub u64);

impl TryFrom<u64> for SysError {
    type Error = UnknownError;
    fn try_from(v: u64) -> Result<Self, UnknownError> {
        Ok(match v {
            1 => Self::NoPrivilege,
            2 => Self::InvalidThread,
            3 => Self::InvalidSpace,
            4 => Self::InvalidScheduler,
            5 => Self::InvalidParam,
            6 => Self::UtcbArea,
            7 => Self::KipArea,
            8 => Self::OutOfMemory,
            _ => return Err(UnknownError(v)),
        })
    }
}

/// What went wrong in an IPC (bits 1..3 of the error word).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IpcErrorCode {
    /// 1: timeout before the transfer began.
    Timeout = 1,
    /// 2: the partner does not exist.
    NotExist = 2,
    /// 3: cancelled by another thread (ExchangeRegisters).
    Cancelled = 3,
    /// 4: message overflow (string buffer too small, or no acceptance).
    Overflow = 4,
    /// 5: transfer timeout from a fault in the current thread's space.
    XferTimeoutCurrent = 5,
    /// 6: transfer timeout from a fault in the partner's space.
    XferTimeoutPartner = 6,
    /// 7: aborted by another thread during the transfer.
    Aborted = 7,
}

impl IpcErrorCode {
    /// Codes 4..7 carry the number of bytes already transferred.
    #[inline]
    pub const fn has_offset(self) -> bool {
        self as u8 >= 4
    }
}

impl TryFrom<u8> for IpcErrorCode {
    type Error = UnknownError;
    fn try_from(v: u8) -> Result<Self, UnknownError> {
        Ok(match v {
            1 => Self::Timeout,
            2 => Self::NotExist,
            3 => Self::Cancelled,
            4 => Self::Overflow,
            5 => Self::XferTimeoutCurrent,
            6 => Self::XferTimeoutPartner,
            7 => Self::Aborted,
            _ => return Err(UnknownError(v as u64)),
        })
    }
}

/// Which phase of the IPC failed (bit 0 of the error word).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phase {
    /// 0: the send phase.
    Send = 0,
    /// 1: the receive phase.
    Receive = 1,
}

/// Largest offset the error word can carry (60 bits).
pub const IPC_MAX_OFFSET: u64 = (1 << 60) - 1;

/// A decoded IPC error.
///
/// # Invariants (for values built by [`IpcError::decode`])
/// `offset == 0` unless `code.has_offset()`; `offset <= IPC_MAX_OFFSET`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpcError {
    /// What went wrong.
    pub code: IpcErrorCode,
    /// In which phase.
    pub phase: Phase,
    /// Bytes transferred before the error (codes 4..7 only).
    pub offset: u64,
}

impl IpcError {
    /// An error without offset.
    #[inline]
    pub const fn new(code: IpcErrorCode, phase: Phase) -> Self {
        Self {
            code,
            phase,
            offset: 0,
        }
    }

    /// The ErrorCode word: `offset << 4 | code << 1 | phase`. The offset is
    /// written only for codes 4..7 and is cut to 60 bits.
    #[inline]
    pub const fn encode(self) -> u64 {
        let offset = if self.code.has_offset() {
            self.offset << 4
        } else {
            0
        };
        offset | (self.code as u64) << 1 | self.phase as u64
    }

    /// Read an ErrorCode word. `None` for code 0 (no error) and for codes
    /// 1..3 with any bit 4..63 set (those bits are reserved there).
    #[inline]
    pub const fn decode(raw: u64) -> Option<Self> {
        let phase = if raw & 1 == 0 {
            Phase::Send
        } else {
            Phase::Receive
        };
        let code = match (raw >> 1) & 7 {
            1 => IpcErrorCode::Timeout,
            2 => IpcErrorCode::NotExist,
            3 => IpcErrorCode::Cancelled,
            4 => IpcErrorCode::Overflow,
            5 => IpcErrorCode::XferTimeoutCurrent,
            6 => IpcErrorCode::XferTimeoutPartner,
            7 => IpcErrorCode::Aborted,
            _ => return None,
        };
        let offset = raw >> 4;
        if !code.has_offset() && offset != 0 {
            return None;
        }
        Some(Self {
            code,
            phase,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sys_errors() {
        for v in 1..=8u64 {
            assert_eq!(SysError::try_from(v).unwrap().code(), v);
        }
        assert_eq!(SysError::try_from(0), Err(UnknownError(0)));
        assert_eq!(SysError::try_from(9), Err(UnknownError(9)));
        assert_eq!(SysError::OutOfMemory as u64, 8);
    }

    #[test]
    fn ipc_error_table() {
        use IpcErrorCode::*;
        let e = |c, p| IpcError::new(c, p).encode();
        assert_eq!(
            (e(Timeout, Phase::Send), e(Timeout, Phase::Receive)),
            (2, 3)
        );
        assert_eq!(
            (e(NotExist, Phase::Send), e(Cancelled, Phase::Receive)),
            (4, 7)
        );
        let o = IpcError {
            code: Overflow,
            phase: Phase::Send,
            offset: 3,
        };
        assert_eq!(o.encode(), 8 + 16 * 3);
        assert_eq!(
            IpcError {
                code: Aborted,
                phase: Phase::Receive,
                offset: 1
            }
            .encode(),
            14 + 16 + 1
        );
        // Offsets are not written for codes 1..3.
        assert_eq!(
            IpcError {
                code: Timeout,
                phase: Phase::Send,
                offset: 5
            }
            .encode(),
            2
        );
        assert_eq!(IpcError::decode(8 + 16 * 3), Some(o));
        assert_eq!(IpcError::decode(0), None);
        assert_eq!(IpcError::decode(1), None);
        assert_eq!(IpcError::decode(2 | 16), None);
        assert!(Overflow.has_offset() && !Cancelled.has_offset());
        assert_eq!(IpcErrorCode::try_from(0), Err(UnknownError(0)));
        assert_eq!(IpcErrorCode::try_from(8), Err(UnknownError(8)));
        assert_eq!(IpcErrorCode::try_from(7), Ok(Aborted));
    }

    proptest! {
        #[test]
        fn ipc_error_round_trip(code in 1u8..8, receive: bool, offset in 0..=IPC_MAX_OFFSET) {
            let code = IpcErrorCode::try_from(code).unwrap();
            let phase = if receive { Phase::Receive } else { Phase::Send };
            let offset = if code.has_offset() { offset } else { 0 };
            let e = IpcError { code, phase, offset };
            prop_assert_eq!(IpcError::decode(e.encode()), Some(e));
        }

        #[test]
        fn decode_total(raw: u64) {
            if let Some(e) = IpcError::decode(raw) {
                prop_assert_eq!(e.encode(), raw);
            }
        }
    }
}
