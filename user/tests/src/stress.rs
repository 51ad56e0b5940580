//! Bulk thread creation: 10,000 threads created and deleted in batches, after which the
//! kernel's free memory (Tern's KDB kernel-memory call) must be back where it started.

use abi::thread_id::ThreadId;
use l4::thread;

use crate::harness::{ensure, fail, Check, Tally};
use crate::workers::{bulk_utcb, me, thread_info, BULK_SLOTS};

/// Threads per batch (alive at the same time).
const BATCH: usize = 100;
/// Batches.
const BATCHES: usize = 100;
/// Thread numbers used: UserBase + NUMBER_BASE ... (clear of the workers' numbers).
const NUMBER_BASE: u32 = 20_000;

const _: () = assert!(BATCH <= BULK_SLOTS);

/// Runs the check.
pub fn run(s: &mut Tally) {
    s.run("thread::create-delete-10000-no-leak", create_delete_many);
}

/// Creates `BATCH` active threads (waiting for their start message) with numbers from
/// `first`, then deletes them. On a failure deletes what it created and reports.
fn batch(first: u32) -> Check {
    let mut created = 0;
    let mut failure = None;
    for i in 0..BATCH {
        let id = ThreadId::global(first + i as u32, 1);
        match thread::create_thread(id, me(), me(), me(), Some(bulk_utcb(i))) {
            Ok(()) => created += 1,
            Err(e) => {
                failure = Some((id, e));
                break;
            }
        }
    }
    let mut delete_failure = None;
    for i in 0..created {
        let id = ThreadId::global(first + i as u32, 1);
        if let Err(e) = thread::delete_thread(id) {
            delete_failure.get_or_insert((id, e));
        }
    }
    if let Some((id, e)) = failure {
        fail!(
            "creating thread {:?} (number {} of the batch): {:?}",
            id,
            created,
            e
        );
    }
    if let Some((id, e)) = delete_failure {
        fail!("deleting thread {:?}: {:?}", id, e);
    }
    Ok(())
}

fn create_delete_many() -> Check {
    let base = thread_info().user_base as u32 + NUMBER_BASE;
    // A first batch maps the UTCB pages of the slots used, which stay with the space.
    batch(base)?;
    let (free_before, total) = l4::kdb::kernel_memory();
    ensure!(total > 0, "KDB kernel-memory info unavailable");
    for b in 0..BATCHES {
        batch(base + ((b * BATCH) as u32))?;
    }
    let (free_after, _) = l4::kdb::kernel_memory();
    ensure!(
        free_after == free_before,
        "kernel free frames {} before {} threads, {} after",
        free_before,
        BATCH * BATCHES,
        free_after
    );
    Ok(())
}
