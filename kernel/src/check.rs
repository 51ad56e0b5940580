//! Kernel invariant checker, compiled in with the `invariants` feature (fuzz builds) and
//! run after every system call. A violation is a kernel panic naming the invariant.

use crate::thread::{self, State};

/// Checks the kernel's invariants; panics on the first violation.
pub fn after_syscall() {
    let mut threads = 0usize;
    thread::for_each(|t| {
        threads += 1;
        assert!(t.id.is_global(), "thread table: slot holds a non-global id {:#x}", t.id.raw());
        if t.state == State::Sending {
            assert!(thread::lookup(t.partner).is_some(), "IPC: {:#x} sends to a dead partner", t.id.raw());
        }
        if t.fast_wait != 0 {
            assert!(t.state == State::Receiving && !t.halted, "fast path: {:#x} marked fast-resumable while not waiting", t.id.raw());
        }
    });
    assert_eq!(threads, thread::count(), "thread table: count disagrees with the slots");
    assert!(crate::kmem::free_frames() <= crate::kmem::total_frames(), "kernel memory: more free frames than the pool");
}
