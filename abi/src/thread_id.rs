//! Thread identifiers (X.2 `ThreadId`, §1.1).
//!
//! ```text
//!  63                          32 31                            0
//! +------------------------------+-------------------------------+
//! |        thread number         |            version            |  global id
//! +------------------------------+-------------------------------+
//! |                 local id (MR0 address)              | 000000 |  local id
//! +-----------------------------------------------------+--------+
//!                                                          5    0
//! ```
//!
//! A global id has at least one non-zero bit among bits 0..5 (in its
//! version); a local id has those six bits zero and is the address of MR0 of
//! the thread's UTCB in its own address space. Special values: nil (0), any
//! (all ones), any-local (bits 6..63 ones, 0..5 zero).

use core::fmt;

/// Thread-number bits the kernel honours (KIP ThreadInfo `t`). Ids carry 32
/// bits of thread number, TCBs are looked up by the low 18 of them and then
/// the whole stored id is compared.
pub const THREAD_NO_BITS: u32 = 18;

/// Mask of the version bits that decide global vs local (bits 0..5).
const LOCAL_MASK: u64 = 0x3F;

/// A thread id word exactly as it travels in registers and the UTCB.
///
/// Every bit pattern is representable; the predicates tell which form it has.
/// Use [`GlobalId`] where only a global id is acceptable.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ThreadId(pub u64);

impl ThreadId {
    /// `nilthread`: no thread.
    pub const NIL: Self = Self(0);
    /// `anythread`: wildcard for receive.
    pub const ANY: Self = Self(!0);
    /// `anylocalthread`: wildcard for receive from the caller's own space.
    pub const ANY_LOCAL: Self = Self(!0 << 6);

    /// The global id `(number, version)`: number in bits 32..63, version in
    /// bits 0..31. It is a valid global id only if `version & 0x3F != 0`.
    #[inline]
    pub const fn global(number: u32, version: u32) -> Self {
        Self(((number as u64) << 32) | version as u64)
    }

    /// The local id whose value is `mr0_address` (the address of MR0 of a
    /// UTCB). The low six bits of the address are dropped.
    #[inline]
    pub const fn local(mr0_address: u64) -> Self {
        Self(mr0_address & !LOCAL_MASK)
    }

