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
        v if v >= vector::IRQ_BASE && v < vector::IRQ_BASE + 24 => {
            crate::irq::fire((v - vector::IRQ_BASE) as u32);
            apic::eoi();
            crate::sched::preempt_check();
        }
        v if v >= vector::IRQ_BASE => apic::eoi(),
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
        vector::GENERAL_PROTECTION => {
            if io_fault(t) {
                return;
            }
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
    if !exception_ipc(t, frame.vector, frame.error) {
        report_user_fault(t, frame, 0);
    }
}

/// A #GP on a port instruction of a thread without the port: the X.2 I/O page fault,
/// sent to the pager (label −8 << 4 | rw, MR1 = the I/O fpage, MR2 = IP). Returns true if
/// the pager resolved it (the instruction is retried).
fn io_fault(t: &mut Tcb) -> bool {
    let (rip, rdx) = (t.frame().rip, t.frame().rdx);
    let Some((port, log2)) = crate::ioport::decode(rip, rdx) else { return false };
    let pager = abi::thread_id::ThreadId(t.utcb().map_or(0, |u| u.pager));
    if pager.is_nil() || t.kernel_ipc {
        return false;
    }
    let fpage = abi::fpage::IoFpage::new(port & !((1 << log2) - 1), log2, abi::fpage::Rights::RW);
    t.kmsg[0] = abi::msg::MsgTag::io_page_fault(abi::fpage::Rights::RW).raw();
    t.kmsg[1] = fpage.raw();
    t.kmsg[2] = rip;
    crate::ipc::kernel_call(t, pager, 0, 0) == 0
}

/// Sends the X.2 exception message (AMD64 register set) to the thread's exception
/// handler and applies the registers of its reply. False if there is no handler or the
/// IPC failed.
pub fn exception_ipc(t: &mut Tcb, vector: u64, error: u64) -> bool {
    use abi::syscall::exception_mr as mr;
    let handler = abi::thread_id::ThreadId(t.utcb().map_or(0, |u| u.exception_handler));
    if handler.is_nil() {
        return false;
    }
    let f = *t.frame();
    let mut m = [0u64; 22];
    m[0] = abi::msg::MsgTag::exception().raw();
    m[mr::RIP] = f.rip;
    m[mr::RBX] = f.rbx;
    m[mr::R10] = f.r10;
    m[mr::R12] = f.r12;
    m[mr::R13] = f.r13;
    m[mr::R14] = f.r14;
    m[mr::R15] = f.r15;
    m[mr::RAX] = f.rax;
    m[mr::RCX] = f.rcx;
    m[mr::RDX] = f.rdx;
    m[mr::RSI] = f.rsi;
    m[mr::RDI] = f.rdi;
    m[mr::RBP] = f.rbp;
    m[mr::R8] = f.r8;
    m[mr::R9] = f.r9;
    m[mr::R11] = f.r11;
    m[mr::RSP] = f.rsp;
    m[mr::RFLAGS] = f.rflags;
    m[mr::VECTOR] = vector;
    m[mr::ERROR_CODE] = error;
    t.kmsg = m;
    if crate::ipc::kernel_call(t, handler, 0, 0) != 0 {
        return false;
    }
    let r = t.kmsg;
    let fr = t.frame();
    if r[mr::RIP] < USER_END {
        fr.rip = r[mr::RIP];
    }
    fr.rbx = r[mr::RBX];
    fr.r10 = r[mr::R10];
    fr.r12 = r[mr::R12];
    fr.r13 = r[mr::R13];
    fr.r14 = r[mr::R14];
    fr.r15 = r[mr::R15];
    fr.rax = r[mr::RAX];
    fr.rcx = r[mr::RCX];
    fr.rdx = r[mr::RDX];
    fr.rsi = r[mr::RSI];
    fr.rdi = r[mr::RDI];
    fr.rbp = r[mr::RBP];
    fr.r8 = r[mr::R8];
    fr.r9 = r[mr::R9];
    fr.r11 = r[mr::R11];
    fr.rsp = r[mr::RSP];
    let user = abi::syscall::USER_FLAGS_MASK;
    fr.rflags = (fr.rflags & !user) | (r[mr::RFLAGS] & user);
    true
}

/// Tries to make `addr` present for thread `t`: σ0's faults get idempotent mappings;
/// anyone else's go to its pager as an X.2 page-fault IPC, whose map reply resolves them.
/// Returns false if nobody can resolve the fault.
pub fn resolve_user_fault(t: &mut Tcb, addr: u64, error: u64) -> bool {
    resolve_user_fault_within(t, addr, error, 0)
}

/// As [`resolve_user_fault`], with `timeout` (an X.2 16-bit time, 0 = never) bounding the
/// page-fault IPC in both directions (the transfer timeout during string copies).
pub fn resolve_user_fault_within(t: &mut Tcb, addr: u64, error: u64, timeout: u16) -> bool {
    let space = t.space();
    if addr >= USER_END {
        return false;
    }
    if space.sigma0 {
        return crate::boot::sigma0_fault(space, addr);
    }
    let pager = abi::thread_id::ThreadId(t.utcb().map_or(0, |u| u.pager));
    if pager.is_nil() || t.kernel_ipc {
        return false;
    }
    // Access bits from the x86 error code: W (bit 1), instruction fetch (bit 4).
    let rwx = if error & 16 != 0 {
        abi::fpage::Rights::X
    } else if error & 2 != 0 {
        abi::fpage::Rights::W
    } else {
        abi::fpage::Rights::R
    };
    let ip = t.frame().rip;
    t.kmsg[0] = abi::msg::MsgTag::page_fault(rwx).raw();
    t.kmsg[1] = addr;
    t.kmsg[2] = ip;
    crate::ipc::kernel_call(t, pager, timeout, timeout) == 0
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
                // Only the general user-copy routine waits for pagers; the fast path's
                // probe just falls back to the full path.
                if addr < USER_END && trap::is_user_copy(frame.rip) {
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
