//! The kernel-debugger console (`int3` followed by a marker, as the amd64 binding
//! defines it) and a `fmt::Write` sink over it.

use core::fmt;

/// Prints one character.
pub fn print_char(c: u8) {
    // SAFETY: `int3; cmp al, 0` is the KDB PrintChar call; the kernel reads AL and
    // resumes after the marker, changing no register.
    unsafe { core::arch::asm!("int3", "cmp al, 0", in("al") c, options(nostack)) };
}

/// Prints a string (without needing a NUL terminator: sent in chunks through a buffer).
pub fn print(s: &str) {
    let mut buf = [0u8; 128];
    for chunk in s.as_bytes().chunks(buf.len() - 1) {
        buf[..chunk.len()].copy_from_slice(chunk);
        buf[chunk.len()] = 0;
        // SAFETY: `int3; cmp al, 1` is KDB PrintString of the NUL-terminated string at RAX,
        // which `buf` holds; the kernel only reads it.
        unsafe {
            core::arch::asm!("int3", "cmp al, 1", in("rax") buf.as_ptr(), options(nostack, readonly))
        };
    }
}

/// Reads a character without blocking.
pub fn read_char() -> Option<u8> {
    let r: u64;
    // SAFETY: `int3; cmp al, 8` is KDB ReadChar; the result comes back in RAX.
    unsafe { core::arch::asm!("int3", "cmp al, 8", out("rax") r, options(nostack)) };
    (r != u64::MAX).then_some(r as u8)
}

/// Tern extension: powers the machine off (privileged programs only; the kernel ignores
/// the call from others). `status` 0 means success.
pub fn power_off(status: u64) {
    // SAFETY: `int3; cmp al, 0x10` is Tern's power-off KDB call; it returns only if
    // the caller is not privileged.
    unsafe { core::arch::asm!("int3", "cmp al, 0x10", in("rax") status, options(nostack)) };
}

/// Tern extension: the KDB operation code of [`kernel_memory`] (`int3; cmp al, 0x11`).
pub const KDB_KERNEL_MEMORY: u8 = 0x11;

/// Tern extension: the kernel memory pool as `(free frames, total frames)`, for leak
/// checks. `(0, 0)` from a kernel that does not implement the call (it then leaves RAX
/// and RDX as they were, which this function sets to 0).
pub fn kernel_memory() -> (u64, u64) {
    let (free, total): (u64, u64);
    // SAFETY: `int3; cmp al, 0x11` is Tern's kernel-memory KDB call; the kernel returns
    // the free count in RAX and the total in RDX and changes no other register.
    unsafe {
        core::arch::asm!("int3", "cmp al, 0x11", inout("rax") 0u64 => free, inout("rdx") 0u64 => total, options(nostack))
    };
    (free, total)
}

/// `fmt::Write` over the KDB console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        print(s);
        Ok(())
    }
}

/// Prints formatted text on the kernel console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{ let _ = core::fmt::Write::write_fmt(&mut $crate::kdb::Console, format_args!($($arg)*)); }};
}

/// Prints a formatted line on the kernel console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{ let _ = core::fmt::Write::write_fmt(&mut $crate::kdb::Console, format_args!("{}\n", format_args!($($arg)*))); }};
}
