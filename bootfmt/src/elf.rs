//! ELF64 executables for x86_64: header validation, loadable segments, notes, symbols.
//!
//! The kernel image, σ0, the root task and every server reach Tern as ELF64 files. This
//! module turns such a file (a byte slice nobody has checked) into an [`Elf`] view whose
//! header has been validated, and hands out its loadable segments one by one, each
//! validated before it is returned.
//!
//! ```text
//!  file offset 0
//!  +---------------------+  ELF header (64 bytes): magic, class, byte order, version,
//!  | Elf64_Ehdr          |  type, machine, entry, where the two header tables are
//!  +---------------------+
//!  | Elf64_Phdr[phnum]   |  program headers (56 bytes each) at e_phoff: segments;
//!  +---------------------+  PT_LOAD ones say "copy filesz bytes from offset to vaddr,
//!  | segment bytes ...   |  zero-fill up to memsz"
//!  +---------------------+
//!  | Elf64_Shdr[shnum]   |  section headers (64 bytes each) at e_shoff: used only to
//!  +---------------------+  find .symtab/.strtab for symbol lookup
//! ```
//!
//! What is checked, and when:
//!
//! * [`Elf::parse`]: magic, class 64, little endian, version 1, OS ABI System V or GNU,
//!   machine x86_64, type `ET_EXEC` or `ET_DYN`, program header entry size 56 and the
//!   whole program header table inside the file.
//! * [`Elf::segments`]: per `PT_LOAD` segment: no unknown flag bits, `filesz <= memsz`,
//!   file bytes inside the file, `vaddr + memsz` and `paddr + memsz` do not overflow,
//!   alignment zero or a power of two.
//! * [`Elf::validate_layout`]: `PT_LOAD` segments sorted by `vaddr` (as the ELF
//!   specification requires) and not overlapping one another (byte granularity; whether
//!   two segments may share a page is the loader's policy).
//! * [`Elf::symbols`], [`Elf::notes`]: section headers, symbol and string tables, notes,
//!   each only when asked for.
//!
//! Nothing here allocates; every result borrows from the input slice.

use core::fmt;

use crate::bytes::{align_up, slice, slice64, u16_at, u32_at, u64_at, u8_at};

/// `e_machine` of x86_64 (AMD64).
pub const EM_X86_64: u16 = 62;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header.
const PHDR_SIZE: usize = 56;
/// Size of one ELF64 section header.
const SHDR_SIZE: usize = 64;
/// Size of one ELF64 symbol.
const SYM_SIZE: usize = 24;

