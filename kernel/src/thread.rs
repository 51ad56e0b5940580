//! Threads: the thread table, thread control blocks and their kernel stacks.
//!
//! Thread number *n* owns a fixed 16 KiB slot of kernel virtual memory, so finding a
//! thread from its id is one shift and one compare (no search):
//!
//! ```text
//!  TCB_AREA + n * 16 KiB
//!  ┌──────────────┬──────────────────────────────┬──────────────────┐
//!  │ guard (4 KiB)│ kernel stack (8 KiB)  ◄─ grows│ TCB page (4 KiB) │
//!  │  unmapped    │            [user Frame at top]│ Tcb, FPU area    │
//!  └──────────────┴──────────────────────────────┴──────────────────┘
//! ```
//! A kernel stack overflow runs into the guard page and is reported as such (the double
//! fault handler runs on its own stack). The user register frame sits at the top of the
//! stack while the thread is in the kernel, directly below its TCB.
//!
//! # Invariants
//! - A slot's pages are mapped iff its bit in `SLOTS` is set iff a TCB lives there.
//! - `Tcb::id.number()` equals the slot number.

use abi::thread_id::ThreadId;

use crate::arch::layout::{TCB_AREA, TCB_OFFSET, TCB_SLOT};
use crate::arch::paging::{self, pte, PageSize};
use crate::arch::trap::{Frame, FRAME_SIZE};
use crate::kmem::{self, OutOfMemory};
use crate::space::Space;
use crate::util::{KCell, Name};

/// Number of thread slots (X.2 thread numbers honoured: 18 bits).
pub const MAX_THREADS: usize = 1 << abi::thread_id::THREAD_NO_BITS;

/// Scheduling and IPC state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not yet started.
    Inactive = 0,
    /// Runnable (running, or waiting for the processor).
    Ready = 1,
    /// Waiting to send to `partner`.
    Sending = 2,
    /// Waiting to receive (from `partner`, or from anyone).
    Receiving = 3,
    /// Stopped after an unhandled fault (reported on the console).
    Faulted = 4,
    /// In the middle of an IPC, waiting for its partner to resolve a page fault in the
    /// partner's own space (string copy).
    XferWait = 5,
    /// The other party of a string transfer that its partner (`xfer_peer`) is copying:
    /// off every queue and out of reach of timeouts and other senders until the copy
    /// ends (see `ipc::transfer_typed`).
    Locked = 6,
}

