//! The PVH boot ABI: Xen's `hvm_start_info` (version 1) and the ELF note naming the
//! 32-bit entry point.
//!
//! A PVH boot loader (QEMU's `-kernel` with an ELF image, Xen, Firecracker, ...) reads
//! the `XEN_ELFNOTE_PHYS32_ENTRY` note of the kernel, loads its segments by physical
//! address and jumps to that entry in 32-bit protected mode with paging off and `%ebx`
//! holding the physical address of a [`StartInfo`]:
//!
//! ```text
//!  StartInfo (56 bytes)               ModlistEntry[nr_modules] (32 bytes each)
//!   0 magic  = 0x336ec578              0 paddr          module bytes
//!   4 version (>= 1)                   8 size
//!   8 flags                           16 cmdline_paddr  NUL-terminated, 0 = none
//!  12 nr_modules                      24 reserved
//!  16 modlist_paddr ----------------> MemmapEntry[memmap_entries] (24 bytes each)
//!  24 cmdline_paddr                    0 addr
//!  32 rsdp_paddr                       8 size
//!  40 memmap_paddr -----------------> 16 kind (RAM, RESERVED, ACPI, NVS, ...)
//!  48 memmap_entries                  20 reserved
//!  52 reserved
//! ```
//!
//! All fields are little endian. A physical address of 0 means "not present". Version 0
//! of the structure stops at offset 40 (no memory map); later versions only append
//! fields, so every version from 1 on is read as version 1.
//!
//! This module holds the layouts (with compile-time offset checks), bounds-checked
//! decoding from bytes, and validation. Reading physical memory is the kernel's job.

use core::fmt;
use core::mem::{offset_of, size_of};

use crate::bytes::{slice, u32_at, u64_at};
use crate::elf::{Elf, ElfError};

/// `StartInfo::magic`: "xEn3" with the top bit of the "E" set.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// The oldest [`StartInfo::version`] this crate accepts (the first with a memory map).
pub const PVH_VERSION: u32 = 1;

/// Type of the Xen ELF note holding the 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Owner name of Xen ELF notes.
pub const XEN_NOTE_NAME: &[u8] = b"Xen";

/// Everything that can be wrong with PVH start information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// Fewer bytes than the structure needs.
    Truncated,
    /// `magic` is not [`PVH_MAGIC`].
    BadMagic,
    /// `version` is 0: the structure has no memory map.
    UnsupportedVersion,
    /// `nr_modules` is non-zero but `modlist_paddr` is 0.
    MissingModuleList,
    /// There is no memory map (`memmap_entries` or `memmap_paddr` is 0).
    MissingMemoryMap,
    /// A module has physical address 0.
    MissingModule,
    /// An address plus a size overflows 64 bits.
    AddressOverflow,
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Truncated => "PVH structure truncated",
            Self::BadMagic => "bad PVH start info magic",
            Self::UnsupportedVersion => "PVH start info version 0 has no memory map",
            Self::MissingModuleList => "PVH modules announced without a module list",
            Self::MissingMemoryMap => "PVH start info has no memory map",
            Self::MissingModule => "PVH module at physical address 0",
            Self::AddressOverflow => "PVH address range overflows",
        };
        f.write_str(text)
    }
}

impl core::error::Error for PvhError {}

/// Xen's `struct hvm_start_info`, version 1.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartInfo {
    /// Must be [`PVH_MAGIC`].
    pub magic: u32,
    /// Structure version; fields up to `memmap_entries` exist from version 1 on.
    pub version: u32,
    /// `SIF_*` flags (privileged, initial domain); not used by Tern.
    pub flags: u32,
    /// Number of [`ModlistEntry`]s at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of the module list (0: none).
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated kernel command line (0: none).
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP (0: none).
    pub rsdp_paddr: u64,
    /// Physical address of the memory map (0: none).
    pub memmap_paddr: u64,
    /// Number of [`MemmapEntry`]s at `memmap_paddr`.
    pub memmap_entries: u32,
    /// Reserved, 0.
    pub reserved: u32,
}

/// One boot module of the module list.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModlistEntry {
    /// Physical address of the module's first byte.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of the module's NUL-terminated command line (0: none).
    pub cmdline_paddr: u64,
    /// Reserved, 0.
    pub reserved: u64,
}

/// One entry of the physical memory map (E820-like).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemmapEntry {
    /// Physical address of the first byte.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// What the memory is: one of the associated constants; other values are to be
    /// treated as not usable.
    pub kind: u32,
    /// Reserved, 0.
    pub reserved: u32,
}

