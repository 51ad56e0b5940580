//! Tests for the ELF64 parser: hand-built images, every header field corrupted, every
//! truncation, overflowing offsets, the test binary itself, and property tests that
//! random or mutated input never panics.

use super::*;
use proptest::prelude::*;

/// A program header to write into a test image.
#[derive(Clone, Copy, Debug)]
struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

impl Ph {
    /// A `PT_LOAD` header with `paddr == vaddr` and page alignment.
    fn load(vaddr: u64, offset: u64, filesz: u64, memsz: u64, flags: u32) -> Self {
        Self {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            paddr: vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }
}

fn put16(buf: &mut [u8], off: usize, value: u16) {
    buf[off..off + 2].copy_from_slice(&value.to_le_bytes());
}
fn put32(buf: &mut [u8], off: usize, value: u32) {
    buf[off..off + 4].copy_from_slice(&value.to_le_bytes());
}
fn put64(buf: &mut [u8], off: usize, value: u64) {
    buf[off..off + 8].copy_from_slice(&value.to_le_bytes());
}

const ENTRY: u64 = 0x40_0000;

/// Writes a valid ELF header (ET_EXEC, entry [`ENTRY`], program headers right after it,
/// no sections) into the first 64 bytes of `buf`.
fn write_header(buf: &mut [u8], phnum: u16) {
    buf[..16].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    put16(buf, 16, ET_EXEC);
    put16(buf, 18, EM_X86_64);
    put32(buf, 20, 1);
    put64(buf, 24, ENTRY);
    put64(buf, 32, if phnum == 0 { 0 } else { EHDR_SIZE as u64 });
    put64(buf, 40, 0);
    put16(buf, 52, EHDR_SIZE as u16);
    put16(buf, 54, PHDR_SIZE as u16);
    put16(buf, 56, phnum);
    put16(buf, 58, SHDR_SIZE as u16);
    put16(buf, 60, 0);
}

fn write_phdr(buf: &mut [u8], index: usize, ph: &Ph) {
    let at = EHDR_SIZE + index * PHDR_SIZE;
    put32(buf, at, ph.p_type);
    put32(buf, at + 4, ph.flags);
    put64(buf, at + 8, ph.offset);
    put64(buf, at + 16, ph.vaddr);
    put64(buf, at + 24, ph.paddr);
    put64(buf, at + 32, ph.filesz);
    put64(buf, at + 40, ph.memsz);
    put64(buf, at + 48, ph.align);
}

/// File offset where the payload of a [`build`] image with `n` headers starts.
fn payload_at(n: usize) -> u64 {
    (EHDR_SIZE + n * PHDR_SIZE) as u64
}

/// An image made of a header, `phs` and `payload`.
fn build(phs: &[Ph], payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; EHDR_SIZE + phs.len() * PHDR_SIZE];
    write_header(&mut buf, phs.len() as u16);
    for (index, ph) in phs.iter().enumerate() {
        write_phdr(&mut buf, index, ph);
    }
    buf.extend_from_slice(payload);
    buf
}

const TEXT: &[u8] = &[0x90, 0x90, 0xf4, 0xeb, 0xfd, 0xcc, 0xcc, 0xcc];
const DATA: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
const TEXT_VADDR: u64 = ENTRY;
const DATA_VADDR: u64 = 0x40_1000;
const DATA_MEMSZ: u64 = 0x100;
const PT_GNU_STACK: u32 = 0x6474_e551;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Offsets inside [`sample`], for tests that corrupt specific parts.
struct Layout {
    note: usize,
    strtab: usize,
    symtab: usize,
    shdrs: usize,
}

