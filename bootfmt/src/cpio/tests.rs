//! Tests for the newc reader and writer: archives made by GNU cpio, round trips,
//! truncation at every length, corrupted headers, huge sizes, and property tests.

use super::*;
use proptest::prelude::*;

/// `a.txt` ("hello"), directory `d`, `d/long-name-file` (36 bytes), symbolic link
/// `link` -> `a.txt`, and `empty`, written by GNU cpio 2.13 with `-H newc`.
const GNU_NEWC: &[u8] = include_bytes!("../../testdata/gnu-newc.cpio");
/// The same files written with `-H crc` (magic 070702).
const GNU_CRC: &[u8] = include_bytes!("../../testdata/gnu-crc.cpio");

const LONG: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn check_gnu_archive(bytes: &[u8]) {
    let archive = Archive::new(bytes);
    let entries: Vec<_> = archive.entries().collect::<Result<_, _>>().unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.name).collect();
    assert_eq!(names, ["a.txt", "d", "d/long-name-file", "link", "empty"]);
    assert_eq!(entries[0].data, b"hello");
    assert!(entries[0].is_file());
    assert_eq!(entries[0].mode & 0o777, 0o644);
    assert!(entries[1].is_dir());
    assert!(entries[1].data.is_empty());
    assert_eq!(entries[2].data, LONG);
    assert!(entries[3].is_symlink());
    assert_eq!(entries[3].data, b"a.txt");
    assert!(entries[4].is_file() && entries[4].data.is_empty());
    assert_eq!(archive.validate(), Ok(5));
    assert_eq!(
        archive.find("d/long-name-file").unwrap().unwrap().data,
        LONG
    );
    assert_eq!(archive.find("missing"), Ok(None));
    assert_eq!(archive.find("./a.txt"), Ok(None));
    // Data is 4-aligned relative to the archive start.
    for entry in &entries {
        let offset = entry.data.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(offset % 4, 0, "{}", entry.name);
    }
}

#[test]
fn reads_gnu_newc() {
    assert_eq!(&GNU_NEWC[..6], NEWC_MAGIC);
    check_gnu_archive(GNU_NEWC);
}

#[test]
fn reads_gnu_crc() {
    assert_eq!(&GNU_CRC[..6], CRC_MAGIC);
    check_gnu_archive(GNU_CRC);
}

/// Writes `entries` into a buffer of exactly [`newc_size`] bytes.
fn write(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0xee; newc_size(entries)];
    let written = write_newc(entries, &mut out).unwrap();
    assert_eq!(written, out.len());
    out
}

#[test]
fn round_trip() {
    let files: [(&str, &[u8]); 7] = [
        ("sigma0", b"\x7fELF sigma0"),
        ("roottask", &[0u8; 1000]),
        ("e", b""),
        ("a", b"1"),
        ("ab", b"12"),
        ("abc", b"123"),
        ("dir/with/slashes and spaces.txt", b"1234567"),
    ];
    let bytes = write(&files);
    assert_eq!(bytes.len() % 4, 0);
    let archive = Archive::new(&bytes);
    let entries: Vec<_> = archive.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), files.len());
    for (entry, (name, data)) in entries.iter().zip(files.iter()) {
        assert_eq!(entry.name, *name);
        assert_eq!(entry.data, *data);
        assert_eq!(entry.mode, 0o100_644);
        assert!(entry.is_file());
    }
    assert_eq!(
        archive.find("roottask").unwrap().unwrap().data,
        &[0u8; 1000][..]
    );
    // An empty archive is just the trailer.
    let empty = write(&[]);
    assert_eq!(empty.len(), 124);
    assert_eq!(Archive::new(&empty).validate(), Ok(0));
}

#[test]
fn writes_what_gnu_writes() {
    let bytes = write(&[("a.txt", b"hello")]);
    let header = std::str::from_utf8(&bytes[..110]).unwrap();
    let gnu_header = std::str::from_utf8(&GNU_NEWC[..110]).unwrap();
    let field = |h: &str, i: usize| h[6 + 8 * i..14 + 8 * i].to_string();
    assert_eq!(&header[..6], "070701");
    assert_eq!(field(header, 0), "00000001");
    assert_eq!(field(header, 1), "000081A4");
    assert_eq!(field(header, 4), "00000001");
    // GNU's header for the same file differs only in file system facts (inode, owner,
    // time, devices); size, name size and check agree.
    for index in [1, 4, 6, 11, 12] {
        assert_eq!(
            field(header, index),
            field(gnu_header, index),
            "field {index}"
        );
    }
    assert_eq!(&bytes[110..124], b"a.txt\0hello\0\0\0");
    assert_eq!(&bytes[110..124], &GNU_NEWC[110..124]);
    let trailer = std::str::from_utf8(&bytes[124..234]).unwrap();
    let expected = format!(
        "070701{}00000001{}0000000B00000000",
        "0".repeat(32),
        "0".repeat(48)
    );
    assert_eq!(trailer, expected);
    assert_eq!(&bytes[234..], b"TRAILER!!!\0\0\0\0");
}