/// A thread control block.
#[repr(C)]
pub struct Tcb {
    /// Saved kernel stack pointer while not running.
    pub kernel_sp: u64,
    /// Global thread id.
    pub id: ThreadId,
    pub state: State,
    /// 0, or the way the thread waits in a receive the IPC fast path may complete by
    /// returning straight to user mode: [`FAST_WAIT_BLOCKED_SLOW`] or
    /// [`FAST_WAIT_BLOCKED_FAST`]. Every other way of resuming it clears this first.
    /// (Next to `state`, so that the fast path writes both with one store.)
    pub fast_wait: u8,
    /// Halted by ExchangeRegisters (orthogonal to the IPC state).
    pub halted: bool,
    pub space: *mut Space,
    pub prio: u8,
    /// Timeslice length and what is left of it, in microseconds.
    pub timeslice_us: u64,
    pub remaining_us: u64,
    /// Total quantum left (0 = unlimited), X.2 Schedule.
    pub quantum_us: u64,
    /// The total quantum ran out: the thread is halted until its scheduler grants a new
    /// one with Schedule.
    pub quantum_expired: bool,
    /// Ready-queue links.
    pub next: *mut Tcb,
    pub prev: *mut Tcb,
    /// Scheduler thread (X.2).
    pub scheduler: ThreadId,
    /// User address of the UTCB (its start, not MR0); 0 = none yet.
    pub utcb_user: u64,
    /// Kernel address of the same UTCB (through the direct map).
    pub utcb_kernel: u64,
    /// User FS base (TLS).
    pub fs_base: u64,
    /// Whether the thread has ever been activated (has a valid UTCB and frame).
    pub active: bool,
    /// FPU/SSE/AVX state save area (kernel address; 0 = thread has never used the FPU).
    pub fpu_area: u64,
    /// Timeout list link and deadline (see `timeout`).
    pub timeout_next: *mut Tcb,
    pub wakeup_at: u64,
    pub timeout_queued: bool,
    /// IPC partner: the thread this one sends to (Sending) or the receive specifier
    /// (Receiving: a global id, ANY or ANY_LOCAL).
    pub partner: ThreadId,
    /// Receive specifier of the phase that follows a blocked send (NIL: none).
    pub then_receive: ThreadId,
    /// Receive timeout of that phase.
    pub then_timeout: u16,
    /// Senders waiting for this thread (FIFO, linked through `send_next`).
    pub send_queue: *mut Tcb,
    pub send_next: *mut Tcb,
    /// The thread is in a kernel-generated IPC (thread start, page fault, exception):
    /// its message registers are `kmsg`, not its user registers/UTCB.
    pub kernel_ipc: bool,
    /// Message buffer of kernel-generated IPC (MR0..MR21).
    pub kmsg: [u64; 22],
    /// Outcome of the last kernel-generated IPC: sender and error (0 = none).
    pub kmsg_from: ThreadId,
    pub kmsg_error: u64,
    /// Waiting for the X.2 start message from its pager (set on activation).
    pub starting: bool,
    /// UTCB location given to ThreadControl before activation.
    pub pending_utcb: u64,
    /// The local id (MR0 address), cached for the fast path; 0 before activation.
    pub local: u64,
    /// While a redirected send is pending: the receiver it was meant for (NIL otherwise).
    pub intended: ThreadId,
    /// A partner asked this (blocked) thread to resolve a page fault in its own space:
    /// the address, the access, the asking thread, and the state to return to.
    pub help_pending: bool,
    pub help_addr: u64,
    pub help_write: bool,
    pub help_for: *mut Tcb,
    pub help_saved_state: State,
    /// Outcome of such a request, for the asking thread.
    pub help_result: bool,
    /// During a string transfer that may block (page faults): the other party, on both
    /// sides; null otherwise. The copier is the running side, the other party is
    /// `Locked`.
    pub xfer_peer: *mut Tcb,
    /// This thread is the sending side of that transfer.
    pub xfer_sender: bool,
    /// This thread copies (it is not the `Locked` side).
    pub xfer_copier: bool,
    /// The transfer was broken from outside: 0, or the IPC error code to end it with
    /// (aborted by ExchangeRegisters, or the other party deleted).
    pub xfer_error: u8,
    /// The locked side's IPC state and fast-path mark before the transfer, restored
    /// when it ends.
    pub xfer_saved_state: State,
    pub xfer_saved_fast: u8,
    /// Delayed preemption (X.2 Schedule's PreemptionControl): maximum delay in µs (0:
    /// none), the sensitive priority, and whether the allowance is used up (ThreadSwitch
    /// renews it). See `sched`.
    pub preempt_max_delay_us: u16,
    pub preempt_sensitive: u8,
    pub preempt_spent: bool,
}

pub(crate) static SLOTS: KCell<[u64; MAX_THREADS / 64]> = KCell::new([0; MAX_THREADS / 64]);
static COUNT: KCell<usize> = KCell::new(0);

/// Kernel virtual address of slot `n`'s TCB.
#[inline(always)]
pub fn tcb_addr(n: u32) -> u64 {
    TCB_AREA + n as u64 * TCB_SLOT + TCB_OFFSET
}

/// Number of live threads.
pub fn count() -> usize {
    *COUNT.get()
}

#[inline]
fn slot_used(n: u32) -> bool {
    SLOTS.get()[n as usize / 64] & (1 << (n % 64)) != 0
}

/// Finds the thread with exactly this global id.
#[inline]
pub fn lookup(id: ThreadId) -> Option<&'static mut Tcb> {
    let n = id.number();
    if !id.is_global() || n as usize >= MAX_THREADS || !slot_used(n) {
        return None;
    }
    // SAFETY: the slot bit is set, so a TCB lives at this address (invariant).
    let tcb = unsafe { &mut *(tcb_addr(n) as *mut Tcb) };
    (tcb.id == id).then_some(tcb)
}