/// `e_ident[EI_CLASS]` for 64-bit objects.
const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` for little-endian objects.
const ELFDATA2LSB: u8 = 1;
/// The only ELF version (`EV_CURRENT`).
const EV_CURRENT: u8 = 1;
/// `e_ident[EI_OSABI]`: System V (what linkers write for bare-metal targets).
const ELFOSABI_SYSV: u8 = 0;
/// `e_ident[EI_OSABI]`: GNU/Linux (written when GNU extensions are used).
const ELFOSABI_GNU: u8 = 3;
/// `e_type` of an executable.
const ET_EXEC: u16 = 2;
/// `e_type` of a position-independent executable or shared object.
const ET_DYN: u16 = 3;
/// `e_phnum` value meaning "the real count is in section header 0".
const PN_XNUM: u16 = 0xffff;

/// Program header type of a loadable segment.
const PT_LOAD: u32 = 1;
/// Program header type of a note segment.
const PT_NOTE: u32 = 4;
/// Segment flag: executable.
const PF_X: u32 = 1;
/// Segment flag: writable.
const PF_W: u32 = 2;
/// Segment flag: readable.
const PF_R: u32 = 4;

/// Section type of a full symbol table.
const SHT_SYMTAB: u32 = 2;
/// Section type of a string table.
const SHT_STRTAB: u32 = 3;

/// Symbol type (low nibble of `st_info`): data object.
const STT_OBJECT: u8 = 1;
/// Symbol type (low nibble of `st_info`): function.
const STT_FUNC: u8 = 2;

/// Everything that can be wrong with an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than the ELF header.
    Truncated,
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// Not a 64-bit object.
    BadClass,
    /// Not little endian.
    BadByteOrder,
    /// `e_ident[EI_VERSION]` or `e_version` is not 1.
    BadVersion,
    /// OS ABI is neither System V nor GNU.
    BadOsAbi,
    /// Not built for x86_64.
    BadMachine,
    /// Neither `ET_EXEC` nor `ET_DYN` (for example a relocatable object or a core file).
    BadType,
    /// `e_phentsize` is not 56.
    BadProgramHeaderSize,
    /// The program header table does not lie inside the file.
    ProgramHeadersOutOfBounds,
    /// The file uses extended numbering (`PN_XNUM` or `e_shnum == 0` with a section
    /// table), which no executable this crate reads needs.
    ExtendedNumbering,
    /// A segment has flag bits other than R, W and X.
    BadSegmentFlags,
    /// A segment's `filesz` exceeds its `memsz`.
    FileSizeExceedsMemSize,
    /// A segment's file bytes do not lie inside the file.
    SegmentOutOfBounds,
    /// `vaddr + memsz` or `paddr + memsz` overflows.
    SegmentAddressOverflow,
    /// A segment's alignment is neither 0 nor a power of two.
    BadSegmentAlign,
    /// There is no non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// `PT_LOAD` segments are not in ascending `vaddr` order.
    SegmentsUnsorted,
    /// Two `PT_LOAD` segments overlap in virtual memory.
    SegmentsOverlap,
    /// A note inside a `PT_NOTE` segment is cut short.
    BadNote,
    /// `e_shentsize` is not 64 or the section header table is not inside the file.
    BadSectionHeaders,
    /// The symbol table's entry size, size or position is wrong.
    BadSymbolTable,
    /// The symbol table's string table is missing, of the wrong type or out of bounds.
    BadStringTable,
    /// A symbol name is not NUL-terminated inside the string table, or not UTF-8.
    BadSymbolName,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Truncated => "file shorter than the ELF header",
            Self::BadMagic => "not an ELF file (bad magic)",
            Self::BadClass => "not a 64-bit ELF file",
            Self::BadByteOrder => "not a little-endian ELF file",
            Self::BadVersion => "unknown ELF version",
            Self::BadOsAbi => "unsupported ELF OS ABI",
            Self::BadMachine => "not an x86_64 ELF file",
            Self::BadType => "ELF file is neither an executable nor a shared object",
            Self::BadProgramHeaderSize => "program header entry size is not 56",
            Self::ProgramHeadersOutOfBounds => "program header table outside the file",
            Self::ExtendedNumbering => "extended program/section numbering is not supported",
            Self::BadSegmentFlags => "segment has unknown flag bits",
            Self::FileSizeExceedsMemSize => "segment file size exceeds its memory size",
            Self::SegmentOutOfBounds => "segment bytes outside the file",
            Self::SegmentAddressOverflow => "segment address range overflows",
            Self::BadSegmentAlign => "segment alignment is not a power of two",
            Self::NoLoadSegments => "no loadable segment",
            Self::SegmentsUnsorted => "loadable segments not sorted by virtual address",
            Self::SegmentsOverlap => "loadable segments overlap",
            Self::BadNote => "malformed note",
            Self::BadSectionHeaders => "malformed section header table",
            Self::BadSymbolTable => "malformed symbol table",
            Self::BadStringTable => "malformed string table",
            Self::BadSymbolName => "malformed symbol name",
        };
        f.write_str(text)
    }
}

impl core::error::Error for ElfError {}

/// The object file type: what `e_type` says the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: linked at fixed addresses.
    Executable,
    /// `ET_DYN`: position independent; addresses are relative to a load base.
    Dynamic,
}

impl TryFrom<u16> for ElfKind {
    type Error = ElfError;

    fn try_from(e_type: u16) -> Result<Self, ElfError> {
        match e_type {
            ET_EXEC => Ok(Self::Executable),
            ET_DYN => Ok(Self::Dynamic),
            _ => Err(ElfError::BadType),
        }
    }
}

/// A validated ELF64 x86_64 executable.
///
/// # Invariants
///
/// * The header fields listed in the module documentation have been checked.
/// * `phoff + phnum * 56 <= bytes.len()` (computed without overflow): every program
///   header lies inside `bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    kind: ElfKind,
    entry: u64,
    phoff: usize,
    phnum: usize,
    shoff: u64,
    shnum: u16,
    shentsize: u16,
}

