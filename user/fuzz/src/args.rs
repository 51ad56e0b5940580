//! Arguments embedded in the program image.
//!
//! The kernel command line is not visible to user programs, and the root task cannot read
//! the boot archive (σ0 would have to map it). So `cargo xtask` writes a program's
//! arguments straight into its ELF file before packing the boot archive: the section
//! `.tern_args` holds [`MAGIC`] followed by a NUL-terminated text of `key=value` words
//! (at most [`CAPACITY`] bytes in all). Without such a text the program uses its defaults,
//! which is what a plain boot of the manifest gets.
//!
//! The section is read with volatile loads: its initial contents are a compile-time
//! constant the optimiser would otherwise fold into the code.

/// Bytes of the section.
pub const CAPACITY: usize = 256;

/// What the section starts with; xtask checks it before writing behind it.
pub const MAGIC: &[u8; 10] = b"TERN-ARGS:";

#[repr(C)]
struct Section([u8; CAPACITY]);

const fn initial() -> Section {
    let mut b = [0u8; CAPACITY];
    let mut i = 0;
    while i < MAGIC.len() {
        b[i] = MAGIC[i];
        i += 1;
    }
    Section(b)
}

/// The arguments (patched by xtask in the ELF file).
#[used]
#[link_section = ".tern_args"]
static ARGS: Section = initial();

/// The argument text, copied out of the section.
pub struct Args {
    buf: [u8; CAPACITY],
    len: usize,
}

impl Args {
    /// Reads the section.
    pub fn read() -> Self {
        let mut buf = [0u8; CAPACITY];
        let base = ARGS.0.as_ptr();
        let mut len = 0;
        for i in MAGIC.len()..CAPACITY {
            // SAFETY: `i < CAPACITY`, inside the static; a volatile read keeps the compiler
            // from using the initial (compile-time) contents.
            let b = unsafe { core::ptr::read_volatile(base.add(i)) };
            if b == 0 {
                break;
            }
            buf[len] = b;
            len += 1;
        }
        Args { buf, len }
    }

    /// The whole text (empty if it is not UTF-8).
    pub fn text(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// The value of `key=value`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.text().split_ascii_whitespace().find_map(|w| {
            let (k, v) = w.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// A number (decimal, or hexadecimal with `0x`), or `default` when absent or unreadable.
    pub fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(parse_number).unwrap_or(default)
    }
}

/// Decimal, `0x` hexadecimal, with optional `_` separators.
pub fn parse_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x") {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let mut v: u64 = 0;
    let mut any = false;
    for c in digits.chars().filter(|&c| c != '_') {
        v = v.checked_mul(radix)?.checked_add(c.to_digit(radix as u32)? as u64)?;
        any = true;
    }
    any.then_some(v)
}
