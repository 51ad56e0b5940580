//! Small value types used throughout the mapping database: space and node
//! handles, access rights, hardware page sizes, validated regions and errors.
//!
//! Every type that can be built from an untrusted number has exactly one
//! checked constructor (`TryFrom` or `new` returning `Result`); unknown values
//! are errors, never panics.

use core::fmt;
use core::num::NonZeroU32;
use core::ops::{BitAnd, BitOr, BitOrAssign};

/// An address space, named by the kernel. The database never interprets it
/// beyond equality (and [`Config::sigma0`](crate::Config::sigma0)).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SpaceId(pub u32);

/// Handle of one mapping node inside the kernel's [`Store`](crate::Store).
///
/// A small `Copy` index (`0 ..= NodeId::MAX_INDEX`); `Option<NodeId>` is as
/// small as `NodeId` itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(NonZeroU32);

impl NodeId {
    /// The largest index a `NodeId` can carry.
    pub const MAX_INDEX: u32 = u32::MAX - 1;

    /// The handle of slot `index`, or `None` if `index > MAX_INDEX`.
    pub const fn from_index(index: u32) -> Option<NodeId> {
        match index.checked_add(1) {
            Some(raw) => match NonZeroU32::new(raw) {
                Some(nz) => Some(NodeId(nz)),
                None => None,
            },
            None => None,
        }
    }

    /// The slot index this handle names.
    pub const fn index(self) -> u32 {
        self.0.get() - 1
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.index())
    }
}

/// A set of access rights in the X.2 fpage encoding: `R` = 4, `W` = 2,
/// `X` = 1.
///
/// The same type carries *accessed* status (X.2's "referenced / written /
/// executed" bits returned by unmap): `R` = referenced, `W` = written
/// (dirty), `X` = executed. How those are derived from the hardware's
/// accessed/dirty bits is the kernel's [`Tables`](crate::Tables) business.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rights(u8);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Execute.
    pub const X: Rights = Rights(1);
    /// Write.
    pub const W: Rights = Rights(2);
    /// Read.
    pub const R: Rights = Rights(4);
    /// Read and write.
    pub const RW: Rights = Rights(6);
    /// Read and execute.
    pub const RX: Rights = Rights(5);
    /// Read, write and execute.
    pub const ALL: Rights = Rights(7);

    /// The raw three bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The low three bits of `raw` (the rights field of an fpage word).
    pub const fn from_low_bits(raw: u64) -> Rights {
        Rights((raw & 7) as u8)
    }

    /// Rights in either set.
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// Rights in both sets.
    pub const fn intersect(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }

    /// Rights in `self` but not in `other`.
    pub const fn minus(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    /// Whether every right in `other` is also in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Rights from a raw byte: values above 7 are errors.
impl TryFrom<u8> for Rights {
    type Error = Error;
    fn try_from(raw: u8) -> Result<Rights, Error> {
        if raw <= 7 {
            Ok(Rights(raw))
        } else {
            Err(Error::BadRights)
        }
    }
}

impl BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        self.union(rhs)
    }
}

impl BitOrAssign for Rights {
    fn bitor_assign(&mut self, rhs: Rights) {
        *self = self.union(rhs);
    }
}

impl BitAnd for Rights {
    type Output = Rights;
    fn bitand(self, rhs: Rights) -> Rights {
        self.intersect(rhs)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: Rights, ch: char| if self.contains(bit) { ch } else { '-' };
        write!(f, "{}{}{}", c(Rights::R, 'r'), c(Rights::W, 'w'), c(Rights::X, 'x'))
    }
}

/// The hardware page sizes of x86_64 long mode. Each is 512 times the next
/// smaller one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PageSize {
    /// 4 KiB (a page-table entry).
    Size4K,
    /// 2 MiB (a page-directory entry with PS set).
    Size2M,
    /// 1 GiB (a PDPT entry with PS set).
    Size1G,
}

/// How many pages of the next smaller size one page splits into.
pub const SPLIT_FANOUT: u64 = 512;

impl PageSize {
    /// All sizes, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    /// log2 of the size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size1G => 30,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The next smaller size (`None` for 4 KiB).
    pub const fn smaller(self) -> Option<PageSize> {
        match self {
            PageSize::Size4K => None,
            PageSize::Size2M => Some(PageSize::Size4K),
            PageSize::Size1G => Some(PageSize::Size2M),
        }
    }

    /// The largest size not above `max` whose byte count is at most
    /// `2^log2` and divides `align` (pass `0` for "no alignment limit").
    /// `None` if even 4 KiB does not fit.
    pub const fn largest_fitting(log2: u32, align: u64, max: PageSize) -> Option<PageSize> {
        let sizes = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K];
        let mut i = 0;
        while i < sizes.len() {
            let p = sizes[i];
            if p.shift() <= max.shift() && p.shift() <= log2 && align & (p.bytes() - 1) == 0 {
                return Some(p);
            }
            i += 1;
        }
        None
    }

    /// How many single-level splits take a page of this size down to `to`
    /// (0 if `to` is not smaller).
    pub const fn levels_above(self, to: PageSize) -> u32 {
        if self.shift() <= to.shift() {
            0
        } else {
            (self.shift() - to.shift()) / 9
        }
    }
}

/// log2 of a hardware page shift: `TryFrom<u8>` accepts exactly 12, 21 and 30.
impl TryFrom<u8> for PageSize {
    type Error = Error;
    fn try_from(shift: u8) -> Result<PageSize, Error> {
        match shift {
            12 => Ok(PageSize::Size4K),
            21 => Ok(PageSize::Size2M),
            30 => Ok(PageSize::Size1G),
            _ => Err(Error::BadRegion),
        }
    }
}

