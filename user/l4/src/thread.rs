//! Threads: ThreadControl (create, activate, delete), ExchangeRegisters with a builder for
//! its control word, starting threads, Schedule, ThreadSwitch and ProcessorControl.
//!
//! Starting a thread in the caller's own space takes three steps:
//!
//! ```text
//! create_thread(dest, space = me, scheduler, pager = me, utcb)   // waits for a start
//! let (sp, ip) = unsafe { prepare_entry(stack_top, entry, arg) }  // entry(arg) on that stack
//! start(dest, sp, ip)                                            // ExchangeRegisters H|s|r|SP|IP
//! ```
//!
//! or, instead of the last step, the X.2 start message from the pager (u = 2, MR1 = IP,
//! MR2 = SP: [`start_message`]).

use abi::syscall::{
    ExRegsControl, ExRegsState, PreemptionControl, ThreadState, EXREGS_ABORT_RECEIVE,
    EXREGS_ABORT_SEND, EXREGS_APPLY_HALT, EXREGS_DELIVER, EXREGS_HALT, EXREGS_SET_FLAGS,
    EXREGS_SET_FS_BASE, EXREGS_SET_IP, EXREGS_SET_PAGER, EXREGS_SET_SP, EXREGS_SET_USER_HANDLE,
    UNCHANGED,
};
use abi::thread_id::ThreadId;
use abi::time::Time;

use crate::error::{self, Error};
use crate::ipc::{self, IpcFailure, Msg};
use crate::{syscall, utcb};

/// ThreadControl with every argument: creates, modifies, activates or (with a nil
/// `space`) deletes `dest`. `utcb = None` leaves the UTCB location unchanged (all ones).
pub fn thread_control(
    dest: ThreadId,
    space: ThreadId,
    scheduler: ThreadId,
    pager: ThreadId,
    utcb_location: Option<u64>,
) -> Result<(), Error> {
    utcb::set_error_code(0);
    let r = syscall::thread_control(
        dest.raw(),
        pager.raw(),
        scheduler.raw(),
        space.raw(),
        utcb_location.unwrap_or(UNCHANGED),
    );
    error::from_flag(r)
}

/// Creates `dest` in the space of `space` (a new space if `space == dest`). With a nil
/// `pager` the thread stays inactive; otherwise it is activated with its UTCB at
/// `utcb_location` and waits for a start message from `pager`.
pub fn create_thread(
    dest: ThreadId,
    space: ThreadId,
    scheduler: ThreadId,
    pager: ThreadId,
    utcb_location: Option<u64>,
) -> Result<(), Error> {
    thread_control(dest, space, scheduler, pager, utcb_location)
}

/// Deletes `dest` (ThreadControl with a nil space specifier).
pub fn delete_thread(dest: ThreadId) -> Result<(), Error> {
    thread_control(dest, ThreadId::NIL, ThreadId::NIL, ThreadId::NIL, None)
}

/// What ExchangeRegisters returned: the other form of the destination's id and its old
/// register values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExRegsOut {
    /// The destination's global id if it was named by a local id, else its local id.
    pub id: ThreadId,
    /// Old state: halted, receiving, sending.
    pub state: ExRegsState,
    /// Old SP.
    pub sp: u64,
    /// Old IP.
    pub ip: u64,
    /// Old FLAGS.
    pub flags: u64,
    /// Old UserDefinedHandle.
    pub user_handle: u64,
    /// Old pager.
    pub pager: ThreadId,
}

/// An ExchangeRegisters request: the control word and the values it sets.
///
/// `ExRegs::new()` changes nothing (control 0: read the state and convert the id); each
/// builder method sets one control bit and, where it has one, its value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ExRegs {
    control: u64,
    sp: u64,
    ip: u64,
    flags: u64,
    user_handle: u64,
    pager: ThreadId,
}

impl ExRegs {
    /// Control 0: change nothing.
    pub const fn new() -> Self {
        Self {
            control: 0,
            sp: 0,
            ip: 0,
            flags: 0,
            user_handle: 0,
            pager: ThreadId::NIL,
        }
    }

    /// Set SP.
    pub const fn sp(mut self, sp: u64) -> Self {
        self.control |= EXREGS_SET_SP;
        self.sp = sp;
        self
    }

    /// Set IP.
    pub const fn ip(mut self, ip: u64) -> Self {
        self.control |= EXREGS_SET_IP;
        self.ip = ip;
        self
    }

    /// Set the user bits of FLAGS (CF PF AF ZF SF OF; the kernel ignores the others).
    pub const fn flags(mut self, flags: u64) -> Self {
        self.control |= EXREGS_SET_FLAGS;
        self.flags = flags;
        self
    }