/// The thread with thread number `n`, whatever its version.
pub fn lookup_number(n: u32) -> Option<&'static mut Tcb> {
    if n as usize >= MAX_THREADS || !slot_used(n) {
        return None;
    }
    // SAFETY: the slot bit is set, so a TCB lives at this address (invariant).
    Some(unsafe { &mut *(tcb_addr(n) as *mut Tcb) })
}

/// Whether any thread occupies the slot of `id`'s thread number (any version).
pub fn number_in_use(n: u32) -> bool {
    (n as usize) < MAX_THREADS && slot_used(n)
}

impl Tcb {
    /// The user register frame at the top of the kernel stack.
    #[inline(always)]
    pub fn frame(&mut self) -> &mut Frame {
        let top = self as *mut Tcb as u64;
        // SAFETY: the frame occupies the top FRAME_SIZE bytes of this thread's kernel
        // stack, directly below the TCB (module layout), and is only used by the thread's
        // own kernel path or while the thread is not running.
        unsafe { &mut *((top - FRAME_SIZE) as *mut Frame) }
    }

    /// The thread's address space.
    #[inline(always)]
    pub fn space(&self) -> &'static mut Space {
        // SAFETY: a thread's space outlives it (spaces die with their last thread).
        unsafe { &mut *self.space }
    }

    /// Kernel stack top (where the user frame ends).
    #[inline(always)]
    pub fn stack_top(&self) -> u64 {
        self as *const Tcb as u64
    }

    /// The thread's local id (address of MR0 in its UTCB).
    pub fn local_id(&self) -> ThreadId {
        ThreadId(self.utcb_user + abi::utcb::UTCB_MR0_OFFSET as u64)
    }

    /// The UTCB as the kernel sees it.
    pub fn utcb(&mut self) -> Option<&mut abi::utcb::Utcb> {
        if self.utcb_kernel == 0 {
            return None;
        }
        // SAFETY: `utcb_kernel` points into a UTCB page owned by the thread's space,
        // 1 KiB aligned, mapped by the direct map for the space's lifetime.
        Some(unsafe { &mut *(self.utcb_kernel as *mut abi::utcb::Utcb) })
    }

    /// The program name (the space's), for reports.
    pub fn name(&self) -> Name {
        self.space().name
    }
}