/// A validated, naturally aligned range of `2^log2` bytes
/// (`12 <= log2 <= 63`) that does not reach the top of the address space.
///
/// The kernel builds one from a user fpage after clipping it to the user
/// area and, for map/grant, after matching the send fpage against the
/// receive window (X.2's send-base rule): the database only ever sees the
/// final source region and destination base.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Region {
    base: u64,
    log2: u8,
}

impl Region {
    /// Smallest region: one 4 KiB page.
    pub const MIN_LOG2: u8 = 12;
    /// Largest region: half of the 64-bit space.
    pub const MAX_LOG2: u8 = 63;

    /// The one checked constructor: `base` must be aligned to `2^log2`,
    /// `log2` within `MIN_LOG2 ..= MAX_LOG2`, and `base + 2^log2` must not
    /// overflow.
    pub const fn new(base: u64, log2: u8) -> Result<Region, Error> {
        if log2 < Self::MIN_LOG2 || log2 > Self::MAX_LOG2 {
            return Err(Error::BadRegion);
        }
        let size = 1u64 << log2;
        if base & (size - 1) != 0 {
            return Err(Error::BadRegion);
        }
        if base.checked_add(size).is_none() {
            return Err(Error::BadRegion);
        }
        Ok(Region { base, log2 })
    }

    /// First byte.
    pub const fn base(self) -> u64 {
        self.base
    }

    /// log2 of the size.
    pub const fn log2(self) -> u8 {
        self.log2
    }

    /// Size in bytes.
    pub const fn size(self) -> u64 {
        1 << self.log2
    }

    /// One past the last byte (never overflows, by construction).
    pub const fn end(self) -> u64 {
        self.base + self.size()
    }
}

/// `(base, log2)` → region, with the checks of [`Region::new`].
impl TryFrom<(u64, u8)> for Region {
    type Error = Error;
    fn try_from((base, log2): (u64, u8)) -> Result<Region, Error> {
        Region::new(base, log2)
    }
}

/// The kernel could not supply storage (mapping nodes or page-table memory).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfMemory;

/// Why an operation was refused or stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// A region or page size that is misaligned, too small, too large or
    /// wraps around.
    BadRegion,
    /// A rights value with bits above the three rights bits.
    BadRights,
    /// The receiver of a map or grant is σ0, whose space is fixed.
    IntoSigma0,
    /// [`Mdb::add_root`](crate::Mdb::add_root) for a range σ0 already holds,
    /// or a size above [`Config::max_page`](crate::Config::max_page).
    RootOverlap,
    /// The kernel ran out of nodes or page-table memory. The operation was
    /// carried out on the part of its region below `stopped_at` (a source
    /// address for map/grant, a caller address for unmap) and not at all from
    /// there on; the database and page tables are consistent. `accessed` is
    /// the status gathered by an unmap up to that point.
    OutOfMemory {
        /// First address not processed.
        stopped_at: u64,
        /// Accessed status gathered before stopping (unmap only).
        accessed: Rights,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trip() {
        assert_eq!(NodeId::from_index(0).map(NodeId::index), Some(0));
        assert_eq!(NodeId::from_index(NodeId::MAX_INDEX).map(NodeId::index), Some(NodeId::MAX_INDEX));
        assert_eq!(NodeId::from_index(u32::MAX), None);
        assert_eq!(core::mem::size_of::<Option<NodeId>>(), 4);
    }

    #[test]
    fn rights_algebra() {
        assert_eq!(Rights::R | Rights::W, Rights::RW);
        assert_eq!(Rights::ALL.minus(Rights::W), Rights::RX);
        assert!(Rights::ALL.contains(Rights::RX));
        assert!(!Rights::RX.contains(Rights::W));
        assert_eq!(Rights::try_from(7), Ok(Rights::ALL));
        assert_eq!(Rights::try_from(8), Err(Error::BadRights));
        assert_eq!(Rights::from_low_bits(0xff), Rights::ALL);
        assert_eq!(format!("{:?}", Rights::RX), "r-x");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::Size2M.bytes(), 512 * PageSize::Size4K.bytes());
        assert_eq!(PageSize::Size1G.levels_above(PageSize::Size4K), 2);
        assert_eq!(PageSize::Size4K.levels_above(PageSize::Size2M), 0);
        assert_eq!(PageSize::try_from(21), Ok(PageSize::Size2M));
        assert_eq!(PageSize::try_from(22), Err(Error::BadRegion));
        let g = PageSize::Size1G;
        assert_eq!(PageSize::largest_fitting(40, 0, g), Some(PageSize::Size1G));
        assert_eq!(PageSize::largest_fitting(40, 1 << 21, g), Some(PageSize::Size2M));
        assert_eq!(PageSize::largest_fitting(20, 0, g), Some(PageSize::Size4K));
        assert_eq!(PageSize::largest_fitting(40, 0, PageSize::Size2M), Some(PageSize::Size2M));
        assert_eq!(PageSize::largest_fitting(11, 0, g), None);
        assert_eq!(PageSize::largest_fitting(40, 0x800, g), None);
    }

    #[test]
    fn regions() {
        assert!(Region::new(0, 12).is_ok());
        assert_eq!(Region::new(0x1000, 13), Err(Error::BadRegion));
        assert_eq!(Region::new(0, 11), Err(Error::BadRegion));
        assert_eq!(Region::new(0, 64), Err(Error::BadRegion));
        assert_eq!(Region::new(1 << 63, 63), Err(Error::BadRegion));
        let r = Region::try_from((0x20_0000u64, 21)).unwrap();
        assert_eq!((r.base(), r.size(), r.end()), (0x20_0000, 0x20_0000, 0x40_0000));
    }
}