/// A complete small executable: text and data `PT_LOAD`s, a GNU_STACK header, a
/// `PT_NOTE` with the Xen PVH entry note, and a symbol table with `_start` and
/// `counter`.
fn sample_with_layout() -> (Vec<u8>, Layout) {
    let n = 4;
    let text_off = payload_at(n);
    let data_off = text_off + TEXT.len() as u64;
    let note_off = data_off + DATA.len() as u64;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&0x0010_0000u32.to_le_bytes());

    let phs = [
        Ph::load(
            TEXT_VADDR,
            text_off,
            TEXT.len() as u64,
            TEXT.len() as u64,
            PF_R | PF_X,
        ),
        Ph::load(
            DATA_VADDR,
            data_off,
            DATA.len() as u64,
            DATA_MEMSZ,
            PF_R | PF_W,
        ),
        Ph {
            p_type: PT_NOTE,
            flags: PF_R,
            offset: note_off,
            vaddr: 0,
            paddr: 0,
            filesz: note.len() as u64,
            memsz: note.len() as u64,
            align: 4,
        },
        Ph {
            p_type: PT_GNU_STACK,
            flags: PF_R | PF_W,
            offset: 0,
            vaddr: 0,
            paddr: 0,
            filesz: 0,
            memsz: 0,
            align: 16,
        },
    ];
    let mut payload = Vec::new();
    payload.extend_from_slice(TEXT);
    payload.extend_from_slice(DATA);
    payload.extend_from_slice(&note);
    let mut buf = build(&phs, &payload);

    let strtab = buf.len();
    buf.extend_from_slice(b"\0_start\0counter\0");
    let strtab_len = buf.len() - strtab;
    while !buf.len().is_multiple_of(8) {
        buf.push(0);
    }
    let symtab = buf.len();
    // Null symbol, then _start (FUNC, global) and counter (OBJECT, global).
    let symbols: [(u32, u8, u64, u64); 3] = [
        (0, 0, 0, 0),
        (1, 0x10 | STT_FUNC, TEXT_VADDR, TEXT.len() as u64),
        (8, 0x10 | STT_OBJECT, DATA_VADDR, 8),
    ];
    for (name, info, value, size) in symbols {
        let mut sym = [0u8; SYM_SIZE];
        put32(&mut sym, 0, name);
        sym[4] = info;
        put16(&mut sym, 6, 1);
        put64(&mut sym, 8, value);
        put64(&mut sym, 16, size);
        buf.extend_from_slice(&sym);
    }
    let shdrs = buf.len();
    let mut sections = [[0u8; SHDR_SIZE]; 3];
    put32(&mut sections[1], 4, SHT_SYMTAB);
    put64(&mut sections[1], 24, symtab as u64);
    put64(&mut sections[1], 32, (3 * SYM_SIZE) as u64);
    put32(&mut sections[1], 40, 2);
    put64(&mut sections[1], 56, SYM_SIZE as u64);
    put32(&mut sections[2], 4, SHT_STRTAB);
    put64(&mut sections[2], 24, strtab as u64);
    put64(&mut sections[2], 32, strtab_len as u64);
    for section in &sections {
        buf.extend_from_slice(section);
    }
    put64(&mut buf, 40, shdrs as u64);
    put16(&mut buf, 60, 3);

    let layout = Layout {
        note: note_off as usize,
        strtab,
        symtab,
        shdrs,
    };
    (buf, layout)
}

fn sample() -> Vec<u8> {
    sample_with_layout().0
}

/// Calls every accessor on `bytes`, checking the invariants of everything returned.
/// Used by the truncation and property tests: the point is that nothing panics.
fn exercise(bytes: &[u8]) {
    let Ok(elf) = Elf::parse(bytes) else {
        return;
    };
    let range = bytes.as_ptr_range();
    let inside = |part: &[u8]| {
        part.is_empty() || (range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end)
    };
    let _ = elf.entry();
    let _ = elf.kind();
    for segment in elf.segments().flatten() {
        assert!(inside(segment.data));
        assert!(segment.filesz() <= segment.memsz);
        assert!(segment.vaddr.checked_add(segment.memsz).is_some());
        assert!(segment.align == 0 || segment.align.is_power_of_two());
    }
    if let Ok((lo, hi)) = elf.load_range() {
        assert!(lo <= hi);
    }
    let _ = elf.validate_layout();
    for note in elf.notes().take(1000).flatten() {
        assert!(inside(note.name) && inside(note.desc));
    }
    if let Ok(symbols) = elf.symbols() {
        for symbol in symbols.take(1000).flatten() {
            assert!(inside(symbol.name.as_bytes()));
        }
    }
    let _ = elf.symbol_at(TEXT_VADDR);
    let _ = crate::pvh::phys32_entry(&elf);
}

