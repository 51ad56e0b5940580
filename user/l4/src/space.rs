//! Address spaces: SpaceControl (KIP and UTCB areas of a new space), Unmap and
//! MemoryControl.

use abi::fpage::Fpage;
use abi::syscall::UnmapControl;
use abi::thread_id::ThreadId;
use abi::utcb::MR_COUNT;

use crate::error::{self, Error};
use crate::{syscall, utcb};

/// SpaceControl (privileged): sets the KIP area, UTCB area and redirector of the space
/// that `space` (a global id) belongs to. Returns the old control word.
pub fn space_control(
    space: ThreadId,
    control: u64,
    kip_area: Fpage,
    utcb_area: Fpage,
    redirector: ThreadId,
) -> Result<u64, Error> {
    utcb::set_error_code(0);
    let (r, old) = syscall::space_control(
        space.raw(),
        control,
        kip_area.raw(),
        utcb_area.raw(),
        redirector.raw(),
    );
    error::from_flag(r).map(|()| old)
}

/// More than 64 fpages given to [`unmap`] or [`memory_control`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TooMany;

/// Unmap: revokes the rights of each fpage in `fpages` (each fpage's rights field says
/// which) from every mapping derived from the caller's; with `flush` from the caller's own
/// mapping too. On return each element holds what the kernel wrote back (the fpage with
/// the access bits observed). Returns the RDI the kernel gave back (the binding requires
/// the caller's local id), or `TooMany` for more than 64 fpages (nothing is done then).
pub fn unmap(fpages: &mut [Fpage], flush: bool) -> Result<u64, TooMany> {
    if fpages.is_empty() {
        return Ok(utcb::my_local_id().raw());
    }
    if fpages.len() > MR_COUNT {
        return Err(TooMany);
    }
    for (i, f) in fpages.iter().enumerate() {
        let _ = utcb::set_mr(i, f.raw());
    }
    let rdi = syscall::unmap(UnmapControl::new((fpages.len() - 1) as u8, flush).0);
    for (i, f) in fpages.iter_mut().enumerate() {
        *f = Fpage(utcb::mr(i).unwrap_or(0));
    }
    Ok(rdi)
}

/// MemoryControl (privileged): applies attribute `attributes[i]` to the fpages whose
/// attribute selector (the fpage's low two bits, in place of the rights) is `i`, in the
/// caller's own page tables. An empty list or more than 64 fpages is refused before the
/// call, as an invalid parameter. Attribute 3 is passed the Tern way (control bit 6).
pub fn memory_control(fpages: &[Fpage], attributes: [u64; 4]) -> Result<(), Error> {
    if fpages.is_empty() || fpages.len() > MR_COUNT {
        return Err(Error::Sys(abi::error::SysError::InvalidParam));
    }
    for (i, f) in fpages.iter().enumerate() {
        let _ = utcb::set_mr(i, f.raw());
    }
    utcb::set_error_code(0);
    error::from_flag(syscall::memory_control(
        (fpages.len() - 1) as u64 | abi::syscall::MemoryControlWord::ATTR3_IN_R10,
        attributes,
    ))
}

/// Sets the caching attribute of the caller's mappings inside `fpage` (its rights field
/// is ignored): X.2's `L4_Set_PageAttribute`.
pub fn set_page_attribute(fpage: Fpage, attribute: abi::syscall::MemoryAttribute) -> Result<(), Error> {
    memory_control(&[fpage.with_rights(abi::fpage::Rights::NONE)], [attribute as u64, 0, 0, 0])
}