/// When GNU cpio is installed, it must list the writer's output.
#[test]
fn gnu_cpio_lists_written_archive() {
    let cpio = std::path::Path::new("/usr/bin/cpio");
    if !cpio.exists() {
        eprintln!("GNU cpio not installed; format checked field by field only");
        return;
    }
    let bytes = write(&[
        ("sigma0", b"abc"),
        ("roottask", &[7u8; 513]),
        ("etc/manifest", b""),
    ]);
    let mut child = std::process::Command::new(cpio)
        .args(["-t", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "sigma0\nroottask\netc/manifest\n"
    );
}

#[test]
fn writer_rejects_bad_entries_without_writing() {
    let mut out = [0x55u8; 512];
    for name in ["", "a\0b", TRAILER] {
        assert_eq!(
            write_newc(&[("ok", b"x"), (name, b"x")], &mut out),
            Err(CpioError::BadName)
        );
    }
    let entries: [(&str, &[u8]); 1] = [("file", &[1; 100])];
    let size = newc_size(&entries);
    let mut short = vec![0x55u8; size - 1];
    assert_eq!(
        write_newc(&entries, &mut short),
        Err(CpioError::OutputTooSmall)
    );
    assert!(short.iter().all(|&b| b == 0x55));
    assert!(out.iter().all(|&b| b == 0x55));
    // A larger buffer is fine; the rest is untouched.
    let mut long = vec![0x55u8; size + 8];
    assert_eq!(write_newc(&entries, &mut long), Ok(size));
    assert!(long[size..].iter().all(|&b| b == 0x55));
}

#[test]
fn sizes_saturate() {
    assert_eq!(entry_size(usize::MAX, 0), usize::MAX);
    assert_eq!(entry_size(0, usize::MAX), usize::MAX);
    assert_eq!(entry_size(1, 1), 112 + 4);
    assert_eq!(newc_size(&[]), 124);
}

/// Offset of hex field `index` of the header at `header`.
fn field_at(header: usize, index: usize) -> usize {
    header + 6 + 8 * index
}

fn set_field(bytes: &mut [u8], header: usize, index: usize, text: &[u8; 8]) {
    let at = field_at(header, index);
    bytes[at..at + 8].copy_from_slice(text);
}

fn all(bytes: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
    Archive::new(bytes).entries().collect()
}

#[test]
fn truncated_at_every_length() {
    let bytes = write(&[("first", b"12345"), ("second", b"")]);
    let trailer_start = bytes.len() - 124;
    for len in 0..bytes.len() {
        let result = all(&bytes[..len]);
        if len < trailer_start + 110 + 11 {
            let error = result.unwrap_err();
            assert!(
                matches!(error, CpioError::Truncated | CpioError::MissingTrailer),
                "len {len}: {error:?}"
            );
            if len == 0 || len == trailer_start {
                assert_eq!(error, CpioError::MissingTrailer, "len {len}");
            }
        } else {
            // The trailer's name is complete; its padding may be cut.
            assert_eq!(result.unwrap().len(), 2, "len {len}");
        }
    }
}

#[test]
fn rejects_bad_magic() {
    let good = write(&[("x", b"y")]);
    for magic in [
        b"070707",
        b"070703",
        b"070700",
        b"\x7fELF\x02\x01",
        b"      ",
    ] {
        let mut bytes = good.clone();
        bytes[..6].copy_from_slice(magic);
        assert_eq!(all(&bytes), Err(CpioError::BadMagic));
    }
    // In the second header too.
    let mut bytes = good;
    bytes[116..122].copy_from_slice(b"070707");
    let mut entries = Archive::new(&bytes).entries();
    assert!(entries.next().unwrap().is_ok());
    assert_eq!(entries.next(), Some(Err(CpioError::BadMagic)));
    assert_eq!(entries.next(), None);
}

#[test]
fn rejects_bad_hex_in_every_field() {
    let good = write(&[("x", b"y")]);
    for index in 0..13 {
        for text in [
            b"0000000g",
            b" 0000001",
            b"+0000001",
            b"-0000001",
            b"0x000001",
            b"0000000\0",
        ] {
            let mut bytes = good.clone();
            set_field(&mut bytes, 0, index, text);
            assert_eq!(
                all(&bytes),
                Err(CpioError::BadHex),
                "field {index} {text:?}"
            );
        }
    }
    // Lower case is fine.
    let mut bytes = good;
    set_field(&mut bytes, 0, 1, b"000081a4");
    assert_eq!(all(&bytes).unwrap()[0].mode, 0o100_644);
}

#[test]
fn rejects_huge_sizes() {
    let good = write(&[("x", b"y")]);
    for (index, text) in [
        (6, b"FFFFFFFF"),
        (6, b"00000100"),
        (11, b"FFFFFFFF"),
        (11, b"7FFFFFFF"),
    ] {
        let mut bytes = good.clone();
        set_field(&mut bytes, 0, index, text);
        assert_eq!(all(&bytes), Err(CpioError::Truncated), "field {index}");
    }
}

#[test]
fn rejects_bad_names() {
    let good = write(&[("name", b"data")]);
    // namesize 0, and namesize excluding the NUL.
    for text in [b"00000000", b"00000004", b"00000001"] {
        let mut bytes = good.clone();
        set_field(&mut bytes, 0, 11, text);
        assert_eq!(all(&bytes), Err(CpioError::BadName), "{text:?}");
    }
    let mut bytes = good.clone();
    bytes[112] = 0;
    assert_eq!(all(&bytes), Err(CpioError::BadName));
    let mut bytes = good;
    bytes[111] = 0xc3;
    assert_eq!(all(&bytes), Err(CpioError::NameNotUtf8));
}

#[test]
fn rejects_missing_trailer() {
    assert_eq!(all(&[]), Err(CpioError::MissingTrailer));
    let bytes = write(&[("a", b"1")]);
    let cut = &bytes[..bytes.len() - 124];
    let mut entries = Archive::new(cut).entries();
    assert!(entries.next().unwrap().is_ok());
    assert_eq!(entries.next(), Some(Err(CpioError::MissingTrailer)));
    assert_eq!(entries.next(), None);
    assert_eq!(Archive::new(cut).validate(), Err(CpioError::MissingTrailer));
    assert_eq!(Archive::new(cut).find("a").unwrap().unwrap().data, b"1");
    assert_eq!(Archive::new(cut).find("b"), Err(CpioError::MissingTrailer));
    // Zero padding where the trailer should be (a block-padded archive cut short).
    let mut padded = cut.to_vec();
    padded.extend_from_slice(&[0; 512]);
    assert_eq!(Archive::new(&padded).validate(), Err(CpioError::BadMagic));
}

#[test]
fn ignores_bytes_after_the_trailer() {
    let mut bytes = write(&[("a", b"1")]);
    bytes.extend_from_slice(&[0xff; 300]);
    assert_eq!(Archive::new(&bytes).validate(), Ok(1));
}

#[test]
fn checks_crc_sums() {
    let mut bytes = write(&[("a", b"\x01\x02\xff")]);
    bytes[..6].copy_from_slice(CRC_MAGIC);
    assert_eq!(all(&bytes), Err(CpioError::BadChecksum));
    set_field(&mut bytes, 0, 12, b"00000102");
    assert_eq!(all(&bytes).unwrap()[0].data, b"\x01\x02\xff");
    let mut gnu = GNU_CRC.to_vec();
    let data_at = gnu.windows(5).position(|w| w == b"hello").unwrap();
    gnu[data_at] = b'j';
    assert_eq!(Archive::new(&gnu).validate(), Err(CpioError::BadChecksum));
}

/// Reads everything in `bytes`; returned slices must lie inside it.
fn exercise(bytes: &[u8]) {
    let range = bytes.as_ptr_range();
    let inside = |part: &[u8]| {
        part.is_empty() || (range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end)
    };
    let archive = Archive::new(bytes);
    for entry in archive.entries().take(10_000).flatten() {
        assert!(inside(entry.data));
        assert!(inside(entry.name.as_bytes()));
        assert!(!entry.name.is_empty());
    }
    let _ = archive.find("sigma0");
    let _ = archive.validate();
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./ -]{1,40}".prop_filter("not the trailer", |n| n != TRAILER)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn round_trips(files in proptest::collection::vec(
        (name(), proptest::collection::vec(any::<u8>(), 0..200)), 0..8)) {
        let entries: Vec<(&str, &[u8])> =
            files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let bytes = write(&entries);
        let read: Vec<_> = Archive::new(&bytes).entries().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(read.len(), entries.len());
        for (entry, (name, data)) in read.iter().zip(entries.iter()) {
            prop_assert_eq!(entry.name, *name);
            prop_assert_eq!(entry.data, *data);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_archives_never_panic(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(),
             prop_oneof![any::<u8>(), Just(b'0'), Just(b'F'), Just(b'f'), Just(0u8)]),
            1..10),
        cut in any::<prop::sample::Index>(),
        crc in any::<bool>(),
    ) {
        let mut bytes = write(&[("sigma0", b"some bytes"), ("roottask", &[3u8; 37]), ("x", b"")]);
        if crc {
            bytes[..6].copy_from_slice(CRC_MAGIC);
        }
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        exercise(&bytes);
        let len = cut.index(bytes.len() + 1);
        exercise(&bytes[..len]);
    }
}