#[test]
fn parses_sample() {
    let bytes = sample();
    let elf = Elf::parse(&bytes).unwrap();
    assert_eq!(elf.kind(), ElfKind::Executable);
    assert_eq!(elf.entry(), ENTRY);
    assert_eq!(elf.program_header_count(), 4);
    let segments: Vec<_> = elf.segments().collect::<Result<_, _>>().unwrap();
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[0].vaddr, TEXT_VADDR);
    assert_eq!(segments[0].paddr, TEXT_VADDR);
    assert_eq!(segments[0].data, TEXT);
    assert_eq!(segments[0].memsz, TEXT.len() as u64);
    assert_eq!(
        segments[0].flags,
        SegFlags {
            r: true,
            w: false,
            x: true
        }
    );
    assert_eq!(segments[0].align, 0x1000);
    assert_eq!(segments[1].data, DATA);
    assert_eq!(segments[1].memsz, DATA_MEMSZ);
    assert_eq!(segments[1].filesz(), DATA.len() as u64);
    assert_eq!(segments[1].end(), DATA_VADDR + DATA_MEMSZ);
    assert_eq!(
        segments[1].flags,
        SegFlags {
            r: true,
            w: true,
            x: false
        }
    );
    assert_eq!(elf.load_range(), Ok((TEXT_VADDR, DATA_VADDR + DATA_MEMSZ)));
    assert_eq!(elf.validate_layout(), Ok(()));
}

#[test]
fn reads_notes() {
    let bytes = sample();
    let elf = Elf::parse(&bytes).unwrap();
    let notes: Vec<_> = elf.notes().collect::<Result<_, _>>().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].name, b"Xen");
    assert_eq!(notes[0].kind, XEN_ELFNOTE_PHYS32_ENTRY);
    assert_eq!(notes[0].desc, &0x0010_0000u32.to_le_bytes());
}

#[test]
fn reads_symbols() {
    let bytes = sample();
    let elf = Elf::parse(&bytes).unwrap();
    let symbols: Vec<_> = elf.symbols().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        symbols,
        [
            Symbol {
                name: "_start",
                value: TEXT_VADDR,
                size: TEXT.len() as u64,
                kind: SymbolKind::Function
            },
            Symbol {
                name: "counter",
                value: DATA_VADDR,
                size: 8,
                kind: SymbolKind::Object
            },
        ]
    );
    assert_eq!(
        elf.symbol_at(TEXT_VADDR + 3).unwrap().unwrap().name,
        "_start"
    );
    assert_eq!(
        elf.symbol_at(DATA_VADDR + 7).unwrap().unwrap().name,
        "counter"
    );
    assert_eq!(elf.symbol_at(DATA_VADDR + 8).unwrap(), None);
    assert_eq!(elf.symbol_at(0).unwrap(), None);
    assert_eq!(elf.symbol_at(u64::MAX).unwrap(), None);
}

#[test]
fn truncated_at_every_length() {
    let bytes = sample();
    let phdr_end = EHDR_SIZE + 4 * PHDR_SIZE;
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        exercise(cut);
        let result = Elf::parse(cut);
        if len < EHDR_SIZE {
            assert_eq!(result.err(), Some(ElfError::Truncated), "len {len}");
        } else if len < phdr_end {
            assert_eq!(
                result.err(),
                Some(ElfError::ProgramHeadersOutOfBounds),
                "len {len}"
            );
        } else {
            let elf = result.unwrap();
            let segments_ok = elf.segments().all(|s| s.is_ok());
            let expect_ok = len >= phdr_end + TEXT.len() + DATA.len();
            assert_eq!(segments_ok, expect_ok, "len {len}");
        }
    }
}

/// Parses `sample()` after `corrupt` changed it.
fn parse_corrupted(corrupt: impl FnOnce(&mut Vec<u8>)) -> Result<(), ElfError> {
    let mut bytes = sample();
    corrupt(&mut bytes);
    Elf::parse(&bytes).map(|_| ())
}