const _: () = {
    assert!(size_of::<StartInfo>() == 56);
    assert!(offset_of!(StartInfo, magic) == 0);
    assert!(offset_of!(StartInfo, version) == 4);
    assert!(offset_of!(StartInfo, flags) == 8);
    assert!(offset_of!(StartInfo, nr_modules) == 12);
    assert!(offset_of!(StartInfo, modlist_paddr) == 16);
    assert!(offset_of!(StartInfo, cmdline_paddr) == 24);
    assert!(offset_of!(StartInfo, rsdp_paddr) == 32);
    assert!(offset_of!(StartInfo, memmap_paddr) == 40);
    assert!(offset_of!(StartInfo, memmap_entries) == 48);
    assert!(offset_of!(StartInfo, reserved) == 52);

    assert!(size_of::<ModlistEntry>() == 32);
    assert!(offset_of!(ModlistEntry, paddr) == 0);
    assert!(offset_of!(ModlistEntry, size) == 8);
    assert!(offset_of!(ModlistEntry, cmdline_paddr) == 16);
    assert!(offset_of!(ModlistEntry, reserved) == 24);

    assert!(size_of::<MemmapEntry>() == 24);
    assert!(offset_of!(MemmapEntry, addr) == 0);
    assert!(offset_of!(MemmapEntry, size) == 8);
    assert!(offset_of!(MemmapEntry, kind) == 16);
    assert!(offset_of!(MemmapEntry, reserved) == 20);
};

/// `[paddr, paddr + count * entry_size)`, or an overflow error.
fn table_range(paddr: u64, count: u32, entry_size: usize) -> Result<(u64, u64), PvhError> {
    let len = u64::from(count)
        .checked_mul(entry_size as u64)
        .ok_or(PvhError::AddressOverflow)?;
    let end = paddr.checked_add(len).ok_or(PvhError::AddressOverflow)?;
    Ok((paddr, end))
}

impl StartInfo {
    /// Size of the structure in bytes.
    pub const SIZE: usize = size_of::<Self>();

    /// Decodes the structure from the first [`Self::SIZE`] bytes of `bytes` (no
    /// validation; see [`Self::validate`]).
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self, PvhError> {
        let b = slice(bytes, 0, Self::SIZE).ok_or(PvhError::Truncated)?;
        let w = |off| u32_at(b, off).ok_or(PvhError::Truncated);
        let q = |off| u64_at(b, off).ok_or(PvhError::Truncated);
        Ok(Self {
            magic: w(0)?,
            version: w(4)?,
            flags: w(8)?,
            nr_modules: w(12)?,
            modlist_paddr: q(16)?,
            cmdline_paddr: q(24)?,
            rsdp_paddr: q(32)?,
            memmap_paddr: q(40)?,
            memmap_entries: w(48)?,
            reserved: w(52)?,
        })
    }

    /// Checks the magic and version, that announced tables have an address, that
    /// there is a memory map, and that no table's byte range overflows.
    pub fn validate(&self) -> Result<(), PvhError> {
        if self.magic != PVH_MAGIC {
            return Err(PvhError::BadMagic);
        }
        if self.version < PVH_VERSION {
            return Err(PvhError::UnsupportedVersion);
        }
        if self.nr_modules != 0 && self.modlist_paddr == 0 {
            return Err(PvhError::MissingModuleList);
        }
        if self.memmap_entries == 0 || self.memmap_paddr == 0 {
            return Err(PvhError::MissingMemoryMap);
        }
        self.modlist_range()?;
        self.memmap_range()?;
        Ok(())
    }

    /// Physical byte range `[start, end)` of the module list.
    pub fn modlist_range(&self) -> Result<(u64, u64), PvhError> {
        table_range(self.modlist_paddr, self.nr_modules, ModlistEntry::SIZE)
    }

    /// Physical byte range `[start, end)` of the memory map.
    pub fn memmap_range(&self) -> Result<(u64, u64), PvhError> {
        table_range(self.memmap_paddr, self.memmap_entries, MemmapEntry::SIZE)
    }
}

impl ModlistEntry {
    /// Size of one entry in bytes.
    pub const SIZE: usize = size_of::<Self>();

    /// Decodes an entry from the first [`Self::SIZE`] bytes of `bytes`.
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self, PvhError> {
        let b = slice(bytes, 0, Self::SIZE).ok_or(PvhError::Truncated)?;
        let q = |off| u64_at(b, off).ok_or(PvhError::Truncated);
        Ok(Self {
            paddr: q(0)?,
            size: q(8)?,
            cmdline_paddr: q(16)?,
            reserved: q(24)?,
        })
    }

    /// Physical byte range `[paddr, paddr + size)` of the module; fails when the module
    /// is at address 0 or its range overflows.
    pub fn range(&self) -> Result<(u64, u64), PvhError> {
        if self.paddr == 0 {
            return Err(PvhError::MissingModule);
        }
        let end = self
            .paddr
            .checked_add(self.size)
            .ok_or(PvhError::AddressOverflow)?;
        Ok((self.paddr, end))
    }
}

