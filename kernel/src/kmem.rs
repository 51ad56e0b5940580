//! Kernel memory: the pool of physical frames the kernel allocates its objects from.
//!
//! At boot the kernel sets aside a contiguous pool of physical memory (reported as
//! reserved in the KIP, so σ0 never hands it out). Thread control blocks, kernel stacks,
//! page tables, UTCB pages and FPU save areas all come from this pool, one 4 KiB frame
//! at a time. When the pool is empty the system call that needed memory fails with the
//! X.2 out-of-memory error; nothing in the kernel allocates behind the caller's back.
//!
//! # Invariants
//! - Every free frame is on the free list exactly once and lies inside the pool.
//! - `free` counts the frames on the list; `total - free` frames are in use by kernel
//!   objects, so after deleting every object created since a point in time, `free`
//!   is back to its value at that point (the leak checks in the test suite rely on it).

use crate::arch::layout::phys_to_virt;
use crate::util::KCell;

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;

/// The kernel ran out of pool memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

struct Pool {
    /// Physical address of the first free frame, 0 if none. Each free frame's first
    /// word holds the physical address of the next.
    head: u64,
    free: usize,
    total: usize,
    start: u64,
    end: u64,
}

static POOL: KCell<Pool> = KCell::new(Pool { head: 0, free: 0, total: 0, start: 0, end: 0 });

/// Hands the physical range `[start, end)` (frame-aligned) to the pool.
pub fn init(start: u64, end: u64) {
    let pool = POOL.get_mut();
    pool.start = start;
    pool.end = end;
    let mut pa = end;
    while pa > start {
        pa -= FRAME_SIZE;
        // SAFETY: the range was handed to the pool by boot code and is unused RAM covered
        // by the direct map; we write the free-list link into the frame.
        unsafe { *(phys_to_virt(pa) as *mut u64) = pool.head };
        pool.head = pa;
        pool.free += 1;
        pool.total += 1;
    }
}

/// Allocates one zeroed frame and returns its physical address.
pub fn alloc_frame() -> Result<u64, OutOfMemory> {
    let pool = POOL.get_mut();
    let pa = pool.head;
    if pa == 0 {
        return Err(OutOfMemory);
    }
    let va = phys_to_virt(pa) as *mut u64;
    // SAFETY: `pa` is a free frame of the pool (invariant), mapped by the direct map;
    // reading its link and then zeroing it is private to the allocator.
    unsafe {
        pool.head = *va;
        core::ptr::write_bytes(va as *mut u8, 0, FRAME_SIZE as usize);
    }
    pool.free -= 1;
    Ok(pa)
}

/// Returns a frame to the pool.
///
/// # Safety
/// `pa` must have come from [`alloc_frame`] and no longer be referenced anywhere.
pub unsafe fn free_frame(pa: u64) {
    let pool = POOL.get_mut();
    debug_assert!(pa >= pool.start && pa < pool.end && pa % FRAME_SIZE == 0);
    // SAFETY: the caller gives the frame back; it is ours to overwrite.
    unsafe { *(phys_to_virt(pa) as *mut u64) = pool.head };
    pool.head = pa;
    pool.free += 1;
}

/// Number of free frames.
pub fn free_frames() -> usize {
    POOL.get().free
}

/// Number of frames in the pool.
pub fn total_frames() -> usize {
    POOL.get().total
}

/// The pool's physical range.
pub fn pool_range() -> (u64, u64) {
    let p = POOL.get();
    (p.start, p.end)
}

/// Whether `pa` lies in the kernel pool.
pub fn in_pool(pa: u64) -> bool {
    let p = POOL.get();
    pa >= p.start && pa < p.end
}