/// Creates a thread in slot `id.number()`, in `space`, inactive, with a kernel stack
/// prepared to enter user mode through `trap_return` once activated.
pub fn create(id: ThreadId, space: &mut Space, prio: u8) -> Result<&'static mut Tcb, OutOfMemory> {
    let n = id.number();
    debug_assert!(!slot_used(n));
    let base = TCB_AREA + n as u64 * TCB_SLOT;
    let kpml4 = crate::space::kernel_pml4();
    // Pages 1..4 of the slot: stack (2 pages) and TCB page. Page 0 stays unmapped (guard).
    let mut frames = [0u64; 3];
    for i in 0..3 {
        match kmem::alloc_frame() {
            Ok(f) => frames[i] = f,
            Err(e) => {
                for f in &frames[..i] {
                    // SAFETY: allocated above, not yet mapped.
                    unsafe { kmem::free_frame(*f) };
                }
                return Err(e);
            }
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let va = base + (i as u64 + 1) * 4096;
        if let Err(e) = paging::map(kpml4, va, *f, PageSize::Size4K, pte::WRITE | pte::GLOBAL | pte::NX) {
            for (j, g) in frames.iter().enumerate() {
                if j < i {
                    paging::unmap(kpml4, base + (j as u64 + 1) * 4096);
                    paging::invlpg(base + (j as u64 + 1) * 4096);
                }
                // SAFETY: allocated above and unmapped again.
                unsafe { kmem::free_frame(*g) };
            }
            return Err(e);
        }
    }
    SLOTS.get_mut()[n as usize / 64] |= 1 << (n % 64);
    *COUNT.get_mut() += 1;
    space.threads += 1;
    let tcb_ptr = tcb_addr(n) as *mut Tcb;
    // SAFETY: the TCB page was just mapped and zeroed; nothing else refers to it.
    let tcb = unsafe {
        tcb_ptr.write(Tcb {
            kernel_sp: 0,
            id,
            state: State::Inactive,
            fast_wait: 0,
            halted: false,
            space,
            prio,
            timeslice_us: crate::sched::DEFAULT_TIMESLICE_US,
            remaining_us: crate::sched::DEFAULT_TIMESLICE_US,
            quantum_us: 0,
            quantum_expired: false,
            next: core::ptr::null_mut(),
            prev: core::ptr::null_mut(),
            scheduler: ThreadId::NIL,
            utcb_user: 0,
            utcb_kernel: 0,
            fs_base: 0,
            active: false,
            fpu_area: 0,
            timeout_next: core::ptr::null_mut(),
            wakeup_at: 0,
            timeout_queued: false,
            partner: ThreadId::NIL,
            then_receive: ThreadId::NIL,
            then_timeout: 0,
            send_queue: core::ptr::null_mut(),
            send_next: core::ptr::null_mut(),
            kernel_ipc: false,
            kmsg: [0; 22],
            kmsg_from: ThreadId::NIL,
            kmsg_error: 0,
            starting: false,
            pending_utcb: 0,
            local: 0,
            intended: ThreadId::NIL,
            help_pending: false,
            help_addr: 0,
            help_write: false,
            help_for: core::ptr::null_mut(),
            help_saved_state: State::Inactive,
            help_result: false,
            xfer_peer: core::ptr::null_mut(),
            xfer_sender: false,
            xfer_copier: false,
            xfer_error: 0,
            xfer_saved_state: State::Inactive,
            xfer_saved_fast: 0,
            preempt_max_delay_us: 0,
            preempt_sensitive: 0,
            preempt_spent: false,
        });
        &mut *tcb_ptr
    };
    reset_stack(tcb);
    Ok(tcb)
}

/// `fast_wait` values: blocked in a receive the slow path set up (its kernel
/// continuation is still on its stack) ...
pub const FAST_WAIT_BLOCKED_SLOW: u8 = 1;
/// ... or blocked by the fast path (nothing on its kernel stack).
pub const FAST_WAIT_BLOCKED_FAST: u8 = 2;

/// Prepares the kernel stack of a thread blocked by the fast path so that switching to
/// it leaves through the system-call exit path with the registers in its frame.
pub fn prepare_syscall_return(t: &mut Tcb) {
    let top = t.stack_top();
    let ret = top - FRAME_SIZE - 8;
    // SAFETY: the words below the frame belong to this thread's stack, which holds no
    // live data while the thread waits after the fast path.
    unsafe { *(ret as *mut u64) = crate::arch::syscall::syscall_return_address() };
    t.kernel_sp = ret - 8 * crate::arch::SWITCH_SAVED_WORDS as u64;
}

/// Takes away `t`'s fast-path mark (so that the fast path cannot complete its receive,
/// e.g. while it is halted). A thread the fast path blocked has no kernel continuation:
/// it gets the system-call exit first, as whatever resumes it now is the full path.
pub fn clear_fast_mark(t: &mut Tcb) {
    if t.fast_wait == FAST_WAIT_BLOCKED_FAST {
        prepare_syscall_return(t);
    }
    t.fast_wait = 0;
}

/// Prepares the kernel stack of a thread blocked by the fast path so that it first runs
/// `ipc_string::help_entry` (to serve a partner's page-fault request) and then leaves
/// through the system-call exit path.
pub fn prepare_help_entry(t: &mut Tcb) {
    let top = t.stack_top();
    let ret = top - FRAME_SIZE - 8;
    // SAFETY: as in `prepare_syscall_return`.
    unsafe { *(ret as *mut u64) = crate::arch::help_entry as *const () as u64 };
    t.kernel_sp = ret - 8 * crate::arch::SWITCH_SAVED_WORDS as u64;
}