impl<'a> Elf<'a> {
    /// Validates the ELF header of `bytes` and the position of its program header table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let header = slice(bytes, 0, EHDR_SIZE).ok_or(ElfError::Truncated)?;
        // `header` is exactly EHDR_SIZE bytes, so the reads below cannot fail; they
        // still go through the checked helpers and map a miss to `Truncated`.
        let b = |off| u8_at(header, off).ok_or(ElfError::Truncated);
        let h = |off| u16_at(header, off).ok_or(ElfError::Truncated);
        let w = |off| u32_at(header, off).ok_or(ElfError::Truncated);
        let q = |off| u64_at(header, off).ok_or(ElfError::Truncated);

        if slice(header, 0, 4) != Some(b"\x7fELF") {
            return Err(ElfError::BadMagic);
        }
        if b(4)? != ELFCLASS64 {
            return Err(ElfError::BadClass);
        }
        if b(5)? != ELFDATA2LSB {
            return Err(ElfError::BadByteOrder);
        }
        if b(6)? != EV_CURRENT || w(20)? != u32::from(EV_CURRENT) {
            return Err(ElfError::BadVersion);
        }
        if !matches!(b(7)?, ELFOSABI_SYSV | ELFOSABI_GNU) {
            return Err(ElfError::BadOsAbi);
        }
        let kind = ElfKind::try_from(h(16)?)?;
        if h(18)? != EM_X86_64 {
            return Err(ElfError::BadMachine);
        }
        let entry = q(24)?;
        let phoff = q(32)?;
        let shoff = q(40)?;
        let phentsize = h(54)?;
        let phnum = h(56)?;
        let shentsize = h(58)?;
        let shnum = h(60)?;

        if phnum == PN_XNUM {
            return Err(ElfError::ExtendedNumbering);
        }
        let phnum = usize::from(phnum);
        let (phoff, phnum) = if phnum == 0 {
            // No program headers: e_phoff and e_phentsize carry no meaning.
            (0, 0)
        } else {
            if usize::from(phentsize) != PHDR_SIZE {
                return Err(ElfError::BadProgramHeaderSize);
            }
            let phoff = usize::try_from(phoff).map_err(|_| ElfError::ProgramHeadersOutOfBounds)?;
            let table_len = phnum
                .checked_mul(PHDR_SIZE)
                .ok_or(ElfError::ProgramHeadersOutOfBounds)?;
            slice(bytes, phoff, table_len).ok_or(ElfError::ProgramHeadersOutOfBounds)?;
            (phoff, phnum)
        };