#[test]
fn rejects_bad_header_fields() {
    use ElfError::*;
    assert_eq!(parse_corrupted(|b| b[0] = 0x7e), Err(BadMagic));
    assert_eq!(parse_corrupted(|b| b[3] = b'f'), Err(BadMagic));
    assert_eq!(parse_corrupted(|b| b[4] = 1), Err(BadClass));
    assert_eq!(parse_corrupted(|b| b[4] = 0), Err(BadClass));
    assert_eq!(parse_corrupted(|b| b[5] = 2), Err(BadByteOrder));
    assert_eq!(parse_corrupted(|b| b[6] = 0), Err(BadVersion));
    assert_eq!(parse_corrupted(|b| put32(b, 20, 2)), Err(BadVersion));
    assert_eq!(parse_corrupted(|b| b[7] = 9), Err(BadOsAbi));
    assert_eq!(parse_corrupted(|b| b[7] = ELFOSABI_GNU), Ok(()));
    assert_eq!(parse_corrupted(|b| put16(b, 16, 1)), Err(BadType));
    assert_eq!(parse_corrupted(|b| put16(b, 16, 4)), Err(BadType));
    assert_eq!(parse_corrupted(|b| put16(b, 16, ET_DYN)), Ok(()));
    assert_eq!(parse_corrupted(|b| put16(b, 18, 3)), Err(BadMachine));
    assert_eq!(parse_corrupted(|b| put16(b, 18, 183)), Err(BadMachine));
    assert_eq!(
        parse_corrupted(|b| put16(b, 54, 64)),
        Err(BadProgramHeaderSize)
    );
    assert_eq!(
        parse_corrupted(|b| put16(b, 54, 0)),
        Err(BadProgramHeaderSize)
    );
    assert_eq!(
        parse_corrupted(|b| put64(b, 32, u64::MAX)),
        Err(ProgramHeadersOutOfBounds)
    );
    assert_eq!(
        parse_corrupted(|b| put64(b, 32, u64::MAX - 10)),
        Err(ProgramHeadersOutOfBounds)
    );
    assert_eq!(
        parse_corrupted(|b| put64(b, 32, 1 << 40)),
        Err(ProgramHeadersOutOfBounds)
    );
    assert_eq!(
        parse_corrupted(|b| put16(b, 56, 0xfffe)),
        Err(ProgramHeadersOutOfBounds)
    );
    assert_eq!(
        parse_corrupted(|b| put16(b, 56, PN_XNUM)),
        Err(ExtendedNumbering)
    );
}

#[test]
fn dynamic_kind() {
    let mut bytes = sample();
    put16(&mut bytes, 16, ET_DYN);
    assert_eq!(Elf::parse(&bytes).unwrap().kind(), ElfKind::Dynamic);
}

#[test]
fn no_program_headers() {
    let bytes = build(&[], &[]);
    let elf = Elf::parse(&bytes).unwrap();
    assert_eq!(elf.segments().count(), 0);
    assert_eq!(elf.load_range(), Err(ElfError::NoLoadSegments));
    assert_eq!(elf.validate_layout(), Ok(()));
    assert_eq!(elf.notes().count(), 0);
    assert_eq!(elf.symbols().unwrap().count(), 0);
    // With phnum == 0, a garbage e_phoff/e_phentsize carries no meaning.
    let mut bytes = bytes;
    put64(&mut bytes, 32, u64::MAX);
    put16(&mut bytes, 54, 7);
    assert!(Elf::parse(&bytes).is_ok());
}

/// The first segment of a one-`PT_LOAD` image built from `ph` over 64 payload bytes.
fn single_segment(ph: Ph) -> Result<(), ElfError> {
    let bytes = build(&[ph], &[0xaa; 64]);
    let elf = Elf::parse(&bytes).unwrap();
    let mut segments = elf.segments();
    let result = segments.next().unwrap().map(|_| ());
    assert!(segments.next().is_none());
    result
}

