//! [`Cells`]: words shared between a check and the threads it starts (results, counters,
//! flags). Threads in other spaces see the same words where their pager maps them the
//! test program's own data pages.

use core::sync::atomic::{AtomicU64, Ordering};

/// `N` atomic words (sequentially consistent); indices past the end read 0 and are
/// ignored on writes, so a thread's bad index cannot panic the program.
pub struct Cells<const N: usize>([AtomicU64; N]);

impl<const N: usize> Cells<N> {
    /// All zero.
    pub const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; N])
    }

    /// Sets every word to zero.
    pub fn clear(&self) {
        for w in &self.0 {
            w.store(0, Ordering::SeqCst);
        }
    }

    /// Word `i` (0 past the end).
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |w| w.load(Ordering::SeqCst))
    }

    /// Sets word `i` (ignored past the end).
    pub fn set(&self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.store(v, Ordering::SeqCst);
        }
    }

    /// Adds `v` to word `i` (ignored past the end); returns the old value.
    pub fn add(&self, i: usize, v: u64) -> u64 {
        self.0
            .get(i)
            .map_or(0, |w| w.fetch_add(v, Ordering::SeqCst))
    }

    /// The address of the first word (for assembly that stores results directly).
    ///
    /// # Panics
    /// If `N` is 0.
    pub fn as_ptr(&self) -> *mut u64 {
        self.0[0].as_ptr()
    }
}

impl<const N: usize> Default for Cells<N> {
    fn default() -> Self {
        Self::new()
    }
}
