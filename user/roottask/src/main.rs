//! The root task. In test boots it runs the in-guest checks of the kernel's basic
//! user-level interface and reports each as a `TERN-TEST` line, then powers off with
//! the failure count; in other boots it greets and idles.

#![no_std]
#![no_main]

use l4::{print, println};

struct Suite {
    passed: u32,
    failed: u32,
}

impl Suite {
    fn check(&mut self, name: &str, ok: bool, detail: core::fmt::Arguments) {
        if ok {
            self.passed += 1;
            println!("TERN-TEST ok {}", name);
        } else {
            self.failed += 1;
            println!("TERN-TEST FAIL {}: {}", name, detail);
        }
    }
}

fn main() {
    println!("roottask: hello from user mode (thread {:#x})", l4::utcb::my_global_id().raw());
    let mut s = Suite { passed: 0, failed: 0 };
    // Let the other root servers run first (in test boots σ1 is a program that faults;
    // the harness checks that its fault is reported before this suite ends).
    for _ in 0..8 {
        l4::syscall::thread_switch(abi::thread_id::ThreadId::NIL);
    }

    let ki = l4::kip::kernel_interface();
    let kip = l4::kip::get();
    s.check("kernel-interface-returns-kip", ki.kip as u64 == 0xBFF0_0000, format_args!("KIP at {:#x}", ki.kip as u64));
    s.check("kip-magic", kip.magic as u32 == abi::kip::KIP_MAGIC && kip.magic >> 32 == 0, format_args!("{:#x}", kip.magic));
    s.check("kip-api-version", ki.api_version == abi::kip::API_VERSION && kip.api_version == ki.api_version, format_args!("{:#x}", ki.api_version));
    s.check("kip-kernel-is-tern", ki.kernel_id == abi::kip::TERN_KERNEL_ID, format_args!("{:#x}", ki.kernel_id));
    let sc = kip.syscalls;
    let stubs = [sc.ipc, sc.exchange_registers, sc.thread_control, sc.system_clock, sc.thread_switch, sc.schedule, sc.unmap, sc.space_control];
    s.check("kip-syscall-stubs-published", stubs.iter().all(|&a| a >= 0xFFFF_8000_0000_0000), format_args!("{:x?}", stubs));
    let ti = abi::kip::ThreadInfo::decode(kip.thread_info);
    let me = l4::utcb::my_global_id();
    s.check("root-task-thread-id", me.number() == ti.user_base as u32 + 2 && me.version() == 1, format_args!("{:#x} with user base {}", me.raw(), ti.user_base));
    s.check("utcb-local-id", l4::utcb::my_local_id().raw() == 0xBF00_0200, format_args!("{:#x}", l4::utcb::my_local_id().raw()));

    let t0 = l4::syscall::system_clock();
    let mut spin = 0u64;
    while l4::syscall::system_clock() == t0 && spin < 10_000_000 {
        spin += 1;
    }
    let t1 = l4::syscall::system_clock();
    s.check("system-clock-advances", t1 > t0, format_args!("{} then {}", t0, t1));

    print!("TERN-TEST end: {} passed, {} failed\n", s.passed, s.failed);
    l4::kdb::power_off(s.failed as u64);
}

l4::main!(main);
