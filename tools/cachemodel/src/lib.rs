//! `cachemodel`: the models behind Tern's cache-footprint instrument (tools/cacheplugin):
//! a set-associative cache with LRU replacement, a TLB, and a footprint counter (how many
//! distinct lines a stretch of execution touched).
//!
//! The crate uses only `core`: every model works on storage its owner supplies (a `Vec`,
//! an array, a slice), so the same code runs in the QEMU plugin and in `no_std` tests.
//!
//! ```text
//!   address ──► line = address >> log2(line size)
//!                 set = line mod sets                 (sets = size / (line size × ways))
//!                 ┌──────── set s ────────┐
//!                 │ way 0 │ way 1 │ … │ way A-1 │      each way: tag (line + 1, 0 = empty)
//!                 └───────────────────────┘                    stamp (time of last use)
//!   hit: the line is in its set → its stamp becomes the newest
//!   miss: it replaces an empty way, else the way with the oldest stamp (LRU)
//! ```
//!
//! A fully-associative cache is the case of one set ([`Geometry::fully_associative`]);
//! running it beside a set-associative cache of the same size separates *conflict* misses
//! (set-associative misses the fully-associative one does not have) from *capacity* misses
//! (those it has too), after Hill's three-C model. A TLB ([`Tlb`]) is a cache of pages.
//!
//! # Invariants
//! - A [`Cache`] holds exactly `geometry.lines()` ways; a line is in at most one way, and
//!   only in the set its number selects.
//! - Stamps grow strictly with every access, so LRU order is total and repeatable: the
//!   models contain no randomness and no hashing that depends on run-time state.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

use core::fmt;

/// Why a cache shape or a storage size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The line size is not a power of two.
    LineNotPowerOfTwo,
    /// Zero ways.
    NoWays,
    /// The size is not a whole number of sets (line size × ways), or is zero.
    SizeNotWholeSets,
    /// The number of sets is not a power of two.
    SetsNotPowerOfTwo,
    /// The storage has the wrong number of entries for the geometry.
    StorageSize { expected: usize, got: usize },
    /// A footprint table's size is not a power of two of at least 2 slots.
    TableSize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LineNotPowerOfTwo => f.write_str("the line size must be a power of two"),
            Error::NoWays => f.write_str("a cache needs at least one way"),
            Error::SizeNotWholeSets => {
                f.write_str("the size must be a non-zero multiple of line size × ways")
            }
            Error::SetsNotPowerOfTwo => {
                f.write_str("size / (line size × ways) must be a power of two")
            }
            Error::StorageSize { expected, got } => {
                write!(f, "storage of {got} entries, the geometry needs {expected}")
            }
            Error::TableSize => {
                f.write_str("a footprint table needs a power of two of at least 2 slots")
            }
        }
    }
}

/// The shape of a cache: size, ways (associativity), line size; validated.
///
/// # Invariants
/// `line` and `sets` are powers of two; `size == sets × ways × line`; `ways ≥ 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    size: u64,
    ways: u32,
    line_shift: u32,
    sets: u64,
}

impl Geometry {
    /// A cache of `size` bytes, `ways`-way set-associative, with `line`-byte lines.
    pub fn new(size: u64, ways: u32, line: u64) -> Result<Self, Error> {
        if !line.is_power_of_two() {
            return Err(Error::LineNotPowerOfTwo);
        }
        if ways == 0 {
            return Err(Error::NoWays);
        }
        let set_bytes = line
            .checked_mul(u64::from(ways))
            .ok_or(Error::SizeNotWholeSets)?;
        if size == 0 || !size.is_multiple_of(set_bytes) {
            return Err(Error::SizeNotWholeSets);
        }
        let sets = size / set_bytes;
        if !sets.is_power_of_two() {
            return Err(Error::SetsNotPowerOfTwo);
        }
        let lines = sets * u64::from(ways);
        if usize::try_from(lines).is_err() {
            return Err(Error::SizeNotWholeSets);
        }
        Ok(Geometry {
            size,
            ways,
            line_shift: line.trailing_zeros(),
            sets,
        })
    }