        Ok(Self {
            bytes,
            kind,
            entry,
            phoff,
            phnum,
            shoff,
            shnum,
            shentsize,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the file is a fixed-address executable or position independent.
    pub fn kind(&self) -> ElfKind {
        self.kind
    }

    /// The entry point (`e_entry`); relative to the load base for [`ElfKind::Dynamic`].
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Number of program headers (of every type).
    pub fn program_header_count(&self) -> usize {
        self.phnum
    }

    /// Reads program header `index`.
    fn phdr(&self, index: usize) -> Result<RawPhdr, ElfError> {
        let offset = index
            .checked_mul(PHDR_SIZE)
            .and_then(|rel| self.phoff.checked_add(rel))
            .ok_or(ElfError::ProgramHeadersOutOfBounds)?;
        let raw =
            slice(self.bytes, offset, PHDR_SIZE).ok_or(ElfError::ProgramHeadersOutOfBounds)?;
        RawPhdr::read(raw).ok_or(ElfError::ProgramHeadersOutOfBounds)
    }

    /// The `PT_LOAD` segments in program header order, each validated on its own.
    ///
    /// A malformed segment yields an error in its place; the iteration goes on with the
    /// next program header, so a caller that wants all-or-nothing stops at the first
    /// `Err`.
    pub fn segments(&self) -> Segments<'a> {
        Segments {
            elf: *self,
            next: 0,
        }
    }

    /// The virtual address range `[lowest vaddr, highest vaddr + memsz)` covered by
    /// non-empty `PT_LOAD` segments.
    ///
    /// Fails with the first segment error, or [`ElfError::NoLoadSegments`] when no
    /// `PT_LOAD` segment has a non-zero `memsz`.
    pub fn load_range(&self) -> Result<(u64, u64), ElfError> {
        let mut range: Option<(u64, u64)> = None;
        for segment in self.segments() {
            let segment = segment?;
            if segment.memsz == 0 {
                continue;
            }
            let (start, end) = (segment.vaddr, segment.end());
            range = Some(match range {
                None => (start, end),
                Some((lo, hi)) => (lo.min(start), hi.max(end)),
            });
        }
        range.ok_or(ElfError::NoLoadSegments)
    }

    /// Checks that every `PT_LOAD` segment is valid, that they come in ascending `vaddr`
    /// order and that no two overlap in virtual memory. Segments with `memsz == 0` take
    /// no memory and are skipped.
    ///
    /// Overlap is judged byte by byte: two segments that share a page without sharing a
    /// byte pass, and a loader that maps whole pages with per-segment permissions must
    /// decide itself what to do with the shared page.
    pub fn validate_layout(&self) -> Result<(), ElfError> {
        let mut previous: Option<(u64, u64)> = None;
        for segment in self.segments() {
            let segment = segment?;
            if segment.memsz == 0 {
                continue;
            }
            if let Some((prev_start, prev_end)) = previous {
                if segment.vaddr < prev_start {
                    return Err(ElfError::SegmentsUnsorted);
                }
                if segment.vaddr < prev_end {
                    return Err(ElfError::SegmentsOverlap);
                }
            }
            previous = Some((segment.vaddr, segment.end()));
        }
        Ok(())
    }

    /// The notes of every `PT_NOTE` segment (for example the PVH entry note, see
    /// [`crate::pvh::phys32_entry`]).
    pub fn notes(&self) -> Notes<'a> {
        Notes {
            elf: *self,
            next_phdr: 0,
            data: &[],
            align: 4,
        }
    }

    /// Reads section header `index`; the caller has checked `shentsize`.
    fn shdr(&self, index: u16) -> Result<RawShdr, ElfError> {
        let rel = u64::from(index)
            .checked_mul(SHDR_SIZE as u64)
            .ok_or(ElfError::BadSectionHeaders)?;
        let offset = self
            .shoff
            .checked_add(rel)
            .ok_or(ElfError::BadSectionHeaders)?;
        let raw =
            slice64(self.bytes, offset, SHDR_SIZE as u64).ok_or(ElfError::BadSectionHeaders)?;
        RawShdr::read(raw).ok_or(ElfError::BadSectionHeaders)
    }

    /// The entries of the `.symtab` section (the first `SHT_SYMTAB` section), without
    /// the null symbol at index 0. A file without a symbol table (stripped) yields an
    /// empty iterator.
    pub fn symbols(&self) -> Result<Symbols<'a>, ElfError> {
        let empty = Symbols {
            table: &[],
            strtab: &[],
            next: 1,
        };
        if self.shnum == 0 {
            // e_shnum == 0 with a section table means the count is in section 0.
            return if self.shoff == 0 {
                Ok(empty)
            } else {
                Err(ElfError::ExtendedNumbering)
            };
        }
        if usize::from(self.shentsize) != SHDR_SIZE {
            return Err(ElfError::BadSectionHeaders);
        }
        let table_len = u64::from(self.shnum) * SHDR_SIZE as u64;
        slice64(self.bytes, self.shoff, table_len).ok_or(ElfError::BadSectionHeaders)?;

