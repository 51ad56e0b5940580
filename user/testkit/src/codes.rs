//! System-call outcomes as single words (for threads that report through [`crate::Cells`]
//! or a message), and the check that a call failed with a given X.2 error.

use core::fmt;

use abi::error::SysError;
use l4::ipc::IpcFailure;

use crate::{fail, Check};

/// An IPC outcome as one word: 0 success, else the ErrorCode value (an undecodable one
/// with bit 63 set).
pub fn ipc_code<T>(r: &Result<T, IpcFailure>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(IpcFailure::Ipc(e)) => e.encode(),
        Err(IpcFailure::Unknown(x)) => x | 1 << 63,
    }
}

/// A system-call outcome as one word: 0 success, else the error code (an undefined one
/// with bit 63 set, an undefined result with bit 62 set).
pub fn sys_code<T>(r: &Result<T, l4::Error>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(l4::Error::Sys(e)) => e.code(),
        Err(l4::Error::Unknown(x)) => x | 1 << 63,
        Err(l4::Error::UnknownResult(x)) => x | 1 << 62,
    }
}

/// Passes if `r` is exactly the X.2 error `want`.
pub fn expect_sys<T: fmt::Debug>(r: Result<T, l4::Error>, want: SysError) -> Check {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => fail!("expected error {:?}, got {:?}", want, e),
        Ok(v) => fail!("expected error {:?}, the call succeeded ({:?})", want, v),
    }
}