#[test]
fn rejects_bad_segments() {
    use ElfError::*;
    let at = payload_at(1);
    let good = Ph::load(0x1000, at, 16, 32, PF_R);
    assert_eq!(single_segment(good), Ok(()));
    assert_eq!(
        single_segment(Ph { flags: 8, ..good }),
        Err(BadSegmentFlags)
    );
    assert_eq!(
        single_segment(Ph {
            flags: 0x0ff0_0000,
            ..good
        }),
        Err(BadSegmentFlags)
    );
    assert_eq!(
        single_segment(Ph { filesz: 33, ..good }),
        Err(FileSizeExceedsMemSize)
    );
    assert_eq!(
        single_segment(Ph {
            filesz: 65,
            memsz: 65,
            ..good
        }),
        Err(SegmentOutOfBounds)
    );
    assert_eq!(
        single_segment(Ph {
            offset: at + 49,
            ..good
        }),
        Err(SegmentOutOfBounds)
    );
    assert_eq!(
        single_segment(Ph {
            offset: u64::MAX,
            ..good
        }),
        Err(SegmentOutOfBounds)
    );
    assert_eq!(
        single_segment(Ph {
            offset: u64::MAX - 8,
            ..good
        }),
        Err(SegmentOutOfBounds)
    );
    assert_eq!(
        single_segment(Ph {
            filesz: u64::MAX,
            memsz: u64::MAX,
            ..good
        }),
        Err(SegmentOutOfBounds)
    );
    assert_eq!(
        single_segment(Ph {
            vaddr: u64::MAX - 16,
            ..good
        }),
        Err(SegmentAddressOverflow)
    );
    assert_eq!(
        single_segment(Ph {
            paddr: u64::MAX - 16,
            ..good
        }),
        Err(SegmentAddressOverflow)
    );
    assert_eq!(
        single_segment(Ph {
            filesz: 0,
            memsz: u64::MAX,
            vaddr: 1,
            ..good
        }),
        Err(SegmentAddressOverflow)
    );
    assert_eq!(
        single_segment(Ph { align: 3, ..good }),
        Err(BadSegmentAlign)
    );
    assert_eq!(single_segment(Ph { align: 0, ..good }), Ok(()));
    assert_eq!(single_segment(Ph { align: 1, ..good }), Ok(()));
    // Ends exactly at the top of the address space: fine.
    assert_eq!(
        single_segment(Ph {
            vaddr: u64::MAX - 32,
            paddr: 0,
            ..good
        }),
        Ok(())
    );
    // A bss-only segment's offset is not checked.
    assert_eq!(
        single_segment(Ph {
            filesz: 0,
            offset: u64::MAX,
            ..good
        }),
        Ok(())
    );
    // Data ending exactly at the end of the file is in bounds.
    assert_eq!(
        single_segment(Ph {
            offset: at + 48,
            ..good
        }),
        Ok(())
    );
}

#[test]
fn segment_errors_do_not_hide_later_segments() {
    let at = payload_at(2);
    let bad = Ph::load(0x1000, u64::MAX, 16, 16, PF_R);
    let good = Ph::load(0x2000, at, 16, 16, PF_R);
    let bytes = build(&[bad, good], &[0; 16]);
    let elf = Elf::parse(&bytes).unwrap();
    let results: Vec<_> = elf.segments().collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], Err(ElfError::SegmentOutOfBounds));
    assert!(results[1].is_ok());
    assert_eq!(elf.load_range(), Err(ElfError::SegmentOutOfBounds));
    assert_eq!(elf.validate_layout(), Err(ElfError::SegmentOutOfBounds));
}

/// `validate_layout` and `load_range` of an image whose `PT_LOAD`s cover the given
/// `(vaddr, memsz)` ranges.
fn layout_of(ranges: &[(u64, u64)]) -> (Result<(), ElfError>, Result<(u64, u64), ElfError>) {
    let phs: Vec<_> = ranges
        .iter()
        .map(|&(vaddr, memsz)| Ph::load(vaddr, 0, 0, memsz, PF_R))
        .collect();
    let bytes = build(&phs, &[]);
    let elf = Elf::parse(&bytes).unwrap();
    (elf.validate_layout(), elf.load_range())
}