    /// The id of interrupt thread `irq` (thread number `irq`, version 1,
    /// §5.4). Meaningful only for `irq` below the KIP SystemBase.
    #[inline]
    pub const fn interrupt(irq: u32) -> Self {
        Self::global(irq, 1)
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Thread number: bits 32..63.
    #[inline]
    pub const fn number(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Version: bits 0..31.
    #[inline]
    pub const fn version(self) -> u32 {
        self.0 as u32
    }

    /// The thread number reduced to the [`THREAD_NO_BITS`] the kernel honours
    /// (the index of its TCB slot).
    #[inline]
    pub const fn tcb_index(self) -> u32 {
        self.number() & ((1 << THREAD_NO_BITS) - 1)
    }

    /// `nilthread`?
    #[inline]
    pub const fn is_nil(self) -> bool {
        self.0 == 0
    }

    /// `anythread`?
    #[inline]
    pub const fn is_any(self) -> bool {
        self.0 == !0
    }

    /// `anylocalthread`?
    #[inline]
    pub const fn is_any_local(self) -> bool {
        self.0 == Self::ANY_LOCAL.0
    }

    /// A global id: some bit among 0..5 set, and not `anythread`.
    #[inline]
    pub const fn is_global(self) -> bool {
        (self.0 & LOCAL_MASK != 0) & (self.0 != !0)
    }

    /// A local id: bits 0..5 zero, and neither nil nor `anylocalthread`.
    #[inline]
    pub const fn is_local(self) -> bool {
        (self.0 & LOCAL_MASK == 0) & (self.0 != 0) & (self.0 != Self::ANY_LOCAL.0)
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nil() {
            f.write_str("ThreadId(nil)")
        } else if self.is_any() {
            f.write_str("ThreadId(any)")
        } else if self.is_any_local() {
            f.write_str("ThreadId(any_local)")
        } else if self.is_local() {
            write!(f, "ThreadId(local {:#x})", self.0)
        } else {
            write!(f, "ThreadId({}.{})", self.number(), self.version())
        }
    }
}

impl From<u64> for ThreadId {
    #[inline]
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl From<ThreadId> for u64 {
    #[inline]
    fn from(id: ThreadId) -> Self {
        id.0
    }
}

/// Why a word is not a [`GlobalId`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ThreadIdError {
    /// `nilthread`.
    Nil,
    /// `anythread` or `anylocalthread`.
    Wildcard,
    /// A local id (bits 0..5 zero).
    Local,
}

/// A thread id checked to be global (see [`ThreadId::is_global`]).
///
/// # Invariants
/// `self.0.is_global()`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct GlobalId(ThreadId);

impl GlobalId {
    /// The checked id.
    #[inline]
    pub const fn id(self) -> ThreadId {
        self.0
    }

    /// Thread number: bits 32..63.
    #[inline]
    pub const fn number(self) -> u32 {
        self.0.number()
    }

    /// Version: bits 0..31 (never zero in bits 0..5).
    #[inline]
    pub const fn version(self) -> u32 {
        self.0.version()
    }

    /// See [`ThreadId::tcb_index`].
    #[inline]
    pub const fn tcb_index(self) -> u32 {
        self.0.tcb_index()
    }
}

impl TryFrom<ThreadId> for GlobalId {
    type Error = ThreadIdError;

    #[inline]
    fn try_from(id: ThreadId) -> Result<Self, ThreadIdError> {
        if id.is_global() {
            Ok(Self(id))
        } else if id.is_nil() {
            Err(ThreadIdError::Nil)
        } else if id.is_any() || id.is_any_local() {
            Err(ThreadIdError::Wildcard)
        } else {
            Err(ThreadIdError::Local)
        }
    }
}

impl From<GlobalId> for ThreadId {
    #[inline]
    fn from(id: GlobalId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn special_values() {
        assert_eq!(ThreadId::NIL.raw(), 0);
        assert_eq!(ThreadId::ANY.raw(), 0xFFFF_FFFF_FFFF_FFFF);
        assert_eq!(ThreadId::ANY_LOCAL.raw(), 0xFFFF_FFFF_FFFF_FFC0);
        for id in [ThreadId::NIL, ThreadId::ANY, ThreadId::ANY_LOCAL] {
            assert!(!id.is_global(), "{id:?}");
            assert!(!id.is_local(), "{id:?}");
        }
        assert!(
            ThreadId::NIL.is_nil() && ThreadId::ANY.is_any() && ThreadId::ANY_LOCAL.is_any_local()
        );
    }

    #[test]
    fn global_and_local_forms() {
        let sigma0 = ThreadId::global(48, 1);
        assert_eq!(sigma0.raw(), 0x30_0000_0001);
        assert!(sigma0.is_global() && !sigma0.is_local());
        assert_eq!((sigma0.number(), sigma0.version()), (48, 1));

        // Version with only high bits set is not a global id (it looks local).
        let odd = ThreadId::global(5, 0x40);
        assert!(!odd.is_global() && odd.is_local());

        let local = ThreadId::local(0xBF00_0200);
        assert!(local.is_local() && !local.is_global());
        assert_eq!(ThreadId::local(0xBF00_0207).raw(), 0xBF00_0200);
        assert_eq!(ThreadId::interrupt(9).raw(), 9 << 32 | 1);
    }

    #[test]
    fn tcb_index_uses_18_bits() {
        assert_eq!(ThreadId::global(0x4_0001, 1).tcb_index(), 1);
        assert_eq!(ThreadId::global(0x3_FFFF, 1).tcb_index(), 0x3_FFFF);
    }

    #[test]
    fn global_id_checked() {
        assert_eq!(GlobalId::try_from(ThreadId::NIL), Err(ThreadIdError::Nil));
        assert_eq!(
            GlobalId::try_from(ThreadId::ANY),
            Err(ThreadIdError::Wildcard)
        );
        assert_eq!(
            GlobalId::try_from(ThreadId::ANY_LOCAL),
            Err(ThreadIdError::Wildcard)
        );
        assert_eq!(
            GlobalId::try_from(ThreadId::local(0x1000)),
            Err(ThreadIdError::Local)
        );
        let g = GlobalId::try_from(ThreadId::global(50, 1)).unwrap();
        assert_eq!((g.number(), g.version()), (50, 1));
        assert_eq!(ThreadId::from(g), ThreadId::global(50, 1));
    }

    #[test]
    fn debug_is_readable() {
        assert_eq!(format!("{:?}", ThreadId::global(48, 1)), "ThreadId(48.1)");
        assert_eq!(format!("{:?}", ThreadId::NIL), "ThreadId(nil)");
        assert_eq!(
            format!("{:?}", ThreadId::local(0x200)),
            "ThreadId(local 0x200)"
        );
    }

    proptest! {
        #[test]
        fn global_round_trip(number: u32, version: u32) {
            let id = ThreadId::global(number, version);
            prop_assert_eq!((id.number(), id.version()), (number, version));
            prop_assert_eq!(ThreadId::from(id.raw()), id);
        }

        #[test]
        fn exactly_one_form(raw: u64) {
            let id = ThreadId(raw);
            let forms = [id.is_nil(), id.is_any(), id.is_any_local(), id.is_global(), id.is_local()];
            prop_assert_eq!(forms.iter().filter(|&&b| b).count(), 1);
            prop_assert_eq!(GlobalId::try_from(id).is_ok(), id.is_global());
        }
    }
}
