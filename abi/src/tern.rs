//! Where Tern extends or departs from X.2 as Pistachio implements it.
//!
//! Every extension is invisible to unmodified Pistachio programs: they
//! never set the bits or use the codes below.
//!
//! | extension | where | what |
//! |---|---|---|
//! | kernel identity | [`kip::TERN_KERNEL_ID`], [`kip::TERN_SUPPLIER`] | kernel id 0x0B, subid 0, supplier "Tern", version string [`VERSION_STRING`] |
//! | local id at UTCB word 0 | [`utcb::TERN_LOCAL_ID`] | the kernel stores the running thread's local id in the first kernel-private UTCB word and points the GS base at the UTCB, so `movq %gs:0` yields the local id (Pistachio uses a separate per-CPU page) |
//! | FS base | [`syscall::EXREGS_SET_FS_BASE`] | ExchangeRegisters control bit 16 sets the FS base from the UserDefinedHandle argument (reserved; the kernel does not implement it yet) |
//! | power off | [`syscall::KDB_POWER_OFF`] | KDB operation 0x10 ends the machine with the status in AL (privileged spaces only) |
//! | page sizes | [`kip::PAGE_INFO`] | 1 GB pages are offered next to 4 KB and 2 MB |
//!
//! [`kip::TERN_KERNEL_ID`]: crate::kip::TERN_KERNEL_ID
//! [`kip::TERN_SUPPLIER`]: crate::kip::TERN_SUPPLIER
//! [`kip::PAGE_INFO`]: crate::kip::PAGE_INFO
//! [`utcb::TERN_LOCAL_ID`]: crate::utcb::TERN_LOCAL_ID
//! [`syscall::EXREGS_SET_FS_BASE`]: crate::syscall::EXREGS_SET_FS_BASE
//! [`syscall::KDB_POWER_OFF`]: crate::syscall::KDB_POWER_OFF

pub use crate::kip::{TERN_KERNEL_ID, TERN_SUPPLIER};
pub use crate::syscall::{EXREGS_SET_FS_BASE, KDB_POWER_OFF};
pub use crate::utcb::TERN_LOCAL_ID;

/// Tern's version (major, minor); kept equal to the crate version.
pub const VERSION: (u16, u16) = (0, 1);

/// The KIP version string: `"Tern <crate version>"`.
pub const VERSION_STRING: &str = concat!("Tern ", env!("CARGO_PKG_VERSION"));

/// KIP feature strings naming Tern's extensions: the local id at UTCB
/// word 0 / `%gs:0`, the FS-base ExchangeRegisters bit, KDB power-off.
pub const FEATURES: &[&str] = &["tern-gs-utcb", "tern-kdb-poweroff"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_crate() {
        let v = format!("{}.{}.", VERSION.0, VERSION.1);
        assert!(env!("CARGO_PKG_VERSION").starts_with(&v), "{v}");
        assert!(VERSION_STRING.starts_with("Tern "));
        assert!(FEATURES.iter().all(|f| !f.is_empty() && !f.contains('\0')));
    }
}
