//! σ0: the root pager, owner of all physical memory at boot.
//!
//! For now σ0 announces itself and yields; its X.2 protocol (memory requests, page
//! faults of its clients) arrives with IPC.

#![no_std]
#![no_main]

use l4::println;

fn main() {
    let me = l4::utcb::my_global_id();
    println!("sigma0: running as thread {:#x}", me.raw());
    loop {
        l4::syscall::thread_switch(abi::thread_id::ThreadId::NIL);
    }
}

l4::main!(main);
