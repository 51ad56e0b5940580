//! Flexpages: memory fpages (§1.2), IO fpages (§1.3) and access rights.
//!
//! ```text
//! memory fpage:
//!  63                                       10 9        4  3  2 1 0
//! +-------------------------------------------+----------+---+-+-+-+
//! |            base >> 10                      | s=log2sz | e |r|w|x|
//! +-------------------------------------------+----------+---+-+-+-+
//! IO fpage:
//!  63          32 31          16 15       10 9        4 3       0
//! +--------------+--------------+-----------+----------+---------+
//! |   (unused)   |  first port  | s=log2 n  | 000010   | rights  |
//! +--------------+--------------+-----------+----------+---------+
//! ```
//!
//! Special memory fpages: nil (raw 0) and the complete address space
//! (s = 1, base 0: raw `0x10 | rights`). The base is *defined* as the raw word
//! with its low `s` bits (and the low 10 bits) cleared, so an unaligned base
//! in the word is not an error: it is ignored, as Pistachio and its user
//! library do (`L4_FpageLog2(addr, 12)` with an unaligned `addr` is common).

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign};

/// Access rights: bit 0 x, bit 1 w, bit 2 r.
///
/// # Invariants
/// Only bits 0..2 may be set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u8);

impl Rights {
    /// No access.
    pub const NONE: Self = Self(0);
    /// Executable.
    pub const X: Self = Self(1);
    /// Writable.
    pub const W: Self = Self(2);
    /// Readable.
    pub const R: Self = Self(4);
    /// Read and write (`ReadWriteOnly`, 6).
    pub const RW: Self = Self(6);
    /// Read and execute (`ReadeXecOnly`, 5).
    pub const RX: Self = Self(5);
    /// Everything (`FullyAccessible`, 7).
    pub const RWX: Self = Self(7);

    /// The rights in the low three bits of `bits`; other bits are dropped.
    #[inline]
    pub const fn from_bits_truncate(bits: u64) -> Self {
        Self((bits & 7) as u8)
    }

    /// The rights as bits 0..2.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Does `self` include all of `other`?
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// No right at all?
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Rights in either.
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Rights in both.
    #[inline]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Rights in `self` but not in `other`.
    #[inline]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitOr for Rights {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitAnd for Rights {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        self.intersection(rhs)
    }
}

impl BitOrAssign for Rights {
    #[inline]
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

impl BitAndAssign for Rights {
    #[inline]
    fn bitand_assign(&mut self, rhs: Self) {
        *self = self.intersection(rhs);
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: Self, ch: char| if self.contains(bit) { ch } else { '-' };
        write!(
            f,
            "{}{}{}",
            c(Self::R, 'r'),
            c(Self::W, 'w'),
            c(Self::X, 'x')
        )
    }
}

/// The size-field value that marks an IO fpage.
pub const IO_FPAGE_MARKER: u8 = 2;
/// The size-field value of the complete address space.
const COMPLETE_SIZE: u8 = 1;
/// Smallest page the kernel maps (4 KB): smaller memory fpages count as nil.
pub const MIN_LOG2SIZE: u8 = 12;

/// A memory fpage word as user space wrote it (any bit pattern).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fpage(pub u64);

impl Fpage {
    /// The nil fpage.
    pub const NIL: Self = Self(0);

    /// The fpage of `2^log2size` bytes containing `base` (low bits of `base`
    /// dropped) with `rights`. `log2size` is taken modulo 64.
    #[inline]
    pub const fn new(base: u64, log2size: u8, rights: Rights) -> Self {
        let s = (log2size & 0x3F) as u32;
        Self((base & low_clear_mask(s)) | ((s as u64) << 4) | rights.0 as u64)
    }