        let mut symtab = None;
        for index in 0..self.shnum {
            let section = self.shdr(index)?;
            if section.sh_type == SHT_SYMTAB {
                symtab = Some(section);
                break;
            }
        }
        let Some(symtab) = symtab else {
            return Ok(empty);
        };
        if symtab.entsize != SYM_SIZE as u64 || symtab.size % SYM_SIZE as u64 != 0 {
            return Err(ElfError::BadSymbolTable);
        }
        let table =
            slice64(self.bytes, symtab.offset, symtab.size).ok_or(ElfError::BadSymbolTable)?;

        let link = u16::try_from(symtab.link).map_err(|_| ElfError::BadStringTable)?;
        if link >= self.shnum {
            return Err(ElfError::BadStringTable);
        }
        let strsec = self.shdr(link)?;
        if strsec.sh_type != SHT_STRTAB {
            return Err(ElfError::BadStringTable);
        }
        let strtab =
            slice64(self.bytes, strsec.offset, strsec.size).ok_or(ElfError::BadStringTable)?;

        Ok(Symbols {
            table,
            strtab,
            next: 1,
        })
    }

    /// The first function or object symbol whose `[value, value + size)` contains
    /// `addr`, for turning a code address into a name.
    pub fn symbol_at(&self, addr: u64) -> Result<Option<Symbol<'a>>, ElfError> {
        for symbol in self.symbols()? {
            let symbol = symbol?;
            if symbol.kind != SymbolKind::Other && symbol.contains(addr) {
                return Ok(Some(symbol));
            }
        }
        Ok(None)
    }
}

/// A program header as stored in the file, before validation.
#[derive(Debug, Clone, Copy)]
struct RawPhdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

impl RawPhdr {
    fn read(raw: &[u8]) -> Option<Self> {
        Some(Self {
            p_type: u32_at(raw, 0)?,
            flags: u32_at(raw, 4)?,
            offset: u64_at(raw, 8)?,
            vaddr: u64_at(raw, 16)?,
            paddr: u64_at(raw, 24)?,
            filesz: u64_at(raw, 32)?,
            memsz: u64_at(raw, 40)?,
            align: u64_at(raw, 48)?,
        })
    }
}

/// A section header as stored in the file (only the fields this module uses).
#[derive(Debug, Clone, Copy)]
struct RawShdr {
    sh_type: u32,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

impl RawShdr {
    fn read(raw: &[u8]) -> Option<Self> {
        Some(Self {
            sh_type: u32_at(raw, 4)?,
            offset: u64_at(raw, 24)?,
            size: u64_at(raw, 32)?,
            link: u32_at(raw, 40)?,
            entsize: u64_at(raw, 56)?,
        })
    }
}

/// Access permissions of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegFlags {
    /// Readable (`PF_R`).
    pub r: bool,
    /// Writable (`PF_W`).
    pub w: bool,
    /// Executable (`PF_X`).
    pub x: bool,
}

impl TryFrom<u32> for SegFlags {
    type Error = ElfError;

    fn try_from(p_flags: u32) -> Result<Self, ElfError> {
        if p_flags & !(PF_R | PF_W | PF_X) != 0 {
            return Err(ElfError::BadSegmentFlags);
        }
        Ok(Self {
            r: p_flags & PF_R != 0,
            w: p_flags & PF_W != 0,
            x: p_flags & PF_X != 0,
        })
    }
}

/// A validated `PT_LOAD` segment: copy `data` to `vaddr` and zero-fill up to `memsz`.
///
/// # Invariants (for segments returned by [`Elf::segments`])
///
/// * `data.len() == filesz <= memsz`, and `data` lies inside the file at `offset`
///   (when `filesz == 0`, `data` is empty and `offset` is not checked);
/// * `vaddr + memsz` and `paddr + memsz` do not overflow;
/// * `align` is 0 or a power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Physical address of the first byte (where a boot loader puts the kernel).
    pub paddr: u64,
    /// Size in memory; bytes past `data.len()` are zero.
    pub memsz: u64,
    /// Access permissions.
    pub flags: SegFlags,
    /// Required alignment of `vaddr` (0 or 1: none).
    pub align: u64,
    /// File offset of `data` (useful to loaders that map file pages directly).
    pub offset: u64,
    /// The segment's bytes in the file (`filesz` of them).
    pub data: &'a [u8],
}