    /// A fully-associative cache of `size` bytes (one set holding every line).
    pub fn fully_associative(size: u64, line: u64) -> Result<Self, Error> {
        if !line.is_power_of_two() {
            return Err(Error::LineNotPowerOfTwo);
        }
        let lines = size / line;
        let ways = u32::try_from(lines).map_err(|_| Error::SizeNotWholeSets)?;
        Geometry::new(size, ways, line)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn ways(&self) -> u32 {
        self.ways
    }

    pub fn line_size(&self) -> u64 {
        1 << self.line_shift
    }

    pub fn sets(&self) -> u64 {
        self.sets
    }

    /// Lines the cache holds (the storage a [`Cache`] needs).
    pub fn lines(&self) -> usize {
        // Checked in `new`: sets × ways fits in usize.
        (self.sets * u64::from(self.ways)) as usize
    }

    /// The line number of `addr`.
    pub fn line_of(&self, addr: u64) -> u64 {
        addr >> self.line_shift
    }

    /// The set line number `line` maps to.
    pub fn set_of(&self, line: u64) -> usize {
        (line & (self.sets - 1)) as usize
    }

    /// The line numbers of the bytes `addr .. addr + len` (`len ≥ 1`; a zero length
    /// counts as one byte), first and last inclusive.
    pub fn lines_of(&self, addr: u64, len: u64) -> (u64, u64) {
        let last = addr.saturating_add(len.max(1) - 1);
        (self.line_of(addr), self.line_of(last))
    }
}

/// One way of a set: which line it holds and when it was last used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Way {
    /// Line number + 1; 0 means empty.
    tag: u64,
    stamp: u64,
}

/// An empty way, to fill storage with.
pub const EMPTY: Way = Way { tag: 0, stamp: 0 };

/// The result of one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Hit,
    /// The line was loaded; `evicted` is the line number it replaced, if any.
    Miss {
        evicted: Option<u64>,
    },
}

impl Access {
    pub fn is_miss(self) -> bool {
        matches!(self, Access::Miss { .. })
    }
}

/// Counts of a cache's accesses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub accesses: u64,
    pub misses: u64,
}

impl Stats {
    pub fn hits(&self) -> u64 {
        self.accesses - self.misses
    }
}

/// A set-associative cache with LRU replacement over storage `S` (one [`Way`] per line of
/// the geometry: set `s` is `ways[s × assoc .. (s + 1) × assoc]`).
#[derive(Debug, Clone)]
pub struct Cache<S> {
    geometry: Geometry,
    ways: S,
    clock: u64,
    stats: Stats,
}

impl<S: AsRef<[Way]> + AsMut<[Way]>> Cache<S> {
    /// An empty cache of shape `geometry` in `ways` (whose contents are discarded), which
    /// must hold exactly `geometry.lines()` entries.
    pub fn new(geometry: Geometry, mut ways: S) -> Result<Self, Error> {
        let got = ways.as_ref().len();
        if got != geometry.lines() {
            return Err(Error::StorageSize {
                expected: geometry.lines(),
                got,
            });
        }
        ways.as_mut().fill(EMPTY);
        Ok(Cache {
            geometry,
            ways,
            clock: 0,
            stats: Stats::default(),
        })
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    fn set(&mut self, line: u64) -> &mut [Way] {
        let ways = self.geometry.ways as usize;
        let start = self.geometry.set_of(line) * ways;
        &mut self.ways.as_mut()[start..start + ways]
    }

    /// Accesses line number `line`.
    pub fn access_line(&mut self, line: u64) -> Access {
        self.clock += 1;
        let now = self.clock;
        let tag = line + 1;
        self.stats.accesses += 1;
        let set = self.set(line);
        // An empty way first, else the least recently used; among equals the first.
        let mut victim = 0;
        let mut victim_key = (true, u64::MAX);
        for (i, way) in set.iter_mut().enumerate() {
            if way.tag == tag {
                way.stamp = now;
                return Access::Hit;
            }
            let key = (way.tag != 0, way.stamp);
            if key < victim_key {
                victim = i;
                victim_key = key;
            }
        }
        let old = set[victim];
        set[victim] = Way { tag, stamp: now };
        self.stats.misses += 1;
        Access::Miss {
            evicted: (old.tag != 0).then(|| old.tag - 1),
        }
    }

    /// Accesses the line holding `addr`.
    pub fn access(&mut self, addr: u64) -> Access {
        self.access_line(self.geometry.line_of(addr))
    }

    /// Accesses every line of the bytes `addr .. addr + len`; returns the misses.
    pub fn access_range(&mut self, addr: u64, len: u64) -> u64 {
        let (first, last) = self.geometry.lines_of(addr, len);
        (first..=last)
            .map(|line| u64::from(self.access_line(line).is_miss()))
            .sum()
    }

    /// Whether the line holding `addr` is cached (does not count as an access).
    pub fn contains(&self, addr: u64) -> bool {
        let line = self.geometry.line_of(addr);
        let ways = self.geometry.ways as usize;
        let start = self.geometry.set_of(line) * ways;
        self.ways.as_ref()[start..start + ways]
            .iter()
            .any(|w| w.tag == line + 1)
    }

    /// Empties the cache.
    pub fn invalidate_all(&mut self) {
        self.ways.as_mut().fill(EMPTY);
    }

    /// Drops every cached line whose first byte's address satisfies `drop`; returns how
    /// many were dropped.
    pub fn invalidate_if(&mut self, mut drop: impl FnMut(u64) -> bool) -> usize {
        let shift = self.geometry.line_shift;
        let mut dropped = 0;
        for way in self.ways.as_mut().iter_mut().filter(|w| w.tag != 0) {
            if drop((way.tag - 1) << shift) {
                *way = EMPTY;
                dropped += 1;
            }
        }
        dropped
    }
}

/// A TLB: a set-associative LRU cache of pages.
#[derive(Debug, Clone)]
pub struct Tlb<S> {
    cache: Cache<S>,
}

impl<S: AsRef<[Way]> + AsMut<[Way]>> Tlb<S> {
    /// A TLB of `entries` entries, `ways`-way set-associative, for pages of `page` bytes;
    /// `storage` must hold `entries` ways.
    pub fn new(entries: u32, ways: u32, page: u64, storage: S) -> Result<Self, Error> {
        let size = u64::from(entries)
            .checked_mul(page)
            .ok_or(Error::SizeNotWholeSets)?;
        Ok(Tlb {
            cache: Cache::new(Geometry::new(size, ways, page)?, storage)?,
        })
    }