    /// The complete address space with `rights` (raw `0x10 | rights`).
    #[inline]
    pub const fn complete(rights: Rights) -> Self {
        Self(0x10 | rights.0 as u64)
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Size field s: bits 4..9.
    #[inline]
    pub const fn log2size(self) -> u8 {
        ((self.0 >> 4) & 0x3F) as u8
    }

    /// Rights: bits 0..2.
    #[inline]
    pub const fn rights(self) -> Rights {
        Rights::from_bits_truncate(self.0)
    }

    /// The same fpage with `rights` instead.
    #[inline]
    pub const fn with_rights(self, rights: Rights) -> Self {
        Self((self.0 & !7) | rights.0 as u64)
    }

    /// Bit 3, "extended": sigma0 reads it as "MR3 carries the physical
    /// address bits above 32" (§5.7). Reserved for the kernel.
    #[inline]
    pub const fn extended(self) -> bool {
        self.0 & 8 != 0
    }

    /// Nil: size 0 and base 0 (rights and bit 3 are not looked at).
    #[inline]
    pub const fn is_nil(self) -> bool {
        self.0 >> 4 == 0
    }

    /// The complete address space: size field 1 and base 0.
    #[inline]
    pub const fn is_complete(self) -> bool {
        self.0 >> 4 == COMPLETE_SIZE as u64
    }

    /// An IO fpage: size field == 2 (§1.3); read it through [`IoFpage`].
    #[inline]
    pub const fn is_io(self) -> bool {
        self.log2size() == IO_FPAGE_MARKER
    }

    /// X.2's rule for memory fpages: any size below the smallest page
    /// (2^12) other than the complete-space marker 1 denotes the nil page.
    /// IO fpages (size field 2) are included: check [`Fpage::is_io`] first
    /// where IO fpages are allowed.
    #[inline]
    pub const fn is_effectively_nil(self) -> bool {
        (self.log2size() < MIN_LOG2SIZE) & !self.is_complete()
    }

    /// Base address: the raw word with its low `s` bits and low 10 bits
    /// cleared. Zero for the complete space.
    #[inline]
    pub const fn base(self) -> u64 {
        self.0 & low_clear_mask(self.log2size() as u32)
    }

    /// Size in bytes, `1 << s`. The complete space (2^64 bytes) saturates to
    /// `u64::MAX`; use [`Fpage::end`] for an exact bound. Meaningless for nil.
    #[inline]
    pub const fn size(self) -> u64 {
        if self.is_complete() {
            u64::MAX
        } else {
            1 << self.log2size()
        }
    }

    /// Address of the last byte (inclusive), so that the complete space and
    /// the top 2^63 bytes do not overflow: `base + size - 1`.
    #[inline]
    pub const fn end(self) -> u64 {
        if self.is_complete() {
            u64::MAX
        } else {
            // `base` is aligned to `1 << s` (or to 1 KB when s < 10, where
            // the size is smaller than the alignment), so this cannot wrap.
            self.base() | ((1u64 << self.log2size()) - 1)
        }
    }

    /// Check the X.2 rules for a memory fpage: not IO, log2size in 12..=63
    /// or the complete space. The base needs no check (see the module doc).
    #[inline]
    pub const fn try_validate(self) -> Result<ValidFpage, FpageError> {
        if self.is_complete() {
            Ok(ValidFpage(Self(self.0 & 0x1F)))
        } else if self.is_nil() {
            Err(FpageError::Nil)
        } else if self.is_io() {
            Err(FpageError::Io)
        } else if self.log2size() < MIN_LOG2SIZE {
            Err(FpageError::TooSmall(self.log2size()))
        } else {
            Ok(ValidFpage(Self(self.base() | (self.0 & 0x3FF))))
        }
    }
}

/// `!(2^max(s,10) - 1)`: clears the bits below the base.
#[inline]
const fn low_clear_mask(s: u32) -> u64 {
    !((1u64 << s) - 1) & !0x3FF
}

impl fmt::Debug for Fpage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nil() {
            write!(f, "Fpage(nil)")
        } else if self.is_complete() {
            write!(f, "Fpage(complete, {:?})", self.rights())
        } else if self.is_io() {
            write!(f, "{:?}", IoFpage(self.0))
        } else {
            write!(
                f,
                "Fpage({:#x}, 2^{}, {:?})",
                self.base(),
                self.log2size(),
                self.rights()
            )
        }
    }
}

/// Why a word is not a usable memory fpage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FpageError {
    /// The nil fpage.
    Nil,
    /// Size below 2^12 (not the complete marker): X.2 treats it as nil.
    TooSmall(u8),
    /// An IO fpage where a memory fpage was expected.
    Io,
}