#[test]
fn layout_checks() {
    use ElfError::*;
    assert_eq!(
        layout_of(&[(0x1000, 0x1000), (0x2000, 0x10)]),
        (Ok(()), Ok((0x1000, 0x2010)))
    );
    assert_eq!(
        layout_of(&[(0x1000, 0x1001), (0x2000, 0x10)]).0,
        Err(SegmentsOverlap)
    );
    assert_eq!(
        layout_of(&[(0x1000, 0x100), (0x1000, 0x100)]).0,
        Err(SegmentsOverlap)
    );
    assert_eq!(
        layout_of(&[(0x2000, 0x10), (0x1000, 0x10)]).0,
        Err(SegmentsUnsorted)
    );
    assert_eq!(
        layout_of(&[(0x2000, 0x10), (0x1000, 0x10)]).1,
        Ok((0x1000, 0x2010))
    );
    // Zero-sized segments take no memory: skipped by both.
    assert_eq!(
        layout_of(&[(0x5000, 0), (0x1000, 0x10), (0x1008, 0), (0x2000, 0x10)]),
        (Ok(()), Ok((0x1000, 0x2010)))
    );
    assert_eq!(layout_of(&[(0x1000, 0)]), (Ok(()), Err(NoLoadSegments)));
    assert_eq!(
        layout_of(&[(u64::MAX - 0x10, 0x10)]),
        (Ok(()), Ok((u64::MAX - 0x10, u64::MAX)))
    );
}

#[test]
fn malformed_notes() {
    let (bytes, layout) = sample_with_layout();
    fn notes_of(bytes: &[u8]) -> Vec<Result<Note<'_>, ElfError>> {
        Elf::parse(bytes).unwrap().notes().collect()
    }
    // namesz larger than the segment.
    let mut b = bytes.clone();
    put32(&mut b, layout.note, 1000);
    assert_eq!(notes_of(&b), [Err(ElfError::BadNote)]);
    // descsz so large that rounding it up overflows on 32-bit, out of bounds on 64-bit.
    let mut b = bytes.clone();
    put32(&mut b, layout.note + 4, u32::MAX);
    assert_eq!(notes_of(&b), [Err(ElfError::BadNote)]);
    // Segment too short for even one note header.
    let mut b = bytes.clone();
    put64(&mut b, EHDR_SIZE + 2 * PHDR_SIZE + 32, 11);
    assert_eq!(notes_of(&b), [Err(ElfError::BadNote)]);
    // Segment outside the file.
    let mut b = bytes.clone();
    put64(&mut b, EHDR_SIZE + 2 * PHDR_SIZE + 8, u64::MAX);
    assert_eq!(notes_of(&b), [Err(ElfError::BadNote)]);
    // A zero-length note segment has no notes.
    let mut b = bytes;
    put64(&mut b, EHDR_SIZE + 2 * PHDR_SIZE + 32, 0);
    assert_eq!(notes_of(&b), []);
}

#[test]
fn notes_with_eight_byte_alignment_and_missing_tail_padding() {
    let mut note = Vec::new();
    for (name, kind, desc) in [
        (&b"GNU\0"[..], 5u32, &[1u8, 2, 3][..]),
        (b"A\0", 7, &[9; 4]),
    ] {
        note.extend_from_slice(&(name.len() as u32).to_le_bytes());
        note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(name);
        while !note.len().is_multiple_of(8) {
            note.push(0);
        }
        note.extend_from_slice(desc);
        while !note.len().is_multiple_of(8) {
            note.push(0);
        }
    }
    // Drop the tail padding of the last note.
    note.truncate(note.len() - 4);
    let ph = Ph {
        p_type: PT_NOTE,
        flags: PF_R,
        offset: payload_at(1),
        vaddr: 0,
        paddr: 0,
        filesz: note.len() as u64,
        memsz: note.len() as u64,
        align: 8,
    };
    let bytes = build(&[ph], &note);
    let elf = Elf::parse(&bytes).unwrap();
    let notes: Vec<_> = elf.notes().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        notes,
        [
            Note {
                name: b"GNU",
                kind: 5,
                desc: &[1, 2, 3]
            },
            Note {
                name: b"A",
                kind: 7,
                desc: &[9; 4]
            },
        ]
    );
}

/// The symbols of `sample()` after `corrupt` changed it, or the first error.
fn symbols_corrupted(corrupt: impl FnOnce(&mut Vec<u8>, &Layout)) -> Result<Vec<String>, ElfError> {
    let (mut bytes, layout) = sample_with_layout();
    corrupt(&mut bytes, &layout);
    let elf = Elf::parse(&bytes).unwrap();
    let mut names = Vec::new();
    for symbol in elf.symbols()? {
        names.push(symbol?.name.to_string());
    }
    Ok(names)
}

