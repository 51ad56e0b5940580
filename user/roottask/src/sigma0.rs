//! Memory from σ0, into this task's physical window, and the boot archive.

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::kip::MemKind;
use abi::msg::{Acceptor, MsgTag};
use abi::thread_id::ThreadId;
use abi::time::Time;
use bootfmt::cpio::Archive;
use l4::ipc::{self, Msg};

/// Base of the physical window: physical address `p` is at `WINDOW + p`.
pub const WINDOW: u64 = 0x1000_0000_0000;
/// log2 of the window's size (1 TiB of physical addresses).
pub const WINDOW_LOG2: u8 = 40;

/// σ0's thread id (UserBase, version 1).
pub fn sigma0_id() -> ThreadId {
    let ti = abi::kip::ThreadInfo::decode(l4::kip::get().thread_info);
    ThreadId::global(ti.user_base as u32, 1)
}

/// Asks σ0 for `fpage` (base all ones: anywhere); returns the physical address of what
/// it mapped, which now lies at `WINDOW + address`.
pub fn request(fpage: Fpage) -> Option<u64> {
    ipc::set_acceptor(Acceptor::new(
        Fpage::new(WINDOW, WINDOW_LOG2, Rights::NONE),
        false,
    ));
    let m = Msg::with_words(abi::msg::label::SIGMA0, &[fpage.raw(), 0]).ok()?;
    let r = ipc::call(sigma0_id(), &m, Time::Never, Time::Never);
    ipc::set_acceptor(Acceptor::UNTYPED);
    let r = r.ok()?;
    let tag: MsgTag = r.tag();
    if tag.typed() != 2 {
        return None;
    }
    let got = Fpage(r.typed()[1]);
    if got.is_nil() || got.is_io() {
        return None;
    }
    Some(got.base())
}

/// Asks σ0 for the ports of `io`; true if it mapped them to this task.
pub fn request_ports(io: IoFpage) -> bool {
    ipc::set_acceptor(Acceptor::complete());
    let r = Msg::with_words(abi::msg::label::SIGMA0, &[io.raw(), 0])
        .ok()
        .map(|m| ipc::call(sigma0_id(), &m, Time::Never, Time::Never));
    ipc::set_acceptor(Acceptor::UNTYPED);
    match r {
        Some(Ok(m)) if m.tag().typed() == 2 => {
            let got = Fpage(m.typed()[1]);
            !got.is_nil() && got.is_io()
        }
        _ => false,
    }
}

/// One page of free memory from σ0: its physical address.
pub fn page() -> Option<u64> {
    request(Fpage::new(u64::MAX, 12, Rights::RWX))
}

/// The bytes at physical `[start, end)` (already obtained) through the window.
///
/// # Safety
/// The range must have been mapped into the window by [`request`] and stay mapped for
/// `'static`; nothing may write it while the slice is in use.
pub unsafe fn phys_slice(start: u64, end: u64) -> &'static [u8] {
    // SAFETY: forwarded to the caller's contract.
    unsafe { core::slice::from_raw_parts((WINDOW + start) as *const u8, (end - start) as usize) }
}

/// Finds the boot archive (KIP memory descriptor: boot loader, subtype 3), asks σ0 for
/// its pages and returns it, read through the window.
pub fn boot_archive() -> Option<Archive<'static>> {
    let kip = l4::kip::get();
    let mut i = 0;
    let mut found = None;
    while let Some(d) = kip.mem_desc(i) {
        i += 1;
        if let Ok(d) = d {
            if d.kind == MemKind::BootLoader && d.subtype == 3 && !d.virtual_ {
                found = Some((d.low & !0xFFF, (d.high + 1 + 0xFFF) & !0xFFF));
            }
        }
    }
    let (start, end) = found?;
    let mut p = start;
    while p < end {
        request(Fpage::new(p, 12, Rights::R))?;
        p += 0x1000;
    }
    // The archive's length is its own business: the cpio trailer ends it.
    // SAFETY: every page of [start, end) was just mapped into the window from σ0 and is
    // never given back; nobody writes the archive.
    let bytes = unsafe { phys_slice(start, end) };
    let a = Archive::new(bytes);
    a.validate().ok()?;
    Some(a)
}