/// A memory fpage checked by [`Fpage::try_validate`].
///
/// # Invariants
/// Either the complete space (raw `0x10 | rights`, with bit 3 possibly set)
/// or `12 <= log2size <= 63` with the raw base bits below `log2size` clear.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ValidFpage(Fpage);

impl ValidFpage {
    /// The checked word (base bits below the size cleared).
    #[inline]
    pub const fn fpage(self) -> Fpage {
        self.0
    }

    /// Is this the complete address space?
    #[inline]
    pub const fn is_complete(self) -> bool {
        self.0.is_complete()
    }

    /// log2 of the size: 12..=63, or 64 for the complete space.
    #[inline]
    pub const fn log2size(self) -> u8 {
        if self.is_complete() {
            64
        } else {
            self.0.log2size()
        }
    }

    /// Base address (aligned to the size; 0 for the complete space).
    #[inline]
    pub const fn base(self) -> u64 {
        self.0.base()
    }

    /// Size in bytes; the complete space saturates to `u64::MAX`.
    #[inline]
    pub const fn size(self) -> u64 {
        self.0.size()
    }

    /// Last byte (inclusive).
    #[inline]
    pub const fn end(self) -> u64 {
        self.0.end()
    }

    /// Access rights.
    #[inline]
    pub const fn rights(self) -> Rights {
        self.0.rights()
    }

    /// Does the fpage cover `addr`?
    #[inline]
    pub const fn contains(self, addr: u64) -> bool {
        (addr >= self.base()) & (addr <= self.end())
    }
}

impl TryFrom<Fpage> for ValidFpage {
    type Error = FpageError;
    #[inline]
    fn try_from(f: Fpage) -> Result<Self, FpageError> {
        f.try_validate()
    }
}

impl From<ValidFpage> for Fpage {
    #[inline]
    fn from(v: ValidFpage) -> Self {
        v.0
    }
}

/// Number of x86 IO ports (the complete IO space is 2^16 ports).
pub const IO_PORTS: u32 = 1 << 16;

/// An IO fpage word (§1.3). [`IoFpage::new`] and the field accessors take
/// any bit pattern; `TryFrom<Fpage>` is the checked way in.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IoFpage(pub u64);

impl IoFpage {
    /// The complete IO space (ports 0..65536) with `rights`.
    pub const fn complete(rights: Rights) -> Self {
        Self::new(0, 16, rights)
    }

    /// `2^log2count` ports from `port` with `rights`. No check: an unaligned
    /// `port` stays as given (IO page-fault messages carry the faulting
    /// port with the access width, §5.2).
    #[inline]
    pub const fn new(port: u16, log2count: u8, rights: Rights) -> Self {
        Self(
            rights.0 as u64
                | (IO_FPAGE_MARKER as u64) << 4
                | ((log2count & 0x3F) as u64) << 10
                | (port as u64) << 16,
        )
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// First port: bits 16..31.
    #[inline]
    pub const fn port(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// log2 of the number of ports: bits 10..15.
    #[inline]
    pub const fn log2count(self) -> u8 {
        ((self.0 >> 10) & 0x3F) as u8
    }

    /// Number of ports, `1 << log2count`.
    #[inline]
    pub const fn count(self) -> u64 {
        1 << self.log2count()
    }

    /// Rights (bits 0..2).
    #[inline]
    pub const fn rights(self) -> Rights {
        Rights::from_bits_truncate(self.0)
    }

    /// Last port covered (inclusive); meaningful after the `TryFrom` check.
    #[inline]
    pub const fn last_port(self) -> u16 {
        (self.port() as u64 + self.count() - 1) as u16
    }
}

impl fmt::Debug for IoFpage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IoFpage(port {:#x}, 2^{}, {:?})",
            self.port(),
            self.log2count(),
            self.rights()
        )
    }
}

/// Why a word is not a usable IO fpage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoFpageError {
    /// Size field is not the IO marker 2.
    NotIo,
    /// More than 2^16 ports.
    TooLarge(u8),
    /// First port not aligned to the number of ports.
    Unaligned,
}

impl TryFrom<Fpage> for IoFpage {
    type Error = IoFpageError;