    /// Set the UserDefinedHandle.
    pub const fn user_handle(mut self, handle: u64) -> Self {
        self.control |= EXREGS_SET_USER_HANDLE;
        self.user_handle = handle;
        self
    }

    /// Tern extension: set the FS base (the value travels where the UserDefinedHandle
    /// does, so the kernel refuses this together with [`ExRegs::user_handle`]).
    pub const fn fs_base(mut self, base: u64) -> Self {
        self.control |= EXREGS_SET_FS_BASE;
        self.user_handle = base;
        self
    }

    /// Set the pager.
    pub const fn pager(mut self, pager: ThreadId) -> Self {
        self.control |= EXREGS_SET_PAGER;
        self.pager = pager;
        self
    }

    /// Halt the thread (bits h and H).
    pub const fn halt(mut self) -> Self {
        self.control |= EXREGS_HALT | EXREGS_APPLY_HALT;
        self
    }

    /// Resume a halted thread (bit H without h).
    pub const fn resume(mut self) -> Self {
        self.control = (self.control & !EXREGS_HALT) | EXREGS_APPLY_HALT;
        self
    }

    /// Abort an ongoing send (bit s).
    pub const fn abort_send(mut self) -> Self {
        self.control |= EXREGS_ABORT_SEND;
        self
    }

    /// Abort an ongoing receive (bit r).
    pub const fn abort_receive(mut self) -> Self {
        self.control |= EXREGS_ABORT_RECEIVE;
        self
    }

    /// Deliver the old values (bit d).
    pub const fn deliver(mut self) -> Self {
        self.control |= EXREGS_DELIVER;
        self
    }

    /// Adds raw control bits (for example bits X.2 leaves undefined, to test that the
    /// kernel refuses them).
    pub const fn raw_bits(mut self, bits: u64) -> Self {
        self.control |= bits;
        self
    }

    /// The control word as built.
    pub const fn control(&self) -> ExRegsControl {
        ExRegsControl::from_raw(self.control)
    }

    /// Performs the request on `dest` (a local or global id).
    pub fn apply(&self, dest: ThreadId) -> Result<ExRegsOut, Error> {
        utcb::set_error_code(0);
        let r = syscall::exchange_registers(
            dest.raw(),
            self.control,
            self.sp,
            self.ip,
            self.flags,
            self.user_handle,
            self.pager.raw(),
        );
        if r.id == 0 {
            return Err(error::last());
        }
        Ok(ExRegsOut {
            id: ThreadId(r.id),
            state: ExRegsState::from_raw(r.control),
            sp: r.sp,
            ip: r.ip,
            flags: r.flags,
            user_handle: r.user_handle,
            pager: ThreadId(r.pager),
        })
    }
}

/// `L4_Start_SpIp`: resumes `dest` (aborting the wait for its start message) at `ip` with
/// stack pointer `sp`.
pub fn start(dest: ThreadId, sp: u64, ip: u64) -> Result<ExRegsOut, Error> {
    ExRegs::new()
        .resume()
        .abort_send()
        .abort_receive()
        .sp(sp)
        .ip(ip)
        .apply(dest)
}

/// `L4_Stop`: halts `dest` and returns its old state.
pub fn stop(dest: ThreadId) -> Result<ExRegsOut, Error> {
    ExRegs::new().halt().deliver().apply(dest)
}

/// The global id of the thread with local id `local` (same space).
pub fn global_id_of(local: ThreadId) -> Result<ThreadId, Error> {
    ExRegs::new().apply(local).map(|o| o.id)
}

/// The local id of the thread with global id `global` (same space).
pub fn local_id_of(global: ThreadId) -> Result<ThreadId, Error> {
    ExRegs::new().apply(global).map(|o| o.id)
}

/// Sends the X.2 start message (u = 2, MR1 = IP, MR2 = SP) to `dest`, which must be
/// waiting for it from the caller (its pager).
pub fn start_message(dest: ThreadId, sp: u64, ip: u64, timeout: Time) -> Result<(), IpcFailure> {
    let msg = Msg::with_words(0, &[ip, sp]).map_err(|_| IpcFailure::Unknown(0))?;
    ipc::send(dest, &msg, timeout)
}

/// A Schedule request: every field "unchanged" (all ones) unless set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sched {
    prio: u64,
    time: u64,
    processor: u64,
    preemption: u64,
}

impl Default for Sched {
    fn default() -> Self {
        Self::new()
    }
}

impl Sched {
    /// Change nothing: read the thread's state.
    pub const fn new() -> Self {
        Self {
            prio: UNCHANGED,
            time: UNCHANGED,
            processor: UNCHANGED,
            preemption: UNCHANGED,
        }
    }

    /// Set the priority.
    pub const fn priority(mut self, prio: u8) -> Self {
        self.prio = prio as u64;
        self
    }

