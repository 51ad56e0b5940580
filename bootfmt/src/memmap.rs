//! Physical memory map arithmetic: a fixed-capacity set of address ranges, and the
//! computation of usable RAM from a firmware memory map.
//!
//! Firmware memory maps are untrusted in a mild way: entries overlap, come unsorted,
//! have zero size or run past the end of the address space. [`usable_ram`] turns such a
//! map into a clean [`RangeSet`]: sorted, disjoint, page-aligned ranges of RAM that no
//! firmware entry claims for anything else and that hold nothing the boot loader put
//! there.
//!
//! ```text
//!  firmware map   |--RAM---------------|  |--RAM-------------------------|
//!                        |ACPI|                     |RESERVED|
//!  reserved                        |kern|   |mod|
//!  usable         |------|    |----|        |---|   |--------|     |------|
//!                 (every range then shrunk inward to whole pages)
//! ```
//!
//! Ranges are half-open, `[start, end)`, so the byte at `u64::MAX` can never be part of
//! a set; no page-aligned range could include it anyway.

use core::fmt;

use crate::pvh::MemmapEntry;

/// The page size [`usable_ram`] aligns to.
pub const PAGE_SIZE: u64 = 4096;

/// Everything that can go wrong with range arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemMapError {
    /// `start > end`.
    InvalidRange,
    /// The result would need more ranges than the set can hold.
    CapacityExceeded,
    /// The page size is not a power of two.
    BadPageSize,
}

impl fmt::Display for MemMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::InvalidRange => "range start lies after its end",
            Self::CapacityExceeded => "too many memory ranges",
            Self::BadPageSize => "page size is not a power of two",
        };
        f.write_str(text)
    }
}

impl core::error::Error for MemMapError {}

/// A sorted set of disjoint half-open ranges `[start, end)` of at most `N` ranges.
///
/// # Invariants
///
/// * `len <= N`;
/// * every live range `ranges[i]` (`i < len`) is non-empty: `start < end`;
/// * live ranges are sorted and neither overlap nor touch:
///   `ranges[i].end < ranges[i + 1].start`, so each range is a maximal run of
///   addresses in the set;
/// * the contents of `ranges[len..]` are meaningless.
///
/// Every operation checks what it needs before changing anything: a call that returns
/// an error leaves the set as it was.
#[derive(Clone, Copy)]
pub struct RangeSet<const N: usize> {
    ranges: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> RangeSet<N> {
    /// The empty set.
    pub const fn new() -> Self {
        Self {
            ranges: [(0, 0); N],
            len: 0,
        }
    }

    /// The live ranges, sorted by address.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// Iterates over the ranges `(start, end)` in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.as_slice().iter().copied()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of ranges (`N`).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Removes every range.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of addresses in the set.
    pub fn total(&self) -> u64 {
        // Disjoint ranges below u64::MAX cannot sum past it; saturate all the same.
        self.iter()
            .fold(0u64, |sum, (start, end)| sum.saturating_add(end - start))
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        let live = self.as_slice();
        let index = live.partition_point(|&(_, end)| end <= addr);
        live.get(index).is_some_and(|&(start, _)| start <= addr)
    }

    /// Replaces the live ranges `first..last` by `items`, after checking capacity.
    ///
    /// The caller guarantees `first <= last <= len` and that the result keeps the
    /// invariants.
    fn splice(
        &mut self,
        first: usize,
        last: usize,
        items: &[(u64, u64)],
    ) -> Result<(), MemMapError> {
        let removed = last - first;
        let new_len = self.len - removed + items.len();
        if new_len > N {
            return Err(MemMapError::CapacityExceeded);
        }
        // Move the tail to its new place, then write the new items before it.
        self.ranges.copy_within(last..self.len, first + items.len());
        self.ranges[first..first + items.len()].copy_from_slice(items);
        self.len = new_len;
        Ok(())
    }

    /// Adds `[start, end)`, merging it with every range it overlaps or touches.
    ///
    /// An empty range (`start == end`) changes nothing. Fails with
    /// [`MemMapError::InvalidRange`] if `start > end` and
    /// [`MemMapError::CapacityExceeded`] if the set is full and the range touches no
    /// existing one.
    pub fn insert(&mut self, start: u64, end: u64) -> Result<(), MemMapError> {
        if start > end {
            return Err(MemMapError::InvalidRange);
        }
        if start == end {
            return Ok(());
        }
        let live = self.as_slice();
        // Ranges first..last overlap or touch [start, end]; those before end below
        // `start`, those after begin above `end`.
        let first = live.partition_point(|&(_, e)| e < start);
        let last = live.partition_point(|&(s, _)| s <= end);
        let merged = match (
            live.get(first),
            last.checked_sub(1).and_then(|i| live.get(i)),
        ) {
            (Some(&(first_start, _)), Some(&(_, last_end))) if first < last => {
                (start.min(first_start), end.max(last_end))
            }
            _ => (start, end),
        };
        self.splice(first, last.max(first), &[merged])
    }

    /// Removes `[start, end)`, trimming or splitting the ranges it overlaps.
    ///
    /// An empty range changes nothing. Fails with [`MemMapError::InvalidRange`] if
    /// `start > end` and [`MemMapError::CapacityExceeded`] if it would split a range of
    /// a full set in two.
    pub fn remove(&mut self, start: u64, end: u64) -> Result<(), MemMapError> {
        if start > end {
            return Err(MemMapError::InvalidRange);
        }
        if start == end {
            return Ok(());
        }
        let live = self.as_slice();
        // Ranges first..last share at least one address with [start, end).
        let first = live.partition_point(|&(_, e)| e <= start);
        let last = live.partition_point(|&(s, _)| s < end);
        if first >= last {
            return Ok(());
        }
        let (first_start, _) = live[first];
        let (_, last_end) = live[last - 1];
        let mut kept = [(0, 0); 2];
        let mut count = 0;
        if first_start < start {
            kept[count] = (first_start, start);
            count += 1;
        }
        if last_end > end {
            kept[count] = (end, last_end);
            count += 1;
        }
        self.splice(first, last, &kept[..count])
    }

    /// Shrinks every range to the whole `page`-sized, `page`-aligned pages it contains,
    /// dropping ranges that contain none. `page` must be a power of two.
    pub fn align_inward(&mut self, page: u64) -> Result<(), MemMapError> {
        if !page.is_power_of_two() {
            return Err(MemMapError::BadPageSize);
        }
        let mask = page - 1;
        let mut kept = 0;
        for index in 0..self.len {
            let (start, end) = self.ranges[index];
            let Some(start) = start.checked_add(mask).map(|s| s & !mask) else {
                continue;
            };
            let end = end & !mask;
            if start < end {
                // kept <= index, so this only moves ranges down; order is preserved
                // and gaps only grow.
                self.ranges[kept] = (start, end);
                kept += 1;
            }
        }
        self.len = kept;
        Ok(())
    }
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PartialEq for RangeSet<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for RangeSet<N> {}

impl<const N: usize> fmt::Debug for RangeSet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(start, end)| start..end))
            .finish()
    }
}