    /// Checks the marker, `log2count <= 16` and port alignment (which
    /// together keep the range inside the 65536 ports). Bits 32..63 are
    /// unused: they are cleared in the result.
    #[inline]
    fn try_from(f: Fpage) -> Result<Self, IoFpageError> {
        let io = IoFpage(f.0 & 0xFFFF_FFFF);
        if !f.is_io() {
            Err(IoFpageError::NotIo)
        } else if io.log2count() > 16 {
            Err(IoFpageError::TooLarge(io.log2count()))
        } else if io.port() as u64 & (io.count() - 1) != 0 {
            Err(IoFpageError::Unaligned)
        } else {
            Ok(io)
        }
    }
}

impl From<IoFpage> for Fpage {
    #[inline]
    fn from(io: IoFpage) -> Self {
        Fpage(io.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rights_ops() {
        assert_eq!(Rights::R | Rights::W, Rights::RW);
        assert_eq!(Rights::RWX & Rights::RX, Rights::RX);
        assert!(Rights::RWX.contains(Rights::W));
        assert!(!Rights::RX.contains(Rights::W));
        assert!(Rights::NONE.is_empty());
        assert_eq!(Rights::RWX.difference(Rights::W), Rights::RX);
        assert_eq!(Rights::from_bits_truncate(0xFF), Rights::RWX);
        assert_eq!(format!("{:?}", Rights::RX), "r-x");
        let mut r = Rights::R;
        r |= Rights::X;
        r &= Rights::RX;
        assert_eq!(r, Rights::RX);
    }

    #[test]
    fn new_and_fields() {
        let f = Fpage::new(0x4000_0000, 21, Rights::RW);
        assert_eq!(f.raw(), 0x4000_0000 | 21 << 4 | 6);
        assert_eq!(
            (f.base(), f.log2size(), f.size(), f.rights()),
            (0x4000_0000, 21, 0x20_0000, Rights::RW)
        );
        assert_eq!(f.end(), 0x401F_FFFF);
        // Unaligned base bits are dropped by `new` and ignored by `base`.
        assert_eq!(Fpage::new(0x1234_5678, 12, Rights::R).base(), 0x1234_5000);
        assert_eq!(Fpage(0x1234_5678 & !0x3FF | 12 << 4).base(), 0x1234_5000);
        assert_eq!(
            Fpage::new(0, 12, Rights::R).with_rights(Rights::X).rights(),
            Rights::X
        );
        assert!(Fpage(8 | 12 << 4).extended());
    }

    #[test]
    fn special_fpages() {
        assert!(Fpage::NIL.is_nil() && Fpage(7).is_nil());
        let c = Fpage::complete(Rights::RWX);
        assert_eq!(c.raw(), 0x17);
        assert!(c.is_complete() && !c.is_nil());
        assert_eq!((c.base(), c.size(), c.end()), (0, u64::MAX, u64::MAX));
        // Size 1 with a base is not the complete space.
        assert!(!Fpage(0x400 | 0x10).is_complete());
        let top = Fpage::new(0x8000_0000_0000_0000, 63, Rights::R);
        assert_eq!(top.end(), u64::MAX);
    }

    #[test]
    fn validation() {
        assert_eq!(Fpage::NIL.try_validate(), Err(FpageError::Nil));
        assert_eq!(
            Fpage::new(0x1000, 11, Rights::R).try_validate(),
            Err(FpageError::TooSmall(11))
        );
        assert_eq!(
            Fpage(0x400 | 1 << 4).try_validate(),
            Err(FpageError::TooSmall(1))
        );
        assert_eq!(
            Fpage::new(0x1000, 0, Rights::R).try_validate(),
            Err(FpageError::TooSmall(0))
        );
        assert_eq!(
            Fpage(IoFpage::new(0x60, 0, Rights::RW).0).try_validate(),
            Err(FpageError::Io)
        );
        assert!(Fpage::new(0x1000, 11, Rights::R).is_effectively_nil());
        assert!(!Fpage::complete(Rights::R).is_effectively_nil());

        let v = ValidFpage::try_from(Fpage(0x1234_5678 & !0x3FF | 12 << 4 | 5)).unwrap();
        assert_eq!(v.fpage().raw(), 0x1234_5000 | 12 << 4 | 5);
        assert!(v.contains(0x1234_5FFF) && !v.contains(0x1234_6000));
        assert_eq!(v.log2size(), 12);

        let c = Fpage::complete(Rights::RW).try_validate().unwrap();
        assert_eq!((c.log2size(), c.base(), c.end()), (64, 0, u64::MAX));
        assert!(c.contains(0) && c.contains(u64::MAX));
        assert_eq!(Fpage::from(c), Fpage::complete(Rights::RW));
        assert_eq!(
            Fpage::new(0, 63, Rights::R).try_validate().unwrap().size(),
            1 << 63
        );
    }

    #[test]
    fn io_fpages() {
        let io = IoFpage::new(0x3F8, 3, Rights::RW);
        assert_eq!(io.raw(), 6 | 2 << 4 | 3 << 10 | 0x3F8 << 16);
        assert_eq!(
            (io.port(), io.log2count(), io.count(), io.last_port()),
            (0x3F8, 3, 8, 0x3FF)
        );
        assert!(Fpage::from(io).is_io());
        assert_eq!(IoFpage::try_from(Fpage::from(io)), Ok(io));

        let all = IoFpage::complete(Rights::RWX);
        assert_eq!((all.count(), all.last_port()), (65536, 0xFFFF));
        assert_eq!(IoFpage::try_from(Fpage::from(all)), Ok(all));

        assert_eq!(
            IoFpage::try_from(Fpage::new(0x1000, 12, Rights::R)),
            Err(IoFpageError::NotIo)
        );
        assert_eq!(
            IoFpage::try_from(Fpage::from(IoFpage::new(0, 17, Rights::R))),
            Err(IoFpageError::TooLarge(17))
        );
        assert_eq!(
            IoFpage::try_from(Fpage::from(IoFpage::new(0x3F9, 1, Rights::R))),
            Err(IoFpageError::Unaligned)
        );
        // Unused high bits are dropped.
        let dirty = Fpage(io.raw() | 0xABCD << 40);
        assert_eq!(IoFpage::try_from(dirty), Ok(io));
    }

    #[test]
    fn debug_forms() {
        assert_eq!(format!("{:?}", Fpage::NIL), "Fpage(nil)");
        assert_eq!(
            format!("{:?}", Fpage::new(0x2000, 12, Rights::R)),
            "Fpage(0x2000, 2^12, r--)"
        );
        assert_eq!(
            format!("{:?}", Fpage::complete(Rights::RWX)),
            "Fpage(complete, rwx)"
        );
    }

    proptest! {
        #[test]
        fn new_round_trips(base: u64, s in 12u8..=63, r in 0u8..8) {
            let f = Fpage::new(base, s, Rights::from_bits_truncate(r as u64));
            let mask = (1u64 << s) - 1;
            prop_assert_eq!(f.base(), base & !mask);
            prop_assert_eq!(f.log2size(), s);
            prop_assert_eq!(f.rights().bits(), r);
            prop_assert_eq!(f.end(), (base & !mask) + mask);
            let v = f.try_validate().unwrap();
            prop_assert_eq!(v.fpage(), f);
            prop_assert!(v.contains(base));
        }

        #[test]
        fn validation_total(raw: u64) {
            // Every word either validates or gives an error; valid ones are aligned.
            match Fpage(raw).try_validate() {
                Ok(v) if !v.is_complete() => {
                    prop_assert!(v.log2size() >= 12);
                    prop_assert_eq!(v.base() & (v.size() - 1), 0);
                }
                Ok(v) => prop_assert_eq!(v.base(), 0),
                Err(_) => prop_assert!(Fpage(raw).is_effectively_nil()),
            }
        }

        #[test]
        fn io_round_trips(port: u16, s in 0u8..=16, r in 0u8..8) {
            let port = if s == 16 { 0 } else { port & !((1u16 << s) - 1) };
            let io = IoFpage::new(port, s, Rights::from_bits_truncate(r as u64));
            prop_assert_eq!((io.port(), io.log2count(), io.rights().bits()), (port, s, r));
            prop_assert_eq!(IoFpage::try_from(Fpage::from(io)), Ok(io));
            prop_assert!(io.port() as u64 + io.count() <= IO_PORTS as u64);
        }
    }
}
