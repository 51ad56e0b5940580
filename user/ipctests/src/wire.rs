//! Messages as the kernel sees them: loading MR0.. by hand (untyped words, map, grant and
//! string items with every bit under the check's control), one raw Ipc with all that
//! comes back (tag, From, RDI, ErrorCode), and IPC outcomes as single words that worker
//! threads can report through [`crate::harness::Cells`].

use abi::error::{IpcError, IpcErrorCode, Phase};
use abi::fpage::Fpage;
use abi::msg::{MapItem, MsgTag, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time::{Time, Timeouts};

use crate::harness::{fail, Check};

/// Writes a message into the current thread's MRs: MR0 = a tag with `label`, `u =
/// untyped.len()`, `t = typed.len()`, then the untyped and the typed words. Returns the
/// tag. Words past MR63 are dropped (the tag still counts them: that is how a check
/// builds an overflowing message).
pub fn load(label: u64, untyped: &[u64], typed: &[u64]) -> MsgTag {
    let tag = MsgTag::new(label, untyped.len() as u8, typed.len() as u8);
    let _ = l4::utcb::set_mr(0, tag.raw());
    for (i, &w) in untyped.iter().chain(typed.iter()).enumerate() {
        let _ = l4::utcb::set_mr(i + 1, w);
    }
    tag
}

/// The two words of a map item (`grant = false`) or grant item; `more` is the C bit.
pub fn map_item(fpage: Fpage, snd_base: u64, grant: bool, more: bool) -> [u64; 2] {
    let item = if grant {
        MapItem::grant(fpage, snd_base)
    } else {
        MapItem::map(fpage, snd_base)
    };
    item.with_more(more).encode()
}

/// Most words of one string item built here (header and up to 7 pointers).
pub const STRING_ITEM_MAX: usize = 8;

/// A string item: `length` bytes from each of `ptrs`; `compound` is flag c, `more` the C
/// bit. Returns the words and how many of them are used.
pub fn string_item(
    length: u64,
    ptrs: &[u64],
    compound: bool,
    more: bool,
) -> ([u64; STRING_ITEM_MAX], usize) {
    let n = ptrs.len().clamp(1, STRING_ITEM_MAX - 1);
    let header = StringItemHeader {
        length,
        substrings: n as u8,
        compound,
        more,
        cache_hint: 0,
    };
    let mut w = [0u64; STRING_ITEM_MAX];
    w[0] = header.encode();
    w[1..=n].copy_from_slice(&ptrs[..n]);
    (w, n + 1)
}

/// Everything one Ipc returns.
#[derive(Clone, Copy, Debug)]
pub struct Ret {
    /// MR0 as returned (R9).
    pub tag: MsgTag,
    /// RSI: From.
    pub from: ThreadId,
    /// RDI as returned (the binding demands the caller's local id).
    pub rdi: u64,
    /// The ErrorCode TCR after the call (cleared before it).
    pub error: u64,
}

impl Ret {
    /// Did the IPC fail (flag e)?
    pub fn failed(&self) -> bool {
        self.tag.error()
    }

    /// The outcome word (see [`outcome`]).
    pub fn outcome(&self) -> u64 {
        if self.failed() {
            self.error | FAILED
        } else {
            OK
        }
    }
}

/// One Ipc with MR1.. as they are in the UTCB and MR0 = `tag`.
pub fn ipc(to: ThreadId, from: ThreadId, timeouts: Timeouts, tag: MsgTag) -> Ret {
    l4::utcb::set_error_code(0);
    let r = l4::syscall::ipc(to, from, timeouts, tag);
    Ret {
        tag: r.tag,
        from: r.from,
        rdi: r.rdi,
        error: l4::utcb::error_code(),
    }
}

/// The Timeouts word of a send and a receive timeout.
pub fn tmo(send: Time, receive: Time) -> Timeouts {
    Timeouts::new(send.encode(), receive.encode())
}

/// A period of `ms` milliseconds.
pub const fn ms(ms: u64) -> Time {
    Time::Period { us: ms * 1000 }
}

/// A generous bound for waits that should end at once in a working kernel.
pub const LONG: Time = ms(3000);

/// Outcome word of a successful IPC. Outcome words are never 0, so a word still 0 means
/// "nothing reported yet".
pub const OK: u64 = 1 << 62;
/// Outcome bit of a failed IPC; the ErrorCode value is in the low bits.
pub const FAILED: u64 = 1 << 61;

/// The outcome word of an l4-library IPC result.
pub fn outcome<T>(r: &Result<T, l4::ipc::IpcFailure>) -> u64 {
    match r {
        Ok(_) => OK,
        Err(l4::ipc::IpcFailure::Ipc(e)) => e.encode() | FAILED,
        Err(l4::ipc::IpcFailure::Unknown(x)) => (x & 0xFFFF_FFFF) | FAILED | 1 << 60,
    }
}

/// The outcome word of an error.
pub const fn err_word(code: IpcErrorCode, phase: Phase) -> u64 {
    IpcError::new(code, phase).encode() | FAILED
}

/// Describes an outcome word for a failure message.
pub struct Shown(pub u64);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => f.write_str("nothing (no report)"),
            OK => f.write_str("success"),
            w if w & FAILED != 0 => match IpcError::decode(w & !FAILED & ((1 << 60) - 1)) {
                Some(e) if e.offset != 0 => {
                    write!(f, "{:?}/{:?} (offset {})", e.code, e.phase, e.offset)
                }
                Some(e) => write!(f, "{:?}/{:?}", e.code, e.phase),
                None => write!(f, "a failure with ErrorCode {:#x}", w & !FAILED),
            },
            w => write!(f, "the undefined outcome {:#x}", w),
        }
    }
}

/// Passes if the outcome word `got` is exactly `code` in `phase` (an offset, where the
/// code has one, is not compared).
pub fn expect_err(got: u64, code: IpcErrorCode, phase: Phase) -> Check {
    let want = err_word(code, phase);
    let masked = if got & FAILED != 0 && code.has_offset() {
        got & !(((1u64 << 56) - 1) << 4)
    } else {
        got
    };
    if masked == want {
        return Ok(());
    }
    fail!(
        "expected {:?} in the {:?} phase, got {}",
        code,
        phase,
        Shown(got)
    )
}

/// Passes if the outcome word `got` is success.
pub fn expect_ok(got: u64, what: &str) -> Check {
    if got == OK {
        return Ok(());
    }
    fail!("{}: {}", what, Shown(got))
}