    /// Translates `addr`: a hit or a miss (which fills the entry).
    pub fn access(&mut self, addr: u64) -> Access {
        self.cache.access(addr)
    }

    /// Translates every page of `addr .. addr + len`; returns the misses.
    pub fn access_range(&mut self, addr: u64, len: u64) -> u64 {
        self.cache.access_range(addr, len)
    }

    /// An address-space switch without global pages below `boundary`: drops every entry
    /// for a page below `boundary` (entries at or above it are global and stay).
    pub fn flush_below(&mut self, boundary: u64) -> usize {
        self.cache.invalidate_if(|page| page < boundary)
    }

    pub fn flush_all(&mut self) {
        self.cache.invalidate_all();
    }

    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }

    pub fn geometry(&self) -> &Geometry {
        self.cache.geometry()
    }
}

/// One slot of a [`Footprint`] table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// Line number + 1.
    tag: u64,
    /// The generation that wrote the slot; 0 = never written.
    generation: u32,
}

/// An empty slot, to fill storage with.
pub const EMPTY_SLOT: Slot = Slot {
    tag: 0,
    generation: 0,
};

/// What [`Footprint::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The first time this line was seen since the last clear.
    New,
    /// Seen before.
    Seen,
    /// The table is half full: the line was not recorded (the count is a lower bound).
    Full,
}

/// The set of distinct lines touched since the last [`Footprint::clear`]: an
/// open-addressing table (linear probing, at most half full) whose clear is O(1) — slots
/// of older generations count as empty.
///
/// # Invariants
/// `count` slots carry the current generation; `count ≤ slots / 2`.
#[derive(Debug, Clone)]
pub struct Footprint<S> {
    slots: S,
    shift: u32,
    generation: u32,
    count: usize,
    overflowed: bool,
}

impl<S: AsRef<[Slot]> + AsMut<[Slot]>> Footprint<S> {
    /// An empty set over `slots` (a power of two ≥ 2 of them; contents discarded).
    pub fn new(mut slots: S) -> Result<Self, Error> {
        let n = slots.as_ref().len();
        if n < 2 || !n.is_power_of_two() {
            return Err(Error::TableSize);
        }
        slots.as_mut().fill(EMPTY_SLOT);
        Ok(Footprint {
            slots,
            shift: 64 - n.trailing_zeros(),
            generation: 1,
            count: 0,
            overflowed: false,
        })
    }

    /// Records line number `line`.
    pub fn insert(&mut self, line: u64) -> Insert {
        let tag = line + 1;
        let generation = self.generation;
        let slots = self.slots.as_mut();
        let mask = slots.len() - 1;
        let limit = slots.len() / 2;
        // Fibonacci hashing: a fixed multiplier, so the layout is the same every run.
        let mut i = (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            let slot = &mut slots[i];
            if slot.generation != generation {
                if self.count >= limit {
                    self.overflowed = true;
                    return Insert::Full;
                }
                *slot = Slot { tag, generation };
                self.count += 1;
                return Insert::New;
            }
            if slot.tag == tag {
                return Insert::Seen;
            }
            i = (i + 1) & mask;
        }
    }

    /// Distinct lines recorded since the last clear.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a line was dropped because the table was full (since the last clear).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Forgets every line.
    pub fn clear(&mut self) {
        if self.generation == u32::MAX {
            self.slots.as_mut().fill(EMPTY_SLOT);
            self.generation = 0;
        }
        self.generation += 1;
        self.count = 0;
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests;