impl Segment<'_> {
    /// One past the last virtual address (`vaddr + memsz`; exact for parsed segments,
    /// saturating for hand-built ones).
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }

    /// Size in the file (`filesz`).
    pub fn filesz(&self) -> u64 {
        // A slice length always fits in u64 on the targets Rust supports.
        u64::try_from(self.data.len()).unwrap_or(u64::MAX)
    }
}

/// Builds the [`Segment`] of a `PT_LOAD` program header, checking it.
fn load_segment<'a>(bytes: &'a [u8], ph: &RawPhdr) -> Result<Segment<'a>, ElfError> {
    let flags = SegFlags::try_from(ph.flags)?;
    if ph.filesz > ph.memsz {
        return Err(ElfError::FileSizeExceedsMemSize);
    }
    let data = if ph.filesz == 0 {
        &[][..]
    } else {
        slice64(bytes, ph.offset, ph.filesz).ok_or(ElfError::SegmentOutOfBounds)?
    };
    if ph.vaddr.checked_add(ph.memsz).is_none() || ph.paddr.checked_add(ph.memsz).is_none() {
        return Err(ElfError::SegmentAddressOverflow);
    }
    if ph.align != 0 && !ph.align.is_power_of_two() {
        return Err(ElfError::BadSegmentAlign);
    }
    Ok(Segment {
        vaddr: ph.vaddr,
        paddr: ph.paddr,
        memsz: ph.memsz,
        flags,
        align: ph.align,
        offset: ph.offset,
        data,
    })
}

/// Iterator over the `PT_LOAD` segments of an [`Elf`]; see [`Elf::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    elf: Elf<'a>,
    next: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Result<Segment<'a>, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.elf.phnum {
            let index = self.next;
            self.next += 1;
            match self.elf.phdr(index) {
                Err(error) => return Some(Err(error)),
                Ok(ph) if ph.p_type == PT_LOAD => return Some(load_segment(self.elf.bytes, &ph)),
                Ok(_) => {}
            }
        }
        None
    }
}

/// One ELF note: a (name, type) pair tagging a descriptor blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// The owner's name without its NUL terminator (for example `b"Xen"`, `b"GNU"`).
    pub name: &'a [u8],
    /// The note type, meaningful per owner.
    pub kind: u32,
    /// The descriptor bytes.
    pub desc: &'a [u8],
}

/// Iterator over the notes of every `PT_NOTE` segment; see [`Elf::notes`].
///
/// A malformed note yields one error and the rest of its segment is skipped.
#[derive(Debug, Clone)]
pub struct Notes<'a> {
    elf: Elf<'a>,
    next_phdr: usize,
    /// The not yet parsed rest of the current note segment.
    data: &'a [u8],
    /// Padding granule of the current segment (4 or 8).
    align: usize,
}

impl<'a> Notes<'a> {
    /// Parses the note at the start of `self.data`, advancing past it.
    fn parse_one(&mut self) -> Result<Note<'a>, ElfError> {
        let data = self.data;
        let namesz = u32_at(data, 0).ok_or(ElfError::BadNote)?;
        let descsz = u32_at(data, 4).ok_or(ElfError::BadNote)?;
        let kind = u32_at(data, 8).ok_or(ElfError::BadNote)?;
        let namesz = usize::try_from(namesz).map_err(|_| ElfError::BadNote)?;
        let descsz = usize::try_from(descsz).map_err(|_| ElfError::BadNote)?;

        let name_start = 12;
        let name = slice(data, name_start, namesz).ok_or(ElfError::BadNote)?;
        let desc_start = name_start
            .checked_add(namesz)
            .and_then(|end| align_up(end, self.align))
            .ok_or(ElfError::BadNote)?;
        let desc = slice(data, desc_start, descsz).ok_or(ElfError::BadNote)?;
        let next = desc_start
            .checked_add(descsz)
            .and_then(|end| align_up(end, self.align))
            .ok_or(ElfError::BadNote)?;
        // Padding after the last note may be missing at the end of the segment.
        self.data = data.get(next..).unwrap_or(&[]);

