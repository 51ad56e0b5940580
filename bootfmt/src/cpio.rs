//! "newc" cpio archives (`cpio -o -H newc`): a reader for the boot module archive and a
//! writer for the host tool that packs it.
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the NUL-terminated
//! name and the file data, ended by an entry named `TRAILER!!!`:
//!
//! ```text
//!  offset 0   +------------------------------+
//!             | "070701" (or "070702")       |  6 bytes of magic
//!             | 13 fields, 8 hex digits each |  ino mode uid gid nlink mtime filesize
//!             |                              |  devmajor devminor rdevmajor rdevminor
//!             |                              |  namesize check
//!  110        +------------------------------+
//!             | name, NUL, zero padding      |  namesize bytes (NUL included), padded
//!             +------------------------------+  so the data starts 4-aligned
//!             | data, zero padding           |  filesize bytes, padded so the next
//!             +------------------------------+  header starts 4-aligned
//!             | next header ...              |
//!             | "TRAILER!!!" entry           |  ends the archive; anything after it
//!             +------------------------------+  (block padding) is ignored
//! ```
//!
//! Alignment is counted from the start of the archive. The "070702" variant is the same
//! with `check` holding the 32-bit wrapping sum of the data bytes of regular files; the
//! reader verifies it. Hex digits may be upper or lower case; anything else in a numeric field is an
//! error.

use core::fmt;

use crate::bytes::{align_up, slice};

/// Magic of the newc format without checksums.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Magic of the newc format with data checksums ("crc", a plain byte sum).
pub const CRC_MAGIC: &[u8; 6] = b"070702";
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// Size of an entry header.
const HEADER_SIZE: usize = 110;
/// Headers, names and data are padded to this many bytes.
const ALIGN: usize = 4;
/// Offset of the first hex field (after the magic).
const FIELDS_AT: usize = 6;
/// Width of a hex field.
const FIELD_WIDTH: usize = 8;

/// Index of each hex field, in header order.
mod field {
    pub const INO: usize = 0;
    pub const MODE: usize = 1;
    pub const NLINK: usize = 4;
    pub const FILESIZE: usize = 6;
    pub const NAMESIZE: usize = 11;
    pub const CHECK: usize = 12;
    /// Number of fields.
    pub const COUNT: usize = 13;
}

/// File type bits of `mode`.
const S_IFMT: u32 = 0o170_000;
/// File type: regular file.
const S_IFREG: u32 = 0o100_000;
/// File type: directory.
const S_IFDIR: u32 = 0o040_000;
/// File type: symbolic link (its data is the target).
const S_IFLNK: u32 = 0o120_000;
/// Mode of the files [`write_newc`] writes: a regular file, `rw-r--r--`.
const WRITE_MODE: u32 = S_IFREG | 0o644;

/// Everything that can be wrong with an archive, or with entries to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioError {
    /// A header, name or data runs past the end of the input.
    Truncated,
    /// A header starts with something other than "070701" or "070702".
    BadMagic,
    /// A numeric field holds something other than 8 hex digits.
    BadHex,
    /// A name is empty, not NUL-terminated, or has a NUL inside.
    BadName,
    /// A name is not UTF-8.
    NameNotUtf8,
    /// The input ends without a `TRAILER!!!` entry.
    MissingTrailer,
    /// A "070702" regular file's data does not match its checksum.
    BadChecksum,
    /// A size does not fit the machine's address space, or (writing) an entry's name
    /// or data does not fit in a 32-bit field.
    TooLarge,
    /// (Writing) the output buffer is smaller than [`newc_size`].
    OutputTooSmall,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Truncated => "cpio archive truncated",
            Self::BadMagic => "not a newc cpio header (bad magic)",
            Self::BadHex => "cpio header field is not hexadecimal",
            Self::BadName => "cpio entry name is empty or not properly NUL-terminated",
            Self::NameNotUtf8 => "cpio entry name is not UTF-8",
            Self::MissingTrailer => "cpio archive has no TRAILER!!! entry",
            Self::BadChecksum => "cpio entry checksum mismatch",
            Self::TooLarge => "cpio entry too large",
            Self::OutputTooSmall => "output buffer too small for the cpio archive",
        };
        f.write_str(text)
    }
}

impl core::error::Error for CpioError {}

/// One archive member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path as stored (no leading `/` or `./` is added or removed).
    pub name: &'a str,
    /// The file contents (for a symbolic link, its target).
    pub data: &'a [u8],
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
}

impl Entry<'_> {
    /// Whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether the entry is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// A newc archive to read. Nothing is checked until entries are read.
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