    /// Set timeslice and total quantum (each `None` = unchanged).
    pub const fn time(mut self, timeslice: Option<Time>, total_quantum: Option<Time>) -> Self {
        let ts = match timeslice {
            Some(t) => t.encode(),
            None => 0xFFFF,
        };
        let tq = match total_quantum {
            Some(t) => t.encode(),
            None => 0xFFFF,
        };
        self.time = abi::syscall::TimeControl::encode(ts, tq);
        self
    }

    /// Set the processor.
    pub const fn processor(mut self, cpu: u16) -> Self {
        self.processor = cpu as u64;
        self
    }

    /// Set the preemption parameters.
    pub const fn preemption(mut self, p: PreemptionControl) -> Self {
        self.preemption = p.encode();
        self
    }

    /// Raw words (for argument-validation tests): PrioControl, TimeControl,
    /// ProcessorControl, PreemptionControl.
    pub const fn raw(prio: u64, time: u64, processor: u64, preemption: u64) -> Self {
        Self {
            prio,
            time,
            processor,
            preemption,
        }
    }

    /// Performs the request on `dest`: its state and old TimeControl word.
    pub fn apply(&self, dest: ThreadId) -> Result<(ThreadState, u64), Error> {
        utcb::set_error_code(0);
        let (state, old_time) = syscall::schedule(
            dest.raw(),
            self.prio,
            self.time,
            self.processor,
            self.preemption,
        );
        match ThreadState::try_from(state) {
            Ok(ThreadState::Error) => Err(error::last()),
            Ok(s) => Ok((s, old_time)),
            Err(_) => Err(Error::UnknownResult(state)),
        }
    }
}

/// Sets the priority of `dest`; returns its state.
pub fn set_priority(dest: ThreadId, prio: u8) -> Result<ThreadState, Error> {
    Sched::new().priority(prio).apply(dest).map(|(s, _)| s)
}

/// The state of `dest` (Schedule changing nothing).
pub fn state_of(dest: ThreadId) -> Result<ThreadState, Error> {
    Sched::new().apply(dest).map(|(s, _)| s)
}

/// ThreadSwitch to `dest` (donating the rest of the timeslice), or a yield with nil.
pub fn thread_switch(dest: ThreadId) {
    syscall::thread_switch(dest)
}

/// Yields the processor (ThreadSwitch to nil).
pub fn yield_now() {
    syscall::thread_switch(ThreadId::NIL)
}

/// ProcessorControl (privileged): set the frequencies (kHz) and voltage of `processor`;
/// all ones leaves a value unchanged.
pub fn processor_control(
    processor: u64,
    internal_khz: u64,
    external_khz: u64,
    voltage: u64,
) -> Result<(), Error> {
    utcb::set_error_code(0);
    error::from_flag(syscall::processor_control(
        processor,
        internal_khz,
        external_khz,
        voltage,
    ))
}

/// Blocks the calling thread for good: an IPC receive from itself with no timeout; should
/// that return (no IPC, or cancelled), the thread halts itself, and failing that yields
/// in a loop.
pub fn park() -> ! {
    loop {
        let _ = ipc::sleep(Time::Never);
        let _ = ExRegs::new().halt().apply(utcb::my_global_id());
        yield_now();
    }
}

core::arch::global_asm!(
    r#"
    .section .text.l4_thread_trampoline, "ax"
    .global l4_thread_trampoline
l4_thread_trampoline:
    pop rdi
    pop rax
    xor ebp, ebp
    call rax
    ud2
    .text
"#
);

extern "C" {
    /// Entry of threads started by [`prepare_entry`]: pops the argument and the entry
    /// function from the stack and calls `entry(arg)` with an aligned stack.
    fn l4_thread_trampoline();
}

/// An entry function for [`prepare_entry`].
pub type Entry = extern "C" fn(usize) -> !;

/// Writes the trampoline frame for `entry(arg)` below `stack_top` (rounded down to 16
/// bytes) and returns the `(sp, ip)` to start the thread with.
///
/// # Safety
/// `stack_top` must be the end of writable memory of the caller's space that nothing
/// else uses from now until the thread started with the result is deleted; at least 16
/// bytes below the rounded-down top are written. For a thread in another space that
/// memory must be what the thread will see at the same address.
pub unsafe fn prepare_entry(stack_top: *mut u8, entry: Entry, arg: usize) -> (u64, u64) {
    let top = (stack_top as usize) & !15;
    let frame = (top - 16) as *mut usize;
    // SAFETY: `frame..frame + 2` lies in the caller's stack memory (contract above) and is
    // 16-byte aligned.
    unsafe {
        frame.write(arg);
        frame.add(1).write(entry as usize);
    }
    (frame as u64, l4_thread_trampoline as *const () as u64)
}
