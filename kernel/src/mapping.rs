//! Mappings between address spaces: map, grant, unmap (flush) and σ0's idempotent pages.
//!
//! Today the page tables are changed directly and Unmap only flushes the caller's own
//! mappings; the recursive derivation tree (the `mapdb` crate) is wired in here.

use abi::fpage::Fpage;

use crate::arch::layout::USER_END;
use crate::arch::paging;
use crate::ipc;
use crate::sched;
use crate::thread::Tcb;

/// The Unmap system call: fpages in MR0..MRk of the caller.
pub fn unmap_syscall(t: &mut Tcb) {
    let f = t.frame();
    let control = abi::syscall::UnmapControl::from_raw(f.rdx);
    let k = control.count().min(64);
    for i in 0..k {
        let fp = Fpage(ipc::mr(t, i));
        if control.flush() {
            if let Ok(v) = fp.try_validate() {
                let (base, log2) = (v.fpage().base(), v.log2size().min(47));
                let space = t.space();
                let mut va = base;
                let end = (base + (1u64 << log2)).min(USER_END);
                while va < end {
                    let step = match paging::translate(space.pml4, va) {
                        Some(l) if !space.in_utcb_area(va, 1) && va != space.kip_base => {
                            paging::unmap(space.pml4, va);
                            sched::flush_if_current(space, va);
                            l.size.bytes()
                        }
                        Some(l) => l.size.bytes(),
                        None => 4096,
                    };
                    va = (va & !(step - 1)) + step;
                }
            }
        }
        ipc::set_mr(t, i, fp.raw() & !0xF);
    }
    let local = t.local_id().raw();
    t.frame().rdi = local;
}