impl MemmapEntry {
    /// Size of one entry in bytes.
    pub const SIZE: usize = size_of::<Self>();

    /// Usable RAM.
    pub const RAM: u32 = 1;
    /// Reserved by firmware or devices.
    pub const RESERVED: u32 = 2;
    /// ACPI tables, reclaimable once they have been read.
    pub const ACPI: u32 = 3;
    /// ACPI non-volatile storage.
    pub const NVS: u32 = 4;
    /// Memory with errors.
    pub const UNUSABLE: u32 = 5;
    /// Disabled memory.
    pub const DISABLED: u32 = 6;
    /// Persistent memory.
    pub const PMEM: u32 = 7;

    /// Decodes an entry from the first [`Self::SIZE`] bytes of `bytes`.
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self, PvhError> {
        let b = slice(bytes, 0, Self::SIZE).ok_or(PvhError::Truncated)?;
        Ok(Self {
            addr: u64_at(b, 0).ok_or(PvhError::Truncated)?,
            size: u64_at(b, 8).ok_or(PvhError::Truncated)?,
            kind: u32_at(b, 16).ok_or(PvhError::Truncated)?,
            reserved: u32_at(b, 20).ok_or(PvhError::Truncated)?,
        })
    }

    /// Whether the entry describes usable RAM.
    pub fn is_ram(&self) -> bool {
        self.kind == Self::RAM
    }
}

impl crate::memmap::MemRegion for MemmapEntry {
    fn region(&self) -> (u64, u64, u32) {
        (self.addr, self.size, self.kind)
    }
}

