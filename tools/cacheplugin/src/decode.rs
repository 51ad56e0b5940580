//! What the plugin recognises in an instruction's bytes at translation time, and how it
//! packs an instruction's address and length into the callback's user-data word.
//!
//! # The marker
//!
//! A window boundary the measured program writes itself: the 7-byte no-op
//!
//! ```text
//!   nopl 0x4d43NNNN(%rax)        0f 1f 80  NN_lo NN_hi 43 4d       (NNNN = marker id)
//! ```
//!
//! a long NOP (the `0f 1f /0` form compilers pad with, but with a displacement no compiler
//! emits: its upper half spells "CM"). It executes as a no-op on every x86-64 CPU and in
//! every emulator; the plugin sees it by its bytes. Each id is its own anchor: consecutive
//! markers with the same id delimit iterations, a different id starts a new segment. In
//! Rust: `core::arch::asm!(".byte 0x0f, 0x1f, 0x80, 0x07, 0x00, 0x43, 0x4d")` is marker 7.
//!
//! # Address-space switches
//!
//! `mov %reg, %cr3` (`[REX] 0f 22 /r` with ModRM.reg = 3 and no REX.R) flushes the TLB
//! model's non-global entries, taken to be those below the kernel base.

/// The marker's first three bytes.
const MARKER_OPCODE: [u8; 3] = [0x0F, 0x1F, 0x80];
/// The upper half of the marker's displacement, little-endian ("CM").
const MARKER_TAG: [u8; 2] = [0x43, 0x4D];

/// The marker id if `bytes` (one whole instruction) is a marker.
pub fn marker_id(bytes: &[u8]) -> Option<u16> {
    match bytes {
        [a, b, c, lo, hi, t0, t1] if [*a, *b, *c] == MARKER_OPCODE && [*t0, *t1] == MARKER_TAG => {
            Some(u16::from_le_bytes([*lo, *hi]))
        }
        _ => None,
    }
}

/// The bytes of marker `id`.
pub fn marker_bytes(id: u16) -> [u8; 7] {
    let [lo, hi] = id.to_le_bytes();
    [0x0F, 0x1F, 0x80, lo, hi, MARKER_TAG[0], MARKER_TAG[1]]
}

/// Whether `bytes` (one whole instruction) writes CR3.
pub fn writes_cr3(bytes: &[u8]) -> bool {
    let rest = match bytes.first() {
        Some(rex @ 0x40..=0x4F) if rex & 0x04 == 0 => &bytes[1..],
        Some(0x40..=0x4F) => return false,
        _ => bytes,
    };
    matches!(rest, [0x0F, 0x22, modrm] if modrm >> 6 == 3 && (modrm >> 3) & 7 == 3)
}

/// Bits of the packed word holding the address: its low 57 bits, enough for canonical
/// addresses of 5-level paging (sign-extended from bit 56; Linux under `-cpu max` uses
/// LA57) and of 4-level paging.
const ADDR_BITS: u32 = 57;

/// An instruction's address and length in one word (the user data of its callback), so
/// that translating code allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed(pub u64);

impl Packed {
    /// `None` for a length above 15 (not an x86 instruction).
    pub fn new(vaddr: u64, len: usize) -> Option<Self> {
        let len = u64::try_from(len).ok().filter(|l| (1..=15).contains(l))?;
        Some(Packed(
            (vaddr & ((1 << ADDR_BITS) - 1)) | (len << ADDR_BITS),
        ))
    }

    /// The (canonical) address.
    pub fn vaddr(self) -> u64 {
        let low = self.0 & ((1 << ADDR_BITS) - 1);
        // Sign-extend the top address bit.
        (((low << (64 - ADDR_BITS)) as i64) >> (64 - ADDR_BITS)) as u64
    }

    pub fn insn_len(self) -> u64 {
        self.0 >> ADDR_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised_by_their_bytes() {
        assert_eq!(marker_id(&marker_bytes(7)), Some(7));
        assert_eq!(marker_id(&marker_bytes(0xBEEF)), Some(0xBEEF));
        // The compilers' 7-byte padding NOP is not a marker.
        assert_eq!(marker_id(&[0x0F, 0x1F, 0x80, 0, 0, 0, 0]), None);
        assert_eq!(marker_id(&[0x0F, 0x1F, 0x80, 1, 0, 0x43]), None);
        assert_eq!(marker_id(&[0x0F, 0x1F, 0x84, 1, 0, 0x43, 0x4D]), None);
    }

    #[test]
    fn cr3_writes_are_recognised() {
        assert!(writes_cr3(&[0x0F, 0x22, 0xD8])); // mov %rax,%cr3
        assert!(writes_cr3(&[0x0F, 0x22, 0xDF])); // mov %rdi,%cr3
        assert!(writes_cr3(&[0x41, 0x0F, 0x22, 0xD8])); // mov %r8,%cr3
        assert!(!writes_cr3(&[0x0F, 0x22, 0xC0])); // mov %rax,%cr0
        assert!(!writes_cr3(&[0x0F, 0x20, 0xD8])); // mov %cr3,%rax (a read)
        assert!(!writes_cr3(&[0x44, 0x0F, 0x22, 0xD8])); // REX.R: cr11
        assert!(!writes_cr3(&[0x0F, 0x22]));
    }

    #[test]
    fn packing_keeps_canonical_addresses_and_lengths() {
        for (addr, len) in [
            (0x40_1000u64, 1usize),
            (0xFFFF_FFFF_8100_0000, 15),
            (0x7FFF_FFFF_FFFF, 7),
            (0xFFFF_8000_0000_0000, 3),
            (0xFF11_0000_049F_9640, 4),
            (0x00FF_FFFF_FFFF_F000, 2),
        ] {
            let p = Packed::new(addr, len).unwrap();
            assert_eq!((p.vaddr(), p.insn_len()), (addr, len as u64));
        }
        assert!(Packed::new(0, 0).is_none());
        assert!(Packed::new(0, 16).is_none());
    }
}
