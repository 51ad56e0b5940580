//! The error type of the non-IPC system-call wrappers.
//!
//! A failing X.2 system call returns a failure result and leaves the reason in the
//! ErrorCode TCR. The wrappers clear ErrorCode before each call, so a failure whose code
//! is not one of X.2's values (including 0: "failed without saying why") is reported as
//! [`Error::Unknown`] rather than mistaken for a known error.

use abi::error::SysError;

/// Why a system call failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// The call failed with this X.2 error code.
    Sys(SysError),
    /// The call failed and ErrorCode holds a value X.2 does not define.
    Unknown(u64),
    /// The call returned a result word the binding does not define (for example a
    /// Schedule thread state above 7).
    UnknownResult(u64),
}

impl Error {
    /// The X.2 error, if it is one.
    pub fn sys(self) -> Option<SysError> {
        match self {
            Error::Sys(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SysError> for Error {
    fn from(e: SysError) -> Self {
        Error::Sys(e)
    }
}

impl PartialEq<SysError> for Error {
    fn eq(&self, other: &SysError) -> bool {
        *self == Error::Sys(*other)
    }
}

/// The error the last failed call left in ErrorCode.
pub(crate) fn last() -> Error {
    let code = crate::utcb::error_code();
    SysError::try_from(code).map_or(Error::Unknown(code), Error::Sys)
}

/// Turns a result word (1 success, 0 failure) into a `Result`.
pub(crate) fn from_flag(result: u64) -> Result<(), Error> {
    match result {
        1 => Ok(()),
        0 => Err(last()),
        other => Err(Error::UnknownResult(other)),
    }
}
