//! A test program that clears its pager, prints, and then dereferences a null pointer. The test boot runs
//! it as σ1 next to the root task: the kernel must report the fault (naming this
//! program, the address and the instruction) and keep the rest of the system running.

#![no_std]
#![no_main]

use l4::println;

#[inline(never)]
fn touch_null() -> u64 {
    let p = core::hint::black_box(0usize) as *const u64;
    // SAFETY: deliberately unsound: the test needs a user-mode page fault at address 0.
    unsafe { core::ptr::read_volatile(p) }
}

fn main() {
    // No pager: the fault cannot be resolved by anyone, so the kernel reports it.
    l4::utcb::set_pager(abi::thread_id::ThreadId::NIL);
    println!("faulter: about to read address 0");
    let v = touch_null();
    println!("faulter: read {} from address 0 — the fault was not raised", v);
}

l4::main!(main);