impl<'a> Archive<'a> {
    /// Wraps `bytes`, which should start with the first header.
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The entries in archive order, up to (not including) the trailer.
    ///
    /// The first malformed entry yields an error and ends the iteration; so does input
    /// that ends before the trailer ([`CpioError::MissingTrailer`]).
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            offset: 0,
            done: false,
        }
    }

    /// The first entry called exactly `name`. Entries after it are not examined.
    pub fn find(&self, name: &str) -> Result<Option<Entry<'a>>, CpioError> {
        for entry in self.entries() {
            let entry = entry?;
            if entry.name == name {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Checks the whole archive, returning the number of entries before the trailer.
    pub fn validate(&self) -> Result<usize, CpioError> {
        let mut count = 0;
        for entry in self.entries() {
            entry?;
            count += 1;
        }
        Ok(count)
    }
}

/// Iterator over the entries of an [`Archive`].
///
/// # Invariants
///
/// `offset` is where the next header should start; it is only ever used through checked
/// slicing, so no value of it can cause an out-of-bounds read. Once `done` is set the
/// iterator returns `None` forever.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

/// What one header parse found.
enum Parsed<'a> {
    /// A member, and the offset of the next header.
    Member(Entry<'a>, usize),
    /// The trailer.
    Trailer,
}

/// The value of one hex digit.
fn hex_digit(byte: u8) -> Option<u32> {
    match byte {
        b'0'..=b'9' => Some(u32::from(byte - b'0')),
        b'a'..=b'f' => Some(u32::from(byte - b'a') + 10),
        b'A'..=b'F' => Some(u32::from(byte - b'A') + 10),
        _ => None,
    }
}

/// Decodes hex field `index` of `header` (exactly [`HEADER_SIZE`] bytes).
fn hex_field(header: &[u8], index: usize) -> Result<u32, CpioError> {
    let at = FIELDS_AT + index * FIELD_WIDTH;
    let digits = slice(header, at, FIELD_WIDTH).ok_or(CpioError::Truncated)?;
    digits.iter().try_fold(0u32, |value, &byte| {
        // Eight hex digits always fit in 32 bits, so the shift loses nothing.
        Ok((value << 4) | hex_digit(byte).ok_or(CpioError::BadHex)?)
    })
}

/// Converts a 32-bit size to `usize`.
fn size(value: u32) -> Result<usize, CpioError> {
    usize::try_from(value).map_err(|_| CpioError::TooLarge)
}

impl<'a> Entries<'a> {
    /// Parses the entry whose header starts at `self.offset`.
    fn parse(&self) -> Result<Parsed<'a>, CpioError> {
        let bytes = self.bytes;
        let start = self.offset;
        if start >= bytes.len() {
            return Err(CpioError::MissingTrailer);
        }
        let header = slice(bytes, start, HEADER_SIZE).ok_or(CpioError::Truncated)?;
        let magic = slice(header, 0, NEWC_MAGIC.len()).ok_or(CpioError::Truncated)?;
        let with_crc = if magic == NEWC_MAGIC {
            false
        } else if magic == CRC_MAGIC {
            true
        } else {
            return Err(CpioError::BadMagic);
        };
        let mut fields = [0u32; field::COUNT];
        for (index, value) in fields.iter_mut().enumerate() {
            *value = hex_field(header, index)?;
        }

        let name_start = start.checked_add(HEADER_SIZE).ok_or(CpioError::Truncated)?;
        let namesize = size(fields[field::NAMESIZE])?;
        let raw_name = slice(bytes, name_start, namesize).ok_or(CpioError::Truncated)?;
        let name = match raw_name.split_last() {
            Some((0, name)) if !name.contains(&0) && !name.is_empty() => name,
            _ => return Err(CpioError::BadName),
        };
        let name = core::str::from_utf8(name).map_err(|_| CpioError::NameNotUtf8)?;
        if name == TRAILER {
            return Ok(Parsed::Trailer);
        }

        let data_start = name_start
            .checked_add(namesize)
            .and_then(|end| align_up(end, ALIGN))
            .ok_or(CpioError::Truncated)?;
        let filesize = size(fields[field::FILESIZE])?;
        let data = slice(bytes, data_start, filesize).ok_or(CpioError::Truncated)?;
        let mode = fields[field::MODE];
        // Writers fill in the sum for regular files only (GNU cpio leaves it 0 for
        // symbolic links), so only regular files are checked.
        if with_crc && mode & S_IFMT == S_IFREG {
            let sum = data
                .iter()
                .fold(0u32, |sum, &byte| sum.wrapping_add(u32::from(byte)));
            if sum != fields[field::CHECK] {
                return Err(CpioError::BadChecksum);
            }
        }
        let next = data_start
            .checked_add(filesize)
            .and_then(|end| align_up(end, ALIGN))
            .ok_or(CpioError::Truncated)?;
        let entry = Entry { name, data, mode };
        Ok(Parsed::Member(entry, next))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.parse() {
            Ok(Parsed::Member(entry, next)) => {
                self.offset = next;
                Some(Ok(entry))
            }
            Ok(Parsed::Trailer) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Bytes taken by one entry whose name is `name_len` bytes (without NUL) and whose
/// data is `data_len` bytes, padding included; saturates instead of overflowing.
fn entry_size(name_len: usize, data_len: usize) -> usize {
    let header_and_name = HEADER_SIZE.saturating_add(name_len).saturating_add(1);
    let round = |n: usize| align_up(n, ALIGN).unwrap_or(usize::MAX);
    round(header_and_name).saturating_add(round(data_len))
}

/// Size of the archive [`write_newc`] writes for `entries`: every entry, then the
/// trailer. Saturates at `usize::MAX` (which no buffer can hold) instead of
/// overflowing.
pub fn newc_size(entries: &[(&str, &[u8])]) -> usize {
    entries
        .iter()
        .fold(entry_size(TRAILER.len(), 0), |total, (name, data)| {
            total.saturating_add(entry_size(name.len(), data.len()))
        })
}

/// Checks that an entry can be written: a non-empty name without NUL bytes that is not
/// the trailer's, and name and data lengths that fit the 32-bit header fields.
fn check_entry(name: &str, data: &[u8]) -> Result<(), CpioError> {
    if name.is_empty() || name.as_bytes().contains(&0) || name == TRAILER {
        return Err(CpioError::BadName);
    }
    let namesize = name.len().checked_add(1).ok_or(CpioError::TooLarge)?;
    u32::try_from(namesize).map_err(|_| CpioError::TooLarge)?;
    u32::try_from(data.len()).map_err(|_| CpioError::TooLarge)?;
    Ok(())
}

/// A cursor over the output buffer.
struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(CpioError::OutputTooSmall)?;
        let target = self
            .out
            .get_mut(self.pos..end)
            .ok_or(CpioError::OutputTooSmall)?;
        target.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        while !self.pos.is_multiple_of(ALIGN) {
            self.put(&[0])?;
        }
        Ok(())
    }

    fn header(&mut self, fields: &[u32; field::COUNT]) -> Result<(), CpioError> {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        self.put(NEWC_MAGIC)?;
        for &value in fields {
            let mut text = [0u8; FIELD_WIDTH];
            for (index, digit) in text.iter_mut().enumerate() {
                let shift = 4 * (FIELD_WIDTH - 1 - index);
                *digit = DIGITS[((value >> shift) & 0xf) as usize];
            }
            self.put(&text)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        fields: &[u32; field::COUNT],
        name: &str,
        data: &[u8],
    ) -> Result<(), CpioError> {
        self.header(fields)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }
}

/// Writes `entries` as a newc archive into `out` and returns the number of bytes
/// written ([`newc_size`]); the rest of `out` is untouched.
///
/// Every entry becomes a regular file with mode `0644`, owner 0, one link, time 0 and
/// inode number `index + 1`, followed by the trailer; GNU cpio lists and extracts the
/// result. Everything is checked before the first byte is written: a bad name
/// ([`CpioError::BadName`]), an entry too big for the format
/// ([`CpioError::TooLarge`]) or a short buffer ([`CpioError::OutputTooSmall`]) leaves
/// `out` unchanged.
pub fn write_newc(entries: &[(&str, &[u8])], out: &mut [u8]) -> Result<usize, CpioError> {
    for (name, data) in entries {
        check_entry(name, data)?;
    }
    let total = newc_size(entries);
    if total > out.len() {
        return Err(CpioError::OutputTooSmall);
    }
    u32::try_from(entries.len()).map_err(|_| CpioError::TooLarge)?;

    let mut writer = Writer { out, pos: 0 };
    for (index, (name, data)) in entries.iter().enumerate() {
        let mut fields = [0u32; field::COUNT];
        // The conversions below were checked above; `unwrap_or` keeps them panic-free.
        fields[field::INO] = u32::try_from(index + 1).unwrap_or(u32::MAX);
        fields[field::MODE] = WRITE_MODE;
        fields[field::NLINK] = 1;
        fields[field::FILESIZE] = u32::try_from(data.len()).unwrap_or(u32::MAX);
        fields[field::NAMESIZE] = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        writer.entry(&fields, name, data)?;
    }
    let mut trailer = [0u32; field::COUNT];
    trailer[field::NLINK] = 1;
    trailer[field::NAMESIZE] = TRAILER.len() as u32 + 1;
    writer.entry(&trailer, TRAILER, &[])?;
    Ok(writer.pos)
}

#[cfg(test)]
mod tests;