#[test]
fn malformed_symbol_tables() {
    use ElfError::*;
    let sh = |layout: &Layout, index: usize, field: usize| layout.shdrs + index * SHDR_SIZE + field;
    assert_eq!(
        symbols_corrupted(|_, _| {}),
        Ok(vec!["_start".to_string(), "counter".to_string()])
    );
    // Stripped: no section headers at all.
    assert_eq!(
        symbols_corrupted(|b, _| {
            put64(b, 40, 0);
            put16(b, 60, 0);
        }),
        Ok(vec![])
    );
    // Sections but no SHT_SYMTAB.
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, sh(l, 1, 4), 1)),
        Ok(vec![])
    );
    assert_eq!(
        symbols_corrupted(|b, _| put16(b, 60, 0)),
        Err(ExtendedNumbering)
    );
    assert_eq!(
        symbols_corrupted(|b, _| put16(b, 58, 40)),
        Err(BadSectionHeaders)
    );
    assert_eq!(
        symbols_corrupted(|b, _| put16(b, 60, 4)),
        Err(BadSectionHeaders)
    );
    assert_eq!(
        symbols_corrupted(|b, _| put64(b, 40, u64::MAX - 8)),
        Err(BadSectionHeaders)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 1, 56), 16)),
        Err(BadSymbolTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 1, 32), 25)),
        Err(BadSymbolTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 1, 24), u64::MAX)),
        Err(BadSymbolTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 1, 32), 1 << 40)),
        Err(BadSymbolTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, sh(l, 1, 40), 3)),
        Err(BadStringTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, sh(l, 1, 40), u32::MAX)),
        Err(BadStringTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, sh(l, 1, 40), 0)),
        Err(BadStringTable)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 2, 32), 1 << 40)),
        Err(BadStringTable)
    );
    // Name offset outside the string table.
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, l.symtab + SYM_SIZE, 16)),
        Err(BadSymbolName)
    );
    assert_eq!(
        symbols_corrupted(|b, l| put32(b, l.symtab + SYM_SIZE, u32::MAX)),
        Err(BadSymbolName)
    );
    // Last name not NUL-terminated inside the string table.
    assert_eq!(
        symbols_corrupted(|b, l| put64(b, sh(l, 2, 32), 15)),
        Err(BadSymbolName)
    );
    // Not UTF-8.
    assert_eq!(
        symbols_corrupted(|b, l| b[l.strtab + 2] = 0xff),
        Err(BadSymbolName)
    );
}

#[test]
fn errors_display() {
    let text = format!("{}", ElfError::SegmentsOverlap);
    assert_eq!(text, "loadable segments overlap");
}

/// The test binary itself is a real x86_64 ELF file from a real linker.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn parses_the_running_test_binary() {
    let bytes = std::fs::read("/proc/self/exe").unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    assert!(elf.segments().count() >= 2);
    for segment in elf.segments() {
        segment.unwrap();
    }
    elf.validate_layout().unwrap();
    let (lo, hi) = elf.load_range().unwrap();
    assert!(lo < hi);
    for note in elf.notes() {
        note.unwrap();
    }
    let this = parses_the_running_test_binary as fn() as usize as u64;
    // The binary is position independent (or not); either way the symbol table must
    // parse and contain this test function's name somewhere.
    let mut found = false;
    for symbol in elf.symbols().unwrap() {
        let symbol = symbol.unwrap();
        if symbol.name.contains("parses_the_running_test_binary") {
            found = true;
        }
    }
    assert!(found, "symbol table lacks this test (at {this:#x})");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn random_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
        // A valid ELF identification followed by random fields hits deeper code.
        let mut bytes = sample()[..20].to_vec();
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }

    #[test]
    fn mutated_sample_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        words in proptest::collection::vec(
            (any::<prop::sample::Index>(),
             prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 7), Just(1u64 << 63),
                         0u64..1024, any::<u64>()]),
            0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        for (at, value) in words {
            let at = at.index(bytes.len() / 8) * 8;
            put64(&mut bytes, at, value);
        }
        exercise(&bytes);
        let len = cut.index(bytes.len() + 1);
        exercise(&bytes[..len]);
    }
}
