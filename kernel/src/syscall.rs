//! System-call dispatch: from the stub a `syscall` came through to its handler.
//!
//! The calls implemented so far are SystemClock, ThreadSwitch and the bench-only null
//! call; the remaining X.2 calls answer "invalid parameter" in the ErrorCode TCR and a
//! failure result until their issues land (see docs/abi.md for the status of each).

use crate::arch::apic;
use crate::arch::syscall::{stub_from_return, Stub};
use crate::arch::trap::Frame;
use crate::sched;

/// Entry from the architecture layer for every `syscall`.
pub fn dispatch(frame: &mut Frame) {
    let Some(stub) = stub_from_return(frame.rcx) else {
        // `syscall` executed outside the stub page: not an X.2 call.
        if let Some(t) = sched::current() {
            crate::kprintln!("thread {:#x} ({}): syscall outside the KIP stubs at {:#x}", t.id.raw(), t.name().as_str(), frame.rcx);
            sched::block(t, crate::thread::State::Faulted);
        }
        return;
    };
    match stub {
        Stub::SystemClock => {
            frame.rax = apic::now_us();
            frame.rdx = 0;
        }
        Stub::ThreadSwitch => sched::yield_now(),
        Stub::Null => {}
        _ => {
            if let Some(t) = sched::current() {
                if let Some(u) = t.utcb() {
                    u.error_code = abi::error::SysError::InvalidParam as u64;
                }
            }
            frame.rax = 0;
        }
    }
}