        let name = match name.split_last() {
            Some((0, head)) => head,
            _ => name,
        };
        Ok(Note { name, kind, desc })
    }
}

impl<'a> Iterator for Notes<'a> {
    type Item = Result<Note<'a>, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if !self.data.is_empty() {
                let result = self.parse_one();
                if result.is_err() {
                    self.data = &[];
                }
                return Some(result);
            }
            if self.next_phdr >= self.elf.phnum {
                return None;
            }
            let index = self.next_phdr;
            self.next_phdr += 1;
            let ph = match self.elf.phdr(index) {
                Ok(ph) => ph,
                Err(error) => return Some(Err(error)),
            };
            if ph.p_type != PT_NOTE {
                continue;
            }
            match slice64(self.elf.bytes, ph.offset, ph.filesz) {
                Some(data) => {
                    self.data = data;
                    self.align = if ph.align == 8 { 8 } else { 4 };
                }
                None => return Some(Err(ElfError::BadNote)),
            }
        }
    }
}

/// What a symbol names, as far as address lookup cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    /// `STT_FUNC`: code.
    Function,
    /// `STT_OBJECT`: data.
    Object,
    /// Every other type (sections, files, untyped labels, TLS, ...).
    Other,
}

/// One entry of the symbol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// The symbol's (possibly mangled) name.
    pub name: &'a str,
    /// Its address (relative to the load base for [`ElfKind::Dynamic`]).
    pub value: u64,
    /// Its size in bytes (0 when unknown).
    pub size: u64,
    /// What it names.
    pub kind: SymbolKind,
}

impl Symbol<'_> {
    /// Whether `addr` lies in `[value, value + size)`.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.value && addr - self.value < self.size
    }
}

/// Iterator over the symbol table; see [`Elf::symbols`].
///
/// # Invariants
///
/// `table.len()` is a multiple of 24 (one `Elf64_Sym` each).
#[derive(Debug, Clone)]
pub struct Symbols<'a> {
    table: &'a [u8],
    strtab: &'a [u8],
    next: usize,
}

impl<'a> Symbols<'a> {
    /// Reads the NUL-terminated name at `offset` in the string table.
    fn name(&self, offset: u32) -> Result<&'a str, ElfError> {
        let offset = usize::try_from(offset).map_err(|_| ElfError::BadSymbolName)?;
        let rest = self.strtab.get(offset..).ok_or(ElfError::BadSymbolName)?;
        let len = rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or(ElfError::BadSymbolName)?;
        let raw = rest.get(..len).ok_or(ElfError::BadSymbolName)?;
        core::str::from_utf8(raw).map_err(|_| ElfError::BadSymbolName)
    }

    fn parse_one(&self, raw: &[u8]) -> Result<Symbol<'a>, ElfError> {
        let st_name = u32_at(raw, 0).ok_or(ElfError::BadSymbolTable)?;
        let st_info = u8_at(raw, 4).ok_or(ElfError::BadSymbolTable)?;
        let value = u64_at(raw, 8).ok_or(ElfError::BadSymbolTable)?;
        let size = u64_at(raw, 16).ok_or(ElfError::BadSymbolTable)?;
        let kind = match st_info & 0xf {
            STT_FUNC => SymbolKind::Function,
            STT_OBJECT => SymbolKind::Object,
            _ => SymbolKind::Other,
        };
        Ok(Symbol {
            name: self.name(st_name)?,
            value,
            size,
            kind,
        })
    }
}

impl<'a> Iterator for Symbols<'a> {
    type Item = Result<Symbol<'a>, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.next.checked_mul(SYM_SIZE)?;
        let raw = slice(self.table, offset, SYM_SIZE)?;
        self.next += 1;
        Some(self.parse_one(raw))
    }
}

#[cfg(test)]
mod tests;
