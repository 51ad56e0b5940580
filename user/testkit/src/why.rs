//! Failure messages without a heap: [`Why`] keeps the formatted text in a fixed buffer;
//! [`fail!`](crate::fail) and [`ensure!`](crate::ensure) end a check with one, and
//! [`Context`] turns any error into one that names the failed step.

use core::fmt::{self, Write};

/// Why a check failed: a formatted message, cut at [`Why::CAPACITY`] bytes (at a whole
/// character when printed).
#[derive(Clone)]
pub struct Why {
    bytes: [u8; Why::CAPACITY],
    len: usize,
}

impl Why {
    /// Longest message kept.
    pub const CAPACITY: usize = 256;

    /// The message `args` formats to.
    pub fn new(args: fmt::Arguments) -> Self {
        let mut w = Why {
            bytes: [0; Self::CAPACITY],
            len: 0,
        };
        let _ = w.write_fmt(args);
        w
    }

    /// The text, up to the last whole character.
    pub fn as_str(&self) -> &str {
        let b = &self.bytes[..self.len];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Why {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(Self::CAPACITY - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What one check returns.
pub type Check = Result<(), Why>;

/// Ends the enclosing check (or any function returning `Result<_, Why>`) with a
/// formatted failure message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::Why::new(format_args!($($arg)*)))
    };
}

/// Ends the enclosing check with a formatted failure message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !($cond) {
            $crate::fail!($($arg)*);
        }
    };
}

/// Names the step that failed: `?` for any error that is `Debug`, and for a missing value.
pub trait Context<T> {
    /// `Err(e)` becomes the message "`what`: `e:?`"; `None` becomes "`what`".
    fn ctx(self, what: &str) -> Result<T, Why>;
}

impl<T, E: fmt::Debug> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Why> {
        self.map_err(|e| Why::new(format_args!("{}: {:?}", what, e)))
    }
}

impl<T> Context<T> for Option<T> {
    fn ctx(self, what: &str) -> Result<T, Why> {
        self.ok_or_else(|| Why::new(format_args!("{}", what)))
    }
}