/// The PVH entry point of a kernel image: the descriptor of its `Xen` note of type
/// [`XEN_ELFNOTE_PHYS32_ENTRY`], or `None` if it has no such note (and so cannot be
/// booted through PVH).
///
/// The descriptor is a 4- or 8-byte little-endian number; an 8-byte one must still fit
/// in 32 bits. Anything else is [`ElfError::BadNote`].
pub fn phys32_entry(elf: &Elf<'_>) -> Result<Option<u32>, ElfError> {
    for note in elf.notes() {
        let note = note?;
        if note.name != XEN_NOTE_NAME || note.kind != XEN_ELFNOTE_PHYS32_ENTRY {
            continue;
        }
        let entry = match note.desc.len() {
            4 => u32_at(note.desc, 0),
            8 => u64_at(note.desc, 0).and_then(|wide| u32::try_from(wide).ok()),
            _ => None,
        };
        return entry.map(Some).ok_or(ElfError::BadNote);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> StartInfo {
        StartInfo {
            magic: PVH_MAGIC,
            version: 1,
            flags: 0,
            nr_modules: 2,
            modlist_paddr: 0x9000,
            cmdline_paddr: 0x8000,
            rsdp_paddr: 0xe0000,
            memmap_paddr: 0xa000,
            memmap_entries: 5,
            reserved: 0,
        }
    }

    fn encode(info: &StartInfo) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [info.magic, info.version, info.flags, info.nr_modules] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for q in [
            info.modlist_paddr,
            info.cmdline_paddr,
            info.rsdp_paddr,
            info.memmap_paddr,
        ] {
            b.extend_from_slice(&q.to_le_bytes());
        }
        b.extend_from_slice(&info.memmap_entries.to_le_bytes());
        b.extend_from_slice(&info.reserved.to_le_bytes());
        b
    }

    #[test]
    fn decodes_and_validates() {
        let info = valid();
        let bytes = encode(&info);
        assert_eq!(bytes.len(), StartInfo::SIZE);
        assert_eq!(StartInfo::from_le_bytes(&bytes), Ok(info));
        assert_eq!(info.validate(), Ok(()));
        assert_eq!(info.modlist_range(), Ok((0x9000, 0x9040)));
        assert_eq!(info.memmap_range(), Ok((0xa000, 0xa000 + 5 * 24)));
        // Later versions are backwards compatible.
        assert_eq!(StartInfo { version: 7, ..info }.validate(), Ok(()));
        // No modules, no module list: fine.
        assert_eq!(
            StartInfo {
                nr_modules: 0,
                modlist_paddr: 0,
                ..info
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn rejects_bad_start_info() {
        let info = valid();
        assert_eq!(
            StartInfo {
                magic: 0x336e_c579,
                ..info
            }
            .validate(),
            Err(PvhError::BadMagic)
        );
        assert_eq!(
            StartInfo { version: 0, ..info }.validate(),
            Err(PvhError::UnsupportedVersion)
        );
        assert_eq!(
            StartInfo {
                modlist_paddr: 0,
                ..info
            }
            .validate(),
            Err(PvhError::MissingModuleList)
        );
        assert_eq!(
            StartInfo {
                memmap_paddr: 0,
                ..info
            }
            .validate(),
            Err(PvhError::MissingMemoryMap)
        );
        assert_eq!(
            StartInfo {
                memmap_entries: 0,
                ..info
            }
            .validate(),
            Err(PvhError::MissingMemoryMap)
        );
        assert_eq!(
            StartInfo {
                modlist_paddr: u64::MAX - 32,
                ..info
            }
            .validate(),
            Err(PvhError::AddressOverflow)
        );
        assert_eq!(
            StartInfo {
                memmap_paddr: u64::MAX - 100,
                memmap_entries: 5,
                ..info
            }
            .validate(),
            Err(PvhError::AddressOverflow)
        );
        assert_eq!(
            StartInfo {
                memmap_paddr: u64::MAX - 24,
                memmap_entries: 1,
                ..info
            }
            .memmap_range(),
            Ok((u64::MAX - 24, u64::MAX))
        );
        let bytes = encode(&info);
        for len in 0..StartInfo::SIZE {
            assert_eq!(
                StartInfo::from_le_bytes(&bytes[..len]),
                Err(PvhError::Truncated)
            );
        }
    }

    #[test]
    fn module_and_memmap_entries() {
        let mut bytes = Vec::new();
        for q in [0x20_0000u64, 0x1234, 0x8100, 0] {
            bytes.extend_from_slice(&q.to_le_bytes());
        }
        let module = ModlistEntry::from_le_bytes(&bytes).unwrap();
        assert_eq!(
            module,
            ModlistEntry {
                paddr: 0x20_0000,
                size: 0x1234,
                cmdline_paddr: 0x8100,
                reserved: 0
            }
        );
        assert_eq!(module.range(), Ok((0x20_0000, 0x20_1234)));
        assert_eq!(
            ModlistEntry { paddr: 0, ..module }.range(),
            Err(PvhError::MissingModule)
        );
        assert_eq!(
            ModlistEntry {
                paddr: u64::MAX,
                ..module
            }
            .range(),
            Err(PvhError::AddressOverflow)
        );
        assert_eq!(
            ModlistEntry::from_le_bytes(&bytes[..31]),
            Err(PvhError::Truncated)
        );

        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x10_0000u64.to_le_bytes());
        bytes.extend_from_slice(&0x7ff0_0000u64.to_le_bytes());
        bytes.extend_from_slice(&MemmapEntry::RAM.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let entry = MemmapEntry::from_le_bytes(&bytes).unwrap();
        assert_eq!(
            entry,
            MemmapEntry {
                addr: 0x10_0000,
                size: 0x7ff0_0000,
                kind: MemmapEntry::RAM,
                reserved: 0
            }
        );
        assert!(entry.is_ram());
        assert!(!MemmapEntry {
            kind: MemmapEntry::ACPI,
            ..entry
        }
        .is_ram());
        assert_eq!(
            MemmapEntry::from_le_bytes(&bytes[..23]),
            Err(PvhError::Truncated)
        );
    }

    /// A one-`PT_NOTE` ELF image whose note is `(name, kind, desc)`.
    fn elf_with_note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(name);
        note.push(0);
        while !note.len().is_multiple_of(4) {
            note.push(0);
        }
        note.extend_from_slice(desc);
        let mut b = vec![0u8; 64 + 56];
        b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        b[72..80].copy_from_slice(&120u64.to_le_bytes());
        b[96..104].copy_from_slice(&(note.len() as u64).to_le_bytes());
        b[112..120].copy_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&note);
        b
    }

    fn entry_of(bytes: &[u8]) -> Result<Option<u32>, ElfError> {
        phys32_entry(&Elf::parse(bytes).unwrap())
    }

    #[test]
    fn finds_the_pvh_entry_note() {
        let e = XEN_ELFNOTE_PHYS32_ENTRY;
        assert_eq!(
            entry_of(&elf_with_note(b"Xen", e, &0x10_0040u32.to_le_bytes())),
            Ok(Some(0x10_0040))
        );
        assert_eq!(
            entry_of(&elf_with_note(b"Xen", e, &0x10_0040u64.to_le_bytes())),
            Ok(Some(0x10_0040))
        );
        assert_eq!(
            entry_of(&elf_with_note(b"Xen", e, &(1u64 << 32).to_le_bytes())),
            Err(ElfError::BadNote)
        );
        assert_eq!(
            entry_of(&elf_with_note(b"Xen", e, &[1, 2])),
            Err(ElfError::BadNote)
        );
        assert_eq!(
            entry_of(&elf_with_note(b"Xen", 17, &[1, 2, 3, 4])),
            Ok(None)
        );
        assert_eq!(entry_of(&elf_with_note(b"GNU", e, &[1, 2, 3, 4])), Ok(None));
    }
}
