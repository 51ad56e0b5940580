//! Port I/O over a range of ports: the `in`/`out` instructions, kept inside the range
//! the program names (so one driver's code cannot stray into another device's ports by
//! a wrong offset).
//!
//! A port access of a space that lacks the port does not touch the device: the kernel
//! turns the #GP into the X.2 I/O page fault, sent to the thread's pager (label
//! −8 << 4, MR1 the I/O fpage of the port), and retries the instruction once the pager
//! has mapped the port. So these accesses cannot harm the program's memory, whichever
//! ports the space has.

use abi::fpage::{IoFpage, Rights};

/// `2^log2` consecutive ports from `base` (`base` aligned to the size, as an I/O fpage
/// must be).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ports {
    base: u16,
    log2: u8,
}

/// A port range that is no I/O fpage (size above 2^16 or base not aligned).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadPorts {
    /// The base asked for.
    pub base: u16,
    /// The log2 size asked for.
    pub log2: u8,
}

impl Ports {
    /// The range `base .. base + 2^log2`.
    pub const fn new(base: u16, log2: u8) -> Result<Self, BadPorts> {
        if log2 > 16 || (log2 < 16 && !(base as u32).is_multiple_of(1u32 << log2)) || (log2 == 16 && base != 0) {
            return Err(BadPorts { base, log2 });
        }
        Ok(Self { base, log2 })
    }

    /// The I/O fpage of the range with `rights`.
    pub const fn fpage(self, rights: Rights) -> IoFpage {
        IoFpage::new(self.base, self.log2, rights)
    }

    /// First port.
    pub const fn base(self) -> u16 {
        self.base
    }

    /// The port at `offset`, wrapped into the range.
    const fn port(self, offset: u16) -> u16 {
        let mask = ((1u32 << self.log2) - 1) as u16;
        self.base.wrapping_add(offset & mask)
    }

    /// Reads a byte from the port at `offset` (wrapped into the range).
    #[inline]
    pub fn inb(self, offset: u16) -> u8 {
        let v: u8;
        // SAFETY: `in al, dx` reads a device register; it touches no memory of the
        // program. Without the port the kernel raises an I/O page fault to the pager
        // instead (module comment).
        unsafe {
            core::arch::asm!("in al, dx", in("dx") self.port(offset), out("al") v, options(nomem, nostack, preserves_flags))
        };
        v
    }

    /// Writes a byte to the port at `offset` (wrapped into the range).
    #[inline]
    pub fn outb(self, offset: u16, v: u8) {
        // SAFETY: as in `inb`: `out dx, al` writes a device register and no memory.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") self.port(offset), in("al") v, options(nomem, nostack, preserves_flags))
        };
    }
}
