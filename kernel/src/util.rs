//! Small kernel-wide helpers.

use core::cell::UnsafeCell;

/// A cell for kernel-global state.
///
/// Tern runs on one processor and executes kernel code with interrupts disabled (the
/// kernel is not preemptible; the idle loop enables interrupts only while holding no
/// reference into kernel state). So at most one kernel control path touches a `KCell`
/// at a time, and handing out `&mut` is sound as long as callers do not keep two such
/// references to the same cell alive at once (each user keeps its borrow short).
#[repr(transparent)]
pub struct KCell<T>(UnsafeCell<T>);

// SAFETY: see the type's documentation: single processor, kernel not preemptible.
unsafe impl<T> Sync for KCell<T> {}

impl<T> KCell<T> {
    /// Creates a cell.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Shared access.
    #[inline(always)]
    pub fn get(&self) -> &T {
        // SAFETY: single-threaded, non-preemptible kernel (type docs).
        unsafe { &*self.0.get() }
    }

    /// Exclusive access; the caller keeps the borrow short (type docs).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub fn get_mut(&self) -> &mut T {
        // SAFETY: single-threaded, non-preemptible kernel (type docs).
        unsafe { &mut *self.0.get() }
    }

    /// Raw pointer to the contents.
    pub const fn as_ptr(&self) -> *mut T {
        self.0.get()
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two).
#[inline(always)]
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// Rounds `x` down to a multiple of `align` (a power of two).
#[inline(always)]
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// A fixed-size, NUL-padded name (program names in fault reports).
#[derive(Clone, Copy)]
pub struct Name(pub [u8; 16]);

impl Name {
    /// Builds a name, truncating to 16 bytes.
    pub fn new(s: &str) -> Self {
        let mut n = [0u8; 16];
        let len = s.len().min(16);
        n[..len].copy_from_slice(&s.as_bytes()[..len]);
        Name(n)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(16);
        core::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }
}