/// Prepares the kernel stack so that switching to the thread enters user mode with
/// the register state in its frame (through `trap_return`).
pub fn reset_stack(tcb: &mut Tcb) {
    let top = tcb.stack_top();
    let frame = tcb.frame();
    *frame = Frame::default();
    frame.cs = crate::arch::gdt::USER_CS as u64;
    frame.ss = crate::arch::gdt::USER_DS as u64;
    // IF; with the `tern.x2-compat-io` boot option also IOPL 3 (Pistachio's default).
    frame.rflags = if crate::ioport::compat_iopl() { 0x3202 } else { 0x202 };
    let sp = top - FRAME_SIZE - 8 - 8 * crate::arch::SWITCH_SAVED_WORDS as u64;
    // SAFETY: the words below the frame are on this thread's own, currently unused stack.
    unsafe {
        *((top - FRAME_SIZE - 8) as *mut u64) = crate::arch::thread_entry as *const () as u64;
        core::ptr::write_bytes(sp as *mut u64, 0, crate::arch::SWITCH_SAVED_WORDS);
    }
    tcb.kernel_sp = sp;
}

/// Frees a thread's slot. The caller has removed it from every queue.
///
/// # Safety
/// The thread must not be running and nothing may refer to it afterwards.
pub unsafe fn destroy(tcb: &mut Tcb) {
    let n = tcb.id.number();
    if tcb.fpu_area != 0 {
        crate::fpu::release(tcb);
    }
    tcb.space().threads -= 1;
    let base = TCB_AREA + n as u64 * TCB_SLOT;
    let kpml4 = crate::space::kernel_pml4();
    SLOTS.get_mut()[n as usize / 64] &= !(1 << (n % 64));
    *COUNT.get_mut() -= 1;
    for i in 1..4 {
        let va = base + i * 4096;
        if let Some(leaf) = paging::unmap(kpml4, va) {
            paging::invlpg(va);
            // SAFETY: the slot's frames belong to the dying thread only.
            unsafe { kmem::free_frame(leaf.phys) };
        }
    }
    paging::free_table_if_empty(kpml4, base);
}

/// Gives an inactive thread its UTCB (at user address `utcb`, inside the space's UTCB
/// area) and pager, making it ready to run once started.
pub fn activate(t: &mut Tcb, utcb: u64, pager: ThreadId) -> Result<(), OutOfMemory> {
    let page = utcb & !0xFFF;
    let kpage = t.space().utcb_page(page)?;
    t.utcb_user = utcb;
    t.utcb_kernel = kpage + (utcb & 0xFFF);
    t.local = utcb + abi::utcb::UTCB_MR0_OFFSET as u64;
    let id = t.id;
    let local = t.local_id();
    let u = t.utcb().expect("UTCB just set");
    u.kernel_private[0] = local.raw();
    u.my_global_id = id.raw();
    u.pager = pager.raw();
    u.word_size_mask = u64::MAX;
    t.active = true;
    Ok(())
}

/// Visits every live thread.
pub fn for_each(mut f: impl FnMut(&mut Tcb)) {
    for (w, &bits) in SLOTS.get().iter().enumerate() {
        let mut b = bits;
        while b != 0 {
            let n = (w * 64) as u32 + b.trailing_zeros();
            b &= b - 1;
            // SAFETY: the slot bit is set, so a TCB lives there (invariant).
            f(unsafe { &mut *(tcb_addr(n) as *mut Tcb) });
        }
    }
}

/// First instructions of every thread in the kernel (its stack is prepared so that the
/// first switch "returns" here): finishes the X.2 start protocol — a start message from
/// the pager with two untyped words sets IP and SP — then enters user mode.
pub extern "C" fn first_entry() {
    let Some(t) = crate::sched::current() else { return };
    if t.starting {
        t.starting = false;
        t.kernel_ipc = false;
        let tag = abi::msg::MsgTag(t.kmsg[0]);
        if t.kmsg_error == 0 && tag.untyped() == 2 {
            let (ip, sp) = (t.kmsg[1], t.kmsg[2]);
            let f = t.frame();
            f.rip = ip;
            f.rsp = sp;
        }
    }
}

const _: () = assert!(core::mem::offset_of!(Tcb, fast_wait) == core::mem::offset_of!(Tcb, state) + 1);
