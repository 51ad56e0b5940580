//! What the kernel does with each trap: the policy behind the architecture's entry code.
//!
//! From user mode: the timer ends timeslices; `int3` is the kernel-debugger interface;
//! `lock; nop` (#UD) is X.2's KernelInterface; #NM switches FPU state; page faults of σ0
//! are resolved with idempotent mappings; any other fault is reported and stops the
//! thread (the page-fault and exception IPC protocols take over here once a pager or
//! exception handler is set). From kernel mode: a fault on a user address inside a
//! user-access routine is resolved or recovered; anything else is a kernel panic.

use crate::arch::apic;
use crate::arch::cpu;
use crate::arch::layout::USER_END;
use crate::arch::trap::{self, vector, Frame};
use crate::sched;
use crate::thread::{State, Tcb};

/// Entry from the architecture layer for every vector.
pub fn handle(frame: &mut Frame) {
    match frame.vector {
        vector::TIMER => {
            apic::eoi();
            sched::timer_tick();
        }
        vector::SPURIOUS => {}
        v if v >= vector::IRQ_BASE => {
            apic::eoi();
        }
        _ if frame.from_user() => user_exception(frame),
        _ => kernel_exception(frame),
    }
}

fn user_exception(frame: &mut Frame) {
    let Some(t) = sched::current() else {
        crate::panic::panic_frame("user exception with no current thread", frame);
    };
    match frame.vector {
        vector::BREAKPOINT => {
            if crate::kdb::int3(t, frame) {
                return;
            }
        }
        vector::INVALID_OPCODE => {
            if crate::kip::kernel_interface(t, frame) {
                return;
            }
        }
        vector::DEVICE_NOT_AVAILABLE => {
            crate::fpu::device_not_available(t);
            return;
        }
        vector::PAGE_FAULT => {
            let addr = cpu::read_cr2();
            if resolve_user_fault(t, addr, frame.error) {
                return;
            }
            report_user_fault(t, frame, addr);
            return;
        }
        _ => {}
    }
    report_user_fault(t, frame, 0);
}

/// Tries to make `addr` present for thread `t` (σ0: idempotent mapping).
/// Returns false if nobody can resolve the fault.
pub fn resolve_user_fault(t: &mut Tcb, addr: u64, _error: u64) -> bool {
    let space = t.space();
    if space.sigma0 && addr < USER_END {
        return crate::boot::sigma0_fault(space, addr);
    }
    false
}

/// Prints a readable report of an unhandled user fault and stops the thread.
fn report_user_fault(t: &mut Tcb, frame: &mut Frame, addr: u64) {
    let kind = trap::vector_name(frame.vector);
    let access = if frame.vector == vector::PAGE_FAULT {
        match (frame.error & 2 != 0, frame.error & 16 != 0) {
            (_, true) => " (instruction fetch)",
            (true, _) => " (write)",
            _ => " (read)",
        }
    } else {
        ""
    };
    crate::kprintln!(
        "USER FAULT: thread {:#x} ({}) {}{} addr={:#018x} ip={:#018x} error={:#x}",
        t.id.raw(),
        t.name().as_str(),
        kind,
        access,
        addr,
        frame.rip,
        frame.error
    );
    crate::panic::dump_frame(frame);
    crate::kprintln!("thread {:#x} stopped; the kernel continues", t.id.raw());
    sched::block(t, State::Faulted);
}

fn kernel_exception(frame: &mut Frame) {
    match frame.vector {
        vector::PAGE_FAULT => {
            let addr = cpu::read_cr2();
            if let Some(fix) = trap::extable_fixup(frame.rip) {
                if addr < USER_END {
                    if let Some(t) = sched::current() {
                        if resolve_user_fault(t, addr, frame.error) {
                            return; // retry the access
                        }
                    }
                }
                frame.rip = fix;
                return;
            }
            if crate::panic::is_stack_guard(addr) {
                crate::panic::panic_frame("kernel stack overflow (guard page hit)", frame);
            }
            crate::panic::panic_frame("page fault in kernel mode", frame);
        }
        vector::DOUBLE_FAULT => {
            let addr = cpu::read_cr2();
            if crate::panic::is_stack_guard(addr) || crate::panic::is_stack_guard(frame.rsp) {
                crate::panic::panic_frame("kernel stack overflow (double fault on guard page)", frame);
            }
            crate::panic::panic_frame("double fault", frame);
        }
        vector::NMI => crate::panic::panic_frame("non-maskable interrupt", frame),
        _ => crate::panic::panic_frame(trap::vector_name(frame.vector), frame),
    }
}
