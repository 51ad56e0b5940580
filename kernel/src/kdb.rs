//! The kernel-debugger interface of the amd64 binding (`int3` followed by a marker).
//!
//! Tern has no interactive debugger; it implements the console operations user
//! programs rely on (see docs/abi.md):
//!
//! | after `int3`        | operation                                              |
//! |---------------------|--------------------------------------------------------|
//! | `3C 00` (cmp al, 0) | print the character in AL                              |
//! | `3C 01`             | print the NUL-terminated string at RAX                 |
//! | `3C 08` / `3C 0D`   | read a character (non-blocking: ~0 if none / polling)  |
//! | `3C 10` (Tern)      | power off; RAX = 0 success, else failure (privileged)  |
//! | `3C 11` (Tern)      | kernel memory: RAX = free pool frames, RDX = total     |
//! | `EB xx 48 C7 C0 i32`| KDB_Enter("text"): print the text, continue            |
//! | `90`                | skip                                                   |
//! Any other `int3` is a breakpoint exception of the thread.

use crate::arch::cpu;
use crate::arch::layout::USER_END;
use crate::arch::serial;
use crate::arch::trap::{user_copy, Frame};
use crate::kprint;
use crate::thread::Tcb;

/// Reads user bytes of the current space into `buf`; false if unmapped.
pub fn read_user(addr: u64, buf: &mut [u8]) -> bool {
    if addr >= USER_END || addr.checked_add(buf.len() as u64).is_none_or(|e| e > USER_END) {
        return false;
    }
    // SAFETY: the range is below USER_END (checked) and `buf` is a kernel buffer.
    unsafe { user_copy(buf.as_mut_ptr(), addr as *const u8, buf.len()) }
}

fn print_user_string(addr: u64) {
    let mut off = 0u64;
    let mut chunk = [0u8; 64];
    while off < 4096 {
        // Read byte-wise at page ends so a string ending just before an unmapped page works.
        let a = addr + off;
        let n = (64 - (a % 64)) as usize;
        if !read_user(a, &mut chunk[..n]) {
            return;
        }
        for &b in &chunk[..n] {
            if b == 0 {
                return;
            }
            if b == b'\n' {
                serial::write_byte(b'\r');
            }
            serial::write_byte(b);
        }
        off += n as u64;
    }
}

/// Handles a user `int3`; returns false if it is not a KDB call (a real breakpoint).
pub fn int3(t: &mut Tcb, frame: &mut Frame) -> bool {
    let mut code = [0u8; 2];
    if !read_user(frame.rip, &mut code) {
        return false;
    }
    match code {
        [0x3C, op, ..] => {
            match op {
                0x00 => {
                    let c = frame.rax as u8;
                    if c == b'\n' {
                        serial::write_byte(b'\r');
                    }
                    serial::write_byte(c);
                }
                0x01 => print_user_string(frame.rax),
                0x08 => frame.rax = serial::read_byte().map_or(u64::MAX, |b| b as u64),
                0x0D => {
                    frame.rax = loop {
                        if let Some(b) = serial::read_byte() {
                            break b as u64;
                        }
                        core::hint::spin_loop();
                    }
                }
                0x11 => {
                    frame.rax = crate::kmem::free_frames() as u64;
                    frame.rdx = crate::kmem::total_frames() as u64;
                }
                0x10 if t.space().privileged => {
                    crate::kprintln!("power off requested by thread {:#x} ({}), status {}", t.id.raw(), t.name().as_str(), frame.rax);
                    cpu::debug_exit(if frame.rax == 0 { cpu::exit::SUCCESS } else { cpu::exit::FAILURE });
                }
                _ => {}
            }
            true
        }
        [0xEB, _, ..] => {
            let mut enter = [0u8; 9];
            if read_user(frame.rip, &mut enter) && enter[2..5] == [0x48, 0xC7, 0xC0] {
                let text = i32::from_le_bytes([enter[5], enter[6], enter[7], enter[8]]) as i64 as u64;
                kprint!("KDB: ");
                print_user_string(text);
                kprint!("\n");
            }
            true
        }
        [0x90, ..] => {
            frame.rip += 1;
            true
        }
        _ => false,
    }
}