/// An entry of a firmware memory map: `(addr, size, kind)`, where `kind` uses the
/// values of [`MemmapEntry`] (`RAM == 1`; everything else is not usable).
pub trait MemRegion {
    /// The entry as `(addr, size, kind)`.
    fn region(&self) -> (u64, u64, u32);
}

impl MemRegion for (u64, u64, u32) {
    fn region(&self) -> (u64, u64, u32) {
        *self
    }
}

/// Usable RAM: see [`usable_ram_with_page`]; aligned to [`PAGE_SIZE`].
pub fn usable_ram<const N: usize, R: MemRegion>(
    map: &[R],
    reserved: &[(u64, u64)],
) -> Result<RangeSet<N>, MemMapError> {
    usable_ram_with_page(map, reserved, PAGE_SIZE)
}

/// Usable RAM: every RAM entry of `map`, minus every non-RAM entry (firmware maps may
/// overlap; non-RAM wins whatever the order), minus every `[start, end)` range of
/// `reserved` (kernel image, boot modules, start info, ...), shrunk inward to whole
/// `page`s.
///
/// Entry handling:
///
/// * zero-size entries are ignored;
/// * a RAM entry whose end lies past 2^64 is ignored (it cannot be real); one ending
///   exactly at 2^64 is clamped to `u64::MAX`;
/// * a non-RAM entry whose end lies past 2^64 reserves everything from its start up;
/// * an unknown `kind` counts as not RAM;
/// * a `reserved` range with `start > end` is an error ([`MemMapError::InvalidRange`]),
///   an empty one is ignored.
///
/// `N` bounds every intermediate result, not only the final one; a map needing more
/// ranges fails with [`MemMapError::CapacityExceeded`].
pub fn usable_ram_with_page<const N: usize, R: MemRegion>(
    map: &[R],
    reserved: &[(u64, u64)],
    page: u64,
) -> Result<RangeSet<N>, MemMapError> {
    if !page.is_power_of_two() {
        return Err(MemMapError::BadPageSize);
    }
    let mut set = RangeSet::new();
    for entry in map {
        let (addr, size, kind) = entry.region();
        if kind != MemmapEntry::RAM || size == 0 {
            continue;
        }
        let end = match addr.checked_add(size) {
            Some(end) => end,
            None if addr.wrapping_add(size) == 0 => u64::MAX,
            None => continue,
        };
        set.insert(addr, end)?;
    }
    for entry in map {
        let (addr, size, kind) = entry.region();
        if kind == MemmapEntry::RAM || size == 0 {
            continue;
        }
        set.remove(addr, addr.saturating_add(size))?;
    }
    for &(start, end) in reserved {
        set.remove(start, end)?;
    }
    set.align_inward(page)?;
    Ok(set)
}

#[cfg(test)]
mod tests;
